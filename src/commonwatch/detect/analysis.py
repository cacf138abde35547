"""What the index engine can know about a pattern without evaluating it.

Pure functions over the AST of ``commonwatch.domain.pattern_ast``: how many
observations one binding uses (STIX 2.1 §9.6), which object types an event must hold,
whether a pattern is a bare ``[...]`` of string equalities (then an index hit is the
match), and the canonical index path of a comparison. :class:`Analyser` puts them
together per indicator: its necessary values, or the per-value test of a pattern that
has none (see :mod:`commonwatch.detect.engine`).
"""

from __future__ import annotations

import re
import sys
import unicodedata
from typing import Any, NamedTuple

from commonwatch.detect.values import Predicate, literal_value, parse_network, predicate
from commonwatch.domain.pattern_ast import (
    ANY_INDEX,
    Comparison,
    ComparisonAnd,
    ComparisonExpression,
    ComparisonOperator,
    ComparisonOr,
    IndexStep,
    Observation,
    ObservationExpression,
    ObservationOr,
    Pattern,
    Qualified,
    Repeats,
    SetLiteral,
    StringLiteral,
)
from commonwatch.domain.patterns import object_types, parse_pattern
from commonwatch.errors import InvalidPattern

Key = tuple[str, str, Any]  # ("eq" | "cidr", path key, value or network)


def dedupe(keys: list[Key] | None) -> list[Key] | None:
    if keys is None:
        return None
    seen: dict[tuple[str, str, Any], Key] = {}
    for k in keys:
        seen.setdefault((k[0], k[1], (type(k[2]).__name__, k[2])), k)
    return list(seen.values())


def index_free(cmp: Comparison) -> str:
    """The path text with ``[n]`` read as ``[*]`` (a list field is indexed as a whole)."""
    if not any(isinstance(s, IndexStep) for s in cmp.path):
        return cmp.path_text
    steps = tuple(ANY_INDEX if isinstance(s, IndexStep) else s for s in cmp.path)
    return Comparison(cmp.object_type, steps, cmp.operator, cmp.negated, cmp.value).path_text


def all_eq_strings(expr: ComparisonExpression) -> bool:
    """One ``[...]`` of ``=``/``IN`` string tests joined by OR, on index-free paths."""
    if isinstance(expr, ComparisonOr):
        return all(map(all_eq_strings, expr.operands))
    if not isinstance(expr, Comparison) or expr.negated or any(isinstance(s, IndexStep) for s in expr.path):
        return False
    if expr.object_type in ("ipv4-addr", "ipv6-addr"):
        want_colon = expr.object_type == "ipv6-addr"
        values = expr.value.values if isinstance(expr.value, SetLiteral) else (expr.value,)
        if any(not isinstance(v, StringLiteral) or (":" in v.value) != want_colon for v in values):
            return False  # the address would be typed otherwise (events.address_type)
    if expr.operator is ComparisonOperator.EQ:
        return isinstance(expr.value, StringLiteral)
    return expr.operator is ComparisonOperator.IN and isinstance(expr.value, SetLiteral) and all(
        isinstance(v, StringLiteral) for v in expr.value.values)


def most_observations(expr: ObservationExpression) -> int:
    """The most observations one binding of ``expr`` uses (STIX 2.1 §9.6)."""
    if isinstance(expr, Observation):
        return 1
    if isinstance(expr, Qualified):
        inner = most_observations(expr.expression)
        return inner * expr.qualifier.times if isinstance(expr.qualifier, Repeats) else inner
    sizes = [most_observations(e) for e in expr.operands]
    return max(sizes) if isinstance(expr, ObservationOr) else sum(sizes)


def leaves(expr: ObservationExpression) -> list[Observation]:
    if isinstance(expr, Observation):
        return [expr]
    if isinstance(expr, Qualified):
        return leaves(expr.expression)
    return [leaf for operand in expr.operands for leaf in leaves(operand)]


def required_types(expr: ObservationExpression) -> frozenset[str]:
    """Object types an event must hold for any ``[...]`` of the pattern to match it."""
    found: set[str] = set()
    for leaf in leaves(expr):
        found |= comparison_types(leaf.comparison)
    return frozenset(found)


def mentioned_types(expr: ObservationExpression) -> frozenset[str]:
    """Every object type a comparison of ``expr`` names (what evaluating it can read)."""
    return frozenset(object_types(expr))


def comparison_types(expr: ComparisonExpression) -> set[str]:
    if isinstance(expr, Comparison):
        return {expr.object_type}
    parts = [comparison_types(e) for e in expr.operands]
    return set.union(*parts) if isinstance(expr, ComparisonOr) else min(parts, key=len)


#: ``[type:path = 'string']`` in the canonical spelling, plain dotted path without ``hashes``.
_CANONICAL = re.compile(r"\[([a-z0-9][a-z0-9-]*):((?!hashes\b)[A-Za-z_][A-Za-z0-9_]*"
                        r"(?:\.(?!hashes\b)[A-Za-z_][A-Za-z0-9_]*)*) = '([^'\\]*)'\]")
_SHAPES_MAX = 4096


class Analysis(NamedTuple):
    """What the index engine keeps of one pattern."""

    #: Necessary values (one must occur in an event for a match), or None: not indexable.
    keys: tuple[Key, ...] | None
    #: An index hit is the match (a bare ``[...]`` of string equalities).
    simple: bool
    #: Every binding is one event.
    single_event: bool
    #: Object types an event must hold.
    types: frozenset[str]
    #: The parsed pattern; None when the canonical shortcut took it (simple patterns only).
    ast: Pattern | None


class Analyser:
    """Necessary values of patterns over the paths the adapters produce (``known``).

    What depends only on a pattern's shape (object type and path) is worked out once
    per shape and shared, and equal sets of object types are one object: at 10^6
    indicators both the time and the memory per indicator count.
    """

    def __init__(self, known: frozenset[str]) -> None:
        self.known = known
        # Shared per pattern shape (type and path): path key and object types.
        self._shapes: dict[tuple[str, tuple[Any, ...]], tuple[str, frozenset[str]] | None] = {}
        self._types: dict[frozenset[str], frozenset[str]] = {}
        self._canonical: dict[tuple[str, str], tuple[str, frozenset[str]] | None] = {}

    def shared(self, types: frozenset[str]) -> frozenset[str]:
        """One object per distinct set of object types."""
        return self._types.setdefault(types, types)

    def analyse(self, pattern: str) -> Analysis:
        """The analysis of one pattern; InvalidPattern if it does not parse."""
        fast = self._canonical_analysis(pattern)
        if fast is not None:
            return Analysis(*fast, None)
        ast = parse_pattern(pattern)
        fast = self._fast_analysis(ast)
        if fast is not None:
            return Analysis(*fast, ast)
        keys, simple, single = self._analyse(ast)
        return Analysis(keys, simple, single, self.shared(required_types(ast.root)), ast)

    def _canonical_analysis(self, text: str) -> tuple[tuple[Key, ...], bool, bool, frozenset[str]] | None:
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

    def _fast_analysis(self, ast: Pattern) -> tuple[tuple[Key, ...], bool, bool, frozenset[str]] | None:
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
            indexable = path in self.known and not any(isinstance(s, IndexStep) for s in cmp.path)
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

    def _analyse(self, ast: Pattern) -> tuple[tuple[Key, ...] | None, bool, bool]:
        """(necessary values, hit-is-match, every binding is one event) of a pattern."""
        root = ast.root
        if most_observations(root) == 1:  # [..], [..] OR [..], with WITHIN/START-STOP
            keys = self._single_keys(root)
            simple = (keys is not None and isinstance(root, Observation)
                      and all_eq_strings(root.comparison))
            return _interned(dedupe(keys)), simple, True
        found: list[Key] = []
        for leaf in leaves(root):  # every [...] needs its candidates kept for the batch
            leaf_keys = self._comparison_keys(leaf.comparison)
            if leaf_keys is None:
                return None, False, False
            found += leaf_keys
        return _interned(dedupe(found)), False, False

    def _single_keys(self, expr: ObservationExpression) -> list[Key] | None:
        if isinstance(expr, Observation):
            return self._comparison_keys(expr.comparison)
        if isinstance(expr, Qualified):
            return self._single_keys(expr.expression)
        found: list[Key] = []
        for operand in expr.operands:  # only OR reaches here (one observation per binding)
            keys = self._single_keys(operand)
            if keys is None:
                return None
            found += keys
        return found

    def _comparison_keys(self, expr: ComparisonExpression) -> list[Key] | None:
        if isinstance(expr, ComparisonAnd):
            options = [k for k in map(self._comparison_keys, expr.operands) if k is not None]
            return min(options, key=len) if options else None
        if isinstance(expr, ComparisonOr):
            found: list[Key] = []
            for operand in expr.operands:
                keys = self._comparison_keys(operand)
                if keys is None:
                    return None
                found += keys
            return found
        return self._leaf_keys(expr)

    def _leaf_keys(self, cmp: Comparison) -> list[Key] | None:
        if cmp.negated:
            return None
        path = cmp.object_type + ":" + index_free(cmp)
        if path not in self.known:
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
        found: list[Key] = []
        for literal in values:
            value = literal_value(literal, where)  # type: ignore[arg-type]
            if type(value) not in (str, int, float) or value == "":
                return None  # binary, boolean, timestamp and empty values are not indexed
            found.append(("eq", path, value))
        return found

    def scan_test(self, ast: Pattern) -> tuple[str, Predicate, str | None] | None:
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
        if (cmp.operator is ComparisonOperator.EXISTS or path not in self.known
                or any(isinstance(s, IndexStep) for s in cmp.path)
                or cmp.object_type in ("ipv4-addr", "ipv6-addr")):
            return None  # addresses are typed per value (events.address_type): keep exact
        like = None
        if cmp.operator is ComparisonOperator.LIKE and not cmp.negated:
            assert isinstance(cmp.value, StringLiteral)  # the grammar's LIKE takes a string
            like = unicodedata.normalize("NFC", cmp.value.value)
        return path, predicate(cmp), like



def _interned(keys: list[Key] | None) -> tuple[Key, ...] | None:
    """Keys as a tuple, path strings shared: many indicators name the same few paths."""
    return None if keys is None else tuple((k, sys.intern(p), v) for k, p, v in keys)
