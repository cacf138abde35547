"""Checks every request passes before a handler runs.

TAXII requests (TAXII 2.1 §1.6.8, §3.2):

* 406 when the Accept header admits no TAXII 2.1 media type,
* 415 when a POST body is not declared as TAXII 2.1 JSON,
* 413 when the declared body is larger than the configured limit.

Every request: the body actually received is counted, so a body sent without a
length (chunked) cannot exceed the limit either — reading past it answers 413,
whatever the handler was doing. A NUL character in the path is a 404 and in the query
string a 400: no name or parameter holds one, and PostgreSQL text cannot.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from commonwatch.web.errors import error_response
from commonwatch.web.media import (
    TAXII_MEDIA_TYPE,
    TaxiiResponse,
    accepts_taxii,
    is_taxii_content,
)

#: Body limit for the JSON API, whose requests are small administrative documents.
API_BODY_LIMIT = 1024 * 1024


class _BodyLimit:
    """Counts the body as the app reads it; past the limit the app's answer becomes a 413.

    The app sees the client disconnect when the limit is crossed (so no handler ever
    gets a partial body), and whatever it answers is replaced by one 413 response.
    """

    def __init__(self, receive: Receive, send: Send, limit: int) -> None:
        self._receive, self._send, self.limit = receive, send, limit
        self.seen = 0
        self.exceeded = False
        self._answered = False

    async def receive(self) -> Message:
        if self.exceeded:
            return {"type": "http.disconnect"}
        message = await self._receive()
        if message["type"] == "http.request":
            self.seen += len(message.get("body", b""))
            if self.seen > self.limit:
                self.exceeded = True
                return {"type": "http.disconnect"}
        return message

    async def send(self, message: Message) -> None:
        if not self.exceeded:
            await self._send(message)
            return
        if not self._answered:
            self._answered = True
            response = error_response(
                413, "Request too large", f"the body exceeds {self.limit} bytes; send less per request"
            )
            await response({"type": "http"}, self._receive, self._send)


class RequestGuard:
    """Pure ASGI middleware: media types for TAXII, body size for everything."""

    def __init__(self, app: ASGIApp, max_body_bytes: int, prefix: str = "/taxii2") -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        taxii = scope["path"].startswith(self.prefix)
        upload = scope["path"] == "/api/import"  # files: the TAXII body limit applies
        limit = self.max_body_bytes if taxii or upload else API_BODY_LIMIT
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        response = self._refusal(scope["method"], scope["path"], scope["query_string"], headers, limit, taxii)
        if response is not None:
            await response(scope, receive, send)
            return
        body = _BodyLimit(receive, send, limit)
        try:
            await self.app(scope, body.receive, body.send)
        except Exception:
            if not body.exceeded:
                raise
        if body.exceeded:
            await body.send({"type": "http.response.start"})

    @staticmethod
    def _refusal(
        method: str, path: str, query: bytes, headers: dict[str, str], limit: int, taxii: bool
    ) -> TaxiiResponse | None:
        length = headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            return error_response(413, "Request too large",
                                  f"the body exceeds {limit} bytes; send less per request")
        if "\x00" in path:  # no resource has such a name (and PostgreSQL text cannot hold it)
            return error_response(404, "Not found", "no resource has a NUL character in its path")
        if b"%00" in query or b"\x00" in query:
            return error_response(400, "Bad request", "the query string holds a NUL character (%00)")
        if not taxii:
            return None
        if not accepts_taxii(headers.get("accept")):
            return error_response(
                406, "Not acceptable",
                f"this server answers only with {TAXII_MEDIA_TYPE}; set the Accept header to it",
            )
        if method == "POST" and not is_taxii_content(headers.get("content-type")):
            return error_response(
                415, "Unsupported media type",
                f"send the envelope as Content-Type: {TAXII_MEDIA_TYPE}",
            )
        return None
