"""Any JSON-lines telemetry, mapped to STIX object paths by a small mapping file.

The mapping file is a JSON object::

    {
      "name": "proxy",
      "time": {"field": "@timestamp", "format": "iso8601"},
      "fields": {
        "client.ip": "network-traffic:src_ref.value",
        "destination.ip": "network-traffic:dst_ref.value",
        "url.full": "url:value",
        "dns.question.name": "domain-name:value",
        "file.hash.sha256": "file:hashes.'SHA-256'"
      }
    }

A source field name is looked up as a key first and then, if absent, as a dotted path
into nested objects. Targets are STIX object paths as in a pattern: plain properties,
a list property ending in ``[*]``, or ``network-traffic:src_ref.value`` /
``dst_ref.value``. ``time.format`` is ``iso8601`` (default), ``epoch`` or
``epoch_ms``. Mistakes in the file are reported with what to fix, before any line is
read.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson

from commonwatch.detect.engine import Event
from commonwatch.detect.events import EventKind, Field, Record
from commonwatch.errors import InvalidParameter
from commonwatch.formats.telemetry.source import (
    MAX_LINE_BYTES,
    LineParser,
    Problems,
    epoch_to_us,
    iso_to_us,
    too_long,
)

MAX_MAPPING_BYTES = 1 << 20
_TIME_FORMATS: dict[str, Callable[[Any], int | None]] = {
    "iso8601": lambda v: iso_to_us(v) if isinstance(v, str) else None,
    "epoch": epoch_to_us,
    "epoch_ms": lambda v: None if (s := epoch_to_us(v)) is None else s // 1000,
}


def _getter(name: str) -> Callable[[Record], Any]:
    parts = name.split(".")

    def get(rec: Record) -> Any:
        if name in rec:
            return rec[name]
        v: Any = rec
        for part in parts:
            if type(v) is not dict:
                return None
            v = v.get(part)
        return v

    return get


def load_mapping(path: str) -> EventKind:
    """Read and check a mapping file; InvalidParameter says what is wrong in it."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise InvalidParameter(f"cannot read mapping file {path}: {exc.strerror}") from None
    if len(data) > MAX_MAPPING_BYTES:
        raise InvalidParameter(f"mapping file {path} is larger than {MAX_MAPPING_BYTES} bytes")
    try:
        spec = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise InvalidParameter(f"mapping file {path} is not valid JSON: {exc}") from None
    return mapping_kind(spec, path)


def mapping_kind(spec: Any, where: str = "mapping") -> EventKind:
    """The event kind a mapping describes."""
    if not isinstance(spec, dict) or not isinstance(spec.get("fields"), dict) or not spec["fields"]:
        raise InvalidParameter(f"{where}: needs \"fields\", an object of source field -> STIX path")
    fields = []
    for source, target in spec["fields"].items():
        if not isinstance(target, str):
            raise InvalidParameter(f"{where}: the target of {source!r} must be a STIX path string")
        fields.append(Field(target, get=_getter(source)))
    time = spec.get("time", {})
    if not isinstance(time, dict):
        raise InvalidParameter(f"{where}: \"time\" must be an object with \"field\" and \"format\"")
    fmt = time.get("format", "iso8601")
    if fmt not in _TIME_FORMATS:
        raise InvalidParameter(f"{where}: time format {fmt!r} is not one of {', '.join(_TIME_FORMATS)}")
    read, get_time = _TIME_FORMATS[fmt], _getter(str(time.get("field", "timestamp")))
    name = spec.get("name", "json")
    return EventKind(f"json:{name}", tuple(fields), lambda rec: read(get_time(rec)))


class JsonLines:
    """The generic adapter for one mapping."""

    name = "json"

    def __init__(self, kind: EventKind) -> None:
        self.kind = kind
        self.kinds: tuple[EventKind, ...] = (kind,)

    def parser(self, source: str) -> _Parser:
        return _Parser(source, self.kind)


class _Parser(LineParser):
    def __init__(self, source: str, kind: EventKind) -> None:
        self.source, self.kind = source, kind

    def events(self, lines: list[bytes], first_line: int, problems: Problems) -> Iterator[Event]:
        for n, line in enumerate(lines, first_line):
            if too_long(line):
                problems.add(self.source, n, f"line longer than {MAX_LINE_BYTES} bytes")
                continue
            try:
                rec = orjson.loads(line)
            except orjson.JSONDecodeError:
                if line.strip():
                    problems.add(self.source, n, "not valid JSON")
                continue
            if type(rec) is not dict:
                problems.add(self.source, n, "not a JSON object")
                continue
            yield self.kind, rec
