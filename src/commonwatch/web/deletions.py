"""``GET /api/collections/{collection_id}/deletions``: tombstones of deleted versions.

For consumers that copied objects (federated peers, sensors' caches) and must drop
them again: each item says which version of which object was deleted and when. The
caller sees the tombstones of versions it could see (TLP:RED ones: their producer
only); paging as TAXII does, with ``next``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from starlette.concurrency import run_in_threadpool

from commonwatch.domain.stix import format_timestamp
from commonwatch.services.exchange import Exchange
from commonwatch.web.credentials import collection_caller


def deletions_router(exchange: Exchange) -> APIRouter:
    """The routes of this module, bound to ``exchange``."""
    router = APIRouter(prefix="/api")

    @router.get("/collections/{collection_id}/deletions")
    async def deletions(
        request: Request, collection_id: str,
        next: Annotated[str | None, Query(max_length=200)] = None,
        limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
    ) -> dict[str, Any]:
        principal = await run_in_threadpool(collection_caller, request, exchange.auth, exchange.query,
                                            collection_id)
        page = await run_in_threadpool(exchange.query.deletions, principal, collection_id, next, limit)
        body: dict[str, Any] = {"more": page.more, "deletions": [
            {"id": t.stix_id, "version": format_timestamp(t.version_us),
             "deleted": format_timestamp(t.deleted_us)} for t in page.rows]}
        if page.next:
            body["next"] = page.next
        return body

    return router
