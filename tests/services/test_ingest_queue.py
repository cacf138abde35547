"""The TAXII ingest queue: large envelopes acknowledged as pending, stored by a writer
thread several to a transaction, and never lost across a stop (services/ingest_queue.py).

Envelopes are queued "as if the server had stopped" by keeping them from the writer
(``_enqueue`` replaced): they are then in the queue directory only, exactly as after a
crash, and the next exchange's :meth:`IngestQueue.recover` finds them all at once,
which makes the batching deterministic.
"""

from __future__ import annotations

import threading
from pathlib import Path

import orjson
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from taxii2client.v21 import Collection

from commonwatch.config import load_settings
from commonwatch.domain.markings import Tlp
from commonwatch.errors import ConfigError, NotFound, Unavailable
from commonwatch.services.exchange import Exchange
from commonwatch.web.app import create_app

from conftest import LiveServer, count_rows
from support.factories import indicator, make_community, make_member, new_version

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

WAIT = 2  # envelopes of more objects than this are answered "pending" in these tests


def _exchange(database_url: str, queue: Path) -> Exchange:
    return Exchange(load_settings(environ={}, database_url=database_url, ingest_wait_objects=WAIT,
                                  ingest_queue_dir=str(queue)), migrate=False)


def _files(queue: Path) -> list[Path]:
    return sorted(queue.glob("*.envelope"))


@pytest.fixture
def queue(tmp_path) -> Path:
    return tmp_path / "queue"


@pytest.fixture
def world(database_url, queue):
    ex = _exchange(database_url, queue)
    alice = make_member(ex, "Alice Telecom")
    bob = make_member(ex, "Bob CERT", sector="government")
    cid = make_community(ex, "sharing", Tlp.AMBER, {"Alice Telecom": (True, Tlp.RED),
                                                     "Bob CERT": (True, Tlp.RED)})
    yield ex, alice, bob, cid
    ex.close()


def _body(objects: list[dict]) -> bytes:
    return orjson.dumps({"objects": objects})


def _queue_without_storing(ex: Exchange, principal, cid: str, objects: list[dict]) -> str:
    """Queue an envelope as the server would, then "stop" before the writer stores it."""
    report = ex.ingest_queue.submit(principal, cid, _body(objects))
    assert report.status == "pending"
    return report.id


def _status(ex: Exchange, principal, status_id: str) -> dict:
    return ex.ingest.status(principal, status_id).to_json()


def _latest(ex: Exchange, token: str, cid: str) -> dict[str, dict]:
    with TestClient(create_app(ex)) as client:
        client.headers["Authorization"] = f"Bearer {token}"
        page = client.get(f"/taxii2/api/collections/{cid}/objects/", params={"limit": 1000})
    assert page.status_code == 200
    return {o["id"]: o for o in page.json().get("objects", [])}


def _hold_writer(ex: Exchange, monkeypatch) -> tuple[threading.Event, threading.Event]:
    """The writer stops in the first envelope it validates (``held`` is set) until
    ``hold`` is set."""
    hold, held = threading.Event(), threading.Event()
    validate = ex.ingest.validate

    def slow(principal, community, objects):
        held.set()
        assert hold.wait(30)
        return validate(principal, community, objects)

    monkeypatch.setattr(ex.ingest, "validate", slow)
    return hold, held


def test_queued_envelopes_survive_a_stop_and_are_stored_in_order_in_one_transaction(
        world, database_url, queue, monkeypatch):
    ex, alice, _, cid = world
    first = indicator(created=10)
    later = new_version(first, 20, name="second version")
    bad = indicator(pattern="[ipv4-addr:value = ")
    envelopes = [[first, indicator(), indicator()], [later, bad, indicator()],
                 [indicator(), indicator(), indicator(), indicator()]]
    monkeypatch.setattr(ex.ingest_queue, "_enqueue", lambda items: None)  # the "crash"
    ids = [_queue_without_storing(ex, alice.principal, cid, objs) for objs in envelopes]
    ex.close()
    assert len(_files(queue)) == 3  # acknowledged: on disk
    assert count_rows(ex, "ingest_statuses") == 0

    again = _exchange(database_url, queue)
    try:
        assert again.ingest_queue.recover() == 3
        assert again.ingest_queue.drain(timeout=60)
        assert again.ingest_queue.transactions == 1  # all three in one transaction
        assert again.ingest_queue.stored_envelopes == 3
        done = [_status(again, alice.principal, i) for i in ids]
        assert [d["status"] for d in done] == ["complete"] * 3
        assert [(d["success_count"], d["failure_count"], d["pending_count"]) for d in done] == [
            (3, 0, 0), (2, 1, 0), (4, 0, 0)]
        assert done[1]["failures"][0]["id"] == bad["id"]
        assert "pattern" in done[1]["failures"][0]["message"]
        assert _files(queue) == []
        latest = _latest(again, alice.token, cid)
        # the second envelope's version is the newest: stored after the first's
        assert latest[first["id"]]["name"] == "second version"
        stored = {o["id"] for objs in envelopes for o in objs} - {bad["id"]}
        assert stored <= set(latest) and bad["id"] not in latest
    finally:
        again.close()


def test_an_envelope_whose_poster_lost_the_right_to_write_is_refused_whole(
        world, database_url, queue, monkeypatch):
    ex, alice, bob, cid = world
    monkeypatch.setattr(ex.ingest_queue, "_enqueue", lambda items: None)
    mine = [indicator(), indicator(), indicator()]
    theirs = [indicator(), indicator(), indicator()]
    refused_id = _queue_without_storing(ex, bob.principal, cid, mine)
    kept_id = _queue_without_storing(ex, alice.principal, cid, theirs)
    ex.admin.set_membership("Bob CERT", "sharing", True, False, Tlp.RED)  # now read-only
    ex.close()

    again = _exchange(database_url, queue)
    try:
        again.ingest_queue.recover()
        assert again.ingest_queue.drain(timeout=60)
        refused = _status(again, bob.principal, refused_id)
        assert refused["status"] == "complete" and refused["failure_count"] == 3
        assert {f["id"] for f in refused["failures"]} == {o["id"] for o in mine}
        assert all("write access" in f["message"] for f in refused["failures"])
        assert _status(again, alice.principal, kept_id)["success_count"] == 3
        latest = _latest(again, alice.token, cid)
        assert not {o["id"] for o in mine} & set(latest)
        assert {o["id"] for o in theirs} <= set(latest)
    finally:
        again.close()


def test_a_transaction_that_fails_is_redone_one_envelope_at_a_time(
        world, database_url, queue, monkeypatch):
    ex, alice, _, cid = world
    monkeypatch.setattr(ex.ingest_queue, "_enqueue", lambda items: None)
    ids = [_queue_without_storing(ex, alice.principal, cid, [indicator(), indicator(), indicator()])
           for _ in range(3)]
    ex.close()

    again = _exchange(database_url, queue)
    store = again.ingest.store

    def failing(s, principal, community_id, clearance, envelope, status_id, *args, **kwargs):
        if status_id == ids[1]:
            raise RuntimeError("simulated fault while storing")
        return store(s, principal, community_id, clearance, envelope, status_id, *args, **kwargs)

    monkeypatch.setattr(again.ingest, "store", failing)
    try:
        again.ingest_queue.recover()
        assert again.ingest_queue.drain(timeout=60)
        done = [_status(again, alice.principal, i) for i in ids]
        assert [d["status"] for d in done] == ["complete"] * 3
        assert [d["success_count"] for d in done] == [3, 0, 3]
        assert done[1]["failure_count"] == 3
        assert "error on the server" in done[1]["failures"][0]["message"]
        assert _files(queue) == []
        assert again.ingest_queue.transactions == 2  # the two good ones, each alone
    finally:
        again.close()


def test_posters_wait_for_room_and_small_envelopes_are_answered_once_stored(
        world, monkeypatch):
    ex, alice, bob, cid = world
    queue = ex.ingest_queue
    monkeypatch.setattr(queue, "_max_queued", 4)
    hold, held = _hold_writer(ex, monkeypatch)
    big = [indicator() for _ in range(4)]
    status_id = queue.submit(alice.principal, cid, _body(big)).id
    assert held.wait(30)  # the writer holds the first envelope
    pending = queue.status(alice.principal, status_id).to_json()
    assert pending["status"] == "pending" and pending["total_count"] == 4
    assert pending["pending_count"] == 4 and pending["success_count"] == 0
    assert "pendings" not in pending  # not listed: the count says how many
    with pytest.raises(NotFound):  # another organisation's status is not there for bob
        queue.status(bob.principal, status_id)
    waiting = [indicator() for _ in range(4)]  # the room of 4 is free again: queued
    assert queue.submit(alice.principal, cid, _body(waiting)).status == "pending"
    small = [indicator(), indicator()]
    answers: list = []
    poster = threading.Thread(target=lambda: answers.append(
        queue.submit(alice.principal, cid, _body(small))))
    poster.start()
    poster.join(0.3)
    assert poster.is_alive() and not answers  # 4 + 2 objects would pass the room of 4
    assert len(queue._waiting) == 1  # not queued yet: waiting for room
    hold.set()
    poster.join(30)
    (report,) = answers
    assert report.status == "complete" and len(report.successes) == 2  # small: waited
    assert queue.drain(timeout=30)
    assert queue.status(alice.principal, status_id).to_json()["success_count"] == 4
    assert {o["id"] for o in big + waiting + small} <= set(_latest(ex, alice.token, cid))


def test_a_closing_queue_refuses_posters_that_wait_for_room(world, queue, monkeypatch):
    ex, alice, _, cid = world
    monkeypatch.setattr(ex.ingest_queue, "_enqueue", lambda items: None)
    monkeypatch.setattr(ex.ingest_queue, "_max_queued", 3)
    objs = [indicator(), indicator(), indicator()]
    _queue_without_storing(ex, alice.principal, cid, objs)
    errors: list = []

    def post() -> None:
        try:
            ex.ingest_queue.submit(alice.principal, cid, _body(objs))
        except Unavailable as exc:
            errors.append(exc)

    poster = threading.Thread(target=post)
    poster.start()
    poster.join(0.3)
    assert poster.is_alive()
    ex.ingest_queue.close()
    poster.join(30)
    assert len(errors) == 1 and "stopping" in errors[0].message
    assert len(_files(queue)) == 1  # only the acknowledged one


def test_taxii_clients_poll_a_pending_envelope_until_it_is_stored(world):
    ex, alice, _, cid = world
    objects = [indicator() for _ in range(25)] + [indicator(pattern="not a pattern")]
    with LiveServer(ex) as server:
        url = f"{server.url}/taxii2/api/collections/{cid}/"
        import httpx
        raw = httpx.post(url + "objects/", content=_body(objects[:5]), headers={
            "Authorization": f"Bearer {alice.token}",
            "Content-Type": "application/taxii+json;version=2.1",
            "Accept": "application/taxii+json;version=2.1"})
        assert raw.status_code == 202
        answer = raw.json()
        assert answer["status"] == "pending" and answer["pending_count"] == 5
        assert answer["success_count"] == answer["failure_count"] == 0
        coll = Collection(url, user=alice.user, password=alice.token)
        status = coll.add_objects({"objects": objects}, wait_for_completion=True,
                                  poll_interval=0.05, timeout=60)
        assert status.status == "complete" and status.pending_count == 0
        assert status.success_count == 25 and status.failure_count == 1
        stored = {o["id"] for o in coll.get_objects(limit=100)["objects"]}
    assert {o["id"] for o in objects[:25]} <= stored


def test_an_envelope_stored_just_before_a_stop_is_not_stored_again(
        world, database_url, queue, monkeypatch):
    """A stop between the commit and the removal of the file leaves both: the status
    resource in the database says it was stored, and the next start only removes it."""
    ex, alice, _, cid = world
    objs = [indicator(), indicator(), indicator()]
    monkeypatch.setattr("commonwatch.services.ingest_queue._remove", lambda path: None)
    report = ex.ingest_queue.submit(alice.principal, cid, _body(objs))
    assert ex.ingest_queue.drain(timeout=60)
    assert _status(ex, alice.principal, report.id)["success_count"] == 3
    ex.close()
    monkeypatch.undo()
    assert len(_files(queue)) == 1
    again = _exchange(database_url, queue)
    try:
        assert again.ingest_queue.recover() == 0
        assert _files(queue) == []
        with again.engine.connect() as conn:
            copies = conn.execute(sa.text("SELECT count(*) FROM stix_objects WHERE stix_id = :i"),
                                  {"i": objs[0]["id"]}).scalar_one()
        assert copies == 1
    finally:
        again.close()


def test_two_servers_may_not_share_a_queue_directory(world, database_url, queue):
    ex = world[0]
    queue.mkdir()
    assert ex.ingest_queue.recover() == 0
    other = _exchange(database_url, queue)
    try:
        with pytest.raises(ConfigError, match="another CommonWatch server"):
            other.ingest_queue.recover()
        ex.ingest_queue.close()  # the first one stops: the directory is free
        assert other.ingest_queue.recover() == 0
    finally:
        other.close()


def test_closing_stores_what_is_queued_first(world, queue, monkeypatch):
    ex, alice, _, cid = world
    hold, held = _hold_writer(ex, monkeypatch)
    envelopes = [[indicator() for _ in range(4)] for _ in range(3)]
    ids = [ex.ingest_queue.submit(alice.principal, cid, _body(objs)).id for objs in envelopes]
    assert held.wait(30)
    closer = threading.Thread(target=ex.ingest_queue.close)
    closer.start()
    closer.join(0.2)
    assert closer.is_alive()  # waiting for the writer
    with pytest.raises(Unavailable):  # no new envelopes once closing
        ex.ingest_queue.submit(alice.principal, cid, _body([indicator() for _ in range(4)]))
    hold.set()
    closer.join(30)
    assert not closer.is_alive()
    assert [_status(ex, alice.principal, i)["success_count"] for i in ids] == [4, 4, 4]
    assert _files(queue) == []
