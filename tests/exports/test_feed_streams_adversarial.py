"""Streamed feeds and exports against clients that abort or stop reading, writers that run
while a stream's snapshot is open, and a connection pool that runs dry.

Feeds are served by a real uvicorn server on loopback whose listening socket has a small
send buffer, and slow clients have a small receive buffer: a client that stops reading
then really holds its stream (and so its pooled connection and read transaction) open.
Batches are cut to a few rows so that a stream of 1,200 objects spans many batches.
The engines here have a pool of 2 + 2 connections and a 1.0 s pool timeout (the limits
of storage/db.py's ``make_engine`` lowered, nothing else changed) and a frozen clock.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from commonwatch.domain.markings import Tlp
from commonwatch.formats import csv_export, misp_export, plain_lists, rpz, stix_export, suricata, zeek_intel
from commonwatch.services.exchange import Exchange
from commonwatch.services.export_filters import build_filter
from commonwatch.services.query import ObjectFilter, QueryService
from commonwatch.storage import db
from commonwatch.web.app import create_app
from exports.conftest import Clock

from support.factories import indicator, make_community, make_member
from support.serving import as_served, open_read_transactions, uvicorn_on_loopback

N = 1200  # objects in community "one": about 520 kB of STIX, far more than the socket buffers
POOL = 4  # 2 + 2 connections
SMALL = 20  # rows per batch and objects per chunk


def ip(n: int) -> str:
    return f"45.77.{n // 250}.{n % 250 + 1}"


@pytest.fixture
def small(settings, monkeypatch):
    """An exchange with a 2 + 2 pool (1.0 s timeout) and a frozen clock; "one" holds N
    indicators of Alpha, "two" 40 more; Alpha's feed "big" is "one" as a STIX bundle."""
    real = db.create_engine
    monkeypatch.setattr(db, "create_engine", lambda url, **kw: real(
        url, **{**kw, "pool_size": 2, "max_overflow": 2, "pool_timeout": 1.0}))
    original = QueryService.export_batches
    monkeypatch.setattr(QueryService, "export_batches",
                        lambda self, *a, **kw: original(self, *a, **{**kw, "batch": SMALL}))
    for module in (csv_export, misp_export, plain_lists, rpz, stix_export, suricata, zeek_intel):
        monkeypatch.setattr(module, "BATCH", SMALL)
    ex = Exchange(settings, migrate=False, clock=Clock())
    alpha = make_member(ex, "Alpha")
    one = make_community(ex, "one", Tlp.GREEN, {"Alpha": (True, Tlp.RED)})
    two = make_community(ex, "two", Tlp.GREEN, {"Alpha": (True, Tlp.RED)})
    objs = [indicator(ip(i), tlp=Tlp.GREEN) for i in range(N)]
    assert not ex.ingest.add_objects(alpha.principal, one, objs).failures
    assert not ex.ingest.add_objects(alpha.principal, two, [
        indicator(ip(N + i), tlp=Tlp.GREEN) for i in range(40)]).failures
    ex.feeds.create_feed(alpha.principal, "big", "stix", build_filter(communities=["one"]))
    yield {"ex": ex, "alpha": alpha, "one": one, "ids": {o["id"] for o in objs}, "url": settings.database_url}
    ex.close()


@pytest.fixture
def world(small):
    with uvicorn_on_loopback(create_app(small["ex"]), send_buffer=8192) as port:
        small.update(port=port, slow=[], base=f"http://127.0.0.1:{port}")
        yield small
        for slow in small["slow"]:  # the readers a failed test left open
            slow.sock.close()
        gc.collect()  # streams a defect left to the garbage collector end while the server runs
        held(small, 0)


class Slow:
    """A raw HTTP/1.1 GET that reads the head and a little of the body, then stops reading."""

    def __init__(self, w, name: str = "big", **headers: str) -> None:
        self.sock = socket.socket()
        w["slow"].append(self)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.settimeout(15)
        self.sock.connect(("127.0.0.1", w["port"]))
        extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        self.sock.sendall(f"GET /feeds/{name} HTTP/1.1\r\nHost: cw\r\nConnection: close\r\n"
                          f"Authorization: Bearer {w['alpha'].token}\r\n{extra}\r\n".encode())
        self.data, more = b"", b"."
        while more and (b"\r\n\r\n" not in self.data or len(self.data) < 8192):  # into the objects
            more = self.sock.recv(4096)
            self.data += more
        lines = self.data.partition(b"\r\n\r\n")[0].decode().split("\r\n")
        self.status = int(lines[0].split()[1])
        self.headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])}

    def abort(self) -> None:
        self.sock.close()

    def finish(self) -> bytes:
        while more := self.sock.recv(65536):
            self.data += more
        self.sock.close()
        body, out, pos = self.data.partition(b"\r\n\r\n")[2], [], 0
        if self.headers.get("transfer-encoding") != "chunked":
            return body
        while (size := int(body[pos:body.index(b"\r\n", pos)], 16)) > 0:
            start = body.index(b"\r\n", pos) + 2
            out.append(body[start:start + size])
            pos = start + size + 2
        return b"".join(out)


def bundle_ids(body: bytes) -> set[str]:
    return {o["id"] for o in json.loads(body)["objects"]}


def get(w, name: str = "big", **headers: str) -> httpx.Response:
    return httpx.get(f"{w['base']}/feeds/{name}", timeout=20,
                     headers={"Authorization": f"Bearer {w['alpha'].token}", **headers})


def held(w, want: int, within: float = 2.0, at_least: bool = False) -> int:
    """Connections checked out of the pool, once it is ``want`` (or more) or ``within`` s passed."""
    deadline = time.monotonic() + within
    while True:
        now = int(w["ex"].engine.pool.checkedout())
        if now == want or (at_least and now > want) or time.monotonic() > deadline:
            return now
        time.sleep(0.05)


def post(w, values: list[str]) -> list[str]:
    objs = [indicator(v, tlp=Tlp.GREEN) for v in values]
    report = w["ex"].ingest.add_objects(w["alpha"].principal, w["one"], objs)
    assert not report.failures, report.failures
    return [o["id"] for o in objs]


# -- 1. aborted downloads ------------------------------------------------------------------------

def test_aborted_feed_downloads_give_their_connection_back(world):
    # On disconnect the server cancels the streaming task and never closed the body iterator;
    # the cancelled task's traceback kept it (and the export's session) in a reference cycle
    # until a garbage collection: more aborted downloads than the pool holds made every later
    # request a 503. The feed response now closes its iterator however it ends.
    w = world
    with as_served():
        for k in range(POOL + 2):
            if k % 3 == 2:  # an httpx client that closes its streamed response after one chunk
                with httpx.stream("GET", f"{w['base']}/feeds/big", timeout=20,
                                  headers={"Authorization": f"Bearer {w['alpha'].token}"}) as r:
                    status = r.status_code
                    next(r.iter_raw())
            else:
                slow = Slow(w)
                status = slow.status
                slow.abort()
            assert status == 200, f"download {k + 1} answered {status}: earlier aborts hold the pool"
        assert held(w, 0) == 0, "aborted downloads still hold pooled connections"
        assert open_read_transactions(w["url"]) == 0
        started = time.monotonic()
        resp = get(w)
        assert resp.status_code == 200 and time.monotonic() - started < 1.0
        assert len(bundle_ids(resp.content)) == N
        post(w, [ip(5000)])


def test_service_exports_closed_or_dropped_mid_stream_end_their_snapshot(small):
    """Called directly: more abandoned exports than the pool holds, every format, one
    community and several merged, closed or just dropped; and a feed render cut short."""
    ex, alpha = small["ex"], small["alpha"].principal
    formats = ["stix", "csv", "plain-ip", "suricata-rules", "misp", "zeek-intel", "rpz"]
    pool = ex.engine.pool
    with as_served():
        for k in range(3 * POOL):
            flt = build_filter(communities=["one"] if k % 2 else [])
            export = ex.export.export(alpha, formats[k % len(formats)], flt)
            while pool.checkedout() == 0:  # until its snapshot is open
                next(export.chunks)
            if k % 3:
                export.chunks.close()
            del export
            assert pool.checkedout() == 0, formats[k % len(formats)]
        feed = ex.feeds.get_feed(alpha, "big")
        render, _, _ = ex.feeds.render_feed(alpha, feed)
        next(render.chunks), next(render.chunks)
        assert pool.checkedout() == 1
        render.chunks.close()
        assert pool.checkedout() == 0
        assert ex.feeds.validators(alpha, feed)[2] is False  # a render cut short stores nothing
        assert open_read_transactions(small["url"]) == 0
        assert len(bundle_ids("".join(ex.export.export(alpha, "stix", build_filter()).chunks)
                              .encode())) == N + 40


# -- 2. writes while a stream's snapshot is open ------------------------------------------------

def test_ingest_and_delete_while_a_feed_streams_and_the_stream_stays_its_snapshot(world):
    w = world
    slow = Slow(w)
    assert slow.status == 200
    started = time.monotonic()
    new = post(w, [ip(5000 + i) for i in range(5)])
    gone = sorted(w["ids"])[:5]
    for oid in gone:
        assert w["ex"].ingest.delete_object(w["alpha"].principal, w["one"], oid, ObjectFilter()) == 1
    assert time.monotonic() - started < 5  # no wait on a lock (SQLite's busy timeout is 30 s)
    assert bundle_ids(slow.finish()) == w["ids"]  # the snapshot: none new, none deleted
    assert bundle_ids(get(w).content) == (w["ids"] - set(gone)) | set(new)
    assert held(w, 0) == 0 and open_read_transactions(w["url"]) == 0


# -- 3. validators around writes and overlapping renders ----------------------------------------

# -- 4. a pool run dry --------------------------------------------------------------------------

def test_slow_readers_hold_no_connection_and_others_are_served(world):
    """Feeds are rendered ahead of their clients (web/spool.py): more stalled downloads
    than the pool holds leave it free, and no read transaction open, while they stall."""
    w = world
    readers = [Slow(w) for _ in range(POOL + 2)]
    assert [r.status for r in readers] == [200] * (POOL + 2)
    assert held(w, 0) == 0, "stalled downloads hold pooled connections"
    assert open_read_transactions(w["url"]) == 0
    for path in ("/feeds/big", "/api/feeds", "/taxii2/api/collections/"):
        resp = httpx.get(w["base"] + path, timeout=20, headers={
            "Authorization": f"Bearer {w['alpha'].token}", "Accept": "application/taxii+json;version=2.1"})
        assert resp.status_code == 200, (path, resp.text)
    new = post(w, [ip(7000)])  # a write while they stall: SQLite's WAL is not pinned either
    assert open_read_transactions(w["url"]) == 0
    assert all(bundle_ids(r.finish()) == w["ids"] for r in readers)  # each its own snapshot, whole
    assert bundle_ids(get(w).content) == w["ids"] | set(new)
    assert held(w, 0) == 0


@contextlib.contextmanager
def pool_taken(w, count: int):
    """``count`` connections checked out of the pool by someone else."""
    conns = [w["ex"].engine.connect() for _ in range(count)]
    try:
        yield
    finally:
        for conn in conns:
            conn.close()


def test_a_pool_run_dry_gives_a_503_never_a_hang(world):
    w = world
    with pool_taken(w, POOL):
        for path in ("/feeds/big", "/api/feeds", "/taxii2/api/collections/"):
            started = time.monotonic()
            resp = httpx.get(w["base"] + path, timeout=20, headers={
                "Authorization": f"Bearer {w['alpha'].token}",
                "Accept": "application/taxii+json;version=2.1"})
            assert time.monotonic() - started < 1.0 + 2, path  # the pool timeout, not a hang
            assert resp.status_code == 503 and resp.headers["retry-after"] == "5", (path, resp.text)
            assert resp.headers["content-type"] == "application/taxii+json;version=2.1"
            assert resp.json() == {"title": "Service unavailable", "http_status": "503",
                                   "description": "the exchange is busy; retry in 5 seconds"}
    assert held(w, 0) == 0
    assert get(w).status_code == 200


def test_suricata_feed_under_pool_pressure_is_a_503_or_a_whole_200(world):
    # A rules export takes two connections (its snapshot, and one for sids); both used to be
    # taken only once the body was iterated, after "200" went out, and the sid connection anew
    # for each batch: with the pool nearly empty the stream broke off mid-body. The feed now
    # makes its first chunk before answering, and the sid connection is held to the end.
    w = world
    w["ex"].feeds.create_feed(w["alpha"].principal, "rules", "suricata-rules",
                               build_filter(communities=["one"]))
    for taken in (POOL - 1, POOL - 2):
        started, cut = time.monotonic(), None
        with pool_taken(w, taken):
            try:
                with httpx.stream("GET", f"{w['base']}/feeds/rules", timeout=20,
                                  headers={"Authorization": f"Bearer {w['alpha'].token}"}) as resp:
                    body = resp.read().decode()
            except httpx.RemoteProtocolError as exc:
                cut = exc
        assert time.monotonic() - started < 1.0 + 3
        assert cut is None, f"a 200 broke off mid-body: {cut}"
        if taken == POOL - 1:  # one connection left, two needed
            assert resp.status_code == 503 and resp.headers["retry-after"] == "5"
        else:
            assert resp.status_code == 200 and body.count("\nalert ") + body.startswith("alert ") == N
    assert held(w, 0) == 0


def test_cli_export_into_a_pipe_closed_early_ends_quietly(small):
    """``commonwatch export ... | head -c 4096``: no traceback, no hang, no lock left behind."""
    cli = str(Path(sys.executable).parent / "commonwatch")
    env = {**os.environ, "COMMONWATCH_DATABASE_URL": small["url"]}
    proc = subprocess.Popen([cli, "export", "--user", "alpha-user", "-f", "stix", "--community", "one"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    assert proc.stdout.read(4096).startswith(b'{"type":"bundle"')
    proc.stdout.close()
    assert b"Traceback" not in proc.stderr.read()
    proc.wait(20)
    assert open_read_transactions(small["url"]) == 0
    post(small, [ip(8000)])
