"""Authentication: API tokens to principals.

Tokens are accepted as ``Authorization: Bearer <token>`` and as HTTP Basic with the
user name and the token as password, because taxii2-client and most TAXII tools
speak only Basic. Tokens are stored as SHA-256 hashes; lookups go by hash and the
final comparison is constant-time. A wrong, expired or revoked token and an unknown
user all fail the same way.
"""

from __future__ import annotations

import hmac

from sqlalchemy import ColumnElement, bindparam, select
from sqlalchemy.orm import Session, sessionmaker

from commonwatch.clock import Clock, now_us
from commonwatch.domain.visibility import Principal
from commonwatch.errors import AuthenticationRequired, NotFound, PermissionDenied
from commonwatch.services.admin import hash_token
from commonwatch.storage.models import ApiToken, Organisation, User

_t, _u, _o = ApiToken.__table__.c, User.__table__.c, Organisation.__table__.c
#: Built once: an authentication costs one indexed lookup by token hash.
_BY_TOKEN_HASH = (
    select(_t.token_hash, _t.revoked_us, _t.expires_us, _u.id.label("user_id"), _u.name,
           _u.org_id, _u.role, _u.active, _o.identity_id)
    .select_from(ApiToken.__table__.join(User.__table__, _u.id == _t.user_id)
                 .join(Organisation.__table__, _o.id == _u.org_id))
    .where(_t.token_hash == bindparam("digest"))
)
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
            row = s.connection().execute(_BY_TOKEN_HASH, {"digest": digest}).first()
        if row is None:
            raise AuthenticationRequired(_BAD)
        ok = hmac.compare_digest(row.token_hash, digest)
        if user_name is not None:
            ok &= hmac.compare_digest(row.name.encode(), user_name.encode())
        ok &= row.revoked_us is None and bool(row.active)
        ok &= row.expires_us is None or row.expires_us > self._clock()
        if not ok:
            raise AuthenticationRequired(_BAD)
        return Principal(
            user_id=row.user_id, user_name=row.name, org_id=row.org_id,
            org_identity=row.identity_id, role=row.role,
        )

    def principal_for_user(self, user_name: str) -> Principal:
        """The principal of a user, for trusted local callers (CLI, demo) only."""
        return self._principal(User.name == user_name,
                               f"no user named {user_name!r}; see `commonwatch user list`")

    def principal_for_user_id(self, user_id: int) -> Principal:
        """The principal of the user with this id (envelopes it queued before a restart)."""
        return self._principal(User.id == user_id, "the user who posted it no longer exists")

    def _principal(self, which: ColumnElement[bool], missing: str) -> Principal:
        with self._sessions() as s:
            row = s.execute(
                select(User, Organisation.identity_id)
                .join(Organisation, Organisation.id == User.org_id)
                .where(which)
            ).first()
        if row is None:
            raise NotFound(missing)
        user, identity = row
        if not user.active:  # disabled: no more acting from the command line than with a token
            raise PermissionDenied(f"user {user.name!r} is disabled; `commonwatch user enable` restores it")
        return Principal(user_id=user.id, user_name=user.name, org_id=user.org_id,
                         org_identity=identity, role=user.role)
