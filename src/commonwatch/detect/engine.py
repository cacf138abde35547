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
import re
import socket
import sys
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from typing import Any

from commonwatch.detect.analysis import (
    Key,
    all_eq_strings,
    dedupe,
    index_free,
    leaves,
    mentioned_types,
    most_observations,
    required_types,
)
from commonwatch.detect.evaluate import CompiledPattern, compile_ast
from commonwatch.detect.events import EventKind, Record
from commonwatch.detect.lookups import MEMO_SIZE, LikeScreen, address_heads, list_lookup, merged_lookup
from commonwatch.detect.probe import compile_probe
from commonwatch.detect.values import Network, Predicate, literal_value, parse_network, predicate
from commonwatch.domain.pattern_ast import (
    Comparison,
    ComparisonAnd,
    ComparisonExpression,
    ComparisonOperator,
    ComparisonOr,
    IndexStep,
    Observation,
    ObservationExpression,
    Pattern,
    Qualified,
    SetLiteral,
    StringLiteral,
)
from commonwatch.domain.patterns import parse_pattern
from commonwatch.errors import InvalidPattern

Event = tuple[EventKind, Record]
#: Slots of the value filter per indexed value, and its smallest and largest size (log2).
FILTER_SLOTS, FILTER_MIN_BITS, FILTER_MAX_BITS = 8, 12, 24
_Key = Key
#: ``[type:path = 'string']`` in the canonical spelling, plain dotted path without ``hashes``.
_CANONICAL = re.compile(r"\[([a-z0-9][a-z0-9-]*):((?!hashes\b)[A-Za-z_][A-Za-z0-9_]*"
                        r"(?:\.(?!hashes\b)[A-Za-z_][A-Za-z0-9_]*)*) = '([^'\\]*)'\]")
_SHAPES_MAX = 4096
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
        # Shared per pattern shape (type and path): path key and object types.
        self._shapes: dict[tuple[str, tuple[Any, ...]], tuple[str, frozenset[str]] | None] = {}
        self._types: dict[frozenset[str], frozenset[str]] = {}
        self._canonical: dict[tuple[str, str], tuple[str, frozenset[str]] | None] = {}
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
        fast = self._canonical_analysis(pattern)
        ast = None
        if fast is None:
            ast = parse_pattern(pattern)
            fast = self._fast_analysis(ast)
        if fast is None:
            assert ast is not None
            keys, simple, single = self._analyse(ast)
            types = required_types(ast.root)
            types = self._types.setdefault(types, types)
        else:
            keys, simple, single, types = fast
        entry = Entry(key, pattern, meta, keys, simple, single, types)
        if not simple:  # compiling checks what parses but cannot be evaluated
            assert ast is not None  # the canonical shortcut only takes simple patterns
            entry._compiled = compile_ast(pattern, ast)
            mentions = mentioned_types(ast.root)
            entry.mentions = self._types.setdefault(mentions, mentions)
        self.remove(key)
        self.entries[key] = entry
        if keys is None:
            assert ast is not None
            entry.scanned = self._scan_test(ast)
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

    # -- analysis --------------------------------------------------------------------
    def _canonical_analysis(self, text: str) -> tuple[tuple[_Key, ...], bool, bool, frozenset[str]] | None:
        """:meth:`_fast_analysis` without parsing, for ``[type:path = 'string']`` as feeds write it.

        Such a text tokenizes the same whatever characters its string holds (no quote,
        no backslash), and no check of the grammar or of the reference validator depends
        on the string except the one on ``hashes`` values (not taken here); so the first
        pattern of each (type, path) is parsed in full and the others of that shape reuse
        its outcome. Anything else, or a shape that did not parse, takes the general path.
        """
        m = _CANONICAL.fullmatch(text)
        if m is None:
            return None
        otype, path, value = m.groups()
        if not value or (otype in ("ipv4-addr", "ipv6-addr") and (":" in value) != (otype == "ipv6-addr")):
            return None  # not indexed, or an address typed otherwise: not simple
        shape_key = (otype, path)
        shape = self._canonical.get(shape_key)
        if shape is None:
            if shape_key in self._canonical or len(self._canonical) >= _SHAPES_MAX:
                return None
            try:
                fast = self._fast_analysis(parse_pattern(text))
            except InvalidPattern:
                return None  # the general path reports it
            shape = None if fast is None else (fast[0][0][1], fast[3])
            self._canonical[shape_key] = shape
            if shape is None:
                return None
        return (("eq", shape[0], value),), True, True, shape[1]

    def _fast_analysis(self, ast: Pattern) -> tuple[tuple[_Key, ...], bool, bool, frozenset[str]] | None:
        """:meth:`_analyse` for the dominant shape ``[type:path = 'string']``, or None.

        Feeds are mostly this one shape over a handful of paths, so what depends only on
        (type, path) is worked out once per shape; the result equals the general
        analysis (one necessary value; the hit is the match unless an address literal
        would be typed otherwise, see events.address_type).
        """
        root = ast.root
        if type(root) is not Observation:
            return None
        cmp = root.comparison
        if (type(cmp) is not Comparison or cmp.negated or cmp.operator is not ComparisonOperator.EQ
                or type(cmp.value) is not StringLiteral or not cmp.value.value):
            return None
        shape_key = (cmp.object_type, cmp.path)
        if shape_key not in self._shapes:
            path = cmp.object_type + ":" + cmp.path_text
            indexable = path in self._known and not any(isinstance(s, IndexStep) for s in cmp.path)
            types = frozenset((cmp.object_type,))
            self._shapes[shape_key] = (
                (sys.intern(path), self._types.setdefault(types, types)) if indexable else None)
        shape = self._shapes[shape_key]
        if shape is None:
            return None
        value = cmp.value.value
        simple = True
        if cmp.object_type in ("ipv4-addr", "ipv6-addr"):
            simple = (":" in value) == (cmp.object_type == "ipv6-addr")
        return (("eq", shape[0], value),), simple, True, shape[1]

    def _analyse(self, ast: Pattern) -> tuple[tuple[_Key, ...] | None, bool, bool]:
        """(necessary values, hit-is-match, every binding is one event) of a pattern."""
        root = ast.root
        if most_observations(root) == 1:  # [..], [..] OR [..], with WITHIN/START-STOP
            keys = self._single_keys(root)
            simple = (keys is not None and isinstance(root, Observation)
                      and all_eq_strings(root.comparison))
            return _interned(dedupe(keys)), simple, True
        found: list[_Key] = []
        for leaf in leaves(root):  # every [...] needs its candidates kept for the batch
            leaf_keys = self._comparison_keys(leaf.comparison)
            if leaf_keys is None:
                return None, False, False
            found += leaf_keys
        return _interned(dedupe(found)), False, False

    def _single_keys(self, expr: ObservationExpression) -> list[_Key] | None:
        if isinstance(expr, Observation):
            return self._comparison_keys(expr.comparison)
        if isinstance(expr, Qualified):
            return self._single_keys(expr.expression)
        found: list[_Key] = []
        for operand in expr.operands:  # only OR reaches here (one observation per binding)
            keys = self._single_keys(operand)
            if keys is None:
                return None
            found += keys
        return found

    def _comparison_keys(self, expr: ComparisonExpression) -> list[_Key] | None:
        if isinstance(expr, ComparisonAnd):
            options = [k for k in map(self._comparison_keys, expr.operands) if k is not None]
            return min(options, key=len) if options else None
        if isinstance(expr, ComparisonOr):
            found: list[_Key] = []
            for operand in expr.operands:
                keys = self._comparison_keys(operand)
                if keys is None:
                    return None
                found += keys
            return found
        return self._leaf_keys(expr)

    def _leaf_keys(self, cmp: Comparison) -> list[_Key] | None:
        if cmp.negated:
            return None
        path = cmp.object_type + ":" + index_free(cmp)
        if path not in self._known:
            return None
        where = f"comparison on {path}"
        if cmp.operator is ComparisonOperator.ISSUBSET:
            assert isinstance(cmp.value, StringLiteral)
            return [("cidr", path, parse_network(cmp.value.value, where))]
        if cmp.operator is ComparisonOperator.EQ:
            values = [cmp.value]
        elif cmp.operator is ComparisonOperator.IN:
            assert isinstance(cmp.value, SetLiteral)
            values = list(cmp.value.values)
        else:
            return None
        found: list[_Key] = []
        for literal in values:
            value = literal_value(literal, where)  # type: ignore[arg-type]
            if type(value) not in (str, int, float) or value == "":
                return None  # binary, boolean, timestamp and empty values are not indexed
            found.append(("eq", path, value))
        return found

    def _scan_test(self, ast: Pattern) -> tuple[str, Predicate, str | None] | None:
        """A bare ``[type:path op value]`` on a path adapters produce, without list indexes.

        Such a pattern matches an event exactly when one of the values the event has on
        that path passes the comparison, so it is tested per distinct value (memoised)
        instead of per event: ``LIKE``, ``MATCHES``, ``!=``, orders...
        """
        root = ast.root
        if not isinstance(root, Observation) or not isinstance(root.comparison, Comparison):
            return None
        cmp = root.comparison
        path = cmp.object_type + ":" + cmp.path_text
        if (cmp.operator is ComparisonOperator.EXISTS or path not in self._known
                or any(isinstance(s, IndexStep) for s in cmp.path)
                or cmp.object_type in ("ipv4-addr", "ipv6-addr")):
            return None  # addresses are typed per value (events.address_type): keep exact
        like = None
        if cmp.operator is ComparisonOperator.LIKE and not cmp.negated:
            assert isinstance(cmp.value, StringLiteral)  # the grammar's LIKE takes a string
            like = unicodedata.normalize("NFC", cmp.value.value)
        return path, predicate(cmp), like

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


def _interned(keys: list[_Key] | None) -> tuple[_Key, ...] | None:
    """Keys as a tuple, path strings shared: many indicators name the same few paths."""
    return None if keys is None else tuple((k, sys.intern(p), v) for k, p, v in keys)


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
