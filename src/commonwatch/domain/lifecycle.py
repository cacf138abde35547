"""Indicator lifecycle: the decay score and the moment an indicator expires (pure).

An indicator loses value with time: an address is re-assigned within weeks, a domain
lives for months, a file hash for years. CommonWatch scores each indicator with the
polynomial decay MISP introduced and OpenCTI adopted (Mokaddem et al., "Taxonomy
driven indicator scoring in MISP threat intelligence platforms", arXiv:1902.03914)::

    score(t) = base * (1 - (t / lifetime) ** (1 / speed))      clamped to [0, base]

* ``base`` is the indicator's STIX ``confidence`` (STIX 2.1 §3.2, 0-100), or
  :attr:`DecayPolicy.default_confidence` when it has none;
* ``t`` is the time since the newest of ``valid_from`` and the last sighting the
  scorer can see: a new sighting restarts the decay;
* ``lifetime`` and ``speed`` depend on the kind of the indicator's main observable
  (the first value its pattern states, :func:`commonwatch.domain.observables.from_pattern`).

A revoked indicator (STIX 2.1 §3.2 ``revoked``) and one whose ``valid_until`` has
passed (STIX 2.1 §4.7: it "should no longer be considered a valid indicator") score 0.

The defaults are OpenCTI's built-in decay rules (``decayRule-domain.ts``: lifetime in
days, ``decay_pound`` times its decay factor 3.0 as the speed, revoke score 20);
MISP's NIDS model (lifetime 120 days, speed 2, threshold 30) is the same curve with
other numbers, and any policy can be given instead.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, NamedTuple

from commonwatch.domain.observables import from_object
from commonwatch.domain.timestamps import LATEST_US, parse_timestamp
from commonwatch.errors import ConfigError

DAY_US = 86_400_000_000


#: Longest decay lifetime a policy may set (100 years): times computed from it stay
#: within what a STIX timestamp can state.
MAX_LIFETIME_DAYS = 36_500


@dataclass(frozen=True, slots=True)
class Decay:
    """How fast indicators of one kind lose their score."""

    lifetime_days: float
    speed: float

    def __post_init__(self) -> None:
        if type(self.lifetime_days) not in (int, float) or not 0 < self.lifetime_days <= MAX_LIFETIME_DAYS:
            raise ConfigError(f"a decay lifetime must be a positive number of days up to "
                              f"{MAX_LIFETIME_DAYS}, not {self.lifetime_days!r}")
        if type(self.speed) not in (int, float) or not (self.speed > 0 and math.isfinite(self.speed)):
            raise ConfigError(f"a decay speed must be a positive number, not {self.speed!r}")

    @property
    def lifetime_us(self) -> float:
        return self.lifetime_days * DAY_US


#: OpenCTI "Built-in IP and URL": lifetime 47 days, pound 0.55 (speed 3.0 * 0.55).
IP_AND_URL = Decay(47, 1.65)
#: OpenCTI "Built-in domain name": lifetime 300 days, pound 0.7.
DOMAIN = Decay(300, 2.1)
#: OpenCTI "Built-in files and artifact": lifetime 460 days, pound 0.3.
FILE_HASH = Decay(460, 0.9)
#: OpenCTI "Built-in default" (every other kind, e-mail addresses included): 470 days, pound 0.35.
FALLBACK = Decay(470, 1.05)

DEFAULT_DECAYS: Mapping[str, Decay] = MappingProxyType({
    "ipv4-addr": IP_AND_URL, "ipv6-addr": IP_AND_URL, "url": IP_AND_URL,
    "domain-name": DOMAIN,
    "md5": FILE_HASH, "sha1": FILE_HASH, "sha256": FILE_HASH, "sha512": FILE_HASH,
})


@dataclass(frozen=True, slots=True)
class DecayPolicy:
    """The tunable part of scoring: decay per observable kind and the revoke threshold."""

    decays: Mapping[str, Decay] = field(default_factory=lambda: DEFAULT_DECAYS)
    fallback: Decay = FALLBACK
    #: At or under this score an indicator is revoked by ``lifecycle expire`` (OpenCTI: 20).
    revoke_score: float = 20.0
    #: Base score of an indicator without ``confidence`` (OpenCTI's default indicator score).
    default_confidence: int = 50

    def __post_init__(self) -> None:
        if not 0 <= self.revoke_score <= 100:
            raise ConfigError(f"the revoke score must be within 0-100, not {self.revoke_score!r}")
        if not 0 <= self.default_confidence <= 100:
            raise ConfigError(f"the default confidence must be within 0-100, not {self.default_confidence!r}")

    def decay_for(self, kind: str | None) -> Decay:
        return self.decays.get(kind, self.fallback) if kind is not None else self.fallback


DEFAULT_POLICY = DecayPolicy()


class Assessment(NamedTuple):
    """What the policy says about one indicator at one moment."""

    kind: str | None
    value: str | None
    base: float
    #: The score consumers should use: 0 once revoked or past ``valid_until``.
    score: float
    #: The decay alone, ignoring ``valid_until`` and ``revoked``.
    decay_score: float
    #: When the decay reaches the revoke score (µs); None if the indicator has no start.
    decays_at_us: int | None
    #: Where the decay starts (:func:`reference_us`); None if the indicator has none.
    start_us: int | None = None


def main_observable(indicator: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """The kind and value of the first observable the indicator's pattern states."""
    found = from_object(indicator).observables
    return (found[0].kind, found[0].value) if found else (None, None)


def base_score(indicator: Mapping[str, Any], policy: DecayPolicy = DEFAULT_POLICY) -> float:
    """The indicator's ``confidence`` (0-100), else the policy's default."""
    confidence = indicator.get("confidence")
    if isinstance(confidence, int) and not isinstance(confidence, bool) and 0 <= confidence <= 100:
        return float(confidence)
    return float(policy.default_confidence)


def _timestamp(value: object) -> int | None:
    if not isinstance(value, str):
        return None
    try:
        return parse_timestamp(value)
    except ValueError:
        return None


def reference_us(indicator: Mapping[str, Any], last_sighting_us: int | None) -> int | None:
    """Where the decay starts: the newest of ``valid_from`` and the last sighting."""
    start = _timestamp(indicator.get("valid_from"))
    if start is None:
        start = _timestamp(indicator.get("created"))
    if last_sighting_us is not None and (start is None or last_sighting_us > start):
        return last_sighting_us
    return start


def decayed(base: float, elapsed_us: float, decay: Decay) -> float:
    """``base * (1 - (t / lifetime) ** (1 / speed))``, clamped to ``[0, base]``."""
    if elapsed_us <= 0:
        return base
    if elapsed_us >= decay.lifetime_us:
        return 0.0
    return min(base, max(0.0, base * (1.0 - (elapsed_us / decay.lifetime_us) ** (1.0 / decay.speed))))


def time_to_score(base: float, target: float, decay: Decay) -> float:
    """Elapsed µs after which the decay of ``base`` reaches ``target`` (0 if it starts there)."""
    if base <= target:
        return 0.0
    return decay.lifetime_us * (1.0 - target / base) ** decay.speed


def assess(
    indicator: Mapping[str, Any], now_us: int, last_sighting_us: int | None,
    policy: DecayPolicy = DEFAULT_POLICY,
) -> Assessment:
    """Score ``indicator`` at ``now_us`` given the last sighting the caller can see."""
    kind, value = main_observable(indicator)
    decay = policy.decay_for(kind)
    base = base_score(indicator, policy)
    start = reference_us(indicator, last_sighting_us)
    if start is None:
        return Assessment(kind, value, base, 0.0, 0.0, None)
    decay_score = decayed(base, now_us - start, decay)
    decays_at = min(LATEST_US, start + math.ceil(time_to_score(base, policy.revoke_score, decay)))
    current = decay_score
    until = _timestamp(indicator.get("valid_until"))
    if indicator.get("revoked") is True or (until is not None and until <= now_us):
        current = 0.0
    return Assessment(kind, value, base, current, decay_score, decays_at, start)


def reaches_us(found: Assessment, target: float, policy: DecayPolicy = DEFAULT_POLICY) -> int | None:
    """When the decay of an assessed indicator reaches ``target`` (µs); None without a start."""
    if found.start_us is None:
        return None
    return min(LATEST_US, found.start_us + math.ceil(time_to_score(found.base, target,
                                                                   policy.decay_for(found.kind))))


def score(
    indicator: Mapping[str, Any], now_us: int, last_sighting_us: int | None,
    policy: DecayPolicy = DEFAULT_POLICY,
) -> float:
    """The indicator's current score in ``[0, 100]`` (exports filter on it: ``min score``).

    ``last_sighting_us`` is the newest ``last_seen`` (or ``first_seen``, or ``created``)
    among the sightings of this indicator the caller can see, None if there are none.
    """
    return assess(indicator, now_us, last_sighting_us, policy).score


def sighting_time_us(sighting: Mapping[str, Any]) -> int | None:
    """When a sighting says the indicator was last seen (``last_seen`` first), never later
    than the sighting was made: a claim about the future would hold the decay off at will."""
    created = _timestamp(sighting.get("created"))
    for name in ("last_seen", "first_seen"):
        found = _timestamp(sighting.get(name))
        if found is not None:
            return found if created is None else min(found, created)
    return created
