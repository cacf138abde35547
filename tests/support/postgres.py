"""A throwaway PostgreSQL server for tests and benchmarks.

Uses Debian's postgresql package binaries (``/usr/lib/postgresql/<v>/bin``). The
server refuses to run as root, so when we are root, initdb and pg_ctl run as the
``postgres`` system user. The cluster lives in a temporary folder, listens on a free
loopback port and a private socket folder, and is removed on stop.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL server binaries on this machine, or the server did not start."""


def find_bindir() -> Path | None:
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if (Path(candidate) / "pg_ctl").exists():
            return Path(candidate)
    found = shutil.which("pg_ctl")
    return Path(found).parent if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class TempPostgres:
    """Start with :meth:`start`, get URLs with :meth:`url`, always :meth:`stop`."""

    def __init__(
        self, *, durable: bool = False,
        wrap: Callable[[list[str]], list[str]] = lambda cmd: cmd,
    ) -> None:
        """``durable``: PostgreSQL's safe defaults (fsync, full-page writes, synchronous
        commit) instead of the fast, crash-unsafe settings tests use. ``wrap`` adjusts
        each server command (the benchmark pins it to a CPU with taskset)."""
        self.durable = durable
        self.wrap = wrap
        bindir = find_bindir()
        if bindir is None:
            raise PostgresUnavailable(
                "no PostgreSQL binaries found (install Debian's 'postgresql' package)"
            )
        self.bindir = bindir
        self.port = _free_port()
        self.root = Path(tempfile.mkdtemp(prefix="cw-pg-"))
        self.data = self.root / "data"
        self.sock = self.root / "sock"
        self.as_root = os.geteuid() == 0

    def _run(self, *args: str) -> None:
        cmd = [str(self.bindir / args[0]), *args[1:]]
        if self.as_root:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        done = subprocess.run(self.wrap(cmd), capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise PostgresUnavailable(f"{args[0]} failed: {done.stderr.strip() or done.stdout.strip()}")

    def start(self) -> TempPostgres:
        self.sock.mkdir(parents=True)
        if self.as_root:
            shutil.chown(self.root, "postgres")
            shutil.chown(self.sock, "postgres")
            os.chmod(self.root, 0o755)
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8",
                  *(() if self.durable else ("--no-sync",)))
        safety = "on" if self.durable else "off"
        opts = (f"-p {self.port} -k {self.sock} -c listen_addresses=127.0.0.1 "
                f"-c fsync={safety} -c synchronous_commit={safety} -c full_page_writes={safety} "
                "-c max_connections=200 -c shared_buffers=256MB -c max_wal_size=4GB")
        self._run("pg_ctl", "-D", str(self.data), "-o", opts, "-w", "-t", "60",
                  "-l", str(self.root / "log"), "start")
        return self

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def stop(self) -> None:
        with contextlib.suppress(PostgresUnavailable):
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)
