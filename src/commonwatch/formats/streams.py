"""Binary input streams: replaying a peeked head, and enforcing a size limit while reading."""

from __future__ import annotations

import io
from typing import IO

from commonwatch.errors import InputTooLarge

BUFFER_BYTES = 1024 * 1024


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
