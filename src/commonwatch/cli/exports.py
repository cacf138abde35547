"""``commonwatch export`` and ``commonwatch feed``: protection outputs from the command line.

``export`` writes a file atomically (temporary file in the same directory, fsync,
rename), because Zeek and Suricata re-read their input files while running and must
never see half a file. ``feed`` manages the named pull feeds served at
``GET /feeds/<name>``.
"""

from __future__ import annotations

import errno
import os
import signal
import stat
import sys
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from types import FrameType
from typing import Annotated, Any

import orjson
import typer
from sqlalchemy.exc import InterfaceError, OperationalError

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

#: What ``-o`` refuses to write to, by ``stat.S_IFMT``.
_SPECIAL = {stat.S_IFDIR: "a directory", stat.S_IFBLK: "a block device", stat.S_IFSOCK: "a socket"}
#: A chown the process may not make: EINVAL is an id this user namespace cannot map.
_NOT_PERMITTED = (errno.EPERM, errno.EACCES, errno.EINVAL)


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


def _database_failures(chunks: Iterator[str]) -> Iterator[str]:
    """``chunks``, with a database failure while they stream (a disk I/O error, a lost
    server) raised as :class:`StorageError`: the export reads as it writes, after the
    command has started, so the failure arrives here and not in the service call."""
    try:
        yield from chunks
    except (OperationalError, InterfaceError) as exc:
        cause = exc if exc.orig is None else exc.orig  # the driver's words, without the SQL
        raise StorageError(f"the database failed during the export: {cause}") from exc


def _exit_on_signal(signum: int, _frame: FrameType | None) -> None:
    signal.signal(signum, signal.SIG_IGN)  # a second one must not interrupt the clean-up
    raise SystemExit(128 + signum)


@contextmanager
def _orderly_termination() -> Iterator[None]:
    """SIGTERM and SIGHUP (systemd, ``timeout``, a closed terminal) end the process by
    their default action, which runs no ``finally``: a half-written temporary file would
    stay in the sensor's rules folder. While this is active they raise SystemExit
    instead (exit status 128 + signal, as the shell reports a killed process); a handler
    someone else set, or SIG_IGN (``nohup``), is left alone, and the previous one is
    restored afterwards."""
    replaced: dict[signal.Signals, Any] = {}  # signal -> the handler it had
    if threading.current_thread() is threading.main_thread():  # only there can Python handle signals
        for signum in (signal.SIGTERM, signal.SIGHUP):
            if signal.getsignal(signum) == signal.SIG_DFL:
                replaced[signum] = signal.signal(signum, _exit_on_signal)
    try:
        yield
    finally:
        for signum, previous in replaced.items():
            signal.signal(signum, previous)


def _existing(path: Path, given: Path) -> os.stat_result | None:
    """What ``path`` is now (through links), or None if nothing is there yet."""
    try:
        return os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None  # the directory checks say what is missing
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise InvalidParameter(f"cannot write {given}: its symbolic links form a loop (a link that "
                                   "leads back to itself); fix or remove the link") from None
        raise StorageError(f"cannot write {given}: {exc.strerror}") from None


def _keep_owner_and_mode(fd: int, replaced: os.stat_result | None) -> None:
    """Give the new file the owner, group and mode of the file it replaces: root:suricata
    0640 rules stay so, and the sensor's group can still read them. The owner and group
    are kept as far as the process may set them (root may set both, a member of the
    group the group); a new file gets the mode the umask allows."""
    if replaced is None:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)
        return
    for uid in (replaced.st_uid, -1):  # both, else the group alone
        try:
            os.fchown(fd, uid, replaced.st_gid)  # before fchmod: a chown clears set-id bits
            break
        except OSError as exc:
            if exc.errno not in _NOT_PERMITTED:
                raise
    os.fchmod(fd, stat.S_IMODE(replaced.st_mode))


def _write_into(path: Path, chunks: Iterable[str]) -> None:
    """Write into a character device or a FIFO as the shell's ``>`` does (``-o /dev/null``,
    a pipe a reader holds open): there is no file to replace, and renaming a file over
    the node would replace the node itself (as root, /dev/null)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NOCTTY)  # never O_CREAT: the node is there
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            for chunk in chunks:
                handle.write(chunk)
    except OSError as exc:  # a reader that went away (EPIPE), a device that refuses writes...
        raise StorageError(f"cannot write {path}: {exc.strerror}") from None


def _replace(path: Path, directory: Path, replaced: os.stat_result | None, chunks: Iterable[str]) -> None:
    """Write ``chunks`` to a temporary file in ``directory``, then rename it to ``path``."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    except OSError as exc:
        raise StorageError(f"cannot write in {directory}: {exc.strerror}") from exc
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            for chunk in chunks:
                handle.write(chunk)
            handle.flush()
            _keep_owner_and_mode(handle.fileno(), replaced)
            os.fsync(handle.fileno())
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


def write_atomically(path: Path, chunks: Iterable[str]) -> None:
    """Write ``chunks`` to ``path`` via a temporary file in the same directory, then rename.

    Readers see the old file or the new one, never a partial one; on any error, and on
    SIGTERM or SIGHUP, the old file is left untouched and the temporary file removed. A link is
    written through; a character device or a FIFO (``-o /dev/null``) is written into,
    never replaced.
    """
    given = path
    if path.is_symlink():  # write through a link (configuration often links rule files)
        with suppress(RuntimeError):  # a loop, before Python 3.13: _existing names it
            path = path.resolve()
    found = _existing(path, given)
    directory = path.parent if str(path.parent) else Path(".")
    if found is None and not directory.is_dir():
        why = "is not a directory" if directory.exists() else "does not exist"
        raise InvalidParameter(f"cannot write {path}: directory {directory} {why}")
    if found is None or stat.S_ISREG(found.st_mode):
        with _orderly_termination():
            _replace(path, directory, found, chunks)
    elif stat.S_ISCHR(found.st_mode) or stat.S_ISFIFO(found.st_mode):
        _write_into(path, chunks)  # no temporary file to clean up
    else:  # a block device would be a disk overwritten; a socket cannot be opened
        what = _SPECIAL.get(stat.S_IFMT(found.st_mode), "neither a file nor a device")
        raise InvalidParameter(f"cannot write {path}: it is {what}; name a file")


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
                for chunk in _database_failures(export.chunks):
                    sys.stdout.write(chunk)
                sys.stdout.flush()
            else:
                write_atomically(output, _database_failures(export.chunks))
            _summary(export, "stdout" if output is None or str(output) == "-" else str(output))

        run(action)

    def _definition_command(redefine: bool) -> Callable[..., None]:
        """``feed create`` or, with ``redefine``, ``feed update``: the same options."""

        def command(
            name: str, user: UserOpt, fmt: FormatOpt,
            description: Annotated[str, typer.Option(help="What the feed is for.")] = "",
            community: CommunityOpt = None, type_: TypeOpt = None, tlp: TlpOpt = "amber",
            since: SinceOpt = None, sector: SectorOpt = None, min_confidence: ConfOpt = None,
            min_score: ScoreOpt = None, include_warninglisted: WlOpt = False,
            include_revoked: RevokedOpt = False, include_expired: ExpiredOpt = False,
            rpz_target: RpzTargetOpt = ".", rpz_wildcard: RpzWildOpt = True,
            url_strip_scheme: StripOpt = False,
        ) -> None:
            def action(exchange: Exchange) -> None:
                flt = _filter(community, type_, tlp, since, sector, min_confidence, min_score,
                              include_warninglisted, include_revoked, include_expired)
                principal = exchange.auth.principal_for_user(user)
                options = FormatOptions(rpz_target, rpz_wildcard, url_strip_scheme)
                define = exchange.feeds.redefine_feed if redefine else exchange.feeds.create_feed
                feed = define(principal, name, fmt, flt, options, description)
                done = "redefined" if redefine else "created"
                out.print(f"{done} feed {feed.name!r} ({feed.format}): GET /feeds/{feed.name}",
                          highlight=False)

            run(action)

        return command

    feed_app.command("create", help="Define a feed of USER's organisation; each caller gets it with "
                     "their own visibility.")(_definition_command(False))
    feed_app.command("update", help="Redefine a feed whole (the options of `feed create`); its URL "
                     "stays, and sensors get the new content at their next fetch.")(_definition_command(True))

    @feed_app.command("list")
    def feed_list(user: UserOpt) -> None:
        """List the feeds of USER's organisation."""
        rows = table("name", "format", "description")

        def action(exchange: Exchange) -> None:
            principal = exchange.auth.principal_for_user(user)
            for feed in exchange.feeds.list_feeds(principal):
                rows.add_row(feed.name, feed.format, feed.description)

        run(action)
        out.print(rows)

    @feed_app.command("show")
    def feed_show(name: str, user: UserOpt) -> None:
        """Show one feed's definition (format and filter) as JSON."""

        def action(exchange: Exchange) -> None:
            feed = exchange.feeds.get_feed(exchange.auth.principal_for_user(user), name)
            filter_from_json(feed.filter_json)  # refuses a definition this version cannot read
            doc = {"name": feed.name, "format": feed.format, "description": feed.description,
                   "filter": orjson.loads(feed.filter_json)}
            sys.stdout.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode() + "\n")

        run(action)

    @feed_app.command("delete")
    def feed_delete(name: str, user: UserOpt) -> None:
        """Delete a feed of USER's organisation."""
        run(lambda x: x.feeds.delete_feed(x.auth.principal_for_user(user), name))
        out.print(f"deleted feed {name!r}", highlight=False)
