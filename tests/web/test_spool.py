"""The spool a feed body is rendered into ahead of its client (web/spool.py)."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator

import pytest

from commonwatch.web.spool import READ_BYTES, Budget, RenderFailed, Spool


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


class Render:
    """A chunk generator that records how far it got and whether it was closed."""

    def __init__(self, chunks: list[str], delay: float = 0.0, fail_at: int | None = None) -> None:
        self.chunks, self.delay, self.fail_at = chunks, delay, fail_at
        self.made = 0
        self.closed = threading.Event()

    def __iter__(self) -> Iterator[str]:
        try:
            for k, chunk in enumerate(self.chunks):
                if k == self.fail_at:
                    raise RuntimeError("the database went away")
                if self.delay:
                    time.sleep(self.delay)
                self.made += 1
                yield chunk
        finally:
            self.closed.set()


def test_the_body_is_the_chunks_in_order_and_nothing_is_left_open():
    before = _open_fds()
    chunks = [f"line {k} é ✓\n" * (k % 7 + 1) for k in range(2000)] + ["x" * (3 * READ_BYTES + 5)]
    render = Render(chunks)
    spool = Spool(iter(render))
    body = b"".join(spool)
    assert body == "".join(chunks).encode("utf-8")
    assert render.closed.wait(5) and render.made == len(chunks)
    spool.close()  # again: nothing happens
    assert _open_fds() == before


def test_an_empty_render_is_an_empty_body():
    spool = Spool(iter(Render([])))
    assert b"".join(spool) == b""


def test_the_render_runs_ahead_of_a_reader_that_has_not_started():
    render = Render([f"{k}\n" for k in range(500)])
    spool = Spool(iter(render))
    assert render.closed.wait(5), "the render waited for its reader"
    assert render.made == 500
    assert b"".join(spool).count(b"\n") == 500


def test_closing_stops_the_render_at_its_next_chunk():
    before = _open_fds()
    render = Render([f"{k}\n" for k in range(10_000)], delay=0.005)
    spool = Spool(iter(render))
    body = iter(spool)
    assert next(body)
    spool.close()  # the client went away
    assert render.closed.wait(2), "the render went on for nobody"
    assert render.made < 1000
    for _ in range(100):
        if _open_fds() == before:
            break
        time.sleep(0.01)
    assert _open_fds() == before


def test_a_reader_closed_before_it_started_stops_the_render():
    render = Render([f"{k}\n" for k in range(10_000)], delay=0.005)
    spool = Spool(iter(render))
    spool.close()
    assert render.closed.wait(2)
    assert render.made < 1000


def test_a_failing_render_ends_the_body_with_its_error_after_what_it_wrote():
    render = Render([f"{k}\n" for k in range(100)], fail_at=40)
    spool = Spool(iter(render))
    got: list[bytes] = []
    with pytest.raises(RenderFailed, match="RuntimeError"):  # its traceback stays behind (logged)
        for data in spool:
            got.append(data)
    assert b"".join(got) == "".join(f"{k}\n" for k in range(40)).encode()
    assert render.closed.is_set()


def test_a_reader_waits_for_a_slow_render_and_gets_everything():
    render = Render([f"{k}\n" for k in range(50)], delay=0.01)
    assert b"".join(Spool(iter(render))) == "".join(f"{k}\n" for k in range(50)).encode()


def test_segments_are_freed_as_they_are_sent():
    before = _open_fds()
    chunks = [f"{k:07d}\n" * 100 for k in range(2000)]  # 1.6 MB
    spool = Spool(iter(Render(chunks)), segment_bytes=64 << 10)
    body = iter(spool)
    got = [next(body)]
    time.sleep(0.2)  # the render is done: about 25 segments written
    most = _open_fds() - before
    got.extend(body)
    assert b"".join(got) == "".join(chunks).encode()
    assert most > 10  # segments really were separate files...
    assert _open_fds() == before  # ...and none is left


def test_the_render_waits_when_it_is_far_ahead_of_its_client():
    chunk = "x" * 1000 + "\n"
    render = Render([chunk] * 5000)  # 5 MB
    spool = Spool(iter(render), segment_bytes=32 << 10, ahead_bytes=100 << 10)
    body = iter(spool)
    first = next(body)
    time.sleep(0.3)
    assert render.made < 200, "the render ran on past its lead"
    assert first + b"".join(body) == (chunk * 5000).encode()
    assert render.closed.wait(5) and render.made == 5000


def test_renders_together_stay_within_their_budget():
    budget = Budget(200 << 10)
    chunk = "y" * 1000 + "\n"
    first, second = Render([chunk] * 2000), Render([chunk] * 2000)  # 2 MB each
    a = Spool(iter(first), segment_bytes=64 << 10, budget=budget)
    time.sleep(0.2)
    b = Spool(iter(second), segment_bytes=64 << 10, budget=budget)
    time.sleep(0.2)
    # past the budget, a render whose client has read everything goes one chunk at a time
    assert budget.ahead <= (200 << 10) + 2 * 1001
    assert second.made <= 2, "the second render ran on although the budget was spent"
    a.close()  # the first client went away: what it left unread is no longer ahead
    assert first.closed.wait(2)
    body = b"".join(b)  # the second render goes on as its client reads
    assert body == (chunk * 2000).encode() and second.made == 2000
    assert budget.ahead == 0
