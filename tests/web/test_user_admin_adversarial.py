"""Adversarial tests of changing users: ``PATCH /api/admin/users/{name}``,
``AdminService.update_user`` and ``commonwatch user set-role|disable|enable``.

The rules under test: an admin changes anyone, an org-admin only users of its own
organisation (never an instance admin, never granting 'admin'; other organisations'
users look missing); the last active instance admin stays; bad input is a 4xx TAXII
error saying what is wrong; a refused change changes nothing; a change applies from
the target's next request.
"""

from __future__ import annotations

import contextlib
import threading

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from commonwatch.cli.main import app as cli_app
from commonwatch.errors import Conflict
from commonwatch.services.admin import AdminService
from commonwatch.web.app import create_app

from support.factories import make_member

ADMIN = "operators-user"  # the instance admin of the `api` fixture


@pytest.fixture
def api(admin_api):
    return admin_api


@pytest.fixture
def org(exchange, api):
    """'Managed Org' with an org-admin ('managed-org-user') and an analyst ('m-analyst');
    'Plain Org' with an analyst ('plain-org-user')."""
    boss = make_member(exchange, "Managed Org", role="org-admin")
    make_member(exchange, "Plain Org")
    return {"boss": _as(boss.token), "analyst": _as(_user(exchange, "Managed Org", "m-analyst", "analyst"))}


def _user(exchange, org: str, name: str, role: str) -> str:
    exchange.admin.create_user(org, name, role)
    return exchange.admin.create_token(name).secret


def _as(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _state(exchange, name: str) -> tuple[str, bool]:
    user = exchange.admin.get_user(name)
    return user.role, user.active


def _error(resp, status: int, *words: str) -> dict:
    """A TAXII error body with ``status`` whose description holds every one of ``words``."""
    assert resp.status_code == status, resp.text
    assert "taxii+json" in resp.headers["content-type"]
    body = resp.json()
    assert body["http_status"] == str(status) and "Traceback" not in resp.text
    for word in words:
        assert word in body["description"], body
    return body


# -- who may change whom -------------------------------------------------------------------
@pytest.mark.parametrize("role", ["reader", "analyst", "sync"])
def test_non_managers_get_403_whatever_the_target(api, exchange, org, role):
    caller = _as(_user(exchange, "Managed Org", "caller", role))
    for target in ("m-analyst", "plain-org-user", ADMIN, "nobody", "caller"):
        for change in ({"active": False}, {"role": "admin"}):
            _error(api.patch(f"/api/admin/users/{target}", json=change, headers=caller), 403)
    assert _state(exchange, "m-analyst") == ("analyst", True)
    assert _state(exchange, "caller") == (role, True)


@pytest.mark.parametrize("auth", [None, "Bearer nope", "Bearer " + "x" * 5000, "Basic !!!"])
def test_bad_credentials_are_401_before_any_lookup(api, exchange, org, auth):
    headers = {"Authorization": auth} if auth else {}
    with TestClient(create_app(exchange)) as anon:
        for target in ("m-analyst", "nobody"):
            _error(anon.patch(f"/api/admin/users/{target}", json={"active": False}, headers=headers), 401)
    assert _state(exchange, "m-analyst") == ("analyst", True)


def test_revoked_expired_and_disabled_callers_are_401(api, exchange, org):
    issued = exchange.admin.create_token("managed-org-user")
    exchange.admin.revoke_token(issued.token.id)
    _error(api.patch("/api/admin/users/m-analyst", json={"active": False}, headers=_as(issued.secret)), 401)
    exchange.admin._clock = lambda: 0  # a token issued at the epoch for one day: long expired
    old = exchange.admin.create_token("managed-org-user", expires_in_days=1)
    _error(api.patch("/api/admin/users/m-analyst", json={"active": False}, headers=_as(old.secret)), 401)
    assert api.patch("/api/admin/users/managed-org-user", json={"active": False}).status_code == 200
    _error(api.patch("/api/admin/users/m-analyst", json={"active": False}, headers=org["boss"]), 401)
    assert _state(exchange, "m-analyst") == ("analyst", True)


def test_org_admin_cannot_grant_admin_to_itself_or_others(api, exchange, org):
    for target in ("managed-org-user", "m-analyst"):
        for change in ({"role": "admin"}, {"role": "admin", "active": True}):
            _error(api.patch(f"/api/admin/users/{target}", json=change, headers=org["boss"]), 403, "admin")
    assert _state(exchange, "managed-org-user") == ("org-admin", True)
    assert _state(exchange, "m-analyst") == ("analyst", True)


def test_org_admin_cannot_touch_an_instance_admin_of_its_own_org(api, exchange, org):
    _user(exchange, "Managed Org", "m-root", "admin")
    for change in ({"active": False}, {"role": "reader"}, {"role": "org-admin"}, {"active": True}, {}):
        _error(api.patch("/api/admin/users/m-root", json=change, headers=org["boss"]), 403)
    assert _state(exchange, "m-root") == ("admin", True)
    # nor re-enable a disabled one (an admin's account is an admin's power)
    assert api.patch("/api/admin/users/m-root", json={"active": False}).status_code == 200
    _error(api.patch("/api/admin/users/m-root", json={"active": True}, headers=org["boss"]), 403)
    assert _state(exchange, "m-root") == ("admin", False)


def test_other_orgs_users_and_admins_are_indistinguishable_from_missing(api, exchange, org):
    _user(exchange, "Plain Org", "p-root", "admin")
    bodies = {}
    for target in ("plain-org-user", "p-root", ADMIN, "nobody"):
        for change in ({"active": False}, {"role": "admin"}, {"role": "overlord"}, {}):
            resp = api.patch(f"/api/admin/users/{target}", json=change, headers=org["boss"])
            body = _error(resp, 400 if change.get("role") == "overlord" else 404)  # the same for all
            bodies.setdefault(str(change), set()).add(body["description"].replace(repr(target), "NAME"))
            assert set(resp.headers) - {"content-length"} == set(
                api.patch("/api/admin/users/nobody", json=change, headers=org["boss"]).headers
            ) - {"content-length"}
    assert all(len(descriptions) == 1 for descriptions in bodies.values()), bodies
    assert _state(exchange, "plain-org-user") == ("analyst", True)
    assert _state(exchange, "p-root") == ("admin", True)


def test_org_admin_demoting_itself_loses_the_power_at_once(api, exchange, org):
    resp = api.patch("/api/admin/users/managed-org-user", json={"role": "analyst"}, headers=org["boss"])
    assert resp.status_code == 200 and resp.json()["role"] == "analyst"
    _error(api.patch("/api/admin/users/m-analyst", json={"active": False}, headers=org["boss"]), 403)
    _error(api.patch("/api/admin/users/managed-org-user", json={"role": "org-admin"},
                     headers=org["boss"]), 403)
    assert _state(exchange, "managed-org-user") == ("analyst", True)
    assert _state(exchange, "m-analyst") == ("analyst", True)


def test_org_admin_disabling_itself_and_a_peer_takes_effect_on_the_next_request(api, exchange, org):
    peer = _as(_user(exchange, "Managed Org", "m-peer", "org-admin"))
    assert api.get("/api/admin/users", headers=peer).status_code == 200
    boss = org["boss"]
    assert api.patch("/api/admin/users/m-peer", json={"role": "reader"}, headers=boss).status_code == 200
    _error(api.get("/api/admin/users", headers=peer), 403)
    assert api.patch("/api/admin/users/m-peer", json={"active": False}, headers=boss).status_code == 200
    _error(api.get("/api/admin/users", headers=peer), 401)
    assert api.patch("/api/admin/users/managed-org-user", json={"active": False},
                     headers=org["boss"]).status_code == 200
    _error(api.get("/api/admin/users", headers=org["boss"]), 401)
    # an admin re-enables: the same old tokens work again
    assert api.patch("/api/admin/users/m-peer", json={"active": True, "role": "org-admin"}).status_code == 200
    assert api.get("/api/admin/users", headers=peer).status_code == 200


def test_org_admin_check_and_change_are_one_decision(api, exchange, org, monkeypatch):
    """An admin promotes m-analyst to admin while the org-admin's change is between its
    permission check and its write: the promotion waits for the change (the rows are
    locked from the check on), so the org-admin never changes an instance admin."""
    import threading
    import time

    real_managed = AdminService._managed
    promotion: list[threading.Thread] = []

    def managed_then_concurrent_promotion(self, s, name, by, new_role=None):
        user = real_managed(self, s, name, by, new_role)  # checked: m-analyst is an analyst
        if by is not None and not promotion:
            thread = threading.Thread(target=AdminService.update_user, args=(self, name),
                                      kwargs={"role": "admin"})
            promotion.append(thread)
            thread.start()
            time.sleep(0.5)
            assert thread.is_alive()  # blocked on the locked rows, not slipped in
        return user

    monkeypatch.setattr(AdminService, "_managed", managed_then_concurrent_promotion)
    resp = api.patch("/api/admin/users/m-analyst", json={"active": False}, headers=org["boss"])
    promotion[0].join(30)
    monkeypatch.undo()
    assert resp.status_code == 200, resp.text
    # the org-admin disabled an analyst; the promotion came after it
    assert _state(exchange, "m-analyst") == ("admin", False)


# -- the last active admin -----------------------------------------------------------------
def test_disabled_admins_do_not_count_and_re_enabling_does(api, exchange):
    _user(exchange, "Operators", "spare", "admin")
    assert api.patch("/api/admin/users/spare", json={"active": False}).status_code == 200
    for change in ({"role": "org-admin"}, {"active": False}, {"role": "analyst", "active": True}):
        _error(api.patch(f"/api/admin/users/{ADMIN}", json=change), 409, "last active instance admin")
    assert _state(exchange, ADMIN) == ("admin", True)
    # a disabled admin may be demoted freely: it is not what keeps the instance run
    assert api.patch("/api/admin/users/spare", json={"role": "reader"}).status_code == 200
    assert api.patch("/api/admin/users/spare", json={"role": "admin", "active": True}).status_code == 200
    resp = api.patch(f"/api/admin/users/{ADMIN}", json={"role": "reader", "active": False})
    assert resp.status_code == 200 and resp.json() == {"name": ADMIN, "org": "Operators",
                                                       "role": "reader", "active": False}
    _error(api.get("/api/admin/orgs"), 401)


def test_an_admin_disabling_itself_with_another_admin_left(api, exchange):
    exchange.admin.create_org("Plain", "other")
    second = _as(_user(exchange, "Plain", "second", "admin"))
    assert api.patch(f"/api/admin/users/{ADMIN}", json={"active": False}).status_code == 200
    _error(api.get("/api/admin/orgs"), 401)
    _error(api.patch("/api/admin/users/second", json={"role": "sync"}, headers=second), 409, "last")
    assert api.patch(f"/api/admin/users/{ADMIN}", json={"active": True}, headers=second).status_code == 200
    assert api.get("/api/admin/orgs").status_code == 200


def test_promoting_to_admin_while_disabling_keeps_nobody_locked_out(api, exchange, org):
    resp = api.patch("/api/admin/users/m-analyst", json={"role": "admin", "active": False})
    assert resp.status_code == 200 and _state(exchange, "m-analyst") == ("admin", False)
    _error(api.patch(f"/api/admin/users/{ADMIN}", json={"active": False}), 409)
    assert _state(exchange, ADMIN) == ("admin", True)


def test_two_admins_demoting_each_other_at_once_leave_one(exchange, monkeypatch):
    """Both demotions pass the check before either writes: one must still be refused."""
    exchange.admin.create_org("Ops", "other")
    for name in ("a1", "a2"):
        exchange.admin.create_user("Ops", name, "admin")
    gate = threading.Barrier(2, timeout=3)
    real = AdminService._keep_an_admin

    def check_then_wait(s, user):
        real(s, user)
        with contextlib.suppress(threading.BrokenBarrierError):  # PostgreSQL: the other waits on locks
            gate.wait()

    monkeypatch.setattr(AdminService, "_keep_an_admin", staticmethod(check_then_wait))
    outcomes: dict[str, str] = {}

    def demote(name: str) -> None:
        try:
            exchange.admin.update_user(name, role="analyst")
            outcomes[name] = "ok"
        except Conflict:
            outcomes[name] = "conflict"

    threads = [threading.Thread(target=demote, args=(n,)) for n in ("a1", "a2")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    admins = [u.name for u, _ in exchange.admin.list_users() if u.role == "admin" and u.active]
    assert len(admins) == 1 and sorted(outcomes.values()) == ["conflict", "ok"], (admins, outcomes)


# -- bad input -----------------------------------------------------------------------------
@pytest.mark.parametrize("body", [
    {"role": 5}, {"role": True}, {"role": ["admin"]}, {"role": {"x": 1}},
    {"active": "maybe"}, {"active": [False]}, {"active": {"v": False}}, {"active": 2},
])
def test_wrong_types_are_400_naming_the_field(api, exchange, org, body):
    field = next(iter(body))
    _error(api.patch("/api/admin/users/m-analyst", json=body), 400, field)
    assert _state(exchange, "m-analyst") == ("analyst", True)


@pytest.mark.parametrize("active", ["no", "false", "off", "0", 0, "n", "true", 1])
def test_active_must_be_a_json_boolean(api, exchange, org, active):
    resp = api.patch("/api/admin/users/m-analyst", json={"active": active})
    _error(resp, 400, "active")
    assert _state(exchange, "m-analyst") == ("analyst", True)


@pytest.mark.parametrize("body", [{"enabled": False}, {"Role": "reader"}, {"active": False, "rolee": "x"}])
def test_unknown_fields_are_refused_not_ignored(api, exchange, org, body):
    resp = api.patch("/api/admin/users/m-analyst", json=body)
    _error(resp, 400, next(k for k in body if k not in ("role", "active")))
    assert _state(exchange, "m-analyst") == ("analyst", True)


def test_nothing_to_change_changes_nothing(api, exchange, org):
    for body in ({}, {"role": None}, {"active": None}, {"role": None, "active": None}):
        resp = api.patch("/api/admin/users/m-analyst", json=body)
        assert resp.status_code in (200, 400), resp.text
        assert _state(exchange, "m-analyst") == ("analyst", True)


@pytest.mark.parametrize("role", ["Admin", " admin", "admin\n", "admin\x00", "", "x" * 100_000, "ädmin"])
def test_bad_roles_are_400_and_change_nothing_else(api, exchange, org, role):
    for caller in ({}, org["boss"]):
        resp = api.patch("/api/admin/users/m-analyst", json={"role": role, "active": False}, headers=caller)
        _error(resp, 400, "role")
        assert len(resp.content) < 300_000
    assert _state(exchange, "m-analyst") == ("analyst", True)


@pytest.mark.parametrize("content, ctype", [
    (b"{nope", "application/json"), (b"", "application/json"), (b"[]", "application/json"),
    (b'"active"', "application/json"), (b"null", "application/json"), (b"role=admin", "text/plain"),
    (b"\xff\xfe\x00", "application/json"), (b'{"active": false', "application/json"),
])
def test_non_object_bodies_are_400(api, exchange, org, content, ctype):
    resp = api.patch("/api/admin/users/m-analyst", content=content, headers={"Content-Type": ctype})
    _error(resp, 400)
    assert _state(exchange, "m-analyst") == ("analyst", True)


@pytest.mark.parametrize("path", [
    "nob%00ody", "%00", "%C3%BCnic%C3%B8de-%E2%98%83", "x" * 5000, "a%2Fb", "..%2F..%2Fetc",
    "m-analyst%20", "M-ANALYST", "m-analyst%0A", "%F0%9F%92%A3",
])
def test_odd_names_in_the_path_are_404_never_500(api, exchange, org, path):
    for caller in ({}, org["boss"]):
        resp = api.patch(f"/api/admin/users/{path}", json={"active": False}, headers=caller)
        assert resp.status_code == 404 and resp.json()["http_status"] == "404", resp.text
    assert _state(exchange, "m-analyst") == ("analyst", True)


def test_service_refuses_a_bad_role_before_touching_anything(exchange):
    exchange.admin.create_org("Ops", "other")
    exchange.admin.create_user("Ops", "u", "reader")
    from commonwatch.errors import InvalidParameter, NotFound
    with pytest.raises(InvalidParameter, match="role"):
        exchange.admin.update_user("u", role="root", active=False)
    with pytest.raises(NotFound):
        exchange.admin.update_user("ghost", active=False)
    assert _state(exchange, "u") == ("reader", True)
    assert exchange.admin.update_user("u").role == "reader"  # no change asked, none made


# -- CLI -----------------------------------------------------------------------------------
@pytest.fixture
def cli(database_url):
    runner = CliRunner()

    def run(*args: str, code: int = 0) -> str:
        result = runner.invoke(cli_app, ["--database-url", database_url, *args])
        assert result.exit_code == code, result.output
        assert "Traceback" not in result.output and result.exception is None or code
        return result.output

    return run


def _one_line_error(output: str, *words: str) -> None:
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), output
    for word in words:
        assert word in lines[0], output


def test_cli_user_changes_exit_codes(cli, exchange):
    exchange.admin.create_org("Ops", "other")
    exchange.admin.create_user("Ops", "root", "admin")
    exchange.admin.create_user("Ops", "spare", "admin")
    cli("user", "disable", "spare")
    _one_line_error(cli("user", "set-role", "root", "reader", code=3), "last active instance admin")
    _one_line_error(cli("user", "disable", "root", code=3), "last active instance admin")
    _one_line_error(cli("user", "set-role", "ghost", "reader", code=3), "ghost")
    _one_line_error(cli("user", "set-role", "ghost", "overlord", code=2), "overlord")
    _one_line_error(cli("user", "set-role", "root", "x" * 5000, code=2), "role")
    _one_line_error(cli("user", "enable", "ghost", code=3), "no user named 'ghost'")
    _one_line_error(cli("user", "disable", "a\nb", code=3), "no user named")
    assert exchange.admin.get_user("root").active and exchange.admin.get_user("root").role == "admin"
    cli("user", "enable", "spare")
    assert "now reader" in cli("user", "set-role", "root", "reader")
    assert exchange.admin.get_user("root").role == "reader"
    assert cli("user", "set-role", "spare", "admin")  # unchanged role: no refusal
