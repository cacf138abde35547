"""Zeek logs, JSON (``LogAscii::use_json`` or json-streaming) and TSV with ``#fields``.

Logs: conn, dns, http, ssl, files and x509 (field names of the Zeek base scripts). The
log type comes from ``_path`` (JSON) or ``#path`` (TSV), else from the file name
(``dns.log``, ``ssl.json.gz``...), else from the fields a record has. TSV values are
typed by the ``#types`` line: ``count``/``int``/``port`` become integers, ``double``/
``time``/``interval`` floats, ``bool`` booleans, ``set[..]``/``vector[..]`` lists (split
on ``#set_separator``); the ``#unset_field`` value drops the field and
``#empty_field`` is an empty list; ``\\xNN`` escapes are decoded.

Mapping (the ``id.*`` 4-tuple gives ``network-traffic`` src/dst refs and ports on every
log that has it): conn ``proto``/``service`` -> ``protocols``, byte and packet counts;
dns ``query`` -> ``domain-name``; http ``host`` -> ``domain-name``, ``http://host`` +
``uri`` -> ``url``, method/uri/user-agent -> ``http-request-ext``; ssl ``server_name``
-> ``domain-name``, ``subject``/``issuer`` -> ``x509-certificate``; files hashes, name,
size, MIME type -> ``file`` and ``tx_hosts``/``rx_hosts`` -> addresses; x509
``certificate.*`` -> ``x509-certificate`` (``fingerprint`` as ``hashes.'SHA-256'``) and
``san.dns`` -> one ``domain-name`` each.
"""

from __future__ import annotations

import re
from pathlib import PurePath
from typing import Any

import orjson

from commonwatch.detect.events import EventKind, Field, Record
from commonwatch.formats.telemetry.source import (
    MAX_LINE_BYTES,
    PROJECTION_ERRORS,
    LineParser,
    Problems,
    Sink,
    any_time_to_us,
    projection,
    too_long,
)

_HTTP_EXT = "network-traffic:extensions.'http-request-ext'"
LOGS = ("conn", "dns", "http", "ssl", "files", "x509")


def _protocols(rec: Record) -> list[str] | None:
    found: list[str] = []
    for key in ("proto", "service"):
        v = rec.get(key)
        for item in v if type(v) is list else (v.split(",") if isinstance(v, str) else ()):
            if isinstance(item, str) and item and item not in found:
                found.append(item.lower())
    return found or None


def _url(rec: Record) -> str | None:
    host, uri = rec.get("host"), rec.get("uri")
    if not isinstance(uri, str) or not uri:
        return None
    if uri.startswith(("http://", "https://")) or not isinstance(host, str):
        return uri
    return f"http://{host}{uri}"


def _time(rec: Record) -> int | None:
    return any_time_to_us(rec.get("ts"))


_PROTOCOLS = (("proto",), ("service",))
NETWORK = (
    Field("network-traffic:src_ref.value", ("id.orig_h",)),
    Field("network-traffic:dst_ref.value", ("id.resp_h",)),
    Field("network-traffic:src_port", ("id.orig_p",)),
    Field("network-traffic:dst_port", ("id.resp_p",)),
)
FIELDS: dict[str, tuple[Field, ...]] = {
    "conn": NETWORK + (
        Field("network-traffic:protocols[*]", get=_protocols, reads=_PROTOCOLS),
        Field("network-traffic:src_byte_count", ("orig_bytes",)),
        Field("network-traffic:dst_byte_count", ("resp_bytes",)),
        Field("network-traffic:src_packets", ("orig_pkts",)),
        Field("network-traffic:dst_packets", ("resp_pkts",)),
    ),
    "dns": NETWORK + (
        Field("network-traffic:protocols[*]", get=_protocols, reads=_PROTOCOLS),
        Field("domain-name:value", ("query",)),
    ),
    "http": NETWORK + (
        Field("domain-name:value", ("host",)),
        Field("url:value", get=_url, reads=(("host",), ("uri",))),
        Field(f"{_HTTP_EXT}.request_method", ("method",)),
        Field(f"{_HTTP_EXT}.request_value", ("uri",)),
        Field(f"{_HTTP_EXT}.request_header.'User-Agent'", ("user_agent",)),
    ),
    "ssl": NETWORK + (
        Field("domain-name:value", ("server_name",)),
        Field("x509-certificate:subject", ("subject",)),
        Field("x509-certificate:issuer", ("issuer",)),
    ),
    "files": NETWORK + (
        Field("file:hashes.MD5", ("md5",)),
        Field("file:hashes.'SHA-1'", ("sha1",)),
        Field("file:hashes.'SHA-256'", ("sha256",)),
        Field("file:name", ("filename",)),
        Field("file:size", ("total_bytes",)),
        Field("file:mime_type", ("mime_type",)),
        Field("ipv4-addr:value", ("tx_hosts",)),
        Field("ipv4-addr:value", ("rx_hosts",)),
    ),
    "x509": (
        Field("x509-certificate:subject", ("certificate.subject",)),
        Field("x509-certificate:issuer", ("certificate.issuer",)),
        Field("x509-certificate:serial_number", ("certificate.serial",)),
        Field("x509-certificate:hashes.'SHA-256'", ("fingerprint",)),
        Field("domain-name:value", ("san.dns",)),
    ),
}
KINDS = {log: EventKind(f"zeek:{log}", fields, _time) for log, fields in FIELDS.items()}


def log_from_name(source: str) -> str | None:
    """``conn`` for ``/var/log/zeek/conn.log.gz``, ``conn.00:00:00-01:00:00.log``..."""
    stem = PurePath(source).name.split(".")[0]
    return stem if stem in KINDS else None


#: The keys guess_log and the dispatch read.
_DISPATCH = frozenset((key,) for key in (
    "_path", "query", "method", "uri", "certificate.subject", "server_name", "cipher", "fuid", "md5",
    "mime_type", "tx_hosts", "id.orig_h"))


def guess_log(rec: Record) -> str | None:
    """The log type from the fields a record carries (when neither _path nor name say)."""
    if "query" in rec:
        return "dns"
    if "method" in rec or "uri" in rec:
        return "http"
    if "certificate.subject" in rec:
        return "x509"
    if "server_name" in rec or "cipher" in rec:
        return "ssl"
    if "fuid" in rec and ("md5" in rec or "mime_type" in rec or "tx_hosts" in rec):
        return "files"
    if "id.orig_h" in rec:
        return "conn"
    return None


class ZeekLogs:
    """Zeek JSON and TSV logs; a parser per source keeps that source's TSV header."""

    name = "zeek"
    kinds = tuple(KINDS.values())

    def parser(self, source: str) -> _Parser:
        return _Parser(source)


class _Parser(LineParser):
    def __init__(self, source: str) -> None:
        self.source = source
        self.hint = log_from_name(source)
        self.header: _TsvHeader | None = None
        self.meta: dict[str, str] = {"separator": "\t", "set_separator": ",",
                                     "empty_field": "(empty)", "unset_field": "-"}

    def _walk(self, lines: list[bytes], first_line: int, problems: Problems, sink: Sink) -> int:
        """JSON lines are read for the probed fields only first, as eve.json lines are
        (see suricata._Parser._walk); TSV lines are split as they come."""
        loads, kinds = orjson.loads, KINDS
        probes = {name: sink.probe(kind) for name, kind in kinds.items()}
        reads = sink.read_paths(kinds.values())
        project = None if reads is None else projection(reads | _DISPATCH)
        long = max(map(len, lines), default=0) > MAX_LINE_BYTES  # one pass: long lines are rare
        count = 0
        for n, raw in enumerate(lines, first_line):
            whole: Any = None
            if long and too_long(raw):
                problems.add(self.source, n, f"line longer than {MAX_LINE_BYTES} bytes")
                continue
            if raw[:1] == b"{":
                try:
                    if project is not None and raw.isascii():
                        try:
                            rec = project(raw)
                        except PROJECTION_ERRORS:
                            rec = whole = loads(raw)
                    else:
                        rec = whole = loads(raw)
                except orjson.JSONDecodeError:
                    problems.add(self.source, n, "not valid JSON")
                    continue
                if type(rec) is not dict:
                    problems.add(self.source, n, "not a JSON object")
                    continue
            else:
                found = self._text_line(raw, n, problems)
                if found is None:
                    continue
                rec = whole = found
            path = rec.get("_path")
            log = path if type(path) is str and path in kinds else self.hint or guess_log(rec)
            if log is None:
                problems.skipped["zeek record of an unsupported log"] += 1
                continue
            hits = probes[log](rec)
            if hits:
                if whole is None and (whole := self._whole(raw, n, problems)) is None:
                    continue  # the match carries the whole record, not the projection
                sink.hit(hits, count, (kinds[log], whole))
            count += 1
        return count

    def _text_line(self, raw: bytes, n: int, problems: Problems) -> Record | None:
        """A TSV record, or None for a header, blank or unreadable line."""
        try:
            line = raw.decode("utf-8").rstrip("\r\n")
        except UnicodeDecodeError:
            problems.add(self.source, n, "not UTF-8 text")
            return None
        if not line.strip():
            return None
        if line.startswith("#"):
            self._directive(line)
            return None
        return self._record(line, n, problems)

    def _directive(self, line: str) -> None:
        name, _, value = line[1:].partition(self.meta["separator"] if not line.startswith(
            "#separator") else " ")
        if name == "separator":
            self.meta["separator"] = _unescape(value)
        elif name in ("set_separator", "empty_field", "unset_field"):
            self.meta[name] = value
        elif name == "path" and value in KINDS:
            self.hint = value
        elif name == "fields":
            self.header = _TsvHeader(value.split(self.meta["separator"]), [])
        elif name == "types" and self.header is not None:
            self.header.types = value.split(self.meta["separator"])

    def _record(self, line: str, n: int, problems: Problems) -> Record | None:
        if self.header is None:
            problems.add(self.source, n, "TSV record before the #fields header line")
            return None
        values = line.split(self.meta["separator"])
        names = self.header.names
        if len(values) != len(names):
            problems.add(self.source, n, f"has {len(values)} columns where #fields names {len(names)}")
            return None
        return self.header.typed(values, self.meta)


class _TsvHeader:
    def __init__(self, names: list[str], types: list[str]) -> None:
        self.names, self.types = names, types

    def typed(self, values: list[str], meta: dict[str, str]) -> Record:
        rec: Record = {}
        unset, empty, set_sep = meta["unset_field"], meta["empty_field"], meta["set_separator"]
        types = self.types
        for i, (name, raw) in enumerate(zip(self.names, values, strict=True)):
            if raw == unset:
                continue
            kind = types[i] if i < len(types) else "string"
            if kind.startswith(("set[", "vector[")):
                inner = kind[kind.index("[") + 1:-1]
                rec[name] = [] if raw == empty else [_convert(v, inner) for v in raw.split(set_sep)]
            else:
                rec[name] = _convert(raw, kind)
        return rec


_ESCAPE = re.compile(r"\\x([0-9a-fA-F]{2})")


def _unescape(text: str) -> str:
    return _ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), text) if "\\x" in text else text


def _convert(raw: str, kind: str) -> Any:
    try:
        if kind in ("count", "int", "port"):
            return int(raw)
        if kind in ("double", "time", "interval"):
            return float(raw)
    except ValueError:
        return _unescape(raw)
    if kind == "bool":
        return raw == "T"
    return _unescape(raw)
