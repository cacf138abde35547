"""First and last seen of a lookup answer: only the candidates are parsed, the result is
that of parsing every span (the reference fold)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from commonwatch.services.lookup import _seen, _span, _widen


def _reference(spans):
    first = last = None
    for span in spans:
        first, last = _widen(first, last, _span(*span))
    return first, last


_SECONDS = st.sampled_from(["2026-01-01T00:00:00", "2026-01-01T00:00:01", "2025-12-31T23:59:59",
                            "2025-12-31T23:59:60", "0000-01-01T00:00:00", "9999-12-31T23:59:59",
                            "2026-06-15T12:30:45"])
_FRACTIONS = st.one_of(st.just(""), st.text("0123456789", min_size=1, max_size=9).map(lambda d: "." + d))
_VALID = st.builds(lambda s, f: f"{s}{f}Z", _SECONDS, _FRACTIONS)
#: not STIX timestamps: the calendar, the profile, or not text at all
_ODD = st.sampled_from(["2026-02-30T00:00:00Z", "2026-01-01 00:00:00Z", "2026-01-01T00:00:00",
                        "2026-01-01T00:00:00.1234567890Z", "2026-01-01T12:00:60Z", "", "soon",
                        None, 5, ["2026-01-01T00:00:00Z"]])
_VALUES = st.one_of(_VALID, _VALID, _VALID, _ODD)


@given(st.lists(st.tuples(_VALUES, _VALUES), max_size=8))
def test_seen_equals_parsing_every_span(spans):
    assert _seen(spans) == _reference(spans)


def test_a_span_with_an_invalid_timestamp_counts_for_nothing():
    spans = [("2026-01-02T00:00:00Z", "2026-01-03T00:00:00Z"),
             ("2026-01-01T00:00:00Z", "2026-02-30T00:00:00Z")]  # the earliest first, an invalid last
    assert _seen(spans) == _reference(spans[:1])
    assert _seen([(None, "2026-01-03T00:00:00.5Z"), ("2026-01-03T00:00:00Z", None)]) == _reference(
        [(None, "2026-01-03T00:00:00.5Z"), ("2026-01-03T00:00:00Z", None)])
    assert _seen([]) == (None, None)


def test_fractions_order_by_value_not_by_text():
    # As text "…:00Z" sorts after "…:00.5Z"; in time it comes first.
    spans = [("2026-01-01T00:00:00.5Z", "2026-01-01T00:00:00.5Z"),
             ("2026-01-01T00:00:00Z", "2026-01-01T00:00:00Z")]
    assert _seen(spans) == _reference(spans) == _reference(spans[::-1])
