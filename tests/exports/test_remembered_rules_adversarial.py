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
import threading
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from commonwatch.domain.markings import Tlp
from commonwatch.errors import NotFound
from commonwatch.formats import suricata
from commonwatch.services import suricata_sids
from commonwatch.services.export import ExportService
from commonwatch.services.query import ExportFilter
from commonwatch.services.suricata_sids import SidStore
from commonwatch.storage.db import schema_revision

from support.concurrency import run_threads
from support.factories import indicator, new_version
from support.remembered_rules import (
    DAY,
    NAMES,
    NO_RULE,
    RUN,
    TERMS,
    TLPS,
    View,
    assert_as_from_scratch,
    delete,
    export,
    make_world,
    marked,
    parsed,
    pattern,
    record,
    remembered_rows,
    require,
)

# -- 1. a random history, compared with a build from scratch after each step --------------------

class Scenario:
    """One history of posts, names, lists, deletions and contexts, in a world of its own
    (hypothesis shares the database between examples): each operation is a method."""

    def __init__(self, exchange, svc: ExportService, listed: ExportService, mp: pytest.MonkeyPatch) -> None:
        self.run = next(RUN)
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

def test_exports_racing_a_rename_leave_rules_a_build_from_scratch_repeats(
        exchange, svc, ring_world, monkeypatch):
    """Three rounds of two exports of one view at once while a third thread renames the
    producer. Every output parses, a (sid, rev) stands for one text over all of them, and
    afterwards the export as remembered is the one built from scratch. Its revs may be
    lower: an export that read the old name may have bumped a key after the other one
    allocated it under the new name (see the test below)."""
    monkeypatch.setattr(suricata, "BATCH", 2)
    objs = [indicator(f"45.77.2.{n}") for n in range(4)]
    objs += [indicator(pattern=pattern(TERMS[0], TERMS[3], TERMS[5])),
             indicator(pattern=pattern(*NO_RULE, TERMS[0]))]
    ring_world.post("ring", *objs)
    view, texts = View(svc, ring_world.reader), {}
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


def test_an_export_of_the_old_producer_name_racing_the_new_one(exchange, svc, ring_world, monkeypatch):
    """The race of :class:`Race` on a new row. A (sid, rev) stands for one text in every
    output; the next export, from the remembered rules, is the build from scratch, revs
    included.

    Regression: allocating and remembering were two transactions, and allocations of
    several exports ran side by side. 'fresh' allocated the row ("Prod b": rev 1),
    'stale' then allocated it ("Prod": rev 2) and remembered it, and 'fresh' remembered
    its own text over it: the next exports wrote the "Prod b" text at rev 1 while the
    key stood at rev 2, so a sensor that read 'stale' saw the text change and the rev
    fall."""
    ring_world.post("ring", indicator("45.77.1.1"))
    view, texts, race = View(svc, ring_world.reader), {}, Race()
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
