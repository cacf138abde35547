"""The statements of the lookup service (:mod:`commonwatch.services.lookup`).

Every statement joins the index tables to the object versions through the visibility
rule of :mod:`commonwatch.services.statements`, unchanged; key lists are bound as one
parameter each, so a statement's text does not change with the number of keys.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import Any

import orjson
from sqlalchemy import (
    BindParameter,
    ColumnElement,
    Select,
    Text,
    and_,
    any_,
    bindparam,
    func,
    or_,
    select,
    true,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.sql import visitors
from sqlalchemy.sql.expression import UnaryExpression
from sqlalchemy.sql.operators import custom_op

from commonwatch.domain.visibility import Clearance
from commonwatch.services import statements as sql
from commonwatch.storage.index import OBJECT_REFS, OBSERVABLES
from commonwatch.storage.models import Organisation

#: Index keys (or referenced ids) bound per statement, as one list parameter. On
#: PostgreSQL the list is an ``= ANY`` index condition, and past a few thousand values
#: the planner prefers a sequential scan of the whole index table (measured at 10^6).
CHUNK = {"sqlite": 10_000, "postgresql": 1_000}


def latest_visible(o: Any, sight: sql.Sight) -> Any:
    """The newest version of its id among those the caller can see (``version=last``)."""
    return or_(o.is_latest == true(), ~sql._other_version(o, sight, newer=True))


ORGS = select(Organisation.id, Organisation.name, Organisation.sector, Organisation.identity_id)


def keyed(table: Any, column: Any, name: str, dialect: str) -> tuple[Any, Any]:
    """(FROM clause, condition) restricting ``table`` to rows whose ``column`` is in a list
    bound as ONE parameter: the statement text never changes with the list's length.

    SQLite: a join from ``json_each`` of a JSON array, one index probe per element.
    PostgreSQL: ``column = ANY(:list)`` on a ``text[]``, which a B-tree index scan walks
    in one pass (a join from ``unnest`` is planned as a sort-merge over the whole table).
    """
    if dialect == "sqlite":
        keys = func.json_each(bindparam(name, type_=Text())).table_valued("value").alias("k")
        return keys.join(table, column == keys.c.value), true()
    return table, column == any_(bindparam(name, type_=ARRAY(Text)))


def bind(values: list[str], dialect: str) -> Any:
    return orjson.dumps(values).decode() if dialect == "sqlite" else values


def numbered(clause: ColumnElement[bool], n: int) -> ColumnElement[bool]:
    """``clause`` with each named parameter ``p`` renamed ``p__cn``: one statement can then
    hold the same rule for several communities, each with its own values. The clause
    itself (the visibility rule of ``services/statements.py``) is not otherwise changed."""
    def rename(element: Any, **_: Any) -> Any:
        if isinstance(element, BindParameter) and not element.unique:
            return bindparam(f"{element.key}__c{n}", type_=element.type)
        return None

    opts: dict[str, Any] = {}
    return visitors.replacement_traverse(clause, opts, rename)


def community_params(n: int, community_id: int, clearance: Clearance) -> dict[str, Any]:
    """The values of :func:`numbered` branch ``n``."""
    return {f"{name}__c{n}": value
            for name, value in (sql.sight_params(clearance) | {"community": community_id}).items()}


def held(column: Any, dialect: str) -> Any:
    """``column`` as a filter, not an index term, on SQLite (its ``+column`` idiom).

    Each key is then one seek on ``ix_observables_value`` (kind, value) whose few
    entries are filtered by community, where an index term made one seek per readable
    community (measured at 10^7 with two readable communities: 5% less statement time).
    """
    if dialect != "sqlite":
        return column
    return UnaryExpression(column, operator=custom_op("+"), type_=column.type)


@lru_cache(maxsize=64)
def observables_query(sights: tuple[sql.Sight, ...], dialect: str = "sqlite") -> Select[Any]:
    """Index rows of one kind whose value is in the bound list ``values``, joined to the
    object versions the caller can see, in any of its communities.

    Branch ``n`` of the WHERE clause is community ``n`` with its own form of the
    visibility rule (``sights[n]``) and the newest-visible-version rule. Each key is one
    seek in ``ix_observables_value`` for all the communities at once (see :func:`held`),
    and index rows of other communities are dropped before their object is read.
    """
    ob_table, o_table = OBSERVABLES.alias("ob"), sql.OBJECTS.alias("o")
    ob, o = ob_table.c, o_table.c
    source, listed = keyed(ob_table, ob.value, "values", dialect)
    branches = [
        numbered(and_(o.community_id == bindparam("community"), sql.visible(o, sight),
                       latest_visible(o, sight), sql.one_copy(o, sight)), n)
        for n, sight in enumerate(sights)
    ]
    readable = [held(ob.community_id, dialect) == bindparam(f"community__c{n}") for n in range(len(sights))]
    return (
        select(ob.value, o.id, o.community_id, o.stix_id, o.type, o.tlp, o.producer_org_id, o.raw)
        .select_from(source.join(o_table, o.id == ob.object_id))
        .where(ob.kind == bindparam("kind"), listed, or_(*readable), or_(*branches))
    )


@lru_cache(maxsize=64)
def refs_query(sight: sql.Sight, dialect: str = "sqlite") -> Select[Any]:
    """Sightings and opinions (visible, newest visible version) of the bound ids ``targets``
    in one community."""
    r_table, o_table = OBJECT_REFS.alias("r"), sql.OBJECTS.alias("o")
    r, o = r_table.c, o_table.c
    source, listed = keyed(r_table, r.target_id, "targets", dialect)
    return (
        select(r.target_id, r.relation, r.id, o.id, o.producer_org_id, o.raw)
        .select_from(source.join(o_table, o.id == r.object_id))
        .where(r.community_id == bindparam("community"), listed, o.community_id == bindparam("community"),
               sql.visible(o, sight), latest_visible(o, sight), sql.one_copy(o, sight))
    )


def chunks(items: Sequence[str], dialect: str) -> Iterable[list[str]]:
    size = CHUNK.get(dialect, 1_000)
    for start in range(0, len(items), size):
        yield list(items[start:start + size])
