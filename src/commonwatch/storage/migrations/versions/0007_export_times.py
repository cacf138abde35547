"""export_times on stix_objects

Revision ID: 0007_export_times
Revises: 0006_export_columns
Create Date: 2026-12-06 00:10:00

Adds ``export_times`` (the ``created``, ``modified`` and ``valid_until`` texts of a
version, which CSV exports and Suricata rules print) and fills it for the versions
already stored, as ingest writes it for new ones: with it, no export format but the
STIX bundle reads the objects' JSON. Also recomputes ``revoked``, ``valid_until_us``
and ``confidence`` where they differ from what ingest writes now (an SCO's custom
properties of those names no longer count; only indicators expire).
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
    from commonwatch.domain.indexing import lifecycle_facts, times_text

    conn = op.get_bind()
    set_times = sa.text("UPDATE stix_objects SET export_times = :t WHERE id = :id")
    set_facts = sa.text("UPDATE stix_objects SET revoked = :r, valid_until_us = :u, confidence = :c "
                        "WHERE id = :id")
    after = 0
    while True:
        rows = conn.execute(sa.text(
            "SELECT id, raw, revoked, valid_until_us, confidence FROM stix_objects WHERE id > :after "
            "ORDER BY id LIMIT :n"), {"after": after, "n": _BATCH}).all()
        if not rows:
            return
        times, facts = [], []
        for row_id, raw, *stored in rows:
            obj = orjson.loads(raw)
            text = times_text(obj)
            if text is not None:
                times.append({"id": row_id, "t": text})
            found = lifecycle_facts(obj)
            if tuple(found) != (bool(stored[0]), *stored[1:]):
                facts.append({"id": row_id, "r": found[0], "u": found[1], "c": found[2]})
        for statement, params in ((set_times, times), (set_facts, facts)):
            if params:
                conn.execute(statement, params)
        after = rows[-1][0]


def downgrade() -> None:
    op.drop_column('stix_objects', 'export_times')
