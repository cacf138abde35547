"""Adversarial tests of pull feeds over HTTP: conditional requests, validators that must
move whenever the content may, odd feed names and definitions, visibility per caller."""

from __future__ import annotations

import base64
import datetime as dt
import json
import threading
from email.utils import format_datetime, parsedate_to_datetime

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from commonwatch.cli.main import app as cli_app
from commonwatch.domain.markings import Tlp
from commonwatch.services.exchange import Exchange
from commonwatch.services.query import ObjectFilter, VersionSelector
from commonwatch.web.app import create_app
from exports.conftest import NOW, ring

from support.factories import indicator, make_member, new_version

T0 = NOW  # the frozen clock of conftest's ``clock`` fixture (2026-05-28T20:26:40Z)


@pytest.fixture
def world(settings, clock):
    ex = Exchange(settings, migrate=False, clock=clock)
    members = ring(ex)
    with TestClient(create_app(ex)) as client:
        yield {"ex": ex, "P": members["P"], "B": members["B"], "cid": members["cid"], "client": client,
               "clock": clock}
    ex.close()


def _auth(member) -> dict[str, str]:
    return {"Authorization": f"Bearer {member.token}"}


def _make(w, name="ips", member="B", **body):
    resp = w["client"].post("/api/feeds", headers=_auth(w[member]),
                            json={"name": name, "format": "plain-ip", **body})
    assert resp.status_code == 201, resp.text
    return resp


def _get(w, name="ips", member="B", **headers):
    return w["client"].get(f"/feeds/{name}", headers={**_auth(w[member]), **headers})


def _tick(w, seconds=5):
    w["clock"].now += seconds * 1_000_000


def _first(w, name="ips", member="B"):
    resp = _get(w, name, member)
    assert resp.status_code == 200, resp.text
    return resp


# -- If-None-Match ---------------------------------------------------------------------

def test_if_none_match_forms(world):
    w = world
    _make(w)
    # "*" matches any current representation, before the first fetch too (RFC 9110 §13.1.2).
    assert _get(w, **{"If-None-Match": "*"}).status_code == 304
    etag = _first(w).headers["etag"]
    assert etag.startswith('"') and etag.endswith('"')
    ok = {"a list": f'"nope", {etag}, "other"', "no spaces": f'"x",{etag}', "weak": f"W/{etag}",
          "weak in a list": f'W/"x", W/{etag}', "star": "*", "padded": f"  {etag}  "}
    for what, value in ok.items():
        r = _get(w, **{"If-None-Match": value})
        assert r.status_code == 304, what
        assert r.content == b"" and r.headers["etag"] == etag
        assert r.headers["cache-control"] == "private, no-cache"
    bad = {"unquoted": etag.strip('"'), "garbage": "!!!garbage;;", "empty": "",
           "prefix": etag[:-3] + '"', "very long": '"' + "a" * 20_000 + '"', "lower-case weak": f"w/{etag}",
           "nested quotes": f'"{etag}"', "only comma": ","}
    for what, value in bad.items():
        r = _get(w, **{"If-None-Match": value})
        assert r.status_code == 200, what
        assert sorted(r.text.split()) == ["45.81.0.1", "45.81.0.2"], what
        assert r.headers["etag"] == etag  # nothing changed: same validator


def test_if_none_match_wins_over_if_modified_since(world):
    w = world
    _make(w)
    first = _first(w)
    etag, modified = first.headers["etag"], first.headers["last-modified"]
    future = format_datetime(dt.datetime(2099, 1, 1, tzinfo=dt.UTC), usegmt=True)
    # RFC 9110 §13.1.3: If-Modified-Since is ignored when If-None-Match is present
    assert _get(w, **{"If-None-Match": '"stale"', "If-Modified-Since": future}).status_code == 200
    assert _get(w, **{"If-None-Match": '"stale"', "If-Modified-Since": modified}).status_code == 200
    assert _get(w, **{"If-None-Match": etag, "If-Modified-Since": "Thu, 01 Jan 1970 00:00:00 GMT"}
                ).status_code == 304


def test_if_none_match_in_two_header_lines(world):
    """RFC 9110 §5.3: two field lines are one comma-separated list."""
    w = world
    _make(w)
    etag = _first(w).headers["etag"]
    headers = [("Authorization", f"Bearer {w['B'].token}"), ("If-None-Match", '"old"'),
               ("If-None-Match", etag)]
    r = w["client"].get("/feeds/ips", headers=headers)
    # Several If-None-Match lines form one list (RFC 9110 §5.3, §13.1.2).
    assert r.status_code == 304


# -- If-Modified-Since -----------------------------------------------------------------

def test_if_modified_since_formats(world):
    w = world
    _make(w)
    first = _first(w)
    modified = first.headers["last-modified"]
    lm = parsedate_to_datetime(modified)
    assert lm.timestamp() == T0 // 1_000_000
    rfc850 = lm.strftime("%A, %d-%b-%y %H:%M:%S GMT")
    asctime = lm.strftime("%a %b %e %H:%M:%S %Y")
    for value in (modified, rfc850, asctime):
        assert _get(w, **{"If-Modified-Since": value}).status_code == 304, value
    earlier = format_datetime(lm - dt.timedelta(seconds=1), usegmt=True)
    assert _get(w, **{"If-Modified-Since": earlier}).status_code == 200
    for garbage in ("garbage", "", "0", "-1", "Mon, 99 Foo 2026 99:99:99 GMT", "x" * 5000,
                    "2026-05-28T20:26:40Z", "Thu, 01 Jan 1970 00:00:00 GMT"):
        r = _get(w, **{"If-Modified-Since": garbage})
        assert r.status_code == 200, garbage
        assert sorted(r.text.split()) == ["45.81.0.1", "45.81.0.2"]


def test_future_if_modified_since_never_hides_a_change(world):
    w = world
    _make(w)
    _first(w)
    future = format_datetime(dt.datetime(2099, 1, 1, tzinfo=dt.UTC), usegmt=True)
    assert _get(w, **{"If-Modified-Since": future}).status_code == 304
    _tick(w)
    assert not w["ex"].ingest.add_objects(w["P"].principal, w["cid"], [indicator("45.81.0.9")]).failures
    r = _get(w, **{"If-Modified-Since": future})
    assert r.status_code == 200 and "45.81.0.9" in r.text.split()


def test_a_change_within_the_same_second_drops_last_modified(world):
    w = world
    _make(w)
    first = _first(w)
    # a change within the same second: the new body cannot have a Last-Modified of its
    # own (HTTP dates have whole seconds), so it goes without one
    w["clock"].now += 1000
    assert not w["ex"].ingest.add_objects(w["P"].principal, w["cid"], [indicator("45.81.0.9")]).failures
    second = _get(w, **{"If-Modified-Since": first.headers["last-modified"]})
    assert second.status_code == 200 and "45.81.0.9" in second.text
    assert "last-modified" not in second.headers
    assert second.headers["etag"] != first.headers["etag"]
    # the older date stays no evidence of the newer body; the ETag is
    again = _get(w, **{"If-Modified-Since": first.headers["last-modified"]})
    assert again.status_code == 200 and "45.81.0.9" in again.text and "last-modified" not in again.headers
    assert _get(w, **{"If-None-Match": second.headers["etag"]}).status_code == 304
    head = w["client"].head("/feeds/ips", headers=_auth(w["B"]))
    assert head.status_code == 200 and "last-modified" not in head.headers
    # the next change in a later second has a date again
    _tick(w)
    assert not w["ex"].ingest.add_objects(w["P"].principal, w["cid"], [indicator("45.81.0.10")]).failures
    third = _get(w)
    assert parsedate_to_datetime(third.headers["last-modified"]) > parsedate_to_datetime(
        first.headers["last-modified"])
    assert _get(w, **{"If-Modified-Since": third.headers["last-modified"]}).status_code == 304


@pytest.mark.parametrize("older_ends_first", [True, False])
def test_overlapping_renders_never_share_a_last_modified(world, older_ends_first):
    """Regression: two renders started within one second around a write took the same
    Last-Modified; a client holding the older body was answered 304 on
    If-Modified-Since and kept it."""
    w = world
    ex, b = w["ex"], w["B"].principal
    _make(w)
    feed = ex.feeds.get_feed(b, "ips")
    older, older_etag, older_modified = ex.feeds.render_feed(b, feed)
    older_chunks = iter(older.chunks)
    older_body = next(older_chunks)  # read before the write
    w["clock"].now += 300_000
    assert not ex.ingest.add_objects(w["P"].principal, w["cid"], [indicator("45.81.0.9")]).failures
    newer, newer_etag, newer_modified = ex.feeds.render_feed(b, feed)
    assert older_modified is not None and newer_modified is None  # one second, two bodies
    assert newer_etag != older_etag
    if older_ends_first:
        older_body += "".join(older_chunks)
        newer_body = "".join(newer.chunks)
    else:
        newer_body = "".join(newer.chunks)
        older_body += "".join(older_chunks)
    assert "45.81.0.9" not in older_body.split() and "45.81.0.9" in newer_body.split()
    since = format_datetime(dt.datetime.fromtimestamp(older_modified // 1_000_000, tz=dt.UTC), usegmt=True)
    r = _get(w, **{"If-Modified-Since": since})
    assert r.status_code == 200, "the older body's date was answered 304"
    assert "45.81.0.9" in r.text.split()
    assert _get(w, **{"If-None-Match": older_etag}).status_code == 200
    assert _get(w, **{"If-None-Match": newer_etag}).status_code == 304


def test_concurrent_reservations_take_distinct_anchors(world):
    """Each render of a new generation reserves its anchor in one statement: threads
    racing on one feed (the clock frozen) never get the same one."""
    w = world
    ex, b = w["ex"], w["B"].principal
    _make(w)
    feed = ex.feeds.get_feed(b, "ips")
    taken: list[tuple[int, bool]] = []

    def reserve() -> None:
        for _ in range(25):
            taken.append(ex.feeds._reserve(feed.id, b.user_id))

    threads = [threading.Thread(target=reserve) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    anchors = [a for a, _ in taken]
    assert len(anchors) == 100 and len(set(anchors)) == 100
    assert sum(not shared for _, shared in taken) == 1  # only the first had its second alone


def test_head_request(world):
    w = world
    _make(w)
    r = w["client"].head("/feeds/ips", headers=_auth(w["B"]))
    # HEAD answers the GET's validators without a body (RFC 9110 §9.3.2).
    assert r.status_code in (200, 304), r.status_code
    assert "etag" in r.headers and r.content == b""
    # the HEAD of a feed not rendered yet rendered it: its validators are the stored ones
    again = _get(w, **{"If-None-Match": r.headers["etag"]})
    assert again.status_code == 304 and again.headers["etag"] == r.headers["etag"]
    # a HEAD answered from the stored state has the GET's headers: no length (a GET streams)
    current = w["client"].head("/feeds/ips", headers=_auth(w["B"]))
    assert current.status_code == 200 and current.headers["etag"] == r.headers["etag"]
    assert "content-length" not in current.headers, current.headers
    assert current.headers["content-type"] == _get(w).headers["content-type"]


# -- validators move whenever the content may ------------------------------------------

def test_etag_changes_after_every_content_change(world):
    w = world
    ex, p, cid = w["ex"], w["P"].principal, w["cid"]
    _make(w)
    seen = {_first(w).headers["etag"]}

    def changed(expect: list[str]) -> None:
        _tick(w)
        old = sorted(seen)
        r = _get(w, **{"If-None-Match": ", ".join(old)})
        assert r.status_code == 200, "a stale ETag was answered 304"
        assert sorted(r.text.split()) == sorted(expect)
        assert r.headers["etag"] not in seen
        seen.add(r.headers["etag"])
        again = _get(w, **{"If-None-Match": r.headers["etag"]})
        assert again.status_code == 304

    obj = indicator("45.81.0.3", tlp=Tlp.GREEN)
    assert not ex.ingest.add_objects(p, cid, [obj]).failures
    changed(["45.81.0.1", "45.81.0.2", "45.81.0.3"])
    # revoked: a new version
    assert not ex.ingest.add_objects(p, cid, [new_version(obj, 50, revoked=True)]).failures
    changed(["45.81.0.1", "45.81.0.2"])
    # deleted
    gone = indicator("45.81.0.4", tlp=Tlp.GREEN)
    assert not ex.ingest.add_objects(p, cid, [gone]).failures
    changed(["45.81.0.1", "45.81.0.2", "45.81.0.4"])
    ex.ingest.delete_object(p, cid, gone["id"], ObjectFilter(versions=VersionSelector(last=False, all=True)))
    changed(["45.81.0.1", "45.81.0.2"])
    # the requester's clearance
    ex.admin.set_membership("Bee", "ring", True, False, Tlp.GREEN)
    changed(["45.81.0.1"])
    ex.admin.set_membership("Bee", "ring", True, False, Tlp.AMBER)
    changed(["45.81.0.1", "45.81.0.2"])
    # a warninglisted value is not exported; the list holds 10.0.0.0/8
    assert not ex.ingest.add_objects(p, cid, [indicator("10.1.2.3", tlp=Tlp.GREEN)]).failures
    changed(["45.81.0.1", "45.81.0.2"])
    # valid_until passing: no write at all
    soon = T0 + 60_000_000
    until = dt.datetime.fromtimestamp(soon / 1e6, tz=dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    assert not ex.ingest.add_objects(p, cid, [indicator("45.81.0.5", valid_until=until)]).failures
    changed(["45.81.0.1", "45.81.0.2", "45.81.0.5"])
    w["clock"].now = soon  # exactly at valid_until: expired
    changed(["45.81.0.1", "45.81.0.2"])


def test_writes_and_deletes_the_reader_cannot_see_never_move_its_etag(world):
    """A feed's validators read only what its reader can see happen: a post or delete
    above its clearance answers 304 (anything else would tell it that something
    happened); a TLP:RED object it is named on moves the ETag of a RED feed both ways."""
    w = world
    ex, p, cid = w["ex"], w["P"].principal, w["cid"]
    all_versions = ObjectFilter(versions=VersionSelector(last=False, all=True))
    ex.admin.set_membership("Bee", "ring", True, False, Tlp.GREEN)
    _make(w)
    etag = _first(w).headers["etag"]

    def unchanged() -> None:
        _tick(w)
        assert _get(w, **{"If-None-Match": etag}).status_code == 304

    hidden = indicator("45.81.0.7", tlp=Tlp.AMBER)
    assert not ex.ingest.add_objects(p, cid, [hidden]).failures
    unchanged()
    ex.ingest.delete_object(p, cid, hidden["id"], all_versions)
    unchanged()
    for_others = indicator("45.81.0.8", tlp=Tlp.RED, recipients=[w["P"].identity])
    assert not ex.ingest.add_objects(p, cid, [for_others]).failures
    unchanged()
    ex.ingest.delete_object(p, cid, for_others["id"], all_versions)
    unchanged()
    ex.admin.create_community("elsewhere")  # a community the reader may not know exists
    ex.admin.set_membership("Prod", "elsewhere", True, True, Tlp.AMBER)
    unchanged()

    # cleared for RED, with a feed that takes RED, and named on the object
    ex.admin.set_membership("Bee", "ring", True, False, Tlp.RED)
    _make(w, name="red", tlp="red")
    red = _first(w, "red")
    named = indicator("45.81.0.9", tlp=Tlp.RED, recipients=[w["B"].identity])
    assert not ex.ingest.add_objects(p, cid, [named]).failures
    _tick(w)
    shown = _get(w, "red", **{"If-None-Match": red.headers["etag"]})
    assert shown.status_code == 200 and "45.81.0.9" in shown.text.split()
    ex.ingest.delete_object(p, cid, named["id"], all_versions)
    _tick(w)
    gone = _get(w, "red", **{"If-None-Match": shown.headers["etag"]})
    assert gone.status_code == 200 and "45.81.0.9" not in gone.text.split()


def test_two_users_of_one_organisation_never_share_a_stale_304(world):
    w = world
    ex = w["ex"]
    ex.admin.create_user("Bee", "bee-2", "reader")
    tok2 = ex.admin.create_token("bee-2").secret
    other = {"Authorization": f"Bearer {tok2}"}
    _make(w, tlp="red")
    one = _first(w)
    two = w["client"].get("/feeds/ips", headers=other)
    assert two.status_code == 200 and sorted(two.text.split()) == sorted(one.text.split())
    # user 1 keeps its ETag; the org's clearance drops; user 2 fetches the new content
    _tick(w)
    ex.admin.set_membership("Bee", "ring", True, False, Tlp.GREEN)
    two = w["client"].get("/feeds/ips", headers={**other, "If-None-Match": two.headers["etag"]})
    assert two.status_code == 200 and two.text.split() == ["45.81.0.1"]
    # user 1's old ETag must not be answered 304 now, neither for user 1 nor for user 2
    assert _get(w, **{"If-None-Match": one.headers["etag"]}).status_code == 200
    r = w["client"].get("/feeds/ips", headers={**other, "If-None-Match": one.headers["etag"]})
    assert r.status_code == 200 and r.text.split() == ["45.81.0.1"]
    # a user of another organisation with the same feed name never gets Bee's validators
    _make(w, member="P", tlp="red")
    r = _get(w, member="P", **{"If-None-Match": one.headers["etag"]})
    assert r.status_code == 200


def test_red_ceiling_and_named_recipients(world):
    w = world
    ex, p, cid = w["ex"], w["P"].principal, w["cid"]
    ex.admin.set_membership("Bee", "ring", True, False, Tlp.RED)
    assert not ex.ingest.add_objects(p, cid, [
        indicator("45.81.0.7", tlp=Tlp.RED, recipients=[w["B"].identity]),
        indicator("45.81.0.8", tlp=Tlp.RED, recipients=[])]).failures
    _make(w, "dflt")
    _make(w, "red", tlp="red")
    assert sorted(_first(w, "dflt").text.split()) == ["45.81.0.1", "45.81.0.2"]
    assert sorted(_first(w, "red").text.split()) == ["45.81.0.1", "45.81.0.2", "45.81.0.7"]
    # the producer's own feed with a red ceiling sees both of its red objects
    _make(w, "red", member="P", tlp="red")
    assert sorted(_first(w, "red", "P").text.split()) == [
        "45.81.0.1", "45.81.0.2", "45.81.0.7", "45.81.0.8"]


def test_feed_after_membership_removed(world):
    w = world
    ex = w["ex"]
    _make(w, "named", communities=["ring"])
    _make(w, "all")
    etag_named = _first(w, "named").headers["etag"]
    etag_all = _first(w, "all").headers["etag"]
    _tick(w)
    ex.admin.remove_membership("Bee", "ring")
    r = _get(w, "named", **{"If-None-Match": etag_named})
    assert r.status_code in (403, 404) and "45.81" not in r.text
    r = _get(w, "all", **{"If-None-Match": etag_all})
    assert r.status_code == 200 and r.text.strip() == ""


# -- names -----------------------------------------------------------------------------

@pytest.mark.parametrize("path", [
    "/feeds/nope", "/feeds/" + "a" * 5000, "/feeds/..%2fapi%2ffeeds", "/feeds/..%2F..%2Fetc%2Fpasswd",
    "/feeds/%2e%2e", "/feeds/ips%20", "/feeds/IPS", "/feeds/ips.", "/feeds/%C3%A9", "/feeds/%ff",
    "/feeds/ips%3B", "/feeds/%2A", "/feeds/ips%0a",
])
def test_unknown_or_odd_feed_names_are_404(world, path):
    w = world
    _make(w)
    r = w["client"].get(path, headers=_auth(w["B"]))
    assert r.status_code == 404, (path, r.status_code, r.text[:200])
    assert r.json()["http_status"] == "404"


def test_feed_name_with_nul_byte(world):
    w = world
    _make(w)
    for path in ("/feeds/ips%00", "/api/feeds/ips%00"):
        r = w["client"].get(path, headers=_auth(w["B"]))
        # A name no feed can have (here a NUL byte, which PostgreSQL text refuses)
        # is an unknown feed: 404, never a database error.
        assert r.status_code == 404, (path, r.status_code, r.text[:200])
    r = w["client"].delete("/api/feeds/ips%00", headers=_auth(w["B"]))
    assert r.status_code == 404, r.text


def test_another_organisations_feed_looks_missing(world):
    w = world
    _make(w, "private-feed", member="P")
    theirs = _get(w, "private-feed", member="B")
    missing = _get(w, "never-made", member="B")
    assert theirs.status_code == missing.status_code == 404
    assert theirs.json()["description"].replace("private-feed", "X") == \
        missing.json()["description"].replace("never-made", "X")
    for method in ("get", "delete"):
        r = getattr(w["client"], method)("/api/feeds/private-feed", headers=_auth(w["B"]))
        assert r.status_code == 404
    assert _get(w, "private-feed", member="P").status_code == 200  # still there


@pytest.mark.parametrize("name,ok", [
    ("a" * 100, True), ("a" * 101, False), ("0", True), ("a..b", True), ("..", False), (".a", False),
    ("a/b", False), ("a%2fb", False), ("A", False), ("é", False), ("a b", False), ("", False),
    ("a\n", False), ("a\x00", False), ("-a", False), ("a-", True),
])
def test_feed_names_over_the_api(world, name, ok):
    w = world
    r = w["client"].post("/api/feeds", headers=_auth(w["B"]), json={"name": name, "format": "plain-ip"})
    if ok:
        assert r.status_code == 201, r.text
        assert r.json()["url"] == f"/feeds/{name}"
        assert w["client"].get(f"/feeds/{name}", headers=_auth(w["B"])).status_code == 200
    else:
        assert r.status_code == 400, (r.status_code, r.text)


def test_api_feed_definitions_refused_up_front(world):
    w = world
    c, h = w["client"], _auth(w["B"])
    bad = [
        {"tlp": "purple"}, {"min_confidence": 101}, {"min_confidence": -1}, {"min_score": 101},
        {"since": "yesterday-ish"}, {"sectors": ["pirates"]}, {"communities": ["nope"]},
        {"format": "pdf"}, {"types": ["Bad Type"]}, {"description": "x" * 2001},
    ]
    for extra in bad:
        r = c.post("/api/feeds", headers=h, json={"name": "x", "format": "plain-ip", **extra})
        assert r.status_code in (400, 404, 413), (extra, r.status_code, r.text)
    assert c.get("/api/feeds", headers=h).json() == []
    reader = make_member(w["ex"], "Reader Two", role="reader")
    w["ex"].admin.set_membership("Reader Two", "ring", True, False, Tlp.GREEN)
    assert c.post("/api/feeds", headers=_auth(reader), json={"name": "x", "format": "csv"}).status_code == 403
    # a body that is not JSON, or not an object
    assert c.post("/api/feeds", headers={**h, "content-type": "application/json"},
                  content=b"{not json").status_code == 400
    assert c.post("/api/feeds", headers=h, json=["name"]).status_code == 400


def test_rpz_target_checked_when_the_feed_is_defined(world):
    w = world
    r = w["client"].post("/api/feeds", headers=_auth(w["B"]),
                         json={"name": "zone", "format": "rpz", "rpz_target": "not a domain!"})
    # A bad RPZ target is refused when the feed is defined, not at every fetch.
    assert r.status_code == 400, r.text
    r = w["client"].post("/api/feeds", headers=_auth(w["B"]),
                         json={"name": "nul", "format": "plain-ip", "description": "a\u0000b"})
    assert r.status_code == 400 and "NUL" in r.text  # PostgreSQL text cannot hold it
    assert w["client"].get("/api/feeds", headers=_auth(w["B"])).json() == []


def test_cli_feed_create_then_fetch_over_http(world, database_url):
    w = world
    runner = CliRunner()

    def cli(*args: str, code: int = 0) -> str:
        result = runner.invoke(cli_app, ["--database-url", database_url, *args])
        assert result.exit_code == code, result.output
        return result.output

    cli("feed", "create", "edge-ips", "--user", w["B"].user, "--format", "plain-ip", "--tlp", "green")
    cli("feed", "create", "edge-ips", "--user", w["B"].user, "--format", "plain-ip", code=3)
    cli("feed", "create", "Bad/Name", "--user", w["B"].user, "--format", "plain-ip", code=2)
    cli("feed", "create", "../x", "--user", w["B"].user, "--format", "plain-ip", code=2)
    shown = json.loads(cli("feed", "show", "edge-ips", "--user", w["B"].user))
    assert shown["filter"]["tlp"] in ("green", "TLP:GREEN", "Tlp.GREEN", 1) or shown["filter"]
    r = _get(w, "edge-ips")
    assert r.status_code == 200 and r.text.split() == ["45.81.0.1"]
    basic = base64.b64encode(f"{w['B'].user}:{w['B'].token}".encode()).decode()
    r2 = w["client"].get("/feeds/edge-ips", headers={"Authorization": f"Basic {basic}",
                                                      "If-None-Match": r.headers["etag"]})
    assert r2.status_code == 304
    cli("feed", "delete", "edge-ips", "--user", w["B"].user)
    assert _get(w, "edge-ips").status_code == 404


def test_deleted_and_recreated_feed_gets_a_new_etag(world):
    w = world
    _make(w, tlp="green")
    first = _first(w)
    assert w["client"].delete("/api/feeds/ips", headers=_auth(w["B"])).status_code == 204
    w["clock"].now += 300_000  # 0.3 s later: the same HTTP-date second
    _make(w, tlp="amber")  # same name, other content, possibly the same row id
    r = _get(w, **{"If-None-Match": first.headers["etag"],
                   "If-Modified-Since": first.headers["last-modified"]})
    assert r.status_code == 200 and sorted(r.text.split()) == ["45.81.0.1", "45.81.0.2"]
    assert r.headers["etag"] != first.headers["etag"]
    # If-Modified-Since alone cannot tell the two definitions apart within one second
    # (documented in docs/export.md, "ETag and Last-Modified"); the ETag always can.

