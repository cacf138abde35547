"""STIX timestamps (STIX 2.1 §2.15, RFC 3339) as integer microseconds since the epoch.

Storage, TAXII filters and exports all compare and index timestamps as ints: µs since
1970-01-01T00:00:00Z (UTC), which orders like the text and keeps the six fraction
digits datetime can hold. :func:`parse_timestamp` reads the strict STIX profile;
:func:`format_timestamp` writes a canonical form that parses back exactly.

Parsing is on the validator's hot path (every SDO has ``created`` and ``modified``, and
the same values recur across a feed), so parsed values are memoised in
:data:`TS_CACHE`, which the validator also reads directly to skip the call.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

__all__ = ["LATEST_US", "TS_CACHE", "format_timestamp", "parse_timestamp"]

# The regex enforces the strict STIX profile; datetime's C parser then checks the
# calendar and converts (6x faster than int() on the regex groups, measured).
_TS_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,9})?Z")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NAIVE_EPOCH = datetime(1970, 1, 1)
_ONE_US = timedelta(microseconds=1)
_CYCLE_US = 146097 * 86_400_000_000  # 400 Gregorian years: year 0000 is parsed as 0400
_MIN_US = (datetime(1, 1, 1, tzinfo=UTC) - _EPOCH) // _ONE_US - 366 * 86_400_000_000
_MAX_US = (datetime(9999, 12, 31, 23, 59, 59, 999999, UTC) - _EPOCH) // _ONE_US
#: The latest time a STIX timestamp can state (9999-12-31T23:59:59.999999Z).
LATEST_US = _MAX_US
_CACHE_MAX = 8192

# Valid timestamp text -> µs. Written only here; other modules may read it (``in``,
# ``.get``). Bounded by clearing, never by rebinding, so imported references stay live.
TS_CACHE: dict[str, int] = {}


def parse_timestamp(value: object) -> int:
    """Parse a STIX timestamp into microseconds since the Unix epoch (UTC).

    Strict RFC 3339 as STIX 2.1 §2.15 profiles it: ``YYYY-MM-DDTHH:MM:SS[.f]Z`` with an
    upper-case ``T``, the ``Z`` zone only, 1-9 fraction digits (digits past the sixth
    are truncated), years 0000-9999 and real calendar dates. A leap second
    ``23:59:60`` (RFC 3339 §5.7) is read as ``23:59:59.999999``: order is kept and it
    never equals the next midnight, but it cannot round-trip.

    Raises:
        ValueError: not such a timestamp; the message says what is wrong.
    """
    if type(value) is not str:
        raise ValueError(f"a timestamp must be a string; got {_show(value)}")
    cached = TS_CACHE.get(value)
    return cached if cached is not None else _parse_timestamp(value)


def _parse_timestamp(value: str) -> int:
    if _TS_RE.fullmatch(value) is None:
        raise ValueError(
            f"{_show(value)} is not an RFC 3339 UTC timestamp 'YYYY-MM-DDTHH:MM:SS[.s]Z' "
            "(upper-case 'T' and 'Z', at most 9 fraction digits)"
        )
    if value[17:19] == "60":  # leap second
        if value[11:16] != "23:59":
            raise ValueError(f"{_show(value)}: a leap second can only be 23:59:60")
        result = _parse_timestamp(value[:17] + "59Z") + 999_999
    elif value.startswith("0000"):
        result = _parse_timestamp("0400" + value[4:]) - _CYCLE_US
    else:
        try:
            result = (datetime.fromisoformat(value) - _EPOCH) // _ONE_US
        except ValueError as exc:
            raise ValueError(f"{_show(value)} is not a real date and time: {exc}") from None
    if len(TS_CACHE) >= _CACHE_MAX:
        TS_CACHE.clear()
    TS_CACHE[value] = result
    return result


def parse_when(value: str, what: str) -> int:
    """A time given by a user: a STIX timestamp, or a date (``2026-01-31``) meaning its
    midnight UTC, as µs since the epoch.

    Raises:
        ValueError: neither; the message names ``what`` (the option or field).
    """
    text = value.strip()
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        text += "T00:00:00Z"
    try:
        return parse_timestamp(text)
    except ValueError:
        raise ValueError(f"{what} {value!r} is not a date (2026-01-31) or a UTC timestamp "
                         "(2026-01-31T12:00:00.000Z)") from None


def format_timestamp(us: object) -> str:
    """Render microseconds since the epoch as a canonical STIX timestamp.

    Three fraction digits (``2016-05-12T08:17:27.000Z``) for whole milliseconds, six
    otherwise; both meet the millisecond minimum of STIX 2.1 §3.2 and
    :func:`parse_timestamp` inverts them exactly.

    Raises:
        ValueError: ``us`` is not an int within years 0000-9999.
    """
    if type(us) is not int or not _MIN_US <= us <= _MAX_US:
        raise ValueError(f"{us!r} is not a timestamp within years 0000-9999")
    # Fast path: pages render thousands of timestamps that share their second, so the
    # "YYYY-MM-DDTHH:MM:SS." head is cached per second and only the fraction is added;
    # a new second takes its date from a cache per day (feeds span few days). Digits
    # come from tables: format specs cost more than the rest of the call.
    seconds, fraction = divmod(us, 1_000_000)
    head = _HEADS.get(seconds)
    if head is None:
        days, second = divmod(seconds, 86_400)
        day = _DAYS.get(days)
        if day is None:
            day = _slow_format(days * 86_400_000_000)[:11]
            if len(_DAYS) >= _CACHE_MAX:
                _DAYS.clear()
            _DAYS[days] = day
        hours, second = divmod(second, 3600)
        minutes, second = divmod(second, 60)
        head = day + _TWO[hours] + ":" + _TWO[minutes] + ":" + _TWO[second] + "."
        if len(_HEADS) >= _CACHE_MAX:
            _HEADS.clear()
        _HEADS[seconds] = head
    millis, micros = divmod(fraction, 1000)
    if micros:
        return head + _THREE[millis] + _THREE[micros] + "Z"
    return head + _THREE[millis] + "Z"


#: "YYYY-MM-DDTHH:MM:SS." by second, and "YYYY-MM-DDT" by day since the epoch.
_HEADS: dict[int, str] = {}
_DAYS: dict[int, str] = {}
_TWO = tuple(f"{n:02d}" for n in range(60))
_THREE = tuple(f"{n:03d}" for n in range(1000))


def _slow_format(us: int) -> str:
    year_zero = us < _MIN_US + 366 * 86_400_000_000
    moment = _NAIVE_EPOCH + timedelta(microseconds=us + _CYCLE_US if year_zero else us)
    text = moment.isoformat("T", "microseconds" if us % 1000 else "milliseconds") + "Z"
    return "0000" + text[4:] if year_zero else text


def _show(value: object) -> str:
    """A short JSON rendering of ``value`` for messages (as the validator renders)."""
    text = json.dumps(value, ensure_ascii=False, default=repr)
    return text if len(text) <= 80 else text[:77] + "..."
