"""feeds, feed states, Suricata sids, deletion counters

Revision ID: 0002_feeds
Revises: 0001
Create Date: 2026-11-28 18:10:00

``object_deletions`` is kept by a trigger on ``stix_objects`` so that any delete, by
any code path, changes the ETag of the feeds that read the community.
"""

import sqlalchemy as sa
from alembic import op

revision = '0002_feeds'
down_revision = '0001'
branch_labels = None
depends_on = None

_BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

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
    op.create_table('feeds',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('org_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('format', sa.String(length=40), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('filter_json', sa.Text(), nullable=False),
    sa.Column('created_us', sa.BigInteger(), nullable=False),
    sa.Column('updated_us', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['org_id'], ['organisations.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('org_id', 'name', name='uq_feeds_org_name')
    )
    op.create_table('feed_states',
    sa.Column('feed_id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('base', sa.String(length=64), nullable=False),
    sa.Column('anchor_us', sa.BigInteger(), nullable=False),
    sa.Column('next_change_us', sa.BigInteger(), nullable=True),
    sa.ForeignKeyConstraint(['feed_id'], ['feeds.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('feed_id', 'user_id')
    )
    op.create_table('object_deletions',
    sa.Column('community_id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('deletes', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('community_id')
    )
    op.create_table('suricata_sids',
    sa.Column('id', _BIG_ID, autoincrement=True, nullable=False),
    sa.Column('rule_key', sa.String(length=64), nullable=False),
    sa.Column('rev', sa.Integer(), nullable=False),
    sa.Column('digest', sa.String(length=32), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('rule_key')
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_PG_FUNCTION)
        op.execute(_PG_TRIGGER)
    else:
        op.execute(_SQLITE_TRIGGER)


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS trg_stix_objects_deleted" + (
        " ON stix_objects" if op.get_bind().dialect.name == "postgresql" else ""))
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS count_object_deletion()")
    op.drop_table('suricata_sids')
    op.drop_table('object_deletions')
    op.drop_table('feed_states')
    op.drop_table('feeds')
