"""values stored before control characters and IPv6 zone ids were refused are extracted again

Revision ID: 0011_revalue_unsafe_values
Revises: 0010_feed_reservations
Create Date: 2026-12-06 07:30:00

Value normalisation used to accept an IPv6 zone id (``fe80::1%eth0``, any text after
``%``) and, in URLs and e-mail addresses, control characters and line breaks other than
space, tab, CR and LF (CR and LF too in the local part of an address). Such values
reached the export columns and the observable index, and from there rule headers,
one-value-per-line lists and sensors. Every stored version whose values do not read
back as the normalisation gives them now has its values, its reason for having none,
and its observable index entries extracted again from its JSON, as ingest does; its
stored warninglist verdicts are cleared (exports check those values themselves until
``commonwatch db restamp-warninglists`` stores new ones).
"""

import orjson
import sqlalchemy as sa
from alembic import op

revision = '0011_revalue_unsafe_values'
down_revision = '0010_feed_reservations'
branch_labels = None
depends_on = None

_BATCH = 5000


def _still_valid(values: str) -> bool:
    from commonwatch.domain.observables import KINDS, normalise

    for line in values.split("\n"):
        kind, _, value = line.partition(" ")
        if kind not in KINDS or normalise(kind, value) != (kind, value):
            return False
    return True


def upgrade() -> None:
    from commonwatch.domain.indexing import indexed

    conn = op.get_bind()
    after = 0
    while True:
        rows = conn.execute(sa.text(
            "SELECT id, export_values FROM stix_objects WHERE id > :after AND export_values IS NOT NULL "
            "ORDER BY id LIMIT :n"), {"after": after, "n": _BATCH}).all()
        if not rows:
            return
        stale = [row_id for row_id, values in rows if not _still_valid(values)]
        after = rows[-1][0]
        if not stale:
            continue
        updates: list[dict[str, object]] = []
        entries: list[dict[str, object]] = []
        for row_id, community_id, raw in conn.execute(sa.text(
                "SELECT id, community_id, raw FROM stix_objects WHERE id IN :ids").bindparams(
                    sa.bindparam("ids", expanding=True)), {"ids": stale}):
            found = indexed(orjson.loads(raw))
            updates.append({"id": row_id, "v": found.facts.values, "s": found.facts.skip})
            entries.extend({"o": row_id, "c": community_id, "k": kind, "v": value}
                           for kind, value in found.observables)
        conn.execute(sa.text("DELETE FROM observables WHERE object_id IN :ids").bindparams(
            sa.bindparam("ids", expanding=True)), {"ids": stale})
        conn.execute(sa.text(
            "UPDATE stix_objects SET export_values = :v, export_skip = :s, export_listed = NULL, "
            "listed_stamp = NULL WHERE id = :id"), updates)
        if entries:
            conn.execute(sa.text("INSERT INTO observables (object_id, community_id, kind, value) "
                                 "VALUES (:o, :c, :k, :v)"), entries)


def downgrade() -> None:
    pass  # nothing to undo: earlier code reads the values extracted again as they are
