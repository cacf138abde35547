"""CSV with a header mapping: golden output, per-line rejections, explicit mappings."""

from __future__ import annotations

import io

import pytest

from commonwatch.errors import InvalidParameter
from commonwatch.formats.records import Record
from commonwatch.formats.tabular import Mapping, read_csv
from imports.helpers import DATA, as_golden


def rows(text: str, ctx, mapping: Mapping | None = None, name: str = "in.csv") -> list[Record]:
    return list(read_csv(io.BytesIO(text.encode()), name, ctx, mapping or Mapping()))


def test_indicators_csv_golden(ctx, golden) -> None:
    with (DATA / "indicators.csv").open("rb") as f:
        records = list(read_csv(f, "indicators.csv", ctx, Mapping()))
    golden("indicators_csv", as_golden(records))
    rejected = {r.position: r.reason for r in records if r.obj is None}
    assert rejected == {
        "line 11": "'not-an-ip' is not an IP address or CIDR range",
        "line 12": "first_seen 'yesterday' is not a date-time",
        "line 13": "confidence '150' is not an integer from 0 to 100",
        "line 14": "the value column is empty",
        "line 15": "unknown type 'carrier-pigeon'; use one of ipv4-addr, ipv6-addr, domain-name, url, "
                   "email-addr, md5, sha1, sha256, sha512, cve, mutex, autonomous-system, mac-addr, "
                   "windows-registry-key, file-name or a MISP type",
    }
    first = next(r.obj for r in records if r.obj and r.obj["type"] == "indicator")
    assert first["pattern"] == "[ipv4-addr:value = '203.0.113.77']"
    assert first["created"] == first["valid_from"] == "2023-11-14T08:00:00.000Z"
    assert first["valid_until"] == "2023-12-14T08:00:00Z"
    assert first["confidence"] == 80 and first["labels"] == ["phishing", "c2"]
    kinds = [r.obj["type"] for r in records if r.obj and r.obj["type"] != "indicator"]
    assert kinds == ["ipv4-addr", "domain-name", "url", "file", "file", "ipv6-addr", "ipv4-addr",
                     "email-addr", "vulnerability"]
    hits = {r.obj["name"]: r.hits for r in records if r.obj and r.hits}
    assert hits["10.0.0.0/8"] == ("private-ip-ranges",)


def test_explicit_mapping_fixed_type_and_delimiter(ctx) -> None:
    text = "when;what;score\n2024-03-01;evil.example.net;55\n2024-03-02;bad.example.org;x\n"
    mapping = Mapping.parse(
        "value=what,fixed_type=domain,first_seen=when,confidence=score,delimiter=semicolon")
    records = rows(text, ctx, mapping)
    assert [r.obj["type"] for r in records if r.obj] == ["domain-name", "indicator"]
    assert records[1].obj is not None and records[1].obj["confidence"] == 55
    assert records[2].obj is None and records[2].position == "line 3"


def test_type_guessed_from_the_value_without_a_type_column(ctx) -> None:
    text = "ioc\n198.51.100.1\nbad.example.com\nd41d8cd98f00b204e9800998ecf8427e\nwhat is this\n"
    records = rows(text, ctx)
    assert [r.obj["type"] for r in records if r.obj and r.obj["type"] != "indicator"] == [
        "ipv4-addr", "domain-name", "file"]
    assert "cannot tell what kind of value" in (records[-1].reason or "")


def test_tab_separated_and_column_numbers(ctx) -> None:
    records = rows("a\tb\nurl\thttp://x.example.com/a\n", ctx, Mapping.parse("value=1,type=0"), "f.tsv")
    assert records[0].obj is not None and records[0].obj["value"] == "http://x.example.com/a"


def test_missing_value_column(ctx) -> None:
    records = rows("foo,bar\n1,2\n", ctx)
    assert records[0].obj is None and "no value column" in (records[0].reason or "")


@pytest.mark.parametrize("text", ["value", "value=a,bogus=b", "fixed_type=carrier-pigeon"])
def test_bad_mapping_is_refused(text: str) -> None:
    with pytest.raises(Exception) as info:
        Mapping.parse(text)
    assert isinstance(info.value, InvalidParameter) or "unknown type" in str(info.value)


def test_tlp_column_marks_each_row_and_never_loosens_tlp_option(ctx) -> None:
    """A ``tlp`` column (as CommonWatch's own CSV export writes it) marks each row; with
    ``--tlp`` too, the stricter of the two; an unknown level rejects the row."""
    from dataclasses import replace

    from commonwatch.domain.markings import TLP2_IDS, Tlp

    level = {v: k for k, v in TLP2_IDS.items()}
    text = ("value,kind,tlp\n198.51.100.1,ipv4-addr,TLP:RED\n198.51.100.2,ipv4-addr,clear\n"
            "198.51.100.3,ipv4-addr,\n198.51.100.4,ipv4-addr,purple\n")

    def markings(records):
        return {r.obj["pattern"].split("'")[1]: r.obj.get("object_marking_refs")
                for r in records if r.obj and r.obj["type"] == "indicator"}

    records = rows(text, ctx)
    assert markings(records) == {"198.51.100.1": [level[Tlp.RED]], "198.51.100.2": [level[Tlp.CLEAR]],
                                 "198.51.100.3": None}  # unmarked: the community's default
    assert "unknown TLP level 'purple'" in (records[-1].reason or "") and records[-1].position == "line 5"
    strict = markings(rows(text, replace(ctx, tlp=Tlp.AMBER)))
    assert strict == {"198.51.100.1": [level[Tlp.RED]], "198.51.100.2": [level[Tlp.AMBER]],
                      "198.51.100.3": [level[Tlp.AMBER]]}
    assert Mapping.parse("value=v,tlp=marking").tlp == "marking"
