"""Index-first matching of a whole indicator set against telemetry events.

An :class:`IndicatorSet` is compiled once from (key, pattern) pairs against the event
kinds it will see. For each pattern it derives the *necessary values*: a set of
(path, value) pairs of which at least one must occur in an event for the pattern to
match (``=`` and ``IN`` against strings and numbers, ``ISSUBSET`` against CIDR
blocks; ``AND`` needs one operand's values, ``OR`` all operands'). Those go into hash
indexes (exact value per object path) and prefix tables (CIDR per path). Scanning an
event then costs, per indexed field it carries, one read of a small value filter and a
dictionary lookup only when the filter does not rule the value out (a field whose path
also has value-tested patterns is one lookup in a memo of its values instead, and CIDR
lookups are screened by the first characters of the address); full semantics
(:mod:`commonwatch.detect.evaluate`) run only for

* candidates an index hit points to, unless the pattern is a single ``[...]`` of
  ``=``/``IN`` string tests, where the hit *is* the match, and
* the few patterns with no necessary values (``!=``, ``LIKE``, ``MATCHES``, paths no
  adapter produces...), restricted to events whose kind can hold their object types.

Patterns over several observations (``AND``/``OR``/``FOLLOWEDBY`` between ``[...]``,
``REPEATS``) are evaluated over the candidate events of one :func:`scan` call, so their
correlation window is the batch the caller passes.

:func:`commonwatch.detect.scan.scan` is a pure function of (indicator set, events): no
I/O, no clock; the distributed workers run the same function. Adding, revoking or expiring an indicator
updates the indexes in place (:meth:`IndicatorSet.add` / :meth:`IndicatorSet.remove`).
"""

from __future__ import annotations

import ipaddress
import socket
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from typing import Any

from commonwatch.detect.analysis import Analyser, Key, mentioned_types
from commonwatch.detect.evaluate import CompiledPattern, compile_ast
from commonwatch.detect.events import EventKind, Record
from commonwatch.detect.lookups import MEMO_SIZE, LikeScreen, address_heads, list_lookup, merged_lookup
from commonwatch.detect.probe import compile_probe
from commonwatch.detect.values import Network, Predicate
from commonwatch.domain.patterns import parse_pattern
from commonwatch.errors import InvalidPattern

Event = tuple[EventKind, Record]
#: Slots of the value filter per indexed value, and its smallest and largest size (log2).
FILTER_SLOTS, FILTER_MIN_BITS, FILTER_MAX_BITS = 8, 12, 24
_Key = Key
Hits = tuple["Entry", ...]


class Entry:
    """One indicator in the set."""

    __slots__ = ("_compiled", "key", "keys", "mentions", "meta", "scanned", "simple", "single_event",
                 "text", "types")

    def __init__(self, key: str, text: str, meta: Any, keys: tuple[_Key, ...] | None,
                 simple: bool, single_event: bool, types: frozenset[str]) -> None:
        self.key, self.text, self.meta = key, text, meta
        self.keys, self.simple, self.single_event, self.types = keys, simple, single_event, types
        self._compiled: CompiledPattern | None = None
        self.mentions: frozenset[str] | None = None  # object types evaluation reads (None: all)
        # (path, per-value test, LIKE regex source or None), see _scan_test
        self.scanned: tuple[str, Predicate, str | None] | None = None

    def compiled(self) -> CompiledPattern:
        if self._compiled is None:  # parsed again on demand: most entries never need it
            self._compiled = compile_ast(self.text, parse_pattern(self.text))
        return self._compiled


class IndicatorSet:
    """Compiled indicators: hash and CIDR indexes plus the unindexable remainder."""

    def __init__(self, kinds: Sequence[EventKind]) -> None:
        self.kinds = list(kinds)
        self._known = frozenset().union(*(k.path_keys for k in self.kinds))
        self.entries: dict[str, Entry] = {}
        # Buckets are tuples: one indicator per value is the rule, and a 1-tuple is the
        # smallest container (at 10^6 indicators every byte per entry counts).
        self._exact: dict[str, dict[Any, Hits]] = {}
        self._cidr: dict[str, dict[tuple[int, int], dict[int, Hits]]] = {}
        self._unindexed: dict[str, Entry] = {}
        self._scanned: dict[str, dict[str, Entry]] = {}  # path -> entries tested value by value
        self._memo: dict[str, dict[Any, Hits]] = {}  # path -> value -> scanned entries hit
        self._likes: dict[str, LikeScreen] = {}  # path -> its LIKE tests, for memo misses
        self._analyser = Analyser(self._known)
        self._plans: dict[str, _Plan] = {}
        # Per field path keys: the memo of exact and value-tested hits (see lookups.merged_lookup),
        # shared by every kind with such a field; dropped with the plans.
        self._merged: dict[tuple[str, ...], tuple[dict[str, Hits], Callable[[Any], Hits]]] = {}
        # The value filter: one byte per slot, set for ``hash(value) & mask`` of every exact
        # index value (any path). A probe reads it before the hash indexes: most event
        # values are in no index, and at 10^6 indicators a miss in a dict that size costs
        # several memory round trips while this byte array stays in cache. Equal values
        # hash equally (the dict rule), so a clear slot proves a miss; removals leave
        # slots set (a later false positive only costs the dict lookup it saves).
        self.filter = bytearray(1 << FILTER_MIN_BITS)
        self._marked = 0

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def unindexed(self) -> int:
        """Indicators with no necessary values (tested value by value or on every event)."""
        return len(self._unindexed) + sum(map(len, self._scanned.values()))

    def add(self, key: str, pattern: str, meta: Any = None) -> None:
        """Add or replace one indicator; InvalidPattern if its pattern cannot be used."""
        keys, simple, single, types, ast = self._analyser.analyse(pattern)
        entry = Entry(key, pattern, meta, keys, simple, single, types)
        if not simple:  # compiling checks what parses but cannot be evaluated
            assert ast is not None  # the canonical shortcut only takes simple patterns
            entry._compiled = compile_ast(pattern, ast)
            entry.mentions = self._analyser.shared(mentioned_types(ast.root))
        self.remove(key)
        self.entries[key] = entry
        if keys is None:
            assert ast is not None
            entry.scanned = self._analyser.scan_test(ast)
            if entry.scanned is not None:
                self._scanned.setdefault(entry.scanned[0], {})[key] = entry
                self._memo.pop(entry.scanned[0], None)
                self._likes.pop(entry.scanned[0], None)
            else:
                self._unindexed[key] = entry
        for kind, path, value in keys or ():
            if kind == "eq":
                index = self._exact.get(path)
                if index is None:
                    index = self._exact[path] = {}
                index[value] = index.get(value, ()) + (entry,)
                self._mark(value)
            else:
                self._memo.pop("cidr " + path, None)
                table = self._cidr.setdefault(path, {})
                bucket = table.setdefault((value.version, value.prefixlen), {})
                number = int(value.network_address) >> (value.max_prefixlen - value.prefixlen)
                bucket[number] = bucket.get(number, ()) + (entry,)
        self._changed()

    def remove(self, key: str) -> bool:
        """Remove one indicator (revoked, expired or replaced); False if unknown."""
        entry = self.entries.pop(key, None)
        if entry is None:
            return False
        self._unindexed.pop(key, None)
        if entry.scanned is not None:
            path = entry.scanned[0]
            self._likes.pop(path, None)
            self._scanned[path].pop(key, None)
            if not self._scanned[path]:
                del self._scanned[path]
            self._memo.pop(path, None)
        for kind, path, value in entry.keys or ():
            if kind == "eq":
                bucket = self._exact[path]
                _drop(bucket, value, entry)
                if not bucket:
                    del self._exact[path]
            else:
                self._memo.pop("cidr " + path, None)
                table = self._cidr[path]
                sub = table[(value.version, value.prefixlen)]
                _drop(sub, int(value.network_address) >> (value.max_prefixlen - value.prefixlen), entry)
                if not sub:
                    del table[(value.version, value.prefixlen)]
                if not table:
                    del self._cidr[path]
        self._changed()
        return True

    def _changed(self) -> None:
        """The indexes changed: plans and merged memos are built again when next needed."""
        self._plans.clear()
        self._merged.clear()

    def _mark(self, value: Any) -> None:
        filt = self.filter
        self._marked += 1
        if self._marked * FILTER_SLOTS > len(filt) and len(filt) < 1 << FILTER_MAX_BITS:
            bits = max(FILTER_MIN_BITS, min(FILTER_MAX_BITS, (self._marked * FILTER_SLOTS).bit_length()))
            filt = self.filter = bytearray(1 << bits)  # rebuilt from the live values
            self._marked = 0
            mask = len(filt) - 1
            for index in self._exact.values():
                self._marked += len(index)
                for v in index:
                    filt[hash(v) & mask] = 1
            self._changed()  # probes hold the filter
        filt[hash(value) & (len(filt) - 1)] = 1

    def scanned_hits(self, path: str, value: Any) -> Hits:
        """The value-tested entries of ``path`` that ``value`` satisfies (memoised)."""
        memo = self._memo.get(path)
        if memo is None:
            memo = self._memo[path] = {}
        if type(value) is not str:  # 1, 1.0 and True are one dict key but compare differently
            value = (type(value).__name__, value)
        found = memo.get(value)
        if found is None:
            raw = value if type(value) is str else value[1]
            entries: Iterable[Entry] = self._scanned[path].values()
            screen = self._likes.get(path) or self._like_screen(path)
            if type(raw) is str and not screen.may_match(unicodedata.normalize("NFC", raw)):
                entries = screen.others  # no LIKE test of the path can hold
            found = tuple(e for e in entries if e.scanned[1](raw))  # type: ignore[index]
            if len(memo) >= MEMO_SIZE:
                memo.clear()
            memo[value] = found
        return found

    def _like_screen(self, path: str) -> LikeScreen:
        entries = self._scanned[path].values()
        screen = self._likes[path] = LikeScreen(
            [e.scanned[2] for e in entries if e.scanned[2] is not None],  # type: ignore[index]
            tuple(e for e in entries if e.scanned[2] is None))  # type: ignore[index]
        return screen

    # -- scanning ----------------------------------------------------------------------
    def plan(self, kind: EventKind) -> _Plan:
        """What to look up for events of ``kind`` (cached until the set changes)."""
        found = self._plans.get(kind.name)
        if found is None:
            found = self._plans[kind.name] = _Plan(self, kind)
        return found

    def read_paths(self, kinds: Iterable[EventKind]) -> frozenset[tuple[str, ...]] | None:
        """The record key paths the probes of ``kinds`` read (None if some field does not say).

        A record holding only these paths gives every probe the same candidates as the
        whole record (an adapter may decode just them, see formats.telemetry.source.projection).
        """
        found: set[tuple[str, ...]] = set()
        for kind in kinds:
            reads = self.plan(kind).reads
            if reads is None:
                return None
            found |= reads
        return frozenset(found)

    def cidr_hits(self, path: str, value: Any) -> Hits:
        """Entries whose CIDR block holds ``value`` (memoised per value: addresses recur)."""
        if type(value) is not str:
            return ()
        memo = self._memo.get("cidr " + path)
        if memo is None:
            memo = self._memo["cidr " + path] = {}
        found = memo.get(value)
        if found is None:
            found = self._cidr_lookup(path, value)
            if len(memo) >= MEMO_SIZE:
                memo.clear()
            memo[value] = found
        return found

    def cidr_probe(self, path: str) -> tuple[Callable[[str], Hits], frozenset[str] | None]:
        """CIDR hits of a non-empty string, and the prefixes screening it (or None).

        An address is one ``inet_pton`` and one small-dict lookup per IPv4 prefix length
        in use; that is cheaper than a memo of every address seen (a lookup in a large
        dict costs memory round trips). Same hits, same order as :meth:`cidr_hits`.

        When every block of the path is IPv4 with a prefix of at least 8 bits, a string
        can only hit when its first six characters are in the returned set (see
        ``lookups.address_heads``); that holds for the ``/``-forms the lookup accepts
        too, and a ``':'`` value is no IPv4 address. The set is small and screens out most
        addresses for one slice and one set lookup.
        """
        table = self._cidr[path]
        v4 = tuple((32 - length, bucket) for (version, length), bucket in table.items() if version == 4)
        slow = partial(self.cidr_hits, path)
        pton, from_bytes, inet = socket.inet_pton, int.from_bytes, socket.AF_INET

        def lookup(value: str) -> Hits:
            if ":" not in value and "/" not in value:
                try:
                    number = from_bytes(pton(inet, value), "big")
                except OSError:
                    return slow(value)
                hits: Hits = ()
                for shift, bucket in v4:
                    found = bucket.get(number >> shift)
                    if found:
                        hits += found
                return hits
            return slow(value)

        return lookup, address_heads(table)

    def _cidr_lookup(self, path: str, value: str) -> Hits:
        table = self._cidr.get(path)
        if not table:
            return ()
        address = _address(value)
        if address is None:
            return ()
        version, number, prefix = address
        hits: Hits = ()
        for (v, length), bucket in table.items():
            if v == version and length <= prefix:
                width = 32 if version == 4 else 128
                hits += bucket.get(number >> (width - length), ())
        return hits


def _drop(index: dict[Any, Hits], value: Any, entry: Entry) -> None:
    bucket = index.get(value)
    if bucket is not None:
        bucket = tuple(e for e in bucket if e is not entry)
        if bucket:
            index[value] = bucket
        else:
            del index[value]


def _address(value: str) -> tuple[int, int, int] | None:
    """(version, integer, prefix length) of an address or CIDR string, or None."""
    try:
        return 4, int.from_bytes(socket.inet_pton(socket.AF_INET, value), "big"), 32
    except OSError:
        pass
    try:
        net: Network = ipaddress.ip_network(value, strict=False)
    except ValueError:
        return None
    return net.version, int(net.network_address), net.prefixlen


class _Plan:
    """Per event kind: the fields to look up, and the generated probe doing it."""

    __slots__ = ("probe", "reads", "unindexed")

    def __init__(self, iset: IndicatorSet, kind: EventKind) -> None:
        # One (key1, key2 | None, field | None, exact, cidr, scanned) per field with
        # something to look up; exact is None or (indexes for IPv4-looking/other values,
        # indexes for values with ':'); cidr / scanned are memoised lookups (see
        # IndicatorSet.cidr_hits / scanned_hits and probe.compile_probe).
        fields: list[tuple[Any, ...]] = []
        reads: set[tuple[str, ...]] | None = set()
        for f in kind.fields:
            indexes = {path: iset._exact[path] for path in f.path_keys if iset._exact.get(path)}
            exact = None
            if indexes:
                # An address value is typed by ':' (events.address_type): an ipv4-addr
                # entry can only match a value without ':', an ipv6-addr one only with.
                plain = tuple(d for p, d in indexes.items() if p != "ipv6-addr:value")
                colon = tuple(d for p, d in indexes.items() if p != "ipv4-addr:value")
                exact = (plain, colon if f.address else plain)
            cidr = [(*iset.cidr_probe(path), partial(iset.cidr_hits, path),
                     list_lookup(partial(iset.cidr_hits, path), True))
                    for path in f.path_keys if path in iset._cidr]
            scanned: list[tuple[dict[Any, Hits], Callable[[Any], Hits], Any]] = [
                (iset._memo.setdefault(path, {}), partial(iset.scanned_hits, path),
                 list_lookup(partial(iset.scanned_hits, path), False))
                for path in f.path_keys if path in iset._scanned]
            if scanned and exact is not None and not cidr:
                # Every value is looked up in a memo anyway: let that one memo hold the
                # exact hits too (one dictionary lookup per value instead of two).
                shared = iset._merged.get(f.path_keys)
                if shared is None:
                    shared = iset._merged[f.path_keys] = merged_lookup(
                        iset, exact, [path for path in f.path_keys if path in iset._scanned])
                memo, full = shared
                scanned, exact = [(memo, full, list_lookup(full, False))], None
            if exact is not None or cidr or scanned:
                direct = f.get is None and len(f.keys) in (1, 2)
                key1 = f.keys[0] if direct else None
                key2 = f.keys[1] if direct and len(f.keys) == 2 else None
                fields.append((key1, key2, None if direct else f, exact, cidr, scanned))
                paths = f.read_paths
                reads = None if reads is None or paths is None else reads.union(paths)
        # The record key paths the probe reads (None: unknown), see IndicatorSet.read_paths.
        self.reads = None if reads is None else frozenset(reads)
        types = kind.object_types
        self.unindexed = tuple(e for e in iset._unindexed.values() if e.types & types)
        self.probe = compile_probe(fields, self.unindexed, iset.filter)


def compile_indicators(
    kinds: Sequence[EventKind], indicators: Iterable[tuple[str, str, Any]],
) -> tuple[IndicatorSet, list[tuple[str, str]]]:
    """Compile (key, pattern, meta) triples; returns the set and (key, reason) rejects."""
    iset = IndicatorSet(kinds)
    rejected: list[tuple[str, str]] = []
    for key, pattern, meta in indicators:
        try:
            iset.add(key, pattern, meta)
        except InvalidPattern as exc:
            rejected.append((key, exc.message))
    return iset, rejected
