"""A background writer of SQLite's write-ahead log, in the manner of PostgreSQL's WAL writer.

With ``synchronous=NORMAL`` a commit appends its pages to the WAL file without waiting
for the disk; the disk catches up at the next checkpoint, whose first step is to sync
the WAL (up to 512 MiB during a bulk load, see ``storage.db``) while the request that
triggered it waits. This writer syncs the WAL shortly after writes instead, at most
every ``interval`` seconds, on a thread of its own while ingest goes on: the checkpoint
then finds little left to write, and committed envelopes reach the disk within about
``interval``.

It changes nothing SQLite relies on: the checkpoint still syncs the WAL and the
database file itself; this only does part of that work earlier. The thread starts at
the first write and ends after ``idle`` seconds without one; it holds no file open
between syncs.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

from sqlalchemy import Engine

log = logging.getLogger(__name__)


class WalWriter:
    """Syncs ``database``'s ``-wal`` file after :meth:`poke`, at most every ``interval`` s."""

    def __init__(self, database: Path, interval: float = 0.25, idle: float = 30.0) -> None:
        self._wal = f"{database}-wal"
        self._interval = interval
        self._idle = idle
        self._poked = threading.Event()
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        #: WAL syncs done (tests and diagnostics).
        self.syncs = 0

    @classmethod
    def for_engine(cls, engine: Engine) -> WalWriter | None:
        """A writer for a SQLite file database; None for PostgreSQL and in-memory SQLite."""
        database = engine.url.database
        if engine.dialect.name != "sqlite" or not database or database == ":memory:":
            return None
        return cls(Path(database))

    @property
    def running(self) -> bool:
        return self._thread is not None

    def poke(self) -> None:
        """Something was committed: sync the WAL soon."""
        with self._lock:
            self._poked.set()
            if self._thread is None and not self._stopping.is_set():
                self._thread = threading.Thread(target=self._run, name="commonwatch-wal-writer",
                                                daemon=True)
                self._thread.start()

    def close(self) -> None:
        """Stop the thread (no last sync: closing the database checkpoints)."""
        with self._lock:
            self._stopping.set()
            self._poked.set()
            thread = self._thread
        if thread is not None:
            thread.join(timeout=5)

    def _run(self) -> None:
        while True:
            self._poked.wait(self._idle)
            with self._lock:  # poke() sets the event under this lock: no wake-up is lost
                if self._stopping.is_set() or not self._poked.is_set():
                    self._thread = None  # the next poke starts another
                    return
                self._poked.clear()
            self._sync()
            self._stopping.wait(self._interval)  # writes meanwhile: one sync for them all

    def _sync(self) -> None:
        try:
            fd = os.open(self._wal, os.O_RDONLY)
        except FileNotFoundError:  # no WAL now (the last connection closed it)
            return
        except OSError as exc:  # never fatal: the checkpoint syncs the WAL anyway
            log.warning("cannot open the write-ahead log %s: %s", self._wal, exc.strerror)
            return
        try:
            os.fdatasync(fd)
            self.syncs += 1
        except OSError as exc:
            log.warning("cannot sync the write-ahead log %s: %s", self._wal, exc.strerror)
        finally:
            os.close(fd)
