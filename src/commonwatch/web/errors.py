"""The one place where errors become HTTP responses: TAXII error messages (§3.6.1).

Every error, including unknown routes, wrong methods and unexpected failures, is a
TAXII error JSON body with the TAXII content type — never HTML, never a traceback.
"""

from __future__ import annotations

import logging
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from commonwatch.errors import (
    AuthenticationRequired,
    CommonWatchError,
    Conflict,
    InputError,
    InputTooLarge,
    NotFound,
    PermissionDenied,
)
from commonwatch.web.media import TaxiiResponse

log = logging.getLogger("commonwatch.web")

_STATUS: list[tuple[type[CommonWatchError], int, str]] = [
    (InputTooLarge, 413, "Request too large"),
    (InputError, 400, "Bad request"),
    (AuthenticationRequired, 401, "Authentication required"),
    (PermissionDenied, 403, "Forbidden"),
    (NotFound, 404, "Not found"),
    (Conflict, 409, "Conflict"),
]
AUTH_CHALLENGE = {"WWW-Authenticate": 'Basic realm="CommonWatch", charset="UTF-8"'}


def error_response(status: int, title: str, description: str) -> TaxiiResponse:
    headers = AUTH_CHALLENGE if status == 401 else None
    body = {"title": title, "description": description, "http_status": str(status)}
    return TaxiiResponse(body, status_code=status, headers=headers)


async def handle_commonwatch_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, CommonWatchError)
    for cls, status, title in _STATUS:
        if isinstance(exc, cls):
            return error_response(status, title, exc.message)
    log.error("server error: %s", exc.message)
    return error_response(500, "Server error", "the server could not complete the request")


async def handle_http_exception(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    descriptions = {
        404: "no such resource; the TAXII discovery endpoint is /taxii2/",
        405: "this method is not allowed on this resource",
    }
    description = descriptions.get(exc.status_code, str(exc.detail))
    return error_response(exc.status_code, str(exc.detail), description)


async def handle_request_validation(_request: Request, exc: Exception) -> Response:
    """FastAPI body/parameter validation (admin API) as a 400 naming each field."""
    errors: list[dict[str, Any]] = getattr(exc, "errors", lambda: [])()
    parts = [
        f"{'.'.join(str(p) for p in e.get('loc', ()) if p != 'body') or 'body'}: {e.get('msg')}"
        for e in errors[:20]
    ]
    return error_response(400, "Bad request", "; ".join(parts) or "the request is not valid")


async def handle_unexpected(_request: Request, exc: Exception) -> Response:
    log.exception("unexpected error", exc_info=exc)
    return error_response(500, "Server error", "the server could not complete the request")
