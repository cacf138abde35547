"""What storing several envelopes in one transaction saves, measured in one process.

The bench corpus (``bench/taxii.py``'s objects, envelopes of 5,000) is stored into a
SQLite collection up to ``--preload`` objects, then in groups of ``--group`` envelopes
that alternate between one transaction per envelope (what a POST stored alone costs)
and one transaction for the whole group (what the TAXII ingest queue,
``services/ingest_queue.py``, does with the envelopes that queued up). Alternating
groups moments apart share the machine's speed swings, so the ratio holds even when
the absolute numbers move. Prints CPU and wall time per object for each group and for
each way in total; no HTTP, no queue files.

Run::

    .venv/bin/python bench/ingest_batching.py                    # 10^6 objects, ~3 minutes
    .venv/bin/python bench/ingest_batching.py --objects 300000 --preload 100000
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import taxii  # noqa: E402
from _common import make_corpus  # noqa: E402
from sqlalchemy.orm import Session, sessionmaker  # noqa: E402

from commonwatch.config import load_settings  # noqa: E402
from commonwatch.domain.visibility import Principal  # noqa: E402
from commonwatch.process import collector_paused, tune_for_throughput  # noqa: E402
from commonwatch.services.exchange import Exchange  # noqa: E402
from commonwatch.services.ingest_queue import envelope_objects  # noqa: E402


def store(exchange: Exchange, sessions: sessionmaker[Session], principal: Principal,
          collection: str, bodies: Sequence[bytes], together: bool) -> None:
    """Validate and store ``bodies``: one transaction for all, or one per envelope."""
    ingest = exchange.ingest
    with collector_paused():
        envelopes = [envelope_objects(body) for body in bodies]
        community, clearance = ingest.admit(principal, collection, max(map(len, envelopes)))
        checked = [ingest.validate(principal, community, objects) for objects in envelopes]
        if together:
            with sessions.begin() as s:
                for c in checked:
                    ingest.store(s, principal, community.id, clearance, c, str(uuid.uuid4()), 0)
            ingest.committed(0)
            return
        for c in checked:
            with sessions.begin() as s:
                ingest.store(s, principal, community.id, clearance, c, str(uuid.uuid4()), 0)
            ingest.committed(0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--objects", type=int, default=1_000_000)
    parser.add_argument("--preload", type=int, default=500_000,
                        help="objects stored first (ten envelopes per transaction)")
    parser.add_argument("--group", type=int, default=10, help="envelopes per group")
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args()
    corpus = make_corpus(args.objects, taxii.ENVELOPE, args.seed, taxii.PRODUCER_IDENTITY,
                         taxii.READER_IDENTITY)
    work = Path(tempfile.mkdtemp(prefix="cw-batching-"))
    try:
        url = f"sqlite:///{work}/commonwatch.db"
        setup = taxii.prepare_commonwatch(url)
        exchange = Exchange(load_settings(environ={}, database_url=url))
        tune_for_throughput()
        principal = exchange.auth.authenticate(setup.producer_token)
        # One connection throughout, as the queue's writer has (its page cache stays warm).
        sessions = sessionmaker(exchange.engine.connect(), expire_on_commit=False)
        bodies, group = corpus.envelopes, args.group
        first = min(len(bodies), args.preload // taxii.ENVELOPE)
        for i in range(0, first, group):
            store(exchange, sessions, principal, setup.big, bodies[i:i + group], together=True)
        print(f"stored {sum(corpus.sizes[:first]):,} objects first", flush=True)
        totals: dict[bool, list[float]] = {False: [0.0, 0.0, 0.0], True: [0.0, 0.0, 0.0]}
        together = False
        for i in range(first, len(bodies), group):
            cpu, wall = time.process_time(), time.perf_counter()
            store(exchange, sessions, principal, setup.big, bodies[i:i + group], together)
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            n = sum(corpus.sizes[i:i + group])
            t = totals[together]
            t[0], t[1], t[2] = t[0] + cpu, t[1] + wall, t[2] + n
            way = "one transaction for the group" if together else "one transaction per envelope"
            print(f"{sum(corpus.sizes[:i]):>9,} stored: {way:30} {1e6 * cpu / n:6.1f} µs CPU, "
                  f"{1e6 * wall / n:6.1f} µs wall per object", flush=True)
            together = not together
        for together, (cpu_s, wall_s, count) in totals.items():
            way = "one transaction per group of envelopes" if together else "one transaction per envelope"
            if count:
                print(f"{way}: {1e6 * cpu_s / count:.1f} µs CPU, {1e6 * wall_s / count:.1f} µs "
                      f"wall per object over {count:,.0f} objects")
        exchange.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
