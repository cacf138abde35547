"""Adversarial tests of two recent features: anonymous TAXII access to public communities
(web/taxii.py ``anyone``/``caller``, docs/sharing-model.md) and the feed spool a feed body
is rendered into ahead of its client (web/spool.py, docs/export.md "Performance").

Anonymous: a client without credentials may read discovery, the API root, the collections
list (public ones only) and a public collection's TLP:CLEAR objects; everything else
answers exactly as a missing resource does, and bad credentials never fall back to it.

Spool: a real uvicorn server on loopback whose accepted sockets have a small send buffer,
raw-socket clients with a small receive buffer that stall, disconnect, or fail; after
quiescence nothing may be left: no spool thread, no descriptor, no temporary file, no
pooled connection, no byte counted in the shared budget. A comment "Was:" above an
assertion names the defect it found, since fixed.
"""

from __future__ import annotations

import base64
import contextlib
import gc
import json
import logging
import os
import random
import re
import socket
import tempfile
import threading
import time
import uuid

import httpx
import pytest
from fastapi.testclient import TestClient

from commonwatch.domain.markings import TLP2_MARKING_BY_LEVEL, Tlp
from commonwatch.formats import stix_export
from commonwatch.services.exchange import Exchange
from commonwatch.services.export_filters import build_filter
from commonwatch.services.query import ObjectFilter, QueryService
from commonwatch.web import spool
from commonwatch.web.app import create_app
from exports.conftest import Clock

from support.factories import indicator, make_community, make_member, new_version, ts
from support.serving import as_served, open_read_transactions, uvicorn_on_loopback

TAXII = "application/taxii+json;version=2.1"
ACCEPT = {"Accept": TAXII}
WHITE = "marking-definition--613f2e26-407d-48c7-9eca-b8e91df99dc9"  # TLP 1.0 WHITE = CLEAR


def _comparable(resp: httpx.Response) -> tuple[int, dict[str, str], bytes]:
    """Everything a client sees of a response except the Date header."""
    headers = {k: v for k, v in resp.headers.items() if k.lower() != "date"}
    return resp.status_code, headers, resp.content


def _assert_challenge(resp: httpx.Response, what: object = "") -> None:
    assert resp.status_code == 401, (what, resp.status_code, resp.text[:300])
    assert resp.headers["www-authenticate"].startswith("Basic"), what
    assert resp.headers["content-type"] == TAXII, what


# =====================================================================================
# 1. Anonymous TAXII access
# =====================================================================================

@pytest.fixture
def pub(exchange):
    """Community "open" (public, default GREEN) holding one object of each kind of marking,
    community "closed" (private) holding a CLEAR object; Producer posts, Recipient is the
    named recipient of the RED one."""
    producer = make_member(exchange, "Producer Org")
    recipient = make_member(exchange, "Recipient Org")
    exchange.admin.create_community("open", "Open", "public circle", Tlp.GREEN, public=True)
    exchange.admin.set_membership("Producer Org", "open", True, True, Tlp.RED)
    exchange.admin.set_membership("Recipient Org", "open", True, False, Tlp.RED)
    opened = exchange.admin.get_community("open").collection_id
    closed = make_community(exchange, "closed", Tlp.CLEAR, {"Producer Org": (True, Tlp.RED)})
    clear = indicator("203.0.113.1", tlp=Tlp.CLEAR)
    white = indicator("203.0.113.2", object_marking_refs=[WHITE])
    hidden = {
        "green": indicator("203.0.113.3", tlp=Tlp.GREEN),
        "amber": indicator("203.0.113.4", tlp=Tlp.AMBER),
        "strict": indicator("203.0.113.5", tlp=Tlp.AMBER_STRICT),
        "red": indicator("203.0.113.6", tlp=Tlp.RED, recipients=[recipient.identity]),
        "unmarked": indicator("203.0.113.7"),  # the community default: GREEN
        "mixed": indicator("203.0.113.8", object_marking_refs=[
            TLP2_MARKING_BY_LEVEL[Tlp.CLEAR], TLP2_MARKING_BY_LEVEL[Tlp.AMBER]]),
        "granular": indicator("203.0.113.9", tlp=Tlp.CLEAR, granular_markings=[
            {"marking_ref": TLP2_MARKING_BY_LEVEL[Tlp.RED], "selectors": ["name"]}]),
    }
    # re-marked: v1 CLEAR then v2 GREEN; raised: v1 AMBER then v2 CLEAR
    remarked1 = indicator("203.0.113.10", tlp=Tlp.CLEAR, created=1)
    remarked2 = new_version(remarked1, 5, object_marking_refs=[TLP2_MARKING_BY_LEVEL[Tlp.GREEN]])
    raised1 = indicator("203.0.113.11", tlp=Tlp.AMBER, created=2)
    raised2 = new_version(raised1, 6, object_marking_refs=[TLP2_MARKING_BY_LEVEL[Tlp.CLEAR]])
    objects = [clear, hidden["green"], white, hidden["amber"], remarked1, hidden["strict"],
               raised1, hidden["red"], hidden["unmarked"], hidden["mixed"], hidden["granular"],
               remarked2, raised2]
    for obj in objects:  # one at a time: distinct date_added, hidden ones in between
        report = exchange.ingest.add_objects(producer.principal, opened, [obj])
        assert not report.failures, report.failures
    secret = indicator("198.51.100.77", tlp=Tlp.CLEAR)
    assert not exchange.ingest.add_objects(producer.principal, closed, [secret]).failures
    client = TestClient(create_app(exchange))
    # The exchange's own objects in the collection (its identity, the RED recipients'
    # extension-definition), as a member sees them: anonymous must see them too (CLEAR).
    expected = {
        clear["id"]: [clear["modified"]], white["id"]: [white["modified"]],
        remarked1["id"]: [remarked1["modified"]], raised2["id"]: [raised2["modified"]],
    }
    base = client.get(f"/taxii2/api/collections/{opened}/objects/?match[version]=all",
                      headers={**ACCEPT, "Authorization": f"Bearer {recipient.token}"}).json()
    for obj in base["objects"]:
        if obj["type"] in ("identity", "extension-definition"):
            expected[obj["id"]] = [obj["modified"]]
    yield {"ex": exchange, "producer": producer, "recipient": recipient, "open": opened,
           "closed": closed, "hidden": hidden, "expected": expected, "secret": secret,
           "remarked": (remarked1, remarked2), "raised": (raised1, raised2), "client": client,
           "clear": clear}
    client.close()


def _walk(client: TestClient, path: str, key: str = "objects", params: dict[str, str] | None = None):
    """Every page of ``path`` with limit=1, following ``next``; (items, responses)."""
    items, pages, nxt = [], [], None
    for _ in range(100):
        query = {"limit": "1", **(params or {}), **({"next": nxt} if nxt else {})}
        resp = client.get(path, params=query, headers=ACCEPT)
        assert resp.status_code == 200, resp.text
        body = resp.json()
        pages.append(resp)
        items.extend(body.get(key, []))
        if not body["more"]:
            return items, pages
        assert body.get(key), f"a page with more=true and nothing in it: {body}"
        nxt = body["next"]
    raise AssertionError("paging never ended")


def test_anonymous_reads_of_a_public_collection_are_its_clear_versions_exactly(pub):
    client, cid, expected = pub["client"], pub["open"], pub["expected"]
    base = f"/taxii2/api/collections/{cid}/"
    everything = client.get(base + "objects/?match[version]=all", headers=ACCEPT)
    assert everything.status_code == 200
    got: dict[str, list[str]] = {}
    for obj in everything.json()["objects"]:
        got.setdefault(obj["id"], []).append(obj["modified"])
    assert got == expected  # CLEAR and WHITE; v1 of the re-marked, v2 of the raised; nothing else
    latest = client.get(base + "objects/", headers=ACCEPT).json()["objects"]
    assert {o["id"]: [o["modified"]] for o in latest} == expected
    first = client.get(base + "objects/?match[version]=first", headers=ACCEPT).json()["objects"]
    assert {o["id"]: [o["modified"]] for o in first} == expected  # the raised one's v1 is AMBER
    manifest = client.get(base + "manifest/?match[version]=all", headers=ACCEPT)
    entries = manifest.json()["objects"]
    assert {(e["id"], e["version"]) for e in entries} == {(k, v[0]) for k, v in expected.items()}
    added = sorted(e["date_added"] for e in entries)
    for resp in (everything, manifest):
        assert resp.headers["x-taxii-date-added-first"] == added[0]
        assert resp.headers["x-taxii-date-added-last"] == added[-1]
    # paging one at a time: each visible object once, no trailing empty "more" page
    paged, pages = _walk(client, base + "objects/", params={"match[version]": "all"})
    assert sorted(o["id"] for o in paged) == sorted(expected)
    assert len(pages) == len(expected)
    for resp in pages:
        assert resp.headers["x-taxii-date-added-first"] == resp.headers["x-taxii-date-added-last"]
        assert resp.headers["x-taxii-date-added-first"] in added
    walked, _ = _walk(client, base + "manifest/", key="objects")
    assert sorted(e["id"] for e in walked) == sorted(expected)
    # after the last visible object nothing is left, however much hidden came later
    after = client.get(base + "objects/", params={"added_after": added[-1]}, headers=ACCEPT)
    assert after.json() == {"more": False} and "x-taxii-date-added-first" not in after.headers
    # versions: the visible ones only, with their own date headers
    remarked1, _ = pub["remarked"]
    _, raised2 = pub["raised"]
    for obj in (remarked1, raised2):
        versions = client.get(base + f"objects/{obj['id']}/versions/", headers=ACCEPT)
        assert versions.json() == {"more": False, "versions": [obj["modified"]]}
        one = client.get(base + f"objects/{obj['id']}/?match[version]=all", headers=ACCEPT)
        assert [o["modified"] for o in one.json()["objects"]] == [obj["modified"]]
        assert versions.headers["x-taxii-date-added-first"] == one.headers["x-taxii-date-added-first"]
    # an authenticated organisation that is no member sees exactly what anonymous sees
    outsider = make_member(pub["ex"], "Outsider Org")
    theirs = client.get(base + "objects/?match[version]=all",
                        headers={**ACCEPT, "Authorization": f"Bearer {outsider.token}"})
    assert theirs.content == everything.content
    # HEAD answers the GET's headers without a body
    for path in ("/taxii2/", "/taxii2/api/", "/taxii2/api/collections/", base, base + "objects/",
                 base + "manifest/", base + f"objects/{remarked1['id']}/versions/"):
        got_head, got_get = client.head(path, headers=ACCEPT), client.get(path, headers=ACCEPT)
        assert got_head.status_code == got_get.status_code == 200 and got_head.content == b"", path
        for name in ("content-type", "x-taxii-date-added-first", "x-taxii-date-added-last"):
            assert got_head.headers.get(name) == got_get.headers.get(name), (path, name)
    # the collection itself: readable, not writable
    info = client.get(base, headers=ACCEPT).json()
    assert (info["id"], info["can_read"], info["can_write"]) == (cid, True, False)


def test_anonymous_hidden_objects_of_a_public_collection_answer_like_missing_ones(pub):
    client, cid = pub["client"], pub["open"]
    base = f"/taxii2/api/collections/{cid}/"
    missing = f"indicator--{uuid.uuid4()}"
    reference = {
        "object": _comparable(client.get(base + f"objects/{missing}/", headers=ACCEPT)),
        "versions": _comparable(client.get(base + f"objects/{missing}/versions/", headers=ACCEPT)),
        "head": _comparable(client.head(base + f"objects/{missing}/", headers=ACCEPT)),
        "match": _comparable(client.get(base + "objects/", params={"match[id]": missing}, headers=ACCEPT)),
        "manifest": _comparable(client.get(base + "manifest/", params={"match[id]": missing},
                                           headers=ACCEPT)),
        "first": _comparable(client.get(base + f"objects/{missing}/?match[version]=first",
                                        headers=ACCEPT)),
    }
    assert reference["object"][0] == 404 and reference["match"][0] == 200
    remarked1, remarked2 = pub["remarked"]
    raised1, _ = pub["raised"]
    for name, obj in pub["hidden"].items():
        oid = obj["id"]
        seen = {
            "object": _comparable(client.get(base + f"objects/{oid}/", headers=ACCEPT)),
            "versions": _comparable(client.get(base + f"objects/{oid}/versions/", headers=ACCEPT)),
            "head": _comparable(client.head(base + f"objects/{oid}/", headers=ACCEPT)),
            "match": _comparable(client.get(base + "objects/", params={"match[id]": oid}, headers=ACCEPT)),
            "manifest": _comparable(client.get(base + "manifest/", params={"match[id]": oid},
                                               headers=ACCEPT)),
            "first": _comparable(client.get(base + f"objects/{oid}/?match[version]=first",
                                            headers=ACCEPT)),
        }
        assert seen == reference, name
    # hidden versions of visible objects, asked for by their timestamp
    for obj in (remarked2, raised1):
        resp = client.get(base + f"objects/{obj['id']}/", params={"match[version]": obj["modified"]},
                          headers=ACCEPT)
        assert _comparable(resp)[0] == 404 and resp.content == reference["object"][2]
    # filters over the whole collection see nothing hidden either
    counts = client.get(base + "objects/", params={"match[type]": "indicator", "match[version]": "all"},
                        headers=ACCEPT).json()["objects"]
    assert len(counts) == 4


def test_anonymous_on_private_and_unknown_collections_is_one_identical_401(pub):
    client, closed, secret = pub["client"], pub["closed"], pub["secret"]
    unknown, junk = str(uuid.uuid4()), "not-a-collection"
    status_id = str(uuid.uuid4())
    report = pub["ex"].ingest.add_objects(pub["producer"].principal, closed, [indicator()])
    envelope = json.dumps({"objects": [indicator()]}).encode()

    def answers(cid: str, oid: str) -> list[tuple[str, tuple]]:
        base = f"/taxii2/api/collections/{cid}/"
        out = []
        for what, method, path, params in (
            ("collection", "GET", base, {}),
            ("objects", "GET", base + "objects/", {}),
            ("objects+bad limit", "GET", base + "objects/", {"limit": "-1"}),
            ("objects+next", "GET", base + "objects/", {"next": "garbage"}),
            ("object", "GET", base + f"objects/{oid}/", {}),
            ("versions", "GET", base + f"objects/{oid}/versions/", {}),
            ("manifest", "GET", base + "manifest/", {"match[type]": "indicator"}),
            ("head objects", "HEAD", base + "objects/", {}),
            ("head object", "HEAD", base + f"objects/{oid}/", {}),
            ("options", "OPTIONS", base + "objects/", {}),
            ("delete", "DELETE", base + f"objects/{oid}/", {}),
        ):
            resp = client.request(method, path, params=params, headers=ACCEPT)
            out.append((what, _comparable(resp)))
        post = client.post(base + "objects/", content=envelope, headers={**ACCEPT, "Content-Type": TAXII})
        out.append(("post", _comparable(post)))
        return out

    private = answers(closed, secret["id"])
    for other in (answers(unknown, secret["id"]), answers(unknown, f"indicator--{uuid.uuid4()}"),
                  answers(junk, "junk")):
        for (what, mine), (_, theirs) in zip(private, other, strict=True):
            assert mine == theirs, what
    for what, (status, headers, _) in private:
        if what == "options":
            assert status == 405
            continue
        assert status == 401 and headers["www-authenticate"].startswith("Basic"), what
    status_private = client.get(f"/taxii2/api/status/{report.id}/", headers=ACCEPT)
    assert _comparable(status_private) == _comparable(client.get(f"/taxii2/api/status/{status_id}/",
                                                                 headers=ACCEPT))
    for sid in (report.id, status_id):
        _assert_challenge(client.get(f"/taxii2/api/status/{sid}/", headers=ACCEPT), "status")
    # writes to the public collection want credentials too, and change nothing
    base = f"/taxii2/api/collections/{pub['open']}/"
    _assert_challenge(client.post(base + "objects/", content=envelope,
                                  headers={**ACCEPT, "Content-Type": TAXII}), "post public")
    _assert_challenge(client.delete(base + f"objects/{pub['clear']['id']}/", headers=ACCEPT), "delete")
    assert client.get(base + f"objects/{pub['clear']['id']}/", headers=ACCEPT).status_code == 200
    # the member's view of the private collection is unchanged by those attempts
    member = {**ACCEPT, "Authorization": f"Bearer {pub['producer'].token}"}
    ids = {o["id"] for o in client.get(f"/taxii2/api/collections/{closed}/objects/",
                                       headers=member).json()["objects"]}
    assert secret["id"] in ids


def test_bad_credentials_never_fall_back_to_anonymous(settings):
    clock = [1_800_000_000_000_000]
    ex = Exchange(settings, migrate=False, clock=lambda: clock[0])
    try:
        member = make_member(ex, "Holder Org")
        ex.admin.create_community("open", default_tlp=Tlp.CLEAR, public=True)
        cid = ex.admin.get_community("open").collection_id
        ex.admin.set_membership("Holder Org", "open", True, True, Tlp.RED)
        obj = indicator("203.0.113.50", tlp=Tlp.CLEAR)
        assert not ex.ingest.add_objects(member.principal, cid, [obj]).failures
        expiring = ex.admin.create_token(member.user, expires_in_days=1).secret
        revoked = ex.admin.create_token(member.user).secret
        token_id = max(t.id for t, _ in ex.admin.list_tokens(member.user))
        ex.admin.revoke_token(token_id)
        disabled = make_member(ex, "Gone Org")
        ex.admin.set_user_active(disabled.user, False)
        clock[0] += 2 * 86_400_000_000  # the expiring token has expired
        basic = base64.b64encode(f"someone-else:{member.token}".encode()).decode()
        empty = base64.b64encode(b":").decode()
        bad = {
            "expired": f"Bearer {expiring}", "revoked": f"Bearer {revoked}",
            "disabled": f"Bearer {disabled.token}", "unknown": "Bearer cw_not-a-real-token",
            "wrong user": f"Basic {basic}", "empty basic": f"Basic {empty}",
            "no token": "Bearer", "garbage basic": "Basic !!!", "digest": "Digest abc",
            "empty": "",
        }
        paths = ["/taxii2/", "/taxii2/api/", "/taxii2/api/collections/",
                 f"/taxii2/api/collections/{cid}/", f"/taxii2/api/collections/{cid}/objects/",
                 f"/taxii2/api/collections/{cid}/objects/{obj['id']}/",
                 f"/taxii2/api/collections/{cid}/manifest/",
                 f"/api/collections/{cid}/deletions", "/api/lookup?value=203.0.113.50"]
        with TestClient(create_app(ex)) as client:
            for path in paths:
                assert client.get(path, headers=ACCEPT).status_code == 200, path  # anonymous: fine
                for name, header in bad.items():
                    resp = client.get(path, headers={**ACCEPT, "Authorization": header})
                    _assert_challenge(resp, (path, name))
                    assert b"203.0.113.50" not in resp.content
            good = client.get(paths[4], headers={**ACCEPT, "Authorization": f"Bearer {member.token}"})
            assert good.status_code == 200
    finally:
        ex.close()


def test_anonymous_json_api_and_feeds(pub):
    ex, client, producer = pub["ex"], pub["client"], pub["producer"]
    ex.feeds.create_feed(producer.principal, "mine", "plain-ip", build_filter())
    assert client.get("/feeds/mine", headers={"Authorization": f"Bearer {producer.token}"}).status_code == 200
    # feeds and the rest of the JSON API want credentials, whatever the name
    nothing = _comparable(client.get("/feeds/no-such-feed"))
    assert _comparable(client.get("/feeds/mine")) == nothing
    assert _comparable(client.head("/feeds/mine")) == _comparable(client.head("/feeds/no-such-feed"))
    for method, path, body in (("GET", "/feeds/mine", None), ("HEAD", "/feeds/mine", None),
                               ("GET", "/api/feeds", None), ("GET", "/api/feeds/mine", None),
                               ("DELETE", "/api/feeds/mine", None),
                               ("POST", "/api/feeds", {"name": "x", "format": "plain-ip"}),
                               ("GET", "/api/admin/orgs", None),
                               ("POST", "/api/sightings", {"value": "203.0.113.1", "community": "open"})):
        resp = client.request(method, path, json=body)
        _assert_challenge(resp, (method, path))
    assert client.get("/feeds/mine", headers={"Authorization": f"Bearer {producer.token}"}).status_code == 200

    # lookup: what anonymous finds is the public CLEAR objects, and sightings of them it may see
    red_id = pub["hidden"]["red"]["id"]
    sightings = [
        {"type": "sighting", "spec_version": "2.1", "id": f"sighting--{uuid.uuid4()}",
         "created": ts(10 + k), "modified": ts(10 + k), "sighting_of_ref": pub["clear"]["id"],
         "count": count, "object_marking_refs": [TLP2_MARKING_BY_LEVEL[tlp]]}
        for k, (count, tlp) in enumerate(((3, Tlp.CLEAR), (50, Tlp.GREEN), (700, Tlp.AMBER)))]
    assert not ex.ingest.add_objects(producer.principal, pub["open"], sightings).failures
    resp = client.get("/api/lookup", params={"value": ["203.0.113.1", "203.0.113.4", "198.51.100.77",
                                                       "192.0.2.250"]})
    assert resp.status_code == 200
    clear, amber, private, unknown = resp.json()["results"]
    assert clear["found"] and {m["community"] for m in clear["matches"]} == {"open"}
    assert clear["sightings"]["count"] == 3 and clear["sightings"]["reports"] == 1

    def blank(result: dict) -> str:
        return json.dumps({k: v for k, v in result.items() if k not in ("value", "normalised")},
                          sort_keys=True)

    assert blank(amber) == blank(unknown) and blank(private) == blank(unknown)
    assert red_id not in resp.text

    # deletions: anonymous sees the tombstones of CLEAR versions of public collections only
    for obj in (pub["clear"], pub["hidden"]["green"], pub["hidden"]["amber"]):
        assert ex.ingest.delete_object(producer.principal, pub["open"], obj["id"], ObjectFilter()) == 1
    secret_id = pub["secret"]["id"]
    assert ex.ingest.delete_object(producer.principal, pub["closed"], secret_id, ObjectFilter()) == 1
    listed = client.get(f"/api/collections/{pub['open']}/deletions")
    assert listed.status_code == 200
    assert [d["id"] for d in listed.json()["deletions"]] == [pub["clear"]["id"]]
    private = client.get(f"/api/collections/{pub['closed']}/deletions")
    unknown = client.get(f"/api/collections/{uuid.uuid4()}/deletions")
    assert _comparable(private) == _comparable(unknown)  # no hint that it exists
    assert pub["secret"]["id"] not in private.text
    # Was: the deletions listing answers an anonymous caller 404 "no collection" (no WWW-Authenticate)
    # for a private collection that every TAXII endpoint answers 401; api.md: missing credentials are 401.
    _assert_challenge(private, "deletions of a private collection")


# =====================================================================================
# 2. The feed spool, against a real server
# =====================================================================================

N = 1200  # objects in community "one": about 520 kB of STIX, far more than the socket buffers
SMALL = 20  # rows per batch and objects per chunk: a render is about 60 chunks


def _ip(n: int) -> str:
    return f"45.77.{n // 250}.{n % 250 + 1}"


@pytest.fixture
def served(settings, monkeypatch, tmp_path):
    """A real server over an exchange with a frozen clock; Alpha's feed "big" is community
    "one" (N indicators) as a STIX bundle, "ips" the same as plain IPs, "few" community
    "two" (40) as plain IPs. Spool files go to a folder of the test's own."""
    folder = tmp_path / "spool-tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    original = QueryService.export_batches
    monkeypatch.setattr(QueryService, "export_batches",
                        lambda self, *a, **kw: original(self, *a, **{**kw, "batch": SMALL}))
    monkeypatch.setattr(stix_export, "BATCH", SMALL)
    ex = Exchange(settings, migrate=False, clock=Clock())
    alpha = make_member(ex, "Alpha")
    one = make_community(ex, "one", Tlp.GREEN, {"Alpha": (True, Tlp.RED)})
    two = make_community(ex, "two", Tlp.GREEN, {"Alpha": (True, Tlp.RED)})
    assert not ex.ingest.add_objects(alpha.principal, one, [
        indicator(_ip(i), tlp=Tlp.GREEN) for i in range(N)]).failures
    assert not ex.ingest.add_objects(alpha.principal, two, [
        indicator(_ip(N + i), tlp=Tlp.GREEN) for i in range(40)]).failures
    ex.feeds.create_feed(alpha.principal, "big", "stix", build_filter(communities=["one"]))
    ex.feeds.create_feed(alpha.principal, "ips", "plain-ip", build_filter(communities=["one"]))
    ex.feeds.create_feed(alpha.principal, "few", "plain-ip", build_filter(communities=["two"]))
    with uvicorn_on_loopback(create_app(ex), send_buffer=8192) as port:
        w = {"ex": ex, "alpha": alpha, "one": one, "port": port, "base": f"http://127.0.0.1:{port}",
             "folder": folder, "slow": [], "url": settings.database_url}
        yield w
        for slow in w["slow"]:
            slow.sock.close()
        gc.collect()
        quiet(w)
    ex.close()


def fresh(w, fmt: str = "stix", community: str = "one") -> bytes:
    """The body a fresh export gives (a STIX bundle's id made neutral)."""
    export = w["ex"].export.export(w["alpha"].principal, fmt, build_filter(communities=[community]))
    return neutral("".join(export.chunks).encode())


def neutral(body: bytes) -> bytes:
    return re.sub(rb'^\{"type":"bundle","id":"bundle--[0-9a-f-]{36}"', b'{"type":"bundle","id":"bundle--x"',
                  body)


class Raw:
    """A raw HTTP/1.1 request whose client reads the head and ``first`` body bytes, then
    stops reading (receive buffer 4 kB: the server really cannot send on)."""

    def __init__(self, w, path: str = "/feeds/big", method: str = "GET", first: int = 8192,
                 **headers: str) -> None:
        self.sock = socket.socket()
        w["slow"].append(self)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.settimeout(20)
        self.sock.connect(("127.0.0.1", w["port"]))
        extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        self.sock.sendall(f"{method} {path} HTTP/1.1\r\nHost: cw\r\nConnection: close\r\n"
                          f"Authorization: Bearer {w['alpha'].token}\r\n{extra}\r\n".encode())
        self.data, more = b"", b"."
        while more and (b"\r\n\r\n" not in self.data or len(self.data.partition(b"\r\n\r\n")[2]) < first):
            more = self.sock.recv(4096)
            self.data += more
        lines = self.data.partition(b"\r\n\r\n")[0].decode().split("\r\n")
        self.status = int(lines[0].split()[1])
        self.headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])}

    def read(self, count: int) -> None:
        """Read about ``count`` more bytes."""
        goal = len(self.data) + count
        while len(self.data) < goal and (more := self.sock.recv(4096)):
            self.data += more

    def abort(self) -> None:
        self.sock.close()

    def finish(self) -> tuple[bytes, bool]:
        """(body, complete): the body read to the end of the connection, and whether it
        ended as a whole chunked body does (with its last, empty chunk)."""
        with contextlib.suppress(ConnectionResetError):
            while more := self.sock.recv(65536):
                self.data += more
        self.sock.close()
        return dechunk(self.data.partition(b"\r\n\r\n")[2])


def dechunk(body: bytes) -> tuple[bytes, bool]:
    out, pos = [], 0
    while True:
        end = body.find(b"\r\n", pos)
        if end < 0:
            return b"".join(out), False
        size = int(body[pos:end], 16)
        if size == 0:
            return b"".join(out), body[end:end + 4] == b"\r\n\r\n"
        if len(body) < end + 2 + size + 2:
            out.append(body[end + 2:end + 2 + size])
            return b"".join(out), False
        out.append(body[end + 2:end + 2 + size])
        pos = end + 2 + size + 2


def spool_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "feed-spool"]


def fds() -> dict[int, str]:
    out = {}
    for name in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            out[int(name)] = os.readlink(f"/proc/self/fd/{name}")
    return out


def spool_fds(w) -> list[str]:
    return [t for t in fds().values() if t.startswith(str(w["folder"]))]


def http_sockets(w) -> int:
    """Open descriptors of HTTP connections to the server (either end), listening one aside."""
    inodes = set()
    for table in ("/proc/self/net/tcp", "/proc/self/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                ports = {int(fields[1].rsplit(":", 1)[1], 16), int(fields[2].rsplit(":", 1)[1], 16)}
                if w["port"] in ports and fields[3] != "0A":  # 0A: listening
                    inodes.add(fields[9])
    return sum(t == f"socket:[{i}]" for t in fds().values() for i in inodes)


QUIET = {"threads": 0, "checked out": 0, "ahead": 0, "spool fds": 0, "files": [], "http sockets": 0}


def quiet(w, within: float = 10.0) -> dict[str, object]:
    """The leftovers once nothing is left to do (or ``within`` s passed)."""
    deadline = time.monotonic() + within
    while True:
        state = {"threads": len(spool_threads()), "checked out": int(w["ex"].engine.pool.checkedout()),
                 "ahead": spool.BUDGET.ahead, "spool fds": len(spool_fds(w)),
                 "files": sorted(os.listdir(w["folder"])), "http sockets": http_sockets(w)}
        if state == QUIET or time.monotonic() > deadline:
            return state
        time.sleep(0.05)


def rendered(w, within: float = 20.0) -> int:
    """Once every render has ended (no spool thread left, or ``within`` s passed): the
    connections still checked out of the pool."""
    deadline = time.monotonic() + within
    while spool_threads() and time.monotonic() < deadline:
        time.sleep(0.02)
    while (now := int(w["ex"].engine.pool.checkedout())) and time.monotonic() < deadline:
        time.sleep(0.02)
    return now


def _warm(w) -> None:
    """Fill the pool up to its size, so that connections opened later are not counted as leaks."""
    pool = w["ex"].engine.pool
    conns = [w["ex"].engine.connect() for _ in range(pool.size())]
    for conn in conns:
        conn.exec_driver_sql("SELECT 1")
    for conn in conns:
        conn.close()


def _files(w) -> set[tuple[int, str]]:
    """Descriptors other than sockets (counted by :func:`http_sockets`; the pool's own come
    and go) and the SQLite database's files (the pool's connections)."""
    db_path = w["url"].removeprefix("sqlite:///") if w["url"].startswith("sqlite") else None
    return {(fd, target) for fd, target in fds().items()
            if not target.startswith("socket:") and not (db_path and target.startswith(db_path))}


def test_thirty_slow_clients_disconnecting_anywhere_leave_nothing_behind(served, monkeypatch):
    w = served
    # chunks of 16 kB read from the files (1 MiB in production): a body of 520 kB stays mostly on
    # disk while its client stalls, as a large feed's does
    monkeypatch.setattr(spool, "READ_BYTES", 16 << 10)
    big, ips = fresh(w), fresh(w, "plain-ip")
    assert httpx.get(w["base"] + "/feeds/big", timeout=20,
                     headers={"Authorization": f"Bearer {w['alpha'].token}"}).status_code == 200
    _warm(w)
    assert quiet(w) == QUIET
    threads_before = {t.ident for t in threading.enumerate() if not t.name.startswith("AnyIO")}
    files_before = _files(w)
    rng = random.Random(20260528)
    with as_served():  # no garbage collection comes to help: what ends must be given back at once
        clients = []
        for k in range(30):
            path = "/feeds/big" if k % 3 else "/feeds/ips"
            clients.append((path, Raw(w, path, first=rng.choice([0, 1, 4096, 8192]))))
        assert [c.status for _, c in clients] == [200] * 30
        # every render ran ahead of its stalled client, into unlinked files of the test's folder
        assert rendered(w) == 0 and not spool_threads(), "stalled downloads hold their render"
        assert os.listdir(w["folder"]) == []
        open_files = spool_fds(w)
        assert len(open_files) >= 20 and all(t.endswith(" (deleted)") for t in open_files)
        assert spool.BUDGET.ahead > 20 * 300_000
        fates = [rng.choice(["abort", "some", "finish", "finish"]) for _ in clients]
        bodies = []
        for fate, (_, client) in zip(fates, clients, strict=True):
            if fate == "abort":
                client.abort()
            elif fate == "some":
                client.read(rng.randrange(1, 200_000))
                client.abort()
        for fate, (path, client) in zip(fates, clients, strict=True):
            if fate == "finish":
                body, complete = client.finish()
                assert complete, path
                bodies.append((path, body))
        assert len(bodies) >= 5
        for path, body in bodies:
            assert neutral(body) == (big if path == "/feeds/big" else ips), path
        assert quiet(w) == QUIET
    assert {t.ident for t in threading.enumerate() if not t.name.startswith("AnyIO")} == threads_before
    assert _files(w) <= files_before
    assert open_read_transactions(w["url"]) == 0


def test_clients_gone_before_or_at_the_answer_leave_nothing_behind(served):
    """Clients that send the request and close (or reset) at once, or right after the head."""
    w = served
    _warm(w)
    files_before = _files(w)
    for k in range(12):
        sock = socket.socket()
        sock.connect(("127.0.0.1", w["port"]))
        sock.sendall(f"GET /feeds/{'big' if k % 2 else 'ips'} HTTP/1.1\r\nHost: cw\r\n"
                     f"Authorization: Bearer {w['alpha'].token}\r\n\r\n".encode())
        if k % 3 == 0:
            sock.recv(64)  # the status line went out: then away
        if k % 4 == 0:  # a reset rather than a close
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        sock.close()
    assert quiet(w) == QUIET
    assert _files(w) <= files_before
    resp = httpx.get(w["base"] + "/feeds/big", timeout=20,
                     headers={"Authorization": f"Bearer {w['alpha'].token}"})
    assert resp.status_code == 200 and neutral(resp.content) == fresh(w)


@pytest.fixture
def poisoned(monkeypatch):
    """The STIX format meets, at object 600 of a render (chunk 30), a row it cannot encode.

    The application logs nothing meanwhile: pytest's log capture keeps every record, and with
    a record's ``exc_info`` the failed render's frames, until the test ends, where a server's
    log handler formats a record and drops it."""
    app_logger = logging.getLogger("commonwatch")
    level = app_logger.level
    app_logger.setLevel(logging.CRITICAL + 1)
    real = stix_export.render
    armed = {"on": True}

    def render(items, bundle_id):
        on = armed["on"]

        def rows():
            for k, item in enumerate(items):
                yield item._replace(raw=b"\xff\xfe") if k == 600 and on else item
        return real(rows(), bundle_id)

    monkeypatch.setattr(stix_export, "render", render)
    yield armed
    app_logger.setLevel(level)


def test_a_render_that_fails_midway_cuts_the_body_and_gives_everything_back(served, poisoned):
    w = served
    poisoned["on"] = False
    whole = fresh(w)
    poisoned["on"] = True
    auth = {"Authorization": f"Bearer {w['alpha'].token}"}
    with as_served():
        # a client reading as fast as it can: the body breaks off, it never looks whole
        got = b""
        with pytest.raises(httpx.RemoteProtocolError), \
                httpx.stream("GET", w["base"] + "/feeds/big", headers=auth, timeout=20) as resp:
            assert resp.status_code == 200
            failed_etag = resp.headers["etag"]
            for data in resp.iter_raw():
                got += data
        assert len(got) > 8192 and whole.startswith(neutral(got)) and not got.endswith(b"]}\n")
        # a stalled client: it gets what was rendered before the failure, then the cut
        stalled = Raw(w)
        assert stalled.status == 200
        body, complete = stalled.finish()
        assert not complete and not body.endswith(b"]}\n") and whole.startswith(neutral(body))
        assert len(body) < len(whole) * 3 // 4
        state = quiet(w, 3)
        assert {**state, "checked out": 0} == QUIET, state  # threads, budget, files, sockets
        poisoned["on"] = False  # the format works again: nothing of the failed renders was stored
        again = httpx.get(w["base"] + "/feeds/big", timeout=20,
                          headers={**auth, "If-None-Match": failed_etag})
        assert again.status_code == 200 and neutral(again.content) == whole
        state = quiet(w, 3)
        # Was: a render that failed midway keeps its pooled connection and read snapshot until a garbage
        # collection: the error's traceback, in a reference cycle, keeps the export's generators alive.
        assert state["checked out"] == 0, state
        assert open_read_transactions(w["url"]) == 0
    gc.collect()
    assert quiet(w) == QUIET


def test_head_then_closing_stores_the_validators_it_answered(served, monkeypatch):
    """A HEAD of a changed feed renders it so that the next GET finds its validators stored
    (web/feeds.py); a HEAD client has its whole answer with the head, and may go at once."""
    w = served
    real = stix_export.render

    def slow_render(items, bundle_id):
        for chunk in real(items, bundle_id):
            time.sleep(0.01)  # about 0.6 s for the render
            yield chunk

    monkeypatch.setattr(stix_export, "render", slow_render)
    auth = {"Authorization": f"Bearer {w['alpha'].token}"}
    head = httpx.head(w["base"] + "/feeds/big", headers=auth, timeout=20)  # one-shot: then closes
    assert head.status_code == 200 and head.content == b""
    assert "content-length" not in head.headers and head.headers["content-type"].startswith(
        "application/stix+json")
    assert quiet(w) == QUIET
    again = httpx.get(w["base"] + "/feeds/big", headers={**auth, "If-None-Match": head.headers["etag"]},
                      timeout=20)
    # Was: the HEAD's render is stopped when its client goes (after the complete HEAD answer), so
    # the validators it answered are never stored: the next GET renders anew under another ETag.
    assert again.status_code == 304, (again.status_code, again.headers.get("etag"), head.headers["etag"])


def test_a_head_kept_open_stores_its_validators_and_get_matches(served):
    w = served
    auth = {"Authorization": f"Bearer {w['alpha'].token}"}
    with httpx.Client(base_url=w["base"], headers=auth, timeout=20) as client:
        head = client.head("/feeds/ips")
        assert head.status_code == 200 and head.content == b""
        # the same connection: the next request is read once the HEAD's render ended
        again = client.get("/feeds/ips", headers={"If-None-Match": head.headers["etag"]})
        assert again.status_code == 304 and again.headers["etag"] == head.headers["etag"]
    assert quiet(w) == QUIET


def test_if_none_match_during_a_stalled_download(served):
    """The render ran ahead of its stalled client and stored its validators: a conditional
    request with its ETag is a 304 while the download goes on, and the download is whole."""
    w = served
    stalled = Raw(w)
    assert stalled.status == 200
    etag = stalled.headers["etag"]
    assert rendered(w) == 0 and not spool_threads()  # the render (and its stored state) is done
    auth = {"Authorization": f"Bearer {w['alpha'].token}"}
    resp = httpx.get(w["base"] + "/feeds/big", headers={**auth, "If-None-Match": etag}, timeout=20)
    assert resp.status_code == 304 and resp.content == b""
    other = Raw(w, **{"If-None-Match": '"something-else"'})  # a second download of the same body
    assert other.status == 200 and other.headers["etag"] == etag
    body, complete = stalled.finish()
    second, complete2 = other.finish()
    assert complete and complete2
    assert neutral(body) == neutral(second) == fresh(w)
    assert quiet(w) == QUIET


def test_a_stalled_client_that_spent_the_shared_budget_stalls_no_other_download(served, monkeypatch):
    """All renders together may run BUDGET.limit ahead of their clients; past it a render
    waits "for its client, as a plain stream would" (web/spool.py). A client that reads
    everything it is sent must still get its body while a stranger's download stalls."""
    w = served
    monkeypatch.setattr(spool.BUDGET, "limit", 64 << 10)
    stalled = Raw(w)  # 520 kB to send, 8 kB read: its render fills the budget
    assert stalled.status == 200
    deadline = time.monotonic() + 10
    while spool.BUDGET.ahead <= spool.BUDGET.limit and time.monotonic() < deadline:
        time.sleep(0.02)
    assert spool.BUDGET.ahead > spool.BUDGET.limit
    assert spool_fds(w) and os.listdir(w["folder"]) == []  # the body waits in an unlinked file
    auth = {"Authorization": f"Bearer {w['alpha'].token}"}
    try:
        resp = httpx.get(w["base"] + "/feeds/few", headers=auth, timeout=httpx.Timeout(20, read=3))
        outcome: object = (resp.status_code, resp.content == fresh(w, "plain-ip", "two"))
    except httpx.ReadTimeout:
        outcome = "stalled"
    body, complete = stalled.finish()
    assert complete and neutral(body) == fresh(w)
    # Was: a render past the shared budget waits even when its own client has read everything:
    # a 17 kB feed's download hangs for as long as a stranger's download stalls.
    assert outcome == (200, True), outcome


def test_a_spool_that_cannot_write_fails_cleanly(served, monkeypatch):
    """No temporary folder: an error before the status line. The disk full midway: the body is
    cut short. Either way the render's connection and snapshot are given back at once."""
    w = served
    auth = {"Authorization": f"Bearer {w['alpha'].token}"}
    whole = fresh(w)
    with as_served():
        monkeypatch.setattr(tempfile, "tempdir", str(w["folder"] / "gone"))
        resp = httpx.get(w["base"] + "/feeds/big", headers=auth, timeout=20)
        assert resp.status_code >= 500 and resp.headers["content-type"] == TAXII, resp.status_code
        assert "Traceback" not in resp.text and "gone" not in resp.text
        assert rendered(w, 3) == 0
        monkeypatch.setattr(tempfile, "tempdir", str(w["folder"]))
        real_pwrite, writes = os.pwrite, []

        def pwrite(fd, data, offset):
            if os.readlink(f"/proc/self/fd/{fd}").startswith(str(w["folder"])):
                writes.append(len(data))
                if len(writes) > 20:
                    raise OSError(28, "No space left on device")
            return real_pwrite(fd, data, offset)

        monkeypatch.setattr(os, "pwrite", pwrite)
        got = b""
        with pytest.raises(httpx.RemoteProtocolError), \
                httpx.stream("GET", w["base"] + "/feeds/big", headers=auth, timeout=20) as streamed:
            assert streamed.status_code == 200
            for data in streamed.iter_raw():
                got += data
        assert 0 < len(got) < len(whole) and whole.startswith(neutral(got))
        assert quiet(w, 3) == QUIET  # without a garbage collection
        assert open_read_transactions(w["url"]) == 0
        monkeypatch.setattr(os, "pwrite", real_pwrite)
        again = httpx.get(w["base"] + "/feeds/big", headers=auth, timeout=20)
        assert again.status_code == 200 and neutral(again.content) == whole
    assert quiet(w) == QUIET


def test_a_disconnect_stops_the_render_at_its_next_chunk(served, monkeypatch):
    """docs/export.md: "A client that disconnects stops the render at its next chunk"; the
    render cut short stores no validators. The render here makes a chunk per permit given."""
    w = served
    whole = fresh(w)
    real = stix_export.render
    permits, made = threading.Semaphore(0), []

    def gated(items, bundle_id):
        for k, chunk in enumerate(real(items, bundle_id)):
            if k >= 2:  # the bundle's head and first objects are made before the status line
                permits.acquire()
            made.append(k)
            yield chunk

    monkeypatch.setattr(stix_export, "render", gated)
    closed = threading.Event()
    real_close = spool.Spool.close

    def close(self):
        closed.set()
        real_close(self)

    monkeypatch.setattr(spool.Spool, "close", close)
    client = Raw(w, first=0)
    assert client.status == 200
    client.abort()
    given = 0
    while not closed.is_set() and given < 40:  # the reader waits for a chunk before it sees the end
        permits.release()
        given += 1
        closed.wait(0.25)
    assert closed.is_set()
    for _ in range(100):
        permits.release()
    assert quiet(w) == QUIET
    # two chunks before the answer, one per permit, then the one during which it was stopped
    assert len(made) <= given + 3 < 45, (len(made), given)  # of about 62 chunks
    again = httpx.get(w["base"] + "/feeds/big", timeout=20, headers={
        "Authorization": f"Bearer {w['alpha'].token}", "If-None-Match": client.headers["etag"]})
    assert again.status_code == 200 and neutral(again.content) == whole
