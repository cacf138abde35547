"""Adversarial tests of the admin API and CLI, authentication, import and lookup APIs.

Every bad request must get a clear error naming what is wrong (never a 500, never a
traceback, never partial data stored silently), and who may not manage users learns
nothing about which organisations or users exist.
"""

from __future__ import annotations

import base64
import gzip
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from commonwatch.cli.main import app as cli_app
from commonwatch.clock import now_us
from commonwatch.config import load_settings
from commonwatch.domain.markings import Tlp
from commonwatch.errors import AuthenticationRequired
from commonwatch.services.exchange import Exchange
from commonwatch.web.app import create_app

from support.factories import indicator, make_member

LIMIT = 256 * 1024  # max_body_bytes of the exchange under test (import body limit)


@dataclass
class World:
    client: TestClient
    exchange: Exchange
    admin: object
    analyst: object
    reader: object
    org_admin: object
    outsider: object


@pytest.fixture
def small_exchange(database_url: str) -> Iterator[Exchange]:
    ex = Exchange(load_settings(environ={}, database_url=database_url, max_body_bytes=LIMIT), migrate=False)
    yield ex
    ex.close()


@pytest.fixture
def world(small_exchange: Exchange) -> Iterator[World]:
    ex = small_exchange
    admin = make_member(ex, "Operators", sector="other", role="admin")
    analyst = make_member(ex, "Acme", sector="vendor", role="analyst")
    ex.admin.create_user("Acme", "acme-reader", "reader")
    ex.admin.create_user("Acme", "acme-boss", "org-admin")
    reader = _member_like(ex, "acme-reader")
    org_admin = _member_like(ex, "acme-boss")
    outsider = make_member(ex, "Outsiders", sector="research")
    ex.admin.create_community("ops", default_tlp=Tlp.GREEN)
    ex.admin.create_community("closed")
    ex.admin.set_membership("Acme", "ops", True, True, Tlp.AMBER)
    ex.admin.set_membership("Acme", "closed", True, False, Tlp.AMBER)
    with TestClient(create_app(ex), raise_server_exceptions=False) as client:
        yield World(client, ex, admin, analyst, reader, org_admin, outsider)


@dataclass
class _M:
    user: str
    token: str


def _member_like(ex: Exchange, user: str) -> _M:
    return _M(user, ex.admin.create_token(user).secret)


def bearer(m) -> dict[str, str]:
    return {"Authorization": f"Bearer {m.token}"}


def basic(user: str, token: str, encoding: str = "utf-8") -> dict[str, str]:
    raw = base64.b64encode(f"{user}:{token}".encode(encoding)).decode("ascii")
    return {"Authorization": f"Basic {raw}"}


def assert_clear_error(resp, status: int, *words: str) -> None:
    assert resp.status_code == status, (resp.status_code, resp.text[:500])
    body = resp.json()
    assert body["http_status"] == str(status)
    assert "Traceback" not in resp.text
    for w in words:
        assert w.lower() in body["description"].lower(), body


def count(ex: Exchange, table: str) -> int:
    with ex.engine.connect() as conn:
        return int(conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one())


def set_token_expiry(ex: Exchange, token_id: int, expires_us: int) -> None:
    with ex.engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE api_tokens SET expires_us = :e WHERE id = :i"), {"e": expires_us, "i": token_id}
        )


# =====================================================================================
# Admin API: names
# =====================================================================================
def test_odd_org_names_are_400_and_nothing_is_stored(world):
    for name, why in [
        ("", "organisation name"),
        ("   ", "organisation name"),
        ("\t", "organisation name"),
        (" Acme2", "organisation name"),
        ("Acme\n", "organisation name"),
        ("Acme\x00x", "organisation name"),
        ("Société Générale", "organisation name"),
        ("a" * 201, "name"),
        ("Évil/../x", "organisation name"),
    ]:
        before = count(world.exchange, "organisations")
        resp = world.client.post(
            "/api/admin/orgs", json={"name": name, "sector": "vendor"}, headers=bearer(world.admin)
        )
        assert_clear_error(resp, 400, why)
        assert count(world.exchange, "organisations") == before


def test_org_name_of_exactly_200_chars_is_accepted_and_201_refused(world):
    ok = world.client.post(
        "/api/admin/orgs", json={"name": "b" * 200, "sector": "vendor"}, headers=bearer(world.admin)
    )
    assert ok.status_code == 201 and ok.json()["name"] == "b" * 200
    assert_clear_error(
        world.client.post(
            "/api/admin/orgs", json={"name": "c" * 201, "sector": "vendor"}, headers=bearer(world.admin)
        ),
        400,
        "name",
    )


def test_duplicate_org_is_409_and_case_variants_are_separate(world):
    h = bearer(world.admin)
    resp = world.client.post("/api/admin/orgs", json={"name": "Acme", "sector": "vendor"}, headers=h)
    assert_clear_error(resp, 409, "already exists")
    # a case variant is another organisation with its own identity
    other = world.client.post("/api/admin/orgs", json={"name": "ACME", "sector": "vendor"}, headers=h)
    assert other.status_code == 201
    ids = {o["name"]: o["identity"] for o in world.client.get("/api/admin/orgs", headers=h).json()}
    assert ids["ACME"] != ids["Acme"]


def test_wrong_types_and_values_in_org_body_name_the_field(world):
    for body, field in [
        ({"name": "X1", "sector": "vendor", "country": "lu"}, "country"),
        ({"name": "X1", "sector": "vendor", "country": "LUX"}, "country"),
        ({"name": "X1", "sector": "vendor", "country": 12}, "country"),
        ({"name": "X1", "sector": ["vendor"]}, "sector"),
        ({"name": 5, "sector": "vendor"}, "name"),
        ({"name": None, "sector": "vendor"}, "name"),
        ({"name": "X1", "sector": "Vendor"}, "sector"),
    ]:
        resp = world.client.post("/api/admin/orgs", json=body, headers=bearer(world.admin))
        assert_clear_error(resp, 400, field)
        assert "X1" not in {o.name for o in world.exchange.admin.list_orgs()}


def test_malformed_json_bodies_are_400(world):
    for raw in [
        b"",
        b"[]",
        b"null",
        b'"x"',
        b"{",
        b'{"name": "X1", "sector": "vendor"',
        b'\xff\xfe{"name": "X1"}',
        b'{"name": "X1", "sector": "vendor"}garbage',
    ]:
        resp = world.client.post(
            "/api/admin/orgs",
            content=raw,
            headers={**bearer(world.admin), "Content-Type": "application/json"},
        )
        assert_clear_error(resp, 400)
        assert "X1" not in {o.name for o in world.exchange.admin.list_orgs()}


def test_deeply_nested_json_body_is_a_400_not_a_500(world):
    # a small (<1 MiB) body nested 100,000 levels deep: a 400, never a RecursionError 500
    raw = b"[" * 100_000 + b"]" * 100_000
    resp = world.client.post(
        "/api/admin/orgs", content=raw, headers={**bearer(world.admin), "Content-Type": "application/json"}
    )
    assert_clear_error(resp, 400)


def test_duplicate_keys_in_json_body_do_not_smuggle_a_second_name(world):
    raw = b'{"name": "First1", "sector": "vendor", "name": "Second2"}'
    resp = world.client.post(
        "/api/admin/orgs", content=raw, headers={**bearer(world.admin), "Content-Type": "application/json"}
    )
    names = {o.name for o in world.exchange.admin.list_orgs()}
    assert resp.status_code in (201, 400)
    if resp.status_code == 201:  # whatever was stored is what the answer says
        assert resp.json()["name"] in names and not {"First1", "Second2"} <= names


def test_odd_user_names_are_400(world):
    for name in ["", " ", "Bob\n", "bob:colon", "bøb", "x" * 201, "bob\x00"]:
        resp = world.client.post(
            "/api/admin/users", json={"org": "Acme", "name": name}, headers=bearer(world.admin)
        )
        assert_clear_error(resp, 400, "name")
        assert name not in {u.name for u, _ in world.exchange.admin.list_users()}


def test_user_names_differing_in_case_are_distinct_and_basic_auth_is_exact(world):
    h = bearer(world.admin)
    assert (
        world.client.post(
            "/api/admin/users", json={"org": "Acme", "name": "Case.User"}, headers=h
        ).status_code
        == 201
    )
    assert (
        world.client.post(
            "/api/admin/users", json={"org": "Acme", "name": "case.user"}, headers=h
        ).status_code
        == 201
    )
    dup = world.client.post("/api/admin/users", json={"org": "Acme", "name": "case.user"}, headers=h)
    assert_clear_error(dup, 409, "already exists")
    token = world.client.post("/api/admin/users/Case.User/tokens", json={}, headers=h).json()["token"]
    ok = world.client.get("/api/admin/users", headers=basic("Case.User", token))
    assert ok.status_code == 403  # authenticated (an analyst), just not allowed
    assert_clear_error(world.client.get("/api/admin/users", headers=basic("case.user", token)), 401)


def test_unknown_roles_are_400(world):
    for role in ["Admin", "root", "", "analyst ", None, 1]:
        resp = world.client.post(
            "/api/admin/users",
            json={"org": "Acme", "name": "r-user", "role": role},
            headers=bearer(world.admin),
        )
        assert_clear_error(resp, 400, "role")
        assert "r-user" not in {u.name for u, _ in world.exchange.admin.list_users()}


def test_user_in_unknown_org_is_404_for_admin(world):
    resp = world.client.post(
        "/api/admin/users", json={"org": "Nobody", "name": "n-user"}, headers=bearer(world.admin)
    )
    assert_clear_error(resp, 404, "Nobody")


def test_unauthenticated_user_creation_is_401_whatever_the_org(world):
    for org in ("Acme", "Nobody"):
        resp = world.client.post("/api/admin/users", json={"org": org, "name": "anon-user"})
        assert_clear_error(resp, 401)
        wrong = world.client.post(
            "/api/admin/users",
            json={"org": org, "name": "anon-user"},
            headers={"Authorization": "Bearer cw_wrong"},
        )
        assert_clear_error(wrong, 401)


def test_unauthenticated_token_creation_is_401_whatever_the_user(world):
    for name in ("acme-user", "nobody"):
        resp = world.client.post(f"/api/admin/users/{name}/tokens", json={})
        assert_clear_error(resp, 401)


def test_analyst_probing_user_names_gets_403_not_404(world):
    # An authenticated analyst must not tell existing from missing users either.
    for name in ("operators-user", "nobody-at-all"):
        resp = world.client.post(f"/api/admin/users/{name}/tokens", json={}, headers=bearer(world.analyst))
        assert_clear_error(resp, 403)


# =====================================================================================
# Admin API: roles and escalation
# =====================================================================================
def test_org_admin_cannot_mint_a_token_for_an_instance_admin_of_its_own_org(world):
    ex = world.exchange
    ex.admin.create_user("Operators", "ops-boss", "org-admin")
    boss = _member_like(ex, "ops-boss")
    resp = world.client.post(
        "/api/admin/users/operators-user/tokens", json={"label": "mine"}, headers=bearer(boss)
    )
    assert resp.status_code == 403, resp.text
    assert len(ex.admin.list_tokens("operators-user")) == 1


def test_org_admin_scope(world):
    h = bearer(world.org_admin)
    # own organisation: users and tokens
    ok = world.client.post(
        "/api/admin/users", json={"org": "Acme", "name": "acme-new", "role": "reader"}, headers=h
    )
    assert ok.status_code == 201
    tok = world.client.post("/api/admin/users/acme-new/tokens", json={"label": "t"}, headers=h)
    assert tok.status_code == 201 and tok.json()["token"].startswith("cw_")
    # not other organisations', not admin-only resources
    # another organisation's user is answered like a missing one (no enumeration of names)
    other = world.client.post("/api/admin/users/outsiders-user/tokens", json={}, headers=h)
    missing = world.client.post("/api/admin/users/no-such-user/tokens", json={}, headers=h)
    assert_clear_error(other, 404, "in your organisation")
    assert (missing.status_code, missing.json()["description"].replace("no-such-user", "X")) == (
        404,
        other.json()["description"].replace("outsiders-user", "X"),
    )
    for path in (
        "/api/admin/orgs",
        "/api/admin/tokens",
        "/api/admin/communities",
        "/api/admin/communities/ops/members",
    ):
        assert_clear_error(world.client.get(path, headers=h), 403, "admin")
    assert_clear_error(world.client.delete(f"/api/admin/tokens/{tok.json()['id']}", headers=h), 403)
    assert_clear_error(
        world.client.put("/api/admin/communities/ops/members/Acme", json={"max_tlp": "red"}, headers=h), 403
    )
    assert world.exchange.admin.list_memberships("ops")[0][0].max_tlp == int(Tlp.AMBER)
    escalate = world.client.post(
        "/api/admin/users", json={"org": "Acme", "name": "acme-root", "role": "admin"}, headers=h
    )
    assert_clear_error(escalate, 403, "admin")
    assert "acme-root" not in {u.name for u, _ in world.exchange.admin.list_users()}


@pytest.mark.parametrize("who", ["analyst", "reader"])
def test_analysts_and_readers_get_403_everywhere_in_admin(world, who):
    h = bearer(getattr(world, who))
    c = world.client
    assert_clear_error(c.get("/api/admin/users", headers=h), 403)
    assert_clear_error(c.post("/api/admin/users", json={"org": "Acme", "name": "sneak"}, headers=h), 403)
    assert_clear_error(c.post("/api/admin/users/acme-user/tokens", json={}, headers=h), 403)
    assert_clear_error(c.post("/api/admin/communities", json={"name": "sneaky"}, headers=h), 403)
    assert "sneak" not in {u.name for u, _ in world.exchange.admin.list_users()}
    assert "sneaky" not in {x.name for x in world.exchange.admin.list_communities()}


def test_disabled_admin_loses_everything(world):
    world.exchange.admin.create_user("Operators", "spare-admin", "admin")  # not the last one
    world.exchange.admin.set_user_active("operators-user", False)
    assert_clear_error(world.client.get("/api/admin/orgs", headers=bearer(world.admin)), 401)
    world.exchange.admin.set_user_active("operators-user", True)
    assert world.client.get("/api/admin/orgs", headers=bearer(world.admin)).status_code == 200


# =====================================================================================
# Admin API: tokens
# =====================================================================================
def test_bad_token_expiry_is_400_and_issues_nothing(world):
    for days in [0, -1, 3651, 10**30, 1.5, "7x", [], "nan"]:
        before = count(world.exchange, "api_tokens")
        resp = world.client.post(
            "/api/admin/users/acme-user/tokens", json={"expires_in_days": days}, headers=bearer(world.admin)
        )
        assert_clear_error(resp, 400, "expires_in_days" if not isinstance(days, int) else "expiry")
        assert count(world.exchange, "api_tokens") == before


def test_token_expiry_boundaries(world):
    h = bearer(world.admin)
    one = world.client.post(
        "/api/admin/users/acme-user/tokens", json={"expires_in_days": 1}, headers=h
    ).json()
    top = world.client.post(
        "/api/admin/users/acme-user/tokens", json={"expires_in_days": 3650}, headers=h
    ).json()
    assert one["expires_us"] > now_us() and top["expires_us"] > one["expires_us"]
    ex = world.exchange
    assert ex.auth.authenticate(one["token"]).user_name == "acme-user"
    set_token_expiry(ex, one["id"], now_us() - 1)  # in the past
    with pytest.raises(AuthenticationRequired):
        ex.auth.authenticate(one["token"])
    assert_clear_error(
        world.client.get(
            "/api/lookup", params={"value": "1.2.3.4"}, headers={"Authorization": f"Bearer {one['token']}"}
        ),
        401,
    )
    set_token_expiry(ex, top["id"], now_us())  # expiring right now: no longer valid
    assert_clear_error(
        world.client.get(
            "/api/lookup", params={"value": "1.2.3.4"}, headers={"Authorization": f"Bearer {top['token']}"}
        ),
        401,
    )


def test_tokens_are_random_shown_once_and_hashed(world):
    h = bearer(world.admin)
    a = world.client.post("/api/admin/users/acme-user/tokens", json={}, headers=h).json()
    b = world.client.post("/api/admin/users/acme-user/tokens", json={}, headers=h).json()
    assert a["token"] != b["token"] and len(a["token"]) >= 40
    listing = world.client.get("/api/admin/tokens", headers=h)
    assert a["token"] not in listing.text and b["token"] not in listing.text
    with world.exchange.engine.connect() as conn:
        stored = conn.execute(sa.text("SELECT token_hash FROM api_tokens")).scalars().all()
    assert a["token"] not in stored and all(len(s) == 64 for s in stored)


def test_revoking_twice_is_idempotent_and_the_token_stays_dead(world):
    h = bearer(world.admin)
    issued = world.client.post("/api/admin/users/acme-user/tokens", json={}, headers=h).json()
    first = world.client.delete(f"/api/admin/tokens/{issued['id']}", headers=h)
    second = world.client.delete(f"/api/admin/tokens/{issued['id']}", headers=h)
    assert first.status_code == second.status_code == 200
    assert second.json() == {"id": issued["id"], "revoked": True}
    assert_clear_error(
        world.client.get(
            "/api/lookup", params={"value": "1.2.3.4"}, headers={"Authorization": f"Bearer {issued['token']}"}
        ),
        401,
    )
    row = [t for t, _ in world.exchange.admin.list_tokens() if t.id == issued["id"]][0]
    assert row.revoked_us is not None


def test_revoking_unknown_tokens_is_404(world):
    for token_id in ["0", "-1", "999999"]:
        resp = world.client.delete(f"/api/admin/tokens/{token_id}", headers=bearer(world.admin))
        assert_clear_error(resp, 404, "no token")


def test_revoking_a_token_id_beyond_64_bits_is_a_clear_error(world):
    resp = world.client.delete("/api/admin/tokens/99999999999999999999", headers=bearer(world.admin))
    assert resp.status_code in (400, 404), resp.text
    assert_clear_error(resp, resp.status_code)


def test_revoking_a_non_numeric_token_id_is_400(world):
    assert_clear_error(
        world.client.delete("/api/admin/tokens/abc", headers=bearer(world.admin)), 400, "token_id"
    )


def test_bad_token_labels_are_400(world):
    for label in ["x" * 201, "nul\x00byte", 7, None]:
        before = count(world.exchange, "api_tokens")
        resp = world.client.post(
            "/api/admin/users/acme-user/tokens", json={"label": label}, headers=bearer(world.admin)
        )
        assert_clear_error(resp, 400, "label")
        assert count(world.exchange, "api_tokens") == before


def test_token_for_unknown_user_is_404_for_admin(world):
    resp = world.client.post("/api/admin/users/nobody/tokens", json={}, headers=bearer(world.admin))
    assert_clear_error(resp, 404, "nobody")


def test_token_of_a_disabled_user_fails_and_works_again_after_enable(world):
    ex = world.exchange
    ex.admin.set_user_active("acme-user", False)
    h = bearer(world.analyst)
    assert_clear_error(world.client.get("/api/lookup", params={"value": "1.2.3.4"}, headers=h), 401)
    assert_clear_error(
        world.client.get(
            "/api/lookup", params={"value": "1.2.3.4"}, headers=basic("acme-user", world.analyst.token)
        ),
        401,
    )
    # the organisation's other users are unaffected
    assert (
        world.client.get("/api/lookup", params={"value": "1.2.3.4"}, headers=bearer(world.reader)).status_code
        == 200
    )
    ex.admin.set_user_active("acme-user", True)
    assert world.client.get("/api/lookup", params={"value": "1.2.3.4"}, headers=h).status_code == 200


# =====================================================================================
# Authorization header forms
# =====================================================================================
def _who(world, headers) -> int:
    return world.client.get("/api/admin/orgs", headers=headers).status_code


def test_bearer_variants(world):
    t = world.admin.token
    assert _who(world, {"Authorization": f"Bearer {t}"}) == 200
    assert _who(world, {"Authorization": f"bearer {t}"}) == 200
    assert _who(world, {"Authorization": f"BEARER {t}"}) == 200
    assert _who(world, {"Authorization": f"Bearer    {t}   "}) == 200
    for bad in (
        "Bearer",
        "Bearer ",
        "Bearer  ",
        f"Bearer {t} extra",
        f"Bearer {t}x",
        f"Token {t}",
        f"{t}",
        f"Bearer\t{t}",
        f"Bearer {t[:-1]}",
    ):
        resp = world.client.get("/api/admin/orgs", headers={"Authorization": bad})
        assert_clear_error(resp, 401)
        assert resp.headers.get("WWW-Authenticate", "").startswith("Basic")


def test_basic_variants(world):
    t = world.admin.token
    assert _who(world, basic("operators-user", t)) == 200
    for headers in (
        basic("acme-user", t),  # right token, wrong user
        basic("", t),  # no user
        basic("operators-user:", t),  # user name containing ':'
        basic("opérateur", t),  # non-ASCII user name
        basic("opérateur", t, "latin-1"),  # non-UTF-8 user name
        basic("OPERATORS-USER", t),  # case differs
        {"Authorization": "Basic !!!"},
        {"Authorization": "Basic " + base64.b64encode(b"no-colon").decode()},
        {"Authorization": "Basic " + base64.b64encode(t.encode()).decode()},
        {"Authorization": "Basic"},
    ):
        resp = world.client.get("/api/admin/orgs", headers=headers)
        assert_clear_error(resp, 401)


def test_basic_with_bearer_token_whose_user_contains_colon_in_password(world):
    # partition at the first ':' -- a token followed by ':junk' is a different password
    resp = world.client.get("/api/admin/orgs", headers=basic("operators-user", world.admin.token + ":x"))
    assert_clear_error(resp, 401)


def test_very_long_and_binary_authorization_headers(world):
    for value in (
        "Bearer " + "A" * 200_000,
        "Basic " + "A" * 200_000,
        "Basic " + base64.b64encode(b"u:" + b"x" * 100_000).decode(),
        "X" * 100_000,
    ):
        assert_clear_error(world.client.get("/api/admin/orgs", headers={"Authorization": value}), 401)
    raw = world.client.get("/api/admin/orgs", headers=[(b"Authorization", b"Bearer \xff\xfe\x00")])
    assert_clear_error(raw, 401)


def test_repeated_authorization_headers_never_mix_identities(world):
    # Two Authorization headers: the answer must not be the admin's when one of them
    # is not valid -- ambiguous credentials should be refused outright.
    good = f"Bearer {world.admin.token}".encode()
    bad = b"Bearer cw_not-a-token"
    first_bad = world.client.get(
        "/api/admin/orgs", headers=[(b"Authorization", bad), (b"Authorization", good)]
    )
    assert first_bad.status_code in (400, 401)
    # Only the first header is read (a valid token followed by junk is the admin): not
    # refused, but at least never another identity than the first header's.
    other = f"Bearer {world.analyst.token}".encode()
    first_good = world.client.get(
        "/api/admin/orgs", headers=[(b"Authorization", other), (b"Authorization", good)]
    )
    assert first_good.status_code in (400, 401, 403), first_good.status_code


# =====================================================================================
# Admin API: communities and memberships
# =====================================================================================
def test_bad_community_bodies_are_400_and_store_nothing(world):
    for body, field in [
        ({"name": "Upper"}, "community name"),
        ({"name": ""}, "community name"),
        ({"name": " "}, "community name"),
        ({"name": "-lead"}, "community name"),
        ({"name": "ünï"}, "community name"),
        ({"name": "c" * 101}, "name"),
        ({"name": "okc", "title": "t" * 201}, "title"),
        ({"name": "okc", "title": "nul\x00"}, "title"),
        ({"name": "okc", "description": "nul\x00"}, "description"),
        ({"name": "okc", "description": "d" * 10_001}, "description"),
        ({"name": "okc", "default_tlp": "purple"}, "purple"),
        ({"name": "okc", "default_tlp": 3}, "default_tlp"),
        ({"name": "okc", "public": "maybe"}, "public"),
    ]:
        before = count(world.exchange, "communities")
        objects = count(world.exchange, "stix_objects")
        resp = world.client.post("/api/admin/communities", json=body, headers=bearer(world.admin))
        assert_clear_error(resp, 400, field)
        assert count(world.exchange, "communities") == before
        assert count(world.exchange, "stix_objects") == objects  # no orphan system objects


def test_duplicate_community_is_409_and_keeps_the_first(world):
    h = bearer(world.admin)
    resp = world.client.post("/api/admin/communities", json={"name": "ops", "title": "Other"}, headers=h)
    assert_clear_error(resp, 409, "already exists")
    assert world.exchange.admin.get_community("ops").title == "ops"


def test_bad_membership_bodies_are_400_and_change_nothing(world):
    for body, field in [
        ({"max_tlp": "purple"}, "purple"),
        ({"max_tlp": None}, "max_tlp"),
        ({"can_read": "sometimes"}, "can_read"),
        ({"can_write": [True]}, "can_write"),
    ]:
        resp = world.client.put(
            "/api/admin/communities/ops/members/Acme", json=body, headers=bearer(world.admin)
        )
        assert_clear_error(resp, 400, field)
        [(m, _, _)] = world.exchange.admin.list_memberships("ops")
        assert (m.can_read, m.can_write, m.max_tlp) == (True, True, int(Tlp.AMBER))


def test_membership_of_unknown_things_is_404(world):
    h = bearer(world.admin)
    assert_clear_error(
        world.client.put("/api/admin/communities/ops/members/Nobody", json={}, headers=h), 404, "Nobody"
    )
    assert_clear_error(
        world.client.put("/api/admin/communities/nowhere/members/Acme", json={}, headers=h), 404, "nowhere"
    )
    assert_clear_error(world.client.get("/api/admin/communities/nowhere/members", headers=h), 404, "nowhere")
    assert_clear_error(
        world.client.delete("/api/admin/communities/ops/members/Outsiders", headers=h), 404, "not a member"
    )


def test_removing_a_membership_twice_and_effect_on_access(world):
    h = bearer(world.admin)
    cid = world.exchange.admin.get_community("ops").collection_id
    obj = indicator("203.0.113.77", tlp=Tlp.GREEN)
    principal = world.exchange.auth.principal_for_user("acme-user")
    assert not world.exchange.ingest.add_objects(principal, cid, [obj]).failures
    assert world.client.delete("/api/admin/communities/ops/members/Acme", headers=h).status_code == 200
    assert_clear_error(world.client.delete("/api/admin/communities/ops/members/Acme", headers=h), 404)
    # Acme may no longer import there
    resp = world.client.post(
        "/api/import",
        params={"community": "ops", "format": "text"},
        content=b"203.0.113.99\n",
        headers=bearer(world.analyst),
    )
    assert_clear_error(resp, 404, "ops")
    # its objects stay in the community: the remaining members still see them
    world.exchange.admin.set_membership("Outsiders", "ops", True, False, Tlp.GREEN)
    found = world.client.get("/api/lookup", params={"value": "203.0.113.77"}, headers=bearer(world.outsider))
    assert found.status_code == 200 and found.json()["results"][0]["found"] is True


# =====================================================================================
# Import API
# =====================================================================================
def _import(world, body, who=None, **params):
    params.setdefault("community", "ops")
    return world.client.post("/api/import", params=params, content=body, headers=bearer(who or world.analyst))


def test_import_plain_and_gzip_text(world):
    plain = _import(world, b"198.51.100.10\nevil-one.example.net\n", format="text")
    assert plain.status_code == 200, plain.text
    gz = _import(world, gzip.compress(b"198.51.100.11\n"), format="text", name="x.txt.gz")
    assert gz.status_code == 200 and gz.json()["stored"] >= 2


def test_import_truncated_gzip_reports_the_break_and_keeps_complete_lines(world):
    lines = b"".join(f"198.51.{i // 250}.{i % 250 + 1}\n".encode() for i in range(400))
    blob = gzip.compress(lines)
    resp = _import(world, blob[: len(blob) // 2], format="text", name="cut.txt.gz")
    assert resp.status_code == 200, resp.text
    summary = resp.json()
    assert summary["ok"] is False
    assert any("could not be read" in r["reason"] for r in summary["rejections"])
    # no half row taken as a value: every stored indicator is one of the input lines
    cid = world.exchange.admin.get_community("ops").collection_id
    with world.exchange.engine.connect() as conn:
        raws = (
            conn.execute(
                sa.text(
                    "SELECT o.raw FROM stix_objects o JOIN communities c ON c.id = o.community_id "
                    "WHERE c.collection_id = :c AND o.type = 'ipv4-addr'"
                ),
                {"c": cid},
            )
            .scalars()
            .all()
        )
    import json

    values = {json.loads(bytes(r))["value"] for r in raws}
    wanted = {ln.decode() for ln in lines.split()}
    assert values <= wanted


def test_import_gzip_header_only_and_garbage_after_magic(world):
    for blob in (b"\x1f\x8b", b"\x1f\x8b\x08\x00garbage-garbage-garbage"):
        resp = _import(world, blob, format="auto", name="bad.gz")
        assert resp.status_code == 200, resp.text
        summary = resp.json()
        assert summary["ok"] is False and summary["stored"] == 0 and summary["rejections"]


def test_import_empty_body_stores_nothing_and_does_not_crash(world):
    for fmt in ["auto", "stix", "misp", "csv", "text"]:
        before = count(world.exchange, "stix_objects")
        resp = _import(world, b"", format=fmt)
        assert resp.status_code in (200, 400), resp.text
        if resp.status_code == 200:
            assert resp.json()["stored"] == 0
        assert count(world.exchange, "stix_objects") == before


def test_import_over_the_limit_with_content_length_is_413(world):
    before = count(world.exchange, "stix_objects")
    resp = _import(world, b"198.51.100.1\n" * (LIMIT // 13 + 10), format="text")
    assert_clear_error(resp, 413, "exceeds")
    assert count(world.exchange, "stix_objects") == before


def test_import_over_the_limit_chunked_is_413_and_stores_nothing(world):
    before = count(world.exchange, "stix_objects")

    def chunks():
        for i in range(LIMIT // 4096 + 8):
            yield f"198.51.{i % 250}.{i % 200 + 1}\n".encode().ljust(4096, b" ")

    resp = world.client.post(
        "/api/import",
        params={"community": "ops", "format": "text"},
        content=chunks(),
        headers=bearer(world.analyst),
    )
    assert_clear_error(resp, 413)
    assert count(world.exchange, "stix_objects") == before


def test_import_gzip_bomb_beyond_the_limit_is_refused_not_silently_cut(world):
    before = count(world.exchange, "stix_objects")
    body = gzip.compress(b"198.51.100.1\n" + b" " * (4 * LIMIT) + b"\n198.51.100.2\n")
    assert len(body) < LIMIT
    resp = _import(world, body, format="text", name="bomb.txt.gz")
    assert resp.status_code in (200, 413), resp.text
    if resp.status_code == 200:
        summary = resp.json()
        assert summary["ok"] is False
        assert any(
            str(LIMIT) in r["reason"] or "exceed" in r["reason"] or "limit" in r["reason"]
            for r in summary["rejections"]
        ), summary["rejections"]
    else:
        assert count(world.exchange, "stix_objects") == before


def test_import_bad_parameters(world):
    for params, status, word in [
        ({"format": "xml"}, 400, "unknown format"),
        ({"format": ""}, 400, "unknown format"),
        ({"format": "TEXT"}, 400, "unknown format"),
        ({"tlp": "purple"}, 400, "purple"),
        ({"mapping": "nonsense"}, 400, "mapping"),
        ({"mapping": "value=0,fixed_type=bogus-kind"}, 400, "bogus"),
        ({"name": "n" * 201}, 400, "name"),
        ({"community": "nowhere"}, 404, "nowhere"),
        ({"community": "closed"}, 404, "closed"),
        ({"community": ""}, 404, ""),
    ]:
        before = count(world.exchange, "stix_objects")
        resp = _import(world, b"198.51.100.20\n", **params)
        assert_clear_error(resp, status, word)
        assert count(world.exchange, "stix_objects") == before


def test_import_without_community_parameter_is_400(world):
    resp = world.client.post("/api/import", content=b"198.51.100.20\n", headers=bearer(world.analyst))
    assert_clear_error(resp, 400, "community")


def test_import_nul_in_query_is_400(world):
    resp = world.client.post(
        "/api/import?community=ops&name=a%00b", content=b"1.2.3.4\n", headers=bearer(world.analyst)
    )
    assert_clear_error(resp, 400, "NUL")


def test_import_as_reader_outsider_and_disabled_user_is_refused(world):
    before = count(world.exchange, "stix_objects")
    assert_clear_error(_import(world, b"198.51.100.21\n", who=world.reader, format="text"), 404, "ops")
    assert_clear_error(_import(world, b"198.51.100.21\n", who=world.outsider, format="text"), 404, "ops")
    world.exchange.admin.set_user_active("acme-user", False)
    assert_clear_error(_import(world, b"198.51.100.21\n", format="text"), 401)
    resp = world.client.post("/api/import", params={"community": "ops"}, content=b"198.51.100.21\n")
    assert_clear_error(resp, 401)
    assert count(world.exchange, "stix_objects") == before


def test_import_by_collection_id_and_with_basic_auth(world):
    cid = world.exchange.admin.get_community("ops").collection_id
    resp = world.client.post(
        "/api/import",
        params={"community": cid, "format": "text"},
        content=b"198.51.100.30\n",
        headers=basic("acme-user", world.analyst.token),
    )
    assert resp.status_code == 200 and resp.json()["stored"] >= 2


def test_import_malformed_json_is_a_rejection_with_nothing_stored(world):
    before = count(world.exchange, "stix_objects")
    resp = _import(
        world, b'{"type": "bundle", "objects": [{"type": "indicator", ', format="stix", name="b.json"
    )
    assert resp.status_code == 200
    summary = resp.json()
    assert summary["ok"] is False and summary["stored"] == 0 and summary["rejections"]
    assert count(world.exchange, "stix_objects") == before


def test_import_deeply_nested_json_is_refused_cleanly(world):
    resp = _import(world, b"[" * 5000 + b"]" * 5000, format="stix", name="deep.json")
    assert resp.status_code == 200, resp.text
    assert resp.json()["ok"] is False


# =====================================================================================
# Lookup API
# =====================================================================================
ODD_VALUES = [
    "\x00",
    "1.2.3.4\x00",
    "evil\x00.example",
    "%",
    "_",
    "%.example.com",
    "'; DROP TABLE users; --",
    "*.example.com",
    ".",
    "..",
    "0.0.0.0/0",
    "::/0",
    "1.2.3.4/33",
    "999.1.1.1",
    "::ffff:198.51.100.23",
    "bücher.de",
    "xn--",
    "a" * 63 + ".com",
    ("a" * 63 + ".") * 4 + "com",
    "hxxp://[::1]:99999/",
    "bob[@]example[.]org",
    "🙂",
    "\ud800" if False else "\u202e",
    " ",
    "\n",
    "d41d8cd98f00b204e9800998ecf8427e",
    "http://",
    "mailto:",
    "@",
    "a@b",
    "1.2.3.4:80",
    "[1.2.3.4]",
    "x" * 2048,
]


def test_bulk_lookup_of_odd_values_never_500s(world):
    for value in ODD_VALUES:
        resp = world.client.post("/api/lookup", json={"values": [value]}, headers=bearer(world.analyst))
        assert resp.status_code == 200, (value, resp.text[:300])
        [result] = resp.json()["results"]
        assert result["value"] == value
        assert ("error" in result) != ("found" in result), (value, result)
    together = world.client.post("/api/lookup", json={"values": ODD_VALUES}, headers=bearer(world.analyst))
    assert together.status_code == 200
    assert [r["value"] for r in together.json()["results"]] == ODD_VALUES


def test_lookup_wildcards_do_not_match_stored_values(world):
    cid = world.exchange.admin.get_community("ops").collection_id
    principal = world.exchange.auth.principal_for_user("acme-user")
    obj = indicator("203.0.113.5", tlp=Tlp.GREEN, pattern="[domain-name:value = 'real-bad.example.net']")
    assert not world.exchange.ingest.add_objects(principal, cid, [obj]).failures
    assert (
        world.client.get(
            "/api/lookup", params={"value": "real-bad.example.net"}, headers=bearer(world.analyst)
        ).json()["results"][0]["found"]
        is True
    )
    for probe in ("%.example.net", "real_bad.example.net", "%bad.example.net", "*.example.net"):
        r = world.client.get("/api/lookup", params={"value": probe}, headers=bearer(world.analyst))
        assert r.status_code == 200
        res = r.json()["results"][0]
        assert not res.get("found"), (probe, res)


def test_bulk_lookup_wrong_types_are_400(world):
    for body, word in [
        ({"values": "1.2.3.4"}, "values"),
        ({"values": [1, 2]}, "values"),
        ({"values": [None]}, "values"),
        ({"values": [["1.2.3.4"]]}, "values"),
        ({"values": {"a": "1.2.3.4"}}, "values"),
        ({"value": ["1.2.3.4"]}, "values"),
        ([], ""),
        ("1.2.3.4", ""),
        ({"values": ["x" * 2049]}, "values"),
    ]:
        resp = world.client.post("/api/lookup", json=body, headers=bearer(world.analyst))
        assert_clear_error(resp, 400, word)


def test_bulk_lookup_limits(world):
    h = bearer(world.analyst)
    at_limit = [f"10.{i // 65536}.{i // 256 % 256}.{i % 256}" for i in range(10_000)]
    ok = world.client.post("/api/lookup", json={"values": at_limit}, headers=h)
    assert ok.status_code == 200 and len(ok.json()["results"]) == 10_000
    over = world.client.post("/api/lookup", json={"values": at_limit + ["1.1.1.1"]}, headers=h)
    assert_clear_error(over, 400, "values")
    empty = world.client.post("/api/lookup", json={"values": []}, headers=h)
    assert empty.status_code in (200, 400)
    if empty.status_code == 200:
        assert empty.json() == {"results": []}


def test_bulk_lookup_huge_and_malformed_bodies(world):
    h = {**bearer(world.analyst), "Content-Type": "application/json"}
    huge = world.client.post(
        "/api/lookup", content=b'{"values": ["' + b"a" * (2 * 1024 * 1024) + b'"]}', headers=h
    )
    assert_clear_error(huge, 413)
    for raw in (b"", b"{", b'{"values": [1.2.3.4]}', b"\xff\xfe"):
        assert_clear_error(world.client.post("/api/lookup", content=raw, headers=h), 400)


def test_bulk_lookup_deeply_nested_body_is_400(world):
    h = {**bearer(world.analyst), "Content-Type": "application/json"}
    raw = b'{"values": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    assert_clear_error(world.client.post("/api/lookup", content=raw, headers=h), 400)


def test_get_lookup_limits_and_odd_values(world):
    h = bearer(world.analyst)
    assert_clear_error(world.client.get("/api/lookup", headers=h), 400, "value")
    empty = world.client.get("/api/lookup", params={"value": ""}, headers=h)  # a per-value error
    assert empty.status_code == 200 and "error" in empty.json()["results"][0]
    many = [("value", f"10.0.0.{i}") for i in range(101)]
    assert_clear_error(world.client.get("/api/lookup", params=many, headers=h), 400, "100")
    assert world.client.get("/api/lookup", params=many[:100], headers=h).status_code == 200
    assert_clear_error(world.client.get("/api/lookup", params={"value": "x" * 2049}, headers=h), 400, "value")
    assert_clear_error(world.client.get("/api/lookup?value=1.2.3.4%00", headers=h), 400, "NUL")
    odd = world.client.get("/api/lookup?value=%FF%FE", headers=h)
    assert odd.status_code in (200, 400) and "Traceback" not in odd.text


def test_lookup_with_bad_credentials_is_401_not_anonymous(world):
    for headers in (
        {"Authorization": "Bearer nope"},
        {"Authorization": "Basic !!!"},
        basic("acme-reader", world.analyst.token),
        {"Authorization": "Negotiate abc"},
    ):
        assert_clear_error(
            world.client.post("/api/lookup", json={"values": ["1.2.3.4"]}, headers=headers), 401
        )


# =====================================================================================
# CLI
# =====================================================================================
@pytest.fixture
def cli(database_url):
    runner = CliRunner()

    def run(*args: str, code: int | None = 0):
        result = runner.invoke(cli_app, ["--database-url", database_url, *args])
        if code is not None:
            assert result.exit_code == code, (result.exit_code, result.output, result.exception)
        assert "Traceback" not in result.output
        return result.output

    return run


@pytest.mark.parametrize("name", ["", "   ", "Société", "x" * 201, "Acme\n", "-dash"])
def test_cli_odd_org_names_exit_2(cli, exchange, name):
    out = cli("org", "create", "--sector", "vendor", "--", name, code=2)
    assert "organisation name" in out or "name" in out
    assert exchange.admin.list_orgs() == []


def test_cli_duplicates_and_unknown_references(cli, exchange):
    cli("org", "create", "Acme", "--sector", "vendor")
    assert "already exists" in cli("org", "create", "Acme", "--sector", "vendor", code=3)
    cli("user", "create", "acme-1", "--org", "Acme")
    assert "already exists" in cli("user", "create", "acme-1", "--org", "Acme", code=3)
    assert "role" in cli("user", "create", "acme-2", "--org", "Acme", "--role", "Admin", code=2)
    assert "country" in cli("org", "create", "Beta", "--sector", "vendor", "--country", "lu", code=2)
    assert "no user named" in cli("user", "disable", "ghost", code=3)
    assert "no user named" in cli("token", "create", "ghost", code=3)
    cli("community", "create", "c1")
    assert "already exists" in cli("community", "create", "c1", code=3)
    assert "community name" in cli("community", "create", "C1", code=2)
    assert "no organisation" in cli("member", "set", "c1", "Ghost", code=3)
    assert "no community" in cli("member", "set", "nowhere", "Acme", code=3)
    assert "not a member" in cli("member", "remove", "c1", "Acme", code=3)
    out = cli("member", "set", "c1", "Acme", "--max-tlp", "purple", code=2)
    assert "purple" in out.lower() or "tlp" in out.lower()
    assert exchange.admin.list_memberships("c1") == []


@pytest.mark.parametrize("days", ["0", "-1", "3651", "99999999999999999999999"])
def test_cli_bad_token_expiry_exit_2(cli, exchange, days):
    cli("org", "create", "Acme", "--sector", "vendor")
    cli("user", "create", "acme-1", "--org", "Acme")
    out = cli("token", "create", "acme-1", f"--expires-in-days={days}", code=2)
    assert "expiry" in out or "expires" in out
    assert exchange.admin.list_tokens() == []


def test_cli_token_label_with_nul_or_too_long_exit_2(cli, exchange):
    cli("org", "create", "Acme", "--sector", "vendor")
    cli("user", "create", "acme-1", "--org", "Acme")
    assert "label" in cli("token", "create", "acme-1", "--label", "x" * 201, code=2)
    assert "label" in cli("token", "create", "acme-1", "--label", "a\x00b", code=2)
    assert exchange.admin.list_tokens() == []


def test_cli_revoke_twice_and_unknown_ids(cli, exchange):
    cli("org", "create", "Acme", "--sector", "vendor")
    cli("user", "create", "acme-1", "--org", "Acme")
    token = cli("token", "create", "acme-1", "--bare").strip()
    tid = exchange.admin.list_tokens()[0][0].id
    cli("token", "revoke", str(tid))
    cli("token", "revoke", str(tid))  # idempotent
    with pytest.raises(AuthenticationRequired):
        exchange.auth.authenticate(token)
    assert "no token" in cli("token", "revoke", "--", "-5", code=3)
    cli("token", "revoke", "abc", code=2)


def test_cli_revoke_a_token_id_beyond_64_bits(database_url):
    result = CliRunner().invoke(
        cli_app, ["--database-url", database_url, "token", "revoke", "99999999999999999999"]
    )
    assert result.exit_code in (2, 3), (result.exit_code, repr(result.exception))
    assert "no token" in result.output or "Invalid value" in result.output


def test_cli_disabled_user_token_stops_and_enable_restores(cli, exchange):
    cli("org", "create", "Acme", "--sector", "vendor")
    cli("user", "create", "acme-1", "--org", "Acme")
    token = cli("token", "create", "acme-1", "--bare").strip()
    cli("user", "disable", "acme-1")
    cli("user", "disable", "acme-1")  # twice is fine
    assert " no" in cli("user", "list")
    with pytest.raises(AuthenticationRequired):
        exchange.auth.authenticate(token)
    cli("user", "enable", "acme-1")
    assert exchange.auth.authenticate(token).user_name == "acme-1"


def test_cli_commands_never_prompt(cli, exchange):
    # no --sector: a usage error, not a prompt waiting for input
    out = cli("org", "create", "Acme", code=2)
    assert "sector" in out.lower()
    assert exchange.admin.list_orgs() == []
