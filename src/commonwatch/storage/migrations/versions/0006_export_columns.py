"""export columns on stix_objects

Revision ID: 0006_export_columns
Revises: 0005_observable_prefixes
Create Date: 2026-12-05 18:30:00

Adds the columns exports filter and output on (``export_values``, ``export_skip``,
``revoked``, ``valid_until_us``, ``confidence``, ``export_name``, ``export_labels``) and
fills them for the versions already stored, with the same extraction ingest uses for
new ones; and the stored warninglist verdicts (``export_listed``, ``listed_stamp``,
``warninglist_stamps``), which stay empty for those versions: exports check their values
against the lists as before (``commonwatch db restamp-warninglists`` stores them).
"""

import orjson
import sqlalchemy as sa
from alembic import op

revision = '0006_export_columns'
down_revision = '0005_observable_prefixes'
branch_labels = None
depends_on = None

_BATCH = 5000


def upgrade() -> None:
    # Plain ADD COLUMN on both dialects: a batch (copy-and-rename) on SQLite would drop
    # the table's triggers (0002's deletion counter).
    op.add_column('stix_objects', sa.Column('export_values', sa.Text(), nullable=True))
    op.add_column('stix_objects', sa.Column('export_skip', sa.SmallInteger(), nullable=True))
    op.add_column('stix_objects', sa.Column('revoked', sa.Boolean(), server_default=sa.false(),
                                            nullable=False))
    op.add_column('stix_objects', sa.Column('valid_until_us', sa.BigInteger(), nullable=True))
    op.add_column('stix_objects', sa.Column('confidence', sa.SmallInteger(), nullable=True))
    op.add_column('stix_objects', sa.Column('export_name', sa.Text(), nullable=True))
    op.add_column('stix_objects', sa.Column('export_labels', sa.Text(), nullable=True))
    # Warninglist verdicts: left empty here (exports check such rows themselves).
    op.add_column('stix_objects', sa.Column('export_listed', sa.Text(), nullable=True))
    op.add_column('stix_objects', sa.Column('listed_stamp', sa.Integer(), nullable=True))
    op.create_table(
        'warninglist_stamps',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('digest', sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('digest'),
    )
    _backfill()


def _backfill() -> None:
    from commonwatch.domain.indexing import indexed

    conn = op.get_bind()
    update = sa.text(
        "UPDATE stix_objects SET export_values = :v, export_skip = :s, revoked = :r, "
        "valid_until_us = :u, confidence = :c, export_name = :n, export_labels = :l WHERE id = :id")
    after = 0
    while True:
        rows = conn.execute(sa.text("SELECT id, raw FROM stix_objects WHERE id > :after "
                                    "ORDER BY id LIMIT :n"), {"after": after, "n": _BATCH}).all()
        if not rows:
            return
        params = []
        for row_id, raw in rows:
            facts = indexed(orjson.loads(raw)).facts
            params.append({"id": row_id, "v": facts.values, "s": facts.skip, "r": facts.revoked,
                           "u": facts.valid_until_us, "c": facts.confidence, "n": facts.name,
                           "l": facts.labels})
        conn.execute(update, params)
        after = rows[-1][0]


def downgrade() -> None:
    op.drop_table('warninglist_stamps')
    for column in ('listed_stamp', 'export_listed', 'export_labels', 'export_name', 'confidence',
                   'valid_until_us', 'revoked', 'export_skip', 'export_values'):
        op.drop_column('stix_objects', column)
