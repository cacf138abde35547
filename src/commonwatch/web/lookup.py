"""Lookup JSON API: ``GET /api/lookup?value=...`` and ``POST /api/lookup`` (bulk).

Both answer ``{"results": [...]}``, one result per value in the order given (see
docs/api.md for the fields). Anonymous callers see only public communities' TLP:CLEAR
objects, like every other read.
"""

from __future__ import annotations

from typing import Annotated

import orjson
from fastapi import APIRouter, Query, Request, Response
from pydantic import Field
from starlette.concurrency import run_in_threadpool

from commonwatch.errors import InvalidParameter
from commonwatch.services.exchange import Exchange
from commonwatch.services.lookup import MAX_VALUES
from commonwatch.web.bodies import StrictBody
from commonwatch.web.credentials import principal_of

#: Longest value looked up, in characters (GET and POST alike).
MAX_VALUE_CHARS = 2048


class LookupIn(StrictBody):
    values: list[Annotated[str, Field(max_length=MAX_VALUE_CHARS)]] = Field(max_length=MAX_VALUES)


def lookup_router(exchange: Exchange) -> APIRouter:
    """The routes of this module, bound to ``exchange``."""
    router = APIRouter(prefix="/api")

    def answer(request: Request, values: list[str]) -> Response:
        principal = principal_of(request, exchange.auth)
        # Encoded here, in the worker thread: FastAPI's generic encoding of 10^4 results
        # costs about as much as looking them up.
        body = orjson.dumps({"results": exchange.lookup.lookup_json(principal, values)})
        return Response(body, media_type="application/json")

    @router.get("/lookup")
    async def lookup_one(request: Request,
                         value: Annotated[list[str] | None, Query()] = None) -> Response:
        if not value:
            raise InvalidParameter("give at least one 'value' query parameter (repeat it for several)")
        if len(value) > 100:
            raise InvalidParameter("at most 100 'value' parameters; POST a JSON list for bulk lookups")
        if any(len(v) > MAX_VALUE_CHARS for v in value):  # Query(max_length) counts the list
            raise InvalidParameter(f"a 'value' is at most {MAX_VALUE_CHARS} characters")
        return await run_in_threadpool(answer, request, value)

    @router.post("/lookup")
    async def lookup_bulk(request: Request, body: LookupIn) -> Response:
        return await run_in_threadpool(answer, request, body.values)

    return router
