"""Adversarial inputs for the importers: wrong types, broken files, tricky text.

The rules (docs/import.md): a malformed record never aborts an import and is never
dropped silently (every rejection names file, position and reason); the result says
whether everything went in; gzip accepted; size limits enforced; STIX 2.0 upgraded;
MISP distribution never widened; SCO ids deterministic; re-importing stores nothing.
"""

from __future__ import annotations

import gzip
import io
import json
import re
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from commonwatch.cli.main import app
from commonwatch.domain.markings import TLP2_MARKING_BY_LEVEL, Tlp
from commonwatch.domain.stix import validate_object
from commonwatch.domain.warninglists import load_warninglists
from commonwatch.formats.freetext import extract, read_text
from commonwatch.formats.misp import read_feed, read_misp
from commonwatch.formats.observables import ImportContext
from commonwatch.formats.records import Record
from commonwatch.formats.sources import DEFAULT_MAX_BYTES, expand, open_input
from commonwatch.formats.stix_bundle import HEAD_BYTES, read_stix
from commonwatch.formats.tabular import Mapping, read_csv
from commonwatch.services.importer import ImportService, ImportSummary
from commonwatch.services.query import ObjectFilter, VersionSelector
from imports.helpers import FROZEN_TIME, OWN_IDENTITY

from conftest import count_rows
from support.factories import make_community, make_member

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

EVENT_UUID = "6553a0c0-1c2d-4e5f-8a9b-0c1d2e3f4a5b"
REPORT = f"report--{EVENT_UUID}"
PRODUCER = "5f0c2a1e-6b7d-4c3e-9a1b-2c3d4e5f6a7b"


def u(n: int) -> str:
    return f"6553a0c0-0000-4a00-8000-{n:012x}"


# -- helpers -------------------------------------------------------------------------------------
def attr(n: int, **kw: Any) -> dict[str, Any]:
    base = {
        "uuid": u(n),
        "type": "ip-dst",
        "value": f"203.0.113.{n}",
        "to_ids": True,
        "timestamp": "1700000000",
    }
    base.update(kw)
    return base


def event(**kw: Any) -> dict[str, Any]:
    ev: dict[str, Any] = {
        "uuid": EVENT_UUID,
        "info": "adversarial",
        "timestamp": "1700000000",
        "distribution": "3",
        "date": "2023-11-14",
    }
    ev.update(kw)
    return {"Event": ev}


def misp(doc: Any, ctx: ImportContext) -> list[Record]:
    return list(read_misp(io.BytesIO(json.dumps(doc).encode()), "event.json", ctx))


def stix(data: bytes, name: str = "bundle.json") -> list[Record]:
    return list(read_stix(open_input(io.BytesIO(data), name), name))


def csv_records(
    data: str | bytes, ctx: ImportContext, name: str = "iocs.csv", mapping: Mapping | None = None
) -> list[Record]:
    raw = data.encode() if isinstance(data, str) else data
    return list(read_csv(open_input(io.BytesIO(raw), name), name, ctx, mapping or Mapping()))


def objs(records: list[Record]) -> dict[str, dict[str, Any]]:
    return {r.obj["id"]: r.obj for r in records if r.obj is not None}


def rejections(records: list[Record]) -> list[Record]:
    return [r for r in records if r.obj is None]


def tlp_of(obj: dict[str, Any]) -> Tlp | None:
    refs = obj.get("object_marking_refs", [])
    levels = [level for level, mid in TLP2_MARKING_BY_LEVEL.items() if mid in refs]
    return max(levels) if levels else None


def ind(n: int, **kw: Any) -> dict[str, Any]:
    obj = {
        "type": "indicator",
        "spec_version": "2.1",
        "id": f"indicator--8e2e2d2b-17d4-4cbf-938f-{n:012d}",
        "created": "2024-01-01T00:00:00.000Z",
        "modified": "2024-01-01T00:00:00.000Z",
        "pattern": f"[ipv4-addr:value = '203.0.113.{n % 250}']",
        "pattern_type": "stix",
        "valid_from": "2024-01-01T00:00:00Z",
        "indicator_types": ["malicious-activity"],
    }
    obj.update(kw)
    return obj


def bundle(*objects: Any, **kw: Any) -> bytes:
    return json.dumps(
        {
            "type": "bundle",
            "id": "bundle--8e2e2d2b-17d4-4cbf-938f-000000000000",
            "objects": list(objects),
            **kw,
        }
    ).encode()


# == MISP: wrong types in every field =============================================================
def test_misp_value_of_wrong_type_rejects_only_that_attribute(ctx) -> None:
    records = misp(
        event(
            Attribute=[
                attr(1, value=None),
                attr(2, value=["203.0.113.9"]),
                attr(3, value={"ip": "1.2.3.4"}),
                attr(4),
            ]
        ),
        ctx,
    )
    bad = {r.position.rsplit(" ", 1)[-1]: r.reason for r in rejections(records)}
    assert set(bad) == {u(1), u(2), u(3)}
    assert all("not an IP address" in reason for reason in bad.values())
    found = objs(records)
    assert f"indicator--{u(4)}" in found and REPORT in found
    assert found[REPORT]["object_refs"] == [o for o in found if o.startswith(("ipv4", "indicator"))]


def test_misp_numeric_value_for_as_attribute_is_read(ctx) -> None:
    found = objs(misp(event(Attribute=[attr(1, type="AS", value=64500)]), ctx))
    assert any(o["type"] == "autonomous-system" and o["number"] == 64500 for o in found.values())
    assert found[f"indicator--{u(1)}"]["pattern"] == "[autonomous-system:number = 64500]"


@pytest.mark.parametrize(
    ("flag", "indicator"),
    [
        ("1", True),
        (1, True),
        ("true", True),
        (True, True),
        ("0", False),
        (0, False),
        ("false", False),
        (False, False),
        (None, False),
        ("", False),
    ],
)
def test_misp_to_ids_spellings(ctx, flag, indicator) -> None:
    found = objs(misp(event(Attribute=[attr(1, to_ids=flag)]), ctx))
    assert (f"indicator--{u(1)}" in found) is indicator
    assert any(o["type"] == "ipv4-addr" for o in found.values())  # the SCO is there either way


@pytest.mark.parametrize("timestamp", ["yesterday", 10**20, "1e400", [1700000000]])
def test_misp_bad_attribute_timestamp_rejects_only_that_attribute(ctx, timestamp) -> None:
    records = misp(event(Attribute=[attr(1, timestamp=timestamp), attr(2)]), ctx)
    bad = rejections(records)
    assert len(bad) == 1 and bad[0].position.endswith(f"attribute {u(1)}")
    assert "Unix timestamp" in (bad[0].reason or "")
    assert {f"indicator--{u(2)}", REPORT} <= set(objs(records))


def test_misp_string_timestamps_are_read_as_epochs(ctx) -> None:
    found = objs(misp(event(Attribute=[attr(1, timestamp="1700000000")]), ctx))
    assert found[f"indicator--{u(1)}"]["modified"] == "2023-11-14T22:13:20.000Z"


def test_misp_bad_event_timestamp_is_one_rejection(ctx) -> None:
    records = misp(event(timestamp="soon", Attribute=[attr(1)]), ctx)
    assert [r.obj for r in records] == [None]
    assert "Unix timestamp" in (records[0].reason or "") and EVENT_UUID in records[0].position


def test_misp_invalid_uuids_get_stable_ids(ctx) -> None:
    doc = event(Attribute=[attr(1, uuid="not-a-uuid"), attr(2, uuid=None)])
    first, second = objs(misp(doc, ctx)), objs(misp(doc, ctx))
    assert first == second
    assert sum(1 for o in first if o.startswith("indicator--")) == 2
    for obj in first.values():
        validate_object(obj)


def test_misp_tag_name_null_or_number_is_ignored_other_tags_kept(ctx) -> None:
    records = misp(
        event(Tag=[{"name": None}, {"name": 5}, {}, "junk", {"name": "tlp:red"}], Attribute=[attr(1)]), ctx
    )
    found = objs(records)
    assert tlp_of(found[f"indicator--{u(1)}"]) == Tlp.RED
    assert tlp_of(found[REPORT]) == Tlp.RED


@pytest.mark.parametrize("tags", [["tlp:red"], {"name": "tlp:red"}], ids=["strings", "dict"])
def test_misp_tlp_tag_in_unexpected_shape_never_widens(ctx, tags) -> None:
    records = misp(event(Tag=tags, Attribute=[attr(1)]), ctx)
    for r in records:
        if r.obj is not None and r.obj["type"] != "identity":
            assert tlp_of(r.obj) == Tlp.RED, r.obj["id"]


@pytest.mark.parametrize("dist", ["7", -1, "abc", 1.5, "1.0", True])
def test_misp_distribution_out_of_range_rejects_only_that_attribute(ctx, dist) -> None:
    records = misp(event(Attribute=[attr(1, distribution=dist), attr(2)]), ctx)
    bad = rejections(records)
    assert len(bad) == 1 and bad[0].position.endswith(f"attribute {u(1)}")
    assert "distribution" in (bad[0].reason or "")
    assert f"indicator--{u(2)}" in objs(records)


@pytest.mark.parametrize(
    ("event_dist", "attr_dist", "expected"),
    [
        (3, 0, Tlp.RED),
        ("0", "5", Tlp.RED),
        (0, 3, Tlp.RED),
        ("1", 3, Tlp.AMBER),
        (3, "2", Tlp.AMBER),
    ],
)
def test_misp_distribution_as_int_or_str_is_honoured(ctx, event_dist, attr_dist, expected) -> None:
    # community default AMBER in ``ctx``: distribution 2 floors at GREEN, the default wins
    found = objs(misp(event(distribution=event_dist, Attribute=[attr(1, distribution=attr_dist)]), ctx))
    assert tlp_of(found[f"indicator--{u(1)}"]) == expected
    assert all(
        tlp_of(o) is not None and tlp_of(o) >= expected
        for o in found.values()
        if o["type"] in ("indicator", "ipv4-addr")
    )


def test_misp_sharing_group_without_the_group_is_rejected(ctx) -> None:
    records = misp(
        event(
            Attribute=[attr(1, distribution="4", sharing_group_id="17"), attr(2)],
            Object=[
                {
                    "uuid": u(9),
                    "name": "domain-ip",
                    "distribution": 4,
                    "Attribute": [attr(3, distribution="5"), attr(4, distribution="3")],
                }
            ],
        ),
        ctx,
    )
    bad = {r.position: r.reason for r in rejections(records)}
    assert len(bad) == 3 and all("sharing group" in reason for reason in bad.values())
    found = objs(records)
    assert f"indicator--{u(2)}" in found
    assert not {f"indicator--{u(n)}" for n in (1, 3, 4)} & set(found)
    assert not any(o.get("value") in ("203.0.113.1", "203.0.113.3", "203.0.113.4") for o in found.values())


def test_misp_sharing_group_event_stores_nothing_at_all(ctx) -> None:
    records = misp(
        event(distribution="4", Orgc={"uuid": PRODUCER, "name": "Partner CERT"}, Attribute=[attr(1)]), ctx
    )
    assert [r.obj for r in records] == [None]
    assert "sharing group" in (records[0].reason or "")


def test_misp_attribute_given_as_a_single_dict_is_one_record(ctx) -> None:
    records = misp(event(Attribute=attr(1)), ctx)
    found = objs(records)
    assert f"indicator--{u(1)}" in found or len(rejections(records)) == 1, [
        r.reason for r in rejections(records)
    ]


@pytest.mark.parametrize(
    "attributes",
    [None, [], "x", {"uuid": u(3)}, ["x", 5]],
    ids=["missing", "empty", "string", "dict", "not-objects"],
)
def test_misp_object_without_usable_attributes_is_not_silently_dropped(ctx, attributes) -> None:
    mobj: dict[str, Any] = {"uuid": u(9), "name": "domain-ip", "timestamp": "1700000000"}
    if attributes is not None:
        mobj["Attribute"] = attributes
    records = misp(event(Object=[mobj], Attribute=[attr(1)]), ctx)
    assert f"indicator--{u(1)}" in objs(records)
    assert any(u(9) in r.position for r in rejections(records)), [r.position for r in records]


def test_misp_object_entry_not_an_object_is_rejected(ctx) -> None:
    records = misp(event(Object=["file", 3], Attribute=[attr(1)]), ctx)
    assert len(rejections(records)) == 2
    assert all("Object entry is not a JSON object" in (r.reason or "") for r in rejections(records))
    assert REPORT in objs(records)


def test_misp_malformed_galaxy_cluster_does_not_abort_the_event(ctx) -> None:
    records = misp(
        event(
            Attribute=[attr(1, Sighting=[{"uuid": u(30), "date_sighting": "1700000100", "type": "0"}])],
            Galaxy=[
                {
                    "type": "threat-actor",
                    "GalaxyCluster": [
                        {
                            "uuid": u(20),
                            "value": "APT Example",
                            "tag_name": 'misp-galaxy:threat-actor="APT Example"',
                        },
                        "not a cluster",
                    ],
                }
            ],
        ),
        ctx,
    )
    found = objs(records)
    assert f"threat-actor--{u(20)}" in found
    assert f"sighting--{u(30)}" in found
    assert REPORT in found


def test_misp_galaxy_cluster_block_as_dict_does_not_abort_the_event(ctx) -> None:
    records = misp(
        event(
            Attribute=[attr(1)],
            Galaxy=[{"type": "threat-actor", "GalaxyCluster": {"uuid": u(20), "value": "APT Example"}}],
        ),
        ctx,
    )
    assert REPORT in objs(records)


def test_misp_galaxy_meta_strings_are_not_split_into_characters(ctx) -> None:
    records = misp(
        event(
            Attribute=[attr(1)],
            Galaxy=[
                {
                    "type": "threat-actor",
                    "GalaxyCluster": [
                        {
                            "uuid": u(20),
                            "value": "APT Example",
                            "meta": {"synonyms": "Fancy", "refs": "https://galaxy.example/apt"},
                        }
                    ],
                }
            ],
        ),
        ctx,
    )
    actor = objs(records)[f"threat-actor--{u(20)}"]
    assert actor.get("aliases") in (None, ["Fancy"])
    assert [r["url"] for r in actor.get("external_references", [])] in ([], ["https://galaxy.example/apt"])


def test_misp_galaxy_cluster_odd_values(ctx) -> None:
    records = misp(
        event(
            Attribute=[attr(1)],
            Galaxy=[
                {"type": "unknown-galaxy", "GalaxyCluster": [{"uuid": u(21), "value": "Something"}]},
                {
                    "type": "threat-actor",
                    "GalaxyCluster": [{"uuid": "bad", "value": "No uuid"}, {"uuid": u(22), "value": ""}],
                },
                {
                    "type": "mitre-malware",
                    "GalaxyCluster": [
                        {"uuid": u(23), "value": "Evilware", "meta": {"synonyms": [None, "", "EW"]}}
                    ],
                },
            ],
        ),
        ctx,
    )
    found = objs(records)
    malware = found[f"malware--{u(23)}"]
    assert malware["is_family"] is True and malware["aliases"] == ["EW"]
    validate_object(malware)
    assert REPORT in found


def test_misp_sighting_block_as_dict_does_not_abort_the_event(ctx) -> None:
    records = misp(
        event(
            Attribute=[attr(1)],
            Sighting={"attribute_uuid": u(1), "uuid": u(30), "date_sighting": "1700000100", "type": "0"},
        ),
        ctx,
    )
    assert REPORT in objs(records)


def test_misp_sightings_on_object_attributes_become_sightings(ctx) -> None:
    records = misp(
        event(
            Object=[
                {
                    "uuid": u(9),
                    "name": "domain-ip",
                    "Attribute": [
                        attr(1, Sighting=[{"uuid": u(30), "date_sighting": "1700000100", "type": "0"}])
                    ],
                }
            ]
        ),
        ctx,
    )
    found = objs(records)
    assert f"sighting--{u(30)}" in found or any(u(30) in r.position for r in rejections(records))


def test_misp_sighting_with_bad_date_is_rejected_alone(ctx) -> None:
    records = misp(
        event(
            Attribute=[
                attr(
                    1,
                    Sighting=[
                        {"uuid": u(30), "date_sighting": "yesterday", "type": "0"},
                        {
                            "uuid": u(31),
                            "date_sighting": "1700000100",
                            "type": "0",
                            "Organisation": "not an object",
                        },
                        {"uuid": u(32), "date_sighting": "1700000100", "type": "2"},
                    ],
                )
            ]
        ),
        ctx,
    )
    bad = {r.position.rsplit(" ", 1)[-1]: r.reason for r in rejections(records)}
    assert set(bad) == {u(30), u(32)}
    found = objs(records)
    assert found[f"sighting--{u(31)}"]["where_sighted_refs"] == [OWN_IDENTITY]
    validate_object(found[f"sighting--{u(31)}"])


def test_misp_object_reference_block_not_a_list_is_not_dropped(ctx) -> None:
    ref = {"uuid": u(40), "referenced_uuid": u(2), "relationship_type": "resolves-to"}
    records = misp(
        event(
            Attribute=[attr(2)],
            Object=[{"uuid": u(9), "name": "domain-ip", "Attribute": [attr(1)], "ObjectReference": ref}],
        ),
        ctx,
    )
    assert f"relationship--{u(40)}" in objs(records) or any(u(40) in r.position for r in rejections(records))


def test_misp_link_without_a_value_is_rejected_not_stored_as_none(ctx) -> None:
    records = misp(event(Attribute=[attr(1), {"uuid": u(2), "type": "link", "value": None}]), ctx)
    report = objs(records)[REPORT]
    urls = [r.get("url") for r in report["external_references"]]
    assert "None" not in urls
    assert any(r.position.endswith(u(2)) for r in rejections(records))


def test_misp_api_response_wrappers(ctx) -> None:
    second = event(uuid="6553a0c0-1c2d-4e5f-8a9b-0c1d2e3f4a5c", Attribute=[attr(2)])
    records = misp({"response": [event(Attribute=[attr(1)]), second, {"nothing": 1}]}, ctx)
    reports = [o for o in objs(records) if o.startswith("report--")]
    assert len(reports) == 2
    assert len(rejections(records)) == 1 and "not a MISP event" in (rejections(records)[0].reason or "")
    empty = misp({"response": []}, ctx)
    assert [r.obj for r in empty] == [None] and "no MISP event" in (empty[0].reason or "")
    assert "not a MISP event" in (misp({"Event": None}, ctx)[0].reason or "")


@pytest.mark.parametrize("doc", [None, 5, "text", [], [[]], {"Event": []}, {"response": None}])
def test_misp_documents_of_odd_shape_give_a_rejection(ctx, doc) -> None:
    records = misp(doc, ctx)
    assert records and all(r.obj is None and r.reason for r in records)


def test_misp_duplicate_attribute_uuid_in_one_event(ctx) -> None:
    # two attributes share a uuid but differ: the second is a conflicting object with the
    # same id and the same modified time; it must not silently replace or vanish.
    records = misp(event(Attribute=[attr(1), attr(1, value="203.0.113.99")]), ctx)
    indicators = [r for r in records if r.obj and r.obj["id"] == f"indicator--{u(1)}"]
    assert len(indicators) + len([r for r in rejections(records) if u(1) in r.position]) == 2


def test_misp_all_objects_valid_stix_whatever_the_junk(ctx) -> None:
    records = misp(
        event(
            Orgc={"uuid": PRODUCER, "name": None},
            info=None,
            date="2023-13-45",
            publish_timestamp="0",
            Tag=[{"name": "tlp:amber"}, {"name": 'misp-galaxy:mitre-attack-pattern="Phishing - T1566"'}],
            Attribute=[
                attr(1, comment="", first_seen="garbage", last_seen=12),
                attr(2, type="domain|ip", value="evil.example.net|203.0.113.2"),
                attr(3, type="filename|md5", value="a.exe|D41D8CD98F00B204E9800998ECF8427E"),
                attr(4, type="text", value=None),
                attr(5, type="vulnerability", value="cve-2021-44228"),
                attr(6, type="ip-dst|port", value="203.0.113.6|443"),
                attr(7, type="ip-dst|port", value="203.0.113.7"),
            ],
        ),
        ctx,
    )
    for r in records:
        if r.obj is not None:
            validate_object(r.obj)
    bad = rejections(records)
    assert [r.position.rsplit(" ", 1)[-1] for r in bad] == [u(7)]
    found = objs(records)
    assert found[f"vulnerability--{u(5)}"]["name"] == "CVE-2021-44228"
    assert tlp_of(found[REPORT]) == Tlp.AMBER


# == MISP feeds ====================================================================================
def _feed(tmp_path: Path, files: dict[str, bytes], manifest: Any) -> Path:
    feed = tmp_path / "feed"
    feed.mkdir()
    (feed / "manifest.json").write_text(json.dumps(manifest))
    for name, data in files.items():
        (feed / name).write_bytes(data)
    return feed


def _feed_event(uuid: str, n: int) -> bytes:
    return json.dumps(
        {
            "Event": {
                "uuid": uuid,
                "info": f"feed {n}",
                "timestamp": "1700000000",
                "Tag": [{"name": "tlp:clear"}],
                "Attribute": [attr(n)],
            }
        }
    ).encode()


E1, E2, E3, E4 = (f"65bb0000-aaaa-4bbb-8ccc-00000000000{n}" for n in range(1, 5))


def test_feed_with_missing_and_non_json_files(ctx, tmp_path) -> None:
    feed = _feed(
        tmp_path,
        {
            f"{E1}.json": _feed_event(E1, 1),
            f"{E2}.json": b"<html>not json</html>",
            f"{E4}.json": gzip.compress(_feed_event(E4, 4)),
        },
        {E1: {}, E2: {}, E3: {}, E4: {}, "../../etc/passwd": {}},
    )
    records = list(read_feed(feed, ctx))
    found = objs(records)
    assert {f"report--{E1}", f"report--{E4}"} <= set(found)
    bad = {(Path(r.source).name, r.position): r.reason for r in rejections(records)}
    assert "not valid JSON" in bad[(f"{E2}.json", "")]
    assert "not in the feed" in bad[("manifest.json", f"event {E3}")]
    assert "not in the feed" in bad[("manifest.json", "event ../../etc/passwd")]
    assert len(bad) == 3


@pytest.mark.parametrize("manifest", [b"[1, 2]", b"{broken", b""])
def test_feed_with_bad_manifest(ctx, tmp_path, manifest) -> None:
    feed = tmp_path / "feed"
    feed.mkdir()
    (feed / "manifest.json").write_bytes(manifest)
    records = list(read_feed(feed, ctx))
    assert len(records) == 1 and records[0].obj is None and records[0].source.endswith("manifest.json")


# == STIX =========================================================================================
@pytest.mark.parametrize(
    "encode",
    [
        lambda b: b"\xef\xbb\xbf" + b,
        lambda b: b.decode().encode("utf-16"),
        lambda b: b"\r\n  \t" + b,
        lambda b: gzip.compress(b"\xef\xbb\xbf" + b),
    ],
    ids=["bom", "utf16", "whitespace", "gzip-bom"],
)
def test_stix_bundle_encodings(encode) -> None:
    records = stix(encode(bundle(ind(1))))
    assert [r.obj["id"] for r in records if r.obj] == [ind(1)["id"]]


def test_stix_big_bundle_with_bom_is_streamed() -> None:
    data = b"\xef\xbb\xbf" + bundle(*[ind(n, name="x" * 200) for n in range(400)])
    assert len(data) > HEAD_BYTES
    records = stix(data)
    assert not rejections(records), rejections(records)[:1]
    assert len(records) == 400


def test_stix_bundle_items_that_are_not_objects() -> None:
    records = stix(bundle(ind(1), 5, "x", None, [], {"no": "type"}, ind(2)))
    assert [r.position for r in rejections(records)] == [f"object {n}" for n in range(2, 7)]
    assert len(objs(records)) == 2


@pytest.mark.parametrize("objects", [None, "x", {"a": 1}])
def test_stix_bundle_objects_not_a_list(objects) -> None:
    records = stix(json.dumps({"type": "bundle", "objects": objects}).encode())
    assert [r.obj for r in records] == [None] and "not a list" in (records[0].reason or "")


def test_stix_small_truncated_bundle_keeps_what_came_before_the_break() -> None:
    data = bundle(ind(1), ind(2))[:-40]
    records = stix(data)
    assert ind(1)["id"] in objs(records)
    assert len(rejections(records)) == 1


def test_stix_big_truncated_bundle_keeps_what_came_before_the_break() -> None:
    data = bundle(*[ind(n, name="x" * 200) for n in range(400)])[:-150]
    records = stix(data)
    assert len(objs(records)) == 399
    bad = rejections(records)
    assert (
        len(bad) == 1 and bad[0].position == "after object 399" and "not valid JSON" in (bad[0].reason or "")
    )


def test_stix_trailing_garbage_after_a_complete_bundle() -> None:
    records = stix(bundle(ind(1), ind(2)) + b" xyz")  # with a newline it works (JSON lines)
    assert {ind(1)["id"], ind(2)["id"]} <= set(objs(records))
    assert len(rejections(records)) == 1


def test_stix_json_lines_with_blank_and_bad_lines() -> None:
    lines = [
        json.dumps(ind(1)),
        "",
        "   ",
        "{bad json",
        json.dumps(bundle(ind(2)).decode()),
        "[]",
        "7",
        json.dumps(ind(3)),
        "",
    ]
    records = stix("\r\n".join(lines).encode(), "x.jsonl")
    assert set(objs(records)) == {ind(1)["id"], ind(3)["id"]}
    bad = {r.position: r.reason for r in rejections(records)}
    assert "not valid JSON" in bad["line 4"]
    assert "expected a JSON object" in bad["line 5"]  # a JSON string holding a bundle
    assert "line 6" not in bad or "object" in bad["line 6"]
    assert "expected a JSON object" in bad["line 7"]


def test_stix_json_lines_with_a_bad_first_line() -> None:
    data = b"{oops\n" + json.dumps(ind(1)).encode() + b"\n" + json.dumps(ind(2)).encode() + b"\n"
    records = stix(data, "x.jsonl")
    assert {ind(1)["id"], ind(2)["id"]} <= set(objs(records))
    assert [r.position for r in rejections(records)] == ["line 1"]


def test_stix20_bundle_is_upgraded_to_21() -> None:
    v20 = {"created": "2017-01-01T00:00:00Z", "modified": "2017-01-01T00:00:00Z"}
    objects = [
        {
            "type": "identity",
            "id": "identity--8e2e2d2b-17d4-4cbf-938f-000000000010",
            "name": "ACME",
            "identity_class": "organization",
            **v20,
        },
        {
            "type": "indicator",
            "id": "indicator--8e2e2d2b-17d4-4cbf-938f-000000000011",
            "labels": ["malicious-activity"],
            "pattern": "[file:hashes.'SHA-256' = "
            "'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855']",
            "valid_from": "2017-01-01T00:00:00Z",
            "created_by_ref": "identity--8e2e2d2b-17d4-4cbf-938f-000000000010",
            **v20,
        },
        {
            "type": "malware",
            "id": "malware--8e2e2d2b-17d4-4cbf-938f-000000000012",
            "name": "X",
            "labels": ["bot"],
            **v20,
        },
        {
            "type": "tool",
            "id": "tool--8e2e2d2b-17d4-4cbf-938f-000000000013",
            "name": "T",
            "labels": ["remote-access"],
            **v20,
        },
        {
            "type": "threat-actor",
            "id": "threat-actor--8e2e2d2b-17d4-4cbf-938f-000000000014",
            "name": "A",
            "labels": ["crime-syndicate"],
            **v20,
        },
        {
            "type": "report",
            "id": "report--8e2e2d2b-17d4-4cbf-938f-000000000015",
            "name": "R",
            "labels": ["threat-report"],
            "published": "2017-01-01T00:00:00Z",
            "object_refs": ["malware--8e2e2d2b-17d4-4cbf-938f-000000000012"],
            **v20,
        },
        {
            "type": "observed-data",
            "id": "observed-data--8e2e2d2b-17d4-4cbf-938f-000000000016",
            "first_observed": "2017-01-01T00:00:00Z",
            "last_observed": "2017-01-01T00:00:00Z",
            "number_observed": 1,
            "objects": {
                "0": {
                    "type": "file",
                    "hashes": {"sha256": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
                },
                "1": {"type": "ipv4-addr", "value": "203.0.113.1"},
                "2": {"type": "network-traffic", "dst_ref": "1", "protocols": ["tcp"]},
            },
            **v20,
        },
    ]
    records = stix(bundle(*objects, spec_version="2.0"))
    assert not rejections(records)
    found = objs(records)
    for obj in found.values():
        assert obj["spec_version"] == "2.1"
        validate_object(obj)
    i = found["indicator--8e2e2d2b-17d4-4cbf-938f-000000000011"]
    assert (
        i["pattern_type"] == "stix" and i["indicator_types"] == ["malicious-activity"] and "labels" not in i
    )
    assert found["malware--8e2e2d2b-17d4-4cbf-938f-000000000012"]["malware_types"] == ["bot"]
    assert found["malware--8e2e2d2b-17d4-4cbf-938f-000000000012"]["is_family"] is True
    assert found["tool--8e2e2d2b-17d4-4cbf-938f-000000000013"]["tool_types"] == ["remote-access"]
    assert found["threat-actor--8e2e2d2b-17d4-4cbf-938f-000000000014"]["threat_actor_types"] == [
        "crime-syndicate"
    ]
    assert found["report--8e2e2d2b-17d4-4cbf-938f-000000000015"]["report_types"] == ["threat-report"]
    assert found["identity--8e2e2d2b-17d4-4cbf-938f-000000000010"]["created"] == "2017-01-01T00:00:00.000Z"
    observed = found["observed-data--8e2e2d2b-17d4-4cbf-938f-000000000016"]
    assert "objects" not in observed and len(observed["object_refs"]) == 3
    file_sco = next(o for o in found.values() if o["type"] == "file")
    assert list(file_sco["hashes"]) == ["SHA-256"]
    traffic = next(o for o in found.values() if o["type"] == "network-traffic")
    assert traffic["dst_ref"] == "ipv4-addr--" + traffic["dst_ref"].split("--")[1]
    assert traffic["dst_ref"] in observed["object_refs"]


def observed_20(objects: dict[str, Any]) -> dict[str, Any]:
    """A STIX 2.0 observed-data object embedding ``objects`` (no spec_version: 2.0)."""
    return {
        "type": "observed-data",
        "id": "observed-data--8e2e2d2b-17d4-4cbf-938f-000000000016",
        "created": "2017-01-01T00:00:00Z",
        "modified": "2017-01-01T00:00:00Z",
        "first_observed": "2017-01-01T00:00:00Z",
        "last_observed": "2017-01-01T00:00:00Z",
        "number_observed": 1,
        "objects": objects,
    }


def test_stix20_upgrade_is_deterministic() -> None:
    obj = observed_20({
        "a": {"type": "domain-name", "value": "evil.example.net", "resolves_to_refs": ["b"]},
        "b": {"type": "ipv4-addr", "value": "203.0.113.1"},
    })
    first, second = stix(bundle(obj)), stix(bundle(obj))
    assert [r.obj for r in first] == [r.obj for r in second]


@pytest.mark.parametrize("labels", ["ransomware", None, [], 5])
def test_stix20_odd_labels_never_crash(labels) -> None:
    obj = {
        "type": "malware",
        "id": "malware--8e2e2d2b-17d4-4cbf-938f-000000000012",
        "name": "X",
        "created": "2017-01-01T00:00:00Z",
        "modified": "2017-01-01T00:00:00Z",
        "labels": labels,
    }
    records = stix(bundle(obj))
    assert len(records) == 1 and (records[0].obj is None) != (records[0].reason is None)


# == pathological JSON ===========================================================================
@pytest.mark.parametrize("fmt", ["stix", "misp"])
def test_deeply_nested_json_is_rejected_not_raised(ctx, fmt) -> None:
    data = b"[" * 5000 + b"]" * 5000
    stream = open_input(io.BytesIO(data), "deep.json")
    reader = read_stix(stream, "deep.json") if fmt == "stix" else read_misp(stream, "deep.json", ctx)
    records = list(reader)
    assert records and all(r.obj is None and r.reason for r in records)


_DEEP_SCRIPT = """
import io, resource, sys
resource.setrlimit(resource.RLIMIT_AS, (1536 * 1024**2, 1536 * 1024**2))
from commonwatch.formats.sources import open_input
from commonwatch.formats.stix_bundle import read_stix
depth = 40_000
data = b'[' * depth + b']' * depth  # 80 KB: over the 64 KiB head, so streamed with ijson
try:
    records = list(read_stix(open_input(io.BytesIO(data), 'deep.json'), 'deep.json'))
except MemoryError:
    print('MemoryError'); sys.exit(3)
print(len(records), all(r.obj is None for r in records))
"""


def test_big_deeply_nested_json_is_read_in_bounded_memory() -> None:
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-c", _DEEP_SCRIPT], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, (result.stdout + result.stderr)[-500:]
    assert result.stdout.strip().endswith("True")


# == gzip and sizes (through the import service, on both databases) =============================
@pytest.fixture
def world(exchange):
    alice = make_member(exchange, "Alice Telecom")
    bob = make_member(exchange, "Bob CERT", sector="government")
    make_community(exchange, "ops", Tlp.AMBER, {alice.org: (True, Tlp.RED), bob.org: (False, Tlp.GREEN)},
                   "Operators")
    return alice, bob


def run_import(
    exchange, member, *paths: Path | str, fmt: str = "auto", max_bytes: int = DEFAULT_MAX_BYTES
) -> ImportSummary:
    service = ImportService(exchange.ingest, exchange.query, load_warninglists(), batch_size=50)
    community = service.community(member.principal, "ops")
    ctx = service.context(member.principal, community, timestamp=FROZEN_TIME)
    return service.run(
        member.principal, community, list(expand([str(p) for p in paths])), fmt, ctx, max_bytes=max_bytes
    )


def stored_objects(exchange, member) -> dict[str, dict[str, Any]]:
    cid = exchange.admin.get_community("ops").collection_id
    page = exchange.query.objects(member.principal, cid, ObjectFilter(limit=10_000))
    return {json.loads(r.raw)["id"]: json.loads(r.raw) for r in page.rows}


@pytest.fixture
def inputs(tmp_path) -> Path:
    """A directory of its own: ``tmp_path`` also holds the SQLite database file."""
    path = tmp_path / "inputs"
    path.mkdir()
    return path


def by_file(summary: ImportSummary) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for r in summary.rejections:
        out.setdefault(Path(r.source).name, []).append(r.reason)
    return out


def test_broken_gzip_inputs_are_reported_and_never_abort(exchange, world, inputs) -> None:
    alice, _ = world
    rows = "value,type\n" + "".join(f"evil{n}.example.net,domain\n" for n in range(200))
    whole = gzip.compress(rows.encode())
    (inputs / "a_truncated.csv.gz").write_bytes(whole[: len(whole) // 2])
    (inputs / "b_not_gzip.txt").write_bytes(b"\x1f\x8b" + b"this is not deflate data at all" * 10)
    (inputs / "c_bad_crc.csv").write_bytes(whole[:-8] + b"\0\0\0\0" + whole[-4:])
    (inputs / "d_good.txt.gz").write_bytes(
        gzip.compress(b"C2 beacons to hxxp://c2[.]evil-domain[.]top/gate\n")
    )
    summary = run_import(exchange, alice, inputs)
    assert not summary.ok
    bad = by_file(summary)
    assert len(bad["a_truncated.csv.gz"]) == 1 and "records before this point" in bad["a_truncated.csv.gz"][0]
    assert "b_not_gzip.txt" in bad and "c_bad_crc.csv" in bad
    assert "d_good.txt.gz" not in bad
    found = stored_objects(exchange, alice)
    assert any(o.get("value") == "http://c2.evil-domain.top/gate" for o in found.values())


def test_truncated_gzip_keeps_the_rows_before_the_break(exchange, world, inputs) -> None:
    alice, _ = world
    rows = "value,type\n" + "".join(f"evil{n}.example.net,domain\n" for n in range(200))
    whole = gzip.compress(rows.encode())
    (inputs / "truncated.csv.gz").write_bytes(whole[: len(whole) // 2])
    summary = run_import(exchange, alice, inputs)
    assert summary.rejected == 1
    found = stored_objects(exchange, alice)
    assert any(o.get("value") == "evil0.example.net" for o in found.values())
    # The row cut at the break is not taken for a value (no "evil87.exa").
    domains = {o["value"] for o in found.values() if o.get("type") == "domain-name"}
    assert 50 < len(domains) < 200 and all(re.fullmatch(r"evil\d+\.example\.net", d) for d in domains)


def test_size_limit_applies_after_decompression(exchange, world, inputs) -> None:
    alice, _ = world
    (inputs / "bomb.txt.gz").write_bytes(gzip.compress(b"evil.example.top\n" + b" " * 200_000))
    (inputs / "big.txt").write_bytes(b"x" * 200_001)
    (inputs / "small.txt").write_bytes(b"visit bad-site[.]top\n")
    summary = run_import(exchange, alice, inputs, max_bytes=100_000)
    bad = by_file(summary)
    assert "limit" in bad["bomb.txt.gz"][0] and "limit" in bad["big.txt"][0]
    assert summary.rejected == 2
    assert summary.by_type["indicator"]["stored"] >= 1  # small.txt (the bomb's first line may be kept)


def test_duplicated_ids_within_one_bundle(exchange, world, inputs) -> None:
    alice, _ = world
    same = ind(1)
    conflicting = ind(1, name="other content, same id and modified")
    path = inputs / "dups.json"
    path.write_bytes(bundle(same, dict(same), conflicting, ind(2)))
    summary = run_import(exchange, alice, path)
    # the exact repeat is "unchanged"; the conflicting one (same id and modified, other
    # content) is rejected with its position, never silently swallowed.
    assert (summary.stored, summary.unchanged, summary.rejected) == (2, 1, 1)
    assert summary.rejections[0].position == "object 3"
    assert "different content" in summary.rejections[0].reason
    with exchange.engine.connect() as conn:
        versions = conn.execute(
            sa.text("SELECT count(*) FROM stix_objects WHERE stix_id = :i"), {"i": same["id"]}
        ).scalar_one()
    assert versions == 1


def test_misp_duplicate_attribute_uuid_is_accounted_for(exchange, world, inputs) -> None:
    alice, _ = world
    path = inputs / "event.json"
    path.write_text(json.dumps(event(Attribute=[attr(1), attr(1, value="203.0.113.99")])))
    summary = run_import(exchange, alice, path)
    records = 2 + 2 + 1  # two SCOs, two indicator candidates, the report
    assert summary.stored + summary.unchanged + summary.rejected == records


def test_reimport_of_odd_inputs_stores_nothing_new(exchange, world, inputs) -> None:
    alice, _ = world
    (inputs / "event.json").write_text(
        json.dumps(
            event(
                Orgc={"uuid": PRODUCER, "name": "Partner"},
                Tag=[{"name": "tlp:green"}],
                Attribute=[
                    attr(1, uuid="not-a-uuid"),
                    attr(2, type="domain|ip", value="evil.example.net|203.0.113.2"),
                    attr(3, type="text", value="a note"),
                    attr(
                        4,
                        Sighting=[
                            {
                                "uuid": u(30),
                                "date_sighting": "1700000100",
                                "type": "0",
                                "Organisation": {"uuid": PRODUCER, "name": "Partner"},
                            }
                        ],
                    ),
                ],
            )
        )
    )
    (inputs / "v20.json").write_bytes(
        bundle(observed_20({"0": {"type": "ipv4-addr", "value": "203.0.113.50"}}))
    )
    (inputs / "iocs.csv").write_bytes("\ufeffValue;Type\r\n203.0.113.7;ip\r\n203.0.113.7;ip\r\n".encode())
    (inputs / "notes.txt").write_text(
        "C2 hxxps://evil[.]example[.]top/a and 203.0.113.7\nagain 203.0.113.7\n"
    )
    first = run_import(exchange, alice, inputs)
    assert first.ok, first.rejections
    rows = count_rows(exchange, "stix_objects")
    again = run_import(exchange, alice, inputs)
    assert again.stored == 0 and again.rejected == 0
    assert count_rows(exchange, "stix_objects") == rows
    assert again.unchanged == first.stored + first.unchanged


def test_same_value_from_misp_csv_and_text_is_one_observable(exchange, world, inputs) -> None:
    alice, _ = world
    (inputs / "e.json").write_text(json.dumps(event(Attribute=[attr(7)])))
    (inputs / "i.csv").write_text("ioc\n203.0.113.7\n")
    (inputs / "t.txt").write_text("seen 203.0.113[.]7 today\n")
    run_import(exchange, alice, inputs)
    cid = exchange.admin.get_community("ops").collection_id
    every = ObjectFilter(types=("ipv4-addr",), limit=100, versions=VersionSelector(last=False, all=True))
    rows = exchange.query.manifest(alice.principal, cid, every).rows
    assert len(rows) == 1  # one id, one version, whichever format brought it


def test_red_attribute_is_not_visible_to_other_members(exchange, world, inputs) -> None:
    alice, bob = world
    exchange.admin.set_membership(bob.org, "ops", True, False, Tlp.AMBER)
    path = inputs / "event.json"
    path.write_text(json.dumps(event(distribution=1, Attribute=[attr(1, distribution=0), attr(2)])))
    summary = run_import(exchange, alice, path)
    assert summary.ok
    seen = stored_objects(exchange, bob)
    assert f"indicator--{u(1)}" not in seen and f"indicator--{u(2)}" in seen
    assert not any(o.get("value") == "203.0.113.1" for o in seen.values())


# == CSV ==========================================================================================
@pytest.mark.parametrize(
    "text",
    [
        "\ufeffvalue,type\n203.0.113.1,ip\nevil.example.net,domain\n",
        "value;type\r\n203.0.113.1;ip\r\nevil.example.net;domain\r\n",
        "value\ttype\n203.0.113.1\tip\nevil.example.net\tdomain\n",
        '"value","type","tags"\n"203.0.113.1","ip","a\nb"\n"evil.example.net","domain",""\n',
    ],
    ids=["bom", "semicolon-crlf", "tab", "quoted-newline"],
)
def test_csv_dialects(ctx, text) -> None:
    records = csv_records(text, ctx)
    assert not rejections(records)
    values = {o.get("value") for o in objs(records).values()}
    assert {"203.0.113.1", "evil.example.net"} <= values


def test_csv_missing_extra_and_blank_columns(ctx) -> None:
    text = (
        "value,type,confidence,tags\n"
        "203.0.113.1\n"  # missing columns: type guessed
        "203.0.113.2,ip,50,a;b,extra,more\n"  # extra columns ignored
        "     ,ip\n"  # value of spaces: rejected
        ",,,\n"  # blank row: skipped
        "203.0.113.3,ip,101\n"  # bad confidence
        "203.0.113.4,nonsense\n"
    )  # unknown type
    records = csv_records(text, ctx)
    bad = {r.position: r.reason for r in rejections(records)}
    assert set(bad) == {"line 4", "line 6", "line 7"}
    assert "empty" in bad["line 4"] and "confidence" in bad["line 6"] and "unknown type" in bad["line 7"]
    found = objs(records)
    two = next(o for o in found.values() if o["type"] == "indicator" and o["name"] == "203.0.113.2")
    assert two["confidence"] == 50 and two["labels"] == ["a", "b"]


def test_csv_defanged_values_with_type_column(ctx) -> None:
    records = csv_records("value,type\nevil[.]example[.]net,domain\nhxxp://evil[.]example[.]net/x,url\n", ctx)
    # defanged values in feeds are common; they are either refanged or rejected with a reason
    for r in records:
        if r.obj is not None and r.obj["type"] in ("domain-name", "url"):
            assert "[.]" not in r.obj["value"] and "hxxp" not in r.obj["value"]
    assert len(rejections(records)) + len([r for r in records if r.obj and r.obj["type"] == "indicator"]) == 2


def test_csv_nul_bytes_and_invalid_utf8_are_rejected_by_line(ctx) -> None:
    records = csv_records(
        b"value,type\n203.0.113.1\x00,ip\n\xff\xfe203.0.113.2,ip\nevil.example.net,domain\n", ctx
    )
    assert [r.position for r in rejections(records)] == ["line 2", "line 3"]
    assert any(o.get("value") == "evil.example.net" for o in objs(records).values())


def test_csv_empty_and_header_only(ctx) -> None:
    assert "empty" in (csv_records("", ctx)[0].reason or "")
    assert csv_records("value,type\n", ctx) == []
    assert "no value column" in (csv_records("foo,bar\n1,2\n", ctx)[0].reason or "")


# == free text ====================================================================================
def kinds(line: str) -> list[tuple[str, str]]:
    return [(f.kind, f.value) for f in extract(line)]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("C2 at 2001:db8[:]:1 and fe80[:][:]1", [("ipv6-addr", "2001:db8::1"), ("ipv6-addr", "fe80::1")]),
        ("see https://evil.example.com/path). next", [("url", "https://evil.example.com/path")]),
        (
            "(https://evil.example.com/a), <http://x.evil.net/b>.",
            [("url", "https://evil.example.com/a"), ("url", "http://x.evil.net/b")],
        ),
        ("link: hxxps://evil[.]com/a?b=c.", [("url", "https://evil.com/a?b=c")]),
        ("hash d41d8cd98f00b204e9800998ecf8427ed41d8cd98f00b204e9800998ecf8427eab", []),
        ("hash 0xd41d8cd98f00b204e9800998ecf8427e", []),
        ("hash=D41D8CD98F00B204E9800998ECF8427E;", [("md5", "d41d8cd98f00b204e9800998ecf8427e")]),
        ("cve-2021-44228 and Cve-2023-1234", [("cve", "CVE-2021-44228"), ("cve", "CVE-2023-1234")]),
        ("open invoice.pdf, setup.exe and readme.md", []),
        ("dropper evil[.]exe", [("domain-name", "evil.exe")]),
        ("version 10.0.19041.1, v1.2.3.4, build 6.1.7601.17514, OID 1.3.6.1.4.1.311", []),
        (
            "ip 10.0.0[.]1 and 198.51.100(.)1 and 8.8.8[dot]8",
            [("ipv4-addr", "10.0.0.1"), ("ipv4-addr", "198.51.100.1"), ("ipv4-addr", "8.8.8.8")],
        ),
        (
            "mail bob[@]evil[.]com and alice(at)evil(dot)net",
            [("email-addr", "bob@evil.com"), ("email-addr", "alice@evil.net")],
        ),
        ("hxxp[:]//evil[.]com/x", [("url", "http://evil.com/x")]),
        ("IP 203.0.113.5, 203.0.113.6.", [("ipv4-addr", "203.0.113.5"), ("ipv4-addr", "203.0.113.6")]),
        ("MAC 00:11:22:33:44:55 at 12:30:45", []),
    ],
)
def test_freetext_extraction(line, expected) -> None:
    assert kinds(line) == expected


def test_freetext_ipv4_mapped_ipv6_is_not_truncated() -> None:
    found = kinds("callback to ::ffff:198.51.100.23 observed")
    assert found and all(v != "::ffff:198" for _, v in found)


@pytest.mark.parametrize("line", ["Version: 1.2.3.4", "version=10.0.0.1", "firmware: 4.2.0.1"])
def test_freetext_version_with_punctuation_is_not_an_ip(line) -> None:
    assert kinds(line) == []


def test_freetext_idn_domains() -> None:
    found = kinds("visit bücher-evil[.]de now")
    assert (
        found and found[0][0] == "domain-name" and found[0][1] in ("bücher-evil.de", "xn--bcher-evil-9db.de")
    )


def test_freetext_url_with_ipv6_literal() -> None:
    found = kinds("GET http://[2001:db8::1]:8080/x")
    # either the URL or at least the address; never nothing
    assert found and found[0][1] in ("http://[2001:db8::1]:8080/x", "2001:db8::1")


def test_freetext_reader_positions_and_dedup(ctx) -> None:
    text = (
        "\ufeffC2: hxxp://evil[.]example[.]top/x\r\n"
        "again hxxp://evil[.]example[.]top/x and CVE-2021-44228\r\n"
        "\x00\xff junk line 203.0.113.300\r\n"
    ).encode("utf-8", "surrogateescape")
    records = list(read_text(open_input(io.BytesIO(text), "r.txt"), "r.txt", ctx))
    assert not rejections(records)
    positions = {r.obj["type"]: r.position for r in records if r.obj}
    assert positions["url"] == "line 1" and positions["vulnerability"] == "line 2"
    assert sum(1 for r in records if r.obj and r.obj["type"] == "indicator") == 1


# == command line: never a traceback ==============================================================
def _cli(database_url: str, member, *args: str):
    return CliRunner().invoke(
        app,
        [
            "--database-url",
            database_url,
            "import",
            "--community",
            "ops",
            "--user",
            member.user,
            "--json",
            *args,
        ],
    )


def test_cli_junk_inputs_exit_2_without_traceback(database_url, exchange, world, inputs) -> None:
    alice, _ = world
    (inputs / "binary.bin").write_bytes(bytes(range(256)) * 4)
    (inputs / "gz.json").write_bytes(b"\x1f\x8b\x08\x00garbage")
    (inputs / "event.json").write_text(json.dumps(event(Attribute=attr(1), Galaxy="x", Sighting=5)))
    (inputs / "empty.json").write_bytes(b"")
    (inputs / "ok.txt").write_text("C2 evil-c2[.]top\n")
    result = _cli(database_url, alice, str(inputs))
    assert result.exit_code == 2, result.output
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit)
    body = json.loads(result.output)
    assert body["ok"] is False and body["stored"] >= 2
    named = {Path(r["source"]).name for r in body["rejections"]}
    assert {"gz.json", "event.json", "empty.json"} <= named


def test_cli_deeply_nested_json_exits_2_without_traceback(database_url, exchange, world, inputs) -> None:
    alice, _ = world
    (inputs / "deep.json").write_bytes(b"[" * 5000 + b"]" * 5000)
    (inputs / "ok.txt").write_text("C2 evil-c2[.]top\n")
    result = _cli(database_url, alice, str(inputs))
    assert result.exit_code == 2, repr(result.exception)
    body = json.loads(result.output)
    assert body["stored"] == 2 and [Path(r["source"]).name for r in body["rejections"]] == ["deep.json"]
