"""The observable and reference indexes: what each stored object version states.

``observables``: (kind, normalised value) -> object version, for SCOs and for
indicators whose pattern matches by the presence of one value
(:mod:`commonwatch.domain.observables`). ``object_refs``: which object a sighting
sights or an opinion is about. Both are written by ingest in the same transaction as
the versions they describe and disappear with them (foreign keys, ``ON DELETE
CASCADE``). They are only ever read joined to ``stix_objects`` under the visibility
rule (services/statements.py); a row of either table alone reveals nothing to anyone.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import (
    Column,
    Connection,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    Table,
    Text,
    select,
    text,
)

from commonwatch.storage.models import Base, BigId, StixObject

OBSERVABLES = Table(
    "observables", Base.metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("object_id", BigId, ForeignKey("stix_objects.id", ondelete="CASCADE"), nullable=False),
    Column("community_id", Integer, nullable=False),
    Column("kind", String(16), nullable=False),
    Column("value", Text, nullable=False),
    Index("ix_observables_value", "kind", "value", "community_id"),
    Index("ix_observables_object", "object_id"),
)

OBJECT_REFS = Table(
    "object_refs", Base.metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("object_id", BigId, ForeignKey("stix_objects.id", ondelete="CASCADE"), nullable=False),
    Column("community_id", Integer, nullable=False),
    Column("relation", String(16), nullable=False),  # domain.indexing.SIGHTING_OF, ...
    Column("target_id", String(300), nullable=False),
    Index("ix_object_refs_target", "community_id", "target_id", "relation"),
    Index("ix_object_refs_object", "object_id"),
)

#: Which CIDR prefix lengths are stored, per community and kind: lookups probe the
#: containing networks of an address only at these lengths. Rows are never removed
#: (a length no longer stored costs one empty probe, nothing more).
OBSERVABLE_PREFIXES = Table(
    "observable_prefixes", Base.metadata,
    Column("community_id", Integer, primary_key=True),
    Column("kind", String(16), primary_key=True),
    Column("prefix_len", SmallInteger, primary_key=True),
)

#: Index entries of one new row, keyed by the row's date_added (unique per community).
Entries = tuple[int, Sequence[tuple[str, str]]]


def row_ids(conn: Connection, community_id: int, first_added: int, last_added: int) -> dict[int, int]:
    """date_added -> row id of the community's rows added in [first, last]."""
    t = StixObject.__table__.c
    return {added: rid for added, rid in conn.execute(
        select(t.date_added_us, t.id).where(
            t.community_id == community_id, t.date_added_us.between(first_added, last_added))
    )}


_ADDRESS_KINDS = ("ipv4-addr", "ipv6-addr")
_INSERT = {
    "observables": "INSERT INTO observables (object_id, community_id, kind, value) VALUES ",
    "object_refs": "INSERT INTO object_refs (object_id, community_id, relation, target_id) VALUES ",
}
_COPY = {
    "observables": "COPY observables (object_id, community_id, kind, value) FROM STDIN",
    "object_refs": "COPY object_refs (object_id, community_id, relation, target_id) FROM STDIN",
}


def insert_entries(
    conn: Connection, community_id: int, ids: dict[int, int],
    observables: Sequence[Entries], refs: Sequence[Entries],
) -> None:
    """Insert the index entries of new rows (``ids`` from :func:`row_ids`).

    Straight to the driver with positional rows (SQLite: ``executemany``; PostgreSQL:
    ``COPY``): building a parameter dict per entry through SQLAlchemy costs more than
    the insert itself. Parameterised either way: values never become SQL text.
    """
    prefixes = {(kind, int(value.rpartition("/")[2])) for _, pairs in observables
                for kind, value in pairs if "/" in value and kind in _ADDRESS_KINDS}
    if prefixes:
        record_prefixes(conn, community_id, prefixes)
    driver = conn.connection.driver_connection
    for table, entries in (("observables", observables), ("object_refs", refs)):
        rows = [(ids[added], community_id, a, b) for added, pairs in entries for a, b in pairs]
        if not rows:
            continue
        if conn.dialect.name != "sqlite":  # PostgreSQL: COPY, as for the object rows
            with driver.cursor() as cursor, cursor.copy(_COPY[table]) as copy:  # type: ignore[union-attr]
                for row in rows:
                    copy.write_row(row)
            continue
        cursor = driver.cursor()  # type: ignore[union-attr]
        try:
            cursor.executemany(_INSERT[table] + "(?, ?, ?, ?)", rows)
        finally:
            cursor.close()


def record_prefixes(conn: Connection, community_id: int, prefixes: set[tuple[str, int]]) -> None:
    """Note CIDR prefix lengths stored in a community (existing ones are kept)."""
    insert_missing(conn, "observable_prefixes", ("community_id", "kind", "prefix_len"),
                   [{"community_id": community_id, "kind": k, "prefix_len": p} for k, p in sorted(prefixes)])


def insert_missing(
    conn: Connection, table: str, columns: Sequence[str], rows: list[dict[str, object]]
) -> None:
    """Insert ``rows`` into ``table``, skipping those a unique key already holds (both
    dialects; the values are bound parameters)."""
    sqlite = conn.dialect.name == "sqlite"
    conn.execute(text(
        f"{'INSERT OR IGNORE INTO' if sqlite else 'INSERT INTO'} {table} ({', '.join(columns)}) "
        f"VALUES ({', '.join(':' + c for c in columns)}){'' if sqlite else ' ON CONFLICT DO NOTHING'}"), rows)


def stored_prefixes(conn: Connection, community_ids: list[int]) -> dict[str, set[int]]:
    """kind -> CIDR prefix lengths stored in any of ``community_ids``."""
    found: dict[str, set[int]] = {}
    if community_ids:
        t = OBSERVABLE_PREFIXES.c
        for kind, length in conn.execute(select(t.kind, t.prefix_len).where(
                t.community_id.in_(community_ids))):
            found.setdefault(kind, set()).add(length)
    return found
