"""Pull-feed validators (ETag, Last-Modified, 304) under real concurrency.

A real uvicorn server on loopback serves an Exchange on a real database (SQLite file and
PostgreSQL); client threads fetch ``GET /feeds/ips`` again and again with the validators
they last received: ``etag`` clients send If-None-Match, ``date`` clients only
If-Modified-Since, ``cache`` clients both, and freshen their stored validators from each
304 as an HTTP cache does (RFC 9111 §4.3.4). Meanwhile a writer posts, revokes and deletes
indicators and moves the reader's clearance, or a feed is deleted and defined again. The
real clock runs, so HTTP-date seconds roll over mid-run.

Soundness of the checks. The feeds are ``plain-ip`` lists compared as sorted lines, and no
indicator has a ``valid_until``: only the writer changes what a feed holds. After each of
its writes, and before the next, the writer computes what each user's feed holds (a plain
export with the feed's filter, not through the feed's validators). The content produced by
write k is therefore current at most from the start of write k to the end of write k+1; a
response is only ever checked against the contents that may have been current at some
instant between the moment its request was sent and the moment its body was read.
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
import pytest

from commonwatch.domain.markings import Tlp
from commonwatch.services.exchange import Exchange
from commonwatch.services.export import ExportService
from commonwatch.services.export_filters import build_filter, filter_from_json
from commonwatch.services.query import ObjectFilter
from commonwatch.web.app import create_app
from exports.conftest import ring

from support.factories import indicator, new_version
from support.serving import uvicorn_on_loopback

INF = float("inf")
Lines = tuple[str, ...]


def lines(text: str) -> Lines:
    return tuple(sorted(text.split()))


def ip(n: int) -> str:
    return f"45.82.{n // 250}.{n % 250 + 1}"


@contextlib.contextmanager
def serving(ex: Exchange, phase: float | None = None) -> Iterator[str]:
    """A real uvicorn server (the settings ``commonwatch serve`` uses) on a loopback port.
    ``phase``: start it at that fraction of a wall-clock second."""
    with uvicorn_on_loopback(create_app(ex), log_level="warning", phase=phase) as port:
        yield f"http://127.0.0.1:{port}"


@pytest.fixture
def world(settings):
    """ring (Prod writes, Bee reads up to AMBER) on the real clock; Bee has a second user,
    bee-2 (a reader), who fetches Bee's feeds with its own feed state."""
    ex = Exchange(settings, migrate=False)
    members = ring(ex)
    ex.admin.create_user("Bee", "bee-2", "reader")
    tokens = {"bee-user": members["B"].token, "bee-2": ex.admin.create_token("bee-2").secret}
    principals = {"bee-user": members["B"].principal, "bee-2": ex.auth.principal_for_user("bee-2")}
    yield {"ex": ex, "P": members["P"], "B": members["B"], "cid": members["cid"], "tokens": tokens,
           "principals": principals}
    ex.close()


def define(base: str, token: str, name: str = "ips", **body: Any) -> None:
    resp = httpx.post(f"{base}/api/feeds", timeout=30, headers={"Authorization": f"Bearer {token}"},
                      json={"name": name, "format": "plain-ip", **body})
    assert resp.status_code == 201, resp.text


def content(w, user: str, tlp: str = "amber") -> Lines:
    """What a feed of ``tlp`` holds for ``user`` now: an export, not the feed's validators."""
    export = w["ex"].export.export(w["principals"][user], "plain-ip", build_filter(tlp=tlp), explain=False)
    return lines("".join(export.chunks))


@dataclass
class Record:
    client: str
    user: str
    sent: dict[str, str]
    held: Lines | None  # the body the sent validators stand for
    start: float
    end: float
    status: int
    etag: str | None
    modified: str | None
    date: str | None
    body: Lines | None


class Client:
    """A fetcher of one user: ``etag``, ``date`` or ``cache`` (see the module docstring).
    It keeps its list and validators on errors and 404s, as a firewall does."""

    def __init__(self, name: str, user: str, kind: str, base: str, token: str) -> None:
        self.name, self.user, self.kind = name, user, kind
        self.etag: str | None = None
        self.modified: str | None = None
        self.held: Lines | None = None
        self.http = httpx.Client(base_url=base, timeout=30, headers={"Authorization": f"Bearer {token}"})

    def validators(self) -> dict[str, str]:
        sent = {}
        if self.kind in ("etag", "cache") and self.etag:
            sent["If-None-Match"] = self.etag
        if self.kind in ("date", "cache") and self.modified:
            sent["If-Modified-Since"] = self.modified
        return sent

    def fetch(self, sent: dict[str, str] | None = None) -> Record:
        sent = self.validators() if sent is None else sent
        start = time.monotonic()
        resp = self.http.get("/feeds/ips", headers=sent)
        end = time.monotonic()
        body = lines(resp.text) if resp.status_code == 200 else None
        rec = Record(self.name, self.user, sent, self.held if sent else None, start, end, resp.status_code,
                     resp.headers.get("etag"), resp.headers.get("last-modified"), resp.headers.get("date"),
                     body)
        if resp.status_code == 200:
            self.held, self.etag, self.modified = body, rec.etag, rec.modified
        elif resp.status_code == 304 and self.kind == "cache":
            self.etag = rec.etag or self.etag
            self.modified = rec.modified or self.modified
        return rec

    def close(self) -> None:
        self.http.close()


def run_clients(clients: list[Client], stop: threading.Event, records: list[Record],
                errors: list[BaseException]) -> list[threading.Thread]:
    def loop(client: Client, seed: int) -> None:
        rng = random.Random(seed)
        try:
            while not stop.is_set():
                records.append(client.fetch())
                time.sleep(rng.uniform(0, 0.012))
        except BaseException as exc:  # reported by the test
            errors.append(exc)

    threads = [threading.Thread(target=loop, args=(c, k), daemon=True) for k, c in enumerate(clients)]
    for t in threads:
        t.start()
    return threads


def describe(r: Record) -> str:
    return (f"{r.client} ({r.user}) sent {r.sent} holding {r.held}; got {r.status} etag={r.etag} "
            f"lm={r.modified} body={r.body} in [{r.start:.3f}, {r.end:.3f}]")


# -- 1. writes while conditional fetches run ------------------------------------------------------

def test_concurrent_conditional_fetches_never_get_a_stale_304_nor_a_5xx(world):
    w = world
    ex, p, cid = w["ex"], w["P"].principal, w["cid"]
    users = list(w["principals"])
    with serving(ex) as base:
        define(base, w["B"].token)
        flt, _ = filter_from_json(ex.feeds.get_feed(w["B"].principal, "ips").filter_json)
        assert flt == build_filter(tlp="amber")  # what ``content`` exports

        # (start, end, content per user) of each write; the first is the state before any
        writes: list[tuple[float, float, dict[str, Lines]]] = [
            (-INF, -INF, {u: content(w, u) for u in users})]
        stop, errors, records = threading.Event(), [], []

        def writer() -> None:
            rng = random.Random(20260528)
            mine: list[dict] = []
            amber = True
            n = 0

            def write(op: str) -> None:
                nonlocal amber, n
                n += 1
                start = time.monotonic()
                if op in ("green", "amber"):
                    obj = indicator(ip(n), tlp=Tlp.GREEN if op == "green" else Tlp.AMBER)
                    assert not ex.ingest.add_objects(p, cid, [obj]).failures
                    mine.append(obj)
                elif op == "red":  # RED for Prod alone: Bee never sees it
                    obj = indicator(ip(n), tlp=Tlp.RED, recipients=[w["P"].identity])
                    assert not ex.ingest.add_objects(p, cid, [obj]).failures
                elif op == "listed":  # a warninglisted value: never exported
                    assert not ex.ingest.add_objects(p, cid, [indicator("10.9.8.7")]).failures
                elif op == "delete":
                    obj = mine.pop(rng.randrange(len(mine)))
                    assert ex.ingest.delete_object(p, cid, obj["id"], ObjectFilter()) == 1
                elif op == "revoke":
                    obj = mine.pop(rng.randrange(len(mine)))
                    assert not ex.ingest.add_objects(p, cid, [new_version(obj, 50, revoked=True)]).failures
                else:
                    amber = not amber
                    ex.admin.set_membership("Bee", "ring", True, False, Tlp.AMBER if amber else Tlp.GREEN)
                writes.append((start, time.monotonic(), {u: content(w, u) for u in users}))

            try:
                for _ in range(4):
                    for _ in range(6):  # a burst: renders overlap, several in one second
                        write(rng.choice(["green", "amber", "red", "delete", "revoke", "clearance", "listed"]
                                         if mine else ["green", "amber"]))
                        time.sleep(rng.uniform(0.005, 0.04))
                    # then one write just after a second boundary, and quiet: bee-2's next
                    # body has a second of its own (a date), then validators settle
                    time.sleep(0.2)
                    time.sleep(1.03 - time.time() % 1.0)
                    write("green")
                    time.sleep(0.4)
            except BaseException as exc:
                errors.append(exc)
            finally:
                stop.set()

        clients = [Client("etag-1", "bee-user", "etag", base, w["tokens"]["bee-user"]),
                   Client("cache-1", "bee-user", "cache", base, w["tokens"]["bee-user"]),
                   Client("date-1", "bee-user", "date", base, w["tokens"]["bee-user"]),
                   # alone on its user: its renders never overlap, so it gets dates and 304s
                   Client("date-2", "bee-2", "date", base, w["tokens"]["bee-2"])]
        threads = run_clients(clients, stop, records, errors)
        writing = threading.Thread(target=writer, daemon=True)
        writing.start()
        writing.join(60)
        for t in threads:
            t.join(30)
        assert not errors, errors

        def allowed(start: float, end: float, user: str) -> set[Lines]:
            out = set()
            for k, (began, _, holds) in enumerate(writes):
                until = writes[k + 1][1] if k + 1 < len(writes) else INF
                if began <= end and start <= until:
                    out.add(holds[user])
            return out

        statuses = Counter(r.status for r in records)
        assert set(statuses) <= {200, 304}, [describe(r) for r in records if r.status not in (200, 304)][:5]
        for r in records:
            ok = allowed(r.start, r.end, r.user)
            if r.status == 200:
                assert r.body in ok, "a body that was never the feed's content: " + describe(r)
            else:
                assert r.held is not None and r.held in ok, "a stale 304: " + describe(r)
        # the run exercised what it claims to
        assert len({h["bee-user"] for _, _, h in writes}) >= 5
        assert any(r.status == 304 and "If-None-Match" in r.sent for r in records)
        assert any(r.status == 304 and list(r.sent) == ["If-Modified-Since"] for r in records)
        assert len({r.modified for r in records if r.modified}) >= 2  # seconds rolled over

        # quiescence: each client in turn, nothing else running
        for client in clients:
            now = content(w, client.user)
            r = client.fetch()
            if r.status == 304:
                assert r.held == now, "a stale 304 after quiescence: " + describe(r)
            else:
                assert r.status == 200 and r.body == now, describe(r)
            sent = client.validators()
            if sent:  # validators just handed out for the current content: 304
                r = client.fetch()
                assert r.status == 304 and r.held == now, describe(r)
            client.close()


# -- 2. one body rendered after a write, under the validators of the body before ---------------

def test_a_body_rendered_after_a_write_never_carries_the_validators_of_the_body_before(world, monkeypatch):
    """A fetch that finds the stored state current renders a fresh body under the stored
    validators. Here a write lands between that check and the export's snapshot (the request's
    thread is held there for the write: a scheduler may do the same at any time)."""
    w = world
    ex = w["ex"]
    arrived, go, armed = threading.Event(), threading.Event(), threading.Event()
    original = ExportService.export

    def export(self, *args, **kwargs):
        if armed.is_set():
            armed.clear()
            arrived.set()
            go.wait(10)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(ExportService, "export", export)
    with serving(ex) as base:
        define(base, w["B"].token)
        firewall = Client("firewall", "bee-user", "cache", base, w["tokens"]["bee-user"])
        first = firewall.fetch()
        assert first.status == 200 and first.body == ("45.81.0.1", "45.81.0.2") and first.modified
        assert firewall.fetch().status == 304  # the state is stored and current

        armed.set()
        fresh = Client("sensor", "bee-user", "cache", base, w["tokens"]["bee-user"])
        got: list[Record] = []
        fetching = threading.Thread(target=lambda: got.append(fresh.fetch()))
        fetching.start()
        assert arrived.wait(10)
        assert not ex.ingest.add_objects(w["P"].principal, w["cid"], [indicator("45.81.0.9")]).failures
        go.set()
        fetching.join(10)
        (second,) = got
        assert second.status == 200 and second.body == ("45.81.0.1", "45.81.0.2", "45.81.0.9")
        # Regression: a fetch that found the stored state current rendered a new snapshot under the
        # stored ETag and Last-Modified, so a write landing in between gave two different bodies one
        # ETag and one date. The snapshot's own base now decides.
        assert second.etag != first.etag and second.modified != first.modified, (
            f"two different bodies under ETag {first.etag} / Last-Modified {first.modified}: "
            f"{first.body} and {second.body}")
        firewall.close()
        fresh.close()


# -- 3. Last-Modified against Date ---------------------------------------------------------------

@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_last_modified_is_never_later_than_the_date_header(world):
    """RFC 9110 §8.8.2.1: an origin server MUST NOT send a Last-Modified later than its Date.
    A new content generation is posted and fetched every few tens of ms for ~2.5 s; the
    server is started half-way through a second (most start times show it; this one does in
    every run)."""
    w = world
    ex = w["ex"]
    with serving(ex, phase=0.5) as base:
        define(base, w["B"].token)
        client = Client("edl", "bee-user", "date", base, w["tokens"]["bee-user"])
        seen: list[Record] = []
        deadline, n = time.monotonic() + 2.5, 0
        while time.monotonic() < deadline:
            seen.append(client.fetch())
            seen.append(client.fetch())  # a 304 when the last body had a date
            n += 1
            assert not ex.ingest.add_objects(w["P"].principal, w["cid"], [indicator(ip(n))]).failures
        client.close()
    assert all(r.status in (200, 304) and r.date for r in seen)
    dated = [r for r in seen if r.modified]
    assert len({r.modified for r in dated}) >= 2
    late = [(r.status, r.modified, r.date) for r in dated
            if parsedate_to_datetime(r.modified) > parsedate_to_datetime(r.date)]
    # Regression: Last-Modified is the render's own clock reading, while uvicorn's Date header is
    # refreshed only once a second, so a body rendered just after a second boundary was dated later
    # than its response. The application now writes Date itself (web/app.py SERVER_OPTIONS).
    assert not late, f"{len(late)} of {len(dated)} responses have Last-Modified > Date, e.g. {late[:3]}"


# -- 4. the feed deleted and defined again while it is fetched -----------------------------------

def test_feed_deleted_and_redefined_mid_stream_never_gives_a_5xx_nor_a_wrong_304(world):
    """The feed alternates between two definitions (TLP ceiling amber: two values; green:
    one), each live ~0.25 s, deleted and defined again over the API. On SQLite the new
    definition takes the deleted one's row id. If-Modified-Since alone may be answered 304
    across a redefinition within one second (docs/export.md): such a 304 for a body of
    another definition is excused only when a definition was made in the second of the date
    the client sent; If-None-Match never. No client ever gets a 5xx."""
    w = world
    ex = w["ex"]
    holds = {tlp: content(w, "bee-user", tlp) for tlp in ("amber", "green")}
    assert holds["amber"] != holds["green"]
    assert holds == {tlp: content(w, "bee-2", tlp) for tlp in ("amber", "green")}
    with serving(ex) as base:
        define(base, w["B"].token, tlp="amber")
        # (start, end, definition or None: deleted, wall-clock start, end)
        events: list[tuple[float, float, str | None, float, float]] = [(-INF, -INF, "amber", -INF, -INF)]
        stop, errors, records = threading.Event(), [], []

        def switcher() -> None:
            admin = httpx.Client(base_url=base, timeout=30,
                                 headers={"Authorization": f"Bearer {w['B'].token}"})
            rng = random.Random(7)
            try:
                for k in range(10):
                    time.sleep(rng.uniform(0.15, 0.3))
                    start, wall = time.monotonic(), time.time()
                    resp = admin.delete("/api/feeds/ips")
                    events.append((start, time.monotonic(), None, wall, time.time()))
                    assert resp.status_code == 204, resp.text
                    time.sleep(rng.uniform(0, 0.05))
                    tlp = "green" if k % 2 == 0 else "amber"
                    start, wall = time.monotonic(), time.time()
                    resp = admin.post("/api/feeds", json={"name": "ips", "format": "plain-ip", "tlp": tlp})
                    events.append((start, time.monotonic(), tlp, wall, time.time()))
                    assert resp.status_code == 201, resp.text
                time.sleep(0.2)
            except BaseException as exc:
                errors.append(exc)
            finally:
                admin.close()
                stop.set()

        clients = [Client("etag-1", "bee-user", "etag", base, w["tokens"]["bee-user"]),
                   Client("cache-1", "bee-user", "cache", base, w["tokens"]["bee-user"]),
                   Client("date-2", "bee-2", "date", base, w["tokens"]["bee-2"]),
                   Client("etag-2", "bee-2", "etag", base, w["tokens"]["bee-2"])]
        threads = run_clients(clients, stop, records, errors)
        switching = threading.Thread(target=switcher, daemon=True)
        switching.start()
        switching.join(60)
        for t in threads:
            t.join(30)
        assert not errors, errors

        def live(start: float, end: float) -> tuple[set[Lines], bool]:
            """The contents the feed may have had during [start, end], and whether it may
            have been missing."""
            bodies, missing = set(), False
            for k, (began, _, tlp, _, _) in enumerate(events):
                until = events[k + 1][1] if k + 1 < len(events) else INF
                if began <= end and start <= until:
                    if tlp is None:
                        missing = True
                    else:
                        bodies.add(holds[tlp])
            return bodies, missing

        statuses = Counter(r.status for r in records)
        assert set(statuses) <= {200, 304, 404}, [describe(r) for r in records if r.status >= 500][:5]
        for r in records:
            bodies, missing = live(r.start, r.end)
            if r.status == 200:
                assert r.body in bodies, "a body of no definition live then: " + describe(r)
            elif r.status == 404:
                assert missing, "404 while the feed was defined throughout: " + describe(r)
            elif "If-None-Match" in r.sent:
                assert r.held in bodies, "a wrong 304 across a redefinition: " + describe(r)
            elif r.held not in bodies:  # If-Modified-Since alone: wrong only within the documented limit
                second = parsedate_to_datetime(r.sent["If-Modified-Since"]).timestamp()
                redefined = any(tlp and began < second + 1 and ended >= second
                                for _, _, tlp, began, ended in events)
                assert redefined, "a wrong 304 beyond the documented limit: " + describe(r)
        assert {r.body for r in records if r.status == 200} == set(holds.values())
        assert any(r.status == 304 and "If-None-Match" in r.sent for r in records)

        # quiescence: the last definition (amber) stays; every client ends up with its content
        assert events[-1][2] == "amber"
        for client in clients:
            r = client.fetch()
            assert r.status in (200, 304), describe(r)
            if r.status == 304 and "If-None-Match" in r.sent:
                assert r.held == holds["amber"], describe(r)
            elif r.status == 200:
                assert r.body == holds["amber"], describe(r)
            if client.kind != "date":
                r = client.fetch()
                assert r.status == 304 and r.held == holds["amber"], describe(r)
            client.close()
