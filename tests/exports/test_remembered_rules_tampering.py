"""Adversarial tests of the Suricata rules remembered whole per stored row
(``suricata_row_sids.rules``, migration 0013), on both backends: remembered rules
tampered with, rows whose rules are never remembered, and the migration that brought
them. The random history and the races are in test_remembered_rules_adversarial.py;
what "equal to a build from scratch" means is said there.
"""

from __future__ import annotations

import contextlib
import itertools
import json
from typing import Any

from alembic import command
from sqlalchemy import text

from commonwatch.formats import suricata
from commonwatch.services.export import ExportStats
from commonwatch.services.export_rows import SKIP_WARNINGLISTED
from commonwatch.services.query import ExportFilter
from commonwatch.services.suricata_sids import SidStore
from commonwatch.storage.db import alembic_config, schema_revision

from support.factories import indicator
from support.remembered_rules import (
    NO_RULE,
    TERMS,
    View,
    assert_as_from_scratch,
    cw_id,
    delete,
    export,
    parsed,
    pattern,
    remembered_rows,
    require,
    sql,
)

# -- 3. remembered rules tampered with -----------------------------------------------------------

def row_ids(exchange, *stix_ids: str) -> list[int]:
    """The stored row of each object (one version each)."""
    with exchange.engine.connect() as conn:
        return [conn.execute(text("SELECT id FROM stix_objects WHERE stix_id = :s"), {"s": s}).scalar_one()
                for s in stix_ids]


def test_rules_swapped_between_two_rows_still_parse(exchange, svc, ring_world):
    """Tampering is outside the contract: two rows of one producer, TLP and community have
    one check, so each is served the other's rules as they are (the check digests the
    row's surroundings, not the row). The export still parses and has no sid twice."""
    a, b = indicator("45.77.3.1"), indicator(pattern=pattern(TERMS[3], TERMS[5]))
    ring_world.post("ring", a, b)
    view = View(svc, ring_world.reader)
    export(view)
    (ra, rb), entries = row_ids(exchange, a["id"], b["id"]), remembered_rows(exchange)
    assert entries[ra][0] == entries[rb][0]
    for row, other in ((ra, rb), (rb, ra)):
        sql(exchange, "UPDATE suricata_row_sids SET rules = :r WHERE object_id = :i",
            r=entries[other][1], i=row)
    assert len(parsed(export(view)[0])) == 3


def test_a_tampered_check_has_its_rows_rules_built_again(exchange, svc, ring_world):
    """A remembered check that is not the row's check now is never trusted, whatever its
    text: the row is built and remembered again, as the first export wrote it."""
    objs = [indicator("45.77.4.1"), indicator(pattern=pattern(TERMS[0], TERMS[3], TERMS[9]))]
    ring_world.post("ring", *objs)
    view = View(svc, ring_world.reader)
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


def test_rows_without_an_id_are_built_every_time_and_never_remembered(exchange, svc, ring_world):
    """Items without a stored row (row id 0) are neither recalled nor remembered: their
    rules are built each time, with the sids and revs the export of their rows has, even
    when every remembered text of those rows is garbage under a right check."""
    objs = [indicator("45.77.5.1"), indicator(pattern=pattern(TERMS[3], TERMS[5], TERMS[8])),
            indicator(pattern=pattern(*NO_RULE))]
    ring_world.post("ring", *objs)
    view = View(svc, ring_world.reader)
    built = rules_without_row_ids(exchange, view)
    assert built[:2] == export(view)
    assert built[2].recalled == built[2].remembered == []
    assert len(parsed(built[0])) == 3
    sql(exchange, "UPDATE suricata_row_sids SET rules = 'garbage'")
    assert rules_without_row_ids(exchange, view)[:2] == built[:2]


def test_rows_whose_values_have_no_rule_form_are_counted_alike_and_never_remembered(
        exchange, svc, listed, ring_world):
    """Multi-value rows without a rule form (a hash, an e-mail address, an https URL),
    alone or once the operator's list drops their one address, write nothing and count
    every value, remembered or not; the plain entry of the row with the listed address is
    left for the next unlisted export."""
    nothing = indicator(pattern=pattern(*NO_RULE))
    dropped = indicator(pattern=pattern(TERMS[1], NO_RULE[0], NO_RULE[1]))
    hashes, address = indicator(pattern=f"[{NO_RULE[0]}]"), indicator("45.77.6.1")
    ring_world.post("ring", nothing, dropped, hashes, address)
    kind, https, listed_out = suricata.SKIP_RULE_KIND, suricata.SKIP_HTTPS, SKIP_WARNINGLISTED
    views = [(View(svc, ring_world.reader), 2, {kind: 5, https: 1}),
             (View(listed, ring_world.reader), 1, {kind: 5, https: 1, listed_out: 1}),
             (View(listed, ring_world.reader, ExportFilter(include_warninglisted=True)), 2,
              {kind: 5, https: 1}),
             (View(svc, ring_world.reader), 2, {kind: 5, https: 1})]
    for view, rules, skipped in views:
        output = assert_as_from_scratch(exchange, view)
        assert (len(parsed(output)), export(view)[1]) == (rules, skipped)
    assert sorted(remembered_rows(exchange)) == sorted(row_ids(exchange, dropped["id"], address["id"]))


def test_an_export_outliving_a_deleted_row_gives_its_rules_to_no_other_row(
        exchange, svc, ring_world, monkeypatch):
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
    ring_world.post("ring", a)
    ring_world.post("ring", b)
    view = View(svc, ring_world.reader)
    with contextlib.closing(svc.export(view.principal, "suricata-rules", view.flt).chunks) as chunks:
        require("45.77.7.1 " in next(chunks), "a's rules come first")
        delete(ring_world, "ring", b["id"])
        ring_world.post("ring", c)
        require("45.77.7.2 " in "".join(chunks), "the export writes b's rules")
    assert {cw_id(rule) for rule in parsed(export(view)[0])} == {a["id"], c["id"]}


# -- 5. the migration ---------------------------------------------------------------------------------

def test_upgrading_from_0012_keeps_every_sid_and_rev(exchange, svc, ring_world):
    """0013 empties the table of the sids remembered by row (``sids`` column): the first
    export after the upgrade looks every rule up by key, with the sids and revs of the
    export before it (some bumped by a rename), and remembers them; the next one writes
    them as remembered."""
    objs = [indicator("45.77.8.1"), indicator(pattern=pattern(TERMS[0], TERMS[3], TERMS[5], TERMS[8]))]
    ring_world.post("ring", *objs)
    view = View(svc, ring_world.reader)
    export(view)
    exchange.admin.update_org("Prod", new_name="Prod b")
    ring_world.post("ring", indicator("45.77.8.2"))
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
