"""MISP sightings -> STIX 2.1 sightings and opinions.

A MISP sighting (MISP core format §2.9 Sighting) says an attribute was seen (type 0),
reported as a false positive (1) or expired (2). A STIX sighting (STIX 2.1 §5.2) is of
an SDO, so only sightings of attributes imported as indicators have a STIX form; a
false positive becomes an ``opinion`` (§4.15) of ``strongly-disagree`` on the indicator,
and what has no STIX form is rejected with that reason rather than dropped. The
sighting organisation is ``where_sighted_refs``; its identity is unmarked, so it is
stored only with a sighting at most as restrictive as the community's default TLP.
:class:`SightingsMixin` is this step of the converter, run once attributes and objects
have said which attribute became an indicator.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from commonwatch.errors import InputError
from commonwatch.formats import observables as ob
from commonwatch.formats.misp_parts import ConverterParts, trait
from commonwatch.formats.misp_tags import _entries, _uuid, identity
from commonwatch.formats.records import Record, rejected


@trait
class SightingsMixin(ConverterParts):
    """The sighting step of :class:`~commonwatch.formats.misp.EventConverter`."""

    def sightings(self) -> Iterator[Record]:
        """The event's sightings and those of its attributes, inside objects too."""
        in_objects = [a for o in _entries(self.ev.get("Object")) if isinstance(o, dict)
                      for a in _entries(o.get("Attribute"))]
        found = _entries(self.ev.get("Sighting"))
        for attr in _entries(self.ev.get("Attribute")) + in_objects:
            if isinstance(attr, dict):
                found.extend({**s, "attribute_uuid": s.get("attribute_uuid") or attr.get("uuid")}
                             if isinstance(s, dict) else s for s in _entries(attr.get("Sighting")))
        for s in found:
            yield from self._sighting(s)

    def _sighting(self, s: Any) -> Iterator[Record]:
        if not isinstance(s, dict):
            yield rejected(self.source, f"{self.position} sighting", "a Sighting entry is not a JSON object")
            return
        suuid = _uuid(s.get("uuid")) or ob.stable_uuid(self.uuid, json.dumps(s, sort_keys=True))
        where = f"{self.position} sighting {suuid}"
        target = self.main.get(_uuid(s.get("attribute_uuid")) or "")
        kind = str(s.get("type", "0"))
        if target is None or not target.startswith("indicator--"):
            yield rejected(self.source, where, "a sighting of an attribute that is not an indicator (to_ids "
                                               "off) has no STIX 2.1 form (a sighting needs an SDO)")
            return
        if kind == "2":
            yield rejected(self.source, where, "MISP expiration sightings have no STIX 2.1 form")
            return
        try:
            when = ob.epoch_to_stix(s.get("date_sighting"))
        except InputError as exc:
            yield rejected(self.source, where, exc.message)
            return
        org: dict[str, Any] = s["Organisation"] if isinstance(s.get("Organisation"), dict) else {}
        org_uuid = _uuid(org.get("uuid"))
        who = self.creator
        tlp = self.tlp_of.get(target)
        if org_uuid and not self.ctx.own_identity.endswith(org_uuid):
            who = f"identity--{org_uuid}"
            # stored unmarked, so only with a sighting no stricter than that (see producer())
            if self.effective(tlp) <= self.ctx.default_tlp:
                yield from self.emit(identity(org_uuid, str(org.get("name", ""))), where, ref=False)
        elif org_uuid:
            who = self.ctx.own_identity
        marking = ob.marking_refs(tlp)
        if kind == "1":
            obj = {"type": "opinion", "spec_version": "2.1", "id": f"opinion--{suuid}", "created": when,
                   "modified": when, "created_by_ref": who, "opinion": "strongly-disagree",
                   "explanation": "reported as a false positive (MISP sighting type 1)",
                   "object_refs": [target], **marking}
        else:
            obj = {"type": "sighting", "spec_version": "2.1", "id": f"sighting--{suuid}", "created": when,
                   "modified": when, "created_by_ref": who, "first_seen": when, "last_seen": when, "count": 1,
                   "sighting_of_ref": target, "where_sighted_refs": [who], **marking}
            if s.get("source"):
                obj["description"] = f"source: {s['source']}"
        yield from self.emit(obj, where)
