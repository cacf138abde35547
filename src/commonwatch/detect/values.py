"""Comparison semantics of STIX patterning (STIX 2.1 §9.5, "Comparison Operators").

Each comparison of a pattern compiles once into a predicate over one value selected by
its object path; a comparison holds for an object when the predicate holds for at least
one selected value. Types follow the reference matcher (stix2-matcher 3.0.0): JSON
numbers compare across int and float, ``true`` equals only ``true``, a binary value
(``b'..'``, ``h'..'`` or a ``*_hex``/``*_bin`` property) equals a string whose code
points are all below 256 and spell the same bytes (§9.3), and a timestamp literal reads
the JSON string it is compared with as a timestamp.

Where the reference departs from §9, the specification decides; each case is listed in
docs/detection.md ("Where the reference matcher deviates") and pinned by a test in
tests/detect/test_conformance.py.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import unicodedata
from collections.abc import Callable
from typing import Any

from commonwatch.domain.pattern_ast import (
    BinaryLiteral,
    BooleanLiteral,
    Comparison,
    ComparisonOperator,
    FloatLiteral,
    HexLiteral,
    IntegerLiteral,
    Literal,
    SetLiteral,
    StringLiteral,
    TimestampLiteral,
)
from commonwatch.domain.timestamps import parse_timestamp
from commonwatch.errors import InvalidPattern

Predicate = Callable[[Any], bool]
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_UNSUPPORTED = object()  # an order comparison between types that have no order
_NUMBERS = (int, float)


class Timestamp(int):
    """A timestamp literal's value, µs since the epoch (distinct from a plain int)."""


def literal_value(literal: Literal, where: str) -> Any:
    """The Python value of a literal: str, int, float, bool, bytes or :class:`Timestamp`."""
    if isinstance(literal, TimestampLiteral):
        try:
            return Timestamp(parse_timestamp(literal.value))
        except ValueError as exc:
            raise InvalidPattern(f"{where}: timestamp literal t'{literal.value}' is not a real "
                                 f"date and time ({exc})") from None
    if isinstance(literal, StringLiteral | IntegerLiteral | FloatLiteral | BooleanLiteral):
        return literal.value
    assert isinstance(literal, BinaryLiteral | HexLiteral)
    return literal.value


def _latin1(text: str) -> bytes | None:
    """A string as bytes when every code point is below 256 (§9.3), else None."""
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        return None


def equals(value: Any, lit: Any) -> bool:
    """``value = lit`` under the typing rules of the module docstring."""
    tv, tl = type(value), type(lit)
    if tl is str:
        if tv is str:
            return bool(value == lit)
        return tv is bytes and _latin1(lit) == value
    if tl is int or tl is float:
        return (tv is int or tv is float) and value == lit
    if tl is bool:
        return tv is bool and value == lit
    if tl is bytes:
        if tv is bytes:
            return bool(value == lit)
        return tv is str and _latin1(value) == lit
    if tl is Timestamp:
        return tv is str and _timestamp(value) == lit
    return False


def _timestamp(text: str) -> int | None:
    try:
        return parse_timestamp(text)
    except ValueError:
        return None


def _order(value: Any, lit: Any) -> int | None | object:
    """-1/0/1, None when a string cannot meet bytes (§9.3), _UNSUPPORTED otherwise."""
    tv, tl = type(value), type(lit)
    a: Any
    b: Any
    if tl in (int, float) and tv in (int, float) or tl is tv and tl in (str, bytes):
        a, b = value, lit
    elif tl is bytes and tv is str:
        a, b = _latin1(value), lit
    elif tl is str and tv is bytes:
        a, b = value, _latin1(lit)
    elif tl is Timestamp and tv is str:
        a, b = _timestamp(value), int(lit)
        if a is None:
            return _UNSUPPORTED
    else:
        return _UNSUPPORTED
    if a is None or b is None:
        return None
    return (a > b) - (a < b)


_ORDER_TESTS: dict[ComparisonOperator, Callable[[int], bool]] = {
    ComparisonOperator.LT: lambda c: c < 0,
    ComparisonOperator.LE: lambda c: c <= 0,
    ComparisonOperator.GT: lambda c: c > 0,
    ComparisonOperator.GE: lambda c: c >= 0,
}


def like_regex(like: str) -> re.Pattern[str]:
    """``LIKE``: ``%`` is any run of characters, ``_`` any one character (§9.5).

    Unlike the reference, ``%`` and ``_`` also match a newline and the match is of the
    whole value (the reference's ``$`` accepts a trailing newline): §9.5 says "any".
    """
    parts = [".*" if c == "%" else "." if c == "_" else re.escape(c) for c in like]
    return re.compile("".join(parts), re.DOTALL)


def parse_network(text: str, where: str) -> Network:
    """An IPv4 or IPv6 address or CIDR block as a network (an address is a /32 or /128)."""
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise InvalidPattern(f"{where}: {text!r} is not an IPv4/IPv6 address or CIDR block") from None


def _as_network(value: Any) -> Network | None:
    if type(value) is not str:
        return None
    try:
        return ipaddress.ip_network(value, strict=False)
    except ValueError:
        return None


def _subnet_of(inner: Network, outer: Network) -> bool:
    return inner.version == outer.version and inner.subnet_of(outer)  # type: ignore[arg-type]


def _subset_test(outer: Network) -> Predicate:
    """``ISSUBSET outer``; a plain IPv4 address is read by ``inet_pton`` (as ``ipaddress`` would)."""
    def general(v: Any) -> bool:
        return (n := _as_network(v)) is not None and _subnet_of(n, outer)

    if outer.version != 4:
        return general
    shift = 32 - outer.prefixlen
    base = int(outer.network_address) >> shift
    pton, from_bytes, inet = socket.inet_pton, int.from_bytes, socket.AF_INET

    def test(v: Any) -> bool:
        if type(v) is str and ":" not in v and "/" not in v:
            try:
                return from_bytes(pton(inet, v), "big") >> shift == base
            except OSError:
                pass  # not a dotted address: the general reading decides
        return general(v)

    return test


def predicate(cmp: Comparison) -> Predicate:
    """The per-value test of one comparison (EXISTS is handled by the evaluator)."""
    op, neg = cmp.operator, cmp.negated
    where = f"comparison on {cmp.object_type}:{cmp.path_text}"
    test = _positive(cmp, where)
    if op in _ORDER_TESTS:
        return test  # negation is folded in: an unsupported pair is false either way
    if neg:
        return lambda v: not test(v)
    return test


def _positive(cmp: Comparison, where: str) -> Predicate:
    op, value = cmp.operator, cmp.value
    if op is ComparisonOperator.IN:
        assert isinstance(value, SetLiteral)
        items = [literal_value(v, where) for v in value.values]
        kinds = {"number" if type(i) in _NUMBERS else type(i).__name__ for i in items}
        if len(kinds) > 1:
            raise InvalidPattern(f"{where}: the values of an IN set must all have one type "
                                 "(STIX 2.1 §9.5); this set mixes " + ", ".join(sorted(kinds)))
        fast = frozenset(items) if kinds <= {"str"} else None
        if fast is not None:
            return lambda v: v in fast if type(v) is str else any(equals(v, i) for i in items)
        return lambda v: any(equals(v, i) for i in items)
    assert value is not None and not isinstance(value, SetLiteral)
    lit = literal_value(value, where)
    if op is ComparisonOperator.EQ:
        if type(lit) is str:
            return lambda v: v == lit if type(v) is str else equals(v, lit)
        return lambda v: equals(v, lit)
    if op is ComparisonOperator.NEQ:
        return lambda v: not equals(v, lit)
    if op in _ORDER_TESTS:
        return _order_predicate(_ORDER_TESTS[op], lit, cmp.negated)
    if op is ComparisonOperator.LIKE:
        rx = like_regex(unicodedata.normalize("NFC", lit))
        return lambda v: _text_test(v, lambda s: rx.fullmatch(s) is not None)
    if op is ComparisonOperator.MATCHES:
        return _matches(lit, where)
    if op is ComparisonOperator.ISSUBSET:
        return _subset_test(parse_network(lit, where))
    if op is ComparisonOperator.ISSUPERSET:
        inner = parse_network(lit, where)
        return lambda v: (n := _as_network(v)) is not None and _subnet_of(inner, n)
    raise InvalidPattern(f"{where}: operator {op.value} is not supported")


def _order_predicate(test: Callable[[int], bool], lit: Any, negated: bool) -> Predicate:
    def check(v: Any) -> bool:
        c = _order(v, lit)
        if c is _UNSUPPORTED:
            return False  # no order between these types: false, negated or not
        result = c is not None and test(c)  # type: ignore[arg-type]
        return not result if negated else result

    return check


def _text_test(v: Any, test: Callable[[str], bool]) -> bool:
    if type(v) is bytes:
        try:
            v = v.decode("utf-8")
        except UnicodeDecodeError:
            return False
    if type(v) is not str:
        return False
    return test(unicodedata.normalize("NFC", v))


def _matches(regex: str, where: str) -> Predicate:
    """``MATCHES``: a regular-expression search (§9.5 names PCRE; Python ``re`` is used)."""
    regex = unicodedata.normalize("NFC", regex)
    try:
        text_rx = re.compile(regex)
        raw = _latin1(regex)
        bin_rx = re.compile(raw) if raw is not None else None
    except re.error as exc:
        raise InvalidPattern(f"{where}: MATCHES {regex!r} is not a valid regular expression "
                             f"({exc})") from None

    def check(v: Any) -> bool:
        if type(v) is str:
            return text_rx.search(unicodedata.normalize("NFC", v)) is not None
        if type(v) is bytes:
            return bin_rx is not None and bin_rx.search(v) is not None
        return False

    return check
