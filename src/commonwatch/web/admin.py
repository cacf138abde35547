"""Admin JSON API under ``/api/admin/``: the same operations as ``commonwatch org|user|
token|community|member``, for scripts and the UI.

Instance admins may do everything; an ``org-admin`` manages the users and tokens of
its own organisation. Tokens are returned once, at creation.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import Field

from commonwatch.domain.markings import Tlp, parse_tlp
from commonwatch.domain.visibility import Principal
from commonwatch.errors import PermissionDenied
from commonwatch.services.exchange import Exchange
from commonwatch.storage.models import ApiToken, Community, Membership, Organisation, User
from commonwatch.web.bodies import StrictBody
from commonwatch.web.credentials import require_principal


class OrgIn(StrictBody):
    name: str = Field(max_length=200)
    sector: str
    country: str | None = None


class OrgChange(StrictBody):
    name: str | None = Field(default=None, max_length=200)
    sector: str | None = None
    country: str | None = Field(default=None, max_length=2)


class UserIn(StrictBody):
    org: str
    name: str = Field(max_length=200)
    role: str = "analyst"


class UserChange(StrictBody):
    role: str | None = None
    active: bool | None = None


class TokenIn(StrictBody):
    label: str = Field(default="", max_length=200)
    expires_in_days: int | None = None


class CommunityIn(StrictBody):
    name: str = Field(max_length=100)
    title: str | None = Field(default=None, max_length=200)
    description: str = Field(default="", max_length=10_000)
    default_tlp: str = "amber"
    public: bool = False


class CommunityChange(StrictBody):
    name: str | None = Field(default=None, max_length=100)
    title: str | None = Field(default=None, max_length=200)
    description: str | None = Field(default=None, max_length=10_000)
    public: bool | None = None


class MemberIn(StrictBody):
    can_read: bool = True
    can_write: bool = True
    max_tlp: str = "amber"


def org_json(o: Organisation) -> dict[str, Any]:
    return {"name": o.name, "sector": o.sector, "country": o.country, "identity": o.identity_id}


def user_json(u: User, org: str) -> dict[str, Any]:
    return {"name": u.name, "org": org, "role": u.role, "active": u.active}


def token_json(t: ApiToken, user: str) -> dict[str, Any]:
    return {"id": t.id, "user": user, "prefix": t.prefix, "label": t.label,
            "created_us": t.created_us, "expires_us": t.expires_us, "revoked": t.revoked_us is not None}


def community_json(c: Community) -> dict[str, Any]:
    return {"name": c.name, "collection_id": c.collection_id, "title": c.title,
            "description": c.description, "default_tlp": Tlp(c.default_tlp).label,
            "public": c.public}


def member_json(m: Membership, org: str, community: str) -> dict[str, Any]:
    return {"org": org, "community": community, "can_read": m.can_read,
            "can_write": m.can_write, "max_tlp": Tlp(m.max_tlp).label}


def admin_router(exchange: Exchange) -> APIRouter:
    router = APIRouter(prefix="/api/admin")
    admin = exchange.admin

    def instance_admin(request: Request) -> Principal:
        principal = require_principal(request, exchange.auth)
        if not principal.is_admin:
            raise PermissionDenied("this operation needs the instance 'admin' role")
        return principal

    @router.get("/orgs")
    def list_orgs(request: Request) -> list[dict[str, Any]]:
        instance_admin(request)
        return [org_json(o) for o in admin.list_orgs()]

    @router.post("/orgs", status_code=201)
    def create_org(request: Request, body: OrgIn) -> dict[str, Any]:
        instance_admin(request)
        return org_json(admin.create_org(body.name, body.sector, body.country))

    @router.patch("/orgs/{org}")
    def update_org(request: Request, org: str, body: OrgChange) -> dict[str, Any]:
        instance_admin(request)
        return org_json(admin.update_org(org, new_name=body.name, sector=body.sector, country=body.country))

    @router.delete("/orgs/{org}")
    def delete_org(request: Request, org: str) -> dict[str, Any]:
        instance_admin(request)
        admin.delete_org(org)
        return {"deleted": True}

    def user_manager(request: Request) -> Principal:
        """An admin or org-admin, checked before any name is looked up: who may not manage
        users learns nothing about which organisations or users exist (401/403 alike)."""
        principal = require_principal(request, exchange.auth)
        if not (principal.is_admin or principal.role == "org-admin"):
            raise PermissionDenied("this operation needs the 'admin' or 'org-admin' role")
        return principal

    # What an org-admin may do (its own organisation's users, no admin power) is decided
    # by the service (``by``), on the rows it writes.
    @router.get("/users")
    def list_users(request: Request) -> list[dict[str, Any]]:
        principal = user_manager(request)
        rows = admin.list_users()
        if not principal.is_admin:
            rows = [(u, o) for u, o in rows if u.org_id == principal.org_id]
        return [user_json(u, o) for u, o in rows]

    @router.post("/users", status_code=201)
    def create_user(request: Request, body: UserIn) -> dict[str, Any]:
        principal = user_manager(request)
        return user_json(admin.create_user(body.org, body.name, body.role, by=principal), body.org)

    @router.patch("/users/{name}")
    def change_user(request: Request, name: str, body: UserChange) -> dict[str, Any]:
        principal = user_manager(request)
        user = admin.update_user(name, role=body.role, active=body.active, by=principal)
        return user_json(user, admin.org_name(user.org_id))

    @router.post("/users/{name}/tokens", status_code=201)
    def create_token(request: Request, name: str, body: TokenIn) -> dict[str, Any]:
        principal = user_manager(request)
        issued = admin.create_token(name, body.label, body.expires_in_days, by=principal)
        return {**token_json(issued.token, name), "token": issued.secret}

    @router.get("/tokens")
    def list_tokens(request: Request) -> list[dict[str, Any]]:
        instance_admin(request)
        return [token_json(t, u) for t, u in admin.list_tokens()]

    @router.delete("/tokens/{token_id}")
    def revoke_token(request: Request, token_id: int) -> dict[str, Any]:
        instance_admin(request)
        token = admin.revoke_token(token_id)
        return {"id": token.id, "revoked": True}

    @router.get("/communities")
    def list_communities(request: Request) -> list[dict[str, Any]]:
        instance_admin(request)
        return [community_json(c) for c in admin.list_communities()]

    @router.post("/communities", status_code=201)
    def create_community(request: Request, body: CommunityIn) -> dict[str, Any]:
        instance_admin(request)
        return community_json(admin.create_community(
            body.name, body.title, body.description, parse_tlp(body.default_tlp), body.public))

    @router.patch("/communities/{community}")
    def update_community(request: Request, community: str, body: CommunityChange) -> dict[str, Any]:
        instance_admin(request)
        return community_json(admin.update_community(
            community, new_name=body.name, title=body.title, description=body.description,
            public=body.public))

    @router.delete("/communities/{community}")
    def delete_community(request: Request, community: str) -> dict[str, Any]:
        instance_admin(request)
        admin.delete_community(community)
        return {"deleted": True}

    @router.get("/communities/{community}/members")
    def list_members(request: Request, community: str) -> list[dict[str, Any]]:
        instance_admin(request)
        admin.get_community(community)
        return [member_json(m, o, c) for m, o, c in admin.list_memberships(community)]

    @router.put("/communities/{community}/members/{org}")
    def set_member(request: Request, community: str, org: str, body: MemberIn) -> dict[str, Any]:
        instance_admin(request)
        m = admin.set_membership(org, community, body.can_read, body.can_write, parse_tlp(body.max_tlp))
        return member_json(m, org, community)

    @router.delete("/communities/{community}/members/{org}")
    def remove_member(request: Request, community: str, org: str) -> dict[str, Any]:
        instance_admin(request)
        admin.remove_membership(org, community)
        return {"removed": True}

    return router
