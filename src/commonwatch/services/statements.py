"""The SQL of the query service, built once per query *shape* and cached.

Building a SQLAlchemy statement costs milliseconds of Python, more than running it;
so each distinct shape of request (which filters are present, which form of the
visibility rule applies) is compiled once and reused with bound values. Every
statement that reads ``stix_objects`` contains :func:`visible`; nothing here
selects objects without it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Dialect,
    Select,
    and_,
    bindparam,
    exists,
    false,
    literal_column,
    null,
    or_,
    select,
    true,
)

from commonwatch.domain.markings import Tlp
from commonwatch.domain.visibility import Clearance
from commonwatch.storage.models import Community, Membership, ObjectRecipient, Organisation, StixObject
from commonwatch.storage.tombstones import TOMBSTONE_RECIPIENTS, TOMBSTONES

OBJECTS = StixObject.__table__
RECIPIENTS = ObjectRecipient.__table__
COMMUNITIES = Community.__table__
MEMBERSHIPS = Membership.__table__


@dataclass(frozen=True, slots=True)
class Sight:
    """Which form of the visibility rule applies to a caller in a community."""

    own: bool  # the caller has an organisation: its own objects are visible
    read: bool  # member with can_read: TLP up to :tlp_max
    red: bool  # ... and cleared for RED: named recipients see RED
    public: bool  # not a reader, public community: TLP:CLEAR only

    @staticmethod
    def of(c: Clearance) -> Sight:
        red = c.can_read and c.max_tlp >= Tlp.RED and c.identity_id is not None
        return Sight(c.org_id is not None, c.can_read, red, not c.can_read and c.public)


def sight_params(c: Clearance) -> dict[str, Any]:
    return {"org": c.org_id, "identity": c.identity_id,
            "tlp_max": int(min(c.max_tlp, Tlp.AMBER_STRICT))}


def visible(t: Any, sight: Sight, recipients: Any = None) -> ColumnElement[bool]:
    """SQL form of the visibility rule for rows of alias ``t`` (docs/sharing-model.md).

    ``recipients``: the TLP:RED recipient lists of ``t``'s rows, (table, column holding
    the row's id); object versions' by default."""
    terms: list[ColumnElement[bool]] = []
    if sight.own:
        terms.append(t.producer_org_id == bindparam("org"))
    if sight.read:
        readable = t.tlp <= bindparam("tlp_max")
        if sight.red:
            table, key = recipients or (RECIPIENTS, RECIPIENTS.c.object_id)
            named = exists().where(key == t.id, table.c.identity_id == bindparam("identity"))
            readable = or_(readable, named)
        terms.append(readable)
    elif sight.public:
        terms.append(t.tlp == int(Tlp.CLEAR))
    if not terms:
        return false()
    return or_(*terms) if len(terms) > 1 else terms[0]


@dataclass(frozen=True, slots=True)
class Shape:
    """Everything that changes the SQL text of an object query (not its values)."""

    sight: Sight
    added_after: bool = False
    ids: bool = False
    types: bool = False
    specs: bool = False
    first: bool = False
    last: bool = True
    all: bool = False
    stamps: bool = False
    cursor: bool = False
    with_raw: bool = True
    by_version: bool = False  # the versions endpoint: one id, ordered by version
    one_id: bool = False  # match[id] with one id (single-object GET): bound as a scalar


def _other_version(o: Any, sight: Sight, newer: bool) -> ColumnElement[bool]:
    """EXISTS a version of the same id, newer (or older), that the caller can see."""
    o2 = OBJECTS.alias("o2").c
    order = o2.version_us > o.version_us if newer else o2.version_us < o.version_us
    return exists().where(o2.community_id == o.community_id, o2.stix_id == o.stix_id, order,
                          visible(o2, sight))


def one_copy(
    o: Any, sight: Sight, among: Callable[[Any], list[Any]] | None = None,
    passes: Callable[[Any], Any] | None = None,
) -> ColumnElement[bool]:
    """The row is the copy of its (id, version) the caller gets, when several
    organisations hold one (``co_held``): the caller's own copy, else the first stored
    among those the caller can see. Other rows pass without a probe.

    ``among``: the conditions a copy must meet to be chosen at all (an export's TLP
    ceiling and producer sectors), so a copy a filter drops never hides one it keeps.
    ``passes``: a condition (never NULL) that ranks first, the copies meeting it before
    the others (an export's lifecycle filters, which the export service applies to the
    chosen row itself: exactly one row per version still comes back).
    """
    o3 = OBJECTS.alias("o3").c
    earlier = o3.date_added_us < o.date_added_us
    if sight.own:
        org: Any = bindparam("org")
        mine = and_(o3.producer_org_id == org, or_(o.producer_org_id.is_(None), o.producer_org_id != org))
        neither_or_both = or_(o.producer_org_id.is_(None), o.producer_org_id != org,
                              o3.producer_org_id == org)
        better: Any = or_(mine, and_(earlier, neither_or_both))
    else:
        better = earlier
    if passes is not None:
        better = or_(and_(passes(o3), ~passes(o)), and_(passes(o3) == passes(o), better))
    preferred = exists().where(
        o3.community_id == o.community_id, o3.stix_id == o.stix_id, o3.version_us == o.version_us,
        o3.id != o.id, better, visible(o3, sight), *(among(o3) if among else ()),
    )
    return or_(o.co_held == false(), ~preferred)


def _version_clause(o: Any, shape: Shape) -> ColumnElement[bool]:
    """TAXII ``match[version]`` among the versions the caller can see.

    ``last``: the row is the newest version overall (``is_latest``) — then it is also
    the newest visible one, since the row itself passed the visibility filter — or no
    newer version is visible. ``first``: no older version is visible.
    """
    terms: list[ColumnElement[bool]] = []
    if shape.last:
        terms.append(or_(o.is_latest == true(), ~_other_version(o, shape.sight, newer=True)))
    if shape.first:
        terms.append(~_other_version(o, shape.sight, newer=False))
    if shape.stamps:
        terms.append(o.version_us.in_(bindparam("stamps", expanding=True)))
    if not terms:
        return false()
    return or_(*terms) if len(terms) > 1 else terms[0]


@lru_cache(maxsize=512)
def object_query(shape: Shape) -> Select[Any]:
    """The page query for ``shape``; values are bound by name at execution."""
    o = OBJECTS.alias("o").c
    # Envelopes read only what they send; every extra column is decoded per row.
    columns = ((o.date_added_us, o.raw) if shape.with_raw
               else (o.stix_id, o.spec_version, o.version_us, o.date_added_us))
    query = select(*columns).where(
        o.community_id == bindparam("community"), visible(o, shape.sight), one_copy(o, shape.sight)
    )
    if shape.by_version or shape.one_id:
        query = query.where(o.stix_id == bindparam("object_id"))
    if shape.added_after:
        query = query.where(o.date_added_us > bindparam("added_after"))
    if shape.ids:
        query = query.where(o.stix_id.in_(bindparam("ids", expanding=True)))
    if shape.types:
        query = query.where(o.type.in_(bindparam("types", expanding=True)))
    if shape.specs:
        query = query.where(o.spec_version.in_(bindparam("specs", expanding=True)))
    if not shape.all:
        query = query.where(_version_clause(o, shape))
    key = o.version_us if shape.by_version else o.date_added_us
    if shape.cursor:
        query = query.where(key > bindparam("position"))
    # With ids given, order by an expression so the planner looks the ids up in the
    # (community, stix_id, version) index and sorts the few hits, instead of walking
    # the date_added index across the whole collection.
    order = key + 0 if (shape.ids or shape.one_id) and not shape.by_version else key
    return query.order_by(order).limit(bindparam("limit"))


@lru_cache(maxsize=512)
def compiled(
    statement: Select[Any], dialect: Dialect
) -> tuple[str, tuple[str, ...] | None, dict[str, Any]]:
    """A cached statement compiled for ``dialect``: (SQL text, positional parameter names
    or None for named parameters, values of the statement's own parameters)."""
    result = statement.compile(dialect=dialect)
    names = tuple(result.positiontup) if result.positiontup is not None else None
    return result.string, names, {name: bind.value for name, bind in result.binds.items()}


def driver_rows(conn: Connection, statement: Select[Any], params: dict[str, Any]) -> list[Any]:
    """All rows of a cached statement (no expanding parameters) as the driver's tuples.

    Compiled once per statement and dialect, run on the driver's own cursor:
    SQLAlchemy's result objects cost more per row than the database's execution of
    the visibility rule.
    """
    text, names, defaults = compiled(statement, conn.dialect)
    values = defaults | params
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        args = values if names is None else [values[name] for name in names]
        if conn.dialect.name == "postgresql":
            # Binary results: the stored JSON arrives as its bytes instead of as hex text
            # twice its size (a 1,000-object page: half the CPU and wall time).
            cursor.execute(text, args, binary=True)
        else:
            cursor.execute(text, args)
        return cursor.fetchall()  # type: ignore[no-any-return]
    finally:
        cursor.close()


#: The recipient lists of TLP:RED tombstones (those of the deleted versions).
TOMBSTONE_NAMED = (TOMBSTONE_RECIPIENTS, TOMBSTONE_RECIPIENTS.c.tombstone_id)


@lru_cache(maxsize=16)
def tombstones_query(sight: Sight) -> Select[Any]:
    """Tombstones the caller may see, in deletion order after a position.

    The deleted version's own visibility applies, its RED recipient list included. A
    version the caller can still see (another organisation's copy of it) has no
    tombstone, and one whose copies were deleted one after the other has one: the last
    one's.
    """
    t = TOMBSTONES.c
    rule = visible(t, sight, TOMBSTONE_NAMED)
    o = OBJECTS.alias("o").c
    still_held = exists().where(o.community_id == t.community_id, o.stix_id == t.stix_id,
                                o.version_us == t.version_us, visible(o, sight))
    t2 = TOMBSTONES.alias("t2").c
    later = exists().where(t2.community_id == t.community_id, t2.stix_id == t.stix_id,
                           t2.version_us == t.version_us, t2.id > t.id,
                           visible(t2, sight, TOMBSTONE_NAMED))
    return (select(t.id, t.stix_id, t.version_us, t.deleted_us)
            .where(t.community_id == bindparam("community"), t.id > bindparam("position"), rule,
                   ~still_held, ~later)
            .order_by(t.id).limit(bindparam("limit")))


@lru_cache(maxsize=16)
def activity_query(sight: Sight) -> Select[Any]:
    """(date_added of the newest version, id of the newest tombstone) the caller can see
    in one community: what a feed's validators read of it. Only what the caller can see
    counts, so a write or delete it cannot see never moves its ETag."""
    o = OBJECTS.alias("o").c
    newest = (select(o.date_added_us).where(o.community_id == bindparam("community"), visible(o, sight))
              .order_by(o.date_added_us.desc()).limit(1).scalar_subquery())
    t = TOMBSTONES.c
    deleted = (select(t.id).where(t.community_id == bindparam("community"),
                                  visible(t, sight, TOMBSTONE_NAMED))
               .order_by(t.id.desc()).limit(1).scalar_subquery())
    return select(newest, deleted)


@lru_cache(maxsize=16)
def visible_versions_query(sight: Sight) -> Select[Any]:
    """(row id, producer, version) of each visible version of one object id."""
    o = OBJECTS.alias("o").c
    return select(o.id, o.producer_org_id, o.version_us).where(
        o.community_id == bindparam("community"), o.stix_id == bindparam("object_id"),
        visible(o, sight),
    )


_c, _m = COMMUNITIES.c, MEMBERSHIPS.c
#: A community with the caller's membership row (NULLs when not a member).
COMMUNITY_WITH_MEMBERSHIP = select(
    _c.id, _c.name, _c.collection_id, _c.title, _c.description, _c.default_tlp, _c.public,
    _m.can_read, _m.can_write, _m.max_tlp,
).select_from(
    COMMUNITIES.outerjoin(MEMBERSHIPS, and_(_m.community_id == _c.id, _m.org_id == bindparam("org")))
)


# -- exports -------------------------------------------------------------------------------
ORGANISATIONS = Organisation.__table__


@dataclass(frozen=True, slots=True)
class ExportShape:
    """What changes the SQL text of an export batch query (not its values)."""

    sight: Sight
    types: bool = False
    sectors: bool = False
    since: bool = False
    cursor: bool = False
    #: Read the JSON (``raw``); without it the column reads as NULL.
    raw: bool = True
    #: Keyset on date_added (the storage order) instead of the STIX id.
    by_added: bool = False
    #: Read ``export_name``; without it it reads as NULL.
    names: bool = True
    #: Read ``export_labels``; without it it reads as NULL.
    labels: bool = True
    #: Read ``export_times``; without it it reads as NULL.
    times: bool = True
    #: Read the row's id; without it it reads as 0.
    row_ids: bool = False
    #: The export's lifecycle filters (not revoked; not expired at ``:now``; confidence at
    #: least ``:min_confidence``): of several copies of a version, one that passes them is
    #: chosen. The export service applies them to the rows.
    live: bool = False
    current: bool = False
    confident: bool = False


@lru_cache(maxsize=256)
def export_query(shape: ExportShape) -> Select[Any]:
    """One keyset batch of the newest visible version of each object, by STIX id (or by
    date_added, ``shape.by_added``).

    The visibility rule is :func:`visible`, unchanged; the export's TLP ceiling is an
    extra predicate on top of it, so it can only narrow what the caller sees. Ordering
    by ``stix_id`` walks the ``(community_id, stix_id, version_us)`` index, and lets
    the service merge several communities without remembering what it has sent;
    ordering by ``date_added_us`` (one community) reads the table in storage order.
    """
    o = OBJECTS.alias("o").c

    def chosen(t: Any) -> list[Any]:
        """The export's own conditions on a row (``t``), which a copy must meet to be chosen."""
        terms = [t.tlp <= bindparam("ceiling")]
        if shape.sectors:
            terms.append(t.producer_org_id.in_(select(ORGANISATIONS.c.id).where(
                ORGANISATIONS.c.sector.in_(bindparam("sectors", expanding=True)))))
        return terms

    def lifecycle(t: Any) -> Any:
        """The export's lifecycle filters on a row, never NULL (the export service applies
        them to rows, counting why each is left out; here they rank copies)."""
        terms: list[Any] = [true()]
        if shape.live:
            terms.append(t.revoked == false())
        if shape.current:
            terms.append(or_(t.valid_until_us.is_(None), t.valid_until_us > bindparam("now")))
        if shape.confident:
            terms.append(and_(t.confidence.is_not(None), t.confidence >= bindparam("min_confidence")))
        return and_(*terms)

    # The export columns (written at ingest) carry the values and the lifecycle facts:
    # no pattern is parsed and no JSON read to filter.
    query = select(o.stix_id, o.version_us, o.date_added_us, o.tlp, o.producer_org_id,
                   o.raw if shape.raw else null(), o.export_values, o.export_skip,
                   o.revoked, o.valid_until_us, o.confidence, o.export_listed,
                   o.listed_stamp, o.export_name if shape.names else null(),
                   o.export_labels if shape.labels else null(),
                   o.export_times if shape.times else null(),
                   o.id if shape.row_ids else literal_column("0")).where(
        o.community_id == bindparam("community"), visible(o, shape.sight),
        one_copy(o, shape.sight, chosen, lifecycle if shape.live or shape.current or shape.confident
                 else None), *chosen(o),
        _version_clause(o, Shape(sight=shape.sight, last=True)),
    )
    if shape.types:
        query = query.where(o.type.in_(bindparam("types", expanding=True)))
    if shape.since:
        query = query.where(o.date_added_us >= bindparam("since"))
    key = o.date_added_us if shape.by_added else o.stix_id
    if shape.cursor:
        query = query.where(key > bindparam("after"))
    return query.order_by(key).limit(bindparam("limit"))
