"""Pull feeds: definitions, token auth, ETag / Last-Modified that change exactly when
the content may, streaming bodies, errors rendered like the rest of the API."""

from __future__ import annotations

import base64
import json

import pytest
from fastapi.testclient import TestClient

from commonwatch.domain.markings import Tlp
from commonwatch.errors import Conflict, InvalidParameter, NotFound, PermissionDenied
from commonwatch.services.export import ExportService
from commonwatch.services.export_filters import build_filter
from commonwatch.services.feeds import FeedService
from commonwatch.storage.db import session_factory
from commonwatch.web.app import create_app
from exports.conftest import ring

from support.factories import indicator, ts


@pytest.fixture
def fed(exchange):
    return ring(exchange)


def _read(feeds, principal, feed) -> tuple[str, str, int]:
    export, etag, modified = feeds.render_feed(principal, feed)
    return "".join(export.chunks), etag, modified


def test_feed_definitions(feeds, fed):
    b = fed["B"].principal
    feed = feeds.create_feed(b, "fw-ips", "plain-ip", build_filter(communities=["ring"]), description="edge")
    assert [f.name for f in feeds.list_feeds(b)] == ["fw-ips"]
    assert feeds.list_feeds(fed["P"].principal) == []  # feeds belong to an organisation
    with pytest.raises(Conflict):
        feeds.create_feed(b, "fw-ips", "plain-ip", build_filter())
    with pytest.raises(InvalidParameter, match="feed name"):
        feeds.create_feed(b, "Bad Name!", "plain-ip", build_filter())
    with pytest.raises(InvalidParameter, match="format"):
        feeds.create_feed(b, "x", "pdf", build_filter())
    with pytest.raises(NotFound):
        feeds.create_feed(b, "x", "csv", build_filter(communities=["nope"]))
    with pytest.raises(PermissionDenied):
        feeds.create_feed(fed["R"].principal, "mine", "csv", build_filter())
    with pytest.raises(NotFound):
        feeds.get_feed(fed["P"].principal, "fw-ips")
    feeds.delete_feed(b, feed.name)
    assert feeds.list_feeds(b) == []


def test_validators_change_exactly_when_content_may(exchange, feeds, fed, clock, tmp_path):
    b, p, cid = fed["B"].principal, fed["P"].principal, fed["cid"]
    feed = feeds.create_feed(b, "ips", "plain-ip", build_filter())
    body, etag, modified = _read(feeds, b, feed)
    assert sorted(body.split()) == ["45.81.0.1", "45.81.0.2"]
    assert feeds.validators(b, feed) == (etag, modified, True)  # unchanged: 304 without rendering
    clock.now += 10_000_000
    assert feeds.validators(b, feed) == (etag, modified, True)  # time alone changes nothing

    def changed() -> str:
        new = feeds.validators(b, feed)
        assert not new[2] and new[0] != etag and new[1] > modified
        clock.now += 1_000_000  # a change in another second than the last: a new date too
        _, new_etag, new_modified = _read(feeds, b, feed)
        assert new_modified is not None and new_modified > modified
        return new_etag

    obj = indicator("45.81.0.3", tlp=Tlp.GREEN, valid_until=ts(10**8))
    assert not exchange.ingest.add_objects(p, cid, [obj]).failures  # new object
    etag = changed()
    modified = feeds.validators(b, feed)[1]
    exchange.ingest.delete_object(p, cid, obj["id"], _all())  # delete
    etag = changed()
    modified = feeds.validators(b, feed)[1]
    exchange.admin.set_membership("Bee", "ring", True, False, Tlp.GREEN)  # clearance change
    etag = changed()
    body = _read(feeds, b, feed)[0]
    assert body.split() == ["45.81.0.1"]
    modified = feeds.validators(b, feed)[1]
    # expiry: an exported indicator's valid_until passing changes the content by itself
    assert not exchange.ingest.add_objects(p, cid, [indicator("45.81.0.4", tlp=Tlp.GREEN,
                                                              valid_until=ts(10**8))]).failures
    etag = changed()
    modified = feeds.validators(b, feed)[1]
    clock.now = 1_767_225_600_000_000 + 10**14 + 1
    assert not feeds.validators(b, feed)[2]
    # warninglists: another set of lists is another content
    (tmp_path / "l.json").write_text(json.dumps({"name": "n", "description": "d", "source": "s",
                                                 "licence": "l", "values": {"ipv4-addr": ["45.81.0.1"]}}))
    listed = ExportService(session_factory(exchange.engine), exchange.query, warninglist_dirs=[tmp_path],
                           clock=clock)
    other = FeedService(session_factory(exchange.engine), exchange.query, listed, clock=clock)
    assert other.validators(b, feed)[0] != feeds.validators(b, feed)[0]


def _all():
    from commonwatch.services.query import ObjectFilter, VersionSelector

    return ObjectFilter(versions=VersionSelector(last=False, all=True))


@pytest.fixture
def client(exchange):
    with TestClient(create_app(exchange)) as c:
        yield c


def test_http_feed(client, fed):
    token, user = fed["B"].token, fed["B"].user
    bearer = {"Authorization": f"Bearer {token}"}
    made = client.post("/api/feeds", headers=bearer,
                       json={"name": "dns", "format": "rpz", "communities": ["ring"]})
    assert made.status_code == 201, made.text
    assert made.json()["url"] == "/feeds/dns"
    client.post("/api/feeds", headers=bearer, json={"name": "ips", "format": "plain-ip"})
    assert [f["name"] for f in client.get("/api/feeds", headers=bearer).json()] == ["dns", "ips"]

    resp = client.get("/feeds/ips", headers=bearer)
    assert resp.status_code == 200 and sorted(resp.text.split()) == ["45.81.0.1", "45.81.0.2"]
    assert resp.headers["content-type"].startswith("text/plain")
    etag, modified = resp.headers["etag"], resp.headers["last-modified"]
    basic = {"Authorization": "Basic " + base64.b64encode(f"{user}:{token}".encode()).decode()}
    again = client.get("/feeds/ips", headers={**basic, "If-None-Match": etag})
    assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == etag
    assert client.get("/feeds/ips", headers={**bearer, "If-Modified-Since": modified}).status_code == 304
    assert client.get("/feeds/ips", headers={**bearer, "If-None-Match": '"other"',
                                             "If-Modified-Since": modified}).status_code == 200
    assert client.get("/feeds/ips", headers={**bearer, "If-Modified-Since": "garbage"}).status_code == 200
    assert "rpz-ip" in client.get("/feeds/dns", headers=bearer).text

    # errors: as the rest of the API renders them
    anon = client.get("/feeds/ips")
    assert anon.status_code == 401 and anon.json()["http_status"] == "401"
    assert "www-authenticate" in anon.headers
    assert client.get("/feeds/ips", headers={"Authorization": "Bearer nope"}).status_code == 401
    other = {"Authorization": f"Bearer {fed['P'].token}"}
    missing = client.get("/feeds/ips", headers=other)  # another organisation's feed
    assert missing.status_code == 404 and "no feed" in missing.json()["description"]
    bad = client.post("/api/feeds", headers=bearer, json={"name": "x", "format": "csv", "tlp": "purple"})
    assert bad.status_code == 400 and "TLP" in bad.json()["description"]
    assert client.delete("/api/feeds/dns", headers=bearer).status_code == 204
    assert client.get("/feeds/dns", headers=bearer).status_code == 404


def test_a_redefined_feed_keeps_its_url_and_serves_the_new_content_at_once(client, feeds, fed):
    b, bearer = fed["B"].principal, {"Authorization": f"Bearer {fed['B'].token}"}
    feed = feeds.create_feed(b, "edge", "plain-ip", build_filter(communities=["ring"]), description="fw")
    first = client.get("/feeds/edge", headers=bearer)
    assert sorted(first.text.split()) == ["45.81.0.1", "45.81.0.2"]
    etag, modified = first.headers["etag"], first.headers["last-modified"]
    put = client.put("/api/feeds/edge", headers=bearer, json={"format": "csv", "description": "soc",
                                                             "communities": [fed["cid"]]})
    assert put.status_code == 200, put.text
    assert put.json()["format"] == "csv" and put.json()["url"] == "/feeds/edge"
    stale = client.get("/feeds/edge",
                       headers={**bearer, "If-None-Match": etag, "If-Modified-Since": modified})
    assert stale.status_code == 200 and stale.text.startswith("value,kind,")
    assert stale.headers["etag"] != etag
    again = feeds.get_feed(b, "edge")
    assert (again.id, again.created_us, again.description) == (feed.id, feed.created_us, "soc")
    assert again.updated_us > feed.updated_us
    # What a definition may not say is refused, and changes nothing.
    for body, code in (({"format": "pdf"}, 400), ({"format": "csv", "communities": ["nope"]}, 404),
                       ({"format": "csv", "name": "other"}, 400), ({"format": "csv", "tlp": "purple"}, 400)):
        assert client.put("/api/feeds/edge", headers=bearer, json=body).status_code == code, body
    assert client.put("/api/feeds/nope", headers=bearer, json={"format": "csv"}).status_code == 404
    reader = {"Authorization": f"Bearer {fed['R'].token}"}
    assert client.put("/api/feeds/edge", headers=reader, json={"format": "csv"}).status_code in (403, 404)
    with pytest.raises(PermissionDenied):
        feeds.redefine_feed(fed["R"].principal, "edge", "csv", build_filter())
    assert feeds.get_feed(b, "edge").updated_us == again.updated_us


def test_feed_uses_the_callers_visibility(client, exchange, fed):
    """A feed is evaluated with the requesting user's own clearance, never its creator's."""
    b2 = exchange.admin.create_user("Bee", "bee-2", "reader")
    del b2
    token2 = exchange.admin.create_token("bee-2").secret
    client.post("/api/feeds", headers={"Authorization": f"Bearer {fed['B'].token}"},
                json={"name": "all", "format": "csv", "tlp": "red"})
    rows = client.get("/feeds/all", headers={"Authorization": f"Bearer {token2}"}).text.splitlines()
    assert len(rows) == 3  # header + GREEN + AMBER; the org's clearance, same org
    exchange.admin.set_membership("Bee", "ring", True, False, Tlp.GREEN)
    rows = client.get("/feeds/all", headers={"Authorization": f"Bearer {token2}"}).text.splitlines()
    assert len(rows) == 2
