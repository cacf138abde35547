"""Suricata rule sids: one stable sid per rule key, its ``rev`` bumped on change.

Straight on the driver's cursor, a batch of rules at a time: SQLAlchemy's expansion of
a few thousand IN and VALUES parameters per batch cost more than the statements.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection

from commonwatch.storage.models import SuricataSid

_SIDS = SuricataSid.__tablename__
INSERT_SIDS = (f"INSERT INTO {_SIDS} (rule_key, rev, digest) VALUES (?, 1, ?) "
               "ON CONFLICT (rule_key) DO NOTHING")
BUMP_SIDS = f"UPDATE {_SIDS} SET rev = rev + 1, digest = ? WHERE id = ?"
_SELECT_SIDS = f"SELECT id, rule_key, rev, digest FROM {_SIDS} WHERE rule_key "


def _driver(conn: Connection) -> Any:
    return conn.connection.driver_connection.cursor()  # type: ignore[union-attr]


def execute_many(conn: Connection, text: str, rows: Sequence[tuple[Any, ...]]) -> None:
    """``text`` (qmark parameters) run for each row on the driver's cursor."""
    if conn.dialect.paramstyle != "qmark":
        text = text.replace("?", "%s")  # psycopg's parameter style
    cursor = _driver(conn)
    try:
        cursor.executemany(text, rows)
    finally:
        cursor.close()


def known_sids(conn: Connection, keys: Sequence[str]) -> dict[str, tuple[int, int, str]]:
    """rule key -> (id, rev, digest) of the keys already allocated."""
    cursor = _driver(conn)
    try:
        if conn.dialect.paramstyle != "qmark":
            cursor.execute(_SELECT_SIDS + "= ANY(%s)", (list(keys),))
        else:
            cursor.execute(_SELECT_SIDS + "IN (" + ",".join("?" * len(keys)) + ")", keys)
        return {r[1]: (r[0], r[2], r[3]) for r in cursor.fetchall()}
    finally:
        cursor.close()
