"""The admin JSON API: the CLI's operations over HTTP, with role checks."""

from __future__ import annotations

import pytest

from support.factories import make_member


@pytest.fixture
def api(admin_api):
    return admin_api


def test_admin_builds_a_federation(api, exchange):
    assert api.post("/api/admin/orgs", json={"name": "Acme", "sector": "vendor"}).status_code == 201
    assert api.post("/api/admin/users", json={"org": "Acme", "name": "acme-1"}).status_code == 201
    issued = api.post("/api/admin/users/acme-1/tokens", json={"label": "x"}).json()
    assert exchange.auth.authenticate(issued["token"]).user_name == "acme-1"
    assert "token" not in api.get("/api/admin/tokens").json()[0]
    assert api.post("/api/admin/communities", json={"name": "c1", "default_tlp": "green"}).status_code == 201
    member = api.put("/api/admin/communities/c1/members/Acme", json={"max_tlp": "red"}).json()
    assert member["max_tlp"] == "TLP:RED"
    assert [m["org"] for m in api.get("/api/admin/communities/c1/members").json()] == ["Acme"]
    assert api.delete(f"/api/admin/tokens/{issued['id']}").json()["revoked"] is True
    assert api.delete("/api/admin/communities/c1/members/Acme").status_code == 200


def test_bad_input_is_a_400_that_names_the_field(api):
    resp = api.post("/api/admin/orgs", json={"name": "Acme"})
    assert resp.status_code == 400 and "sector" in resp.json()["description"]
    resp = api.post("/api/admin/orgs", json={"name": "Acme", "sector": "pirates"})
    assert resp.status_code == 400 and "sector" in resp.json()["description"]
    resp = api.post("/api/admin/orgs", content=b"{nope", headers={"Content-Type": "application/json"})
    assert resp.status_code == 400
    api.post("/api/admin/orgs", json={"name": "Acme", "sector": "vendor"})
    assert api.post("/api/admin/orgs", json={"name": "Acme", "sector": "vendor"}).status_code == 409


def test_roles_are_enforced(api, exchange):
    analyst = make_member(exchange, "Plain Org")
    org_admin = make_member(exchange, "Managed Org", role="org-admin")
    as_analyst = {"Authorization": f"Bearer {analyst.token}"}
    as_org_admin = {"Authorization": f"Bearer {org_admin.token}"}
    assert api.get("/api/admin/orgs", headers=as_analyst).status_code == 403
    assert api.get("/api/admin/orgs", headers={"Authorization": "Bearer nope"}).status_code == 401
    ok = api.post("/api/admin/users", json={"org": "Managed Org", "name": "m2"}, headers=as_org_admin)
    assert ok.status_code == 201
    other = api.post("/api/admin/users", json={"org": "Plain Org", "name": "p2"}, headers=as_org_admin)
    assert other.status_code == 403
    escalate = api.post("/api/admin/users", json={"org": "Managed Org", "name": "m3", "role": "admin"},
                        headers=as_org_admin)
    assert escalate.status_code == 403
    users = api.get("/api/admin/users", headers=as_org_admin).json()
    assert {u["org"] for u in users} == {"Managed Org"}


def test_oversized_admin_bodies_are_refused(api):
    resp = api.post("/api/admin/orgs", content=b"{" + b" " * (2 * 1024 * 1024) + b"}",
                    headers={"Content-Type": "application/json"})
    assert resp.status_code == 413

    def chunks():
        for _ in range(40):
            yield b" " * 65536

    resp = api.post("/api/admin/orgs", content=chunks(), headers={"Content-Type": "application/json"})
    assert resp.status_code == 413


def test_roles_and_accounts_change_over_the_api(api, exchange):
    """PATCH /users/{name}: role and active, applied from the user's next request;
    an org-admin manages its own organisation's users, never an admin's power."""
    org_admin = make_member(exchange, "Managed Org", role="org-admin")
    outsider = make_member(exchange, "Plain Org")
    as_org_admin = {"Authorization": f"Bearer {org_admin.token}"}
    as_analyst = {"Authorization": f"Bearer {_user_token(exchange, 'Managed Org', 'm-analyst', 'analyst')}"}

    assert api.get("/api/admin/users", headers=as_analyst).status_code == 403
    promoted = api.patch("/api/admin/users/m-analyst", json={"role": "org-admin"}, headers=as_org_admin)
    assert promoted.status_code == 200 and promoted.json()["role"] == "org-admin"
    assert api.get("/api/admin/users", headers=as_analyst).status_code == 200  # at once

    # no admin power for an org-admin: neither granting it nor touching an admin
    assert api.patch("/api/admin/users/m-analyst", json={"role": "admin"},
                     headers=as_org_admin).status_code == 403
    _user_token(exchange, "Managed Org", "m-boss", "admin")  # an instance admin in its organisation
    refused = api.patch("/api/admin/users/m-boss", json={"active": False}, headers=as_org_admin)
    assert refused.status_code == 403
    assert exchange.admin.get_user("m-boss").active
    # another organisation's user is one that does not exist
    hidden = api.patch(f"/api/admin/users/{outsider.user}", json={"active": False}, headers=as_org_admin)
    missing = api.patch("/api/admin/users/nobody", json={"active": False}, headers=as_org_admin)
    assert hidden.status_code == missing.status_code == 404
    assert exchange.admin.get_user(outsider.user).active

    disabled = api.patch("/api/admin/users/m-analyst", json={"active": False}, headers=as_org_admin)
    assert disabled.json()["active"] is False
    assert api.get("/api/admin/users", headers=as_analyst).status_code == 401
    bad = api.patch("/api/admin/users/m-analyst", json={"role": "overlord"}, headers=as_org_admin)
    assert bad.status_code == 400 and "overlord" in bad.json()["description"]


def test_the_last_admin_stays(api, exchange):
    """Neither a demotion nor disabling takes away the last active instance admin, and
    a refused change changes nothing (role and active go in one transaction)."""
    admin_name = exchange.auth.authenticate(api.headers["Authorization"].split()[1]).user_name
    for change in ({"role": "analyst"}, {"active": False}, {"role": "admin", "active": False}):
        resp = api.patch(f"/api/admin/users/{admin_name}", json=change)
        assert resp.status_code == 409 and "last active instance admin" in resp.json()["description"]
    assert exchange.admin.get_user(admin_name).role == "admin"
    as_second = {"Authorization": f"Bearer {_user_token(exchange, 'Operators', 'second-admin', 'admin')}"}
    assert api.patch(f"/api/admin/users/{admin_name}", json={"role": "analyst"}).status_code == 200
    # the demoted caller has lost the power with this very change
    assert api.get("/api/admin/orgs").status_code == 403
    assert api.patch("/api/admin/users/second-admin", json={"active": False},
                     headers=as_second).status_code == 409


def _user_token(exchange, org: str, name: str, role: str) -> str:
    exchange.admin.create_user(org, name, role)
    return exchange.admin.create_token(name).secret


def test_admin_changes_and_deletes_organisations_and_communities(api, exchange):
    api.post("/api/admin/orgs", json={"name": "Acme", "sector": "vendor"})
    changed = api.patch("/api/admin/orgs/Acme", json={"name": "Acme Networks", "country": "DE"})
    assert changed.status_code == 200 and changed.json()["name"] == "Acme Networks"
    assert changed.json()["country"] == "DE" and changed.json()["sector"] == "vendor"
    assert api.patch("/api/admin/orgs/Acme", json={"sector": "vendor"}).status_code == 404
    assert api.patch("/api/admin/orgs/Acme%20Networks", json={"sector": "pirates"}).status_code == 400
    assert api.patch("/api/admin/orgs/Acme%20Networks", json={"name": "Operators"}).status_code == 409
    assert api.patch("/api/admin/orgs/Acme%20Networks", json={"colour": "red"}).status_code == 400
    api.post("/api/admin/communities", json={"name": "c1"})
    changed = api.patch("/api/admin/communities/c1", json={"name": "c2", "public": True})
    assert changed.status_code == 200 and changed.json()["name"] == "c2" and changed.json()["public"] is True
    assert api.delete("/api/admin/communities/c2").json() == {"deleted": True}
    assert api.delete("/api/admin/communities/c2").status_code == 404
    assert api.delete("/api/admin/orgs/Acme%20Networks").json() == {"deleted": True}
    assert "Acme Networks" not in {o["name"] for o in api.get("/api/admin/orgs").json()}


def test_only_an_instance_admin_changes_organisations_and_communities(api, exchange):
    org_admin = make_member(exchange, "Managed Org", role="org-admin")
    api.post("/api/admin/communities", json={"name": "c1"})
    as_org_admin = {"Authorization": f"Bearer {org_admin.token}"}
    for method, path, body in (("PATCH", "/api/admin/orgs/Managed%20Org", {"name": "Mine"}),
                               ("DELETE", "/api/admin/orgs/Operators", None),
                               ("PATCH", "/api/admin/communities/c1", {"public": True}),
                               ("DELETE", "/api/admin/communities/c1", None)):
        resp = api.request(method, path, json=body, headers=as_org_admin)
        assert resp.status_code == 403, (method, path)
    assert exchange.admin.get_org("Managed Org").name == "Managed Org"
    assert exchange.admin.get_community("c1").public is False
