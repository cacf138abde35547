"""Telemetry adapters: log lines in, (event kind, record) pairs out for the detection engine.

One module per format: :mod:`.suricata` (eve.json), :mod:`.zeek` (JSON and TSV),
:mod:`.nfdump` (NetFlow/IPFIX CSV), :mod:`.generic` (JSON lines + a mapping file).
:mod:`.source` reads files, gzip and stdin in batches and counts unreadable lines.
"""

from __future__ import annotations

from typing import Protocol

from commonwatch.detect.events import EventKind
from commonwatch.errors import InvalidParameter
from commonwatch.formats.telemetry.generic import JsonLines, load_mapping
from commonwatch.formats.telemetry.nfdump import NfdumpCsv
from commonwatch.formats.telemetry.source import LineParser, Problems
from commonwatch.formats.telemetry.suricata import SuricataEve
from commonwatch.formats.telemetry.zeek import ZeekLogs

Parser = LineParser
FORMATS = ("auto", "suricata", "zeek", "nfdump", "json")


class Adapter(Protocol):
    name: str
    kinds: tuple[EventKind, ...]

    def parser(self, source: str) -> Parser: ...


def builtin_adapters() -> dict[str, Adapter]:
    return {"suricata": SuricataEve(), "zeek": ZeekLogs(), "nfdump": NfdumpCsv()}


def adapters_for(fmt: str, mapping: str | None) -> dict[str, Adapter]:
    """The adapters a run may use: the chosen format, or all (``auto``) plus a mapping."""
    if fmt not in FORMATS:
        raise InvalidParameter(f"format {fmt!r} is not one of {', '.join(FORMATS)}")
    found: dict[str, Adapter] = {}
    if mapping is not None:
        found["json"] = JsonLines(load_mapping(mapping))
    elif fmt == "json":
        raise InvalidParameter("the json format needs --mapping FILE (see docs/detection.md)")
    builtin = builtin_adapters()
    if fmt == "auto":
        found.update(builtin)
    elif fmt != "json":
        found[fmt] = builtin[fmt]
    return found


def sniff(first: bytes, adapters: dict[str, Adapter]) -> Adapter | None:
    """Which adapter reads a source, from its first non-empty line."""
    text = first.lstrip()
    if len(adapters) == 1:
        return next(iter(adapters.values()))
    if text.startswith(b"#separator") or text.startswith(b"#fields"):
        return adapters.get("zeek")
    if text.startswith(b"{"):
        if b'"event_type"' in text and "suricata" in adapters:
            return adapters["suricata"]
        if (b'"id.orig_h"' in text or b'"_path"' in text or b'"uid"' in text) and "zeek" in adapters:
            return adapters["zeek"]
        return adapters.get("json")
    if b"sa" in text and b"da" in text and b"," in text:
        return adapters.get("nfdump")
    return None


__all__ = ["FORMATS", "Adapter", "Parser", "Problems", "adapters_for", "builtin_adapters", "sniff"]
