"""Exports filtered on the indicators' decay score, from the sightings the reader sees."""

from __future__ import annotations

import uuid

import pytest

from commonwatch.domain.markings import (
    RECIPIENTS_EXTENSION_ID,
    RECIPIENTS_PROPERTY,
    TLP2_MARKING_BY_LEVEL,
    Tlp,
)
from commonwatch.errors import InvalidParameter
from commonwatch.services.export import ExportService
from commonwatch.services.export_filters import (
    DEFAULT_OPTIONS,
    build_filter,
    filter_from_json,
    filter_to_json,
)
from commonwatch.services.feeds import FeedService
from commonwatch.services.query import ExportFilter
from commonwatch.storage.db import session_factory

from support.factories import indicator, make_member, ts

NOW = 1_780_000_000_000_000  # the exports tests' clock (tests/exports/conftest.py)
NOW_S = NOW // 1_000_000 - 1_767_225_600  # factory seconds (from 2026-01-01) at NOW
DAY = 86_400


def sighting(of: str, seen: int, **extra) -> dict:
    return {"type": "sighting", "spec_version": "2.1", "id": f"sighting--{uuid.uuid4()}",
            "created": ts(seen), "modified": ts(seen), "sighting_of_ref": of, "count": 1,
            "last_seen": ts(seen), "object_marking_refs": [TLP2_MARKING_BY_LEVEL[Tlp.GREEN]], **extra}


@pytest.fixture
def scored(exchange, clock):
    producer, reader = make_member(exchange, "Prod"), make_member(exchange, "Reader")
    exchange.admin.create_community("ring", default_tlp=Tlp.GREEN)
    exchange.admin.set_membership("Prod", "ring", True, True, Tlp.RED)
    exchange.admin.set_membership("Reader", "ring", True, True, Tlp.RED)
    cid = exchange.admin.get_community("ring").collection_id
    fresh = indicator("45.77.6.1", tlp=Tlp.GREEN, created=NOW_S - DAY)
    old = indicator("45.77.6.2", tlp=Tlp.GREEN)  # 2026-01-01: past the 47 days of an address
    seen = indicator("45.77.6.3", tlp=Tlp.GREEN)
    hidden = indicator("45.77.6.4", tlp=Tlp.GREEN)
    named = indicator("45.77.6.5", tlp=Tlp.GREEN)
    indicators = [fresh, old, seen, hidden, named]
    assert not exchange.ingest.add_objects(producer.principal, cid, indicators).failures

    def red(*identities):
        return {"object_marking_refs": [TLP2_MARKING_BY_LEVEL[Tlp.RED]], "extensions": {
            RECIPIENTS_EXTENSION_ID: {"extension_type": "property-extension",
                                      RECIPIENTS_PROPERTY: list(identities)}}}

    sightings = [sighting(seen["id"], NOW_S - 3600),
                 sighting(hidden["id"], NOW_S - 3600, **red(producer.identity)),
                 sighting(named["id"], NOW_S - 3600, **red(producer.identity, reader.identity))]
    assert not exchange.ingest.add_objects(producer.principal, cid, sightings).failures
    svc = ExportService(session_factory(exchange.engine), exchange.query, clock=clock,
                        lifecycle=exchange.lifecycle)
    return svc, producer, reader


def test_min_score_keeps_fresh_and_visibly_sighted_indicators(scored, clock):
    svc, producer, reader = scored
    export = svc.export(reader.principal, "plain-ip", ExportFilter(min_score=30))
    assert sorted("".join(export.chunks).split()) == ["45.77.6.1", "45.77.6.3"]
    assert export.stats.skipped["decay score below the minimum"] == 3
    # A TLP:RED sighting naming the reader moves a score only in an export that may carry
    # RED; one the reader cannot see (not named) never does, but does for its producer.
    red = svc.export(reader.principal, "plain-ip", ExportFilter(min_score=30, tlp_ceiling=Tlp.RED))
    assert sorted("".join(red.chunks).split()) == ["45.77.6.1", "45.77.6.3", "45.77.6.5"]
    own = svc.export(producer.principal, "plain-ip", ExportFilter(min_score=30, tlp_ceiling=Tlp.RED))
    assert sorted("".join(own.chunks).split()) == ["45.77.6.1", "45.77.6.3", "45.77.6.4", "45.77.6.5"]
    # Without a minimum every indicator goes out; the same export through JSON formats too.
    assert len("".join(svc.export(reader.principal, "plain-ip", ExportFilter()).chunks).split()) == 5
    csv_text = "".join(svc.export(reader.principal, "csv", ExportFilter(min_score=30)).chunks)
    assert "45.77.6.1" in csv_text and "45.77.6.2" not in csv_text


def test_score_crossing_is_the_next_content_change(exchange, scored, clock):
    svc, _, reader = scored
    feeds = FeedService(session_factory(exchange.engine), exchange.query, svc, clock=clock)
    feed = feeds.create_feed(reader.principal, "scored", "plain-ip", build_filter(min_score=30))
    export, _, _ = feeds.render_feed(reader.principal, feed)
    assert sorted("".join(export.chunks).split()) == ["45.77.6.1", "45.77.6.3"]
    crossing = export.stats.next_change_us
    assert crossing is not None and crossing > NOW
    assert feeds.validators(reader.principal, feed)[2]  # current until the first score falls
    clock.now = crossing
    assert not feeds.validators(reader.principal, feed)[2]
    clock.now = crossing + 1_000_000  # just past it: the score is below the minimum
    again, _, _ = feeds.render_feed(reader.principal, feed)
    assert len("".join(again.chunks).split()) == 1  # one of the two fell below 30


def test_score_filter_input():
    with pytest.raises(InvalidParameter, match="decay score"):
        build_filter(min_score=101)
    flt = build_filter(min_score=42.5)
    assert filter_from_json(filter_to_json(flt, DEFAULT_OPTIONS))[0] == flt
