"""``commonwatch detect``: match an organisation's logs against a community's indicators."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import IO, Annotated, Any

import orjson
import typer

from commonwatch.cli.common import err, run
from commonwatch.domain.timestamps import parse_when
from commonwatch.errors import InvalidParameter
from commonwatch.services.detect import DetectOptions, DetectSummary
from commonwatch.services.exchange import Exchange


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    app.command("detect")(detect)


def detect(
    logs: Annotated[list[str], typer.Argument(help="Log files (plain or gzip); - reads stdin.")],
    community: Annotated[str, typer.Option(help="Community name or collection id.")],
    user: Annotated[str, typer.Option(help="Run as this user: its organisation's clearance reads the "
                                           "indicators and publishes sightings.")],
    since: Annotated[str | None, typer.Option(
        help="Only indicators added to the exchange at or after this STIX timestamp.")] = None,
    sight: Annotated[bool, typer.Option("--sight", help="Publish aggregated sightings.")] = False,
    sight_window: Annotated[int, typer.Option(help="Sighting aggregation window, seconds.")] = 3600,
    workers: Annotated[int, typer.Option(help="Processes to match with.")] = 1,
    log_format: Annotated[str, typer.Option(
        "--format", help="auto, suricata, zeek, nfdump or json (needs --mapping).")] = "auto",
    mapping: Annotated[str | None, typer.Option(help="Field mapping file for JSON-lines logs.")] = None,
    output: Annotated[Path | None, typer.Option(help="Write alerts here instead of stdout.")] = None,
    refresh: Annotated[int | None, typer.Option(
        help="Re-read added/revoked/expired indicators every N seconds (single process).")] = None,
) -> None:
    """Match logs against the community's active indicators; alerts as JSON lines.

    Alerts go to stdout (or --output), one JSON object per line; a summary goes to
    stderr. Unreadable lines are counted and reported, never fatal.
    """

    def action(exchange: Exchange) -> DetectSummary:
        try:
            since_us = parse_when(since, "--since") if since is not None else None
        except ValueError as exc:
            raise InvalidParameter(str(exc)) from None
        principal = exchange.auth.principal_for_user(user)
        options = DetectOptions(community=community, since_us=since_us, sight=sight,
                                sight_window_s=sight_window, workers=workers, format=log_format,
                                mapping=mapping, freeze_gc=True, refresh_s=refresh)
        with _open(output) as sink:
            def emit(alert: dict[str, Any]) -> None:
                sink.write(orjson.dumps(alert, option=orjson.OPT_APPEND_NEWLINE))

            return exchange.detect.run(principal, logs, options, emit)

    _print_summary(run(action))


class _open:
    """stdout, or a file opened for writing at the first alert (or, with none, at the end
    of a run that succeeded): a run refused for a typo never empties the previous file.
    A folder that does not exist or cannot be written is reported before anything runs."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.stream: IO[bytes] | None = None

    def __enter__(self) -> _open:
        if self.path is not None:
            folder = self.path.parent if str(self.path.parent) else Path(".")
            if self.path.is_dir() or not folder.is_dir() or not os.access(folder, os.W_OK):
                raise InvalidParameter(f"cannot write {self.path}: it is a directory, or its folder "
                                       "does not exist or is not writable")
        return self

    def write(self, data: bytes) -> None:
        if self.path is None:
            sys.stdout.buffer.write(data)
            return
        if self.stream is None:
            self.stream = self._create()
        self.stream.write(data)

    def _create(self) -> IO[bytes]:
        assert self.path is not None
        try:
            return self.path.open("wb")
        except OSError as exc:
            raise InvalidParameter(f"cannot write {self.path}: {exc.strerror}") from None

    def __exit__(self, kind: object, *exc: object) -> None:
        if self.path is None:
            sys.stdout.flush()
            return
        if self.stream is None and kind is None:
            self.stream = self._create()  # a run without alerts leaves an empty file
        if self.stream is not None:
            self.stream.close()


def _print_summary(s: DetectSummary) -> None:
    lines = [
        f"indicators: {s.indicators} compiled ({s.unindexed} without index), "
        f"{len(s.rejected)} rejected"
        + "".join(f", {n} {reason}" for reason, n in sorted(s.skipped_indicators.items())),
        f"lines: {s.lines}, events: {s.events}, alerts: {s.alerts}, "
        f"unreadable lines: {s.problems.total}",
    ]
    lines += [f"  unreadable: {n} x {reason}" for reason, n in s.problems.counts.most_common()]
    lines += [f"  e.g. {example}" for example in s.problems.examples[:5]]
    lines += [f"  skipped: {n} x {reason}" for reason, n in s.problems.skipped.most_common()]
    lines += [f"  rejected indicator {key}: {reason}" for key, reason in s.rejected[:10]]
    if s.sightings or s.sighting_failures:
        lines.append(f"sightings published: {s.sightings}, failed: {len(s.sighting_failures)}")
        lines += [f"  {failure}" for failure in s.sighting_failures[:10]]
    for line in lines:
        err.print(line, highlight=False, markup=False)
