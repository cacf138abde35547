"""the sids and revs of each stored row's Suricata rules, as last exported

Revision ID: 0009_suricata_row_sids
Revises: 0008_copies
Create Date: 2026-12-06 05:00:00

An export of Suricata rules looked every rule up by its key in ``suricata_sids``: one
random probe per rule. A stored row's rules read the same at every export until a name,
the warninglists or the rule code change, so their sids and revs are remembered by row,
with a digest of their texts; exports read them in row order and go by key only for
rows whose rules changed. The first export after the upgrade fills the table.
"""

import sqlalchemy as sa
from alembic import op

revision = '0009_suricata_row_sids'
down_revision = '0008_copies'
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    op.create_table(
        'suricata_row_sids',
        sa.Column('object_id', _ID, nullable=False, autoincrement=False),
        sa.Column('rules_check', sa.BigInteger(), nullable=False),
        sa.Column('sids', sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(['object_id'], ['stix_objects.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('object_id'),
    )


def downgrade() -> None:
    op.drop_table('suricata_row_sids')
