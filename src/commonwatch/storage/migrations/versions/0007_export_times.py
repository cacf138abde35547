"""export_times on stix_objects

Revision ID: 0007_export_times
Revises: 0006_export_columns
Create Date: 2026-12-06 00:10:00

Adds ``export_times`` (the ``created``, ``modified`` and ``valid_until`` texts of a
version, which CSV exports and Suricata rules print) and fills it for the versions
already stored, as ingest writes it for new ones: with it, no export format but the
STIX bundle reads the objects' JSON.
"""

import orjson
import sqlalchemy as sa
from alembic import op

revision = '0007_export_times'
down_revision = '0006_export_columns'
branch_labels = None
depends_on = None

_BATCH = 5000


def upgrade() -> None:
    # Plain ADD COLUMN (see 0006: a batch copy on SQLite would drop the table's triggers).
    op.add_column('stix_objects', sa.Column('export_times', sa.Text(), nullable=True))
    _backfill()


def _backfill() -> None:
    from commonwatch.domain.indexing import times_text

    conn = op.get_bind()
    update = sa.text("UPDATE stix_objects SET export_times = :t WHERE id = :id")
    after = 0
    while True:
        rows = conn.execute(sa.text("SELECT id, raw FROM stix_objects WHERE id > :after "
                                    "ORDER BY id LIMIT :n"), {"after": after, "n": _BATCH}).all()
        if not rows:
            return
        params = [{"id": row_id, "t": times} for row_id, raw in rows
                  if (times := times_text(orjson.loads(raw))) is not None]
        if params:
            conn.execute(update, params)
        after = rows[-1][0]


def downgrade() -> None:
    op.drop_column('stix_objects', 'export_times')
