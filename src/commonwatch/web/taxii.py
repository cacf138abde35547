"""TAXII 2.1 endpoints (OASIS TAXII 2.1, 10 June 2021, §4-§5).

Handlers parse the request, call one service, and render: the visibility rule and
every decision about data live in ``services/``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route

from commonwatch.domain.stix import format_timestamp
from commonwatch.domain.visibility import Principal
from commonwatch.errors import NotFound
from commonwatch.services.exchange import Exchange
from commonwatch.services.query import CommunityRef, Envelope, ObjectFilter, Page
from commonwatch.web import params
from commonwatch.web.credentials import collection_caller, principal_of, require_principal
from commonwatch.web.media import STIX_MEDIA_TYPE, TAXII_MEDIA_TYPE, TaxiiResponse

API_ROOT = "api"
TAXII_PREFIX = "/taxii2"


def _date_headers(page: Page[Any]) -> dict[str, str]:
    """X-TAXII-Date-Added-First/Last of the returned page (TAXII 2.1 §3.3.1)."""
    if not page.rows:
        return {}
    added = [r.date_added_us for r in page.rows]
    return {
        "X-TAXII-Date-Added-First": format_timestamp(min(added)),
        "X-TAXII-Date-Added-Last": format_timestamp(max(added)),
    }


def _envelope(page: Envelope) -> TaxiiResponse:
    """The envelope built from stored raw JSON without re-encoding each object."""
    head = b'{"more":true,"next":' + orjson.dumps(page.next) if page.more else b'{"more":false'
    if page.first_added_us is None or page.last_added_us is None:
        return TaxiiResponse(head + b"}")
    # One copy of the page's bytes: the envelope's head and tail go onto the first and
    # last object (the list is this response's own), then a single join.
    objects = page.objects
    objects[0] = head + b',"objects":[' + objects[0]
    objects[-1] += b"]}"
    return TaxiiResponse(b",".join(objects), headers={
        "X-TAXII-Date-Added-First": format_timestamp(page.first_added_us),
        "X-TAXII-Date-Added-Last": format_timestamp(page.last_added_us),
    })


def _collection_json(community: CommunityRef, can_read: bool, can_write: bool) -> dict[str, Any]:
    return {
        "id": community.collection_id,
        "title": community.title,
        "description": community.description,
        "can_read": can_read,
        "can_write": can_write,
        "media_types": [STIX_MEDIA_TYPE],
    }


def taxii_routes(exchange: Exchange) -> Mount:
    """The TAXII 2.1 discovery service and one API root, ``/taxii2/api/``."""
    routes: list[Route] = []
    settings = exchange.settings

    def get(path: str) -> Callable[[Callable[..., Response]], Callable[..., Response]]:
        return _register(routes, path, "GET")
    query = exchange.query

    def caller(request: Request, collection_id: str) -> Principal | None:
        """The caller; anonymous only on public collections (else 401, leaking nothing)."""
        return collection_caller(request, exchange.auth, query, collection_id)

    def anyone(request: Request) -> Principal | None:
        """The caller; anonymous only while some community is public (so that a client
        without credentials discovers the public collections), else 401."""
        principal = principal_of(request, exchange.auth)
        if principal is None and not query.collections(None):
            require_principal(request, exchange.auth)
        return principal

    @get("/")
    def discovery(request: Request) -> TaxiiResponse:
        anyone(request)
        root = str(request.base_url) + f"taxii2/{API_ROOT}/"
        return TaxiiResponse({
            "title": settings.title,
            "description": "CommonWatch threat-intelligence exchange (TAXII 2.1)",
            "default": root,
            "api_roots": [root],
        })

    @get(f"/{API_ROOT}/")
    def api_root(request: Request) -> TaxiiResponse:
        anyone(request)
        return TaxiiResponse({
            "title": settings.title,
            "description": "Each collection is one CommonWatch community.",
            "versions": [TAXII_MEDIA_TYPE],
            "max_content_length": settings.max_body_bytes,
        })

    @get(f"/{API_ROOT}/status/{{status_id}}/")
    def status(request: Request, status_id: str) -> TaxiiResponse:
        principal = require_principal(request, exchange.auth)
        return TaxiiResponse(exchange.ingest_queue.status(principal, status_id).to_json())

    @get(f"/{API_ROOT}/collections/")
    def collections(request: Request) -> TaxiiResponse:
        principal = anyone(request)
        found = query.collections(principal)
        if not found:
            return TaxiiResponse({})
        return TaxiiResponse({"collections": [
            _collection_json(c, k.can_read or k.public, k.can_write) for c, k in found
        ]})

    @get(f"/{API_ROOT}/collections/{{collection_id}}/")
    def collection(request: Request, collection_id: str) -> TaxiiResponse:
        principal = caller(request, collection_id)
        community, k = query.collection(principal, collection_id)
        return TaxiiResponse(_collection_json(community, k.can_read or k.public, k.can_write))

    @get(f"/{API_ROOT}/collections/{{collection_id}}/objects/")
    def get_objects(request: Request, collection_id: str) -> TaxiiResponse:
        principal = caller(request, collection_id)
        flt = params.parse_filter(request.query_params, params.OBJECTS, settings)
        return _envelope(query.envelope(principal, collection_id, flt))

    async def add_objects(request: Request) -> TaxiiResponse:
        collection_id = request.path_params["collection_id"]
        principal = await run_in_threadpool(require_principal, request, exchange.auth)
        body = await request.body()  # size capped by web.guard
        report = await run_in_threadpool(exchange.ingest_queue.submit, principal, collection_id, body)
        return TaxiiResponse(report.to_json(), status_code=202)

    routes.append(Route(f"/{API_ROOT}/collections/{{collection_id}}/objects/", add_objects,
                        methods=["POST"]))

    @get(f"/{API_ROOT}/collections/{{collection_id}}/objects/{{object_id}}/")
    def get_object(request: Request, collection_id: str, object_id: str) -> TaxiiResponse:
        principal = caller(request, collection_id)
        flt = params.parse_filter(request.query_params, params.OBJECT, settings)
        flt = _with_id(flt, object_id)
        page = query.envelope(principal, collection_id, flt)
        if not page.objects and flt.next is None:
            raise NotFound("no object with this id is available to you")
        return _envelope(page)

    @_register(routes, f"/{API_ROOT}/collections/{{collection_id}}/objects/{{object_id}}/", "DELETE")
    def delete_object(request: Request, collection_id: str, object_id: str) -> TaxiiResponse:
        principal = require_principal(request, exchange.auth)
        flt = params.parse_filter(request.query_params, params.DELETE, settings,
                                  default_versions=params.ALL_VERSIONS)
        flt = _with_id(flt, object_id, limit=10_000_000)
        exchange.ingest.delete_object(principal, collection_id, object_id, flt)
        return TaxiiResponse(b"{}")

    @get(f"/{API_ROOT}/collections/{{collection_id}}/objects/{{object_id}}/versions/")
    def versions(request: Request, collection_id: str, object_id: str) -> TaxiiResponse:
        principal = caller(request, collection_id)
        flt = params.parse_filter(request.query_params, params.VERSIONS, settings,
                                  default_versions=params.ALL_VERSIONS)
        page = query.versions(principal, collection_id, object_id, flt)
        if not page.rows and flt.next is None:
            raise NotFound("no object with this id is available to you")
        body: dict[str, Any] = {"more": page.more}
        if page.more:
            body["next"] = page.next
        body["versions"] = [format_timestamp(r.version_us) for r in page.rows]
        return TaxiiResponse(body, headers=_date_headers(page))

    @get(f"/{API_ROOT}/collections/{{collection_id}}/manifest/")
    def manifest(request: Request, collection_id: str) -> TaxiiResponse:
        principal = caller(request, collection_id)
        flt = params.parse_filter(request.query_params, params.OBJECTS, settings)
        page = query.manifest(principal, collection_id, flt)
        body: dict[str, Any] = {"more": page.more}
        if page.more:
            body["next"] = page.next
        if page.rows:
            body["objects"] = [{
                "id": r.stix_id,
                "date_added": format_timestamp(r.date_added_us),
                "version": format_timestamp(r.version_us),
                "media_type": f"application/stix+json;version={r.spec_version}",
            } for r in page.rows]
        return TaxiiResponse(body, headers=_date_headers(page))

    return Mount(TAXII_PREFIX, routes=routes)


def _register(
    routes: list[Route], path: str, method: str
) -> Callable[[Callable[..., Response]], Callable[..., Response]]:
    """Add a synchronous handler as a plain Starlette route run in the threadpool.

    Plain routes, not FastAPI ones: TAXII handlers parse their own parameters, and
    skipping dependency resolution saves a noticeable share of a page's server time.
    """

    def decorate(handler: Callable[..., Response]) -> Callable[..., Response]:
        async def endpoint(request: Request) -> Response:
            return await run_in_threadpool(handler, request, **request.path_params)

        routes.append(Route(path, endpoint, methods=[method]))
        return handler

    return decorate


def _with_id(flt: ObjectFilter, object_id: str, limit: int | None = None) -> ObjectFilter:
    if not params.STIX_ID.match(object_id):
        raise NotFound("no object with this id is available to you")
    return replace(flt, ids=(object_id,), limit=limit or flt.limit)
