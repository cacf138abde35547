"""Import throughput: a big STIX bundle and a MISP feed, parsed and imported on one core.

Usage::

    .venv/bin/python bench/ingest.py            # 10^6-object bundle, 10^5-attribute feed
    .venv/bin/python bench/ingest.py --quick    # small sizes, under two minutes, no docs

Each measurement runs in its own child process pinned to one CPU, so its peak resident
memory (``ru_maxrss``) is its own. Measured, side by side:

* **parse**: the importer's reader alone (streaming, ijson ``yajl2_c``) over the bundle,
  and over the MISP feed (conversion to STIX 2.1 included);
* **stix2.parse**: the usual Python path, ``json.load`` of the whole bundle then
  ``stix2.parse(..., allow_custom=True)``, on the same bundle (where it fits in the time
  budget: on the full run it is measured on a tenth of the objects and said so);
* **import**: ``commonwatch import``'s service into a fresh SQLite database (validation,
  ownership, bulk insert), with the split of its time between reading/converting,
  looking up what already exists, and ``IngestService.add_objects``.

Peak memory is shown for two sizes of the same input, to show it does not grow with
the input. The table goes to docs/benchmarks.md between the markers.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from _common import can_pin, contention, machine, markdown_table, pin_self, write_section  # noqa: E402

NS = uuid.UUID("5a1e5a1e-0000-4000-8000-00000000be9c")
TS = "2024-03-01T12:00:00.000Z"


# --- inputs -------------------------------------------------------------------------------
def _oid(kind: str, n: int) -> str:
    return f"{kind}--{uuid.uuid5(NS, f'{kind}{n}')}"


def _objects(n: int) -> list[dict[str, Any]]:
    """A realistic group of 5 objects: 2 SCOs, 2 indicators, 1 relationship."""
    ip = f"198.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}"
    domain = f"host{n}.cw-bench-{n % 997}.net"  # not on a warninglist, like most real indicators
    ind_ip = {"type": "indicator", "spec_version": "2.1", "id": _oid("indicator", 2 * n), "created": TS,
              "modified": TS, "name": f"C2 {ip}", "pattern": f"[ipv4-addr:value = '{ip}']",
              "pattern_type": "stix", "valid_from": TS, "indicator_types": ["malicious-activity"],
              "object_marking_refs": ["marking-definition--55d920b0-5e8b-4f79-9ee9-91f868d9b421"]}
    ind_dom = {**ind_ip, "id": _oid("indicator", 2 * n + 1), "name": f"C2 {domain}",
               "pattern": f"[domain-name:value = '{domain}']"}
    return [
        {"type": "ipv4-addr", "spec_version": "2.1", "id": _oid("ipv4-addr", n), "value": ip},
        {"type": "domain-name", "spec_version": "2.1", "id": _oid("domain-name", n), "value": domain},
        ind_ip, ind_dom,
        {"type": "relationship", "spec_version": "2.1", "id": _oid("relationship", n), "created": TS,
         "modified": TS, "relationship_type": "related-to", "source_ref": ind_dom["id"],
         "target_ref": ind_ip["id"]},
    ]


def write_bundle(path: Path, count: int) -> None:
    """A STIX 2.1 bundle of ``count`` objects, written as a stream."""
    with path.open("w") as f:
        f.write(f'{{"type": "bundle", "id": "bundle--{uuid.uuid5(NS, str(count))}", "objects": [\n')
        written = 0
        n = 0
        while written < count:
            for obj in _objects(n):
                if written == count:
                    break
                f.write((",\n" if written else "") + json.dumps(obj))
                written += 1
            n += 1
        f.write("\n]}\n")


def write_feed(directory: Path, attributes: int, per_event: int = 1000) -> None:
    """A MISP feed directory of ``attributes`` attributes, ``per_event`` per event."""
    directory.mkdir(parents=True, exist_ok=True)
    manifest: dict[str, Any] = {}
    types = ("ip-dst", "domain", "url", "sha256", "md5")
    for e in range(0, attributes, per_event):
        event_uuid = str(uuid.uuid5(NS, f"event{e}"))
        attrs = []
        for a in range(e, min(e + per_event, attributes)):
            mtype = types[a % len(types)]
            value = {"ip-dst": f"203.{(a >> 16) & 255}.{(a >> 8) & 255}.{a & 255}",
                     "domain": f"bad{a}.cw-bench.org", "url": f"http://bad{a}.cw-bench.org/p/{a}",
                     "sha256": uuid.uuid5(NS, str(a)).hex * 2, "md5": uuid.uuid5(NS, str(a)).hex}[mtype]
            attrs.append({"uuid": str(uuid.uuid5(NS, f"attr{a}")), "type": mtype,
                          "category": "Network activity", "value": value, "to_ids": a % 4 != 0,
                          "timestamp": "1709294400", "comment": ""})
        orgc = {"name": "Bench Feed", "uuid": str(uuid.uuid5(NS, "org"))}
        event = {"Event": {"uuid": event_uuid, "info": f"bench event {e}", "date": "2024-03-01",
                           "timestamp": "1709294400", "publish_timestamp": "1709294400", "analysis": "2",
                           "threat_level_id": "2", "Orgc": orgc, "Tag": [{"name": "tlp:green"}],
                           "Attribute": attrs}}
        (directory / f"{event_uuid}.json").write_text(json.dumps(event))
        manifest[event_uuid] = {"info": f"bench event {e}", "timestamp": 1709294400}
    (directory / "manifest.json").write_text(json.dumps(manifest))


# --- measurements (each in a child process) --------------------------------------------
def measure_parse(path: str) -> dict[str, Any]:
    from commonwatch.domain.warninglists import load_warninglists
    from commonwatch.formats.misp import read_feed
    from commonwatch.formats.observables import ImportContext
    from commonwatch.formats.sources import open_input
    from commonwatch.formats.stix_bundle import read_stix

    started, cpu = time.perf_counter(), time.process_time()
    count = 0
    if Path(path).is_dir():
        ctx = ImportContext(own_identity="identity--d9b0c3a0-5a1b-4c2d-8e3f-000000000001",
                            warninglists=load_warninglists())
        records = read_feed(Path(path), ctx)
    else:
        records = read_stix(open_input(open(path, "rb"), path), path)  # noqa: SIM115
    for record in records:
        count += record.obj is not None
    return {"objects": count, "seconds": time.perf_counter() - started,
            "cpu_seconds": time.process_time() - cpu}


def measure_stix2(path: str) -> dict[str, Any]:
    import stix2

    started, cpu = time.perf_counter(), time.process_time()
    with open(path, "rb") as f:
        bundle = json.load(f)
    parsed = stix2.parse(bundle, allow_custom=True)
    return {"objects": len(parsed.objects), "seconds": time.perf_counter() - started,
            "cpu_seconds": time.process_time() - cpu}


def measure_import(path: str, workdir: str, cache_mib: str = "") -> dict[str, Any]:
    from commonwatch.config import load_settings
    from commonwatch.domain.markings import Tlp
    from commonwatch.domain.warninglists import load_warninglists
    from commonwatch.formats.sources import DEFAULT_MAX_BYTES, expand
    from commonwatch.process import tune_for_throughput
    from commonwatch.services.exchange import Exchange
    from commonwatch.services.importer import ImportService

    db = Path(workdir) / f"bench-{os.getpid()}.db"
    exchange = Exchange(load_settings(environ={}, database_url=f"sqlite:///{db}"))
    if cache_mib:  # cap SQLite's own memory (page cache, mmap) to see the importer's alone
        from sqlalchemy import event

        def cap(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.execute(f"PRAGMA cache_size=-{int(cache_mib) * 1024}")
            dbapi_conn.execute("PRAGMA mmap_size=0")

        event.listen(exchange.engine, "connect", cap)
        exchange.engine.dispose()
    try:
        exchange.admin.create_org("Bench Org", "operator")
        exchange.admin.create_user("Bench Org", "bench", "analyst")
        exchange.admin.create_community("bench", default_tlp=Tlp.AMBER)
        exchange.admin.set_membership("Bench Org", "bench", True, True, Tlp.RED)
        principal = exchange.auth.principal_for_user("bench")
        service = ImportService(exchange.ingest, exchange.query, load_warninglists())
        community = service.community(principal, "bench")
        tune_for_throughput()  # as `commonwatch import` does
        ctx = service.context(principal, community)
        cpu = time.process_time()
        summary = service.run(principal, community, list(expand([path])), "auto", ctx,
                              max_bytes=DEFAULT_MAX_BYTES)
        cpu = time.process_time() - cpu
    finally:
        exchange.close()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
    return {"objects": summary.stored + summary.unchanged, "rejected": summary.rejected,
            "seconds": summary.seconds, "cpu_seconds": cpu, "timings": summary.timings}


def child(argv: Sequence[str]) -> None:
    """Entry point of a measuring child: run one measurement, print JSON with peak RSS."""
    kind, *args = argv
    pin_self(0, can_pin())
    result = {"parse": measure_parse, "stix2": measure_stix2, "import": measure_import}[kind](*args)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result["peak_mib"] = usage.ru_maxrss / 1024
    result.setdefault("cpu_seconds", usage.ru_utime + usage.ru_stime)
    print(json.dumps(result))


def run_child(*args: str, timeout: float = 3600) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, __file__, "--child", *args], capture_output=True, text=True,
                          timeout=timeout, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"measurement {args[0]} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --- the run ----------------------------------------------------------------------------
def rate(result: dict[str, Any]) -> str:
    return f"{result['objects'] / result['seconds']:,.0f}"


def cpu_rate(result: dict[str, Any]) -> str:
    """Objects per CPU-second of the measuring process: robust against other load."""
    return f"{result['objects'] / max(result['cpu_seconds'], 1e-9):,.0f}"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small inputs, under two minutes, no docs")
    parser.add_argument("--child", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    parser.add_argument("--docs", type=Path, default=ROOT / "docs" / "benchmarks.md")
    parser.add_argument("--memory-check", action="store_true",
                        help="only: import two bundle sizes with SQLite's cache capped, print peak memory")
    args = parser.parse_args(argv)
    if args.child:
        child(args.child)
        return
    if args.memory_check:
        memory_check()
        return
    big, attrs = (20_000, 5_000) if args.quick else (1_000_000, 100_000)
    small = big // 10
    stix2_size = 2_000 if args.quick else big // 20  # stix2.parse runs at a few hundred objects/s
    rows: list[list[object]] = []
    with tempfile.TemporaryDirectory(prefix="cw-bench-ingest-") as tmp:
        work = Path(tmp)
        bundle, bundle_small, feed, feed_small = (work / "big.json", work / "small.json", work / "feed",
                                                  work / "feed-small")
        write_bundle(bundle, big)
        write_bundle(bundle_small, small)
        write_bundle(work / "stix2.json", stix2_size)
        write_feed(feed, attrs)
        write_feed(feed_small, attrs // 10)
        mb = bundle.stat().st_size / 2**20
        print(f"bundle: {big:,} objects, {mb:,.0f} MiB; feed: {attrs:,} attributes", file=sys.stderr)

        for label, path in ((f"STIX bundle, {big:,} objects", bundle),
                            (f"STIX bundle, {small:,} objects", bundle_small)):
            parsed = run_child("parse", str(path))
            rows.append([label, "commonwatch reader (stream)", rate(parsed), cpu_rate(parsed),
                         f"{parsed['seconds']:.1f}", f"{parsed['peak_mib']:.0f}"])
        baseline = run_child("stix2", str(work / "stix2.json"))
        rows.append([f"STIX bundle, {stix2_size:,} objects", "json.load + stix2.parse", rate(baseline),
                     cpu_rate(baseline), f"{baseline['seconds']:.1f}", f"{baseline['peak_mib']:.0f}"])
        for label, path in ((f"MISP feed, {attrs:,} attributes", feed),
                            (f"MISP feed, {attrs // 10:,} attributes", feed_small)):
            parsed = run_child("parse", str(path))
            rows.append([label, "commonwatch MISP reader -> STIX 2.1", rate(parsed), cpu_rate(parsed),
                         f"{parsed['seconds']:.1f}", f"{parsed['peak_mib']:.0f}"])
        imports = []
        for label, path in ((f"STIX bundle, {big:,} objects", bundle), (f"STIX bundle, {small:,} objects",
                                                                         bundle_small),
                            (f"MISP feed, {attrs:,} attributes", feed)):
            done = run_child("import", str(path), tmp)
            t = done["timings"]
            split = f"{t['read']:.1f} / {t['lookup']:.1f} / {t['store']:.1f}"
            imports.append([label, rate(done), cpu_rate(done), f"{done['seconds']:.1f}",
                            f"{done['peak_mib']:.0f}", split])
            print(f"{label}: {rate(done)} objects/s", file=sys.stderr)
    text = render(args, rows, imports, stix2_size, big)
    print(text)
    if not args.quick:
        write_section(args.docs, "ingest.py", text)


def memory_check(sizes: Sequence[int] = (50_000, 250_000), cache_mib: int = 16) -> None:
    """Peak memory of whole imports with SQLite's page cache capped and mmap off.

    The storage layer gives SQLite a 256 MiB page cache per connection and 1 GiB of
    memory-mapped reads, which fill as the database grows; with them capped, what is
    left is the importer's own memory, which must not depend on the input size.
    """
    rows = []
    with tempfile.TemporaryDirectory(prefix="cw-bench-ingest-") as tmp:
        for size in sizes:
            path = Path(tmp) / f"bundle-{size}.json"
            write_bundle(path, size)
            done = run_child("import", str(path), tmp, str(cache_mib))
            rows.append([f"STIX bundle, {size:,} objects", rate(done), cpu_rate(done),
                         f"{done['peak_mib']:.0f}"])
            path.unlink()
    print(f"SQLite page cache capped at {cache_mib} MiB, mmap off:\n")
    print(markdown_table(["input", "objects/s", "objects/CPU-s", "peak MiB"], rows))


def render(args: argparse.Namespace, parse_rows: list[list[object]], import_rows: list[list[object]],
           stix2_size: int, big: int) -> str:
    m = machine()
    lines = [
        f"Measured on {m['cpus']} CPUs ({m['cpu']}), {m['memory']}, Python {m['python']}; every "
        f"measurement in its own process pinned to one core{'' if can_pin() else ' (pinning unavailable)'}; "
        "SQLite database in a temporary directory.",
        "",
        "Parsing (no database):",
        "",
        markdown_table(["input", "path", "objects/s", "objects/CPU-s", "seconds", "peak MiB"], parse_rows),
        "",
        "Importing into SQLite (`ImportService`, batches of 2,000 objects per transaction; time split: "
        "read+convert / existing-id lookup / `IngestService.add_objects`):",
        "",
        markdown_table(["input", "objects/s", "objects/CPU-s", "seconds", "peak MiB", "time split (s)"],
                       import_rows),
    ]
    if stix2_size < big:
        lines += ["", f"`stix2.parse` was measured on the first {stix2_size:,} objects of the same generator "
                      "(at its rate the whole bundle would take hours): it loads the whole document and "
                      "builds every object in memory, so its peak memory grows with the input."]
    lines += ["", f"Other load on the machine during the run: {contention()}."]
    lines += ["", f"Command: `.venv/bin/python bench/ingest.py{' --quick' if args.quick else ''}`"]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
