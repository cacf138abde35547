"""Suricata sids and revs remembered per stored row (``suricata_row_sids``), on both
backends: an unchanged row is answered without looking its rules up by key, and every
change of a rule's text (a name, the warninglists) still bumps its rev and keeps its sid."""

from __future__ import annotations

import json

import idstools.rule
import pytest
from sqlalchemy import text

from commonwatch.domain.markings import Tlp
from commonwatch.formats import suricata
from commonwatch.services.export import ExportService
from commonwatch.services.query import ExportFilter, ObjectFilter, VersionSelector
from commonwatch.services.suricata_sids import SidStore
from commonwatch.storage import sids as sids_repo
from commonwatch.storage.db import session_factory

from support.factories import indicator, make_member

ALL_VERSIONS = ObjectFilter(versions=VersionSelector(last=False, all=True))


@pytest.fixture
def ring(exchange):
    p, r = make_member(exchange, "Prod"), make_member(exchange, "Reader")
    exchange.admin.create_community("ring", default_tlp=Tlp.GREEN)
    exchange.admin.set_membership("Prod", "ring", True, True, Tlp.RED)
    exchange.admin.set_membership("Reader", "ring", True, False, Tlp.AMBER)
    cid = exchange.admin.get_community("ring").collection_id
    objs = [indicator(f"45.77.1.{n}") for n in range(1, 6)]
    objs.append({**indicator(),
                 "pattern": "[ipv4-addr:value = '45.80.0.1' OR ipv4-addr:value = '45.81.0.1']"})
    objs.append({**indicator(), "pattern": "[domain-name:value = 'login-verify.bad-cdn.top']"})
    assert not exchange.ingest.add_objects(p.principal, cid, objs).failures
    return {"P": p, "R": r, "cid": cid, "objs": objs}


def rules(svc: ExportService, principal) -> dict[str, idstools.rule.Rule]:
    """The rules of an export by (STIX id, matched text): what a sensor keeps apart."""
    out = {}
    for line in "".join(svc.export(principal, "suricata-rules", ExportFilter()).chunks).splitlines():
        rule = idstools.rule.parse(line)
        meta = dict(m.split(" ", 1) for m in rule.metadata)
        contents = "".join(o["value"] or "" for o in rule.options if o["name"] == "content")
        out[meta["cw_id"], rule.header + contents] = rule
    return out


def count(exchange, table: str) -> int:
    with exchange.engine.connect() as conn:
        return conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()


def test_an_unchanged_export_looks_no_rule_up_by_key(exchange, svc, ring, monkeypatch):
    first = rules(svc, ring["R"].principal)
    assert len(first) == 8 and count(exchange, "suricata_row_sids") == 7
    lookups = []
    real = sids_repo.known_sids
    monkeypatch.setattr(sids_repo, "known_sids", lambda conn, keys: lookups.append(keys) or real(conn, keys))
    again = rules(svc, ring["R"].principal)
    assert lookups == []
    assert {k: (r.sid, r.rev, r.raw) for k, r in again.items()} == {
        k: (r.sid, r.rev, r.raw) for k, r in first.items()}
    assert len({r.sid for r in again.values()}) == 8


def test_an_unchanged_export_builds_no_rule_and_counts_the_same_skips(exchange, svc, ring, monkeypatch):
    """Remembered rules are written as they are; a value without a rule form in an
    object with rules (here a hash beside an address) is still counted as skipped."""
    mixed = {**indicator(), "pattern": "[ipv4-addr:value = '45.90.0.1'] OR [file:hashes.MD5 = '"
             + "a" * 32 + "']"}
    assert not exchange.ingest.add_objects(ring["P"].principal, ring["cid"], [mixed]).failures

    def export() -> tuple[str, dict[str, int]]:
        out = svc.export(ring["R"].principal, "suricata-rules", ExportFilter())
        return "".join(out.chunks), dict(out.stats.skipped)

    first, skipped = export()
    assert skipped == {suricata.SKIP_RULE_KIND: 1} and "45.90.0.1" in first
    built = []
    real = suricata._Rules.row
    monkeypatch.setattr(suricata._Rules, "row", lambda self, *a: built.append(a) or real(self, *a))
    assert export() == (first, skipped)
    assert built == []


def test_a_renamed_producer_bumps_every_rev_once_and_keeps_the_sids(exchange, svc, ring):
    first = rules(svc, ring["R"].principal)
    with exchange.engine.begin() as conn:
        conn.execute(text("UPDATE organisations SET name = 'Prod Renamed' WHERE name = 'Prod'"))
    renamed = rules(svc, ring["R"].principal)
    assert renamed.keys() == first.keys()
    for key, rule in renamed.items():
        assert (rule.sid, rule.rev) == (first[key].sid, 2) and "Prod Renamed" in rule.msg
    again = rules(svc, ring["R"].principal)
    assert {k: (r.sid, r.rev) for k, r in again.items()} == {k: (r.sid, 2) for k, r in first.items()}


def test_a_warninglisted_value_leaves_the_other_rules_of_its_object_their_sids(exchange, svc, ring, tmp_path):
    first = rules(svc, ring["R"].principal)
    (tmp_path / "mine.json").write_text(json.dumps({
        "name": "ours", "description": "d", "source": "s", "licence": "CC0-1.0",
        "values": {"ipv4-addr": ["45.80.0.0/16"]}}))
    listed = ExportService(session_factory(exchange.engine), exchange.query, warninglist_dirs=[tmp_path])
    screened = rules(listed, ring["R"].principal)
    assert len(screened) == 7 and not any("45.80.0.1" in key[1] for key in screened)
    for key, rule in screened.items():  # same text: same sid, same rev
        assert (rule.sid, rule.rev, rule.raw) == (first[key].sid, 1, first[key].raw)
    back = rules(svc, ring["R"].principal)
    assert {k: (r.sid, r.rev) for k, r in back.items()} == {k: (r.sid, r.rev) for k, r in first.items()}


def test_a_wrong_remembered_check_is_answered_by_key(exchange, svc, ring):
    first = rules(svc, ring["R"].principal)
    with exchange.engine.begin() as conn:
        conn.execute(text("UPDATE suricata_row_sids SET rules_check = 0, rules = 'stale'"))
    again = rules(svc, ring["R"].principal)
    assert {k: (r.sid, r.rev) for k, r in again.items()} == {k: (r.sid, r.rev) for k, r in first.items()}
    with exchange.engine.connect() as conn:
        stale = conn.execute(text("SELECT count(*) FROM suricata_row_sids WHERE rules_check = 0"))
        assert stale.scalar_one() == 0


@pytest.mark.parametrize("change", ["rule writer", "schema revision"])
def test_a_changed_context_looks_every_row_up_again_and_keeps_sids_and_revs(exchange, svc, ring, monkeypatch,
                                                                            change):
    """A new rule writer or a migration that may have rewritten stored rows' export
    columns changes every row's check: rows are looked up by key once, revs bumped only
    where a text changed (here none)."""
    first = rules(svc, ring["R"].principal)
    if change == "rule writer":
        monkeypatch.setattr(suricata, "writer_fingerprint", lambda: "another writer")
    else:
        monkeypatch.setattr("commonwatch.services.export.schema_revision", lambda conn: "9999_next")
    lookups = []
    real = sids_repo.known_sids
    monkeypatch.setattr(sids_repo, "known_sids", lambda conn, keys: lookups.append(keys) or real(conn, keys))
    again = rules(svc, ring["R"].principal)
    assert sum(map(len, lookups)) == 8
    assert {k: (r.sid, r.rev, r.raw) for k, r in again.items()} == {
        k: (r.sid, r.rev, r.raw) for k, r in first.items()}
    lookups.clear()
    rules(svc, ring["R"].principal)
    assert lookups == []  # remembered under the new context


def test_the_writer_fingerprint_follows_the_rule_text(monkeypatch):
    before = suricata.writer_fingerprint()
    suricata.writer_fingerprint.cache_clear()
    assert suricata.writer_fingerprint() == before  # stable
    suricata.writer_fingerprint.cache_clear()
    monkeypatch.setattr(suricata, "_date_word", lambda timestamp: "1999_01_01")
    changed = suricata.writer_fingerprint()
    suricata.writer_fingerprint.cache_clear()
    assert changed != before


def test_remembered_sids_go_with_their_row(exchange, svc, ring):
    rules(svc, ring["R"].principal)
    assert count(exchange, "suricata_row_sids") == 7
    exchange.ingest.delete_object(ring["P"].principal, ring["cid"], ring["objs"][0]["id"], ALL_VERSIONS)
    assert count(exchange, "suricata_row_sids") == 6


def test_a_row_deleted_during_an_export_is_not_remembered(exchange, svc, ring):
    """The rows of a batch are read before their sids are allocated: a version deleted
    in between still gets its sids, and nothing is remembered for it."""
    body = 'alert ip $HOME_NET any <> 45.77.9.9 any (msg:"x"; metadata:cw_id indicator--x; '
    row = suricata.RuleRow(987_654, 1, "indicator--x", (("ipv4-addr", "45.77.9.9"),), (body,))
    store = SidStore(exchange.engine.connect)
    (written,) = store.allocate([row])
    store.close()
    rule = idstools.rule.parse(written)
    assert rule.sid > suricata.SID_BASE and rule.rev == 1
    assert count(exchange, "suricata_row_sids") == 0


def test_sids_not_remembered_cost_the_next_export_a_look_up_only(exchange, svc, ring, monkeypatch):
    """Remembering is an optimisation in a transaction of its own: when it fails (a
    deadlock with a concurrent writer, a locked database), the export still succeeds."""
    def fail(conn, rows):
        raise exchange.engine.dialect.loaded_dbapi.OperationalError("database is locked")

    monkeypatch.setattr(sids_repo, "remember", fail)
    first = rules(svc, ring["R"].principal)
    assert len(first) == 8 and count(exchange, "suricata_row_sids") == 0
    monkeypatch.undo()
    again = rules(svc, ring["R"].principal)
    assert {k: (r.sid, r.rev, r.raw) for k, r in again.items()} == {
        k: (r.sid, r.rev, r.raw) for k, r in first.items()}
    assert count(exchange, "suricata_row_sids") == 7


def test_look_ups_of_any_batch_size_use_one_statement(exchange, monkeypatch):
    """The driver keeps a prepared statement per SQL text: one text per look-up, whatever
    the batch size, or each size would keep its own (memory grew with the export)."""
    texts: list[str] = []
    real = sids_repo._driver

    class Recording:
        def __init__(self, cursor):
            self.cursor = cursor

        def execute(self, statement, params=()):
            texts.append(statement)
            return self.cursor.execute(statement, params)

        def __getattr__(self, name):
            return getattr(self.cursor, name)

    monkeypatch.setattr(sids_repo, "_driver", lambda conn: Recording(real(conn)))
    with exchange.engine.begin() as conn:
        for n in (1, 2, 1999):
            assert sids_repo.known_sids(conn, [f"{k:064x}" for k in range(n)]) == {}
            assert sids_repo.remembered(conn, list(range(1, n + 1))) == {}
    assert len(texts) == 6 and len(set(texts)) == 2
