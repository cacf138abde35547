"""Sightings quick form over HTTP: ``POST /api/sightings``.

The body names a value and a community; the answer (201) lists the STIX sightings
created, one per visible indicator stating the value (see docs/lifecycle.md). Errors
are rendered by the app's handlers: 400 bad input, 401 no credentials, 403 no write
access, 404 no visible indicator states the value (hidden ones answer the same).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Request
from pydantic import Field
from starlette.concurrency import run_in_threadpool

from commonwatch.domain.markings import parse_tlp
from commonwatch.services.exchange import Exchange
from commonwatch.services.sightings import MAX_COUNT, MAX_WHERE, Sighted
from commonwatch.web.bodies import StrictBody
from commonwatch.web.credentials import require_principal

_Timestamp = Annotated[str, Field(max_length=40)]


class SightingIn(StrictBody):
    value: str = Field(max_length=2048)
    community: str = Field(max_length=200)
    count: int = Field(default=1, ge=0, le=MAX_COUNT)
    first_seen: _Timestamp | None = None
    last_seen: _Timestamp | None = None
    where: str | None = Field(default=None, max_length=MAX_WHERE)
    anonymous: bool = False
    tlp: str | None = Field(default=None, max_length=20)


def sightings_router(exchange: Exchange) -> APIRouter:
    """The routes of this module, bound to ``exchange``."""
    router = APIRouter(prefix="/api")
    service = exchange.sightings

    def create(request: Request, body: SightingIn) -> list[Sighted]:
        principal = require_principal(request, exchange.auth)
        tlp = parse_tlp(body.tlp) if body.tlp is not None else None
        return service.sight(principal, body.community, body.value, body.count, body.first_seen,
                             body.last_seen, body.where, body.anonymous, tlp)

    @router.post("/sightings", status_code=201)
    async def post_sighting(request: Request, body: SightingIn) -> dict[str, Any]:
        created = await run_in_threadpool(create, request, body)
        return {"sightings": [s.to_json() for s in created]}

    return router
