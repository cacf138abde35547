"""Ingest parses each indicator's pattern once: validation's parse is what indexing
reads (the cache of recent parses holds a large envelope's indicators)."""

from __future__ import annotations

from commonwatch.domain import patterns
from commonwatch.domain.markings import Tlp

from support.factories import indicator, make_community, make_member


def test_an_envelope_of_ten_thousand_indicators_parses_each_pattern_once(exchange):
    """Regression: with 4,096 recent parses kept, the first indicators of a larger
    envelope were evicted before indexing and parsed a second time."""
    member = make_member(exchange, "Big Poster")
    cid = make_community(exchange, "bulk", Tlp.GREEN, {"Big Poster": (True, Tlp.RED)})
    envelope = [indicator(f"45.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}") for n in range(10_000)]
    patterns._parse_recent.cache_clear()
    report = exchange.ingest.add_objects(member.principal, cid, envelope)
    assert not report.failures and len(report.successes) == 10_000
    parses = patterns._parse_recent.cache_info()
    # Each pattern parsed once (validation), then found in the cache (indexing).
    assert parses.misses == 10_000 and parses.hits >= 10_000
