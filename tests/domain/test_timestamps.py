"""Tests of STIX timestamps as µs since the epoch (commonwatch.domain.timestamps).

Round-trips and agreement with :mod:`datetime` are property tests (hypothesis); the
strict STIX 2.1 §2.15 profile is pinned by examples that must parse or be refused.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from commonwatch.domain import stix, timestamps
from commonwatch.domain.timestamps import format_timestamp, parse_timestamp

CANONICAL = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.([0-9]{3}|[0-9]{6})Z")
MIN_US = parse_timestamp("0000-01-01T00:00:00Z")
MAX_US = parse_timestamp("9999-12-31T23:59:59.999999Z")


@given(st.integers(MIN_US, MAX_US))
def test_format_then_parse_round_trips(us: int) -> None:
    text = format_timestamp(us)
    assert CANONICAL.fullmatch(text)
    assert len(text) == (24 if us % 1000 == 0 else 27)
    assert parse_timestamp(text) == us


@given(st.lists(st.integers(MIN_US, MAX_US), max_size=5), st.integers(-3, 3))
def test_format_equals_the_datetime_rendering(moments: list[int], days: int) -> None:
    """The per-second and per-day caches render what datetime renders (the same day
    reached again from another second included)."""
    from commonwatch.domain.timestamps import _slow_format

    for us in moments + [m + days * 86_400_000_000 + 1 for m in moments]:
        if MIN_US <= us <= MAX_US:
            assert format_timestamp(us) == _slow_format(us)


@given(
    st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59)),
    st.text("0123456789", min_size=0, max_size=9),
)
def test_parse_agrees_with_datetime(moment: datetime, digits: str) -> None:
    text = moment.replace(microsecond=0).isoformat() + ("." + digits if digits else "") + "Z"
    reference = moment.replace(microsecond=int(digits[:6].ljust(6, "0")), tzinfo=UTC)
    expected = (reference - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
    assert parse_timestamp(text) == expected
    assert parse_timestamp(format_timestamp(expected)) == expected


@pytest.mark.parametrize(
    ("text", "us"),
    [
        ("1970-01-01T00:00:00Z", 0),
        ("1970-01-01T00:00:00.1Z", 100_000),
        ("1969-12-31T23:59:59.999999999Z", -1),
        ("2016-12-31T23:59:60Z", parse_timestamp("2016-12-31T23:59:59.999999Z")),
        ("2016-12-31T23:59:60.5Z", parse_timestamp("2016-12-31T23:59:59.999999Z")),
        ("0000-02-29T00:00:00Z", parse_timestamp("0000-03-01T00:00:00Z") - 86_400_000_000),
    ],
)
def test_parse_examples(text: str, us: int) -> None:
    assert parse_timestamp(text) == us


@pytest.mark.parametrize(
    "text",
    [
        "2024-02-30T00:00:00Z",
        "2023-02-29T00:00:00Z",
        "1900-02-29T00:00:00Z",
        "2024-13-01T00:00:00Z",
        "2024-00-01T00:00:00Z",
        "2024-01-01T24:00:00Z",
        "2024-01-01T00:60:00Z",
        "2024-01-01T12:59:60Z",
        "2024-01-01t00:00:00Z",
        "2024-01-01T00:00:00z",
        "2024-01-01T00:00:00",
        "2024-01-01T00:00:00+00:00",
        "2024-01-01 00:00:00Z",
        "2024-01-01T00:00:00.Z",
        "2024-01-01T00:00:00.1234567890Z",
        "24-01-01T00:00:00Z",
        "2024-1-01T00:00:00Z",
        "+2024-01-01T00:00:00Z",
        "２０２４-01-01T00:00:00Z",
        "",
    ],
)
def test_parse_rejects(text: str) -> None:
    with pytest.raises(ValueError, match=re.escape(json.dumps(text, ensure_ascii=False))):
        parse_timestamp(text)


@pytest.mark.parametrize("bad", [None, 0, b"2024-01-01T00:00:00Z"])
def test_parse_rejects_non_strings(bad: object) -> None:
    with pytest.raises(ValueError, match="must be a string"):
        parse_timestamp(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [MIN_US - 1, MAX_US + 1, True, 1.5])
def test_format_rejects_out_of_range(bad: object) -> None:
    with pytest.raises(ValueError, match="not a timestamp within years 0000-9999"):
        format_timestamp(bad)  # type: ignore[arg-type]


def test_format_examples() -> None:
    assert format_timestamp(0) == "1970-01-01T00:00:00.000Z"
    assert format_timestamp(1_500) == "1970-01-01T00:00:00.001500Z"
    assert format_timestamp(MIN_US) == "0000-01-01T00:00:00.000Z"
    assert format_timestamp(MAX_US) == "9999-12-31T23:59:59.999999Z"


def test_stix_re_exports_the_timestamp_functions() -> None:
    """Other layers import them from commonwatch.domain.stix; keep that working."""
    assert stix.parse_timestamp is timestamps.parse_timestamp
    assert stix.format_timestamp is timestamps.format_timestamp
    assert {"parse_timestamp", "format_timestamp"} <= set(stix.__all__)
