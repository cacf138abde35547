"""MISP event JSON export (MISP core format, ``{"Event": {...}}``).

One event holding one attribute per (object, value), ``to_ids`` set, the TLP of
each object as a ``tlp:*`` attribute tag (MISP taxonomy ``tlp``, TLP 2.0 names) and
the source STIX id in the attribute comment. An indicator with one value gives its
attribute its own uuid (the uuid of ``indicator--<uuid>``: MISP's STIX converters map
attribute and indicator ids that way, so a round trip through MISP keeps the id, and a
new version updates the attribute); every other attribute (an indicator's values when
it has several, an observable's value) gets a UUIDv5 of the STIX id, kind and value,
so that ``ipv4-addr--<u>`` and ``indicator--<u>`` never share one. Re-exports keep
them all. The attribute ``timestamp`` is
when the object's version was made (its ``modified``; for objects without versions,
when they were added). Distribution is 0 ("your organisation only"): the export is
for the requester's own defences.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from collections.abc import Iterable, Iterator

import orjson

from commonwatch.domain.markings import Tlp
from commonwatch.domain.observables import ExportItem

BATCH = 1000
_NAMESPACE = uuid.UUID("0b8e4d0c-6f36-5d2a-9d32-2f1a8c1f0a77")
_TYPES = {
    "ipv4-addr": ("ip-dst", "Network activity"), "ipv6-addr": ("ip-dst", "Network activity"),
    "domain-name": ("domain", "Network activity"), "url": ("url", "Network activity"),
    "email-addr": ("email-src", "Payload delivery"), "md5": ("md5", "Payload delivery"),
    "sha1": ("sha1", "Payload delivery"), "sha256": ("sha256", "Payload delivery"),
    "sha512": ("sha512", "Payload delivery"),
}
#: The attribute ``Tag`` list of each TLP (shared by every attribute of that TLP).
_TAGS = {int(t): [{"name": "tlp:" + t.name.lower().replace("_", "+")}] for t in Tlp}


_VARIANT = {c: "89ab"[int(c, 16) & 3] for c in "0123456789abcdef"}
_PREFIX = hashlib.sha1(_NAMESPACE.bytes)  # noqa: S324 - UUIDv5 is SHA-1


def attribute_uuid(name: str) -> str:
    """``str(uuid.uuid5(_NAMESPACE, name))`` without the :class:`uuid.UUID` object
    (RFC 4122 §4.3: SHA-1 of namespace and name; version 5, variant RFC 4122)."""
    h = _PREFIX.copy()
    h.update(name.encode())
    x = h.hexdigest()
    return f"{x[:8]}-{x[8:12]}-5{x[13:16]}-{_VARIANT[x[16]]}{x[17:20]}-{x[20:32]}"


def own_uuid(stix_id: str) -> str:
    """The uuid of a STIX id (``type--uuid``)."""
    return stix_id[stix_id.index("--") + 2:]


def _json_string(text: str) -> str:
    """``text`` as a JSON string (as orjson writes it): printable text without quotes
    or backslashes as it is, the rest escaped by orjson."""
    if text.isprintable() and '"' not in text and "\\" not in text:
        return '"' + text + '"'
    return orjson.dumps(text).decode()


#: Per value kind: the attribute's ``"type"`` and ``"category"`` members.
_KIND_MEMBERS = {kind: f'"type":"{t}","category":"{c}","to_ids":true,' for kind, (t, c) in _TYPES.items()}
#: Per TLP: the members after the timestamp.
_TLP_MEMBERS = {tlp: ',"distribution":"5","Tag":' + orjson.dumps(tags).decode() + "}"
                for tlp, tags in _TAGS.items()}


def render(items: Iterable[ExportItem], event_uuid: str, now_s: int, info: str) -> Iterator[str]:
    """The event, in chunks. Each attribute's JSON is written from fragments shared by
    every attribute (its kind's type and category, its TLP's tag) and its own strings
    escaped as JSON: the same text as orjson gives for the attribute's dict (tested)."""
    date = dt.datetime.fromtimestamp(now_s, tz=dt.UTC)
    head = {"info": info, "uuid": event_uuid, "date": date.strftime("%Y-%m-%d"),
            "timestamp": str(now_s), "threat_level_id": "4", "analysis": "2", "distribution": "0",
            "published": False}
    yield '{"Event":' + orjson.dumps(head).decode()[:-1] + ',"Attribute":['
    first = True
    chunk: list[str] = []
    for item in items:
        stix_id = item.stix_id
        comment = f"{stix_id} {item.name}".strip()[:1000]
        observables = item.observables
        single = len(observables) == 1 and stix_id.startswith("indicator--")
        both = comment + observables[0][1] if single else ""
        if single and both.isprintable() and '"' not in both and "\\" not in both:
            # Most objects: one value, and no text to escape. The uuid is the indicator's.
            kind, value = observables[0]
            chunk.append(f'{{"uuid":"{stix_id[11:]}",{_KIND_MEMBERS[kind]}"value":"{value}","comment":'
                         f'"{comment}","timestamp":"{item.version_us // 1_000_000}"{_TLP_MEMBERS[item.tlp]}')
        else:
            end = (f',"comment":{_json_string(comment)},"timestamp":"{item.version_us // 1_000_000}"'
                   f'{_TLP_MEMBERS[item.tlp]}')
            for kind, value in observables:
                uuid_ = own_uuid(stix_id) if single else attribute_uuid(f"{stix_id}|{kind}|{value}")
                chunk.append(f'{{"uuid":"{uuid_}",{_KIND_MEMBERS[kind]}"value":{_json_string(value)}{end}')
        if len(chunk) >= BATCH:
            yield ("" if first else ",") + ",".join(chunk)
            first = False
            chunk = []
    if chunk:
        yield ("" if first else ",") + ",".join(chunk)
    yield "]}}\n"
