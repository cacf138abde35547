"""The one place CommonWatch reads the wall clock (tests freeze it by passing another)."""

from __future__ import annotations

import time
from collections.abc import Callable

Clock = Callable[[], int]


def now_us() -> int:
    """Microseconds since the Unix epoch, UTC."""
    return time.time_ns() // 1000
