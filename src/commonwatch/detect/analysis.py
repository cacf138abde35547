"""What the index engine can know about a pattern without evaluating it.

Pure functions over the AST of ``commonwatch.domain.pattern_ast``: how many
observations one binding uses (STIX 2.1 §9.6), which object types an event must hold,
whether a pattern is a bare ``[...]`` of string equalities (then an index hit is the
match), and the canonical index path of a comparison.
"""

from __future__ import annotations

from typing import Any

from commonwatch.domain.pattern_ast import (
    ANY_INDEX,
    Comparison,
    ComparisonExpression,
    ComparisonOperator,
    ComparisonOr,
    IndexStep,
    Observation,
    ObservationExpression,
    ObservationOr,
    Qualified,
    Repeats,
    SetLiteral,
    StringLiteral,
)

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
    found: set[str] = set()
    stack: list[ComparisonExpression] = [leaf.comparison for leaf in leaves(expr)]
    while stack:
        item = stack.pop()
        if isinstance(item, Comparison):
            found.add(item.object_type)
        else:
            stack.extend(item.operands)
    return frozenset(found)


def comparison_types(expr: ComparisonExpression) -> set[str]:
    if isinstance(expr, Comparison):
        return {expr.object_type}
    parts = [comparison_types(e) for e in expr.operands]
    return set.union(*parts) if isinstance(expr, ComparisonOr) else min(parts, key=len)
