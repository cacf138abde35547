"""STIX 2.1 object validation, run on every write to the exchange.

:func:`validate_object` enforces the MUST rules of STIX Version 2.1 (OASIS Standard,
§2-7 and §11) on one object and returns the :class:`StixMeta` that storage indexes.
SHOULD rules are never enforced: the exchange refuses only what the standard forbids.
The value checks live in :mod:`commonwatch.domain.stix_values`, timestamps in
:mod:`commonwatch.domain.timestamps` (re-exported here); this module compiles the
per-type tables, holds the rules that need code and dispatches on ``type``.

The hot path is designed for >= 20,000 objects/s including the database insert: the
tables of :mod:`commonwatch.domain.stix_types` are compiled once, at import, into one
closure per property, so an object costs one dict lookup and one call per property.
Valid identifiers, timestamps and custom property names are memoised in bounded dicts
because the same ``created_by_ref``, marking ids and timestamps recur across a feed.

Decisions where the standard leaves room:

* ``created``/``modified`` need at least millisecond precision (§3.2, a MUST); other
  timestamps may have 0-9 fraction digits.
* UUIDs as in the official JSON schema: RFC 4122 versions 1-5, variant ``10xx``, hex
  digits of either case (RFC 4122 §3: case-insensitive on input).
* An object without ``spec_version`` is STIX 2.0 unless it is an SCO (§3.2); 2.0
  objects are refused with a pointer to the coming 2.0 importer.
* Unknown (custom) types are SDO-like when they carry ``created`` or ``modified`` and
  SCO-like otherwise, and get that category's common-property rules.
* A marking-definition with one of the four predefined TLP ids must be that predefined
  definition, and ``definition_type: "tlp"`` is reserved to them (§7.2.1.4). Likewise
  the OASIS TLP 2.0 extension is reserved to the five TLP 2.0 marking-definitions
  OASIS published, each with its own level: a marking that reads as TLP but is not
  one of the nine would be taken for no TLP at all (ids compare without regard to the
  case of their hex digits).
* Custom properties: top-level names match ``[a-z0-9_]{3,250}`` (§11.1); keys ending
  in ``_ref``/``_refs`` hold identifiers at any depth; values are otherwise free.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from commonwatch.domain import stix_types as T
from commonwatch.domain.markings import TLP2_EXTENSION_ID, TLP2_IDS, TLP2_NAMES
from commonwatch.domain.patterns import object_types, parse_pattern
from commonwatch.domain.stix_values import (
    ID_TYPES,
    MAX_DEPTH,
    MEMO_MAX,
    NOT_SCO,
    RULE_MAKERS,
    SIMPLE,
    TYPE_RE,
    Check,
    NestedTooDeeply,
    ObjCheck,
    Reject,
    check_custom,
    check_nested,
    check_str_list,
    enum_check,
    extensions_check,
    fail,
    id_type,
    list_check,
    match_lang_tag,
    number_check,
    prefix,
    ref_check,
    refs_check,
    required_rule,
    show,
    specific_rule,
)
from commonwatch.domain.timestamps import TS_CACHE, format_timestamp, parse_timestamp
from commonwatch.errors import InvalidPattern, InvalidStixObject

__all__ = ["StixMeta", "format_timestamp", "parse_timestamp", "validate_object"]


@dataclass(init=False, slots=True)
class StixMeta:
    """What storage indexes about a validated object, all taken from the object.

    One is made per posted object, so it is not frozen and its ``__init__`` is written
    out (see ``tools/native.py``). Nothing changes one after validation.
    """

    id: str
    type: str
    spec_version: str  # always "2.1"
    created_us: int | None  # µs since the epoch (UTC); None where the type has none (SCOs)
    modified_us: int | None  # None for SCOs and marking-definitions (never versioned)
    marking_refs: frozenset[str]  # object_marking_refs ∪ granular_markings[].marking_ref
    created_by_ref: str | None

    def __init__(self, id: str, type: str, spec_version: str, created_us: int | None,  # noqa: A002
                 modified_us: int | None, marking_refs: frozenset[str], created_by_ref: str | None) -> None:
        self.id = id
        self.type = type
        self.spec_version = spec_version
        self.created_us = created_us
        self.modified_us = modified_us
        self.marking_refs = marking_refs
        self.created_by_ref = created_by_ref


# --- Compiling the tables of stix_types ----------------------------------------------

# The predefined SCO extensions (§6) are compiled from the same tables as everything
# else, with the "extensions" check among them: that check gets this dict now, and the
# dict is filled below, once _compile exists.
_PREDEFINED: dict[str, Check] = {}
_SIMPLE: dict[str, Check] = {**SIMPLE, "extensions": extensions_check(_PREDEFINED)}


def _compile(kind: T.Kind) -> Check:
    """Turn one kind tuple of ``stix_types`` into its check."""
    tag = kind[0]
    if tag in _SIMPLE:
        return _SIMPLE[tag]
    if tag in ("int", "num"):
        return number_check(kind[1], kind[2], integer=tag == "int")
    if tag == "enum":
        return enum_check(kind[1])
    if tag == "ref":
        return ref_check(kind[1])
    if tag == "obj":
        return _obj_check(kind[1], kind[2], kind[3])
    if tag != "list":
        raise ValueError(f"unknown kind in stix_types: {kind!r}")
    inner = kind[1]
    if inner == T.STR:
        return check_str_list
    return refs_check(inner[1]) if inner[0] == "ref" else list_check(_compile(inner))


def _obj_check(
    props: Mapping[str, T.Kind], required: tuple[str, ...], constraints: tuple[T.Constraint, ...]
) -> Check:
    """An embedded type: its properties, required ones and rules, as one check."""
    rules = {name: _compile(kind) for name, kind in props.items()}
    checks = _constraints(constraints, props, required)

    def check(value: Any) -> None:
        if type(value) is not dict:
            raise fail("a JSON object", value)
        _check_props(value, rules, check_nested)
        for rule in checks:
            rule(value)

    return check


def _check_props(
    value: dict[str, Any], rules: Mapping[str, Check], custom: Callable[[str, Any], None]
) -> None:
    """Run each property's rule; ``custom`` handles the properties ``rules`` lacks."""
    name = ""
    try:
        for name, item in value.items():
            rule = rules.get(name)
            if rule is None:
                custom(name, item)
            else:
                rule(item)
    except Reject as exc:
        raise prefix(exc, name) from None


def _constraints(
    constraints: tuple[T.Constraint, ...], props: Mapping[str, T.Kind], required: tuple[str, ...]
) -> tuple[ObjCheck, ...]:
    """Compile required properties and cross-property rules into object checks."""
    checks = [required_rule(required)] if required else []
    for tag, *args in constraints:
        if tag == "hook":
            checks.append(_HOOKS[args[0]])
        elif tag == "specific":
            checks.append(specific_rule(frozenset(props) - frozenset(T.SCO_COMMON)))
        else:
            checks.append(RULE_MAKERS[tag](*args))
    return tuple(checks)


# --- Rules that need code (the "hook" constraints of stix_types) ---------------------

def _hook_pattern(obj: dict[str, Any]) -> None:
    """An indicator ``pattern`` must parse when ``pattern_type`` is ``stix`` (§4.7, §9),
    and test objects by STIX type names (lower case, §2.9: ``IPv4-Addr`` names no type);
    other pattern languages (sigma, snort, yara...) only need a non-empty string."""
    if obj["pattern_type"] != "stix":
        return
    try:
        parsed = parse_pattern(obj["pattern"])
    except InvalidPattern as exc:
        rule = f"is not valid STIX patterning (STIX 2.1 §9): {exc.message}"
        raise Reject(rule, "pattern") from None
    for stype in object_types(parsed.root):
        if stype not in T.ALL_TYPES and (TYPE_RE.fullmatch(stype) is None or not 3 <= len(stype) <= 250):
            raise Reject(
                f"names the object type {show(stype)}, which is not a STIX type name: 3-250 "
                "characters of lower-case a-z, 0-9 and hyphens (STIX 2.1 §2.9, §9.1)", "pattern")


def _hook_observed_sco(obj: dict[str, Any]) -> None:
    """observed-data ``object_refs`` MUST contain at least one SCO reference (§4.14)."""
    refs = obj.get("object_refs")
    if refs is not None and all(id_type(ref) in NOT_SCO for ref in refs):
        raise Reject("must contain at least one SCO reference (STIX 2.1 §4.14)", "object_refs")


def _check_tlp2(obj: dict[str, Any]) -> None:
    """The TLP 2.0 extension only on the five TLP 2.0 definitions, each with its level."""
    extensions = obj.get("extensions")
    keys = {key.lower(): key for key in extensions} if type(extensions) is dict else {}
    level = TLP2_IDS.get(obj["id"].lower())
    if level is None and TLP2_EXTENSION_ID in keys:
        raise Reject(
            f"must not hold the TLP 2.0 extension ({TLP2_EXTENSION_ID}): it is reserved to the "
            "five TLP 2.0 marking definitions published by OASIS; reference one of those instead",
            "extensions",
        )
    if level is None:
        return
    found = extensions.get(keys[TLP2_EXTENSION_ID]) if TLP2_EXTENSION_ID in keys else None  # type: ignore[union-attr]
    if type(found) is not dict or found.get("tlp_2_0") != TLP2_NAMES[level]:
        raise Reject(
            f'must hold the TLP 2.0 extension with "tlp_2_0": "{TLP2_NAMES[level]}": this id is '
            f"the {level.label} marking definition published by OASIS", "extensions",
        )


def _hook_marking_definition(obj: dict[str, Any]) -> None:
    """``definition_type``+``definition`` unless ``extensions`` (§7.2.1); TLP 1.0 is
    the four predefined definitions only (§7.2.1.4); no self-marking."""
    if "extensions" not in obj:
        for name in ("definition_type", "definition"):
            if name not in obj:
                raise Reject("is required unless 'extensions' is present (STIX 2.1 §7.2.1)", name)
    kind, definition = obj.get("definition_type"), obj.get("definition")
    _check_tlp2(obj)
    level = T.TLP_MARKINGS.get(obj["id"].lower())
    if level is not None and (kind != "tlp" or definition != {"tlp": level}):
        raise Reject(
            f'must be {{"tlp": "{level}"}} with definition_type "tlp": this id is the '
            f"predefined TLP:{level.upper()} marking definition (STIX 2.1 §7.2.1.4)",
            "definition",
        )
    if level is not None and obj != T.TLP_DEFINITIONS[obj["id"].lower()]:
        expected = T.TLP_DEFINITIONS[obj["id"].lower()]
        name = next(k for k in sorted(expected.keys() | obj.keys()) if obj.get(k) != expected.get(k))
        want = f"must be {show(expected[name])}" if name in expected else "must not be present"
        raise Reject(
            f"{want}: this id is the predefined TLP:{level.upper()} marking definition, which "
            "STIX 2.1 §7.2.1.4 gives exactly (send it as published, or leave it out: every "
            "server knows it)", name,
        )
    if kind == "tlp" and level is None:
        raise Reject(
            'must not be "tlp": that type is reserved to the four predefined TLP marking '
            "definitions (STIX 2.1 §7.2.1.4); reference one of those instead",
            "definition_type",
        )
    if kind == "statement" and (
        type(definition) is not dict or type(definition.get("statement")) is not str
    ):
        raise Reject("must have a string 'statement' (STIX 2.1 §7.2.1.3)", "definition")
    granular = obj.get("granular_markings", ())
    if obj["id"] in obj.get("object_marking_refs", ()) or any(
        item.get("marking_ref") == obj["id"] for item in granular
    ):
        raise Reject("must not mark the marking definition with itself", "object_marking_refs")


def _hook_extension_properties(obj: dict[str, Any]) -> None:
    """``extension_properties`` only with a toplevel-property-extension (§7.3)."""
    if "extension_properties" in obj and (
        "toplevel-property-extension" not in obj["extension_types"]
    ):
        raise Reject(
            "may only be present when 'extension_types' contains "
            "'toplevel-property-extension' (STIX 2.1 §7.3)",
            "extension_properties",
        )


def _hook_contents(obj: dict[str, Any]) -> None:
    """language-content ``contents``: language tag -> translated properties (§7.1)."""
    for tag, translations in obj["contents"].items():
        if match_lang_tag(tag) is None:
            raise Reject(f"key {show(tag)} must be an RFC 5646 language tag", "contents")
        if type(translations) is not dict or not translations:
            raise fail("a non-empty JSON object", translations, f"contents.{tag}")


_HOOKS: dict[str, ObjCheck] = {
    "pattern": _hook_pattern,
    "observed_sco": _hook_observed_sco,
    "marking_definition": _hook_marking_definition,
    "extension_properties": _hook_extension_properties,
    "contents": _hook_contents,
}


def _selects(obj: dict[str, Any], selector: str) -> bool:
    """Whether a granular-marking selector points at content of ``obj`` (§7.2.3.1)."""
    node: Any = obj
    for step in selector.split("."):
        index = step[1:-1] if step[:1] == "[" and step[-1:] == "]" else None
        if index is not None and index.isascii() and index.isdigit() and type(node) is list:
            if int(index) >= len(node):
                return False
            node = node[int(index)]
        elif index is None and type(node) is dict and step in node:
            node = node[step]
        else:
            return False
    return True


def _check_selectors(obj: dict[str, Any]) -> None:
    for index, marking in enumerate(obj["granular_markings"]):
        for selector in marking["selectors"]:
            if not _selects(obj, selector):
                raise Reject(
                    f"selector {show(selector)} does not point at content of this object "
                    "(STIX 2.1 §7.2.3.1)",
                    f"granular_markings[{index}].selectors",
                )


# --- validate_object -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Compiled:
    rules: dict[str, Check]
    checks: tuple[ObjCheck, ...]
    versioned: bool  # spec_version required: everything but SCOs (§3.2)
    created: bool
    modified: bool
    creator: bool


def _compile_spec(spec: T.TypeSpec) -> _Compiled:
    return _Compiled(
        rules={name: _compile(kind) for name, kind in spec.props.items()},
        checks=_constraints(spec.constraints, spec.props, spec.required),
        versioned=spec.category != "sco",
        created="created" in spec.props,
        modified="modified" in spec.props,
        creator="created_by_ref" in spec.props,
    )


_PREDEFINED.update((n, _compile(k)) for n, k in T.PREDEFINED_EXTENSIONS.items())
_SPECS: dict[str, _Compiled] = {n: _compile_spec(s) for n, s in T.ALL_TYPES.items()}
_CUSTOM_SDO = _compile_spec(T.CUSTOM_SDO)
_CUSTOM_SCO = _compile_spec(T.CUSTOM_SCO)


def is_versioned(obj: Mapping[str, Any]) -> bool:
    """Whether ``obj``'s type has the common properties of versioned objects
    (``created``, ``modified``, ``revoked``, ``confidence``...): every type but SCOs
    (§3.2), custom types when they carry ``created`` or ``modified``. An SCO's property
    of one of those names is a custom property, with none of their meaning."""
    stype = obj.get("type")
    spec = _SPECS.get(stype) if type(stype) is str else None
    if spec is None:
        return "created" in obj or "modified" in obj
    return spec.versioned


def _custom_spec(obj: dict[str, Any], stype: object) -> _Compiled:
    """Rules for a type the tables do not know, or :class:`InvalidStixObject`."""
    oid = obj.get("id") if type(obj.get("id")) is str else None
    if stype is None:
        raise InvalidStixObject("'type' is required in every STIX object (STIX 2.1 §3.2)", oid)
    if stype == "bundle":
        raise InvalidStixObject(
            "a bundle is not a STIX object: send the objects of its 'objects' list instead "
            "(STIX 2.1 §8)",
            oid,
        )
    if type(stype) is not str or not 3 <= len(stype) <= 250 or TYPE_RE.fullmatch(stype) is None:
        raise InvalidStixObject(
            "'type' must be 3-250 characters of a-z, 0-9 and single hyphens, starting with a "
            f"letter and not ending with '-' (STIX 2.1 §3.2, §11.2); got {show(stype)}",
            oid,
        )
    return _CUSTOM_SDO if "created" in obj or "modified" in obj else _CUSTOM_SCO


def _check_spec_version(value: object, spec: _Compiled) -> None:
    if value is None and not spec.versioned:
        return  # an SCO: spec_version defaults to "2.1" (§3.2)
    if value is None or value == "2.0":
        why = "is missing, so STIX 2.1 §3.2 makes this a STIX 2.0 object" if value is None else (
            'is "2.0"'
        )
        raise Reject(
            f'{why}: CommonWatch stores STIX 2.1 only. Set "spec_version": "2.1" if the '
            "object already is STIX 2.1; convert STIX 2.0 content first (a 2.0 importer is "
            "coming)",
            "spec_version",
        )
    raise fail('"2.1"', value, "spec_version")


def validate_object(obj: object) -> StixMeta:
    """Check one STIX 2.1 object against the MUSTs of the standard; return its metadata.

    Raises:
        InvalidStixObject: the first rule the object breaks. The message names the
            type, the property (with its path inside the object) and the rule;
            ``object_id`` is the object's id when it has a string one.
    """
    if type(obj) is not dict:
        raise InvalidStixObject(f"a STIX object must be a JSON object; got {show(obj)}")
    stype: Any = obj.get("type")  # a str once a spec is found
    spec = _SPECS.get(stype) if type(stype) is str else None
    if spec is None:
        spec = _custom_spec(obj, stype)
    oid: Any = obj.get("id")  # a str of type stype once _check_own_id passes
    if type(oid) is not str or ID_TYPES.get(oid) != stype:
        _check_own_id(oid, stype)
    rules, name = spec.rules, ""
    try:
        version = obj.get("spec_version")
        if version != "2.1":
            _check_spec_version(version, spec)
        try:  # _check_props, inlined: this loop is the hot path
            for name, item in obj.items():
                rule = rules.get(name)
                if rule is None:
                    check_custom(name, item)
                else:
                    rule(item)
        except Reject as exc:
            raise prefix(exc, name) from None
        for check in spec.checks:
            check(obj)
        if "granular_markings" in obj:
            _check_selectors(obj)
    except Reject as exc:
        where = f" '{exc.path}'" if exc.path else ""
        raise InvalidStixObject(f"{stype}{where} {exc.rule}", oid) from None
    except (RecursionError, NestedTooDeeply):
        raise InvalidStixObject(f"{stype} is nested too deeply to validate (custom content may nest "
                                f"objects and arrays {MAX_DEPTH} levels deep)", oid) from None
    return _meta(obj, stype, oid, spec)


def _check_own_id(oid: object, stype: str) -> None:
    try:
        if id_type(oid) == stype:
            return
    except Reject:
        pass
    raise InvalidStixObject(
        f"{stype} 'id' must be '{stype}--<RFC 4122 UUID>' (STIX 2.1 §2.9); got {show(oid)}",
        oid if type(oid) is str else None,
    )


_NO_MARKINGS: frozenset[str] = frozenset()
_ONE_MARKING: dict[str, frozenset[str]] = {}


def _meta(obj: dict[str, Any], stype: str, oid: str, spec: _Compiled) -> StixMeta:
    created = obj.get("created") if spec.created else None
    modified = obj.get("modified") if spec.modified else None
    markings = obj.get("object_marking_refs")
    if "granular_markings" in obj:
        refs = {item["marking_ref"] for item in obj["granular_markings"] if "marking_ref" in item}
        marking_refs = frozenset(refs.union(markings or ()))
    elif not markings:
        marking_refs = _NO_MARKINGS
    elif len(markings) == 1:  # by far the most common case: one TLP marking
        marking_refs = _ONE_MARKING.get(markings[0]) or _one_marking(markings[0])
    else:
        marking_refs = frozenset(markings)
    cached = TS_CACHE.get  # both were parsed moments ago
    return StixMeta(oid, stype, "2.1",
                    None if created is None else cached(created) or parse_timestamp(created),
                    None if modified is None else cached(modified) or parse_timestamp(modified),
                    marking_refs, obj.get("created_by_ref") if spec.creator else None)


def _one_marking(ref: str) -> frozenset[str]:
    if len(_ONE_MARKING) >= MEMO_MAX:
        _ONE_MARKING.clear()
    result = _ONE_MARKING[ref] = frozenset((ref,))
    return result
