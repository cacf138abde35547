"""The ASGI application: TAXII 2.1 server and admin JSON API over one Exchange."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException

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
from commonwatch.web.taxii import taxii_routes


def create_app(exchange: Exchange) -> FastAPI:
    """Build the application; the caller owns ``exchange`` and closes it."""
    app = FastAPI(
        title=exchange.settings.title, version=__version__,
        docs_url="/api/docs", openapi_url="/api/openapi.json", redoc_url=None,
    )
    app.state.exchange = exchange
    app.router.routes.append(taxii_routes(exchange))
    app.include_router(admin_router(exchange))
    app.include_router(imports_router(exchange))
    app.include_router(feeds_router(exchange))
    app.include_router(lookup_router(exchange))
    app.include_router(deletions_router(exchange))
    app.include_router(sightings_router(exchange))
    app.add_exception_handler(CommonWatchError, handle_commonwatch_error)
    app.add_exception_handler(HTTPException, handle_http_exception)
    app.add_exception_handler(RequestValidationError, handle_request_validation)
    app.add_exception_handler(Exception, handle_unexpected)
    app.add_middleware(RequestGuard, max_body_bytes=exchange.settings.max_body_bytes)
    return app
