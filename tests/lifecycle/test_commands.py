"""``commonwatch sight`` and ``commonwatch lifecycle``, and ``POST /api/sightings``."""

from __future__ import annotations

import time

import orjson
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from commonwatch.domain.markings import TLP2_MARKING_BY_LEVEL, Tlp
from commonwatch.web.app import create_app

from support.factories import indicator, make_member, ts

RECENT = int(time.time()) - 1_767_225_600 - 86_400  # ts() offset of one day ago


def test_sight_and_lifecycle_commands(database_url, world):
    old = indicator("203.0.113.50", tlp=Tlp.GREEN, created_by=world.cert.identity, confidence=70)
    fresh = indicator(pattern="[domain-name:value = 'fresh.example']", tlp=Tlp.GREEN, created=RECENT,
                      created_by=world.cert.identity)
    world.add(world.cert, [old, fresh])
    runner = CliRunner()

    def cli(*args, code=0):
        result = runner.invoke(main_app(), ["--database-url", database_url, *args])
        assert result.exit_code == code, result.output
        return result.output

    sight = ["sight", "--community", "main", "--user", world.op.user]
    shown = orjson.loads(cli(*sight, "203.0.113.50", "--count", "3", "--where", "edge", "--json",
                             "--first-seen", ts(0), "--last-seen", ts(60)))
    [made] = shown["sightings"]
    assert made["indicator"] == old["id"] and made["matched"] == "exact"
    assert made["sighting"]["count"] == 3 and made["sighting"]["description"] == "edge"
    table = cli(*sight, "www.fresh.example", "--anonymous", "--tlp", "amber", "--first-seen", ts(RECENT))
    assert "TLP:AMBER" in table and "subdomain-of" in table and fresh["id"][:20] in table
    assert "no indicator you can see" in cli(*sight, "192.0.2.1", code=3)
    assert "count must be" in cli(*sight, "203.0.113.50", "--count", "-2", code=2)
    assert "unknown TLP" in cli(*sight, "203.0.113.50", "--tlp", "beige", code=2)
    assert "ghost" in cli("sight", "--community", "main", "--user", "ghost", "203.0.113.50", code=3)

    life = ["--community", "main", "--user", world.cert.user]
    scores = orjson.loads(cli("lifecycle", "scores", *life, "--json"))["indicators"]
    by_id = {s["id"]: s for s in scores}
    assert set(by_id) == {old["id"], fresh["id"]}
    assert by_id[old["id"]]["score"] == 0.0 and 49 < by_id[fresh["id"]]["score"] <= 50
    assert by_id[fresh["id"]]["last_sighting"] is not None
    assert "fresh.example" in cli("lifecycle", "scores", *life)

    dry = cli("lifecycle", "expire", *life, "--dry-run")
    assert "would write 2 new version(s)" in dry
    done = orjson.loads(cli("lifecycle", "expire", *life, "--json"))
    assert {(c["id"], c["revoked"]) for c in done["changes"]} == {(old["id"], True), (fresh["id"], False)}
    assert "wrote 0 new version(s)" in cli("lifecycle", "expire", *life)
    unknown = "indicator--00000000-0000-4000-8000-000000000009"
    refused = cli("lifecycle", "expire", *life, "--revoke", unknown, code=3)
    assert "no indicator of your organisation" in refused


def main_app():
    from commonwatch.cli.main import app

    return app


def test_sightings_api(world):
    ind = indicator("203.0.113.60", tlp=Tlp.AMBER, created_by=world.cert.identity)
    world.add(world.cert, [ind])
    reader = make_member(world.exchange, "Readers", "research", role="reader")
    world.exchange.admin.set_membership("Readers", "main", True, True, Tlp.AMBER)
    auth = {"Authorization": f"Bearer {world.op.token}"}
    body = {"value": "203.0.113.60", "community": "main", "count": 2, "tlp": "red"}
    with TestClient(create_app(world.exchange)) as client:
        made = client.post("/api/sightings", json=body, headers=auth)
        assert made.status_code == 201, made.text
        [s] = made.json()["sightings"]
        assert s["indicator"] == ind["id"] and s["sighting"]["count"] == 2
        assert s["sighting"]["object_marking_refs"] == [TLP2_MARKING_BY_LEVEL[Tlp.RED]]

        assert client.post("/api/sightings", json=body).status_code == 401
        hidden = client.post("/api/sightings", json={**body, "value": "203.0.113.61"}, headers=auth)
        assert hidden.status_code == 404 and "no indicator you can see" in hidden.json()["description"]
        bad = client.post("/api/sightings", json={**body, "count": -1}, headers=auth)
        assert bad.status_code == 400 and "count" in bad.json()["description"]
        tlp = client.post("/api/sightings", json={**body, "tlp": "beige"}, headers=auth)
        assert tlp.status_code == 400 and "unknown TLP" in tlp.json()["description"]
        stamp = client.post("/api/sightings", json={**body, "first_seen": "today"}, headers=auth)
        assert stamp.status_code == 400 and "first_seen" in stamp.json()["description"]
        denied = client.post("/api/sightings", json=body, headers={"Authorization": f"Bearer {reader.token}"})
        assert denied.status_code == 403
    answer = world.exchange.lookup.lookup(world.cert.principal, ["203.0.113.60"])[0]
    assert answer.sightings == 2  # the TLP:RED sighting is addressed to the CERT
