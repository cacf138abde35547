"""``commonwatch export`` and ``commonwatch feed``: protection outputs from the command line.

``export`` writes a file atomically (temporary file in the same directory, fsync,
rename), because Zeek and Suricata re-read their input files while running and must
never see half a file. ``feed`` manages the named pull feeds served at
``GET /feeds/<name>``.
"""

from __future__ import annotations

import os
import stat
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated

import orjson
import typer

from commonwatch.cli.common import err, out, run, table
from commonwatch.errors import InvalidParameter, StorageError
from commonwatch.process import tune_for_throughput
from commonwatch.services.exchange import Exchange
from commonwatch.services.export import FORMATS, Export, ExportFilter
from commonwatch.services.export_filters import FormatOptions, build_filter, filter_from_json

feed_app = typer.Typer(no_args_is_help=True, help="Pull feeds served at GET /feeds/<name>.")

UserOpt = Annotated[str, typer.Option("--user", help="Act as this user (its organisation's visibility).")]
FormatOpt = Annotated[str, typer.Option("--format", "-f", help=f"One of: {', '.join(FORMATS)}.")]
CommunityOpt = Annotated[list[str] | None, typer.Option(
    "--community", help="Community name or collection id (repeat; default: all you can read).")]
TypeOpt = Annotated[list[str] | None, typer.Option("--type", help="STIX type (repeat; default indicator).")]
TlpOpt = Annotated[str, typer.Option("--tlp", help="TLP ceiling: clear, green, amber, amber+strict, red.")]
SinceOpt = Annotated[str | None, typer.Option(help="Only versions added since (2026-01-31 or UTC time).")]
SectorOpt = Annotated[list[str] | None, typer.Option("--sector", help="Only from producers of this sector.")]
ConfOpt = Annotated[int | None, typer.Option("--min-confidence", help="Minimum STIX confidence (0-100).")]
ScoreOpt = Annotated[float | None, typer.Option(
    "--min-score", help="Minimum decay score, 0-100 (indicators; see docs/lifecycle.md).")]
WlOpt = Annotated[bool, typer.Option("--include-warninglisted", help="Keep values on warninglists.")]
RevokedOpt = Annotated[bool, typer.Option("--include-revoked", help="Keep revoked objects.")]
ExpiredOpt = Annotated[bool, typer.Option("--include-expired", help="Keep indicators past valid_until.")]
RpzTargetOpt = Annotated[str, typer.Option("--rpz-target", help="RPZ: '.' (NXDOMAIN) or a walled garden.")]
RpzWildOpt = Annotated[bool, typer.Option("--rpz-wildcard/--no-rpz-wildcard", help="RPZ: block subdomains.")]
StripOpt = Annotated[bool, typer.Option("--url-strip-scheme", help="plain-url: write host/path entries.")]


def _filter(
    community: list[str] | None, type_: list[str] | None, tlp: str, since: str | None,
    sector: list[str] | None, min_confidence: int | None, min_score: float | None,
    include_warninglisted: bool, include_revoked: bool, include_expired: bool,
) -> ExportFilter:
    return build_filter(
        communities=community or (), types=type_ or ("indicator",), tlp=tlp, since=since,
        sectors=sector or (), min_confidence=min_confidence, min_score=min_score,
        include_warninglisted=include_warninglisted, include_revoked=include_revoked,
        include_expired=include_expired,
    )


def write_atomically(path: Path, chunks: Iterable[str]) -> None:
    """Write ``chunks`` to ``path`` via a temporary file in the same directory, then rename.

    Readers see the old file or the new one, never a partial one; on any error the
    old file is left untouched and the temporary file removed.
    """
    if path.is_symlink():  # write through a link (configuration often links rule files)
        path = path.resolve()
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        why = "is not a directory" if directory.exists() else "does not exist"
        raise InvalidParameter(f"cannot write {path}: directory {directory} {why}")
    if path.is_dir():
        raise InvalidParameter(f"cannot write {path}: it is a directory; name a file")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    except OSError as exc:
        raise StorageError(f"cannot write in {directory}: {exc.strerror}") from exc
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            for chunk in chunks:
                handle.write(chunk)
            handle.flush()
            os.fsync(handle.fileno())
        umask = os.umask(0)
        os.umask(umask)
        try:  # a replaced file keeps its permissions (a 0640 rules file stays 0640)
            mode = stat.S_IMODE(os.stat(path).st_mode)
        except FileNotFoundError:
            mode = 0o666 & ~umask
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except OSError as exc:  # a full disk, a quota, a directory put there meanwhile...
        Path(tmp).unlink(missing_ok=True)
        raise StorageError(f"cannot write {path}: {exc.strerror}; the previous file is unchanged") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _summary(export: Export, target: str) -> None:
    stats = export.stats
    err.print(f"{export.format} to {target}: {stats.objects_read} objects read, {stats.objects_exported} "
              "passed the filters with exportable values", highlight=False, markup=False)
    for reason, count in sorted(stats.skipped.items()):
        err.print(f"  skipped {count}: {reason}", highlight=False, markup=False)


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    app.add_typer(feed_app, name="feed")

    @app.command("export")
    def export_command(
        user: UserOpt, fmt: FormatOpt,
        output: Annotated[Path | None, typer.Option(
            "--output", "-o", help="File (default, or -: stdout).")] = None,
        community: CommunityOpt = None, type_: TypeOpt = None, tlp: TlpOpt = "amber",
        since: SinceOpt = None, sector: SectorOpt = None, min_confidence: ConfOpt = None,
        min_score: ScoreOpt = None, include_warninglisted: WlOpt = False,
        include_revoked: RevokedOpt = False, include_expired: ExpiredOpt = False,
        rpz_target: RpzTargetOpt = ".", rpz_wildcard: RpzWildOpt = True, url_strip_scheme: StripOpt = False,
    ) -> None:
        """Export what USER can see, filtered, in one format (atomic write with -o)."""

        def action(exchange: Exchange) -> None:
            tune_for_throughput()
            flt = _filter(community, type_, tlp, since, sector, min_confidence, min_score,
                          include_warninglisted, include_revoked, include_expired)
            principal = exchange.auth.principal_for_user(user)
            options = FormatOptions(rpz_target, rpz_wildcard, url_strip_scheme)
            export = exchange.export.export(principal, fmt, flt, options)
            if output is None or str(output) == "-":  # "-" is stdout, as elsewhere
                for chunk in export.chunks:
                    sys.stdout.write(chunk)
                sys.stdout.flush()
            else:
                write_atomically(output, export.chunks)
            _summary(export, "stdout" if output is None or str(output) == "-" else str(output))

        run(action)

    @feed_app.command("create")
    def feed_create(
        name: str, user: UserOpt, fmt: FormatOpt,
        description: Annotated[str, typer.Option(help="What the feed is for.")] = "",
        community: CommunityOpt = None, type_: TypeOpt = None, tlp: TlpOpt = "amber",
        since: SinceOpt = None, sector: SectorOpt = None, min_confidence: ConfOpt = None,
        min_score: ScoreOpt = None, include_warninglisted: WlOpt = False,
        include_revoked: RevokedOpt = False, include_expired: ExpiredOpt = False,
        rpz_target: RpzTargetOpt = ".", rpz_wildcard: RpzWildOpt = True, url_strip_scheme: StripOpt = False,
    ) -> None:
        """Define a feed of USER's organisation; each caller gets it with their own visibility."""

        def action(exchange: Exchange) -> None:
            flt = _filter(community, type_, tlp, since, sector, min_confidence, min_score,
                          include_warninglisted, include_revoked, include_expired)
            principal = exchange.auth.principal_for_user(user)
            options = FormatOptions(rpz_target, rpz_wildcard, url_strip_scheme)
            feed = exchange.export.create_feed(principal, name, fmt, flt, options, description)
            out.print(f"created feed {feed.name!r} ({feed.format}): GET /feeds/{feed.name}", highlight=False)

        run(action)

    @feed_app.command("list")
    def feed_list(user: UserOpt) -> None:
        """List the feeds of USER's organisation."""
        rows = table("name", "format", "description")

        def action(exchange: Exchange) -> None:
            principal = exchange.auth.principal_for_user(user)
            for feed in exchange.export.list_feeds(principal):
                rows.add_row(feed.name, feed.format, feed.description)

        run(action)
        out.print(rows)

    @feed_app.command("show")
    def feed_show(name: str, user: UserOpt) -> None:
        """Show one feed's definition (format and filter) as JSON."""

        def action(exchange: Exchange) -> None:
            feed = exchange.export.get_feed(exchange.auth.principal_for_user(user), name)
            filter_from_json(feed.filter_json)  # refuses a definition this version cannot read
            doc = {"name": feed.name, "format": feed.format, "description": feed.description,
                   "filter": orjson.loads(feed.filter_json)}
            sys.stdout.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode() + "\n")

        run(action)

    @feed_app.command("delete")
    def feed_delete(name: str, user: UserOpt) -> None:
        """Delete a feed of USER's organisation."""
        run(lambda x: x.export.delete_feed(x.auth.principal_for_user(user), name))
        out.print(f"deleted feed {name!r}", highlight=False)
