"""Reading telemetry: files or stdin, plain or gzip, in batches of lines; bad lines counted.

Every adapter reads through :func:`open_lines` and reports lines it cannot use to a
:class:`Problems` counter with a reason; a bad line is never fatal and never silently
dropped (the summary of ``commonwatch detect`` prints the counts and first examples).
"""

from __future__ import annotations

import functools
import gzip
import io
import sys
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any, TypedDict

import msgspec
import orjson

from commonwatch.detect.engine import Event, IndicatorSet
from commonwatch.detect.events import EventKind, Record
from commonwatch.detect.scan import Match, Scan, Sink, feed
from commonwatch.errors import InvalidParameter

#: Longest accepted line; longer ones are counted as problems and skipped.
MAX_LINE_BYTES = 1 << 20
_BOM = b"\xef\xbb\xbf"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_US = timedelta(microseconds=1)


class Problems:
    """Unreadable lines: counts per reason and the first few examples."""

    def __init__(self, keep: int = 20) -> None:
        self.counts: Counter[str] = Counter()
        self.examples: list[str] = []
        self.skipped: Counter[str] = Counter()  # readable lines that carry nothing to match
        self._keep = keep

    def add(self, source: str, line_no: int, reason: str) -> None:
        self.counts[reason] += 1
        if len(self.examples) < self._keep:
            self.examples.append(f"{source}:{line_no}: {reason}")

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def merge(self, other: Problems) -> None:
        self.counts.update(other.counts)
        self.skipped.update(other.skipped)
        self.examples.extend(other.examples[: max(0, self._keep - len(self.examples))])


class LineParser:
    """What every adapter's parser offers; an adapter defines :meth:`events` or :meth:`_walk`.

    ``parser(lines, first_line, problems)`` lists the events of a batch of raw lines;
    :meth:`scan` matches them against an indicator set. An adapter whose line loop is
    the hot path (eve.json, Zeek JSON) defines :meth:`_walk`, one loop feeding either a
    :class:`~commonwatch.detect.scan.Scan` or a :class:`Kept` that lists the events;
    the others define :meth:`events` and are scanned through it.
    """

    source: str

    def __call__(self, lines: list[bytes], first_line: int, problems: Problems) -> list[Event]:
        return list(self.events(lines, first_line, problems))

    def events(self, lines: list[bytes], first_line: int, problems: Problems) -> Iterator[Event]:
        kept = Kept()
        self._walk(lines, first_line, problems, kept)
        return iter(kept.events)

    def scan(self, iset: IndicatorSet, lines: list[bytes], first_line: int,
             problems: Problems) -> tuple[list[Match], int]:
        """The matches in ``lines`` and the number of events read."""
        found = Scan(iset)
        count = self._walk(lines, first_line, problems, found)
        return found.finish(), count

    def _walk(self, lines: list[bytes], first_line: int, problems: Problems, sink: Sink) -> int:
        """Feed each event to ``sink`` (``probe`` per kind, ``hit`` on candidates); the event count."""
        return feed(sink, self.events(lines, first_line, problems))

    def _whole(self, line: bytes, n: int, problems: Problems) -> Record | None:
        """The whole record of a line first read through a projection (None, reported, if refused)."""
        try:
            found: Record = orjson.loads(line)
            return found
        except orjson.JSONDecodeError:
            problems.add(self.source, n, "not valid JSON")
            return None


class Kept:
    """A stand-in for :class:`~commonwatch.detect.scan.Scan` that keeps every event."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def probe(self, kind: EventKind) -> Callable[[Record], Any]:
        return _every

    def hit(self, hits: Any, i: int, event: Event) -> None:
        self.events.append(event)

    def read_paths(self, kinds: Iterable[EventKind]) -> frozenset[tuple[str, ...]] | None:
        return None  # every event is kept whole


def _every(record: Record) -> bool:
    return True


@functools.lru_cache(maxsize=64)
def projection(paths: frozenset[tuple[str, ...]]) -> Callable[[bytes], Record]:
    """A JSON decoder that keeps only the given key paths of an object (msgspec).

    What it returns is the ``orjson.loads`` result with every other key left out, as
    plain dicts, at about twice the speed: values not kept are parsed but never built.
    It raises ``msgspec.DecodeError`` for what it cannot read that way (a kept key
    holding a non-object where the path goes on, invalid JSON...); the caller then
    reads the line the ordinary way. One difference remains, noted where it is used:
    an integer beyond 64 bits stays exact where orjson makes it a float.
    """
    tree: dict[str, Any] = {}
    for path in sorted(filter(None, paths), key=len):
        node = tree
        for key in path[:-1]:
            node = node.setdefault(key, {})
            if node is None:
                break  # a shorter path keeps the whole value already
        else:
            if node is not None:
                node[path[-1]] = None
    return msgspec.json.Decoder(_typed(tree, "Projection")).decode


def _typed(tree: dict[str, Any], name: str) -> Any:
    fields = {key: Any if sub is None else _typed(sub, f"{name}_{i}")
              for i, (key, sub) in enumerate(tree.items())}
    return TypedDict(name, fields, total=False)  # type: ignore[operator]


@contextmanager
def open_binary(path: str) -> Iterator[IO[bytes]]:
    """``path`` (or stdin for ``-``) as bytes, gunzipped when it starts with the gzip magic."""
    if path == "-":
        raw: IO[bytes] = sys.stdin.buffer
        close = False
    else:
        try:
            raw = Path(path).open("rb")  # noqa: SIM115 - closed below
        except OSError as exc:
            raise InvalidParameter(f"cannot read {path}: {exc.strerror}") from None
        close = True
    try:
        buffered = raw if isinstance(raw, io.BufferedReader) else io.BufferedReader(raw)  # type: ignore[arg-type,type-var]
        if buffered.peek(2)[:2] == b"\x1f\x8b":
            with gzip.GzipFile(fileobj=buffered) as unzipped:
                yield unzipped  # type: ignore[misc]
        else:
            yield buffered
    finally:
        if close:
            raw.close()


def batches(stream: IO[bytes], size: int = 8192,
            failures: list[tuple[int, str]] | None = None) -> Iterator[list[bytes]]:
    """Lists of up to ``size`` raw lines (newline kept; adapters strip).

    A UTF-8 byte order mark before the first line is dropped. A stream that cannot be
    read on (a gzip file cut short or corrupt, a read error) ends the batches after the
    lines read before; the number of the line it stopped at and why go to ``failures``
    (without it, the error propagates).
    """
    batch: list[bytes] = []
    n = 0
    try:
        for line in stream:
            if n == 0 and line.startswith(_BOM):
                line = line[len(_BOM):]
            n += 1
            batch.append(line)
            if len(batch) >= size:
                yield batch
                batch = []
    except (EOFError, OSError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
        if failures is None:
            raise
        what = f"gzip: {exc}" if isinstance(exc, EOFError | gzip.BadGzipFile | zlib.error) else str(exc)
        failures.append((n + 1, f"the file cannot be read past this line ({what}); "
                                "the lines before it were read"))
    if batch:
        yield batch


#: What a projection decoder raises for a line it cannot read that way (the line then
#: takes the ordinary whole decode): shapes it does not expect, nesting too deep for it.
PROJECTION_ERRORS = (msgspec.DecodeError, RecursionError)


def too_long(line: bytes) -> bool:
    """Longer than :data:`MAX_LINE_BYTES` without its line end."""
    return len(line) > MAX_LINE_BYTES and len(line.rstrip(b"\r\n")) > MAX_LINE_BYTES


def iso_to_us(text: str) -> int | None:
    """An ISO 8601 time (``Z``, ``+01:00`` or ``+0100``; none means UTC) as µs, or None."""
    try:
        moment = datetime.fromisoformat(text)
    except (ValueError, TypeError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // _ONE_US


def epoch_to_us(value: object) -> int | None:
    """Seconds since the epoch (number or numeric string) as µs, or None."""
    try:
        return round(float(value) * 1_000_000)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def any_time_to_us(value: object) -> int | None:
    """Zeek writes epoch floats or ISO strings; accept either."""
    if isinstance(value, int | float):
        return round(value * 1_000_000)
    if isinstance(value, str):
        found = iso_to_us(value)
        return found if found is not None else epoch_to_us(value)
    return None
