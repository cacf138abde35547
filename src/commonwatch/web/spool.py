"""A response body rendered ahead of its client into temporary files.

A feed's export reads one database snapshot on one pooled connection from its first
row to its last. Streamed straight to the client, a firewall on a slow link would
hold both for as long as its download takes: enough slow fetchers and the pool runs
dry (every request a 503), and the snapshot held keeps SQLite's WAL from being
checkpointed and PostgreSQL's old row versions from being vacuumed. A :class:`Spool`
renders the body in its own thread as fast as the database gives it, into unlinked
temporary files, while the response sends what is written so far at the client's
pace: the connection goes back to the pool when the render ends, memory stays at
one chunk, and the first bytes go out at once.

Disk stays bounded: the body is written in segments, each file closed (and so freed)
once it is sent; a render runs at most ``ahead`` bytes ahead of its client, and all
renders together at most :data:`BUDGET_BYTES` ahead of theirs (a :class:`Budget`
they share). Past either, a render waits for its client, as a plain stream would.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
from collections import deque
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger(__name__)

#: The most read from a file per chunk sent.
READ_BYTES = 1 << 20
#: Bytes per segment file.
SEGMENT_BYTES = 4 << 20
#: How far a render may run ahead of its client (a feed up to this size never waits).
AHEAD_BYTES = 256 << 20
#: How far all renders together may run ahead of their clients.
BUDGET_BYTES = 1 << 30


class RenderFailed(Exception):
    """A spooled render ended with an error (logged where it happened)."""


class Budget:
    """Bytes written and not yet sent, over every spool that shares it. Its condition
    is the lock of those spools too: a client reading wakes renders waiting on it."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.ahead = 0
        self.lock = threading.Condition()


#: The budget of the spools of this process.
BUDGET = Budget(BUDGET_BYTES)


class _Segment:
    __slots__ = ("fd", "size", "sealed")

    def __init__(self, folder: Path | None) -> None:
        fd, path = tempfile.mkstemp(prefix="cw-feed-", dir=folder)
        os.unlink(path)  # gone with its descriptor, whatever happens
        self.fd, self.size, self.sealed = fd, 0, False


class Spool:
    """``chunks`` written by a thread of its own to temporary files, read back by
    :meth:`__iter__` as they arrive.

    :meth:`close` (the response ended, however) stops the render at its next chunk
    and closes ``chunks``, so its database connection and snapshot are given back.
    A render that fails ends the body with the error (the client sees it cut short).
    """

    def __init__(self, chunks: Iterator[str], folder: Path | None = None, *,
                 segment_bytes: int = SEGMENT_BYTES, ahead_bytes: int = AHEAD_BYTES,
                 budget: Budget = BUDGET) -> None:
        self._chunks = chunks
        self._budget = budget
        self._folder = folder
        self._segment_bytes, self._ahead_bytes = segment_bytes, ahead_bytes
        self._segments = deque([_Segment(folder)])  # oldest unread first, the one written last
        self._written = self._read = 0  # bytes, in all
        self._users = 2  # the writer thread and the reader: the last one closes what is left
        self._done = self._stopped = False
        self._error: BaseException | None = None
        self._lock = budget.lock
        threading.Thread(target=self._write, name="feed-spool", daemon=True).start()

    # -- the writer's thread ---------------------------------------------------------------
    def _write(self) -> None:
        chunks = self._chunks
        try:
            for chunk in chunks:
                if self._stopped:
                    break
                self._append(chunk.encode("utf-8"))
        except BaseException as exc:  # noqa: BLE001 - the reader ends the body with it
            if not self._stopped:
                log.warning("a feed render failed", exc_info=True)
            # Handed over without its traceback: the traceback's frames hold the render's
            # suspended generators, and with them its database connection and snapshot,
            # until a garbage collection; closing them now gives both back.
            failure = RenderFailed(f"the feed render failed: {type(exc).__name__}")
            with self._lock:
                self._error = failure
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                try:
                    close()
                except Exception:  # noqa: BLE001 - the render is over either way
                    log.warning("closing a feed render failed", exc_info=True)
            with self._lock:
                self._done = True
                self._lock.notify_all()
            self._release()

    def _append(self, data: bytes) -> None:
        budget = self._budget
        with self._lock:
            # Far ahead of its own client, or past the shared budget with its own client
            # behind: wait. A client that has read everything is never kept waiting by
            # others that have not (past the budget, its render goes a chunk at a time).
            while not self._stopped and (self._written - self._read > self._ahead_bytes or (
                    budget.ahead > budget.limit and self._written > self._read)):
                self._lock.wait()
            segment = self._segments[-1]
        if segment.size >= self._segment_bytes:
            fresh = _Segment(self._folder)
            with self._lock:
                segment.sealed = True  # the reader may close it once read
                self._segments.append(fresh)
                self._lock.notify_all()
            segment = fresh
        view, at = memoryview(data), segment.size
        while view:  # the reader reads below segment.size only: no lock needed to write
            view = view[os.pwrite(segment.fd, view, at + len(data) - len(view)):]
        with self._lock:
            segment.size = at + len(data)
            self._written += len(data)
            budget.ahead += len(data)
            self._lock.notify_all()

    # -- the reader ------------------------------------------------------------------------
    def __iter__(self) -> Iterator[bytes]:
        """The body as written, chunk by chunk, until the render ends."""
        at = 0  # in the oldest segment
        try:
            while True:
                with self._lock:
                    segment = self._segments[0]
                    while at == segment.size and not segment.sealed and not self._done:
                        self._lock.wait()
                    size, sealed, done, error = segment.size, segment.sealed, self._done, self._error
                    if at == size and sealed:  # read to its end: free it, go on to the next
                        self._segments.popleft()
                        os.close(segment.fd)
                        at = 0
                        continue
                if at < size:
                    data = os.pread(segment.fd, min(size - at, READ_BYTES), at)
                    at += len(data)
                    with self._lock:
                        self._read += len(data)
                        self._budget.ahead -= len(data)
                        self._lock.notify_all()
                    yield data
                elif error is not None:
                    raise error
                elif done:
                    return
        finally:
            self.close()

    def close(self) -> None:
        """Stop the render (if it still runs) and give the files up; idempotent."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
            self._lock.notify_all()  # a writer waiting for the client
        self._release()

    def _release(self) -> None:
        with self._lock:
            self._users -= 1
            if self._users:
                return
            segments, self._segments = self._segments, deque()
            self._budget.ahead -= self._written - self._read  # what no one will read now
            self._read = self._written
            self._lock.notify_all()
        for segment in segments:
            os.close(segment.fd)
