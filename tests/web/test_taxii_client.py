"""Round trip through every call of the real taxii2-client 2.3.0 against a real server."""

from __future__ import annotations

import pytest
from taxii2client.v21 import ApiRoot, Collection, Server, as_pages

from commonwatch.domain.markings import Tlp

from support.factories import indicator, make_member, new_version

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture
def federation(exchange):
    alice = make_member(exchange, "Alice Telecom")
    bob = make_member(exchange, "Bob CERT", sector="government")
    exchange.admin.create_community("sharing", "Sharing", "test community", Tlp.AMBER)
    exchange.admin.set_membership(alice.org, "sharing", True, True, Tlp.RED)
    exchange.admin.set_membership(bob.org, "sharing", True, False, Tlp.GREEN)
    return alice, bob, exchange.admin.get_community("sharing").collection_id


def test_discovery_api_root_and_collections(live_server, federation):
    alice, bob, cid = federation
    server = Server(f"{live_server.url}/taxii2/", user=alice.user, password=alice.token)
    assert server.title == "CommonWatch"
    assert server.default.url == f"{live_server.url}/taxii2/api/"
    root = server.api_roots[0]
    assert root.versions == ["application/taxii+json;version=2.1"]
    assert root.max_content_length > 0
    (coll,) = root.collections
    assert coll.id == cid and coll.can_read and coll.can_write
    bob_root = ApiRoot(f"{live_server.url}/taxii2/api/", user=bob.user, password=bob.token)
    (bob_coll,) = bob_root.collections
    assert bob_coll.can_read and not bob_coll.can_write


def test_add_get_versions_manifest_delete(live_server, federation):
    alice, bob, cid = federation
    url = f"{live_server.url}/taxii2/api/collections/{cid}/"
    coll = Collection(url, user=alice.user, password=alice.token)
    first = indicator(tlp=Tlp.GREEN, created=10)
    second = new_version(first, 20, name="renamed")
    secret = indicator(tlp=Tlp.AMBER, created=30)
    status = coll.add_objects({"objects": [first, second, secret]})
    assert status.status == "complete"
    assert status.success_count == 3 and status.failure_count == 0
    polled = ApiRoot(f"{live_server.url}/taxii2/api/", user=alice.user,
                     password=alice.token).get_status(status.id)
    assert polled.success_count == 3

    envelope = coll.get_objects()
    ids = {o["id"]: o for o in envelope["objects"]}
    assert ids[first["id"]]["name"] == "renamed"  # version=last by default
    assert secret["id"] in ids

    one = coll.get_object(first["id"], version="first")
    assert [o["modified"] for o in one["objects"]] == [first["modified"]]
    versions = coll.object_versions(first["id"])
    assert versions["versions"] == [first["modified"], second["modified"]]

    manifest = coll.get_manifest()
    assert {m["id"] for m in manifest["objects"]} == {first["id"], secret["id"]} | {
        m["id"] for m in manifest["objects"] if m["id"].startswith(("identity", "extension"))}

    bob_coll = Collection(url, user=bob.user, password=bob.token)
    bob_ids = {o["id"] for o in bob_coll.get_objects()["objects"]}
    assert first["id"] in bob_ids and secret["id"] not in bob_ids  # AMBER > Bob's GREEN

    coll.delete_object(first["id"], version=first["modified"])
    assert coll.object_versions(first["id"])["versions"] == [second["modified"]]
    coll.delete_object(first["id"])
    assert first["id"] not in {o["id"] for o in coll.get_objects()["objects"]}


def test_as_pages_walks_every_object_once(live_server, federation):
    alice, _, cid = federation
    coll = Collection(f"{live_server.url}/taxii2/api/collections/{cid}/",
                      user=alice.user, password=alice.token)
    posted = [indicator(created=i) for i in range(57)]
    coll.add_objects({"objects": posted})
    seen = []
    for page in as_pages(coll.get_objects, per_request=10, type="indicator"):
        seen.extend(o["id"] for o in page.get("objects", []))
    assert sorted(seen) == sorted(o["id"] for o in posted)
    manifest_seen = []
    for page in as_pages(coll.get_manifest, per_request=7, type="indicator"):
        manifest_seen.extend(m["id"] for m in page.get("objects", []))
    assert sorted(manifest_seen) == sorted(seen)


def test_failures_are_reported_in_status(live_server, federation):
    alice, _, cid = federation
    coll = Collection(f"{live_server.url}/taxii2/api/collections/{cid}/",
                      user=alice.user, password=alice.token)
    good = indicator()
    bad = indicator(pattern="[ipv4-addr:value = ")
    status = coll.add_objects({"objects": [good, bad, good]})
    assert status.success_count == 2 and status.failure_count == 1
    (failure,) = status.failures
    assert failure["id"] == bad["id"] and "pattern" in failure["message"]


def test_status_polling_and_paged_versions(live_server, federation):
    alice, _, cid = federation
    coll = Collection(f"{live_server.url}/taxii2/api/collections/{cid}/",
                      user=alice.user, password=alice.token)
    base = indicator(created=1)
    history = [base] + [new_version(base, m, name=f"v{m}") for m in range(2, 8)]
    status = coll.add_objects({"objects": history}, wait_for_completion=False)
    status.wait_until_final(poll_interval=0.1, timeout=5)
    status.refresh()
    assert status.status == "complete" and status.success_count == 7 and status.pending_count == 0
    assert bool(status)  # taxii2-client: a completed status is truthy
    seen = []
    for page in as_pages(coll.object_versions, 3, base["id"]):
        seen.extend(page.get("versions", []))
    assert seen == [o["modified"] for o in history]
    root = ApiRoot(f"{live_server.url}/taxii2/api/", user=alice.user, password=alice.token)
    root.refresh()
    assert root.title == "CommonWatch" and [c.id for c in root.collections] == [cid]
    coll.refresh()
    assert coll.title == "Sharing" and coll.media_types == ["application/stix+json;version=2.1"]
