"""The decay model (pure): formula, defaults per kind, clamping, refresh, expiry time."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from commonwatch.domain.lifecycle import (
    DAY_US,
    DEFAULT_POLICY,
    Decay,
    DecayPolicy,
    assess,
    decayed,
    score,
    sighting_time_us,
    time_to_score,
)
from commonwatch.domain.stix import parse_timestamp
from commonwatch.errors import ConfigError

DATA = Path(__file__).parent / "data"
T0 = parse_timestamp("2026-01-01T00:00:00.000Z")


def _indicator(pattern: str = "[ipv4-addr:value = '203.0.113.1']", **extra):
    obj = {"type": "indicator", "spec_version": "2.1",
           "id": "indicator--00000000-0000-4000-8000-000000000001",
           "created": "2026-01-01T00:00:00.000Z", "modified": "2026-01-01T00:00:00.000Z",
           "pattern": pattern, "pattern_type": "stix", "valid_from": "2026-01-01T00:00:00.000Z"}
    obj.update(extra)
    return obj


def test_formula_matches_the_published_model_at_known_points():
    # base * (1 - (t/lifetime)^(1/speed)); IP rule: 47 days, speed 1.65; default base 50.
    ind = _indicator()
    for days in (0, 1, 10, 23.5, 40, 46.9):
        expected = 50 * (1 - (days / 47) ** (1 / 1.65))
        assert score(ind, T0 + int(days * DAY_US), None) == pytest.approx(expected, abs=1e-6)
    assert score(ind, T0 + 47 * DAY_US, None) == 0.0
    assert score(ind, T0 + 400 * DAY_US, None) == 0.0
    assert score(ind, T0 - DAY_US, None) == 50.0  # before valid_from: the base, never more


@pytest.mark.parametrize(("pattern", "kind", "lifetime"), [
    ("[ipv4-addr:value = '198.51.100.0/24']", "ipv4-addr", 47),
    ("[ipv6-addr:value = '2001:db8::1']", "ipv6-addr", 47),
    ("[url:value = 'http://paypa1.banking.com']", "url", 47),
    ("[domain-name:value = 'bad.example']", "domain-name", 300),
    ("[file:hashes.'SHA-256' = '" + "a" * 64 + "']", "sha256", 460),
    ("[file:hashes.MD5 = '" + "b" * 32 + "']", "md5", 460),
    ("[email-addr:value = 'x@bad.example']", "email-addr", 470),
    ("[process:name = 'evil.exe']", None, 470),
])
def test_each_kind_takes_its_rule(pattern, kind, lifetime):
    a = assess(_indicator(pattern), T0 + DAY_US, None)
    assert a.kind == kind
    just_before = assess(_indicator(pattern), T0 + (lifetime * DAY_US) - DAY_US, None)
    assert 0 < just_before.score < 50
    assert assess(_indicator(pattern), T0 + lifetime * DAY_US, None).score == 0.0


def test_confidence_is_the_base_and_revoked_or_expired_score_zero():
    assert score(_indicator(confidence=90), T0, None) == 90.0
    assert score(_indicator(confidence=0), T0, None) == 0.0
    assert score(_indicator(revoked=True), T0, None) == 0.0
    ind = _indicator(valid_until="2026-01-05T00:00:00.000Z")
    assert score(ind, T0 + 3 * DAY_US, None) > 0
    assert score(ind, T0 + 4 * DAY_US, None) == 0.0  # valid_until reached
    assert assess(ind, T0 + 4 * DAY_US, None).decay_score > 0  # the decay alone goes on


def test_a_sighting_restarts_the_decay():
    ind = _indicator(confidence=80)
    late = T0 + 40 * DAY_US
    assert score(ind, late, None) < 30
    assert score(ind, late, late) == 80.0
    assert score(ind, late, T0 - DAY_US) == score(ind, late, None)  # an older sighting changes nothing


def test_expiry_time_is_where_the_score_reaches_the_revoke_score():
    ind = _indicator(confidence=75)
    a = assess(ind, T0, None)
    at = a.decays_at_us
    assert at is not None
    assert score(ind, at, None) == pytest.approx(DEFAULT_POLICY.revoke_score, abs=1e-3)
    assert score(ind, at - DAY_US, None) > DEFAULT_POLICY.revoke_score
    low = assess(_indicator(confidence=10), T0, None)
    assert low.decays_at_us == T0  # starts under the revoke score


def test_policy_is_tunable_and_checked():
    policy = DecayPolicy(decays={"ipv4-addr": Decay(120, 2)}, revoke_score=30, default_confidence=80)
    # MISP's NIDS model numbers: lifetime 120 days, speed 2, threshold 30, base 80
    assert score(_indicator(), T0 + 30 * DAY_US, None, policy) == pytest.approx(80 * (1 - (30 / 120) ** 0.5))
    with pytest.raises(ConfigError, match="lifetime"):
        Decay(0, 1)
    with pytest.raises(ConfigError, match="speed"):
        Decay(10, math.inf)
    with pytest.raises(ConfigError, match="revoke score"):
        DecayPolicy(revoke_score=120)


def test_the_oasis_sample_indicator_and_sighting():
    bundle = json.loads((DATA / "cti-doc_sighting-of-an-indicator.json").read_text())
    ind, sighting = (next(o for o in bundle["objects"] if o["type"] == t) for t in ("indicator", "sighting"))
    seen = sighting_time_us(sighting)
    assert seen == parse_timestamp("2017-02-27T21:37:11.214Z")  # last_seen
    a = assess(ind, seen + 10 * DAY_US, seen)
    assert (a.kind, a.value) == ("url", "http://paypa1.banking.com/")
    assert a.score == pytest.approx(50 * (1 - (10 / 47) ** (1 / 1.65)))
    assert score(ind, parse_timestamp("2026-01-01T00:00:00Z"), seen) == 0.0


@given(base=st.integers(0, 100), d1=st.floats(0, 600), d2=st.floats(0, 600),
       lifetime=st.floats(1, 1000), speed=st.floats(0.1, 10))
def test_decay_is_bounded_and_never_increases(base, d1, d2, lifetime, speed):
    decay = Decay(lifetime, speed)
    early, late = sorted((d1, d2))
    a, b = decayed(base, early * DAY_US, decay), decayed(base, late * DAY_US, decay)
    assert 0 <= b <= a <= base
    t = time_to_score(base, 20, decay)
    if base > 20 and t < decay.lifetime_us:
        assert decayed(base, t, decay) == pytest.approx(20, abs=1e-6)
