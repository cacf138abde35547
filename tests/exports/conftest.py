"""Fixtures of the export tests: an export service with a frozen clock and uuids."""

from __future__ import annotations

import itertools

import pytest

from commonwatch.services.export import ExportService
from commonwatch.storage.db import session_factory

NOW = 1_780_000_000_000_000  # 2026-05-28T20:26:40Z, after every factory timestamp


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> int:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def svc(exchange, clock) -> ExportService:
    counter = itertools.count(1)
    return ExportService(session_factory(exchange.engine), exchange.query, clock=clock,
                         new_uuid=lambda: f"00000000-0000-4000-8000-{next(counter):012d}")
