"""Every JSON request body is read as its JSON says, and refuses what it does not know."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from commonwatch.domain.markings import Tlp
from commonwatch.web.app import create_app

from support.factories import make_member


@pytest.fixture
def api(exchange):
    member = make_member(exchange, "Org A")
    exchange.admin.create_community("ring", default_tlp=Tlp.GREEN)
    exchange.admin.set_membership("Org A", "ring", True, True, Tlp.RED)
    with TestClient(create_app(exchange)) as client:
        client.headers["Authorization"] = f"Bearer {member.token}"
        yield client


GOOD = {
    "/api/feeds": {"name": "f1", "format": "plain-ip"},
    "/api/sightings": {"value": "198.51.100.7", "community": "ring"},
    "/api/lookup": {"values": ["198.51.100.7"]},
}
#: A misspelt option, and a value of the wrong JSON type, per endpoint.
TYPO = {"/api/feeds": "include_warninglistd", "/api/sightings": "anonymus", "/api/lookup": "value"}
LAX = {"/api/feeds": ("include_revoked", "yes"), "/api/sightings": ("count", "3"),
       "/api/lookup": ("values", "198.51.100.7")}


@pytest.mark.parametrize("path", sorted(GOOD))
def test_misspelt_options_and_lax_types_are_refused(api, exchange, path):
    typo = api.post(path, json={**GOOD[path], TYPO[path]: True})
    assert typo.status_code == 400 and TYPO[path] in typo.json()["description"]
    field, value = LAX[path]
    lax = api.post(path, json={**GOOD[path], field: value})
    assert lax.status_code == 400 and field in lax.json()["description"]
    assert exchange.feeds.list_feeds(exchange.auth.principal_for_user("org-a-user")) == []
    # the good body is read (a sighting of a value no indicator states: 404)
    assert api.post(path, json=GOOD[path]).status_code != 400
