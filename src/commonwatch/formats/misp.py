"""MISP events (as MISP and PyMISP write them) and MISP feeds -> STIX 2.1 objects.

Accepted documents: ``{"Event": {...}}``, a bare event, ``{"response": [...]}`` (the
REST API wrapper), a list of events, and feed directories (``manifest.json`` plus one
``<uuid>.json`` per event). What becomes what:

* an attribute becomes its SCO (deterministic id, STIX 2.1 §2.9); with ``to_ids`` also
  an indicator ``indicator--<attribute uuid>`` whose times are the attribute's
  ``timestamp`` (so re-importing is a no-op); ``vulnerability`` attributes become
  vulnerabilities, ``link`` attributes external references of the report (a ``note``
  when narrower than the report), ``EventReport`` entries and any other attribute (free
  text, comments...) a ``note`` so nothing is lost;
* a ``file`` object becomes one ``file`` SCO with all its hashes (its other attributes
  as ``x_misp_*`` properties) and, with any ``to_ids`` attribute, one indicator
  ``indicator--<object uuid>``; other objects are converted attribute by attribute;
  object references become relationships ``relationship--<reference uuid>``;
* galaxy clusters of threat actors, intrusion sets, malware, tools and attack patterns
  (``Galaxy`` blocks of the event and its attributes, ``Event.GalaxyCluster``, or
  ``misp-galaxy:`` tags without one) become those SDOs: a MISP-published cluster signed
  by a "MISP Project" identity and unmarked (public knowledge), a custom one signed by
  the producer and marked by its holder and its own distribution;
* sightings of indicators (on attributes, inside objects too) become ``sighting``
  objects (``where_sighted_refs`` the sighting organisation); false-positive sightings
  become an ``opinion`` of ``strongly-disagree``; sightings of non-indicators and
  expiration sightings have no STIX form and are rejected with that reason;
* the event becomes a ``report`` (``report--<event uuid>``) referring to all of it that
  is at most as restrictive as the report: an SCO id is derived from its value, so a
  report naming narrower content would let its readers confirm a guessed value.

A block MISP writes as a list (tags, attributes, galaxy clusters, sightings...) is also
read when it holds one entry given bare; an entry that is not a JSON object is rejected
on its own, and an object with no typed attribute is rejected as a whole.

Markings, never wider than the source (docs/import.md has the table): the TLP is the
most restrictive of the ``tlp:*`` tags of the event, object and attribute and of a
floor set by the effective MISP distribution (the narrowest of attribute, object and
event): 0 (your organisation only) -> TLP:RED without recipients, which only the
producer sees; 1 (this community) -> at least TLP:AMBER, which never leaves the
community; 2 (connected communities) -> at least TLP:GREEN, which federation may carry
to peer exchanges; 3 (all) -> the tags alone; 5 inherits. Where a floor applies and no
tag does, the community's default TLP is the floor if it is stricter. Distribution 4
(a sharing group) names a set of organisations a community cannot express: such
records are rejected, never shared wider. Local tags never leave the importer: only a
local ``tlp:*`` tag is read (it can only narrow). Identities (``Orgc``, a sighting's
organisation) are unmarked, so they are stored only with what is at most as
restrictive as the community's default. docs/import.md explains each choice.

This module reads MISP documents and feeds and holds the converter's core: the marking
rules, attributes and the report. Its other parts sit beside it: ``misp_tags`` reads
tags, distribution and organisations; ``misp_objects``, ``misp_galaxies`` and
``misp_sightings`` convert those parts of an event, as steps over ``misp_parts`` (the
state and core operations they share).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from commonwatch.domain.defang import refang
from commonwatch.domain.markings import TLP_MARKING_IDS, Tlp
from commonwatch.errors import InputError
from commonwatch.formats import observables as ob
from commonwatch.formats.misp_galaxies import MISP_IDENTITY as MISP_IDENTITY  # re-exported
from commonwatch.formats.misp_galaxies import GalaxiesMixin
from commonwatch.formats.misp_objects import ObjectsMixin
from commonwatch.formats.misp_sightings import SightingsMixin
from commonwatch.formats.misp_tags import (
    _REJECT_SG,
    DISTRIBUTION_FLOOR,
    SHARING_GROUP,
    _distribution,
    _entries,
    _flag,
    _labels,
    _tag_tlps,
    _tags,
    _uuid,
    identity,
)
from commonwatch.formats.normalise import fix_timestamp
from commonwatch.formats.records import Record, rejected
from commonwatch.formats.sources import DEFAULT_MAX_BYTES, open_input

#: MISP attribute type -> value kind(s) of formats.observables ("a|b" types split on '|').
ATTRIBUTE_KINDS: dict[str, tuple[str, ...]] = {
    "ip-src": ("ip",), "ip-dst": ("ip",), "ip-src|port": ("ip", "port"), "ip-dst|port": ("ip", "port"),
    "domain": ("domain-name",), "hostname": ("domain-name",), "domain|ip": ("domain-name", "ip"),
    "hostname|port": ("domain-name", "port"), "url": ("url",), "uri": ("url",),
    "email": ("email-addr",), "email-src": ("email-addr",), "email-dst": ("email-addr",),
    "target-email": ("email-addr",), "whois-registrant-email": ("email-addr",),
    "md5": ("md5",), "sha1": ("sha1",), "sha256": ("sha256",), "sha512": ("sha512",),
    "filename|md5": ("file-name", "md5"), "filename|sha1": ("file-name", "sha1"),
    "filename|sha256": ("file-name", "sha256"), "filename|sha512": ("file-name", "sha512"),
    "filename": ("file-name",), "mutex": ("mutex",), "AS": ("autonomous-system",),
    "mac-address": ("mac-addr",), "regkey": ("windows-registry-key",),
    "regkey|value": ("windows-registry-key", "ignore"),
}


class EventConverter(ObjectsMixin, GalaxiesMixin, SightingsMixin):
    """One MISP event -> records; see the module docstring for the mapping."""

    def __init__(self, event: dict[str, Any], source: str, ctx: ob.ImportContext) -> None:
        self.ev = event
        self.source = source
        self.ctx = ctx
        # Without a uuid, the event's content names it: the same event read from another
        # path (or again) gets the same ids, so re-importing it stores nothing new.
        self.uuid = _uuid(event.get("uuid")) or ob.stable_uuid(
            "misp-event", json.dumps(event, sort_keys=True, default=str))
        self.report_id = f"report--{self.uuid}"
        self.position = f"event {self.uuid}"
        self.tags = _tags(event)
        self.event_tlps = _tag_tlps(self.tags)
        self.dist = _distribution(event)
        self.report_tlp: Tlp | None = None  # set by convert(): the event's own TLP
        self.timestamp = ob.epoch_to_stix(event.get("timestamp") or 0)
        self.refs: list[str] = []
        self.main: dict[str, str] = {}  # MISP uuid -> STIX id that stands for it
        self.tlp_of: dict[str, Tlp | None] = {}
        self.links: list[dict[str, str]] = []
        self.emitted: set[str] = set()
        self.level: dict[str, Tlp] = {}  # id -> effective TLP of what self.refs names
        self.galaxy_holders: list[tuple[list[Any], list[str], Tlp | None]] = []
        self.creator = ctx.own_identity

    # -- markings ----------------------------------------------------------------
    def effective_distribution(self, *levels: int | None) -> int | None:
        chain = [d for d in (self.dist, *levels) if d is not None]
        if 0 in chain:
            return 0
        if SHARING_GROUP in chain:
            return SHARING_GROUP
        return min(chain) if chain else None

    def tlp(self, tags: list[str], dist: int | None) -> Tlp | None:
        tagged = self.event_tlps + _tag_tlps(tags) if tags else self.event_tlps
        floor = DISTRIBUTION_FLOOR.get(dist) if dist is not None else None
        levels = tagged + ([floor] if floor is not None else [])
        if not levels:
            return None
        if not tagged:
            return max(floor or Tlp.CLEAR, self.ctx.default_tlp)
        return max(levels)

    # -- output --------------------------------------------------------------------
    def effective(self, tlp: Tlp | None) -> Tlp:
        """The TLP readers apply: an unmarked object takes the community's default."""
        return self.ctx.default_tlp if tlp is None else tlp

    def emit(self, obj: dict[str, Any], position: str, hits: tuple[str, ...] | None = None,
             ref: bool = True, level: Tlp | None = None) -> Iterator[Record]:
        """Yield ``obj``; with ``ref``, note it for the report with its effective TLP.

        ``level`` overrides the TLP taken from the object's marking (a public galaxy is
        unmarked, but naming it from the report says what a narrower attribute is about).
        A versioned object keeps the level of its first version here (a second one of the
        same id and time is refused by ingest); an SCO is stored once per marking, so the
        widest counts.
        """
        oid = obj["id"]
        if ref:
            if level is None:
                marks = obj.get("object_marking_refs")
                level = self.effective(TLP_MARKING_IDS.get(marks[0]) if marks else None)
            if oid not in self.emitted:
                self.refs.append(oid)
                self.level[oid] = level
            elif "created" not in obj and oid in self.level:
                self.level[oid] = min(self.level[oid], level)
        self.emitted.add(oid)
        yield Record(self.source, position, obj, hits=hits)

    def convert(self) -> Iterator[Record]:
        event_dist = self.effective_distribution()
        if event_dist == SHARING_GROUP:  # checked first: a rejected event stores nothing at all
            yield rejected(self.source, self.position, _REJECT_SG)
            return
        self.report_tlp = self.tlp([], event_dist)
        yield from self.producer()
        for attr in _entries(self.ev.get("Attribute")):
            yield from self.attribute(attr, None, [])
        objects = _entries(self.ev.get("Object"))
        for mobj in objects:
            yield from self.misp_object(mobj)
        for mobj in objects:
            yield from self.references(mobj)
        yield from self.event_reports()
        yield from self.galaxies()
        yield from self.sightings()
        yield from self.report(event_dist)

    def producer(self) -> Iterator[Record]:
        """The event's ``Orgc`` as the creator of what follows, unless it is this exchange itself.

        The identity is stored (unmarked: one producer has one identity whatever the TLP
        of what it gave) only with an event at most as restrictive as the community's
        default; otherwise members who may not read the event would learn from it who gave
        the importer something. The report still names it in ``created_by_ref``.
        """
        orgc: dict[str, Any] = self.ev["Orgc"] if isinstance(self.ev.get("Orgc"), dict) else {}
        org_uuid = _uuid(orgc.get("uuid"))
        if org_uuid and not self.ctx.own_identity.endswith(org_uuid):
            self.creator = f"identity--{org_uuid}"
            if self.effective(self.report_tlp) <= self.ctx.default_tlp:
                yield from self.emit(identity(org_uuid, str(orgc.get("name", ""))), self.position, ref=False)

    # -- attributes ----------------------------------------------------------------
    def attribute(self, attr: Any, parent_dist: int | None, parent_tags: list[str],
                  relation: str = "") -> Iterator[Record]:
        if not isinstance(attr, dict):
            yield rejected(self.source, self.position, "an Attribute entry is not a JSON object")
            return
        auuid = _uuid(attr.get("uuid")) or ob.stable_uuid(
            self.uuid, str(attr.get("type")), str(attr.get("value")))
        where = f"{self.position} attribute {auuid}" + (f" ({relation})" if relation else "")
        try:
            dist = self.effective_distribution(parent_dist, _distribution(attr))
            if _flag(attr.get("deleted")):
                raise InputError("the attribute is marked deleted in MISP")
            if not attr.get("type"):
                raise InputError("the attribute has no 'type', which MISP requires of every attribute")
            if dist == SHARING_GROUP:
                raise InputError(_REJECT_SG)
            tags = parent_tags + _tags(attr)
            tlp = self.tlp(tags, dist)
            when = ob.epoch_to_stix(attr.get("timestamp") or self.ev.get("timestamp") or 0)
            yield from self._attribute_objects(attr, auuid, where, tlp, when, tags)
        except InputError as exc:
            yield rejected(self.source, where, exc.message)
            return
        if tags or attr.get("Galaxy"):  # read by galaxies(), at this attribute's TLP
            self.galaxy_holders.append((_entries(attr.get("Galaxy")), tags, tlp))

    def _attribute_objects(self, attr: dict[str, Any], auuid: str, where: str, tlp: Tlp | None, when: str,
                           tags: list[str]) -> Iterator[Record]:
        mtype, value = str(attr.get("type", "")), str(attr.get("value", ""))
        marking = ob.marking_refs(tlp)
        if mtype == "link":
            if not isinstance(attr.get("value"), str) or not value.strip():
                raise InputError("the link attribute has no URL as its value")
            if self.effective(tlp) > self.effective(self.report_tlp):  # kept, at its own TLP
                yield from self._note(attr, auuid, where, tlp, when)
                return
            self.links.append({"source_name": "misp-link", "url": value})
            self.main[auuid] = self.report_id
            return
        if mtype == "vulnerability":
            vuln = ob.vulnerability(ob.clean_value("cve", value), oid=f"vulnerability--{auuid}", created=when,
                                    modified=when, created_by=self.creator, tlp=tlp,
                                    description=attr.get("comment") or None)
            self.main[auuid] = vuln["id"]
            self.tlp_of.setdefault(vuln["id"], tlp)
            yield from self.emit(vuln, where)
            return
        kinds = ATTRIBUTE_KINDS.get(mtype)
        if kinds is None:
            yield from self._note(attr, auuid, where, tlp, when)
            return
        scos, hits = self._scos(kinds, value, marking)
        for obj in scos:
            yield from self.emit(obj, where)
        main = scos[0]["id"]
        if _flag(attr.get("to_ids")):
            ind = ob.indicator(
                oid=f"indicator--{auuid}", pattern=ob.pattern_of(scos[:1] if mtype == "domain|ip" else scos),
                created=when, modified=when, created_by=self.creator, tlp=tlp,
                name=value, description=attr.get("comment") or None,
                valid_from=self._seen(attr.get("first_seen")) or when,
                valid_until=self._seen(attr.get("last_seen")),
                labels=_labels(tags),
            )
            main = ind["id"]
            yield from self.emit(ind, where, hits)
        self.main[auuid] = main
        self.tlp_of.setdefault(main, tlp)  # the first version of an id is the one stored

    def _scos(self, kinds: tuple[str, ...], value: str,
              marking: dict[str, Any]) -> tuple[list[dict[str, Any]], tuple[str, ...]]:
        parts = value.split("|") if len(kinds) > 1 else [value]
        if len(parts) != len(kinds):
            raise InputError(
                f"value {value!r} does not have the {len(kinds)} '|'-separated parts its type needs")
        cleaned: dict[str, str] = {}
        for kind, part in zip(kinds, parts, strict=True):
            if kind in ("port", "ignore"):
                continue
            if kind == "ip":
                kind = ob.ip_kind(part.strip())
            elif kind == "url" and refang(part) != part:
                raise InputError(f"{part.strip()!r} is a defanged URL; MISP values are stored as they are "
                                 "meant (a defanged one would never match), so give the URL itself")
            cleaned[kind] = ob.clean_value(kind, part)
        hits: tuple[str, ...] = ()
        for kind, val in cleaned.items():
            hits += self.ctx.hits(kind, val)
        if "file-name" in cleaned and len(cleaned) == 2:  # filename|hash: one file
            (hkind, hval), = ((k, v) for k, v in cleaned.items() if k != "file-name")
            obj = ob.observable(hkind, hval, name=cleaned["file-name"], **marking)
            return [obj] if obj else [], hits
        objs = [o for k, v in cleaned.items() if (o := ob.observable(k, v, **marking))]
        if len(objs) == 2 and objs[0]["type"] == "domain-name":  # domain|ip: resolves_to_refs
            objs[0] = ob.sco("domain-name", value=objs[0]["value"], resolves_to_refs=[objs[1]["id"]],
                             **marking)
        return objs, tuple(sorted(set(hits)))

    def _seen(self, value: Any) -> str | None:
        return fix_timestamp(value) if isinstance(value, str) and value else None

    def _note(self, attr: dict[str, Any], auuid: str, where: str, tlp: Tlp | None,
              when: str) -> Iterator[Record]:
        comment = str(attr.get("comment") or "")
        note = {"type": "note", "spec_version": "2.1", "id": f"note--{auuid}", "created": when,
                "modified": when, "created_by_ref": self.creator,
                "abstract": f"MISP {attr.get('category', 'attribute')}: {attr.get('type', '?')}",
                "content": str(attr.get("value", "")) + (f"\n\n{comment}" if comment else ""),
                "object_refs": [self.report_id], **ob.marking_refs(tlp)}
        self.main[auuid] = note["id"]
        self.tlp_of.setdefault(note["id"], tlp)
        yield from self.emit(note, where)

    # -- event reports, the report -------------------------------------------------
    def event_reports(self) -> Iterator[Record]:
        """Each ``EventReport`` (MISP >= 2.4.134: a Markdown write-up) as a ``note`` on the report,
        at the TLP of its own distribution."""
        for entry in _entries(self.ev.get("EventReport")):
            if not isinstance(entry, dict):
                yield rejected(self.source, f"{self.position} event report",
                               "an EventReport entry is not a JSON object")
                continue
            ruuid = _uuid(entry.get("uuid")) or ob.stable_uuid(self.uuid, json.dumps(entry, sort_keys=True))
            where = f"{self.position} event report {ruuid}"
            try:
                if _flag(entry.get("deleted")):
                    raise InputError("the event report is marked deleted in MISP")
                if not isinstance(entry.get("content"), str) or not entry["content"].strip():
                    raise InputError("the event report has no content")
                dist = self.effective_distribution(_distribution(entry))
                if dist == SHARING_GROUP:
                    raise InputError(_REJECT_SG)
                when = ob.epoch_to_stix(entry.get("timestamp") or self.ev.get("timestamp") or 0)
            except InputError as exc:
                yield rejected(self.source, where, exc.message)
                continue
            note = {"type": "note", "spec_version": "2.1", "id": f"note--{ruuid}", "created": when,
                    "modified": when, "created_by_ref": self.creator,
                    "abstract": str(entry.get("name") or "MISP event report"), "content": entry["content"],
                    "object_refs": [self.report_id], **ob.marking_refs(self.tlp(_tags(entry), dist))}
            yield from self.emit(note, where)

    def report(self, dist: int | None) -> Iterator[Record]:
        """The event as a report naming only what is at most as restrictive as itself.

        Every id the report names is readable by whoever reads the report, and SCO ids
        are derived from values (anyone can confirm a guess), so narrower content is left
        out of ``object_refs`` rather than the report made narrower (which would hide the
        event's shared content from those cleared for it). When all of the content is
        narrower, the report takes the least restrictive TLP among it and names that.
        """
        tlp = self.report_tlp
        refs = [r for r in self.refs if self.level[r] <= self.effective(tlp)]
        if self.refs and not refs:
            tlp = min(self.level[r] for r in self.refs)
            refs = [r for r in self.refs if self.level[r] <= tlp]
        if not refs:
            yield rejected(self.source, self.position, "the event has no content that could be imported")
            return
        day = ob.fix_day(self.ev.get("date")) or self.timestamp
        published = self.ev.get("publish_timestamp")
        report: dict[str, Any] = {
            "type": "report", "spec_version": "2.1", "id": self.report_id,
            "created": min(day, self.timestamp), "modified": self.timestamp, "created_by_ref": self.creator,
            "name": str(self.ev.get("info") or f"MISP event {self.uuid}"), "report_types": ["threat-report"],
            "published": (ob.epoch_to_stix(published) if str(published or "0") != "0"
                          else min(day, self.timestamp)),
            "object_refs": refs, **ob.marking_refs(tlp),
        }
        labels = _labels(self.tags)
        if labels:
            report["labels"] = labels
        report["external_references"] = [{"source_name": "misp", "external_id": self.uuid}, *self.links]
        yield Record(self.source, self.position, report)


def _events(doc: Any) -> Iterator[tuple[str, Any]]:
    """(position, event) pairs of any document shape MISP and PyMISP write."""
    if isinstance(doc, list):
        for n, item in enumerate(doc, 1):
            for position, event in _events(item):
                yield position or f"item {n}", event
    elif isinstance(doc, dict):
        if "response" in doc:
            yield from _events(doc["response"])
        elif isinstance(doc.get("Event"), dict):
            yield "", doc["Event"]
        elif "Attribute" in doc or "Object" in doc or "info" in doc:
            yield "", doc
        else:
            yield "", None


def _convert_event(event: Any, source: str, position: str, ctx: ob.ImportContext) -> Iterator[Record]:
    """One event's records; an event of an unexpected shape becomes a rejection, never a crash."""
    where = position or f"event {event.get('uuid')}" if isinstance(event, dict) else position
    try:
        yield from EventConverter(event, source, ctx).convert()
    except InputError as exc:
        yield rejected(source, where, exc.message)
    except (TypeError, AttributeError, KeyError, ValueError) as exc:
        yield rejected(source, where, f"malformed MISP event ({type(exc).__name__}: {exc}); the rest of "
                                      "this event could not be read")


def read_misp(stream: IO[bytes], source: str, ctx: ob.ImportContext) -> Iterator[Record]:
    """Records of every event in a MISP JSON document."""
    try:
        doc = json.load(stream)
    except ValueError as exc:
        yield rejected(source, "", f"not valid JSON: {exc}")
        return
    except RecursionError:
        yield rejected(source, "", "not valid JSON: nested too deeply")
        return
    seen = False
    for position, event in _events(doc):
        seen = True
        if event is None:
            yield rejected(source, position, "not a MISP event: no 'Event', 'Attribute', 'Object' or 'info'")
            continue
        yield from _convert_event(event, source, position, ctx)
    if not seen:
        yield rejected(source, "", "no MISP event found")


def read_feed(directory: Path, ctx: ob.ImportContext, max_bytes: int = DEFAULT_MAX_BYTES) -> Iterator[Record]:
    """Records of every event listed in a MISP feed's ``manifest.json``, in uuid order.

    Each event file is read on its own: one that cannot be read (over the size limit, not
    there) is one rejection and the feed goes on. An event file the manifest does not list
    is listed as rejected, not imported: a feed withdraws an event by dropping it from its
    manifest, and an unlisted file may be such a stale one (name the file to import it).
    """
    manifest_path = directory / "manifest.json"
    try:
        with manifest_path.open("rb") as raw:
            manifest = json.load(open_input(raw, str(manifest_path), max_bytes))
    except ValueError as exc:
        yield rejected(str(manifest_path), "", f"not valid JSON: {exc}")
        return
    if not isinstance(manifest, dict):
        yield rejected(str(manifest_path), "", "a feed manifest maps event uuids to event summaries")
        return
    for event_uuid in sorted(manifest):
        path = directory / f"{event_uuid}.json"
        if _uuid(event_uuid) is None or not path.is_file():
            yield rejected(str(manifest_path), f"event {event_uuid}",
                           f"the manifest lists this event but {path.name} is not in the feed")
            continue
        try:
            with path.open("rb") as raw:
                yield from read_misp(open_input(raw, str(path), max_bytes), str(path), ctx)
        except InputError as exc:  # over the size limit: this event only
            yield rejected(str(path), "", exc.message)
        except OSError as exc:
            yield rejected(str(path), "", f"could not be read: {exc.strerror or exc}")
    listed = {f"{name}.json" for name in manifest}
    for path in sorted(directory.glob("*.json")):
        if path.name != "manifest.json" and path.name not in listed and not path.name.startswith("."):
            yield rejected(str(path), f"event {path.stem}",
                           "this event file is not listed in the feed's manifest.json, so it is not imported "
                           "(a feed withdraws an event from its manifest); name the file to import it")
