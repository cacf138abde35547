"""A TAXII client without credentials discovers the public collections (and only
those); without any public community every TAXII resource still asks for credentials."""

from __future__ import annotations

from fastapi.testclient import TestClient

from commonwatch.domain.markings import Tlp
from commonwatch.web.app import create_app

from support.factories import indicator, make_community, make_member

TAXII = {"Accept": "application/taxii+json;version=2.1"}


def test_anonymous_discovery_lists_public_collections_only(exchange):
    member = make_member(exchange, "Org A")
    closed = make_community(exchange, "closed", Tlp.GREEN, {"Org A": (True, Tlp.RED)})
    client = TestClient(create_app(exchange))
    for path in ("/taxii2/", "/taxii2/api/", "/taxii2/api/collections/"):
        refused = client.get(path, headers=TAXII)
        assert refused.status_code == 401 and "www-authenticate" in refused.headers, path
    exchange.admin.create_community("open", default_tlp=Tlp.CLEAR, public=True)
    opened = exchange.admin.get_community("open").collection_id
    exchange.admin.set_membership("Org A", "open", True, True, Tlp.RED)
    assert not exchange.ingest.add_objects(member.principal, opened, [
        indicator("198.51.100.30", tlp=Tlp.CLEAR), indicator("198.51.100.31", tlp=Tlp.GREEN)]).failures
    assert client.get("/taxii2/", headers=TAXII).json()["api_roots"] == ["http://testserver/taxii2/api/"]
    assert client.get("/taxii2/api/", headers=TAXII).status_code == 200
    listed = client.get("/taxii2/api/collections/", headers=TAXII).json()["collections"]
    assert [(c["id"], c["can_read"], c["can_write"]) for c in listed] == [(opened, True, False)]
    objects = client.get(f"/taxii2/api/collections/{opened}/objects/", headers=TAXII).json()["objects"]
    patterns = [o["pattern"] for o in objects if o["type"] == "indicator"]
    assert patterns == ["[ipv4-addr:value = '198.51.100.30']"]  # CLEAR only
    hidden = client.get(f"/taxii2/api/collections/{closed}/objects/", headers=TAXII)
    assert hidden.status_code == 401  # the closed one answers as before
    # a member sees both
    auth = {**TAXII, "Authorization": f"Bearer {member.token}"}
    ids = {c["id"] for c in client.get("/taxii2/api/collections/", headers=auth).json()["collections"]}
    assert ids == {opened, closed}
