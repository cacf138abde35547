"""Raw HTTP tests of the TAXII 2.1 error paths, headers and media types."""

from __future__ import annotations

import uuid

import httpx
import pytest

from commonwatch.config import load_settings
from commonwatch.domain.markings import Tlp
from commonwatch.domain.timestamps import parse_timestamp
from commonwatch.services.exchange import Exchange

from conftest import LiveServer
from support.factories import indicator, make_community, make_member

TAXII = "application/taxii+json;version=2.1"


@pytest.fixture
def env(exchange, live_server):
    alice = make_member(exchange, "Alice Telecom")
    reader = make_member(exchange, "Reader Org", role="reader")
    outsider = make_member(exchange, "Outsider Org")
    cid = make_community(exchange, "sharing", Tlp.AMBER, {alice.org: (True, Tlp.RED),
                                                          reader.org: (True, Tlp.AMBER)})
    client = httpx.Client(base_url=live_server.url, headers={"Accept": TAXII}, timeout=30)
    yield {"alice": alice, "reader": reader, "outsider": outsider, "cid": cid, "http": client,
           "objects": f"/taxii2/api/collections/{cid}/objects/", "exchange": exchange}
    client.close()


def bearer(member) -> dict[str, str]:
    return {"Authorization": f"Bearer {member.token}"}


def post(env, member, objects, **headers):
    return env["http"].post(env["objects"], json={"objects": objects},
                            headers={**bearer(member), "Content-Type": TAXII, **headers})


def assert_taxii_error(resp: httpx.Response, status: int) -> dict:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"] == TAXII
    body = resp.json()
    assert body["http_status"] == str(status) and body["title"] and body["description"]
    return body


@pytest.mark.parametrize("path", ["/taxii2/", "/taxii2/api/", "/taxii2/api/collections/"])
def test_401_without_credentials(env, path):
    resp = env["http"].get(path)
    assert_taxii_error(resp, 401)
    assert resp.headers["www-authenticate"].startswith("Basic")


def test_401_for_every_bad_credential(env):
    alice, http = env["alice"], env["http"]
    bad = [
        {"Authorization": "Bearer cw_not-a-real-token"},
        {"Authorization": "Basic !!!"},
        {"Authorization": "Digest abc"},
        {"Authorization": "Bearer " + "x" * 5000},
    ]
    for headers in bad:
        assert_taxii_error(http.get("/taxii2/", headers=headers), 401)
    wrong_user = httpx.BasicAuth("someone-else", alice.token)
    assert_taxii_error(http.get("/taxii2/", auth=wrong_user), 401)
    assert http.get("/taxii2/", auth=httpx.BasicAuth(alice.user, alice.token)).status_code == 200


def test_revoked_and_disabled_tokens_stop_working(env):
    exchange, http = env["exchange"], env["http"]
    member = make_member(exchange, "Short Lived")
    assert http.get("/taxii2/", headers=bearer(member)).status_code == 200
    token_id = exchange.admin.list_tokens(member.user)[0][0].id
    exchange.admin.revoke_token(token_id)
    assert_taxii_error(http.get("/taxii2/", headers=bearer(member)), 401)
    fresh = exchange.admin.create_token(member.user).secret
    exchange.admin.set_user_active(member.user, False)
    assert_taxii_error(http.get("/taxii2/", headers={"Authorization": f"Bearer {fresh}"}), 401)


def test_expired_token(database_url):
    clock = [1_800_000_000_000_000]
    exchange = Exchange(load_settings(environ={}, database_url=database_url),
                        migrate=False, clock=lambda: clock[0])
    member = make_member(exchange, "Clocked")
    token = exchange.admin.create_token(member.user, expires_in_days=1).secret
    assert exchange.auth.authenticate(token).user_name == member.user
    clock[0] += 2 * 86_400_000_000
    from commonwatch.errors import AuthenticationRequired
    with pytest.raises(AuthenticationRequired):
        exchange.auth.authenticate(token)
    exchange.close()


@pytest.mark.parametrize("accept", ["text/html", "application/json",
                                    "application/taxii+json;version=2.0"])
def test_406_for_media_types_taxii_does_not_define(env, accept):
    resp = env["http"].get("/taxii2/", headers={**bearer(env["alice"]), "Accept": accept})
    assert_taxii_error(resp, 406)


def test_accept_variants_that_are_fine(env):
    for accept in ["application/taxii+json", "*/*", TAXII, "application/taxii+json; version=2.1"]:
        resp = env["http"].get("/taxii2/", headers={**bearer(env["alice"]), "Accept": accept})
        assert resp.status_code == 200, accept


def test_415_for_wrong_content_type(env):
    resp = post(env, env["alice"], [indicator()], **{"Content-Type": "application/json"})
    assert_taxii_error(resp, 415)


def test_413_for_large_bodies(env, exchange):
    limit = exchange.settings.max_body_bytes
    resp = env["http"].post(env["objects"], content=b" " * (limit + 1),
                            headers={**bearer(env["alice"]), "Content-Type": TAXII})
    assert_taxii_error(resp, 413)


def test_413_for_large_chunked_bodies(database_url):
    settings = load_settings(environ={}, database_url=database_url, max_body_bytes=1000)
    exchange = Exchange(settings, migrate=False)
    alice = make_member(exchange, "Alice")
    exchange.admin.create_community("c")
    exchange.admin.set_membership(alice.org, "c")
    cid = exchange.admin.get_community("c").collection_id
    with LiveServer(exchange) as server:
        def chunks():
            for _ in range(20):
                yield b" " * 100
        resp = httpx.post(f"{server.url}/taxii2/api/collections/{cid}/objects/", content=chunks(),
                          headers={**bearer(alice), "Content-Type": TAXII, "Accept": TAXII})
    assert_taxii_error(resp, 413)
    exchange.close()


@pytest.mark.parametrize("body", [b"{not json", b"[]", b'{"objects": {}}', b'"x"', b"\xff\xfe"])
def test_400_for_malformed_envelopes(env, body):
    resp = env["http"].post(env["objects"], content=body,
                            headers={**bearer(env["alice"]), "Content-Type": TAXII})
    assert_taxii_error(resp, 400)


@pytest.mark.parametrize("query", [
    "added_after=yesterday", "added_after=2026-01-01", "added_after=2026-13-01T00:00:00Z",
    "limit=0", "limit=-5", "limit=abc", "limit=1e3", "next=garbage", "next=",
    "match[version]=newest", "match[version]=2026-02-30T00:00:00Z", "match[foo]=x",
    "match[id]=not-an-id", "match[type]=Bad_Type", "match[spec_version]=two",
    "added_after=2026-01-01T00:00:00Z&added_after=2026-01-02T00:00:00Z", "match[type]=a,,b",
])
def test_400_for_malformed_parameters(env, query):
    for path in (env["objects"], env["objects"].replace("objects/", "manifest/")):
        resp = env["http"].get(f"{path}?{query}", headers=bearer(env["alice"]))
        body = assert_taxii_error(resp, 400)
        assert body["description"]


def test_404_and_405_are_taxii_errors(env):
    http, alice = env["http"], env["alice"]
    assert_taxii_error(http.get(f"/taxii2/api/collections/{uuid.uuid4()}/objects/",
                                headers=bearer(alice)), 404)
    assert_taxii_error(http.get("/taxii2/nothing-here/", headers=bearer(alice)), 404)
    assert_taxii_error(http.put(env["objects"], headers=bearer(alice)), 405)
    assert_taxii_error(http.get(f"/taxii2/api/status/{uuid.uuid4()}/", headers=bearer(alice)), 404)


def test_403_for_writers_without_write_access(env):
    resp = post(env, env["reader"], [indicator()])
    assert_taxii_error(resp, 403)


def test_outsider_cannot_tell_a_collection_exists(env):
    http, outsider = env["http"], env["outsider"]
    real = http.get(env["objects"], headers=bearer(outsider))
    fake = http.get(f"/taxii2/api/collections/{uuid.uuid4()}/objects/", headers=bearer(outsider))
    assert real.status_code == fake.status_code == 404
    assert real.json() == fake.json()
    assert post(env, outsider, [indicator()]).status_code == 404


def test_hidden_object_answers_like_a_missing_one(env):
    alice, reader, http = env["alice"], env["reader"], env["http"]
    red = indicator(tlp=Tlp.RED)
    assert post(env, alice, [red]).status_code == 202
    hidden = http.get(f"{env['objects']}{red['id']}/", headers=bearer(reader))
    missing = http.get(f"{env['objects']}indicator--{uuid.uuid4()}/", headers=bearer(reader))
    assert hidden.status_code == missing.status_code == 404
    assert hidden.json() == missing.json()
    assert hidden.headers == missing.headers or {
        k for k in hidden.headers if k != "date"} == {k for k in missing.headers if k != "date"}
    versions = http.get(f"{env['objects']}{red['id']}/versions/", headers=bearer(reader))
    assert versions.status_code == 404 and versions.json() == missing.json()
    delete = http.delete(f"{env['objects']}{red['id']}/", headers=bearer(reader))
    assert delete.status_code == 404 and delete.json() == missing.json()


def test_date_added_headers_and_whole_second_added_after(env):
    alice, http = env["alice"], env["http"]
    for _ in range(3):
        assert post(env, alice, [indicator(), indicator()]).status_code == 202
    resp = http.get(env["objects"] + "?match[type]=indicator", headers=bearer(alice))
    assert resp.status_code == 200 and resp.headers["content-type"] == TAXII
    first, last = resp.headers["X-TAXII-Date-Added-First"], resp.headers["X-TAXII-Date-Added-Last"]
    assert parse_timestamp(first) < parse_timestamp(last)  # not as text: ".120Z" is 120,000 µs
    manifest = http.get(env["objects"].replace("objects/", "manifest/") + "?match[type]=indicator",
                        headers=bearer(alice)).json()
    added = [parse_timestamp(m["date_added"]) for m in manifest["objects"]]
    assert added == sorted(added) and len(set(added)) == len(added) == 6
    whole = first[:19] + "Z"
    after = http.get(f"{env['objects']}?added_after={whole}&match[type]=indicator",
                     headers=bearer(alice))
    assert after.status_code == 200


def test_paging_with_added_after_never_skips_or_repeats(env):
    alice, http = env["alice"], env["http"]
    posted = []
    for _ in range(5):
        batch = [indicator() for _ in range(7)]
        posted += [o["id"] for o in batch]
        post(env, alice, batch)
    seen: list[str] = []
    cursor = None
    while True:
        q = "?match[type]=indicator&limit=4" + (f"&added_after={cursor}" if cursor else "")
        resp = http.get(env["objects"] + q, headers=bearer(alice))
        objs = resp.json().get("objects", [])
        if not objs:
            break
        seen += [o["id"] for o in objs]
        cursor = resp.headers["X-TAXII-Date-Added-Last"]
    assert seen == posted


def test_every_response_has_the_taxii_content_type(env):
    http, alice = env["http"], env["alice"]
    status = post(env, alice, [indicator()])
    assert status.status_code == 202 and status.headers["content-type"] == TAXII
    for path in ["/taxii2/", "/taxii2/api/", "/taxii2/api/collections/",
                 f"/taxii2/api/collections/{env['cid']}/", env["objects"],
                 f"/taxii2/api/status/{status.json()['id']}/"]:
        resp = http.get(path, headers=bearer(alice))
        assert resp.status_code == 200 and resp.headers["content-type"] == TAXII, path


def test_write_only_members_may_post_but_not_read(env, exchange):
    dropbox = make_member(exchange, "Drop Box")
    exchange.admin.set_membership(dropbox.org, "sharing", can_read=False, can_write=True)
    assert post(env, dropbox, [indicator()]).status_code == 202
    coll = env["http"].get(f"/taxii2/api/collections/{env['cid']}/", headers=bearer(dropbox)).json()
    assert coll["can_read"] is False and coll["can_write"] is True
    for suffix in ("objects/", "manifest/"):
        resp = env["http"].get(f"/taxii2/api/collections/{env['cid']}/{suffix}", headers=bearer(dropbox))
        assert_taxii_error(resp, 403)


@pytest.mark.parametrize("failure", ["pool", "locked"])
def test_a_busy_database_is_a_503_with_retry_after(exchange, monkeypatch, failure):
    """Every pooled connection in use (streaming exports hold one each), or SQLite's write
    lock held past its timeout: the client is told to retry, not that the server broke."""
    import sqlalchemy.exc
    from fastapi.testclient import TestClient

    from commonwatch.web.app import create_app

    member = make_member(exchange, "Busy")

    def busy(*args, **kwargs):
        if failure == "pool":
            raise sqlalchemy.exc.TimeoutError("QueuePool limit of size 10 overflow 40 reached")
        raise sqlalchemy.exc.OperationalError("BEGIN", {}, Exception("database is locked"))

    monkeypatch.setattr(exchange.query, "collections", busy)
    with TestClient(create_app(exchange), raise_server_exceptions=False) as client:
        resp = client.get("/taxii2/api/collections/", headers={**bearer(member), "Accept": TAXII})
    assert resp.status_code == 503 and resp.headers["Retry-After"] == "5"
    assert resp.headers["content-type"] == TAXII
    assert resp.json() == {"title": "Service unavailable", "http_status": "503",
                           "description": "the exchange is busy; retry in 5 seconds"}
