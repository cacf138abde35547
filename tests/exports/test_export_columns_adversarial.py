"""Adversarial checks of exports printed from the export columns (name, labels, times).

Odd but valid names and timestamps must come out of CSV, MISP, Suricata rules and Zeek
Intel exactly (or exactly as each format documents its cleaning); the migration that
fills ``export_times`` must give the output ingest-written columns give.
"""

from __future__ import annotations

import csv
import io
import json
import re
import uuid

import idstools.rule
import sqlalchemy as sa
from alembic import command
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from commonwatch.domain.markings import Tlp
from commonwatch.formats import csv_export, suricata, zeek_intel
from commonwatch.services.export import FORMATS, ExportService
from commonwatch.services.query import ExportFilter
from commonwatch.storage.db import alembic_config, session_factory

from support.factories import indicator, ipv4, make_member, new_version, ts

NAMES = [
    'quote " comma , semi ; back \\ pipe | paren ( ) colon :',
    "tab\there\r\nnew line\rcr",
    "line\u2028sep\u2029para\x85nel",
    "emoji \U0001f9a0\U0001f480 é ß 漢字 \u200d\ufeff",
    "ctrl \x01\x1b\x1f\x7f\x9f end",
    "nul \x00 inside",
    "=cmd|' /C calc'!A0",
    "-1+2",
    "@sum(A1)",
    "{sid} %s {0} $HOME_NET",
    "x" * 5000,
    "  spaced  ",
    '\\"',
]
TYPES = ("indicator", "ipv4-addr")


def _ring(exchange):
    p = make_member(exchange, "Prod")
    exchange.admin.create_community("ring", default_tlp=Tlp.GREEN)
    exchange.admin.set_membership("Prod", "ring", True, True, Tlp.RED)
    return p, exchange.admin.get_community("ring").collection_id


def _post(exchange, p, cid, objs):
    report = exchange.ingest.add_objects(p.principal, cid, objs)
    assert not report.failures, report.failures


def _text(svc, p, fmt, flt=None):
    return "".join(svc.export(p.principal, fmt, flt or ExportFilter(types=TYPES)).chunks)


def _csv(svc, p, flt=None):
    return list(csv.DictReader(io.StringIO(_text(svc, p, "csv", flt), newline="")))


def _stored(name):
    return name.replace("\x00", "\ufffd")


def _named(exchange):
    p, cid = _ring(exchange)
    objs = [indicator(f"45.77.10.{n}", name=name) for n, name in enumerate(NAMES)]
    _post(exchange, p, cid, objs)
    return p, objs


def test_csv_names_round_trip(exchange, svc):
    p, objs = _named(exchange)
    rows = {r["stix_id"]: r for r in _csv(svc, p)}
    assert len(rows) == len(objs)
    for o in objs:
        row = rows[o["id"]]
        assert row["name"] == csv_export._cell(_stored(o["name"])), repr(o["name"][:40])
        assert (row["created"], row["modified"], row["valid_until"]) == (o["created"], o["modified"], "")
        assert row["labels"] == "malicious-activity"


def test_misp_names_and_values_round_trip(exchange, svc):
    p, objs = _named(exchange)
    event = json.loads(_text(svc, p, "misp"))["Event"]
    by_id = {a["comment"].split(" ", 1)[0]: a for a in event["Attribute"]}
    assert len(by_id) == len(objs)
    for o in objs:
        attribute = by_id[o["id"]]
        assert attribute["comment"] == f"{o['id']} {_stored(o['name'])}".strip()[:1000]
        assert attribute["value"] == o["pattern"].split("'")[1]
        assert attribute["timestamp"] == str(1_767_225_600)


def test_suricata_rules_parse_with_odd_names(exchange, svc):
    p, objs = _named(exchange)
    text = _text(svc, p, "suricata-rules")
    lines = text.splitlines()
    assert len(lines) == len(objs)
    parsed = {}
    for line in lines:
        rule = idstools.rule.parse(line)
        assert rule is not None, line
        parsed[next(m.split(" ", 1)[1] for m in rule.metadata if m.startswith("cw_id "))] = rule
    for o in objs:
        rule = parsed[o["id"]]
        expected = suricata._text(f"CommonWatch TLP:GREEN ring/Prod: {_stored(o['name'])}", 200)
        assert rule.msg == expected
        assert "created_at 2026_01_01" in rule.metadata and "updated_at 2026_01_01" in rule.metadata


def test_zeek_intel_lines_with_odd_names(exchange, svc):
    p, objs = _named(exchange)
    lines = _text(svc, p, "zeek-intel").split("\n")
    assert lines[0] == zeek_intel.HEADER.rstrip("\n") and lines[-1] == ""
    body = lines[1:-1]
    assert len(body) == len(objs)
    descs = sorted(line.split("\t")[3] for line in body)
    assert all(len(line.split("\t")) == 5 for line in body)
    assert descs == sorted(zeek_intel._field(f"TLP:GREEN {_stored(o['name'])}") for o in objs)


def test_timestamps_print_as_written(exchange, svc):
    p, cid = _ring(exchange)
    spellings = [("2026-01-01T00:00:00.000Z", "2026-01-01T00:00:00.123456789Z", "2099-01-01T00:00:00Z"),
                 ("2026-01-01T00:00:00.123Z", "2026-01-01T00:00:00.1234Z", "2099-01-01T00:00:00.1Z"),
                 ("2026-01-01T00:00:00.100Z", "2026-02-03T04:05:06.000000Z",
                  "2099-01-01T00:00:00.123456789Z"),
                 ("2026-01-01T00:00:00.999Z", "2026-06-30T23:59:60.000Z", "2098-12-31T23:59:60Z")]
    objs = [indicator(f"45.77.11.{n}", valid_until=u) | {"created": c, "modified": m, "valid_from": c}
            for n, (c, m, u) in enumerate(spellings)]
    _post(exchange, p, cid, objs)
    rows = {r["stix_id"]: (r["created"], r["modified"], r["valid_until"]) for r in _csv(svc, p)}
    assert rows == {o["id"]: (o["created"], o["modified"], o["valid_until"]) for o in objs}
    metas = [idstools.rule.parse(line).metadata for line in _text(svc, p, "suricata-rules").splitlines()]
    assert sorted(m[-1] for m in metas) == ["updated_at 2026_01_01"] * 2 + [
        "updated_at 2026_02_03", "updated_at 2026_06_30"]


def test_a_new_version_changes_what_is_exported(exchange, svc):
    p, cid = _ring(exchange)
    first = indicator("45.77.12.1", name="first, name", created=10)
    _post(exchange, p, cid, [first])
    second = new_version(first, 20, name='second "name"', valid_until=ts(10**8))
    _post(exchange, p, cid, [second])
    older = new_version(first, 15, name="older name")  # posted late, superseded already
    _post(exchange, p, cid, [older])
    [row] = _csv(svc, p)
    assert (row["name"], row["created"], row["modified"], row["valid_until"]) == (
        'second "name"', ts(10), ts(20), ts(10**8))
    [attribute] = json.loads(_text(svc, p, "misp"))["Event"]["Attribute"]
    assert attribute["comment"] == f'{first["id"]} second "name"'
    assert attribute["timestamp"] == str(1_767_225_600 + 20)
    [rule] = _text(svc, p, "suricata-rules").splitlines()
    assert idstools.rule.parse(rule).rev == 1  # never exported before this version
    third = new_version(first, 30, name="third")  # from the first: no valid_until
    _post(exchange, p, cid, [third])
    [row] = _csv(svc, p)
    assert (row["name"], row["modified"], row["valid_until"]) == ("third", ts(30), "")
    [rule] = _text(svc, p, "suricata-rules").splitlines()
    parsed = idstools.rule.parse(rule)
    assert parsed.msg.endswith(": third") and parsed.rev == 2


def test_versions_in_one_envelope_export_the_newest(exchange, svc):
    p, cid = _ring(exchange)
    first = indicator("45.77.13.1", name="v1", created=1)
    _post(exchange, p, cid, [new_version(first, 9, name="v9"), first, new_version(first, 5, name="v5")])
    [row] = _csv(svc, p)
    assert (row["name"], row["modified"]) == ("v9", ts(9))


def test_scos_have_no_times_in_csv_and_rules(exchange, svc):
    p, cid = _ring(exchange)
    _post(exchange, p, cid, [ipv4("45.77.14.1"), indicator("45.77.14.2")])
    rows = {r["value"]: r for r in _csv(svc, p)}
    assert (rows["45.77.14.1"]["created"], rows["45.77.14.1"]["modified"],
            rows["45.77.14.1"]["valid_until"], rows["45.77.14.1"]["name"]) == ("", "", "", "")
    rules = {r.dest_addr: r for r in map(idstools.rule.parse, _text(svc, p, "suricata-rules").splitlines())}
    assert not any(m.startswith(("created_at", "updated_at")) for m in rules["45.77.14.1"].metadata)
    assert any(m.startswith("created_at") for m in rules["45.77.14.2"].metadata)


def test_sco_custom_time_properties_cannot_break_a_rule(exchange, svc):
    """SCOs have no ``created``; a custom property of that name is free text and must
    not reach the rule syntax unescaped."""
    p, cid = _ring(exchange)
    sco = ipv4("45.77.15.1") | {"created": 'a";) x', "modified": "b; sid:1;"}
    _post(exchange, p, cid, [sco])
    [line] = _text(svc, p, "suricata-rules").splitlines()
    rule = idstools.rule.parse(line)
    assert [o["name"] for o in rule.options] == ["msg", "metadata", "sid", "rev"], line


def test_sco_custom_valid_until_does_not_expire_it(exchange, svc):
    """``valid_until`` is an indicator property; on an SCO it is a custom property that
    says nothing about the SCO's lifetime."""
    p, cid = _ring(exchange)
    _post(exchange, p, cid, [ipv4("45.77.16.1") | {"valid_until": "2026-01-02T00:00:00Z"}])
    rows = _csv(svc, p)
    assert [r["value"] for r in rows] == ["45.77.16.1"]


def test_sco_custom_time_properties_never_become_csv_formulas(exchange, svc):
    """Every CSV cell starting with =, +, - or @ is guarded (csv_export's promise)."""
    p, cid = _ring(exchange)
    sco = ipv4("45.77.15.2") | {"created": "=HYPERLINK(\"http://x\")", "modified": "@SUM(A1)",
                                "valid_until": "+1-1"}
    _post(exchange, p, cid, [sco])
    [row] = list(csv.reader(io.StringIO(_text(svc, p, "csv"), newline="")))[1:]
    assert not [cell for cell in row if cell[:1] in ("=", "+", "-", "@")], row


def _everything(exchange):
    p, cid = _ring(exchange)
    objs = [indicator(f"45.77.17.{n}", name=name, valid_until=ts(10**8 + n), confidence=n * 7,
                      indicator_types=["anonymization", name])
            for n, name in enumerate(NAMES)]
    objs[0] = objs[0] | {"modified": "2026-01-01T00:00:00.123456789Z"}
    objs += [ipv4("45.77.18.1"), {**indicator(), "pattern": "[domain-name:value = 'evil-host.xyz' OR "
                                                            "url:value = 'http://evil-host.xyz/a?b=\"c\"']"}]
    _post(exchange, p, cid, objs)
    _post(exchange, p, cid, [new_version(objs[1], 50, name="renamed, again")])
    return p


def _all_outputs(svc, p):
    flt = ExportFilter(types=TYPES + ("domain-name", "url"), include_warninglisted=True)
    volatile = re.compile(r'bundle--[0-9a-f-]{36}|"uuid":"00000000-[0-9a-f-]{27}"')
    return {fmt: volatile.sub("", "".join(svc.export(p.principal, fmt, flt).chunks)) for fmt in FORMATS}


def _times_column(exchange):
    with exchange.engine.connect() as conn:
        return conn.execute(sa.text("SELECT id, export_times FROM stix_objects ORDER BY id")).all()


def test_migration_backfill_gives_the_ingest_output(exchange, svc):
    p = _everything(exchange)
    written = _all_outputs(svc, p)
    columns = _times_column(exchange)
    assert sum(1 for _, t in columns if t is None) == 1  # the SCO
    config = alembic_config(exchange.engine)
    command.downgrade(config, "0006_export_columns")
    with exchange.engine.connect() as conn:
        assert "export_times" not in {c["name"] for c in sa.inspect(conn).get_columns("stix_objects")}
    command.upgrade(config, "head")
    assert _times_column(exchange) == columns
    again = _all_outputs(svc, p)
    for fmt in FORMATS:
        assert again[fmt] == written[fmt], fmt


def test_minimum_score_keeps_the_same_items(exchange, svc, clock):
    p, cid = _ring(exchange)
    recent = 12_700_000  # seconds after the factory base: a few hours before the clock
    objs = [indicator(f"45.77.19.{n}", name=name, created=recent, valid_until=ts(10**8))
            for n, name in enumerate(NAMES)]
    _post(exchange, p, cid, objs)
    scored = ExportService(session_factory(exchange.engine), exchange.query, clock=clock,
                           lifecycle=exchange.lifecycle, new_uuid=lambda: str(uuid.UUID(int=1)))
    event = re.compile(r'^\{"Event":\{"info":"[^"]*","uuid":"[0-9a-f-]{36}"')  # one per filter
    for fmt in ("csv", "misp", "suricata-rules", "zeek-intel", "suricata-iprep"):
        plain = "".join(scored.export(p.principal, fmt, ExportFilter()).chunks)
        low = scored.export(p.principal, fmt, ExportFilter(min_score=0.0))
        assert event.sub("", "".join(low.chunks)) == event.sub("", plain), fmt
        assert low.stats.objects_exported == len(objs)
    rows = list(csv.DictReader(io.StringIO("".join(
        scored.export(p.principal, "csv", ExportFilter(min_score=1.0)).chunks), newline="")))
    assert sorted(r["name"] for r in rows) == sorted(csv_export._cell(_stored(n)) for n in NAMES)
    assert {r["created"] for r in rows} == {ts(recent)} and {r["valid_until"] for r in rows} == {ts(10**8)}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.text(max_size=60), label=st.text(min_size=1, max_size=20))
def test_misp_export_is_json_for_any_name(exchange, svc, name, label):
    if not hasattr(exchange, "_adv_ring"):
        exchange._adv_ring = _ring(exchange)
    p, cid = exchange._adv_ring
    obj = indicator(f"45.77.20.{len(name) % 250}", name=name, indicator_types=[label])
    _post(exchange, p, cid, [obj])
    event = json.loads(_text(svc, p, "misp"))["Event"]
    [attribute] = [a for a in event["Attribute"] if a["comment"].startswith(obj["id"])]
    assert attribute["comment"] == f"{obj['id']} {_stored(name)}".strip()[:1000]
    assert attribute["value"] == obj["pattern"].split("'")[1]
    rows = [r for r in _csv(svc, p) if r["stix_id"] == obj["id"]]
    assert [(r["name"], r["labels"]) for r in rows] == [(csv_export._cell(_stored(name)),
                                                         csv_export._cell(label))]
