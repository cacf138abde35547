"""``commonwatch serve`` stopped with SIGTERM (systemd, docker stop, kill) shuts down in
order: it exits 0 and, on SQLite, leaves everything in the database file itself, so a
copy of that file alone is a complete backup (README, "Upgrading")."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx

CLI = str(Path(sys.executable).parent / "commonwatch")


def _cli(env: dict[str, str], *args: str) -> str:
    done = subprocess.run([CLI, *args], env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_sigterm_leaves_a_complete_database_file(tmp_path: Path) -> None:
    db = tmp_path / "cw.db"
    env = {**os.environ, "COMMONWATCH_DATABASE_URL": f"sqlite:///{db}", "COMMONWATCH_LOG_LEVEL": "warning"}
    _cli(env, "org", "create", "Ops", "--sector", "operator")
    _cli(env, "user", "create", "ops-admin", "--org", "Ops", "--role", "admin")
    token = _cli(env, "token", "create", "ops-admin", "--bare")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([CLI, "serve", "--port", str(port)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/api/feeds", timeout=2)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline and server.poll() is None, "the server did not start"
                time.sleep(0.1)
        made = httpx.post(f"http://127.0.0.1:{port}/api/admin/orgs", timeout=10,
                          headers={"Authorization": f"Bearer {token}"},
                          json={"name": "Written While Serving", "sector": "vendor"})
        assert made.status_code in (200, 201), made.text
        assert Path(f"{db}-wal").exists()  # the write is in the log for now
        server.send_signal(signal.SIGTERM)
        _, err = server.communicate(timeout=30)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    assert server.returncode == 0, err.decode()
    assert b"Traceback" not in err
    wal = Path(f"{db}-wal")
    assert not wal.exists() or wal.stat().st_size == 0  # folded back into the file
    copy = tmp_path / "backup.db"
    shutil.copyfile(db, copy)  # the file alone, as a backup takes it
    with sqlite3.connect(copy) as conn:
        names = {row[0] for row in conn.execute("SELECT name FROM organisations")}
    assert "Written While Serving" in names
