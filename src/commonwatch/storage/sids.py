"""Suricata rule sids: one stable sid per rule key, its ``rev`` bumped on change, and
the rules of each stored row as last exported.

Straight on the driver's cursor, a batch of rules at a time: SQLAlchemy's expansion of
a few thousand IN and VALUES parameters per batch cost more than the statements. A
batch's keys or ids go in as one parameter (a JSON array on SQLite, an array on
PostgreSQL), so the statement's text is the same for every batch size: the driver
keeps one prepared statement, not one per size (each holding its thousands of slots).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
from sqlalchemy import Connection

from commonwatch.storage.models import StixObject, SuricataRowSids, SuricataSid

_SIDS = SuricataSid.__tablename__
INSERT_SIDS = (f"INSERT INTO {_SIDS} (rule_key, rev, digest) VALUES (?, 1, ?) "
               "ON CONFLICT (rule_key) DO NOTHING")
BUMP_SIDS = f"UPDATE {_SIDS} SET rev = rev + 1, digest = ? WHERE id = ?"
_SELECT_SIDS = f"SELECT id, rule_key, rev, digest FROM {_SIDS} WHERE rule_key "
_ROWS = SuricataRowSids.__tablename__
_SELECT_ROWS = f"SELECT object_id, rules_check, rules FROM {_ROWS} WHERE object_id "
_RANGE_ROWS = _SELECT_ROWS + "BETWEEN ? AND ?"
# Only for a row still stored: an export may outlive a version deleted meanwhile, and
# SQLite gives the id of a deleted last row to the next one, so the row is named by its
# id and its date added (never reused in its community). On PostgreSQL a row a
# concurrent transaction is deleting (locked) is skipped rather than waited for: its
# entry would go with it.
REMEMBER_ROWS = (f"INSERT INTO {_ROWS} (object_id, rules_check, rules) "
                 f"SELECT id, ?, ? FROM {StixObject.__tablename__} "
                 f"WHERE id = ? AND date_added_us = ?{{lock}} "
                 "ON CONFLICT (object_id) DO UPDATE SET rules_check = excluded.rules_check, "
                 "rules = excluded.rules")


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


def _select(conn: Connection, cursor: Any, text: str, values: Sequence[Any]) -> None:
    """Run ``text`` (ending in its key column) for the rows whose key is in ``values``."""
    if conn.dialect.paramstyle != "qmark":
        cursor.execute(text + "= ANY(%s)", (list(values),))
    else:
        cursor.execute(text + "IN (SELECT value FROM json_each(?))", (orjson.dumps(list(values)),))


def known_sids(conn: Connection, keys: Sequence[str]) -> dict[str, tuple[int, int, str]]:
    """rule key -> (id, rev, digest) of the keys already allocated."""
    cursor = _driver(conn)
    try:
        _select(conn, cursor, _SELECT_SIDS, keys)
        return {r[1]: (r[0], r[2], r[3]) for r in cursor.fetchall()}
    finally:
        cursor.close()


def remembered(conn: Connection, row_ids: Sequence[int]) -> dict[int, tuple[int, str]]:
    """row id -> (rules check, rules text) of the rows whose rules were exported before
    (and maybe of other rows between them)."""
    if not row_ids:
        return {}
    cursor = _driver(conn)
    try:
        low, high = min(row_ids), max(row_ids)
        if high - low < 4 * len(row_ids):
            # Ids close together (an export of one community reads rows in the order
            # they were stored): one range of the primary key, without a list to parse.
            cursor.execute(_RANGE_ROWS if conn.dialect.paramstyle == "qmark"
                           else _RANGE_ROWS.replace("?", "%s"), (low, high))
        else:
            _select(conn, cursor, _SELECT_ROWS, row_ids)
        return {r[0]: (r[1], r[2]) for r in cursor.fetchall()}
    finally:
        cursor.close()


def remember(conn: Connection, rows: Sequence[tuple[int, int, int, str]]) -> None:
    """Store (row id, row's date added, rules check, rules text) of rows just exported,
    in row id order (concurrent exports take the entries' locks in one order)."""
    if rows:
        lock = " FOR KEY SHARE SKIP LOCKED" if conn.dialect.name == "postgresql" else ""
        execute_many(conn, REMEMBER_ROWS.format(lock=lock),
                     [(check, text, row_id, added) for row_id, added, check, text in sorted(rows)])
