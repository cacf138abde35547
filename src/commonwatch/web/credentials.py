"""Credentials from the Authorization header: Bearer token or HTTP Basic (user, token)."""

from __future__ import annotations

import base64
import binascii

from starlette.requests import Request

from commonwatch.domain.visibility import Principal
from commonwatch.errors import AuthenticationRequired, NotFound
from commonwatch.services.auth import AuthService
from commonwatch.services.query import QueryService

_MALFORMED = (
    "the Authorization header is malformed; use 'Bearer <token>' or HTTP Basic with "
    "your user name and token"
)


def principal_of(request: Request, auth: AuthService) -> Principal | None:
    """The authenticated caller, None when no credentials were sent."""
    header = request.headers.get("authorization")
    if header is None:
        return None
    scheme, _, value = header.partition(" ")
    scheme = scheme.lower()
    value = value.strip()
    if scheme == "bearer" and value:
        return auth.authenticate(value)
    if scheme == "basic" and value:
        try:
            decoded = base64.b64decode(value, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise AuthenticationRequired(_MALFORMED) from None
        user, sep, token = decoded.partition(":")
        if not sep:
            raise AuthenticationRequired(_MALFORMED)
        return auth.authenticate(token, user_name=user)
    raise AuthenticationRequired(_MALFORMED)


def require_principal(request: Request, auth: AuthService) -> Principal:
    principal = principal_of(request, auth)
    if principal is None:
        raise AuthenticationRequired(
            "this resource needs credentials: send 'Authorization: Bearer <token>' or HTTP "
            "Basic with your user name and token"
        )
    return principal


def collection_caller(
    request: Request, auth: AuthService, query: QueryService, collection_id: str
) -> Principal | None:
    """The caller of a collection's resource; anonymous (None) only on a public
    collection, else 401, whether the collection is private or missing (which must not
    be told apart)."""
    principal = principal_of(request, auth)
    if principal is None:
        try:
            _, clearance = query.collection(None, collection_id)
        except NotFound:
            clearance = None
        if clearance is None or not clearance.public:
            require_principal(request, auth)
    return principal
