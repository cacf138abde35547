"""Suricata EVE JSON (``eve.json``): flow, dns, http, tls, fileinfo and alert events.

Field names follow the Suricata EVE format documentation ("Eve JSON Format": common
``src_ip``/``dest_ip``/``proto``, the ``dns``, ``http``, ``tls``, ``fileinfo`` and
``flow`` sub-objects). Every event with addresses becomes a ``network-traffic`` with
``src_ref``/``dst_ref`` addresses, ports and ``protocols``; the sub-objects add:

* ``dns``: ``domain-name`` of ``rrname`` (v1/v2) or of each ``queries[].rrname`` (v3);
* ``http``: ``domain-name`` of ``hostname``, ``url`` ``http://hostname`` + ``url``, and
  the ``http-request-ext`` method, request value and ``User-Agent``;
* ``tls``: ``domain-name`` of ``sni``; ``x509-certificate`` subject, issuer, serial and
  ``hashes.'SHA-1'`` (the colon-separated ``fingerprint`` as plain lower-case hex);
* ``fileinfo``: ``file`` name, size and MD5/SHA-1/SHA-256 hashes;
* ``flow``: byte and packet counts per direction.

An ``alert`` carries whichever sub-objects Suricata attached to it. Other event types
with addresses (``netflow``, ``anomaly``, ``smb``...) give the network-traffic only;
events without (``stats``) are counted as skipped.
"""

from __future__ import annotations

from typing import Any

import orjson

from commonwatch.detect.events import EventKind, Field, Record
from commonwatch.formats.telemetry.source import (
    MAX_LINE_BYTES,
    PROJECTION_ERRORS,
    LineParser,
    Problems,
    Sink,
    iso_to_us,
    projection,
    too_long,
)

_HTTP_EXT = "network-traffic:extensions.'http-request-ext'"


def _protocols(rec: Record) -> list[str] | None:
    proto, app = rec.get("proto"), rec.get("app_proto")
    found = [p.lower() for p in (proto, app) if isinstance(p, str) and p and p != "failed"]
    return found or None


def _url(rec: Record) -> str | None:
    http = rec.get("http")
    if type(http) is not dict:
        return None
    host, path = http.get("hostname"), http.get("url")
    if not isinstance(path, str) or not path:
        return None
    if path.startswith(("http://", "https://")) or not isinstance(host, str):
        return path
    return f"http://{host}{path}"


def _queries(rec: Record) -> list[Any] | None:
    dns = rec.get("dns")
    if type(dns) is not dict:
        return None
    queries = dns.get("queries")
    if type(queries) is list:
        return [q.get("rrname") for q in queries if type(q) is dict]
    return None


def _fingerprint(rec: Record) -> str | None:
    tls = rec.get("tls")
    value = tls.get("fingerprint") if type(tls) is dict else None
    return value.replace(":", "").lower() if isinstance(value, str) else None


def _time(rec: Record) -> int | None:
    value = rec.get("timestamp")
    return iso_to_us(value) if isinstance(value, str) else None


NETWORK = (
    Field("network-traffic:src_ref.value", ("src_ip",)),
    Field("network-traffic:dst_ref.value", ("dest_ip",)),
    Field("network-traffic:src_port", ("src_port",)),
    Field("network-traffic:dst_port", ("dest_port",)),
    Field("network-traffic:protocols[*]", get=_protocols, reads=(("proto",), ("app_proto",))),
)
DNS = (
    Field("domain-name:value", ("dns", "rrname")),
    Field("domain-name:value", get=_queries, reads=(("dns", "queries"),)),
)
HTTP = (
    Field("domain-name:value", ("http", "hostname")),
    Field("url:value", get=_url, reads=(("http", "hostname"), ("http", "url"))),
    Field(f"{_HTTP_EXT}.request_method", ("http", "http_method")),
    Field(f"{_HTTP_EXT}.request_value", ("http", "url")),
    Field(f"{_HTTP_EXT}.request_header.'User-Agent'", ("http", "http_user_agent")),
)
TLS = (
    Field("domain-name:value", ("tls", "sni")),
    Field("x509-certificate:subject", ("tls", "subject")),
    Field("x509-certificate:issuer", ("tls", "issuerdn")),
    Field("x509-certificate:serial_number", ("tls", "serial")),
    Field("x509-certificate:hashes.'SHA-1'", get=_fingerprint, reads=(("tls", "fingerprint"),)),
)
FILEINFO = (
    Field("file:name", ("fileinfo", "filename")),
    Field("file:size", ("fileinfo", "size")),
    Field("file:hashes.MD5", ("fileinfo", "md5")),
    Field("file:hashes.'SHA-1'", ("fileinfo", "sha1")),
    Field("file:hashes.'SHA-256'", ("fileinfo", "sha256")),
)
FLOW = (
    Field("network-traffic:src_byte_count", ("flow", "bytes_toserver")),
    Field("network-traffic:dst_byte_count", ("flow", "bytes_toclient")),
    Field("network-traffic:src_packets", ("flow", "pkts_toserver")),
    Field("network-traffic:dst_packets", ("flow", "pkts_toclient")),
)

KINDS: dict[str, EventKind] = {
    "flow": EventKind("suricata:flow", NETWORK + FLOW, _time),
    "dns": EventKind("suricata:dns", NETWORK + DNS, _time),
    "http": EventKind("suricata:http", NETWORK + HTTP, _time),
    "tls": EventKind("suricata:tls", NETWORK + TLS, _time),
    "fileinfo": EventKind("suricata:fileinfo", NETWORK + FILEINFO + HTTP, _time),
    "alert": EventKind("suricata:alert", NETWORK + DNS + HTTP + TLS + FILEINFO, _time),
}
OTHER = EventKind("suricata:other", NETWORK, _time)


_DISPATCH = frozenset({("event_type",), ("src_ip",)})


class SuricataEve:
    """The eve.json adapter; stateless, so one parser serves every source."""

    name = "suricata"
    kinds = (*KINDS.values(), OTHER)

    def parser(self, source: str) -> _Parser:
        return _Parser(source)


class _Parser(LineParser):
    def __init__(self, source: str) -> None:
        self.source = source

    def _walk(self, lines: list[bytes], first_line: int, problems: Problems, sink: Sink) -> int:
        """Each line is first read for the fields the probes look at only (a projection);
        the whole event is decoded when it has candidates (it goes into the match) and
        when the projection cannot read the line, which then takes the ordinary way
        (orjson) with its problems reported as before. Only ASCII lines are projected
        (eve.json escapes the rest), so both ways see the same UTF-8 checks. Listing
        events (a Kept sink) always decodes whole events."""
        loads, kinds = orjson.loads, KINDS
        reads = sink.read_paths([*kinds.values(), OTHER])
        project = None if reads is None else projection(reads | _DISPATCH)
        probes = {name: sink.probe(kind) for name, kind in kinds.items()}
        other = sink.probe(OTHER)
        # One pass over the lengths instead of a test per line: long lines are rare.
        long = max(map(len, lines), default=0) > MAX_LINE_BYTES
        count = 0
        for n, line in enumerate(lines, first_line):
            whole: Any = None
            try:
                if long and too_long(line):
                    raise ValueError(f"line longer than {MAX_LINE_BYTES} bytes")
                if project is not None and line.isascii():
                    try:
                        rec = project(line)
                    except PROJECTION_ERRORS:
                        rec = whole = loads(line)
                else:
                    rec = whole = loads(line)
            except ValueError as exc:  # orjson.JSONDecodeError is a ValueError
                if line.strip():
                    problems.add(self.source, n, _reason(exc))
                continue
            if type(rec) is not dict:
                problems.add(self.source, n, "not a JSON object")
                continue
            et: Any = rec.get("event_type")
            probe = probes.get(et) if type(et) is str else None
            kind = None
            if probe is None:
                if "src_ip" not in rec:
                    problems.skipped[f"eve {rec.get('event_type')!s} (no addresses)"] += 1
                    continue
                probe, kind = other, OTHER
            hits = probe(rec)
            if hits:
                if whole is None and (whole := self._whole(line, n, problems)) is None:
                    continue  # the match carries the whole event, not the projection
                sink.hit(hits, count, (kind or kinds[et], whole))
            count += 1
        return count


def _reason(exc: ValueError) -> str:
    return "not valid JSON" if isinstance(exc, orjson.JSONDecodeError) else str(exc)
