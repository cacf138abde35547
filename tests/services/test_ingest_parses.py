"""Ingest parses each indicator's pattern once: validation's parse is what indexing
reads (the cache of recent parses holds a large envelope's indicators)."""

from __future__ import annotations

from commonwatch.domain import patterns
from commonwatch.domain.markings import Tlp

from support.factories import indicator, make_community, make_member


def test_an_envelope_of_ten_thousand_indicators_parses_each_pattern_once(exchange, monkeypatch):
    """Regression: with 4,096 recent parses kept, the first indicators of a larger
    envelope were evicted before indexing and parsed a second time."""
    member = make_member(exchange, "Big Poster")
    cid = make_community(exchange, "bulk", Tlp.GREEN, {"Big Poster": (True, Tlp.RED)})
    envelope = [indicator(f"45.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}") for n in range(10_000)]
    patterns._parse_recent.cache_clear()
    parsed: list[str] = []
    real = patterns._parse_fast
    monkeypatch.setattr(patterns, "_parse_fast", lambda text: parsed.append(text) or real(text))
    report = exchange.ingest.add_objects(member.principal, cid, envelope)
    assert not report.failures and len(report.successes) == 10_000
    assert len(parsed) == len(set(parsed)) == 10_000
