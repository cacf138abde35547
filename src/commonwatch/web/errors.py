"""The one place where errors become HTTP responses: TAXII error messages (§3.6.1).

Every error, including unknown routes, wrong methods and unexpected failures, is a
TAXII error JSON body with the TAXII content type — never HTML, never a traceback.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
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
    Unavailable,
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
    (Unavailable, 503, "Service unavailable"),
]
#: How long a client is asked to wait before it retries a request (503: busy or stopping).
RETRY_AFTER_S = 5
AUTH_CHALLENGE = {"WWW-Authenticate": 'Basic realm="CommonWatch", charset="UTF-8"'}


def error_response(status: int, title: str, description: str) -> TaxiiResponse:
    headers = AUTH_CHALLENGE if status == 401 else (
        {"Retry-After": str(RETRY_AFTER_S)} if status == 503 else None)
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



#: PostgreSQL refusing a connection for now: too many connections (for the server or
#: the role), insufficient resources, starting up or shutting down. A refusal while
#: connecting carries no SQLSTATE in the driver's error, only the server's words.
_BUSY_STATES = frozenset({"53300", "53000", "57P03"})
_BUSY_WORDS = ("database is locked", "too many connections", "remaining connection slots are reserved",
               "the database system is starting up", "the database system is shutting down")


def _busy(exc: Exception) -> bool:
    """The database cannot serve now but will shortly: every pooled connection is in use
    (streaming exports each hold one), SQLite's write lock stayed held past the busy
    timeout, or PostgreSQL refuses a new connection for now."""
    if isinstance(exc, PoolTimeout):
        return True
    if not isinstance(exc, OperationalError):
        return False
    words = str(exc.orig)
    return getattr(exc.orig, "sqlstate", None) in _BUSY_STATES or any(w in words for w in _BUSY_WORDS)


async def handle_unexpected(_request: Request, exc: Exception) -> Response:
    if _busy(exc):
        log.warning("database busy: %s", type(exc).__name__)
        return error_response(503, "Service unavailable",
                              f"the exchange is busy; retry in {RETRY_AFTER_S} seconds")
    log.exception("unexpected error", exc_info=exc)
    return error_response(500, "Server error", "the server could not complete the request")
