"""Ingest holds the cyclic garbage collector off while it stores an envelope
(commonwatch.process.collector_paused), and gives it back however the envelope ends."""

from __future__ import annotations

import gc
import threading

import pytest

from commonwatch.domain.markings import Tlp
from commonwatch.errors import InputTooLarge
from commonwatch.process import collector_paused

from support.factories import indicator, make_community, make_member


@pytest.fixture(autouse=True)
def _collector_on():
    was = gc.isenabled()
    gc.enable()
    yield
    if not was:
        gc.disable()


def test_the_collector_is_off_inside_and_back_after():
    with collector_paused():
        assert not gc.isenabled()
        with collector_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()  # the outer block still runs
    assert gc.isenabled()


def test_a_collector_that_was_off_stays_off():
    gc.disable()
    with collector_paused():
        pass
    assert not gc.isenabled()


def test_an_exception_gives_the_collector_back():
    with pytest.raises(RuntimeError), collector_paused():
        raise RuntimeError("boom")
    assert gc.isenabled()


def test_blocks_in_two_threads_overlap_and_the_last_one_out_turns_it_back_on():
    inside, release = threading.Event(), threading.Event()
    seen: list[bool] = []

    def other() -> None:
        with collector_paused():
            inside.set()
            release.wait(5)
            seen.append(gc.isenabled())

    thread = threading.Thread(target=other)
    thread.start()
    assert inside.wait(5)
    with collector_paused():
        pass
    seen.append(gc.isenabled())  # the other thread's block still runs: still off
    release.set()
    thread.join(5)
    assert seen == [False, False]
    assert gc.isenabled()


def test_ingest_gives_the_collector_back_after_storing_and_after_refusing(exchange):
    member = make_member(exchange, "Poster")
    cid = make_community(exchange, "memory", Tlp.GREEN, {"Poster": (True, Tlp.RED)})
    seen: list[bool] = []
    store = exchange.ingest._store

    def spying_store(*args, **kwargs):
        seen.append(gc.isenabled())
        return store(*args, **kwargs)

    exchange.ingest._store = spying_store
    report = exchange.ingest.add_objects(member.principal, cid, [indicator("198.51.100.7"), {"type": 1}])
    assert len(report.successes) == 1 and len(report.failures) == 1
    assert seen == [False] and gc.isenabled()
    exchange.ingest._max_objects = 1
    with pytest.raises(InputTooLarge):
        exchange.ingest.add_objects(member.principal, cid, [indicator("198.51.100.8")] * 2)
    assert gc.isenabled()
