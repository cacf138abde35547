"""Adversarial tests of the files the command line writes and reads.

``commonwatch export -o FILE`` (cli/exports.py, docs/export.md): the file is replaced
atomically (temporary file in the same folder, rename), so Zeek and Suricata never read
half a file; on any failure the previous file stays and no temporary file is left; the
new file keeps the permissions of the one it replaces; a link is written through.

``commonwatch import PATH...`` (cli/imports.py, services/importer.py, formats/,
docs/import.md): gzip by content, a directory is every non-hidden file below it, ``-``
is standard input; a malformed record never aborts the import and is never dropped
silently (the summary lists file, position and reason), the exit code says whether
everything went in, size limits give a clear message, and nothing ends in a traceback.

What tests/cli/test_cli_adversarial.py already covers (missing folder, directory,
read-only file, ``-o -``, StorageError and ENOSPC half-way, unknown format) is not
repeated. The tests may run as root, where ``chmod 000`` does not stop reads: there the
refusal the kernel would give another user is simulated at the ``os`` call that meets it.
"""

from __future__ import annotations

import errno
import gzip
import json
import os
import pathlib
import shutil
import sqlite3
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy.exc
from typer.testing import CliRunner

from commonwatch.cli.main import app
from commonwatch.formats.freetext import MAX_LINE_CHARS
from commonwatch.services.export import ExportService
from commonwatch.services.query import QueryService

EXPORT = ["export", "--user", "natcert-analyst", "--include-warninglisted"]
COMMUNITY, IMPORTER = "national-network", "northtel-analyst"
IMPORT = ["import", "--community", COMMUNITY, "--user", IMPORTER]
SAMPLES = Path("/work/shared/samples")
ROOT = os.geteuid() == 0


# -- fixtures and helpers -------------------------------------------------------------------
@pytest.fixture(scope="module")
def demo_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite database holding the demo federation, built once."""
    path = tmp_path_factory.mktemp("files-demo") / "demo.db"
    result = CliRunner().invoke(app, ["--database-url", f"sqlite:///{path}", "demo"])
    assert result.exit_code == 0, result.output
    return path


@pytest.fixture
def cw(demo_template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Run the CLI in-process on a copy of the demo database (kept out of ``files``)."""
    for name in [k for k in os.environ if k.startswith("COMMONWATCH_")]:
        monkeypatch.delenv(name)
    db = tmp_path / "db" / "cw.db"
    db.parent.mkdir()
    shutil.copy(demo_template, db)
    runner = CliRunner()

    def invoke(*args: str, input: bytes | str | None = None):
        return runner.invoke(app, ["--database-url", f"sqlite:///{db}", *args], input=input)

    invoke.url = f"sqlite:///{db}"  # type: ignore[attr-defined]
    return invoke


@pytest.fixture
def files(tmp_path: Path) -> Iterator[Path]:
    """A folder of its own for the files under test; made readable again afterwards."""
    path = tmp_path / "files"
    path.mkdir()
    yield path
    for p in [path, *path.rglob("*")]:
        if not p.is_symlink() and p.is_dir():
            p.chmod(0o755)


def no_traceback(result) -> None:
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        f"uncaught {type(result.exception).__name__}: {result.exception}\n{result.output}")
    assert "Traceback" not in result.output


def one_error_line(result, *words: str) -> None:
    """A non-zero exit with one ``error: ...`` line naming ``words``."""
    no_traceback(result)
    assert result.exit_code != 0, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), f"not one error line: {result.stderr!r}"
    for word in words:
        assert word.lower() in lines[0].lower(), lines[0]


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


def summary(result) -> dict:
    no_traceback(result)
    return json.loads(result.stdout)


def stored(cw, fmt: str, stix_type: str = "indicator") -> set[str]:
    """The values of ``fmt`` (plain-ip, plain-domain...) in the import community now."""
    result = cw("export", "--user", IMPORTER, "--format", fmt, "--community", COMMUNITY,
                "--type", stix_type, "--include-warninglisted")
    assert result.exit_code == 0, result.output
    return set(result.stdout.split())


def rejected_files(body: dict) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for r in body["rejections"]:
        found.setdefault(Path(r["source"]).name, []).append(f"{r['position']}: {r['reason']}")
    return found


def deny_listing(directory: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``directory`` cannot be listed, as ``chmod 000`` makes it for anyone but root."""
    directory.chmod(0)
    if ROOT:
        real = os.scandir

        def scandir(path=".") -> Iterator[os.DirEntry]:
            if isinstance(path, str | os.PathLike) and os.fspath(path) == str(directory):
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.fspath(path))
            return real(path)

        monkeypatch.setattr(os, "scandir", scandir)


def deny_lookup_below(directory: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Names below ``directory`` cannot be looked up (``chmod 000`` on it, for non-root)."""
    directory.chmod(0)
    if ROOT:
        real = os.stat
        prefix = str(directory) + os.sep

        def stat_(path, *args, **kwargs):
            if isinstance(path, str | os.PathLike) and os.fspath(path).startswith(prefix):
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.fspath(path))
            return real(path, *args, **kwargs)

        monkeypatch.setattr(os, "stat", stat_)


def deny_reading(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``path`` cannot be opened (``chmod 000``, for non-root)."""
    path.chmod(0)
    if ROOT:
        real = pathlib.Path.open

        def open_(self, *args, **kwargs):
            if str(self) == str(path):
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(self))
            return real(self, *args, **kwargs)

        monkeypatch.setattr(pathlib.Path, "open", open_)


def sample(relative: str) -> bytes:
    path = SAMPLES / relative
    if not path.is_file():
        pytest.skip(f"sample {path} is not on this machine")
    return path.read_bytes()


# == export -o ===============================================================================
def test_export_readers_see_the_old_file_until_the_whole_new_one_is_there(cw, files, monkeypatch):
    """A sensor re-reading the file between any two chunks sees the old content."""
    target = files / "cw.json"
    target.write_text("old\n")
    seen: list[str] = []
    original = ExportService._render

    def render(self, *args, **kwargs):
        for chunk in original(self, *args, **kwargs):
            yield chunk
            seen.append(target.read_text())

    monkeypatch.setattr(ExportService, "_render", render)
    result = cw(*EXPORT, "--format", "stix", "-o", str(target))
    assert result.exit_code == 0, result.output
    assert len(seen) >= 2 and set(seen) == {"old\n"}
    bundle = json.loads(target.read_text())
    assert bundle["type"] == "bundle" and len(bundle["objects"]) >= 5
    assert leftovers(files) == []


def test_export_database_error_midway_is_one_line_and_keeps_the_file(cw, files, monkeypatch):
    """The database fails after the first batch (a disk I/O error, a lost server)."""
    original = QueryService.export_batches

    def export_batches(self, *args, **kwargs):
        batches = original(self, *args, **kwargs)
        yield next(batches)
        raise sqlalchemy.exc.OperationalError("SELECT ...", {}, sqlite3.OperationalError("disk I/O error"))

    monkeypatch.setattr(QueryService, "export_batches", export_batches)
    target = files / "cw.json"
    target.write_text("previous export\n")
    result = cw(*EXPORT, "--format", "stix", "-o", str(target))
    assert result.exit_code != 0
    assert target.read_text() == "previous export\n"
    assert leftovers(files) == []
    # Regression: a database error raised while the export streamed was not a CommonWatchError;
    # the CLI ended with an uncaught sqlalchemy OperationalError (a traceback).
    one_error_line(result, "disk I/O error")


def test_export_interrupted_by_ctrl_c_keeps_the_file(cw, files, monkeypatch):
    original = QueryService.export_batches

    def export_batches(self, *args, **kwargs):
        batches = original(self, *args, **kwargs)
        yield next(batches)
        raise KeyboardInterrupt

    monkeypatch.setattr(QueryService, "export_batches", export_batches)
    target = files / "cw.json"
    target.write_text("previous export\n")
    result = cw(*EXPORT, "--format", "stix", "-o", str(target))
    assert result.exit_code not in (0, None)
    assert target.read_text() == "previous export\n"
    assert leftovers(files) == []


_KILLED_MIDWAY = r"""
import os, signal, sys
from commonwatch.services import export

original = export.ExportService._render

def _render(self, *args, **kwargs):
    chunks = original(self, *args, **kwargs)
    yield next(chunks)
    os.kill(os.getpid(), signal.SIGTERM)  # as systemd, timeout(1) or an operator would
    yield from chunks

export.ExportService._render = _render
from commonwatch.cli.main import app
app(sys.argv[1:], prog_name="commonwatch")
"""


def test_export_terminated_midway_leaves_no_temporary_file(cw, files):
    target = files / "cw.json"
    target.write_text("previous export\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMMONWATCH_")}
    proc = subprocess.run([sys.executable, "-c", _KILLED_MIDWAY, "--database-url", cw.url, *EXPORT,
                           "--format", "stix", "-o", str(target)],
                          env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert target.read_text() == "previous export\n"
    # Regression: SIGTERM killed the process before write_atomically's cleanup: the
    # half-written '.cw.json.XXXX.tmp' stayed in the sensor's rules folder.
    assert leftovers(files) == []


def test_export_onto_a_symlink_loop_is_a_clean_error(cw, files):
    loop = files / "cw.rules"
    loop.symlink_to(loop)
    result = cw(*EXPORT, "--format", "plain-ip", "-o", str(loop))
    assert result.exit_code != 0
    assert loop.is_symlink() and leftovers(files) == []
    # Regression: `-o` naming a link that points to itself ended in an uncaught RuntimeError
    # ("Symlink loop from ...", from Path.resolve()).
    one_error_line(result, str(loop))


def test_export_through_dangling_links(cw, files):
    """A link to a file not yet there creates it; a link into a missing folder is refused."""
    target = files / "rules" / "cw.rules"
    target.parent.mkdir()
    link = files / "active.rules"
    link.symlink_to(target)
    result = cw(*EXPORT, "--format", "plain-ip", "-o", str(link))
    assert result.exit_code == 0, result.output
    assert link.is_symlink() and "203.0.113.5\n" in target.read_text()
    nowhere = files / "nowhere.rules"
    nowhere.symlink_to(files / "missing" / "cw.rules")
    result = cw(*EXPORT, "--format", "plain-ip", "-o", str(nowhere))
    one_error_line(result, "does not exist")
    assert result.exit_code == 2 and nowhere.is_symlink() and not (files / "missing").exists()
    assert leftovers(files) == [] and leftovers(target.parent) == []


def test_export_onto_a_device_node_never_replaces_it(cw, files):
    """``-o /dev/null`` run as root: here a node of that device (or a FIFO) in a test folder."""
    node = files / "null"
    reader = None
    try:
        os.mknod(node, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        kind = stat.S_ISCHR
    except OSError:
        os.mkfifo(node)
        reader = os.open(node, os.O_RDONLY | os.O_NONBLOCK)  # a writer would not block
        kind = stat.S_ISFIFO
    try:
        result = cw(*EXPORT, "--format", "plain-ip", "-o", str(node))
    finally:
        if reader is not None:
            os.close(reader)
    no_traceback(result)
    assert leftovers(files) == []
    # Regression: the temporary file was renamed over the special file: `-o /dev/null` as root
    # would have replaced /dev/null itself with a regular file holding the export.
    assert kind(os.lstat(node).st_mode), stat.filemode(os.lstat(node).st_mode)


@pytest.mark.skipif(not ROOT, reason="only root can give a file to another owner and group")
def test_export_keeps_the_owner_and_group_of_the_file_it_replaces(cw, files):
    """root:suricata 0640 rules: the mode is kept so that the sensor's group can read them."""
    target = files / "cw.rules"
    target.write_text("old\n")
    os.chown(target, 4242, 4343)
    target.chmod(0o640)
    result = cw(*EXPORT, "--format", "plain-ip", "-o", str(target))
    assert result.exit_code == 0, result.output
    after = target.stat()
    assert stat.S_IMODE(after.st_mode) == 0o640 and "203.0.113.5\n" in target.read_text()
    # Regression: the replacement was owned by the exporting user (root:root here): with the
    # 0640 kept, the sensor's group (4343) could no longer read its rules.
    assert (after.st_uid, after.st_gid) == (4242, 4343)


@pytest.mark.parametrize("mask", [0o022, 0o077])
def test_export_new_file_mode_follows_the_umask(cw, files, mask):
    old = os.umask(mask)
    try:
        result = cw(*EXPORT, "--format", "plain-ip", "-o", str(files / "new.txt"))
    finally:
        os.umask(old)
    assert result.exit_code == 0, result.output
    mode = stat.S_IMODE((files / "new.txt").stat().st_mode)
    assert mode == 0o666 & ~mask and not mode & stat.S_IWOTH


@pytest.mark.parametrize(("extra", "code", "word"), [
    (["--since", "last tuesday"], 2, "since"),
    (["--tlp", "purple"], 2, "purple"),
    (["--community", "no-such-community"], 3, "no-such-community"),
    (["--min-confidence", "500"], 2, "confidence"),
    (["--min-score", "-3"], 2, "score"),
    (["--rpz-target", "not a domain!"], 2, "rpz target"),
])
def test_export_bad_filter_leaves_the_file(cw, files, extra, code, word):
    target = files / "cw.rpz"
    target.write_text("old\n")
    result = cw(*EXPORT, "--format", "rpz", *extra, "-o", str(target))
    one_error_line(result, word)
    assert result.exit_code == code
    assert target.read_text() == "old\n" and leftovers(files) == []


# == import: gzip, sizes, real samples ==========================================================
def test_import_gzip_good_truncated_and_bomb_in_one_run(cw, files):
    (files / "a_good.csv.gz").write_bytes(gzip.compress(b"value,type\ngood-gz-c2.top,domain\n"))
    rows = "value,type\n" + "".join(f"cut{n}-c2.top,domain\n" for n in range(300))
    whole = gzip.compress(rows.encode())
    (files / "b_truncated.csv.gz").write_bytes(whole[: len(whole) // 2])
    (files / "c_bomb.txt.gz").write_bytes(gzip.compress(b"bomb-c2.top " + b"\0" * 30_000_000))
    (files / "d_after.txt").write_text("later: after-bomb-c2[.]top\n")
    result = cw(*IMPORT, "--max-bytes", "2000000", str(files))
    no_traceback(result)
    assert result.exit_code == 2
    shown = [line.strip() for line in result.stderr.splitlines()]
    assert shown[0] == "2 records rejected:", result.stderr
    truncated = [s for s in shown if s.startswith(f"{files / 'b_truncated.csv.gz'}: -: ")]
    assert len(truncated) == 1 and "not valid gzip" in truncated[0]
    bomb = [s for s in shown if s.startswith(f"{files / 'c_bomb.txt.gz'}: -: ")]
    assert len(bomb) == 1 and "larger than the limit of 2000000 bytes" in bomb[0]
    domains = stored(cw, "plain-domain")
    assert {"good-gz-c2.top", "after-bomb-c2.top", "cut0-c2.top"} <= domains
    cut = {d for d in domains if d.startswith("cut")}
    assert 10 < len(cut) < 300 and all(d.endswith("-c2.top") for d in cut)


@pytest.mark.parametrize("zipped", [False, True])
def test_import_size_limit_boundary_on_stdin(cw, zipped):
    text = b"stdin-limit-c2.top\n" + b" " * 81  # 100 bytes after decompression
    data = gzip.compress(text) if zipped else text
    at = summary(cw(*IMPORT, "--json", "--format", "text", "--max-bytes", "100", "-", input=data))
    assert at["ok"] and at["stored"] == 2
    over = cw(*IMPORT, "--json", "--format", "text", "--max-bytes", "99", "-", input=data)
    body = summary(over)
    assert over.exit_code == 2 and not body["ok"]
    assert [r["source"] for r in body["rejections"]] == ["<stdin>"]
    assert "larger than the limit of 99 bytes" in body["rejections"][0]["reason"]


@pytest.mark.parametrize("name", [
    "stix/v21/schemas-example_apt1.json",
    "misp/pymisp_feed_event_57c4445b-c548-4654-af0b-4be3950d210f.json",
])
def test_import_sample_again_with_bom_crlf_and_gzip_is_the_same(cw, files, name):
    data = sample(name)
    plain = files / Path(name).name
    plain.write_bytes(data)
    first = summary(cw(*IMPORT, "--json", str(plain)))
    assert first["ok"] and first["stored"] > 5, first["rejections"][:3]
    odd = b"\xef\xbb\xbf" + data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    (files / "odd.json.gz").write_bytes(gzip.compress(odd))
    again = summary(cw(*IMPORT, "--json", str(files / "odd.json.gz")))
    assert again["ok"], again["rejections"][:3]
    assert (again["stored"], again["unchanged"]) == (0, first["stored"] + first["unchanged"])
    piped = summary(cw(*IMPORT, "--json", "-", input=gzip.compress(odd)))
    assert piped["ok"] and piped["stored"] == 0 and piped["unchanged"] == again["unchanged"]


# == import: directories, links, permissions, stdin ============================================
def test_import_directory_with_mixed_files_and_subdirectories(cw, files):
    root = files / "in"
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / ".hidden").mkdir()
    (root / "a.txt").write_text("C2 mixed-a-c2[.]top\n")
    (root / "b.csv").write_text("value,type\nmixed-b-c2.top,domain\n198.51.100.300,ip\n")
    (root / "empty.csv").write_bytes(b"")
    (root / "empty.txt").write_bytes(b"")
    (root / "sub" / "c.jsonl").write_text('{"type": "ipv4-addr", "value": "198.51.100.71"}\n{broken\n')
    (root / "sub" / "deeper" / "d.txt.gz").write_bytes(gzip.compress(b"mixed-d-c2[.]top\n"))
    (root / "sub" / ".e.txt").write_text("hidden-e-c2[.]top\n")
    (root / ".hidden" / "f.txt").write_text("hidden-f-c2[.]top\n")
    result = cw(*IMPORT, "--json", str(root))
    body = summary(result)
    assert result.exit_code == 2 and not body["ok"]
    names = ["a.txt", "b.csv", "empty.csv", "empty.txt", "sub/c.jsonl", "sub/deeper/d.txt.gz"]
    assert body["inputs"] == [str(root / n) for n in names]
    bad = rejected_files(body)
    assert sorted(bad) == ["b.csv", "c.jsonl", "empty.csv"]
    assert bad["b.csv"] == ["line 3: '198.51.100.300' is not an IP address or CIDR range"]
    assert bad["empty.csv"] == [": the file is empty"]
    assert len(bad["c.jsonl"]) == 1 and bad["c.jsonl"][0].startswith("line 2: not valid JSON")
    domains = stored(cw, "plain-domain")
    assert {"mixed-a-c2.top", "mixed-b-c2.top", "mixed-d-c2.top"} <= domains
    assert not {"hidden-e-c2.top", "hidden-f-c2.top"} & domains
    again = cw(*IMPORT, str(root))  # the human summary lists the same records, on stderr
    assert again.exit_code == 2 and "0 stored" in again.stdout
    assert f"{root / 'b.csv'}: line 3: '198.51.100.300'" in again.stderr
    assert f"{root / 'sub' / 'c.jsonl'}: line 2: not valid JSON" in again.stderr


def test_import_directory_with_symlink_loops_finishes(cw, files):
    root = files / "in"
    root.mkdir()
    (root / "a.txt").write_text("looped-a-c2[.]top\n")
    (root / "self").symlink_to(root)  # a directory loop
    (root / "loop").symlink_to(root / "loop")  # a link to itself
    result = cw(*IMPORT, "--json", str(root))
    body = summary(result)
    assert body["inputs"][:1] == [str(root / "a.txt")]
    assert "looped-a-c2.top" in stored(cw, "plain-domain")
    assert result.exit_code in (0, 2)


def test_import_directory_reports_entries_it_cannot_read(cw, files):
    """The same link named on the command line is an error; inside a folder it vanishes."""
    root = files / "in"
    root.mkdir()
    (root / "a.txt").write_text("entries-a-c2[.]top\n")
    (root / "rotated.txt").symlink_to(files / "gone" / "feed-2026-12-01.txt")
    (root / "loop.txt").symlink_to(root / "loop.txt")
    alone = cw(*IMPORT, str(root / "rotated.txt"))
    one_error_line(alone, "rotated.txt")
    result = cw(*IMPORT, "--json", str(root))
    body = summary(result)
    assert "entries-a-c2.top" in stored(cw, "plain-domain")
    # Regression: a dangling link and a link loop inside an import folder were skipped without a word:
    # exit 0 and "ok": true, although both entries were named for import and neither was read.
    assert result.exit_code == 2 and {"rotated.txt", "loop.txt"} <= set(rejected_files(body))


def test_import_unreadable_subdirectory_is_reported(cw, files, monkeypatch):
    root = files / "in"
    (root / "locked").mkdir(parents=True)
    (root / "a.txt").write_text("visible-a-c2[.]top\n")
    (root / "locked" / "b.txt").write_text("locked-b-c2[.]top\n")
    deny_listing(root / "locked", monkeypatch)
    result = cw(*IMPORT, "--json", str(root))
    body = summary(result)
    monkeypatch.undo()
    assert body["inputs"][:1] == [str(root / "a.txt")]
    # Regression: a subdirectory that cannot be listed (chmod 000, another owner) was skipped silently
    # (pathlib's rglob swallows the PermissionError): exit 0, "ok": true, its files never read.
    assert result.exit_code == 2 and "locked" in json.dumps(body["rejections"])


def test_import_unreadable_file_is_one_listed_rejection(cw, files, monkeypatch):
    root = files / "in"
    root.mkdir()
    (root / "a.txt").write_text("readable-a-c2[.]top\n")
    (root / "b.txt").write_text("unreadable-b-c2[.]top\n")
    (root / "c.txt").write_text("readable-c-c2[.]top\n")
    deny_reading(root / "b.txt", monkeypatch)
    result = cw(*IMPORT, "--json", str(root))
    body = summary(result)
    assert result.exit_code == 2
    bad = rejected_files(body)
    assert list(bad) == ["b.txt"] and "permission denied" in bad["b.txt"][0].lower()
    monkeypatch.undo()
    domains = stored(cw, "plain-domain")
    assert {"readable-a-c2.top", "readable-c-c2.top"} <= domains and "unreadable-b-c2.top" not in domains


def test_import_path_inside_an_unreadable_directory(cw, files, monkeypatch):
    locked = files / "locked"
    locked.mkdir()
    (locked / "iocs.txt").write_text("locked-c2[.]top\n")
    deny_lookup_below(locked, monkeypatch)
    result = cw(*IMPORT, str(locked / "iocs.txt"))
    monkeypatch.undo()
    assert result.exit_code != 0
    # Regression: Path.is_dir() re-raised EACCES in expand(): the import ended in an uncaught
    # PermissionError (a traceback) instead of an error line or a listed rejection.
    one_error_line(result, "iocs.txt")


def test_import_symlink_loop_named_on_the_command_line(cw, files):
    loop = files / "loop.json"
    loop.symlink_to(loop)
    result = cw(*IMPORT, str(loop))
    one_error_line(result, str(loop))
    assert result.exit_code == 2


def test_import_from_a_fifo_is_not_called_missing(cw, files):
    """``commonwatch import ... <(zcat feed.gz)`` names a pipe such as /dev/fd/63."""
    fifo = files / "63"
    os.mkfifo(fifo)

    def feed() -> None:  # blocks until a reader opens the pipe; closing it gives EOF
        with open(fifo, "wb") as pipe:
            pipe.write(b"fifo-c2[.]top\n")

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    try:
        result = cw(*IMPORT, "--format", "text", str(fifo))
    finally:  # if the import never opened the pipe, let the writer finish
        release = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
        writer.join(5)
        os.close(release)
    no_traceback(result)
    # Regression: a path that exists but is neither a regular file nor a folder (a FIFO, /dev/fd/63
    # from <(...)) was refused as "no such file or directory", which was false.
    assert result.exit_code == 0 or "no such file" not in result.stderr, result.stderr


def test_import_stdin_named_twice(cw):
    result = cw(*IMPORT, "--json", "--format", "text", "-", "-", input=b"twice-c2[.]top\n")
    # Regression: the first '-' input closed sys.stdin; the second then raised "ValueError: I/O
    # operation on closed file" out of the command (a traceback, exit 1).
    no_traceback(result)
    assert result.exit_code in (0, 2)


# == import: encodings and line ends ============================================================
def test_import_crlf_cr_and_bom_keep_line_positions(cw, files):
    (files / "crlf.txt").write_bytes(b"\xef\xbb\xbfintro\r\n\r\nC2 at 198.51.100.81\r\n")
    (files / "cr.txt").write_bytes(b"intro\rmore\r198.51.100.82\r")
    (files / "crlf.csv").write_bytes(b"\xef\xbb\xbfValue,Type\r\ncrlf-c2.top,domain\r\n198.51.100.300,ip\r\n")
    body = summary(cw(*IMPORT, "--json", str(files)))
    hits = {(Path(h["source"]).name, h["position"]) for h in body["warninglist_hits"]["objects"]}
    assert hits == {("crlf.txt", "line 3"), ("cr.txt", "line 3")}
    assert rejected_files(body) == {
        "crlf.csv": ["line 3: '198.51.100.300' is not an IP address or CIDR range"]}
    assert "crlf-c2.top" in stored(cw, "plain-domain")


def test_import_json_lines_bad_bytes_and_huge_line_reject_only_their_line(cw, files):
    good = '{"type": "ipv4-addr", "value": "198.51.100.%d"}'
    lines = [good % 91, '{"type": "note", "content": "caf\xe9"}', good % 92,
             '{"type": "note", "content": "' + "x" * (17 * 1024 * 1024) + '"}', good % 93]
    (files / "mixed.jsonl").write_bytes("\n".join(lines).encode("latin-1") + b"\n")
    result = cw(*IMPORT, "--json", str(files / "mixed.jsonl"))
    body = summary(result)
    assert result.exit_code == 2
    assert [r["position"] for r in body["rejections"]] == ["line 2", "line 4"]
    assert "16777216" in body["rejections"][1]["reason"]
    assert body["stored"] == 3
    assert {"198.51.100.91", "198.51.100.92", "198.51.100.93"} <= stored(cw, "plain-ip", "ipv4-addr")


def test_import_latin1_text_never_yields_a_cut_domain(cw, files):
    """A report saved as Latin-1: 'bücher.de' is one name, whatever its bytes."""
    report = "Die Seite b\xfccher.de lieferte 198.51.100.41 aus.\n"
    (files / "bericht.txt").write_bytes(report.encode("latin-1"))
    result = cw(*IMPORT, "--json", str(files / "bericht.txt"))
    summary(result)
    assert "198.51.100.41" in stored(cw, "plain-ip")
    # Regression: the undecodable byte became U+FFFD, which the extractor took for a word boundary:
    # an indicator for the unrelated domain 'cher.de' was stored, nothing was rejected, exit 0.
    assert "cher.de" not in stored(cw, "plain-domain")


def test_import_utf16_text_is_not_silently_empty(cw, files):
    """What PowerShell 5's ``>`` and Notepad's "Unicode" write (STIX in UTF-16 is read)."""
    text = "C2 server utf16-c2.top, callback 198.51.100.61\r\n".encode("utf-16")
    (files / "iocs.txt").write_bytes(text)
    result = cw(*IMPORT, "--json", str(files / "iocs.txt"))
    body = summary(result)
    # Regression: the file was decoded as UTF-8 with replacement, nothing was extracted and nothing was
    # rejected: exit 0, "ok": true, 0 stored, although the file holds two indicators.
    assert body["stored"] > 0 or "iocs.txt" in rejected_files(body), body


def test_import_text_line_over_the_limit_never_yields_a_cut_value(cw, files):
    """docs/import.md: text lines are at most 1 MiB characters. Past it, no value is cut."""
    line = " " * (MAX_LINE_CHARS - len("198.51.100.4")) + "198.51.100.47 long-line-c2.top\n"
    (files / "long.txt").write_text(line)
    result = cw(*IMPORT, "--json", str(files / "long.txt"))
    summary(result)
    ips = stored(cw, "plain-ip")
    # Regression: the line was read in 1 MiB pieces and each piece was searched alone: '198.51.100.47'
    # straddles the cut and '198.51.100.4' (another address) was stored, without any rejection.
    assert "198.51.100.4" not in ips, sorted(ip for ip in ips if ip.startswith("198.51.100.4"))


def test_import_text_positions_after_a_long_line(cw, files):
    (files / "long.txt").write_text("word " * (MAX_LINE_CHARS // 4) + "\n" + "then 198.51.100.23\n")
    body = summary(cw(*IMPORT, "--json", str(files / "long.txt")))
    positions = [h["position"] for h in body["warninglist_hits"]["objects"]]
    # Regression: each 1 MiB piece of the long line 1 counted as a line, so the address on line 2 was
    # reported at 'line 3' (and further off after longer lines).
    assert positions == ["line 2"]


def test_import_csv_long_line_does_not_abort_the_rest_of_the_file(cw, files):
    rows = (b"value,type\nbefore-long-c2.top,domain\n" + b"x" * (5 * 1024 * 1024) + b",domain\n"
            + b"after-long-c2.top,domain\n")
    (files / "feed.csv").write_bytes(rows)
    result = cw(*IMPORT, "--json", str(files / "feed.csv"))
    body = summary(result)
    assert result.exit_code == 2 and len(body["rejections"]) == 1
    domains = stored(cw, "plain-domain")
    assert "before-long-c2.top" in domains
    # Regression: a CSV line over 4 MiB characters raised out of the reader and ended the file there
    # ("records before this point were read"): the good rows after it were never read nor listed.
    assert "after-long-c2.top" in domains
