"""STIX bundles in, STIX 2.1 objects out: big bundles streamed, JSON lines, STIX 2.0 upgraded.

Three shapes are read, chosen by looking at the start of the input:

* a bundle (``{"type": "bundle", "objects": [...]}``), of any size: its objects are
  streamed one at a time with ijson's C backend (``yajl2_c``), so memory stays flat;
* JSON lines: one object or one bundle per line;
* a single object, or a JSON array of objects.

Objects without ``spec_version`` that carry ``created`` are STIX 2.0 (STIX 2.1 §3.2)
and are upgraded as the 2.1 specification describes its changes from 2.0 (§1.7 of
the 2.1 standard, "Changes from STIX 2.0"): ``spec_version`` is added; the ``labels``
that 2.0 used as the type vocabulary become ``indicator_types``, ``malware_types``
(with the now required ``is_family``, true: a 2.0 malware object described a family),
``tool_types``, ``threat_actor_types`` and ``report_types``; indicators get
``pattern_type: "stix"``; the observables embedded in 2.0 ``observed-data`` become
top-level SCOs with deterministic ids, referenced by ``object_refs`` (§4.14), their
``*_ref`` keys resolved to those ids. Every object then goes through the lenient
normaliser.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator
from typing import IO, Any

import ijson

from commonwatch.domain.sco_ids import deterministic_id
from commonwatch.domain.stix_types import TLP_DEFINITIONS
from commonwatch.formats.normalise import fix_hashes, normalise
from commonwatch.formats.records import Record, rejected
from commonwatch.formats.streams import replay

#: How much of an input is looked at to tell a bundle, JSON lines and one object apart.
HEAD_BYTES = 64 * 1024
#: Longest JSON line accepted in JSON-lines input.
MAX_LINE_BYTES = 16 * 1024 * 1024

_LABELS_TO = {
    "indicator": "indicator_types", "malware": "malware_types", "tool": "tool_types",
    "threat-actor": "threat_actor_types", "report": "report_types",
}


def upgrade_20(obj: dict[str, Any]) -> list[dict[str, Any]]:
    """The STIX 2.1 form of a STIX 2.0 object; observed-data may bring its SCOs along."""
    obj = dict(obj)
    obj["spec_version"] = "2.1"
    stype = obj.get("type")
    vocab = _LABELS_TO.get(stype) if isinstance(stype, str) else None
    if vocab and vocab not in obj and isinstance(obj.get("labels"), list):
        obj[vocab] = obj.pop("labels")
    if stype == "malware":
        obj.setdefault("is_family", True)
    elif stype == "indicator":
        obj.setdefault("pattern_type", "stix")
    elif stype == "observed-data" and isinstance(obj.get("objects"), dict):
        scos = _lift_observables(obj.pop("objects"))
        obj["object_refs"] = [o["id"] for o in scos]
        return [*scos, obj]
    return [obj]


def _lift_observables(embedded: dict[str, Any]) -> list[dict[str, Any]]:
    """2.0 ``objects`` dictionary -> 2.1 SCOs with deterministic ids, in dependency order."""
    pending = {k: dict(v) for k, v in embedded.items() if isinstance(v, dict)}
    ids: dict[str, str] = {}
    out: list[dict[str, Any]] = []
    while pending:
        progressed = False
        for key, sco in list(pending.items()):
            refs = _local_refs(sco)
            if any(r in pending and r != key for r in refs):
                continue
            out.append(_resolve(sco, ids))
            ids[key] = out[-1]["id"]
            del pending[key]
            progressed = True
        if not progressed:  # a reference cycle: ids of the remaining objects ignore refs
            key, sco = next(iter(pending.items()))
            out.append(_resolve(sco, ids))
            ids[key] = out[-1]["id"]
            del pending[key]
    return out


def _local_refs(sco: dict[str, Any]) -> list[str]:
    found: list[str] = []
    for name, value in sco.items():
        if name.endswith("_ref") and isinstance(value, str):
            found.append(value)
        elif name.endswith("_refs") and isinstance(value, list):
            found.extend(v for v in value if isinstance(v, str))
    return found


def _resolve(sco: dict[str, Any], ids: dict[str, str]) -> dict[str, Any]:
    for name, value in list(sco.items()):
        if name.endswith("_ref") and isinstance(value, str):
            sco[name] = ids.get(value, value)
        elif name.endswith("_refs") and isinstance(value, list):
            sco[name] = [ids.get(v, v) if isinstance(v, str) else v for v in value]
    sco["spec_version"] = "2.1"
    if "hashes" in sco:
        sco["hashes"] = fix_hashes(sco["hashes"])
    sco["id"] = deterministic_id(sco)
    return sco


def convert(obj: Any) -> list[dict[str, Any]]:
    """One input object as STIX 2.1 objects (normalised; 2.0 upgraded). [] if not an object.

    A predefined TLP marking definition becomes the exact STIX 2.1 object (§7.2.1.4):
    STIX 2.0 gave it no ``name``, and some tools write it with their own ``created``.
    One whose definition says another level than its id is left for validation to refuse.
    """
    if not isinstance(obj, dict):
        return []
    oid = obj.get("id")
    predefined = TLP_DEFINITIONS.get(oid) if isinstance(oid, str) else None
    if predefined is not None and obj.get("definition") == predefined["definition"] \
            and obj.get("definition_type", "tlp") == "tlp":
        return [{**predefined, "definition": dict(predefined["definition"])}]  # (a copy)
    if obj.get("spec_version") == "2.0" or ("spec_version" not in obj and "created" in obj):
        return [normalise(o) for o in upgrade_20(obj)]
    return [normalise(obj)]


def _records(obj: Any, source: str, position: str) -> Iterator[Record]:
    if not isinstance(obj, dict):
        yield rejected(source, position, f"expected a JSON object, got {type(obj).__name__}")
        return
    if obj.get("type") == "bundle":
        objects = obj.get("objects", [])
        if not isinstance(objects, list):
            yield rejected(source, position, "the bundle's 'objects' is not a list")
            return
        for n, inner in enumerate(objects, 1):
            yield from _records(inner, source, f"{position} object {n}" if position else f"object {n}")
        return
    if "type" not in obj:
        yield rejected(source, position, "not a STIX object: it has no 'type' property")
        return
    for converted in convert(obj):
        yield Record(source, position, converted)


def read_stix(stream: IO[bytes], source: str) -> Iterator[Record]:
    """Every STIX object of ``stream`` as a record (rejections for what cannot be read)."""
    head = stream.read(HEAD_BYTES)
    if head.startswith(_BOM):
        head = head[len(_BOM):] + stream.read(len(_BOM))
    stripped = head.lstrip()
    if not stripped:
        yield rejected(source, "", "the input is empty")
        return
    small = len(head) < HEAD_BYTES
    if _json_lines_start(stripped) and not (small and _loads(head) is not _BAD):
        yield from _json_lines(head, stream, source)
    elif small:  # the whole input is in hand: parse it at once
        yield from _small(head, source)
    else:
        yield from _stream_bundle(head, stream, source, array=stripped.startswith(b"["))


_BAD = object()
_BOM = b"\xef\xbb\xbf"
#: Deepest nesting read. Streaming keeps a path per level (memory grows with the square
#: of the depth), and no STIX content comes near it.
MAX_DEPTH = 512


def _json_lines_start(stripped: bytes) -> bool:
    """JSON lines: the first line is an object and another line follows it; or the first
    line is bad, but not the opening of an array, and one of the next four is an object
    followed by more (a bad first line does not hide the good ones after it). A small
    input that is one JSON value as a whole (an array written one object per line) is
    read as that value by the caller."""
    lines = stripped.split(b"\n", 6)[:6]
    if len(lines) < 2:
        return False
    if isinstance(_loads(lines[0]), dict):
        return bool(b"".join(lines[1:]).strip())
    if lines[0].lstrip().startswith(b"["):
        return False
    return any(line.strip() and isinstance(_loads(line), dict) and b"".join(lines[i + 1:]).strip()
               for i, line in enumerate(lines[1:5], 1))


def _small(text: bytes, source: str) -> Iterator[Record]:
    """An input read whole: a value, a value followed by garbage (the value's objects and
    one rejection), or a value cut short (what came before the break, as streaming keeps)."""
    try:
        decoded = text.decode(json.detect_encoding(text), "surrogatepass")  # as json.loads reads bytes
        value, end = json.JSONDecoder().raw_decode(decoded, len(decoded) - len(decoded.lstrip()))
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        start = text.lstrip()[:1]
        if start in (b"{", b"["):
            yield from _stream_bundle(text, io.BytesIO(), source, array=start == b"[")
        else:
            yield rejected(source, "", f"not valid JSON: {_error(text)}")
        return
    if isinstance(value, list):
        for n, obj in enumerate(value, 1):
            yield from _records(obj, source, f"item {n}")
    else:
        yield from _records(value, source, "")
    rest = decoded[end:].strip()
    if rest:
        yield rejected(source, "after the JSON value", f"not valid JSON: {len(rest)} characters of "
                                                       f"trailing data ({rest[:40]!r}) ignored")


def _loads(data: bytes) -> Any:
    try:
        return json.loads(data)
    except (ValueError, RecursionError):
        return _BAD


def _error(data: bytes) -> str:
    try:
        json.loads(data)
    except ValueError as exc:
        return str(exc)
    except RecursionError:
        return "nested too deeply"
    return ""


def _json_lines(head: bytes, stream: IO[bytes], source: str) -> Iterator[Record]:
    lines = replay(head, stream)
    number = 0
    while True:
        line = lines.readline(MAX_LINE_BYTES + 1)
        if not line:
            return
        number += 1
        if len(line) > MAX_LINE_BYTES and not line.endswith(b"\n"):
            yield rejected(source, f"line {number}", f"line longer than {MAX_LINE_BYTES} bytes")
            while line and not line.endswith(b"\n"):
                line = lines.readline(MAX_LINE_BYTES)
            continue
        if not line.strip():
            continue
        value = _loads(line)
        if value is _BAD:
            yield rejected(source, f"line {number}", f"not valid JSON: {_error(line)}")
            continue
        yield from _records(value, source, f"line {number}")


class _TooDeep(ValueError):
    pass


#: MAX_DEPTH levels opened in a row (an opening bracket or brace, perhaps after a key).
_DEEP = re.compile(rb'(?:[\[{]\s*(?:"[^"\\]{0,64}"\s*:\s*)?){%d}' % MAX_DEPTH)


class _DepthGuard:
    """The stream ijson reads, refused where a chunk opens :data:`MAX_DEPTH` levels in a
    row: streaming keeps a path per level, so memory would grow with the square of the
    depth (gigabytes for a few tens of kilobytes of brackets). Checked per chunk, so a
    run split by a chunk boundary may go somewhat deeper, which is harmless."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream

    def read(self, size: int = -1) -> bytes:
        data = self._stream.read(size)
        # Counting brackets (C speed) rules out almost every chunk; only a chunk that opens
        # far more than it closes is searched for a run of levels (the search is slow).
        opened = data.count(b"[") + data.count(b"{") - data.count(b"]") - data.count(b"}")
        if opened > MAX_DEPTH and _DEEP.search(data) is not None:
            raise _TooDeep(f"nested more than {MAX_DEPTH} levels deep")
        return data


def _stream_bundle(head: bytes, stream: IO[bytes], source: str, *, array: bool) -> Iterator[Record]:
    """Objects of a big bundle (or array), one at a time, in constant memory."""
    prefix = "item" if array else "objects.item"
    number = 0
    try:
        for obj in ijson.items(_DepthGuard(replay(head, stream)), prefix, use_float=True):
            number += 1
            if obj.__class__ is dict and obj.get("spec_version") == "2.1" and obj.get("type") != "bundle":
                yield Record(source, f"object {number}", normalise(obj))  # the common case, inline
            else:
                yield from _records(obj, source, f"object {number}")
    except (ijson.JSONError, _TooDeep) as exc:
        yield rejected(source, f"after object {number}",
                       f"not valid JSON ({exc}); the rest of this input could not be read")
        return
    if number == 0:
        yield rejected(source, "", "no STIX objects found: expected a bundle with 'objects', "
                                   "JSON lines or an array of objects")
