"""Tombstones: what was deleted, when, and under which marking.

TAXII DELETE removes object versions; a tombstone keeps the fact (community, id,
version, producer, TLP, time of deletion) so deletions can propagate to exports and to
federated peers that copied the object. A tombstone is read only through the query
service, under the visibility rule the deleted version had (TLP:RED tombstones keep
the version's recipient list for that).
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    Table,
    text,
)

from commonwatch.storage.models import Base, BigId

TOMBSTONES = Table(
    "tombstones", Base.metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("community_id", Integer, nullable=False),
    Column("stix_id", String(300), nullable=False),
    Column("version_us", BigInteger, nullable=False),
    Column("producer_org_id", Integer, nullable=True),
    Column("tlp", SmallInteger, nullable=False),
    Column("deleted_us", BigInteger, nullable=False),
    Index("ix_tombstones_community", "community_id", "id"),
    Index("ix_tombstones_version", "community_id", "stix_id", "version_us"),
)

#: The named recipients of a TLP:RED tombstone: those of the deleted version, so the
#: organisations that could see it learn that it is gone.
TOMBSTONE_RECIPIENTS = Table(
    "tombstone_recipients", Base.metadata,
    Column("tombstone_id", BigId, ForeignKey("tombstones.id", ondelete="CASCADE"), primary_key=True),
    Column("identity_id", String(64), primary_key=True),
)

_BURY = text(
    "INSERT INTO tombstones (community_id, stix_id, version_us, producer_org_id, tlp, deleted_us) "
    "SELECT community_id, stix_id, version_us, producer_org_id, tlp, :now FROM stix_objects "
    "WHERE id = :row RETURNING id"
)
_BURY_RECIPIENTS = text(
    "INSERT INTO tombstone_recipients (tombstone_id, identity_id) "
    "SELECT :tombstone, identity_id FROM object_recipients WHERE object_id = :row"
)


def bury(conn: Connection, row_ids: Sequence[int], now_us: int) -> None:
    """Record tombstones for the object versions ``row_ids`` (before deleting them),
    with the recipient lists of the TLP:RED ones."""
    for row in row_ids:
        tombstone = conn.execute(_BURY, {"row": row, "now": now_us}).scalar_one()
        conn.execute(_BURY_RECIPIENTS, {"tombstone": tombstone, "row": row})
