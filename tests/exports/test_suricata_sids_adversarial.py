"""Adversarial tests of the Suricata sids and revs remembered per stored row
(``suricata_row_sids``), on both backends.

Every export's rules go through a :class:`Ledger` that holds what a sensor may rely on:
no sid twice in one output, one text per (sid, rev) over every export, by every reader,
one sid per (STIX id, kind, value) -- the sid ``suricata_sids`` gives the value's rule key.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
import uuid
import zlib
from typing import Any

import idstools.rule
import pytest
from sqlalchemy import text

from commonwatch.domain.markings import TLP2_MARKING_BY_LEVEL, Tlp
from commonwatch.formats import suricata
from commonwatch.services.export import ExportService
from commonwatch.services.query import ExportFilter, ObjectFilter, VersionSelector
from commonwatch.storage import objects as objects_repo
from commonwatch.storage import sids as sids_repo
from commonwatch.storage.db import session_factory

from support.factories import indicator, make_member, new_version
from support.suricata import Ledger

ALL_VERSIONS = ObjectFilter(versions=VersionSelector(last=False, all=True))
LISTED_NET = "45.80.0.0/16"
MITRE = "identity--c78cb6e5-0c4b-4611-8297-d1b8b55e40b5"  # the creator copies of a relayed source name


def export(svc: ExportService, principal, flt: ExportFilter = ExportFilter()) -> str:  # noqa: B008
    return "".join(svc.export(principal, "suricata-rules", flt).chunks)


def sql(exchange, statement: str, **params: Any) -> None:
    with exchange.engine.begin() as conn:
        conn.execute(text(statement), params)


def key_sid(exchange, stix_id: str, kind: str, value: str) -> int:
    """The sid ``suricata_sids`` holds for a value of an object."""
    with exchange.engine.connect() as conn:
        found = conn.execute(text("SELECT id FROM suricata_sids WHERE rule_key = :k"),
                             {"k": suricata.rule_key(stix_id, kind, value)}).scalar_one()
    return suricata.SID_BASE + found


def lists_service(exchange, folder, kind: str, values: list[str]) -> ExportService:
    """An export service with one list of its own (``values`` of ``kind``) in ``folder``."""
    folder.mkdir()
    (folder / "ours.json").write_text(json.dumps({
        "name": f"ours-{folder.name}", "description": "d", "source": "s", "licence": "CC0-1.0",
        "values": {kind: values}}))
    return ExportService(session_factory(exchange.engine), exchange.query, warninglist_dirs=[folder])


def assert_key_sids(exchange, ledger: Ledger, count: int) -> None:
    """Every (STIX id, address or domain) kept the sid its rule key has in ``suricata_sids``."""
    assert len(ledger.sid_of) == count
    for (stix_id, match), sid in ledger.sid_of.items():
        header, _, content = match.partition("|")
        kind, value = ("ipv4-addr", header.split()[5]) if header.startswith("alert ip") else (
            "domain-name", content.strip('"').removeprefix("."))
        assert sid == key_sid(exchange, stix_id, kind, value)


@pytest.fixture
def ledger() -> Ledger:
    return Ledger()


@pytest.fixture
def world(exchange, tmp_path) -> dict[str, Any]:
    """Prod writes (RED) in 'ring' and 'yard'; Amber reads up to AMBER, Green up to GREEN.
    ``listed``: an export service whose own list holds 45.80.0.0/16."""
    members = {n: make_member(exchange, n) for n in ("Prod", "Amber", "Green")}
    cids = {}
    for name in ("ring", "yard"):
        exchange.admin.create_community(name, default_tlp=Tlp.GREEN)
        exchange.admin.set_membership("Prod", name, True, True, Tlp.RED)
        exchange.admin.set_membership("Amber", name, True, False, Tlp.AMBER)
        exchange.admin.set_membership("Green", name, True, False, Tlp.GREEN)
        cids[name] = exchange.admin.get_community(name).collection_id
    listed = lists_service(exchange, tmp_path / "listed", "ipv4-addr", [LISTED_NET])
    return {"m": {n: m.principal for n, m in members.items()}, "cids": cids, "listed": listed}


def post(exchange, world, community: str, *objs: dict[str, Any]) -> None:
    assert not exchange.ingest.add_objects(world["m"]["Prod"], world["cids"][community], list(objs)).failures


def started(call, outputs: list[str], errors: list[BaseException]) -> threading.Thread:
    """A running thread that appends ``call()`` to ``outputs``, or what it raised to ``errors``."""
    def run() -> None:
        try:
            outputs.append(call())
        except BaseException as exc:  # noqa: BLE001 - the tests assert there is none
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def two_values(a: str, b: str, **kw: Any) -> dict[str, Any]:
    return indicator(**kw, pattern=f"[ipv4-addr:value = '{a}' OR ipv4-addr:value = '{b}']")


def test_readers_filters_versions_renames_lists_and_deletions_never_reuse_a_sid_rev(
        exchange, svc, world, ledger):
    m = world["m"]
    x = indicator(tlp=Tlp.GREEN, pattern="[ipv4-addr:value = '45.77.1.1' OR domain-name:value = 'x.bad.top']")
    y = two_values("45.80.0.1", "45.77.2.2", tlp=Tlp.GREEN)
    post(exchange, world, "ring", x, y)
    post(exchange, world, "ring", new_version(x, 5, name="x, second take",
                                              object_marking_refs=[TLP2_MARKING_BY_LEVEL[Tlp.AMBER]]))
    post(exchange, world, "yard", x)  # the first version of x again, in the other community
    views = [(svc, m["Amber"], ExportFilter()), (svc, m["Green"], ExportFilter()),
             (world["listed"], m["Amber"], ExportFilter()),
             (world["listed"], m["Green"], ExportFilter(include_warninglisted=True)),
             (svc, m["Prod"], ExportFilter(tlp_ceiling=Tlp.RED)),
             (svc, m["Amber"], ExportFilter(communities=("yard",)))]
    steps = [
        lambda: None,
        lambda: sql(exchange, "UPDATE organisations SET name = 'Prod Two' WHERE name = 'Prod'"),
        lambda: sql(exchange, "UPDATE communities SET name = 'ring two' WHERE name = 'ring'"),
        lambda: post(exchange, world, "ring", new_version(
            y, 7, name="y, red", object_marking_refs=[TLP2_MARKING_BY_LEVEL[Tlp.RED]])),
        lambda: exchange.ingest.delete_object(m["Prod"], world["cids"]["ring"], x["id"], ObjectFilter()),
        lambda: exchange.ingest.delete_object(m["Prod"], world["cids"]["ring"], y["id"], ALL_VERSIONS),
        lambda: sql(exchange, "UPDATE organisations SET name = 'Prod' WHERE name = 'Prod Two'"),
        lambda: post(exchange, world, "ring", y),  # y again, as a new row
    ]
    for step in steps:
        step()
        for view in views + views[::-1]:
            ledger.record(export(*view))
    assert_key_sids(exchange, ledger, 4)
    assert max(rev for _, rev in ledger.texts) >= 3
    for view in views:  # what is remembered is what the key path alone gives, but for revs
        remembered = export(*view)
        sql(exchange, "DELETE FROM suricata_row_sids")
        by_key = export(*view)
        assert re.sub(r"rev:\d+;", "", remembered) == re.sub(r"rev:\d+;", "", by_key)
        for rule in ledger.record(by_key).values():  # and the key path's digest is rule_digest's
            body = rule.raw[:rule.raw.rindex("sid:")]
            with exchange.engine.connect() as conn:
                assert conn.execute(text("SELECT rev, digest FROM suricata_sids WHERE id = :i"), {
                    "i": rule.sid - suricata.SID_BASE}).one() == (rule.rev, suricata.rule_digest(body))
        ledger.record(remembered)


def test_copies_chosen_differently_by_readers_and_communities(exchange, svc, world, ledger):
    """Two organisations hold one (id, version) in 'ring' (Twin's AMBER copy stored first,
    then Prod's GREEN one), Prod holds it in 'yard' too; each copy states an address of
    its own and a shared one. Readers and filters choose different copies; then Twin
    deletes its copy."""
    m, cids = world["m"], world["cids"]
    twin = make_member(exchange, "Twin").principal
    exchange.admin.set_membership("Twin", "ring", True, True, Tlp.RED)
    oid = f"indicator--{uuid.uuid4()}"

    def copy(value: str, tlp: Tlp) -> dict[str, Any]:
        return two_values(value, "45.66.99.99", oid=oid, tlp=tlp, created_by=MITRE, modified=1)

    assert not exchange.ingest.add_objects(twin, cids["ring"], [copy("45.66.1.1", Tlp.AMBER)]).failures
    post(exchange, world, "ring", copy("45.66.2.2", Tlp.GREEN))
    post(exchange, world, "yard", copy("45.66.3.3", Tlp.GREEN))
    views = [(svc, m["Amber"], ExportFilter()), (svc, m["Green"], ExportFilter()),
             (svc, m["Amber"], ExportFilter(communities=("yard",))),
             (svc, m["Amber"], ExportFilter(tlp_ceiling=Tlp.GREEN))]
    for step in (lambda: None, lambda: exchange.ingest.delete_object(twin, cids["ring"], oid, ALL_VERSIONS)):
        step()
        for view in views * 2:
            ledger.record(export(*view))
    assert_key_sids(exchange, ledger, 4)  # every copy's own address came out, and the shared one


def crc_twin(body: str, name: str) -> str:
    """Another name of ``name``'s length ('h'-'o' letters) that leaves the CRC32 of
    ``body`` (where ``name`` stands) unchanged: CRC is affine over GF(2), so a set of
    bit flips whose CRC effects cancel is found by elimination."""
    assert set(name) <= set("hijklmno")
    base = zlib.crc32(body.encode())
    basis: dict[int, tuple[int, int]] = {}
    for bit in range(3 * len(name)):
        i, b = divmod(bit, 3)
        flipped = name[:i] + chr(ord(name[i]) ^ (1 << b)) + name[i + 1:]
        vec, mask = zlib.crc32(body.replace(name, flipped).encode()) ^ base, 1 << bit
        while vec and vec.bit_length() - 1 in basis:
            top_vec, top_mask = basis[vec.bit_length() - 1]
            vec, mask = vec ^ top_vec, mask ^ top_mask
        if not vec:
            return "".join(chr(ord(c) ^ (mask >> 3 * i & 7)) for i, c in enumerate(name))
        basis[vec.bit_length() - 1] = (vec, mask)
    raise AssertionError("no twin")


def test_a_rename_that_keeps_the_crc_still_bumps_the_rev(exchange, svc, world, ledger):
    m = world["m"]
    post(exchange, world, "ring", indicator("45.77.3.3", tlp=Tlp.GREEN, name="n"))
    first = "hijklmnohijklmno"
    sql(exchange, "UPDATE organisations SET name = :n WHERE name = 'Prod'", n=first)
    line = export(svc, m["Amber"])
    (before,) = ledger.record(line).values()
    body = line[:line.rindex("sid:")]
    second = crc_twin(body, first)
    twin_body = body.replace(first, second)
    assert second != first and len(twin_body) == len(body)
    assert zlib.crc32(twin_body.encode()) == zlib.crc32(body.encode())
    sql(exchange, "UPDATE organisations SET name = :n WHERE name = :o", n=second, o=first)
    # A check of CRC32 and length let a producer renamed to such a twin (found in
    # microseconds, CRC being linear) change the rule's msg and metadata under the old
    # (sid, rev): sensors would keep the stale rule. The check is a cryptographic digest.
    out = export(svc, m["Amber"])
    assert second in out
    (after,) = ledger.record(out).values()  # fails: (sid, rev) names two texts
    assert (after.sid, after.rev) == (before.sid, before.rev + 1)


def test_urls_differing_only_in_port_keep_their_own_sids(exchange, svc, world, tmp_path):
    """http.host carries no port: two URLs of one indicator differing only in port give
    rules of one text (two sids). A list that drops one of them must not hand its sid
    to the other."""
    m = world["m"]
    a, b = "http://gate.bad-cdn.top:8080/in.php", "http://gate.bad-cdn.top:8081/in.php"
    obj = indicator(tlp=Tlp.GREEN, pattern=f"[url:value = '{a}' OR url:value = '{b}']")
    post(exchange, world, "ring", obj)
    both = export(svc, m["Amber"]).splitlines()
    sid = {v: key_sid(exchange, obj["id"], "url", v) for v in (a, b)}
    assert sorted(idstools.rule.parse(r).sid for r in both) == sorted(sid.values())
    without = {v: lists_service(exchange, tmp_path / f"no{i}", "url", [v])
               for i, v in enumerate((a, b))}
    (only_b,) = export(without[a], m["Amber"]).splitlines()
    assert idstools.rule.parse(only_b).sid == sid[b]
    # A check over the rules' texts alone took the sid remembered for b (same text) for
    # a's rule: the check covers the values too.
    (only_a,) = export(without[b], m["Amber"]).splitlines()
    assert idstools.rule.parse(only_a).sid == sid[a]


def test_a_version_deleted_while_the_export_remembers_it_does_not_fail_the_export(
        exchange, svc, world, monkeypatch):
    """A DELETE of a version commits while an export that read it stores its sids."""
    m = world["m"]
    doomed = indicator("45.77.4.4", tlp=Tlp.GREEN)
    post(exchange, world, "ring", doomed, indicator("45.77.4.5", tlp=Tlp.GREEN))
    deleted, release = threading.Event(), threading.Event()
    real = objects_repo.refresh_latest

    def refresh_then_wait(conn, *args: Any) -> None:  # the deleting transaction, still open
        real(conn, *args)
        deleted.set()
        release.wait(20)

    monkeypatch.setattr(objects_repo, "refresh_latest", refresh_then_wait)
    errors: list[BaseException] = []
    outputs: list[str] = []
    deleter = started(lambda: str(exchange.ingest.delete_object(
        m["Prod"], world["cids"]["ring"], doomed["id"], ObjectFilter())), outputs, errors)
    assert deleted.wait(20)
    exporter = started(lambda: export(svc, m["Amber"]), outputs, errors)
    deadline = time.monotonic() + 10
    while exporter.is_alive() and time.monotonic() < deadline:  # until the export waits on the delete
        if exchange.engine.dialect.name != "postgresql":
            time.sleep(0.5)
            break
        with exchange.engine.connect() as conn:
            if conn.execute(text("SELECT count(*) FROM pg_locks WHERE NOT granted")).scalar_one():
                break
        time.sleep(0.02)
    release.set()
    deleter.join(30)
    exporter.join(30)
    # On PostgreSQL the entry's foreign key check waited for the uncommitted DELETE and
    # then failed the export (ForeignKeyViolation); a row being deleted is skipped now.
    assert errors == []
    assert len(outputs) == 2
    with exchange.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM suricata_row_sids")).scalar_one() == 1


def test_two_exports_remembering_rows_in_opposite_orders_do_not_deadlock(
        exchange, svc, world, ledger, monkeypatch, tmp_path):
    """Steady state (every sid allocated, no rev to bump), two readers whose views of the
    same rows differ from each other and from the last export's (lists of their own) export
    at once: each rewrites every row's entry. One reads 'ring' in the order added, the other
    'ring' and 'yard' merged by STIX id: here the opposite order. A pause after each
    export's first entry lets both start before either finishes, as a busy server may."""
    m = world["m"]
    ids = [f"indicator--00000000-0000-4000-8000-{n:012d}" for n in range(8, 0, -1)]  # added high to low
    post(exchange, world, "ring", *[two_values(f"45.80.{n}.1", f"45.77.{n}.1", tlp=Tlp.GREEN, oid=oid)
                                    for n, oid in enumerate(ids)])
    views = [(world["listed"], m["Amber"], ExportFilter(communities=("ring",))),
             (svc, m["Green"], ExportFilter())]
    third = lists_service(exchange, tmp_path / "third", "ipv4-addr", ["45.77.0.0/16"])
    for view in [*views, (third, m["Amber"], ExportFilter())]:  # the third view's entries last
        ledger.record(export(*view))
    real, both = sids_repo.execute_many, threading.Barrier(2)

    def paused(conn, statement: str, rows) -> None:
        if not statement.startswith("INSERT INTO suricata_row_sids") or len(rows) < 2:
            return real(conn, statement, rows)
        real(conn, statement, rows[:1])
        with contextlib.suppress(threading.BrokenBarrierError):
            both.wait(3)  # SQLite: the other export waits for the write lock; go on alone
        real(conn, statement, rows[1:])

    monkeypatch.setattr(sids_repo, "execute_many", paused)
    outputs: list[str] = []
    errors: list[BaseException] = []
    threads = [started(lambda view=view: export(*view), outputs, errors) for view in views]
    for t in threads:
        t.join(60)
    # On PostgreSQL each export upserted its entries in its own read order: two exports
    # meeting in opposite orders deadlocked. Entries are written in row id order now, in a
    # transaction of their own whose failure only costs the next export a look-up.
    assert errors == []
    assert sorted(len(ledger.record(out)) for out in outputs) == [8, 16]
