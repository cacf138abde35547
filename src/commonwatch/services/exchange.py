"""Wiring: one :class:`Exchange` holds the engine and every service built on it."""

from __future__ import annotations

from commonwatch.clock import Clock, now_us
from commonwatch.config import Settings
from commonwatch.services.admin import AdminService
from commonwatch.services.auth import AuthService
from commonwatch.services.ingest import IngestService
from commonwatch.services.query import QueryService
from commonwatch.storage.db import make_engine, session_factory, upgrade


class Exchange:
    """The services of one CommonWatch instance over one database."""

    def __init__(self, settings: Settings, *, migrate: bool = True, clock: Clock = now_us):
        self.settings = settings
        self.engine = make_engine(settings.database_url)
        if migrate:
            upgrade(self.engine)
        sessions = session_factory(self.engine)
        self.query = QueryService(sessions)
        self.ingest = IngestService(
            sessions, self.query, max_objects=settings.max_objects_per_request, clock=clock
        )
        self.admin = AdminService(sessions, self.ingest, clock=clock)
        self.auth = AuthService(sessions, clock=clock)

    def close(self) -> None:
        self.engine.dispose()
