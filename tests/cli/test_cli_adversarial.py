"""Adversarial tests of the ``commonwatch`` command: bad configuration, bad options,
unwritable outputs and failures half-way.

The rules under test (README, cli/main.py, cli/common.py, docs/export.md,
docs/detection.md): bad input or configuration gets a one-line ``error: ...`` that
says what is wrong and a non-zero exit, never a Python traceback; ``export -o`` is
atomic (the old file stays whole on any failure, no temporary file is left).
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from typer.testing import CliRunner

from commonwatch.cli.main import app
from commonwatch.config import load_settings
from commonwatch.errors import ConfigError, StorageError

CW = str(Path(sys.executable).with_name("commonwatch"))
EXPORT = ["export", "--user", "natcert-analyst", "--include-warninglisted"]
DETECT = ["detect", "--community", "telecom-isac", "--user", "northtel-analyst"]
EVE = ('{"timestamp":"2026-03-01T10:00:00Z","event_type":"flow","src_ip":"10.0.0.1",'
       '"dest_ip":"203.0.113.9","src_port":1,"dest_port":2,"proto":"TCP"}\n')


# -- fixtures and helpers -----------------------------------------------------------------
def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMMONWATCH_")}
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def demo_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite database holding the demo federation, built once."""
    path = tmp_path_factory.mktemp("demo") / "demo.db"
    result = CliRunner().invoke(app, ["--database-url", f"sqlite:///{path}", "demo"])
    assert result.exit_code == 0, result.output
    return path


@pytest.fixture
def demo_url(demo_template: Path, tmp_path: Path) -> str:
    path = tmp_path / "db" / "cw.db"
    path.parent.mkdir()
    shutil.copy(demo_template, path)
    return f"sqlite:///{path}"


@pytest.fixture
def cw(demo_url: str, monkeypatch: pytest.MonkeyPatch):
    """Run the CLI in-process on a copy of the demo database."""
    for name in [k for k in os.environ if k.startswith("COMMONWATCH_")]:
        monkeypatch.delenv(name)
    runner = CliRunner()

    def invoke(*args: str, env: dict[str, str] | None = None, url: str | None = demo_url,
               input: str | None = None):
        prefix = ["--database-url", url] if url else []
        return runner.invoke(app, [*prefix, *args], env=env, input=input)

    return invoke


def assert_clean_error(result, *words: str, code: int | None = None) -> None:
    """A non-zero exit with one ``error:`` line naming ``words``, and no traceback."""
    shown = result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        f"uncaught {type(result.exception).__name__}: {result.exception}\n{shown}")
    assert "Traceback" not in shown, shown
    if code is None:
        assert result.exit_code != 0, shown
    else:
        assert result.exit_code == code, shown
    stderr = result.stderr
    for word in words:
        assert word.lower() in stderr.lower(), stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), f"not one error line: {stderr!r}"


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_serve(args: list[str], env: dict[str, str], wait: float = 12.0) -> tuple[int | None, str]:
    """Start ``commonwatch serve``; its exit code (None if it kept running) and output."""
    proc = subprocess.Popen([CW, "serve", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        code = proc.wait(timeout=wait)
    except subprocess.TimeoutExpired:
        code = None
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    output = proc.stdout.read() if proc.stdout else ""
    return code, output


# -- configuration: COMMONWATCH_* --------------------------------------------------------
@pytest.mark.parametrize(("variable", "value"), [
    ("COMMONWATCH_PORT", "abc"),
    ("COMMONWATCH_PORT", "-1"),
    ("COMMONWATCH_PORT", "0"),
    ("COMMONWATCH_MAX_BODY_BYTES", "-5"),
    ("COMMONWATCH_MAX_BODY_BYTES", "64MiB"),
    ("COMMONWATCH_MAX_OBJECTS_PER_REQUEST", "ten"),
    ("COMMONWATCH_DEFAULT_PAGE_SIZE", "0"),
    ("COMMONWATCH_MAX_PAGE_SIZE", "1.5"),
    ("COMMONWATCH_MAX_MATCH_VALUES", "-1"),
    ("COMMONWATCH_DEFAULT_PAGE_SIZE", "20000"),  # above MAX_PAGE_SIZE's default 10000
])
def test_bad_numeric_settings_are_one_line_errors(cw, variable, value):
    result = cw("org", "list", env={variable: value})
    assert_clean_error(result, variable)


@pytest.mark.parametrize("url", ["mysql://u:p@localhost/db", "ftp://example.org/db", "sqlite"])
def test_database_url_with_unknown_scheme(cw, url):
    assert_clean_error(cw("org", "list", url=url), "COMMONWATCH_DATABASE_URL")


def test_database_url_with_unknown_driver(cw):
    result = cw("org", "list", url="postgresql+nodriver://u:p@localhost/db")
    assert_clean_error(result, "nodriver")


def test_unreachable_postgresql_is_one_line(cw):
    port = free_port()
    result = cw("org", "list", url=f"postgresql+psycopg://u:p@127.0.0.1:{port}/db")
    assert_clean_error(result, "cannot migrate the database", "refused")


def test_sqlite_in_missing_directory_is_created(cw, tmp_path):
    path = tmp_path / "new" / "deeper" / "cw.db"
    result = cw("db", "upgrade", url=f"sqlite:///{path}")
    assert result.exit_code == 0, result.output
    assert path.is_file()
    # Regression: said "schema is up to date" also when it had just created or migrated it.
    assert "schema migrated from revision none (new database) to 00" in result.stdout, result.output
    again = cw("db", "upgrade", url=f"sqlite:///{path}")
    head = result.stdout.split()[-1]
    assert again.exit_code == 0 and f"schema is up to date (revision {head})" in again.stdout, again.output


def test_sqlite_in_unwritable_existing_directory(cw):
    # /sys is read-only even for root: a clean StorageError.
    assert_clean_error(cw("org", "list", url="sqlite:////sys/commonwatch-test.db"), "database")


@pytest.mark.parametrize("where", ["under-a-file", "unwritable-parent"])
def test_sqlite_whose_directory_cannot_be_created(cw, tmp_path, where):
    if where == "under-a-file":
        blocker = tmp_path / "plainfile"
        blocker.write_text("x")
        url, named = f"sqlite:///{blocker}/sub/cw.db", "plainfile"
    else:
        named = "commonwatch-test-nonexistent"
        url = f"sqlite:////proc/{named}/cw.db"  # nobody, not even root, can mkdir in /proc
    assert_clean_error(cw("org", "list", url=url), named)


def test_log_level_is_validated_at_start_up():
    with pytest.raises(ConfigError, match="COMMONWATCH_LOG_LEVEL"):
        load_settings({"COMMONWATCH_LOG_LEVEL": "loud"})


def test_port_above_65535_is_refused_at_start_up():
    with pytest.raises(ConfigError, match="COMMONWATCH_PORT"):
        load_settings({"COMMONWATCH_PORT": "70000"})


def test_missing_warninglist_dir(cw):
    result = cw(*EXPORT, "--format", "plain-ip", env={"COMMONWATCH_WARNINGLIST_DIRS": "/nonexistent-cw"})
    assert_clean_error(result, "/nonexistent-cw")


@pytest.mark.parametrize("kind", ["latin-1-file", "directory-named-json"])
def test_unreadable_warninglist_file(cw, tmp_path, kind):
    lists = tmp_path / "lists"
    lists.mkdir()
    if kind == "latin-1-file":
        (lists / "mine.json").write_bytes('{"name": "Liste à moi"}'.encode("latin-1"))
    else:
        (lists / "mine.json").mkdir()
    result = cw(*EXPORT, "--format", "plain-ip", env={"COMMONWATCH_WARNINGLIST_DIRS": str(lists)})
    assert_clean_error(result, "mine.json")


# -- export -o ------------------------------------------------------------------------------
def test_export_into_missing_directory(cw, tmp_path):
    target = tmp_path / "nope" / "out.txt"
    assert_clean_error(cw(*EXPORT, "--format", "plain-ip", "-o", str(target)),
                       str(target.parent), code=2)
    assert not target.parent.exists()


def test_export_onto_a_directory(cw, tmp_path):
    target = tmp_path / "rules"
    target.mkdir()
    (target / "keep").write_text("keep")
    result = cw(*EXPORT, "--format", "plain-ip", "-o", str(target))
    assert leftovers(tmp_path) == []
    assert (target / "keep").read_text() == "keep"
    assert_clean_error(result, str(target))


def test_export_onto_read_only_file_is_clean(cw, tmp_path):
    target = tmp_path / "ro.txt"
    target.write_text("old\n")
    target.chmod(0o444)
    result = cw(*EXPORT, "--format", "plain-ip", "-o", str(target))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert leftovers(tmp_path) == []
    if result.exit_code == 0:  # replaced by rename (allowed: the directory is writable)
        assert target.read_text() != "old\n" and "203.0.113." in target.read_text()
    else:
        assert_clean_error(result, str(target))
        assert target.read_text() == "old\n"


def test_export_dash_means_stdout(cw, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = cw(*EXPORT, "--format", "plain-ip", "-o", "-")
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "-").exists()
    assert "203.0.113." in result.stdout


def test_export_replaces_file_atomically_without_leftovers(cw, tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old\n")
    result = cw(*EXPORT, "--format", "plain-ip", "-o", str(target))
    assert result.exit_code == 0, result.output
    assert "203.0.113." in target.read_text()
    assert leftovers(tmp_path) == []
    assert "Traceback" not in result.output


@pytest.fixture
def failing_export(monkeypatch):
    """Make every export fail after its first chunk, as a database error would."""
    from commonwatch.services.export import ExportService

    original = ExportService.export

    def export(self, *args, **kwargs):
        exp = original(self, *args, **kwargs)

        def chunks() -> Iterator[str]:
            it = iter(exp.chunks)
            yield next(it)
            raise StorageError("the database connection was lost")

        return replace(exp, chunks=chunks())

    monkeypatch.setattr(ExportService, "export", export)


def test_export_failing_midway_keeps_previous_file(cw, tmp_path, failing_export):
    target = tmp_path / "out.json"
    target.write_text("previous export\n")
    result = cw(*EXPORT, "--format", "stix", "-o", str(target))
    assert_clean_error(result, "database connection was lost")
    assert target.read_text() == "previous export\n"
    assert leftovers(tmp_path) == []


def test_export_disk_full_midway_keeps_previous_file(cw, tmp_path, monkeypatch):
    real_fdopen = os.fdopen

    class FullDisk:
        def __init__(self, handle):
            self.handle, self.written = handle, 0

        def write(self, text):
            self.written += len(text)
            if self.written > 64:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return self.handle.write(text)

        def __getattr__(self, name):
            return getattr(self.handle, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.handle.close()

    def fdopen(fd, *args, **kwargs):
        handle = real_fdopen(fd, *args, **kwargs)
        return FullDisk(handle) if "w" in (args[0] if args else kwargs.get("mode", "r")) else handle

    target = tmp_path / "out.json"
    target.write_text("previous export\n")
    monkeypatch.setattr(os, "fdopen", fdopen)
    result = cw(*EXPORT, "--format", "stix", "-o", str(target))
    monkeypatch.undo()
    assert target.read_text() == "previous export\n"
    assert leftovers(tmp_path) == []
    assert_clean_error(result, "no space left")


def test_export_unknown_format_leaves_file(cw, tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old\n")
    assert_clean_error(cw(*EXPORT, "--format", "nope", "-o", str(target)), "nope", code=2)
    assert target.read_text() == "old\n" and leftovers(tmp_path) == []


# -- detect ------------------------------------------------------------------------------
@pytest.fixture
def eve(tmp_path) -> Path:
    path = tmp_path / "eve.json"
    path.write_text(EVE)
    return path


def test_detect_runs(cw, eve):
    result = cw(*DETECT, str(eve))
    assert result.exit_code == 0, result.output
    assert "lines: 1, events: 1" in result.stderr


def test_detect_workers_zero(cw, eve):
    assert_clean_error(cw(*DETECT, "--workers", "0", str(eve)), "--workers", code=2)


def test_detect_workers_negative(cw, eve):
    assert_clean_error(cw(*DETECT, "--workers", "-3", str(eve)), "--workers", code=2)


def test_detect_huge_workers_are_refused(cw, eve):
    """Each worker is a forked process: a billion of them is refused, not attempted."""
    assert_clean_error(cw(*DETECT, "--workers", str(10**9), str(eve)), "--workers", code=2)


def test_detect_has_no_batch_lines_option(cw, eve):
    result = cw(*DETECT, "--batch-lines", "0", str(eve))
    assert result.exit_code == 2
    assert "No such option" in result.output and "Traceback" not in result.output


def test_detect_negative_refresh(cw, eve):
    assert_clean_error(cw(*DETECT, "--refresh", "-5", str(eve)), "--refresh", code=2)


def test_detect_unknown_format(cw, eve):
    assert_clean_error(cw(*DETECT, "--format", "syslog", str(eve)), "syslog", code=2)


def test_detect_json_format_without_mapping(cw, eve):
    assert_clean_error(cw(*DETECT, "--format", "json", str(eve)), "--mapping", code=2)


@pytest.mark.parametrize(("content", "words"), [
    (None, ["cannot read mapping file"]),
    ("dir", ["Is a directory"]),
    ("{not json", ["not valid JSON"]),
    ('{"fields": {}}', ["fields"]),
    ('{"fields": {"a": "not a stix path"}}', ["not a STIX object path"]),
    ('{"fields": {"a": "url:value"}, "time": {"format": "weird"}}', ["time format"]),
    ("huge", ["larger than"]),
])
def test_detect_bad_mapping(cw, eve, tmp_path, content, words):
    mapping = tmp_path / "mapping.json"
    if content == "dir":
        mapping.mkdir()
    elif content == "huge":
        pad = "x" * (2 << 20)
        mapping.write_text(f'{{"fields": {{"a": "url:value"}}, "name": "{pad}"}}')
    elif content is not None:
        mapping.write_text(content)
    assert_clean_error(cw(*DETECT, "--mapping", str(mapping), str(eve)), *words, code=2)


def test_detect_output_into_missing_directory(cw, eve, tmp_path):
    target = tmp_path / "nope" / "alerts.jsonl"
    assert_clean_error(cw(*DETECT, "--output", str(target), str(eve)), str(target), code=2)


def test_detect_output_onto_directory(cw, eve, tmp_path):
    target = tmp_path / "alerts"
    target.mkdir()
    assert_clean_error(cw(*DETECT, "--output", str(target), str(eve)), str(target), code=2)


@pytest.mark.parametrize("mistake", ["bad-format", "missing-log", "unknown-community"])
def test_detect_refused_run_keeps_existing_output(cw, eve, tmp_path, mistake):
    target = tmp_path / "alerts.jsonl"
    target.write_text('{"indicator": "indicator--previous"}\n')
    args = list(DETECT)
    logs = [str(eve)]
    if mistake == "bad-format":
        args += ["--format", "syslog"]
    elif mistake == "missing-log":
        logs = [str(tmp_path / "missing.log")]
    else:
        args[2] = "no-such-community"
    result = cw(*args, "--output", str(target), *logs)
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert target.read_text() == '{"indicator": "indicator--previous"}\n'


# -- serve (real processes) ----------------------------------------------------------------
def test_serve_port_in_use(demo_url):
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        code, output = run_serve(["--port", str(port)], _clean_env(COMMONWATCH_DATABASE_URL=demo_url))
    assert code not in (None, 0), output
    assert "address already in use" in output and "Traceback" not in output


def test_serve_port_out_of_range(demo_url):
    port = free_port()
    code, output = run_serve(["--port", str(65536 + port)], _clean_env(COMMONWATCH_DATABASE_URL=demo_url),
                             wait=6)
    assert code not in (None, 0), f"serve kept running (listening on {port}?):\n{output}"
    assert "port" in output.lower() and "Traceback" not in output


def test_serve_unknown_log_level(demo_url):
    code, output = run_serve(["--port", str(free_port())],
                             _clean_env(COMMONWATCH_DATABASE_URL=demo_url, COMMONWATCH_LOG_LEVEL="loud"))
    assert code not in (None, 0), output
    assert "COMMONWATCH_LOG_LEVEL" in output
    assert "Traceback" not in output and "KeyError" not in output


def test_serve_missing_warninglist_dir(demo_url):
    code, output = run_serve(["--port", str(free_port())],
                             _clean_env(COMMONWATCH_DATABASE_URL=demo_url,
                                        COMMONWATCH_WARNINGLIST_DIRS="/nonexistent-cw-lists"), wait=6)
    assert code not in (None, 0), f"serve kept running:\n{output}"
    assert "/nonexistent-cw-lists" in output


def test_serve_unreachable_database():
    env = _clean_env(COMMONWATCH_DATABASE_URL=f"postgresql+psycopg://u:p@127.0.0.1:{free_port()}/db")
    code, output = run_serve(["--port", str(free_port())], env)
    assert code == 1, output
    assert output.startswith("error:") and "Traceback" not in output


# -- demo and setup commands, twice -----------------------------------------------------------
def test_demo_and_db_upgrade_twice(cw, tmp_path):
    url = f"sqlite:///{tmp_path / 'fresh' / 'cw.db'}"
    first, second = cw("demo", url=url), cw("demo", url=url)
    assert first.exit_code == 0 and "Demo federation created." in first.stdout, first.output
    assert second.exit_code == 0 and "Demo federation already present." in second.stdout, second.output
    tokens = [line.split()[-1] for line in first.stdout.splitlines() if " cw_" in line]
    again = [line.split()[-1] for line in second.stdout.splitlines() if " cw_" in line]
    assert tokens and again and set(tokens).isdisjoint(again)  # fresh tokens each time
    for _ in range(2):
        result = cw("db", "upgrade", url=url)
        assert result.exit_code == 0 and "schema is up to date" in result.stdout, result.output


def test_demo_twice_as_real_processes(tmp_path):
    env = _clean_env(COMMONWATCH_DATABASE_URL=f"sqlite:///{tmp_path / 'cw.db'}")
    started = time.monotonic()
    outputs = [subprocess.run([CW, "demo"], env=env, capture_output=True, text=True, timeout=60)
               for _ in range(2)]
    assert [r.returncode for r in outputs] == [0, 0], [r.stderr for r in outputs]
    assert "created." in outputs[0].stdout and "already present." in outputs[1].stdout
    assert all("Traceback" not in r.stderr for r in outputs)
    assert time.monotonic() - started < 60


def test_export_keeps_the_mode_of_the_file_it_replaces_and_writes_through_a_link(tmp_path):
    """A 0640 rules file stays 0640; a link to it stays a link (sensors read the target)."""
    import os
    import stat

    from commonwatch.cli.exports import write_atomically

    target = tmp_path / "rules" / "cw.rules"
    target.parent.mkdir()
    target.write_text("old\n")
    os.chmod(target, 0o640)
    link = tmp_path / "active.rules"
    link.symlink_to(target)
    write_atomically(link, iter(["new\n"]))
    assert link.is_symlink() and target.read_text() == "new\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert [p.name for p in target.parent.iterdir()] == ["cw.rules"]  # no temporary file left



def test_user_text_is_never_read_as_rich_markup(cw, tmp_path):
    """Feed descriptions and token labels come from users: '[/x]' once ended the
    listing with a MarkupError, '[red]' restyled it."""
    odd = "edge [/bold] list [red]x"
    created = cw("feed", "create", "edge", "--user", "natcert-analyst", "-f", "plain-ip",
                 "--description", odd)
    assert created.exit_code == 0, created.output
    listed = cw("feed", "list", "--user", "natcert-analyst")
    assert listed.exit_code == 0 and "Traceback" not in listed.output
    assert "[/bold]" in listed.output and "[red]" in listed.output
