"""Engine creation and schema migration.

SQLite is the embedded default: one file, WAL journal so readers never block the
writer, ``synchronous=NORMAL`` (durable across process crashes; WAL keeps the file
consistent across power loss) and foreign keys on. PostgreSQL is chosen by a
``postgresql+psycopg://`` URL.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from commonwatch.errors import ConfigError, StorageError

MIGRATIONS = Path(__file__).parent / "migrations"


#: Page size of new SQLite databases, in bytes.
PAGE_SIZE = 16384
#: How much the write-ahead log holds before it is checkpointed, in bytes.
WAL_CHECKPOINT_BYTES = 512 * 1024 * 1024


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    # 16 KiB pages for a new database (an existing file keeps the size it was created
    # with; this must come before WAL mode, which writes the first page). Every commit
    # writes each page it changed to the WAL with two system calls, and ingest into a
    # large collection changes index pages at random (ids, observable values): with
    # larger pages one envelope touches fewer of them, and the trees are shallower.
    # Ingest of 10^6 objects over TAXII took 1.02-1.12x the objects per second of 4 KiB
    # pages in runs alternating the two, both checkpointing every 512 MiB; the gain is
    # in the first half of the load, near 10^6 stored the two are about even
    # (docs/benchmarks.md).
    cur.execute(f"PRAGMA page_size={PAGE_SIZE}")
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    # 256 MiB of page cache and memory-mapped reads (up to the library's 2 GiB limit):
    # the id index of a million-object collection stays in memory, so random-id inserts
    # and lookups do not go to disk, and mapped pages are shared by all connections.
    cur.execute("PRAGMA cache_size=-262144")
    cur.execute("PRAGMA mmap_size=2147418112")
    # Checkpoint the WAL every 512 MiB (WAL_CHECKPOINT_BYTES) rather than 4 MiB. Ingest
    # into a large collection dirties index pages at random (ids, observable values);
    # between checkpoints a page changed many times is copied back once. At 10^6 stored
    # objects 256 MiB gave 8-10% more objects per CPU-second than 64 MiB, and 512 MiB
    # 3.5% more than 256 once the WAL writer (storage.wal_writer) synced the log ahead of
    # the checkpoints; 1 GiB gave no more (docs/benchmarks.md). The WAL file can reach
    # about that size during bulk loads; it is emptied when the last connection closes.
    # The setting counts pages, whose size depends on the file.
    page_size = cur.execute("PRAGMA page_size").fetchone()[0]
    cur.execute(f"PRAGMA wal_autocheckpoint={WAL_CHECKPOINT_BYTES // page_size}")
    cur.close()


#: Always empty: its ``get`` is a C function that answers None for anything.
_NOTHING: dict[object, None] = {}


def _bind_directly() -> None:
    """Let the sqlite3 driver bind None and bytes without its adapter search.

    The driver binds exact ints, floats and strings as they are, but looks every other
    parameter up among its adapters and then asks the value itself (two attribute
    lookups that fail) before binding it unchanged: a third of the cost of inserting a
    row, whose export columns are often None and whose JSON is bytes. An adapter found
    at once skips the search; these return the value itself (``bytes(b)`` is ``b``), so
    what is stored is the same NULL and the same blob. Registering them for types other
    than int, float, str and bytearray keeps the driver's fast path for those.
    """
    sqlite3.register_adapter(type(None), _NOTHING.get)
    sqlite3.register_adapter(bytes, bytes)


def make_engine(database_url: str) -> Engine:
    """An engine for ``database_url``; creates the SQLite file's folder if needed."""
    try:
        url = make_url(database_url)
    except ArgumentError as exc:
        raise ConfigError(f"database URL is not valid: {exc}") from exc
    if url.get_backend_name() == "sqlite":
        if url.database and url.database != ":memory:":
            folder = Path(url.database).parent
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise ConfigError(f"cannot create the database folder {folder}: {exc.strerror}") from None
        # LIFO: the connection used last (its page cache warm) serves the next request.
        # An export or feed holds one connection while it streams (its snapshot): up to
        # 50 at once, 10 kept open between them.
        _bind_directly()
        engine = create_engine(url, connect_args={"check_same_thread": False}, pool_use_lifo=True,
                               pool_size=10, max_overflow=40)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    if url.get_backend_name() == "postgresql":
        if url.drivername == "postgresql":
            url = url.set(drivername="postgresql+psycopg")
        if url.drivername != "postgresql+psycopg":
            raise ConfigError(f"unsupported PostgreSQL driver {url.drivername!r}; use postgresql:// "
                              "(psycopg 3)")
        return create_engine(url, pool_size=10, max_overflow=30, pool_pre_ping=True,
                             pool_use_lifo=True)
    raise ConfigError(f"unsupported database {url.get_backend_name()!r}; use sqlite or postgresql")


def snapshot(session: Session) -> Connection:
    """The session's connection in a read transaction that sees one snapshot of the
    database until the session ends, whatever others commit meanwhile: on PostgreSQL
    REPEATABLE READ; on SQLite an explicit BEGIN (its Python driver starts transactions
    only for writes, so each SELECT would otherwise see the database anew)."""
    if session.get_bind().dialect.name == "postgresql":
        return session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
    conn = session.connection()
    begin_sqlite(conn)
    return conn


def begin_sqlite(conn: Connection, mode: str = "") -> None:
    """Begin the SQLite transaction of ``conn`` now (``mode``: ``IMMEDIATE`` to take the
    write lock at once), unless one is open: its Python driver begins one only at the
    first write."""
    driver = conn.connection.driver_connection
    if driver is not None and not driver.in_transaction:
        conn.exec_driver_sql(f"BEGIN {mode}".rstrip())


def session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions that keep loaded values after commit (services return them)."""
    return sessionmaker(engine, expire_on_commit=False)


def alembic_config(engine: Engine) -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["engine"] = engine
    return cfg


def schema_revision(conn: Connection) -> str | None:
    """The migration the database's schema is at (None: no schema yet)."""
    return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine) -> tuple[str | None, str | None]:
    """Bring the schema to the newest migration (idempotent): the revisions before and
    after."""
    try:
        with engine.connect() as conn:
            before = schema_revision(conn)
        command.upgrade(alembic_config(engine), "head")
        with engine.connect() as conn:
            return before, schema_revision(conn)
    except OperationalError as exc:
        raise StorageError(f"cannot migrate the database: {exc.orig}") from exc
