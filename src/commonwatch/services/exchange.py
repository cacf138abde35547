"""Wiring: one :class:`Exchange` holds the engine and every service built on it."""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path

from sqlalchemy.exc import DBAPIError

from commonwatch.clock import Clock, now_us
from commonwatch.config import Settings
from commonwatch.domain.warninglists import Warninglists, load_warninglists
from commonwatch.services.admin import AdminService
from commonwatch.services.auth import AuthService
from commonwatch.services.detect import DetectService
from commonwatch.services.export import ExportService
from commonwatch.services.feeds import FeedService
from commonwatch.services.ingest import IngestService
from commonwatch.services.ingest_queue import IngestQueue
from commonwatch.services.lifecycle import LifecycleService
from commonwatch.services.lookup import LookupService
from commonwatch.services.query import QueryService
from commonwatch.services.sightings import SightingService
from commonwatch.storage.db import make_engine, session_factory, upgrade
from commonwatch.storage.wal_writer import WalWriter


class Exchange:
    """The services of one CommonWatch instance over one database."""

    def __init__(self, settings: Settings, *, migrate: bool = True, clock: Clock = now_us):
        self.settings = settings
        self.engine = make_engine(settings.database_url)
        #: The schema's revisions before and after this exchange migrated it (None: not migrated).
        self.migrated = upgrade(self.engine) if migrate else None
        #: Syncs SQLite's WAL after ingest commits, off the request path (None: PostgreSQL).
        self.wal_writer = WalWriter.for_engine(self.engine)
        sessions = session_factory(self.engine)
        self.query = QueryService(sessions)
        self.ingest = IngestService(
            sessions, self.query, max_objects=settings.max_objects_per_request, clock=clock,
            warninglists=lambda: self.warninglists,
            committed=self.wal_writer.poke if self.wal_writer else None,
        )
        self.admin = AdminService(sessions, self.ingest, clock=clock)
        self.auth = AuthService(sessions, clock=clock)
        #: Envelopes posted over TAXII, stored on a thread of its own (started on use).
        self.ingest_queue = IngestQueue(
            self.engine, self.ingest, self.auth.principal_for_user_id, self.ingest_queue_dir,
            clock=clock, wait_objects=settings.ingest_wait_objects,
            max_queued=settings.ingest_queue_objects,
        )
        self.lookup = LookupService(self.engine, self.query, lambda: self.warninglists)
        self.sightings = SightingService(self.query, self.lookup, self.ingest, clock=clock)
        self.lifecycle = LifecycleService(self.query, self.ingest, clock=clock)
        self.export = ExportService(sessions, self.query, warninglists=lambda: self.warninglists,
                                    clock=clock, lifecycle=self.lifecycle)
        self.feeds = FeedService(sessions, self.query, self.export, clock=clock)
        self.detect = DetectService(self.query, self.ingest, lambda: {
            o.identity_id: (o.name, o.sector) for o in self.admin.list_orgs()}, clock=clock)

    @property
    def warninglist_dirs(self) -> list[Path]:
        """The operator's warninglist directories (``COMMONWATCH_WARNINGLIST_DIRS``)."""
        return [Path(p) for p in self.settings.warninglist_dirs.split(os.pathsep) if p]

    @property
    def ingest_queue_dir(self) -> Path | None:
        """Where envelopes answered "pending" wait (``COMMONWATCH_INGEST_QUEUE_DIR``; by
        default next to the SQLite file, or under ./data for PostgreSQL; None for an
        in-memory database)."""
        if self.settings.ingest_queue_dir:
            return Path(self.settings.ingest_queue_dir)
        url = self.engine.url
        if url.get_backend_name() == "sqlite":
            database = url.database
            return Path(f"{database}-queue") if database and database != ":memory:" else None
        name = f"{url.database}@{url.host or 'local'}-{url.port or 5432}"
        return Path("data") / "ingest-queue" / name

    @cached_property
    def warninglists(self) -> Warninglists:
        """The built-in warninglists plus the operator's, loaded on first use."""
        return load_warninglists(self.warninglist_dirs)

    def close(self) -> None:
        """Close the database connections, after storing the envelopes queued over TAXII
        (if the database fails first, they are stored at the next start). On SQLite,
        first fold the write-ahead log back into the database file and empty it, so that
        the file alone holds everything (a backup may copy just the file once the
        exchange is closed)."""
        self.ingest_queue.close()
        if self.wal_writer is not None:
            self.wal_writer.close()
        if self.engine.dialect.name == "sqlite":
            try:
                with self.engine.connect() as conn:
                    conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
            except DBAPIError:  # busy (a reader still open elsewhere): the last close does it
                pass
        self.engine.dispose()
