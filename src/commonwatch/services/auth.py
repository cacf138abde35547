"""Authentication: API tokens to principals.

Tokens are accepted as ``Authorization: Bearer <token>`` and as HTTP Basic with the
user name and the token as password, because taxii2-client and most TAXII tools
speak only Basic. Tokens are stored as SHA-256 hashes; lookups go by hash and the
final comparison is constant-time. A wrong, expired or revoked token and an unknown
user all fail the same way.
"""

from __future__ import annotations

import hmac

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from commonwatch.clock import Clock, now_us
from commonwatch.domain.visibility import Principal
from commonwatch.errors import AuthenticationRequired, NotFound
from commonwatch.services.admin import hash_token
from commonwatch.storage.models import ApiToken, Organisation, User

_BAD = "the credentials are not valid: the token is unknown, expired or revoked"
MAX_TOKEN_LENGTH = 200


class AuthService:
    """Turns a presented token into a :class:`Principal`, or refuses."""

    def __init__(self, sessions: sessionmaker[Session], clock: Clock = now_us) -> None:
        self._sessions = sessions
        self._clock = clock

    def authenticate(self, token: str, user_name: str | None = None) -> Principal:
        """The principal owning ``token``; with Basic, ``user_name`` must match too."""
        if not token or len(token) > MAX_TOKEN_LENGTH:
            raise AuthenticationRequired(_BAD)
        digest = hash_token(token)
        with self._sessions() as s:
            row = s.execute(
                select(ApiToken, User, Organisation.identity_id)
                .join(User, User.id == ApiToken.user_id)
                .join(Organisation, Organisation.id == User.org_id)
                .where(ApiToken.token_hash == digest)
            ).first()
        if row is None:
            raise AuthenticationRequired(_BAD)
        api_token, user, identity = row
        ok = hmac.compare_digest(api_token.token_hash, digest)
        if user_name is not None:
            ok &= hmac.compare_digest(user.name.encode(), user_name.encode())
        now = self._clock()
        ok &= api_token.revoked_us is None and user.active
        ok &= api_token.expires_us is None or api_token.expires_us > now
        if not ok:
            raise AuthenticationRequired(_BAD)
        return Principal(
            user_id=user.id, user_name=user.name, org_id=user.org_id,
            org_identity=identity, role=user.role,
        )

    def principal_for_user(self, user_name: str) -> Principal:
        """The principal of a user, for trusted local callers (CLI, demo) only."""
        with self._sessions() as s:
            row = s.execute(
                select(User, Organisation.identity_id)
                .join(Organisation, Organisation.id == User.org_id)
                .where(User.name == user_name)
            ).first()
        if row is None:
            raise NotFound(f"no user named {user_name!r}; see `commonwatch user list`")
        user, identity = row
        return Principal(user_id=user.id, user_name=user.name, org_id=user.org_id,
                         org_identity=identity, role=user.role)
