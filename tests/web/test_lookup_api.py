"""The lookup JSON API over HTTP: single and bulk forms, auth and bad input."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from commonwatch.domain.markings import Tlp
from commonwatch.web.app import create_app

from support.factories import indicator, make_member


@pytest.fixture
def world(exchange):
    cert = make_member(exchange, "CERT", "government")
    op = make_member(exchange, "Operator", "operator")
    exchange.admin.create_community("main")
    exchange.admin.set_membership("CERT", "main", True, True, Tlp.AMBER)
    exchange.admin.set_membership("Operator", "main", True, False, Tlp.GREEN)
    cid = exchange.admin.get_community("main").collection_id
    green = indicator("203.0.113.1", tlp=Tlp.GREEN)
    amber = indicator("203.0.113.2", tlp=Tlp.AMBER)
    assert not exchange.ingest.add_objects(cert.principal, cid, [green, amber]).failures
    with TestClient(create_app(exchange)) as client:
        yield client, cert, op, green, amber


def _auth(member):
    return {"Authorization": f"Bearer {member.token}"}


def test_single_and_bulk_lookups_answer_per_value(world):
    client, cert, op, green, amber = world
    one = client.get("/api/lookup", params={"value": "203.0.113.1"}, headers=_auth(op))
    assert one.status_code == 200
    [result] = one.json()["results"]
    assert result["found"] and [m["id"] for m in result["matches"]] == [green["id"]]
    bulk = client.post("/api/lookup", json={"values": ["203.0.113.1", "203.0.113.2", "x y"]},
                       headers=_auth(op))
    got = bulk.json()["results"]
    assert [r.get("found") for r in got] == [True, False, None]  # AMBER is above Operator's GREEN
    assert "error" in got[2]
    as_cert = client.post("/api/lookup", json={"values": ["203.0.113.2"]}, headers=_auth(cert)).json()
    assert as_cert["results"][0]["matches"][0]["id"] == amber["id"]


def test_anonymous_and_wrong_tokens(world):
    client, *_ = world
    anonymous = client.get("/api/lookup", params={"value": "203.0.113.1"})
    assert anonymous.status_code == 200 and anonymous.json()["results"][0]["found"] is False
    wrong = client.get("/api/lookup", params={"value": "203.0.113.1"},
                       headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401


def test_bad_lookup_requests_are_400s_that_say_why(world):
    client, cert, op, *_ = world
    none = client.get("/api/lookup", headers=_auth(op))
    assert none.status_code == 400 and "value" in none.json()["description"]
    broken = client.post("/api/lookup", content=b"{not json", headers=_auth(op) | {
        "Content-Type": "application/json"})
    assert broken.status_code == 400
    too_many = client.post("/api/lookup", json={"values": ["1.1.1.1"] * 10_001}, headers=_auth(op))
    assert too_many.status_code == 400 and "10000" in too_many.text.replace(",", "")
