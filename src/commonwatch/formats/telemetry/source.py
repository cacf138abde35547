"""Reading telemetry: files or stdin, plain or gzip, in batches of lines; bad lines counted.

Every adapter reads through :func:`open_lines` and reports lines it cannot use to a
:class:`Problems` counter with a reason; a bad line is never fatal and never silently
dropped (the summary of ``commonwatch detect`` prints the counts and first examples).
"""

from __future__ import annotations

import gzip
import io
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO

from commonwatch.errors import InvalidParameter

#: Longest accepted line; longer ones are counted as problems and skipped.
MAX_LINE_BYTES = 1 << 20
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


def batches(stream: IO[bytes], size: int = 8192) -> Iterator[list[bytes]]:
    """Lists of up to ``size`` raw lines (newline kept; adapters strip)."""
    batch: list[bytes] = []
    for line in stream:
        batch.append(line)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


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
