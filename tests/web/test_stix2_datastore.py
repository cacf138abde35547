"""The stix2 library's TAXII datastore (stix2 3.0.2 on taxii2-client 2.3.0) against a real server.

The datastore is what most Python consumers use (OpenCTI connectors, scripts): it posts
STIX bundles through ``Collection.add_objects`` and reads with ``as_pages`` over
``get_objects``, pushing the ``type``/``id``/``version``/``added_after`` filters to the
server. The server's page size is cut to 10 here, so every ``query()`` pages.

Library side: the sink posts a STIX *bundle* (with ``type`` and ``id``) where TAXII 2.1
§3.7 expects an envelope (``objects``, ``more``, ``next``); the server reads its
``objects`` and ignores the rest, which every test below relies on.
"""

from __future__ import annotations

import pytest
import stix2
from requests.exceptions import HTTPError
from stix2 import Filter, TAXIICollectionSink, TAXIICollectionSource, TAXIICollectionStore
from stix2.datastore import DataSourceError
from taxii2client.v21 import Collection

from commonwatch.config import load_settings
from commonwatch.domain.markings import (
    RECIPIENTS_EXTENSION_ID,
    RECIPIENTS_PROPERTY,
    SYSTEM_IDENTITY_ID,
    Tlp,
)

from support.factories import make_community, make_member

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
PAGE = 10
PUBLISHED = (SYSTEM_IDENTITY_ID, RECIPIENTS_EXTENSION_ID)  # what the exchange publishes everywhere


@pytest.fixture
def settings(database_url):
    return load_settings(environ={}, database_url=database_url,
                         default_page_size=PAGE, max_page_size=PAGE)


@pytest.fixture
def federation(exchange, live_server):
    """Alice writes (cleared RED), Bob reads (cleared GREEN), Carol writes (cleared RED)."""
    alice = make_member(exchange, "Alice Telecom")
    bob = make_member(exchange, "Bob CERT", sector="government")
    carol = make_member(exchange, "Carol Bank", sector="vendor")
    cid = make_community(exchange, "sharing", Tlp.GREEN, {
        alice.org: (True, Tlp.RED), bob.org: (False, Tlp.GREEN), carol.org: (True, Tlp.RED)},
        "Sharing", "test community")
    url = f"{live_server.url}/taxii2/api/collections/{cid}/"

    def store(member):
        """A read-write datastore for a writer, the read-only source for a reader."""
        coll = Collection(url, user=member.user, password=member.token)
        return TAXIICollectionStore(coll) if coll.can_write else TAXIICollectionSource(coll)

    return alice, bob, carol, url, store


def own(objs):
    """The objects of a query, without what the exchange itself publishes."""
    return [o for o in objs if o["id"] not in PUBLISHED]


def ind(value, **kw):
    return stix2.Indicator(name=f"ind {value}", pattern=f"[ipv4-addr:value = '{value}']",
                           pattern_type="stix", indicator_types=["malicious-activity"], **kw)


def red_for(value, recipients):
    return ind(value, object_marking_refs=[stix2.TLP_RED], extensions={RECIPIENTS_EXTENSION_ID: {
        "extension_type": "property-extension", RECIPIENTS_PROPERTY: recipients}})


def test_add_then_get_returns_equal_objects(federation):
    alice, _, _, _, store = federation
    ds = store(alice)
    me = stix2.Identity(name="Alice Telecom SOC", identity_class="organization")
    mal = stix2.Malware(name="Mirai", is_family=True, malware_types=["bot"], created_by_ref=me.id)
    i = ind("198.51.100.7", created_by_ref=me.id, object_marking_refs=[stix2.TLP_AMBER])
    rel = stix2.Relationship(i, "indicates", mal, created_by_ref=me.id)
    sight = stix2.Sighting(sighting_of_ref=i.id, where_sighted_refs=[me.id], count=3)
    ip = stix2.IPv4Address(value="198.51.100.7", object_marking_refs=[stix2.TLP_GREEN])
    red = red_for("198.51.100.8", [alice.identity])
    objs = [me, mal, i, rel, sight, ip, red]
    ds.add(objs)
    for obj in objs:
        got = ds.get(obj.id)
        assert got == obj and type(got) is type(obj)
    assert ds.get(f"indicator--{'0' * 8}-0000-4000-8000-{'0' * 12}") is None
    everything = ds.query()
    assert sorted(o.id for o in own(everything)) == sorted(o.id for o in objs)
    assert sorted(o.id for o in everything if o not in own(everything)) == sorted(PUBLISHED)


def test_all_versions_oldest_first_and_version_filters(federation):
    alice, _, _, _, store = federation
    ds = store(alice)
    v1 = ind("203.0.113.1", object_marking_refs=[stix2.TLP_AMBER])
    v2 = v1.new_version(name="second")
    v3 = v2.new_version(name="third", confidence=80)
    ds.add(v1)
    ds.add([v2, v3])
    assert ds.all_versions(v1.id) == [v1, v2, v3]
    assert ds.get(v1.id) == v3
    assert ds.query([Filter("id", "=", v1.id)]) == [v3]
    assert ds.query([Filter("id", "=", v1.id), Filter("version", "=", "first")]) == [v1]
    assert ds.query([Filter("id", "=", v1.id), Filter("version", "=", "first,last")]) == [v1, v3]
    stamp = stix2.utils.format_datetime(v2.modified)
    assert ds.query([Filter("version", "=", stamp)]) == [v2]
    # a filter the server does not take is applied locally, over all versions
    assert ds.query([Filter("version", "=", "all"), Filter("name", "=", "second")]) == [v2]


def test_filters_pushed_to_the_server(federation):
    alice, _, carol, url, store = federation
    ds = store(alice)
    inds = [ind(f"192.0.2.{n}") for n in range(3)]
    mal = stix2.Malware(name="Emotet", is_family=True)
    ds.add(inds + [mal])
    carol_ds = store(carol)
    later = [ind("192.0.2.50"), stix2.Malware(name="Qakbot", is_family=True)]
    carol_ds.add(later)

    assert sorted(o.id for o in ds.query([Filter("type", "=", "indicator")])) == sorted(
        o.id for o in inds + later[:1])
    assert sorted(o.id for o in ds.query([Filter("type", "=", "malware")])) == sorted(
        [mal.id, later[1].id])
    both = ds.query([Filter("type", "=", ["malware", "indicator"])])
    assert len(both) == 6
    assert ds.query([Filter("id", "=", inds[1].id)]) == [inds[1]]
    assert ds.query([Filter("type", "=", "malware"), Filter("id", "=", inds[1].id)]) == []

    manifest = Collection(url, user=alice.user, password=alice.token).get_manifest(
        type="malware")["objects"]
    added = {m["id"]: m["date_added"] for m in manifest}
    after_mal = ds.query([Filter("added_after", "=", added[mal.id])])
    assert [o.id for o in after_mal] == [o.id for o in later]
    # a local filter on a property combined with a pushed type filter
    assert ds.query([Filter("type", "=", "malware"), Filter("name", "=", "Qakbot")]) == [later[1]]


def test_relationships_and_related_to(federation):
    alice, bob, _, _, store = federation
    ds = store(alice)
    mal = stix2.Malware(name="TrickBot", is_family=True)
    actor = stix2.ThreatActor(name="Wizard Spider", threat_actor_types=["crime-syndicate"],
                              object_marking_refs=[stix2.TLP_AMBER])
    i1, i2 = ind("198.18.0.1"), ind("198.18.0.2")
    rels = [stix2.Relationship(i1, "indicates", mal), stix2.Relationship(i2, "indicates", mal),
            stix2.Relationship(actor, "uses", mal, object_marking_refs=[stix2.TLP_AMBER])]
    ds.add([mal, actor, i1, i2] + rels)
    assert sorted(r.id for r in ds.relationships(mal)) == sorted(r.id for r in rels)
    assert ds.relationships(mal, "uses") == [rels[2]]
    assert ds.relationships(i1, source_only=True) == [rels[0]]
    assert ds.relationships(i1, target_only=True) == []
    assert sorted(o.id for o in ds.related_to(mal)) == sorted([actor.id, i1.id, i2.id])
    assert ds.related_to(mal, "uses") == [actor]
    assert ds.related_to(i2) == [mal]
    assert ds.creator_of(mal) is None
    # Bob (GREEN) sees the GREEN relationships only, and never the AMBER actor
    bob_ds = store(bob)
    assert sorted(r.id for r in bob_ds.relationships(mal)) == sorted(r.id for r in rels[:2])
    assert sorted(o.id for o in bob_ds.related_to(mal)) == sorted([i1.id, i2.id])
    assert bob_ds.get(actor.id) is None


def test_visibility_of_red_and_amber_through_the_datastore(federation):
    alice, bob, carol, _, store = federation
    ds = store(alice)
    green = ind("203.0.113.10", object_marking_refs=[stix2.TLP_GREEN])
    amber = ind("203.0.113.11", object_marking_refs=[stix2.TLP_AMBER])
    red_carol = red_for("203.0.113.12", [carol.identity])
    red_alone = red_for("203.0.113.13", [alice.identity])
    ds.add([green, amber, red_carol, red_alone])
    ds.add(red_carol.new_version(name="red, second version"))
    expect = [(alice, [green, amber, red_carol, red_alone]), (carol, [green, amber, red_carol]),
              (bob, [green])]
    for member, visible in expect:
        mds, seen = store(member), {o.id for o in visible}
        ids = {o.id for o in own(mds.query([Filter("type", "=", "indicator")]))}
        assert ids == seen, member.org
        for obj in [green, amber, red_carol, red_alone]:
            assert (mds.get(obj.id) is not None) == (obj.id in seen), (member.org, obj.name)
            n_versions = (2 if obj is red_carol else 1) if obj.id in seen else 0
            assert len(mds.all_versions(obj.id)) == n_versions, (member.org, obj.name)
        versions = mds.query([Filter("version", "=", "all")])
        assert sorted(o.id for o in own(versions)) == sorted(
            o.id for o in visible for _ in range(2 if o is red_carol else 1))
    assert {o.name for o in store(carol).all_versions(red_carol.id)} == {red_carol.name,
                                                                        "red, second version"}


def test_invalid_object_is_a_failure_in_the_status(federation):
    alice, _, _, _, store = federation
    ds = store(alice)
    coll = ds.sink.collection
    statuses = []
    post = coll.add_objects
    coll.add_objects = lambda *a, **kw: statuses.append(post(*a, **kw)) or statuses[-1]
    # stix2 refuses a pattern that does not parse even from a dict, so send one that
    # stix2-patterns accepts and STIX 2.1 forbids: "IPv4-Addr" names no STIX type.
    bad = {"type": "indicator", "spec_version": "2.1",
           "id": f"indicator--{'1' * 8}-1111-4111-8111-{'1' * 12}",
           "created": "2026-01-01T00:00:00.000Z", "modified": "2026-01-01T00:00:00.000Z",
           "pattern": "[IPv4-Addr:value = '192.0.2.77']", "pattern_type": "stix",
           "valid_from": "2026-01-01T00:00:00.000Z"}
    good = ind("192.0.2.78")
    ds.add(stix2.Bundle(bad, good))
    # stix2's TAXIICollectionSink.add discards the status: the caller never learns of the
    # failure unless it inspects Collection.add_objects' return value itself.
    (status,) = statuses
    assert status.status == "complete"
    assert (status.success_count, status.failure_count, status.pending_count) == (1, 1, 0)
    (failure,) = status.failures
    assert failure["id"] == bad["id"] and "pattern" in failure["message"]
    assert [s["id"] for s in status.successes] == [good.id]
    assert ds.get(bad["id"]) is None and ds.get(good.id) == good


def test_bad_token_and_read_only_member(federation, exchange):
    alice, bob, _, url, store = federation
    for build in (TAXIICollectionStore, TAXIICollectionSource, TAXIICollectionSink):
        with pytest.raises(DataSourceError, match="could not be reached") as caught:
            build(Collection(url, user=alice.user, password=alice.token + "x"))
        response = caught.value.root_exception.response
        assert response.status_code == 401 and "WWW-Authenticate" in response.headers
        assert response.json()["http_status"] == "401"
    # Bob may read but not write: the sink refuses at construction, the source works
    with pytest.raises(DataSourceError, match="does not have write access"):
        TAXIICollectionSink(Collection(url, user=bob.user, password=bob.token))
    assert own(TAXIICollectionSource(Collection(url, user=bob.user, password=bob.token)).query()) == []
    # a token revoked after the datastore was built: 401 on the next read, not a crash
    ds = store(alice)
    for token, _ in exchange.admin.list_tokens(alice.user):
        exchange.admin.revoke_token(token.id)
    with pytest.raises(HTTPError) as caught:
        ds.query([Filter("type", "=", "indicator")])
    assert caught.value.response.status_code == 401
    with pytest.raises(DataSourceError) as caught:
        ds.get(f"indicator--{'2' * 8}-2222-4222-8222-{'2' * 12}")
    assert caught.value.root_exception.response.status_code == 401


def test_query_pages_through_more_than_a_page(federation):
    alice, bob, _, _, store = federation
    ds = store(alice)
    posted = [ind(f"10.9.{n // 250}.{n % 250}") for n in range(4 * PAGE + 3)]
    ds.add(stix2.Bundle(posted))
    versions = [o.new_version(name=f"{o.name} v2") for o in posted[:PAGE + 1]]
    ds.add(stix2.Bundle(versions))
    coll, calls = ds.source.collection, []
    fetch = coll.get_objects
    coll.get_objects = lambda **kw: calls.append(kw) or fetch(**kw)
    got = ds.query([Filter("type", "=", "indicator")])
    assert len(got) == len(posted) and len({o.id for o in got}) == len(posted)
    assert len(calls) == 5 and [c["limit"] for c in calls] == [5000] + [PAGE] * 4  # cut to the server's
    assert {o.id: o.name for o in got} == {o.id: o.name for o in versions + posted[PAGE + 1:]}
    every = ds.query([Filter("type", "=", "indicator"), Filter("version", "=", "all")])
    assert len(every) == len(posted) + len(versions)
    # stix2.utils.deduplicate keys on (id, modified): no version was lost or doubled
    assert len({(o.id, o.modified) for o in every}) == len(every)
    # small pages asked by the client, and a reader seeing a subset
    small = TAXIICollectionSource(ds.source.collection, items_per_page=3)
    assert len(small.query([Filter("type", "=", "indicator")])) == len(posted)
    assert len(store(bob).query([Filter("type", "=", "indicator")])) == len(posted)


def test_an_sco_posted_by_two_members(federation):
    alice, bob, carol, _, store = federation
    green = stix2.IPv4Address(value="192.0.2.200", object_marking_refs=[stix2.TLP_GREEN])
    amber = stix2.IPv4Address(value="192.0.2.200", object_marking_refs=[stix2.TLP_AMBER])
    assert green.id == amber.id
    store(alice).add(green)
    store(carol).add(amber)
    ds, bob_ds = store(alice), store(bob)
    assert ds.get(green.id) == amber  # the last version is Carol's
    assert len(ds.source.collection.object_versions(green.id)["versions"]) == 2
    # stix2's deduplicate keys an object without modified/created on its id alone, so
    # all_versions folds the two SCO versions into one (a library limitation)
    assert ds.all_versions(green.id) == [amber]
    # Bob (GREEN) never sees Carol's AMBER version, and his "last" is Alice's
    assert bob_ds.get(green.id) == green
    assert bob_ds.query([Filter("version", "=", "all"), Filter("type", "=", "ipv4-addr")]) == [green]
    assert len(bob_ds.collection.object_versions(green.id)["versions"]) == 1
