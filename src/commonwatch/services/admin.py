"""Administration: organisations, users, API tokens, communities and memberships.

Used by the CLI (local operator, trusted) and by the admin JSON API (which checks the
caller's role before calling in). Every function validates its input and raises a
:class:`~commonwatch.errors.CommonWatchError` that says what to fix.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

import orjson
from sqlalchemy import delete, func, or_, select, true, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from commonwatch.clock import Clock, now_us
from commonwatch.domain.markings import Tlp
from commonwatch.domain.visibility import ROLES, SECTORS, Principal
from commonwatch.errors import Conflict, InvalidParameter, NotFound, PermissionDenied
from commonwatch.services.ingest import IngestService
from commonwatch.storage import objects as objects_repo
from commonwatch.storage.models import (
    ApiToken,
    Community,
    Feed,
    Membership,
    Organisation,
    StixObject,
    User,
)
from commonwatch.storage.tombstones import TOMBSTONES

TOKEN_PREFIX = "cw_"
#: Organisation and user names: no leading or trailing space ("Acme " would look like "Acme").
_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9 ._@+-]{0,198}[A-Za-z0-9._@+-])?$")
_COMMUNITY_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,99}$")
_COUNTRY = re.compile(r"[A-Z]{2}")
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def hash_token(token: str) -> str:
    """SHA-256 of a token: tokens carry 256 random bits, so a fast hash is enough."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """A freshly created token: ``secret`` is shown once and never stored."""

    token: ApiToken
    secret: str


def _check_text(value: str, what: str, limit: int) -> None:
    """Free text: at most ``limit`` characters, no NUL (PostgreSQL text cannot hold it)."""
    if len(value) > limit:
        raise InvalidParameter(f"{what} must be at most {limit} characters")
    if "\x00" in value:
        raise InvalidParameter(f"{what} must not contain a NUL character")


def _check_community_name(name: str) -> None:
    if not _COMMUNITY_NAME.fullmatch(name):
        raise InvalidParameter(f"community name {name!r} must be 1-100 lowercase letters, digits or hyphens")
    if _UUID.fullmatch(name):
        # Filters and feeds name a community by its name or its collection id (a UUID):
        # a name of that form could stand for another community.
        raise InvalidParameter(f"community name {name!r} has the form of a collection id; choose another")


def _check_name(value: str, what: str) -> str:
    if not _NAME.fullmatch(value):  # match() would let a trailing newline through '$'
        raise InvalidParameter(
            f"{what} {value!r} is not valid: use 1-200 letters, digits, spaces or . _ @ + -"
        )
    return value


_NEEDS_ADMIN = "this operation needs the instance 'admin' role"
_Named = TypeVar("_Named", Organisation, Community)


class AdminService:
    """Creates and changes the members, accounts and circles of the exchange."""

    def __init__(
        self, sessions: sessionmaker[Session], ingest: IngestService, clock: Clock = now_us
    ) -> None:
        self._sessions = sessions
        self._ingest = ingest
        self._clock = clock

    # -- organisations -------------------------------------------------------------
    def create_org(self, name: str, sector: str, country: str | None = None) -> Organisation:
        _check_name(name, "organisation name")
        if sector not in SECTORS:
            raise InvalidParameter(f"sector {sector!r} is not one of {', '.join(SECTORS)}")
        if country is not None and not _COUNTRY.fullmatch(country):
            raise InvalidParameter(f"country {country!r} must be an ISO 3166 alpha-2 code")
        org = Organisation(
            name=name, sector=sector, country=country,
            identity_id=f"identity--{uuid.uuid4()}", created_us=self._clock(),
        )
        self._add(org, f"an organisation named {name!r} already exists")
        return org

    def list_orgs(self) -> Sequence[Organisation]:
        with self._sessions() as s:
            return s.scalars(select(Organisation).order_by(Organisation.name)).all()

    def get_org(self, name: str) -> Organisation:
        with self._sessions() as s:
            return self._org(s, name)

    def update_org(
        self, name: str, *, new_name: str | None = None, sector: str | None = None,
        country: str | None = None,
    ) -> Organisation:
        """Rename an organisation and/or change its sector or country (``""``: none).

        Its STIX identity id stays: what it shared stays attributed to it. Exports and
        feeds name producers by their current name (feeds' ETags change with it)."""
        if new_name is not None:
            _check_name(new_name, "organisation name")
        if sector is not None and sector not in SECTORS:
            raise InvalidParameter(f"sector {sector!r} is not one of {', '.join(SECTORS)}")
        if country and not _COUNTRY.fullmatch(country):
            raise InvalidParameter(f"country {country!r} must be an ISO 3166 alpha-2 code")
        try:
            with self._sessions.begin() as s:
                org = self._locked_org(s, name)
                if new_name is not None:
                    org.name = new_name
                if sector is not None:
                    org.sector = sector
                if country is not None:
                    org.country = country or None
                s.flush()
                return org
        except IntegrityError as exc:
            raise Conflict(f"an organisation named {new_name!r} already exists") from exc

    def delete_org(self, name: str) -> None:
        """Delete an organisation that never shared anything, with its users, tokens,
        memberships and feeds (a name created by mistake). One that shared objects stays:
        they are attributed to it; remove its memberships and disable its users instead."""
        with self._sessions.begin() as s:
            org = self._locked_org(s, name)
            shared = s.scalar(select(func.count()).select_from(StixObject)
                              .where(StixObject.producer_org_id == org.id)) or 0
            # Deleted versions keep their producer (tombstones): SQLite may give a later
            # organisation this id, which must not inherit them.
            shared += s.scalar(select(func.count()).select_from(TOMBSTONES)
                               .where(TOMBSTONES.c.producer_org_id == org.id)) or 0
            if shared:
                raise Conflict(f"{name!r} shared {shared:,} object versions, which stay attributed to it; "
                               "remove its memberships (`commonwatch member remove`) and disable its "
                               "users (`commonwatch user disable`) instead")
            self._keep_an_admin_outside(s, org)
            users = select(User.id).where(User.org_id == org.id)
            s.execute(delete(ApiToken).where(ApiToken.user_id.in_(users)))
            s.execute(delete(User).where(User.org_id == org.id))
            s.execute(delete(Feed).where(Feed.org_id == org.id))
            s.execute(delete(Membership).where(Membership.org_id == org.id))
            s.delete(org)

    def org_name(self, org_id: int) -> str:
        """The name of an organisation known by id (a principal's own)."""
        with self._sessions() as s:
            org = s.get(Organisation, org_id)
        if org is None:
            raise NotFound(f"no organisation with id {org_id}")
        return org.name

    # -- users -------------------------------------------------------------------
    def create_user(self, org_name: str, name: str, role: str, *, by: Principal | None = None) -> User:
        """A new user; ``by``: the caller, when not the operator at the command line (an
        org-admin creates users of its own organisation only, and no admin)."""
        _check_name(name, "user name")
        if role not in ROLES:
            raise InvalidParameter(f"role {role!r} is not one of {', '.join(ROLES)}")
        if by is not None and not by.is_admin:
            if role == "admin":
                raise PermissionDenied(_NEEDS_ADMIN)
            # before any lookup: other organisations' names are not an org-admin's to test
            if org_name != self.org_name(by.org_id):
                raise PermissionDenied("an org-admin creates users of its own organisation only")
        with self._sessions() as s:
            org = self._org(s, org_name)
        user = User(org_id=org.id, name=name, role=role, active=True, created_us=self._clock())
        self._add(user, f"a user named {name!r} already exists")
        return user

    def list_users(self, org_name: str | None = None) -> Sequence[tuple[User, str]]:
        with self._sessions() as s:
            q = select(User, Organisation.name).join(Organisation).order_by(User.name)
            if org_name is not None:
                q = q.where(Organisation.name == org_name)
            return [(u, o) for u, o in s.execute(q).all()]

    def set_user_active(self, name: str, active: bool) -> User:
        """Enable or disable a user (a disabled user's tokens stop working at once)."""
        return self.update_user(name, active=active)

    def update_user(
        self, name: str, *, role: str | None = None, active: bool | None = None, by: Principal | None = None,
    ) -> User:
        """Change a user's role and/or enable or disable it, in one transaction; it
        applies from the user's next request. ``by``: the caller, when it is not the
        operator at the command line (see :meth:`_managed`)."""
        if role is not None and role not in ROLES:
            raise InvalidParameter(f"role {role!r} is not one of {', '.join(ROLES)}")
        with self._sessions.begin() as s:
            user = self._managed(s, name, by, role)
            if (role is not None and role != "admin") or active is False:
                self._keep_an_admin(s, user)
            if role is not None:
                user.role = role
            if active is not None:
                user.active = active
            return user

    def _managed(self, s: Session, name: str, by: Principal | None, new_role: str | None = None) -> User:
        """The user ``name``, its row and the instance admins' rows locked until the
        transaction ends, if ``by`` may manage it: an admin (or the command line, None)
        any user; an org-admin the users of its own organisation, but neither an
        instance admin nor the admin role. To an org-admin, other organisations' users do
        not exist. Checked on the locked rows, so no concurrent change (a promotion to
        admin, another admin's demotion) can slip between the check and the write.
        """
        # A no-op UPDATE takes SQLite's write lock (the transaction's first statement:
        # no snapshot read before it can go stale) and PostgreSQL's row locks.
        s.execute(update(User).where(or_(User.name == name, User.role == "admin"))
                  .values(role=User.role).execution_options(synchronize_session=False))
        user = s.scalar(select(User).where(User.name == name))
        if by is not None and not by.is_admin:
            if user is None or user.org_id != by.org_id:
                raise NotFound(f"no user named {name!r} in your organisation")
            if user.role == "admin" or new_role == "admin":
                raise PermissionDenied(_NEEDS_ADMIN)
        if user is None:
            raise NotFound(f"no user named {name!r}; see `commonwatch user list`")
        return user

    @staticmethod
    def _keep_an_admin(s: Session, user: User) -> None:
        """Refuse to take away the last active instance admin (nobody could administer
        the instance over the API any more). The admins' rows are locked (:meth:`_managed`)."""
        if user.role != "admin" or not user.active:
            return
        admins = s.scalars(select(User.id).where(User.role == "admin", User.active == true())).all()
        if not set(admins) - {user.id}:
            raise Conflict(f"{user.name!r} is the last active instance admin; "
                           "make another user admin first")

    def get_user(self, name: str) -> User:
        with self._sessions() as s:
            return self._user(s, name)

    # -- tokens ------------------------------------------------------------------
    def create_token(
        self, user_name: str, label: str = "", expires_in_days: int | None = None, *,
        by: Principal | None = None,
    ) -> IssuedToken:
        """A new token of ``user_name``, its secret shown once. ``by``: the caller, when
        it is not the operator at the command line (an org-admin mints tokens of its own
        organisation's users only, never an admin's: :meth:`_managed`)."""
        if expires_in_days is not None and not 0 < expires_in_days <= 3650:
            raise InvalidParameter("token expiry must be between 1 and 3650 days")
        _check_text(label, "token label", 200)
        secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
        now = self._clock()
        with self._sessions.begin() as s:
            user = self._managed(s, user_name, by)
            token = ApiToken(
                user_id=user.id, token_hash=hash_token(secret), prefix=secret[:10], label=label,
                created_us=now, revoked_us=None,
                expires_us=None if expires_in_days is None else now + expires_in_days * 86_400_000_000,
            )
            s.add(token)
        return IssuedToken(token=token, secret=secret)

    def list_tokens(self, user_name: str | None = None) -> Sequence[tuple[ApiToken, str]]:
        with self._sessions() as s:
            q = select(ApiToken, User.name).join(User).order_by(ApiToken.id)
            if user_name is not None:
                q = q.where(User.name == user_name)
            return [(t, u) for t, u in s.execute(q).all()]

    def revoke_token(self, token_id: int) -> ApiToken:
        if not 0 < token_id < 2**63:  # no such id, and beyond what the database can compare
            raise NotFound(f"no token with id {token_id}; see `commonwatch token list`")
        with self._sessions.begin() as s:
            token = s.get(ApiToken, token_id)
            if token is None:
                raise NotFound(f"no token with id {token_id}; see `commonwatch token list`")
            if token.revoked_us is None:
                token.revoked_us = self._clock()
            return token

    # -- communities ---------------------------------------------------------------
    def create_community(
        self, name: str, title: str | None = None, description: str = "",
        default_tlp: Tlp = Tlp.AMBER, public: bool = False,
    ) -> Community:
        _check_community_name(name)
        _check_text(title or "", "community title", 200)
        _check_text(description, "community description", 10_000)
        community = Community(
            name=name, collection_id=str(uuid.uuid4()), title=title or name,
            description=description, default_tlp=int(default_tlp), public=public,
            last_added_us=0, created_us=self._clock(),
        )
        self._add(community, f"a community named {name!r} already exists")
        self._ingest.publish_system_objects(community.id)
        return community

    def list_communities(self) -> Sequence[Community]:
        with self._sessions() as s:
            return s.scalars(select(Community).order_by(Community.name)).all()

    def get_community(self, name: str) -> Community:
        with self._sessions() as s:
            return self._community(s, name)

    def update_community(
        self, name: str, *, new_name: str | None = None, title: str | None = None,
        description: str | None = None, public: bool | None = None,
    ) -> Community:
        """Rename a community and/or change its title, description or public flag.

        Its TAXII collection id stays, so clients keep their URLs; feeds that name it by
        its old name are changed to the new one in the same transaction. A community's
        default TLP is not changed here: the TLP of every unmarked object was settled
        with it when the object was stored."""
        if new_name is not None:
            _check_community_name(new_name)
        _check_text(title or "", "community title", 200)
        _check_text(description or "", "community description", 10_000)
        try:
            with self._sessions.begin() as s:
                community = self._locked_community(s, name)
                if new_name is not None and new_name != name:
                    self._rename_in_feeds(s, name, new_name)
                    community.name = new_name
                if title is not None:
                    community.title = title or community.name
                if description is not None:
                    community.description = description
                if public is not None:
                    community.public = public
                s.flush()
                return community
        except IntegrityError as exc:
            raise Conflict(f"a community named {new_name!r} already exists") from exc

    def _rename_in_feeds(self, s: Session, old: str, new: str) -> None:
        """Feed filters that name community ``old`` name ``new`` instead (their ETags change)."""
        # Held and read as committed (a redefinition meanwhile is rewritten, not undone).
        naming = select(Feed).where(Feed.filter_json.contains(f'"{old}"')).order_by(Feed.id)
        for feed in s.scalars(naming.with_for_update()):
            flt = orjson.loads(feed.filter_json)
            if old in flt.get("communities", ()):
                flt["communities"] = [new if c == old else c for c in flt["communities"]]
                feed.filter_json = orjson.dumps(flt).decode()
                feed.updated_us = self._clock()

    def delete_community(self, name: str) -> None:
        """Delete a community no member shared anything in, with its memberships (one
        created by mistake). Refused while objects or feeds depend on it."""
        with self._sessions.begin() as s:
            community = self._locked_community(s, name)
            shared = s.scalar(select(func.count()).select_from(StixObject).where(
                StixObject.community_id == community.id, StixObject.producer_org_id.is_not(None)))
            if shared:
                raise Conflict(f"community {name!r} holds {shared:,} object versions shared by members; "
                               "remove its memberships instead to close it")
            naming = sorted(f.name for f in s.scalars(select(Feed)) if {name, community.collection_id}
                            & set(orjson.loads(f.filter_json).get("communities", ())))
            if naming:
                raise Conflict(f"feeds {', '.join(map(repr, naming))} read community {name!r}; "
                               "delete them or change their communities first")
            objects_repo.purge_community(s.connection(), community.id)

    # -- memberships -------------------------------------------------------------
    def set_membership(
        self, org_name: str, community_name: str, can_read: bool = True,
        can_write: bool = True, max_tlp: Tlp = Tlp.AMBER,
    ) -> Membership:
        with self._sessions.begin() as s:
            org = self._org(s, org_name)
            community = self._community(s, community_name)
            member = s.get(Membership, (org.id, community.id))
            if member is None:
                member = Membership(org_id=org.id, community_id=community.id)
                s.add(member)
            member.can_read, member.can_write, member.max_tlp = can_read, can_write, int(max_tlp)
            return member

    def remove_membership(self, org_name: str, community_name: str) -> None:
        with self._sessions.begin() as s:
            org = self._org(s, org_name)
            community = self._community(s, community_name)
            done = s.execute(
                delete(Membership).where(
                    Membership.org_id == org.id, Membership.community_id == community.id
                )
            )
            if done.rowcount == 0:  # type: ignore[attr-defined]
                raise NotFound(f"{org_name!r} is not a member of {community_name!r}")

    def list_memberships(
        self, community_name: str | None = None
    ) -> Sequence[tuple[Membership, str, str]]:
        with self._sessions() as s:
            q = (
                select(Membership, Organisation.name, Community.name)
                .join(Organisation, Organisation.id == Membership.org_id)
                .join(Community, Community.id == Membership.community_id)
                .order_by(Community.name, Organisation.name)
            )
            if community_name is not None:
                q = q.where(Community.name == community_name)
            return [(m, o, c) for m, o, c in s.execute(q).all()]

    # -- helpers -----------------------------------------------------------------
    def _add(self, row: object, conflict: str) -> None:
        try:
            with self._sessions.begin() as s:
                s.add(row)
        except IntegrityError as exc:
            raise Conflict(conflict) from exc

    @classmethod
    def _locked_org(cls, s: Session, name: str) -> Organisation:
        """The organisation ``name``, held until the transaction ends (:meth:`_locked`):
        shares into it (whose foreign key checks take a key share lock) wait for it."""
        return cls._locked(s, Organisation, name,
                           f"no organisation named {name!r}; see `commonwatch org list`")

    @classmethod
    def _locked_community(cls, s: Session, name: str) -> Community:
        """The community ``name``, held until the transaction ends (:meth:`_locked`):
        ingest into it (:func:`~commonwatch.storage.objects.lock_community`) and feed
        definitions that name it wait for the change to commit."""
        return cls._locked(s, Community, name,
                           f"no community named {name!r}; see `commonwatch community list`")

    @staticmethod
    def _locked(s: Session, model: type[_Named], name: str, missing: str) -> _Named:
        """The row of ``model`` named ``name``, held as the transaction's first statement:
        SQLite's write lock (a no-op UPDATE), and on PostgreSQL a row lock. Changes and
        deletes are then decided on what is committed."""
        s.execute(update(model).where(model.name == name).values(name=model.name)
                  .execution_options(synchronize_session=False))
        row = s.scalar(select(model).where(model.name == name).with_for_update())
        if row is None:
            raise NotFound(missing)
        return row

    @staticmethod
    def _keep_an_admin_outside(s: Session, org: Organisation) -> None:
        """Refuse to delete the organisation of every active instance admin."""
        admins = s.scalars(select(User.org_id).where(User.role == "admin", User.active == true())).all()
        if admins and set(admins) == {org.id}:
            raise Conflict(f"{org.name!r} holds the last active instance admin; "
                           "make a user of another organisation admin first")

    @staticmethod
    def _org(s: Session, name: str) -> Organisation:
        org = s.scalar(select(Organisation).where(Organisation.name == name))
        if org is None:
            raise NotFound(f"no organisation named {name!r}; see `commonwatch org list`")
        return org

    @staticmethod
    def _user(s: Session, name: str) -> User:
        user = s.scalar(select(User).where(User.name == name))
        if user is None:
            raise NotFound(f"no user named {name!r}; see `commonwatch user list`")
        return user

    @staticmethod
    def _community(s: Session, name: str) -> Community:
        community = s.scalar(select(Community).where(Community.name == name))
        if community is None:
            raise NotFound(f"no community named {name!r}; see `commonwatch community list`")
        return community
