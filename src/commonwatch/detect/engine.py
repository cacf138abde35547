"""Index-first matching of a whole indicator set against telemetry events.

An :class:`IndicatorSet` is compiled once from (key, pattern) pairs against the event
kinds it will see. For each pattern it derives the *necessary values*: a set of
(path, value) pairs of which at least one must occur in an event for the pattern to
match (``=`` and ``IN`` against strings and numbers, ``ISSUBSET`` against CIDR
blocks; ``AND`` needs one operand's values, ``OR`` all operands'). Those go into hash
indexes (exact value per object path) and prefix tables (CIDR per path). Scanning an
event then costs one dictionary lookup per indexed field it carries; full semantics
(:mod:`commonwatch.detect.evaluate`) run only for

* candidates an index hit points to, unless the pattern is a single ``[...]`` of
  ``=``/``IN`` string tests, where the hit *is* the match, and
* the few patterns with no necessary values (``!=``, ``LIKE``, ``MATCHES``, paths no
  adapter produces...), restricted to events whose kind can hold their object types.

Patterns over several observations (``AND``/``OR``/``FOLLOWEDBY`` between ``[...]``,
``REPEATS``) are evaluated over the candidate events of one :func:`scan` call, so their
correlation window is the batch the caller passes.

:func:`scan` is a pure function of (indicator set, events): no I/O, no clock; the
distributed workers run the same function. Adding, revoking or expiring an indicator
updates the indexes in place (:meth:`IndicatorSet.add` / :meth:`IndicatorSet.remove`).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from commonwatch.detect.analysis import (
    Key,
    all_eq_strings,
    dedupe,
    index_free,
    leaves,
    most_observations,
    required_types,
)
from commonwatch.detect.evaluate import CompiledPattern, Observed, compile_ast
from commonwatch.detect.events import EventKind, Record, build_observation
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
#: Distinct values remembered per path for value-tested patterns (LIKE, MATCHES...).
MEMO_SIZE = 200_000
_Key = Key


class Entry:
    """One indicator in the set."""

    __slots__ = ("_compiled", "key", "keys", "meta", "scanned", "simple", "single_event", "text",
                 "types")

    def __init__(self, key: str, text: str, meta: Any, keys: list[_Key] | None,
                 simple: bool, single_event: bool, types: frozenset[str]) -> None:
        self.key, self.text, self.meta = key, text, meta
        self.keys, self.simple, self.single_event, self.types = keys, simple, single_event, types
        self._compiled: CompiledPattern | None = None
        self.scanned: tuple[str, Predicate] | None = None  # (path, per-value test), see _scan_test

    def compiled(self) -> CompiledPattern:
        if self._compiled is None:  # parsed again on demand: most entries never need it
            self._compiled = compile_ast(self.text, parse_pattern(self.text))
        return self._compiled


@dataclass(frozen=True, slots=True)
class Match:
    """An indicator matched: its key, the positions and the events that matched it."""

    key: str
    positions: tuple[int, ...]
    events: tuple[Event, ...]
    meta: Any


class IndicatorSet:
    """Compiled indicators: hash and CIDR indexes plus the unindexable remainder."""

    def __init__(self, kinds: Sequence[EventKind]) -> None:
        self.kinds = list(kinds)
        self._known = frozenset().union(*(k.path_keys for k in self.kinds))
        self.entries: dict[str, Entry] = {}
        self._exact: dict[str, dict[Any, list[Entry]]] = {}
        self._cidr: dict[str, dict[tuple[int, int], dict[int, list[Entry]]]] = {}
        self._unindexed: dict[str, Entry] = {}
        self._scanned: dict[str, dict[str, Entry]] = {}  # path -> entries tested value by value
        self._memo: dict[str, dict[Any, list[Entry]]] = {}  # path -> value -> scanned entries hit
        self._plans: dict[str, _Plan] = {}

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def unindexed(self) -> int:
        """Indicators with no necessary values (tested value by value or on every event)."""
        return len(self._unindexed) + sum(map(len, self._scanned.values()))

    def add(self, key: str, pattern: str, meta: Any = None) -> None:
        """Add or replace one indicator; InvalidPattern if its pattern cannot be used."""
        ast = parse_pattern(pattern)
        keys, simple, single = self._analyse(ast)
        entry = Entry(key, pattern, meta, keys, simple, single, required_types(ast.root))
        if not simple:  # compiling checks what parses but cannot be evaluated
            entry._compiled = compile_ast(pattern, ast)
        self.remove(key)
        self.entries[key] = entry
        if keys is None:
            entry.scanned = self._scan_test(ast)
            if entry.scanned is not None:
                self._scanned.setdefault(entry.scanned[0], {})[key] = entry
                self._memo.pop(entry.scanned[0], None)
            else:
                self._unindexed[key] = entry
        for kind, path, value in keys or ():
            if kind == "eq":
                self._exact.setdefault(path, {}).setdefault(value, []).append(entry)
            else:
                self._memo.pop("cidr " + path, None)
                table = self._cidr.setdefault(path, {})
                bucket = table.setdefault((value.version, value.prefixlen), {})
                bucket.setdefault(int(value.network_address) >> (value.max_prefixlen - value.prefixlen),
                                  []).append(entry)
        self._plans.clear()

    def remove(self, key: str) -> bool:
        """Remove one indicator (revoked, expired or replaced); False if unknown."""
        entry = self.entries.pop(key, None)
        if entry is None:
            return False
        self._unindexed.pop(key, None)
        if entry.scanned is not None:
            path = entry.scanned[0]
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
        self._plans.clear()
        return True

    # -- analysis --------------------------------------------------------------------
    def _analyse(self, ast: Pattern) -> tuple[list[_Key] | None, bool, bool]:
        """(necessary values, hit-is-match, every binding is one event) of a pattern."""
        root = ast.root
        if most_observations(root) == 1:  # [..], [..] OR [..], with WITHIN/START-STOP
            keys = self._single_keys(root)
            simple = (keys is not None and isinstance(root, Observation)
                      and all_eq_strings(root.comparison))
            return dedupe(keys), simple, True
        found: list[_Key] = []
        for leaf in leaves(root):  # every [...] needs its candidates kept for the batch
            leaf_keys = self._comparison_keys(leaf.comparison)
            if leaf_keys is None:
                return None, False, False
            found += leaf_keys
        return dedupe(found), False, False

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

    def _scan_test(self, ast: Pattern) -> tuple[str, Predicate] | None:
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
        return path, predicate(cmp)

    def scanned_hits(self, path: str, value: Any) -> list[Entry]:
        """The value-tested entries of ``path`` that ``value`` satisfies (memoised)."""
        memo = self._memo.get(path)
        if memo is None:
            memo = self._memo[path] = {}
        if type(value) is not str:  # 1, 1.0 and True are one dict key but compare differently
            value = (type(value).__name__, value)
        found = memo.get(value)
        if found is None:
            raw = value if type(value) is str else value[1]
            found = [e for e in self._scanned[path].values() if e.scanned[1](raw)]  # type: ignore[index]
            if len(memo) >= MEMO_SIZE:
                memo.clear()
            memo[value] = found
        return found

    # -- scanning ----------------------------------------------------------------------
    def plan(self, kind: EventKind) -> _Plan:
        """What to look up for events of ``kind`` (cached until the set changes)."""
        found = self._plans.get(kind.name)
        if found is None:
            found = self._plans[kind.name] = _Plan(self, kind)
        return found

    def cidr_hits(self, path: str, value: Any) -> list[Entry]:
        """Entries whose CIDR block holds ``value`` (memoised per value: addresses recur)."""
        if type(value) is not str:
            return []
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

    def _cidr_lookup(self, path: str, value: str) -> list[Entry]:
        table = self._cidr.get(path)
        if not table:
            return []
        address = _address(value)
        if address is None:
            return []
        version, number, prefix = address
        hits: list[Entry] = []
        for (v, length), bucket in table.items():
            if v == version and length <= prefix:
                width = 32 if version == 4 else 128
                hits += bucket.get(number >> (width - length), ())
        return hits


class _Plan:
    """Per event kind: (field, index) pairs to look up and the unindexed entries to run."""

    __slots__ = ("any_index", "cidr", "exact", "probe", "scanned", "unindexed")

    def __init__(self, iset: IndicatorSet, kind: EventKind) -> None:
        # exact: (key1, key2 | None, field | None, indexes for IPv4-looking/other values,
        # indexes for values with ':') -- one entry per field with something to look up.
        self.exact: list[tuple[Any, ...]] = []
        # cidr / scanned: (field, path, memo of value -> entries), see IndicatorSet
        self.cidr: list[tuple[Any, str, dict[Any, list[Entry]]]] = []
        self.scanned: list[tuple[Any, str, dict[Any, list[Entry]]]] = []
        for f in kind.fields:
            indexes = {path: iset._exact[path] for path in f.path_keys if iset._exact.get(path)}
            if indexes:
                # An address value is typed by ':' (events.address_type): an ipv4-addr
                # entry can only match a value without ':', an ipv6-addr one only with.
                plain = tuple(d for p, d in indexes.items() if p != "ipv6-addr:value")
                colon = tuple(d for p, d in indexes.items() if p != "ipv4-addr:value")
                direct = f.get is None and len(f.keys) in (1, 2)
                self.exact.append((f.keys[0] if direct else None,
                                   f.keys[1] if direct and len(f.keys) == 2 else None,
                                   None if direct else f, plain, colon if f.address else plain))
            for path in f.path_keys:
                if path in iset._cidr:
                    self.cidr.append((f, path, iset._memo.setdefault("cidr " + path, {})))
                if path in iset._scanned:
                    self.scanned.append((f, path, iset._memo.setdefault(path, {})))
        types = kind.object_types
        self.unindexed = [e for e in iset._unindexed.values() if e.types & types]
        self.any_index = bool(self.exact or self.cidr or self.scanned)
        memoised = [_memoised(f, memo, partial(iset.cidr_hits, path), cidr=True)
                    for f, path, memo in self.cidr]
        memoised += [_memoised(f, memo, partial(iset.scanned_hits, path), cidr=False)
                     for f, path, memo in self.scanned]
        self.probe = compile_probe(self.exact, memoised)


def _memoised(fld: Any, memo: dict[Any, list[Entry]], miss: Callable[[Any], list[Entry]],
              cidr: bool) -> tuple[Any, ...]:
    """A CIDR or value-tested lookup for the generated probe (see probe.compile_probe)."""

    def items(v: Any, hits: list[Entry] | None) -> list[Entry] | None:
        for item in v if type(v) is list else (v,):
            if item is None or item == "" or type(item) in (dict, list) or (cidr and type(item) is not str):
                continue  # an empty string is no value (events._present); CIDRs test strings
            found = miss(item)
            if found:
                hits = found if hits is None else hits + found
        return hits

    direct = fld.get is None and len(fld.keys) in (1, 2)
    return (fld.keys[0] if direct else None, fld.keys[1] if direct and len(fld.keys) == 2 else None,
            None if direct else fld, memo, miss, items)


def _drop(index: dict[Any, list[Entry]], value: Any, entry: Entry) -> None:
    bucket = index.get(value)
    if bucket is not None:
        bucket[:] = [e for e in bucket if e is not entry]
        if not bucket:
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


# --- the pure core ------------------------------------------------------------------------


def scan(iset: IndicatorSet, events: Iterable[Event]) -> list[Match]:
    """Every match of the indicator set in ``events`` (STIX 2.1 §9 semantics).

    ``events`` may be a generator: only events that are candidates of a multi-event
    pattern are kept until the end, so a batch streams through in constant memory.
    """
    matches: list[Match] = []
    kept: dict[int, Event] = {}
    built: dict[int, Observed] = {}
    pending: dict[str, list[int]] = {}
    plans: dict[str, _Plan] = {}
    for i, event in enumerate(events):
        kind, record = event
        plan = plans.get(kind.name)
        if plan is None:
            plan = plans[kind.name] = iset.plan(kind)
        hits = plan.probe(record) if plan.any_index else None
        if plan.unindexed:
            hits = plan.unindexed + hits if hits else list(plan.unindexed)
        if not hits:
            continue
        _resolve(hits, i, event, matches, built, pending, kept)
    for key, positions in pending.items():
        entry = iset.entries[key]
        observations = []
        for i in positions:
            if i not in built:
                built[i] = build_observation(*kept[i])
            observations.append(built[i])
        witness = entry.compiled().witness(observations)
        if witness is not None:
            chosen = tuple(sorted({positions[j] for j in witness}))
            matches.append(Match(key, chosen, tuple(kept[i] for i in chosen), entry.meta))
    return matches


def _resolve(hits: list[Entry], i: int, event: Event, matches: list[Match], built: dict[int, Observed],
             pending: dict[str, list[int]], kept: dict[int, Event]) -> None:
    """Turn one event's candidate entries into matches (or pending multi-event work)."""
    seen: set[str] = set()
    for entry in hits:
        if entry.key in seen:
            continue
        seen.add(entry.key)
        if entry.simple or entry.scanned is not None:
            matches.append(Match(entry.key, (i,), (event,), entry.meta))
        elif entry.single_event:
            obs = built.get(i)
            if obs is None:
                obs = built[i] = build_observation(*event)
            if entry.compiled().matches((obs,)):
                matches.append(Match(entry.key, (i,), (event,), entry.meta))
        else:
            waiting = pending.setdefault(entry.key, [])
            if not waiting or waiting[-1] != i:
                waiting.append(i)
                kept[i] = event


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
