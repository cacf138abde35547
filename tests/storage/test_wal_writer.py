"""The background writer of SQLite's write-ahead log (commonwatch.storage.wal_writer):
it syncs the WAL after ingest commits, starts with the first write, stops when idle or
closed, and never fails a write."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine

from commonwatch.config import load_settings
from commonwatch.domain.markings import Tlp
from commonwatch.services.exchange import Exchange
from commonwatch.storage.db import make_engine
from commonwatch.storage.wal_writer import WalWriter

from support.factories import indicator, make_community, make_member


def eventually(condition, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


def test_only_a_sqlite_file_gets_a_writer(tmp_path):
    assert WalWriter.for_engine(make_engine(f"sqlite:///{tmp_path}/a.db")) is not None
    assert WalWriter.for_engine(create_engine("sqlite://")) is None
    assert WalWriter.for_engine(create_engine("sqlite:///:memory:")) is None
    assert WalWriter.for_engine(make_engine("postgresql://u@localhost/db")) is None


def test_ingest_commits_are_synced_by_the_writer(exchange):
    if exchange.engine.dialect.name != "sqlite":
        assert exchange.wal_writer is None
        return
    writer = exchange.wal_writer
    assert writer is not None and not writer.running  # no thread before the first write
    member = make_member(exchange, "Poster")
    cid = make_community(exchange, "wal", Tlp.GREEN, {"Poster": (True, Tlp.RED)})
    before = writer.syncs
    report = exchange.ingest.add_objects(member.principal, cid, [indicator("198.51.100.9")])
    assert len(report.successes) == 1
    assert eventually(lambda: writer.syncs > before)
    assert writer.running


def test_the_thread_ends_when_idle_and_a_new_write_starts_another(tmp_path):
    wal = tmp_path / "x.db-wal"
    wal.write_bytes(b"\0" * 4096)
    writer = WalWriter(tmp_path / "x.db", interval=0.01, idle=0.05)
    writer.poke()
    assert eventually(lambda: writer.syncs == 1)
    assert eventually(lambda: not writer.running)
    writer.poke()
    assert eventually(lambda: writer.syncs == 2)
    writer.close()
    assert not writer.running


def test_many_pokes_within_the_interval_make_one_sync(tmp_path):
    (tmp_path / "x.db-wal").write_bytes(b"\0" * 4096)
    writer = WalWriter(tmp_path / "x.db", interval=0.5)
    writer.poke()
    assert eventually(lambda: writer.syncs == 1)
    for _ in range(100):
        writer.poke()  # all while the writer waits out its interval
    assert eventually(lambda: writer.syncs == 2)
    time.sleep(0.6)
    assert writer.syncs == 2
    writer.close()


def test_a_missing_wal_is_not_an_error_and_close_stops_for_good(tmp_path, caplog):
    writer = WalWriter(Path(tmp_path / "none.db"), interval=0.01)
    writer.poke()
    assert eventually(lambda: writer.running)
    time.sleep(0.05)
    assert writer.syncs == 0 and not caplog.records
    writer.close()
    assert not writer.running
    writer.poke()
    assert not writer.running and writer.syncs == 0


@pytest.mark.parametrize("rounds", [3])
def test_an_exchange_closes_its_writer(tmp_path, rounds):
    url = f"sqlite:///{tmp_path}/c.db"
    for _ in range(rounds):
        exchange = Exchange(load_settings(environ={}, database_url=url))
        member = make_member(exchange, f"P{_}")
        cid = make_community(exchange, f"c{_}", Tlp.GREEN, {f"P{_}": (True, Tlp.RED)})
        exchange.ingest.add_objects(member.principal, cid, [indicator()])
        writer = exchange.wal_writer
        assert writer is not None and eventually(lambda w=writer: w.syncs >= 1)
        exchange.close()
        assert not writer.running
