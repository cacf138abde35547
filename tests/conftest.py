"""Shared fixtures: databases on both backends, exchanges, a live TAXII server.

Every storage-touching test gets a fresh database, copied from a migrated template
(SQLite: a file copy; PostgreSQL: CREATE DATABASE ... TEMPLATE). Services commit
their own transactions, so a fresh database per test gives the isolation a
rolled-back transaction would, while exercising the real commit path.

PostgreSQL: a throwaway server is started once per run. Where none can be started,
the PostgreSQL half of the suite is skipped with a loud warning — except under
``CI=true``, where it is an error.
"""

from __future__ import annotations

import itertools
import os
import shutil
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).parent))

from commonwatch.config import Settings, load_settings  # noqa: E402
from commonwatch.services.exchange import Exchange  # noqa: E402
from commonwatch.storage.db import make_engine, upgrade  # noqa: E402

from support.postgres import PostgresUnavailable, TempPostgres  # noqa: E402

BACKENDS = ["sqlite", "postgresql"]
_counter = itertools.count()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "template.db"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    with engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    engine.dispose()
    return path


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[TempPostgres | None]:
    try:
        server = TempPostgres().start()
    except PostgresUnavailable as exc:
        if os.environ.get("CI") == "true":
            raise
        warnings.warn(f"PostgreSQL tests SKIPPED: {exc}", stacklevel=1)
        print(f"\n*** PostgreSQL tests SKIPPED: {exc} ***\n", file=sys.stderr)
        yield None
        return
    engine = make_engine(server.url())
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("CREATE DATABASE cw_template")
    engine.dispose()
    template = make_engine(server.url("cw_template"))
    upgrade(template)
    template.dispose()
    yield server
    server.stop()


@pytest.fixture(params=BACKENDS)
def database_url(
    request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: Path,
) -> str:
    if request.param == "sqlite":
        path = tmp_path / "commonwatch.db"
        shutil.copy(sqlite_template, path)
        return f"sqlite:///{path}"
    server = request.getfixturevalue("postgres_server")
    if server is None:
        pytest.skip("PostgreSQL not available on this machine")
    name = f"cw_test_{os.getpid()}_{next(_counter)}"
    engine = make_engine(server.url())
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name} TEMPLATE cw_template")
    engine.dispose()
    return server.url(name)


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return load_settings(environ={}, database_url=database_url,
                         ingest_queue_dir=str(tmp_path / "ingest-queue"))


@pytest.fixture
def exchange(settings: Settings) -> Iterator[Exchange]:
    ex = Exchange(settings, migrate=False)
    yield ex
    ex.close()


class LiveServer:
    """A real uvicorn server on a loopback port, running in a thread."""

    def __init__(self, exchange: Exchange) -> None:
        import socket

        import uvicorn

        from commonwatch.web.app import SERVER_OPTIONS, create_app

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        config = uvicorn.Config(create_app(exchange), host="127.0.0.1", port=self.port,
                                log_level="warning", lifespan="off", **SERVER_OPTIONS)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("server did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture
def live_server(exchange: Exchange) -> Iterator[LiveServer]:
    with LiveServer(exchange) as server:
        yield server


def count_rows(exchange: Exchange, table: str) -> int:
    with exchange.engine.connect() as conn:
        return int(conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one())
