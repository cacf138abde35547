"""The detection service and ``commonwatch detect`` on both database backends.

Indicators are read with the caller's clearance only: hidden (RED without being a
recipient, above the member's max TLP), revoked, expired and non-STIX indicators never
alert. Sightings are aggregated per indicator and window and published as the caller.
"""

from __future__ import annotations

import orjson
import pytest
from typer.testing import CliRunner

from commonwatch.cli.main import app
from commonwatch.clock import now_us
from commonwatch.domain.markings import Tlp
from commonwatch.domain.timestamps import parse_timestamp
from commonwatch.services.detect import DetectOptions, DetectService
from commonwatch.services.exchange import Exchange
from commonwatch.services.query import ObjectFilter, VersionSelector

from .test_telemetry import DATA
from support.factories import Member, indicator, make_member, new_version, ts

EVE = str(DATA / "surevego_eve.json")


@pytest.fixture
def world(exchange: Exchange) -> dict[str, object]:
    cert = make_member(exchange, "National CERT", "government")
    north = make_member(exchange, "North Telecom", "operator")
    community = exchange.admin.create_community("isac", default_tlp=Tlp.GREEN)
    exchange.admin.set_membership("National CERT", "isac", True, True, Tlp.RED)
    exchange.admin.set_membership("North Telecom", "isac", True, True, Tlp.AMBER)
    cid = community.collection_id
    by = cert.identity
    revoked = indicator("10.0.0.1", created_by=by, pattern="[domain-name:value = 'deb.debian.org']")
    objects = [
        indicator(created_by=by, oid="indicator--00000000-0000-4000-8000-000000000001", confidence=80,
                  pattern="[ipv4-addr:value = '172.21.3.254']"),
        indicator(created_by=by, tlp=Tlp.RED, recipients=[],
                  pattern="[domain-name:value = 'deb.debian.org']"),
        indicator(created_by=by, tlp=Tlp.AMBER_STRICT,
                  pattern="[domain-name:value = 'prod.debian.map.fastly.net']"),
        indicator(created_by=by, valid_until=ts(1), pattern="[domain-name:value = 'deb.debian.org']"),
        revoked, new_version(revoked, 5, revoked=True),
        indicator(created_by=by, oid="indicator--00000000-0000-4000-8000-000000000002",
                  pattern="[domain-name:value = 'security.debian.org'] FOLLOWEDBY "
                          "[url:value LIKE 'http://deb.debian.org/%']"),
    ]
    report = exchange.ingest.add_objects(cert.principal, cid, objects)
    assert not report.failures, report.failures
    return {"cert": cert, "north": north, "cid": cid, "objects": objects}


def _service(exchange: Exchange) -> DetectService:
    return DetectService(exchange.query, exchange.ingest,
                         lambda: {o.identity_id: (o.name, o.sector) for o in exchange.admin.list_orgs()})


def _run(exchange: Exchange, member: Member, sources: list[str], **options: object) -> tuple[list, object]:
    alerts: list[dict] = []
    summary = _service(exchange).run(member.principal, sources, DetectOptions(community="isac", **options),
                                     alerts.append)
    return alerts, summary


def test_alerts_only_for_active_visible_indicators(exchange: Exchange, world: dict) -> None:
    alerts, summary = _run(exchange, world["north"], [EVE])
    found = {a["indicator"] for a in alerts}
    assert found == {"indicator--00000000-0000-4000-8000-000000000001",
                     "indicator--00000000-0000-4000-8000-000000000002"}
    assert summary.indicators == 2 and summary.skipped_indicators == {"past valid_until": 1, "revoked": 1}
    assert summary.events == 265 and summary.problems.total == 0
    single = next(a for a in alerts if a["indicator"].endswith("1"))
    assert single["producer"] == "a member of sector government"  # CERT's identity is not visible
    assert single["tlp"] == "TLP:GREEN" and single["confidence"] == 80
    assert single["event"]["dest_ip"] == "172.21.3.254" and single["community"] == "isac"
    assert single["event_kind"].startswith("suricata:") and single["time"].endswith("Z")
    multi = next(a for a in alerts if a["indicator"].endswith("2"))
    assert len(multi["events"]) == 2 and multi["tlp"] == "TLP:GREEN"
    # The producer itself sees everything it produced (RED, AMBER+STRICT) as its own.
    alerts, _ = _run(exchange, world["cert"], [EVE])
    assert {a["producer"] for a in alerts} == {"National CERT"}
    assert len({a["indicator"] for a in alerts}) == 4


def test_producer_named_when_its_identity_is_visible(exchange: Exchange, world: dict) -> None:
    cert = world["cert"]
    identity = {"type": "identity", "spec_version": "2.1", "id": cert.identity, "created": ts(0),
                "modified": ts(0), "name": "National CERT", "identity_class": "organization"}
    assert not exchange.ingest.add_objects(cert.principal, world["cid"], [identity]).failures
    alerts, _ = _run(exchange, world["north"], [EVE])
    assert {a["producer"] for a in alerts} == {"National CERT"}


def test_sightings_are_aggregated_per_indicator_and_window(exchange: Exchange, world: dict) -> None:
    alerts, summary = _run(exchange, world["north"], [EVE], sight=True)
    per_indicator = {}
    for a in alerts:
        per_indicator[a["indicator"]] = per_indicator.get(a["indicator"], 0) + 1
    assert summary.sightings == 2 and summary.sighting_failures == []
    page = exchange.query.objects(world["cert"].principal, world["cid"], ObjectFilter(types=("sighting",)))
    sightings = [orjson.loads(r.raw) for r in page.rows]
    assert {s["sighting_of_ref"]: s["count"] for s in sightings} == per_indicator
    north = world["north"].identity
    assert all(s["where_sighted_refs"] == [north] and s["created_by_ref"] == north for s in sightings)
    single = next(s for s in sightings if s["sighting_of_ref"].endswith("1"))
    assert single["first_seen"] < single["last_seen"] and single["first_seen"].startswith("2017-01-30T15:")
    # A narrower window splits the same events into more sightings.
    _, summary = _run(exchange, world["north"], [EVE], sight=True, sight_window_s=10)
    assert summary.sightings > 2


def test_refresh_applies_new_revoked_and_expired_indicators(exchange: Exchange, world: dict) -> None:
    base = 1_767_225_600_000_000  # factories.ts(0)
    now = [base + 10_000_000]
    service = DetectService(exchange.query, exchange.ingest, lambda: {}, clock=lambda: now[0])
    north, cert = world["north"], world["cert"]
    community = service.community(north.principal, "isac")
    indicators, _ = service.active_indicators(north.principal, community)
    iset, _ = service.compile(indicators, [])
    assert set(iset.entries) == {"indicator--00000000-0000-4000-8000-000000000001",
                                 "indicator--00000000-0000-4000-8000-000000000002"}
    since = now_us()  # date_added comes from the exchange's own clock
    fresh = indicator(created_by=cert.identity, created=20, valid_until=ts(100),
                      pattern="[domain-name:value = 'fresh.example']")
    first = world["objects"][0]
    report = exchange.ingest.add_objects(cert.principal, world["cid"], [
        fresh, new_version(first, 50, revoked=True)])
    assert not report.failures
    assert service.refresh(north.principal, community, iset, since) == (1, 1)
    assert set(iset.entries) == {fresh["id"], "indicator--00000000-0000-4000-8000-000000000002"}
    now[0] = base + 100_000_000  # fresh reaches its valid_until
    assert service.refresh(north.principal, community, iset, now_us()) == (0, 1)
    assert set(iset.entries) == {"indicator--00000000-0000-4000-8000-000000000002"}


def test_refresh_follows_deleted_versions(exchange: Exchange, world: dict) -> None:
    """A deleted newest version gives way to the version before it; a deleted object
    leaves the set (neither makes a new version for the incremental read to see)."""
    service = DetectService(exchange.query, exchange.ingest, lambda: {})
    north, cert = world["north"], world["cert"]
    community = service.community(north.principal, "isac")
    first, second = world["objects"][0], world["objects"][6]
    changed = new_version(first, 50, pattern="[domain-name:value = 'changed.example']")
    assert not exchange.ingest.add_objects(cert.principal, world["cid"], [changed]).failures
    watch = service.watch(north.principal, community)
    indicators, _ = service.active_indicators(north.principal, community)
    iset, _ = service.compile(indicators, [])
    assert iset.entries[first["id"]].meta.pattern == changed["pattern"]
    since = now_us()
    newest = parse_timestamp(changed["modified"])
    last = ObjectFilter(versions=VersionSelector(last=False, timestamps=(newest,)))
    assert exchange.ingest.delete_object(cert.principal, world["cid"], first["id"], last) >= 1
    left = exchange.query.objects(cert.principal, world["cid"], ObjectFilter(ids=(first["id"],)))
    assert [orjson.loads(r.raw)["modified"] for r in left.rows] == [first["modified"]]
    everything = ObjectFilter(versions=VersionSelector(last=False, all=True))
    assert exchange.ingest.delete_object(cert.principal, world["cid"], second["id"], everything) >= 1
    assert service.refresh(north.principal, community, iset, since, watch) == (1, 1)
    assert iset.entries[first["id"]].meta.pattern == first["pattern"]  # the version before
    assert second["id"] not in iset.entries
    assert service.refresh(north.principal, community, iset, now_us(), watch) == (0, 0)  # read once


def test_workers_give_the_same_alerts(exchange: Exchange, world: dict) -> None:
    sources = [EVE, str(DATA / "rita_closed_conn.log")]
    one, _ = _run(exchange, world["north"], sources, batch_lines=40)
    two, summary = _run(exchange, world["north"], sources, batch_lines=40, workers=2)
    key = lambda a: (a["indicator"], orjson.dumps(a["event"], option=orjson.OPT_SORT_KEYS))  # noqa: E731
    assert sorted(map(key, one)) == sorted(map(key, two)) and summary.problems.total == 0


def test_cli_detect(database_url: str, exchange: Exchange, world: dict, tmp_path) -> None:
    runner = CliRunner()
    bad = tmp_path / "mixed.json"
    bad.write_bytes((DATA / "surevego_eve.json").read_bytes()[:3000] + b"\n{broken\n")
    result = runner.invoke(app, ["--database-url", database_url, "detect", "--community", "isac",
                                 "--user", "north-telecom-user", EVE, str(bad)])
    assert result.exit_code == 0, result.output
    alerts = [orjson.loads(line) for line in result.stdout.splitlines()]
    assert alerts and all(a["community"] == "isac" for a in alerts)
    assert "unreadable lines: 2" in result.stderr and "not valid JSON" in result.stderr
    out = tmp_path / "alerts.jsonl"
    result = runner.invoke(app, ["--database-url", database_url, "detect", "--community", "isac",
                                 "--user", "north-telecom-user", "--output", str(out), "--since", ts(0), EVE])
    assert result.exit_code == 0 and len(out.read_text().splitlines()) == len(
        [a for a in alerts if a["source"] == EVE])
    for args, message in [
        (["--community", "nope", "--user", "north-telecom-user", EVE], "no community 'nope'"),
        (["--community", "isac", "--user", "nobody", EVE], "no user named 'nobody'"),
        (["--community", "isac", "--user", "north-telecom-user", "/nonexistent.log"], "cannot read"),
        (["--community", "isac", "--user", "north-telecom-user", "--since", "yesterday", EVE], "--since"),
        (["--community", "isac", "--user", "north-telecom-user", "--format", "json", EVE], "--mapping"),
    ]:
        result = runner.invoke(app, ["--database-url", database_url, "detect", *args])
        assert result.exit_code in (2, 3) and message in result.output and "Traceback" not in result.output
