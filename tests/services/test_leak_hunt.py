"""Leak hunt: every read path answers an object the caller cannot see exactly as if it
did not exist (DESIGN.md, "Visibility rule"; docs/sharing-model.md, "What you cannot learn").

Each test compares two answers that differ only by an object the caller may not see:
the same caller before and after the hidden object is written, or two callers of equal
clearance of which only one ever had (or could have had) access. They must be equal.
"""

from __future__ import annotations

import base64
import io
import uuid
from typing import Any

import pytest
from fastapi.testclient import TestClient

from commonwatch.domain.markings import (
    TLP2_MARKING_BY_LEVEL,
    Tlp,
)
from commonwatch.domain.warninglists import load_warninglists
from commonwatch.errors import NotFound
from commonwatch.formats.sources import Input
from commonwatch.services.export import ExportService
from commonwatch.services.importer import ImportService
from commonwatch.services.lifecycle import LifecycleService
from commonwatch.services.query import ExportFilter, ObjectFilter, VersionSelector
from commonwatch.storage.db import session_factory
from commonwatch.web.app import create_app

from support.factories import indicator, ipv4, make_member, marked, new_version, ts

TAXII = "application/taxii+json;version=2.1"
DAY = 86_400
#: A frozen "now" for scores and expiry: ten days after the factories' epoch (2026-01-01).
NOW = (1_767_225_600 + 10 * DAY) * 1_000_000


# -- helpers -----------------------------------------------------------------------------
def sighting(target: str, tlp: Tlp, *, count: int = 7, seen: int = 5 * DAY,
             recipients: list[str] | None = None) -> dict[str, Any]:
    return marked({"type": "sighting", "spec_version": "2.1", "id": f"sighting--{uuid.uuid4()}",
                   "created": ts(seen), "modified": ts(seen), "sighting_of_ref": target, "count": count,
                   "first_seen": ts(seen - 60), "last_seen": ts(seen)}, tlp, recipients)


def opinion(target: str, tlp: Tlp, recipients: list[str] | None = None) -> dict[str, Any]:
    return marked({"type": "opinion", "spec_version": "2.1", "id": f"opinion--{uuid.uuid4()}",
                   "created": ts(100), "modified": ts(100), "opinion": "strongly-disagree",
                   "object_refs": [target]}, tlp, recipients)


def add(exchange, member, cid, objects) -> None:
    report = exchange.ingest.add_objects(member.principal, cid, objects)
    assert not report.failures, report.failures


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Accept": TAXII}


def export_snapshot(svc: ExportService, principal, flt: ExportFilter, fmt: str = "csv"):
    export = svc.export(principal, fmt, flt)
    text = "".join(export.chunks)
    s = export.stats
    return text, s.objects_read, s.objects_exported, dict(s.skipped), s.next_change_us


def frozen_export(exchange, lifecycle=None) -> ExportService:
    return ExportService(session_factory(exchange.engine), exchange.query, clock=lambda: NOW,
                         new_uuid=lambda: "00000000-0000-4000-8000-000000000001", lifecycle=lifecycle)


@pytest.fixture
def client(exchange):
    with TestClient(create_app(exchange)) as c:
        yield c


# Callers and the TLP of what is hidden from them: the next level up (AMBER+STRICT above
# AMBER: organisation-only vs organisation-and-clients) or RED that does not name them.
HIDDEN = [
    pytest.param(Tlp.GREEN, Tlp.AMBER, id="green-vs-amber"),
    pytest.param(Tlp.AMBER, Tlp.AMBER_STRICT, id="amber-vs-amber+strict"),
    pytest.param(Tlp.RED, Tlp.RED, id="red-cleared-not-named"),
]


def _world(exchange, clearance: Tlp):
    """A producer cleared for RED, a caller with ``clearance``, one community 'main'."""
    a = make_member(exchange, "Producer", "government")
    b = make_member(exchange, "Caller", "operator")
    exchange.admin.create_community("main", default_tlp=Tlp.GREEN)
    exchange.admin.set_membership(a.org, "main", True, True, Tlp.RED)
    exchange.admin.set_membership(b.org, "main", True, True, clearance)
    return a, b, exchange.admin.get_community("main").collection_id


def _hidden(a, level: Tlp, obj: dict[str, Any]) -> dict[str, Any]:
    """``obj`` at ``level``; a RED one names only its producer."""
    return marked(obj, level, [a.identity] if level == Tlp.RED else None)


# -- lookup ------------------------------------------------------------------------------
@pytest.mark.parametrize(("clearance", "level"), HIDDEN)
def test_lookup_answers_are_untouched_by_hidden_objects(exchange, client, clearance, level):
    """Matches, reporters, first/last seen, sightings counts and sighters, opinions and
    their sectors: nothing moves when hidden objects about the value are added."""
    a, b, cid = _world(exchange, clearance)
    visible = indicator("45.83.113.10", tlp=Tlp.GREEN, created_by=a.identity, confidence=60)
    add(exchange, a, cid, [visible, sighting(visible["id"], Tlp.GREEN, count=2, seen=DAY)])
    values = ["45.83.113.10", "45.83.113.77", "45.85.2.44", "hidden.example.org", "www.hidden.example.org"]
    before_api = client.post("/api/lookup", json={"values": values}, headers=auth(b.token)).json()
    before = exchange.lookup.lookup_json(b.principal, values)
    assert before_api["results"] == before

    add(exchange, a, cid, [
        _hidden(a, level, indicator("45.83.113.10", created_by=a.identity, created=1)),
        _hidden(a, level, indicator(created_by=a.identity, created=2,
                                    pattern="[ipv4-addr:value = '45.83.113.0/24']")),
        _hidden(a, level, indicator(created_by=a.identity, created=3,
                                    pattern="[domain-name:value = 'hidden.example.org']")),
        _hidden(a, level, ipv4("45.83.113.10")),
        _hidden(a, level, ipv4("45.85.2.44")),
        _hidden(a, level, sighting(visible["id"], level, count=1000, seen=300 * DAY)),
        _hidden(a, level, opinion(visible["id"], level)),
        # a hidden newer version of the visible indicator, stating another value
        _hidden(a, level, new_version(visible, 50, pattern="[ipv4-addr:value = '45.85.2.44']",
                                      valid_from=ts(-100 * DAY))),
    ])
    assert before[0]["found"] and before[0]["sightings"]["count"] == 2
    assert exchange.lookup.lookup_json(a.principal, values) != exchange.lookup.lookup_json(
        make_member(exchange, "Cleared twin", "operator").principal, values)  # sanity: a producer sees more
    assert exchange.lookup.lookup_json(b.principal, values) == before
    after_api = client.post("/api/lookup", json={"values": values}, headers=auth(b.token)).json()
    assert after_api["results"] == before
    single = client.get("/api/lookup", params={"value": "45.83.113.77"}, headers=auth(b.token)).json()
    assert single["results"] == [before[1]]


def test_lookup_ignores_a_community_the_caller_may_only_write_to(exchange):
    """A write-only member (can_read false) sees its own objects only there."""
    a, b, cid = _world(exchange, Tlp.AMBER)
    exchange.admin.set_membership(b.org, "main", False, True, Tlp.RED)
    before = exchange.lookup.lookup_json(b.principal, ["45.84.100.9"])
    add(exchange, a, cid, [indicator("45.84.100.9", tlp=Tlp.CLEAR, created_by=a.identity)])
    assert exchange.lookup.lookup_json(b.principal, ["45.84.100.9"]) == before
    assert before[0]["found"] is False


# -- lifecycle and decay -----------------------------------------------------------------
@pytest.mark.parametrize(("clearance", "level"), HIDDEN[:2])
def test_decay_scores_and_expiry_ignore_sightings_the_producer_cannot_see(exchange, clearance, level):
    """The caller's own indicator is sighted by another member above the caller's
    clearance (by TAXII and by the quick form, RED addressed to the producer): scores,
    planned expiry and score-filtered exports must not move."""
    a, b, cid = _world(exchange, clearance)
    own = indicator("45.83.113.20", tlp=Tlp.GREEN, created_by=b.identity, confidence=80)
    add(exchange, b, cid, [own])
    lifecycle = LifecycleService(exchange.query, exchange.ingest, clock=lambda: NOW)
    svc = frozen_export(exchange, lifecycle)
    flt = ExportFilter(min_score=1, tlp_ceiling=Tlp.RED)

    def snapshot():
        return ([s.to_json() for s in lifecycle.scores(b.principal, "main")],
                lifecycle.expire(b.principal, "main", dry_run=True).to_json(),
                lifecycle.last_sightings(b.principal, "main"),
                export_snapshot(svc, b.principal, flt))

    before = snapshot()
    add(exchange, a, cid, [sighting(own["id"], level, count=3, seen=9 * DAY)])
    exchange.sightings.sight(a.principal, "main", "45.83.113.20", 5, last_seen=ts(9 * DAY),
                             tlp=Tlp.RED)  # RED: addressed to the producer, not cleared for it
    assert before[0][0]["score"] > 0 and before[3][2] == 1
    assert own["id"] in lifecycle.last_sightings(a.principal, "main")  # sanity: the sightings exist
    assert snapshot() == before


# -- exports -----------------------------------------------------------------------------
@pytest.mark.parametrize(("clearance", "level"), HIDDEN)
def test_export_output_and_skip_counts_ignore_hidden_objects(exchange, clearance, level):
    """ExportStats (objects read, exported, skipped by reason, next change) and the
    output are the same before and after hidden objects every filter would skip."""
    a, b, cid = _world(exchange, clearance)
    svc = frozen_export(exchange)
    visible = indicator("45.83.113.30", tlp=Tlp.GREEN, created_by=a.identity, confidence=90)
    add(exchange, a, cid, [visible])
    filters = [ExportFilter(tlp_ceiling=Tlp.RED),
               ExportFilter(tlp_ceiling=Tlp.RED, min_confidence=50),
               ExportFilter(tlp_ceiling=Tlp.RED, types=("indicator", "ipv4-addr"))]
    before = [export_snapshot(svc, b.principal, f, fmt) for f in filters for fmt in ("csv", "stix")]
    h = lambda obj: _hidden(a, level, obj)  # noqa: E731
    add(exchange, a, cid, [
        h(indicator("45.83.113.31", revoked=True)),
        h(indicator("45.83.113.32", valid_until=ts(DAY))),  # expired at NOW
        h(indicator("45.83.113.33", valid_until=ts(20 * DAY))),  # expires later: next change
        h(indicator(pattern="[ipv4-addr:value = '45.83.113.34' AND domain-name:value = 'x.example']")),
        h(indicator("8.8.8.8")),  # warninglisted
        h(indicator("45.83.113.35", confidence=10)),
        h(ipv4("45.83.113.36")),
        h(new_version(visible, 40, revoked=True)),  # a hidden, revoked newer version
    ])
    after = [export_snapshot(svc, b.principal, f, fmt) for f in filters for fmt in ("csv", "stix")]
    assert after == before


# -- feeds ---------------------------------------------------------------------------------
def test_feed_etag_ignores_writes_in_a_community_the_caller_cannot_know(exchange, client):
    a, b, _ = _world(exchange, Tlp.AMBER)
    exchange.admin.create_community("secret")
    exchange.admin.set_membership(a.org, "secret", True, True, Tlp.RED)
    secret = exchange.admin.get_community("secret").collection_id
    exchange.feeds.create_feed(b.principal, "edge", "plain-ip", ExportFilter())
    first = client.get("/feeds/edge", headers=auth(b.token))
    assert first.status_code == 200
    etag = first.headers["ETag"]
    assert client.get("/feeds/edge", headers=auth(b.token) | {"If-None-Match": etag}).status_code == 304
    add(exchange, a, secret, [indicator("45.83.113.40", tlp=Tlp.RED, recipients=[a.identity])])
    again = client.get("/feeds/edge", headers=auth(b.token) | {"If-None-Match": etag})
    assert (again.status_code, again.headers["ETag"]) == (304, etag)


# -- TAXII and the JSON API ----------------------------------------------------------------
def test_status_of_another_organisation_answers_like_a_missing_one(exchange, client):
    a, b, cid = _world(exchange, Tlp.RED)
    body = {"objects": [indicator("45.83.113.50", tlp=Tlp.GREEN, created_by=a.identity)]}
    posted = client.post(f"/taxii2/api/collections/{cid}/objects/", json=body,
                         headers=auth(a.token) | {"Content-Type": TAXII})
    assert posted.status_code == 202
    theirs = client.get(f"/taxii2/api/status/{posted.json()['id']}/", headers=auth(b.token))
    missing = client.get(f"/taxii2/api/status/{uuid.uuid4()}/", headers=auth(b.token))
    assert (theirs.status_code, theirs.json()) == (missing.status_code, missing.json()) == (
        404, missing.json())


@pytest.mark.parametrize(("clearance", "level"), HIDDEN)
def test_delete_of_a_hidden_object_answers_like_a_missing_one(exchange, client, clearance, level):
    a, b, cid = _world(exchange, clearance)
    hidden = _hidden(a, level, indicator("45.83.113.51", created_by=a.identity))
    add(exchange, a, cid, [hidden])
    base = f"/taxii2/api/collections/{cid}/objects/"
    for suffix in ("", "?match[version]=" + hidden["modified"], "?match[version]=first"):
        theirs = client.delete(base + hidden["id"] + "/" + suffix, headers=auth(b.token))
        missing = client.delete(base + f"indicator--{uuid.uuid4()}/" + suffix, headers=auth(b.token))
        assert (theirs.status_code, theirs.json()) == (missing.status_code, missing.json())
        assert theirs.status_code == 404


def test_versions_headers_and_paging_skip_hidden_versions(exchange, client):
    """X-TAXII-Date-Added-First/Last, more/next of a versions list: visible versions only."""
    a, b, cid = _world(exchange, Tlp.GREEN)
    v1 = indicator("45.83.113.52", tlp=Tlp.GREEN, created_by=a.identity, created=1)
    add(exchange, a, cid, [v1])
    url = f"/taxii2/api/collections/{cid}/objects/{v1['id']}/versions/"
    before = client.get(url + "?limit=1", headers=auth(b.token))
    add(exchange, a, cid, [new_version(v1, 5, object_marking_refs=[TLP2_MARKING_BY_LEVEL[Tlp.AMBER]])])
    after = client.get(url + "?limit=1", headers=auth(b.token))
    assert after.json() == before.json() == {"more": False, "versions": [ts(1)]}
    for h in ("X-TAXII-Date-Added-First", "X-TAXII-Date-Added-Last"):
        assert after.headers[h] == before.headers[h]
    manifest = f"/taxii2/api/collections/{cid}/manifest/?match[id]={v1['id']}&match[version]=all"
    got = client.get(manifest, headers=auth(b.token))
    assert [m["version"] for m in got.json()["objects"]] == [ts(1)]
    assert got.headers["X-TAXII-Date-Added-Last"] == before.headers["X-TAXII-Date-Added-Last"]


def test_revoked_token_answers_like_an_unknown_one(exchange, client):
    a, b, cid = _world(exchange, Tlp.RED)
    token_id = exchange.admin.list_tokens(b.user)[0][0].id
    exchange.admin.revoke_token(token_id)
    unknown = "cw_" + "x" * 43
    for path in ("/api/lookup?value=45.83.113.60", f"/taxii2/api/collections/{cid}/objects/",
                 "/taxii2/api/collections/"):
        revoked = client.get(path, headers=auth(b.token))
        other = client.get(path, headers=auth(unknown))
        assert (revoked.status_code, revoked.json()) == (other.status_code, other.json())
        assert revoked.status_code == 401
        basic = base64.b64encode(f"{b.user}:{b.token}".encode()).decode()
        revoked_basic = client.get(path, headers={"Authorization": f"Basic {basic}", "Accept": TAXII})
        assert revoked_basic.status_code == 401


# -- sightings quick form -----------------------------------------------------------------
@pytest.mark.parametrize(("clearance", "level"), HIDDEN)
def test_quick_sighting_of_a_value_only_hidden_indicators_state(exchange, clearance, level):
    a, b, cid = _world(exchange, clearance)
    add(exchange, a, cid, [_hidden(a, level, indicator("45.83.113.70", created_by=a.identity)),
                           _hidden(a, level, indicator(created_by=a.identity,
                                                       pattern="[ipv4-addr:value = '45.83.113.0/24']"))])
    messages = []
    for value in ("45.83.113.70", "45.84.100.70"):
        with pytest.raises(NotFound) as err:
            exchange.sightings.sight(b.principal, "main", value)
        messages.append(err.value.message.replace(value, "V"))
    assert messages[0] == messages[1]
    # with a visible indicator too, only that one is sighted
    visible = indicator("45.83.113.70", tlp=Tlp.GREEN, created_by=a.identity)
    add(exchange, a, cid, [visible])
    made = exchange.sightings.sight(b.principal, "main", "45.83.113.70", tlp=Tlp.GREEN)
    assert [s.indicator_id for s in made] == [visible["id"]]


# -- posting what already exists, hidden ------------------------------------------------------
@pytest.mark.parametrize(("clearance", "level"), HIDDEN)
def test_posting_an_sco_identical_to_a_hidden_one(exchange, clearance, level):
    a, b, cid = _world(exchange, clearance)
    add(exchange, a, cid, [_hidden(a, level, ipv4("45.83.113.80"))])
    # the poster cannot mark RED with recipients it does not know; it copies the rest
    mine = [_hidden(a, level, ipv4("45.83.113.80")), _hidden(a, level, ipv4("45.83.113.81"))]
    report = exchange.ingest.add_objects(b.principal, cid, mine)
    assert not report.failures
    assert list(report.stored) == [True, True]
    seen = []
    for obj in mine:
        page = exchange.query.objects(b.principal, cid, ObjectFilter(ids=(obj["id"],)))
        seen.append(len(page.rows))
    assert seen == [1, 1]


def test_import_summary_does_not_count_hidden_observables_as_unchanged(exchange, tmp_path):
    a, b, cid = _world(exchange, Tlp.GREEN)
    service = ImportService(exchange.ingest, exchange.query, load_warninglists(), batch_size=50)
    community = service.community(a.principal, "main")

    def run(member, text: str):
        data = text.encode()
        inp = Input("list.txt", "stream", None, lambda: io.BytesIO(data))
        ctx = service.context(member.principal, community, tlp=Tlp.AMBER)
        return service.run(member.principal, community, [inp], "text", ctx, max_bytes=10**6)

    run(a, "45.83.113.90\n")  # AMBER: hidden from the GREEN member
    summary = run(b, "45.83.113.90\n45.83.113.91\n")
    assert summary.rejected == 0
    counts = summary.by_type["ipv4-addr"]
    assert (counts["stored"], counts["unchanged"], counts["rejected"]) == (2, 0, 0)


# -- clearance changes ------------------------------------------------------------------------
@pytest.mark.parametrize("change", ["lowered", "removed", "read-revoked"])
def test_old_content_disappears_from_every_path_after_a_clearance_change(exchange, change):
    """A member that once was cleared answers, after the change, exactly like a member
    of the same (new) standing that never was: lookup, TAXII, deletions, exports,
    sightings-based last-seen dates, collections list."""
    a, b, cid = _world(exchange, Tlp.AMBER)
    d = make_member(exchange, "Newcomer", "operator")
    visible = indicator("45.83.113.100", tlp=Tlp.GREEN, created_by=a.identity)
    gone = indicator("45.83.113.102", tlp=Tlp.AMBER, created_by=a.identity)
    add(exchange, a, cid, [
        visible, gone, indicator("45.83.113.101", tlp=Tlp.AMBER, created_by=a.identity),
        sighting(visible["id"], Tlp.AMBER, count=4), opinion(visible["id"], Tlp.AMBER),
    ])
    # deleted while the member was cleared for it: an AMBER tombstone
    every = VersionSelector(all=True, last=False)
    flt = ObjectFilter(ids=(gone["id"],), versions=every)
    exchange.ingest.delete_object(a.principal, cid, gone["id"], flt)
    assert exchange.query.deletions(b.principal, cid).rows
    svc = frozen_export(exchange, LifecycleService(exchange.query, exchange.ingest, clock=lambda: NOW))

    def view(m) -> list[Any]:
        out: list[Any] = [
            exchange.lookup.lookup_json(m.principal, ["45.83.113.100", "45.83.113.101", "45.83.113.102"]),
            [(c.name, k.can_read, k.can_write, int(k.max_tlp))
             for c, k in exchange.query.collections(m.principal)],
        ]
        for call in (
            lambda: [r.raw for r in exchange.query.objects(m.principal, cid, ObjectFilter()).rows],
            lambda: [tuple(r) for r in exchange.query.deletions(m.principal, cid).rows],
            lambda: export_snapshot(svc, m.principal, ExportFilter(tlp_ceiling=Tlp.RED)),
            lambda: export_snapshot(svc, m.principal, ExportFilter(communities=("main",), min_score=0)),
            lambda: LifecycleService(exchange.query, exchange.ingest).last_sightings(m.principal, "main"),
        ):
            try:
                out.append(call())
            except Exception as exc:  # noqa: BLE001 - the error itself is part of the answer
                out.append((type(exc).__name__, getattr(exc, "message", str(exc))))
        return out

    cleared = view(b)
    if change == "lowered":
        exchange.admin.set_membership(b.org, "main", True, True, Tlp.GREEN)
        exchange.admin.set_membership(d.org, "main", True, True, Tlp.GREEN)
    elif change == "read-revoked":
        exchange.admin.set_membership(b.org, "main", False, True, Tlp.AMBER)
        exchange.admin.set_membership(d.org, "main", False, True, Tlp.AMBER)
    else:
        exchange.admin.remove_membership(b.org, "main")
    assert view(b) == view(d)
    assert view(d) != cleared  # sanity: the change took something away
