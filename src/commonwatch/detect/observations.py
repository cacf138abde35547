"""Observations as the reference matcher takes them, turned into :class:`Observed`.

STIX 2.1 (``stix_version="2.1"``): a list of bundles and/or bare objects; every
``observed-data`` is one observation made of the SCOs its ``object_refs`` name (found
anywhere in the input); an observed-data that still embeds the deprecated ``objects``
dictionary is read as in 2.0. STIX 2.0: a list of ``observed-data`` SDOs with embedded
``objects`` keyed by local ids ("0", "1", ...). Time span and count come from
``first_observed``, ``last_observed`` and ``number_observed`` (STIX 2.1 §4.13).

Patterns match SCOs only: in 2.1 a type the specification defines as an SDO or SRO
(``identity``, ``observed-data``, ...) selects nothing, as in the reference matcher.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from commonwatch.detect.evaluate import Observed
from commonwatch.domain.timestamps import parse_timestamp
from commonwatch.errors import InvalidParameter, InvalidStixObject

#: Types defined by STIX 2.1 as SDOs, SROs or meta objects: never pattern roots.
NON_SCO_TYPES = frozenset({
    "attack-pattern", "bundle", "campaign", "course-of-action", "extension-definition",
    "grouping", "identity", "incident", "indicator", "infrastructure", "intrusion-set",
    "language-content", "location", "malware", "malware-analysis", "marking-definition",
    "note", "observed-data", "opinion", "relationship", "report", "threat-actor", "tool",
    "sighting", "vulnerability",
})


def from_stix(observations: Sequence[Any], stix_version: str = "2.1") -> list[Observed]:
    """Read the reference matcher's input; InvalidStixObject names what is wrong."""
    if not isinstance(observations, list | tuple):
        raise InvalidParameter("observations must be a list of bundles or STIX objects")
    if stix_version == "2.0":
        return [_embedded(_as_dict(sdo), "2.0") for sdo in observations]
    if stix_version != "2.1":
        raise InvalidParameter(f"stix_version must be '2.0' or '2.1', not {stix_version!r}")
    pool: list[dict[str, Any]] = []
    for item in observations:
        item = _as_dict(item)
        if item.get("type") == "bundle" or ("objects" in item and "type" not in item):
            objects = item.get("objects")
            if not isinstance(objects, list):
                raise InvalidStixObject("a bundle's 'objects' must be a list", item.get("id"))
            pool.extend(_as_dict(o) for o in objects)
        else:
            pool.append(item)
    by_id: dict[str, dict[str, Any]] = {}
    for obj in pool:
        oid = obj.get("id")
        if not isinstance(oid, str) or not isinstance(obj.get("type"), str):
            raise InvalidStixObject("every STIX 2.1 object needs a string 'type' and 'id'")
        by_id[oid] = obj
    found = []
    for obj in by_id.values():
        if obj["type"] != "observed-data":
            continue
        if "object_refs" not in obj and isinstance(obj.get("objects"), dict):
            found.append(_embedded(obj, "2.1"))
            continue
        refs = obj.get("object_refs")
        if not isinstance(refs, list):
            raise InvalidStixObject("observed-data needs 'object_refs' (a list of SCO ids)", obj["id"])
        scos = {r: by_id[r] for r in refs if isinstance(r, str) and r in by_id
                and by_id[r].get("type") not in NON_SCO_TYPES}
        found.append(_observed(obj, scos))
    return found


def _as_dict(item: Any) -> dict[str, Any]:
    if not isinstance(item, dict):
        raise InvalidStixObject(f"expected a STIX object (a JSON object), got {type(item).__name__}")
    return item


def _embedded(sdo: dict[str, Any], version: str) -> Observed:
    objects = sdo.get("objects")
    if not isinstance(objects, dict) or not all(isinstance(o, dict) for o in objects.values()):
        raise InvalidStixObject(f"STIX {version} observed-data needs 'objects', a dictionary of "
                                "cyber-observable objects", sdo.get("id"))
    scos = {k: o for k, o in objects.items() if not (version == "2.1" and o.get("type") in NON_SCO_TYPES)}
    return _observed(sdo, scos)


def _observed(sdo: dict[str, Any], scos: dict[str, dict[str, Any]]) -> Observed:
    sid = sdo.get("id")
    missing = [k for k in ("number_observed", "first_observed", "last_observed") if k not in sdo]
    if missing:
        raise InvalidStixObject(f"observed-data lacks {', '.join(missing)} (STIX 2.1 §4.13)", sid)
    count = sdo["number_observed"]
    if type(count) is not int or count < 1:
        raise InvalidStixObject(f"observed-data 'number_observed' must be an integer >= 1, "
                                f"not {count!r}", sid)
    try:
        first, last = parse_timestamp(sdo["first_observed"]), parse_timestamp(sdo["last_observed"])
    except ValueError as exc:
        raise InvalidStixObject(f"observed-data time span: {exc}", sid) from None
    if last < first:
        raise InvalidStixObject("observed-data 'last_observed' is earlier than 'first_observed'", sid)
    return Observed(objects=scos, first_us=first, last_us=last, count=count)
