"""MISP events and feeds -> STIX 2.1: golden files, real-world samples, the distribution rules."""

from __future__ import annotations

import io
import json
from collections import Counter
from typing import Any

import pytest

from commonwatch.domain.markings import TLP2_MARKING_BY_LEVEL, Tlp
from commonwatch.domain.stix import validate_object
from commonwatch.formats.misp import MISP_IDENTITY, read_feed, read_misp
from commonwatch.formats.observables import ImportContext
from commonwatch.formats.records import Record
from imports.helpers import DATA, OWN_IDENTITY, as_golden


def convert(doc: Any, ctx: ImportContext, name: str = "event.json") -> list[Record]:
    return list(read_misp(io.BytesIO(json.dumps(doc).encode()), name, ctx))


def read(name: str, ctx: ImportContext) -> list[Record]:
    with (DATA / name).open("rb") as f:
        return list(read_misp(f, name, ctx))


def by_id(records: list[Record]) -> dict[str, dict[str, Any]]:
    return {r.obj["id"]: r.obj for r in records if r.obj is not None}


def tlp_of(obj: dict[str, Any]) -> Tlp | None:
    refs = obj.get("object_marking_refs", [])
    levels = [level for level, mid in TLP2_MARKING_BY_LEVEL.items() if mid in refs]
    return max(levels) if levels else None


def test_event_with_objects_galaxies_tags_and_sightings_golden(ctx, golden) -> None:
    records = read("misp_event_phishing.json", ctx)
    golden("misp_event_phishing", as_golden(records))
    for r in records:
        if r.obj is not None:
            validate_object(r.obj)  # every object the converter makes is valid STIX 2.1


def test_event_mapping_in_detail(ctx) -> None:
    records = read("misp_event_phishing.json", ctx)
    objs = by_id(records)
    producer = "identity--5f0c2a1e-6b7d-4c3e-9a1b-2c3d4e5f6a7b"
    report = objs["report--6553a0c0-1c2d-4e5f-8a9b-0c1d2e3f4a5b"]
    assert report["created_by_ref"] == producer and objs[producer]["name"] == "Regional CERT"
    assert report["published"] == "2023-11-15T00:13:20.000Z"
    assert {"source_name": "misp-link", "url": "https://cert.example/advisories/2023-114"} in \
        report["external_references"]
    assert all(ref in objs for ref in report["object_refs"])
    # event: tlp:green and distribution 1 (this community) -> never below AMBER
    assert tlp_of(report) == Tlp.AMBER
    ind = objs["indicator--6553a0c0-0002-4a00-8000-000000000002"]
    assert ind["pattern"] == "[ipv4-addr:value = '203.0.113.77']"
    assert ind["created"] == ind["modified"] == "2023-11-14T22:13:20.000Z"
    # distribution 0 -> TLP:RED without recipients (only the producer sees it)
    internal = objs["indicator--6553a0c0-0006-4a00-8000-000000000006"]
    assert tlp_of(internal) == Tlp.RED and "extensions" not in internal
    # attribute tagged tlp:amber stays AMBER; the file object merges its hashes into one SCO
    file_ind = objs["indicator--6553a0c0-1000-4a00-8000-000000001000"]
    assert "file:hashes.MD5 = '5d41402abc4b2a76b9719d911017c592'" in file_ind["pattern"]
    assert "file:name = 'invoice_0923.exe'" in file_ind["pattern"]
    files = [o for o in objs.values() if o["type"] == "file" and o.get("name") == "invoice_0923.exe"]
    assert files[0]["size"] == 241152 and files[0]["x_misp_type"] == "PE32 executable"
    rel = objs["relationship--6553a0c0-2000-4a00-8000-000000002000"]
    assert rel["source_ref"] == file_ind["id"] and rel["relationship_type"] == "communicates-with"
    sighting = objs["sighting--6553a0c0-5001-4a00-8000-000000000001"]
    assert sighting["sighting_of_ref"] == ind["id"] and sighting["where_sighted_refs"] == [producer]
    opinion = objs["opinion--6553a0c0-5002-4a00-8000-000000000002"]
    assert opinion["opinion"] == "strongly-disagree" and opinion["object_refs"] == [ind["id"]]
    actor = objs["threat-actor--7d0d7bfa-5b6e-4bd6-8f3e-6d5f6a1c9c2b"]
    assert actor["created_by_ref"] == MISP_IDENTITY and "Telebots" in actor["aliases"]
    assert any(o["type"] == "attack-pattern" for o in objs.values())  # from a galaxy tag alone
    assert objs["vulnerability--6553a0c0-000a-4a00-8000-00000000000a"]["name"] == "CVE-2023-23397"
    assert objs["note--6553a0c0-000b-4a00-8000-00000000000b"]["object_refs"] == [report["id"]]


def test_event_rejections_name_the_record_and_the_reason(ctx) -> None:
    rejected = {r.position: r.reason for r in read("misp_event_phishing.json", ctx) if r.obj is None}
    prefix = "event 6553a0c0-1c2d-4e5f-8a9b-0c1d2e3f4a5b"
    assert "sharing group" in rejected[f"{prefix} attribute 6553a0c0-0008-4a00-8000-000000000008"]
    assert "is not a domain name" in rejected[f"{prefix} attribute 6553a0c0-000d-4a00-8000-00000000000d"]
    assert "not imported" in rejected[f"{prefix} reference 6553a0c0-2001-4a00-8000-000000002001"]
    assert len(rejected) == 3


def test_warninglist_hits_are_recorded_on_importer_made_objects(ctx) -> None:
    hits = {r.obj["id"]: r.hits for r in read("misp_event_phishing.json", ctx) if r.obj and r.hits}
    assert hits["indicator--6553a0c0-0005-4a00-8000-000000000005"] == ("public-dns-resolvers",)


@pytest.mark.parametrize(("event_dist", "attr_dist", "tags", "default", "expected"), [
    ("3", "5", ["tlp:clear"], Tlp.AMBER, Tlp.CLEAR),
    ("3", "5", [], Tlp.AMBER, None),               # no restriction: community default applies
    ("3", "2", ["tlp:clear"], Tlp.AMBER, Tlp.GREEN),
    ("3", "1", ["tlp:green"], Tlp.CLEAR, Tlp.AMBER),
    ("1", "3", ["tlp:clear"], Tlp.CLEAR, Tlp.AMBER),  # an attribute never widens its event
    ("2", "5", [], Tlp.AMBER, Tlp.AMBER),           # floor GREEN, but the default is stricter
    ("2", "5", [], Tlp.CLEAR, Tlp.GREEN),
    ("3", "0", ["tlp:clear"], Tlp.CLEAR, Tlp.RED),
    ("0", "3", [], Tlp.CLEAR, Tlp.RED),
    ("3", "5", ["tlp:amber+strict"], Tlp.CLEAR, Tlp.AMBER_STRICT),
    (None, None, ["tlp:white"], Tlp.AMBER, Tlp.CLEAR),  # feed events carry no distribution
])
def test_distribution_never_widens(event_dist, attr_dist, tags, default, expected) -> None:
    attribute = {"uuid": "11111111-2222-4333-8444-000000000001", "type": "ip-dst", "value": "198.51.100.9",
                 "to_ids": True, "timestamp": "1704067200"}
    event: dict[str, Any] = {"uuid": "11111111-2222-4333-8444-555555555555", "info": "x",
                             "date": "2024-01-01", "timestamp": "1704067200",
                             "Tag": [{"name": t} for t in tags], "Attribute": [attribute]}
    if event_dist is not None:
        event["distribution"] = event_dist
    if attr_dist is not None:
        event["Attribute"][0]["distribution"] = attr_dist
    ctx = ImportContext(own_identity=OWN_IDENTITY, default_tlp=default)
    objs = by_id(convert({"Event": event}, ctx))
    assert tlp_of(objs["indicator--11111111-2222-4333-8444-000000000001"]) == expected
    assert tlp_of(objs["report--11111111-2222-4333-8444-555555555555"]) is not None or expected is None


def test_sharing_group_event_is_rejected_whole(ctx) -> None:
    records = convert({"Event": {"uuid": "11111111-2222-4333-8444-555555555555", "distribution": "4",
                                 "info": "x", "timestamp": "1704067200", "Attribute": [
                                     {"type": "ip-dst", "value": "198.51.100.9", "to_ids": True}]}}, ctx)
    assert [r.obj for r in records] == [None]
    assert "sharing group" in (records[0].reason or "")


def test_own_organisation_is_not_duplicated_as_an_identity(ctx) -> None:
    event = {"uuid": "11111111-2222-4333-8444-555555555555", "info": "x", "timestamp": "1704067200",
             "Orgc": {"name": "us", "uuid": OWN_IDENTITY.removeprefix("identity--")},
             "Attribute": [{"type": "domain", "value": "bad.example.com", "to_ids": True,
                            "uuid": "11111111-2222-4333-8444-000000000001", "timestamp": "1704067200"}]}
    objs = by_id(convert(event, ctx))  # a bare event, without the {"Event": ...} wrapper
    assert not any(o["type"] == "identity" for o in objs.values())
    assert objs["report--11111111-2222-4333-8444-555555555555"]["created_by_ref"] == OWN_IDENTITY


@pytest.mark.parametrize("name", [
    "pymisp_existing_event.json", "pymisp_sighting_1.json", "pymisp_sighting_2.json",
    "eset_telebots_api_response.json", "pymisp_feed_event_mainly_objects_1.json",
])
def test_real_world_events_convert_to_valid_stix(ctx, name) -> None:
    records = read(name, ctx)
    kinds = Counter(r.obj["type"] for r in records if r.obj)
    assert kinds["report"] == 1
    for r in records:
        if r.obj is not None:
            validate_object(r.obj)
        else:  # whatever is refused says why, and where
            assert r.reason and r.position.startswith("event ")


def test_real_world_event_counts(ctx) -> None:
    kinds = Counter(r.obj["type"] for r in read("pymisp_existing_event.json", ctx) if r.obj)
    # 83 to_ids attributes: 68 indicators (the 37 file objects fold 37 sha1+filename pairs into one each)
    assert kinds["indicator"] == 68 and kinds["relationship"] == 20
    assert kinds["threat-actor"] == 1 and kinds["malware"] == 1 and kinds["tool"] == 1


def test_api_response_wrapper_is_unwrapped(ctx) -> None:
    records = read("eset_telebots_api_response.json", ctx)
    assert any(r.obj and r.obj["type"] == "threat-actor" and r.obj["name"] == "TeleBots" for r in records)


def test_feed_directory_golden(ctx, golden) -> None:
    records = list(read_feed(DATA / "misp_feed", ctx))
    golden("misp_feed", as_golden(records))
    reports = [r.obj for r in records if r.obj and r.obj["type"] == "report"]
    assert [r["name"] for r in reports] == ["Ransomware - Xorist", "Scanning from a small botnet"]
    missing = [r for r in records if r.obj is None and "not in the feed" in (r.reason or "")]
    assert len(missing) == 1 and missing[0].position == "event 65bb0000-aaaa-4bbb-8ccc-0000000000ff"
    bad_ip = [r for r in records if r.obj is None and "999.1.1.1" in (r.reason or "")]
    assert len(bad_ip) == 1


def test_reimport_yields_identical_objects(ctx) -> None:
    first = [r.obj for r in read("misp_event_phishing.json", ctx)]
    second = [r.obj for r in read("misp_event_phishing.json", ctx)]
    assert first == second


def test_not_json_and_not_an_event(ctx) -> None:
    assert "not valid JSON" in (list(read_misp(io.BytesIO(b"{oops"), "x.json", ctx))[0].reason or "")
    records = convert({"hello": "world"}, ctx)
    assert records[0].obj is None and "not a MISP event" in (records[0].reason or "")
