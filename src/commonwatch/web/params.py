"""TAXII 2.1 query parameters (§3.4) to an :class:`ObjectFilter`.

Every malformed parameter is a 400 that names the parameter and what it accepts.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from starlette.datastructures import QueryParams

from commonwatch.config import Settings
from commonwatch.domain.stix import parse_timestamp
from commonwatch.errors import InvalidParameter
from commonwatch.services.query import ObjectFilter, VersionSelector

OBJECTS = frozenset({"added_after", "limit", "next", "match[id]", "match[type]",
                     "match[version]", "match[spec_version]"})
OBJECT = frozenset({"added_after", "limit", "next", "match[version]", "match[spec_version]"})
VERSIONS = frozenset({"added_after", "limit", "next", "match[spec_version]"})
DELETE = frozenset({"match[version]", "match[spec_version]"})

STIX_ID = re.compile(r"^[a-z0-9][a-z0-9-]{1,248}[a-z0-9]--[0-9a-fA-F-]{36}$")
_TYPE = re.compile(r"^[a-z0-9][a-z0-9-]{1,248}[a-z0-9]$")
LAST = VersionSelector()
ALL_VERSIONS = VersionSelector(all=True, last=False)
_SPEC = re.compile(r"^[0-9]\.[0-9]$")


def _timestamp(name: str, value: str) -> int:
    try:
        return parse_timestamp(value)
    except ValueError:
        raise InvalidParameter(
            f"{name}={value!r} is not a timestamp; use RFC 3339 in UTC such as "
            "2026-01-31T12:00:00Z or 2026-01-31T12:00:00.123Z"
        ) from None


def _values(params: QueryParams, name: str, settings: Settings) -> list[str]:
    values = [v.strip() for raw in params.getlist(name) for v in raw.split(",")]
    if any(not v for v in values):
        raise InvalidParameter(f"{name} holds an empty value; give a comma-separated list")
    if len(values) > settings.max_match_values:
        raise InvalidParameter(
            f"{name} holds {len(values)} values; at most {settings.max_match_values} are allowed"
        )
    return values


def _checked(name: str, values: Iterable[str], pattern: re.Pattern[str], what: str) -> tuple[str, ...]:
    out = tuple(values)
    for v in out:
        if not pattern.match(v):
            raise InvalidParameter(f"{name} value {v!r} is not {what}")
    return out


def _versions(values: list[str], default: VersionSelector) -> VersionSelector:
    if not values:
        return default
    first = last = every = False
    stamps: list[int] = []
    for v in values:
        if v == "first":
            first = True
        elif v == "last":
            last = True
        elif v == "all":
            every = True
        else:
            stamps.append(_timestamp("match[version]", v))
    return VersionSelector(first=first, last=last, all=every, timestamps=tuple(stamps))


def _limit(params: QueryParams, settings: Settings) -> int:
    raw = params.get("limit")
    if raw is None:
        return settings.default_page_size
    if not (raw.isascii() and raw.isdigit()) or int(raw) < 1:  # "²" is a digit to isdigit()
        raise InvalidParameter(f"limit={raw!r} must be a positive integer")
    return min(int(raw), settings.max_page_size)


def parse_filter(
    params: QueryParams, allowed: frozenset[str], settings: Settings,
    default_versions: VersionSelector = LAST,
) -> ObjectFilter:
    """Read and check the TAXII filter parameters ``allowed`` on this endpoint."""
    for key in params:
        if key not in allowed:
            raise InvalidParameter(
                f"parameter {key!r} is not supported here; supported: {', '.join(sorted(allowed))}"
            )
    for key in ("added_after", "limit", "next"):
        if len(params.getlist(key)) > 1:
            raise InvalidParameter(f"parameter {key!r} may be given only once")
    added_after = params.get("added_after")
    next_token = params.get("next")
    if next_token is not None and not next_token:
        raise InvalidParameter("next must not be empty")
    return ObjectFilter(
        added_after_us=_timestamp("added_after", added_after) if added_after is not None else None,
        ids=_checked("match[id]", _values(params, "match[id]", settings), STIX_ID, "a STIX id"),
        types=_checked("match[type]", _values(params, "match[type]", settings), _TYPE,
                       "a STIX type name"),
        spec_versions=_checked("match[spec_version]", _values(params, "match[spec_version]",
                               settings), _SPEC, "a STIX spec version such as 2.1"),
        versions=_versions(_values(params, "match[version]", settings), default_versions),
        limit=_limit(params, settings),
        next=next_token,
    )
