"""Detection throughput: CommonWatch's index engine vs stix2-matcher, from raw log lines.

Side by side in one run, on one core (pinned when the machine allows):

* **orjson decode only** of the same lines: the physical reference (no matching at all);
* **CommonWatch** end to end: raw eve.json / Zeek JSON lines -> adapter -> index engine
  -> matches, with 10^2, 10^4, 10^5 and 10^6 active indicators;
* **stix2-matcher 3.0.0** (the reference, in ``.venv-ref``) called per pattern and per
  observation as its API requires; its rate per (pattern, event) pair is measured on a
  sample and divided by the indicator count (generous to it: the conversion of log lines
  to STIX observed-data is not charged).

The same sample is answered by both matchers and the agreement is reported. Events are
real-shaped: eve.json flow/dns/http/tls/fileinfo/alert and Zeek conn/dns/http JSON lines
modelled on the samples in tests/detect/data, with generated addresses, names, URLs and
hashes; about 2% of events carry a value some indicator names. Rates are CPU-time based
(``time.process_time``), so other load on the machine skews them less.

    python bench/detect.py            # full run, writes its section of docs/benchmarks.md
    python bench/detect.py --quick    # < 2 minutes, 10^2..10^5 indicators, no file written
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
import random
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    CLIENT_CPU,
    ROOT,
    can_pin,
    contention,
    machine,
    markdown_table,
    pin_self,
    pinned,
    write_section,
)

from commonwatch.detect import match  # noqa: E402
from commonwatch.detect.engine import compile_indicators  # noqa: E402
from commonwatch.detect.events import build_observation  # noqa: E402
from commonwatch.domain.timestamps import format_timestamp  # noqa: E402
from commonwatch.formats.telemetry import builtin_adapters  # noqa: E402
from commonwatch.formats.telemetry.source import Problems  # noqa: E402

BENCH_CPU = CLIENT_CPU
DOC = ROOT / "docs" / "benchmarks.md"
REFERENCE_PYTHON = os.environ.get("COMMONWATCH_REFERENCE_PYTHON", str(ROOT / ".venv-ref" / "bin" / "python"))
WORDS = ("update", "cdn", "secure", "login", "mail", "portal", "static", "api", "sync", "cloud", "dl")
TLDS = ("com", "net", "org", "info", "xyz", "top", "ru", "io")


# --- real-shaped telemetry -------------------------------------------------------------------


class Pools:
    """Values events draw from; indicators name a few of them (the hits) and many others."""

    def __init__(self, rng: random.Random) -> None:
        self.ips = [f"{rng.randint(1, 223)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
                    for _ in range(60_000)]
        self.internal = [f"10.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
                         for _ in range(2_000)]
        self.domains = [f"{rng.choice(WORDS)}{rng.randint(0, 99999)}.{rng.choice(WORDS)}.{rng.choice(TLDS)}"
                        for _ in range(40_000)]
        suffixes = ("php", "js", "bin", "exe")
        self.paths = [f"/{rng.choice(WORDS)}/{rng.randint(0, 10**6)}.{rng.choice(suffixes)}"
                      for _ in range(20_000)]
        self.hashes = [hashlib.md5(str(i).encode()).hexdigest() for i in range(20_000)]


def _stamp(rng: random.Random, i: int) -> str:
    seconds = 1_767_225_600 + i // 50
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{rng.randint(0, 999999):06d}+0000"


def eve_lines(n: int, pools: Pools, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    lines = []
    for i in range(n):
        kind = rng.choices(("flow", "dns", "http", "tls", "fileinfo", "alert"), (40, 25, 15, 12, 5, 3))[0]
        src, dst = rng.choice(pools.internal), rng.choice(pools.ips)
        ev: dict[str, Any] = {"timestamp": _stamp(rng, i), "flow_id": rng.randint(10**14, 10**15),
                              "in_iface": "eth0", "event_type": kind, "src_ip": src,
                              "src_port": rng.randint(1024, 65535), "dest_ip": dst,
                              "dest_port": {"dns": 53, "tls": 443}.get(kind, rng.choice((80, 443, 8080))),
                              "proto": "UDP" if kind == "dns" else "TCP"}
        host = rng.choice(pools.domains)
        if kind == "flow":
            ev["app_proto"] = rng.choice(("http", "tls", "failed"))
            ev["flow"] = {"pkts_toserver": rng.randint(1, 900), "pkts_toclient": rng.randint(1, 900),
                          "bytes_toserver": rng.randint(60, 10**6), "bytes_toclient": rng.randint(60, 10**7),
                          "start": ev["timestamp"], "end": ev["timestamp"], "age": rng.randint(0, 60),
                          "state": "closed", "reason": "timeout", "alerted": False}
            ev["tcp"] = {"tcp_flags": "1b", "tcp_flags_ts": "1b", "tcp_flags_tc": "1b", "syn": True,
                         "fin": True, "psh": True, "ack": True, "state": "closed"}
        elif kind == "dns":
            ev["dns"] = {"type": "query", "id": rng.randint(0, 65535), "rrname": host,
                         "rrtype": rng.choice(("A", "AAAA", "TXT")), "tx_id": 0}
        elif kind in ("http", "fileinfo", "alert"):
            ev["http"] = {"hostname": host, "url": rng.choice(pools.paths),
                          "http_user_agent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64)",
                          "http_content_type": "text/html", "http_method": "GET", "protocol": "HTTP/1.1",
                          "status": 200, "length": rng.randint(0, 10**5)}
            if kind == "fileinfo":
                ev["app_proto"] = "http"
                ev["fileinfo"] = {"filename": ev["http"]["url"], "state": "CLOSED", "stored": False,
                                  "size": rng.randint(1, 10**6), "tx_id": 0,
                                  "md5": rng.choice(pools.hashes)}
            if kind == "alert":
                ev["alert"] = {"action": "allowed", "gid": 1, "signature_id": 2013504, "rev": 5,
                               "signature": "ET POLICY Example", "category": "Not Suspicious Traffic",
                               "severity": 3}
        elif kind == "tls":
            ev["tls"] = {"subject": f"CN={host}", "issuerdn": "C=US, O=Let's Encrypt, CN=R3",
                         "serial": f"{rng.getrandbits(64):016X}",
                         "fingerprint": ":".join(f"{rng.getrandbits(8):02x}" for _ in range(20)),
                         "sni": host, "version": "TLS 1.2", "notbefore": "2025-01-01T00:00:00",
                         "notafter": "2026-12-31T00:00:00"}
        lines.append(orjson.dumps(ev) + b"\n")
    return lines


def zeek_lines(n: int, pools: Pools, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    lines = []
    for i in range(n):
        log = rng.choices(("conn", "dns", "http"), (60, 30, 10))[0]
        rec: dict[str, Any] = {"_path": log, "ts": 1_767_225_600 + i / 50, "uid": f"C{rng.getrandbits(64):x}",
                               "id.orig_h": rng.choice(pools.internal), "id.orig_p": rng.randint(1024, 65535),
                               "id.resp_h": rng.choice(pools.ips), "id.resp_p": rng.choice((53, 80, 443))}
        if log == "conn":
            rec.update(proto="tcp", service=rng.choice(("http", "ssl", "dns")), duration=rng.random() * 9,
                       orig_bytes=rng.randint(0, 10**5), resp_bytes=rng.randint(0, 10**6), conn_state="SF",
                       local_orig=True, local_resp=False, missed_bytes=0, history="ShADadfF",
                       orig_pkts=rng.randint(1, 99), resp_pkts=rng.randint(1, 99))
        elif log == "dns":
            rec.update(proto="udp", trans_id=rng.randint(0, 65535), query=rng.choice(pools.domains),
                       qclass=1, qclass_name="C_INTERNET", qtype=1, qtype_name="A", rcode=0,
                       rcode_name="NOERROR", AA=False, TC=False, RD=True, RA=True, Z=0,
                       answers=[rng.choice(pools.ips)], TTLs=[300.0], rejected=False)
        else:
            rec.update(trans_depth=1, method="GET", host=rng.choice(pools.domains),
                       uri=rng.choice(pools.paths), version="1.1", user_agent="Mozilla/5.0",
                       request_body_len=0, response_body_len=rng.randint(0, 10**5), status_code=200,
                       status_msg="OK")
        lines.append(orjson.dumps(rec) + b"\n")
    return lines


def indicators(n: int, pools: Pools, seed: int) -> list[tuple[str, str, None]]:
    """n patterns: IPs 50%, domains 25%, URLs 15%, MD5s 10%; 1 in 1,000 complex; some hit."""
    rng = random.Random(seed)
    hit_ips = set(rng.sample(pools.ips, 1200))
    hit_domains = set(rng.sample(pools.domains, 800))
    found = []
    for i in range(n):
        roll = rng.random()
        hit = rng.random() < min(1.0, 2000 / n)
        if i % 1000 == 999:
            pattern = rng.choice((
                f"[domain-name:value LIKE '%.{rng.choice(WORDS)}{rng.randint(0, 9)}.xyz']",
                f"[network-traffic:dst_ref.value ISSUBSET '{rng.randint(1, 223)}.{rng.randint(0, 255)}"
                ".0.0/16' AND network-traffic:dst_port = 8080]",
                f"[domain-name:value = '{rng.choice(pools.domains)}'] FOLLOWEDBY "
                f"[ipv4-addr:value = '{rng.choice(pools.ips)}'] WITHIN 600 SECONDS",
            ))
        elif roll < 0.5:
            ip = rng.choice(sorted(hit_ips)) if hit else (
                f"{rng.randint(1, 223)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}")
            pattern = f"[ipv4-addr:value = '{ip}']"
        elif roll < 0.75:
            domain = (rng.choice(sorted(hit_domains)) if hit
                      else f"x{i}.{rng.choice(WORDS)}.{rng.choice(TLDS)}")
            pattern = f"[domain-name:value = '{domain}']"
        elif roll < 0.9:
            url = (f"http://{rng.choice(pools.domains)}{rng.choice(pools.paths)}" if hit
                   else f"http://u{i}.example/{rng.randint(0, 10**9)}")
            pattern = f"[url:value = '{url}']"
        else:
            digest = rng.choice(pools.hashes) if hit else hashlib.md5(f"n{i}".encode()).hexdigest()
            pattern = f"[file:hashes.MD5 = '{digest}']"
        found.append((f"indicator--{i:012d}", pattern, None))
    return found


# --- measurements -----------------------------------------------------------------------------


def cpu_rate(fn: Any, count: int, repeat: int = 3) -> float:
    """Best-of-``repeat`` items per CPU second."""
    best = float("inf")
    for _ in range(repeat):
        gc.collect()
        start = time.process_time()
        fn()
        best = min(best, time.process_time() - start)
    return count / best if best > 0 else float("inf")


def decode_only(lines: list[bytes]) -> None:
    loads = orjson.loads
    for line in lines:
        loads(line)


def engine_run(iset: Any, parser: Any, lines: list[bytes], batch: int = 20_000) -> int:
    """Matches in ``lines``, batch by batch, through the adapter's scan as ``commonwatch detect`` runs it."""
    found = 0
    problems = Problems()
    for start in range(0, len(lines), batch):
        found += len(parser.scan(iset, lines[start:start + batch], start + 1, problems)[0])
    return found


_REFERENCE_WORKER = r"""
import json, sys, time
from stix2matcher.matcher import match
cases = json.load(sys.stdin)
results, start = [], time.process_time()
for pattern, observations in cases:
    try:
        results.append(bool(match(pattern, observations, stix_version="2.1")))
    except Exception as exc:
        results.append(f"error: {type(exc).__name__}")
json.dump({"seconds": time.process_time() - start, "results": results}, sys.stdout)
"""


def as_stix(kind: Any, record: dict[str, Any], n: int) -> list[dict[str, Any]]:
    obs = build_observation(kind, record)
    ids = {local: f"{o['type']}--00000000-0000-4000-8000-{n:06d}{i:06d}"
           for i, (local, o) in enumerate(obs.objects.items())}
    scos = [{**{k: (ids[v] if k.endswith("_ref") else v) for k, v in o.items()}, "id": ids[local]}
            for local, o in obs.objects.items()]
    at = format_timestamp(obs.first_us)
    return [{"type": "bundle", "id": "bundle--1", "objects": [
        {"type": "observed-data", "id": f"observed-data--00000000-0000-4000-8000-{n:012d}",
         "first_observed": at, "last_observed": at, "number_observed": 1,
         "object_refs": list(ids.values())}, *scos]}]


def reference_sample(events: list[Any], patterns: list[str], pin: bool) -> dict[str, Any]:
    """stix2-matcher on every (pattern, event) of a sample; rate and agreement with ours."""
    cases = [(p, as_stix(k, r, j)) for j, (k, r) in enumerate(events) for p in patterns]
    ours = [match(p, o) for p, o in cases]
    if not Path(REFERENCE_PYTHON).exists():
        return {"pairs_per_s": None, "agree": None, "pairs": len(cases), "ours_true": sum(ours)}
    done = subprocess.run(pinned([REFERENCE_PYTHON, "-c", _REFERENCE_WORKER], BENCH_CPU, pin),
                          input=json.dumps(cases), capture_output=True, text=True, check=True)
    out = json.loads(done.stdout)
    agree = sum(a == b for a, b in zip(ours, out["results"], strict=True))
    return {"pairs_per_s": len(cases) / out["seconds"], "agree": agree, "pairs": len(cases),
            "ours_true": sum(ours)}


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller run, < 2 minutes, no file written")
    parser.add_argument("--events", type=int, default=None, help="events per log format")
    args = parser.parse_args()
    sizes = [100, 10_000, 100_000] if args.quick else [100, 10_000, 100_000, 1_000_000]
    n_events = args.events or (50_000 if args.quick else 200_000)
    pin = can_pin()
    pin_self(BENCH_CPU, pin)
    pools = Pools(random.Random(1))
    adapters = builtin_adapters()
    kinds = [k for a in adapters.values() for k in a.kinds]
    logs = {"eve.json": (eve_lines(n_events, pools, 2), adapters["suricata"].parser("bench")),
            "Zeek JSON": (zeek_lines(n_events, pools, 3), adapters["zeek"].parser("bench"))}
    sample_events = []
    for _name, (lines, parse) in logs.items():
        sample_events += parse(lines[:30], 1, Problems())
    rows, agreement = [], []
    for size in sizes:
        started, before = time.process_time(), rss_mib()
        indicator_set = indicators(size, pools, 4)
        iset, rejected = compile_indicators(kinds, indicator_set)
        compile_s = time.process_time() - started
        assert not rejected, rejected[:3]
        sample = [p for _, p, _ in random.Random(5).sample(indicator_set, min(size, 12))]
        ref = reference_sample(sample_events, sample, pin)
        agreement.append(ref)
        gc.collect()
        gc.freeze()  # as `commonwatch detect` does: the compiled set is not collector work
        for name, (lines, parse) in logs.items():
            first_cpu = time.process_time()
            alerts = engine_run(iset, parse, lines)  # the first pass: lookup code built, memos empty
            first = len(lines) / max(time.process_time() - first_cpu, 1e-9)
            # Decode-only and engine runs alternate, so both see the same machine load.
            decoded, rate = 0.0, 0.0
            for _ in range(3):
                decoded = max(decoded, cpu_rate(lambda lines=lines: decode_only(lines), len(lines), 1))
                rate = max(rate, cpu_rate(lambda lines=lines, parse=parse, iset=iset:
                                          engine_run(iset, parse, lines), len(lines), 1))
            ref_rate = ref["pairs_per_s"] / size if ref["pairs_per_s"] else None
            rows.append([f"{size:,}", name, f"{decoded:,.0f}", f"{rate:,.0f}",
                         f"{rate / decoded:.0%}", f"{first:,.0f}", f"{ref_rate:.3g}" if ref_rate else "n/a",
                         f"{rate / ref_rate:,.0f}x" if ref_rate else "n/a", f"{alerts:,}",
                         f"{compile_s:.1f}", f"{max(rss_mib() - before, 0):,.0f}"])
            print(" | ".join(rows[-1]), flush=True)
        del iset, indicator_set
        gc.unfreeze()
    table = markdown_table(["indicators", "log", "orjson decode only (ev/s)", "CommonWatch (ev/s)",
                            "of decode", "CommonWatch first pass (ev/s)", "stix2-matcher (ev/s)",
                            "speed-up", "alerts",
                            "compile (CPU s)", "RSS growth (MiB)"], rows)
    agree_pairs = sum(a["pairs"] for a in agreement if a["agree"] is not None)
    agree_same = sum(a["agree"] for a in agreement if a["agree"] is not None)
    ref_rates = [a["pairs_per_s"] for a in agreement if a["pairs_per_s"]]
    notes = [
        f"Command: `python bench/detect.py{' --quick' if args.quick else ''}`; {n_events:,} events per "
        f"log format; pinned to CPU {BENCH_CPU}: {'yes' if pin else 'no'}; rates are events per CPU second "
        "(best of 3, alternating with the decode-only runs), end to end from raw lines through the "
        "adapter's scan as `commonwatch detect` runs it (decoding the fields the lookups read, and whole "
        "events for candidates; telling the event kind; index lookups; full evaluation of candidates; "
        "match list). The first pass is the very first run of a freshly compiled set over the "
        "lines: it also builds the per-event-kind lookup code and fills the memos of value-tested and CIDR "
        "lookups, as a `commonwatch detect` run over a new log does.",
        f"stix2-matcher: {sum(ref_rates) / len(ref_rates):,.0f} (pattern, observation) pairs per CPU second "
        "measured on samples of 12 indicators x 60 events (already converted to STIX, not charged); its "
        "events/s at N indicators is that rate / N." if ref_rates else "stix2-matcher: not available "
        f"({REFERENCE_PYTHON} missing).",
        f"Agreement on the shared sample: {agree_same:,} of {agree_pairs:,} (pattern, event) answers "
        "identical." if agree_pairs else "Agreement: reference not run.",
        f"Machine: {machine()}; {contention()}.",
    ]
    text = "\n".join([table, "", *[f"- {n}" for n in notes]])
    print("\n" + text)
    if not args.quick:
        write_section(DOC, "detect.py", text)


if __name__ == "__main__":
    main()
