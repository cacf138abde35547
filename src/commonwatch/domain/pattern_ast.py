"""The STIX 2.1 pattern AST (STIX 2.1 §9): what ``patterns.parse_pattern`` returns.

A pure description for validation and for the detection engine: frozen slotted
dataclasses, literals decoded to Python values, ``==``/``<>`` normalised, chains of
the same operator kept as one n-ary node, qualifier chains nested innermost first.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import TypeAlias

#: Words the lexer reads as keywords; a property named so must be quoted in a path.
KEYWORDS = ("AND", "OR", "NOT", "FOLLOWEDBY", "LIKE", "MATCHES", "ISSUPERSET", "ISSUBSET",
             "EXISTS", "LAST", "IN", "START", "STOP", "SECONDS", "WITHIN", "REPEATS", "TIMES")
BARE_NAME = re.compile("[A-Za-z_][A-Za-z0-9_]*")
_RESERVED = frozenset(KEYWORDS) | {"true", "false"}

# --- AST: literals (STIX 2.1 §9, "Constants") ---------------------------------------


@dataclass(frozen=True, slots=True)
class StringLiteral:
    """``'...'``; ``value`` is unescaped."""

    value: str


@dataclass(frozen=True, slots=True)
class IntegerLiteral:
    """``42``, ``+42``, ``-42``."""

    value: int


@dataclass(frozen=True, slots=True)
class FloatLiteral:
    """``1.5``, ``-.5``, ``+0.25`` (no exponent form exists)."""

    value: float


@dataclass(frozen=True, slots=True)
class BooleanLiteral:
    """``true`` / ``false`` (lower case only)."""

    value: bool


@dataclass(frozen=True, slots=True)
class TimestampLiteral:
    """``t'2020-01-01T00:00:00Z'``; ``value`` is the text between the quotes.

    Kept as text: the grammar admits second ``60`` and day 31 in every month, which a
    ``datetime`` cannot hold (see deviation 4 in the module docstring).
    """

    value: str


@dataclass(frozen=True, slots=True)
class BinaryLiteral:
    """``b'...'`` base64; ``value`` is the decoded bytes."""

    value: bytes


@dataclass(frozen=True, slots=True)
class HexLiteral:
    """``h'...'``; ``value`` is the decoded bytes."""

    value: bytes


Literal: TypeAlias = (
    StringLiteral | IntegerLiteral | FloatLiteral | BooleanLiteral | TimestampLiteral
    | BinaryLiteral | HexLiteral
)


@dataclass(frozen=True, slots=True)
class SetLiteral:
    """``(v1, v2, ...)``, the right-hand side of ``IN``; may be empty."""

    values: tuple[Literal, ...]


Value: TypeAlias = Literal | SetLiteral


# --- AST: object paths and comparisons (STIX 2.1 §9, "Object Path", "Operators") -----


@dataclass(frozen=True, slots=True)
class PropertyStep:
    """A property name; quoted names (``hashes.'SHA-256'``) are stored unquoted."""

    name: str


@dataclass(frozen=True, slots=True)
class IndexStep:
    """A list index ``[n]`` (n >= 0)."""

    index: int


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


@dataclass(frozen=True, slots=True)
class Comparison:
    """``type:path [NOT] op value``, or ``[NOT] EXISTS type:path`` (``value`` None)."""

    object_type: str
    path: tuple[PathStep, ...]
    operator: ComparisonOperator
    negated: bool
    value: Value | None

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


@dataclass(frozen=True, slots=True)
class ComparisonAnd:
    """Comparisons joined by AND; parenthesised groups stay nested nodes."""

    operands: tuple[ComparisonExpression, ...]


@dataclass(frozen=True, slots=True)
class ComparisonOr:
    """Comparisons joined by OR (AND binds tighter)."""

    operands: tuple[ComparisonExpression, ...]


ComparisonExpression: TypeAlias = Comparison | ComparisonAnd | ComparisonOr


# --- AST: observation expressions and qualifiers (STIX 2.1 §9, "Qualifiers") ---------


@dataclass(frozen=True, slots=True)
class Within:
    """``WITHIN n SECONDS`` (int or float as written)."""

    seconds: int | float


@dataclass(frozen=True, slots=True)
class Repeats:
    """``REPEATS n TIMES``."""

    times: int


@dataclass(frozen=True, slots=True)
class StartStop:
    """``START t'...' STOP t'...'``; values are the timestamp texts."""

    start: str
    stop: str


Qualifier: TypeAlias = Within | Repeats | StartStop


@dataclass(frozen=True, slots=True)
class Observation:
    """A bracketed comparison expression ``[ ... ]``."""

    comparison: ComparisonExpression


@dataclass(frozen=True, slots=True)
class ObservationAnd:
    """Observation expressions joined by AND."""

    operands: tuple[ObservationExpression, ...]


@dataclass(frozen=True, slots=True)
class ObservationOr:
    """Observation expressions joined by OR (AND binds tighter)."""

    operands: tuple[ObservationExpression, ...]


@dataclass(frozen=True, slots=True)
class FollowedBy:
    """Observation expressions joined by FOLLOWEDBY (loosest), in source order."""

    operands: tuple[ObservationExpression, ...]


@dataclass(frozen=True, slots=True)
class Qualified:
    """An observation expression with one qualifier; chains nest, innermost first."""

    expression: ObservationExpression
    qualifier: Qualifier


ObservationExpression: TypeAlias = (
    Observation | ObservationAnd | ObservationOr | FollowedBy | Qualified
)


@dataclass(frozen=True, slots=True)
class Pattern:
    """A parsed pattern; ``root`` is the top observation expression."""

    root: ObservationExpression
