"""Running callables at once in threads, for tests of concurrent writers and readers."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any


def run_threads(funcs: Sequence[Callable[[], Any]], *, barrier: bool = True, join_s: float = 30) -> list[Any]:
    """Run each callable in its own thread (released together unless ``barrier`` is
    False); results in order, an unexpected exception in place of its result. Fails if
    a thread is still running after ``join_s`` seconds (a hang or a deadlock)."""
    results: list[Any] = [None] * len(funcs)
    gate = threading.Barrier(len(funcs)) if barrier else None

    def run(i: int, f: Callable[[], Any]) -> None:
        try:
            if gate is not None:
                gate.wait(10)
            results[i] = f()
        except BaseException as exc:  # noqa: BLE001 - reported by the caller
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i, f), daemon=True) for i, f in enumerate(funcs)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + join_s
    for t in threads:
        t.join(max(0.1, deadline - time.monotonic()))
    assert not any(t.is_alive() for t in threads), "threads still running (hang or deadlock)"
    return results
