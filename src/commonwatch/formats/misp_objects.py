"""MISP objects -> STIX 2.1: a ``file`` object as one file, the others attribute by attribute.

A MISP object groups attributes under one template, each naming its part with
``object_relation`` (MISP core format §2.5 Object). A ``file`` object that carries a hash
becomes one ``file`` SCO (STIX 2.1 §6.7) with all its hashes, its other attributes kept as
``x_misp_*`` properties, and, with any ``to_ids`` attribute, one indicator of the object;
any other object is read as its attributes are. Object references (§2.6 Object
References) join an object to another object or attribute by uuid and become
relationships (STIX 2.1 §5.1), read after every object so that either end can be any of
them. :class:`ObjectsMixin` is this step of the converter.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

from commonwatch.errors import InputError
from commonwatch.formats import observables as ob
from commonwatch.formats.misp_parts import ConverterParts, trait
from commonwatch.formats.misp_tags import (
    _REJECT_SG,
    SHARING_GROUP,
    _distribution,
    _entries,
    _flag,
    _labels,
    _tags,
    _uuid,
)
from commonwatch.formats.records import Record, rejected

_FILE_HASHES = {"md5": "MD5", "sha1": "SHA-1", "sha256": "SHA-256", "sha512": "SHA-512",
                "ssdeep": "SSDEEP", "tlsh": "TLSH", "sha3-256": "SHA3-256", "sha3-512": "SHA3-512"}


@trait
class ObjectsMixin(ConverterParts):
    """The MISP object step of :class:`~commonwatch.formats.misp.EventConverter`."""

    def misp_object(self, mobj: Any) -> Iterator[Record]:
        if not isinstance(mobj, dict):
            yield rejected(self.source, self.position, "an Object entry is not a JSON object")
            return
        ouuid = _uuid(mobj.get("uuid")) or ob.stable_uuid(self.uuid, json.dumps(mobj, sort_keys=True)[:2000])
        where = f"{self.position} object {ouuid} ({mobj.get('name', '?')})"
        try:
            odist, otags = _distribution(mobj), _tags(mobj)
        except InputError as exc:
            yield rejected(self.source, where, exc.message)
            return
        entries = _entries(mobj.get("Attribute"))
        attrs = [a for a in entries if isinstance(a, dict)]
        if not any(a.get("type") for a in attrs):
            yield rejected(self.source, where, "the object has no attribute (a JSON object with a 'type') "
                                               "in its 'Attribute' list, so nothing of it can be imported")
            return
        for _ in range(len(entries) - len(attrs)):
            yield rejected(self.source, where, "an Attribute entry of the object is not a JSON object")
        if _flag(mobj.get("deleted")):
            yield rejected(self.source, where, "the object is marked deleted in MISP")
            return
        live = [a for a in attrs if not _flag(a.get("deleted"))]
        if mobj.get("name") == "file" and any(a.get("object_relation") in _FILE_HASHES for a in live):
            for a in attrs:
                if _flag(a.get("deleted")):
                    yield rejected(self.source, f"{self.position} attribute {a.get('uuid')} "
                                                f"({a.get('object_relation')})", "the attribute is marked "
                                                                                  "deleted in MISP")
            yield from self._file_object(mobj, ouuid, where, odist, otags, live)
            return
        first = None
        for attr in attrs:
            yield from self.attribute(attr, odist, otags, str(attr.get("object_relation", "")))
            auuid = _uuid(attr.get("uuid"))
            first = first or (self.main.get(auuid) if auuid else None)
        if first:
            self.main[ouuid] = first

    def _file_object(self, mobj: dict[str, Any], ouuid: str, where: str, odist: int | None,
                     otags: list[str], attrs: list[dict[str, Any]]) -> Iterator[Record]:
        try:
            dist = self.effective_distribution(odist, *(_distribution(a) for a in attrs))
            if dist == SHARING_GROUP:
                raise InputError(_REJECT_SG)
            tags = otags + [t for a in attrs for t in _tags(a)]
            tlp = self.tlp(tags, dist)
            when = ob.epoch_to_stix(mobj.get("timestamp") or self.ev.get("timestamp") or 0)
            props: dict[str, Any] = {"hashes": {}}
            indicated: dict[str, Any] = {"hashes": {}}
            hits: tuple[str, ...] = ()
            for attr in attrs:
                rel, value = str(attr.get("object_relation", "")), str(attr.get("value", "")).strip()
                if rel in _FILE_HASHES:
                    if rel in ob.HASH_KEYS:
                        value = ob.clean_value(rel, value)
                        hits += self.ctx.hits(rel, value)
                    props["hashes"][_FILE_HASHES[rel]] = value
                    if _flag(attr.get("to_ids")):
                        indicated["hashes"][_FILE_HASHES[rel]] = value
                elif rel == "filename" and "name" not in props:
                    props["name"] = value
                    if _flag(attr.get("to_ids")):
                        indicated["name"] = value
                elif rel == "size-in-bytes" and value.isdigit():
                    props["size"] = int(value)
                elif rel == "mimetype":
                    props["mime_type"] = value
                else:
                    key = "x_misp_" + re.sub(r"[^a-z0-9_]", "_", rel.lower())
                    props.setdefault(key, value)
        except InputError as exc:
            yield rejected(self.source, where, exc.message)
            return
        file_sco = ob.sco("file", **props, **ob.marking_refs(tlp))
        hits = tuple(sorted(set(hits)))
        main = file_sco["id"]
        indicated = {k: v for k, v in indicated.items() if v}
        yield from self.emit(file_sco, where)
        if indicated:
            ind = ob.indicator(
                oid=f"indicator--{ouuid}", pattern=ob.pattern_of([{"type": "file", **indicated}]),
                created=when, modified=when, created_by=self.creator, tlp=tlp,
                name=props.get("name") or next(iter(props["hashes"].values())),
                description=mobj.get("comment") or None,
                labels=_labels(tags))
            main = ind["id"]
            yield from self.emit(ind, where, hits)
        self.main[ouuid] = main
        self.tlp_of.setdefault(main, tlp)
        for attr in attrs:
            if (auuid := _uuid(attr.get("uuid"))) is not None:
                self.main[auuid] = main
            if attr.get("Galaxy"):
                self.galaxy_holders.append((_entries(attr.get("Galaxy")), [], tlp))
        if tags:
            self.galaxy_holders.append(([], tags, tlp))

    def references(self, mobj: Any) -> Iterator[Record]:
        if not isinstance(mobj, dict):
            return
        source_id = self.main.get(_uuid(mobj.get("uuid")) or "")
        for ref in _entries(mobj.get("ObjectReference")):
            if not isinstance(ref, dict):
                yield rejected(self.source, f"{self.position} object {mobj.get('uuid')} reference",
                               "an ObjectReference entry is not a JSON object")
                continue
            ruuid = _uuid(ref.get("uuid")) or ob.stable_uuid(self.uuid, json.dumps(ref, sort_keys=True))
            where = f"{self.position} reference {ruuid}"
            target = self.main.get(_uuid(ref.get("referenced_uuid")) or "")
            if source_id is None or target is None or source_id == target:
                yield rejected(self.source, where, "the reference joins objects or attributes that were "
                                                   "not imported (see their own entries) or are not in "
                                                   "this event")
                continue
            rtype = re.sub(r"[^a-z0-9]+", "-", str(ref.get("relationship_type", "related-to")).lower())
            rtype = rtype.strip("-")
            when = ob.epoch_to_stix(
                ref.get("timestamp") or mobj.get("timestamp") or self.ev.get("timestamp") or 0)
            levels = [t for t in (self.tlp_of.get(source_id), self.tlp_of.get(target)) if t is not None]
            rel = {"type": "relationship", "spec_version": "2.1", "id": f"relationship--{ruuid}",
                   "created": when, "modified": when, "created_by_ref": self.creator,
                   "relationship_type": rtype or "related-to", "source_ref": source_id, "target_ref": target,
                   **ob.marking_refs(max(levels) if levels else None)}
            yield from self.emit(rel, where)
