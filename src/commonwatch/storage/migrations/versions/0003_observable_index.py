"""observable and reference indexes

Revision ID: 0003_observable_index
Revises: 0002_feeds
Create Date: 2026-11-28 18:40:00

Creates ``observables`` and ``object_refs`` and fills them from the versions already
stored, with the same extraction ingest uses for new ones.
"""

from typing import Any

import orjson
import sqlalchemy as sa
from alembic import op

revision = '0003_observable_index'
down_revision = '0002_feeds'
branch_labels = None
depends_on = None

_BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        'observables',
        sa.Column('id', _BIG_ID, autoincrement=True, nullable=False),
        sa.Column('object_id', _BIG_ID, nullable=False),
        sa.Column('community_id', sa.Integer(), nullable=False),
        sa.Column('kind', sa.String(length=16), nullable=False),
        sa.Column('value', sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(['object_id'], ['stix_objects.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_observables_value', 'observables', ['kind', 'value', 'community_id'])
    op.create_index('ix_observables_object', 'observables', ['object_id'])
    op.create_table(
        'object_refs',
        sa.Column('id', _BIG_ID, autoincrement=True, nullable=False),
        sa.Column('object_id', _BIG_ID, nullable=False),
        sa.Column('community_id', sa.Integer(), nullable=False),
        sa.Column('relation', sa.String(length=16), nullable=False),
        sa.Column('target_id', sa.String(length=300), nullable=False),
        sa.ForeignKeyConstraint(['object_id'], ['stix_objects.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_object_refs_target', 'object_refs', ['community_id', 'target_id', 'relation'])
    op.create_index('ix_object_refs_object', 'object_refs', ['object_id'])
    _backfill()


def _backfill() -> None:
    from commonwatch.domain.indexing import index_entries

    conn = op.get_bind()
    observables: list[dict[str, Any]] = []
    refs: list[dict[str, Any]] = []
    rows = conn.execute(sa.text("SELECT id, community_id, raw FROM stix_objects ORDER BY id"))
    for row_id, community_id, raw in rows:
        found, related = index_entries(orjson.loads(raw))
        observables += [{"o": row_id, "c": community_id, "k": k, "v": v} for k, v in found]
        refs += [{"o": row_id, "c": community_id, "r": r, "t": t} for r, t in related]
    if observables:
        conn.execute(sa.text("INSERT INTO observables (object_id, community_id, kind, value) "
                             "VALUES (:o, :c, :k, :v)"), observables)
    if refs:
        conn.execute(sa.text("INSERT INTO object_refs (object_id, community_id, relation, target_id) "
                             "VALUES (:o, :c, :r, :t)"), refs)


def downgrade() -> None:
    op.drop_table('object_refs')
    op.drop_table('observables')
