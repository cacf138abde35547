"""Input streams: replaying a peeked head, a size limit while reading, and text of any usual encoding.

Binary streams come first (every reader gets one); CSV and free text then read it as
text through :func:`open_text`, in lines of bounded length (:class:`Lines`).
"""

from __future__ import annotations

import codecs
import io
import json
from collections.abc import Iterator
from typing import IO

from commonwatch.errors import InputTooLarge

BUFFER_BYTES = 1024 * 1024
#: The decoding error handler of :func:`open_text`: bytes that are not UTF-8 are Windows-1252.
WINDOWS_1252_FALLBACK = "commonwatch.windows-1252"


class Prefixed(io.RawIOBase):
    """A raw reader that returns ``head`` first, then the rest of ``stream``."""

    def __init__(self, head: bytes, stream: IO[bytes]) -> None:
        self._head = memoryview(head)
        self._stream = stream

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        if self._head:
            n = min(len(buffer), len(self._head))
            buffer[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        data = self._stream.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)


class Limited(io.RawIOBase):
    """A raw reader that refuses to deliver more than ``limit`` bytes of ``stream``.

    Counting what is *delivered* (after decompression) also stops a small gzip file
    that inflates to an unbounded size.
    """

    def __init__(self, stream: IO[bytes], limit: int, name: str) -> None:
        self._stream = stream
        self._left = limit
        self._limit = limit
        self._name = name

    @property
    def source(self) -> IO[bytes]:
        """The stream read."""
        return self._stream

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self._stream.read(min(len(buffer), self._left + 1))
        if len(data) > self._left:
            raise InputTooLarge(
                f"{self._name} is larger than the limit of {self._limit} bytes (after "
                "decompression); split it, or raise the limit with --max-bytes"
            )
        self._left -= len(data)
        buffer[:len(data)] = data
        return len(data)


def buffered(raw: io.RawIOBase) -> io.BufferedReader:
    """A buffered reader (read, readline, peek) over ``raw``."""
    return io.BufferedReader(raw, buffer_size=BUFFER_BYTES)


def replay(head: bytes, stream: IO[bytes]) -> io.BufferedReader:
    """``stream`` as if ``head`` had not been read from it."""
    return buffered(Prefixed(head, stream))


def open_text(stream: IO[bytes], newline: str | None = None) -> io.TextIOWrapper:
    """``stream`` as text: UTF-8, or the UTF-16/UTF-32 that its first bytes show.

    The encoding is told from the first four bytes as ``json.loads`` tells it: a byte
    order mark (what Notepad's "Unicode" and PowerShell 5 write), else the zero bytes of
    UTF-16/UTF-32 text that starts with ASCII (RFC 4627 §3). Other text is UTF-8, and a
    byte sequence in it that is not UTF-8 is read as Windows-1252, the encoding of most
    text that is not (the WHATWG Encoding Standard reads the "latin1" label so too):
    ``b\\xfccher.de`` gives ``bücher.de``, not a U+FFFD that would split the word.
    ``newline`` is that of :class:`io.TextIOWrapper` (``None``: universal newlines).
    """
    head = stream.read(4)
    encoding = json.detect_encoding(head)
    errors = WINDOWS_1252_FALLBACK if encoding.startswith("utf-8") else "replace"
    return io.TextIOWrapper(replay(head, stream), encoding=encoding, errors=errors, newline=newline)


#: Each byte as Windows-1252 reads it; the five bytes it leaves unassigned are the C1
#: controls of the same number, as in the WHATWG Encoding Standard's windows-1252.
_WINDOWS_1252 = tuple(bytes([b]).decode("cp1252", "ignore") or chr(b) for b in range(256))


def _windows_1252(exc: UnicodeError) -> tuple[str, int]:
    if not isinstance(exc, UnicodeDecodeError):
        raise exc
    return "".join(_WINDOWS_1252[b] for b in exc.object[exc.start:exc.end]), exc.end


# Error handlers are found by name only: registered once, under a name of our own.
codecs.register_error(WINDOWS_1252_FALLBACK, _windows_1252)


class Lines:
    """The lines of a text, each at most ``limit`` characters besides its line end.

    A longer line is read past in pieces (memory stays bounded, and no piece is taken
    for a line: a value cut at a piece boundary would be a different value), given as
    ``""`` so that line numbers stay right, and its number is added to ``too_long`` for
    the reader to report.
    """

    def __init__(self, text: IO[str], limit: int) -> None:
        self._text = text
        self._limit = limit
        self.too_long: list[int] = []

    def __iter__(self) -> Iterator[str]:
        read, limit = self._text.readline, self._limit
        number = 0
        cut_at_cr = False  # the last piece read past ended in a CR, perhaps the size cut a CR LF
        while line := read(limit + 2):  # room for the content and a CR LF
            if cut_at_cr:
                cut_at_cr = False
                if line == "\n":  # the LF of that CR LF
                    continue
            number += 1
            if len(line) <= limit:
                yield line
                continue
            ended = line.endswith(("\n", "\r"))
            if ended and len(line.rstrip("\r\n")) <= limit:
                yield line
                continue
            while not ended and (line := read(BUFFER_BYTES)):
                ended = line.endswith(("\n", "\r"))
            cut_at_cr = line.endswith("\r")
            self.too_long.append(number)
            yield ""
