"""``commonwatch import``: bring STIX, MISP, CSV and free-text files into a community."""

from __future__ import annotations

import contextlib
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

from commonwatch.cli.common import err, out, run, table, tlp_option
from commonwatch.domain.markings import Tlp
from commonwatch.domain.warninglists import load_warninglists
from commonwatch.errors import CommonWatchError
from commonwatch.formats.sources import DEFAULT_MAX_BYTES, FORMATS, expand
from commonwatch.formats.tabular import Mapping
from commonwatch.process import tune_for_throughput
from commonwatch.services.exchange import Exchange
from commonwatch.services.importer import ImportService, ImportSummary

EXIT_INCOMPLETE = 2
#: Warninglist hits printed one by one; --json has them all.
SHOWN_HITS = 50


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    app.command("import")(import_command)


def import_command(
    paths: Annotated[list[str], typer.Argument(help="Files, directories (a MISP feed: its directory), or - "
                                                    "for standard input.")],
    community: Annotated[str, typer.Option(help="Community (name or collection id) to import into.")],
    user: Annotated[str, typer.Option(help="Import as this user (its organisation produces the objects).")],
    fmt: Annotated[str, typer.Option("--format", help="auto, stix, misp, csv or text.")] = "auto",
    mapping: Annotated[str | None, typer.Option(help="CSV columns: value=COL,type=COL|fixed_type=KIND,"
                                                     "first_seen=COL,last_seen=COL,confidence=COL,tags=COL,"
                                                     "tlp=COL,delimiter=tab")] = None,
    tlp: Annotated[str | None, typer.Option(help="TLP for objects made from CSV and text; with a CSV "
                                                 "tlp column, the stricter of the two (default: the "
                                                 "community's default).")] = None,
    label: Annotated[list[str] | None, typer.Option(
        help="Label added to indicators made from CSV/text.")] = None,
    warninglists: Annotated[list[Path] | None, typer.Option(
        help="Directory of operator warninglists, added to the built-in ones.")] = None,
    max_bytes: Annotated[int, typer.Option(help="Largest input accepted, in bytes after decompression.")]
        = DEFAULT_MAX_BYTES,
    batch: Annotated[int, typer.Option(help="Objects per transaction.")] = 2000,
    json_out: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Import files as USER's organisation; exit 0 only if every record went in (else 2)."""
    if fmt not in FORMATS:
        raise typer.BadParameter(f"use one of {', '.join(FORMATS)}", param_hint="--format")
    level: Tlp | None = tlp_option(tlp) if tlp else None
    try:
        parsed = Mapping.parse(mapping) if mapping else None
        extra = load_warninglists(warninglists) if warninglists else None
    except CommonWatchError as exc:
        err.print(f"[red]error:[/red] {exc.message}", highlight=False)
        raise typer.Exit(EXIT_INCOMPLETE) from None

    def action(exchange: Exchange) -> ImportSummary:
        tune_for_throughput()
        principal = exchange.auth.principal_for_user(user)
        lists = exchange.warninglists if extra is None else load_warninglists(
            [*exchange.warninglist_dirs, *(warninglists or [])])
        service = ImportService(exchange.ingest, exchange.query, lists, batch_size=batch)
        target = service.community(principal, community)
        inputs = list(expand(paths, sys.stdin.buffer))
        stamp = _timestamp(inputs[0].path if len(inputs) == 1 else None)
        ctx = service.context(principal, target, timestamp=stamp, tlp=level, labels=label or ())
        with Progress(SpinnerColumn(), TextColumn("[bold]importing"), BarColumn(), MofNCompleteColumn(),
                      TextColumn("{task.fields[rate]:>10,.0f} objects/s"), TimeElapsedColumn(),
                      console=err, transient=True, disable=not err.is_terminal) as bar:
            task = bar.add_task("import", total=None, rate=0.0)

            def advance(n: int) -> None:
                bar.advance(task, n)
                elapsed = bar.tasks[0].elapsed or 0.0
                bar.update(task, rate=bar.tasks[0].completed / elapsed if elapsed else 0.0)

            return service.run(principal, target, inputs, fmt, ctx, mapping=parsed, max_bytes=max_bytes,
                               progress=advance)

    summary = run(action)
    if json_out:
        import orjson

        sys.stdout.write(orjson.dumps(summary.to_json(), option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        _print_summary(summary, extra_lists=extra is not None)
    if not summary.ok:
        raise typer.Exit(EXIT_INCOMPLETE)


def _timestamp(path: Path | None) -> str:
    """Time for objects whose source has none: the file's mtime (stable across re-imports), else now."""
    seconds = datetime.now(UTC).timestamp()
    with contextlib.suppress(OSError):  # a file that cannot be read is listed as rejected
        if path is not None and path.is_file():
            seconds = path.stat().st_mtime
    return datetime.fromtimestamp(int(seconds), UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _print_summary(summary: ImportSummary, *, extra_lists: bool = False) -> None:
    rate = (summary.stored + summary.unchanged) / summary.seconds if summary.seconds else 0.0
    out.print(f"community {summary.community}: {summary.stored} stored, {summary.unchanged} unchanged, "
              f"{summary.rejected} rejected in {summary.seconds:.1f} s ({rate:,.0f} objects/s)",
              highlight=False, markup=False)
    if summary.by_type:
        t = table("type", "stored", "unchanged", "rejected")
        for stype, counts in sorted(summary.by_type.items()):
            t.add_row(stype, str(counts["stored"]), str(counts["unchanged"]), str(counts["rejected"]))
        out.print(t)
    if summary.hit_total:
        if extra_lists:  # exports, feeds and the server load only the configured lists
            out.print(f"warninglist hits: {summary.hit_total} objects (stored, flagged; exports leave out "
                      "the hits of the built-in lists and of COMMONWATCH_WARNINGLIST_DIRS, so add the "
                      "--warninglists folders there for exports to leave these out too):")
        else:
            out.print(f"warninglist hits: {summary.hit_total} objects "
                      "(stored, flagged, left out of exports):")
        for name, count in summary.hits_by_list().items():
            out.print(f"  {name}: {count}", highlight=False, markup=False)
        for hit in summary.hits[:SHOWN_HITS]:
            out.print(f"  {hit.source}: {hit.position}: {hit.id} -> {', '.join(hit.lists)}", highlight=False,
                      markup=False)
        if summary.hit_total > SHOWN_HITS:
            out.print(f"  ... and {summary.hit_total - SHOWN_HITS} more (--json lists them)", highlight=False)
    if summary.rejections:
        err.print(f"[red]{summary.rejected} records rejected:[/red]")
        for r in summary.rejections:
            ident = f" {r.id}" if r.id else ""
            err.print(f"  {r.source}: {r.position or '-'}{ident}: {r.reason}", highlight=False, markup=False)
