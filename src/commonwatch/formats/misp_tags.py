"""How a MISP event says who may read what: its tags, distribution levels and organisations.

The converter of :mod:`commonwatch.formats.misp` and its parts (objects, galaxies,
sightings) decide every marking from these readers, so the rule that content is never
marked wider than its source is read in one place: tags in every shape MISP writes them
(MISP core format §2.8 Tag), their ``tlp:*`` levels and the labels the others become,
the ``distribution`` level (§2.2.1.14: 0-4, and 5 to inherit) with the TLP floor each
sets, and the organisations an event names (``Orgc``, a sighting's ``Organisation``) as
STIX 2.1 identities (§4.5). Beside them, the small readers every MISP block rests on:
uuids, MISP's boolean flags, and list blocks given as one bare entry.
"""

from __future__ import annotations

import re
import uuid as uuidlib
from typing import Any

from commonwatch.domain.markings import Tlp
from commonwatch.errors import InputError
from commonwatch.formats import observables as ob

TLP_TAGS = {"tlp:white": Tlp.CLEAR, "tlp:clear": Tlp.CLEAR, "tlp:green": Tlp.GREEN,
            "tlp:amber": Tlp.AMBER, "tlp:amber+strict": Tlp.AMBER_STRICT, "tlp:red": Tlp.RED}
DISTRIBUTION_FLOOR: dict[int, Tlp | None] = {0: Tlp.RED, 1: Tlp.AMBER, 2: Tlp.GREEN, 3: None}
SHARING_GROUP = 4
_TAG_KEYS = ("Tag", "EventTag", "AttributeTag")
_REJECT_SG = ("MISP distribution 4 (a sharing group) names organisations a community cannot "
              "express; not imported rather than shared wider")

_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}").fullmatch


def _uuid(value: Any) -> str | None:
    if value.__class__ is str and _CANONICAL_UUID(value):
        return str(value)
    try:
        return str(uuidlib.UUID(str(value)))
    except ValueError:
        return None


def _flag(value: Any) -> bool:
    return value is True or str(value).lower() in ("1", "true")


def _entries(block: Any) -> list[Any]:
    """A MISP block (tags, attributes, clusters, sightings...) as a list of its entries.

    MISP writes a list, but hand-made and converted events often give a single entry as a
    bare object or string; iterating that would walk its keys or characters instead.
    """
    if isinstance(block, list):
        return list(block)
    return [] if block is None or block in ("", {}) else [block]


def _tags(holder: dict[str, Any]) -> list[str]:
    """Tag names of an event, object or attribute, in every form MISP writes them.

    ``Tag: [{"name": ...}]`` (event views, feeds), bare names (hand-made events), and the
    REST API's ``EventTag`` / ``AttributeTag: [{"local": ..., "Tag": {"name": ...}}]``.
    A tag of no readable shape may hide a ``tlp:`` tag, so it is an error (its holder is
    rejected) rather than ignored, which would mark the content wider than its source.
    A local tag (``"local": 1``, or a ``local_only`` tag) is the importing organisation's
    own annotation, never synchronised beyond it: only a local TLP tag is kept (it can
    only narrow); the others never become labels or galaxies others read.
    """
    names: list[str] = []
    for key in _TAG_KEYS:
        block = holder.get(key)
        if block is None:
            continue
        if not isinstance(block, (list, dict, str)):
            raise InputError(f"{key!r} is {block!r}, not a list of tags: its TLP cannot be read, so this "
                             "is not imported rather than shared wider; give tags as [{\"name\": ...}]")
        for entry in _entries(block):
            local = False
            if key != "Tag" and isinstance(entry, dict) and "Tag" in entry:
                local, entry = _flag(entry.get("local")), entry["Tag"]
                if not isinstance(entry, (dict, str)):
                    raise InputError(f"a {key} entry holds {entry!r}, not a tag: its TLP cannot be read, so "
                                     "this is not imported rather than shared wider")
            if isinstance(entry, dict):
                local = local or _flag(entry.get("local")) or _flag(entry.get("local_only"))
                entry = entry.get("name")
            name = entry.strip() if isinstance(entry, str) else ""
            if name and (not local or _tlp_key(name) in TLP_TAGS):
                names.append(name)
    return names


def _tlp_key(tag: str) -> str:
    """A tag as looked up in :data:`TLP_TAGS`: ``"TLP: Amber + Strict"`` -> ``"tlp:amber+strict"``."""
    return "".join(tag.lower().split())


def _tag_tlps(tags: list[str]) -> list[Tlp]:
    return [level for t in tags if (level := TLP_TAGS.get(_tlp_key(t))) is not None]


def _labels(tags: list[str]) -> list[str]:
    return [t for t in tags if _tlp_key(t) not in TLP_TAGS]


def _distribution(holder: dict[str, Any]) -> int | None:
    raw = holder.get("distribution")
    if raw is None or raw == "":
        return None
    value = int(raw) if str(raw).isdigit() else -1
    if not 0 <= value <= 5:
        raise InputError(f"unknown MISP distribution {raw!r} (0-5 are defined)")
    return None if value == 5 else value


def identity(uuid: str, name: str) -> dict[str, Any]:
    """An organisation named by MISP (``Orgc``, a sighting's organisation) as an identity."""
    return {"type": "identity", "spec_version": "2.1", "id": f"identity--{uuid}", "created": ob.FIXED_EPOCH,
            "modified": ob.FIXED_EPOCH, "name": name or "unnamed MISP organisation",
            "identity_class": "organization"}
