"""Telemetry adapters on real samples (tests/detect/data, see NOTICE.md) and our own."""

from __future__ import annotations

import gzip
import io
import sys
from pathlib import Path
from typing import Any

import pytest

from commonwatch.detect.engine import Event
from commonwatch.detect.events import build_observation, probes
from commonwatch.errors import InvalidParameter
from commonwatch.formats.telemetry import adapters_for, sniff
from commonwatch.formats.telemetry.generic import mapping_kind
from commonwatch.formats.telemetry.source import Problems, batches, open_binary

DATA = Path(__file__).parent / "data"


def read(path: Path | str, fmt: str = "auto", mapping: str | None = None,
         size: int = 7) -> tuple[list[Event], Problems, str]:
    adapters = adapters_for(fmt, mapping)
    problems = Problems()
    events: list[Event] = []
    with open_binary(str(path)) as stream:
        chunks = list(batches(stream, size))
    first = next(line for chunk in chunks for line in chunk if line.strip())
    adapter = sniff(first, adapters)
    assert adapter is not None
    parse = adapter.parser(str(path))
    start = 1
    for chunk in chunks:
        events += parse(chunk, start, problems)
        start += len(chunk)
    return events, problems, adapter.name


def values(events: list[Event], path: str) -> set[Any]:
    return {v for kind, rec in events for p, v in probes(kind, rec) if p == path}


def test_suricata_eve_all_event_types() -> None:
    events, problems, name = read(DATA / "surevego_eve.json")
    assert name == "suricata" and problems.total == 0
    assert len(events) == 265 and problems.skipped == {"eve stats (no addresses)": 1}
    kinds = {k.name for k, _ in events}
    assert {"suricata:dns", "suricata:http", "suricata:flow", "suricata:fileinfo", "suricata:alert"} <= kinds
    assert "prod.debian.map.fastly.net" in values(events, "domain-name:value")
    assert "http://deb.debian.org/debian/pool/main/p/perl/perl-base_5.24.1-1_amd64.deb" in values(
        events, "url:value")
    assert "172.17.0.2" in values(events, "network-traffic:src_ref.value")
    kind, rec = events[0]
    assert kind.time_us(rec) == 1485789146985026  # 2017-01-30T16:12:26.985026+0100


def test_suricata_tls_and_fileinfo() -> None:
    tls, _, _ = read(DATA / "suricata-verify_tls-fingerprint-alert_eve.json")
    assert "www.google.com" in values(tls, "domain-name:value")
    fingerprints = values(tls, "x509-certificate:hashes.'SHA-1'")
    assert fingerprints and all(":" not in f and f == f.lower() and len(f) == 40 for f in fingerprints)
    files, _, _ = read(DATA / "suricata-verify_output-eve-fileinfo_eve.json")
    kind, rec = files[0]
    obs = build_observation(kind, rec)
    [file_obj] = [o for o in obs.objects.values() if o["type"] == "file"]
    assert file_obj["name"] == "eicar.com" and file_obj["size"] == 68


def test_zeek_json_and_tsv() -> None:
    dns, problems, name = read(DATA / "rita_dns.json")
    assert name == "zeek" and problems.total == 0 and len(dns) == 34
    assert {k.name for k, _ in dns} == {"zeek:dns"}
    http, _, _ = read(DATA / "rita_http.json")
    assert "gm.mmstat.com" in values(http, "domain-name:value")
    conn, problems, _ = read(DATA / "rita_closed_conn.log")
    assert problems.total == 0 and len(conn) == 59 and {k.name for k, _ in conn} == {"zeek:conn"}
    kind, rec = conn[0]
    assert rec["id.resp_p"] == 80 and rec["tunnel_parents"] == [] and "service" not in rec
    assert kind.time_us(rec) == 1517336042090842
    assert "dns" in values(conn, "network-traffic:protocols[*]")
    files, _, _ = read(DATA / "rita_proxy_files.log")
    assert "d6c6642cd4be96f391726a1e5b8b9695" in values(files, "file:hashes.MD5")
    assert "151.101.1.69" in values(files, "ipv4-addr:value")
    x509, _, _ = read(DATA / "wrccdc_x509.json")
    assert "O=VMware Installer" in values(x509, "x509-certificate:issuer")
    ssl, _, _ = read(DATA / "wrccdc_ssl.log")
    assert {k.name for k, _ in ssl} == {"zeek:ssl"}


def test_zeek_tsv_bad_rows_are_counted_not_fatal() -> None:
    events, problems, _ = read(DATA / "edge_rita_truncated_conn.log")
    assert len(events) == 58 and problems.counts == {"has 9 columns where #fields names 21": 1}
    assert problems.examples[0].endswith(
        "edge_rita_truncated_conn.log:67: has 9 columns where #fields names 21")
    events, problems, _ = read(DATA / "edge_rita_http_unknown_field.log")
    assert len(events) == 4 and problems.total == 1


def test_nfdump_csv() -> None:
    events, problems, name = read(DATA / "flows.nfdump.csv")
    assert name == "nfdump" and len(events) == 3
    assert problems.total == 2 and problems.skipped["nfdump summary lines"] == 3
    assert values(events, "ipv6-addr:value") == {"2001:db8::7", "2001:db8:ffff::9"}
    assert values(events, "network-traffic:dst_port") == {443, 53, 22}
    assert values(events, "network-traffic:protocols[*]") == {"tcp", "udp"}


def test_generic_json_lines_with_mapping() -> None:
    events, problems, name = read(DATA / "proxy.jsonl", "json", str(DATA / "proxy-mapping.json"))
    assert name == "json" and len(events) == 3
    assert problems.counts == {"not valid JSON": 1, "not a JSON object": 1}
    assert values(events, "network-traffic:src_ref.value") == {"10.1.2.3", "10.1.2.4"}  # flat and nested
    assert values(events, "url:value") >= {"http://bad.example/payload.bin"}


@pytest.mark.parametrize("spec, message", [
    ({}, "needs \"fields\""),
    ({"fields": {"a": 1}}, "must be a STIX path string"),
    ({"fields": {"a": "not a path"}}, "is not a STIX object path"),
    ({"fields": {"a": "network-traffic:src_ref.type"}}, "a field may set plain properties"),
    ({"fields": {"a": "url:value"}, "time": {"format": "ms"}}, "is not one of"),
])
def test_mapping_mistakes_are_explained(spec: Any, message: str) -> None:
    with pytest.raises(InvalidParameter, match=message):
        mapping_kind(spec)


def test_gzip_and_stdin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    raw = (DATA / "rita_dns.json").read_bytes()
    packed = tmp_path / "dns.json.gz"
    packed.write_bytes(gzip.compress(raw))
    events, _, _ = read(packed)
    assert len(events) == 34
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(gzip.compress(raw))))
    events, _, _ = read("-")
    assert len(events) == 34


def test_unreadable_inputs() -> None:
    with pytest.raises(InvalidParameter, match="cannot read /nonexistent"), open_binary("/nonexistent"):
        pass
    with pytest.raises(InvalidParameter, match="needs --mapping"):
        adapters_for("json", None)
    adapters = adapters_for("suricata", None)
    problems = Problems()
    events = adapters["suricata"].parser("x")([b"{}\n", b"\xff\n", b"[1]\n", b"{\"event_type\": [1]}\n",
                                                b"{" + b" " * (1 << 20) + b"}\n"], 1, problems)
    assert events == [] and problems.counts == {
        "not valid JSON": 1, "not a JSON object": 1, f"line longer than {1 << 20} bytes": 1}
    assert sum(problems.skipped.values()) == 2  # no addresses: nothing to match
