"""The ASGI application: TAXII 2.1 server and admin JSON API over one Exchange.

TAXII requests go to a lean Starlette application (its routes parse their own
parameters, see web/taxii.py); everything else goes to the FastAPI application of the
JSON API. Both answer errors through web/errors.py and pass the same request guard.
FastAPI's own layers (its router, exit stacks, telemetry hooks) cost more per request
than a single-object TAXII GET spends in the database, so TAXII does not go through them.
"""

from __future__ import annotations

import time
from email.utils import formatdate
from typing import Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.types import Message, Receive, Scope, Send

from commonwatch import __version__
from commonwatch.errors import CommonWatchError
from commonwatch.services.exchange import Exchange
from commonwatch.web.admin import admin_router
from commonwatch.web.deletions import deletions_router
from commonwatch.web.errors import (
    handle_commonwatch_error,
    handle_http_exception,
    handle_request_validation,
    handle_unexpected,
)
from commonwatch.web.feeds import feeds_router
from commonwatch.web.guard import RequestGuard
from commonwatch.web.imports import imports_router
from commonwatch.web.lookup import lookup_router
from commonwatch.web.sightings import sightings_router
from commonwatch.web.taxii import TAXII_PREFIX, taxii_routes

#: Database errors answered like other errors (a busy database: 503). Handled by class,
#: not as the catch-all ``Exception``: Starlette answers that one and then raises it
#: again, and the server closes the connection under the response.
DATABASE_ERRORS: dict[Any, Any] = {OperationalError: handle_unexpected, PoolTimeout: handle_unexpected}

#: How the application is served with uvicorn (``uvicorn.Config(app, **SERVER_OPTIONS)``):
#: it writes its own ``Date`` header (see :class:`CommonWatchApp`) and names no server.
SERVER_OPTIONS: dict[str, Any] = {"date_header": False, "server_header": False}


def _date_now() -> bytes:
    """The HTTP date of this second."""
    return formatdate(time.time(), usegmt=True).encode("ascii")


class CommonWatchApp:
    """The ASGI entry point: ``/taxii2`` to the TAXII application, the rest to the API.

    Every response gets its ``Date`` when its status line goes out. uvicorn's own is
    refreshed once a second, so it can be up to a second older than the moment a feed
    took its Last-Modified from, which RFC 9110 §8.8.2.1 forbids; hence
    :data:`SERVER_OPTIONS`.

    Attributes not defined here (``state``, ``routes``, ...) are the API application's.
    """

    def __init__(self, api: FastAPI, taxii: Starlette) -> None:
        self.api = api
        self.taxii = taxii

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.api(scope, receive, send)
            return

        async def dated(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                if not any(name.lower() == b"date" for name, _ in headers):
                    message = {**message, "headers": [(b"date", _date_now()), *headers]}
            await send(message)

        path = scope.get("path", "")
        if path == TAXII_PREFIX or path.startswith(TAXII_PREFIX + "/"):
            await self.taxii(scope, receive, dated)
        else:
            await self.api(scope, receive, dated)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.api, name)


def create_app(exchange: Exchange) -> CommonWatchApp:
    """Build the application; the caller owns ``exchange`` and closes it."""
    guard = Middleware(RequestGuard, max_body_bytes=exchange.settings.max_body_bytes)
    taxii = Starlette(
        routes=[taxii_routes(exchange)], middleware=[guard],
        exception_handlers={
            CommonWatchError: handle_commonwatch_error,
            HTTPException: handle_http_exception,
            **DATABASE_ERRORS,
            Exception: handle_unexpected,
        },
    )
    app = FastAPI(
        title=exchange.settings.title, version=__version__,
        docs_url="/api/docs", openapi_url="/api/openapi.json", redoc_url=None,
    )
    app.state.exchange = exchange
    app.include_router(admin_router(exchange))
    app.include_router(imports_router(exchange))
    app.include_router(feeds_router(exchange))
    app.include_router(lookup_router(exchange))
    app.include_router(deletions_router(exchange))
    app.include_router(sightings_router(exchange))
    app.add_exception_handler(CommonWatchError, handle_commonwatch_error)
    app.add_exception_handler(HTTPException, handle_http_exception)
    app.add_exception_handler(RequestValidationError, handle_request_validation)
    for error, handler in DATABASE_ERRORS.items():
        app.add_exception_handler(error, handler)
    app.add_exception_handler(Exception, handle_unexpected)
    app.add_middleware(RequestGuard, max_body_bytes=exchange.settings.max_body_bytes)
    taxii.state.exchange = exchange
    exchange.ingest_queue.recover()  # envelopes acknowledged before the last stop
    return CommonWatchApp(app, taxii)
