"""MISP galaxy clusters -> STIX 2.1 threat actors, intrusion sets, malware, tools and attack patterns.

A cluster reaches an event in three ways (MISP core format §2.10 Galaxy; the clusters
themselves follow the MISP galaxy format): ``Galaxy`` blocks of the event and of its
attributes, ``Event.GalaxyCluster`` entries, and ``misp-galaxy:`` tags without one. Each
becomes its SDO (STIX 2.1 §4.17 threat-actor, §4.9 intrusion-set, §4.11 malware, §4.18
tool, §4.1 attack-pattern) whose id is the cluster's uuid (for a tag alone, derived from
the tag), so every event naming a cluster names the same object. A MISP-published
cluster is public knowledge, signed by the "MISP Project" identity and unmarked; a
custom one is its producer's, signed by it and marked. :class:`GalaxiesMixin` is the
converter's galaxy step: it runs once attributes and objects have been read, since a
cluster is held at the TLP of what holds it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from commonwatch.domain.markings import Tlp
from commonwatch.errors import InputError
from commonwatch.formats import observables as ob
from commonwatch.formats.misp_parts import ConverterParts, trait
from commonwatch.formats.misp_tags import (
    _REJECT_SG,
    DISTRIBUTION_FLOOR,
    SHARING_GROUP,
    _distribution,
    _entries,
    _flag,
    _uuid,
    identity,
)
from commonwatch.formats.records import Record, rejected

GALAXY_TYPES = {
    "threat-actor": "threat-actor", "mitre-intrusion-set": "intrusion-set", "intrusion-set": "intrusion-set",
    "mitre-malware": "malware", "malpedia": "malware", "banker": "malware", "botnet": "malware",
    "ransomware": "malware", "rat": "malware", "stealer": "malware", "backdoor": "malware",
    "android": "malware", "mitre-enterprise-attack-malware": "malware",
    "tool": "tool", "mitre-tool": "tool", "mitre-enterprise-attack-tool": "tool",
    "mitre-attack-pattern": "attack-pattern", "mitre-enterprise-attack-attack-pattern": "attack-pattern",
}
MISP_IDENTITY = f"identity--{ob.stable_uuid('misp-project')}"
_GALAXY_TAG = re.compile(r'misp-galaxy:([a-z0-9-]+)="(.+)"')


def misp_identity() -> dict[str, Any]:
    return {**identity(MISP_IDENTITY.removeprefix("identity--"), "MISP Project"),
            "description": "Publisher of the MISP galaxies (github.com/MISP/misp-galaxy)"}


def _galaxy_sdo(oid: str, stype: str, cluster: dict[str, Any], tlp: Tlp | None,
                creator: str) -> dict[str, Any]:
    """A galaxy cluster as its SDO: a public one (``tlp`` None) unmarked and signed by the MISP
    Project, a custom one marked ``tlp`` and signed by ``creator``, the event's producer."""
    meta: dict[str, Any] = cluster["meta"] if isinstance(cluster.get("meta"), dict) else {}
    by = MISP_IDENTITY if tlp is None else creator
    obj: dict[str, Any] = {"type": stype, "spec_version": "2.1", "id": oid, "created": ob.FIXED_EPOCH,
                           "modified": ob.FIXED_EPOCH, "created_by_ref": by, "name": str(cluster["value"])}
    if cluster.get("description"):
        obj["description"] = str(cluster["description"])
    synonyms = [str(s) for s in _entries(meta.get("synonyms")) if s]
    if synonyms and stype in ("threat-actor", "intrusion-set", "malware", "tool"):
        obj["aliases"] = synonyms
    if stype == "malware":
        obj["is_family"] = True
    refs = [{"source_name": "misp-galaxy", "url": str(u)} for u in _entries(meta.get("refs")) if u]
    if refs:
        obj["external_references"] = refs
    obj.update(ob.marking_refs(tlp))
    return obj


@trait
class GalaxiesMixin(ConverterParts):
    """The galaxy step of :class:`~commonwatch.formats.misp.EventConverter`."""

    def galaxies(self) -> Iterator[Record]:
        """Galaxy clusters of the event (``Galaxy``, ``GalaxyCluster``, ``misp-galaxy:`` tags) and
        of its attributes (inside objects too), each read at the TLP of what holds it.

        A MISP-published cluster is public knowledge: its SDO is unmarked, but the report
        names it only when something at most as restrictive as the report holds it (that
        an attribute of ours is about it is not public). A custom cluster (``"default":
        false``) is the producer's own knowledge: it is signed by the event's producer and
        marked with the stricter of its holder's TLP and its own distribution floor.
        """
        holders = [(_entries(self.ev.get("Galaxy")) + _entries(self.ev.get("GalaxyCluster")), self.tags,
                    self.report_tlp), *self.galaxy_holders]
        found: dict[str, tuple[str, dict[str, Any], Tlp, Tlp | None]] = {}  # id -> type, cluster, level, tlp
        covered: set[str] = set()
        tagged: list[tuple[str, Tlp | None]] = []
        for blocks, tags, tlp in holders:
            for galaxy in blocks:
                yield from self._clusters(galaxy, tlp, found, covered)
            tagged.extend((t, tlp) for t in tags if t.startswith("misp-galaxy:"))
        for tag, tlp in tagged:
            m = _GALAXY_TAG.fullmatch(tag)
            if m and tag not in covered and m.group(1) in GALAXY_TYPES:
                stype = GALAXY_TYPES[m.group(1)]
                oid = f"{stype}--{ob.stable_uuid('misp-galaxy', m.group(1), m.group(2))}"
                self._found(found, oid, stype, {"value": m.group(2)}, self.effective(tlp), None)
        if any(tlp is None for _, _, _, tlp in found.values()):
            yield from self.emit(misp_identity(), self.position, ref=False)
        for oid, (stype, cluster, level, tlp) in sorted(found.items()):
            where = f"{self.position} galaxy {cluster['value']}"
            yield from self.emit(_galaxy_sdo(oid, stype, cluster, tlp, self.creator), where, level=level)

    def _clusters(self, galaxy: Any, tlp: Tlp | None, found: dict[str, Any],
                  covered: set[str]) -> Iterator[Record]:
        """The clusters of one ``Galaxy`` block, or one cluster (``Event.GalaxyCluster`` entries
        hold their galaxy in ``Galaxy``), held at ``tlp``."""
        block = isinstance(galaxy, dict) and "GalaxyCluster" in galaxy
        entries = _entries(galaxy["GalaxyCluster"]) if block else [galaxy]
        gtype = galaxy.get("type") if block else None
        for cluster in entries:
            if not isinstance(cluster, dict):
                yield rejected(self.source, f"{self.position} galaxy",
                               "a Galaxy or GalaxyCluster entry is not a JSON object")
                continue
            inner = cluster["Galaxy"] if isinstance(cluster.get("Galaxy"), dict) else {}
            stype = GALAXY_TYPES.get(str(gtype or cluster.get("type") or inner.get("type")))
            cuuid = _uuid(cluster.get("uuid"))
            if not (stype and cuuid and cluster.get("value")):
                continue
            level, marking = self.effective(tlp), None
            if "default" in cluster and not _flag(cluster.get("default")):  # a custom cluster
                try:
                    dist = _distribution(cluster)
                    if dist == SHARING_GROUP:
                        raise InputError(_REJECT_SG)
                except InputError as exc:
                    yield rejected(self.source, f"{self.position} galaxy {cluster.get('value')}", exc.message)
                    continue
                floor = DISTRIBUTION_FLOOR.get(dist) if dist is not None else None
                marking = level if floor is None else max(level, floor, self.ctx.default_tlp)
                level = marking
            self._found(found, f"{stype}--{cuuid}", stype, cluster, level, marking)
            covered.add(str(cluster.get("tag_name", "")))

    @staticmethod
    def _found(found: dict[str, Any], oid: str, stype: str, cluster: dict[str, Any], level: Tlp,
               tlp: Tlp | None) -> None:
        """Record a cluster; held more than once, the widest holder counts (each is true)."""
        if oid in found:
            _, _, was_level, was_tlp = found[oid]
            level = min(level, was_level)
            tlp = None if tlp is None or was_tlp is None else min(tlp, was_tlp)
        found[oid] = (stype, cluster, level, tlp)
