"""The general STIX 2.1 pattern parser (STIX 2.1 §9): lexer, grammar, the reference's checks.

``commonwatch.domain.patterns.parse_pattern`` tries its fast path for the dominant feed
shapes first and hands every other pattern to ``_parse`` here: one compiled master regex
tokenizes the whole pattern, a recursive-descent parser follows the rules of the OASIS
ANTLR grammar shipped in ``stix2patterns`` 2.1.2 (``v21/grammars``), and the checks the
reference runs after parsing (brackets, hash values, duplicate qualifiers) are applied.
The fast path reuses the lexical pieces, literal decoding and hash check defined here,
so both build the same AST (``commonwatch.domain.pattern_ast``).

What is accepted, and every documented deviation from the §9 text, is listed in the
module docstring of ``commonwatch.domain.patterns``.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from typing import TypeVar

from commonwatch.domain.pattern_ast import (
    ANY_INDEX,
    KEYWORDS,
    BinaryLiteral,
    BooleanLiteral,
    Comparison,
    ComparisonAnd,
    ComparisonExpression,
    ComparisonOperator,
    ComparisonOr,
    FloatLiteral,
    FollowedBy,
    HexLiteral,
    IndexStep,
    IntegerLiteral,
    Literal,
    Observation,
    ObservationAnd,
    ObservationExpression,
    ObservationOr,
    PathStep,
    Pattern,
    PropertyStep,
    Qualified,
    Qualifier,
    Repeats,
    SetLiteral,
    StartStop,
    StringLiteral,
    TimestampLiteral,
    Value,
    Within,
)
from commonwatch.errors import InvalidPattern

MAX_NESTING = 100
_PREFIX = "pattern is not valid STIX 2.1 patterning: "


# --- Lexer (mirrors the lexer rules of the reference grammar) --------------------------

_WS = "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
_STR = r"'[^'\\]*(?:\\['\\][^'\\]*)*'"  # unrolled: one charset run per segment
_B64 = "[A-Za-z0-9+/]"
_TIMESTAMP = (
    r"[0-9]{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12][0-9]|3[01])"
    r"T(?:[01][0-9]|2[0-3]):[0-5][0-9]:(?:[0-5][0-9]|60)(?:\.[0-9]+)?Z"
)
# Alternatives are ordered so that the first one matching is ANTLR's longest match.
_TOKEN_RE = re.compile(
    "|".join((
        f"([{_WS}]+|/\\*.*?\\*/|//[^\\r\\n]*)",  # 1 skipped
        f"(t'{_TIMESTAMP}')",  # 2
        r"(h'(?:[0-9A-Fa-f]{2})*')",  # 3
        f"(b'(?:{_B64}{{4}})*(?:{_B64}{{4}}|{_B64}{{3}}=|{_B64}{{2}}==)')",  # 4
        f"({_STR})",  # 5
        r"([+-]?[0-9]*\.[0-9]+)",  # 6 float
        r"([+-]?(?:0|[1-9][0-9]*))",  # 7 int
        r"([A-Za-z_][A-Za-z0-9_-]*)",  # 8 identifier or keyword
        r"(==?|!=|<>|<=|>=|<|>)",  # 9
        r"([:.,()\[\]*])",  # 10
        r"(.)",  # 11: ' + - ^ / or a character outside the grammar: never valid
    )),
    re.DOTALL,
)
_IDENT_KINDS = {k: k for k in KEYWORDS} | {"true": "BOOL", "false": "BOOL"}
_GROUP_KINDS = {2: "TS", 3: "HEX", 4: "BIN", 5: "STR"}
_OP_KINDS = {"==": "=", "<>": "!="}
_UNESCAPE = re.compile(r"\\(['\\])")

Token = tuple[str, str, int]  # kind, text, offset


def _tokenize(text: str) -> list[Token]:
    """Split ``text`` into tokens, ending with an EOF token.

    Stops early after a token no grammar rule accepts (or a second integer in a row,
    as ``007`` lexes to three), which keeps garbage input linear-time.
    """
    tokens: list[Token] = []
    append = tokens.append
    for m in _TOKEN_RE.finditer(text):
        group = m.lastindex
        if group == 1:
            continue
        s = m.group()
        if group == 8:
            kind = _IDENT_KINDS.get(s) or ("IDH" if "-" in s else "ID")
        elif group == 7:
            kind = "INT-" if s[0] == "-" else "INT+"
            if tokens and tokens[-1][0][:3] == "INT":
                append((kind, s, m.start()))
                break
        elif group == 6:
            kind = "FLT-" if s[0] == "-" else "FLT+"
        elif group == 9:
            kind = _OP_KINDS.get(s, s)
        elif group == 10:
            kind = s
        elif group == 11:
            append(("BAD", s, m.start()))
            break
        else:
            kind = _GROUP_KINDS[group]  # type: ignore[index]
        append((kind, s, m.start()))
    append(("EOF", "", len(text)))
    return tokens


def _unescape(body: str) -> str:
    return _UNESCAPE.sub(r"\1", body) if "\\" in body else body


def _string(text: str) -> Literal:
    return StringLiteral(_unescape(text[1:-1]))


def _integer(text: str) -> Literal:
    return IntegerLiteral(int(text))


def _float(text: str) -> Literal:
    return FloatLiteral(float(text))


_LITERALS: dict[str, Callable[[str], Literal]] = {
    "STR": _string,
    "INT+": _integer,
    "INT-": _integer,
    "FLT+": _float,
    "FLT-": _float,
    "TS": lambda text: TimestampLiteral(text[2:-1]),
    "BIN": lambda text: BinaryLiteral(base64.b64decode(text[2:-1])),
    "HEX": lambda text: HexLiteral(bytes.fromhex(text[2:-1])),
    "BOOL": lambda text: BooleanLiteral(text == "true"),
}
_OPERATORS = {op.value: op for op in ComparisonOperator}
_STRING_OPERATORS = frozenset({"LIKE", "MATCHES", "ISSUBSET", "ISSUPERSET"})
_ORDER_OPERATORS = frozenset({"<", "<=", ">", ">="})
_PRIMITIVE = "a literal (string, number, boolean, b'', h'' or t'')"


# --- Reference post-parse checks (stix2patterns v21 object_validator / validator) -----

_HEX = "[a-fA-F0-9]"
_HASHES: dict[str, tuple[str, str]] = {
    "MD5": (f"^{_HEX}{{32}}$", "32 hex digits"),
    # The reference's MD6 regex (a raw string with a backslash-newline inside) only
    # anchors its first alternative; copied verbatim so acceptance stays identical.
    "MD6": (
        f"^{_HEX}{{32}}|{_HEX}{{40}}|{_HEX}{{56}}|\\\n    {_HEX}{{64}}|{_HEX}{{96}}|"
        f"{_HEX}{{128}}$",
        "32 to 128 hex digits",
    ),
    "RIPEMD160": (f"^{_HEX}{{40}}$", "40 hex digits"),
    "SHA1": (f"^{_HEX}{{40}}$", "40 hex digits"),
    "SHA224": (f"^{_HEX}{{56}}$", "56 hex digits"),
    "SHA256": (f"^{_HEX}{{64}}$", "64 hex digits"),
    "SHA384": (f"^{_HEX}{{96}}$", "96 hex digits"),
    "SHA512": (f"^{_HEX}{{128}}$", "128 hex digits"),
    "SHA3224": (f"^{_HEX}{{56}}$", "56 hex digits"),
    "SHA3256": (f"^{_HEX}{{64}}$", "64 hex digits"),
    "SHA3384": (f"^{_HEX}{{96}}$", "96 hex digits"),
    "SHA3512": (f"^{_HEX}{{128}}$", "128 hex digits"),
    "SSDEEP": ("^[a-zA-Z0-9/+:.]{1,128}$", "an ssdeep digest"),
    "WHIRLPOOL": (f"^{_HEX}{{128}}$", "128 hex digits"),
}
_HASH_RES = {name: (re.compile(rx), what) for name, (rx, what) in _HASHES.items()}


def _fail(message: str, offset: int) -> InvalidPattern:
    return InvalidPattern(f"{_PREFIX}{message} (at offset {offset})")


def _check_hash(path: tuple[PathStep, ...], raw_value: str, offset: int) -> None:
    """Reproduce the reference's hash-value check on a path containing ``hashes``."""
    last = path[-1]
    if isinstance(last, IndexStep):
        raise _fail(
            f"a path through 'hashes' must end in a hash algorithm name, not [{last.index}]",
            offset,
        )
    if not isinstance(last, PropertyStep):
        return
    entry = _HASH_RES.get(last.name.upper().replace("-", "").replace("'", ""))
    hash_string = raw_value.replace("'", "")
    if entry is not None and not entry[0].match(hash_string):
        hint = f"expected {entry[1]}"
        if raw_value.startswith("("):
            hint += "; IN is not accepted on hash paths, join '=' tests with OR instead"
        raise _fail(f"{hash_string!r} is not a valid {last.name} hash ({hint})", offset)


def _brackets_ok(text: str) -> bool:
    """The reference's brackets check: skipping '(' and whitespace, '[' comes first."""
    for c in text:
        if c != "(" and not c.isspace():
            return c == "["
    return False


# --- Parser (rule structure of the reference grammar) ----------------------------------

_N = TypeVar("_N")


class _Parser:
    """Recursive descent over the token list; ``depth`` counts open parentheses."""

    __slots__ = ("toks", "i")

    def __init__(self, toks: list[Token]) -> None:
        self.toks = toks
        self.i = 0

    def error(self, expected: str, index: int | None = None) -> InvalidPattern:
        kind, text, offset = self.toks[self.i if index is None else index]
        found = "the end of the pattern" if kind == "EOF" else repr(text[:40])
        return InvalidPattern(f"{_PREFIX}expected {expected} at offset {offset}, found {found}")

    def expect(self, kind: str, expected: str) -> Token:
        tok = self.toks[self.i]
        if tok[0] != kind:
            raise self.error(expected)
        self.i += 1
        return tok

    def nest(self, depth: int) -> None:
        if depth >= MAX_NESTING:
            raise _fail(f"parentheses nested deeper than {MAX_NESTING}", self.toks[self.i][2])

    def chain(
        self,
        operand: Callable[[int], _N],
        keyword: str,
        node: Callable[[tuple[_N, ...]], _N],
        depth: int,
    ) -> _N:
        first = operand(depth)
        toks = self.toks
        if toks[self.i][0] != keyword:
            return first
        operands = [first]
        while toks[self.i][0] == keyword:
            self.i += 1
            operands.append(operand(depth))
        return node(tuple(operands))

    def followed_by(self, depth: int) -> ObservationExpression:
        return self.chain(self.obs_or, "FOLLOWEDBY", FollowedBy, depth)

    def obs_or(self, depth: int) -> ObservationExpression:
        return self.chain(self.obs_and, "OR", ObservationOr, depth)

    def obs_and(self, depth: int) -> ObservationExpression:
        return self.chain(self.observation, "AND", ObservationAnd, depth)

    def observation(self, depth: int) -> ObservationExpression:
        """``[ comparisons ]`` or ``( observations )``, then any qualifiers."""
        kind = self.toks[self.i][0]
        node: ObservationExpression
        if kind == "[":
            self.i += 1
            node = Observation(self.cmp_or(depth))
            self.expect("]", "']', 'AND' or 'OR'")
            seen: set[type] | None = set()
        elif kind == "(":
            self.nest(depth)
            self.i += 1
            node = self.followed_by(depth + 1)
            self.expect(")", "')', 'AND', 'OR', 'FOLLOWEDBY' or a qualifier")
            seen = None  # the reference checks duplicates on bracketed expressions only
        else:
            raise self.error("'[' or '(' to start an observation expression")
        while self.toks[self.i][0] in ("WITHIN", "REPEATS", "START"):
            _, keyword, offset = self.toks[self.i]
            qualifier = self.qualifier()
            if seen is not None:
                if type(qualifier) in seen:
                    raise _fail(
                        f"{keyword} qualifier applied twice to the same bracketed "
                        "observation expression",
                        offset,
                    )
                seen.add(type(qualifier))
            node = Qualified(node, qualifier)
        return node

    def qualifier(self) -> Qualifier:
        kind = self.toks[self.i][0]
        self.i += 1
        if kind == "WITHIN":
            tok = self.toks[self.i]
            if tok[0] not in ("INT+", "FLT+"):
                raise self.error("a non-negative number of seconds")
            self.i += 1
            self.expect("SECONDS", "'SECONDS'")
            return Within(int(tok[1]) if tok[0] == "INT+" else float(tok[1]))
        if kind == "REPEATS":
            times = self.expect("INT+", "a non-negative integer")[1]
            self.expect("TIMES", "'TIMES'")
            return Repeats(int(times))
        start = self.expect("TS", "a timestamp t'YYYY-MM-DDTHH:MM:SSZ'")[1]
        self.expect("STOP", "'STOP'")
        stop = self.expect("TS", "a timestamp t'YYYY-MM-DDTHH:MM:SSZ'")[1]
        return StartStop(start[2:-1], stop[2:-1])

    def cmp_or(self, depth: int) -> ComparisonExpression:
        return self.chain(self.cmp_and, "OR", ComparisonOr, depth)

    def cmp_and(self, depth: int) -> ComparisonExpression:
        return self.chain(self.prop_test, "AND", ComparisonAnd, depth)

    def prop_test(self, depth: int) -> ComparisonExpression:
        """One comparison, EXISTS test, or parenthesised comparison expression."""
        kind, _, offset = self.toks[self.i]
        if kind == "(":
            self.nest(depth)
            self.i += 1
            inner = self.cmp_or(depth + 1)
            self.expect(")", "')', 'AND' or 'OR'")
            return inner
        if kind == "NOT" or kind == "EXISTS":
            self.i += 1
            if kind == "NOT":
                self.expect("EXISTS", "'EXISTS' (NOT goes after the object path)")
            object_type, path, _ = self.object_path()
            return Comparison(object_type, path, ComparisonOperator.EXISTS, kind == "NOT", None)
        object_type, path, has_hashes = self.object_path()
        negated = self.toks[self.i][0] == "NOT"
        self.i += negated
        op = self.toks[self.i][0]
        self.i += 1
        start = self.i
        value: Value
        if op == "=" or op == "!=":
            value = self.literal(True)
        elif op in _ORDER_OPERATORS:
            value = self.literal(False)
        elif op == "IN":
            value = self.set_literal()
        elif op in _STRING_OPERATORS:
            value = _string(self.expect("STR", f"a string literal after {op}")[1])
        else:
            raise self.error("a comparison operator (=, !=, <, >, <=, >=, IN, LIKE, "
                             "MATCHES, ISSUBSET, ISSUPERSET)", self.i - 1)
        if has_hashes:
            _check_hash(path, "".join(t[1] for t in self.toks[start:self.i]), offset)
        return Comparison(object_type, path, _OPERATORS[op], negated, value)

    def literal(self, allow_bool: bool) -> Literal:
        kind, text, _ = self.toks[self.i]
        make = _LITERALS.get(kind)
        if make is None or (kind == "BOOL" and not allow_bool):
            raise self.error(_PRIMITIVE if allow_bool else "an orderable literal (not a boolean)")
        self.i += 1
        return make(text)

    def set_literal(self) -> SetLiteral:
        self.expect("(", "'(' to start the set after IN")
        values: list[Literal] = []
        if self.toks[self.i][0] != ")":
            values.append(self.literal(True))
            while self.toks[self.i][0] == ",":
                self.i += 1
                values.append(self.literal(True))
        self.expect(")", "',' or ')' in the set")
        return SetLiteral(tuple(values))

    def object_path(self) -> tuple[str, tuple[PathStep, ...], bool]:
        """``type:first(.name | .'name' | [n] | [*])*``; also says if 'hashes' occurs."""
        toks, i = self.toks, self.i
        if toks[i][0] not in ("ID", "IDH"):
            raise self.error("an object path such as ipv4-addr:value, '(' or EXISTS")
        object_type = toks[i][1]
        if toks[i + 1][0] != ":":
            raise self.error("':' after the object type", i + 1)
        i += 2
        steps: list[PathStep] = []
        has_hashes = False
        while True:
            kind, text, _ = toks[i]
            if kind == "ID":
                name = text
            elif kind == "STR":
                name = _unescape(text[1:-1])
            else:
                raise self.error("a property name (identifier or quoted string)", i)
            has_hashes = has_hashes or name == "hashes"
            steps.append(PropertyStep(name))
            i += 1
            while toks[i][0] == "[":
                kind, text, offset = toks[i + 1]
                if kind == "INT+":
                    steps.append(IndexStep(int(text)))
                elif kind == "*":
                    steps.append(ANY_INDEX)
                elif kind == "INT-":
                    raise _fail(f"negative list index [{text}]; use [n] with n >= 0, or [*]",
                                offset)
                else:
                    raise self.error("a list index (n or *)", i + 1)
                if toks[i + 2][0] != "]":
                    raise self.error("']' to close the list index", i + 2)
                i += 3
            if toks[i][0] != ".":
                break
            i += 1
        self.i = i
        return object_type, tuple(steps), has_hashes


def _parse(text: str) -> Pattern:
    """The general path: tokenize, parse, then the reference's whole-pattern checks."""
    parser = _Parser(_tokenize(text))
    root = parser.followed_by(0)
    if parser.toks[parser.i][0] != "EOF":
        raise parser.error("'AND', 'OR', 'FOLLOWEDBY', a qualifier or the end of the pattern")
    if not _brackets_ok(text):
        raise _fail("a comment may not come before the first '['", 0)
    return Pattern(root)
