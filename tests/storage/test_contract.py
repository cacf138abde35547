"""The storage contract, run against SQLite and PostgreSQL alike."""

from __future__ import annotations

import threading

import pytest

from commonwatch.domain.markings import Tlp
from commonwatch.errors import InvalidParameter, NotFound, PermissionDenied
from commonwatch.services.query import ObjectFilter, VersionSelector

from conftest import count_rows
from support.factories import indicator, ipv4, new_version

ALL = VersionSelector(all=True, last=False)


def ids(exchange, member, cid, flt=None):
    return [r.stix_id for r in exchange.query.manifest(member.principal, cid, flt or ObjectFilter()).rows]


def test_schema_is_migrated_and_system_objects_published(exchange, fed):
    a, _, cid = fed
    assert {i.split("--")[0] for i in ids(exchange, a, cid)} == {"identity", "extension-definition"}


def test_identical_repost_is_a_success_that_stores_nothing(exchange, fed):
    a, _, cid = fed
    obj = indicator()
    first = exchange.ingest.add_objects(a.principal, cid, [obj])
    before = count_rows(exchange, "stix_objects")
    again = exchange.ingest.add_objects(a.principal, cid, [obj, dict(obj)])
    assert len(first.successes) == 1 and len(again.successes) == 2 and not again.failures
    assert count_rows(exchange, "stix_objects") == before


def test_valid_objects_of_a_bad_envelope_are_stored(exchange, fed):
    a, _, cid = fed
    good = indicator()
    report = exchange.ingest.add_objects(a.principal, cid, [good, {"type": "indicator"}, 42])
    assert [s.id for s in report.successes] == [good["id"]]
    assert len(report.failures) == 2
    assert good["id"] in ids(exchange, a, cid)
    stored = exchange.ingest.status(a.principal, report.id)
    assert stored.to_json()["failure_count"] == 2


def test_versions_and_ownership(exchange, fed):
    a, b, cid = fed
    v1 = indicator(created=1)
    v2 = new_version(v1, 5, name="v2")
    exchange.ingest.add_objects(a.principal, cid, [v2, v1])  # out of order on purpose
    page = exchange.query.versions(a.principal, cid, v1["id"], ObjectFilter(versions=ALL))
    assert [r.version_us for r in page.rows] == sorted(r.version_us for r in page.rows)
    hijack = new_version(v1, 9, name="not yours")
    report = exchange.ingest.add_objects(b.principal, cid, [hijack])
    assert "another organisation" in report.failures[0].message
    clash = dict(v2, name="same modified, other content")
    report = exchange.ingest.add_objects(a.principal, cid, [clash])
    assert "already exists" in report.failures[0].message


def test_observables_may_be_shared_by_several_organisations(exchange, fed):
    a, b, cid = fed
    exchange.ingest.add_objects(a.principal, cid, [ipv4("192.0.2.1", Tlp.RED)])
    report = exchange.ingest.add_objects(b.principal, cid, [ipv4("192.0.2.1", Tlp.GREEN)])
    assert not report.failures
    flt = ObjectFilter(types=("ipv4-addr",), versions=ALL)
    assert len(exchange.query.objects(b.principal, cid, flt).rows) == 1  # A's RED hidden
    assert len(exchange.query.objects(a.principal, cid, flt).rows) == 2


def test_created_by_ref_cannot_name_another_member(exchange, fed):
    a, b, cid = fed
    report = exchange.ingest.add_objects(a.principal, cid, [indicator(created_by=b.identity)])
    assert "another member" in report.failures[0].message
    ok = exchange.ingest.add_objects(a.principal, cid, [indicator(created_by=a.identity)])
    assert not ok.failures


def test_red_recipients_and_cascade_delete(exchange, fed):
    a, b, cid = fed
    red = indicator(tlp=Tlp.RED, recipients=[b.identity])
    exchange.ingest.add_objects(a.principal, cid, [red])
    assert red["id"] in ids(exchange, b, cid)
    assert count_rows(exchange, "object_recipients") == 1
    exchange.ingest.delete_object(
        a.principal, cid, red["id"], ObjectFilter(ids=(red["id"],), versions=ALL, limit=100)
    )
    assert count_rows(exchange, "object_recipients") == 0


def test_only_the_producer_deletes(exchange, fed):
    a, b, cid = fed
    obj = indicator(tlp=Tlp.GREEN)
    exchange.ingest.add_objects(a.principal, cid, [obj])
    flt = ObjectFilter(ids=(obj["id"],), versions=ALL, limit=100)
    with pytest.raises(PermissionDenied):
        exchange.ingest.delete_object(b.principal, cid, obj["id"], flt)
    with pytest.raises(NotFound):
        exchange.ingest.delete_object(
            b.principal,
            cid,
            "indicator--00000000-0000-4000-8000-000000000000",
            ObjectFilter(ids=("indicator--00000000-0000-4000-8000-000000000000",), versions=ALL),
        )
    assert exchange.ingest.delete_object(a.principal, cid, obj["id"], flt) == 1


def test_concurrent_writers_get_strictly_increasing_date_added(exchange, fed):
    a, b, cid = fed
    errors = []

    def writer(member):
        try:
            for _ in range(10):
                exchange.ingest.add_objects(member.principal, cid, [indicator() for _ in range(20)])
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(m,)) for m in (a, b, a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    page = exchange.query.objects(a.principal, cid, ObjectFilter(types=("indicator",), limit=10_000))
    added = [r.date_added_us for r in page.rows]
    assert len(added) == 800 and added == sorted(set(added))


def test_latest_version_tracking_within_and_across_envelopes(exchange, fed):
    a, b, cid = fed
    v1 = indicator(created=1, tlp=Tlp.GREEN)
    v2, v3 = new_version(v1, 2, name="v2"), new_version(v1, 3, name="v3")
    v4 = new_version(
        v1,
        4,
        name="v4 secret",
        object_marking_refs=["marking-definition--e828b379-4e03-4974-9ac4-e53a884c97c1"],
    )  # RED, no recipients
    exchange.ingest.add_objects(a.principal, cid, [v1, v3, v2])

    def last_name(member):
        page = exchange.query.objects(member.principal, cid, ObjectFilter(ids=(v1["id"],)))
        return [r.raw for r in page.rows]

    assert [b'"v3"' in raw for raw in last_name(b)] == [True]
    exchange.ingest.add_objects(a.principal, cid, [v4])
    assert [b'"v4 secret"' in raw for raw in last_name(a)] == [True]
    assert [b'"v3"' in raw for raw in last_name(b)] == [True]  # newest visible to B
    exchange.ingest.delete_object(
        a.principal,
        cid,
        v1["id"],
        ObjectFilter(ids=(v1["id"],), versions=VersionSelector(last=True), limit=10),
    )
    assert [b'"v3"' in raw for raw in last_name(a)] == [True]
    assert count_rows(exchange, "stix_objects WHERE is_latest = true") == 3  # 2 system + v3


@pytest.mark.parametrize("call", [
    lambda a: a.create_org("Acme\n", "operator"),  # '$' alone would let the newline through
    lambda a: a.create_community("ring\n"),
    lambda a: a.create_community("ring", title="a\x00b"),
    lambda a: a.create_community("ring", description="a\x00b"),
    lambda a: a.create_token("nobody", label="x" * 201),
])
def test_admin_refuses_names_and_text_the_database_must_not_hold(exchange, call):
    """Refused before any write, on both backends (PostgreSQL text cannot hold NUL)."""
    with pytest.raises(InvalidParameter):
        call(exchange.admin)
    assert "ring" not in {c.name for c in exchange.admin.list_communities()}


def test_names_with_a_trailing_space_and_disabled_users_on_the_command_line(exchange):
    """'Acme ' would pass for 'Acme' in every listing; a disabled user acts nowhere."""
    exchange.admin.create_org("Acme", "operator")
    for name in ("Acme ", "Acme  x ", " Acme"):
        with pytest.raises(InvalidParameter):
            exchange.admin.create_org(name, "operator")
    exchange.admin.create_user("Acme", "ann", "analyst")
    assert exchange.auth.principal_for_user("ann").user_name == "ann"
    exchange.admin.set_user_active("ann", False)
    with pytest.raises(PermissionDenied, match="disabled"):
        exchange.auth.principal_for_user("ann")
