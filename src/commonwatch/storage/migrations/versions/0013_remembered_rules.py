"""the Suricata rules of each stored row are remembered whole, not only their sids

Revision ID: 0013_remembered_rules
Revises: 0012_tlp_ids_any_case
Create Date: 2026-12-06 12:30:00

An export of Suricata rules remembered the sids and revs of each stored row's rules,
but still built every rule's text again. While a row's check is unchanged its rules
read as they did, so the rules themselves are remembered and written as they are. The
table is a cache of what the sid table and the rows already say: it is emptied, and the
first export after the upgrade fills it again (each rule looked up by key, its sid and
rev unchanged).
"""

import sqlalchemy as sa
from alembic import op

revision = '0013_remembered_rules'
down_revision = '0012_tlp_ids_any_case'
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def _table(column: str) -> None:
    op.drop_table('suricata_row_sids')
    op.create_table(
        'suricata_row_sids',
        sa.Column('object_id', _ID, nullable=False, autoincrement=False),
        sa.Column('rules_check', sa.BigInteger(), nullable=False),
        sa.Column(column, sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(['object_id'], ['stix_objects.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('object_id'),
    )


def upgrade() -> None:
    _table('rules')


def downgrade() -> None:
    _table('sids')
