"""Ids from a shared source: two members import the same public bundle (MITRE ATT&CK,
a MISP feed) into one community.

Each keeps its own copy; neither import is refused for the other's, whether or not
they can see each other's copies, and every reader gets one copy of each version.
"""

from __future__ import annotations

import json
from pathlib import Path

import sqlalchemy as sa

from commonwatch.domain.markings import Tlp
from commonwatch.domain.warninglists import load_warninglists
from commonwatch.formats.sources import DEFAULT_MAX_BYTES, expand
from commonwatch.services.export import ExportService
from commonwatch.services.export_filters import build_filter
from commonwatch.services.importer import ImportService, ImportSummary
from commonwatch.services.query import ObjectFilter, VersionSelector
from commonwatch.storage.db import session_factory

from support.factories import TLP2_MARKING_BY_LEVEL, indicator, make_community, make_member, new_version, ts

MITRE = "identity--c78cb6e5-0c4b-4611-8297-d1b8b55e40b5"
PHISHING = "attack-pattern--0042a9f5-f053-4769-b3ef-9ad018dfa298"
ALL = ObjectFilter(versions=VersionSelector(last=False, all=True))


def attack_bundle(release: int, tlp: Tlp = Tlp.CLEAR) -> dict:
    """An ATT&CK-shaped bundle: signed by MITRE, stable ids, ``modified`` per release;
    the importing member marks the objects with its own TLP."""
    def signed(kind: str, uid: str, **props) -> dict:
        return {"type": kind, "spec_version": "2.1", "id": f"{kind}--{uid}", "created": ts(0),
                "modified": ts(release), "created_by_ref": MITRE,
                "object_marking_refs": [TLP2_MARKING_BY_LEVEL[tlp]], **props}

    objects = [
        {"type": "identity", "spec_version": "2.1", "id": MITRE, "created": ts(0), "modified": ts(0),
         "name": "The MITRE Corporation", "identity_class": "organization"},
        signed("attack-pattern", "0042a9f5-f053-4769-b3ef-9ad018dfa298", name="Phishing",
               external_references=[{"source_name": "mitre-attack", "external_id": "T1566"}]),
        signed("intrusion-set", "bef4c620-0787-42a8-a96d-b7eb6e85917c", name="APT29"),
        signed("indicator", "5b4a8c4e-1d1a-4f3c-9d7e-1f5e2c7a9b10", name="C2",
               pattern="[ipv4-addr:value = '185.220.101.66']", pattern_type="stix", valid_from=ts(0)),
        signed("relationship", "9f2a1c55-6a3b-4a65-8a4d-0b6f1a3e7c21", relationship_type="uses",
               source_ref="intrusion-set--bef4c620-0787-42a8-a96d-b7eb6e85917c",
               target_ref="attack-pattern--0042a9f5-f053-4769-b3ef-9ad018dfa298"),
    ]
    return {"type": "bundle", "id": f"bundle--00000000-0000-4000-8000-{release:012d}", "objects": objects}


BUNDLE_IDS = [o["id"] for o in attack_bundle(1)["objects"]]


def run_import(exchange, member, tmp_path: Path, release: int, tlp: Tlp) -> ImportSummary:
    path = tmp_path / f"r{release}-{tlp.name}.json"
    path.write_text(json.dumps(attack_bundle(release, tlp)))
    service = ImportService(exchange.ingest, exchange.query, load_warninglists(), batch_size=50)
    community = service.community(member.principal, "c")
    ctx = service.context(member.principal, community)
    return service.run(member.principal, community, list(expand([str(path)])), "stix", ctx,
                       max_bytes=DEFAULT_MAX_BYTES)


def world(exchange, tmp_path, clearances: dict[str, Tlp]):
    members = {name: make_member(exchange, name) for name in clearances}
    cid = make_community(exchange, "c", Tlp.GREEN, {name: (True, tlp) for name, tlp in clearances.items()})
    return members, cid


def latest(exchange, member, cid) -> dict[str, dict]:
    rows = exchange.query.objects(member.principal, cid, ObjectFilter()).rows
    objects = [json.loads(r.raw) for r in rows]
    assert len(objects) == len({o["id"] for o in objects})
    return {o["id"]: o for o in objects}


def test_two_members_import_the_same_bundle_each_under_its_own_tlp(exchange, tmp_path):
    members, cid = world(exchange, tmp_path, {"A": Tlp.AMBER, "B": Tlp.AMBER, "Green Reader": Tlp.GREEN})
    a, b, reader = members["A"], members["B"], members["Green Reader"]
    first = run_import(exchange, a, tmp_path, 1, Tlp.GREEN)
    assert first.ok and first.stored == 5, first.to_json()
    # B sees A's GREEN copies and imports the same source under AMBER: same creator, a relay
    second = run_import(exchange, b, tmp_path, 1, Tlp.AMBER)
    assert second.ok, second.to_json()["rejections"]

    a_sees, b_sees, r_sees = (latest(exchange, m, cid) for m in (a, b, reader))
    assert set(a_sees) == set(b_sees) == set(r_sees)  # one copy per id for everyone
    for oid in BUNDLE_IDS:  # B reads its own copy, the others A's (the first)
        assert (b_sees[oid] == a_sees[oid]) == (oid == MITRE), oid  # the identity is unmarked: identical
    assert r_sees == a_sees
    for m in (a, b, reader):
        assert len(exchange.query.versions(m.principal, cid, PHISHING, ALL).rows) == 1

    # the next release, imported by B only: AMBER, so the GREEN reader keeps release 1
    assert run_import(exchange, b, tmp_path, 2, Tlp.AMBER).ok
    assert latest(exchange, a, cid)[PHISHING]["modified"] == ts(2)  # A (AMBER) sees B's release 2
    assert latest(exchange, reader, cid)[PHISHING]["modified"] == ts(1)
    # and A may still import it too
    assert run_import(exchange, a, tmp_path, 2, Tlp.GREEN).ok
    assert latest(exchange, reader, cid)[PHISHING]["modified"] == ts(2)


def test_a_member_who_cannot_see_the_first_import_is_not_told_about_it(exchange, tmp_path):
    members, cid = world(exchange, tmp_path, {"A": Tlp.AMBER, "B": Tlp.GREEN, "C": Tlp.AMBER})
    a, b, c = members["A"], members["B"], members["C"]
    assert run_import(exchange, a, tmp_path, 1, Tlp.AMBER).ok
    alone = run_import(exchange, b, tmp_path, 1, Tlp.GREEN)
    assert alone.ok and alone.stored == 5, alone.to_json()  # as if A had imported nothing
    b_sees = latest(exchange, b, cid)
    a_sees = latest(exchange, a, cid)
    assert all(b_sees[i]["object_marking_refs"] != a_sees[i]["object_marking_refs"]
               for i in BUNDLE_IDS if i != MITRE)
    # C sees both copies and gets the first (A's) of each version, once
    c_sees = latest(exchange, c, cid)
    assert c_sees == latest(exchange, a, cid)
    manifest = exchange.query.manifest(c.principal, cid, ALL).rows
    assert len(manifest) == len({r.stix_id for r in manifest})
    assert set(BUNDLE_IDS) <= {r.stix_id for r in manifest}


def test_a_copy_outlives_the_other_members_delete(exchange, tmp_path):
    members, cid = world(exchange, tmp_path, {"A": Tlp.AMBER, "B": Tlp.AMBER, "C": Tlp.AMBER,
                                              "D": Tlp.GREEN})
    a, b, c, d = members["A"], members["B"], members["C"], members["D"]
    assert run_import(exchange, a, tmp_path, 1, Tlp.GREEN).ok
    assert run_import(exchange, b, tmp_path, 1, Tlp.AMBER).ok
    assert set(BUNDLE_IDS) <= set(latest(exchange, d, cid))
    for oid in BUNDLE_IDS:
        exchange.ingest.delete_object(a.principal, cid, oid, ALL)
    b_copies = latest(exchange, b, cid)
    for member in (a, c):  # they now get B's copies, and no tombstone: the versions are still there
        after = latest(exchange, member, cid)
        assert all(after[oid] == b_copies[oid] for oid in BUNDLE_IDS)
        assert not exchange.query.deletions(member.principal, cid).rows
    # D cannot see B's AMBER copies: for D the objects are gone, and said so
    assert not set(BUNDLE_IDS) & set(latest(exchange, d, cid)) - {MITRE}
    gone = {t.stix_id for t in exchange.query.deletions(d.principal, cid).rows}
    assert gone == set(BUNDLE_IDS) - {MITRE}  # the identity is B's identical copy (unmarked)


def test_exports_and_lookups_give_one_copy(exchange, tmp_path):
    members, cid = world(exchange, tmp_path, {"A": Tlp.AMBER, "B": Tlp.AMBER, "C": Tlp.AMBER})
    a, b, c = members["A"], members["B"], members["C"]
    assert run_import(exchange, a, tmp_path, 1, Tlp.GREEN).ok
    assert run_import(exchange, b, tmp_path, 1, Tlp.GREEN).ok
    with exchange.engine.connect() as conn:  # two copies stored ...
        assert conn.scalar(sa.text("SELECT count(*) FROM stix_objects WHERE type = 'indicator'")) == 2
    svc = ExportService(session_factory(exchange.engine), exchange.query)
    flt = build_filter(communities=["c"])
    for m in (a, b, c):  # ... one exported
        assert "".join(svc.export(m.principal, "plain-ip", flt).chunks).splitlines() == ["185.220.101.66"]
        bundle = json.loads("".join(svc.export(m.principal, "stix", flt).chunks))
        assert [o["id"] for o in bundle["objects"] if o["type"] == "indicator"] == [
            "indicator--5b4a8c4e-1d1a-4f3c-9d7e-1f5e2c7a9b10"]
        found = exchange.lookup.lookup(m.principal, ["185.220.101.66"])[0].to_json()
        assert len(found["matches"]) == 1, found


def test_another_members_own_object_still_cannot_be_versioned(exchange, tmp_path):
    """Without a shared creator, a visible object stays its producer's."""

    members, cid = world(exchange, tmp_path, {"A": Tlp.AMBER, "B": Tlp.AMBER})
    a, b = members["A"], members["B"]
    obj = indicator(tlp=Tlp.GREEN)
    assert not exchange.ingest.add_objects(a.principal, cid, [obj]).failures
    report = exchange.ingest.add_objects(b.principal, cid, [new_version(obj, 5)])
    assert "another organisation produced" in report.failures[0].message
    report = exchange.ingest.add_objects(b.principal, cid, [dict(obj, name="changed")])
    assert "another organisation produced" in report.failures[0].message
    signed_by_a = dict(new_version(obj, 6), created_by_ref=a.identity)
    report = exchange.ingest.add_objects(b.principal, cid, [signed_by_a])
    assert "another member organisation" in report.failures[0].message
    # an identical copy is accepted, and is B's own (B reads its own copy)
    assert not exchange.ingest.add_objects(b.principal, cid, [obj]).failures
    assert exchange.ingest.add_objects(b.principal, cid, [obj]).stored == [False]  # re-post


def test_copies_of_a_members_object_do_not_take_it_from_its_producer(exchange, tmp_path):
    """Another member's copy of an object without ``created_by_ref`` leaves it its
    producer's: the producer still versions it, the copier still may not."""
    members, cid = world(exchange, tmp_path, {"A": Tlp.AMBER, "B": Tlp.AMBER, "C": Tlp.AMBER})
    a, b, c = members["A"], members["B"], members["C"]
    obj = indicator(tlp=Tlp.GREEN)
    assert not exchange.ingest.add_objects(a.principal, cid, [obj]).failures
    assert not exchange.ingest.add_objects(b.principal, cid, [obj]).failures  # B's copy
    assert not exchange.ingest.add_objects(a.principal, cid, [new_version(obj, 5, name="v2")]).failures
    report = exchange.ingest.add_objects(b.principal, cid, [new_version(obj, 6, name="B's v3")])
    assert "another organisation produced" in report.failures[0].message
    # C copies A's second version: A goes on versioning; C cannot, through either copy
    assert not exchange.ingest.add_objects(c.principal, cid, [new_version(obj, 5, name="v2")]).failures
    assert not exchange.ingest.add_objects(a.principal, cid, [new_version(obj, 7, name="v3")]).failures
    report = exchange.ingest.add_objects(c.principal, cid, [new_version(obj, 8, name="C's v4")])
    assert "another organisation produced" in report.failures[0].message
    assert latest(exchange, c, cid)[obj["id"]]["name"] == "v3"


def test_an_export_filter_never_drops_a_copy_it_would_keep(exchange, tmp_path):
    """The copy an export chooses is chosen among those its TLP ceiling and producer
    sectors keep: an AMBER copy posted first does not hide another member's GREEN copy
    from a GREEN export, nor a government copy an operators-only export."""

    cert, telco = make_member(exchange, "CERT", sector="government"), make_member(exchange, "Telco")
    reader = make_member(exchange, "Reader")
    make_community(exchange, "c", Tlp.GREEN, {m: (True, Tlp.AMBER) for m in ("CERT", "Telco", "Reader")})
    assert run_import(exchange, cert, tmp_path, 1, Tlp.AMBER).ok
    assert run_import(exchange, telco, tmp_path, 1, Tlp.GREEN).ok
    svc = ExportService(session_factory(exchange.engine), exchange.query)

    def exported(**filters) -> list[dict]:
        flt = build_filter(communities=["c"], **filters)
        bundle = json.loads("".join(svc.export(reader.principal, "stix", flt).chunks))
        return [o for o in bundle["objects"] if o["type"] == "indicator"]

    def marking(objects: list[dict]) -> list[str]:
        return [o["object_marking_refs"][0] for o in objects]

    assert marking(exported()) == [TLP2_MARKING_BY_LEVEL[Tlp.AMBER]]  # the first copy
    assert marking(exported(tlp="green")) == [TLP2_MARKING_BY_LEVEL[Tlp.GREEN]]
    assert marking(exported(sectors=["operator"])) == [TLP2_MARKING_BY_LEVEL[Tlp.GREEN]]
    assert marking(exported(sectors=["government"])) == [TLP2_MARKING_BY_LEVEL[Tlp.AMBER]]
    assert exported(sectors=["government"], tlp="green") == []
    assert exported(tlp="clear") == []


def test_an_export_chooses_a_copy_its_lifecycle_filters_keep(exchange):
    """Two members who cannot see each other's copies of one version: the first copy is
    revoked, expired or of low confidence, the other not. A reader who sees both and
    exports without revoked/expired objects, or with a minimum confidence, gets the copy
    that passes, not nothing."""

    a, b, reader = (make_member(exchange, n) for n in ("A", "B", "Reader"))
    cid = make_community(exchange, "c", Tlp.GREEN, {"A": (True, Tlp.AMBER), "B": (True, Tlp.GREEN),
                                                    "Reader": (True, Tlp.AMBER)})
    svc = ExportService(session_factory(exchange.engine), exchange.query)
    cases = {  # the first copy's difference; an export that keeps only the other copy
        "revoked": ({"revoked": True}, {}),
        "expired": ({"valid_until": ts(10)}, {}),
        "doubtful": ({"confidence": 10}, {"min_confidence": 50}),
    }
    for n, (first_only, filters) in enumerate(cases.values()):
        value = f"185.220.102.{n}"
        base = indicator(value, created_by=MITRE, confidence=90, valid_until=ts(10**9))
        first = dict(base, object_marking_refs=[TLP2_MARKING_BY_LEVEL[Tlp.AMBER]], **first_only)
        other = dict(base, object_marking_refs=[TLP2_MARKING_BY_LEVEL[Tlp.GREEN]])
        assert exchange.ingest.add_objects(a.principal, cid, [first]).stored == [True]
        assert exchange.ingest.add_objects(b.principal, cid, [other]).stored == [True]  # B cannot see A's
        text = "".join(svc.export(reader.principal, "csv", build_filter(communities=["c"], **filters)).chunks)
        assert value in text and "green" in text.lower().split(value)[1].splitlines()[0], text
