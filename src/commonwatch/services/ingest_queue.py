"""TAXII envelopes stored by one background writer, several in one transaction.

Why: storing an envelope is one transaction, and each commit writes every database
page the transaction changed. In a big collection an envelope's objects land at
random places of the indexes keyed by object id and by observable value, so each
commit rewrites a large part of those indexes: at 10^6 stored objects, about 20 KB
per object for envelopes of 5,000. Envelopes that wait while another is being stored
are stored together, in one transaction, and each page is written once for all of
them (docs/benchmarks.md has the measurements).

TAXII 2.1 (§5.5, §4.3) lets a server answer a POST before it has processed the
envelope: the status resource says ``pending`` and the client reads it again until it
says ``complete``. Envelopes of more than ``wait_objects`` objects are answered so,
as soon as they are queued. Smaller ones are answered once stored, as if there were
no queue: an interactive poster reads its objects back at once.

Nothing acknowledged is lost. Before a large envelope is answered, it is written to a
file of its own in the queue directory (and synced to disk); the file is removed once
the transaction that stored the envelope is committed. When the server starts, it
stores the envelopes whose files are left (a stop or a crash), except those whose
status resource is already in the database (stored just before the stop). The queue
is not written into the database itself because the transaction storing earlier
envelopes holds the database's write lock: posters would wait for it, and no queue
would form. Small envelopes are not written to a file: their poster is answered only
once they are stored, and posts again if the server stops first.

Order and rights: envelopes are stored in the order they were queued; a transaction
holds the envelopes of one collection only, together at most ``max_queued`` objects.
The poster's rights are checked when it posts and again when its envelope is stored:
an envelope whose poster lost them meanwhile is refused whole, each object listed
with the reason. Memory: besides those being stored, at most ``max_queued`` objects
wait in memory (as the bytes posted, about 500 bytes each); a poster beyond that waits
for room before its envelope is queued. The room is freed when the writer takes envelopes to store, so
that the next ones queue up meanwhile and are stored together.
One server process uses a queue directory (the status of a pending envelope is known
to the process that queued it).
"""

from __future__ import annotations

import fcntl
import itertools
import logging
import os
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import orjson
from sqlalchemy import Connection, Engine, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from commonwatch.clock import Clock, now_us
from commonwatch.domain.visibility import Clearance, Principal
from commonwatch.errors import CommonWatchError, ConfigError, InvalidParameter, Unavailable
from commonwatch.process import collector_paused
from commonwatch.services.ingest import Checked, IngestService
from commonwatch.services.ingest_candidates import describe
from commonwatch.services.status import FailureDetail, StatusReport
from commonwatch.storage.models import Community, IngestStatus

log = logging.getLogger(__name__)

#: Envelopes of at most this many objects are answered once stored (status complete).
WAIT_OBJECTS = 1000
#: Objects that may wait in memory to be stored; also the most in one transaction.
MAX_QUEUED = 50_000
#: Seconds before envelopes are tried again when the database was unavailable.
RETRY_SECONDS = 2.0
_SUFFIX = ".envelope"


@dataclass(eq=False)
class _Queued:
    """One queued envelope, from its POST (or from its file, after a restart)."""

    status_id: str
    user_id: int
    org_id: int
    community_id: int
    collection_id: str
    count: int  # objects in the envelope
    #: The TAXII envelope as posted. Large envelopes wait as these bytes and are parsed
    #: when stored: parsed, their millions of containers would be walked again and again
    #: by the cyclic garbage collector while they wait.
    body: bytes
    request_us: int
    #: Answered "pending" (large); else its poster waits for the report.
    acknowledged: bool
    #: Small envelopes keep the objects their POST parsed (stored within moments).
    objects: Sequence[object] | None = None
    #: None for an envelope found in the queue directory: resolved from ``user_id``.
    principal: Principal | None = None
    #: Its file in the queue directory (None: a small envelope whose poster waits).
    path: Path | None = None
    done: threading.Event = field(default_factory=threading.Event)
    #: Set when stored (None if the queue closed first).
    report: StatusReport | None = None


class IngestQueue:
    """Queues posted envelopes and stores them on a thread of its own."""

    def __init__(
        self, engine: Engine, ingest: IngestService,
        principal_of: Callable[[int], Principal], directory: Path | None, *,
        clock: Clock = now_us, wait_objects: int = WAIT_OBJECTS, max_queued: int = MAX_QUEUED,
    ) -> None:
        """``principal_of``: the principal of a user id, for envelopes queued before a
        restart (raises if the user no longer exists or is disabled). ``directory``:
        where queued envelopes are kept until stored (None: in memory only, for a
        database that is itself in memory)."""
        self._engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        #: The writer's own connection (None: not open). SQLite empties a connection's page
        #: cache when another connection wrote since its last transaction: on one
        #: connection of its own, the writer finds the index pages of its last
        #: transaction still cached (the pool would hand it whichever is free).
        self._connection: Connection | None = None
        self._writer_sessions: sessionmaker[Session] | None = None  # bound to it
        self._ingest = ingest
        self._principal_of = principal_of
        self._directory = directory
        self._clock = clock
        self._wait_objects = wait_objects
        self._max_queued = max_queued
        self._waiting: deque[_Queued] = deque()
        self._in_flight: list[_Queued] = []  # being stored by the writer
        self._reserved = 0  # objects waiting or about to (room taken), not yet taken to store
        self._unstored = 0  # envelopes queued and not yet stored (or refused)
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closing = False
        self._sequence = itertools.count()
        self._lock: BinaryIO | None = None  # the queue directory's lock file, once owned
        #: Transactions that stored queued envelopes, and the envelopes (diagnostics, tests).
        self.transactions = 0
        self.stored_envelopes = 0

    def submit(self, principal: Principal, collection_id: str, body: bytes) -> StatusReport:
        """Queue a posted TAXII envelope; its status resource, pending unless it was small
        enough to wait. Raises InvalidParameter if ``body`` is not an envelope."""
        with collector_paused():  # the parsed objects: freed here, or kept acyclic
            objects = envelope_objects(body)
            count = len(objects)
            community, _ = self._ingest.admit(principal, collection_id, count)
            acknowledged = count > self._wait_objects
            item = _Queued(str(uuid.uuid4()), principal.user_id, principal.org_id, community.id,
                           collection_id, count, body, self._clock(), acknowledged,
                           None if acknowledged else objects, principal)
            del objects
        self._reserve(count)
        try:
            if acknowledged and self._directory is not None:
                item.path = self._write(item, body)
        except BaseException:
            self._release(count)
            raise
        with self._cond:
            self._unstored += 1
        self._enqueue([item])
        if acknowledged:
            return pending_report(item.status_id, item.request_us, count)
        item.done.wait()
        if item.report is None:
            raise Unavailable("the server stopped before storing the envelope; post it again")
        return item.report

    def status(self, principal: Principal, status_id: str) -> StatusReport:
        """A status resource of the caller's own organisation, pending or not."""
        with self._cond:
            queued = next((item for item in (*self._waiting, *self._in_flight)
                           if item.status_id == status_id and item.org_id == principal.org_id), None)
        if queued is not None:
            return pending_report(queued.status_id, queued.request_us, queued.count)
        return self._ingest.status(principal, status_id)

    def recover(self) -> int:
        """Queue the envelopes a previous run acknowledged and did not store; how many.
        Refuses (ConfigError) if another server process uses the queue directory."""
        if self._directory is None or not self._directory.is_dir():
            return 0  # nothing was ever queued here (the directory is made by the first)
        self._own_directory()
        known = {item.status_id for item in self._snapshot()}
        items = []
        for path in sorted(self._directory.glob(f"*{_SUFFIX}")):
            try:
                item = _read(path)
            except (OSError, ValueError, KeyError, TypeError):
                log.exception("queued envelope %s cannot be read; it is left in place", path)
                continue
            if item.status_id not in known:
                items.append(item)
        with self._sessions() as s:
            done = set(s.scalars(select(IngestStatus.id).where(
                IngestStatus.id.in_([i.status_id for i in items]))))
        for item in items:
            if item.status_id in done:  # stored just before the stop
                _remove(item.path)
        items = [item for item in items if item.status_id not in done]
        with self._cond:
            self._reserved += sum(i.count for i in items)
            self._unstored += len(items)
        self._enqueue(items)
        if items:
            log.info("storing %d envelope(s) queued before the last stop", len(items))
        return len(items)

    def drain(self, timeout: float | None = None) -> bool:
        """Wait until every queued envelope is stored; False if ``timeout`` passed first."""
        with self._cond:
            return self._cond.wait_for(lambda: self._unstored == 0, timeout)

    def close(self) -> None:
        """Refuse new envelopes, store those queued, and stop. If the database is
        unavailable, stop at once: the envelopes still queued keep their files (the next
        start stores them), and posters waiting on small ones are told to post again."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join()
        with self._cond:
            left = list(self._waiting)
            self._waiting.clear()
            if self._lock is not None:
                self._lock.close()  # the directory is free for the next server
                self._lock = None
        for item in left:
            item.done.set()

    # -- files --------------------------------------------------------------------------
    def _own_directory(self) -> None:
        """Create the queue directory and lock it for this process: two servers storing
        the same queued envelopes would store each twice."""
        assert self._directory is not None
        with self._cond:
            if self._lock is not None:
                return
            try:
                self._directory.mkdir(parents=True, exist_ok=True)
                lock = open(self._directory / ".lock", "a+b")  # noqa: SIM115 (held until close)
            except OSError as exc:
                raise ConfigError(f"cannot use the ingest queue directory {self._directory}: "
                                  f"{exc.strerror}") from None
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                lock.close()
                raise ConfigError(
                    f"another CommonWatch server uses the ingest queue directory "
                    f"{self._directory}; give each server its own (COMMONWATCH_INGEST_QUEUE_DIR)"
                ) from None
            self._lock = lock

    def _write(self, item: _Queued, body: bytes) -> Path:
        """The envelope's file, synced to disk before the poster is answered."""
        assert self._directory is not None
        try:
            self._own_directory()
        except ConfigError as exc:
            raise Unavailable(f"the server cannot queue the envelope now: {exc.message}") from None
        name = f"{time.time_ns():020d}-{next(self._sequence):08d}-{item.status_id}"
        path, partial = self._directory / (name + _SUFFIX), self._directory / (name + ".partial")
        header = {"status_id": item.status_id, "user_id": item.user_id, "org_id": item.org_id,
                  "community_id": item.community_id, "collection_id": item.collection_id,
                  "count": item.count, "request_us": item.request_us}
        try:
            with open(partial, "wb") as out:
                out.write(orjson.dumps(header) + b"\n")
                out.write(body)
                out.flush()
                os.fsync(out.fileno())
            os.replace(partial, path)
        except OSError as exc:
            _remove(partial)
            log.error("cannot write queued envelope %s: %s", path, exc.strerror)
            raise Unavailable("the server cannot queue the envelope now (its queue "
                              "directory is not writable); post it again later") from None
        return path

    # -- the writer thread ------------------------------------------------------------
    def _reserve(self, count: int) -> None:
        with self._cond:
            # An envelope larger than the room is let in alone, when nothing waits.
            while self._reserved and self._reserved + count > self._max_queued:
                if self._closing:
                    break
                self._cond.wait()
            if self._closing:
                raise Unavailable("the server is stopping; post the envelope again once it is back")
            self._reserved += count

    def _release(self, count: int) -> None:
        with self._cond:
            self._reserved -= count
            self._cond.notify_all()

    def _snapshot(self) -> list[_Queued]:
        with self._cond:
            return [*self._waiting, *self._in_flight]

    def _enqueue(self, items: list[_Queued]) -> None:
        if not items:
            return
        with self._cond:
            self._waiting.extend(items)
            self._cond.notify_all()
            if self._thread is None and not self._closing:
                self._thread = threading.Thread(target=self._run, name="commonwatch-ingest",
                                                daemon=True)
                self._thread.start()

    def _take(self) -> list[_Queued] | None:
        """The next transaction's envelopes: the oldest, and those queued right after
        it for the same collection, up to ``max_queued`` objects (None: closing)."""
        with self._cond:
            self._cond.wait_for(lambda: self._waiting or self._closing)
            if not self._waiting:  # closing, and everything queued is stored
                self._thread = None
                return None
            batch = [self._waiting.popleft()]
            size = batch[0].count
            while (self._waiting and self._waiting[0].collection_id == batch[0].collection_id
                   and size + self._waiting[0].count <= self._max_queued):
                size += self._waiting[0].count
                batch.append(self._waiting.popleft())
            self._in_flight = batch
            self._reserved -= size  # room for the next ones while these are stored
            self._cond.notify_all()
            return batch

    def _run(self) -> None:
        try:
            self._write_batches()
        except BaseException:
            log.exception("the ingest writer stopped; the next envelope queued starts another")
            raise
        finally:
            self._disconnect()
            with self._cond:
                self._thread = None
                for item in self._in_flight:  # their posters are not left waiting
                    item.done.set()
                self._in_flight = []

    def _writer(self) -> sessionmaker[Session]:
        """Sessions on the writer's own connection (opened on first use)."""
        if self._writer_sessions is None:
            self._connection = self._engine.connect()
            self._writer_sessions = sessionmaker(self._connection, expire_on_commit=False)
        return self._writer_sessions

    def _disconnect(self) -> None:
        if self._connection is not None:
            self._connection.close()
        self._connection = self._writer_sessions = None

    def _write_batches(self) -> None:
        while (batch := self._take()) is not None:
            # The batch's objects, candidates and rows are freed inside: a collection
            # triggered while they are alive would walk them all.
            with collector_paused():
                left = self._store(batch)
            done = [item for item in batch if all(item is not other for other in left)]
            for item in done:
                _remove(item.path)
            with self._cond:
                self._in_flight = []
                self._unstored -= len(done)
                self._cond.notify_all()
                for item in done:
                    item.done.set()
                if left:  # the database is unavailable: try again in a while
                    self._waiting.extendleft(reversed(left))
                    self._reserved += sum(item.count for item in left)
                    if self._closing or self._cond.wait_for(lambda: self._closing, RETRY_SECONDS):
                        self._thread = None  # stopping: their files stay for the next start
                        return

    def _store(self, batch: list[_Queued]) -> list[_Queued]:
        """Store ``batch`` in one transaction, or if that fails each envelope in its own;
        returns the envelopes to try again later (the database was unavailable)."""
        try:
            checked = [self._check(item, _objects(item)) for item in batch]
            with self._writer().begin() as s:
                reports = [self._store_one(s, item, c) for item, c in zip(batch, checked, strict=True)]
        except OperationalError:
            log.warning("the database is unavailable; %d queued envelope(s) wait %s s",
                        len(batch), RETRY_SECONDS, exc_info=True)
            self._disconnect()  # a new connection next time
            return batch
        except Exception:
            if len(batch) > 1:
                log.warning("a transaction of %d queued envelopes failed; storing them one by one",
                            len(batch), exc_info=True)
                return [item for one in batch for item in self._store([one])]
            log.exception("a queued envelope could not be stored (status %s)", batch[0].status_id)
            return self._refuse_after_error(batch[0])
        self.transactions += 1
        self.stored_envelopes += len(batch)
        log.debug("stored %d queued envelope(s) in one transaction", len(batch))
        stored = 0
        for item, report in zip(batch, reports, strict=True):
            if not item.acknowledged:  # its poster waits for it
                item.report = report
            stored += len(report.successes) if report is not None else 0
        self._ingest.committed(stored)
        return []

    def _check(self, item: _Queued, objects: Sequence[object]) -> _Checked:
        """Rights checked again, and the objects validated (outside the transaction)."""
        try:
            principal = item.principal or self._principal_of(item.user_id)
            community, clearance = self._ingest.admit(principal, item.collection_id, len(objects))
            return _Checked(principal, clearance, self._ingest.validate(principal, community, objects))
        except CommonWatchError as exc:
            return _Checked(None, None, _refused(objects, exc.message))

    def _store_one(self, s: Session, item: _Queued, c: _Checked) -> StatusReport | None:
        if c.principal is None or c.clearance is None:
            if s.get(Community, item.community_id) is None:
                return None  # the collection was deleted: nothing to store, no status to keep
            return self._ingest.refuse(s, item.org_id, item.community_id, item.status_id,
                                       item.request_us, c.envelope)
        return self._ingest.store(s, c.principal, item.community_id, c.clearance, c.envelope,
                                  item.status_id, item.request_us)

    def _refuse_after_error(self, item: _Queued) -> list[_Queued]:
        """Write the status of an envelope that cannot be stored, every object a
        failure; returns it if that is to be tried again (the database is unavailable)."""
        envelope = _refused(_objects(item), "could not be stored because of an error on the "
                            "server (it is logged); post the object again")
        try:
            with self._writer().begin() as s:
                item.report = self._ingest.refuse(s, item.org_id, item.community_id,
                                                  item.status_id, item.request_us, envelope)
        except OperationalError:
            self._disconnect()
            return [item]
        except Exception:  # its file stays: the next start tries again
            log.exception("the status of queued envelope %s could not be written", item.status_id)
            item.path = None
        return []


@dataclass(slots=True)
class _Checked:
    """A queued envelope made ready to store; ``principal`` None: refused whole."""

    principal: Principal | None
    clearance: Clearance | None
    envelope: Checked


def _refused(objects: Sequence[object], message: str) -> Checked:
    """Every object of an envelope as a failure with ``message``."""
    envelope = Checked(len(objects))
    for n, obj in enumerate(objects):
        oid, version = describe(obj)
        envelope.failures.append(FailureDetail(oid, version, message))
        envelope.failed_at.append(n)
    return envelope


def _read(path: Path) -> _Queued:
    """A queued envelope from its file."""
    with open(path, "rb") as f:
        header = orjson.loads(f.readline())
        body = f.read()
    return _Queued(
        str(header["status_id"]), int(header["user_id"]), int(header["org_id"]),
        int(header["community_id"]), str(header["collection_id"]), int(header["count"]), body,
        int(header["request_us"]), True, path=path,
    )


def _objects(item: _Queued) -> Sequence[object]:
    """The objects of a queued envelope (its body was checked when it was posted)."""
    if item.objects is not None:
        return item.objects
    try:
        return envelope_objects(item.body)
    except InvalidParameter:  # a file damaged on disk: nothing to store
        return []


def envelope_objects(body: bytes) -> list[Any]:
    """The ``objects`` of a TAXII envelope (TAXII 2.1 §3.7); InvalidParameter says why not."""
    try:
        envelope = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidParameter(f"the body is not valid JSON: {exc}") from None
    if not isinstance(envelope, dict):
        raise InvalidParameter("the body must be a TAXII envelope: a JSON object with 'objects'")
    objects = envelope.get("objects", [])
    if not isinstance(objects, list):
        raise InvalidParameter("the envelope's 'objects' must be a list of STIX objects")
    return objects


def _remove(path: Path | None) -> None:
    if path is not None:
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:  # stored: the next start finds its status and removes it
            log.warning("cannot remove queued envelope %s: %s", path, exc.strerror)


def pending_report(status_id: str, request_us: int, total: int) -> StatusReport:
    """The status resource of an envelope queued and not yet stored."""
    return StatusReport(id=status_id, status="pending", request_us=request_us,
                        total_count=total, successes=(), failures=())
