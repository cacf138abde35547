"""Lookup helpers of the index engine's per-kind plans (see :mod:`commonwatch.detect.engine`).

* :class:`LikeScreen`: a path's plain ``LIKE`` tests screened at once for a new value;
* :func:`merged_lookup`: one memo of exact and value-tested hits for a field;
* :func:`address_heads`: the first characters of the addresses of IPv4 CIDR blocks,
  which screen addresses before any arithmetic;
* :func:`list_lookup`: CIDR or value-tested lookups of list and non-string values.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from commonwatch.detect.values import like_regex

if TYPE_CHECKING:
    from commonwatch.detect.engine import Entry, IndicatorSet

    Hits = tuple[Entry, ...]

#: Distinct values remembered per path for value-tested patterns (LIKE, MATCHES...).
MEMO_SIZE = 200_000


class LikeScreen:
    """The plain ``LIKE`` tests of one path, screened at once for a new value (a memo miss).

    A value that passes none of them skips them all and runs only the path's other
    value tests (``others``); at 10^6 indicators hundreds of ``LIKE '%.example'`` share
    ``domain-name:value``. ``LIKE '%literal'`` is a suffix test: the value's suffixes of
    the lengths in use are looked up in a set (a few dictionary probes); the other
    patterns are one regex, their union.
    """

    __slots__ = ("_suffixes", "_lengths", "_regex", "others")

    def __init__(self, likes: list[str], others: tuple[Entry, ...]) -> None:
        def suffix(like: str) -> bool:
            return like.startswith("%") and "%" not in like[1:] and "_" not in like[1:]

        self._suffixes = {like[1:] for like in likes if suffix(like)}
        self._lengths = sorted({len(s) for s in self._suffixes})
        rest = [like_regex(like).pattern for like in likes if not suffix(like)]
        self._regex = re.compile("|".join(f"(?:{rx})" for rx in rest), re.DOTALL) if rest else None
        self.others = others

    def may_match(self, value: str) -> bool:
        """Whether ``value`` (NFC) may satisfy one of the LIKE tests (exactly when one does)."""
        end = len(value)
        for n in self._lengths:
            if n > end:
                break
            if value[end - n:] in self._suffixes:
                return True
        return self._regex is not None and self._regex.fullmatch(value) is not None


def merged_lookup(iset: IndicatorSet, exact: tuple[tuple[dict[Any, Hits], ...], tuple[dict[Any, Hits], ...]],
            paths: list[str]) -> tuple[dict[str, Hits], Callable[[Any], Hits]]:
    """A memo of string value -> exact and value-tested hits of a field's paths, and its filler.

    The memo goes when the set changes (``IndicatorSet._changed``); ``full`` answers any
    value (a string is remembered, up to :data:`MEMO_SIZE` of them).
    """
    memo: dict[str, Hits] = {}
    plain, colon = exact

    def full(value: Any) -> Hits:
        hits: Hits = ()
        for index in colon if type(value) is str and ":" in value else plain:
            found = index.get(value)
            if found:
                hits += found
        if value != "":
            for path in paths:
                hits += iset.scanned_hits(path, value)
        if type(value) is str:
            if len(memo) >= MEMO_SIZE:
                memo.clear()
            memo[value] = hits
        return hits

    return memo, full


def address_heads(table: dict[tuple[int, int], dict[int, Hits]]) -> frozenset[str] | None:
    """The first six characters of every address in the IPv4 blocks of ``table``.

    None unless every block is IPv4 with a prefix of at least 8 bits. An address is read
    in its canonical dotted form only (no leading zeros: ``inet_pton`` and ``ipaddress``
    alike), always at least ``"a.b.c."`` long, so its first six characters depend on its
    first three octets alone, and only on the first two once ``"a.b."`` is six long.
    """
    pairs: set[int] = set()
    for (version, length), bucket in table.items():
        if version != 4 or length < 8:
            return None
        for number in bucket:
            if length >= 16:
                pairs.add(number >> (length - 16))
            else:
                first = number << (16 - length)
                pairs.update(range(first, first + (1 << (16 - length))))
    thirds = [f"{c}." for c in range(256)]
    heads: set[str] = set()
    for pair in pairs:
        start = f"{pair >> 8}.{pair & 255}."
        if len(start) >= 6:
            heads.add(start[:6])
        else:
            heads.update((start + third)[:6] for third in thirds)
    return frozenset(heads)


def list_lookup(miss: Callable[[Any], Hits], cidr: bool) -> Callable[[Any, Hits | None], Hits | None]:
    """CIDR or value-tested lookups of list and non-string values (see probe.compile_probe)."""

    def items(v: Any, hits: Hits | None) -> Hits | None:
        for item in v if type(v) is list else (v,):
            if item is None or item == "" or type(item) in (dict, list) or (cidr and type(item) is not str):
                continue  # an empty string is no value (events._present); CIDRs test strings
            found = miss(item)
            if found:
                hits = found if hits is None else hits + found
        return hits

    return items
