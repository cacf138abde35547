"""MISP event JSON export (MISP core format, ``{"Event": {...}}``).

One event holding one attribute per (object, value), ``to_ids`` set, the TLP of
each object as a ``tlp:*`` attribute tag (MISP taxonomy ``tlp``, TLP 2.0 names) and
the source STIX id in the attribute comment. Attribute uuids are derived from the
STIX id and value (UUIDv5), so re-exports keep them. The attribute ``timestamp`` is
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


def attribute_uuid(name: str) -> str:
    """``str(uuid.uuid5(_NAMESPACE, name))`` without the :class:`uuid.UUID` object
    (a third of the cost; RFC 4122 §4.3: SHA-1 of namespace and name, version 5)."""
    digest = bytearray(hashlib.sha1(_NAMESPACE.bytes + name.encode()).digest()[:16])  # noqa: S324 - UUIDv5 is SHA-1
    digest[6] = (digest[6] & 0x0F) | 0x50
    digest[8] = (digest[8] & 0x3F) | 0x80
    x = digest.hex()
    return f"{x[:8]}-{x[8:12]}-{x[12:16]}-{x[16:20]}-{x[20:]}"


def render(items: Iterable[ExportItem], event_uuid: str, now_s: int, info: str) -> Iterator[str]:
    date = dt.datetime.fromtimestamp(now_s, tz=dt.UTC)
    head = {"info": info, "uuid": event_uuid, "date": date.strftime("%Y-%m-%d"),
            "timestamp": str(now_s), "threat_level_id": "4", "analysis": "2", "distribution": "0",
            "published": False}
    yield '{"Event":' + orjson.dumps(head).decode()[:-1] + ',"Attribute":['
    first = True
    chunk: list[dict[str, object]] = []
    for item in items:
        stamp = str(item.version_us // 1_000_000)
        tags = _TAGS[item.tlp]
        comment = f"{item.stix_id} {item.name}".strip()[:1000]
        for kind, value in item.observables:
            misp_type, category = _TYPES[kind]
            chunk.append({
                "uuid": attribute_uuid(f"{item.stix_id}|{kind}|{value}"),
                "type": misp_type, "category": category, "to_ids": True, "value": value,
                "comment": comment, "timestamp": stamp, "distribution": "5", "Tag": tags,
            })
        if len(chunk) >= BATCH:
            yield ("" if first else ",") + orjson.dumps(chunk).decode()[1:-1]
            first = False
            chunk = []
    if chunk:
        yield ("" if first else ",") + orjson.dumps(chunk).decode()[1:-1]
    yield "]}}\n"
