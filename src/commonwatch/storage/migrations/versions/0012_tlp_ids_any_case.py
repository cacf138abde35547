"""TLP marking ids written with upper-case hex digits count as the TLP they name

Revision ID: 0012_tlp_ids_any_case
Revises: 0011_revalue_unsafe_values
Create Date: 2026-12-06 08:00:00

UUID hex digits may come in either case (RFC 4122 §3), but the effective TLP of a
version was read by exact id: a version marked only with, say,
``marking-definition--5E57C739-391A-...`` (TLP:RED) was stored as unmarked, under its
community's default TLP, and shown to members cleared for that default. Every stored
version whose JSON names a TLP marking id in another case than the canonical one has
its TLP worked out again; where that is more restrictive, it is stored.

Feeds' stored validators are dropped (this and 0011 change what feeds hold without a
write the validators would see): each feed renders anew under a new ETag at its next
fetch, instead of answering 304 for a body that now holds less.
"""

import orjson
import sqlalchemy as sa
from alembic import op

revision = '0012_tlp_ids_any_case'
down_revision = '0011_revalue_unsafe_values'
branch_labels = None
depends_on = None

_BATCH = 2000


def upgrade() -> None:
    from commonwatch.domain.markings import TLP_MARKING_IDS, Tlp, effective_tlp

    ids = [tlp_id.encode() for tlp_id in TLP_MARKING_IDS]
    conn = op.get_bind()
    conn.execute(sa.text("DELETE FROM feed_states"))
    defaults: dict[int, int] = dict(conn.execute(sa.text("SELECT id, default_tlp FROM communities")).all())
    after = 0
    while True:
        rows = conn.execute(sa.text(
            "SELECT id, community_id, tlp, raw FROM stix_objects WHERE id > :after AND tlp < :red "
            "ORDER BY id LIMIT :n"), {"after": after, "red": int(Tlp.RED), "n": _BATCH}).all()
        if not rows:
            return
        after = rows[-1][0]
        updates: list[dict[str, int]] = []
        for row_id, community_id, tlp, raw in rows:
            data = bytes(raw)
            lowered = data.lower()
            if not any(i in lowered and lowered.count(i) != data.count(i) for i in ids):
                continue  # every TLP id it names, if any, is written as published
            obj = orjson.loads(data)
            refs = list(obj.get("object_marking_refs") or ())
            refs += [g.get("marking_ref") for g in obj.get("granular_markings") or () if isinstance(g, dict)]
            level = effective_tlp([r for r in refs if isinstance(r, str)], Tlp(defaults[community_id]))
            if level > tlp:
                updates.append({"id": row_id, "tlp": int(level)})
        if updates:
            conn.execute(sa.text("UPDATE stix_objects SET tlp = :tlp WHERE id = :id"), updates)


def downgrade() -> None:
    pass  # nothing to undo: earlier code reads the stricter TLP as it is
