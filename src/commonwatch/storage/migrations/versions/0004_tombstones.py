"""tombstones of deleted object versions

Revision ID: 0004_tombstones
Revises: 0003_observable_index
Create Date: 2026-11-28 19:10:00
"""

import sqlalchemy as sa
from alembic import op

revision = '0004_tombstones'
down_revision = '0003_observable_index'
branch_labels = None
depends_on = None

_BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        'tombstones',
        sa.Column('id', _BIG_ID, autoincrement=True, nullable=False),
        sa.Column('community_id', sa.Integer(), nullable=False),
        sa.Column('stix_id', sa.String(length=300), nullable=False),
        sa.Column('version_us', sa.BigInteger(), nullable=False),
        sa.Column('producer_org_id', sa.Integer(), nullable=True),
        sa.Column('tlp', sa.SmallInteger(), nullable=False),
        sa.Column('deleted_us', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_tombstones_community', 'tombstones', ['community_id', 'id'])


def downgrade() -> None:
    op.drop_table('tombstones')
