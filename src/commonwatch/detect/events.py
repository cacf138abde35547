"""Telemetry events as STIX observations: what an adapter declares, what the engine reads.

An adapter (``commonwatch.formats.telemetry``) turns a log line into a *record* (a
dict) and names its :class:`EventKind`: which record fields carry which STIX object
path (``Field``), and how to read the event time. From that one declaration come both

* the *probes* the index engine looks up — each field value under the path key of its
  target, e.g. ``('network-traffic:src_ref.value', '10.0.0.1')`` and
  ``('ipv4-addr:value', '10.0.0.1')`` — without building any object, and
* the full STIX observation (:func:`build_observation`) that the evaluator needs for
  the few candidates the index cannot decide alone.

Because both derive from the same declaration, a pattern path that an index probe
never sees is also absent from every built observation (tests/detect/test_engine.py
checks this on the real samples).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from commonwatch.detect.evaluate import Observed
from commonwatch.domain.pattern_ast import AnyIndexStep, Comparison, PropertyStep
from commonwatch.domain.patterns import parse_pattern
from commonwatch.errors import InvalidParameter

Record = dict[str, Any]
_ADDRESS_REFS = {"src_ref.value": "src_ref", "dst_ref.value": "dst_ref"}


def address_type(value: str) -> str:
    """The SCO type an address string becomes (the index relies on this exact rule)."""
    return "ipv6-addr" if ":" in value else "ipv4-addr"


@dataclass(frozen=True, slots=True)
class Field:
    """One record field and the STIX path (``type:path``) its value takes.

    ``keys`` walks nested dicts (``("dns", "rrname")``); ``get`` computes the value
    instead, from the record fields named in ``reads`` (key paths; a field that reads
    no more than those lets an adapter decode only what its fields read, see
    :attr:`read_paths`). A list value gives one object per element, unless the target
    ends in ``[*]`` (then it is one list property). ``network-traffic:src_ref.value``
    and ``dst_ref.value`` create the ipv4-addr/ipv6-addr object the reference points to.
    """

    target: str
    keys: tuple[str, ...] = ()
    get: Callable[[Record], Any] | None = None
    reads: tuple[tuple[str, ...], ...] = ()
    object_type: str = field(init=False)
    steps: tuple[str, ...] = field(init=False)
    list_property: bool = field(init=False)
    address_ref: str | None = field(init=False)
    address: bool = field(init=False)
    path_keys: tuple[str, ...] = field(init=False)
    object_types: frozenset[str] = field(init=False)

    def __post_init__(self) -> None:
        try:
            cmp = parse_pattern(f"[EXISTS {self.target}]").root.comparison  # type: ignore[union-attr]
        except Exception as exc:
            raise InvalidParameter(f"{self.target!r} is not a STIX object path") from exc
        assert isinstance(cmp, Comparison)
        otype, rest = cmp.object_type, cmp.path_text
        ref = _ADDRESS_REFS.get(rest) if otype == "network-traffic" else None
        steps = cmp.path
        listed = bool(steps) and isinstance(steps[-1], AnyIndexStep)
        names = steps[:-1] if listed else steps
        if not all(isinstance(s, PropertyStep) for s in names) or (ref is None and any(
                isinstance(s, PropertyStep) and s.name.endswith(("_ref", "_refs")) for s in names)):
            raise InvalidParameter(f"{self.target!r}: a field may set plain properties, a list "
                                   "property ending in [*], or network-traffic src_ref/dst_ref.value")
        address = ref is not None or (otype in ("ipv4-addr", "ipv6-addr") and rest == "value")
        keys: tuple[str, ...] = (f"{otype}:{rest}",) if ref else ()
        keys += ("ipv4-addr:value", "ipv6-addr:value") if address else (f"{otype}:{rest}",)
        set_ = object.__setattr__
        set_(self, "object_type", otype)
        set_(self, "steps", tuple(s.name for s in names if isinstance(s, PropertyStep)))
        set_(self, "list_property", listed)
        set_(self, "address_ref", ref)
        set_(self, "address", address)
        set_(self, "path_keys", keys)
        set_(self, "object_types", frozenset({otype, *(("ipv4-addr", "ipv6-addr") if address else ())}))

    @property
    def read_paths(self) -> tuple[tuple[str, ...], ...] | None:
        """The record key paths this field reads; None for a computed field that does not say."""
        if self.get is None:
            return (self.keys,)
        return self.reads or None

    def value(self, record: Record) -> Any:
        if self.get is not None:
            return self.get(record)
        v: Any = record
        for k in self.keys:
            if type(v) is not dict:
                return None
            v = v.get(k)
        return v


@dataclass(frozen=True, slots=True)
class EventKind:
    """One kind of log event (``suricata:dns``, ``zeek:conn``...): fields and time."""

    name: str
    fields: tuple[Field, ...]
    time_us: Callable[[Record], int | None]

    @property
    def object_types(self) -> frozenset[str]:
        return frozenset().union(*(f.object_types for f in self.fields))

    @property
    def path_keys(self) -> frozenset[str]:
        return frozenset(k for f in self.fields for k in f.path_keys)


def _present(v: Any) -> bool:
    return v is not None and v != "" and v != []


def build_observation(kind: EventKind, record: Record, default_us: int = 0,
                      types: frozenset[str] | None = None) -> Observed:
    """The STIX observation of one event: SCOs keyed by local ids, one instant.

    With ``types``, only the fields that make objects of those types are read: a pattern
    naming only those types evaluates the same on the smaller observation (a comparison
    reads objects of its own type and what their ``*_ref`` properties point to, and the
    only references a field makes, ``src_ref``/``dst_ref``, come with the address they
    point to from the same field).
    """
    objects: dict[str, dict[str, Any]] = {}
    singles: dict[str, dict[str, Any]] = {}

    def new(otype: str) -> dict[str, Any]:
        obj = {"type": otype, "id": f"{otype}--{len(objects)}"}
        objects[obj["id"]] = obj
        return obj

    def single(otype: str) -> dict[str, Any]:
        return singles[otype] if otype in singles else singles.setdefault(otype, new(otype))

    for f in kind.fields:
        if types is not None and types.isdisjoint(f.object_types):
            continue
        v = f.value(record)
        if not _present(v) or type(v) is dict:
            continue
        if f.address_ref is not None:
            if type(v) is str:
                single(f.object_type)[f.address_ref] = new(address_type(v))["id"]
                objects[single(f.object_type)[f.address_ref]]["value"] = v
            continue
        if f.address:
            for item in v if type(v) is list else [v]:
                if type(item) is str and item:
                    new(address_type(item))["value"] = item
        elif f.list_property:
            _put(single(f.object_type), f.steps, list(v) if type(v) is list else [v])
        elif type(v) is list:
            for item in v:
                if _present(item):
                    _put(new(f.object_type), f.steps, item)
        else:
            target = single(f.object_type)
            if _has(target, f.steps):  # a second value for the same property (alert with
                target = new(f.object_type)  # dns and http): a second object, never overwrite
            _put(target, f.steps, v)
    at = kind.time_us(record)
    at = default_us if at is None else at
    return Observed(objects=objects, first_us=at, last_us=at, count=1)


def _has(obj: dict[str, Any], steps: tuple[str, ...]) -> bool:
    for name in steps:
        if type(obj) is not dict or name not in obj:
            return False
        obj = obj[name]
    return True


def _put(obj: dict[str, Any], steps: tuple[str, ...], value: Any) -> None:
    for name in steps[:-1]:
        obj = obj.setdefault(name, {})
    obj[steps[-1]] = value


def probes(kind: EventKind, record: Record) -> list[tuple[str, Any]]:
    """Every (path key, value) the index engine may look up for this event (for tests)."""
    found = []
    for f in kind.fields:
        v = f.value(record)
        if not _present(v) or type(v) is dict:
            continue
        values = v if type(v) is list else [v]
        for item in values:
            if not _present(item) or type(item) in (dict, list):
                continue
            if f.address_ref is not None:
                if type(item) is str:
                    found += [(f.path_keys[0], item), (f"{address_type(item)}:value", item)]
            elif f.address:
                if type(item) is str:
                    found.append((f"{address_type(item)}:value", item))
            else:
                found.append((f.path_keys[0], item))
    return found
