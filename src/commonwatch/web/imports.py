"""JSON API route for imports: ``POST /api/import``.

The body is the file itself (any format ``commonwatch import`` reads, gzip accepted);
``community`` and ``format`` are query parameters, and the caller authenticates like on
the rest of the API (Bearer token or HTTP Basic). The body is spooled to a temporary
file as it arrives, counted against the configured limit, then imported in a worker
thread; the answer is the import summary as JSON, with ``ok`` false when any record
was rejected (the summary lists each).
"""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from commonwatch.domain.markings import parse_tlp
from commonwatch.errors import InputTooLarge, InvalidParameter
from commonwatch.formats.sources import FORMATS, Input
from commonwatch.formats.tabular import Mapping
from commonwatch.services.exchange import Exchange
from commonwatch.services.importer import ImportService
from commonwatch.web.credentials import require_principal

_SPOOL_BYTES = 8 * 1024 * 1024


def imports_router(exchange: Exchange) -> APIRouter:
    """The routes of this module, bound to ``exchange``."""
    router = APIRouter(prefix="/api")
    limit = exchange.settings.max_body_bytes

    @router.post("/import")
    async def import_file(
        request: Request, community: str, format: str = "auto", name: str = "upload",
        mapping: str | None = None, tlp: str | None = None,
    ) -> dict[str, Any]:
        principal = require_principal(request, exchange.auth)
        if format not in FORMATS:
            raise InvalidParameter(f"unknown format {format!r}; use one of {', '.join(FORMATS)}")
        parsed = Mapping.parse(mapping) if mapping else None
        level = parse_tlp(tlp) if tlp else None
        if len(name) > 200:
            raise InvalidParameter("'name' is at most 200 characters")
        with tempfile.SpooledTemporaryFile(max_size=_SPOOL_BYTES) as body:
            size = 0
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise InputTooLarge(f"the file exceeds {limit} bytes; split it into several imports")
                body.write(chunk)
            body.seek(0)

            def work() -> dict[str, Any]:
                service = ImportService(exchange.ingest, exchange.query, exchange.warninglists)
                target = service.community(principal, community)
                ctx = service.context(principal, target, timestamp=_now(), tlp=level)
                upload = Input(name, "stream", None, lambda: body)  # read once, closed after
                return service.run(principal, target, [upload], format, ctx, mapping=parsed,
                                   max_bytes=limit).to_json()

            return await run_in_threadpool(work)

    return router


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
