"""several organisations may hold one (id, version): copies on stix_objects

Revision ID: 0008_copies
Revises: 0007_export_times
Create Date: 2026-12-06 02:40:00

Also: tombstones of TLP:RED versions keep their recipient lists
(``tombstone_recipients``), so the named recipients see the deletion too; an index of
tombstones by version; and the counter of deletes (``object_deletions`` and its
trigger, 0002) goes: feeds' validators read the tombstones the caller can see instead.

The unique key of a version becomes (community, id, version, producer): two members
who import the same public source (MITRE ATT&CK, a MISP feed) each hold their own copy
of its objects, and neither learns from a refusal that the other has them. Adds
``co_held``, set on every row of an (id, version) that more than one organisation
holds: only those rows pay for the read-time choice of one copy.

SQLite cannot drop a constraint, so the table is rebuilt from its own CREATE statement
with the key widened (SQLite's documented procedure: new table, copy, drop, rename,
indexes and triggers again, if any); the rows keep their ids. The migration environment turns
foreign keys off around it (dropping the old table must not cascade), checks them
afterwards, and then VACUUMs the file (the old table's pages would stay as free space).
"""

import re

import sqlalchemy as sa
from alembic import op

revision = '0008_copies'
down_revision = '0007_export_times'
branch_labels = None
depends_on = None

_KEY = "CONSTRAINT uq_objects_version UNIQUE (community_id, stix_id, version_us)"
_WIDE_KEY = "CONSTRAINT uq_objects_version UNIQUE (community_id, stix_id, version_us, producer_org_id)"


_SQLITE_TRIGGER = """
CREATE TRIGGER trg_stix_objects_deleted AFTER DELETE ON stix_objects
BEGIN
    INSERT INTO object_deletions (community_id, deletes) VALUES (OLD.community_id, 1)
    ON CONFLICT (community_id) DO UPDATE SET deletes = object_deletions.deletes + 1;
END
"""
_PG_FUNCTION = """
CREATE FUNCTION count_object_deletion() RETURNS trigger AS $$
BEGIN
    INSERT INTO object_deletions (community_id, deletes) VALUES (OLD.community_id, 1)
    ON CONFLICT (community_id) DO UPDATE SET deletes = object_deletions.deletes + 1;
    RETURN NULL;
END
$$ LANGUAGE plpgsql
"""
_PG_TRIGGER = """
CREATE TRIGGER trg_stix_objects_deleted AFTER DELETE ON stix_objects
FOR EACH ROW EXECUTE FUNCTION count_object_deletion()
"""


def upgrade() -> None:
    # Feeds' validators read the tombstones a caller can see now; the counter of every
    # delete (0002), which moved them on deletes the caller could not see, goes.
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS trg_stix_objects_deleted ON stix_objects")
        op.execute("DROP FUNCTION IF EXISTS count_object_deletion()")
    else:
        op.execute("DROP TRIGGER IF EXISTS trg_stix_objects_deleted")
    op.drop_table('object_deletions')
    # The tombstones of one version's copies (a deletions listing shows the last one).
    op.create_index('ix_tombstones_version', 'tombstones', ['community_id', 'stix_id', 'version_us'])
    # A TLP:RED tombstone keeps the deleted version's recipients: they learn it is gone.
    op.create_table(
        'tombstone_recipients',
        sa.Column('tombstone_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
        sa.Column('identity_id', sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(['tombstone_id'], ['tombstones.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('tombstone_id', 'identity_id'),
    )
    op.add_column('stix_objects', sa.Column('co_held', sa.Boolean(), server_default=sa.false(),
                                            nullable=False))
    if op.get_bind().dialect.name == "sqlite":
        _rebuild_sqlite(_KEY, _WIDE_KEY)
    else:
        op.drop_constraint('uq_objects_version', 'stix_objects', type_='unique')
        op.create_unique_constraint('uq_objects_version', 'stix_objects',
                                    ['community_id', 'stix_id', 'version_us', 'producer_org_id'])


def downgrade() -> None:
    # Fails (unique violation) while several organisations hold one version: that data
    # cannot be represented under the narrower key.
    if op.get_bind().dialect.name == "sqlite":
        _rebuild_sqlite(_WIDE_KEY, _KEY)
    else:
        op.drop_constraint('uq_objects_version', 'stix_objects', type_='unique')
        op.create_unique_constraint('uq_objects_version', 'stix_objects',
                                    ['community_id', 'stix_id', 'version_us'])
    op.execute("ALTER TABLE stix_objects DROP COLUMN co_held")
    op.drop_index('ix_tombstones_version', 'tombstones')
    op.drop_table('tombstone_recipients')
    op.create_table('object_deletions',
                    sa.Column('community_id', sa.Integer(), autoincrement=False, nullable=False),
                    sa.Column('deletes', sa.BigInteger(), nullable=False),
                    sa.PrimaryKeyConstraint('community_id'))
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_PG_FUNCTION)
        op.execute(_PG_TRIGGER)
    else:
        op.execute(_SQLITE_TRIGGER)


def _rebuild_sqlite(old_key: str, new_key: str) -> None:
    conn = op.get_bind()
    if conn.exec_driver_sql("PRAGMA foreign_keys").scalar():
        raise RuntimeError("the stix_objects rebuild needs foreign keys off (migrations/env.py)")
    schema = conn.exec_driver_sql(
        "SELECT type, name, sql FROM sqlite_master WHERE tbl_name = 'stix_objects' AND sql IS NOT NULL"
    ).all()
    table = next(sql for kind, _, sql in schema if kind == "table")
    if old_key not in table:
        raise RuntimeError(f"stix_objects has an unexpected schema; expected {old_key}")
    others = [sql for kind, _, sql in schema if kind in ("index", "trigger")]
    conn.exec_driver_sql("DROP TABLE IF EXISTS stix_objects_rebuilt")
    # (after a rename SQLite stores the name quoted)
    create = re.sub(r'^CREATE TABLE "?stix_objects"?', "CREATE TABLE stix_objects_rebuilt", table, count=1)
    conn.exec_driver_sql(create.replace(old_key, new_key))
    conn.exec_driver_sql("INSERT INTO stix_objects_rebuilt SELECT * FROM stix_objects")
    conn.exec_driver_sql("DROP TABLE stix_objects")
    conn.exec_driver_sql("ALTER TABLE stix_objects_rebuilt RENAME TO stix_objects")
    for sql in others:
        conn.exec_driver_sql(sql)
    config = op.get_context().config
    if config is not None:
        config.attributes["vacuum"] = True  # see migrations/env.py
