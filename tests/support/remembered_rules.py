"""Helpers of the adversarial tests of remembered Suricata rules
(tests/exports/test_remembered_rules_*.py): exports compared with a build from scratch,
and a world of two communities with a producer and a reader."""

from __future__ import annotations

import contextlib
import itertools
import json
import re
from collections.abc import Iterator, Set
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import idstools.rule
import pytest
from sqlalchemy import text

from commonwatch.domain.markings import TLP2_MARKING_BY_LEVEL, Tlp
from commonwatch.services.export import ExportService
from commonwatch.services.query import ExportFilter, ObjectFilter, VersionSelector

from support.factories import make_member

#: Pattern terms: every rule form, values without one, and two values on the operator's list.
TERMS = (
    "ipv4-addr:value = '45.77.1.1'",
    "ipv4-addr:value = '45.80.0.1'",  # listed
    "ipv6-addr:value = '2001:db8::5'",
    "domain-name:value = 'evil.bad-cdn.top'",
    "domain-name:value = 'cdn.listed-zone.top'",  # listed
    "url:value = 'http://gate.bad-cdn.top/in.php'",
    "url:value = 'http://gate.bad-cdn.top:8080/in.php'",  # the same rule text as the one above
    "url:value = 'https://gate.bad-cdn.top/x'",
    "file:hashes.MD5 = '" + "a" * 32 + "'",
    "email-addr:value = 'bad@bad-mail.top'",
)
NO_RULE = ("file:hashes.MD5 = '" + "b" * 32 + "'", "email-addr:value = 'x@bad-mail.top'",
           "url:value = 'https://gate.bad-cdn.top/y'")
NAMES = ("C2 server", 'a "quoted"; name, with | bars \\ and  spaces ', "x" * 250)
TLPS = (Tlp.GREEN, Tlp.AMBER, Tlp.RED)
DAY = 86_400
RUN = itertools.count()  # numbers the worlds of one test


# -- exports and their comparison ---------------------------------------------------------------

@dataclass(frozen=True)
class View:
    """Who exports what: the service (its warninglists), the reader, the filter."""

    svc: ExportService
    principal: Any
    flt: ExportFilter = field(default_factory=ExportFilter)


def export(view: View) -> tuple[str, dict[str, int]]:
    """The rules text of one export, and what it counted as skipped."""
    out = view.svc.export(view.principal, "suricata-rules", view.flt)
    return "".join(out.chunks), dict(out.stats.skipped)


def sql(exchange, statement: str, rows: list[dict[str, Any]] | None = None, **params: Any) -> None:
    """One statement in a transaction of its own, with ``params`` or once per row of ``rows``."""
    with exchange.engine.begin() as conn:
        conn.execute(text(statement), params if rows is None else rows)


def remembered_rows(exchange) -> dict[int, tuple[int, str]]:
    with exchange.engine.connect() as conn:
        return {r[0]: (r[1], r[2]) for r in conn.execute(text(
            "SELECT object_id, rules_check, rules FROM suricata_row_sids"))}


def parsed(output: str) -> list[idstools.rule.Rule]:
    """Every rule of an output, each parsed by idstools; no sid twice."""
    rules = []
    for line in output.splitlines():
        rule = idstools.rule.parse(line)
        assert rule is not None and rule.raw == line, line
        rules.append(rule)
    sids = [r.sid for r in rules]
    assert len(sids) == len(set(sids)), f"a sid twice in one output: {sorted(sids)}"
    return rules


def cw_id(rule: idstools.rule.Rule) -> str:
    return dict(m.split(" ", 1) for m in rule.metadata)["cw_id"]


def require(condition: bool, what: str) -> None:
    """A precondition of an expected failure: when it does not hold the test fails plainly
    (``pytest.fail``), never as the expected ``AssertionError``."""
    if not condition:
        pytest.fail(f"precondition failed: {what}")


def without_revs(output: str) -> str:
    return re.sub(r"rev:\d+;\)$", "rev:_;)", output, flags=re.M)


def record(texts: dict[tuple[int, int], str], output: str) -> None:
    """Over every output recorded in ``texts``, a (sid, rev) stands for one rule text."""
    for rule in parsed(output):
        body = rule.raw[:rule.raw.rindex("sid:")]
        seen = texts.setdefault((rule.sid, rule.rev), body)
        assert seen == body, f"(sid, rev) {(rule.sid, rule.rev)} names two texts:\n{seen}\n{body}"


@contextlib.contextmanager
def restored(exchange) -> Iterator[None]:
    """Whatever the block does to the sids and the remembered rules is undone after it."""
    tables = {"suricata_sids": ("id", "rule_key", "rev", "digest"),
              "suricata_row_sids": ("object_id", "rules_check", "rules")}
    with exchange.engine.connect() as conn:
        saved = {table: [dict(zip(columns, row, strict=True)) for row in conn.execute(
                     text(f"SELECT {', '.join(columns)} FROM {table}"))] for table, columns in tables.items()}
    yield
    with exchange.engine.begin() as conn:
        for table, columns in tables.items():
            conn.execute(text(f"DELETE FROM {table}"))
            if saved[table]:
                conn.execute(text(f"INSERT INTO {table} ({', '.join(columns)}) "
                                  f"VALUES ({', '.join(':' + c for c in columns)})"), saved[table])


def assert_as_from_scratch(exchange, view: View, shared: Set[str] = frozenset()) -> str:
    """The export of ``view`` as remembered; it equals the one built from scratch, but for
    the revs of rules of ``shared`` STIX ids (stored in several rows), where the scratch
    rev is at least the remembered one. The build from scratch (and the export after it,
    which must repeat it) is a probe: the sids and remembered rules are restored after
    it, so the history goes on as if it never ran."""
    remembered, skipped = export(view)
    for _, rules in remembered_rows(exchange).values():
        assert rules.endswith("\n")
        parsed(rules)
    with restored(exchange):
        sql(exchange, "DELETE FROM suricata_row_sids")
        scratch, scratch_skipped = export(view)
        assert skipped == scratch_skipped
        assert without_revs(remembered) == without_revs(scratch)
        for kept, built in zip(parsed(remembered), parsed(scratch), strict=True):
            if cw_id(kept) in shared:
                assert built.rev >= kept.rev, (kept.raw, built.raw)
            else:
                assert built.rev == kept.rev, (kept.raw, built.raw)
        assert export(view) == (scratch, scratch_skipped)
    return remembered


# -- the world ----------------------------------------------------------------------------------

def lists_dir(folder: Path) -> list[Path]:
    """A warninglist directory of the operator's: one address range and one domain."""
    folder.mkdir(exist_ok=True)
    (folder / "ours.json").write_text(json.dumps({
        "name": "ours", "description": "d", "source": "s", "licence": "CC0-1.0",
        "values": {"ipv4-addr": ["45.80.0.0/16"], "domain-name": ["cdn.listed-zone.top"]}}))
    return [folder]


@dataclass
class World:
    """Prod writes (RED) in 'ring' and 'yard'; Reader reads both up to AMBER."""

    ex: Any
    prod: Any
    reader: Any
    cids: dict[str, str]

    def post(self, community: str, *objs: dict[str, Any]) -> None:
        report = self.ex.ingest.add_objects(self.prod, self.cids[community], list(objs))
        assert not report.failures, report.failures


def make_world(exchange, suffix: str = "") -> World:
    prod, reader = make_member(exchange, f"Prod{suffix}"), make_member(exchange, f"Reader{suffix}")
    cids = {}
    for community in ("ring", "yard"):
        name = f"{community}{suffix}"
        exchange.admin.create_community(name, default_tlp=Tlp.GREEN)
        exchange.admin.set_membership(prod.org, name, True, True, Tlp.RED)
        exchange.admin.set_membership(reader.org, name, True, False, Tlp.AMBER)
        cids[community] = exchange.admin.get_community(name).collection_id
    return World(exchange, prod.principal, reader.principal, cids)


def delete(world: World, community: str, stix_id: str, every: bool = False) -> None:
    """Delete the newest version of an object (as TAXII's DELETE with match[version]=last), or all."""
    versions = VersionSelector(last=False, all=True) if every else VersionSelector()
    world.ex.ingest.delete_object(world.prod, world.cids[community], stix_id,
                                  ObjectFilter(ids=(stix_id,), versions=versions, limit=10_000_000))


def pattern(*terms: str) -> str:
    return " OR ".join(f"[{t}]" for t in terms)


def marked(tlp: Tlp) -> list[str]:
    return [TLP2_MARKING_BY_LEVEL[tlp]]
