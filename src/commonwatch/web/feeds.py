"""Pull feeds over HTTP: ``GET /feeds/{name}`` for firewalls and sensors, plus feed admin.

Firewalls (external dynamic lists), DNS resolvers and IDS sensors fetch a list on a
schedule, the way CIF feeds and EDLs work. Credentials are the API token as
``Authorization: Bearer`` or HTTP Basic (user name, token), as on the TAXII routes.
Conditional requests (RFC 9110 §13): ``If-None-Match`` against the ETag, else
``If-Modified-Since`` against Last-Modified; both are answered from the feed's
stored state without rendering anything, so an unchanged feed costs two small
queries. A changed feed streams: rows are read, formatted and sent batch by batch.
"""

from __future__ import annotations

import datetime as dt
from email.utils import format_datetime, parsedate_to_datetime
from typing import Any

import orjson
from fastapi import APIRouter, Request
from pydantic import Field
from starlette.responses import Response, StreamingResponse

from commonwatch.services.exchange import Exchange
from commonwatch.services.export import FORMATS, prepended
from commonwatch.services.export_filters import FormatOptions, build_filter, filter_from_json
from commonwatch.services.query import ExportFilter
from commonwatch.storage.models import Feed
from commonwatch.web.bodies import StrictBody
from commonwatch.web.credentials import require_principal
from commonwatch.web.spool import Spool


class FeedDefinition(StrictBody):
    """What a feed exports: ``PUT /api/feeds/{name}`` replaces it whole."""

    format: str = Field(max_length=40)
    description: str = Field(default="", max_length=2000)
    communities: list[str] = Field(default_factory=list, max_length=100)
    types: list[str] = Field(default_factory=lambda: ["indicator"], max_length=100)
    tlp: str = Field(default="amber", max_length=20)
    since: str | None = Field(default=None, max_length=40)
    sectors: list[str] = Field(default_factory=list, max_length=10)
    min_confidence: int | None = None
    min_score: float | None = None
    include_warninglisted: bool = False
    include_revoked: bool = False
    include_expired: bool = False
    rpz_target: str = Field(default=".", max_length=253)
    rpz_wildcard: bool = True
    url_strip_scheme: bool = False

    def parts(self) -> tuple[ExportFilter, FormatOptions]:
        """The export filter and format options this definition states."""
        flt = build_filter(
            communities=self.communities, types=self.types, tlp=self.tlp, since=self.since,
            sectors=self.sectors, min_confidence=self.min_confidence, min_score=self.min_score,
            include_warninglisted=self.include_warninglisted, include_revoked=self.include_revoked,
            include_expired=self.include_expired,
        )
        return flt, FormatOptions(self.rpz_target, self.rpz_wildcard, self.url_strip_scheme)


class FeedIn(FeedDefinition):
    """A new feed: its name and definition."""

    name: str = Field(max_length=100)


def feed_json(feed: Feed) -> dict[str, Any]:
    filter_from_json(feed.filter_json)  # refuses a definition this version cannot read
    return {"name": feed.name, "format": feed.format, "description": feed.description,
            "filter": orjson.loads(feed.filter_json), "url": f"/feeds/{feed.name}"}


def _http_date(us: int) -> str:
    return format_datetime(dt.datetime.fromtimestamp(us // 1_000_000, tz=dt.UTC), usegmt=True)


def _validator_headers(etag: str, last_modified_us: int | None) -> dict[str, str]:
    # private: the content depends on who asks; no-cache: caches must revalidate.
    headers = {"ETag": etag, "Cache-Control": "private, no-cache"}
    if last_modified_us is not None:  # None: its second dated another body too
        headers["Last-Modified"] = _http_date(last_modified_us)
    return headers


def _not_modified(request: Request, etag: str, last_modified_us: int | None) -> bool:
    """RFC 9110 §13.1.2 / §13.1.3: If-None-Match wins; If-Modified-Since only without it,
    and only when the feed has a Last-Modified.

    If-None-Match may come as several field lines: they form one list (§5.3).
    """
    lines = request.headers.getlist("if-none-match")
    if lines:
        tags = {t.strip().removeprefix("W/") for t in ",".join(lines).split(",")}
        return "*" in tags or etag in tags
    ims = request.headers.get("if-modified-since")
    if ims is None or last_modified_us is None:
        return False
    try:
        since = parsedate_to_datetime(ims)
    except (TypeError, ValueError):
        return False  # an invalid date is ignored (§13.1.3)
    if since.tzinfo is None:
        since = since.replace(tzinfo=dt.UTC)
    return last_modified_us // 1_000_000 <= int(since.timestamp())


def _any_etag(request: Request) -> bool:
    """``If-None-Match: *``: not modified whenever the feed exists (RFC 9110 §13.1.2),
    even before this user's first fetch."""
    return any(t.strip() == "*" for line in request.headers.getlist("if-none-match")
               for t in line.split(","))


class _ClosingStream(StreamingResponse):
    """A spooled body (:class:`~commonwatch.web.spool.Spool`) closed however the
    response ends. When a client disconnects mid-body, the server cancels the sending
    task; closing the spool stops the render at once (and gives its database connection
    back) instead of letting it run on for nobody."""

    def __init__(self, spool: Spool, **kwargs: Any) -> None:
        super().__init__(iter(spool), **kwargs)
        self._spool = spool

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._spool.close()


def _head_answer(media_type: str, etag: str, last_modified_us: int | None) -> Response:
    """The headers of the GET without its body: no length either (a GET streams)."""
    head = Response(status_code=200, media_type=media_type,
                    headers=_validator_headers(etag, last_modified_us))
    del head.headers["content-length"]
    return head


def feeds_router(exchange: Exchange) -> APIRouter:
    """The routes of this module, bound to ``exchange``."""
    router = APIRouter()
    service = exchange.feeds

    @router.api_route("/feeds/{name}", methods=["GET", "HEAD"], response_model=None)
    def get_feed(request: Request, name: str) -> Response:
        """The feed, or 304; HEAD answers the headers of the GET (RFC 9110 §9.3.2)."""
        principal = require_principal(request, exchange.auth)
        feed = service.get_feed(principal, name)
        etag, last_modified, current = service.validators(principal, feed)
        if (current or _any_etag(request)) and _not_modified(request, etag, last_modified):
            return Response(status_code=304, headers=_validator_headers(etag, last_modified))
        if current and request.method == "HEAD":  # the stored validators are the GET's
            return _head_answer(FORMATS[feed.format], etag, last_modified)
        # A HEAD of a changed feed renders it like a GET (the server sends no body), so
        # that the validators it answers are the ones the next GET finds stored.
        export, etag, last_modified = service.render_feed(principal, feed)
        if request.method == "HEAD":
            # Rendered whole here, the body dropped: the state is stored before the answer,
            # so the next GET finds these validators even if this client hangs up at once.
            for _ in export.chunks:
                pass
            return _head_answer(export.media_type, etag, last_modified)

        chunks = iter(export.chunks)
        # The first chunk is made before the status line goes out: the export's database
        # connections are taken now, so a busy pool is a 503, not a 200 cut short.
        try:
            first = next(chunks, "")
            # The rest is rendered ahead of the client (a slow one holds no connection).
            spool = Spool(prepended([first], chunks))
        except BaseException:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
            raise
        return _ClosingStream(spool, media_type=export.media_type,
                              headers=_validator_headers(etag, last_modified))

    @router.get("/api/feeds")
    def list_feeds(request: Request) -> list[dict[str, Any]]:
        principal = require_principal(request, exchange.auth)
        return [feed_json(f) for f in service.list_feeds(principal)]

    @router.post("/api/feeds", status_code=201)
    def create_feed(request: Request, body: FeedIn) -> dict[str, Any]:
        principal = require_principal(request, exchange.auth)
        flt, options = body.parts()
        feed = service.create_feed(principal, body.name, body.format, flt, options, body.description)
        return feed_json(feed)

    @router.put("/api/feeds/{name}")
    def redefine_feed(request: Request, name: str, body: FeedDefinition) -> dict[str, Any]:
        principal = require_principal(request, exchange.auth)
        flt, options = body.parts()
        return feed_json(service.redefine_feed(principal, name, body.format, flt, options, body.description))

    @router.get("/api/feeds/{name}")
    def show_feed(request: Request, name: str) -> dict[str, Any]:
        return feed_json(service.get_feed(require_principal(request, exchange.auth), name))

    @router.delete("/api/feeds/{name}", status_code=204, response_model=None)
    def delete_feed(request: Request, name: str) -> Response:
        service.delete_feed(require_principal(request, exchange.auth), name)
        return Response(status_code=204)

    return router
