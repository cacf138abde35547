"""Several members write one collection at once over real HTTP while others read it.

A real uvicorn server on loopback (``live_server``) over a real database (SQLite file
and PostgreSQL). In the main run, writer threads of three members post envelopes of
50-500 objects (fresh indicators of every TLP, cyber-observables from a shared pool,
new versions of their own objects, versions of objects relayed from one public
source), one of them with the real taxii2-client; reader threads of two members who
never write page the collection the whole time, by ``added_after`` and by ``next``, on
objects and manifest, ``match[version]=all`` and the default ``last``; a poller reads
status resources. Everything is recorded and checked after quiescence. Smaller runs
race first postings, conflicting contents and a revocation; a consumer keeps a copy
through objects and the deletions feed while a member deletes its copies; and members
post and read while PostgreSQL refuses the exchange more connections.

Soundness. The readers' organisations never write, so what a reader may see only
grows, and the copy of a version it gets (the first stored among those it sees) never
changes unless that copy is deleted. ``date_added`` is assigned under the community's
write lock and commit order is date_added order (docs/api.md), so a page whose last
row was added at ``d`` was read from a snapshot holding every row added up to ``d``:
the page must be exactly the reader's final rows between the page's start and ``d``,
whatever the interleaving. No check depends on timing; in the main run a 503 is only
accepted after the 30-second wait the documentation names.
"""

from __future__ import annotations

import bisect
import json
import random
import threading
import time
import uuid
from collections import Counter, defaultdict
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from taxii2client.v21 import Collection, as_pages

from commonwatch.config import load_settings
from commonwatch.domain.markings import RECIPIENTS_EXTENSION_ID, RECIPIENTS_PROPERTY, Tlp, effective_tlp
from commonwatch.domain.timestamps import format_timestamp, parse_timestamp
from commonwatch.services.exchange import Exchange
from commonwatch.storage.db import make_engine

from conftest import LiveServer
from support.concurrency import run_threads as _run_threads
from support.factories import indicator, ipv4, make_community, make_member, new_version

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

TAXII = "application/taxii+json;version=2.1"
#: A public source no member is: members relaying it version its objects together.
SOURCE = "identity--2f3c1c6e-5b1d-4b8e-9d0c-5a4f3e2d1c0b"
NS = uuid.UUID("6c1a3a52-1e0c-4d3e-9a55-3f0f4a1b2c3d")
JOIN_S = 120
BUSY_WAIT_S = 29  # docs/api.md: 503 when every connection is in use or the write lock is held 30 s


# -- helpers ---------------------------------------------------------------------------------
def bearer(member) -> dict[str, str]:
    return {"Authorization": f"Bearer {member.token}", "Accept": TAXII}


def run_threads(funcs):
    """:func:`support.concurrency.run_threads` with this file's time limit; no callable
    may raise."""
    results = _run_threads(funcs, join_s=JOIN_S)
    bad = [r for r in results if isinstance(r, BaseException)]
    assert not bad, bad
    return results


class Calls:
    """Every HTTP answer of the run: (who, method, path, status, seconds, body head,
    Retry-After, the statuses expected)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.rows: list[tuple[str, str, str, int, float, str, str | None, frozenset[int]]] = []

    def request(self, client: httpx.Client, who: str, method: str, path: str,
                ok: frozenset[int] = frozenset({200, 202}), **kw) -> httpx.Response:
        start = time.monotonic()
        try:
            resp = client.request(method, path, **kw)
        except httpx.TransportError as exc:  # a dropped connection (an unhandled error)
            resp = httpx.Response(599, text=f"transport error: {exc!r}")
        with self.lock:
            self.rows.append((who, method, path.split("?")[0][-40:], resp.status_code,
                              time.monotonic() - start, resp.text[:300], resp.headers.get("retry-after"), ok))
        return resp

    def bad(self) -> list:
        """Unexpected answers; a 503 is expected only with Retry-After and after the
        documented 30-second wait."""
        out = []
        for row in self.rows:
            status, seconds, retry = row[3], row[4], row[6]
            if status == 503 and retry is not None and seconds >= BUSY_WAIT_S:
                continue
            if status not in row[7] or "Traceback" in row[5]:
                out.append(row)
        return out


def canon(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


@pytest.fixture
def world(exchange, live_server):
    """Writers A, B, C (AMBER: they see each other's GREEN and AMBER), reader R (RED,
    named on the RED objects), reader G (GREEN), all in one GREEN-default community."""
    a, b, c = (make_member(exchange, n) for n in ("Writer A", "Writer B", "Writer C"))
    r = make_member(exchange, "Reader R", role="reader")
    g = make_member(exchange, "Reader G", role="reader")
    cid = make_community(exchange, "shared", Tlp.GREEN, {
        a.org: (True, Tlp.AMBER), b.org: (True, Tlp.AMBER), c.org: (True, Tlp.AMBER),
        r.org: (False, Tlp.RED), g.org: (False, Tlp.GREEN)})
    base = f"/taxii2/api/collections/{cid}/"
    return {"A": a, "B": b, "C": c, "R": r, "G": g, "cid": cid, "url": live_server.url,
            "objects": base + "objects/", "manifest": base + "manifest/", "exchange": exchange,
            "max_tlp": {a.org: Tlp.AMBER, b.org: Tlp.AMBER, c.org: Tlp.AMBER, r.org: Tlp.RED,
                        g.org: Tlp.GREEN}}


def stored_rows(exchange, cid: str) -> list[dict[str, Any]]:
    """Every stored version of the collection, in date_added order (ground truth)."""
    with exchange.engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT o.stix_id, o.version_us, o.date_added_us, o.producer_org_id, o.tlp, o.raw "
            "FROM stix_objects o JOIN communities c ON c.id = o.community_id "
            "WHERE c.collection_id = :cid ORDER BY o.date_added_us"), {"cid": cid}).all()
    return [{"id": sid, "version": v, "added": d, "producer": p, "tlp": t,
             "obj": json.loads(bytes(raw))} for sid, v, d, p, t, raw in rows]


def model(rows: list[dict[str, Any]], member, max_tlp: Tlp) -> list[dict[str, Any]]:
    """What ``member`` reads with ``match[version]=all`` (docs/sharing-model.md): the
    versions it may see, one copy per version (its own, else the first stored)."""
    def visible(row):
        if row["producer"] == member.principal.org_id:
            return True
        tlp = Tlp(row["tlp"])
        if tlp == Tlp.RED:
            named = row["obj"].get("extensions", {}).get(RECIPIENTS_EXTENSION_ID, {})
            return max_tlp == Tlp.RED and member.identity in named.get(RECIPIENTS_PROPERTY, [])
        return tlp <= max_tlp

    chosen: dict[tuple[str, int], dict[str, Any]] = {}
    for row in rows:  # date_added order: the first stored copy comes first
        if not visible(row):
            continue
        key = (row["id"], row["version"])
        if key not in chosen or (row["producer"] == member.principal.org_id
                                 and chosen[key]["producer"] != member.principal.org_id):
            chosen[key] = row
    return sorted(chosen.values(), key=lambda r: r["added"])


def latest_of(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for row in rows:
        if row["id"] not in out or row["version"] > out[row["id"]]["version"]:
            out[row["id"]] = row
    return out


def read_all(client: httpx.Client, member, path: str, query: str, key: str = "objects"):
    """Every page of ``path`` (limit 10000, by next): (items, [(first, last) headers])."""
    items, headers, nxt = [], [], None
    for _ in range(100):
        q = f"?limit=10000{query}" + (f"&next={nxt}" if nxt else "")
        resp = client.get(path + q, headers=bearer(member))
        assert resp.status_code == 200, resp.text[:300]
        body = resp.json()
        items += body.get(key, [])
        headers.append((resp.headers.get("X-TAXII-Date-Added-First"),
                        resp.headers.get("X-TAXII-Date-Added-Last")))
        if not body["more"]:
            return items, headers
        nxt = body["next"]
    raise AssertionError("paging did not end")


# -- the objects the writers post ------------------------------------------------------------
GREEN_OR_AMBER = (Tlp.GREEN, Tlp.AMBER)


def own_version(org: str, k: int, m: int) -> dict[str, Any]:
    """Version ``m`` of the ``k``-th object of ``org`` (its own, no created_by_ref): the
    same content for the same (k, m), GREEN for even ``m``, AMBER for odd."""
    oid = f"indicator--{uuid.uuid5(NS, f'own-{org}-{k}')}"
    return indicator(f"10.{ord(org[-1]) % 250}.{k}.{m}", oid=oid, created=0, modified=m,
                     tlp=GREEN_OR_AMBER[m % 2], name=f"{org} object {k} v{m}")


def relay_version(k: int, m: int) -> dict[str, Any]:
    """Version ``m`` of the ``k``-th object of the public source: identical for every relay."""
    oid = f"indicator--{uuid.uuid5(NS, f'relay-{k}')}"
    return indicator(f"172.16.{k}.{m}", oid=oid, created=0, modified=m, created_by=SOURCE,
                     tlp=Tlp.GREEN, name=f"source object {k} v{m}")


def sco(n: int, tlp: Tlp) -> dict[str, Any]:
    return ipv4(f"192.0.2.{n}", tlp=tlp)


def envelope(rng: random.Random, org: str, reader_identity: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for _ in range(rng.randint(50, 500)):
        kind = rng.random()
        if kind < 0.35:
            tlp = rng.choice([None, Tlp.GREEN, Tlp.AMBER, Tlp.RED])
            out.append(indicator(f"198.18.{rng.randrange(250)}.{rng.randrange(250)}", tlp=tlp,
                                 recipients=[reader_identity] if tlp == Tlp.RED else None))
        elif kind < 0.55:
            out.append(sco(rng.randrange(40), rng.choice(GREEN_OR_AMBER)))
        elif kind < 0.8:
            out.append(own_version(org, rng.randrange(6), rng.randint(1, 40)))
        else:
            out.append(relay_version(rng.randrange(6), rng.randint(1, 30)))
    return out


# -- readers ---------------------------------------------------------------------------------
class Reader:
    """Keeps a collection in sync the whole run, as a TAXII consumer does: pages forward
    from its high-water mark (``added_after`` = the last page's X-TAXII-Date-Added-Last,
    or ``next`` within a run of pages), polls again when caught up, and ends with a pass
    started after the writers finished. Records every page."""

    def __init__(self, w, calls: Calls, name: str, member, path: str, *, versions: str | None,
                 by_next: bool, limit: int) -> None:
        self.w, self.calls, self.name, self.member, self.path = w, calls, name, member, path
        self.versions, self.by_next, self.limit = versions, by_next, limit
        #: (previous page's last date_added or None, status, first, last, more, items)
        self.pages: list[tuple[str | None, int, str | None, str | None, bool, list]] = []

    def run(self, done: threading.Event) -> None:
        mark: str | None = None  # X-TAXII-Date-Added-Last of the last non-empty page
        nxt: str | None = None
        with httpx.Client(base_url=self.w["url"], timeout=60) as client:
            for _ in range(100_000):
                final = done.is_set()
                q = f"?limit={self.limit}"
                if self.versions:
                    q += f"&match[version]={self.versions}"
                if nxt is not None:
                    q += f"&next={nxt}"
                elif mark is not None:
                    q += f"&added_after={mark}"
                resp = self.calls.request(client, self.name, "GET", self.path + q,
                                          headers=bearer(self.member))
                if resp.status_code != 200:  # recorded by ``calls``; give up after a while
                    self.pages.append((mark, resp.status_code, None, None, False, []))
                    nxt = None
                    if sum(p[1] != 200 for p in self.pages) > 50:
                        return
                    time.sleep(0.05)
                    continue
                body = resp.json()
                items = body.get("objects", [])
                first = resp.headers.get("X-TAXII-Date-Added-First")
                last = resp.headers.get("X-TAXII-Date-Added-Last")
                self.pages.append((mark, 200, first, last, body["more"], items))
                if items and last is not None:
                    mark = last
                nxt = body.get("next") if self.by_next and body["more"] else None
                if not body["more"]:
                    if final:
                        return
                    time.sleep(0.01)
        raise AssertionError(f"{self.name} never caught up")


def check_all_pages(reader: Reader, final: list[dict[str, Any]], manifest: bool) -> list:
    """Pages of ``match[version]=all``: each must be exactly the reader's final rows after
    the page's start, up to its X-TAXII-Date-Added-Last (nothing skipped, nothing
    repeated, headers matching the page)."""
    added = [r["added"] for r in final]
    problems = []
    for after, status, first, last, more, items in reader.pages:
        if status != 200:
            continue
        if not items:
            if first is not None or last is not None or more:
                problems.append(("empty page with headers or more", after, first, last, more))
            continue
        lo = 0 if after is None else bisect.bisect_right(added, parse_timestamp(after))
        hi = bisect.bisect_right(added, parse_timestamp(last)) if last else lo
        want = final[lo:hi]
        if manifest:
            got = [(m["id"], m["version"], m["date_added"]) for m in items]
            expect = [(r["id"], format_timestamp(r["version"]), format_timestamp(r["added"])) for r in want]
        else:
            got = [canon(o) for o in items]
            expect = [canon(r["obj"]) for r in want]
        if got != expect:
            missing = [x for x in expect if x not in got]
            extra = [x for x in got if x not in expect]
            problems.append(("page differs", after, last, len(got), len(expect),
                             str(missing[:2])[:300], str(extra[:2])[:300]))
        if want and first != format_timestamp(want[0]["added"]):
            problems.append(("X-TAXII-Date-Added-First", after, first, format_timestamp(want[0]["added"])))
        if more and len(items) != reader.limit:
            problems.append(("more with a short page", after, len(items), reader.limit))
    return problems


# -- the main run ----------------------------------------------------------------------------
def test_writers_and_pagers_at_once_lose_skip_and_repeat_nothing(world):
    w = world
    a, b, c, r, g = w["A"], w["B"], w["C"], w["R"], w["G"]
    calls = Calls()
    done = threading.Event()
    # (member, envelope, status code, body)
    posted: list[tuple[Any, list[dict[str, Any]], int, dict[str, Any] | None]] = []
    posted_lock = threading.Lock()

    def httpx_writer(member, org: str, seed: int, basic: bool):
        def run():
            rng = random.Random(seed)
            auth = (member.user, member.token) if basic else None
            headers = {"Accept": TAXII, "Content-Type": TAXII}
            if not basic:
                headers["Authorization"] = f"Bearer {member.token}"
            with httpx.Client(base_url=w["url"], timeout=120, auth=auth) as client:
                for _ in range(7):
                    env = envelope(rng, org, r.identity)
                    for _attempt in range(20):
                        resp = calls.request(client, org, "POST", w["objects"], headers=headers,
                                             content=json.dumps({"objects": env}))
                        body = resp.json() if resp.status_code == 202 else None
                        with posted_lock:
                            posted.append((member, env, resp.status_code, body))
                        if resp.status_code != 503:
                            break
                        time.sleep(0.2)
        return run

    def client_writer(member, org: str, seed: int):
        def run():
            rng = random.Random(seed)
            coll = Collection(f"{w['url']}{w['objects'][:-len('objects/')]}", user=member.user,
                              password=member.token)
            try:
                for _ in range(7):
                    env = envelope(rng, org, r.identity)
                    status = coll.add_objects({"objects": env}, wait_for_completion=False)
                    with posted_lock:
                        posted.append((member, env, 202, status._raw))
            finally:
                coll.close()
        return run

    def writers_then_done(funcs):
        def run():
            try:
                return run_threads(funcs)
            finally:
                done.set()
        return run

    def status_poller():
        seen = []
        with httpx.Client(base_url=w["url"], timeout=60) as client:
            while not done.is_set():
                with posted_lock:
                    recent = [(m, body) for m, _, s, body in posted[-4:] if s == 202]
                for member, body in recent:
                    other = b if member is not b else a
                    mine = calls.request(client, "poller", "GET", f"/taxii2/api/status/{body['id']}/",
                                         headers=bearer(member))
                    theirs = calls.request(client, "poller", "GET", f"/taxii2/api/status/{body['id']}/",
                                           ok=frozenset({404}), headers=bearer(other))
                    seen.append((body, mine.status_code, mine.json() if mine.status_code == 200 else None,
                                 theirs.status_code))
                time.sleep(0.02)
        return seen

    readers = [
        Reader(w, calls, "R objects all", r, w["objects"], versions="all", by_next=False, limit=173),
        Reader(w, calls, "G manifest all", g, w["manifest"], versions="all", by_next=True, limit=211),
        Reader(w, calls, "R manifest last", r, w["manifest"], versions=None, by_next=True, limit=157),
        Reader(w, calls, "G objects last", g, w["objects"], versions=None, by_next=False, limit=119),
    ]
    writers = writers_then_done([
        httpx_writer(a, "A", 1, basic=False), httpx_writer(a, "A", 2, basic=False),
        httpx_writer(b, "B", 3, basic=True), client_writer(c, "C", 4),
    ])
    _, polled, *_ = run_threads([writers, status_poller] + [lambda x=x: x.run(done) for x in readers])

    # 1. no server error, no stack trace; every POST acknowledged every object
    assert not calls.bad(), calls.bad()[:5]
    acked = [(m, env, body) for m, env, status, body in posted if status == 202]
    assert len(acked) == 4 * 7
    for member, env, body in acked:
        assert (body["status"], body["total_count"], body["failure_count"]) == ("complete", len(env), 0), \
            (member.org, body["failures"][:3])
        assert Counter(s["id"] for s in body["successes"]) == Counter(o["id"] for o in env)

    # 2. acknowledged data is stored exactly as posted, by its poster, and nothing else is
    rows = stored_rows(w["exchange"], w["cid"])
    by_key = {(x["id"], x["version"], x["producer"]): x for x in rows}
    sco_versions: dict[tuple[int, str, str], set[str]] = defaultdict(set)
    lost, changed = [], []
    acked_keys = set()
    for member, env, body in acked:
        by_id: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for o in env:
            by_id[o["id"]].append(o)
        for s in body["successes"]:
            key = (s["id"], parse_timestamp(s["version"]), member.principal.org_id)
            acked_keys.add(key)
            row = by_key.get(key)
            if row is None:
                lost.append((member.org, s))
            elif row["obj"] not in by_id[s["id"]]:
                changed.append((member.org, s))
            if s["id"].startswith("ipv4-addr--"):
                content = canon(row["obj"]) if row else "?"
                sco_versions[(member.principal.org_id, s["id"], content)].add(s["version"])
    assert not lost, lost[:5]
    assert not changed, changed[:5]
    phantom = [(x["id"], x["version"]) for x in rows if x["producer"] is not None
               and (x["id"], x["version"], x["producer"]) not in acked_keys]
    assert not phantom, phantom[:5]
    # one identical observable posted again by its holder (even by two of its threads at
    # once) is one version, named alike in every status
    assert all(len(v) == 1 for v in sco_versions.values()), \
        [k for k, v in sco_versions.items() if len(v) > 1][:3]
    added = [x["added"] for x in rows]
    assert len(set(added)) == len(added)

    # 3. every member reads, after quiescence, exactly what the sharing model says
    finals: dict[str, list[dict[str, Any]]] = {}
    with httpx.Client(base_url=w["url"], timeout=60) as client:
        for name in ("A", "B", "C", "R", "G"):
            member = w[name]
            want = model(rows, member, w["max_tlp"][member.org])
            finals[name] = want
            man, _ = read_all(client, member, w["manifest"], "&match[version]=all")
            objs, _ = read_all(client, member, w["objects"], "&match[version]=all")
            assert [(m["id"], m["version"], m["date_added"]) for m in man] == [
                (x["id"], format_timestamp(x["version"]), format_timestamp(x["added"])) for x in want], name
            assert [canon(o) for o in objs] == [canon(x["obj"]) for x in want], name
            last, _ = read_all(client, member, w["objects"], "")
            newest = latest_of(want)
            assert len(last) == len({o["id"] for o in last}), f"{name} reads two newest versions of an id"
            assert sorted(canon(o) for o in last) == sorted(canon(x["obj"]) for x in newest.values()), name

        # versions posted concurrently by their producer (A's two threads) and by relays
        acked_versions: dict[str, set[int]] = defaultdict(set)
        for _, _, body in acked:
            for s in body["successes"]:
                if not s["id"].startswith("ipv4-addr--"):
                    acked_versions[s["id"]].add(parse_timestamp(s["version"]))
        ids = {own_version(org, k, 1)["id"] for org in "ABC" for k in range(6)} | {
            relay_version(k, 1)["id"] for k in range(6)}
        for oid in sorted(ids & set(acked_versions)):
            mods = sorted(acked_versions[oid])
            relay = oid in {relay_version(k, 1)["id"] for k in range(6)}
            for name in ("R", "G"):
                mine = [v for v in mods if relay or name == "R" or (v // 1_000_000) % 2 == 0]
                if not mine:
                    continue
                resp = client.get(f"{w['objects']}{oid}/versions/", headers=bearer(w[name]))
                assert resp.status_code == 200, resp.text[:200]
                assert resp.json()["versions"] == [format_timestamp(v) for v in mine], (name, oid)
                dates = [x["added"] for x in finals[name] if x["id"] == oid]
                assert resp.headers["X-TAXII-Date-Added-First"] == format_timestamp(min(dates))
                assert resp.headers["X-TAXII-Date-Added-Last"] == format_timestamp(max(dates))
                one = client.get(f"{w['objects']}{oid}/", headers=bearer(w[name]))
                assert [o["modified"] for o in one.json()["objects"]] == [format_timestamp(mine[-1])]

    # 4. what the readers saw while the writers wrote
    problems = check_all_pages(readers[0], finals["R"], manifest=False)
    problems += check_all_pages(readers[1], finals["G"], manifest=True)
    for reader, final in ((readers[2], finals["R"]), (readers[3], finals["G"])):
        # match[version]=last: never two versions of an id in one page; every entry was
        # stored; strictly forward; and the sync ends holding every final newest version
        by_added = {x["added"]: x for x in final}
        seen_added: list[int] = []
        for after, status, first, last, _, items in reader.pages:
            if status != 200 or not items:
                continue
            ids_in_page = [o["id"] for o in items]
            if len(ids_in_page) != len(set(ids_in_page)):
                problems.append((reader.name, "two versions of one id in a page", after))
            if "date_added" in items[0]:
                stamps = [parse_timestamp(m["date_added"]) for m in items]
                if [by_added.get(d, {}).get("id") for d in stamps] != ids_in_page:
                    problems.append((reader.name, "entry never stored", after))
                if (format_timestamp(stamps[0]), format_timestamp(stamps[-1])) != (first, last):
                    problems.append((reader.name, "date headers", first, last))
            else:
                stamps = [parse_timestamp(first), parse_timestamp(last)]
                ends = (by_added.get(stamps[0], {}).get("obj"), by_added.get(stamps[1], {}).get("obj"))
                if ends != (items[0], items[-1]):
                    problems.append((reader.name, "date headers do not name the page's ends", after))
            if after is not None and stamps[0] <= parse_timestamp(after):
                problems.append((reader.name, "page starts at or before its added_after", after))
            seen_added += stamps if "date_added" in items[0] else []
        if seen_added:
            assert seen_added == sorted(set(seen_added)), f"{reader.name}: an entry repeated"
            newest = {x["added"] for x in latest_of(final).values()}
            missed = newest - set(seen_added)
            if missed:
                problems.append((reader.name, "newest versions never paged", len(missed)))
    assert not problems, problems[:6]

    # 5. status resources: the poster's own, equal to the POST's answer; 404 to others
    unknown = httpx.get(f"{w['url']}/taxii2/api/status/{uuid.uuid4()}/", headers=bearer(a), timeout=30)
    assert unknown.status_code == 404
    for body, mine, got, theirs in polled:
        assert (mine, theirs) == (200, 404)
        assert got == body
    with httpx.Client(base_url=w["url"], timeout=60) as client:
        for member, _, body in acked:
            got = client.get(f"/taxii2/api/status/{body['id']}/", headers=bearer(member))
            assert got.status_code == 200 and got.json() == json.loads(json.dumps(body))
            for other in (r, g, a if member is not a else b):
                refused = client.get(f"/taxii2/api/status/{body['id']}/", headers=bearer(other))
                assert refused.status_code == 404 and refused.json() == unknown.json()


# -- who holds an object: first postings racing ----------------------------------------------
def post(client: httpx.Client, w, member, objects) -> httpx.Response:
    return client.post(w["objects"], content=json.dumps({"objects": objects}),
                       headers={**bearer(member), "Content-Type": TAXII})


def test_two_members_racing_to_post_one_object_leave_it_one_owner(world):
    """A and B post the same new object (no created_by_ref) at once, each with a next
    version of its own. Whoever stored it first holds it: the other's identical copy is
    accepted, its next version refused (docs/sharing-model.md, "Who may post an id"), so
    every reader ends with one newest version, the first holder's."""
    w = world
    a, b, r = w["A"], w["B"], w["R"]
    rounds = []
    with httpx.Client(base_url=w["url"], timeout=60) as reader_client:
        for n in range(12):
            base = indicator(created=0, tlp=Tlp.GREEN, name=f"race {n}")
            v2 = {m.org: new_version(base, 5, name=f"{m.org}'s v2 of {n}") for m in (a, b)}

            def send(member, base=base, v2=v2):
                with httpx.Client(base_url=w["url"], timeout=60) as client:
                    return post(client, w, member, [base, v2[member.org]])

            ra, rb = run_threads([lambda: send(a), lambda: send(b)])  # noqa: B023 (joined here)
            assert (ra.status_code, rb.status_code) == (202, 202), (ra.text[:300], rb.text[:300])
            rounds.append((base, v2, ra.json(), rb.json()))
            one = reader_client.get(f"{w['objects']}{base['id']}/", headers=bearer(r))
            assert len(one.json()["objects"]) == 1
    rows = stored_rows(w["exchange"], w["cid"])
    problems = []
    with httpx.Client(base_url=w["url"], timeout=60) as client:
        for base, v2, ja, jb in rounds:
            v1 = parse_timestamp(base["modified"])
            copies = [x for x in rows if x["id"] == base["id"] and x["version"] == v1]
            holders = [x["producer"] for x in copies]
            won = {m.org: j["failure_count"] == 0 for m, j in ((a, ja), (b, jb))}
            assert all(j["success_count"] >= 1 for j in (ja, jb))  # the copy of v1 is always accepted
            assert sorted(holders) == sorted([a.principal.org_id, b.principal.org_id]), base["id"]
            first = a if holders[0] == a.principal.org_id else b
            if won != {first.org: True, (b if first is a else a).org: False}:
                problems.append((base["id"], "first holder", first.org, won))
            winner = v2[first.org]
            for member in (a, b, r):
                last = client.get(f"{w['objects']}{base['id']}/", headers=bearer(member)).json()["objects"]
                if last != [winner]:
                    problems.append((base["id"], member.org, [o["name"] for o in last]))
    assert not problems, problems[:5]


def test_two_members_racing_with_different_content_of_one_version(world):
    """A and B post the same id and ``modified`` with different content at once (no
    created_by_ref): whichever is stored first makes the other's a version of an object
    another organisation produced, refused; readers see one content only."""
    w = world
    a, b, r, g = w["A"], w["B"], w["R"], w["G"]
    problems = []
    with httpx.Client(base_url=w["url"], timeout=60) as client:
        for n in range(12):
            base = indicator(created=0, tlp=Tlp.GREEN)
            mine = {m.org: dict(base, name=f"{m.org}'s account {n}") for m in (a, b)}

            def send(member, mine=mine):
                with httpx.Client(base_url=w["url"], timeout=60) as c:
                    return post(c, w, member, [mine[member.org]])

            ra, rb = run_threads([lambda: send(a), lambda: send(b)])  # noqa: B023 (joined here)
            counts = (ra.json()["success_count"], rb.json()["success_count"])
            if sorted(counts) != [0, 1]:
                problems.append((n, "both or neither accepted", counts))
                continue
            winner = mine[a.org] if counts[0] else mine[b.org]
            for member in (a, b, r, g):
                body = client.get(f"{w['objects']}?match[id]={base['id']}&match[version]=all",
                                  headers=bearer(member)).json()
                if body.get("objects") != [winner]:
                    problems.append((n, member.org, [o["name"] for o in body.get("objects", [])]))
    assert not problems, problems[:5]


def test_new_version_racing_its_own_revocation(world):
    """A's two clients post, at once, a revoking version 5 and a version 6 of A's object.
    Nothing follows a revoked version: version 6 is accepted only if it was stored
    before the revocation, and every reader's newest is the newest stored."""
    w = world
    a, r, g = w["A"], w["R"], w["G"]
    problems = []
    with httpx.Client(base_url=w["url"], timeout=60) as client:
        for n in range(12):
            base = indicator(created=0, tlp=Tlp.GREEN, name=f"revocable {n}")
            assert post(client, w, a, [base]).json()["success_count"] == 1
            revoke = new_version(base, 5, revoked=True)
            later = new_version(base, 6, name=f"still good {n}")

            def send(obj):
                with httpx.Client(base_url=w["url"], timeout=60) as c:
                    return post(c, w, a, [obj])

            rv, rl = run_threads([lambda: send(revoke), lambda: send(later)])  # noqa: B023
            assert rv.json()["success_count"] == 1, rv.text[:300]
            rows = {x["version"]: x for x in stored_rows(w["exchange"], w["cid"]) if x["id"] == base["id"]}
            v5, v6 = parse_timestamp(revoke["modified"]), parse_timestamp(later["modified"])
            if rl.json()["success_count"] == 1:
                if rows[v6]["added"] > rows[v5]["added"]:
                    problems.append((n, "a version was accepted after the revocation"))
                newest = later
            else:
                if v6 in rows or "revoked" not in rl.json()["failures"][0]["message"]:
                    problems.append((n, "refused for another reason", rl.text[:200]))
                newest = revoke
            for member in (a, r, g):
                last = client.get(f"{w['objects']}{base['id']}/", headers=bearer(member)).json()["objects"]
                if last != [newest]:
                    problems.append((n, member.org, [o["modified"] for o in last]))
    assert not problems, problems[:5]


def test_taxii2_client_pages_by_next_while_members_write(world):
    """The real taxii2-client's ``as_pages`` (``next`` tokens) run again and again by a
    reader while two members post: each run must be exactly the reader's final
    manifest from its start to the last entry it received."""
    w = world
    a, b, g = w["A"], w["B"], w["G"]
    done = threading.Event()
    runs: list[tuple[str | None, list[dict[str, Any]]]] = []

    def writer(member, org, seed):
        def run():
            rng = random.Random(seed)
            codes = []
            with httpx.Client(base_url=w["url"], timeout=120) as client:
                for _ in range(6):
                    resp = post(client, w, member, envelope(rng, org, w["R"].identity))
                    codes.append((resp.status_code, resp.json().get("failure_count")))
            return codes
        return run

    def writers():
        try:
            return run_threads([writer(a, "A", 11), writer(b, "B", 12)])
        finally:
            done.set()

    def reader():
        coll = Collection(f"{w['url']}{w['manifest'][:-len('manifest/')]}", user=g.user, password=g.token)
        mark = None
        try:
            while True:
                final = done.is_set()
                entries: list[dict[str, Any]] = []
                kwargs = {"version": "all"} | ({"added_after": mark} if mark else {})
                for page in as_pages(coll.get_manifest, per_request=97, **kwargs):
                    entries += page.get("objects", [])
                runs.append((mark, entries))
                if entries:
                    mark = entries[-1]["date_added"]
                if final:
                    return
        finally:
            coll.close()

    codes, _ = run_threads([writers, reader])
    assert all(c == (202, 0) for batch in codes for c in batch), codes
    final = model(stored_rows(w["exchange"], w["cid"]), g, Tlp.GREEN)
    problems = []
    for mark, entries in runs:
        start = parse_timestamp(mark) if mark else -1
        end = parse_timestamp(entries[-1]["date_added"]) if entries else start
        want = [(x["id"], format_timestamp(x["version"]), format_timestamp(x["added"]))
                for x in final if start < x["added"] <= end]
        got = [(m["id"], m["version"], m["date_added"]) for m in entries]
        if got != want:
            problems.append((mark, len(got), len(want)))
    assert runs and not problems, problems[:5]
    everything = [m for _, entries in runs for m in entries]
    assert [(m["id"], m["date_added"]) for m in everything] == [
        (x["id"], format_timestamp(x["added"])) for x in final]


# -- a consumer that keeps a copy: objects by added_after, and the deletions feed -------------
class Consumer:
    """A member that copies the collection (a sensor's cache, a peer exchange), as
    docs/api.md tells it to: every version by ``added_after`` (the last page's
    X-TAXII-Date-Added-Last), and drops again what ``/deletions`` lists. Its copy is
    keyed by (id, version)."""

    def __init__(self, w, calls: Calls, member) -> None:
        self.w, self.calls, self.member = w, calls, member
        self.lock = threading.Lock()
        self.held: dict[tuple[str, str], dict[str, Any]] = {}
        self.mark: str | None = None

    def sync(self, client: httpx.Client) -> None:
        with self.lock:
            while True:
                q = "?limit=150&match[version]=all" + (f"&added_after={self.mark}" if self.mark else "")
                resp = self.calls.request(client, self.member.org, "GET", self.w["objects"] + q,
                                          headers=bearer(self.member))
                if resp.status_code != 200:
                    return
                body = resp.json()
                for o in body.get("objects", []):
                    self.held[o["id"], o["modified"]] = o
                if body.get("objects"):
                    self.mark = resp.headers["X-TAXII-Date-Added-Last"]
                if not body["more"]:
                    break
            nxt = None  # the feed gives no position past its last page: read it all again
            while True:
                q = "?limit=100" + (f"&next={nxt}" if nxt else "")
                resp = self.calls.request(client, self.member.org, "GET",
                                          f"/api/collections/{self.w['cid']}/deletions{q}",
                                          headers=bearer(self.member))
                if resp.status_code != 200:
                    return
                body = resp.json()
                for t in body["deletions"]:
                    self.held.pop((t["id"], t["version"]), None)
                if not body["more"]:
                    return
                nxt = body["next"]

    def run(self, done: threading.Event) -> None:
        with httpx.Client(base_url=self.w["url"], timeout=60) as client:
            while True:
                final = done.is_set()
                self.sync(client)
                if final:
                    return
                time.sleep(0.01)


def test_a_consumer_of_objects_and_deletions_ends_holding_what_the_server_serves(world):
    """A relays the versions of a public source's objects (GREEN); B relays the same
    versions under AMBER (another copy of each version) and adds new ones; C posts its
    own objects; then A deletes its relayed objects while B and C go on posting. R
    (AMBER) and G (GREEN), who never write, keep a copy the whole time. Nothing is
    deleted behind a reader's back and nothing new is hidden, so once the writers are
    done each copy must be exactly what the server serves its holder."""
    w = world
    a, b, c = w["A"], w["B"], w["C"]
    calls = Calls()
    consumers = {name: Consumer(w, calls, w[name]) for name in ("R", "G")}
    amber_marking = indicator(tlp=Tlp.AMBER)["object_marking_refs"]
    green = [relay_version(10 + k, m) for k in range(30) for m in (1, 2)]
    # B's copies of every version 1, and a version 3 of every other object, under AMBER
    amber = [dict(relay_version(10 + k, m), object_marking_refs=amber_marking)
             for k in range(30) for m in ((1, 3) if k % 2 == 0 else (1,))]
    newer = [dict(relay_version(10 + k, 4), object_marking_refs=amber_marking) for k in range(0, 30, 5)]
    done = threading.Event()

    def poster(member, objects_of):
        def run():
            with httpx.Client(base_url=w["url"], timeout=120) as client:
                for objects in objects_of():
                    resp = calls.request(client, member.org, "POST", w["objects"], content=json.dumps(
                        {"objects": objects}), headers={**bearer(member), "Content-Type": TAXII})
                    assert resp.status_code == 202 and resp.json()["failure_count"] == 0, resp.text[:300]
        return run

    def fresh(n: int):
        rng = random.Random(n)
        return lambda: [[indicator(f"203.0.113.{rng.randrange(250)}", tlp=rng.choice(GREEN_OR_AMBER))
                         for _ in range(rng.randint(50, 200))] for _ in range(3)]

    def deleter():
        with httpx.Client(base_url=w["url"], timeout=120) as client:
            for oid in sorted({o["id"] for o in green}):
                calls.request(client, a.org, "DELETE", f"{w['objects']}{oid}/", headers=bearer(a))

    def orchestrate():
        try:
            with httpx.Client(base_url=w["url"], timeout=120) as client:
                poster(a, lambda: [green])()
                run_threads([poster(b, lambda: [amber[:30], amber[30:]]), poster(c, fresh(1))])
                poster(c, fresh(2))()  # the newest rows: every copy above is below the marks now
                for consumer in consumers.values():
                    consumer.sync(client)
                run_threads([deleter, poster(c, fresh(3)), poster(b, lambda: [newer])])
        finally:
            done.set()

    run_threads([orchestrate] + [lambda x=x: x.run(done) for x in consumers.values()])
    assert not calls.bad(), calls.bad()[:5]
    with httpx.Client(base_url=w["url"], timeout=60) as client:
        served = {}
        for name in consumers:
            objs, _ = read_all(client, w[name], w["objects"], "&match[version]=all")
            served[name] = {(o["id"], o["modified"]): o for o in objs}
    relayed = {o["id"] for o in green}

    def tlp(obj):
        return None if obj is None else effective_tlp(obj.get("object_marking_refs", ()), Tlp.GREEN).name

    def differences(name):
        """(id, version, the TLP of the copy held, of the copy served) where they differ."""
        held, now = consumers[name].held, served[name]
        return sorted((k[0], k[1], tlp(held.get(k)), tlp(now.get(k)))
                      for k in set(held) | set(now) if held.get(k) != now.get(k))

    assert not differences("G"), differences("G")[:5]
    assert {k[0] for k in served["R"]} & relayed  # B's copies are still served to R
    # Regression: when the copy of a version a reader got (the first posted) was deleted, the
    # reader was served another member's copy that kept its old date_added, below the reader's
    # added_after mark, and /deletions listed nothing ("the version is still there"): the reader
    # kept the deleted copy. The copy left is now added anew when the other is deleted.
    assert not differences("R"), (len(differences("R")), differences("R")[:3])


# -- PostgreSQL refusing connections while members write --------------------------------------
@pytest.fixture
def capped_postgres(request):
    """An exchange on PostgreSQL as a role allowed few connections (a managed database
    plan, or other processes holding the server's slots): (exchange, admin engine, role)."""
    server = request.getfixturevalue("postgres_server")
    if server is None:
        pytest.skip("PostgreSQL not available on this machine")
    tag = uuid.uuid4().hex[:10]
    name, role = f"cw_capped_{tag}", f"cw_role_{tag}"
    admin = make_engine(server.url())
    with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name} TEMPLATE cw_template")
        conn.exec_driver_sql(f"CREATE ROLE {role} LOGIN")
    owner = make_engine(server.url(name))
    with owner.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql(f"GRANT USAGE ON SCHEMA public TO {role}")
        conn.exec_driver_sql(f"GRANT ALL ON ALL TABLES IN SCHEMA public TO {role}")
        conn.exec_driver_sql(f"GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO {role}")
    owner.dispose()
    url = server.url(name).replace("://postgres@", f"://{role}@")
    ex = Exchange(load_settings(environ={}, database_url=url), migrate=False)
    yield ex, admin, role
    ex.close()
    with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql(f"ALTER ROLE {role} CONNECTION LIMIT -1")
    admin.dispose()


def test_postgresql_out_of_connections_is_a_503_not_a_500(capped_postgres):
    """docs/api.md: when the database is momentarily too busy the answer is a 503 with
    Retry-After, never a 500. Members post and read at once while PostgreSQL lets the
    exchange's role hold only 3 connections (fewer than its pool of 40)."""
    ex, admin, role = capped_postgres
    members = [make_member(ex, f"Capped {n}") for n in range(4)]
    cid = make_community(ex, "capped", Tlp.GREEN, {m.org: (True, Tlp.AMBER) for m in members})
    path = f"/taxii2/api/collections/{cid}/objects/"
    answers: list[tuple[str, int, str | None, str]] = []
    lock = threading.Lock()
    with LiveServer(ex) as server:
        ex.engine.dispose()  # the connections setting up opened: the cap applies to new ones
        with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql(f"ALTER ROLE {role} CONNECTION LIMIT 3")

        def client(member, n):
            def run():
                rng = random.Random(n)
                with httpx.Client(base_url=server.url, timeout=120) as c:
                    for _ in range(3):
                        objs = [indicator(f"192.0.2.{rng.randrange(250)}") for _ in range(200)]
                        for method, kw in (
                                ("POST", {"content": json.dumps({"objects": objs}),
                                          "headers": {**bearer(member), "Content-Type": TAXII}}),
                                ("GET", {"params": {"match[version]": "all", "limit": "500"},
                                         "headers": bearer(member)})):
                            try:
                                resp = c.request(method, path, **kw)
                                answer = (method, resp.status_code, resp.headers.get("retry-after"),
                                          resp.text[:200])
                            except httpx.TransportError as exc:  # the server dropped the connection
                                answer = (method, 599, None, repr(exc))
                            with lock:
                                answers.append(answer)
            return run

        run_threads([client(members[n % 4], n) for n in range(8)])
    assert len(answers) == 8 * 3 * 2
    errors = [a for a in answers if a[1] not in (200, 202, 503) or (a[1] == 503 and a[2] is None)]
    # Regression: PostgreSQL refusing a connection ("too many connections for role", SQLSTATE
    # 53300) was not recognised as a busy database: members got 500 Server errors, and their
    # connection dropped (Starlette raised the error again after its answer).
    assert not errors, (len(errors), len(answers), errors[:2])
