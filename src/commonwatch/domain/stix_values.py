"""The checks that the kinds and constraints of :mod:`commonwatch.domain.stix_types` name.

Value checks for the STIX 2.1 data types (§2: strings, lists, numbers, enumerations,
identifiers and references §2.9, dictionaries §2.3, hashes §2.7, extensions §7.3),
the rules for custom content (§11.1), and the cross-property rules (required
properties, "at least one of"...) that the tables attach to types. Embedded types
(external references, kill-chain phases, granular markings) are tables too:
:mod:`commonwatch.domain.stix` compiles them from these parts.

A check is a closure or function that returns ``None`` or raises :class:`Reject`;
``validate_object`` turns that into :class:`~commonwatch.errors.InvalidStixObject`.
Every check here runs on the hot path of every write: type tests are ``type(x) is``,
regexes are precompiled ``fullmatch`` methods, and valid identifiers and property
names are memoised in bounded dicts that are cleared, never rebound, because
``stix.py`` imports them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Any

from commonwatch.domain import stix_types as T
from commonwatch.domain.timestamps import TS_CACHE, parse_timestamp

__all__ = [
    "ID_TYPES", "MAX_DEPTH", "MEMO_MAX", "NOT_SCO", "RULE_MAKERS", "SIMPLE", "TYPE_RE", "Check",
    "NestedTooDeeply", "ObjCheck", "Reject", "check_custom", "check_nested", "check_str_list",
    "enum_check", "extensions_check",
    "fail", "id_type", "list_check", "match_lang_tag", "number_check", "prefix", "ref_check",
    "refs_check", "required_rule", "show", "specific_rule",
]

Check = Callable[[Any], None]
ObjCheck = Callable[[dict[str, Any]], None]

MEMO_MAX = 8192  # entries per memo dict; reaching it clears the dict


# --- Failures ------------------------------------------------------------------------


class Reject(Exception):
    """Internal: a rule failed. ``path`` is relative to the value being checked and
    grows while the exception unwinds (``"[0].source_name"``)."""

    def __init__(self, rule: str, path: str = "") -> None:
        super().__init__(rule)
        self.rule = rule
        self.path = path


def show(value: object) -> str:
    """A short JSON rendering of ``value`` for messages."""
    text = json.dumps(value, ensure_ascii=False, default=repr)
    return text if len(text) <= 80 else text[:77] + "..."


def fail(expected: str, value: object, path: str = "") -> Reject:
    return Reject(f"must be {expected}; got {show(value)}", path)


def prefix(exc: Reject, key: str) -> Reject:
    exc.path = key + ("." + exc.path if exc.path and exc.path[0] != "[" else exc.path)
    return exc


# --- Identifiers and references (STIX 2.1 §2.9) --------------------------------------

_ID_RE = re.compile(
    r"([a-z][a-z0-9]*(?:-[a-z0-9]+)*)--[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[1-5][0-9a-fA-F]{3}"
    r"-[89abAB][0-9a-fA-F]{3}-[0-9a-fA-F]{12}"
)
TYPE_RE = re.compile(r"[a-z][a-z0-9]*(?:-[a-z0-9]+)*")
ID_TYPES: dict[str, str] = {}
_ID_RULE = "an identifier '<type>--<RFC 4122 UUID>' (STIX 2.1 §2.9)"


def id_type(value: object) -> str:
    """The type part of a valid identifier; :class:`Reject` otherwise."""
    if type(value) is str:
        cached = ID_TYPES.get(value)
        if cached is not None:
            return cached
        match = _ID_RE.fullmatch(value)
        if match is not None and 3 <= len(match[1]) <= 250:
            if len(ID_TYPES) >= MEMO_MAX:
                ID_TYPES.clear()
            ID_TYPES[value] = match[1]
            return match[1]
    raise fail(_ID_RULE, value)


_SDO_TYPES, _SCO_TYPES = frozenset(T.SDOS), frozenset(T.SCOS)
_SRO_TYPES, _SMO_TYPES = frozenset(T.SROS), frozenset(T.SMOS) | {"bundle"}
NOT_SCO = _SDO_TYPES | _SRO_TYPES | _SMO_TYPES
_CATEGORIES: dict[str, tuple[frozenset[str], str]] = {  # category -> (denied types, wording)
    T.ANY: (frozenset(), "an object"),
    T.SDO: (_SCO_TYPES | _SRO_TYPES | _SMO_TYPES, "an SDO (not an SCO, SRO or meta object)"),
    T.SCO: (NOT_SCO, "an SCO"),
    T.NODE: (_SRO_TYPES | _SMO_TYPES, "an SDO or SCO (not an SRO, bundle or meta object)"),
    T.SCO_OR_SRO: (_SDO_TYPES | _SMO_TYPES, "an SCO or SRO"),
}


def _ref_rule(allowed: frozenset[str]) -> tuple[frozenset[str], bool, str]:
    """``(types, positive, wording)``: a type is fine iff ``(t in types) == positive``."""
    for category, (denied, wording) in _CATEGORIES.items():
        if category in allowed:
            return denied, False, wording
    names = sorted(allowed)
    listed = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]
    return allowed, True, ("an " if listed[0] in "aeiou" else "a ") + listed


def ref_check(allowed: frozenset[str]) -> Check:
    types, positive, wording = _ref_rule(allowed)

    def check(value: Any) -> None:
        if (id_type(value) in types) != positive:
            raise Reject(f"must reference {wording}; got {show(value)}")

    return check


def refs_check(allowed: frozenset[str]) -> Check:
    types, positive, wording = _ref_rule(allowed)
    get = ID_TYPES.get

    def check(value: Any) -> None:
        if type(value) is list and value:
            for item in value:  # fast path: every id already known
                kind = get(item) if type(item) is str else None
                if kind is None or (kind in types) != positive:
                    break
            else:
                return
        elif type(value) is not list or not value:
            raise fail("a non-empty list of identifiers", value)
        for index, item in enumerate(value):
            try:
                if (id_type(item) in types) != positive:
                    raise Reject(f"must reference {wording}; got {show(item)}")
            except Reject as exc:
                raise prefix(exc, f"[{index}]") from None

    return check


# --- Value checks (STIX 2.1 §2) ------------------------------------------------------


def _check_str(value: Any) -> None:
    if type(value) is not str:
        raise fail("a string", value)


def _check_text(value: Any) -> None:
    if type(value) is not str or not value:
        raise fail("a non-empty string", value)


def _check_bool(value: Any) -> None:
    if type(value) is not bool:
        raise fail("true or false", value)


def _check_ts(value: Any) -> None:
    if type(value) is not str or value not in TS_CACHE:
        try:
            parse_timestamp(value)
        except ValueError as exc:
            raise Reject(f"must be a STIX timestamp (STIX 2.1 §2.15): {exc}") from None


def _check_ts_ms(value: Any) -> None:
    if type(value) is not str or len(value) < 24 or value not in TS_CACHE:
        _check_ts(value)
        if len(value) < 24:  # 'YYYY-MM-DDTHH:MM:SS' '.sss' 'Z'
            raise fail("precise to at least the millisecond (STIX 2.1 §3.2)", value)


def check_str_list(value: Any) -> None:
    if type(value) is not list or not value:
        raise fail("a non-empty list of strings (STIX 2.1 §2.12)", value)
    for index, item in enumerate(value):
        if type(item) is not str:
            raise fail("a string", item, f"[{index}]")


def list_check(inner: Check) -> Check:
    def check(value: Any) -> None:
        if type(value) is not list or not value:
            raise fail("a non-empty list (STIX 2.1 §2.12)", value)
        for index, item in enumerate(value):
            try:
                inner(item)
            except Reject as exc:
                raise prefix(exc, f"[{index}]") from None

    return check


def _regex_check(regex: str, expected: str) -> Check:
    fullmatch = re.compile(regex).fullmatch

    def check(value: Any) -> None:
        if type(value) is not str or fullmatch(value) is None:
            raise fail(expected, value)

    return check


def number_check(low: float | None, high: float | None, integer: bool) -> Check:
    kinds = (int,) if integer else (int, float)
    expected = "an integer" if integer else "a number"
    if high is None:
        expected += "" if low is None else f" >= {low}"
    else:
        expected += f" <= {high}" if low is None else f" from {low} to {high}"

    def check(value: Any) -> None:
        if (
            type(value) not in kinds
            or (low is not None and value < low)
            or (high is not None and value > high)
        ):
            raise fail(expected, value)

    return check


def enum_check(values: frozenset[str]) -> Check:
    listed = ", ".join(sorted(values))

    def check(value: Any) -> None:
        if type(value) is not str or value not in values:
            raise fail(f"one of {listed}", value)

    return check


_DICT_KEY = re.compile(r"[a-zA-Z0-9_-]{1,250}").fullmatch
_HASH_KEY = re.compile(r"[a-zA-Z0-9_-]{3,250}").fullmatch
_HEX = re.compile(r"[0-9a-fA-F]*").fullmatch
_LANG_TAG = r"[A-Za-z]{1,8}(?:-[A-Za-z0-9]{1,8})*"  # RFC 5646 syntax, not its registry
match_lang_tag = re.compile(_LANG_TAG).fullmatch
_KEY_RULE = "must be {} characters of a-z, A-Z, 0-9, '-' and '_'; got {}"


def _check_dict(value: Any) -> None:
    """A dictionary (STIX 2.1 §2.3): non-empty, keys of [a-zA-Z0-9_-]{1,250}."""
    if type(value) is not dict or not value:
        raise fail("a non-empty JSON object (STIX 2.1 §2.3)", value)
    for key in value:
        if _DICT_KEY(key) is None:
            raise Reject("key " + _KEY_RULE.format("1-250", show(key)))
    _walk(value)


def _check_hashes(value: Any) -> None:
    """Hashes (STIX 2.1 §2.7): keys of 3-250 characters; hex of the right length for
    the fixed-size algorithms of hash-algorithm-ov."""
    if type(value) is not dict or not value:
        raise fail("a non-empty JSON object of hashes (STIX 2.1 §2.7)", value)
    for key, digest in value.items():
        if _HASH_KEY(key) is None:
            raise Reject("key " + _KEY_RULE.format("3-250", show(key)))
        length = T.HASH_HEX_LENGTHS.get(key)
        if type(digest) is not str:
            raise fail("a string", digest, key)
        if length is not None and (len(digest) != length or _HEX(digest) is None):
            raise fail(f"{length} hex digits", digest, key)


def extensions_check(predefined: Mapping[str, Check]) -> Check:
    """Extensions (STIX 2.1 §7.3; predefined SCO extensions of §6).

    ``predefined`` maps the reserved extension names to their checks; it is read at
    call time, so ``stix.py`` can fill it after compiling those tables with this check.
    """

    def check(value: Any) -> None:
        if type(value) is not dict or not value:
            raise fail("a non-empty JSON object of extensions", value)
        for key, extension in value.items():
            try:
                if type(extension) is not dict or not extension:
                    raise fail("a non-empty JSON object", extension)
                if key.startswith("extension-definition--"):
                    if id_type(key) != "extension-definition":
                        raise fail("an extension-definition identifier", key)
                    kind = extension.get("extension_type", "property-extension")
                    if type(kind) is not str or kind not in T.EXTENSION_TYPES:
                        kinds = ", ".join(sorted(T.EXTENSION_TYPES))
                        raise fail(f"one of {kinds}", kind, "extension_type")
                    _walk(extension)
                elif _DICT_KEY(key) is None:
                    raise Reject(_KEY_RULE.format("an extension-definition id or 1-250", show(key)))
                else:
                    predefined.get(key, _walk)(extension)
            except Reject as exc:
                raise prefix(exc, key) from None

    return check


def _check_observed_objects(value: Any) -> None:
    """Deprecated observed-data ``objects`` (§4.14): 2.0-style and kept opaque, because
    its references are local keys, not identifiers."""
    if type(value) is not dict or not value:
        raise fail("a non-empty JSON object of observables", value)
    for key, item in value.items():
        if type(item) is not dict or TYPE_RE.fullmatch(str(item.get("type"))) is None:
            raise fail("an observable object with a valid 'type'", item, key)


# --- Custom content: names (§11.1) and references at any depth -----------------------

_PROP_NAME = re.compile(r"[a-z0-9_]{3,250}").fullmatch
_GOOD_NAMES: set[str] = set()


#: How deep custom content may nest objects and arrays. JSON decoders stop far deeper
#: (orjson at 1,024 levels), but the stored JSON is written by orjson, which stops at 255.
MAX_DEPTH = 200


class NestedTooDeeply(Exception):
    """Custom content nests objects and arrays more than :data:`MAX_DEPTH` levels deep."""


def check_nested(name: str, value: Any, depth: int = 0) -> None:
    """A key no table defines: ``*_ref``/``*_refs`` must hold identifiers."""
    if name.endswith("_ref"):
        id_type(value)
    elif name.endswith("_refs"):
        _ANY_REFS(value)
    elif type(value) is dict or type(value) is list:
        _walk(value, depth + 1)


def check_custom(name: str, value: Any) -> None:
    """A top-level custom property (STIX 2.1 §11.1)."""
    if name not in _GOOD_NAMES:
        if _PROP_NAME(name) is None:
            raise Reject(
                "is not a valid property name: custom properties are 3-250 characters "
                "of a-z, 0-9 and '_' (STIX 2.1 §11.1)"
            )
        if len(_GOOD_NAMES) < MEMO_MAX:
            _GOOD_NAMES.add(name)
    check_nested(name, value)


def _walk(value: Any, depth: int = 1) -> None:
    """Check the ``*_ref``/``*_refs`` keys inside nested custom content: ``value`` is
    an object or an array, the ``depth``-th level of its property's content."""
    if depth > MAX_DEPTH:
        raise NestedTooDeeply
    if type(value) is dict:
        for key, item in value.items():
            try:
                check_nested(key, item, depth)
            except Reject as exc:
                raise prefix(exc, key) from None
    elif type(value) is list:
        for index, item in enumerate(value):
            if type(item) is not dict and type(item) is not list:
                continue
            try:
                _walk(item, depth + 1)
            except Reject as exc:
                raise prefix(exc, f"[{index}]") from None


def _skip(value: Any) -> None:
    """type, id and spec_version are checked before the property loop."""


# --- The simple kinds of stix_types ('extensions' is added by stix.py) ---------------

SIMPLE: dict[str, Check] = {
    "skip": _skip,
    "str": _check_str,
    "text": _check_text,
    "bool": _check_bool,
    "ts": _check_ts,
    "ts_ms": _check_ts_ms,
    "dict": _check_dict,
    "hashes": _check_hashes,
    "observed_objects": _check_observed_objects,
    "lang": _regex_check(_LANG_TAG, "an RFC 5646 language tag"),
    "hex": _regex_check(r"(?:[0-9a-fA-F]{2})+", "hex digits, two per octet (STIX 2.1 §2.8)"),
    "binary": _regex_check(
        r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?",
        "base64 (RFC 4648, STIX 2.1 §2.1)",
    ),
    "mac": _regex_check(
        r"[0-9a-f]{2}(?::[0-9a-f]{2}){5}",
        "a lower-case colon-delimited MAC-48 address like '00:0a:95:9d:68:16' (STIX 2.1 §6.10)",
    ),
    "reltype": _regex_check(r"[a-z0-9-]+", "lower-case ASCII a-z, 0-9 and '-' (STIX 2.1 §5.1)"),
}
_ANY_REFS = refs_check(frozenset({T.ANY}))


# --- Cross-property rules (the constraints of stix_types) ---------------------------


def required_rule(names: tuple[str, ...]) -> ObjCheck:
    wanted = frozenset(names)

    def check(obj: dict[str, Any]) -> None:
        if not obj.keys() >= wanted:  # one C-level pass in the common case
            raise Reject("is required", next(name for name in names if name not in obj))

    return check


def _order(earlier: str, later: str, strict: bool) -> ObjCheck:
    wording = "must be later than" if strict else "must not be earlier than"

    def check(obj: dict[str, Any]) -> None:
        first, last = obj.get(earlier), obj.get(later)
        if first is None or last is None or (first == last and not strict):
            return
        start, end = parse_timestamp(first), parse_timestamp(last)
        if end < start or (strict and end == start):
            raise Reject(f"{wording} '{earlier}' ({first}); got {last}", later)

    return check


def _any_of(*groups: tuple[str, ...]) -> ObjCheck:
    listed = " or ".join("+".join(f"'{name}'" for name in group) for group in groups)
    singles = frozenset(group[0] for group in groups if len(group) == 1)
    combined = [frozenset(group) for group in groups if len(group) > 1]

    def check(obj: dict[str, Any]) -> None:
        if singles.isdisjoint(obj) and not any(obj.keys() >= group for group in combined):
            raise Reject(f"must have at least one of {listed}")

    return check


def _not_both(first: str, second: str) -> ObjCheck:
    def check(obj: dict[str, Any]) -> None:
        if first in obj and second in obj:
            raise Reject(f"must not be present together with '{first}'", second)

    return check


def _requires(name: str, needed: tuple[str, ...]) -> ObjCheck:
    def check(obj: dict[str, Any]) -> None:
        if name in obj:
            for other in needed:
                if other not in obj:
                    raise Reject(f"is required when '{name}' is present", other)

    return check


def _when(name: str, value: bool, verb: str, other: str) -> ObjCheck:
    rule = f"{'must not be present' if verb == 'forbids' else 'is required'} when '{name}' is "

    def check(obj: dict[str, Any]) -> None:
        found = obj.get(name)
        if type(found) is bool and found == value and (other in obj) == (verb == "forbids"):
            raise Reject(rule + json.dumps(value), other)

    return check


def specific_rule(own: frozenset[str]) -> ObjCheck:
    def check(obj: dict[str, Any]) -> None:
        if "extensions" not in obj and own.isdisjoint(obj):
            raise Reject("must have at least one property of its own type or an extension")

    return check


RULE_MAKERS: dict[str, Callable[..., ObjCheck]] = {
    "order": _order,
    "any_of": _any_of,
    "not_both": _not_both,
    "requires": _requires,
    "when": _when,
}

