"""Adversarial tests of the Suricata rules remembered whole per stored row
(``suricata_row_sids.rules``, migration 0013), on both backends.

A row whose remembered check equals its check now is written from the remembered text
without being built. Each test tries to make such an export differ from the one a build
from scratch (the table emptied) writes. They must be byte-identical but for a ``rev``,
which may differ only where the rule's key was last written with another text by
another row (docs/export.md: a view going back to an earlier text gets the rev that text
had); the from-scratch rev is then the higher one. Every rule must parse, no sid may
repeat in one output, and the skipped values must be counted alike.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import re
import threading
from collections.abc import Iterator, Set
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import idstools.rule
import pytest
from alembic import command
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from commonwatch.domain.markings import TLP2_MARKING_BY_LEVEL, Tlp
from commonwatch.errors import NotFound
from commonwatch.formats import suricata
from commonwatch.services import suricata_sids
from commonwatch.services.export import ExportService, ExportStats
from commonwatch.services.export_rows import SKIP_WARNINGLISTED
from commonwatch.services.query import ExportFilter, ObjectFilter, VersionSelector
from commonwatch.services.suricata_sids import SidStore
from commonwatch.storage.db import alembic_config, schema_revision, session_factory

from support.concurrency import run_threads
from support.factories import indicator, make_member, new_version

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
_RUN = itertools.count()


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


@pytest.fixture
def listed(exchange, tmp_path) -> ExportService:
    """An export service with the operator's warninglist directory."""
    return ExportService(session_factory(exchange.engine), exchange.query,
                         warninglist_dirs=lists_dir(tmp_path / "lists"))


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


@pytest.fixture
def world(exchange) -> World:
    return make_world(exchange)


def delete(world: World, community: str, stix_id: str, every: bool = False) -> None:
    """Delete the newest version of an object (as TAXII's DELETE with match[version]=last), or all."""
    versions = VersionSelector(last=False, all=True) if every else VersionSelector()
    world.ex.ingest.delete_object(world.prod, world.cids[community], stix_id,
                                  ObjectFilter(ids=(stix_id,), versions=versions, limit=10_000_000))


def pattern(*terms: str) -> str:
    return " OR ".join(f"[{t}]" for t in terms)


def marked(tlp: Tlp) -> list[str]:
    return [TLP2_MARKING_BY_LEVEL[tlp]]


# -- 1. a random history, compared with a build from scratch after each step --------------------

class Scenario:
    """One history of posts, names, lists, deletions and contexts, in a world of its own
    (hypothesis shares the database between examples): each operation is a method."""

    def __init__(self, exchange, svc: ExportService, listed: ExportService, mp: pytest.MonkeyPatch) -> None:
        self.run = next(_RUN)
        self.ex, self.services, self.mp = exchange, (svc, listed), mp
        self.world = make_world(exchange, f"-{self.run}")
        self.producer, self.community = f"Prod-{self.run}", f"ring-{self.run}"
        self.objs: list[dict[str, Any]] = []
        self.shared: set[str] = set()  # STIX ids stored in more than one row
        self.modified = itertools.count(1)
        self.svc, self.keep = svc, False
        self.real_revision, self.real_writer = schema_revision, suricata.writer_fingerprint
        self.texts: dict[tuple[int, int], str] = {}

    def views(self) -> list[View]:
        flt = ExportFilter(include_warninglisted=self.keep)
        ring = ExportFilter(communities=(self.world.cids["ring"],), include_warninglisted=self.keep)
        return [View(self.svc, self.world.reader, flt), View(self.svc, self.world.reader, ring)]

    def add(self, terms: list[int], tlp: Tlp) -> None:
        obj = indicator(pattern=pattern(*(TERMS[t] for t in terms)), object_marking_refs=marked(tlp))
        self.objs.append(obj)
        self.world.post("ring", obj)

    def version(self, n: int, name: int, tlp: Tlp) -> None:
        n %= len(self.objs)
        self.objs[n] = new_version(self.objs[n], next(self.modified) * DAY, name=NAMES[name],
                                   object_marking_refs=marked(tlp))
        self.shared.add(self.objs[n]["id"])
        self.world.post("ring", self.objs[n])

    def copy(self, n: int) -> None:
        """The object's newest version posted in 'yard' too: a second row of its keys."""
        obj = self.objs[n % len(self.objs)]
        self.shared.add(obj["id"])
        self.world.post("yard", obj)

    def producer_name(self, n: int) -> None:
        new = f"Prod-{self.run}" + ("", " b", "_b")[n]
        if new != self.producer:
            self.ex.admin.update_org(self.producer, new_name=new)
            self.producer = new

    def community_name(self, n: int) -> None:
        new = f"ring-{self.run}" + ("", "-b")[n]
        if new != self.community:
            self.ex.admin.update_community(self.community, new_name=new)
            self.community = new

    def lists(self, on: bool) -> None:
        self.svc = self.services[on]

    def keep_listed(self, on: bool) -> None:
        self.keep = on

    def delete(self, n: int, every: bool) -> None:
        """The newest version of an object in 'ring', or all of them."""
        with contextlib.suppress(NotFound):  # deleted before
            delete(self.world, "ring", self.objs[n % len(self.objs)]["id"], every)

    def schema(self, moved: bool) -> None:
        self.mp.setattr("commonwatch.services.export.schema_revision",
                        (lambda conn: "9999_next") if moved else self.real_revision)

    def writer(self, changed: bool) -> None:
        self.mp.setattr(suricata, "writer_fingerprint",
                        (lambda: "another writer") if changed else self.real_writer)


OBJECT = st.integers(0, 7)
STEP = st.one_of(
    st.tuples(st.just("add"), st.lists(st.integers(0, len(TERMS) - 1), min_size=1, max_size=3),
              st.sampled_from(TLPS)),
    st.tuples(st.just("version"), OBJECT, st.integers(0, len(NAMES) - 1), st.sampled_from(TLPS)),
    st.tuples(st.just("copy"), OBJECT),
    st.tuples(st.just("producer_name"), st.integers(0, 2)),
    st.tuples(st.just("community_name"), st.integers(0, 1)),
    st.tuples(st.just("lists"), st.booleans()),
    st.tuples(st.just("keep_listed"), st.booleans()),
    st.tuples(st.just("delete"), OBJECT, st.booleans()),
    st.tuples(st.just("schema"), st.booleans()),
    st.tuples(st.just("writer"), st.booleans()),
)
FIRST = [("add", [0, 8], Tlp.GREEN), ("add", [1, 3, 5, 9], Tlp.AMBER), ("add", [6], Tlp.GREEN)]


@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(steps=st.lists(STEP, min_size=1, max_size=8))
# A newer version deleted: the older row's remembered rules come back (a shared key).
@example(steps=[("version", 1, 1, Tlp.GREEN), ("delete", 1, False), ("producer_name", 1),
                ("delete", 1, False)])
# Every part of the context changed, then changed back.
@example(steps=[("lists", True), ("keep_listed", True), ("schema", True), ("writer", True),
                ("community_name", 1), ("producer_name", 2), ("keep_listed", False), ("lists", False),
                ("schema", False), ("producer_name", 0)])
# A copy in 'yard' under another name, read alone and merged.
@example(steps=[("version", 0, 2, Tlp.GREEN), ("copy", 0), ("version", 0, 0, Tlp.AMBER),
                ("lists", True), ("delete", 0, True)])
def test_a_remembered_export_is_the_export_built_from_scratch(exchange, svc, listed, steps):
    """After each step of a random history (posts, new versions, copies, renames of the
    producer and the community, warninglists on and off, listed values kept or dropped,
    deletions, a new schema revision, a new rule writer), each view's export as
    remembered is the from-scratch one (revs aside where rows share a key)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(suricata, "BATCH", 2)  # batches mixing remembered and built rows
        scenario = Scenario(exchange, svc, listed, mp)
        for name, *args in FIRST + steps:
            getattr(scenario, name)(*args)
            for view in scenario.views():
                record(scenario.texts, assert_as_from_scratch(exchange, view, scenario.shared))


# -- 2. concurrent exports and renames ----------------------------------------------------------

def test_exports_racing_a_rename_leave_rules_a_build_from_scratch_repeats(exchange, svc, world, monkeypatch):
    """Three rounds of two exports of one view at once while a third thread renames the
    producer. Every output parses, a (sid, rev) stands for one text over all of them, and
    afterwards the export as remembered is the one built from scratch. Its revs may be
    lower: an export that read the old name may have bumped a key after the other one
    allocated it under the new name (see the test below)."""
    monkeypatch.setattr(suricata, "BATCH", 2)
    objs = [indicator(f"45.77.2.{n}") for n in range(4)]
    objs += [indicator(pattern=pattern(TERMS[0], TERMS[3], TERMS[5])),
             indicator(pattern=pattern(*NO_RULE, TERMS[0]))]
    world.post("ring", *objs)
    view, texts = View(svc, world.reader), {}
    record(texts, export(view)[0])
    names = ["Prod", "Prod b", "Prod c", "Prod"]
    for old, new in itertools.pairwise(names):
        results = run_threads([lambda: export(view), lambda: export(view),
                               lambda old=old, new=new: exchange.admin.update_org(old, new_name=new)])
        assert not [r for r in results if isinstance(r, BaseException)], results
        for output, skipped in results[:2]:
            record(texts, output)
            assert skipped == {suricata.SKIP_RULE_KIND: 2, suricata.SKIP_HTTPS: 1}
    last = assert_as_from_scratch(exchange, view, {o["id"] for o in objs})
    record(texts, last)
    assert len(parsed(last)) == 8 and "ring/Prod: " in last
    assert len(remembered_rows(exchange)) == 6


@dataclass
class Race:
    """An export that read the producer's old name ('stale') racing one that read the new
    name ('fresh'): the fresh one allocates first and, while its allocation is open,
    the stale one tries to allocate too. Allocation is one transaction at a time, so the
    stale one must wait for the fresh one's allocation and remembering to commit."""

    role: threading.local = field(default_factory=threading.local)
    stale_allocating: threading.Event = field(default_factory=threading.Event)
    fresh_holding: threading.Event = field(default_factory=threading.Event)
    stale_in: threading.Event = field(default_factory=threading.Event)
    stale_waited: list[bool] = field(default_factory=list)

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        real_allocate, real_by_key = SidStore.allocate, suricata_sids.by_key

        def allocate(store: SidStore, rows: Any) -> Any:
            if getattr(self.role, "name", "") == "stale":
                self.stale_allocating.set()
                require(self.fresh_holding.wait(10), "the fresh export is allocating")
            return real_allocate(store, rows)

        def by_key(conn: Any, rules: Any) -> Any:
            if getattr(self.role, "name", "") == "stale":
                self.stale_in.set()
            found = real_by_key(conn, rules)
            if getattr(self.role, "name", "") == "fresh":
                self.fresh_holding.set()
                # Held open: the stale export, let go now, must not get in meanwhile.
                self.stale_waited.append(not self.stale_in.wait(1.0))
            return found

        monkeypatch.setattr(SidStore, "allocate", allocate)
        monkeypatch.setattr(suricata_sids, "by_key", by_key)

    def run(self, role: str, call: Any) -> Any:
        self.role.name = role
        return call()


def test_an_export_of_the_old_producer_name_racing_the_new_one(exchange, svc, world, monkeypatch):
    """The race of :class:`Race` on a new row. A (sid, rev) stands for one text in every
    output; the next export, from the remembered rules, is the build from scratch, revs
    included.

    Regression: allocating and remembering were two transactions, and allocations of
    several exports ran side by side. 'fresh' allocated the row ("Prod b": rev 1),
    'stale' then allocated it ("Prod": rev 2) and remembered it, and 'fresh' remembered
    its own text over it: the next exports wrote the "Prod b" text at rev 1 while the
    key stood at rev 2, so a sensor that read 'stale' saw the text change and the rev
    fall."""
    world.post("ring", indicator("45.77.1.1"))
    view, texts, race = View(svc, world.reader), {}, Race()
    race.install(monkeypatch)

    def fresh() -> tuple[str, dict[str, int]]:
        require(race.stale_allocating.wait(10), "the stale export is allocating")
        exchange.admin.update_org("Prod", new_name="Prod b")
        return export(view)

    stale, fresh_out = run_threads([lambda: race.run("stale", lambda: export(view)),
                                    lambda: race.run("fresh", fresh)])
    require("ring/Prod: " in str(stale) and "ring/Prod b: " in str(fresh_out), "each export read its name")
    assert race.stale_waited == [True]
    for output in (stale[0], fresh_out[0]):
        record(texts, output)
    assert [r.rev for r in parsed(stale[0])] == [2] and [r.rev for r in parsed(fresh_out[0])] == [1]
    after = assert_as_from_scratch(exchange, view)
    record(texts, after)
    assert [r.rev for r in parsed(after)] == [3]


# -- 3. remembered rules tampered with -----------------------------------------------------------

def row_ids(exchange, *stix_ids: str) -> list[int]:
    """The stored row of each object (one version each)."""
    with exchange.engine.connect() as conn:
        return [conn.execute(text("SELECT id FROM stix_objects WHERE stix_id = :s"), {"s": s}).scalar_one()
                for s in stix_ids]


def test_rules_swapped_between_two_rows_still_parse(exchange, svc, world):
    """Tampering is outside the contract: two rows of one producer, TLP and community have
    one check, so each is served the other's rules as they are (the check digests the
    row's surroundings, not the row). The export still parses and has no sid twice."""
    a, b = indicator("45.77.3.1"), indicator(pattern=pattern(TERMS[3], TERMS[5]))
    world.post("ring", a, b)
    view = View(svc, world.reader)
    export(view)
    (ra, rb), entries = row_ids(exchange, a["id"], b["id"]), remembered_rows(exchange)
    assert entries[ra][0] == entries[rb][0]
    for row, other in ((ra, rb), (rb, ra)):
        sql(exchange, "UPDATE suricata_row_sids SET rules = :r WHERE object_id = :i",
            r=entries[other][1], i=row)
    assert len(parsed(export(view)[0])) == 3


def test_a_tampered_check_has_its_rows_rules_built_again(exchange, svc, world):
    """A remembered check that is not the row's check now is never trusted, whatever its
    text: the row is built and remembered again, as the first export wrote it."""
    objs = [indicator("45.77.4.1"), indicator(pattern=pattern(TERMS[0], TERMS[3], TERMS[9]))]
    world.post("ring", *objs)
    view = View(svc, world.reader)
    first, entries = export(view), remembered_rows(exchange)
    sql(exchange, "UPDATE suricata_row_sids SET rules_check = -rules_check - 1, rules = 'garbage'")
    assert export(view) == first
    assert remembered_rows(exchange) == entries


# -- 4. rows whose rules are not remembered ---------------------------------------------------------

class RecordingStore:
    """A :class:`SidStore` recording the row ids it is asked to recall and to remember."""

    def __init__(self, store: SidStore) -> None:
        self.store, self.recalled, self.remembered = store, [], []

    def recall(self, ids: Any) -> Any:
        self.recalled.extend(ids)
        return self.store.recall(ids)

    def allocate(self, rows: Any) -> Any:
        return self.store.allocate(rows)

    def remember(self, entries: Any) -> None:
        self.remembered.extend(row for row, _, _ in entries)
        self.store.remember(entries)


def rules_without_row_ids(exchange, view: View) -> tuple[str, dict[str, int], RecordingStore]:
    """The export of ``view`` with items read without their rows' ids (all 0), written by
    :func:`suricata.rules` on the export's store and context."""
    stats = ExportStats()
    items = view.svc.items(view.principal, view.flt, stats, raw=False, labelled=False, rowed=False)
    with exchange.engine.connect() as conn:
        revision = schema_revision(conn) or ""
    context = suricata.RuleContext(revision, f"{view.svc.warninglists().digest}|dropped")
    store = RecordingStore(SidStore(exchange.engine.connect))
    try:
        output = "".join(suricata.rules(items, store, stats.skipped, context))
    finally:
        store.store.close()
    return output, dict(stats.skipped), store


def test_rows_without_an_id_are_built_every_time_and_never_remembered(exchange, svc, world):
    """Items without a stored row (row id 0) are neither recalled nor remembered: their
    rules are built each time, with the sids and revs the export of their rows has, even
    when every remembered text of those rows is garbage under a right check."""
    objs = [indicator("45.77.5.1"), indicator(pattern=pattern(TERMS[3], TERMS[5], TERMS[8])),
            indicator(pattern=pattern(*NO_RULE))]
    world.post("ring", *objs)
    view = View(svc, world.reader)
    built = rules_without_row_ids(exchange, view)
    assert built[:2] == export(view)
    assert built[2].recalled == built[2].remembered == []
    assert len(parsed(built[0])) == 3
    sql(exchange, "UPDATE suricata_row_sids SET rules = 'garbage'")
    assert rules_without_row_ids(exchange, view)[:2] == built[:2]


def test_rows_whose_values_have_no_rule_form_are_counted_alike_and_never_remembered(
        exchange, svc, listed, world):
    """Multi-value rows without a rule form (a hash, an e-mail address, an https URL),
    alone or once the operator's list drops their one address, write nothing and count
    every value, remembered or not; the plain entry of the row with the listed address is
    left for the next unlisted export."""
    nothing = indicator(pattern=pattern(*NO_RULE))
    dropped = indicator(pattern=pattern(TERMS[1], NO_RULE[0], NO_RULE[1]))
    hashes, address = indicator(pattern=f"[{NO_RULE[0]}]"), indicator("45.77.6.1")
    world.post("ring", nothing, dropped, hashes, address)
    kind, https, listed_out = suricata.SKIP_RULE_KIND, suricata.SKIP_HTTPS, SKIP_WARNINGLISTED
    views = [(View(svc, world.reader), 2, {kind: 5, https: 1}),
             (View(listed, world.reader), 1, {kind: 5, https: 1, listed_out: 1}),
             (View(listed, world.reader, ExportFilter(include_warninglisted=True)), 2, {kind: 5, https: 1}),
             (View(svc, world.reader), 2, {kind: 5, https: 1})]
    for view, rules, skipped in views:
        output = assert_as_from_scratch(exchange, view)
        assert (len(parsed(output)), export(view)[1]) == (rules, skipped)
    assert sorted(remembered_rows(exchange)) == sorted(row_ids(exchange, dropped["id"], address["id"]))


def test_an_export_outliving_a_deleted_row_gives_its_rules_to_no_other_row(exchange, svc, world, monkeypatch):
    """An export reads its rows, then a version it read is deleted and another object
    stored before the export writes (and remembers) the deleted version's rules.

    Regression: SQLite gives the id of a deleted last row to the next row stored, and
    the deleted row's rules were remembered under that id (the entry named the row by
    its id alone); the new row, of the same TLP, community and producer, had the same
    check, so every later export wrote the deleted indicator's rules in its place. An
    entry now names its row by id and date added."""
    monkeypatch.setattr(suricata, "BATCH", 1)
    a, b, c = (indicator(f"45.77.7.{n}", oid=f"indicator--00000000-0000-4000-8000-00000000000{n}")
               for n in (1, 2, 3))
    world.post("ring", a)
    world.post("ring", b)
    view = View(svc, world.reader)
    with contextlib.closing(svc.export(view.principal, "suricata-rules", view.flt).chunks) as chunks:
        require("45.77.7.1 " in next(chunks), "a's rules come first")
        delete(world, "ring", b["id"])
        world.post("ring", c)
        require("45.77.7.2 " in "".join(chunks), "the export writes b's rules")
    assert {cw_id(rule) for rule in parsed(export(view)[0])} == {a["id"], c["id"]}


# -- 5. the migration ---------------------------------------------------------------------------------

def test_upgrading_from_0012_keeps_every_sid_and_rev(exchange, svc, world):
    """0013 empties the table of the sids remembered by row (``sids`` column): the first
    export after the upgrade looks every rule up by key, with the sids and revs of the
    export before it (some bumped by a rename), and remembers them; the next one writes
    them as remembered."""
    objs = [indicator("45.77.8.1"), indicator(pattern=pattern(TERMS[0], TERMS[3], TERMS[5], TERMS[8]))]
    world.post("ring", *objs)
    view = View(svc, world.reader)
    export(view)
    exchange.admin.update_org("Prod", new_name="Prod b")
    world.post("ring", indicator("45.77.8.2"))
    before = export(view)
    assert {r.rev for r in parsed(before[0])} == {1, 2}
    old = [{"i": row_ids(exchange, stix_id)[0], "s": json.dumps([[r.sid, r.rev] for r in rules])}
           for stix_id, rules in itertools.groupby(parsed(before[0]), key=cw_id)]  # as 0012 code kept them
    config = alembic_config(exchange.engine)
    command.downgrade(config, "0012_tlp_ids_any_case")
    sql(exchange, "INSERT INTO suricata_row_sids (object_id, rules_check, sids) VALUES (:i, 1, :s)", old)
    command.upgrade(config, "head")
    assert remembered_rows(exchange) == {}
    assert export(view) == before
    assert len(remembered_rows(exchange)) == 3
    assert assert_as_from_scratch(exchange, view) == before[0]
