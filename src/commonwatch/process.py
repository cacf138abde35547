"""Process-wide settings for long runs over many objects (server, imports, exports)."""

from __future__ import annotations

import gc


def tune_for_throughput() -> None:
    """Make the garbage collector cheap for bulk work.

    Objects alive now (modules, caches, compiled statements) leave the collector's view,
    and young collections run less often: ingesting or exporting a batch allocates
    hundreds of thousands of short-lived objects, and each full collection would walk
    everything else again. Measured on an import of a 50,000-object STIX bundle: about
    a third more objects per CPU-second.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)
