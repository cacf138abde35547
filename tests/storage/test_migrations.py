"""Migrations that fill new columns from stored data agree with what ingest writes; new and
existing SQLite files keep working whatever their page size."""

from __future__ import annotations

import sqlite3

import sqlalchemy as sa
from alembic import command

from commonwatch.domain.markings import Tlp
from commonwatch.domain.observables import KINDS, SKIP_COMPLEX, SKIP_INVALID_VALUE, SKIP_REASONS
from commonwatch.services.export_filters import build_filter
from commonwatch.storage.db import (
    PAGE_SIZE,
    WAL_CHECKPOINT_BYTES,
    alembic_config,
    make_engine,
    upgrade,
)

from support.factories import indicator, ipv4, make_member, ts

EXPORT_COLUMNS = ("stix_id, export_values, export_skip, revoked, valid_until_us, confidence, export_name, "
                  "export_labels, export_times")


def _export_columns(exchange) -> list[tuple]:
    with exchange.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.text(
            f"SELECT {EXPORT_COLUMNS} FROM stix_objects ORDER BY id"))]


def test_export_columns_backfilled_as_ingest_writes_them(exchange):
    member = make_member(exchange, "Org A")
    exchange.admin.create_community("c", default_tlp=Tlp.GREEN)
    exchange.admin.set_membership(member.org, "c", True, True, Tlp.RED)
    cid = exchange.admin.get_community("c").collection_id
    objects = [
        indicator("198.51.100.7", confidence=80, valid_until=ts(10**6)),
        indicator(pattern="[ipv4-addr:value = '1.2.3.4'] AND [domain-name:value = 'x.example']",
                  revoked=True),
        ipv4("203.0.113.9"),
    ]
    assert not exchange.ingest.add_objects(member.principal, cid, objects).failures
    written = _export_columns(exchange)
    by_id = {row[0]: row[1:] for row in written}
    assert by_id[objects[0]["id"]] == ("ipv4-addr 198.51.100.7", None, False,
                                       (1_767_225_600 + 10**6) * 1_000_000, 80, objects[0]["name"],
                                       '["malicious-activity"]',
                                       f"{objects[0]['created']}\n{objects[0]['modified']}\n{ts(10**6)}")
    assert by_id[objects[1]["id"]][:5] == (None, SKIP_REASONS.index(SKIP_COMPLEX), True, None, None)
    assert by_id[objects[2]["id"]][0] == "ipv4-addr 203.0.113.9"
    assert by_id[objects[2]["id"]][-1] is None  # an SCO has no times

    config = alembic_config(exchange.engine)
    command.downgrade(config, "0005_observable_prefixes")
    command.upgrade(config, "head")
    assert _export_columns(exchange) == written
    exchange.ingest.delete_object(member.principal, cid, objects[2]["id"], _all())
    with exchange.engine.connect() as conn:
        assert conn.scalar(sa.text("SELECT count(*) FROM tombstones")) == 1


def _all():
    from commonwatch.services.query import ObjectFilter, VersionSelector

    return ObjectFilter(versions=VersionSelector(last=False, all=True))


def _snapshot(exchange) -> dict[str, list[tuple]]:
    queries = {
        "objects": "SELECT id, stix_id, version_us, producer_org_id, is_latest, raw FROM stix_objects "
                   "ORDER BY id",
        "recipients": "SELECT object_id, identity_id FROM object_recipients ORDER BY 1, 2",
        "observables": "SELECT object_id, kind, value FROM observables ORDER BY 1, 2, 3",
        "refs": "SELECT object_id, target_id, relation FROM object_refs ORDER BY 1, 2, 3",
    }
    with exchange.engine.connect() as conn:
        return {name: [tuple(r) for r in conn.execute(sa.text(q))] for name, q in queries.items()}


def test_copies_migration_rebuilds_the_table_without_losing_a_row_or_reference(exchange):
    a, b = make_member(exchange, "Org A"), make_member(exchange, "Org B")
    exchange.admin.create_community("c", default_tlp=Tlp.GREEN)
    for m in (a, b):
        exchange.admin.set_membership(m.org, "c", True, True, Tlp.RED)
    cid = exchange.admin.get_community("c").collection_id
    red = indicator("198.51.100.8", tlp=Tlp.RED, recipients=[b.identity])
    sighting = {"type": "sighting", "spec_version": "2.1", "created": ts(1), "modified": ts(1),
                "id": "sighting--6b1f3e4c-8f0a-4a8e-9c1e-0d2b3a4c5d6e", "sighting_of_ref": red["id"]}
    assert not exchange.ingest.add_objects(a.principal, cid, [red, ipv4("203.0.113.9"), sighting]).failures
    before = _snapshot(exchange)
    assert all(before.values()), before  # every table has rows to lose

    config = alembic_config(exchange.engine)
    command.downgrade(config, "0007_export_times")
    assert _snapshot(exchange) == before
    command.upgrade(config, "head")
    assert _snapshot(exchange) == before
    if exchange.engine.dialect.name == "sqlite":  # the pooled connections enforce foreign keys again
        with exchange.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    # the wider key holds a second organisation's copy; the cascades work; the RED
    # tombstone keeps the recipient list; the delete counter is gone with its trigger
    assert exchange.ingest.add_objects(b.principal, cid, [sighting]).stored == [True]
    exchange.ingest.delete_object(a.principal, cid, red["id"], _all())
    with exchange.engine.connect() as conn:
        assert conn.scalar(sa.text("SELECT identity_id FROM tombstone_recipients")) == b.identity
        assert not sa.inspect(conn).has_table("object_deletions")
        assert conn.scalar(sa.text("SELECT count(*) FROM object_recipients")) == 0
        assert conn.scalar(sa.text("SELECT count(*) FROM observables WHERE value = '198.51.100.8'")) == 0


def test_values_older_code_let_through_are_extracted_again(exchange):
    """0011: values stored with an IPv6 zone id or a line break (which normalisation used to
    let through) are extracted again from the JSON, export columns and index alike; the
    others are left as they are."""
    member = make_member(exchange, "Org A")
    exchange.admin.create_community("c", default_tlp=Tlp.GREEN)
    exchange.admin.set_membership(member.org, "c", True, True, Tlp.RED)
    cid = exchange.admin.get_community("c").collection_id
    scoped = indicator(pattern="[ipv6-addr:value = 'fe80::1%eth0 any (msg:\"x\"; sid:1;)']")
    broken = indicator(pattern="[email-addr:value = 'first\nsecond@break-mail.top']")
    good = indicator("198.51.100.7")
    assert not exchange.ingest.add_objects(member.principal, cid, [scoped, broken, good]).failures
    now = {row[0]: row[1:] for row in _export_columns(exchange)}
    refused = (None, SKIP_REASONS.index(SKIP_INVALID_VALUE))  # no values, and why
    assert now[scoped["id"]][:2] == now[broken["id"]][:2] == refused
    # what the older code stored for them
    old = {scoped["id"]: "ipv6-addr fe80::1%eth0 any (msg:\"x\"; sid:1;)",
           broken["id"]: "email-addr first\nsecond@break-mail.top"}
    with exchange.engine.begin() as conn:
        for stix_id, values in old.items():
            row_id = conn.scalar(sa.text("SELECT id FROM stix_objects WHERE stix_id = :s"), {"s": stix_id})
            conn.execute(sa.text("UPDATE stix_objects SET export_values = :v, export_skip = NULL, "
                                 "export_listed = '[]', listed_stamp = 1 WHERE id = :id"),
                         {"v": values, "id": row_id})
            conn.execute(sa.text("DELETE FROM observables WHERE object_id = :id"), {"id": row_id})
            for line in values.split("\n"):
                kind, _, value = line.partition(" ")
                if kind not in KINDS:  # the broken line: not even PostgreSQL could index it
                    continue
                conn.execute(sa.text("INSERT INTO observables (object_id, community_id, kind, value) "
                                     "SELECT id, community_id, :k, :v FROM stix_objects WHERE id = :id"),
                             {"k": kind, "v": value, "id": row_id})
    before = _snapshot(exchange)
    config = alembic_config(exchange.engine)
    command.downgrade(config, "0010_feed_reservations")
    command.upgrade(config, "head")
    assert {row[0]: row[1:] for row in _export_columns(exchange)} == now
    after = _snapshot(exchange)
    assert after["objects"] == before["objects"]
    with exchange.engine.connect() as conn:
        index = sorted(conn.execute(sa.text("SELECT o.stix_id, x.kind, x.value FROM observables x "
                                            "JOIN stix_objects o ON o.id = x.object_id")))
        listed = dict(conn.execute(sa.text("SELECT stix_id, listed_stamp FROM stix_objects")).all())
    assert index == [(good["id"], "ipv4-addr", "198.51.100.7")]
    assert listed[scoped["id"]] is None and listed[broken["id"]] is None  # verdicts to be checked again
    assert listed[good["id"]] is not None  # a good row is untouched


def test_tlp_ids_written_in_upper_case_count_on_upgrade(exchange):
    """0012: a version marked with a TLP id in upper-case hex, stored by older code under
    its community's default TLP, gets the TLP it names; others are left as they are."""
    member = make_member(exchange, "Org A")
    exchange.admin.create_community("c", default_tlp=Tlp.GREEN)
    exchange.admin.set_membership(member.org, "c", True, True, Tlp.RED)
    cid = exchange.admin.get_community("c").collection_id
    red_upper = "marking-definition--5E57C739-391A-4EB3-B6BE-7D15CA92D5ED"  # TLP 1.0 RED
    amber_mixed = "marking-definition--55D920B0-5e8b-4f79-9ee9-91f868d9b421"  # TLP 2.0 AMBER
    red = indicator("198.51.100.20", object_marking_refs=[red_upper], name="RED, upper case")
    amber = indicator("198.51.100.21", object_marking_refs=[amber_mixed])
    plain = indicator("198.51.100.22", name="Upper Case Words In A Name")
    assert not exchange.ingest.add_objects(member.principal, cid, [red, amber, plain]).failures

    def tlps() -> dict[str, int]:
        with exchange.engine.connect() as conn:
            return dict(conn.execute(sa.text("SELECT stix_id, tlp FROM stix_objects")).all())

    now = tlps()
    assert (now[red["id"]], now[amber["id"]], now[plain["id"]]) == (Tlp.RED, Tlp.AMBER, Tlp.GREEN)
    with exchange.engine.begin() as conn:  # as older code stored them: the community default
        conn.execute(sa.text("UPDATE stix_objects SET tlp = :t WHERE stix_id IN (:a, :b)"),
                     {"t": int(Tlp.GREEN), "a": red["id"], "b": amber["id"]})
    feed = exchange.feeds.create_feed(member.principal, "ips", "plain-ip", build_filter())
    export, etag, _ = exchange.feeds.render_feed(member.principal, feed)
    "".join(export.chunks)
    assert exchange.feeds.validators(member.principal, feed)[:3:2] == (etag, True)
    config = alembic_config(exchange.engine)
    command.downgrade(config, "0011_revalue_unsafe_values")
    command.upgrade(config, "head")
    assert tlps() == now
    # what feeds hold changed without a write: their stored validators are gone
    assert exchange.feeds.validators(member.principal, feed)[2] is False


def test_new_sqlite_databases_use_large_pages_and_existing_ones_keep_theirs(tmp_path):
    """A new SQLite file gets PAGE_SIZE pages; one created with another size keeps it (the
    size of a WAL database cannot change without a rebuild) and still migrates and works.
    Either way the WAL is checkpointed after the same number of bytes."""
    def page_size(path) -> int:
        with sqlite3.connect(path) as conn:
            return conn.execute("PRAGMA page_size").fetchone()[0]

    new = tmp_path / "new.db"
    engine = make_engine(f"sqlite:///{new}")
    upgrade(engine)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == WAL_CHECKPOINT_BYTES // PAGE_SIZE
    engine.dispose()
    assert PAGE_SIZE != 4096 and page_size(new) == PAGE_SIZE

    old = tmp_path / "old.db"
    with sqlite3.connect(old) as conn:
        conn.execute("PRAGMA page_size=4096")
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE earlier (x INTEGER)")
    engine = make_engine(f"sqlite:///{old}")
    upgrade(engine)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM stix_objects").scalar() == 0
        assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == WAL_CHECKPOINT_BYTES // 4096
    engine.dispose()
    assert page_size(old) == 4096
