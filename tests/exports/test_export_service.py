"""The export service on both backends: visibility, TLP ceiling, filters, warninglists,
lifecycle, multi-community merge and stable Suricata sids."""

from __future__ import annotations

import csv
import io
import json
import time

import idstools.rule
import pytest

from commonwatch.domain.markings import Tlp
from commonwatch.errors import InvalidParameter, NotFound
from commonwatch.services.export import ExportService
from commonwatch.services.export_filters import build_filter
from commonwatch.services.query import ExportFilter
from commonwatch.storage.db import session_factory

from support.factories import indicator, ipv4, make_member, new_version, ts


def run(svc: ExportService, principal, fmt: str = "csv", flt: ExportFilter | None = None):
    export = svc.export(principal, fmt, flt or ExportFilter())
    return "".join(export.chunks), export.stats


def values(svc, principal, flt=None) -> dict[str, str]:
    """stix id -> value of a CSV export."""
    text, _ = run(svc, principal, "csv", flt)
    return {r["stix_id"]: r["value"] for r in csv.DictReader(io.StringIO(text))}


@pytest.fixture
def world(exchange):
    """Producer P; B cleared AMBER; C cleared RED; S reader of AMBER+STRICT; D outsider."""
    p, b, c, s, d = (make_member(exchange, n) for n in ("Prod", "Bee", "Cee", "Ess", "Dee"))
    exchange.admin.create_community("ring", default_tlp=Tlp.AMBER)
    exchange.admin.set_membership("Prod", "ring", True, True, Tlp.RED)
    exchange.admin.set_membership("Bee", "ring", True, False, Tlp.AMBER)
    exchange.admin.set_membership("Cee", "ring", True, False, Tlp.RED)
    exchange.admin.set_membership("Ess", "ring", True, False, Tlp.AMBER_STRICT)
    cid = exchange.admin.get_community("ring").collection_id
    objs = {}
    for n, tlp in enumerate(Tlp):
        recipients = [c.identity] if tlp is Tlp.RED else None
        obj = indicator(f"45.77.0.{n + 1}", tlp=tlp, recipients=recipients)
        objs[tlp] = obj["id"]
    report = exchange.ingest.add_objects(p.principal, cid, [
        indicator(f"45.77.0.{n + 1}", tlp=tlp, recipients=[c.identity] if tlp is Tlp.RED else None,
                  oid=objs[tlp]) for n, tlp in enumerate(Tlp)])
    assert not report.failures
    return {"P": p, "B": b, "C": c, "S": s, "D": d, "cid": cid, "ids": objs}


def test_tlp_ceiling_and_visibility(svc, world):
    ids = world["ids"]
    upto = {t: {ids[x] for x in Tlp if x <= t} for t in Tlp}
    assert set(values(svc, world["B"].principal)) == upto[Tlp.AMBER]
    assert set(values(svc, world["S"].principal)) == upto[Tlp.AMBER]  # ceiling AMBER by default
    assert set(values(svc, world["S"].principal, ExportFilter(tlp_ceiling=Tlp.RED))) == upto[Tlp.AMBER_STRICT]
    assert set(values(svc, world["C"].principal)) == upto[Tlp.AMBER]  # RED only when asked
    assert set(values(svc, world["C"].principal, ExportFilter(tlp_ceiling=Tlp.RED))) == upto[Tlp.RED]
    assert set(values(svc, world["P"].principal, ExportFilter(tlp_ceiling=Tlp.RED))) == upto[Tlp.RED]
    assert set(values(svc, world["C"].principal, ExportFilter(tlp_ceiling=Tlp.GREEN))) == upto[Tlp.GREEN]
    assert values(svc, world["D"].principal) == {}  # no community readable: nothing at all
    with pytest.raises(NotFound):
        svc.export(world["D"].principal, "csv", ExportFilter(communities=("ring",)))


def test_json_filters_and_lifecycle(exchange, svc, world, clock):
    p, cid = world["P"], world["cid"]
    future, past = ts(10**8), ts(10)
    objs = [
        {**indicator(tlp=Tlp.GREEN), "pattern": "[file:name = 'x.exe']"},
        indicator("45.78.0.1", tlp=Tlp.GREEN, revoked=True),
        indicator("45.78.0.2", tlp=Tlp.GREEN, valid_until=past),
        indicator("45.78.0.3", tlp=Tlp.GREEN, valid_until=future, confidence=90),
        indicator("45.78.0.4", tlp=Tlp.GREEN, confidence=20),
    ]
    assert not exchange.ingest.add_objects(p.principal, cid, objs).failures
    got = set(values(svc, world["B"].principal).values())
    assert {"45.78.0.3", "45.78.0.4"} <= got and not {"45.78.0.1", "45.78.0.2"} & got
    _, stats = run(svc, world["B"].principal)
    assert stats.skipped["revoked"] == 1 and stats.skipped["expired (valid_until has passed)"] == 1
    assert stats.skipped["pattern tests a property exports cannot use"] == 1
    every = ExportFilter(include_revoked=True, include_expired=True)
    assert {"45.78.0.1", "45.78.0.2"} <= set(values(svc, world["B"].principal, every).values())
    assert set(values(svc, world["B"].principal, ExportFilter(min_confidence=50)).values()) == {"45.78.0.3"}
    later = ExportFilter(since_us=exchange.admin.get_community("ring").last_added_us)
    assert set(values(svc, world["B"].principal, later).values()) == {"45.78.0.4"}  # the last added
    assert stats.next_change_us is not None  # the future valid_until
    clock.now = stats.next_change_us
    assert "45.78.0.3" not in values(svc, world["B"].principal).values()


def test_sector_type_and_community_filters(exchange, svc, world):
    vendor = make_member(exchange, "Vendor", sector="vendor")
    exchange.admin.set_membership("Vendor", "ring", True, True, Tlp.AMBER)
    exchange.admin.create_community("other", default_tlp=Tlp.GREEN)
    exchange.admin.set_membership("Vendor", "other", True, True, Tlp.AMBER)
    exchange.admin.set_membership("Bee", "other", True, False, Tlp.AMBER)
    other = exchange.admin.get_community("other").collection_id
    shared = indicator("45.79.0.1", tlp=Tlp.GREEN)
    assert not exchange.ingest.add_objects(vendor.principal, world["cid"], [shared]).failures
    assert not exchange.ingest.add_objects(vendor.principal, other, [
        new_version(shared, 5, pattern="[ipv4-addr:value = '45.79.0.2']"),
        ipv4("45.79.0.9", Tlp.GREEN)]).failures
    b = world["B"].principal
    rows = values(svc, b)
    assert rows[shared["id"]] == "45.79.0.2"  # one row per id, the newest version across communities
    assert set(values(svc, b, build_filter(sectors=["vendor"])).values()) == {"45.79.0.2"}
    ring_vendors = build_filter(communities=["ring"], sectors=["vendor"])
    assert set(values(svc, b, ring_vendors).values()) == {"45.79.0.1"}
    scos = build_filter(communities=[other], types=["ipv4-addr"])
    assert set(values(svc, b, scos).values()) == {"45.79.0.9"}
    with pytest.raises(InvalidParameter, match="sector"):
        build_filter(sectors=["pirates"])
    with pytest.raises(InvalidParameter, match="decay score"):
        build_filter(min_score=-1)
    with pytest.raises(InvalidParameter, match="since"):
        build_filter(since="yesterday")
    with pytest.raises(InvalidParameter, match="format"):
        svc.export(b, "pdf", ExportFilter())


def test_warninglists_are_excluded_by_default(exchange, svc, world, tmp_path):
    cid, p = world["cid"], world["P"]
    objs = [indicator("8.8.8.8", tlp=Tlp.GREEN),
            {**indicator(tlp=Tlp.GREEN),
             "pattern": "[ipv4-addr:value = '45.80.0.1' OR ipv4-addr:value = '10.1.1.1']"}]
    assert not exchange.ingest.add_objects(p.principal, cid, objs).failures
    b = world["B"].principal
    rows = list(csv.DictReader(io.StringIO(run(svc, b)[0])))
    got = {r["value"] for r in rows}
    assert "45.80.0.1" in got and not {"8.8.8.8", "10.1.1.1"} & got
    text, stats = run(svc, b, "csv", ExportFilter(include_warninglisted=True))
    flagged = {r["value"]: r["warninglists"] for r in csv.DictReader(io.StringIO(text))}
    assert flagged["8.8.8.8"] == "public-dns-resolvers" and flagged["10.1.1.1"] == "private-ip-ranges"
    bundle = json.loads(run(svc, b, "stix")[0])  # whole objects: any listed value drops the object
    assert {o["id"] for o in bundle["objects"]}.isdisjoint({objs[0]["id"], objs[1]["id"]})
    (tmp_path / "mine.json").write_text(json.dumps({
        "name": "ours", "description": "d", "source": "s", "licence": "CC0-1.0",
        "values": {"ipv4-addr": ["45.80.0.0/16"]}}))
    own = ExportService(session_factory(exchange.engine), exchange.query, warninglist_dirs=[tmp_path])
    assert "45.80.0.1" not in {r["value"] for r in csv.DictReader(io.StringIO(run(own, b)[0]))}


def test_suricata_sids_are_stable_and_revs_bump(exchange, svc, world):
    c = world["C"].principal
    first = {r.sid: r for r in map(idstools.rule.parse, run(svc, c, "suricata-rules")[0].splitlines())}
    again = {r.sid: r for r in map(idstools.rule.parse, run(svc, c, "suricata-rules")[0].splitlines())}
    assert first.keys() == again.keys() and all(r.rev == 1 for r in again.values())
    changed_id = world["ids"][Tlp.GREEN]
    obj = indicator("45.77.0.2", tlp=Tlp.GREEN, oid=changed_id, name="renamed")
    assert not exchange.ingest.add_objects(world["P"].principal, world["cid"], [new_version(obj, 9)]).failures
    third = {r.sid: r for r in map(idstools.rule.parse, run(svc, c, "suricata-rules")[0].splitlines())}
    assert third.keys() == first.keys()
    bumped = [sid for sid, r in third.items() if r.rev == 2]
    assert len(bumped) == 1 and "renamed" in third[bumped[0]].msg


def test_export_reads_in_constant_batches(exchange, svc, world):
    """More rows than one keyset batch, in STIX id order, each once."""
    p = world["P"].principal
    batch = [indicator(f"46.{i // 250}.{i % 250}.1", tlp=Tlp.GREEN) for i in range(2500)]
    assert not exchange.ingest.add_objects(p, world["cid"], batch).failures
    rows = list(exchange.query.stream_latest(world["B"].principal, ExportFilter(), batch=300))
    assert [r.stix_id for r in rows] == sorted({r.stix_id for r in rows})
    assert len(rows) == 2500 + 3


def test_one_community_exports_in_the_order_added(exchange, svc):
    """One community is read in storage order (date added); several are merged by id."""
    p = make_member(exchange, "Ordered")
    for name in ("first", "second"):
        exchange.admin.create_community(name, default_tlp=Tlp.GREEN)
        exchange.admin.set_membership("Ordered", name, True, True, Tlp.RED)
    cid = exchange.admin.get_community("first").collection_id
    ids = [f"indicator--{n:08x}-0000-4000-8000-000000000000" for n in (9, 5, 7, 1, 3)]
    objs = [indicator(f"45.78.0.{i}", oid=oid) for i, oid in enumerate(ids)]
    for obj in objs:  # one envelope each: date_added follows this order
        assert not exchange.ingest.add_objects(p.principal, cid, [obj]).failures
    out = run(svc, p.principal, "plain-ip", ExportFilter(communities=("first",)))[0].split()
    assert out == [f"45.78.0.{i}" for i in range(5)]
    rows = list(exchange.query.stream_latest(p.principal, ExportFilter(communities=("first",)), batch=2))
    assert [r.stix_id for r in rows] == sorted(ids)
    # the same id in a second community, newer there: sent once, in id order with the rest
    other = exchange.admin.get_community("second").collection_id
    assert not exchange.ingest.add_objects(
        p.principal, other, [new_version(objs[0], 5, pattern="[ipv4-addr:value = '45.78.1.1']")]).failures
    both = run(svc, p.principal, "plain-ip", ExportFilter(communities=("first", "second")))[0].split()
    assert sorted(both) == ["45.78.0.1", "45.78.0.2", "45.78.0.3", "45.78.0.4", "45.78.1.1"]
    assert len(both) == 5


def test_objects_without_versions_export_in_every_format(exchange, svc, world):
    """An SCO (no created, no modified) exported through a type filter: the MISP
    attribute carries when it was added, the Suricata rule no empty dates."""
    p, c = world["P"].principal, world["C"].principal
    sco = ipv4("45.77.9.9")
    before = int(time.time())
    assert not exchange.ingest.add_objects(p, world["cid"], [sco]).failures
    after = int(time.time())
    flt = ExportFilter(types=("ipv4-addr",))
    event = json.loads(run(svc, c, "misp", flt)[0])["Event"]
    [attribute] = event["Attribute"]
    assert (attribute["value"], attribute["comment"]) == ("45.77.9.9", sco["id"])
    assert before <= int(attribute["timestamp"]) <= after  # when it was added
    [rule] = map(idstools.rule.parse, run(svc, c, "suricata-rules", flt)[0].splitlines())
    assert rule.metadata == ["cw_id " + sco["id"], "cw_tlp TLP:AMBER", "cw_community ring",
                             "cw_producer Prod"]
    [row] = csv.DictReader(io.StringIO(run(svc, c, "csv", flt)[0]))
    assert (row["value"], row["stix_id"], row["created"], row["modified"]) == ("45.77.9.9", sco["id"], "", "")


def test_misp_event_uuid_is_one_per_organisation_and_filter(svc, world):
    """A scheduled MISP export (or a feed) updates one MISP event instead of adding a new
    event each run: its uuid depends on who exports what, not on when."""

    def event(member, flt=None) -> str:
        return json.loads(run(svc, world[member].principal, "misp", flt)[0])["Event"]["uuid"]

    first = event("B")
    assert event("B") == first  # again: the same event
    assert event("B", ExportFilter(tlp_ceiling=Tlp.GREEN)) != first  # another filter, another event
    assert event("C") != first  # another organisation's own event
    assert len(first) == 36 and first[14] == "5"  # a UUIDv5


def test_stix_bundle_leaves_out_objects_whose_values_no_output_may_hold(exchange, svc, world):
    """A STIX bundle passes objects on whole, values or not; but an indicator whose pattern
    holds a value no output may hold (an IPv6 zone id, a control character) is not passed
    on, whole or in part: downstream converters would write it where it does harm."""
    p, cid = world["P"], world["cid"]
    zone = "[ipv6-addr:value = 'fe80::2%eth0; sid:1;'] OR [domain-name:value = 'ok.example']"
    bad = [indicator(pattern=zone, tlp=Tlp.GREEN),
           indicator(pattern="[url:value = 'http://vt.example/a\x0bb']", tlp=Tlp.GREEN)]
    fine = indicator(pattern="[ipv4-addr:value = '45.77.9.1'] AND [domain-name:value = 'x.example']",
                     tlp=Tlp.GREEN)  # no exportable value, but nothing wrong with it
    assert not exchange.ingest.add_objects(p.principal, cid, [*bad, fine]).failures
    text, stats = run(svc, world["B"].principal, "stix")
    ids = {o["id"] for o in json.loads(text)["objects"]}
    assert fine["id"] in ids and not ids & {o["id"] for o in bad}
    assert stats.skipped["pattern value is not a valid address, domain, URL, e-mail or hash"] == 2
