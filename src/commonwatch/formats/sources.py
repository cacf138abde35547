"""Where import input comes from: files, directories, ``-`` (stdin), uploads; gzip; limits; format.

A path argument expands to inputs: a file is one input; a directory holding a MISP
feed ``manifest.json`` is one MISP feed; any other directory is every non-hidden
file below it, in name order. Gzip input (by its magic bytes, whatever the name) is
decompressed on the fly. Every input is read through a size limit counted after
decompression. ``detect_format`` tells STIX, MISP, CSV and free text apart from the
first bytes and the name.
"""

from __future__ import annotations

import gzip
import io
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from commonwatch.errors import InputError, InputTooLarge
from commonwatch.formats.streams import BUFFER_BYTES, Limited, buffered, replay

FORMATS = ("auto", "stix", "misp", "csv", "text")
DEFAULT_MAX_BYTES = 4 * 1024 * 1024 * 1024
DETECT_BYTES = 64 * 1024
_GZIP_MAGIC = b"\x1f\x8b"


@dataclass(frozen=True, slots=True)
class Input:
    """One thing to import: a name for messages, and how to open it (binary, limited)."""

    name: str
    kind: str  # "stream" or "misp-feed"
    path: Path | None
    opener: Callable[[], IO[bytes]]


def expand(paths: Sequence[str], stdin: IO[bytes] | None = None) -> Iterator[Input]:
    """The inputs named by command-line ``paths`` (``-`` is ``stdin``)."""
    for arg in paths:
        if arg == "-":
            if stdin is None:
                raise InputError("'-' names standard input, which is not available here")
            stream = stdin
            yield Input("<stdin>", "stream", None, lambda s=stream: s)  # type: ignore[misc]
            continue
        path = Path(arg)
        if path.is_dir():
            if (path / "manifest.json").is_file():
                yield Input(str(path), "misp-feed", path, lambda: io.BytesIO())
                continue
            for child in sorted(p for p in path.rglob("*") if p.is_file()):
                if not any(part.startswith(".") for part in child.relative_to(path).parts):
                    yield _file_input(child)
        elif path.is_file():
            yield _file_input(path)
        else:
            raise InputError(f"{arg}: no such file or directory")


def _file_input(path: Path) -> Input:
    return Input(str(path), "stream", path, lambda: path.open("rb"))


def open_input(raw: IO[bytes], name: str, max_bytes: int = DEFAULT_MAX_BYTES) -> io.BufferedReader:
    """``raw`` decompressed if it is gzip, limited to ``max_bytes`` delivered bytes."""
    magic = raw.read(2)
    stream: IO[bytes] = replay(magic, raw)
    if magic == _GZIP_MAGIC:
        stream = _Gunzipped(gzip.GzipFile(fileobj=stream, mode="rb"))  # type: ignore[assignment]
    return buffered(Limited(stream, max_bytes, name))


class _Gunzipped:
    """A gzip file read one decompression step at a time, whole lines first.

    A gzip file that breaks off (cut short, corrupt) ends like a complete one, after
    every complete line before the break: the partial line at the break is dropped, so
    no reader takes half a row for a value, and the error is kept in ``error`` for the
    importer to report (see :func:`broken_off`). Lines longer than
    :data:`~commonwatch.formats.streams.BUFFER_BYTES` are passed on in pieces.
    """

    def __init__(self, gz: gzip.GzipFile) -> None:
        self._gz = gz
        self._pending = b""  # the bytes after the last line end delivered
        self.error: str | None = None

    def read(self, size: int = -1) -> bytes:
        size = size if size > 0 else BUFFER_BYTES
        while self.error is None:
            try:
                data = self._gz.read1(size)
            except (EOFError, OSError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
                self.error = f"not valid gzip from here on ({exc})"
                self._pending = b""
                return b""
            if not data:  # the end of the last member: the rest is a last line
                out, self._pending = self._pending, b""
                return out
            data = self._pending + data
            cut = data.rfind(b"\n") + 1
            if cut == 0 and len(data) < BUFFER_BYTES:
                self._pending = data
                continue
            cut = cut or len(data)
            self._pending = data[cut:]
            return data[:cut]
        return b""

    def close(self) -> None:
        self._gz.close()


def broken_off(stream: io.BufferedReader) -> str | None:
    """Why the gzip input behind ``stream`` (from :func:`open_input`) stopped early, if it did."""
    raw = stream.raw
    source = raw.source if isinstance(raw, Limited) else None
    return source.error if isinstance(source, _Gunzipped) else None


def check_size(path: Path | None, max_bytes: int) -> None:
    """Refuse a plain file already known to exceed the limit, before reading any of it."""
    if path is not None and path.stat().st_size > max_bytes and not _is_gzip(path):
        raise InputTooLarge(
            f"{path} is {path.stat().st_size} bytes, over the limit of {max_bytes}; split it, "
            "or raise the limit with --max-bytes"
        )


def _is_gzip(path: Path) -> bool:
    with path.open("rb") as f:
        return f.read(2) == _GZIP_MAGIC


def detect_format(head: bytes, name: str) -> str:
    """``stix``, ``misp``, ``csv`` or ``text`` for an input starting with ``head``."""
    base = name.lower().removesuffix(".gz")
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if text[:1] in (b"{", b"["):
        if b'"Event"' in text or b'"Attribute"' in text or (b'"info"' in text and b'"uuid"' in text
                                                              and b'"spec_version"' not in text):
            return "misp"
        return "stix"
    if base.endswith((".csv", ".tsv")):
        return "csv"
    if base.endswith((".json", ".jsonl", ".ndjson")):
        return "stix"
    return "text"
