"""Lookup latency: single and bulk lookups with 10^6 and 10^7 observables stored.

What is measured, on SQLite and on PostgreSQL (durable: fsync, full-page writes and
synchronous commit on), with the same deterministic data on both:

* single lookups in-process, ``exchange.lookup.lookup(principal, [value])``, one value
  after the other (p50/p99), with this process on one CPU (and PostgreSQL on the same
  CPU: one core in all);
* single lookups over HTTP, ``GET /api/lookup?value=...`` against ``commonwatch serve``
  (uvicorn, one worker) on CPU 0, the client (httpx, keep-alive) on CPU 1;
* bulk lookups of 10^4 values, in-process and ``POST /api/lookup`` (p50/p99 of a few
  repetitions, each with a different draw of values).

The values looked up are a fixed-seed mix of hits and misses: IPv4 addresses (stored,
inside a stored CIDR, unknown), domains (stored, subdomains of stored ones, unknown),
URLs (stored, some defanged; unknown) and MD5/SHA-1/SHA-256 hashes (stored, unknown).
The reader is a member organisation that cannot see everything: it is not a member of
one of the three communities, may receive up to TLP:RED (when named) in one and only
TLP:GREEN in another; four other organisations produce the data. A stored value the
reader cannot see answers like an unknown one, so "found" is lower than "stored".

The tables are **bulk-loaded**, not ingested (ingesting 10^7 observables through TAXII
would take hours): objects are generated deterministically (80% indicators whose
patterns join 1-9 values with OR, as feeds do, about 2% of them revised with a new
version and sometimes another TLP; SCOs; sightings and opinions of earlier
indicators), and each row is what ingest would write for it: the TLP from
:func:`commonwatch.domain.markings.effective_tlp`, TLP:RED recipients from
:func:`commonwatch.domain.markings.red_recipients`, ``is_latest`` as ingest sets it, the
index rows of SCOs, sightings and opinions from
:func:`commonwatch.domain.indexing.index_entries`, those of indicators from the values
their pattern was built from — running the pattern parser on 10^7 values would take
most of the run, so ``index_entries`` confirms them on a fixed 1-in-50 sample
(``--check-every``) and any difference stops the run. Before loading, the first 2,000
generated objects are posted through the real ingest service, each by its producer,
and every stored row is compared with the bulk load's (all columns but date_added).
The observable and reference indexes are dropped during the load and created again
after it (same definitions, read from the schema); then ANALYZE. The 10^7 database
extends the 10^6 one (same first objects). PostgreSQL gets a copy of the SQLite
rows by COPY (foreign keys dropped during the load and re-added, i.e. validated).

Run (``pip install -e '.[bench,test,postgres]'`` first)::

    .venv/bin/python bench/lookup.py            # full run, writes its section of docs/benchmarks.md
    .venv/bin/python bench/lookup.py --quick    # < 2 minutes: 10^5 observables, SQLite only
    .venv/bin/python bench/lookup.py --observables 1000000 --skip-postgres --keep /tmp/x
    .venv/bin/python bench/lookup.py --reuse /tmp/x   # measure again on a kept SQLite database

``--reuse DIR`` skips generating and loading: it measures (in-process and over HTTP,
with a fresh reader token) the SQLite database a ``--keep DIR`` run left there, with
the same draws of values as that run, and prints the latency table (no file written).

Targets (printed, not asserted): single lookup p99 <= 5 ms at 10^7 observables on one
core; bulk lookup of 10^4 values <= 1 s.
"""

from __future__ import annotations

import argparse
import hashlib
import multiprocessing
import os
import random
import shutil
import sqlite3
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import httpx
import orjson
from rich.console import Console

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    CLIENT_CPU,
    ROOT,
    SERVER_CPU,
    TLP2,
    DurablePostgres,
    ServerProcess,
    can_pin,
    contention,
    free_port,
    machine,
    markdown_table,
    percentile,
    pin_self,
    pinned,
    tree_cpu,
    write_section,
)

from commonwatch.domain.indexing import index_entries  # noqa: E402
from commonwatch.domain.markings import Tlp, effective_tlp, red_recipients  # noqa: E402
from commonwatch.domain.timestamps import format_timestamp, parse_timestamp  # noqa: E402

DOC = ROOT / "docs" / "benchmarks.md"
BULK = 10_000
CHUNK = 2_000  # objects per generation task; a revision follows its original in one chunk
POPULAR = 20_000  # values shared by many indicators (reported by several organisations)
BASE_US = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z
RECIPIENTS_EXTENSION = "extension-definition--0670745e-9e01-51df-8959-798bd7b67d04"
SCO_NAMESPACE = uuid.UUID("00abedb4-aa42-466c-9c01-fed23315a9b7")  # STIX 2.1 §2.9
WORDS = ("update", "cdn", "secure", "login", "mail", "portal", "static", "api", "sync",
         "cloud", "files", "auth", "billing", "support", "vpn", "edge")
TLDS = ("com", "net", "org", "info", "xyz", "top", "ru", "cn", "io", "biz")
OPINIONS = ("strongly-disagree", "disagree", "neutral", "agree", "strongly-agree")
#: (cumulative share, marking): TLP 2.0 mostly, some TLP 1.0, some unmarked, 2% RED.
MARKINGS = ((0.25, "clear"), (0.60, "green"), (0.78, "amber"), (0.84, "amber+strict"),
            (0.87, "marking-definition--613f2e26-407d-48c7-9eca-b8e91df99dc9"),
            (0.90, "marking-definition--34098fce-860f-48ae-8e50-ebd3cc5e41da"),
            (0.98, None), (1.0, "red"))
MASK = 2**64 - 1
console = Console(stderr=True, highlight=False)


def say(message: str) -> None:
    console.print(f"[{time.strftime('%H:%M:%S')}] {message}")


# --- the sharing set-up ------------------------------------------------------------------

# name, sector, fixed STIX identity (so the data is the same on every database)
ORGS = (
    ("Lookup CERT", "government", "identity--0b1d5c6e-1a2b-4c3d-8e4f-5a6b7c8d9e01"),
    ("Lookup ISP", "operator", "identity--0b1d5c6e-1a2b-4c3d-8e4f-5a6b7c8d9e02"),
    ("Lookup Bank", "end-user", "identity--0b1d5c6e-1a2b-4c3d-8e4f-5a6b7c8d9e03"),
    ("Lookup Vendor", "vendor", "identity--0b1d5c6e-1a2b-4c3d-8e4f-5a6b7c8d9e04"),
    ("Lookup Reader", "operator", "identity--0b1d5c6e-1a2b-4c3d-8e4f-5a6b7c8d9e05"),
)
READER = 4  # index in ORGS
# name, default TLP, share of the objects, {member org index: max TLP}
COMMUNITIES = (
    ("lookup-national", Tlp.AMBER, 0.5,
     {0: Tlp.RED, 1: Tlp.RED, 2: Tlp.AMBER, 3: Tlp.AMBER, READER: Tlp.RED}),
    ("lookup-finance", Tlp.GREEN, 0.3, {0: Tlp.RED, 2: Tlp.RED, 3: Tlp.AMBER, READER: Tlp.GREEN}),
    ("lookup-closed", Tlp.AMBER, 0.2, {0: Tlp.RED, 1: Tlp.RED, 3: Tlp.RED}),
)
READER_USER = "lookup-reader"


@dataclass
class Setup:
    """What the generator needs of a prepared database (the same on every database)."""

    org_ids: list[int]
    community_ids: list[int]
    id_base: int  # first stix_objects row id of the generated objects
    added_base: int  # date_added of object k is added_base + k
    reader_token: str


def prepare(database_url: str) -> Setup:
    """Organisations, users, communities and memberships; returns the ids to generate with."""
    from sqlalchemy import text

    from commonwatch.config import load_settings
    from commonwatch.services.exchange import Exchange

    exchange = Exchange(load_settings(environ={}, database_url=database_url))
    try:
        admin = exchange.admin
        org_ids = [admin.create_org(name, sector, "LU").id for name, sector, _ in ORGS]
        admin.create_user(ORGS[READER][0], READER_USER, "reader")
        token = admin.create_token(READER_USER, "benchmark").secret
        community_ids = []
        for name, default_tlp, _, members in COMMUNITIES:
            community_ids.append(admin.create_community(name, default_tlp=default_tlp).id)
            for org, max_tlp in members.items():
                admin.set_membership(ORGS[org][0], name, True, True, max_tlp)
        with exchange.engine.begin() as conn:
            for name, _, identity in ORGS:
                conn.execute(text("UPDATE organisations SET identity_id = :i WHERE name = :n"),
                             {"i": identity, "n": name})
            top = conn.execute(text("SELECT max(id), max(date_added_us) FROM stix_objects")).one()
        return Setup(org_ids, community_ids, int(top[0]) + 1, int(top[1]) + 1, token)
    finally:
        exchange.close()


# --- deterministic data ------------------------------------------------------------------


def mix(k: int, salt: int) -> int:
    """splitmix64 of (k, salt): a cheap, well-spread integer hash."""
    z = (k * 0x9E3779B97F4A7C15 + salt * 0xBF58476D1CE4E5B9 + 0x94D049BB133111EB) & MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return z ^ (z >> 31)


def unit(k: int, salt: int) -> float:
    return mix(k, salt) / 2**64


def ipv4(u: int) -> str:
    n = (u * 2_654_435_761 + 0x0B000000) % 2**32  # odd multiplier: unique for u < 2^32
    return f"{n >> 24}.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}"


def cidr(u: int) -> str:
    prefix = (24, 24, 24, 24, 24, 24, 28, 28, 20, 16)[mix(u, 13) % 10]
    n = (u * 2_654_435_761 + 0x0B000000) % 2**32 & (MASK << (32 - prefix)) & 0xFFFFFFFF
    return f"{n >> 24}.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}/{prefix}"


def domain(u: int) -> str:
    h = mix(u, 11)
    return f"{WORDS[h % 16]}-{u:x}.{WORDS[h >> 8 & 15]}.{TLDS[(h >> 16) % len(TLDS)]}"


def url(u: int) -> str:
    h = mix(u, 12)
    return f"https://{domain(u)}/{WORDS[h % 16]}/{WORDS[h >> 8 & 15]}.php?id={h >> 20 & 0xFFFFF}"


def digest(algorithm: str, u: int) -> str:
    return hashlib.new(algorithm, f"cw:{u}".encode()).hexdigest()


# kind of value u by share: (cumulative percent, kind)
VALUE_KINDS = ((34, "ipv4"), (36, "cidr"), (60, "domain"), (76, "url"), (88, "sha256"),
               (96, "md5"), (100, "sha1"))
INDEX_KIND = {"ipv4": "ipv4-addr", "cidr": "ipv4-addr", "domain": "domain-name", "url": "url",
              "sha256": "sha256", "md5": "md5", "sha1": "sha1"}
COMPARISON = {"ipv4": "ipv4-addr:value", "cidr": "ipv4-addr:value", "domain": "domain-name:value",
              "url": "url:value", "sha256": "file:hashes.'SHA-256'", "md5": "file:hashes.MD5",
              "sha1": "file:hashes.'SHA-1'"}


def value_kind(u: int) -> str:
    roll = mix(u, 7) % 100
    return next(kind for share, kind in VALUE_KINDS if roll < share)


def value_of(kind: str, u: int) -> str:
    if kind == "ipv4":
        return ipv4(u)
    if kind == "cidr":
        return cidr(u)
    if kind == "domain":
        return domain(u)
    if kind == "url":
        return url(u)
    return digest(kind, u)


@lru_cache(maxsize=1 << 16)
def base_role(k: int) -> str:
    roll = unit(k, 1)
    if roll < 0.78:
        return "indicator"
    if roll < 0.80:
        return "revision"
    if roll < 0.88:
        return "sco"
    if roll < 0.98:
        return "sighting"
    return "opinion"


@lru_cache(maxsize=1 << 16)
def role(k: int) -> str:
    """What object k is; a revision revises object k-1, an indicator in the same chunk."""
    found = base_role(k)
    if found == "revision" and (k % CHUNK == 0 or base_role(k - 1) != "indicator"):
        return "indicator"
    return found


@lru_cache(maxsize=1 << 16)
def community_of(k: int) -> int:
    if role(k) == "revision":
        k -= 1
    roll = unit(k, 2)
    total = 0.0
    for index, (_, _, share, _) in enumerate(COMMUNITIES):
        total += share
        if roll < total:
            return index
    return len(COMMUNITIES) - 1


def producer_of(k: int) -> int:
    """Index in ORGS of the organisation that posted object k (never the reader's
    community membership it lacks; the reader posts a few objects of its own)."""
    if role(k) == "revision":
        k -= 1
    members = sorted(COMMUNITIES[community_of(k)][3])
    if READER in members and unit(k, 3) < 0.03:
        return READER
    writers = [m for m in members if m != READER]
    return writers[mix(k, 4) % len(writers)]


def stix_id(kind: str, k: int) -> str:
    return f"{kind}--{uuid.UUID(int=mix(k, 5) << 64 | mix(k, 6), version=4)}"


def indicator_values(k: int) -> list[tuple[str, str]]:
    """(kind, value) of each value in indicator k's pattern (revisions: of k-1)."""
    if role(k) == "revision":
        k -= 1
    count = 1 + mix(k, 8) % 9
    units = [k * 16 + j for j in range(count)]
    if mix(k, 9) % 100 < 15:
        units[0] = (mix(k, 10) % POPULAR) * 16
    return [(value_kind(u), value_of(value_kind(u), u)) for u in units]


def _ts(us: int) -> str:
    return format_timestamp(us)


class Generator:
    """Object k as the producer would post it, and the rows ingest would store for it."""

    def __init__(self, setup: Setup, seed: int, check_every: int = 1) -> None:
        self.setup = setup
        self.seed = seed
        self.check_every = check_every  # indicators whose index rows index_entries confirms: 1 in N
        self.checked = 0

    def mark(self, rng: random.Random, obj: dict[str, Any], producer: int) -> None:
        roll = rng.random()
        marking = next(m for share, m in MARKINGS if roll < share)
        if marking is None:
            return
        obj["object_marking_refs"] = [TLP2.get(marking, marking)]
        if marking == "red":
            named = [ORGS[producer][2]]
            if rng.random() < 0.5:
                named.append(ORGS[READER][2] if rng.random() < 0.5 else ORGS[(producer + 1) % 4][2])
            obj["extensions"] = {RECIPIENTS_EXTENSION: {
                "extension_type": "property-extension", "tlp_red_recipients": named}}

    def common(self, kind: str, k: int, producer: int) -> dict[str, Any]:
        created = _ts(BASE_US + k * 500_000)
        return {"type": kind, "spec_version": "2.1", "id": stix_id(kind, k),
                "created_by_ref": ORGS[producer][2], "created": created, "modified": created}

    def indicator(self, k: int, rng: random.Random, producer: int) -> dict[str, Any]:
        values = indicator_values(k)
        groups: list[list[str]] = [[]]
        for kind, value in values:
            if groups[-1] and rng.random() < 0.3:
                groups.append([])
            groups[-1].append(f"{COMPARISON[kind]} = '{value}'")
        pattern = " OR ".join("[" + " OR ".join(g) + "]" for g in groups)
        obj = self.common("indicator", k, producer)
        obj.update({
            "name": f"{values[0][0]} indicator {k}", "pattern": pattern, "pattern_type": "stix",
            "valid_from": obj["created"],
            "indicator_types": [rng.choice(("malicious-activity", "anomalous-activity", "compromised"))],
            "confidence": rng.choice((15, 50, 75, 85, 100)),
            "labels": [rng.choice(("emotet", "qakbot", "lockbit", "mirai", "redline")), "feed"],
        })
        if rng.random() < 0.3:
            obj["description"] = f"Seen by sensor {k % 97} in the last campaign."
        if rng.random() < 0.2:
            obj["external_references"] = [{"source_name": "feed", "external_id": f"F-{k}",
                                           "url": f"https://feed.example/entries/{k}"}]
        return obj

    def target(self, k: int) -> str:
        """An earlier indicator of the same community (a sighting's or opinion's subject)."""
        community = community_of(k)
        start = k - 1 - mix(k, 14) % min(max(k, 1), 5_000)
        for j in range(start, max(start - 200, -1), -1):
            if role(j) == "indicator" and community_of(j) == community:
                return stix_id("indicator", j)
        return stix_id("indicator", k + 10**9)  # a dangling reference: ingest accepts them

    def object(self, k: int) -> dict[str, Any]:
        rng = random.Random(self.seed * 1_000_003 + k)
        producer = producer_of(k)
        kind = role(k)
        obj: dict[str, Any]
        if kind == "revision":
            # the same pattern (the original's generator), a later version, maybe another TLP
            obj = self.indicator(k - 1, random.Random(self.seed * 1_000_003 + k - 1), producer)
            obj["modified"] = _ts(BASE_US + k * 500_000 + 86_400_000_000)
            obj["confidence"] = rng.choice((15, 50, 75, 85, 100))
        elif kind == "indicator":
            obj = self.indicator(k, rng, producer)
        elif kind == "sco":
            u = k * 16
            vkind = value_kind(u)
            value = value_of(vkind, u)
            if vkind in ("ipv4", "cidr", "domain", "url"):
                sco_type = {"ipv4": "ipv4-addr", "cidr": "ipv4-addr",
                            "domain": "domain-name"}.get(vkind, "url")
                props: dict[str, Any] = {"value": value}
            else:
                sco_type = "file"
                props = {"hashes": {{"sha256": "SHA-256", "md5": "MD5", "sha1": "SHA-1"}[vkind]: value}}
            contributing = orjson.dumps(props.get("value") or props["hashes"], option=orjson.OPT_SORT_KEYS)
            obj = {"type": sco_type, "spec_version": "2.1",
                   "id": f"{sco_type}--{uuid.uuid5(SCO_NAMESPACE, contributing.decode())}", **props}
        elif kind == "sighting":
            obj = self.common("sighting", k, producer)
            obj.update({"sighting_of_ref": self.target(k), "where_sighted_refs": [ORGS[producer][2]],
                        "count": rng.randint(1, 500),
                        "first_seen": _ts(BASE_US + k * 500_000 - 3_600_000_000),
                        "last_seen": obj["created"]})
        else:
            obj = self.common("opinion", k, producer)
            obj.update({"object_refs": [self.target(k)], "opinion": rng.choice(OPINIONS),
                        "explanation": "Confirmed on our network."})
        self.mark(rng, obj, producer)
        return obj

    def rows(self, start: int, end: int) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]],
                                                  list[tuple[Any, ...]], list[tuple[Any, ...]]]:
        """stix_objects, object_recipients, observables and object_refs rows of [start, end)."""
        s = self.setup
        objects, recipients, observables, refs = [], [], [], []
        for k in range(start, end):
            obj = self.object(k)
            row_id = s.id_base + k
            community = community_of(k)
            community_id = s.community_ids[community]
            tlp = int(effective_tlp(obj.get("object_marking_refs", ()), COMMUNITIES[community][1]))
            added = s.added_base + k
            stamp = obj.get("modified") or obj.get("created")
            version = parse_timestamp(stamp) if stamp else added
            latest = role(k + 1) != "revision"  # else object k+1 is its newer version
            raw = orjson.dumps(obj)
            content = hashlib.sha256(orjson.dumps(obj, option=orjson.OPT_SORT_KEYS)).hexdigest()
            objects.append((row_id, community_id, obj["id"], obj["type"], "2.1", version, added,
                            s.org_ids[producer_of(k)], tlp, latest, content, raw))
            recipients += [(row_id, identity) for identity in sorted(red_recipients(obj))]
            if obj["type"] == "indicator":
                # The values the pattern was built from, as the index names them; index_entries
                # (the pattern parser) is checked to agree on a fixed sample of indicators.
                found = tuple(dict.fromkeys((INDEX_KIND[kind], value) for kind, value in indicator_values(k)))
                related: tuple[tuple[str, str], ...] = ()
                if mix(k, 15) % self.check_every == 0:
                    self.checked += 1
                    if index_entries(obj) != (found, related):
                        raise RuntimeError(f"object {k}: index_entries gives {index_entries(obj)}, "
                                           f"the bulk load would write {found}")
            else:
                found, related = index_entries(obj)
            observables += [(row_id, community_id, kind, value) for kind, value in found]
            refs += [(row_id, community_id, relation, target) for relation, target in related]
        return objects, recipients, observables, refs


_WORKER: Generator | None = None


def _init_worker(setup: Setup, seed: int, check_every: int) -> None:
    global _WORKER
    _WORKER = Generator(setup, seed, check_every)


def _generate(span: tuple[int, int]) -> tuple[Any, ...]:
    assert _WORKER is not None
    before = _WORKER.checked
    return (*_WORKER.rows(*span), _WORKER.checked - before)


# --- bulk load -----------------------------------------------------------------------------

OBJECT_COLUMNS = ("id", "community_id", "stix_id", "type", "spec_version", "version_us",
                  "date_added_us", "producer_org_id", "tlp", "is_latest", "content_hash", "raw")
INDEX_TABLES = ("observables", "object_refs")


@dataclass
class Loaded:
    objects: int = 0  # generated objects (k range end)
    observables: int = 0
    refs: int = 0
    checked: int = 0  # indicators whose index rows were confirmed by index_entries
    types: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0


def sqlite_path(database_url: str) -> str:
    return database_url.split("///", 1)[1]


def load_sqlite(database_url: str, setup: Setup, seed: int, target: int, loaded: Loaded,
                workers: int, check_every: int) -> None:
    """Generate objects from ``loaded.objects`` on until ``target`` observables are stored."""
    start = time.perf_counter()
    conn = sqlite3.connect(sqlite_path(database_url), isolation_level=None)
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("PRAGMA cache_size=-1048576")
    ddl = [sql for (sql,) in conn.execute(
        "SELECT sql FROM sqlite_master WHERE type='index' AND sql IS NOT NULL AND tbl_name IN (?, ?)",
        INDEX_TABLES)]
    for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type='index' AND sql IS NOT NULL "
                                "AND tbl_name IN (?, ?)", INDEX_TABLES).fetchall():
        conn.execute(f"DROP INDEX {name}")
    insert_objects = f"INSERT INTO stix_objects ({', '.join(OBJECT_COLUMNS)}) VALUES ({', '.join('?' * 12)})"
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(workers, initializer=_init_worker, initargs=(setup, seed, check_every)) as pool:
        next_chunk = loaded.objects // CHUNK
        pending: list[Any] = []
        done = False
        while not done:
            while len(pending) < 2 * workers:
                span = (next_chunk * CHUNK, (next_chunk + 1) * CHUNK)
                pending.append(pool.apply_async(_generate, (span,)))
                next_chunk += 1
            objects, recipients, observables, refs, checked = pending.pop(0).get()
            conn.execute("BEGIN")
            conn.executemany(insert_objects, objects)
            conn.executemany("INSERT INTO object_recipients (object_id, identity_id) VALUES (?, ?)",
                             recipients)
            conn.executemany("INSERT INTO observables (object_id, community_id, kind, value) "
                             "VALUES (?, ?, ?, ?)", observables)
            conn.executemany("INSERT INTO object_refs (object_id, community_id, relation, target_id) "
                             "VALUES (?, ?, ?, ?)", refs)
            conn.execute("COMMIT")
            loaded.objects += len(objects)
            loaded.observables += len(observables)
            loaded.refs += len(refs)
            loaded.checked += checked
            loaded.types.update(row[3] for row in objects)
            if loaded.objects % (CHUNK * 100) == 0:
                say(f"  {loaded.objects:,} objects, {loaded.observables:,} observables generated")
            done = loaded.observables >= target
        pool.terminate()
    say(f"  {loaded.objects:,} objects, {loaded.observables:,} observables; creating indexes")
    conn.execute("BEGIN")
    for sql in ddl:
        conn.execute(sql)
    # The CIDR prefix lengths stored per community, as ingest records them.
    conn.execute("INSERT OR IGNORE INTO observable_prefixes (community_id, kind, prefix_len) "
                 "SELECT DISTINCT community_id, kind, CAST(substr(value, instr(value, '/') + 1) AS INTEGER) "
                 "FROM observables WHERE kind IN ('ipv4-addr', 'ipv6-addr') AND value LIKE '%/%'")
    for community_id in setup.community_ids:
        conn.execute("UPDATE communities SET last_added_us = (SELECT max(date_added_us) FROM stix_objects "
                     "WHERE community_id = ?) WHERE id = ?", (community_id, community_id))
    conn.execute("COMMIT")
    conn.execute("ANALYZE")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    loaded.seconds += time.perf_counter() - start


def copy_to_postgres(sqlite_url: str, pg_url: str) -> float:
    """Copy the generated rows the PostgreSQL database lacks from the SQLite file (COPY)."""
    import psycopg

    start = time.perf_counter()
    src = sqlite3.connect(sqlite_path(sqlite_url))
    with psycopg.connect(pg_url.replace("+psycopg", "")) as pg:
        def one(sql: str) -> Any:
            row = pg.execute(sql).fetchone()
            assert row is not None
            return row[0]

        indexes = [sql for (sql,) in pg.execute(
            "SELECT indexdef FROM pg_indexes WHERE tablename IN ('observables', 'object_refs') "
            "AND indexname NOT LIKE '%pkey'")]
        fks = pg.execute(
            "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE contype = 'f' AND conrelid::regclass::text IN ('observables', 'object_refs')").fetchall()
        for table, name, _ in fks:
            pg.execute(f"ALTER TABLE {table} DROP CONSTRAINT {name}")
        for (name,) in pg.execute("SELECT indexname FROM pg_indexes WHERE tablename IN "
                                  "('observables', 'object_refs') AND indexname NOT LIKE '%pkey'").fetchall():
            pg.execute(f"DROP INDEX {name}")
        last_object = one("SELECT coalesce(max(id), 0) FROM stix_objects")
        tables = (
            ("stix_objects", ", ".join(OBJECT_COLUMNS), "id > ?", (last_object,)),
            ("object_recipients", "object_id, identity_id", "object_id > ?", (last_object,)),
            ("observables", "id, object_id, community_id, kind, value", "id > ?",
             (one("SELECT coalesce(max(id), 0) FROM observables"),)),
            ("object_refs", "id, object_id, community_id, relation, target_id", "id > ?",
             (one("SELECT coalesce(max(id), 0) FROM object_refs"),)),
        )
        latest = OBJECT_COLUMNS.index("is_latest")
        for table, columns, where, params in tables:
            with pg.cursor() as cur, cur.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                for row in src.execute(f"SELECT {columns} FROM {table} WHERE {where} ORDER BY 1", params):
                    if table == "stix_objects":
                        row = (*row[:latest], bool(row[latest]), *row[latest + 1:])
                    copy.write_row(row)
            say(f"  copied {table}")
        for table in ("stix_objects", "observables", "object_refs"):
            pg.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                       f"(SELECT max(id) FROM {table}))")
        for prefix in src.execute("SELECT community_id, kind, prefix_len FROM observable_prefixes"):
            pg.execute("INSERT INTO observable_prefixes (community_id, kind, prefix_len) "
                       "VALUES (%s, %s, %s) ON CONFLICT DO NOTHING", prefix)
        for (community_id, last) in src.execute(
                "SELECT id, last_added_us FROM communities").fetchall():
            pg.execute("UPDATE communities SET last_added_us = %s WHERE id = %s", (last, community_id))
        pg.commit()
        say("  creating indexes, validating foreign keys")
        pg.execute("SET maintenance_work_mem = '1GB'")
        for sql in indexes:
            pg.execute(sql)
        for table, name, definition in fks:
            pg.execute(f"ALTER TABLE {table} ADD CONSTRAINT {name} {definition}")
        pg.commit()
        pg.autocommit = True
        pg.execute("VACUUM ANALYZE")
    src.close()
    return time.perf_counter() - start


def verify_against_ingest(seed: int, count: int, workdir: Path) -> str:
    """Post the first ``count`` generated objects through the real ingest, one by one and
    each as its producer, into a fresh SQLite database, and compare every stored row with
    the rows the bulk load writes for them (all columns except date_added)."""
    from sqlalchemy import text

    from commonwatch.config import load_settings
    from commonwatch.services.exchange import Exchange

    url = f"sqlite:///{workdir / 'verify.db'}"
    setup = prepare(url)
    exchange = Exchange(load_settings(environ={}, database_url=url), migrate=False)
    try:
        principals = []
        for index, (name, _, _) in enumerate(ORGS):
            exchange.admin.create_user(name, f"verify-{index}", "analyst")
            principals.append(exchange.auth.principal_for_user(f"verify-{index}"))
        collections = [exchange.admin.get_community(c[0]).collection_id for c in COMMUNITIES]
        generator = Generator(setup, seed)
        for k in range(count):
            status = exchange.ingest.add_objects(principals[producer_of(k)], collections[community_of(k)],
                                                 [generator.object(k)])
            if status.failures or len(status.successes) != 1:
                raise RuntimeError(f"ingest refused generated object {k}: {status.failures}")
        objects, recipients, observables, refs = generator.rows(0, count)
        added = OBJECT_COLUMNS.index("date_added_us")
        with exchange.engine.connect() as conn:
            def stored(sql: str) -> list[tuple[Any, ...]]:
                return sorted(tuple(r) for r in conn.execute(text(sql), {"first": setup.id_base}))

            def unstamped(row: tuple[Any, ...]) -> tuple[Any, ...]:
                """Without date_added, and without the version of an unversioned SCO (its
                date_added, TAXII 2.1 §3.4.1): both depend on the clock."""
                version = None if row[added - 1] == row[added] else row[added - 1]
                return (*row[:added - 1], version, *row[added + 1:])

            checks = (
                ("stix_objects", [unstamped(r) for r in objects], [unstamped(r) for r in stored(
                    f"SELECT {', '.join(OBJECT_COLUMNS)} FROM stix_objects WHERE id >= :first")]),
                ("object_recipients", recipients, stored(
                    "SELECT object_id, identity_id FROM object_recipients WHERE object_id >= :first")),
                ("observables", observables, stored(
                    "SELECT object_id, community_id, kind, value FROM observables "
                    "WHERE object_id >= :first")),
                ("object_refs", refs, stored(
                    "SELECT object_id, community_id, relation, target_id FROM object_refs "
                    "WHERE object_id >= :first")),
            )
        for table, expected, found in checks:
            expected = sorted(tuple(int(x) if isinstance(x, bool) else x for x in r) for r in expected)
            found = sorted(found)
            if expected != found:
                diff = next(((a, b) for a, b in zip(expected, found, strict=False) if a != b), None)
                raise RuntimeError(f"bulk-loaded {table} rows differ from ingest's: "
                                   f"{len(expected)} vs {len(found)} rows; first difference {diff}")
        return (f"Checked: the first {count:,} generated objects posted through the ingest service "
                f"(each by its producer) store exactly the rows the bulk load writes for them "
                f"({len(objects):,} objects, {len(observables):,} observables, {len(refs):,} references, "
                f"{len(recipients):,} TLP:RED recipients; every column compared but date_added, which "
                f"comes from the clock).")
    finally:
        exchange.close()


# --- the values looked up ----------------------------------------------------------------

# category, share in percent
CATEGORIES = (
    ("IPv4 stored", 14), ("IPv4 inside a stored CIDR", 10), ("IPv4 unknown", 8),
    ("domain stored", 10), ("subdomain of a stored domain", 10), ("domain unknown", 6),
    ("URL stored", 7), ("URL stored, defanged", 3), ("URL unknown", 6),
    ("SHA-256 stored", 6), ("MD5 stored", 5), ("SHA-1 stored", 3), ("hash unknown", 8),
)
_WANT = {"IPv4 stored": "ipv4", "IPv4 inside a stored CIDR": "cidr", "domain stored": "domain",
         "subdomain of a stored domain": "domain", "URL stored": "url", "URL stored, defanged": "url",
         "SHA-256 stored": "sha256", "MD5 stored": "md5", "SHA-1 stored": "sha1"}


def stored_value(rng: random.Random, objects: int, kind: str) -> str:
    """A value of ``kind`` from the pattern of a random stored indicator."""
    while True:
        k = rng.randrange(objects)
        if role(k) not in ("indicator", "revision"):
            continue
        found = [value for vkind, value in indicator_values(k) if vkind == kind]
        if found:
            return rng.choice(found)


def draw(rng: random.Random, objects: int, count: int) -> list[tuple[str, str]]:
    """``count`` (category, value) pairs, categories in the shares of CATEGORIES."""
    names = [c for c, _ in CATEGORIES]
    weights = [w for _, w in CATEGORIES]
    out = []
    for category in rng.choices(names, weights, k=count):
        unknown = 4_000_000_000 + rng.randrange(10**8)
        if category == "IPv4 unknown":
            value = ipv4(unknown)
        elif category == "domain unknown":
            value = domain(unknown)
        elif category == "URL unknown":
            value = url(unknown)
        elif category == "hash unknown":
            value = digest(rng.choice(("sha256", "md5", "sha1")), unknown)
        else:
            value = stored_value(rng, objects, _WANT[category])
            if category == "IPv4 inside a stored CIDR":
                network, prefix = value.split("/")
                a, b, c, d = (int(x) for x in network.split("."))
                n = (a << 24 | b << 16 | c << 8 | d) + 1 + rng.randrange(2 ** (32 - int(prefix)) - 2)
                value = f"{n >> 24}.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}"
            elif category == "subdomain of a stored domain":
                value = f"{rng.choice(WORDS)}{rng.randrange(100)}.{value}"
            elif category == "URL stored, defanged":
                value = value.replace("https://", "hxxps://").replace(".", "[.]", 1)
        out.append((category, value))
    return out


# --- measurements --------------------------------------------------------------------------


@dataclass
class Result:
    """The numbers of one database at one size."""

    database: str
    observables: int
    single: list[float] = field(default_factory=list)
    single_http: list[float] = field(default_factory=list)
    bulk: list[float] = field(default_factory=list)
    bulk_http: list[float] = field(default_factory=list)
    found: Counter[str] = field(default_factory=Counter)  # category -> values found
    asked: Counter[str] = field(default_factory=Counter)
    matches: int = 0
    cold_single: float = 0.0
    plan: str = ""
    single_cpu: float = 0.0  # mean CPU seconds per single lookup (this process + PostgreSQL)
    bulk_cpu: float = 0.0  # mean CPU seconds per bulk lookup


def cpu_now(pg_pid: int | None) -> float:
    """CPU seconds used so far by this process and, if given, the PostgreSQL server tree."""
    return time.process_time() + (tree_cpu(pg_pid) if pg_pid else 0.0)


def in_process(database_url: str, singles: list[tuple[str, str]], bulks: list[list[str]],
               result: Result, pin: bool, pg_pid: int | None) -> None:
    """Single and bulk lookups through ``exchange.lookup.lookup`` in this process, with
    the garbage collector tuned as ``commonwatch serve`` and the CLI tune it."""
    from commonwatch.config import load_settings
    from commonwatch.process import tune_for_throughput
    from commonwatch.services.exchange import Exchange

    pin_self(SERVER_CPU, pin)
    exchange = Exchange(load_settings(environ={}, database_url=database_url), migrate=False)
    tune_for_throughput()
    try:
        principal = exchange.auth.principal_for_user(READER_USER)
        start = time.perf_counter()
        exchange.lookup.lookup(principal, [singles[0][1]])
        result.cold_single = time.perf_counter() - start
        for _, value in singles[1:50]:  # warm the statement caches
            exchange.lookup.lookup(principal, [value])
        cpu = cpu_now(pg_pid)
        for category, value in singles:
            start = time.perf_counter()
            answer = exchange.lookup.lookup(principal, [value])[0]
            result.single.append(time.perf_counter() - start)
            if answer.error is not None:
                raise RuntimeError(f"{value!r} was refused: {answer.error}")
            result.asked[category] += 1
            result.found[category] += bool(answer.matches)
            result.matches += len(answer.matches)
        result.single_cpu = (cpu_now(pg_pid) - cpu) / len(singles)
        cpu = cpu_now(pg_pid)
        for values in bulks:
            start = time.perf_counter()
            answers = exchange.lookup.lookup(principal, values)
            result.bulk.append(time.perf_counter() - start)
            assert len(answers) == len(values)
        result.bulk_cpu = (cpu_now(pg_pid) - cpu) / len(bulks)
        result.plan = explain(exchange, principal, singles)
    finally:
        exchange.close()
        pin_self(CLIENT_CPU, pin)


def explain(exchange: Any, principal: Any, singles: list[tuple[str, str]]) -> str:
    """The plan of the observables statement (all the reader's communities) for one IPv4 value."""
    from commonwatch.domain.correlation import classify, keys_for
    from commonwatch.services import lookup_sql as service
    from commonwatch.services import statements as sql
    from commonwatch.storage.index import stored_prefixes

    value = next(v for c, v in singles if c == "IPv4 stored")
    observable = classify(value)
    assert observable is not None
    dialect = exchange.engine.dialect.name
    with exchange.engine.connect() as conn:
        readable = exchange.query.collections(principal, conn)
        prefixes = stored_prefixes(conn, [c.id for c, _ in readable])
        keys = [k.value for k in keys_for(observable, prefixes)]
        statement = service.observables_query(tuple(sql.Sight.of(k) for _, k in readable), dialect)
        text, names, params = sql.compiled(statement, conn.dialect)
        for n, (community, clearance) in enumerate(readable):
            params |= service.community_params(n, community.id, clearance)
        params |= {"kind": observable.kind, "values": service.bind(keys, dialect)}
        cursor = conn.connection.driver_connection.cursor()
        if dialect == "sqlite":
            assert names is not None
            rows = cursor.execute("EXPLAIN QUERY PLAN " + text, [params[n] for n in names]).fetchall()
            return "\n".join(f"{r[0]} {r[1]} {r[3]}" for r in rows)
        cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + text, params)
        return "\n".join(r[0] for r in cursor.fetchall())


def over_http(database_url: str, token: str, singles: list[tuple[str, str]], bulks: list[list[str]],
              result: Result, workdir: Path, pin: bool) -> None:
    """GET /api/lookup per value and POST /api/lookup per bulk list against ``commonwatch serve``."""
    port = free_port()
    env = dict(os.environ, COMMONWATCH_DATABASE_URL=database_url, COMMONWATCH_LOG_LEVEL="warning")
    cmd = [str(Path(sys.executable).parent / "commonwatch"), "serve", "--host", "127.0.0.1",
           "--port", str(port)]
    base = f"http://127.0.0.1:{port}"
    with ServerProcess(pinned(cmd, SERVER_CPU, pin), env, workdir / "server.log", f"{base}/taxii2/"), \
            httpx.Client(base_url=base, timeout=600, headers={"Authorization": f"Bearer {token}"}) as client:
        def get(value: str) -> bytes:
            response = client.get("/api/lookup", params={"value": value})
            if response.status_code != 200:
                raise RuntimeError(f"GET /api/lookup answered {response.status_code}: {response.text[:300]}")
            return response.content

        for _, value in singles[:50]:
            get(value)
        for _, value in singles:
            start = time.perf_counter()
            get(value)
            result.single_http.append(time.perf_counter() - start)
        for values in bulks:
            start = time.perf_counter()
            response = client.post("/api/lookup", json={"values": values})
            result.bulk_http.append(time.perf_counter() - start)
            if response.status_code != 200 or len(orjson.loads(response.content)["results"]) != len(values):
                raise RuntimeError(f"POST /api/lookup answered {response.status_code}: {response.text[:300]}")


def measure(name: str, database_url: str, setup: Setup, loaded: Loaded, args: argparse.Namespace,
            workdir: Path, pin: bool, pg_pid: int | None = None) -> Result:
    rng = random.Random(args.seed * 7 + loaded.observables)
    singles = draw(rng, loaded.objects, args.singles)
    bulks = [[v for _, v in draw(rng, loaded.objects, BULK)] for _ in range(args.bulk_repeats)]
    result = Result(name, loaded.observables)
    say(f"  {name}: {len(singles):,} single and {len(bulks)} bulk lookups in-process")
    in_process(database_url, singles, bulks, result, pin, pg_pid)
    say(f"  {name}: single p50/p99 {ms(percentile(result.single, .5))}/"
        f"{ms(percentile(result.single, .99))} ms,"
        f" bulk p50 {percentile(result.bulk, .5):.2f} s; now over HTTP")
    over_http(database_url, setup.reader_token, singles, bulks, result, workdir, pin)
    say(f"  {name}: HTTP single p50/p99 {ms(percentile(result.single_http, .5))}/"
        f"{ms(percentile(result.single_http, .99))} ms, bulk p50 {percentile(result.bulk_http, .5):.2f} s")
    return result


# --- report --------------------------------------------------------------------------------


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f}"


def latency_table(results: Sequence[Result]) -> str:
    rows = []
    for r in results:
        rows.append((r.database, f"{r.observables:,}",
                     ms(percentile(r.single, .5)), ms(percentile(r.single, .99)), ms(r.single_cpu),
                     ms(percentile(r.single_http, .5)), ms(percentile(r.single_http, .99)),
                     f"{percentile(r.bulk, .5):.2f}", f"{max(r.bulk):.2f}", f"{r.bulk_cpu:.2f}",
                     f"{percentile(r.bulk_http, .5):.2f}", f"{max(r.bulk_http):.2f}"))
    return markdown_table(
        ("database", "observables", "single p50 ms", "single p99 ms", "single CPU ms (mean)",
         "HTTP single p50 ms", "HTTP single p99 ms", "bulk 10^4 p50 s", "bulk max s", "bulk CPU s (mean)",
         "HTTP bulk p50 s", "HTTP bulk max s"), rows)


def found_table(results: Sequence[Result]) -> str:
    header = ["category", "share"] + [f"found, {r.database} {r.observables:,}" for r in results]
    rows = []
    for category, share in CATEGORIES:
        rows.append([category, f"{share}%"] + [
            f"{r.found[category] / r.asked[category]:.0%}" if r.asked[category] else "-" for r in results])
    return markdown_table(header, rows)


def target_table(results: Sequence[Result]) -> str:
    rows = []
    for r in results:
        if r.observables < 5_000_000 and any(x.observables >= 5_000_000 for x in results):
            continue
        p99, bulk = percentile(r.single, .99), percentile(r.bulk, .5)
        rows.append((r.database, f"{r.observables:,}", f"{ms(p99)} ms",
                     "met" if p99 <= 0.005 else "**missed**", f"{bulk:.2f} s (max {max(r.bulk):.2f} s)",
                     "met" if max(r.bulk) <= 1.0 else "**missed**"))
    return markdown_table(("database", "observables", "single p99 (target <= 5 ms)", "",
                           "bulk 10^4 in-process (target <= 1 s)", ""), rows)


def data_table(database_url: str) -> str:
    conn = sqlite3.connect(sqlite_path(database_url))
    rows = []
    tlps = {int(t): t.label for t in Tlp}
    for name, _, _, members in COMMUNITIES:
        counts = dict(conn.execute(
            "SELECT o.tlp, count(*) FROM stix_objects o JOIN communities c ON c.id = o.community_id "
            "WHERE c.name = ? GROUP BY o.tlp", (name,)).fetchall())
        observables = conn.execute(
            "SELECT count(*) FROM observables b JOIN communities c ON c.id = b.community_id "
            "WHERE c.name = ?", (name,)).fetchone()[0]
        reader = members.get(READER)
        by_tlp = ", ".join(f"{tlps[t]} {n:,}" for t, n in sorted(counts.items()))
        rows.append((name, f"{observables:,}", by_tlp,
                     "not a member" if reader is None else f"reads up to {reader.label}"))
    conn.close()
    return markdown_table(("community", "observables", "object versions by TLP", "the reader"), rows)


def render(args: argparse.Namespace, results: Sequence[Result], data: dict[int, tuple[Loaded, str]],
           notes: list[str], pg_settings: dict[str, str] | None) -> str:
    parts = [f"Run at {time.strftime('%Y-%m-%d %H:%M %Z')} with "
             f"`python bench/lookup.py {' '.join(sys.argv[1:])}`.\n"]
    m = machine()
    lines = [f"- Machine: {m['cpus']} CPUs ({m['cpu']}), {m['memory']}, Python {m['python']}, {m['os']}.",
             "- **The tables were bulk-loaded**, not ingested: generated objects, with the rows ingest "
             "would write for each (TLP from `effective_tlp`, TLP:RED recipients, `is_latest`; index "
             "rows of indicators from the values their pattern was built from, confirmed with "
             "`index_entries` on a fixed sample, those of other objects from `index_entries`), "
             "indexes created after the load, then ANALYZE "
             "(PostgreSQL: COPY of the same rows, foreign keys re-added and validated, VACUUM ANALYZE).",
             "- Single lookups in-process: this process pinned to one CPU, PostgreSQL on the same CPU. "
             "HTTP: `commonwatch serve` (and PostgreSQL) on CPU 0, the client on CPU 1, keep-alive.",
             f"- {args.singles:,} single lookups and {args.bulk_repeats} bulk lookups of {BULK:,} values "
             "per database and size, after 50 warm-up lookups; every bulk list is a new draw.",
             "- The reader is `Lookup Reader` (operator), a member of two of the three communities "
             "(TLP:RED when named in one, TLP:GREEN in the other); four organisations produce the data."]
    if pg_settings:
        lines.append(f"- PostgreSQL {pg_settings['server_version']}: fsync={pg_settings['fsync']}, "
                     f"synchronous_commit={pg_settings['synchronous_commit']}, "
                     f"full_page_writes={pg_settings['full_page_writes']}.")
    lines += [f"- {n}" for n in notes]
    parts.append("\n".join(lines))
    for size, (loaded, table) in sorted(data.items()):
        types = ", ".join(f"{t} {n:,}" for t, n in loaded.types.most_common())
        parts.append(f"\n### Data at {size:,} observables\n\n{loaded.objects:,} object versions "
                     f"({types}); {loaded.observables:,} observable rows, {loaded.refs:,} reference "
                     f"rows; generated and loaded into SQLite in {loaded.seconds:.0f} s. The index rows of "
                     f"{loaded.checked:,} indicators (1 in {args.check_every}, a fixed sample) were "
                     "confirmed with `index_entries`, which parses the pattern.\n")
        parts.append(table)
    parts.append("\n### Latency\n\nIn-process unless marked HTTP. CPU: CPU time of the looking-up "
                 "process plus the PostgreSQL server, per lookup (less sensitive than wall time to "
                 "other work on the machine).\n")
    parts.append(latency_table(results))
    parts.append("\n### Values looked up, and how many the reader found\n\nA stored value the reader "
                 "cannot see (its community, its TLP) is not found.\n")
    parts.append(found_table(results))
    parts.append("\n### Targets (from the issue; printed, not asserted)\n")
    parts.append(target_table(results))
    for r in results:
        if r.plan:
            parts.append(f"\n<details><summary>Plan of the observables statement (all the reader's "
                         f"communities), {r.database}, {r.observables:,} observables, one IPv4 value and "
                         f"its containing networks</summary>\n\n```\n{r.plan}\n```\n</details>")
    return "\n".join(parts) + "\n"


# --- main ------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--observables", type=int, nargs="+", default=[1_000_000, 10_000_000],
                        help="sizes to measure, in observable rows (each extends the previous)")
    parser.add_argument("--singles", type=int, default=2_000, help="single lookups per database and size")
    parser.add_argument("--bulk-repeats", type=int, default=5, help="bulk lookups per database and size")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--skip-sqlite", action="store_true", help="measure PostgreSQL only")
    parser.add_argument("--skip-postgres", action="store_true")
    parser.add_argument("--quick", action="store_true", help="< 2 minutes: 10^5 observables, SQLite only")
    parser.add_argument("--reuse", type=Path, metavar="DIR",
                        help="measure again on the SQLite database a --keep DIR run left (print only)")
    parser.add_argument("--no-pin", action="store_true", help="do not pin processes to CPUs")
    parser.add_argument("--verify", type=int, default=2_000,
                        help="objects posted through ingest to check the bulk-loaded rows against")
    parser.add_argument("--check-every", type=int, default=50, metavar="N",
                        help="confirm the index rows of 1 in N indicators with index_entries "
                             "(1: every indicator, slow: the pattern parser dominates the load)")
    parser.add_argument("--workers", type=int, default=2, help="processes generating the data")
    parser.add_argument("--keep", type=Path, metavar="DIR",
                        help="keep the SQLite database in DIR (default: a temporary folder, removed)")
    parser.add_argument("--docs", type=Path, default=None,
                        help=f"Markdown file to update (default {DOC.relative_to(ROOT)}; none with --quick)")
    parser.add_argument("--no-docs", action="store_true")
    args = parser.parse_args(argv)
    if args.reuse:
        args.no_docs = True
    if args.quick:
        args.observables, args.skip_postgres = [100_000], True
        args.singles, args.bulk_repeats = 300, 2
    args.observables = sorted(args.observables)
    if args.docs is None and not args.quick and not args.no_docs:
        args.docs = DOC
    return args


@dataclass
class Postgres:
    server: DurablePostgres
    url: str
    setup: Setup


def start_postgres(pin: bool) -> Postgres:
    import psycopg

    server = DurablePostgres(pin).start()
    with psycopg.connect(server.url().replace("+psycopg", ""), autocommit=True) as conn:
        conn.execute("CREATE DATABASE commonwatch_lookup")
    url = server.url("commonwatch_lookup")
    return Postgres(server, url, prepare(url))


def disk(path: Path) -> str:
    usage = shutil.disk_usage(path)
    return f"{usage.free / 2**30:.0f} GiB free"


Sizes = dict[int, tuple[Loaded, str]]


@dataclass
class State:
    """What a run has measured so far (rendered even if a later step fails)."""

    results: list[Result] = field(default_factory=list)
    data: Sizes = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    pg_settings: dict[str, str] | None = None


def run(args: argparse.Namespace, workdir: Path, pin: bool, state: State) -> None:
    sqlite_url = f"sqlite:///{workdir / 'lookup.db'}"
    setup = prepare(sqlite_url)
    pg: Postgres | None = None
    loaded = Loaded()
    say(f"checking the generator against the ingest service ({args.verify:,} objects)")
    state.notes.append(verify_against_ingest(args.seed, args.verify, workdir))
    try:
        if not args.skip_postgres:
            pg = start_postgres(pin)
            state.pg_settings = pg.server.settings()
            if (pg.setup.org_ids, pg.setup.community_ids, pg.setup.id_base) != (
                    setup.org_ids, setup.community_ids, setup.id_base):
                raise RuntimeError("PostgreSQL was set up with other ids than SQLite; cannot copy rows")
        for size in args.observables:
            say(f"generating and loading up to {size:,} observables into SQLite ({disk(workdir)})")
            load_sqlite(sqlite_url, setup, args.seed, size, loaded, args.workers, args.check_every)
            snapshot = Loaded(loaded.objects, loaded.observables, loaded.refs, loaded.checked,
                              Counter(loaded.types), loaded.seconds)
            state.data[size] = (snapshot, data_table(sqlite_url))
            say(f"  loaded in {loaded.seconds:.0f} s; SQLite file "
                f"{os.path.getsize(sqlite_path(sqlite_url)) / 2**30:.1f} GiB ({disk(workdir)})")
            if not args.skip_sqlite:
                state.results.append(measure("SQLite", sqlite_url, setup, snapshot, args, workdir, pin))
                partial(args, state)
            if pg is not None:
                say("copying the new rows to PostgreSQL")
                seconds = copy_to_postgres(sqlite_url, pg.url)
                state.notes.append(f"PostgreSQL copy (COPY, indexes, foreign keys, VACUUM ANALYZE) up to "
                                   f"{snapshot.observables:,} observables: {seconds:.0f} s.")
                say(f"  copied in {seconds:.0f} s ({disk(workdir)})")
                state.results.append(measure("PostgreSQL", pg.url, pg.setup, snapshot, args, workdir, pin,
                                             pg.server.postmaster_pid()))
                partial(args, state)
        state.notes.append(f"Machine load at the end: {contention()}.")
    finally:
        if pg is not None:
            pg.server.stop()


def partial(args: argparse.Namespace, state: State) -> None:
    """Write what is measured so far (the final write replaces it)."""
    r = state.results[-1]
    say(f"  {r.database} at {r.observables:,}: CPU per single lookup {ms(r.single_cpu)} ms, "
        f"per bulk lookup {r.bulk_cpu:.2f} s")
    if args.docs and not args.no_docs:
        write_section(args.docs, "lookup.py", "(partial results: the run is still going)\n\n"
                   + render(args, state.results, state.data, state.notes, state.pg_settings))


def reuse(args: argparse.Namespace, pin: bool) -> None:
    """Measure a kept SQLite database again (``--reuse DIR``)."""
    from commonwatch.config import load_settings
    from commonwatch.services.exchange import Exchange

    url = f"sqlite:///{args.reuse / 'lookup.db'}"
    with sqlite3.connect(sqlite_path(url)) as conn:
        # Every stored version but the exchange's own (its identity and the TLP:RED
        # extension definition, published in each community) is a generated object.
        objects = conn.execute("SELECT count(*) FROM stix_objects WHERE type NOT IN "
                               "('identity', 'extension-definition')").fetchone()[0]
        observables = conn.execute("SELECT count(*) FROM observables").fetchone()[0]
    exchange = Exchange(load_settings(environ={}, database_url=url), migrate=False)
    try:
        token = exchange.admin.create_token(READER_USER, "benchmark (reuse)").secret
    finally:
        exchange.close()
    setup = Setup([], [], 0, 0, token)
    say(f"reusing {url}: {objects:,} generated objects, {observables:,} observables")
    result = measure("SQLite", url, setup, Loaded(objects=objects, observables=observables), args,
                     args.reuse, pin)
    print(latency_table([result]))
    print()
    print(target_table([result]))
    print(f"\nMachine load at the end: {contention()}.")


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    pin = can_pin() and not args.no_pin
    pin_self(CLIENT_CPU, pin)
    if args.reuse:
        reuse(args, pin)
        return
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
    workdir = args.keep or Path(tempfile.mkdtemp(prefix="cw-lookup-"))
    say(f"working in {workdir} ({disk(workdir)}); pinning {'on' if pin else 'off'}")
    started = time.perf_counter()
    state = State()
    failed: BaseException | None = None
    try:
        run(args, workdir, pin, state)
    except (Exception, KeyboardInterrupt) as exc:  # report what was measured, then fail
        failed = exc
        state.notes.append(f"**The run stopped early**: {type(exc).__name__}: {exc}")
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    state.notes.append(f"Whole run: {(time.perf_counter() - started) / 60:.1f} minutes.")
    if state.results:
        section = render(args, state.results, state.data, state.notes, state.pg_settings)
        print(section)
        if args.docs and not args.no_docs:
            write_section(args.docs, "lookup.py", section)
    if failed is not None:
        raise failed


if __name__ == "__main__":
    main()
