"""A response body rendered ahead of its client into a temporary file.

A feed's export reads one database snapshot on one pooled connection from its first
row to its last. Streamed straight to the client, a firewall on a slow link would
hold both for as long as its download takes: enough slow fetchers and the pool runs
dry (every request a 503), and the snapshot held keeps SQLite's WAL from being
checkpointed and PostgreSQL's old row versions from being vacuumed. A :class:`Spool`
renders the body in its own thread as fast as the database gives it, into an
unlinked temporary file, while the response sends what is written so far at the
client's pace: the connection goes back to the pool when the render ends, memory
stays at one chunk, and the first bytes go out at once.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger(__name__)

#: The most read from the file per chunk sent.
READ_BYTES = 1 << 20


class Spool:
    """``chunks`` written by a thread of its own to a temporary file, read back by
    :meth:`__iter__` as they arrive.

    :meth:`close` (the response ended, however) stops the render at its next chunk
    and closes ``chunks``, so its database connection and snapshot are given back.
    A render that fails ends the body with the error (the client sees it cut short).
    """

    def __init__(self, chunks: Iterator[str], folder: Path | None = None) -> None:
        self._chunks = chunks
        handle, path = tempfile.mkstemp(prefix="cw-feed-", dir=folder)
        os.unlink(path)  # gone with the last descriptor, whatever happens
        self._fd = handle
        self._users = 2  # the writer thread and the reader: the last one closes the file
        self._written = 0
        self._done = False
        self._stopped = False
        self._error: BaseException | None = None
        self._lock = threading.Condition()
        self._thread = threading.Thread(target=self._write, name="feed-spool", daemon=True)
        self._thread.start()

    def _write(self) -> None:
        chunks = self._chunks
        try:
            for chunk in chunks:
                if self._stopped:
                    break
                data = chunk.encode("utf-8")
                at = self._written  # only this thread moves it
                view = memoryview(data)
                while view:
                    view = view[os.pwrite(self._fd, view, at + len(data) - len(view)):]
                with self._lock:
                    self._written = at + len(data)
                    self._lock.notify_all()
        except BaseException as exc:  # noqa: BLE001 - handed to the reader, which raises it
            if not self._stopped:
                log.warning("a feed render failed: %s", type(exc).__name__)
            with self._lock:
                self._error = exc
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

    def __iter__(self) -> Iterator[bytes]:
        """The body as written, chunk by chunk, until the render ends."""
        at = 0
        try:
            while True:
                with self._lock:
                    while at == self._written and not self._done:
                        self._lock.wait()
                    written, done, error = self._written, self._done, self._error
                if at < written:
                    data = os.pread(self._fd, min(written - at, READ_BYTES), at)
                    at += len(data)
                    yield data
                elif error is not None:
                    raise error
                elif done:
                    return
        finally:
            self.close()

    def close(self) -> None:
        """Stop the render (if it still runs) and give the file up; idempotent."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
        self._release()

    def _release(self) -> None:
        with self._lock:
            self._users -= 1
            last = self._users == 0
        if last:
            os.close(self._fd)
