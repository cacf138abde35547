"""MISP event JSON export (MISP core format, ``{"Event": {...}}``).

One event holding one attribute per (object, value), ``to_ids`` set, the TLP of
each object as a ``tlp:*`` attribute tag (MISP taxonomy ``tlp``, TLP 2.0 names) and
the source STIX id in the attribute comment. Attribute uuids are derived from the
STIX id and value (UUIDv5), so re-exports keep them. Distribution is 0 ("your
organisation only"): the export is for the requester's own defences.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable, Iterator

import orjson

from commonwatch.domain.markings import Tlp
from commonwatch.domain.observables import ExportItem
from commonwatch.domain.timestamps import parse_timestamp

BATCH = 1000
_NAMESPACE = uuid.UUID("0b8e4d0c-6f36-5d2a-9d32-2f1a8c1f0a77")
_TYPES = {
    "ipv4-addr": ("ip-dst", "Network activity"), "ipv6-addr": ("ip-dst", "Network activity"),
    "domain-name": ("domain", "Network activity"), "url": ("url", "Network activity"),
    "email-addr": ("email-src", "Payload delivery"), "md5": ("md5", "Payload delivery"),
    "sha1": ("sha1", "Payload delivery"), "sha256": ("sha256", "Payload delivery"),
    "sha512": ("sha512", "Payload delivery"),
}


def _tag(tlp: int) -> str:
    return "tlp:" + Tlp(tlp).name.lower().replace("_", "+")


def render(items: Iterable[ExportItem], event_uuid: str, now_s: int, info: str) -> Iterator[str]:
    date = dt.datetime.fromtimestamp(now_s, tz=dt.UTC)
    head = {"info": info, "uuid": event_uuid, "date": date.strftime("%Y-%m-%d"),
            "timestamp": str(now_s), "threat_level_id": "4", "analysis": "2", "distribution": "0",
            "published": False}
    yield '{"Event":' + orjson.dumps(head).decode()[:-1] + ',"Attribute":['
    first = True
    chunk: list[bytes] = []
    for item in items:
        stamp = str(parse_timestamp(item.modified) // 1_000_000)
        tags = [{"name": _tag(item.tlp)}]
        for kind, value in item.observables:
            misp_type, category = _TYPES[kind]
            if kind in ("ipv4-addr", "ipv6-addr") and "/" in value:
                misp_type = "ip-dst"
            chunk.append(orjson.dumps({
                "uuid": str(uuid.uuid5(_NAMESPACE, f"{item.stix_id}|{kind}|{value}")),
                "type": misp_type, "category": category, "to_ids": True, "value": value,
                "comment": f"{item.stix_id} {item.name}".strip()[:1000], "timestamp": stamp,
                "distribution": "5", "Tag": tags,
            }))
        if len(chunk) >= BATCH:
            yield ("" if first else ",") + b",".join(chunk).decode()
            first = False
            chunk = []
    if chunk:
        yield ("" if first else ",") + b",".join(chunk).decode()
    yield "]}}\n"
