"""The sqlite3 driver binds None and bytes through adapters that return them unchanged
(storage.db._bind_directly): what is stored and read back is exactly what was given."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from commonwatch.storage.db import make_engine


def test_engine_registers_identity_adapters_for_none_and_bytes(tmp_path: Path) -> None:
    make_engine(f"sqlite:///{tmp_path / 'x.db'}").dispose()
    protocol = sqlite3.PrepareProtocol
    for value in (None, b"", b"\x00raw json\xff"):
        adapter = sqlite3.adapters[(type(value), protocol)]
        assert adapter(value) is value
    # The driver's own fast path for the basic types stays: nothing registered for them.
    assert not {(t, protocol) for t in (int, float, str, bytearray)} & set(sqlite3.adapters)


@pytest.fixture(scope="module", autouse=True)
def _adapters(tmp_path_factory: pytest.TempPathFactory) -> None:
    make_engine(f"sqlite:///{tmp_path_factory.mktemp('db') / 'x.db'}").dispose()  # registers them


@given(st.lists(st.one_of(st.none(), st.binary(max_size=64), st.integers(-(2**63), 2**63 - 1),
                          st.text(max_size=16), st.booleans()), min_size=1, max_size=8))
def test_values_round_trip_with_their_sqlite_types(values: list[object]) -> None:
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE t (n INTEGER PRIMARY KEY, v)")
    conn.executemany("INSERT INTO t (v) VALUES (?)", [(v,) for v in values])
    stored = conn.execute("SELECT v, typeof(v) FROM t ORDER BY n").fetchall()
    expected_types = {type(None): "null", bytes: "blob", int: "integer", bool: "integer", str: "text"}
    assert [kind for _, kind in stored] == [expected_types[type(v)] for v in values]
    assert [v for v, _ in stored] == [int(v) if isinstance(v, bool) else v for v in values]
    conn.close()
