"""Full STIX 2.1 pattern semantics over a list of observations (STIX 2.1 §9).

A pattern compiles once (:func:`compile_pattern`) into closures; evaluating it is then a
pure function of the observations. Binding rules (§9.6, §9.7):

* a comparison expression (inside one ``[...]``) is evaluated per observation; ``AND``
  between comparisons requires the same *root object* (the SCO the path starts from,
  before any ``*_ref`` is followed), ``OR`` either;
* each ``[...]`` binds one observation; the observation operators ``AND``, ``OR`` and
  ``FOLLOWEDBY`` and the ``REPEATS`` qualifier need *distinct* observations, where an
  observed-data with ``number_observed`` n counts as n interchangeable observations;
* ``FOLLOWEDBY`` needs timestamps that can be chosen in order (latest ``first_observed``
  on the left <= earliest ``last_observed`` on the right); ``WITHIN n SECONDS`` needs
  all bound observations to overlap one window of n seconds; ``START s STOP e`` needs
  every bound observation to overlap ``[s, e)``.

A binding is kept as the sorted tuple of the observation indexes it uses (with
repetition): since the n instances of one observed-data are interchangeable, this is
exactly the information the reference matcher's per-instance tuples carry, at a
fraction of the combinations.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from commonwatch.detect.values import predicate
from commonwatch.domain.pattern_ast import (
    AnyIndexStep,
    Comparison,
    ComparisonAnd,
    ComparisonExpression,
    ComparisonOperator,
    ComparisonOr,
    FollowedBy,
    IndexStep,
    Observation,
    ObservationAnd,
    ObservationExpression,
    ObservationOr,
    Pattern,
    PropertyStep,
    Qualified,
    Repeats,
    StartStop,
    Within,
)
from commonwatch.domain.patterns import parse_pattern
from commonwatch.domain.timestamps import parse_timestamp
from commonwatch.errors import InputTooLarge, InvalidPattern

#: Most candidate bindings one node of a pattern may produce before evaluation stops.
MAX_BINDINGS = 200_000

Binding = tuple[int, ...]
Objects = dict[str, dict[str, Any]]


@dataclass(slots=True)
class Observed:
    """One observation: its SCOs by id (the scope of ``*_ref``), time span and count."""

    objects: Objects
    first_us: int
    last_us: int
    count: int = 1
    by_type: dict[str, list[tuple[str, dict[str, Any]]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.by_type:
            for oid, obj in self.objects.items():
                self.by_type.setdefault(obj.get("type", ""), []).append((oid, obj))


RootTest = Callable[[Observed], set[str]]

# --- object paths (STIX 2.1 §9.4) --------------------------------------------------------

_KEY, _INDEX, _STAR = 0, 1, 2
_PLAIN, _REF, _REFS, _HEX, _BIN = 0, 1, 2, 3, 4


def _compile_path(cmp: Comparison) -> list[tuple[int, Any, int]]:
    steps: list[tuple[int, Any, int]] = []
    for step in cmp.path:
        if isinstance(step, PropertyStep):
            name = step.name
            mode = (_REF if name.endswith("_ref") else _REFS if name.endswith("_refs")
                    else _HEX if name.endswith("_hex") else _BIN if name.endswith("_bin") else _PLAIN)
            steps.append((_KEY, name, mode))
        elif isinstance(step, IndexStep):
            steps.append((_INDEX, step.index, _PLAIN))
        else:
            assert isinstance(step, AnyIndexStep)
            steps.append((_STAR, None, _PLAIN))
    return steps


def select(obj: dict[str, Any], steps: list[tuple[int, Any, int]], objects: Objects) -> list[Any]:
    """The values the path selects in ``obj``; references resolve within ``objects``.

    A step that cannot be taken (missing key, index out of range, a reference that does
    not resolve) drops that value, as §9.4 says a path that does not resolve selects
    nothing. ``*_hex``/``*_bin`` properties are decoded to bytes (§9.3).
    """
    values: list[Any] = [obj]
    for kind, arg, mode in steps:
        out: list[Any] = []
        if kind == _KEY:
            for v in values:
                if type(v) is dict and arg in v:
                    _take(v[arg], mode, objects, out)
        elif kind == _INDEX:
            out = [v[arg] for v in values if type(v) is list and arg < len(v)]
        else:
            for v in values:
                if type(v) is list:
                    out.extend(v)
        if not out:
            return out
        values = out
    return values


def _take(x: Any, mode: int, objects: Objects, out: list[Any]) -> None:
    if mode == _PLAIN:
        out.append(x)
    elif mode == _REF:
        if type(x) is str and x in objects:
            out.append(objects[x])
    elif mode == _REFS:
        if type(x) is list:
            found = [objects[r] for r in x if type(r) is str and r in objects]
            if found:
                out.append(found)
    elif type(x) is str:
        try:
            out.append(binascii.a2b_hex(x) if mode == _HEX else base64.b64decode(x, validate=True))
        except (binascii.Error, ValueError):
            return  # not decodable: selects nothing


# --- comparison expressions ------------------------------------------------------------


def _compile_comparison(expr: ComparisonExpression) -> RootTest:
    if isinstance(expr, ComparisonAnd):
        parts = [_compile_comparison(e) for e in expr.operands]

        def both(obs: Observed) -> set[str]:
            roots = parts[0](obs)
            for part in parts[1:]:
                if not roots:
                    break
                roots &= part(obs)
            return roots

        return both
    if isinstance(expr, ComparisonOr):
        alternatives = [_compile_comparison(e) for e in expr.operands]

        def either(obs: Observed) -> set[str]:
            roots: set[str] = set()
            for part in alternatives:
                roots |= part(obs)
            return roots

        return either
    return _compile_leaf(expr)


def _compile_leaf(cmp: Comparison) -> RootTest:
    otype, steps = cmp.object_type, _compile_path(cmp)
    if cmp.operator is ComparisonOperator.EXISTS:
        negated = cmp.negated

        def exists(obs: Observed) -> set[str]:
            return {oid for oid, obj in obs.by_type.get(otype, ())
                    if bool(select(obj, steps, obs.objects)) != negated}

        return exists
    test = predicate(cmp)

    def compare(obs: Observed) -> set[str]:
        return {oid for oid, obj in obs.by_type.get(otype, ())
                if any(map(test, select(obj, steps, obs.objects)))}

    return compare


# --- observation expressions ------------------------------------------------------------


class _Context:
    """One evaluation: the observations, usable instances of each, leaf results."""

    __slots__ = ("caps", "firsts", "lasts", "observations")

    def __init__(self, observations: Sequence[Observed], cap: int) -> None:
        self.observations = observations
        self.caps = [min(o.count, cap) for o in observations]
        self.firsts = [o.first_us for o in observations]
        self.lasts = [o.last_us for o in observations]

    def combine(self, a: Binding, b: Binding) -> Binding | None:
        merged = tuple(sorted(a + b))
        caps, prev, run = self.caps, -1, 0
        for x in merged:
            run = run + 1 if x == prev else 1
            prev = x
            if run > caps[x]:
                return None
        return merged


Node = Callable[[_Context], set[Binding]]


def _guard(found: set[Binding]) -> set[Binding]:
    if len(found) > MAX_BINDINGS:
        raise InputTooLarge(f"the pattern binds more than {MAX_BINDINGS} combinations of these "
                            "observations; match fewer observations at a time")
    return found


def _compile_observation(expr: ObservationExpression) -> tuple[Node, int]:
    """The node and its binding size (observations one binding uses, REPEATS counted)."""
    if isinstance(expr, Observation):
        roots = _compile_comparison(expr.comparison)
        return (lambda ctx: {(i,) for i, o in enumerate(ctx.observations) if roots(o)}), 1
    if isinstance(expr, ObservationOr):
        compiled = [_compile_observation(e) for e in expr.operands]
        return (lambda ctx: set().union(*(n(ctx) for n, _ in compiled))), sum(s for _, s in compiled)
    if isinstance(expr, ObservationAnd | FollowedBy):
        compiled = [_compile_observation(e) for e in expr.operands]
        ordered = isinstance(expr, FollowedBy)
        return _joined([n for n, _ in compiled], ordered), sum(s for _, s in compiled)
    assert isinstance(expr, Qualified)
    inner, size = _compile_observation(expr.expression)
    q = expr.qualifier
    if isinstance(q, Repeats):
        if q.times < 1:
            raise InvalidPattern(f"REPEATS {q.times} TIMES: the count must be a positive integer "
                                 "(STIX 2.1 §9.6)")
        return _repeated(inner, q.times), size * q.times
    if isinstance(q, Within):
        if q.seconds <= 0:
            raise InvalidPattern(f"WITHIN {q.seconds} SECONDS: the duration must be positive "
                                 "(STIX 2.1 §9.6)")
        window = round(q.seconds * 1_000_000)
        return _filtered(inner, lambda ctx, b: _within(ctx, b, window)), size
    assert isinstance(q, StartStop)
    start, stop = _qualifier_time(q.start), _qualifier_time(q.stop)
    return _filtered(inner, lambda ctx, b: start < stop and all(
        ctx.firsts[i] < stop and ctx.lasts[i] >= start for i in b)), size


def _qualifier_time(text: str) -> int:
    try:
        return parse_timestamp(text)
    except ValueError as exc:
        raise InvalidPattern(f"START/STOP timestamp t'{text}' is not a real date and time "
                             f"({exc})") from None


def _within(ctx: _Context, b: Binding, window: int) -> bool:
    # A window of the given length touching every observation's [first, last] exists
    # iff the latest first_observed is at most the earliest last_observed + window.
    return max(ctx.firsts[i] for i in b) <= min(ctx.lasts[i] for i in b) + window


def _filtered(inner: Node, keep: Callable[[_Context, Binding], bool]) -> Node:
    return lambda ctx: {b for b in inner(ctx) if keep(ctx, b)}


def _joined(nodes: list[Node], ordered: bool) -> Node:
    def join(ctx: _Context) -> set[Binding]:
        left = nodes[0](ctx)
        for node in nodes[1:]:
            if not left:
                return left
            right = node(ctx)
            found: set[Binding] = set()
            for a in left:
                latest_first = max(ctx.firsts[i] for i in a) if ordered else 0
                for b in right:
                    if ordered and latest_first > min(ctx.lasts[i] for i in b):
                        continue
                    merged = ctx.combine(a, b)
                    if merged is not None:
                        found.add(merged)
            left = _guard(found)
        return left

    return join


def _repeated(inner: Node, times: int) -> Node:
    """``REPEATS n TIMES``: n bindings of the inner expression on distinct observations.

    Built level by level (no recursion: n may be large); bindings are multisets, so
    combinations that differ only in order collapse into one.
    """
    def repeat(ctx: _Context) -> set[Binding]:
        items = sorted(inner(ctx))
        level: set[Binding] = {()}
        for _ in range(times):
            found: set[Binding] = set()
            for acc in level:
                for item in items:
                    merged = ctx.combine(acc, item)
                    if merged is not None:
                        found.add(merged)
            level = _guard(found)
            if not level:
                break
        return level

    return repeat


# --- compiled patterns -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CompiledPattern:
    """A pattern ready to evaluate; ``size`` is the most observations one match uses."""

    text: str
    ast: Pattern
    root: Node
    size: int
    single: RootTest | None  # the comparison test, when the pattern is one bare [...]

    def witness(self, observations: Sequence[Observed]) -> Binding | None:
        """The observation indexes of one match (sorted, repeated per instance), or None."""
        if self.single is not None:
            for i, o in enumerate(observations):
                if self.single(o):
                    return (i,)
            return None
        found = self.root(_Context(observations, self.size))
        return min(found) if found else None

    def matches(self, observations: Sequence[Observed]) -> bool:
        return self.witness(observations) is not None


def compile_ast(text: str, ast: Pattern) -> CompiledPattern:
    """Compile a parsed pattern; InvalidPattern for what parses but cannot be evaluated."""
    root, size = _compile_observation(ast.root)
    single = _compile_comparison(ast.root.comparison) if isinstance(ast.root, Observation) else None
    return CompiledPattern(text=text, ast=ast, root=root, size=size, single=single)


def compile_pattern(text: str) -> CompiledPattern:
    """Parse (``commonwatch.domain.patterns``) and compile a STIX 2.1 pattern."""
    return compile_ast(text, parse_pattern(text))
