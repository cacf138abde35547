"""Bulk reads and writes of ``stix_objects`` for the ingest path.

Repository functions take a connection inside the caller's transaction and never
commit. The id lookup binds the whole id list as one parameter (a JSON array on
SQLite, an array on PostgreSQL), so a 5,000-object envelope costs one statement
instead of ten IN-lists that would each be compiled anew.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import Connection, bindparam, delete, insert, or_, select, text, update

from commonwatch.errors import AuthenticationRequired, NotFound
from commonwatch.storage.index import insert_missing
from commonwatch.storage.models import (
    Base,
    Community,
    ObjectRecipient,
    Organisation,
    StixObject,
    WarninglistStamp,
)


@dataclass(slots=True)
class Stored:
    """One stored version of an id, as ingest weighs a new posting of that id."""

    version_us: int
    producer: int | None
    content_hash: str
    tlp: int
    revoked: bool
    row_id: int = 0  # 0: stored earlier in the same envelope (no row yet)
    #: Whether the poster can see it (ingest decides; only visible versions count).
    seen: bool = True
    #: Its ``created_by_ref``, where ingest needs it.
    creator: str | None = None


_SELECTED = ("SELECT o.stix_id, o.version_us, o.producer_org_id, o.content_hash, o.date_added_us, "
             "o.tlp, o.revoked, o.id ")
# Driven from the id list, so each id is one probe of the (community, stix_id, version)
# index; no ORDER BY, which would tempt the planner into walking the date_added index
# across the whole collection. Rows are put in date_added order in Python.
_EXISTING = {
    "sqlite": text(
        _SELECTED + "FROM json_each(:ids) AS j CROSS JOIN stix_objects AS o "
        "ON o.community_id = :community AND o.stix_id = j.value"
    ),
    "postgresql": text(
        _SELECTED + "FROM unnest(CAST(:ids AS text[])) AS j(value) "
        "JOIN stix_objects AS o ON o.community_id = :community AND o.stix_id = j.value"
    ),
}


def lock_community(conn: Connection, community_id: int) -> int:
    """Take the community's write lock; returns its last date_added.

    The no-op UPDATE takes SQLite's write lock and PostgreSQL's row lock at once, so
    concurrent writers to one community queue here and commit in date_added order.
    """
    conn.execute(update(Community).where(Community.id == community_id)
                 .values(last_added_us=Community.last_added_us))
    last = conn.scalar(select(Community.last_added_us).where(Community.id == community_id))
    if last is None:  # deleted since the caller looked it up
        raise NotFound("this collection no longer exists")
    return int(last)


def hold_communities(conn: Connection, keys: Sequence[str]) -> None:
    """Hold the communities named by ``keys`` (names or collection ids) until the
    transaction ends, as its first statement (SQLite: the write lock; PostgreSQL: their
    rows): a concurrent rename or delete of one commits before or after, never between."""
    if keys:
        conn.execute(update(Community).where(or_(Community.name.in_(keys), Community.collection_id.in_(keys)))
                     .values(name=Community.name))


def lock_producer(conn: Connection, org_id: int) -> None:
    """Hold the producing organisation until the transaction ends (PostgreSQL: a key
    share lock, which its deletion waits for; SQLite: the caller holds the write lock
    already), or refuse if it was deleted since its credentials were checked."""
    found = conn.scalar(select(Organisation.id).where(Organisation.id == org_id)
                        .with_for_update(read=True, key_share=True))
    if found is None:
        raise AuthenticationRequired("your organisation no longer exists on this exchange")


def set_last_added(conn: Connection, community_id: int, last_added_us: int) -> None:
    conn.execute(update(Community).where(Community.id == community_id)
                 .values(last_added_us=last_added_us))


def existing_versions(
    conn: Connection, community_id: int, ids: Iterable[str]
) -> dict[str, list[Stored]]:
    """Every stored version of ``ids`` (whoever holds it), in date_added order."""
    id_list = list(ids)
    if not id_list:
        return {}
    dialect = conn.dialect.name
    bound: Any = orjson.dumps(id_list).decode() if dialect == "sqlite" else id_list
    rows = conn.execute(_EXISTING[dialect], {"community": community_id, "ids": bound}).all()
    known: dict[str, list[Stored]] = {}
    for sid, version, producer, digest, _, tlp, revoked, row_id in sorted(rows, key=lambda r: r[4]):
        known.setdefault(sid, []).append(Stored(version, producer, digest, tlp, bool(revoked), row_id))
    return known


def recipients_of(conn: Connection, row_ids: Collection[int]) -> dict[int, set[str]]:
    """The TLP:RED recipient identities of the given rows."""
    found: dict[int, set[str]] = {row_id: set() for row_id in row_ids}
    if row_ids:
        r = ObjectRecipient.__table__.c
        for row_id, identity in conn.execute(select(r.object_id, r.identity_id)
                                             .where(r.object_id.in_(list(row_ids)))):
            found[row_id].add(identity)
    return found


def creators_of(conn: Connection, row_ids: Collection[int]) -> dict[int, str | None]:
    """The ``created_by_ref`` of the given rows (read from their JSON)."""
    if not row_ids:
        return {}
    t = StixObject.__table__.c
    found: dict[int, str | None] = {}
    for row_id, raw in conn.execute(select(t.id, t.raw).where(t.id.in_(list(row_ids)))):
        creator = orjson.loads(raw).get("created_by_ref")
        found[row_id] = creator if isinstance(creator, str) else None
    return found


def mark_co_held(conn: Connection, community_id: int, versions: Sequence[tuple[str, int]]) -> None:
    """Set ``co_held`` on the stored rows of the given (stix_id, version_us)."""
    _set_on_versions(conn, community_id, versions, co_held=True)


def _set_on_versions(
    conn: Connection, community_id: int, versions: Sequence[tuple[str, int]], **values: Any
) -> None:
    """Set ``values`` on every row of the given (stix_id, version_us), whoever holds it."""
    if versions:
        t = StixObject.__table__.c
        conn.execute(
            update(StixObject)
            .where(t.community_id == community_id, t.stix_id == bindparam("sid"),
                   t.version_us == bindparam("ver"))
            .values(**values),
            [{"sid": sid, "ver": ver} for sid, ver in versions],
        )


COLUMNS = ("community_id", "stix_id", "type", "spec_version", "version_us", "date_added_us",
           "producer_org_id", "tlp", "is_latest", "content_hash", "raw",
           # domain.indexing.ExportFacts, in its order
           "export_values", "export_skip", "revoked", "valid_until_us", "confidence",
           "export_name", "export_labels", "export_times",
           "export_listed", "listed_stamp", "co_held")
_INSERT_SQLITE = (
    f"INSERT INTO stix_objects ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"
)
_COPY_PG = f"COPY stix_objects ({', '.join(COLUMNS)}) FROM STDIN"


def insert_objects(conn: Connection, rows: Sequence[Sequence[Any]]) -> None:
    """Insert rows (tuples in :data:`COLUMNS` order) the fastest way each driver has.

    SQLite: one ``executemany`` of a prepared statement. PostgreSQL: ``COPY``, which
    psycopg streams in binary-safe text format. Both are parameterised: values never
    become SQL text.
    """
    if not rows:
        return
    driver = conn.connection.driver_connection
    if conn.dialect.name == "sqlite":
        cursor = driver.cursor()  # type: ignore[union-attr]
        try:
            cursor.executemany(_INSERT_SQLITE, rows)
        finally:
            cursor.close()
        return
    with driver.cursor() as cursor, cursor.copy(_COPY_PG) as copy:  # type: ignore[union-attr]
        for row in rows:
            copy.write_row(row)


def warninglist_stamp(conn: Connection, digest: str, *, create: bool) -> int | None:
    """The stamp id of a warninglists digest; with ``create``, made if missing."""
    if create:
        insert_missing(conn, "warninglist_stamps", ("digest",), [{"digest": digest}])
    return conn.scalar(select(WarninglistStamp.id).where(WarninglistStamp.digest == digest))


def unstamped(conn: Connection, stamp: int, after: int, limit: int) -> list[tuple[int, str]]:
    """(row id, export_values) of versions with values whose warninglist verdicts were
    stored under another stamp (or none), after row ``after``, in row order."""
    t = StixObject.__table__.c
    return [(rid, values) for rid, values in conn.execute(
        select(t.id, t.export_values)
        .where(t.id > after, t.export_values.is_not(None),
               or_(t.listed_stamp.is_(None), t.listed_stamp != stamp))
        .order_by(t.id).limit(limit))]


def set_verdicts(conn: Connection, verdicts: Sequence[tuple[int, str | None, int]]) -> None:
    """Store (row id, export_listed, listed_stamp) on the given versions."""
    if verdicts:
        conn.execute(
            update(StixObject).where(StixObject.__table__.c.id == bindparam("rid"))
            .values(export_listed=bindparam("listed"), listed_stamp=bindparam("stamp")),
            [{"rid": rid, "listed": listed, "stamp": stamp} for rid, listed, stamp in verdicts],
        )


def clear_latest(conn: Connection, community_id: int, versions: Sequence[tuple[str, int]]) -> None:
    """Unset ``is_latest`` on the given (stix_id, version_us) rows superseded by new ones."""
    _set_on_versions(conn, community_id, versions, is_latest=False)


def refresh_latest(conn: Connection, community_id: int, stix_id: str) -> None:
    """Mark the newest remaining version of ``stix_id`` as latest (after a delete)."""
    t = StixObject.__table__.c
    newest = conn.execute(
        select(t.id).where(t.community_id == community_id, t.stix_id == stix_id)
        .order_by(t.version_us.desc()).limit(1)
    ).scalar()
    if newest is not None:
        conn.execute(update(StixObject).where(t.id == newest).values(is_latest=True))


def delete_rows(conn: Connection, row_ids: Sequence[int]) -> int:
    """Delete object versions by row id (their recipient rows go by cascade)."""
    t = StixObject.__table__.c
    done = conn.execute(delete(StixObject).where(t.id.in_(list(row_ids))))
    return int(done.rowcount)


def copies_of(conn: Connection, community_id: int, stix_id: str, versions: Collection[int]) -> list[int]:
    """Row ids of the copies of ``stix_id`` at ``versions`` left in the community."""
    t = StixObject.__table__.c
    return sorted(conn.scalars(select(t.id).where(
        t.community_id == community_id, t.stix_id == stix_id, t.version_us.in_(list(versions)))))


def redate(conn: Connection, rows: Sequence[tuple[int, int]]) -> None:
    """Give rows (row id, new date_added) a new date_added."""
    t = StixObject.__table__.c
    conn.execute(update(StixObject).where(t.id == bindparam("row")).values(date_added_us=bindparam("added")),
                 [{"row": row, "added": added} for row, added in rows])


def refresh_statistics(conn: Connection) -> None:
    """Let the planner see the table as it is now (SQLite ANALYZE, sampled; PostgreSQL
    ANALYZE). Without statistics both planners can walk a whole community for a page or
    an id lookup right after a bulk load."""
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql("PRAGMA analysis_limit=2000")
    conn.exec_driver_sql("ANALYZE stix_objects")


def insert_recipients(
    conn: Connection, community_id: int, red: Sequence[tuple[int, frozenset[str]]]
) -> None:
    """Recipient lists of TLP:RED rows, keyed by the rows' (unique) date_added."""
    if not red:
        return
    ids = {added: oid for added, oid in conn.execute(
        select(StixObject.date_added_us, StixObject.id).where(
            StixObject.community_id == community_id,
            StixObject.date_added_us.in_([added for added, _ in red]),
        )
    )}
    conn.execute(insert(ObjectRecipient.__table__), [  # type: ignore[arg-type]
        {"object_id": ids[added], "identity_id": identity}
        for added, identities in red for identity in sorted(identities)
    ])


def purge_community(conn: Connection, community_id: int) -> None:
    """Delete every row kept for a community, in every table that has a
    ``community_id`` (objects, index entries, tombstones, counters, statuses...), then the
    community. SQLite may give a later community the same id: nothing of this one may be
    found under it."""
    from commonwatch.storage import tombstones  # noqa: F401  (its tables join the metadata)

    for table in reversed(Base.metadata.sorted_tables):
        if "community_id" in table.c:
            conn.execute(delete(table).where(table.c.community_id == community_id))
    conn.execute(delete(Community).where(Community.id == community_id))
