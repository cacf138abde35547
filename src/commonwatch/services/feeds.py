"""Pull feeds: an organisation's named export definitions, fetched by its devices.

Pull feeds are named, stored export definitions of an organisation, always rendered
with the requesting user's own visibility (through :meth:`ExportService.export`). Their
validators (ETag, Last-Modified) are computed without rendering; see
:meth:`FeedService.validators` and docs/export.md.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from dataclasses import replace

from sqlalchemy import Connection, delete, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from commonwatch import __version__
from commonwatch.clock import Clock, now_us
from commonwatch.domain.visibility import WRITE_ROLES, Principal
from commonwatch.errors import (
    Conflict,
    InputTooLarge,
    InvalidParameter,
    NotFound,
    PermissionDenied,
)
from commonwatch.services.export import Export, ExportService, check_format, check_options, prepended
from commonwatch.services.export_filters import (
    DEFAULT_OPTIONS,
    FormatOptions,
    filter_from_json,
    filter_to_json,
)
from commonwatch.services.query import ExportFilter, QueryService
from commonwatch.storage import objects as objects_repo
from commonwatch.storage.models import (
    Feed,
    FeedState,
    Organisation,
)

_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,99}")


class FeedService:
    """Pull feeds over the visibility-filtered query service, rendered by the export service."""

    def __init__(
        self, sessions: sessionmaker[Session], query: QueryService, export: ExportService, *,
        clock: Clock = now_us,
    ) -> None:
        """``export`` renders the feeds; its warninglists are the ones digested into their
        ETags (the lists their content was filtered with)."""
        self._sessions = sessions
        self._query = query
        self._export = export
        self._clock = clock

    # -- feed definitions -----------------------------------------------------------------
    def create_feed(
        self, principal: Principal, name: str, fmt: str, flt: ExportFilter,
        options: FormatOptions = DEFAULT_OPTIONS, description: str = "",
    ) -> Feed:
        self._check_definition(principal, "creating", name, fmt, options, description)
        now = self._clock()
        feed = Feed(org_id=principal.org_id, name=name, format=fmt, description=description,
                    filter_json=filter_to_json(flt, options), created_us=now, updated_us=now)
        try:
            with self._sessions() as s, s.begin():
                # The communities it names are held first (a rename or delete of one waits,
                # or has committed): the feed never names a community that is gone.
                objects_repo.hold_communities(s.connection(), flt.communities)
                self._query.export_communities(principal, flt, s.connection())
                s.add(feed)
        except IntegrityError:
            raise Conflict(f"your organisation already has a feed named {name!r}") from None
        return feed

    def redefine_feed(
        self, principal: Principal, name: str, fmt: str, flt: ExportFilter,
        options: FormatOptions = DEFAULT_OPTIONS, description: str = "",
    ) -> Feed:
        """Replace a feed's definition (format, filter, options, description) at once; its
        name, so the URL sensors fetch, stays. Its ETag and Last-Modified change, so the
        next conditional GET of every caller gets the new content."""
        self._check_definition(principal, "changing", name, fmt, options, description)
        with self._sessions() as s, s.begin():
            # The communities it will name, then the feed itself, are held before it is
            # read (SQLite: the write lock; PostgreSQL: their rows, in the order a community
            # rename takes them): two redefinitions, a rename or a delete of the feed
            # meanwhile commit wholly before or after this one.
            objects_repo.hold_communities(s.connection(), flt.communities)
            mine = (Feed.org_id == principal.org_id, Feed.name == name)
            s.execute(update(Feed).where(*mine).values(name=Feed.name)
                      .execution_options(synchronize_session=False))
            feed = s.scalar(select(Feed).where(*mine).with_for_update())
            if feed is None:
                raise NotFound(f"your organisation has no feed named {name!r}")
            self._query.export_communities(principal, flt, s.connection())
            feed.format, feed.description = fmt, description
            feed.filter_json = filter_to_json(flt, options)
            feed.updated_us = max(self._clock(), feed.updated_us + 1)
            s.flush()
            return feed

    @staticmethod
    def _check_definition(
        principal: Principal, doing: str, name: str, fmt: str, options: FormatOptions, description: str,
    ) -> None:
        if principal.role not in WRITE_ROLES:
            raise PermissionDenied(f"{doing} a feed needs a role that may write (analyst or above)")
        if not _NAME.fullmatch(name):
            raise InvalidParameter(
                f"feed name {name!r} is not valid: 1-100 of a-z, 0-9, '.', '_', '-', "
                "starting with a letter or digit")
        check_format(fmt)
        check_options(options)
        if len(description) > 2000:
            raise InputTooLarge("a feed description is at most 2000 characters")
        if "\x00" in description:
            raise InvalidParameter("a feed description must not contain a NUL character")

    def list_feeds(self, principal: Principal) -> list[Feed]:
        with self._sessions() as s:
            return list(s.scalars(select(Feed).where(Feed.org_id == principal.org_id).order_by(Feed.name)))

    def get_feed(self, principal: Principal, name: str) -> Feed:
        if not _NAME.fullmatch(name):  # no such feed can exist (nor reach the database)
            raise NotFound(f"your organisation has no feed named {name!r}")
        with self._sessions() as s:
            feed = s.scalar(select(Feed).where(Feed.org_id == principal.org_id, Feed.name == name))
        if feed is None:
            raise NotFound(f"your organisation has no feed named {name!r}")
        return feed

    def delete_feed(self, principal: Principal, name: str) -> None:
        if principal.role not in WRITE_ROLES:
            raise PermissionDenied("deleting a feed needs a role that may write (analyst or above)")
        feed = self.get_feed(principal, name)
        with self._sessions() as s, s.begin():
            s.execute(delete(FeedState).where(FeedState.feed_id == feed.id))
            s.execute(delete(Feed).where(Feed.id == feed.id))

    # -- pull feeds -----------------------------------------------------------------------
    def validators(self, principal: Principal, feed: Feed) -> tuple[str, int | None, bool]:
        """(ETag, Last-Modified µs, current) of ``feed`` for ``principal``, without rendering.

        ``current`` says the stored state still describes the content, so a matching
        If-None-Match / If-Modified-Since may be answered 304. Last-Modified is None when
        its second also dated another render's body (see :meth:`render_feed`): the feed is
        then answered without it, and If-Modified-Since is not evidence.
        """
        _, etag, anchor, current = self._validators(principal, feed)
        return etag, anchor, current

    def _validators(self, principal: Principal, feed: Feed) -> tuple[str, str, int | None, bool]:
        base = self._base_digest(principal, feed)
        state = self._state(feed.id, principal.user_id)
        if self._current(state, base):
            assert state is not None
            return base, _etag(base, state.anchor_us), None if state.shared else state.anchor_us, True
        # A new content generation; a render reserves its own anchor (:meth:`_reserve`).
        last = None if state is None else state.reserved_us or state.anchor_us
        now = self._clock()
        anchor = now if last is None else max(now, last + 1)
        return base, _etag(base, anchor), anchor, False

    def _state(self, feed_id: int, user_id: int) -> FeedState | None:
        with self._sessions() as s:
            return s.get(FeedState, (feed_id, user_id))

    def _current(self, state: FeedState | None, base: str) -> bool:
        """The stored state still describes the content of ``base``."""
        return state is not None and state.base == base and (
            state.next_change_us is None or self._clock() < state.next_change_us)

    def render_feed(self, principal: Principal, feed: Feed) -> tuple[Export, str, int | None]:
        """The feed's export, ETag and Last-Modified; the state is saved when the stream ends.

        Saving at the end records the earliest ``valid_until`` seen, which only a full
        render can know; a render cut short saves nothing and the next request renders.

        When the stored state is current, the body carries its validators only if the
        export's snapshot has the same base (read in the snapshot itself): a write that
        landed between the check and the snapshot makes it a new generation, so two
        bodies never share an ETag. A new generation first reserves its anchor (the time
        its ETag and Last-Modified are made of): anchors strictly increase per feed and
        user; when two renders (overlapping, or one after the other within a second)
        take anchors in the same second, Last-Modified is left out, since
        If-Modified-Since (one-second resolution) could not tell their bodies apart.
        Only the newest reservation saves its state, under the base read before the
        snapshot (if a write came between, the next request simply renders again).
        """
        flt, options = filter_from_json(feed.filter_json)
        base = self._base_digest(principal, feed)
        state = self._state(feed.id, principal.user_id)
        current = self._current(state, base)
        anchor, shared = (0, False) if current else self._reserve(feed.id, principal.user_id)
        steady: list[bool] = []

        def check(conn: Connection) -> None:
            steady.append(not current or self._base_digest(principal, feed, conn) == base)

        # A feed's skip counts are never shown: the reasons are not worked out.
        export = self._export.export(principal, feed.format, flt, options, explain=False, on_snapshot=check)
        chunks = iter(export.chunks)
        head: list[str] = []
        try:
            while not steady and (chunk := next(chunks, None)) is not None:
                head.append(chunk)  # a format's opening lines come before its first row
            if current and not steady[0]:
                current = False
                anchor, shared = self._reserve(feed.id, principal.user_id)
        except BaseException:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
            raise
        if current:
            assert state is not None
            modified = None if state.shared else state.anchor_us
            return replace(export, chunks=prepended(head, chunks)), _etag(base, state.anchor_us), modified

        def body() -> Iterator[str]:
            yield from prepended(head, chunks)
            self._save_state(feed.id, principal.user_id, base, anchor, shared, export.stats.next_change_us)

        return replace(export, chunks=body()), _etag(base, anchor), None if shared else anchor

    def _reserve(self, feed_id: int, user_id: int) -> tuple[int, bool]:
        """(anchor, shared) for a render of a new generation: the next anchor of this feed
        and user (now, or just after the newest one taken), reserved in one statement, so
        that overlapping renders never take the same one; ``shared`` when the newest one
        taken before lay in the same second."""
        now = self._clock()
        try:
            with self._sessions() as s, s.begin():
                row = s.execute(_RESERVE, {"feed": feed_id, "user": user_id, "now": now}).one()
        except IntegrityError:  # the feed was deleted meanwhile
            raise NotFound("this feed was deleted") from None
        return int(row[0]), bool(row[1])

    def _save_state(
        self, feed_id: int, user_id: int, base: str, anchor: int, shared: bool, next_change: int | None
    ) -> None:
        """Store what a full render found, if no newer render reserved an anchor since
        (its body may be newer). Runs after the body was sent: the feed deleted
        meanwhile is no error (the next request simply renders again)."""
        with self._sessions() as s, s.begin():
            s.execute(update(FeedState).where(
                FeedState.feed_id == feed_id, FeedState.user_id == user_id, FeedState.reserved_us == anchor,
            ).values(base=base, anchor_us=anchor, shared=shared, next_change_us=next_change))

    def _base_digest(self, principal: Principal, feed: Feed, conn: Connection | None = None) -> str:
        """Digest of every cheap input of a feed's content (see docs/export.md, "ETags"),
        read on ``conn`` when given (an export's snapshot)."""
        if conn is None:
            with self._sessions() as s:
                return self._base_digest(principal, feed, s.connection())
        lists = self._export.warninglists()
        digest = hashlib.sha256()
        # The caller's standing in every community it may know about (gaining or losing
        # access changes the content), and what it can see happen in those it may read: a
        # write or delete it cannot see, or a community it may not know, must not move its
        # ETag (nor tell it that something happened).
        for community, clearance, seen in self._query.activity(principal, conn):
            standing = (community.id, community.public, clearance.can_read, int(clearance.max_tlp))
            digest.update(repr((*standing, *((community.name, community.collection_id, *seen)
                                              if seen is not None else ()))).encode())
        orgs = select(Organisation.id, Organisation.name, Organisation.sector).order_by(Organisation.id)
        for org in conn.execute(orgs):
            digest.update(repr(tuple(org)).encode())
        head = (__version__, feed.id, feed.format, feed.filter_json, feed.updated_us,
                principal.org_id, principal.org_identity, lists.digest)
        digest.update(repr(head).encode())
        return digest.hexdigest()


#: The next anchor of a feed and user, taken in one statement (an upsert; its state
#: row stays "no content yet", base '', until a render saves one). Integer division by
#: 10^6 is the second on both dialects.
_RESERVE = text("""
INSERT INTO feed_states (feed_id, user_id, base, anchor_us, next_change_us, reserved_us, shared)
VALUES (:feed, :user, '', :now, NULL, :now, false)
ON CONFLICT (feed_id, user_id) DO UPDATE SET
  reserved_us = CASE WHEN COALESCE(feed_states.reserved_us, feed_states.anchor_us) >= :now
                     THEN COALESCE(feed_states.reserved_us, feed_states.anchor_us) + 1 ELSE :now END,
  shared = (CASE WHEN COALESCE(feed_states.reserved_us, feed_states.anchor_us) >= :now
                 THEN COALESCE(feed_states.reserved_us, feed_states.anchor_us) + 1 ELSE :now END) / 1000000
           = COALESCE(feed_states.reserved_us, feed_states.anchor_us) / 1000000
RETURNING reserved_us, shared
""")


def _etag(base: str, anchor: int) -> str:
    return '"' + hashlib.sha256(f"{base}:{anchor}".encode()).hexdigest()[:32] + '"'
