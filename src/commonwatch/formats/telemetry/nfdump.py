"""NetFlow/IPFIX as written by ``nfdump -o csv``.

The header line names the columns (``ts,te,td,sa,da,sp,dp,pr,flg,...,ipkt,ibyt,opkt,
obyt,...``); each flow becomes a ``network-traffic`` with ``src_ref``/``dst_ref``
addresses (``sa``/``da``), ports, ``protocols`` (``pr`` in lower case), and
``src_packets``/``src_byte_count``/``dst_packets``/``dst_byte_count``. The ``Summary``
block nfdump appends after the flows is skipped. ``ts`` is read as UTC
(``YYYY-MM-DD hh:mm:ss[.fff]``), as nfdump prints it with ``TZ=UTC``.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from typing import Any

from commonwatch.detect.engine import Event
from commonwatch.detect.events import EventKind, Field, Record
from commonwatch.formats.telemetry.source import MAX_LINE_BYTES, LineParser, Problems, iso_to_us, too_long

_NUMBERS = ("sp", "dp", "ipkt", "ibyt", "opkt", "obyt")


def _protocols(rec: Record) -> list[str] | None:
    proto = rec.get("pr")
    return [proto.strip().lower()] if isinstance(proto, str) and proto.strip() else None


def _time(rec: Record) -> int | None:
    value = rec.get("ts")
    return iso_to_us(value.strip()) if isinstance(value, str) else None


KIND = EventKind("nfdump:flow", (
    Field("network-traffic:src_ref.value", ("sa",)),
    Field("network-traffic:dst_ref.value", ("da",)),
    Field("network-traffic:src_port", ("sp",)),
    Field("network-traffic:dst_port", ("dp",)),
    Field("network-traffic:protocols[*]", get=_protocols),
    Field("network-traffic:src_packets", ("ipkt",)),
    Field("network-traffic:src_byte_count", ("ibyt",)),
    Field("network-traffic:dst_packets", ("opkt",)),
    Field("network-traffic:dst_byte_count", ("obyt",)),
), _time)


class NfdumpCsv:
    """The nfdump CSV adapter; a parser per source keeps that source's header."""

    name = "nfdump"
    kinds: tuple[EventKind, ...] = (KIND,)

    def parser(self, source: str) -> _Parser:
        return _Parser(source)


class _Parser(LineParser):
    def __init__(self, source: str) -> None:
        self.source = source
        self.columns: list[str] | None = None
        self.done = False

    def events(self, lines: list[bytes], first_line: int, problems: Problems) -> Iterator[Event]:
        for n, raw in enumerate(lines, first_line):
            if self.done:
                problems.skipped["nfdump summary lines"] += 1
                continue
            if too_long(raw):
                problems.add(self.source, n, f"line longer than {MAX_LINE_BYTES} bytes")
                continue
            try:
                line = raw.decode("utf-8").strip()
            except UnicodeDecodeError:
                problems.add(self.source, n, "not UTF-8 text")
                continue
            if not line:
                continue
            if line.startswith("Summary"):
                self.done = True
                problems.skipped["nfdump summary lines"] += 1
                continue
            values = next(csv.reader([line]))
            if self.columns is None:
                if "sa" not in values or "da" not in values:
                    problems.add(self.source, n, "the first line is not an nfdump CSV header "
                                 "(expected columns ts,te,td,sa,da,...)")
                    self.done = True
                    continue
                self.columns = [v.strip() for v in values]
                continue
            if len(values) < len(self.columns):
                problems.add(self.source, n, f"has {len(values)} columns where the header "
                             f"names {len(self.columns)}")
                continue
            yield KIND, _record(self.columns, values)


def _record(columns: list[str], values: list[str]) -> Record:
    rec: dict[str, Any] = {}
    for name, value in zip(columns, values, strict=False):
        value = value.strip()
        if name in _NUMBERS:
            try:
                rec[name] = int(float(value))
            except ValueError:
                rec[name] = value
        else:
            rec[name] = value
    return rec
