"""Changing and deleting organisations and communities (``AdminService``), on both
backends: renames reach exports, feeds and their ETags at once; deletion is refused
while anything shared depends on the name, and leaves nothing a later organisation or
community with the same id could inherit."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from commonwatch.domain.markings import Tlp
from commonwatch.errors import AuthenticationRequired, Conflict, InvalidParameter, NotFound
from commonwatch.services.query import ExportFilter, ObjectFilter, VersionSelector

from support.factories import indicator, make_community, make_member

ALL_VERSIONS = ObjectFilter(versions=VersionSelector(last=False, all=True))


@pytest.fixture
def ring(exchange):
    prod, reader = make_member(exchange, "Prod"), make_member(exchange, "Reader")
    cid = make_community(exchange, "ring", Tlp.GREEN, {"Prod": (True, Tlp.RED), "Reader": (False, Tlp.AMBER)})
    obj = indicator("45.77.1.9")
    assert not exchange.ingest.add_objects(prod.principal, cid, [obj]).failures
    return {"P": prod, "R": reader, "cid": cid, "obj": obj}


def csv_rows(exchange, principal, **flt) -> list[str]:
    export = exchange.export.export(principal, "csv", ExportFilter(**flt))
    return "".join(export.chunks).splitlines()[1:]


def test_a_renamed_organisation_keeps_its_identity_and_is_named_anew_in_exports(exchange, ring):
    before = exchange.admin.get_org("Prod")
    assert ",Prod," in csv_rows(exchange, ring["R"].principal)[0]
    org = exchange.admin.update_org("Prod", new_name="Prod Networks", sector="government", country="NL")
    assert (org.name, org.sector, org.country, org.identity_id) == (
        "Prod Networks", "government", "NL", before.identity_id)
    row = csv_rows(exchange, ring["R"].principal)[0]
    assert ",Prod Networks," in row and ",Prod," not in row
    assert csv_rows(exchange, ring["R"].principal, producer_sectors=("government",)) == [row]
    assert csv_rows(exchange, ring["R"].principal, producer_sectors=("operator",)) == []
    assert exchange.admin.update_org("Prod Networks", country="").country is None
    with pytest.raises(NotFound):
        exchange.admin.get_org("Prod")


def test_a_rename_changes_the_etag_of_a_feed_that_names_the_producer(exchange, ring):
    reader = ring["R"].principal
    feed = exchange.feeds.create_feed(reader, "mine", "csv", ExportFilter())
    etag, *_ = exchange.feeds.validators(reader, feed)
    exchange.admin.update_org("Prod", new_name="Prod Renamed")
    assert exchange.feeds.validators(reader, exchange.feeds.get_feed(reader, "mine"))[0] != etag


@pytest.mark.parametrize("change", [
    {"new_name": "Reader"}, {"new_name": " Prod"}, {"new_name": "x" * 201}, {"sector": "pirates"},
    {"country": "Netherlands"},
])
def test_bad_or_clashing_organisation_changes_are_refused_and_change_nothing(exchange, ring, change):
    with pytest.raises((Conflict, InvalidParameter)):
        exchange.admin.update_org("Prod", **change)
    org = exchange.admin.get_org("Prod")
    assert (org.name, org.sector, org.country) == ("Prod", "operator", None)


def test_an_organisation_that_never_shared_is_deleted_with_its_users_tokens_and_feeds(exchange, ring):
    extra = make_member(exchange, "Typo Org")
    exchange.admin.set_membership("Typo Org", "ring", True, False, Tlp.GREEN)
    exchange.feeds.create_feed(extra.principal, "f", "plain-ip", ExportFilter())
    exchange.admin.delete_org("Typo Org")
    assert "Typo Org" not in {o.name for o in exchange.admin.list_orgs()}
    with pytest.raises(AuthenticationRequired):
        exchange.auth.authenticate(extra.token)
    with exchange.engine.connect() as conn:
        for table in ("users", "memberships", "feeds"):
            assert conn.execute(text(f"SELECT count(*) FROM {table} WHERE {'org_id'} = :o"),
                                {"o": extra.principal.org_id}).scalar_one() == 0


def test_an_organisation_that_shared_is_not_deleted(exchange, ring):
    with pytest.raises(Conflict, match="1 object versions"):
        exchange.admin.delete_org("Prod")
    assert exchange.auth.authenticate(ring["P"].token).org_id == ring["P"].principal.org_id


def test_an_organisation_whose_shared_objects_were_deleted_is_not_deleted_either(exchange, ring):
    """Its deletions (tombstones) stay attributed to it: a later organisation given the
    same id must not inherit them."""
    exchange.ingest.delete_object(ring["P"].principal, ring["cid"], ring["obj"]["id"], ALL_VERSIONS)
    with pytest.raises(Conflict, match="remove its memberships"):
        exchange.admin.delete_org("Prod")


def test_a_renamed_community_keeps_its_collection_and_its_feeds(exchange, ring):
    reader = ring["R"].principal
    by_name = exchange.feeds.create_feed(reader, "by-name", "plain-ip", ExportFilter(communities=("ring",)))
    by_id = exchange.feeds.create_feed(reader, "by-id", "plain-ip", ExportFilter(communities=(ring["cid"],)))
    etag = exchange.feeds.validators(reader, by_name)[0]
    community = exchange.admin.update_community("ring", new_name="ring-two", title="Ring Two",
                                                description="d", public=True)
    assert (community.name, community.collection_id, community.title, community.public) == (
        "ring-two", ring["cid"], "Ring Two", True)
    for name in ("by-name", "by-id"):
        feed = exchange.feeds.get_feed(reader, name)
        export, _, _ = exchange.feeds.render_feed(reader, feed)
        assert "".join(export.chunks) == "45.77.1.9\n"
    assert exchange.feeds.get_feed(reader, "by-name").filter_json != by_name.filter_json
    assert exchange.feeds.get_feed(reader, "by-id").filter_json == by_id.filter_json
    assert exchange.feeds.validators(reader, exchange.feeds.get_feed(reader, "by-name"))[0] != etag
    assert ",ring-two," in csv_rows(exchange, reader)[0]


def test_a_community_change_that_is_refused_changes_nothing(exchange, ring):
    exchange.admin.create_community("other")
    for change in ({"new_name": "other"}, {"new_name": "Ring"}, {"title": "t" * 201}):
        with pytest.raises((Conflict, InvalidParameter)):
            exchange.admin.update_community("ring", **change)
    assert exchange.admin.get_community("ring").collection_id == ring["cid"]


def test_a_community_made_public_shows_clear_objects_to_anonymous_readers(exchange, ring):
    clear = {**indicator("45.77.1.10"), "object_marking_refs": [
        "marking-definition--94868c89-83c2-464b-929b-a1a8aa3c8487"]}
    assert not exchange.ingest.add_objects(ring["P"].principal, ring["cid"], [clear]).failures
    anonymous = None
    assert ring["cid"] not in {c.collection_id for c, _ in exchange.query.collections(anonymous)}
    exchange.admin.update_community("ring", public=True)
    seen = exchange.query.manifest(anonymous, ring["cid"], ObjectFilter())
    assert [r.stix_id for r in seen.rows if r.stix_id.startswith("indicator--")] == [clear["id"]]
    exchange.admin.update_community("ring", public=False)
    assert ring["cid"] not in {c.collection_id for c, _ in exchange.query.collections(anonymous)}


def test_an_empty_community_is_deleted_and_a_new_one_inherits_nothing(exchange, ring):
    cid = make_community(exchange, "typo", Tlp.AMBER, {"Prod": (True, Tlp.RED)})
    obj = indicator("45.77.1.11")
    assert not exchange.ingest.add_objects(ring["P"].principal, cid, [obj]).failures
    exchange.ingest.delete_object(ring["P"].principal, cid, obj["id"], ALL_VERSIONS)  # a tombstone
    old_id = exchange.admin.get_community("typo").id
    exchange.admin.delete_community("typo")
    with pytest.raises(NotFound):
        exchange.admin.get_community("typo")
    with exchange.engine.connect() as conn:
        for table in ("stix_objects", "memberships", "tombstones", "observables", "observable_prefixes",
                      "ingest_statuses"):
            left = conn.execute(text(f"SELECT count(*) FROM {table} WHERE community_id = :c"), {"c": old_id})
            assert left.scalar_one() == 0, table


def test_a_community_with_shared_objects_or_a_feed_reading_it_is_not_deleted(exchange, ring):
    with pytest.raises(Conflict, match="1 object versions"):
        exchange.admin.delete_community("ring")
    make_community(exchange, "quiet", Tlp.AMBER, {"Reader": (False, Tlp.AMBER)})
    exchange.feeds.create_feed(ring["R"].principal, "q", "csv", ExportFilter(communities=("quiet",)))
    with pytest.raises(Conflict, match="'q'"):
        exchange.admin.delete_community("quiet")
    assert exchange.admin.get_community("quiet").name == "quiet"
