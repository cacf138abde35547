"""TLP markings: the levels, the STIX marking-definitions that carry them, and the
TLP:RED recipient extension.

Two forms of TLP are in use and both are read:

* the four TLP 1.0 marking-definitions predefined by STIX 2.1 §7.2.1.4 (WHITE, GREEN,
  AMBER, RED; WHITE is TLP 2.0's CLEAR), and
* the five TLP 2.0 marking-definitions published by OASIS as a STIX extension
  (``extension-definition--60a3c5c5-0d10-413e-aab3-9e08dde9e88d``).

The effective TLP of an object is the most restrictive TLP among its
``object_marking_refs`` and granular ``marking_ref`` values; an object without any
TLP marking takes its community's default.

TLP:RED recipients travel in a property extension that CommonWatch declares with an
``extension-definition`` object (:func:`recipients_extension_definition`), published
in every community so that any STIX consumer can read what the property means.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import IntEnum
from typing import Any

from commonwatch.errors import InvalidParameter, InvalidStixObject


class Tlp(IntEnum):
    """TLP 2.0 levels, ordered from least to most restrictive."""

    CLEAR = 0
    GREEN = 1
    AMBER = 2
    AMBER_STRICT = 3
    RED = 4

    @property
    def label(self) -> str:
        """The FIRST spelling: ``TLP:AMBER+STRICT``."""
        return "TLP:" + self.name.replace("_", "+")


_TLP_NAMES = {
    "clear": Tlp.CLEAR,
    "white": Tlp.CLEAR,
    "green": Tlp.GREEN,
    "amber": Tlp.AMBER,
    "amber+strict": Tlp.AMBER_STRICT,
    "amber_strict": Tlp.AMBER_STRICT,
    "amber-strict": Tlp.AMBER_STRICT,
    "red": Tlp.RED,
}


def parse_tlp(value: str) -> Tlp:
    """Read a TLP level as people write it: ``amber+strict``, ``TLP:RED``, ``white``."""
    key = value.strip().lower().removeprefix("tlp:")
    try:
        return _TLP_NAMES[key]
    except KeyError:
        raise InvalidParameter(
            f"unknown TLP level {value!r}; use one of clear, green, amber, amber+strict, red"
        ) from None


TLP1_IDS: Mapping[str, Tlp] = {
    "marking-definition--613f2e26-407d-48c7-9eca-b8e91df99dc9": Tlp.CLEAR,  # TLP:WHITE
    "marking-definition--34098fce-860f-48ae-8e50-ebd3cc5e41da": Tlp.GREEN,
    "marking-definition--f88d31f6-486f-44da-b317-01333bde0b82": Tlp.AMBER,
    "marking-definition--5e57c739-391a-4eb3-b6be-7d15ca92d5ed": Tlp.RED,
}
TLP2_EXTENSION_ID = "extension-definition--60a3c5c5-0d10-413e-aab3-9e08dde9e88d"
TLP2_IDS: Mapping[str, Tlp] = {
    "marking-definition--94868c89-83c2-464b-929b-a1a8aa3c8487": Tlp.CLEAR,
    "marking-definition--bab4a63c-aed9-4cf5-a766-dfca5abac2bb": Tlp.GREEN,
    "marking-definition--55d920b0-5e8b-4f79-9ee9-91f868d9b421": Tlp.AMBER,
    "marking-definition--939a9414-2ddd-4d32-a0cd-375ea402b003": Tlp.AMBER_STRICT,
    "marking-definition--e828b379-4e03-4974-9ac4-e53a884c97c1": Tlp.RED,
}
TLP_MARKING_IDS: Mapping[str, Tlp] = {**TLP1_IDS, **TLP2_IDS}
TLP2_MARKING_BY_LEVEL: Mapping[Tlp, str] = {level: mid for mid, level in TLP2_IDS.items()}


#: The ``tlp_2_0`` value of each TLP 2.0 level in the OASIS extension.
TLP2_NAMES: Mapping[Tlp, str] = {level: level.name.lower().replace("_", "+") for level in Tlp}


def tlp_of_marking(ref: str) -> Tlp | None:
    """The TLP level a marking-definition id stands for, or None. The hex digits of a
    UUID may come in either case (RFC 4122 §3): ``...--5E57C739-...`` is TLP:RED too."""
    found = TLP_MARKING_IDS.get(ref)
    return TLP_MARKING_IDS.get(ref.lower()) if found is None else found


def effective_tlp(marking_refs: Iterable[str], default: Tlp) -> Tlp:
    """The most restrictive TLP named by ``marking_refs``, or ``default`` if none is."""
    levels = [level for ref in marking_refs if (level := tlp_of_marking(ref)) is not None]
    return max(levels) if levels else default


SYSTEM_IDENTITY_ID = "identity--233dcfab-7379-5850-af59-3e7b4861c127"
RECIPIENTS_EXTENSION_ID = "extension-definition--0670745e-9e01-51df-8959-798bd7b67d04"
RECIPIENTS_PROPERTY = "tlp_red_recipients"
_EPOCH = "2026-01-01T00:00:00.000Z"


def system_identity() -> dict[str, Any]:
    """The identity that signs what the exchange itself publishes."""
    return {
        "type": "identity",
        "spec_version": "2.1",
        "id": SYSTEM_IDENTITY_ID,
        "created": _EPOCH,
        "modified": _EPOCH,
        "name": "CommonWatch exchange",
        "identity_class": "system",
    }


def recipients_extension_definition() -> dict[str, Any]:
    """The extension-definition (STIX 2.1 §7.3) declaring the TLP:RED recipient list."""
    schema = (
        '{"type":"object","properties":{"extension_type":{"const":"property-extension"},'
        f'"{RECIPIENTS_PROPERTY}":{{"type":"array","minItems":1,'
        '"items":{"type":"string","pattern":"^identity--[0-9a-f-]{36}$"}}},'
        f'"required":["extension_type","{RECIPIENTS_PROPERTY}"]}}'
    )
    return {
        "type": "extension-definition",
        "spec_version": "2.1",
        "id": RECIPIENTS_EXTENSION_ID,
        "created_by_ref": SYSTEM_IDENTITY_ID,
        "created": _EPOCH,
        "modified": _EPOCH,
        "name": "TLP:RED recipients",
        "description": (
            "Names the organisations (by their STIX identity) that may receive an object "
            "marked TLP:RED. CommonWatch delivers a TLP:RED object only to its producer and "
            "to the identities listed here."
        ),
        "schema": schema,
        "version": "1.0.0",
        "extension_types": ["property-extension"],
    }


def red_recipients(obj: Mapping[str, Any]) -> frozenset[str]:
    """The identity ids named in the object's TLP:RED recipient extension (may be empty)."""
    extensions = obj.get("extensions")
    if not isinstance(extensions, dict):
        return frozenset()
    ext = extensions.get(RECIPIENTS_EXTENSION_ID)
    if ext is None:
        return frozenset()
    refs = ext.get(RECIPIENTS_PROPERTY) if isinstance(ext, dict) else None
    if not isinstance(refs, list) or not all(
        isinstance(r, str) and r.startswith("identity--") for r in refs
    ):
        raise InvalidStixObject(
            f"extension {RECIPIENTS_EXTENSION_ID} property {RECIPIENTS_PROPERTY!r} must be a "
            "list of identity ids",
            obj.get("id") if isinstance(obj.get("id"), str) else None,
        )
    return frozenset(refs)
