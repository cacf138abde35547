"""Adversarial raw-HTTP tests of the TAXII 2.1 API (OASIS TAXII 2.1, 10 June 2021).

Each test sends requests a hostile or sloppy client could send and checks that the
server answers with a TAXII error (never a 500, a traceback or HTML), stores nothing
partial, leaks nothing and follows the standard's rules on paging, filtering,
version ordering and deletion.
"""

from __future__ import annotations

import base64
import threading
import uuid

import httpx
import pytest

from commonwatch.domain.markings import Tlp
from commonwatch.domain.timestamps import format_timestamp, parse_timestamp

from support.factories import indicator, ipv4, make_community, make_member, new_version

TAXII = "application/taxii+json;version=2.1"


@pytest.fixture
def env(exchange, live_server):
    alice = make_member(exchange, "Alice Telecom")
    reader = make_member(exchange, "Reader Org", role="reader")
    bob = make_member(exchange, "Bob Vendor")
    outsider = make_member(exchange, "Outsider Org")
    cid = make_community(exchange, "sharing", Tlp.AMBER, {
        alice.org: (True, Tlp.RED), reader.org: (True, Tlp.AMBER), bob.org: (True, Tlp.AMBER)})
    other = make_community(exchange, "other", Tlp.GREEN, {alice.org: (True, Tlp.AMBER)})
    client = httpx.Client(base_url=live_server.url, headers={"Accept": TAXII}, timeout=30)
    base = f"/taxii2/api/collections/{cid}/"
    yield {"alice": alice, "reader": reader, "bob": bob, "outsider": outsider, "cid": cid,
           "other": other, "http": client, "base": base, "objects": base + "objects/",
           "manifest": base + "manifest/", "exchange": exchange, "url": live_server.url}
    client.close()


# -- helpers -------------------------------------------------------------------------
def bearer(member) -> dict[str, str]:
    return {"Authorization": f"Bearer {member.token}"}


def post(env, member, objects, path=None, **headers):
    return env["http"].post(path or env["objects"], json={"objects": objects},
                            headers={**bearer(member), "Content-Type": TAXII, **headers})


def post_raw(env, member, body: bytes, **headers):
    return env["http"].post(env["objects"], content=body,
                            headers={**bearer(member), "Content-Type": TAXII, **headers})


def get(env, member, path, **headers):
    """GET; a dropped connection (uvicorn closes it after an unhandled error) reads as 599."""
    try:
        return env["http"].get(path, headers={**bearer(member), **headers})
    except httpx.TransportError as exc:
        return httpx.Response(599, text=f"connection error: {exc!r}",
                              headers={"content-type": "text/plain"})


def assert_taxii_error(resp: httpx.Response, status: int) -> dict:
    assert resp.status_code == status, (resp.status_code, resp.text[:500])
    assert resp.headers["content-type"] == TAXII, resp.headers.get("content-type")
    body = resp.json()
    assert body["http_status"] == str(status) and body["title"] and body["description"]
    assert "Traceback" not in resp.text
    return body


def assert_taxii_ok(resp: httpx.Response, status: int = 200) -> dict:
    assert resp.status_code == status, (resp.status_code, resp.text[:500])
    assert resp.headers["content-type"] == TAXII
    return resp.json()


def token(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def ids_of(body: dict) -> list[str]:
    return [o["id"] for o in body.get("objects", [])]


def follow(env, member, path, key="objects", limit=2, extra=""):
    """Every page of ``path`` with ``limit``; returns (items, pages)."""
    items, pages = [], 0
    nxt = None
    while True:
        q = f"?limit={limit}{extra}" + (f"&next={nxt}" if nxt else "")
        body = assert_taxii_ok(get(env, member, path + q))
        pages += 1
        items += body.get(key, [])
        if not body["more"]:
            assert "next" not in body, body
            return items, pages
        assert body["next"]
        nxt = body["next"]
        assert pages < 100


# -- pagination ----------------------------------------------------------------------
def test_paging_objects_and_manifest_sees_each_object_once_in_order(env):
    alice = env["alice"]
    posted = [indicator() for _ in range(7)]
    for o in posted:
        assert post(env, alice, [o]).status_code == 202
    objs, pages = follow(env, alice, env["objects"], extra="&match[type]=indicator")
    assert [o["id"] for o in objs] == [o["id"] for o in posted] and pages == 4
    man, _ = follow(env, alice, env["manifest"], extra="&match[type]=indicator")
    assert [m["id"] for m in man] == [o["id"] for o in posted]
    added = [parse_timestamp(m["date_added"]) for m in man]
    assert added == sorted(added)
    for m in man:
        assert m["media_type"] == "application/stix+json;version=2.1"


def test_paging_versions_oldest_first_even_when_posted_out_of_order(env):
    alice = env["alice"]
    base = indicator(created=0)
    order = [5, 1, 9, 3, 7, 0]
    for n in order:
        assert post(env, alice, [new_version(base, n)]).status_code == 202
    path = f"{env['objects']}{base['id']}/versions/"
    versions, pages = follow(env, alice, path, key="versions", limit=4)
    from support.factories import ts
    assert versions == [ts(n) for n in sorted(order)]
    assert pages == 2
    # one page with everything: same order
    body = assert_taxii_ok(get(env, alice, path))
    assert body["versions"] == versions and body["more"] is False
    # the single-object endpoint, all versions, paged, oldest first too
    objs, _ = follow(env, alice, f"{env['objects']}{base['id']}/", limit=4,
                     extra="&match[version]=all")
    assert sorted(o["modified"] for o in objs) == [ts(n) for n in sorted(order)]
    assert len(objs) == len(order)


def test_tampered_next_tokens_are_taxii_errors_not_500(env):
    alice = env["alice"]
    assert post(env, alice, [indicator()]).status_code == 202
    oid = post(env, alice, [indicator()]).json()["successes"][0]["id"]
    bad_tokens = ["!!!!", "%00", token("xx1:5"), token("cw1:abc"), token("cw1:"), token("cw1:1.5"),
                  token("cw1:5\x00"), "A" * 6000, token("cw1:" + "9" * 40), token("cw1:-" + "9" * 40),
                  token("cw1:" + "9" * 19), token("cw1:-" + "9" * 19)]
    failures = []
    for bad in bad_tokens:
        for path in (env["objects"], env["manifest"], f"{env['objects']}{oid}/",
                     f"{env['objects']}{oid}/versions/"):
            resp = get(env, alice, f"{path}?next={bad}")
            # A token that decodes to a number out of range may be refused (400) or read
            # as a position past/before everything (200); never a server error.
            # A position beyond 64 bits or negative is not one this server issued: 400
            # (TAXII 2.1 §3.6), never a database error.
            if resp.status_code not in (200, 400) or resp.headers["content-type"] != TAXII:
                failures.append((path.rsplit("/", 3)[-3:], bad[:30], resp.status_code))
    assert not failures, failures


def test_truncated_next_token_never_500(env):
    alice = env["alice"]
    assert post(env, alice, [indicator() for _ in range(3)]).status_code == 202
    body = assert_taxii_ok(get(env, alice, env["objects"] + "?limit=1"))
    nxt = body["next"]
    for cut in range(1, len(nxt)):
        resp = get(env, alice, f"{env['objects']}?next={nxt[:cut]}")
        assert resp.status_code in (200, 400), (nxt[:cut], resp.status_code, resp.text[:200])
        assert resp.headers["content-type"] == TAXII


def test_foreign_next_token_never_widens_visibility(env):
    """A next token issued to alice (cleared for RED) gives the reader nothing hidden."""
    alice, reader = env["alice"], env["reader"]
    red = [indicator(tlp=Tlp.RED) for _ in range(3)]
    amber = [indicator(tlp=Tlp.AMBER) for _ in range(3)]
    assert post(env, alice, amber[:1] + red + amber[1:]).status_code == 202
    first = assert_taxii_ok(get(env, alice, env["objects"] + "?match[type]=indicator&limit=1"))
    assert first["more"] is True
    resp = get(env, reader, f"{env['objects']}?match[type]=indicator&next={first['next']}")
    got = ids_of(assert_taxii_ok(resp))
    assert not set(got) & {o["id"] for o in red}
    assert got == [o["id"] for o in amber[1:]]
    # a token from another collection, or from the versions endpoint, is only a position
    assert post(env, alice, [indicator(), indicator()],
                path=f"/taxii2/api/collections/{env['other']}/objects/").status_code == 202
    foreign = assert_taxii_ok(get(env, alice, f"/taxii2/api/collections/{env['other']}/objects/"
                                              "?limit=1&match[type]=indicator"))
    resp = get(env, reader, f"{env['objects']}?next={foreign['next']}")
    assert resp.status_code in (200, 400)
    if resp.status_code == 200:
        assert not set(ids_of(resp.json())) & {o["id"] for o in red}


def test_next_with_changed_filters_still_applies_the_filters(env):
    alice = env["alice"]
    objs = [indicator(), ipv4("192.0.2.1"), indicator(), ipv4("192.0.2.2"), indicator()]
    assert post(env, alice, objs).status_code == 202
    page = assert_taxii_ok(get(env, alice, env["objects"] + "?match[type]=indicator&limit=1"))
    resp = get(env, alice, f"{env['objects']}?match[type]=ipv4-addr&next={page['next']}")
    body = assert_taxii_ok(resp)
    assert {o["type"] for o in body.get("objects", [])} <= {"ipv4-addr"}
    assert ids_of(body) == [objs[1]["id"], objs[3]["id"]]


def test_bad_limits_are_400(env):
    from urllib.parse import quote
    failures = []
    for limit in ["0", "-1", "abc", "1.0", "+5", " 5", "0x10", "\u00b2", "\u0665\u00b2", "", "1_0"]:
        for path in (env["objects"], env["manifest"], f"{env['objects']}indicator--{uuid.uuid4()}/"):
            resp = get(env, env["alice"], f"{path}?limit={quote(limit)}")
            # Non-ASCII digits ("²", "٥") are no limit either: 400 (TAXII 2.1 §3.6).
            if resp.status_code != 400 or resp.headers["content-type"] != TAXII:
                failures.append((path[-12:], limit, resp.status_code))
    assert not failures, failures


def test_huge_limit_is_capped_not_an_error(env):
    alice = env["alice"]
    assert post(env, alice, [indicator() for _ in range(3)]).status_code == 202
    for limit in ("1" + "0" * 30, "10001", "1"):
        body = assert_taxii_ok(get(env, alice, f"{env['objects']}?match[type]=indicator&limit={limit}"))
        assert len(body["objects"]) == (1 if limit == "1" else 3)
        assert body["more"] is (limit == "1")


def test_duplicate_parameters(env):
    alice = env["alice"]
    i, s = indicator(), ipv4("192.0.2.9")
    assert post(env, alice, [i, s]).status_code == 202
    # repeated match[type] is the same as a comma list (or refused); never a 500
    rep = get(env, alice, f"{env['objects']}?match[type]=indicator&match[type]=ipv4-addr")
    comma = get(env, alice, f"{env['objects']}?match[type]=indicator,ipv4-addr")
    assert set(ids_of(assert_taxii_ok(comma))) == {i["id"], s["id"]}
    if rep.status_code == 200:
        assert set(ids_of(rep.json())) == {i["id"], s["id"]}
    else:
        assert_taxii_error(rep, 400)
    for q in ("limit=1&limit=2", "next=a&next=b", "added_after=2026-01-01T00:00:00Z&"
              "added_after=2026-01-01T00:00:00Z"):
        assert_taxii_error(get(env, alice, f"{env['objects']}{i['id']}/?{q}"), 400)
        assert_taxii_error(get(env, alice, f"{env['objects']}{i['id']}/versions/?{q}"), 400)


# -- added_after and date headers ----------------------------------------------------
def test_added_after_exactly_at_a_date_added_is_exclusive(env):
    alice = env["alice"]
    posted = [indicator() for _ in range(5)]
    for o in posted:
        assert post(env, alice, [o]).status_code == 202
    man = assert_taxii_ok(get(env, alice, env["manifest"] + "?match[type]=indicator"))["objects"]
    for k in range(5):
        stamp = man[k]["date_added"]
        for path, key in ((env["objects"], "objects"), (env["manifest"], "objects")):
            body = assert_taxii_ok(get(env, alice, f"{path}?match[type]=indicator&added_after={stamp}"))
            assert [o["id"] for o in body.get(key, [])] == [o["id"] for o in posted[k + 1:]], k
        # one microsecond earlier includes the object itself
        us = parse_timestamp(stamp) - 1
        body = assert_taxii_ok(get(env, alice, f"{env['objects']}?match[type]=indicator"
                                               f"&added_after={format_timestamp(us)}"))
        assert ids_of(body)[0] == posted[k]["id"]


def test_added_after_odd_precision_and_future(env):
    alice = env["alice"]
    assert post(env, alice, [indicator()]).status_code == 202
    for stamp in ("2026-01-01T00:00:00.1Z", "2026-01-01T00:00:00.123456789Z",
                  "2026-01-01T00:00:00Z", "1970-01-01T00:00:00Z", "0001-01-01T00:00:00Z"):
        body = assert_taxii_ok(get(env, alice, f"{env['objects']}?match[type]=indicator"
                                               f"&added_after={stamp}"))
        assert len(body["objects"]) == 1, stamp
    for stamp in ("9999-12-31T23:59:59.999999Z", "9999-12-31T23:59:60Z", "2999-01-01T00:00:00Z"):
        for path in (env["objects"], env["manifest"]):
            resp = get(env, alice, f"{path}?added_after={stamp}")
            body = assert_taxii_ok(resp)
            assert body["more"] is False and not body.get("objects"), stamp
            assert "X-TAXII-Date-Added-First" not in resp.headers
    for stamp in ("2026-01-01t00:00:00z", "2026-01-01T00:00:00+00:00", "2026-01-01 00:00:00Z",
                  "2026-01-01T00:00:00.1234567890Z", "10000-01-01T00:00:00Z", "%00", "1767225600"):
        from urllib.parse import quote
        assert_taxii_error(get(env, alice, f"{env['objects']}?added_after={quote(stamp)}"), 400)


def test_date_added_headers_match_the_page(env):
    alice = env["alice"]
    base = indicator()
    versions = [new_version(base, n) for n in range(1, 4)]
    for v in [indicator(), *versions, indicator()]:
        assert post(env, alice, [v]).status_code == 202
    man = assert_taxii_ok(get(env, alice, env["manifest"] + "?match[type]=indicator&match[version]=all"))
    for path in (env["objects"], env["manifest"]):
        resp = get(env, alice, f"{path}?match[type]=indicator&match[version]=all&limit=2")
        assert_taxii_ok(resp)
        assert resp.headers["X-TAXII-Date-Added-First"] == man["objects"][0]["date_added"]
        assert resp.headers["X-TAXII-Date-Added-Last"] == man["objects"][1]["date_added"]
    mine = [m["date_added"] for m in man["objects"] if m["id"] == base["id"]]
    resp = get(env, alice, f"{env['objects']}{base['id']}/versions/")
    assert_taxii_ok(resp)
    assert resp.headers["X-TAXII-Date-Added-First"] == mine[0]
    assert resp.headers["X-TAXII-Date-Added-Last"] == mine[-1]


# -- match filters -------------------------------------------------------------------
def test_match_version_first_last_all_and_lists(env):
    alice = env["alice"]
    from support.factories import ts
    base = indicator(created=0)
    vs = [new_version(base, n) for n in (1, 2, 3)]
    other = indicator()
    assert post(env, alice, [*vs, other]).status_code == 202
    path = f"{env['objects']}?match[id]={base['id']}"

    def mods(q):
        return sorted(o["modified"] for o in assert_taxii_ok(get(env, alice, path + q))["objects"])
    assert mods("") == [ts(3)]
    assert mods("&match[version]=last") == [ts(3)]
    assert mods("&match[version]=first") == [ts(1)]
    assert mods("&match[version]=first,last") == [ts(1), ts(3)]
    assert mods("&match[version]=all") == [ts(1), ts(2), ts(3)]
    assert mods(f"&match[version]={ts(2)}") == [ts(2)]
    assert mods(f"&match[version]={ts(2)},first") == [ts(1), ts(2)]
    assert mods(f"&match[version]=all,{ts(2)}") == [ts(1), ts(2), ts(3)]
    # match[id] comma list and spec_version
    body = assert_taxii_ok(get(env, alice, f"{env['objects']}?match[id]={base['id']},{other['id']}"))
    assert sorted(ids_of(body)) == sorted([base["id"], other["id"]])
    body = assert_taxii_ok(get(env, alice, f"{path}&match[spec_version]=2.0"))
    assert not body.get("objects") and body["more"] is False
    body = assert_taxii_ok(get(env, alice, f"{path}&match[spec_version]=2.0,2.1"))
    assert len(body["objects"]) == 1


def test_match_version_last_among_visible_versions(env):
    """A newer RED version hidden from the reader leaves the older one as its 'last'."""
    alice, reader = env["alice"], env["reader"]
    base = indicator(created=0, tlp=Tlp.AMBER)
    hidden = new_version(base, 5, object_marking_refs=indicator(tlp=Tlp.RED)["object_marking_refs"])
    assert post(env, alice, [base, hidden]).status_code == 202
    body = assert_taxii_ok(get(env, reader, f"{env['objects']}{base['id']}/"))
    assert [o["modified"] for o in body["objects"]] == [base["modified"]]
    body = assert_taxii_ok(get(env, reader, f"{env['objects']}{base['id']}/versions/"))
    assert body["versions"] == [base["modified"]]
    for q in ("match[version]=all", "match[version]=first", "match[version]=last",
              f"match[version]={hidden['modified']}"):
        body = assert_taxii_ok(get(env, reader, f"{env['objects']}?match[id]={base['id']}&{q}"))
        assert all(o["modified"] == base["modified"] for o in body.get("objects", [])), q
        man = assert_taxii_ok(get(env, reader, f"{env['manifest']}?match[id]={base['id']}&{q}"))
        assert all(m["version"] == base["modified"] for m in man.get("objects", [])), q


def test_hidden_objects_do_not_show_in_date_headers(env):
    alice, reader = env["alice"], env["reader"]
    amber = indicator(tlp=Tlp.AMBER)
    assert post(env, alice, [amber]).status_code == 202
    assert post(env, alice, [indicator(tlp=Tlp.RED)]).status_code == 202
    alice_man = assert_taxii_ok(get(env, alice, env["manifest"] + "?match[type]=indicator"))
    resp = get(env, reader, env["objects"] + "?match[type]=indicator")
    body = assert_taxii_ok(resp)
    assert ids_of(body) == [amber["id"]]
    assert resp.headers["X-TAXII-Date-Added-Last"] == alice_man["objects"][0]["date_added"]
    # paging limit=1: more must not be true because of the hidden object
    body = assert_taxii_ok(get(env, reader, env["objects"] + "?match[type]=indicator&limit=1"))
    assert body["more"] is False


# -- path segments -------------------------------------------------------------------
def test_junk_collection_and_status_ids_are_404(env):
    alice = env["alice"]
    failures = []
    segments = ["%00", "%ff%fe", "%E2%80%AE", "%C3%A9t%C3%A9", "..%2F..%2F", "%20", "a" * 300,
                "00000000-0000-0000-0000-000000000000", "%25", "'%20OR%201=1--", "%0A"]
    for segment in segments:
        for suffix in ("", "objects/", "manifest/", f"objects/indicator--{uuid.uuid4()}/",
                       f"objects/indicator--{uuid.uuid4()}/versions/"):
            resp = env["http"].get(f"/taxii2/api/collections/{segment}/{suffix}",
                                   headers=bearer(alice), follow_redirects=True)
            # A NUL in the path never reaches the database (PostgreSQL text refuses it):
            # an unknown collection is a 404 (TAXII 2.1 §5.2).
            if resp.status_code != 404 or resp.headers.get("content-type") != TAXII:
                failures.append(("GET", segment[:20], suffix[:12], resp.status_code))
        resp = env["http"].post(f"/taxii2/api/collections/{segment}/objects/",
                                json={"objects": [indicator()]},
                                headers={**bearer(alice), "Content-Type": TAXII})
        if resp.status_code != 404 or resp.headers.get("content-type") != TAXII:
            failures.append(("POST", segment[:20], resp.status_code))
    for segment in ["%00", "%ff", "x" * 36, "%00" * 36, "a" * 5000, "%E2%80%AE" * 12]:
        # Unknown status ids, NUL bytes included, are 404 (§4.3).
        resp = get(env, alice, f"/taxii2/api/status/{segment}/")
        if resp.status_code != 404 or resp.headers.get("content-type") != TAXII:
            failures.append(("status", segment[:20], resp.status_code))
    assert not failures, failures


def test_status_of_another_organisation_is_404(env):
    alice, bob = env["alice"], env["bob"]
    status = assert_taxii_ok(post(env, alice, [indicator()]), 202)
    assert assert_taxii_ok(get(env, alice, f"/taxii2/api/status/{status['id']}/"))["id"] == status["id"]
    assert_taxii_error(get(env, bob, f"/taxii2/api/status/{status['id']}/"), 404)
    assert_taxii_error(get(env, bob, f"/taxii2/api/status/{status['id'].upper()}/"), 404)


def test_object_ids_that_are_not_this_object_are_404(env):
    alice = env["alice"]
    obj = indicator()
    assert post(env, alice, [obj]).status_code == 202
    u = obj["id"].split("--")[1]
    bad_ids = [
        "ipv4-addr--" + u, "attack-pattern--" + u,  # right uuid, wrong type
        obj["id"].upper(), obj["id"] + "%00", obj["id"][:-1], obj["id"] + "0",
        "indicator--" + "-" * 36, "%C3%A9" + obj["id"], obj["id"] + "%20", "x--" + u,
        "ındicator--" + u, "a" * 4000,
    ]
    failures = []
    for bad in bad_ids:
        for suffix in ("", "versions/"):
            resp = get(env, alice, f"{env['objects']}{bad}/{suffix}")
            # Not this object's id, NUL bytes included, on every object endpoint: 404
            # (TAXII 2.1 §5.7).
            if resp.status_code != 404 or resp.headers["content-type"] != TAXII:
                failures.append((bad[:60], suffix, resp.status_code))
        resp = env["http"].delete(f"{env['objects']}{bad}/", headers=bearer(alice))
        if resp.status_code != 404 or resp.headers["content-type"] != TAXII:
            failures.append((bad[:60], "DELETE", resp.status_code))
    assert not failures, failures
    # nothing was deleted
    assert ids_of(assert_taxii_ok(get(env, alice, f"{env['objects']}{obj['id']}/"))) == [obj["id"]]


def test_object_id_with_newline_is_not_served(env):
    """"%0A" after an id: whatever the routing does (Starlette redirects to the
    slash-less URL), the caller ends on a TAXII 404 and nothing is deleted."""
    alice = env["alice"]
    obj = indicator()
    assert post(env, alice, [obj]).status_code == 202
    for method in ("GET", "DELETE"):
        resp = env["http"].request(method, f"{env['objects']}{obj['id']}%0A/",
                                   headers=bearer(alice), follow_redirects=True)
        assert_taxii_error(resp, 404)
    assert ids_of(assert_taxii_ok(get(env, alice, f"{env['objects']}{obj['id']}/"))) == [obj["id"]]


def test_junk_query_values_never_500(env):
    failures = []
    queries = [
        "match[id]=indicator--00000000-0000-0000-0000-000000000000%0A",
        "match[type]=indicator%0A", "match[type]=%00", "match[id]=%00", "match[version]=%00",
        "match[spec_version]=2.1%0A", "match%5Btype%5D=indicator", "match[type]=%E2%80%AE",
        "match[type]=" + ",".join(["indicator"] * 1001), "%00=1", "match[]=x", "match=x",
        "match[type]=indicator&&&", "&", "=", "limit", "added_after", "match[version]",
        "match[id]=indicator--" + "f" * 36,
    ]
    for query in queries:
        for path in (env["objects"], env["manifest"]):
            resp = get(env, env["alice"], f"{path}?{query}")
            if resp.status_code not in (200, 400) or resp.headers["content-type"] != TAXII:
                failures.append((query[:40], resp.status_code))
    assert not failures, failures


# -- media types, methods, slashes ---------------------------------------------------
def test_accept_headers_with_parameters_and_qvalues(env):
    alice = env["alice"]
    ok = ["application/taxii+json;version=2.1;q=0.5", "text/html;q=0.9, application/taxii+json;q=0.1",
          "application/*", "APPLICATION/TAXII+JSON; VERSION=2.1", 'application/taxii+json;version="2.1"',
          "text/html, */*;q=0.1", "application/taxii+json;version=2.1;charset=utf-8"]
    for accept in ok:
        resp = get(env, alice, env["objects"], Accept=accept)
        assert resp.status_code == 200 and resp.headers["content-type"] == TAXII, accept
    bad = ["application/taxii+json;version=2.1;q=0", "text/html, */*;q=0", "application/xml",
           "application/taxii+json;version=3.0", "application/stix+json;version=2.1"]
    for accept in bad:
        assert_taxii_error(get(env, alice, env["objects"], Accept=accept), 406)


def test_content_type_variants_on_post(env):
    alice = env["alice"]
    good = ["application/taxii+json;version=2.1; charset=utf-8", "application/taxii+json",
            "application/taxii+json; version=\"2.1\""]
    for ct in good:
        resp = post(env, alice, [indicator()], **{"Content-Type": ct})
        assert_taxii_ok(resp, 202)
    n = len(assert_taxii_ok(get(env, alice, env["objects"] + "?match[type]=indicator"))["objects"])
    assert n == len(good)
    for ct in ["application/taxii+json;version=2.0", "application/json", "text/plain", "",
               "multipart/form-data; boundary=x"]:
        assert_taxii_error(post(env, alice, [indicator()], **{"Content-Type": ct}), 415)
    resp = env["http"].post(env["objects"], content=b'{"objects": []}', headers=bearer(alice))
    assert_taxii_error(resp, 415)
    n2 = len(assert_taxii_ok(get(env, alice, env["objects"] + "?match[type]=indicator"))["objects"])
    assert n2 == n  # nothing stored by refused requests


def test_head_and_options(env):
    alice = env["alice"]
    assert post(env, alice, [indicator()]).status_code == 202
    for path in ("/taxii2/", "/taxii2/api/", env["base"], env["objects"], env["manifest"]):
        resp = env["http"].head(path, headers=bearer(alice))
        assert resp.status_code == 200, path
        assert resp.headers["content-type"] == TAXII and resp.content == b""
        opt = env["http"].options(path, headers=bearer(alice))
        assert opt.status_code < 500 and opt.headers["content-type"] == TAXII, (path, opt.status_code)
        if opt.status_code >= 400:
            assert_taxii_error(opt, opt.status_code)
    # HEAD without credentials is a 401 too
    assert env["http"].head(env["objects"]).status_code == 401


def test_wrong_methods_are_405_taxii_errors(env):
    alice = env["alice"]
    for method, path in (("PUT", env["objects"]), ("PATCH", env["objects"]),
                         ("DELETE", env["objects"]), ("DELETE", env["manifest"]),
                         ("POST", env["manifest"]), ("DELETE", "/taxii2/api/")):
        resp = env["http"].request(method, path, headers={**bearer(alice), "Content-Type": TAXII},
                                   content=b'{"objects": []}')
        assert_taxii_error(resp, 405)


def test_missing_trailing_slash_is_redirect_or_taxii_404(env):
    alice = env["alice"]
    for path in ("/taxii2", "/taxii2/api", "/taxii2/api/collections", env["objects"][:-1],
                 env["manifest"][:-1], env["base"][:-1]):
        resp = env["http"].get(path, headers=bearer(alice))
        assert resp.status_code < 500, path
        if resp.status_code in (301, 302, 307, 308):
            assert httpx.URL(resp.headers["location"]).path == path + "/"
        else:
            assert_taxii_error(resp, 404)


def test_long_urls_and_headers_never_500(env):
    alice = env["alice"]
    resp = get(env, alice, env["objects"] + "?match[type]=" + ",".join(["a" * 200] * 40))
    assert resp.status_code in (200, 400, 414) and resp.status_code < 500
    resp = get(env, alice, env["objects"], **{"X-Junk": "x" * 8000})
    assert resp.status_code < 500
    resp = get(env, alice, "/taxii2/api/collections/" + "a" * 7000 + "/objects/")
    assert resp.status_code in (404, 414, 431), resp.status_code
    if resp.status_code == 404:
        assert_taxii_error(resp, 404)


# -- POST bodies ---------------------------------------------------------------------
def test_bodies_that_are_not_envelopes_are_400(env):
    bodies = [
        b"null", b"123", b"true", b'[{"objects": []}]', b"", b"   ", b'{"objects": null}',
        b'{"objects": "abc"}', b'{"objects": 5}', b'{"objects": {"a": 1}}',
        b"[" * 10000 + b"]" * 10000, b'{"objects": ' + b"[" * 10000 + b"]" * 10000 + b"}",
        b'{"objects": [], "x": ' + b'{"a":' * 5000 + b"1" + b"}" * 5000 + b"}",
        b'{"objects": []}garbage', b'{"objects": [NaN]}', b'{"objects": [1e999]}',
        '{"objects": ["\ud800"]}'.encode("utf-8", "surrogatepass"), b"\xef\xbb\xbf{}",
        b'{"objects": [{"type": "indicator", "id": "\\ud800"}]}',
    ]
    failures = []
    for body in bodies:
        resp = post_raw(env, env["alice"], body)
        if resp.status_code != 400 or resp.headers["content-type"] != TAXII:
            failures.append((body[:40], resp.status_code, resp.text[:100]))
    assert not failures, failures
    body = assert_taxii_ok(get(env, env["alice"], env["objects"] + "?match[type]=indicator"))
    assert not body.get("objects")


def test_entries_that_are_not_objects_fail_without_storing(env):
    alice = env["alice"]
    good = indicator()
    entries = [1, "x", None, [], {}, {"type": "indicator"}, True, 1.5, good,
               {"id": good["id"], "type": "indicator"}]
    status = assert_taxii_ok(post(env, alice, entries), 202)
    assert status["total_count"] == len(entries)
    assert status["success_count"] == 1 and status["failure_count"] == len(entries) - 1
    assert [s["id"] for s in status["successes"]] == [good["id"]]
    for f in status["failures"]:
        assert isinstance(f["message"], str) and f["message"]
        assert isinstance(f["id"], str) and isinstance(f["version"], str)
    body = assert_taxii_ok(get(env, alice, env["objects"] + "?match[type]=indicator"))
    assert ids_of(body) == [good["id"]]
    again = assert_taxii_ok(get(env, alice, f"/taxii2/api/status/{status['id']}/"))
    assert again["failure_count"] == status["failure_count"]
    assert again["success_count"] == 1 and again["total_count"] == len(entries)


def test_weird_object_property_values_never_500(env):
    alice = env["alice"]
    deep: list = []
    for _ in range(900):
        deep = [deep]

    def variant(**changes):
        obj = indicator()
        obj.update(changes)
        return obj
    weird = [
        variant(id=123), variant(id=None), variant(type=["indicator"]), variant(modified=12345),
        variant(created="2026-02-30T00:00:00.000Z"), variant(spec_version=2.1),
        variant(object_marking_refs="marking-definition--x"), variant(object_marking_refs=[None]),
        variant(x_big=2 ** 70), variant(x_deep=deep), variant(created_by_ref=env["bob"].identity),
        variant(extensions="x"), variant(granular_markings=[{"selectors": ["name"]}]),
        variant(name="\ud7ff"), variant(pattern="[" * 2000),
        variant(valid_from="0000-01-01T00:00:00Z"), variant(x_nul_key={"\u0000": 1}),
        variant(id="indicator--" + str(uuid.uuid4()) + "\u0000"),
        variant(modified="9999-12-31T23:59:60.999Z"),
    ]
    resp = post(env, alice, weird)
    status = assert_taxii_ok(resp, 202)
    assert status["total_count"] == len(weird)
    assert status["success_count"] + status["failure_count"] == len(weird)
    body = assert_taxii_ok(get(env, alice, env["objects"] + "?match[type]=indicator"))
    assert len(body.get("objects", [])) == status["success_count"]
    # created_by_ref naming another member must be refused
    assert weird[10]["id"] in {f["id"] for f in status["failures"]}


def test_nul_character_in_a_name_is_not_a_server_error(env):
    alice = env["alice"]
    good, nul = indicator(), indicator(name="bad\u0000name")
    resp = post(env, alice, [good, nul])
    # A name holding U+0000 (valid JSON, valid STIX) is stored on both backends (its
    # export column reads U+FFFD: PostgreSQL text cannot hold NUL); the envelope is 202.
    status = assert_taxii_ok(resp, 202)
    assert good["id"] in {s["id"] for s in status["successes"]}
    assert (status["success_count"], status["failure_count"]) == (2, 0)
    listed = ids_of(assert_taxii_ok(get(env, alice, env["objects"] + "?match[type]=indicator")))
    assert {good["id"], nul["id"]} <= set(listed)
    [stored] = assert_taxii_ok(get(env, alice, f"{env['objects']}{nul['id']}/"))["objects"]
    assert stored["name"] == nul["name"] and "\x00" in stored["name"]  # the object as posted


def test_duplicate_objects_in_one_envelope_store_one_version(env):
    alice = env["alice"]
    obj = indicator()
    status = assert_taxii_ok(post(env, alice, [obj, dict(obj), dict(obj)]), 202)
    assert status["success_count"] == 3 and status["failure_count"] == 0
    versions = assert_taxii_ok(get(env, alice, f"{env['objects']}{obj['id']}/versions/"))
    assert versions["versions"] == [obj["modified"]]
    man = assert_taxii_ok(get(env, alice, env["manifest"] + "?match[type]=indicator&match[version]=all"))
    assert [m["id"] for m in man["objects"]] == [obj["id"]]


def test_same_id_two_versions_and_a_conflict_in_one_envelope(env):
    alice = env["alice"]
    base = indicator(created=0)
    newer, older = new_version(base, 9), new_version(base, 3)
    clash = new_version(base, 9, name="different content, same modified")
    status = assert_taxii_ok(post(env, alice, [newer, older, clash]), 202)
    assert status["success_count"] == 2 and status["failure_count"] == 1
    assert status["failures"][0]["id"] == base["id"]
    body = assert_taxii_ok(get(env, alice, f"{env['objects']}{base['id']}/versions/"))
    assert body["versions"] == [older["modified"], newer["modified"]]
    latest = assert_taxii_ok(get(env, alice, f"{env['objects']}{base['id']}/"))
    assert [o["modified"] for o in latest["objects"]] == [newer["modified"]]
    assert latest["objects"][0]["name"] == newer["name"]
    listing = assert_taxii_ok(get(env, alice, env["objects"] + "?match[type]=indicator"))
    assert [o["modified"] for o in listing["objects"]] == [newer["modified"]]
    # posting an older version later does not take the place of the newest
    assert post(env, alice, [new_version(base, 1)]).status_code == 202
    latest = assert_taxii_ok(get(env, alice, f"{env['objects']}{base['id']}/"))
    assert [o["modified"] for o in latest["objects"]] == [newer["modified"]]
    first = assert_taxii_ok(get(env, alice, f"{env['objects']}{base['id']}/?match[version]=first"))
    assert [o["modified"] for o in first["objects"]] == [new_version(base, 1)["modified"]]


def test_megabyte_objects_round_trip(env):
    alice = env["alice"]
    big = [indicator(description=(str(n) + "é\u2028\"\\") * 200_000) for n in range(3)]
    status = assert_taxii_ok(post(env, alice, big), 202)
    assert status["success_count"] == 3
    body = assert_taxii_ok(get(env, alice, env["objects"] + "?match[type]=indicator"))
    assert [o["description"] for o in body["objects"]] == [o["description"] for o in big]
    one = assert_taxii_ok(get(env, alice, f"{env['objects']}{big[1]['id']}/"))
    assert one["objects"][0] == big[1]


def test_envelope_extra_keys_are_ignored_and_empty_envelopes_work(env):
    alice = env["alice"]
    obj = indicator()
    resp = post_raw(env, alice, b'{"more": true, "next": "x", "objects": [' +
                    httpx.Request("POST", "/", json=obj).content + b"]}")
    assert assert_taxii_ok(resp, 202)["success_count"] == 1
    for body in (b"{}", b'{"objects": []}'):
        status = assert_taxii_ok(post_raw(env, alice, body), 202)
        assert status["total_count"] == 0 and status["status"] == "complete"


def test_unauthenticated_or_foreign_writes_store_nothing(env):
    alice, outsider, reader = env["alice"], env["outsider"], env["reader"]
    obj = indicator()
    resp = env["http"].post(env["objects"], json={"objects": [obj]}, headers={"Content-Type": TAXII})
    assert_taxii_error(resp, 401)
    assert_taxii_error(post(env, outsider, [obj]), 404)
    assert_taxii_error(post(env, reader, [obj]), 403)  # role reader: no writes
    assert_taxii_error(post(env, alice, [obj], path=f"/taxii2/api/collections/{env['other']}x/objects/"), 404)
    assert_taxii_error(get(env, alice, f"{env['objects']}{obj['id']}/"), 404)


# -- DELETE --------------------------------------------------------------------------
def test_delete_removes_every_version_everywhere(env):
    alice = env["alice"]
    base = indicator(created=0)
    keep = indicator()
    assert post(env, alice, [new_version(base, n) for n in (1, 2, 3)] + [keep]).status_code == 202
    resp = env["http"].delete(f"{env['objects']}{base['id']}/", headers=bearer(alice))
    assert resp.status_code == 200 and resp.headers["content-type"] == TAXII
    assert_taxii_error(get(env, alice, f"{env['objects']}{base['id']}/"), 404)
    assert_taxii_error(get(env, alice, f"{env['objects']}{base['id']}/versions/"), 404)
    for path in (env["objects"], env["manifest"]):
        body = assert_taxii_ok(get(env, alice, path + "?match[type]=indicator&match[version]=all"))
        assert [o["id"] for o in body["objects"]] == [keep["id"]]
    again = env["http"].delete(f"{env['objects']}{base['id']}/", headers=bearer(alice))
    assert_taxii_error(again, 404)


def test_delete_one_version_keeps_the_rest_and_the_right_latest(env):
    alice = env["alice"]
    from support.factories import ts
    base = indicator(created=0)
    assert post(env, alice, [new_version(base, n) for n in (1, 2, 3)]).status_code == 202
    path = f"{env['objects']}{base['id']}/"
    assert env["http"].delete(path + "?match[version]=last", headers=bearer(alice)).status_code == 200
    assert assert_taxii_ok(get(env, alice, path + "versions/"))["versions"] == [ts(1), ts(2)]
    latest = assert_taxii_ok(get(env, alice, path))
    assert [o["modified"] for o in latest["objects"]] == [ts(2)]
    listing = assert_taxii_ok(get(env, alice, env["objects"] + "?match[type]=indicator"))
    assert [o["modified"] for o in listing["objects"]] == [ts(2)]
    assert env["http"].delete(path + "?match[version]=first", headers=bearer(alice)).status_code == 200
    assert assert_taxii_ok(get(env, alice, path + "versions/"))["versions"] == [ts(2)]
    assert env["http"].delete(path + f"?match[version]={ts(1)}",
                              headers=bearer(alice)).status_code == 404
    assert env["http"].delete(path + "?match[spec_version]=2.0",
                              headers=bearer(alice)).status_code == 404
    assert assert_taxii_ok(get(env, alice, path + "versions/"))["versions"] == [ts(2)]
    for q in ("limit=1", "next=x", "added_after=2026-01-01T00:00:00Z", "match[id]=x", "match[version]=bad"):
        assert_taxii_error(env["http"].delete(f"{path}?{q}", headers=bearer(alice)), 400)
    assert assert_taxii_ok(get(env, alice, path + "versions/"))["versions"] == [ts(2)]


def test_delete_permissions(env):
    alice, bob, reader, outsider = env["alice"], env["bob"], env["reader"], env["outsider"]
    amber, red = indicator(tlp=Tlp.AMBER), indicator(tlp=Tlp.RED)
    assert post(env, alice, [amber, red]).status_code == 202
    for obj, member, status in ((amber, bob, 403), (amber, reader, 403), (amber, outsider, 404),
                                (red, bob, 404), (red, outsider, 404)):
        resp = env["http"].delete(f"{env['objects']}{obj['id']}/", headers=bearer(member))
        assert_taxii_error(resp, status)
    resp = env["http"].delete(f"{env['objects']}{amber['id']}/")
    assert_taxii_error(resp, 401)
    for obj in (amber, red):
        assert assert_taxii_ok(get(env, alice, f"{env['objects']}{obj['id']}/"))["objects"]


def test_delete_of_hidden_version_answers_like_missing(env):
    """Bob cannot see alice's RED version; deleting it by timestamp is a plain 404."""
    alice, bob = env["alice"], env["bob"]
    base = indicator(created=0, tlp=Tlp.GREEN)
    red = new_version(base, 5, object_marking_refs=indicator(tlp=Tlp.RED)["object_marking_refs"])
    assert post(env, alice, [base, red]).status_code == 202
    hidden = env["http"].delete(f"{env['objects']}{base['id']}/?match[version]={red['modified']}",
                                headers=bearer(bob))
    missing = env["http"].delete(f"{env['objects']}{base['id']}/?match[version]=2030-01-01T00:00:00.000Z",
                                 headers=bearer(bob))
    assert hidden.status_code == missing.status_code == 404
    assert hidden.json() == missing.json()


# -- concurrency ---------------------------------------------------------------------
def _run_threads(funcs):
    results: list = [None] * len(funcs)
    errors: list = []
    barrier = threading.Barrier(len(funcs))

    def run(i, f):
        try:
            barrier.wait()
            results[i] = f()
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i, f)) for i, f in enumerate(funcs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors, errors
    return results


def test_concurrent_identical_posts_store_one_version(env):
    alice = env["alice"]
    obj = indicator()

    def send():
        with httpx.Client(base_url=env["url"], timeout=30) as c:
            return c.post(env["objects"], json={"objects": [obj]},
                          headers={**bearer(alice), "Content-Type": TAXII, "Accept": TAXII})
    results = _run_threads([send] * 6)
    for r in results:
        assert r.status_code == 202, r.text[:300]
        assert r.json()["success_count"] == 1, r.text[:300]
    body = assert_taxii_ok(get(env, alice, f"{env['objects']}{obj['id']}/versions/"))
    assert body["versions"] == [obj["modified"]]


def test_concurrent_versions_leave_exactly_one_latest(env):
    alice = env["alice"]
    from support.factories import ts
    base = indicator(created=0)

    def sender(n):
        def send():
            with httpx.Client(base_url=env["url"], timeout=30) as c:
                return c.post(env["objects"], json={"objects": [new_version(base, n)]},
                              headers={**bearer(alice), "Content-Type": TAXII, "Accept": TAXII})
        return send
    results = _run_threads([sender(n) for n in range(1, 7)])
    assert all(r.status_code == 202 and r.json()["success_count"] == 1 for r in results), \
        [r.text[:200] for r in results]
    listing = assert_taxii_ok(get(env, alice, env["objects"] + "?match[type]=indicator"))
    assert [o["modified"] for o in listing["objects"]] == [ts(6)]
    versions = assert_taxii_ok(get(env, alice, f"{env['objects']}{base['id']}/versions/"))
    assert versions["versions"] == [ts(n) for n in range(1, 7)]


def test_concurrent_deletes_by_the_owner_are_200_or_404_never_403(env):
    alice = env["alice"]
    objs = [indicator() for _ in range(8)]
    assert post(env, alice, objs).status_code == 202

    def deleter(obj):
        def run():
            with httpx.Client(base_url=env["url"], timeout=30) as c:
                return c.delete(f"{env['objects']}{obj['id']}/", headers={**bearer(alice), "Accept": TAXII})
        return run
    seen = []
    for obj in objs:
        results = _run_threads([deleter(obj)] * 3)
        seen += [(r.status_code, r.json().get("title")) for r in results]
        assert sum(r.status_code == 200 for r in results) >= 1
        assert_taxii_error(get(env, alice, f"{env['objects']}{obj['id']}/"), 404)
    # Concurrent DELETEs of one id by its owner: each is 200 or 404 (already gone,
    # TAXII 2.1 §5.8), never 403.
    assert all(status in (200, 404) for status, _ in seen), seen


def test_concurrent_post_and_delete_of_the_same_id(env):
    alice = env["alice"]
    base = indicator(created=0)
    assert post(env, alice, [new_version(base, 1)]).status_code == 202

    def poster():
        with httpx.Client(base_url=env["url"], timeout=30) as c:
            return c.post(env["objects"], json={"objects": [new_version(base, 2)]},
                          headers={**bearer(alice), "Content-Type": TAXII, "Accept": TAXII})

    def deleter():
        with httpx.Client(base_url=env["url"], timeout=30) as c:
            return c.delete(f"{env['objects']}{base['id']}/", headers={**bearer(alice), "Accept": TAXII})
    results = _run_threads([poster, deleter])
    assert results[0].status_code == 202, results[0].text[:300]
    for r in results[1:]:
        assert r.status_code in (200, 404), r.text[:300]
        assert r.headers["content-type"] == TAXII
    assert sum(r.status_code == 200 for r in results[1:]) >= 1
    # whatever the interleaving: versions, single object and listing agree
    vers = get(env, alice, f"{env['objects']}{base['id']}/versions/")
    single = get(env, alice, f"{env['objects']}{base['id']}/")
    listing = assert_taxii_ok(get(env, alice, env["objects"] + "?match[type]=indicator"))
    if vers.status_code == 404:
        assert single.status_code == 404 and not listing.get("objects")
    else:
        newest = assert_taxii_ok(vers)["versions"][-1]
        assert [o["modified"] for o in assert_taxii_ok(single)["objects"]] == [newest]
        assert [o["modified"] for o in listing["objects"]] == [newest]


def test_concurrent_readers_while_writing_see_consistent_pages(env):
    alice = env["alice"]
    posted = [indicator() for _ in range(8)]

    def writer():
        with httpx.Client(base_url=env["url"], timeout=30) as c:
            return [c.post(env["objects"], json={"objects": [o]},
                           headers={**bearer(alice), "Content-Type": TAXII, "Accept": TAXII}).status_code
                    for o in posted]

    def reader():
        with httpx.Client(base_url=env["url"], timeout=30) as c:
            out = []
            for _ in range(8):
                r = c.get(env["objects"] + "?match[type]=indicator",
                          headers={**bearer(alice), "Accept": TAXII})
                out.append((r.status_code, [o["id"] for o in r.json().get("objects", [])]))
            return out
    w, r = _run_threads([writer, reader])
    assert w == [202] * 8
    order = [o["id"] for o in posted]
    for status, ids in r:
        assert status == 200
        assert ids == order[:len(ids)]  # always a prefix: commit order == date_added order
