"""Adversarial concurrency tests on both backends: what is acknowledged is kept, nothing
answers 500, readers see consistent data while writers work.

Every test is bounded (threads joined with a timeout and checked dead) and small.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import httpx
import orjson
import pytest

from commonwatch.domain.stix import format_timestamp
from commonwatch.formats.sources import Input
from commonwatch.services.detect import REFRESH_OVERLAP_US
from commonwatch.services.exchange import Exchange
from commonwatch.services.export_filters import build_filter
from commonwatch.services.importer import ImportService
from commonwatch.services.query import ObjectFilter, VersionSelector

from conftest import count_rows
from support.concurrency import run_threads as _run_threads
from support.factories import indicator, ipv4, new_version

TAXII = "application/taxii+json;version=2.1"
ALL = VersionSelector(all=True, last=False)
JOIN_S = 30


# -- helpers ---------------------------------------------------------------------------------
def run_threads(funcs, *, barrier: bool = True):
    """:func:`support.concurrency.run_threads` with this file's time limit."""
    return _run_threads(funcs, barrier=barrier, join_s=JOIN_S)


def no_exceptions(results):
    bad = [r for r in results if isinstance(r, BaseException)]
    assert not bad, bad
    return results


def bearer(member) -> dict[str, str]:
    return {"Authorization": f"Bearer {member.token}", "Accept": TAXII}


def http_post(url, path, member, objects):
    with httpx.Client(base_url=url, timeout=30) as c:
        return c.post(path, json={"objects": objects},
                      headers={**bearer(member), "Content-Type": TAXII})


def all_rows(exchange, member, cid):
    return exchange.query.manifest(member.principal, cid,
                                   ObjectFilter(versions=ALL, limit=1_000_000)).rows


def assert_date_added_strict(rows):
    added = [r.date_added_us for r in rows]
    assert added == sorted(added), "manifest not in date_added order"
    assert len(set(added)) == len(added), "duplicate date_added"


@pytest.fixture
def web(fed, live_server):
    a, b, cid = fed
    return a, b, cid, live_server.url, f"/taxii2/api/collections/{cid}/objects/"


# -- overlapping TAXII posts -----------------------------------------------------------------
def test_overlapping_envelopes_over_http_are_all_acknowledged_and_readable(exchange, web):
    a, _, cid, url, path = web
    shared = [indicator() for _ in range(6)]
    scos = [ipv4(f"203.0.113.{i}") for i in range(6)]

    def sender(n):
        def send():
            out = []
            for k in range(4):
                env = shared[k:] + scos[: 3 + k] + [indicator(f"192.0.2.{n * 10 + k}")]
                r = http_post(url, path, a, env)
                out.append((r.status_code, r.text, len(env)))
            return out
        return send

    results = no_exceptions(run_threads([sender(n) for n in range(6)]))
    acknowledged = []
    for batch in results:
        for status, text, n in batch:
            assert status == 202, text[:300]
            body = json.loads(text)
            assert body["success_count"] == n and body["failure_count"] == 0, text[:300]
            acknowledged += [(s["id"], s["version"]) for s in body["successes"]]
    rows = all_rows(exchange, a, cid)
    assert_date_added_strict(rows)
    stored = {(r.stix_id, format_timestamp(r.version_us)) for r in rows}
    missing = [x for x in acknowledged if x not in stored]
    assert not missing, missing[:5]
    # identical SCO re-posts by the same org store nothing new: one version per value
    for sco in scos:
        assert sum(r.stix_id == sco["id"] for r in rows) == 1, sco["value"]
    for obj in shared:
        assert sum(r.stix_id == obj["id"] for r in rows) == 1


def test_same_object_posted_by_two_organisations_at_once(exchange, web):
    a, b, cid, url, path = web
    for round_ in range(8):
        obj = indicator()  # the same object, as two members relaying one source post it
        sco = ipv4(f"198.18.0.{round_}")
        # the threads are joined within the iteration: the loop variables are stable
        ra, rb = no_exceptions(run_threads([lambda: http_post(url, path, a, [obj, sco]),  # noqa: B023
                                            lambda: http_post(url, path, b, [obj, sco])]))  # noqa: B023
        assert ra.status_code == rb.status_code == 202, (ra.text[:300], rb.text[:300])
        for j in (ra.json(), rb.json()):  # each holds its own copy: both succeed
            assert j["failure_count"] == 0, j
            assert {s["id"] for s in j["successes"]} == {obj["id"], sco["id"]}
        for member in (a, b):  # one version of the object for each reader, two of the SCO
            assert len(exchange.query.versions(member.principal, cid, obj["id"],
                                               ObjectFilter(versions=ALL)).rows) == 1
            assert len(exchange.query.versions(member.principal, cid, sco["id"],
                                               ObjectFilter(versions=ALL)).rows) == 2


# -- version / delete races -----------------------------------------------------------------
def test_new_version_racing_a_delete_of_the_latest_leaves_exactly_one_latest(exchange, fed):
    a, _, cid = fed
    problems = []
    for round_ in range(25):
        base = indicator(created=0)
        v2 = new_version(base, 2)
        assert not exchange.ingest.add_objects(a.principal, cid, [base, v2]).failures
        v3 = new_version(base, 3)
        only_v2 = ObjectFilter(ids=(base["id"],), versions=VersionSelector(
            last=False, timestamps=(1_767_225_602_000_000,)), limit=10)
        results = run_threads([
            lambda: exchange.ingest.add_objects(a.principal, cid, [v3]),  # noqa: B023 (joined below)
            lambda: exchange.ingest.delete_object(a.principal, cid, base["id"], only_v2),  # noqa: B023
        ])
        no_exceptions(results)
        assert not results[0].failures, results[0].failures
        latest = count_rows(exchange, f"stix_objects WHERE stix_id = '{base['id']}' AND is_latest = true")
        if latest != 1:
            problems.append((round_, latest))
    assert not problems, problems


def test_concurrent_deletes_and_reposts_never_500(exchange, web):
    a, _, cid, url, path = web
    objs = [indicator() for _ in range(10)]
    assert http_post(url, path, a, objs).status_code == 202

    def deleter():
        out = []
        with httpx.Client(base_url=url, timeout=30) as c:
            for _ in range(3):
                for o in objs:
                    out.append(c.delete(f"{path}{o['id']}/", headers=bearer(a)).status_code)
        return out

    def reposter():
        return [http_post(url, path, a, objs).status_code for _ in range(6)]

    results = no_exceptions(run_threads([deleter, deleter, reposter, reposter]))
    assert all(s in (200, 404) for s in results[0] + results[1]), results[:2]
    assert all(s == 202 for s in results[2] + results[3]), results[2:]
    for o in objs:  # at most one latest, and versions/listing agree
        assert count_rows(exchange, f"stix_objects WHERE stix_id = '{o['id']}' AND is_latest = true") <= 1
    assert_date_added_strict(all_rows(exchange, a, cid))


# -- status polling while ingesting ---------------------------------------------------------
def test_statuses_polled_while_ingesting(exchange, web):
    a, b, cid, url, path = web
    status_ids: list[str] = []
    done = threading.Event()

    def writer():
        try:
            for _ in range(15):
                r = http_post(url, path, a, [indicator() for _ in range(30)])
                assert r.status_code == 202, r.text[:300]
                status_ids.append(r.json()["id"])
        finally:
            done.set()

    def poller(member, expect):
        seen = []
        with httpx.Client(base_url=url, timeout=30) as c:
            while not done.is_set() or not seen:
                for sid in list(status_ids)[-3:] + [str(uuid.uuid4())]:
                    r = c.get(f"/taxii2/api/status/{sid}/", headers=bearer(member))
                    seen.append((r.status_code, sid in status_ids))
                time.sleep(0.005)
        return seen

    results = no_exceptions(run_threads([writer, lambda: poller(a, 200), lambda: poller(b, 404)]))
    for code, known in results[1]:
        assert code == (200 if known else 404)
    assert all(code == 404 for code, _ in results[2])  # another org's status is never shown
    for sid in status_ids:
        body = exchange.ingest.status(a.principal, sid).to_json()
        assert body["success_count"] == 30 and body["status"] == "complete"


# -- two exchanges (engines) / two processes on one database -------------------------------
def test_two_exchanges_on_one_database_write_at_once(exchange, fed, settings):
    a, b, cid = fed
    other = Exchange(settings, migrate=False)
    try:
        def writer(ex, member):
            def run():
                acked = []
                for _ in range(8):
                    objs = [indicator() for _ in range(25)] + [ipv4("192.0.2.77")]
                    rep = ex.ingest.add_objects(member.principal, cid, objs)
                    assert not rep.failures, rep.failures
                    acked += [s.id for s in rep.successes]
                return acked
            return run
        results = no_exceptions(run_threads([writer(exchange, a), writer(other, b),
                                             writer(exchange, b), writer(other, a)]))
    finally:
        other.close()
    rows = all_rows(exchange, a, cid)
    assert_date_added_strict(rows)
    stored = {r.stix_id for r in rows}
    assert all(i in stored for acked in results for i in acked)
    assert sum(r.stix_id.startswith("indicator--") for r in rows) == 4 * 8 * 25


_CHILD = r"""
import json, sys
from commonwatch.config import load_settings
from commonwatch.services.exchange import Exchange
sys.path.insert(0, sys.argv[4])
from support.factories import indicator
url, user, cid = sys.argv[1:4]
ex = Exchange(load_settings(environ={}, database_url=url), migrate=False)
p = ex.auth.principal_for_user(user)
acked = []
for _ in range(10):
    rep = ex.ingest.add_objects(p, cid, [indicator() for _ in range(40)])
    assert not rep.failures, rep.failures
    acked += [s.id for s in rep.successes]
ex.close()
print(json.dumps(acked))
"""


def test_another_process_writing_the_same_database_never_gives_500(exchange, web, database_url):
    a, b, cid, url, path = web
    tests_dir = str(Path(__file__).resolve().parents[1])
    child = subprocess.Popen([sys.executable, "-c", _CHILD, database_url, b.user, cid, tests_dir],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        codes, acked = [], []
        deadline = time.monotonic() + 20
        while child.poll() is None and time.monotonic() < deadline:
            r = http_post(url, path, a, [indicator() for _ in range(20)])
            codes.append(r.status_code)
            if r.status_code == 202:
                acked += [s["id"] for s in r.json()["successes"]]
        out, err = child.communicate(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == 0, err[-2000:]
    assert codes and all(c == 202 for c in codes), codes
    rows = all_rows(exchange, a, cid)
    assert_date_added_strict(rows)
    stored = {r.stix_id for r in rows}
    assert all(i in stored for i in acked + json.loads(out))


# -- import racing TAXII --------------------------------------------------------------------
def test_import_while_taxii_posts_and_deletes_the_same_community(exchange, web, tmp_path):
    a, b, cid, url, path = web
    bundle_objs = [indicator(f"10.1.{i // 250}.{i % 250}", created_by=a.identity) for i in range(1200)]
    bundle = tmp_path / "bundle.json"
    bundle.write_bytes(orjson.dumps({"type": "bundle", "id": f"bundle--{uuid.uuid4()}",
                                     "objects": bundle_objs}))
    service = ImportService(exchange.ingest, exchange.query, exchange.warninglists, batch_size=100)
    target = service.community(a.principal, "c")
    ctx = service.context(a.principal, target)

    def importer():
        inp = Input(bundle.name, "stream", bundle, lambda: bundle.open("rb"))
        return service.run(a.principal, target, [inp], "stix", ctx, max_bytes=10**8)

    kept, gone = [], []

    def taxii(member):
        def run():
            codes = []
            with httpx.Client(base_url=url, timeout=30) as c:
                for _ in range(15):
                    objs = [indicator() for _ in range(5)]
                    r = c.post(path, json={"objects": objs},
                               headers={**bearer(member), "Content-Type": TAXII})
                    codes.append(r.status_code)
                    d = c.delete(f"{path}{objs[0]['id']}/", headers=bearer(member))
                    codes.append(d.status_code)
                    gone.append(objs[0]["id"])
                    kept.extend(o["id"] for o in objs[1:])
            return codes
        return run

    summary, codes_a, codes_b = no_exceptions(run_threads([importer, taxii(a), taxii(b)]))
    assert summary.ok, summary.rejections[:3]
    assert summary.stored == len(bundle_objs)
    assert set(codes_a + codes_b) <= {200, 202}, codes_a + codes_b
    stored = {r.stix_id for r in all_rows(exchange, a, cid)}
    assert {o["id"] for o in bundle_objs} <= stored
    assert set(kept) <= stored
    assert not set(gone) & stored


# -- exports / feeds while writing ----------------------------------------------------------
def test_export_streaming_while_objects_are_updated_sends_each_id_once(exchange, fed):
    a, _, cid = fed
    objs = [indicator(f"81.9.{i // 250}.{i % 250}") for i in range(2100)]  # > one 2000-row batch
    assert not exchange.ingest.add_objects(a.principal, cid, objs).failures
    export = exchange.export.export(a.principal, "stix", build_filter(communities=["c"], tlp="red"))
    parts = []
    for chunk in export.chunks:
        parts.append(chunk)
        if export.stats.objects_read:
            break
    assert 0 < export.stats.objects_read < len(objs)
    # a writer updates objects the stream has already passed, and deletes one it has not
    updates = [new_version(o, 5, name="updated") for o in objs[:5]]
    assert not exchange.ingest.add_objects(a.principal, cid, updates).failures
    exchange.ingest.delete_object(a.principal, cid, objs[-1]["id"],
                                  ObjectFilter(ids=(objs[-1]["id"],), versions=ALL, limit=10))
    parts.extend(export.chunks)
    bundle = orjson.loads("".join(parts))
    ids = [o["id"] for o in bundle["objects"] if o["type"] == "indicator"]
    assert len(ids) == len(set(ids)), f"{len(ids) - len(set(ids))} ids sent twice"


def test_concurrent_first_fetches_of_a_feed_all_complete(exchange, web):
    a, _, cid, url, path = web
    objs = [indicator(f"81.7.0.{i}") for i in range(50)]
    assert http_post(url, path, a, objs).status_code == 202
    broken = []
    for n in range(12):  # racy by nature: several rounds so one run reliably shows it
        name = f"feed-{n}"
        exchange.feeds.create_feed(a.principal, name, "plain-ipv4", build_filter(tlp="red"))

        def fetch():
            with httpx.Client(base_url=url, timeout=30) as c:
                try:
                    r = c.get(f"/feeds/{name}",  # noqa: B023 (joined in the iteration)
                              headers={"Authorization": f"Bearer {a.token}"})
                except httpx.HTTPError as exc:  # a stream cut short
                    return f"transport error: {exc!r}"
                return r.status_code, r.text
        for r in no_exceptions(run_threads([fetch] * 6)):
            if isinstance(r, str) or r[0] != 200 or len(r[1].split()) != 50:
                broken.append((name, r if isinstance(r, str) else (r[0], r[1][:200])))
    assert not broken, broken[:3]


def test_feed_deleted_while_it_streams(exchange, fed):
    a, _, cid = fed
    assert not exchange.ingest.add_objects(a.principal, cid,
                                           [indicator(f"81.6.0.{i}") for i in range(20)]).failures
    exchange.feeds.create_feed(a.principal, "doomed", "plain-ipv4", build_filter(tlp="red"))
    feed = exchange.feeds.get_feed(a.principal, "doomed")
    export, _, _ = exchange.feeds.render_feed(a.principal, feed)
    first = next(export.chunks)
    exchange.feeds.delete_feed(a.principal, "doomed")
    rest = "".join(export.chunks)
    assert len((first + rest).split()) == 20


def test_concurrent_suricata_exports_by_two_users(exchange, fed):
    a, b, cid = fed
    objs = [indicator(f"81.5.{i // 250}.{i % 250}") for i in range(600)]
    assert not exchange.ingest.add_objects(a.principal, cid, objs).failures

    def export(member):
        def run():
            ex = exchange.export.export(member.principal, "suricata-rules", build_filter(tlp="red"))
            return "".join(ex.chunks)
        return run

    outs = no_exceptions(run_threads([export(a), export(b), export(a), export(b)]))
    assert len({o.count("sid:") for o in outs}) == 1 and outs[0].count("sid:") == 600
    sids = [line.split("sid:")[1].split(";")[0] for line in outs[0].splitlines() if "sid:" in line]
    assert len(set(sids)) == len(sids)
    for o in outs[1:]:  # the same rules get the same sids whoever exported first
        assert sorted(o.splitlines()) == sorted(outs[0].splitlines())


def test_feed_fetched_while_objects_added_and_deleted(exchange, web):
    a, _, cid, url, path = web
    base = [indicator(f"81.4.0.{i}") for i in range(100)]
    assert http_post(url, path, a, base).status_code == 202
    exchange.feeds.create_feed(a.principal, "live", "plain-ipv4", build_filter(tlp="red"))
    stop = threading.Event()

    def writer():
        codes = []
        with httpx.Client(base_url=url, timeout=30) as c:
            for i in range(20):
                o = indicator(f"81.4.1.{i}")
                codes.append(c.post(path, json={"objects": [o]},
                                    headers={**bearer(a), "Content-Type": TAXII}).status_code)
                codes.append(c.delete(f"{path}{base[i]['id']}/", headers=bearer(a)).status_code)
        stop.set()
        return codes

    def reader():
        got = []
        with httpx.Client(base_url=url, timeout=30) as c:
            while not stop.is_set():
                r = c.get("/feeds/live", headers={"Authorization": f"Bearer {a.token}"})
                got.append((r.status_code, r.text))
        return got

    codes, got = no_exceptions(run_threads([writer, reader]))
    assert set(codes) <= {200, 202}, codes
    for status, text in got:
        assert status in (200, 304), text[:300]
        if status == 200:
            values = text.split()
            assert len(values) == len(set(values))
            assert 80 <= len(values) <= 120
    final = httpx.get(f"{url}/feeds/live", headers={"Authorization": f"Bearer {a.token}"}, timeout=30)
    assert final.status_code == 200
    assert sorted(final.text.split()) == sorted(
        [f"81.4.0.{i}" for i in range(20, 100)] + [f"81.4.1.{i}" for i in range(20)])


# -- detection refresh while indicators are revoked ---------------------------------------
def test_detect_refresh_while_indicators_are_revoked(exchange, fed):
    a, b, cid = fed
    service = exchange.detect
    objs = [indicator(f"81.3.0.{i}", created_by=a.identity) for i in range(30)]
    assert not exchange.ingest.add_objects(a.principal, cid, objs).failures
    community = service.community(b.principal, "c")
    indicators, _ = service.active_indicators(b.principal, community)
    iset, _ = service.compile(indicators, [])
    refreshed = exchange.ingest._clock()  # as DetectService.run: the clock after loading
    assert {o["id"] for o in objs} <= set(iset.entries)
    # control: a revocation committed before a refresh starts is applied
    control = objs.pop()
    assert not exchange.ingest.add_objects(a.principal, cid, [new_version(control, 9, revoked=True)]).failures
    started = exchange.ingest._clock()
    service.refresh(b.principal, community, iset, refreshed - REFRESH_OVERLAP_US)
    refreshed = started
    assert control["id"] not in iset.entries
    stop = threading.Event()

    def revoker():
        try:
            for k, o in enumerate(objs):
                # a large envelope: the revocation's date_added is set when the write
                # starts, its commit comes later (as for any big envelope or import)
                filler = [indicator(f"81.{100 + i // 250}.{k}.{i % 250}") for i in range(400)]
                batch = [new_version(o, 9, revoked=True), *filler]
                rep = exchange.ingest.add_objects(a.principal, cid, batch)
                assert not rep.failures
        finally:
            stop.set()

    def refresher():
        nonlocal refreshed
        while not stop.is_set():  # DetectService.run's refresh loop, as fast as it goes
            started = exchange.ingest._clock()
            service.refresh(b.principal, community, iset, refreshed - REFRESH_OVERLAP_US)
            refreshed = started
        started = exchange.ingest._clock()
        service.refresh(b.principal, community, iset, refreshed - REFRESH_OVERLAP_US)

    no_exceptions(run_threads([revoker, refresher]))
    still = [o["id"] for o in objs if o["id"] in iset.entries]
    assert not still, f"{len(still)} revoked indicators still active"
