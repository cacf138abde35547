"""The sids, revs and remembered rules of one Suricata rules export, in the database.

A rule's sid follows its key (``suricata_sids``), its rev is bumped when its text
changes. The finished rules of each stored row are remembered by row
(``suricata_row_sids``) with the check of what their texts depend on besides the row
(:class:`~commonwatch.formats.suricata.RuleContext`): a row whose check is unchanged
since its last export (most rows of most exports) is written as remembered, read by row
id, without building its rules or looking any of them up by key.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence

from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError

from commonwatch.formats import suricata
from commonwatch.storage import sids
from commonwatch.storage.db import begin_sqlite

log = logging.getLogger("commonwatch.export")


class SidStore:
    """The :class:`~commonwatch.formats.suricata.RuleStore` of one export.

    One connection, taken at the first batch and held to the end of the export (see
    :meth:`close`): taken alongside the export's snapshot before the first chunk goes
    out, it cannot fail to come from the pool in the middle of the body. Each call is a
    transaction of its own on it.
    """

    def __init__(self, connect: Callable[[], Connection]) -> None:
        self._connect = connect
        self._conn: Connection | None = None

    def _connection(self) -> Connection:
        if self._conn is None:
            self._conn = self._connect()
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def recall(self, row_ids: Sequence[int]) -> Mapping[int, tuple[int, str]]:
        """Row id -> (check, rules text) of the rows whose rules were remembered."""
        if not row_ids:
            return {}
        conn = self._connection()
        with conn.begin():
            found = sids.remembered(conn, row_ids)
        _release_pages(conn)
        return found

    def allocate(self, rows: Sequence[suricata.RuleRow]) -> list[str]:
        """The finished rules of each row, their sids and revs by rule key (new keys get
        a sid, keys whose text changed a new rev), remembered for the rows stored. One
        batch of rows per call.

        Allocating and remembering are one transaction, and one at a time across
        exports (:func:`_one_at_a_time`): a remembered rule is always at its key's rev,
        even when exports that read a member's old and new name race. Remembering is
        only an optimisation for the next export: if it fails (a deadlock with a
        concurrent writer, say), the batch is allocated again without it, and that
        export looks the rows up by key again."""
        if not rows:
            return []
        conn = self._connection()
        dbapi_error = conn.dialect.loaded_dbapi.Error
        try:
            texts = self._settle(conn, rows, remember=True)
        except (dbapi_error, DBAPIError) as exc:
            log.info("Suricata rules of %d rows not remembered (%s): the next export looks them up",
                     len(rows), type(exc).__name__)
            texts = self._settle(conn, rows, remember=False)
        _release_pages(conn)
        return texts

    @staticmethod
    def _settle(conn: Connection, rows: Sequence[suricata.RuleRow], *, remember: bool) -> list[str]:
        with conn.begin():
            _one_at_a_time(conn)
            found = by_key(conn, [(key, suricata.rule_digest(body)) for row in rows
                                  for key, body in zip(row.rule_keys(), row.bodies, strict=True)])
            texts: list[str] = []
            at = 0
            for row in rows:
                texts.append(suricata.finished(row, found[at:at + len(row.bodies)]))
                at += len(row.bodies)
            if remember:
                sids.remember(conn, [(row.row_id, row.added_us, row.check, rules_text)
                                     for row, rules_text in zip(rows, texts, strict=True) if row.row_id])
        return texts


def _one_at_a_time(conn: Connection) -> None:
    """Start the allocation's transaction holding the lock every allocation takes: on
    SQLite the write lock at once (``BEGIN IMMEDIATE``; the driver would take it only
    at the first write, after the revs were read), on PostgreSQL a transaction-level
    advisory lock. Allocation happens for new and changed rules only, so exports
    rarely wait for it."""
    if conn.dialect.name == "sqlite":
        begin_sqlite(conn, "IMMEDIATE")
    else:
        conn.exec_driver_sql("SELECT pg_advisory_xact_lock(%s)", (_ALLOCATION_LOCK,))


#: The PostgreSQL advisory lock of sid allocation (an arbitrary 64-bit key).
_ALLOCATION_LOCK = 0x5349_4453_414C_4C4F  # "SIDSALLO"


def by_key(conn: Connection, rules: Sequence[tuple[str, str]]) -> list[tuple[int, int]]:
    """(sid, rev) of each (rule key, digest of its text), allocating new keys and
    bumping the rev of those whose digest changed; straight on the driver's cursor:
    SQLAlchemy's expansion of a few thousand IN and VALUES parameters per batch cost
    more than the statements."""
    keys = [key for key, _ in rules]
    known = sids.known_sids(conn, keys)
    # New keys, then changed revs, each in one order: concurrent exports lock alike.
    fresh = sorted((k, d) for k, d in dict(rules).items() if k not in known)
    if fresh:
        sids.execute_many(conn, sids.INSERT_SIDS, fresh)
        known = sids.known_sids(conn, keys)
    changed = {known[k][0]: d for k, d in rules if known[k][2] != d}
    if changed:
        sids.execute_many(conn, sids.BUMP_SIDS, [(d, sid_id) for sid_id, d in sorted(changed.items())])
        known = sids.known_sids(conn, keys)
    return [(suricata.SID_BASE + known[k][0], known[k][1]) for k in keys]


def _release_pages(conn: Connection) -> None:
    """The pages of the sid tables a batch read or wrote stay in SQLite's page cache
    (256 MiB, storage/db.py) after its transaction: over 10^6 rules that is the whole
    table. Released after each batch, the export's memory stays flat."""
    if conn.dialect.name == "sqlite":
        with conn.begin():
            conn.exec_driver_sql("PRAGMA shrink_memory")
