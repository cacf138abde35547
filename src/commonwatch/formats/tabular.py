"""Indicators from CSV (and TSV) with a header mapping.

A :class:`Mapping` says which column holds what. Without one, columns are found by
their header names (``value``/``indicator``/``ioc``; ``type``/``kind``;
``first_seen``; ``last_seen``; ``confidence``; ``tags``/``labels``). The type comes
from the type column, a fixed type for the whole file, or, failing both, from the
value itself (the free-text classifier). Type names accepted: the value kinds of
``formats/observables.py`` (``ipv4-addr``, ``domain-name``, ``sha256``...), MISP
attribute types (``ip-dst``, ``domain``, ``hostname``, ``url``, ``md5``...) and the
plain words ``ip``, ``domain``, ``email``, ``hash``. Addresses, domain names, URLs and
e-mail addresses are refanged as free text is (``hxxp://evil[.]com`` is
``http://evil.com``): feeds defang them as often as reports do.

Each row becomes an SCO and an indicator whose id is derived from the importing
organisation and the value (re-importing adds nothing); ``first_seen`` is the
indicator's ``created``/``valid_from``, ``last_seen`` its ``valid_until``,
``confidence`` (0-100) its confidence, ``tags`` (separated by ``;``, ``|`` or ``,``)
its labels, ``tlp`` (``amber``, ``TLP:RED``, ``amber+strict``...) its TLP marking (the
stricter of it and ``--tlp`` when both are given; the community's default when
neither). A row that cannot be read (an unknown TLP level included) is rejected with
its line number, as is a line over :data:`MAX_LINE_CHARS`; the rows after it are read.
The file is decoded as free text is: UTF-8, UTF-16 (Excel's "Unicode text") or
Windows-1252.
"""

from __future__ import annotations

import csv
import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO

from commonwatch.domain.defang import refang
from commonwatch.domain.markings import parse_tlp
from commonwatch.errors import InputError, InvalidParameter
from commonwatch.formats import freetext
from commonwatch.formats import observables as ob
from commonwatch.formats.misp import ATTRIBUTE_KINDS
from commonwatch.formats.normalise import fix_timestamp
from commonwatch.formats.records import Record, rejected
from commonwatch.formats.streams import Lines, open_text

MAX_FIELD_CHARS = 1024 * 1024
#: Longest line read; a longer one is rejected (rows are read a line at a time, memory stays flat).
MAX_LINE_CHARS = 4 * MAX_FIELD_CHARS
_HEADERS = {
    "value": ("value", "indicator", "ioc", "observable", "ioc_value", "indicator_value"),
    "type": ("type", "kind", "ioc_type", "indicator_type", "value_type"),
    "first_seen": ("first_seen", "firstseen", "first seen", "first_seen_utc", "date"),
    "last_seen": ("last_seen", "lastseen", "last seen", "last_seen_utc"),
    "confidence": ("confidence", "score"),
    "tags": ("tags", "labels", "tag"),
    "tlp": ("tlp", "tlp_level"),
}
_WORDS = {"ip": "ip", "ipv4": "ipv4-addr", "ipv6": "ipv6-addr", "domain": "domain-name",
          "fqdn": "domain-name", "hostname": "domain-name", "email": "email-addr", "e-mail": "email-addr",
          "hash": "hash",
          "sha-1": "sha1", "sha-256": "sha256", "sha-512": "sha512", "vulnerability": "cve"}
_HASH_BY_LEN = {32: "md5", 40: "sha1", 64: "sha256", 128: "sha512"}
#: Kinds whose values feeds defang (``hxxp://evil[.]com``); only these are refanged, as
#: brackets and backslashes are legitimate in registry keys, mutexes and file names.
_DEFANGED_KINDS = frozenset({"ipv4-addr", "ipv6-addr", "domain-name", "url", "email-addr"})


@dataclass(frozen=True, slots=True)
class Mapping:
    """Which column holds what; ``None`` means "find it by its header name"."""

    value: str | None = None
    type: str | None = None
    fixed_type: str | None = None
    first_seen: str | None = None
    last_seen: str | None = None
    confidence: str | None = None
    tags: str | None = None
    tlp: str | None = None
    delimiter: str | None = None

    @classmethod
    def parse(cls, text: str) -> Mapping:
        """``value=ioc,type=kind,fixed_type=url,first_seen=...,delimiter=;`` as a mapping."""
        fields: dict[str, str] = {}
        for part in filter(None, (p.strip() for p in text.split(","))):
            key, eq, column = part.partition("=")
            key = key.strip().replace("-", "_")
            if not eq or key not in cls.__slots__:  # type: ignore[attr-defined]
                raise InvalidParameter(
                    f"mapping entry {part!r} is not KEY=COLUMN with KEY one of "
                    "value, type, fixed_type, first_seen, last_seen, confidence, tags, tlp, delimiter")
            fields[key] = {"tab": "\t", "comma": ",", "semicolon": ";"}.get(column, column)
        if "fixed_type" in fields:
            kind_of(fields["fixed_type"], "x")  # fail early on an unknown type
        return cls(**fields)


def kind_of(type_name: str, value: str) -> str:
    """The value kind for a type name given in a file (or by the user) and a value."""
    name = type_name.strip()
    kinds = ATTRIBUTE_KINDS.get(name)
    kind = kinds[0] if kinds and len(kinds) == 1 else _WORDS.get(name.lower(), name.lower())
    if kind == "ip":
        return ob.ip_kind(value.strip())
    if kind == "hash":
        found = _HASH_BY_LEN.get(len(value.strip()))
        if found is None:
            raise InputError(f"{value!r} is not an MD5, SHA-1, SHA-256 or SHA-512 hash")
        return found
    if kind not in ob.KINDS:
        raise InputError(f"unknown type {type_name!r}; use one of {', '.join(ob.KINDS)} or a MISP type")
    return kind


def _guess(value: str) -> str:
    found = freetext.extract(value)
    if len(found) == 1 and found[0].value.lower() == value.strip().lower().rstrip("."):
        return found[0].kind
    raise InputError(f"cannot tell what kind of value {value!r} is; give a type column or fixed_type")


def _column(header: list[str], wanted: str | None, role: str) -> int | None:
    lowered = [h.strip().lower() for h in header]
    if wanted is not None:
        if wanted.isdigit() and int(wanted) < len(header):
            return int(wanted)
        if wanted.strip().lower() in lowered:
            return lowered.index(wanted.strip().lower())
        raise InvalidParameter(
            f"the mapping names column {wanted!r} for {role}, which the header does not have")
    for name in _HEADERS[role]:
        if name in lowered:
            return lowered.index(name)
    return None


def read_csv(stream: IO[bytes], source: str, ctx: ob.ImportContext, mapping: Mapping) -> Iterator[Record]:
    """Records for every row of a CSV file (first row: the header).

    Decoded as free text is (UTF-8, UTF-16 with a BOM, else Windows-1252). A line over
    :data:`MAX_LINE_CHARS` is one rejection, and the rows after it are read.
    """
    lines = Lines(open_text(stream, newline=""), MAX_LINE_CHARS)
    rows = iter(lines)
    first = next(rows, None)
    if first is None:
        yield rejected(source, "", "the file is empty")
        return
    reader = csv.reader(itertools.chain([first], rows), delimiter=mapping.delimiter or _sniff(first, source))
    try:
        header = next(reader)
    except csv.Error as exc:
        yield rejected(source, "line 1", f"not readable as CSV: {exc}")
        return
    if lines.too_long:
        yield _too_long(source, 1)
        return
    cols = {role: _column(header, getattr(mapping, role), role) for role in _HEADERS}
    if cols["value"] is None:
        yield rejected(source, "line 1", "no value column: name it value/indicator/ioc in the header, or "
                                         "give --mapping value=COLUMN")
        return
    while True:
        try:
            row = next(reader, None)
        except csv.Error as exc:
            yield rejected(source, f"line {reader.line_num}", f"not readable as CSV: {exc}")
            continue
        yield from (_too_long(source, number) for number in lines.too_long)
        lines.too_long.clear()
        if row is None:
            return
        if not any(cell.strip() for cell in row):
            continue
        position = f"line {reader.line_num}"
        try:
            yield from _row(row, cols, mapping, ctx, source, position)
        except InputError as exc:
            yield rejected(source, position, exc.message)


def _too_long(source: str, number: int) -> Record:
    return rejected(source, f"line {number}", f"the line is longer than {MAX_LINE_CHARS} characters and "
                                              "was not read")


def _cell(row: list[str], index: int | None) -> str:
    if index is None or index >= len(row):
        return ""
    value = row[index].strip()
    if len(value) > MAX_FIELD_CHARS:
        raise InputError(f"a field is longer than {MAX_FIELD_CHARS} characters")
    return value


def _row(row: list[str], cols: dict[str, int | None], mapping: Mapping, ctx: ob.ImportContext,
         source: str, position: str) -> Iterator[Record]:
    value = _cell(row, cols["value"])
    if not value:
        raise InputError("the value column is empty")
    type_name = mapping.fixed_type or _cell(row, cols["type"])
    plain = refang(value)
    kind = kind_of(type_name, plain) if type_name else _guess(plain)
    if kind in _DEFANGED_KINDS:
        value = plain
    first, last = _cell(row, cols["first_seen"]), _cell(row, cols["last_seen"])
    created = fix_timestamp(first, need_ms=True) if first else None
    if first and created is None:
        raise InputError(f"first_seen {first!r} is not a date-time")
    valid_until = fix_timestamp(last) if last else None
    if last and valid_until is None:
        raise InputError(f"last_seen {last!r} is not a date-time")
    raw_confidence = _cell(row, cols["confidence"])
    confidence = None
    if raw_confidence:
        if not raw_confidence.isdigit() or int(raw_confidence) > 100:
            raise InputError(f"confidence {raw_confidence!r} is not an integer from 0 to 100")
        confidence = int(raw_confidence)
    raw_tags = _cell(row, cols["tags"])
    labels = tuple(t.strip() for t in raw_tags.replace("|", ";").replace(",", ";").split(";") if t.strip())
    raw_tlp = _cell(row, cols["tlp"])
    tlp = ctx.tlp
    if raw_tlp:  # the row's own marking; with --tlp as well, the stricter of the two
        tlp = max(parse_tlp(raw_tlp), ctx.tlp) if ctx.tlp is not None else parse_tlp(raw_tlp)
    yield from freetext.records_for(kind, value, ctx, source, position, created=created,
                                    valid_until=valid_until, confidence=confidence, labels=labels, tlp=tlp)


def _sniff(first_line: str, source: str) -> str:
    if source.lower().removesuffix(".gz").endswith(".tsv"):
        return "\t"
    counts = {d: first_line.count(d) for d in (",", "\t", ";", "|")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","
