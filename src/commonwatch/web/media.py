"""TAXII 2.1 media types and JSON responses (TAXII 2.1 §1.6.8, §3.1)."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response

TAXII_MEDIA_TYPE = "application/taxii+json;version=2.1"
STIX_MEDIA_TYPE = "application/stix+json;version=2.1"


class TaxiiResponse(Response):
    """A TAXII JSON body with the TAXII content type, on success and on error alike."""

    media_type = TAXII_MEDIA_TYPE

    def __init__(
        self, content: Any = None, status_code: int = 200,
        headers: dict[str, str] | None = None,
    ) -> None:
        body = content if isinstance(content, bytes) else orjson.dumps(content)
        super().__init__(body, status_code=status_code, headers=headers)

    def init_headers(self, headers: Any = None) -> None:
        super().init_headers(headers)
        # Starlette appends "; charset=utf-8" to text types only; keep ours exact.
        self.raw_headers = [
            (k, TAXII_MEDIA_TYPE.encode()) if k == b"content-type" else (k, v)
            for k, v in self.raw_headers
        ]


def _media_params(item: str) -> tuple[str, dict[str, str]]:
    kind, *params = (p.strip() for p in item.split(";"))
    values = {}
    for p in params:
        key, _, value = p.partition("=")
        values[key.strip().lower()] = value.strip().strip('"')
    return kind.lower(), values


def accepts_taxii(accept: str | None) -> bool:
    """True if an Accept header admits TAXII 2.1 JSON (absent means anything)."""
    if not accept:
        return True
    for item in accept.split(","):
        kind, params = _media_params(item)
        if params.get("q") in ("0", "0.0", "0.00", "0.000"):
            continue
        if kind in ("*/*", "application/*"):
            return True
        if kind == "application/taxii+json" and params.get("version", "2.1") == "2.1":
            return True
    return False


def is_taxii_content(content_type: str | None) -> bool:
    """True if a request body is declared as TAXII 2.1 (or STIX 2.1) JSON."""
    if not content_type:
        return False
    kind, params = _media_params(content_type)
    return (
        kind in ("application/taxii+json", "application/stix+json")
        and params.get("version", "2.1") == "2.1"
    )
