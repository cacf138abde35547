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
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

from sqlalchemy import ColumnElement, and_, exists, false, literal_column, or_, select, true
from sqlalchemy.orm import Session, sessionmaker

from commonwatch.domain.markings import Tlp
from commonwatch.domain.visibility import Clearance, Principal
from commonwatch.errors import InvalidParameter, NotFound, PermissionDenied
from commonwatch.storage.models import Community, Membership, ObjectRecipient, StixObject

_NOT_FOUND = "no collection with this id is available to you"
# Core tables, not ORM entities: the read path returns plain rows, never loads objects.
_OBJECTS = StixObject.__table__
_RECIPIENTS = ObjectRecipient.__table__


@dataclass(frozen=True, slots=True)
class VersionSelector:
    """TAXII ``match[version]``: any of first/last/all and explicit timestamps."""

    first: bool = False
    last: bool = True
    all: bool = False
    timestamps: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class ObjectFilter:
    """One query over a community's objects; shared by every read path."""

    added_after_us: int | None = None
    ids: tuple[str, ...] = ()
    types: tuple[str, ...] = ()
    spec_versions: tuple[str, ...] = ()
    versions: VersionSelector = field(default_factory=VersionSelector)
    limit: int = 1000
    next: str | None = None


class ObjectRow(Protocol):
    """One stored object version as the read path returns it (a database row)."""

    stix_id: str
    spec_version: str
    version_us: int
    date_added_us: int
    raw: bytes | None


@dataclass(frozen=True, slots=True)
class Page:
    """One page of rows, oldest first, with the opaque cursor to the next one."""

    rows: Sequence[ObjectRow]
    more: bool
    next: str | None


def encode_cursor(position: int) -> str:
    return base64.urlsafe_b64encode(f"cw1:{position}".encode()).decode().rstrip("=")


def decode_cursor(token: str) -> int:
    """The position in an opaque ``next`` token; InvalidParameter if it is not ours."""
    try:
        text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        tag, _, position = text.partition(":")
        if tag != "cw1":
            raise ValueError(tag)
        return int(position)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InvalidParameter(
            "the 'next' parameter is not a value this server issued; use the 'next' "
            "value of the previous page unchanged"
        ) from None


def visible(t: Any, c: Clearance) -> ColumnElement[bool]:
    """SQL form of the visibility rule for rows of alias ``t`` (docs/sharing-model.md)."""
    terms: list[ColumnElement[bool]] = []
    if c.org_id is not None:
        terms.append(t.producer_org_id == c.org_id)
    if c.can_read:
        if c.max_tlp >= Tlp.RED and c.identity_id is not None:
            r = _RECIPIENTS.c
            named = exists().where(r.object_id == t.id, r.identity_id == c.identity_id)
            terms.append(or_(t.tlp <= int(Tlp.AMBER_STRICT), named))
        else:
            terms.append(t.tlp <= int(min(c.max_tlp, Tlp.AMBER_STRICT)))
    elif c.public:
        terms.append(t.tlp == int(Tlp.CLEAR))
    if not terms:
        return false()
    return or_(*terms) if len(terms) > 1 else terms[0]


def _newer_visible(o: Any, c: Clearance, newer: bool) -> ColumnElement[bool]:
    """EXISTS a version of the same id, newer (or older), that the caller can see."""
    o2 = _OBJECTS.alias().c
    order = o2.version_us > o.version_us if newer else o2.version_us < o.version_us
    return exists().where(
        o2.community_id == o.community_id, o2.stix_id == o.stix_id, order, visible(o2, c)
    )


def _version_clause(o: Any, c: Clearance, sel: VersionSelector) -> ColumnElement[bool]:
    """TAXII ``match[version]`` among the versions the caller can see.

    ``last``: the row is the newest version overall (``is_latest``) — then it is also
    the newest visible one, since the row itself passed the visibility filter — or no
    newer version is visible. ``first``: no older version is visible.
    """
    if sel.all:
        return true()
    terms: list[ColumnElement[bool]] = []
    if sel.last:
        terms.append(or_(o.is_latest == true(), ~_newer_visible(o, c, newer=True)))
    if sel.first:
        terms.append(~_newer_visible(o, c, newer=False))
    if sel.timestamps:
        terms.append(o.version_us.in_(sel.timestamps))
    return or_(*terms) if len(terms) > 1 else terms[0]


class QueryService:
    """Reads of communities and objects, always through the visibility rule."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    # -- communities ---------------------------------------------------------------
    @staticmethod
    def _with_membership(principal: Principal | None) -> Any:
        """Communities joined with the caller's membership row (if any), in one query."""
        org_id = principal.org_id if principal is not None else -1
        return select(Community, Membership).outerjoin(
            Membership, and_(Membership.community_id == Community.id, Membership.org_id == org_id)
        )

    @staticmethod
    def _clearance(
        principal: Principal | None, community: Community, member: Membership | None
    ) -> Clearance:
        return Clearance(
            org_id=principal.org_id if principal else None,
            identity_id=principal.org_identity if principal else None,
            can_read=bool(member and member.can_read),
            can_write=bool(member and member.can_write and principal and principal.can_write),
            max_tlp=Tlp(member.max_tlp) if member else Tlp.CLEAR,
            public=community.public,
        )

    def collections(self, principal: Principal | None) -> list[tuple[Community, Clearance]]:
        """Communities the caller may know about, with what it may do in each."""
        with self._sessions() as s:
            rows = s.execute(self._with_membership(principal).order_by(Community.id)).all()
        found = [(c, self._clearance(principal, c, m)) for c, m in rows]
        return [(c, k) for c, k in found if k.sees_anything]

    def collection(
        self, principal: Principal | None, collection_id: str
    ) -> tuple[Community, Clearance]:
        """One community by collection id; NotFound if the caller may not know it."""
        with self._sessions() as s:
            return self._collection(s, principal, collection_id)

    def _collection(
        self, s: Session, principal: Principal | None, collection_id: str, *, read: bool = False
    ) -> tuple[Community, Clearance]:
        row = s.execute(
            self._with_membership(principal).where(Community.collection_id == collection_id)
        ).first()
        if row is None:
            raise NotFound(_NOT_FOUND)
        community, member = row
        clearance = self._clearance(principal, community, member)
        if not clearance.sees_anything:
            raise NotFound(_NOT_FOUND)
        if read and not (clearance.can_read or clearance.public):
            # TAXII 2.1 §5.2: can_read false forbids the object, manifest and versions reads.
            raise PermissionDenied("your membership does not allow reading this collection")
        return community, clearance

    # -- objects -------------------------------------------------------------------
    def objects(
        self, principal: Principal | None, collection_id: str, flt: ObjectFilter,
        *, with_raw: bool = True,
    ) -> Page:
        """Visible object versions matching ``flt``, in date_added order."""
        with self._sessions() as s:
            community, clearance = self._collection(s, principal, collection_id, read=True)
            o = _OBJECTS.alias("o").c
            query = select(
                o.stix_id, o.spec_version, o.version_us, o.date_added_us,
                o.raw if with_raw else literal_column("NULL").label("raw"),
            ).where(o.community_id == community.id, visible(o, clearance))
            query = query.where(*self._predicates(o, clearance, flt))
            position = decode_cursor(flt.next) if flt.next else None
            if position is not None:
                query = query.where(o.date_added_us > position)
            query = query.order_by(o.date_added_us).limit(flt.limit + 1)
            rows = cast(list[ObjectRow], s.connection().execute(query).all())
        return self._page(rows, flt.limit, lambda r: r.date_added_us)

    def versions(
        self, principal: Principal | None, collection_id: str, object_id: str,
        flt: ObjectFilter,
    ) -> Page:
        """Visible versions of one object, oldest version first (TAXII 2.1 §5.7)."""
        with self._sessions() as s:
            community, clearance = self._collection(s, principal, collection_id, read=True)
            o = _OBJECTS.alias("o").c
            query = select(
                o.stix_id, o.spec_version, o.version_us, o.date_added_us, literal_column("NULL").label("raw")
            ).where(o.community_id == community.id, o.stix_id == object_id,
                    visible(o, clearance))
            query = query.where(*self._predicates(o, clearance, flt))
            if flt.next:
                query = query.where(o.version_us > decode_cursor(flt.next))
            query = query.order_by(o.version_us).limit(flt.limit + 1)
            rows = cast(list[ObjectRow], s.connection().execute(query).all())
        return self._page(rows, flt.limit, lambda r: r.version_us)

    @staticmethod
    def _predicates(o: Any, c: Clearance, flt: ObjectFilter) -> list[ColumnElement[bool]]:
        preds: list[ColumnElement[bool]] = []
        if flt.added_after_us is not None:
            preds.append(o.date_added_us > flt.added_after_us)
        if flt.ids:
            preds.append(o.stix_id.in_(flt.ids))
        if flt.types:
            preds.append(o.type.in_(flt.types))
        if flt.spec_versions:
            preds.append(o.spec_version.in_(flt.spec_versions))
        if not flt.versions.all:
            preds.append(_version_clause(o, c, flt.versions))
        return preds

    @staticmethod
    def _page(rows: list[ObjectRow], limit: int, key: Any) -> Page:
        more = len(rows) > limit
        rows = rows[:limit]
        return Page(rows=rows, more=more, next=encode_cursor(key(rows[-1])) if more else None)

    def visible_versions(
        self, s: Session, clearance: Clearance, community_id: int, object_id: str
    ) -> list[tuple[int, int | None]]:
        """(row id, producer) of each version of ``object_id`` the caller can see."""
        o = _OBJECTS.alias("o").c
        return [
            (r[0], r[1]) for r in s.connection().execute(
                select(o.id, o.producer_org_id).where(
                    o.community_id == community_id, o.stix_id == object_id,
                    visible(o, clearance),
                )
            )
        ]


