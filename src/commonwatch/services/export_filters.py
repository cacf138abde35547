"""Export filters and format options: from user input, to and from a feed's stored JSON.

The filter is the query object every export, pull feed and the JSON API read with
(:class:`~commonwatch.services.query.ExportFilter`); each value a user gives is checked
here with a message naming it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson

from commonwatch.domain.markings import Tlp, parse_tlp
from commonwatch.domain.timestamps import format_timestamp, parse_when
from commonwatch.domain.visibility import SECTORS
from commonwatch.errors import InputTooLarge, InvalidParameter
from commonwatch.services.query import ExportFilter

_TYPE = re.compile(r"[a-z0-9][a-z0-9-]{0,249}")
MAX_LIST = 100


@dataclass(frozen=True, slots=True)
class FormatOptions:
    """Options of the formats that have some."""

    rpz_target: str = "."  # "." answers NXDOMAIN; a domain rewrites to a walled garden
    rpz_wildcard: bool = True  # also list *.domain
    url_strip_scheme: bool = False  # plain-url: host/path entries (PAN-OS URL lists)


#: The options of an export that sets none.
DEFAULT_OPTIONS = FormatOptions()


def _strings(values: Iterable[str], what: str, pattern: re.Pattern[str] | None = None) -> tuple[str, ...]:
    out = tuple(dict.fromkeys(v.strip() for v in values if v.strip()))
    if len(out) > MAX_LIST:
        raise InputTooLarge(f"at most {MAX_LIST} {what} may be given, not {len(out)}")
    for value in out:
        if pattern is not None and not pattern.fullmatch(value):
            raise InvalidParameter(f"{value!r} is not a valid {what[:-1]} name")
    return out


def parse_since(value: str) -> int:
    """The ``since`` of a filter: a STIX timestamp or a date, as µs since the epoch."""
    try:
        return parse_when(value, "'since' value")
    except ValueError as exc:
        raise InvalidParameter(str(exc)) from None


def build_filter(
    *, communities: Iterable[str] = (), types: Iterable[str] = ("indicator",), tlp: str = "amber",
    since: str | None = None, sectors: Iterable[str] = (), min_confidence: int | None = None,
    min_score: float | None = None, include_warninglisted: bool = False,
    include_revoked: bool = False, include_expired: bool = False,
) -> ExportFilter:
    """The export filter from user input, each value checked with a message naming it."""
    sector_list = _strings(sectors, "sectors")
    for sector in sector_list:
        if sector not in SECTORS:
            raise InvalidParameter(f"unknown sector {sector!r}; use one of {', '.join(SECTORS)}")
    if min_confidence is not None and not 0 <= min_confidence <= 100:
        raise InvalidParameter("minimum confidence must be between 0 and 100 (STIX 2.1 §3.2)")
    if min_score is not None and not 0 <= min_score <= 100:
        raise InvalidParameter("minimum decay score must be between 0 and 100")
    type_list = _strings(types, "types", _TYPE) or ("indicator",)
    return ExportFilter(
        communities=_strings(communities, "communities"), types=type_list, tlp_ceiling=parse_tlp(tlp),
        since_us=parse_since(since) if since else None, producer_sectors=sector_list,
        min_confidence=min_confidence, min_score=min_score,
        include_warninglisted=include_warninglisted, include_revoked=include_revoked,
        include_expired=include_expired,
    )


def filter_to_json(flt: ExportFilter, options: FormatOptions) -> str:
    doc: dict[str, Any] = {
        "communities": list(flt.communities), "types": list(flt.types),
        "tlp": Tlp(flt.tlp_ceiling).name.lower().replace("_", "+"),
        "since": format_timestamp(flt.since_us) if flt.since_us is not None else None,
        "sectors": list(flt.producer_sectors), "min_confidence": flt.min_confidence,
        "min_score": flt.min_score,
        "include_warninglisted": flt.include_warninglisted, "include_revoked": flt.include_revoked,
        "include_expired": flt.include_expired,
        "options": {"rpz_target": options.rpz_target, "rpz_wildcard": options.rpz_wildcard,
                    "url_strip_scheme": options.url_strip_scheme},
    }
    return orjson.dumps(doc).decode()


def filter_from_json(text: str) -> tuple[ExportFilter, FormatOptions]:
    doc = orjson.loads(text)
    options = FormatOptions(**doc.pop("options", {}))
    return build_filter(**doc), options
