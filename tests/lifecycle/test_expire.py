"""Scores and expiry of a member's own indicators, written as new versions."""

from __future__ import annotations

import orjson
import pytest

from commonwatch.domain.lifecycle import DAY_US
from commonwatch.domain.markings import (
    RECIPIENTS_EXTENSION_ID,
    RECIPIENTS_PROPERTY,
    TLP2_MARKING_BY_LEVEL,
    Tlp,
)
from commonwatch.domain.stix import format_timestamp, parse_timestamp
from commonwatch.errors import NotFound
from commonwatch.services.lifecycle import LifecycleService
from commonwatch.services.query import ObjectFilter, VersionSelector
from commonwatch.services.sightings import SightingService

from support.factories import indicator, new_version, ts

T0 = parse_timestamp(ts(0))  # valid_from of every indicator here
SHA = "[file:hashes.'SHA-256' = '" + "ab" * 32 + "']"


class Clock:
    def __init__(self, days: float) -> None:
        self.now = T0 + int(days * DAY_US)

    def __call__(self) -> int:
        return self.now


def versions(world, member, stix_id):
    page = world.exchange.query.objects(member.principal, world.cid, ObjectFilter(
        ids=(stix_id,), versions=VersionSelector(all=True, last=False)))
    return [orjson.loads(r.raw) for r in page.rows]


@pytest.fixture
def published(world):
    by = world.cert.identity
    objs = {
        "ip": indicator("203.0.113.1", tlp=Tlp.GREEN, created_by=by, confidence=80),
        "domain": indicator(pattern="[domain-name:value = 'bad.example']", tlp=Tlp.GREEN, created_by=by,
                            confidence=80),
        "hash": indicator(pattern=SHA, tlp=Tlp.AMBER, created_by=by, confidence=90,
                          valid_until=ts(10 * 86400)),
        "weak": indicator("203.0.113.2", tlp=Tlp.GREEN, created_by=by, confidence=10),
        "gone": indicator("203.0.113.3", tlp=Tlp.GREEN, created_by=by),
        "red": indicator("203.0.113.5", tlp=Tlp.RED, recipients=[world.op.identity], created_by=by),
        "strict": indicator("203.0.113.6", tlp=Tlp.AMBER_STRICT, created_by=by),
        "clear": indicator("203.0.113.7", tlp=Tlp.CLEAR, created_by=by, confidence=100),
    }
    world.add(world.cert, list(objs.values()))
    world.add(world.cert, [new_version(objs["gone"], 5, revoked=True)])
    objs["theirs"] = indicator("203.0.113.4", tlp=Tlp.GREEN, created_by=world.op.identity)
    world.add(world.op, [objs["theirs"]])
    return objs


def test_scores_list_only_own_indicators_with_their_expiry(world, published):
    svc = LifecycleService(world.exchange.query, world.exchange.ingest, clock=Clock(20))
    scores = {s.id: s for s in svc.scores(world.cert.principal, "main")}
    assert set(scores) == {o["id"] for k, o in published.items() if k != "theirs"}
    ip = scores[published["ip"]["id"]]
    assert (ip.kind, ip.value, ip.base) == ("ipv4-addr", "203.0.113.1", 80.0)
    assert ip.score == pytest.approx(80 * (1 - (20 / 47) ** (1 / 1.65)))
    assert 0 <= ip.expires_us - (T0 + 47 * DAY_US * 0.75 ** 1.65) <= 1000  # rounded up to the ms
    assert scores[published["hash"]["id"]].score == 0.0  # past the valid_until its producer set
    assert scores[published["hash"]["id"]].expires_us == T0 + 10 * DAY_US  # never later than that
    assert scores[published["gone"]["id"]].revoked and scores[published["gone"]["id"]].score == 0.0
    assert scores[published["weak"]["id"]].to_json()["expires_at"] == "2026-01-01T00:00:00.001Z"


def test_expire_writes_versions_once_and_others_receive_them(world, published):
    svc = LifecycleService(world.exchange.query, world.exchange.ingest, clock=Clock(60))
    dry = svc.expire(world.cert.principal, "main", dry_run=True)
    changes = {c.id: c for c in dry.changes}
    assert set(changes) == {published[k]["id"] for k in ("ip", "domain", "weak", "red", "strict", "clear")}
    assert all(changes[published[k]["id"]].revoked for k in ("ip", "weak", "red", "strict", "clear"))
    assert len(versions(world, world.cert, published["ip"]["id"])) == 1  # a dry run writes nothing

    report = svc.expire(world.cert.principal, "main")
    assert [c.to_json() for c in report.changes] == [c.to_json() for c in dry.changes] and not report.failures
    ip = changes[published["ip"]["id"]]
    assert ip.revoked and "revoke score" in ip.reason
    domain = changes[published["domain"]["id"]]
    assert not domain.revoked and domain.reason == "valid_until set by the decay policy"
    assert changes[published["weak"]["id"]].valid_until == "2026-01-01T00:00:00.001Z"  # > valid_from

    old, new = versions(world, world.op, published["ip"]["id"])
    assert new["revoked"] is True and new["valid_until"] == ip.valid_until
    assert new["modified"] == format_timestamp(T0 + 60 * DAY_US) and old == published["ip"]
    same = ("modified", "valid_until", "revoked")
    assert {k: v for k, v in new.items() if k not in same} == {k: v for k, v in old.items() if k not in same}
    match = world.exchange.lookup.lookup(world.op.principal, ["203.0.113.1"])[0].matches[0]
    assert match.revoked and match.valid_until == ip.valid_until

    # every TLP: the new version keeps its marking (and recipients), so it reaches exactly
    # those who saw the indicator
    def readers(key):
        value = published[key]["pattern"].split("'")[1]
        seen = {m.org: world.exchange.lookup.lookup(m.principal, [value])[0].matches
                for m in (world.cert, world.op, world.vendor, world.user)}
        assert all([x.revoked for x in found] == [True] for found in seen.values() if found)
        return {org for org, found in seen.items() if found}

    assert readers("strict") == {"CERT", "Hospital"}
    assert readers("clear") == {"CERT", "Operator", "Vendor", "Hospital"}
    assert readers("red") == {"CERT"}  # the Operator is named, but cleared for AMBER only
    world.exchange.admin.set_membership("Operator", "main", True, True, Tlp.RED)
    assert readers("red") == {"CERT", "Operator"}
    red_versions = versions(world, world.op, published["red"]["id"])
    assert red_versions[-1]["extensions"] == published["red"]["extensions"]

    again = svc.expire(world.cert.principal, "main")
    assert again.changes == [] and len(versions(world, world.cert, published["domain"]["id"])) == 2
    assert svc.expire(world.op.principal, "main").changes[0].id == published["theirs"]["id"]


def test_visible_sightings_refresh_and_hidden_ones_do_not(world, published):
    domain = published["domain"]
    LifecycleService(world.exchange.query, world.exchange.ingest, clock=Clock(60)).expire(
        world.cert.principal, "main")
    sightings = SightingService(world.exchange.query, world.exchange.lookup, world.exchange.ingest,
                                clock=Clock(100))
    sightings.sight(world.op.principal, "main", "www.bad.example", 7, last_seen=ts(100 * 86400))
    hidden = {"type": "sighting", "spec_version": "2.1",
              "id": "sighting--7d1b5d4e-1f1a-4c43-9d8a-3a1c0b0e5f21",
              "created": ts(110 * 86400), "modified": ts(110 * 86400), "sighting_of_ref": domain["id"],
              "last_seen": ts(110 * 86400), "object_marking_refs": [TLP2_MARKING_BY_LEVEL[Tlp.RED]],
              "extensions": {RECIPIENTS_EXTENSION_ID: {"extension_type": "property-extension",
                                                       RECIPIENTS_PROPERTY: [world.vendor.identity]}}}
    world.add(world.op, [hidden])  # TLP:RED for the Vendor only: the CERT cannot see it

    svc = LifecycleService(world.exchange.query, world.exchange.ingest, clock=Clock(120))
    assert svc.last_sightings(world.cert.principal, "main") == {domain["id"]: T0 + 100 * DAY_US}
    assert svc.last_sightings(world.op.principal, world.cid) == {domain["id"]: T0 + 110 * DAY_US}
    [score] = [s for s in svc.scores(world.cert.principal, "main") if s.id == domain["id"]]
    assert score.last_sighting_us == T0 + 100 * DAY_US
    assert score.score == pytest.approx(80 * (1 - (20 / 300) ** (1 / 2.1)))
    [change] = svc.expire(world.cert.principal, "main").changes
    assert change.id == domain["id"] and change.reason == "valid_until moved by the decay policy"
    assert parse_timestamp(change.valid_until) == score.expires_us > T0 + 200 * DAY_US


def test_the_producer_may_revoke_its_own_indicators_only(world, published):
    svc = LifecycleService(world.exchange.query, world.exchange.ingest, clock=Clock(30.5))
    for foreign in (published["theirs"]["id"], "indicator--00000000-0000-4000-8000-0000000000ff"):
        with pytest.raises(NotFound, match="no indicator of your organisation"):
            svc.expire(world.cert.principal, "main", revoke=[foreign])
    with pytest.raises(NotFound):
        svc.expire(world.cert.principal, "elsewhere")
    report = svc.expire(world.cert.principal, "main", revoke=[published["domain"]["id"]])
    [change] = [c for c in report.changes if c.id == published["domain"]["id"]]
    assert change.revoked and change.reason == "revoked on request"
    assert change.valid_until == format_timestamp(T0 + int(30.5 * DAY_US))
    assert svc.expire(world.cert.principal, "main", revoke=[published["domain"]["id"]]).changes == []
