"""Helpers shared by the benchmarks: a deterministic STIX corpus, pinned server
processes, a durable throwaway PostgreSQL, timing statistics and Markdown tables.

Nothing here measures anything by itself; ``bench/taxii.py`` drives it.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import random
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from support.postgres import TempPostgres  # noqa: E402

# --- CPU pinning ---------------------------------------------------------------------

SERVER_CPU = 0
CLIENT_CPU = 1


def can_pin() -> bool:
    """Pinning needs two CPUs we may use and the ``taskset`` tool for child processes."""
    return (
        hasattr(os, "sched_setaffinity")
        and {SERVER_CPU, CLIENT_CPU} <= os.sched_getaffinity(0)
        and shutil.which("taskset") is not None
    )


def pinned(cmd: Sequence[str], cpu: int, pin: bool) -> list[str]:
    """``cmd`` run under ``taskset -c cpu`` when pinning is on."""
    return ["taskset", "-c", str(cpu), *cmd] if pin else list(cmd)


def pin_self(cpu: int, pin: bool) -> None:
    """Move this (single-threaded) process to ``cpu``; what ``taskset -c`` does."""
    if pin:
        os.sched_setaffinity(0, {cpu})


# --- CPU time (robust against other load on the machine) -------------------------------

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, user+system CPU seconds including waited-for children) of ``pid``."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(fields[1]), sum(int(f) for f in fields[11:15]) / _TICK


def tree_cpu(root: int) -> float:
    """CPU seconds used so far by ``root`` and all its descendants (Linux /proc)."""
    stats = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            found = _stat(int(entry.name))
            if found is not None:
                stats[int(entry.name)] = found
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        if pid in stats:
            total += stats[pid][1]
            todo.extend(child for child, (parent, _) in stats.items() if parent == pid)
    return total


def contention() -> str:
    """Load average and CPU pressure: other work on the machine skews wall-clock rates."""
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    try:
        pressure = Path("/proc/pressure/cpu").read_text().splitlines()[0]
    except OSError:
        pressure = "n/a"
    return f"load average {load}; CPU pressure `{pressure}`"


# --- deterministic STIX 2.1 corpus ------------------------------------------------------

TLP2 = {
    "clear": "marking-definition--94868c89-83c2-464b-929b-a1a8aa3c8487",
    "green": "marking-definition--bab4a63c-aed9-4cf5-a766-dfca5abac2bb",
    "amber": "marking-definition--55d920b0-5e8b-4f79-9ee9-91f868d9b421",
    "amber+strict": "marking-definition--939a9414-2ddd-4d32-a0cd-375ea402b003",
    "red": "marking-definition--e828b379-4e03-4974-9ac4-e53a884c97c1",
}
TLP1_WHITE = "marking-definition--613f2e26-407d-48c7-9eca-b8e91df99dc9"
TLP1_GREEN = "marking-definition--34098fce-860f-48ae-8e50-ebd3cc5e41da"
RECIPIENTS_EXTENSION = "extension-definition--0670745e-9e01-51df-8959-798bd7b67d04"
SCO_NAMESPACE = uuid.UUID("00abedb4-aa42-466c-9c01-fed23315a9b7")  # STIX 2.1 §2.9
#: (cumulative share, marking) — TLP 2.0 mostly, some TLP 1.0, some unmarked, 1% RED.
MARKINGS = (
    (0.25, "clear"), (0.63, "green"), (0.81, "amber"), (0.86, "amber+strict"),
    (0.89, TLP1_WHITE), (0.92, TLP1_GREEN), (0.99, None), (1.0, "red"),
)
WORDS = ("update", "cdn", "secure", "login", "mail", "portal", "static", "api", "sync",
         "cloud", "files", "auth", "billing", "support", "vpn", "edge")
TLDS = ("com", "net", "org", "info", "xyz", "top", "ru", "cn", "io", "biz")
FAMILIES = ("Emotet", "QakBot", "IcedID", "Cobalt Strike", "AgentTesla", "LockBit",
            "BlackCat", "RedLine", "AsyncRAT", "Mirai", "Gafgyt", "SocGholish")
BASE_TIME = 1_767_225_600  # 2026-01-01T00:00:00Z


@dataclass
class Corpus:
    """Envelopes as the bytes every peer receives, and what is in them."""

    envelopes: list[bytes]
    ids: list[str]
    sizes: list[int] = field(default_factory=list)  # objects per envelope
    types: Counter[str] = field(default_factory=Counter)
    raw_bytes: int = 0

    @property
    def count(self) -> int:
        return len(self.ids)


def _ts(seconds: float) -> str:
    moment = dt.datetime.fromtimestamp(BASE_TIME + seconds, tz=dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


class _Generator:
    """Objects number ``i`` of one envelope; seeded per envelope so any envelope can
    be rebuilt alone and every peer receives exactly the same bytes."""

    def __init__(self, seed: int, producer: str, reader: str) -> None:
        self.rng = random.Random(seed)
        self.producer = producer
        self.reader = reader
        self.indicators: list[str] = []
        self.nodes: list[str] = []

    def uuid4(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def hexdigits(self, n: int) -> str:
        return f"{self.rng.getrandbits(4 * n):0{n}x}"

    def mark(self, obj: dict[str, Any]) -> dict[str, Any]:
        roll = self.rng.random()
        marking = next(m for share, m in MARKINGS if roll < share)
        if marking is None:
            return obj
        obj["object_marking_refs"] = [TLP2.get(marking, marking)]
        if marking == "red":
            obj["extensions"] = {RECIPIENTS_EXTENSION: {
                "extension_type": "property-extension",
                "tlp_red_recipients": [self.producer, self.reader]}}
        return obj

    def sdo(self, kind: str, i: int) -> dict[str, Any]:
        created = _ts(i * 0.731)
        return {"type": kind, "spec_version": "2.1", "id": f"{kind}--{self.uuid4()}",
                "created_by_ref": self.producer, "created": created, "modified": created}

    def ipv4(self, i: int) -> str:
        n = (i * 2_654_435_761 + 0x0B000000) % 2**32  # odd multiplier: unique per i
        return f"{n >> 24}.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}"

    def domain(self, i: int) -> str:
        return f"{self.rng.choice(WORDS)}-{i:x}.{self.rng.choice(WORDS)}.{self.rng.choice(TLDS)}"

    def pattern(self, i: int) -> tuple[str, str]:
        roll = self.rng.random()
        r = self.rng
        if roll < 0.30:
            return "ipv4", f"[ipv4-addr:value = '{self.ipv4(i)}']"
        if roll < 0.38:
            return "ipv4 range", f"[ipv4-addr:value ISSUBSET '{self.ipv4(i)}/{r.choice((24, 28, 32))}']"
        if roll < 0.45:
            groups = ":".join(f"{r.getrandbits(16):x}" for _ in range(6))
            return "ipv6", f"[ipv6-addr:value = '2001:db8:{groups}']"
        if roll < 0.62:
            return "domain", f"[domain-name:value = '{self.domain(i)}']"
        if roll < 0.74:
            path = "/".join(r.choice(WORDS) for _ in range(r.randint(1, 3)))
            return "url", f"[url:value = 'https://{self.domain(i)}/{path}?id={r.getrandbits(32)}']"
        if roll < 0.84:
            return "sha256", f"[file:hashes.'SHA-256' = '{self.hexdigits(64)}']"
        if roll < 0.90:
            return "md5", f"[file:hashes.MD5 = '{self.hexdigits(32)}']"
        if roll < 0.95:
            return "file AND", (f"[file:hashes.MD5 = '{self.hexdigits(32)}' AND "
                                f"file:name = '{r.choice(WORDS)}_{i}.exe']")
        return "OR", (f"[ipv4-addr:value = '{self.ipv4(i)}' OR ipv4-addr:value = "
                      f"'{self.ipv4(i + 7)}'] OR [domain-name:value = '{self.domain(i)}']")

    def indicator(self, i: int) -> dict[str, Any]:
        kind, pattern = self.pattern(i)
        obj = self.sdo("indicator", i)
        obj.update({
            "name": f"{kind} indicator {i}", "pattern": pattern, "pattern_type": "stix",
            "valid_from": obj["created"],
            "indicator_types": [self.rng.choice(("malicious-activity", "anomalous-activity",
                                                 "compromised", "attribution"))],
            "confidence": self.rng.choice((15, 50, 75, 85, 100)),
            "labels": [self.rng.choice(FAMILIES).lower().replace(" ", "-"), "feed"],
        })
        if self.rng.random() < 0.3:
            obj["description"] = f"Seen in {self.rng.choice(FAMILIES)} infrastructure by sensor {i % 97}."
        if self.rng.random() < 0.2:
            obj["external_references"] = [{"source_name": "feed", "external_id": f"F-{i}",
                                           "url": f"https://feed.example/entries/{i}"}]
        self.indicators.append(obj["id"])
        return obj

    def sco(self, i: int) -> dict[str, Any]:
        roll = self.rng.random()
        props: dict[str, Any]
        if roll < 0.4:
            kind, props = "ipv4-addr", {"value": self.ipv4(i)}
        elif roll < 0.7:
            kind, props = "domain-name", {"value": self.domain(i)}
        elif roll < 0.85:
            kind, props = "url", {"value": f"http://{self.domain(i)}/{self.rng.choice(WORDS)}.php"}
        else:
            kind = "file"
            props = {"hashes": {"SHA-256": self.hexdigits(64), "MD5": self.hexdigits(32)},
                     "name": f"{self.rng.choice(WORDS)}_{i}.bin", "size": self.rng.randint(1, 10**7)}
        contributing = orjson.dumps(props.get("value") or props["hashes"], option=orjson.OPT_SORT_KEYS)
        obj = {"type": kind, "spec_version": "2.1",
               "id": f"{kind}--{uuid.uuid5(SCO_NAMESPACE, contributing.decode())}", **props}
        self.nodes.append(obj["id"])
        return obj

    def pick(self, pool: list[str], fallback: str) -> str:
        return self.rng.choice(pool) if pool else fallback

    def relationship(self, i: int) -> dict[str, Any]:
        obj = self.sdo("relationship", i)
        source = self.pick(self.indicators, f"indicator--{self.uuid4()}")
        if self.rng.random() < 0.5 and self.nodes:
            kind, target = "related-to", self.pick(self.nodes, "")
        else:
            kind, target = "indicates", self.pick(self.nodes[-50:], f"malware--{self.uuid4()}")
        obj.update({"relationship_type": kind, "source_ref": source, "target_ref": target})
        return obj

    def sighting(self, i: int) -> dict[str, Any]:
        obj = self.sdo("sighting", i)
        first = _ts(i * 0.731 - 3600)
        obj.update({"sighting_of_ref": self.pick(self.indicators, f"indicator--{self.uuid4()}"),
                    "where_sighted_refs": [self.producer], "count": self.rng.randint(1, 500),
                    "first_seen": first, "last_seen": obj["created"]})
        return obj

    def named(self, i: int) -> dict[str, Any]:
        roll = self.rng.random()
        family = self.rng.choice(FAMILIES)
        if roll < 0.5:
            obj = self.sdo("malware", i)
            obj.update({"name": f"{family} variant {i}", "is_family": False,
                        "malware_types": [self.rng.choice(("ransomware", "trojan", "bot", "backdoor"))]})
        elif roll < 0.8:
            obj = self.sdo("threat-actor", i)
            obj.update({"name": f"Actor {i:x}", "threat_actor_types": ["crime-syndicate"],
                        "aliases": [f"TA{i % 997}", f"{family} operators"]})
        else:
            obj = self.sdo("report", i)
            refs = self.indicators[-5:] or [f"indicator--{self.uuid4()}"]
            obj.update({"name": f"{family} activity report {i}", "published": obj["created"],
                        "report_types": ["threat-report"], "object_refs": refs,
                        "description": f"Weekly summary of {family} infrastructure."})
        self.nodes.append(obj["id"])
        return obj

    def one(self, i: int) -> dict[str, Any]:
        roll = self.rng.random()
        if roll < 0.60:
            obj = self.indicator(i)
        elif roll < 0.80:
            obj = self.sco(i)
        elif roll < 0.90:
            obj = self.relationship(i)
        elif roll < 0.95:
            obj = self.sighting(i)
        else:
            obj = self.named(i)
        return self.mark(obj)


def make_corpus(count: int, envelope_size: int, seed: int, producer: str, reader: str) -> Corpus:
    """``count`` objects in envelopes of ``envelope_size``, the same for every seed."""
    corpus = Corpus(envelopes=[], ids=[])
    for number, start in enumerate(range(0, count, envelope_size)):
        gen = _Generator(seed * 1_000_003 + number, producer, reader)
        objects = [gen.one(i) for i in range(start, min(count, start + envelope_size))]
        body = orjson.dumps({"objects": objects})
        corpus.envelopes.append(body)
        corpus.sizes.append(len(objects))
        corpus.raw_bytes += len(body)
        corpus.ids.extend(o["id"] for o in objects)
        corpus.types.update(o["type"] for o in objects)
    return corpus


def first_objects(corpus: Corpus, count: int) -> bytes:
    """One envelope holding the first ``count`` objects of ``corpus``."""
    objects: list[Any] = []
    for body in corpus.envelopes:
        objects.extend(orjson.loads(body)["objects"])
        if len(objects) >= count:
            break
    return orjson.dumps({"objects": objects[:count]})


# --- processes ---------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerProcess:
    """A server in its own process; ``ready_url`` answering (any status) means up."""

    def __init__(self, cmd: list[str], env: dict[str, str], log: Path, ready_url: str) -> None:
        self.cmd, self.env, self.log, self.ready_url = cmd, env, log, ready_url
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> ServerProcess:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(self.cmd, env=self.env, stdout=out, stderr=out)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited early; see {self.log}")
            try:
                httpx.get(self.ready_url, timeout=1)
                return self
            except httpx.TransportError:
                time.sleep(0.1)
        raise RuntimeError(f"server did not answer within 60 s; see {self.log}")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def __exit__(self, *exc: object) -> None:
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class DurablePostgres(TempPostgres):
    """The test suite's throwaway server, but durable (fsync, full-page writes and
    synchronous commit on, the PostgreSQL defaults) and pinned to the server CPU."""

    def __init__(self, pin: bool) -> None:
        super().__init__(durable=True, wrap=lambda cmd: pinned(cmd, SERVER_CPU, pin))

    def postmaster_pid(self) -> int:
        return int((self.data / "postmaster.pid").read_text().split()[0])

    def settings(self) -> dict[str, str]:
        import psycopg

        with psycopg.connect(self.url().replace("+psycopg", "")) as conn:
            names = ("fsync", "synchronous_commit", "full_page_writes", "server_version")
            return {n: str(conn.execute(f"SHOW {n}").fetchone()[0]) for n in names}  # type: ignore[index]


# --- statistics and tables ------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0-1) by linear interpolation."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    pos = (len(ordered) - 1) * q
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def deciles(values: Sequence[float]) -> tuple[float, float, float]:
    """Median of the first, middle (fifth) and last tenth of ``values``, in order."""
    n = len(values)
    size = max(1, n // 10)
    middle = max(0, n // 2 - size // 2)
    parts = (values[:size], values[middle:middle + size], values[n - size:])
    return tuple(percentile(p, 0.5) for p in parts)  # type: ignore[return-value]


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [[str(c) for c in header]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"
             for row in cells]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def machine() -> dict[str, str]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = "unknown"
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f"{kb / 2**20:.1f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return {"cpus": str(os.cpu_count()), "cpu": model, "memory": mem,
            "python": platform.python_version(), "os": platform.platform()}


def chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def write_section(path: Path, script: str, text: str) -> None:
    """Put ``text`` between ``script``'s markers in ``path`` (docs/benchmarks.md), keeping
    every other section; the markers are appended when the file has none yet."""
    begin, end = f"<!-- bench/{script}:begin -->", f"<!-- bench/{script}:end -->"
    body = path.read_text() if path.exists() else "# Benchmarks\n"
    if begin not in body or end not in body:
        body = body.rstrip("\n") + f"\n\n{begin}\n{end}\n"
    head, rest = body.split(begin, 1)
    _, tail = rest.split(end, 1)
    path.write_text(f"{head}{begin}\n{text.rstrip()}\n{end}{tail}")
