"""The one visibility-filtered query service.

Every read of shared objects — TAXII objects, manifest, versions, single objects,
and every later read path (JSON API, UI, exports, lookups) — builds an
:class:`ObjectFilter` and calls :class:`QueryService`. The visibility rule of
``domain/visibility.py`` is applied here, in SQL, before any other predicate is
evaluated for the caller; there is no other way to select rows of ``stix_objects``.

Version selection (``first``/``last``) is evaluated among the versions the caller
can see, so a hidden newer version neither hides nor reveals anything.
"""

from __future__ import annotations

import base64
import binascii
import bisect
from collections.abc import Callable, Iterator
from operator import itemgetter
from typing import Any, cast

from sqlalchemy import Connection, bindparam
from sqlalchemy.orm import Session, sessionmaker

from commonwatch.domain.markings import Tlp
from commonwatch.domain.visibility import Clearance, Principal
from commonwatch.errors import InvalidParameter, NotFound, PermissionDenied
from commonwatch.services import statements as sql
from commonwatch.services.query_types import (
    CommunityRef,
    Envelope,
    ExportFilter,
    ExportRow,
    ObjectFilter,
    ObjectRow,
    Page,
    RawRow,
    RowBatch,
    RowT,
    Tombstone,
    VersionSelector,
)
from commonwatch.storage.db import snapshot

#: The query objects and rows live in :mod:`commonwatch.services.query_types`; they are
#: re-exported so every caller imports the query service and what it reads with from here.
__all__ = [
    "CommunityRef", "Envelope", "ExportFilter", "ExportRow", "ObjectFilter", "ObjectRow", "Page",
    "QueryService", "RawRow", "RowBatch", "Tombstone", "VersionSelector", "decode_cursor",
    "encode_cursor",
]

_NOT_FOUND = "no collection with this id is available to you"

_RAW = itemgetter(1)  # the stored JSON of an envelope row (date_added, raw)


def _fetch(conn: Connection, shape: sql.Shape, params: dict[str, Any]) -> list[Any]:
    """All rows of one page query, as tuples.

    Without list-valued filters the statement runs on the driver's own cursor
    (:func:`statements.driver_rows`). List filters (``match[type]``...) need
    SQLAlchemy's expansion of IN parameters and take the general path.
    """
    if shape.ids or shape.types or shape.specs or shape.stamps:
        return list(conn.execute(sql.object_query(shape), params).all())
    return sql.driver_rows(conn, sql.object_query(shape), params)


def encode_cursor(position: int) -> str:
    return base64.urlsafe_b64encode(f"cw1:{position}".encode()).decode().rstrip("=")


def decode_cursor(token: str) -> int:
    """The position in an opaque ``next`` token; InvalidParameter if it is not ours."""
    try:
        text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        tag, _, position = text.partition(":")
        if tag != "cw1" or not (position.isascii() and position.isdigit()) or int(position) >= 2**63:
            raise ValueError(tag)  # ours are non-negative 64-bit integers
        return int(position)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InvalidParameter(
            "the 'next' parameter is not a value this server issued; use the 'next' "
            "value of the previous page unchanged"
        ) from None


#: Built once: building a statement per call costs more than running it.
_COLLECTIONS = sql.COMMUNITY_WITH_MEMBERSHIP.order_by(sql.COMMUNITIES.c.id)


class QueryService:
    """Reads of communities and objects, always through the visibility rule."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    # -- communities ---------------------------------------------------------------
    @staticmethod
    def _resolve(principal: Principal | None, row: Any) -> tuple[CommunityRef, Clearance]:
        community = CommunityRef(*row[:7])
        member = row.can_read is not None
        clearance = Clearance(
            org_id=principal.org_id if principal else None,
            identity_id=principal.org_identity if principal else None,
            can_read=bool(member and row.can_read),
            can_write=bool(member and row.can_write and principal and principal.can_write),
            max_tlp=Tlp(row.max_tlp) if member else Tlp.CLEAR,
            public=community.public,
        )
        return community, clearance

    def collections(self, principal: Principal | None,
                    conn: Connection | None = None) -> list[tuple[CommunityRef, Clearance]]:
        """Communities the caller may know about, with what it may do in each."""
        org = principal.org_id if principal else None
        if conn is not None:
            rows = conn.execute(_COLLECTIONS, {"org": org}).all()
        else:
            with self._sessions() as s:
                rows = s.connection().execute(_COLLECTIONS, {"org": org}).all()
        found = [self._resolve(principal, row) for row in rows]
        return [(c, k) for c, k in found if k.sees_anything]

    def collection(
        self, principal: Principal | None, collection_id: str
    ) -> tuple[CommunityRef, Clearance]:
        """One community by collection id; NotFound if the caller may not know it."""
        with self._sessions() as s:
            return self._collection(s.connection(), principal, collection_id)

    def _collection(
        self, conn: Connection, principal: Principal | None, collection_id: str,
        *, read: bool = False,
    ) -> tuple[CommunityRef, Clearance]:
        row = conn.execute(_BY_COLLECTION, {
            "org": principal.org_id if principal else None, "cid": collection_id,
        }).first()
        if row is None:
            raise NotFound(_NOT_FOUND)
        community, clearance = self._resolve(principal, row)
        if not clearance.sees_anything:
            raise NotFound(_NOT_FOUND)
        if read and not (clearance.can_read or clearance.public):
            # TAXII 2.1 §5.2: can_read false forbids the object, manifest and versions reads.
            raise PermissionDenied("your membership does not allow reading this collection")
        return community, clearance

    # -- objects -------------------------------------------------------------------
    def objects(
        self, principal: Principal | None, collection_id: str, flt: ObjectFilter
    ) -> Page[RawRow]:
        """The stored JSON of visible object versions matching ``flt``, date_added order."""
        return self._read(principal, collection_id, flt, RawRow, object_id=None)

    def manifest(
        self, principal: Principal | None, collection_id: str, flt: ObjectFilter
    ) -> Page[ObjectRow]:
        """What is known of the same versions as :meth:`objects`, without their JSON."""
        return self._read(principal, collection_id, flt, ObjectRow, object_id=None)

    def versions(
        self, principal: Principal | None, collection_id: str, object_id: str,
        flt: ObjectFilter,
    ) -> Page[ObjectRow]:
        """Visible versions of one object, oldest version first (TAXII 2.1 §5.7)."""
        return self._read(principal, collection_id, flt, ObjectRow, object_id=object_id)

    def envelope(
        self, principal: Principal | None, collection_id: str, flt: ObjectFilter
    ) -> Envelope:
        """The same rows as :meth:`objects`, as the stored JSON a TAXII envelope joins.

        The hot path of paged reads: rows come straight from the driver as tuples (no
        result objects per row), through the same visibility-filtered statement.
        """
        position = decode_cursor(flt.next) if flt.next else None
        with self._sessions() as s:
            conn = s.connection()
            community, clearance = self._collection(conn, principal, collection_id, read=True)
            shape, params = self._plan(flt, clearance, community.id, position, True, None)
            rows = _fetch(conn, shape, params)
        more = len(rows) > flt.limit
        if more:
            del rows[flt.limit:]
        if not rows:
            return Envelope([], None, None, False, None)
        last = rows[-1][0]
        return Envelope(list(map(_RAW, rows)), rows[0][0], last, more,
                        encode_cursor(last) if more else None)

    @staticmethod
    def _plan(
        flt: ObjectFilter, clearance: Clearance, community_id: int, position: int | None,
        with_raw: bool, object_id: str | None,
    ) -> tuple[sql.Shape, dict[str, Any]]:
        """The statement shape and bound values of one page read."""
        sel = flt.versions
        # One id (every single-object GET) is bound as a scalar: the statement then
        # takes the compiled fast path of _fetch instead of expanding a list.
        one_id = object_id is None and len(flt.ids) == 1
        shape = sql.Shape(
            sight=sql.Sight.of(clearance), added_after=flt.added_after_us is not None,
            ids=bool(flt.ids) and not one_id, types=bool(flt.types), specs=bool(flt.spec_versions),
            first=sel.first, last=sel.last, all=sel.all, stamps=bool(sel.timestamps),
            cursor=position is not None, with_raw=with_raw, by_version=object_id is not None,
            one_id=one_id,
        )
        params = {
            **sql.sight_params(clearance), "community": community_id,
            "object_id": flt.ids[0] if one_id else object_id, "added_after": flt.added_after_us,
            "ids": list(flt.ids), "types": list(flt.types), "specs": list(flt.spec_versions),
            "stamps": list(sel.timestamps), "position": position, "limit": flt.limit + 1,
        }
        return shape, params

    def _read(
        self, principal: Principal | None, collection_id: str, flt: ObjectFilter,
        row_type: type[RowT], *, object_id: str | None,
    ) -> Page[RowT]:
        position = decode_cursor(flt.next) if flt.next else None
        with self._sessions() as s:
            conn = s.connection()
            community, clearance = self._collection(conn, principal, collection_id, read=True)
            shape, params = self._plan(flt, clearance, community.id, position,
                                       row_type is RawRow, object_id)
            rows = list(map(row_type._make, _fetch(conn, shape, params)))
        more = len(rows) > flt.limit
        rows = rows[:flt.limit]
        if not more:
            return Page(rows=rows, more=False, next=None)
        last = rows[-1]
        cursor = last.version_us if isinstance(last, ObjectRow) and object_id else last.date_added_us
        return Page(rows=rows, more=True, next=encode_cursor(cursor))

    def deletions(
        self, principal: Principal | None, collection_id: str, after: str | None = None,
        limit: int = 1000,
    ) -> Page[Tombstone]:
        """Deleted object versions the caller may know about, oldest deletion first."""
        position = decode_cursor(after) if after else 0
        with self._sessions() as s:
            conn = s.connection()
            community, clearance = self._collection(conn, principal, collection_id, read=True)
            params = {**sql.sight_params(clearance), "community": community.id,
                      "position": position, "limit": limit + 1}
            rows = conn.execute(sql.tombstones_query(sql.Sight.of(clearance)), params).all()
        found = [Tombstone(*row[1:]) for row in rows[:limit]]
        more = len(rows) > limit
        return Page(rows=found, more=more, next=encode_cursor(rows[limit - 1][0]) if more else None)

    def visible_versions(
        self, conn: Connection, clearance: Clearance, community_id: int, object_id: str
    ) -> list[tuple[int, int | None, int]]:
        """(row id, producer, version) of each version of ``object_id`` the caller can see."""
        query = sql.visible_versions_query(sql.Sight.of(clearance))
        params = {**sql.sight_params(clearance), "community": community_id, "object_id": object_id}
        return [(r[0], r[1], r[2]) for r in conn.execute(query, params)]


    def activity(
        self, principal: Principal, conn: Connection | None = None, community_id: int | None = None,
    ) -> list[tuple[CommunityRef, Clearance, tuple[Any, ...] | None]]:
        """The communities the caller may know about (or only ``community_id``), with its
        clearance and, where it may read, (date_added of the newest version it can see, id
        of the newest tombstone it can see); see :func:`statements.activity_query`. Read on
        ``conn`` when given (an export's snapshot), else in a session of its own."""
        if conn is None:
            with self._sessions() as s:
                return self.activity(principal, s.connection(), community_id)
        found: list[tuple[CommunityRef, Clearance, tuple[Any, ...] | None]] = []
        for community, clearance in self.collections(principal, conn):
            if community_id is not None and community.id != community_id:
                continue
            seen = None
            if clearance.can_read or clearance.public:
                query = sql.activity_query(sql.Sight.of(clearance))
                params = {**sql.sight_params(clearance), "community": community.id}
                seen = tuple(conn.execute(query, params).one())
            found.append((community, clearance, seen))
        return found

    # -- exports -------------------------------------------------------------------
    def export_communities(
        self, principal: Principal, flt: ExportFilter, conn: Connection | None = None,
    ) -> list[tuple[CommunityRef, Clearance]]:
        """The communities an export reads: those named (each must be readable) or all readable."""
        known = self.collections(principal, conn)
        if not flt.communities:
            return [(c, k) for c, k in known if k.can_read]
        by_key = {key: (c, k) for c, k in known if k.can_read or k.public
                  for key in (c.name, c.collection_id)}
        chosen: dict[int, tuple[CommunityRef, Clearance]] = {}
        for key in flt.communities:
            if key not in by_key:
                raise NotFound(f"no community {key!r} is readable by you; see the TAXII collections list")
            chosen[by_key[key][0].id] = by_key[key]
        return sorted(chosen.values(), key=lambda ck: ck[0].id)

    def stream_latest(
        self, principal: Principal, flt: ExportFilter, *, batch: int = 2000
    ) -> Iterator[ExportRow]:
        """Newest visible version of each matching object, in STIX id order, each id once.

        Reads keyset batches per community (constant memory) and merges communities by
        id; an id present in several communities is sent once, in its newest version.
        """
        for name, rows in self.export_batches(principal, flt, batch=batch, by_added=False):
            for r in rows:
                yield ExportRow(r[0], r[1], r[2], r[3], r[4], r[5], name, r[6])

    def export_batches(
        self, principal: Principal, flt: ExportFilter, *, batch: int = 2000, raw: bool = True,
        by_added: bool = True, names: bool = True, labels: bool = True, times: bool = True,
        row_ids: bool = False,
        now_us: int | None = None, fails: Callable[[tuple[Any, ...]], bool] | None = None,
        on_snapshot: Callable[[Connection], None] | None = None,
    ) -> Iterator[RowBatch]:
        """The rows of :meth:`stream_latest` as (community name, batch of plain tuples).

        The export service's hot path: a tuple per row as the driver returns it
        (see :data:`RowBatch`), no object per row. Several communities are read by STIX
        id and merged by id; one community (the common case) is read, with ``by_added``,
        in the order its objects were added: the order rows are stored in, so the table
        is read sequentially instead of at random (at 10^6 objects a third of the
        statement time). ``raw``, ``names``, ``labels``, ``times``, ``row_ids``: read the
        JSON; the name column; the labels column; the times column (else None in their
        place); the row's id (else 0). ``now_us``: the time the caller filters expiry at
        (:class:`~commonwatch.services.export_rows.RowFilter`); where several
        organisations hold a version, the copy chosen is one that passes the filter's
        lifecycle conditions (without it, expiry is left out of the choice).
        ``fails``: those conditions on a row, to choose likewise among the communities
        that hold the same version of an id. ``on_snapshot``: called with the snapshot's
        connection once it is taken (its first statement has run), before any row is read.
        """
        with self._sessions() as s:
            # Every batch of every community is read in one snapshot of the database
            # (one read transaction): what others write meanwhile (a new copy, a deleted
            # version, a changed membership) can neither repeat an object nor hide one.
            conn = snapshot(s)
            chosen = self.export_communities(principal, flt, conn)
            if on_snapshot is not None:
                on_snapshot(conn)
            by_added = by_added and len(chosen) == 1
            streams = [self._community_rows(conn, c, k, flt, batch, raw=raw, by_added=by_added,
                                            names=names, labels=labels, times=times, row_ids=row_ids,
                                            now_us=now_us)
                       for c, k in chosen]
            if len(streams) == 1:
                yield from streams[0]
                return
            yield from _merge_communities(streams, batch, fails)

    @staticmethod
    def _community_rows(
        conn: Connection, community: CommunityRef, clearance: Clearance,
        flt: ExportFilter, batch: int, *, raw: bool, by_added: bool, names: bool, labels: bool,
        times: bool, row_ids: bool, now_us: int | None,
    ) -> Iterator[RowBatch]:
        after: str | int | None = None
        key = 2 if by_added else 0  # the row's date_added_us or stix_id
        ceiling = int(flt.tlp_ceiling)
        name = community.name
        while True:
            shape = sql.ExportShape(
                sight=sql.Sight.of(clearance), types=bool(flt.types),
                sectors=bool(flt.producer_sectors), since=flt.since_us is not None,
                cursor=after is not None, raw=raw, by_added=by_added, names=names, labels=labels,
                times=times, row_ids=row_ids, live=not flt.include_revoked,
                current=not flt.include_expired and now_us is not None,
                confident=flt.min_confidence is not None,
            )
            params = {
                **sql.sight_params(clearance), "community": community.id, "ceiling": ceiling,
                "types": list(flt.types), "sectors": list(flt.producer_sectors),
                "since": flt.since_us, "after": after, "limit": batch, "now": now_us,
                "min_confidence": flt.min_confidence,
            }
            rows = _driver_rows(conn, sql.export_query(shape), params)
            if rows:
                yield name, rows
            if len(rows) < batch:
                return
            after = rows[-1][key]


def _driver_rows(conn: Connection, statement: Any, params: dict[str, Any]) -> list[tuple[Any, ...]]:
    """All rows of ``statement`` as the driver's own tuples.

    SQLAlchemy still compiles (cached) and binds the statement; only the per-row
    result objects are skipped: the export columns (integers, text, the JSON bytes)
    need no result processing on either dialect.
    """
    result = conn.execute(statement, params)
    try:
        return cast(list[tuple[Any, ...]], result.cursor.fetchall())
    finally:
        result.close()


def _merge_communities(
    streams: list[Iterator[RowBatch]], batch: int,
    fails: Callable[[tuple[Any, ...]], bool] | None = None,
) -> Iterator[RowBatch]:
    """Several communities' batches merged by (STIX id, newest version first), each id once.

    Each stream holds an id at most once, in id order. Of two versions of one id the
    newer wins, of two equal versions one that ``fails`` does not (an export's lifecycle
    filters, as within a community), then the community read first. Rows pass through in
    runs: the rows of one stream before the next id any other stream holds are sliced
    out at once, so a large community merged with small ones costs about what reading
    it alone costs. Batches come out as they would row by row: a new one whenever the
    community changes or ``batch`` rows are gathered.
    """
    heads: list[_Head] = []
    for order, stream in enumerate(streams):
        head = _Head(order, stream)
        if head.load():
            heads.append(head)
    current: str | None = None
    out: list[tuple[Any, ...]] = []
    while heads:
        first = min(heads, key=_Head.key)
        others = [h for h in heads if h is not first]
        bound = min((h.ids[h.pos] for h in others), default=None)
        if bound is not None and first.ids[first.pos] == bound:
            # The same id in several communities: the newest version, the earliest community.
            tied = [h for h in heads if h.ids[h.pos] == bound]
            winner = min(tied, key=_Head.key if fails is None else
                         lambda h: (-h.rows[h.pos][1], fails(h.rows[h.pos]), h.order))
            name, rows = winner.name, [winner.rows[winner.pos]]
            for h in tied:
                h.pos += 1
        else:
            end = len(first.ids) if bound is None else bisect.bisect_left(first.ids, bound, first.pos)
            name, rows = first.name, first.rows[first.pos:end]
            first.pos = end
        while rows:
            if name != current or len(out) >= batch:
                if out and current is not None:
                    yield current, out
                current, out = name, []
            room = batch - len(out)
            out.extend(rows[:room])
            rows = rows[room:]
        heads = [h for h in heads if h.pos < len(h.ids) or h.load()]
    if out and current is not None:
        yield current, out


class _Head:
    """The current batch of one community's stream in :func:`_merge_communities`."""

    __slots__ = ("order", "stream", "name", "rows", "ids", "pos")

    def __init__(self, order: int, stream: Iterator[RowBatch]) -> None:
        self.order, self.stream = order, stream
        self.name, self.pos = "", 0
        self.rows: list[tuple[Any, ...]] = []
        self.ids: list[str] = []

    def load(self) -> bool:
        """The stream's next non-empty batch; False when it is exhausted."""
        for name, rows in self.stream:
            if rows:
                self.name, self.rows, self.pos = name, list(rows), 0
                self.ids = [row[0] for row in self.rows]
                return True
        return False

    def key(self) -> tuple[str, int, int]:
        row = self.rows[self.pos]
        return row[0], -row[1], self.order


_BY_COLLECTION = sql.COMMUNITY_WITH_MEMBERSHIP.where(
    sql.COMMUNITIES.c.collection_id == bindparam("cid")
)
