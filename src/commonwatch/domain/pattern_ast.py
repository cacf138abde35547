"""The STIX 2.1 pattern AST (STIX 2.1 §9): what ``patterns.parse_pattern`` returns.

A pure description for validation and for the detection engine: slotted dataclasses
whose fields are ``Final`` (read-only once built: mypy checks it everywhere, and the
compiled module, see tools/native.py, refuses any assignment at run time; parses are
cached and shared, so a tree must never change), literals decoded to Python values,
``==``/``<>`` normalised, chains of the same operator kept as one n-ary node, qualifier
chains nested innermost first. Each class writes its ``__init__`` out, as the compiled
one is several times faster than the one ``dataclass`` generates.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import Final, TypeAlias

#: Words the lexer reads as keywords; a property named so must be quoted in a path.
KEYWORDS = ("AND", "OR", "NOT", "FOLLOWEDBY", "LIKE", "MATCHES", "ISSUPERSET", "ISSUBSET",
             "EXISTS", "LAST", "IN", "START", "STOP", "SECONDS", "WITHIN", "REPEATS", "TIMES")
BARE_NAME = re.compile("[A-Za-z_][A-Za-z0-9_]*")
_RESERVED = frozenset(KEYWORDS) | {"true", "false"}

# --- AST: literals (STIX 2.1 §9, "Constants") ---------------------------------------


@dataclass(slots=True, init=False, unsafe_hash=True)
class StringLiteral:
    """``'...'``; ``value`` is unescaped."""

    value: Final[str]

    def __init__(self, value: str) -> None:
        self.value = value


@dataclass(slots=True, init=False, unsafe_hash=True)
class IntegerLiteral:
    """``42``, ``+42``, ``-42``."""

    value: Final[int]

    def __init__(self, value: int) -> None:
        self.value = value


@dataclass(slots=True, init=False, unsafe_hash=True)
class FloatLiteral:
    """``1.5``, ``-.5``, ``+0.25`` (no exponent form exists)."""

    value: Final[float]

    def __init__(self, value: float) -> None:
        self.value = value


@dataclass(slots=True, init=False, unsafe_hash=True)
class BooleanLiteral:
    """``true`` / ``false`` (lower case only)."""

    value: Final[bool]

    def __init__(self, value: bool) -> None:
        self.value = value


@dataclass(slots=True, init=False, unsafe_hash=True)
class TimestampLiteral:
    """``t'2020-01-01T00:00:00Z'``; ``value`` is the text between the quotes.

    Kept as text: the grammar admits second ``60`` and day 31 in every month, which a
    ``datetime`` cannot hold (see deviation 4 in the module docstring).
    """

    value: Final[str]

    def __init__(self, value: str) -> None:
        self.value = value


@dataclass(slots=True, init=False, unsafe_hash=True)
class BinaryLiteral:
    """``b'...'`` base64; ``value`` is the decoded bytes."""

    value: Final[bytes]

    def __init__(self, value: bytes) -> None:
        self.value = value


@dataclass(slots=True, init=False, unsafe_hash=True)
class HexLiteral:
    """``h'...'``; ``value`` is the decoded bytes."""

    value: Final[bytes]

    def __init__(self, value: bytes) -> None:
        self.value = value


Literal: TypeAlias = (
    StringLiteral | IntegerLiteral | FloatLiteral | BooleanLiteral | TimestampLiteral
    | BinaryLiteral | HexLiteral
)


@dataclass(slots=True, init=False, unsafe_hash=True)
class SetLiteral:
    """``(v1, v2, ...)``, the right-hand side of ``IN``; may be empty."""

    values: Final[tuple[Literal, ...]]

    def __init__(self, values: tuple[Literal, ...]) -> None:
        self.values = values


Value: TypeAlias = Literal | SetLiteral


# --- AST: object paths and comparisons (STIX 2.1 §9, "Object Path", "Operators") -----


@dataclass(slots=True, init=False, unsafe_hash=True)
class PropertyStep:
    """A property name; quoted names (``hashes.'SHA-256'``) are stored unquoted."""

    name: Final[str]

    def __init__(self, name: str) -> None:
        self.name = name


@dataclass(slots=True, init=False, unsafe_hash=True)
class IndexStep:
    """A list index ``[n]`` (n >= 0)."""

    index: Final[int]

    def __init__(self, index: int) -> None:
        self.index = index


@dataclass(frozen=True, slots=True)
class AnyIndexStep:
    """The list wildcard ``[*]``; use the ``ANY_INDEX`` instance."""


ANY_INDEX = AnyIndexStep()
PathStep: TypeAlias = PropertyStep | IndexStep | AnyIndexStep


class ComparisonOperator(enum.StrEnum):
    """Comparison operators; ``==`` parses as EQ and ``<>`` as NEQ."""

    EQ = "="
    NEQ = "!="
    LT = "<"
    LE = "<="
    GT = ">"
    GE = ">="
    IN = "IN"
    LIKE = "LIKE"
    MATCHES = "MATCHES"
    ISSUBSET = "ISSUBSET"
    ISSUPERSET = "ISSUPERSET"
    EXISTS = "EXISTS"


@dataclass(slots=True, init=False, unsafe_hash=True)
class Comparison:
    """``type:path [NOT] op value``, or ``[NOT] EXISTS type:path`` (``value`` None)."""

    object_type: Final[str]
    path: Final[tuple[PathStep, ...]]
    operator: Final[ComparisonOperator]
    negated: Final[bool]
    value: Final[Value | None]

    def __init__(
        self, object_type: str, path: tuple[PathStep, ...], operator: ComparisonOperator,
        negated: bool, value: Value | None,
    ) -> None:
        self.object_type = object_type
        self.path = path
        self.operator = operator
        self.negated = negated
        self.value = value

    @property
    def path_text(self) -> str:
        """The path in canonical STIX syntax, e.g. ``hashes.'SHA-256'`` or ``a[*].b``."""
        parts: list[str] = []
        for step in self.path:
            if isinstance(step, PropertyStep):
                name = step.name
                if not (BARE_NAME.fullmatch(name) and name not in _RESERVED):
                    name = "'" + name.replace("\\", "\\\\").replace("'", "\\'") + "'"
                parts.append(name if not parts else "." + name)
            else:
                parts.append("[*]" if isinstance(step, AnyIndexStep) else f"[{step.index}]")
        return "".join(parts)


@dataclass(slots=True, init=False, unsafe_hash=True)
class ComparisonAnd:
    """Comparisons joined by AND; parenthesised groups stay nested nodes."""

    operands: Final[tuple[ComparisonExpression, ...]]

    def __init__(self, operands: tuple[ComparisonExpression, ...]) -> None:
        self.operands = operands


@dataclass(slots=True, init=False, unsafe_hash=True)
class ComparisonOr:
    """Comparisons joined by OR (AND binds tighter)."""

    operands: Final[tuple[ComparisonExpression, ...]]

    def __init__(self, operands: tuple[ComparisonExpression, ...]) -> None:
        self.operands = operands


ComparisonExpression: TypeAlias = Comparison | ComparisonAnd | ComparisonOr


# --- AST: observation expressions and qualifiers (STIX 2.1 §9, "Qualifiers") ---------


@dataclass(slots=True, init=False, unsafe_hash=True)
class Within:
    """``WITHIN n SECONDS`` (int or float as written)."""

    seconds: Final[int | float]

    def __init__(self, seconds: int | float) -> None:
        self.seconds = seconds


@dataclass(slots=True, init=False, unsafe_hash=True)
class Repeats:
    """``REPEATS n TIMES``."""

    times: Final[int]

    def __init__(self, times: int) -> None:
        self.times = times


@dataclass(slots=True, init=False, unsafe_hash=True)
class StartStop:
    """``START t'...' STOP t'...'``; values are the timestamp texts."""

    start: Final[str]
    stop: Final[str]

    def __init__(self, start: str, stop: str) -> None:
        self.start = start
        self.stop = stop


Qualifier: TypeAlias = Within | Repeats | StartStop


@dataclass(slots=True, init=False, unsafe_hash=True)
class Observation:
    """A bracketed comparison expression ``[ ... ]``."""

    comparison: Final[ComparisonExpression]

    def __init__(self, comparison: ComparisonExpression) -> None:
        self.comparison = comparison


@dataclass(slots=True, init=False, unsafe_hash=True)
class ObservationAnd:
    """Observation expressions joined by AND."""

    operands: Final[tuple[ObservationExpression, ...]]

    def __init__(self, operands: tuple[ObservationExpression, ...]) -> None:
        self.operands = operands


@dataclass(slots=True, init=False, unsafe_hash=True)
class ObservationOr:
    """Observation expressions joined by OR (AND binds tighter)."""

    operands: Final[tuple[ObservationExpression, ...]]

    def __init__(self, operands: tuple[ObservationExpression, ...]) -> None:
        self.operands = operands


@dataclass(slots=True, init=False, unsafe_hash=True)
class FollowedBy:
    """Observation expressions joined by FOLLOWEDBY (loosest), in source order."""

    operands: Final[tuple[ObservationExpression, ...]]

    def __init__(self, operands: tuple[ObservationExpression, ...]) -> None:
        self.operands = operands


@dataclass(slots=True, init=False, unsafe_hash=True)
class Qualified:
    """An observation expression with one qualifier; chains nest, innermost first."""

    expression: Final[ObservationExpression]
    qualifier: Final[Qualifier]

    def __init__(self, expression: ObservationExpression, qualifier: Qualifier) -> None:
        self.expression = expression
        self.qualifier = qualifier


ObservationExpression: TypeAlias = (
    Observation | ObservationAnd | ObservationOr | FollowedBy | Qualified
)


@dataclass(slots=True, init=False, unsafe_hash=True)
class Pattern:
    """A parsed pattern; ``root`` is the top observation expression."""

    root: Final[ObservationExpression]

    def __init__(self, root: ObservationExpression) -> None:
        self.root = root
