"""Checks every TAXII request passes before a handler runs (TAXII 2.1 §1.6.8, §3.2):

* 406 when the Accept header admits no TAXII 2.1 media type,
* 415 when a POST body is not declared as TAXII 2.1 JSON,
* 413 when the declared body is larger than the configured limit (the handler also
  counts the bytes actually received, for bodies sent without a length).
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from commonwatch.web.errors import error_response
from commonwatch.web.media import TAXII_MEDIA_TYPE, accepts_taxii, is_taxii_content


class TaxiiGuard:
    """Pure ASGI middleware applied to paths under ``/taxii2/``."""

    def __init__(self, app: ASGIApp, max_body_bytes: int, prefix: str = "/taxii2") -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(self.prefix):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        response = None
        if not accepts_taxii(headers.get("accept")):
            response = error_response(
                406, "Not acceptable",
                f"this server answers only with {TAXII_MEDIA_TYPE}; set the Accept header to it",
            )
        elif scope["method"] == "POST":
            length = headers.get("content-length")
            if not is_taxii_content(headers.get("content-type")):
                response = error_response(
                    415, "Unsupported media type",
                    f"send the envelope as Content-Type: {TAXII_MEDIA_TYPE}",
                )
            elif length is not None and (not length.isdigit() or int(length) > self.max_body_bytes):
                response = error_response(
                    413, "Request too large",
                    f"the body exceeds {self.max_body_bytes} bytes; split the envelope",
                )
        if response is not None:
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)
