"""Fixtures of the export tests: an export service with a frozen clock and uuids, and its feeds."""

from __future__ import annotations

import itertools

import pytest

from commonwatch.domain.markings import Tlp
from commonwatch.services.export import ExportService
from commonwatch.services.feeds import FeedService
from commonwatch.storage.db import session_factory

from support.factories import indicator, make_community, make_member
from support.remembered_rules import World, lists_dir, make_world

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


@pytest.fixture
def feeds(exchange, svc, clock) -> FeedService:
    """The pull feeds of ``svc``, on the same frozen clock."""
    return FeedService(session_factory(exchange.engine), exchange.query, svc, clock=clock)


def ring(exchange) -> dict:
    """The feed tests' community 'ring': Prod writes (cleared RED), Bee reads (AMBER), a
    reader organisation reads (GREEN); Prod has posted a GREEN and an AMBER indicator."""
    p, b = make_member(exchange, "Prod"), make_member(exchange, "Bee")
    r = make_member(exchange, "Reader Org", role="reader")
    cid = make_community(exchange, "ring", Tlp.GREEN, {
        "Prod": (True, Tlp.RED), "Bee": (False, Tlp.AMBER), "Reader Org": (False, Tlp.GREEN)})
    assert not exchange.ingest.add_objects(p.principal, cid, [
        indicator("45.81.0.1", tlp=Tlp.GREEN), indicator("45.81.0.2", tlp=Tlp.AMBER)]).failures
    return {"P": p, "B": b, "R": r, "cid": cid}


@pytest.fixture
def listed(exchange, tmp_path) -> ExportService:
    """An export service with the operator's warninglist directory."""
    return ExportService(session_factory(exchange.engine), exchange.query,
                         warninglist_dirs=lists_dir(tmp_path / "lists"))


@pytest.fixture
def ring_world(exchange) -> World:
    """Prod writes in 'ring' and 'yard', Reader reads them (support.remembered_rules.World)."""
    return make_world(exchange)
