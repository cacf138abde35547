"""A real server and what tests read from outside it: uvicorn on a loopback port in a
thread, and the read transactions a database holds open."""

from __future__ import annotations

import contextlib
import gc
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa
import uvicorn

from commonwatch.process import tune_for_throughput
from commonwatch.web.app import SERVER_OPTIONS


@contextlib.contextmanager
def uvicorn_on_loopback(
    app: Any, *, send_buffer: int | None = None, log_level: str = "critical", phase: float | None = None,
) -> Iterator[int]:
    """Serve ``app`` as ``commonwatch serve`` does (:data:`SERVER_OPTIONS`) on a loopback
    port, which it yields. ``send_buffer``: the listening socket's SO_SNDBUF (accepted
    sockets inherit it), so that a client that stops reading really holds its stream;
    ``phase``: start at that fraction of a wall-clock second."""
    sock = socket.socket()
    if send_buffer is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level=log_level, lifespan="off", **SERVER_OPTIONS))
    if phase is not None:
        time.sleep((phase - time.time()) % 1.0)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.005)
    try:
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def open_read_transactions(url: str) -> int:
    """SQLite: 1 if a reader keeps the WAL from being checkpointed; PostgreSQL: the
    sessions of the test database idle in a transaction. Seen from outside the pool."""
    if url.startswith("sqlite"):
        with contextlib.closing(sqlite3.connect(url.removeprefix("sqlite:///"))) as conn:
            return int(conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0])
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1), poolclass=sa.NullPool)
    with engine.connect() as conn:
        return int(conn.execute(sa.text(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND state LIKE 'idle in transaction%' AND pid <> pg_backend_pid()")).scalar_one())


@contextlib.contextmanager
def as_served() -> Iterator[None]:
    """The garbage collector as ``commonwatch serve`` sets it (process.tune_for_throughput)."""
    before = gc.get_threshold()
    tune_for_throughput()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
