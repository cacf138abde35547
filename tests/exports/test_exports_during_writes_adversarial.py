"""Exports and pull feeds while other threads write: ingest, new versions, copies, deletes.

Batches are forced down to a few rows, and writes run in another thread, to completion,
right before a chosen batch read (:func:`before_batch`), so each case is deterministic:
one community is read in date_added order, several are read by STIX id and merged, all
in one snapshot of the database. Every indicator states one public-looking address (45.77.x.y), so an
export's CSV has one row per object.
"""

from __future__ import annotations

import csv
import io
import json
import threading
from collections.abc import Callable
from types import SimpleNamespace

import pytest
from fastapi.testclient import TestClient

from commonwatch.domain.markings import Tlp
from commonwatch.services import query as query_module
from commonwatch.services.query import ExportFilter, QueryService
from commonwatch.web.app import create_app

from support.factories import indicator, make_community, make_member, new_version

BATCH = 7
ONE = ExportFilter(communities=("one",))  # one community: date_added order, up to `until`
MERGED = ExportFilter()  # both communities: read by STIX id and merged
MODES = pytest.mark.parametrize("flt", [ONE, MERGED], ids=["one-community", "merged"])


def oid(n: int) -> str:
    """Ids that sort (as text) in the order of ``n``."""
    return f"indicator--00000000-0000-4000-8000-{n:012d}"


def ip(block: int, n: int) -> str:
    """Object ``n``'s address in ``block`` (each block a version or a batch of writes)."""
    return f"45.{77 + n // 250}.{block}.{n % 250}"


def ind(block: int, n: int, tlp: Tlp = Tlp.GREEN, **extra) -> dict:
    return indicator(ip(block, n), tlp=tlp, oid=oid(n), **extra)


def repattern(obj: dict, modified: int, value: str, **changes) -> dict:
    return new_version(obj, modified, pattern=f"[ipv4-addr:value = '{value}']", **changes)


@pytest.fixture
def world(exchange, monkeypatch):
    """Alpha and Gamma write; Reader reads (and may write) AMBER in communities one and two."""
    original = QueryService.export_batches

    def small(self, *args, **kwargs):
        kwargs["batch"] = BATCH
        return original(self, *args, **kwargs)

    monkeypatch.setattr(QueryService, "export_batches", small)
    m = {n: make_member(exchange, n) for n in ("Alpha", "Gamma", "Reader")}
    grants = {"Alpha": (True, Tlp.RED), "Gamma": (True, Tlp.AMBER), "Reader": (True, Tlp.AMBER)}
    w = SimpleNamespace(**{k: v.principal for k, v in m.items()}, members=m,
                        one=make_community(exchange, "one", Tlp.GREEN, grants),
                        two=make_community(exchange, "two", Tlp.GREEN, grants))

    def post(who, cid, objs):
        report = exchange.ingest.add_objects(who, cid, objs)
        assert not report.failures, report.failures

    w.post = post
    return w


def before_batch(monkeypatch, writes: dict[int, Callable[[], None]]) -> list[int]:
    """Before batch read number n (1-based, every community's reads counted), run
    ``writes[n]`` in another thread and wait for it to commit. Returns the reads made."""
    real = query_module._driver_rows
    reads: list[int] = []

    def wrapped(conn, statement, params):
        reads.append(len(reads) + 1)
        write = writes.get(len(reads))
        if write is not None:
            errors: list[BaseException] = []

            def run() -> None:
                try:
                    write()
                except BaseException as exc:  # re-raised in the reader's thread
                    errors.append(exc)

            thread = threading.Thread(target=run)
            thread.start()
            thread.join(30)
            assert not thread.is_alive() and not errors, errors
        return real(conn, statement, params)

    monkeypatch.setattr(query_module, "_driver_rows", wrapped)
    return reads


def csv_rows(svc, principal, flt: ExportFilter) -> list[tuple[str, str]]:
    text = "".join(svc.export(principal, "csv", flt).chunks)
    assert text.startswith("value,kind,stix_id,")
    return [(r["stix_id"], r["value"]) for r in csv.DictReader(io.StringIO(text))]


def once(rows: list[tuple[str, str]]) -> dict[str, str]:
    """Property 1: one row per id (each object states one value)."""
    ids = [i for i, _ in rows]
    assert len(ids) == len(set(ids)), sorted(i for i in set(ids) if ids.count(i) > 1)
    return dict(rows)


def check(got: dict[str, str], n: int, block: int, *, superseded: dict[int, str], deleted: set[int]):
    """Properties 3 and 4 for objects 0..n-1 stating ``ip(block, i)``."""
    for i in range(n):
        old = ip(block, i)
        if i in deleted:
            assert got.get(oid(i)) in (None, old, superseded.get(i)), i
        elif i in superseded:
            assert got.get(oid(i)) in (old, superseded[i]), (i, got.get(oid(i)))
        else:
            assert got.get(oid(i)) == old, (i, got.get(oid(i)))


# -- properties 1, 3, 4 under ordinary writes: new versions, new objects, deletes, copies ------
def test_one_community_new_versions_deletes_and_copies_between_batches(
        exchange, svc, world, monkeypatch):
    objs = [ind(1, i) for i in range(40)]
    world.post(world.Alpha, world.one, objs)
    superseded: dict[int, str] = {}
    deleted: set[int] = set()

    def supersede(*idx: int) -> Callable[[], None]:
        def write() -> None:
            world.post(world.Alpha, world.one, [repattern(objs[i], 100 + i, ip(2, i)) for i in idx])
            superseded.update({i: ip(2, i) for i in idx})
            world.post(world.Alpha, world.one, [ind(9, 200 + idx[0])])  # a new object
        return write

    def delete_and_copy() -> None:
        for i in (1, 20):  # one read already, one not yet
            exchange.ingest.delete_object(world.Alpha, world.one, oid(i), query_module.ObjectFilter())
            deleted.add(i)
        world.post(world.Gamma, world.one, [objs[31], objs[4]])  # copies by another organisation

    reads = before_batch(monkeypatch, {2: supersede(0, 3, 10, 25), 3: delete_and_copy,
                                       4: supersede(5, 16, 30, 39)})
    got = once(csv_rows(svc, world.Reader, ONE))
    assert len(reads) >= 6
    check(got, 40, 1, superseded=superseded, deleted=deleted)
    assert not [i for i in got if i >= oid(200)]  # added during the export: not read
    assert got[oid(25)] == ip(1, 25) and got[oid(10)] == ip(1, 10)  # old versions, read to `until`


def test_merged_communities_new_versions_deletes_and_copies_between_batches(
        exchange, svc, world, monkeypatch):
    objs = [ind(1, i) for i in range(60)]
    world.post(world.Alpha, world.one, objs[:40])
    world.post(world.Alpha, world.two, objs[30:])  # ids 30..39 in both communities
    superseded: dict[int, str] = {}
    deleted: set[int] = set()

    def supersede(cid: str, *idx: int) -> Callable[[], None]:
        def write() -> None:
            world.post(world.Alpha, cid, [repattern(objs[i], 100 + i, ip(2, i)) for i in idx])
            superseded.update({i: ip(2, i) for i in idx})
        return write

    def delete_and_copy() -> None:
        for i in (2, 22, 45):
            cid = world.two if i >= 40 else world.one
            exchange.ingest.delete_object(world.Alpha, cid, oid(i), query_module.ObjectFilter())
            deleted.add(i)
        world.post(world.Gamma, world.one, [objs[24]])
        world.post(world.Gamma, world.two, [objs[50]])
        world.post(world.Alpha, world.one, [ind(9, 300)])  # a new object, after every id read

    before_batch(monkeypatch, {3: supersede(world.one, 1, 12, 33), 4: delete_and_copy,
                               5: supersede(world.two, 36, 38, 55), 7: supersede(world.one, 37, 39)})
    got = once(csv_rows(svc, world.Reader, MERGED))
    check(got, 60, 1, superseded=superseded, deleted=deleted)
    assert set(got) <= {oid(i) for i in range(60)} | {oid(300)}


# -- writes that used to slip between the batches of one export ------------------------------
@MODES
def test_readers_own_copy_posted_during_export_does_not_hide_the_object(svc, world, monkeypatch, flt):
    # Read batch by batch in separate transactions, the reader's own copy stored after the
    # export began hid the copy that existed all along and was itself past `until`: the
    # object came out in neither form. Exports read one snapshot now.
    objs = [ind(1, i) for i in range(20)]
    world.post(world.Alpha, world.one, objs)
    before_batch(monkeypatch, {2: lambda: world.post(world.Reader, world.one, [objs[12]])})
    got = once(csv_rows(svc, world.Reader, flt))
    check(got, 20, 1, superseded={}, deleted=set())


@MODES
def test_deleting_the_chosen_copy_during_export_does_not_repeat_the_id(exchange, svc, world, monkeypatch,
                                                                       flt):
    # Alpha's copy is sent in the first batch, then deleted: read batch by batch in separate
    # transactions, Gamma's copy of the same version became the one chosen when its batch
    # was read, and the id came out twice. Exports read one snapshot now.
    objs = [ind(1, i) for i in range(20)]
    world.post(world.Alpha, world.one, objs)
    world.post(world.Gamma, world.one, [objs[2]])
    delete = lambda: exchange.ingest.delete_object(  # noqa: E731
        world.Alpha, world.one, oid(2), query_module.ObjectFilter())
    before_batch(monkeypatch, {2: delete})
    got = once(csv_rows(svc, world.Reader, flt))
    check(got, 20, 1, superseded={}, deleted=set())  # Gamma's copy still holds it


@MODES
def test_deleting_the_newest_version_during_export_sends_one_version(exchange, svc, world, monkeypatch,
                                                                     flt):
    # A version older than the newest, stored later (out-of-order sync), is skipped while
    # the newest exists; the newest is sent in the first batch, then deleted: read batch by
    # batch, the older version came out in a later batch too (two versions of one id).
    objs = [ind(1, i, modified=50) for i in range(20)]
    world.post(world.Alpha, world.one, objs)
    world.post(world.Alpha, world.one, [repattern(objs[2], 10, ip(2, 2))])  # older version
    delete = lambda: exchange.ingest.delete_object(  # noqa: E731
        world.Alpha, world.one, oid(2), query_module.ObjectFilter())  # the newest only
    before_batch(monkeypatch, {2: delete})
    bundle = json.loads("".join(svc.export(world.Reader, "stix", flt).chunks))
    sent = [(o["id"], o["modified"]) for o in bundle["objects"] if o["type"] == "indicator"]
    assert len(sent) == len({i for i, _ in sent}), [s for s in sent if s[0] == oid(2)]
    assert {i for i, _ in sent} == {oid(i) for i in range(20)}


# -- property 2: only what the reader may see, at some moment of the export ------------------
@MODES
def test_access_lost_during_export_shows_nothing_stored_afterwards(exchange, svc, world, monkeypatch,
                                                                   flt):
    # The clearance is read once, when the export begins: read batch by batch, objects
    # stored after the reader lost its membership of "one" and its AMBER clearance in "two"
    # (which it could see at no moment) were exported from later batches. The snapshot the
    # export reads holds neither them nor the new memberships.
    world.post(world.Alpha, world.one, [ind(1, i) for i in range(20)])
    world.post(world.Alpha, world.two, [ind(1, i) for i in range(20, 40)])

    def lose_access() -> None:
        exchange.admin.remove_membership("Reader", "one")
        exchange.admin.set_membership("Reader", "two", True, True, Tlp.GREEN)
        world.post(world.Alpha, world.one, [ind(3, 500)])
        world.post(world.Alpha, world.two, [ind(3, 501, Tlp.AMBER)])

    before_batch(monkeypatch, {3: lose_access})
    leaked = {oid(500), oid(501)} & set(once(csv_rows(svc, world.Reader, flt)))
    assert not leaked, sorted(leaked)


@MODES
def test_invisible_writes_during_export_never_appear(svc, world, monkeypatch, flt):
    objs = [ind(1, i) for i in range(30)]
    world.post(world.Alpha, world.one, objs[:20])
    world.post(world.Alpha, world.two, objs[20:])
    gamma = world.members["Gamma"].identity

    def hidden_writes() -> None:
        world.post(world.Alpha, world.one, [
            ind(4, 600, Tlp.AMBER_STRICT), ind(4, 601, Tlp.RED, recipients=[gamma]),
            ind(4, 15, Tlp.RED, recipients=[gamma], modified=100),  # a new version of object 15
            ind(4, 602, Tlp.AMBER)])  # visible, but over the GREEN ceiling asked for below
        world.post(world.Alpha, world.two, [ind(4, 25, Tlp.AMBER_STRICT, modified=100)])

    before_batch(monkeypatch, {2: hidden_writes})
    green = ExportFilter(communities=flt.communities, tlp_ceiling=Tlp.GREEN)
    got = once(csv_rows(svc, world.Reader, green))
    check(got, 30 if flt is MERGED else 20, 1, superseded={}, deleted=set())
    assert not {oid(600), oid(601), oid(602)} & set(got)


# -- property 5: feed validators under writes ---------------------------------------------------
def test_feed_etag_moves_with_visible_writes_only(exchange, world, monkeypatch):
    objs = [ind(1, i) for i in range(20)]
    world.post(world.Alpha, world.one, objs)
    world.post(world.Gamma, world.two, [ind(1, 20)])
    bearer = {"Authorization": f"Bearer {world.members['Reader'].token}"}
    gamma = world.members["Gamma"].identity
    with TestClient(create_app(exchange)) as client:
        made = client.post("/api/feeds", headers=bearer, json={"name": "ips", "format": "plain-ip",
                                                               "communities": ["one"]})
        assert made.status_code == 201, made.text

        def get(etag: str | None = None):
            return client.get("/feeds/ips", headers={**bearer, **({"If-None-Match": etag} if etag else {})})

        first = get()
        etag = first.headers["etag"]
        assert first.status_code == 200 and len(first.text.split()) == 20
        assert get().headers["etag"] == etag  # no write in between: same validator
        assert get(etag).status_code == 304
        invisible = [
            lambda: world.post(world.Alpha, world.one, [ind(5, 700, Tlp.AMBER_STRICT)]),
            lambda: world.post(world.Alpha, world.one, [ind(5, 701, Tlp.RED, recipients=[gamma])]),
            lambda: exchange.ingest.delete_object(world.Alpha, world.one, oid(700),
                                                  query_module.ObjectFilter()),
        ]
        for write in invisible:
            write()
            again = get(etag)
            assert again.status_code == 304 and again.headers["etag"] == etag
        visible = [
            lambda: world.post(world.Alpha, world.one, [repattern(objs[3], 100, ip(5, 3))]),
            lambda: world.post(world.Gamma, world.one, [objs[4]]),  # a copy: nothing new to print
            lambda: exchange.ingest.delete_object(world.Alpha, world.one, oid(5),
                                                  query_module.ObjectFilter()),
            lambda: world.post(world.Gamma, world.two, [ind(5, 702)]),  # another community it reads
        ]
        for write in visible:
            write()
            changed = get(etag)
            assert changed.status_code == 200 and changed.headers["etag"] != etag
            etag = changed.headers["etag"]
            assert get(etag).status_code == 304
        # a visible write while a render streams: the next request must not be told 304
        before_batch(monkeypatch, {2: lambda: world.post(world.Alpha, world.one, [ind(5, 703)])})
        during = get()
        assert during.status_code == 200 and ip(5, 703) not in during.text.split()
        after = get(during.headers["etag"])
        assert after.status_code == 200 and ip(5, 703) in after.text.split()
        assert get(after.headers["etag"]).status_code == 304
