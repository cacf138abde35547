"""Where import input comes from: files, directories, ``-`` (stdin), uploads; gzip; limits; format.

A path argument expands to inputs: a file is one input; a directory holding a MISP
feed ``manifest.json`` is one MISP feed; any other directory is every non-hidden
file below it, in name order, and each entry there that cannot be read is an input
that says why (it is listed as rejected); a pipe (``<(zcat feed.gz)``) is a stream.
Gzip input (by its magic bytes, whatever the name) is decompressed on the fly. Every
input is read through a size limit counted after decompression. ``detect_format``
tells STIX, MISP, CSV and free text apart from the first bytes and the name.
"""

from __future__ import annotations

import errno
import gzip
import io
import os
import stat
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
    """One thing to import: a name for messages, and how to open it (binary, limited).

    ``error`` says why an entry of a folder cannot be read (a dangling link, a link loop,
    a subfolder that cannot be listed): it is then one rejection, listed like a bad record.
    """

    name: str
    kind: str  # "stream" or "misp-feed"
    path: Path | None
    opener: Callable[[], IO[bytes]]
    error: str | None = None


def expand(paths: Sequence[str], stdin: IO[bytes] | None = None) -> Iterator[Input]:
    """The inputs named by command-line ``paths`` (``-`` is ``stdin``).

    A path that cannot be used (missing, a dangling link, a link loop, behind a folder
    that may not be searched) raises :class:`InputError`: nothing is imported. A path
    that is neither a file nor a folder is read as a stream: ``<(zcat feed.gz)`` names a
    pipe such as ``/dev/fd/63``.
    """
    stdin_named = False
    for arg in paths:
        if arg == "-":
            if stdin is None:
                raise InputError("'-' names standard input, which is not available here")
            if stdin_named:
                raise InputError("'-' is named twice: standard input can be read only once")
            stdin_named = True
            stream = stdin
            yield Input("<stdin>", "stream", None, lambda s=stream: s)  # type: ignore[misc]
            continue
        path = Path(arg)
        try:
            info = path.stat()
        except OSError as exc:
            raise InputError(f"{arg}: {_why_unusable(path, exc)}") from exc
        if not stat.S_ISDIR(info.st_mode):
            yield _file_input(path)
        elif _is_file(path / "manifest.json"):
            yield Input(str(path), "misp-feed", path, lambda: io.BytesIO())
        else:
            yield from _folder(path, {(info.st_dev, info.st_ino)})


def _folder(root: Path, seen: set[tuple[int, int]]) -> Iterator[Input]:
    """Every non-hidden file below ``root``, in name order, depth first.

    Links are followed; a folder met again (a link to a folder above it, a second link
    to one) is read once. An entry that cannot be read is yielded with its ``error``,
    never skipped silently: a dangling link, a link loop, a subfolder that cannot be
    listed, a pipe or device (which could block the import for ever).
    """
    levels: list[Iterator[os.DirEntry[str] | Input]] = [iter(_listing(root))]
    while levels:
        entry = next(levels[-1], None)
        if entry is None:
            levels.pop()
            continue
        if isinstance(entry, Input):  # a folder that could not be listed
            yield entry
            continue
        path = Path(entry.path)
        try:
            info = entry.stat()
        except OSError as exc:
            yield _unreadable(path, _why_unusable(path, exc))
            continue
        if stat.S_ISDIR(info.st_mode):
            if (info.st_dev, info.st_ino) not in seen:
                seen.add((info.st_dev, info.st_ino))
                levels.append(iter(_listing(path)))
        elif stat.S_ISREG(info.st_mode):
            yield _file_input(path)
        else:
            yield _unreadable(path, "not a regular file (a pipe, socket or device), so not read from a "
                                    "folder; name it on the command line to read it")


def _listing(folder: Path) -> Sequence[os.DirEntry[str] | Input]:
    """The non-hidden entries of ``folder`` in name order, or why it cannot be listed."""
    try:
        with os.scandir(folder) as entries:
            return sorted((e for e in entries if not e.name.startswith(".")), key=lambda e: e.name)
    except OSError as exc:
        return [_unreadable(folder, f"the folder could not be listed: {_strerror(exc)}")]


def _why_unusable(path: Path, exc: OSError) -> str:
    if exc.errno == errno.ELOOP:
        return "a symbolic link that loops (it leads back to itself)"
    if exc.errno == errno.ENOENT:
        try:
            return f"a link to {os.readlink(path)!r}, which does not exist"
        except OSError:
            return "no such file or directory"
    return _strerror(exc)


def _strerror(exc: OSError) -> str:
    reason = (exc.strerror or str(exc)).lower()
    if exc.errno in (errno.EACCES, errno.EPERM):
        reason += " (check the permissions of the file and of the folders above it)"
    return reason


def _is_file(path: Path) -> bool:
    try:
        return stat.S_ISREG(path.stat().st_mode)
    except OSError:
        return False


def _file_input(path: Path) -> Input:
    return Input(str(path), "stream", path, lambda: path.open("rb"))


def _unreadable(path: Path, why: str) -> Input:
    return Input(str(path), "stream", path, lambda: path.open("rb"), error=why)


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
    if path is None:
        return
    info = path.stat()
    if stat.S_ISREG(info.st_mode) and info.st_size > max_bytes and not _is_gzip(path):
        raise InputTooLarge(
            f"{path} is {info.st_size} bytes, over the limit of {max_bytes}; split it, "
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
