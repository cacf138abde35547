"""STIX input: bundles (streamed), JSON lines, arrays, the 2.0 upgrade and the lenient normaliser."""

from __future__ import annotations

import gzip
import io
import json
from typing import Any

import pytest

from commonwatch.domain.stix import validate_object
from commonwatch.errors import InputTooLarge
from commonwatch.formats.normalise import fix_hashes, fix_timestamp, normalise
from commonwatch.formats.records import Record
from commonwatch.formats.sources import detect_format, open_input
from commonwatch.formats.stix_bundle import HEAD_BYTES, read_stix
from imports.helpers import DATA, as_golden


def read(data: bytes, name: str = "input.json") -> list[Record]:
    return list(read_stix(open_input(io.BytesIO(data), name), name))


def indicator(n: int) -> dict[str, Any]:
    return {"type": "indicator", "spec_version": "2.1", "id": f"indicator--00000000-0000-4000-8000-{n:012d}",
            "created": "2024-01-01T00:00:00.000Z", "modified": "2024-01-01T00:00:00.000Z",
            "pattern": f"[ipv4-addr:value = '198.51.100.{n % 250}']", "pattern_type": "stix",
            "valid_from": "2024-01-01T00:00:00Z", "name": "x" * 40}


def test_stix20_bundle_upgrade_golden(golden) -> None:
    records = read((DATA / "stix20_poison_ivy_bundle.json").read_bytes(), "stix20_poison_ivy_bundle.json")
    golden("stix20_poison_ivy_bundle", as_golden(records))
    objs = {r.obj["id"]: r.obj for r in records if r.obj}
    ind = objs["indicator--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f"]
    assert ind["spec_version"] == "2.1" and ind["pattern_type"] == "stix"
    assert ind["indicator_types"] == ["malicious-activity"] and "labels" not in ind
    assert ind["created"] == "2017-06-01T00:00:00.000Z" and ind["modified"] == "2017-06-01T00:00:00.500Z"
    assert ind["valid_from"] == "2017-06-01T00:00:00Z"
    malware = objs["malware--31b940d4-6f7f-459a-80ea-9c1f17b5891b"]
    assert malware["is_family"] is True and malware["malware_types"] == ["remote-access-trojan"]
    observed = objs["observed-data--b67d30ff-02ac-498a-92f9-32f845f448cf"]
    assert "objects" not in observed and len(observed["object_refs"]) == 4
    domain = next(o for o in objs.values() if o["type"] == "domain-name")
    ip = next(o for o in objs.values() if o["type"] == "ipv4-addr")
    assert domain["resolves_to_refs"] == [ip["id"]]
    assert ip["id"] == "ipv4-addr--28bb3599-77cd-5a82-a950-b5bc3caf07c4"  # as stix2 computes it
    traffic = next(o for o in objs.values() if o["type"] == "network-traffic")
    assert traffic["src_ref"] == ip["id"]
    file = next(o for o in objs.values() if o["type"] == "file")
    assert set(file["hashes"]) == {"SHA-256", "MD5"}
    assert objs["report--84e4d88f-44ea-4bcd-bbf3-b2c1c320bcb3"]["report_types"] == ["threat-report"]
    valid = bad = 0
    for r in records:
        assert r.obj is not None
        try:
            validate_object(r.obj)
            valid += 1
        except Exception as exc:  # the one broken pattern of the sample
            assert "pattern" in str(exc)
            bad += 1
    assert (valid, bad) == (11, 1)


@pytest.mark.parametrize("name", [
    "cti-doc_v20_using-marking-definitions.json", "cti-doc_v20_sighting-of-observed-data.json",
    "cti-doc_using-marking-definitions.json", "schemas-example_apt1.json",
    "schemas-example_infrastructure.json",
])
def test_published_examples_come_out_valid(name: str) -> None:
    records = read((DATA / name).read_bytes(), name)
    assert records and all(r.obj is not None for r in records)
    for r in records:
        assert r.obj is not None
        validate_object(r.obj)


def test_opencti_export_with_producer_errors_is_read_whole() -> None:
    """Objects the validator will refuse still come through the reader (ingest reports them)."""
    records = read((DATA / "opencti_DATA-TEST-STIX2_v2.json").read_bytes())
    assert len(records) == len(json.loads((DATA / "opencti_DATA-TEST-STIX2_v2.json").read_bytes())["objects"])


@pytest.mark.parametrize(("value", "need_ms", "expected"), [
    ("2024-01-02T03:04:05Z", True, "2024-01-02T03:04:05.000Z"),
    ("2024-01-02T03:04:05Z", False, "2024-01-02T03:04:05Z"),
    ("2024-01-02T03:04:05.1Z", True, "2024-01-02T03:04:05.100Z"),
    ("2024-01-02T03:04:05.123456Z", True, "2024-01-02T03:04:05.123456Z"),
    ("2024-01-02T03:04:05+00:00", True, "2024-01-02T03:04:05.000Z"),
    ("2024-01-02T05:04:05+02:00", True, "2024-01-02T03:04:05.000Z"),
    ("2024-01-02T00:30:00-0100", False, "2024-01-02T01:30:00Z"),
    ("2024-01-02 03:04:05", True, "2024-01-02T03:04:05.000Z"),
    ("2024-01-02t03:04:05z", False, "2024-01-02T03:04:05Z"),
    ("2024-01-02", True, "2024-01-02T00:00:00.000Z"),
    ("2024-02-30T00:00:00Z", True, None),
    ("yesterday", True, None),
])
def test_fix_timestamp(value: str, need_ms: bool, expected: str | None) -> None:
    assert fix_timestamp(value, need_ms) == expected


def test_fix_hashes_and_missing_sco_fields() -> None:
    assert fix_hashes({"md5": "a", "sha256": "b", "SHA1": "c", "x-custom": "d"}) == {
        "MD5": "a", "SHA-256": "b", "SHA-1": "c", "x-custom": "d"}
    obj = normalise({"type": "ipv4-addr", "value": "198.51.100.3"})
    assert obj["spec_version"] == "2.1" and obj["id"] == "ipv4-addr--28bb3599-77cd-5a82-a950-b5bc3caf07c4"


def test_json_lines_objects_and_bundles_with_a_bad_line() -> None:
    lines = [json.dumps(indicator(1)), "", json.dumps({"type": "bundle", "id": "bundle--1",
                                                        "objects": [indicator(2), indicator(3)]}),
             "{not json", json.dumps([1, 2]), json.dumps({"no": "type"})]
    records = read("\n".join(lines).encode() + b"\n")
    assert [r.position for r in records] == ["line 1", "line 3 object 1", "line 3 object 2", "line 4",
                                             "line 5", "line 6"]
    assert [r.obj is None for r in records] == [False, False, False, True, True, True]
    assert "not valid JSON" in (records[3].reason or "")
    assert "has no 'type'" in (records[5].reason or "")


def test_array_and_single_object() -> None:
    array = read(json.dumps([indicator(1), indicator(2)]).encode())
    assert [r.position for r in array] == ["item 1", "item 2"]
    single = read(json.dumps(indicator(7), indent=2).encode())
    assert len(single) == 1 and single[0].obj == indicator(7)


def _big_bundle(count: int) -> bytes:
    body = json.dumps({"type": "bundle", "id": "bundle--5d0092c5-5f74-4287-9642-33f4c354e56d",
                       "objects": [indicator(n) for n in range(count)]}, indent=1).encode()
    assert len(body) > HEAD_BYTES  # the streaming path, not the small-input one
    return body


def test_big_bundle_is_streamed_and_gzip_is_accepted() -> None:
    body = _big_bundle(600)
    plain = read(body)
    zipped = read(gzip.compress(body), "bundle.json.gz")
    assert [r.obj for r in plain] == [r.obj for r in zipped] == [indicator(n) for n in range(600)]
    assert plain[-1].position == "object 600"


def test_truncated_big_bundle_keeps_what_was_read_and_says_where_it_broke() -> None:
    body = _big_bundle(600)
    records = read(body[: len(body) * 2 // 3])
    assert records[-1].obj is None and "not valid JSON" in (records[-1].reason or "")
    assert records[-1].position == f"after object {len(records) - 1}"
    assert all(r.obj is not None for r in records[:-1]) and len(records) > 300


def test_size_limit_counts_decompressed_bytes() -> None:
    bomb = gzip.compress(b" " * 5_000_000 + b"[]")
    stream = open_input(io.BytesIO(bomb), "bomb.json.gz", max_bytes=1_000_000)
    with pytest.raises(InputTooLarge, match="bomb.json.gz is larger than the limit of 1000000 bytes"):
        stream.read()


def test_empty_input() -> None:
    assert [r.reason for r in read(b"  \n")] == ["the input is empty"]


@pytest.mark.parametrize(("head", "name", "expected"), [
    (b'{"type": "bundle", "id": "bundle--x", "objects": []}', "x", "stix"),
    (b'{"Event": {"info": "x"}}', "x.json", "misp"),
    (b'{"response": [{"Event": {}}]}', "x", "misp"),
    (b'{"info": "x", "uuid": "y", "Attribute": []}', "x", "misp"),
    (b'\xef\xbb\xbf[{"type": "indicator", "spec_version": "2.1"}]', "x", "stix"),
    (b"value,type\n1.2.3.4,ip\n", "iocs.csv", "csv"),
    (b"value\tkind\n", "iocs.tsv.gz", "csv"),
    (b"Some report mentioning evil[.]com", "report.txt", "text"),
])
def test_detect_format(head: bytes, name: str, expected: str) -> None:
    assert detect_format(head, name) == expected


@pytest.mark.parametrize("deep", [
    b'{"type": "x", "a": ' + b'{"a": ' * 20_000 + b"1" + b"}" * 20_001,
    b'{"type": "x", "a": ' + b"[" * 20_000 + b"]" * 20_000 + b"}",
])
def test_deep_nesting_inside_a_streamed_bundle_is_refused_in_bounded_memory(deep: bytes) -> None:
    """Streaming keeps a path per level (memory quadratic in the depth): a deep object
    anywhere in a big bundle ends the input with a rejection instead, the objects before
    it kept; ordinary bundles, unbalanced brackets in strings included, read as before
    (only a run of more than 512 in a row is refused, even inside a string)."""
    objs = [json.dumps(indicator(n)).encode() for n in range(600)]
    data = b'{"type": "bundle", "id": "bundle--00000000-0000-4000-8000-000000000000", "objects": ['
    whole = data + b", ".join([*objs[:500], deep, *objs[500:]]) + b"]}"
    assert len(whole) > HEAD_BYTES  # the streamed path
    records = read(whole)
    kept = [r for r in records if r.obj]
    assert 0 < len(kept) <= 500 and [r.reason for r in records if r.obj is None] == [
        "not valid JSON (nested more than 512 levels deep); the rest of this input could not be read"]
    brackets = {**indicator(1), "description": ("[" * 500 + " :-[ ") * 8}  # unbalanced, short runs
    fine = data + b", ".join([*objs[:300], json.dumps(brackets).encode(), *objs[300:]]) + b"]}"
    assert len([r for r in read(fine) if r.obj]) == 601


@pytest.mark.parametrize("big", [False, True])
def test_an_array_written_one_object_per_line_is_not_json_lines(big: bool) -> None:
    """Its last object alone on a line parses as an object, but the input is one array."""
    objs = [indicator(n) for n in range(700 if big else 3)]
    data = b"[\n" + b",\n".join(json.dumps(o).encode() for o in objs) + b"\n]\n"
    assert (len(data) > HEAD_BYTES) == big
    records = read(data)
    assert [r.obj["id"] for r in records if r.obj] == [o["id"] for o in objs]
    assert not [r for r in records if r.obj is None]
