"""feed states remember the last Last-Modified handed out, and whether its second is shared

Revision ID: 0010_feed_reservations
Revises: 0009_suricata_row_sids
Create Date: 2026-12-06 07:00:00

Two renders of one feed could start within one second around a write and answer the
same Last-Modified for different bodies; a client holding the older one was then told
"304 Not Modified" on ``If-Modified-Since``. Each render now reserves its Last-Modified
in one statement (``reserved_us``, strictly increasing per feed and user), and a
content generation whose second another render also used is marked ``shared``: it is
answered without Last-Modified, so a date can never stand for two bodies.
"""

import sqlalchemy as sa
from alembic import op

revision = '0010_feed_reservations'
down_revision = '0009_suricata_row_sids'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('feed_states', sa.Column('reserved_us', sa.BigInteger(), nullable=True))
    op.add_column('feed_states', sa.Column('shared', sa.Boolean(), server_default=sa.false(), nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('feed_states') as batch:
        batch.drop_column('shared')
        batch.drop_column('reserved_us')
