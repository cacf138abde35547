"""JSON API routes for imports."""

from __future__ import annotations

from fastapi import APIRouter

from commonwatch.services.exchange import Exchange


def imports_router(exchange: Exchange) -> APIRouter:
    """The routes of this module, bound to ``exchange``."""
    return APIRouter()
