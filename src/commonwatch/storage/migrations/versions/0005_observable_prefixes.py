"""stored CIDR prefix lengths per community, for lookups

Revision ID: 0005_observable_prefixes
Revises: 0004_tombstones
Create Date: 2026-11-28 19:40:00
"""

import sqlalchemy as sa
from alembic import op

revision = '0005_observable_prefixes'
down_revision = '0004_tombstones'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'observable_prefixes',
        sa.Column('community_id', sa.Integer(), nullable=False),
        sa.Column('kind', sa.String(length=16), nullable=False),
        sa.Column('prefix_len', sa.SmallInteger(), nullable=False),
        sa.PrimaryKeyConstraint('community_id', 'kind', 'prefix_len'),
    )
    conn = op.get_bind()
    found = {
        (community, kind, int(value.rpartition("/")[2]))
        for community, kind, value in conn.execute(sa.text(
            "SELECT DISTINCT community_id, kind, value FROM observables "
            "WHERE kind IN ('ipv4-addr', 'ipv6-addr') AND value LIKE '%/%'"))
    }
    if found:
        conn.execute(sa.text("INSERT INTO observable_prefixes (community_id, kind, prefix_len) "
                             "VALUES (:c, :k, :p)"),
                     [{"c": c, "k": k, "p": p} for c, k, p in sorted(found)])


def downgrade() -> None:
    op.drop_table('observable_prefixes')
