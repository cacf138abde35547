"""Adversarial telemetry: a bad line is never fatal and never silently dropped; it is
counted in the problems with a reason. Sources are read the way ``commonwatch detect``
reads them (``services.detect._run_source``: files, gzip, stdin, batches, workers)."""

from __future__ import annotations

import gzip
import io
import json
import sys
from pathlib import Path

import orjson
from typer.testing import CliRunner

from commonwatch.cli.main import app
from commonwatch.detect.engine import compile_indicators
from commonwatch.domain.markings import Tlp
from commonwatch.formats.telemetry import adapters_for
from commonwatch.formats.telemetry.source import MAX_LINE_BYTES, Problems
from commonwatch.services.detect import DetectOptions, Indicator, _run_source

from support.factories import indicator, make_member

PATTERNS = {
    "ip": "[ipv4-addr:value = '203.0.113.9']",
    "cidr": "[ipv4-addr:value ISSUBSET '198.51.100.0/24']",
    "dom": "[domain-name:value = 'evil.example']",
    "url": "[url:value = 'http://evil.example/x']",
}


def run(path: Path | str, fmt: str = "auto", **options):
    """(sorted alert keys, lines, events, problem counts, skipped) of one source."""
    adapters = adapters_for(fmt, None)
    kinds = [k for a in adapters.values() for k in a.kinds]
    iset, rejected = compile_indicators(
        kinds, ((k, p, Indicator(k, k, p, "producer", Tlp.GREEN, None)) for k, p in PATTERNS.items())
    )
    assert not rejected
    alerts: list[str] = []
    lines = events = 0
    problems = Problems()
    for found, n_lines, n_events, probs in _run_source(
        iset, adapters, str(path), DetectOptions(community="x", format=fmt, **options)
    ):
        alerts += [a["indicator"] for a in found]
        lines += n_lines
        events += n_events
        problems.merge(probs)
    return sorted(alerts), lines, events, dict(problems.counts), dict(problems.skipped)


def eve(**fields) -> bytes:
    rec = {
        "timestamp": "2026-03-01T10:00:00.000000+0000",
        "event_type": "flow",
        "src_ip": "10.0.0.1",
        "src_port": 40000,
        "dest_ip": "203.0.113.9",
        "dest_port": 443,
        "proto": "TCP",
        **fields,
    }
    return json.dumps(rec).encode() + b"\n"


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


# -- gzip ------------------------------------------------------------------------------


def test_gzip_whole_and_concatenated_members(tmp_path):
    assert run(write(tmp_path, "a.gz", gzip.compress(eve() * 3))) == (["ip"] * 3, 3, 3, {}, {})
    both = gzip.compress(eve()) + gzip.compress(eve(dest_ip="8.8.8.8"))
    assert run(write(tmp_path, "b", both)) == (["ip"], 2, 2, {}, {})
    assert run(write(tmp_path, "c.gz", gzip.compress(b""))) == ([], 0, 0, {}, {})


def test_truncated_gzip_is_not_fatal(tmp_path):
    """The lines before a gzip file breaks off are matched; the break is a problem."""
    data = gzip.compress(eve() * 50)
    path = write(tmp_path, "eve.json.gz", data[: len(data) - 12])  # the trailer and a bit more
    alerts, lines, events, problems, _ = run(path)
    assert 40 < len(alerts) == lines == events < 50
    [(reason, count)] = problems.items()
    assert count == 1 and reason.startswith("the file cannot be read past this line (gzip: ")
    cut = write(tmp_path, "cut.json.gz", data[: len(data) // 2])
    alerts, lines, events, problems, _ = run(cut, batch_lines=7, workers=2)
    assert len(alerts) == lines == events < 50 and sum(problems.values()) == 1


def test_corrupt_gzip_is_not_fatal(tmp_path):
    """A file with the gzip magic that is not gzip is one problem of that source."""
    path = write(tmp_path, "eve.json", b"\x1f\x8b" + b"not really gzip\n" + eve())
    alerts, lines, events, problems, _ = run(path)
    assert (alerts, lines, events) == ([], 0, 0)
    [(reason, count)] = problems.items()
    assert count == 1 and reason.startswith("the file cannot be read past this line (gzip: ")


# -- eve.json lines --------------------------------------------------------------------


def test_eve_lines_of_every_shape(tmp_path):
    data = (
        b"[1, 2]\n"
        + b"5\n"
        + b'"text"\n'
        + b"null\n"
        + b"true\n"
        + b"{not json\n"
        + b"\n"
        + b"   \n"
        + eve()
        + eve(event_type="stats", src_ip=None)
        + b'{"event_type": "stats"}\n'
        + eve(event_type=7)
        + eve(event_type=None)
        + eve(event_type=["dns"])
    )
    alerts, lines, events, problems, skipped = run(write(tmp_path, "eve.json", data), "suricata")
    assert lines == 14
    assert problems == {"not a JSON object": 5, "not valid JSON": 1}
    assert skipped == {"eve stats (no addresses)": 1}
    # flow + stats with src_ip key (null) + three odd event types with addresses
    assert events == 5
    assert alerts == ["ip"] * 5


def test_crlf_bom_nul_and_invalid_utf8(tmp_path):
    crlf = eve().replace(b"\n", b"\r\n")
    data = (
        crlf
        + b"\x00\n"
        + b'{"event_type":"flow","src_ip":"\x00","dest_ip":"203.0.113.9"}\n'
        + eve(x="caf\u00e9")
        + eve().replace(b"10.0.0.1", b"10.0.0.\xff")
        + crlf
    )
    alerts, lines, events, problems, _ = run(write(tmp_path, "eve.json", data), "suricata")
    assert lines == 6 and events == 3 and alerts == ["ip"] * 3
    assert problems == {"not valid JSON": 3}


def test_utf8_bom_first_line(tmp_path):
    """A UTF-8 byte order mark before the first line is dropped, whether the format is
    named or recognised, plain or gzip; a BOM elsewhere makes its line invalid JSON."""
    path = write(tmp_path, "eve.json", b"\xef\xbb\xbf" + eve() + eve())
    zipped = write(tmp_path, "eve.json.gz", gzip.compress(b"\xef\xbb\xbf" + eve() + eve()))
    for source in (path, zipped):
        assert run(source, "suricata") == (["ip", "ip"], 2, 2, {}, {})
        assert run(source) == (["ip", "ip"], 2, 2, {}, {})
    inside = write(tmp_path, "inside.json", eve() + b"\xef\xbb\xbf" + eve())
    assert run(inside, "suricata") == (["ip"], 2, 1, {"not valid JSON": 1}, {})


def test_deeply_nested_lines_are_counted_not_fatal(tmp_path):
    deep_array = b"[" * 10_000 + b"]" * 10_000 + b"\n"
    assert run(write(tmp_path, "a.json", deep_array + eve()), "suricata") == (
        ["ip"],
        2,
        1,
        {"not valid JSON": 1},
        {},
    )
    deep_object = b'{"a":' * 10_000 + b"1" + b"}" * 10_000 + b"\n"
    deep_dns = (
        b'{"event_type":"dns","src_ip":"1.2.3.4","dest_ip":"5.6.7.8","dns":'
        + b'{"a":' * 10_000
        + b"1"
        + b"}" * 10_001
        + b"\n"
    )
    for name, line in (("object", deep_object), ("object under dns", deep_dns)):
        for fmt in ("suricata", "zeek"):
            # Too deep for the projection decoder (RecursionError), then for orjson: a
            # counted problem like the deep array, and the next line is read.
            alerts, lines, events, problems, _ = run(write(tmp_path, f"{name}.json", line + eve()), fmt)
            assert lines == 2 and sum(problems.values()) == 1, (name, fmt)
            assert alerts == (["ip"] if fmt == "suricata" else []), (name, fmt)  # eve is no Zeek log


def _sized(n: int) -> bytes:
    head = b'{"event_type":"flow","src_ip":"10.0.0.1","dest_ip":"203.0.113.9","pad":"'
    return head + b"x" * (n - len(head) - 2) + b'"}'


def test_line_size_limit(tmp_path):
    over = _sized(MAX_LINE_BYTES + 1) + b"\n"
    under = _sized(MAX_LINE_BYTES - 1) + b"\n"
    alerts, lines, events, problems, _ = run(write(tmp_path, "a.json", over + under), "suricata")
    assert (alerts, lines, events) == (["ip"], 2, 1)
    assert problems == {f"line longer than {MAX_LINE_BYTES} bytes": 1}
    for fmt in ("suricata", "zeek"):
        _, _, _, problems, _ = run(write(tmp_path, "z.json", over), fmt)
        assert sum(problems.values()) == 1


def test_line_of_exactly_the_limit(tmp_path):
    exact = _sized(MAX_LINE_BYTES)
    assert len(exact) == MAX_LINE_BYTES
    last = run(write(tmp_path, "last.json", exact), "suricata")  # no newline after it
    assert last == (["ip"], 1, 1, {}, {})
    # The limit is on the line without its end: the same line followed by "\n" (or
    # "\r\n") is read too, and one byte more is refused.
    for end in (b"\n", b"\r\n"):
        assert run(write(tmp_path, "mid.json", exact + end + eve()), "suricata") == (
            ["ip", "ip"],
            2,
            2,
            {},
            {},
        )
    one_more = _sized(MAX_LINE_BYTES + 1) + b"\r\n"
    assert run(write(tmp_path, "over.json", one_more + eve()), "suricata")[3] == {
        f"line longer than {MAX_LINE_BYTES} bytes": 1
    }


def test_addresses_of_odd_types(tmp_path):
    data = (
        eve(src_ip="198.51.100.7", dest_ip="8.8.8.8")  # in the CIDR
        + eve(src_ip=3325256711, dest_ip="8.8.8.8")  # 198.51.100.7 as a number
        + eve(src_ip=["198.51.100.7"], dest_ip="8.8.8.8")
        + eve(src_ip={"v": "198.51.100.7"}, dest_ip=1.5)
        + eve(src_ip=None, dest_ip=True)
        + eve(src_ip="198.51.100", dest_ip="")
        + eve(src_ip="2001:db8::1", dest_ip="203.0.113.9")
    )
    for fmt in ("suricata", "auto"):
        alerts, lines, events, problems, _ = run(write(tmp_path, "eve.json", data), fmt)
        assert (lines, events, problems) == (7, 7, {})
        assert alerts == ["cidr", "ip"]


def test_dns_v1_v2_v3_and_http_host_forms(tmp_path):
    data = (
        eve(event_type="dns", dns={"type": "query", "id": 1, "rrname": "evil.example", "rrtype": "A"})
        + eve(
            event_type="dns",
            dns={
                "version": 2,
                "type": "answer",
                "rrname": "evil.example",
                "answers": [{"rrname": "evil.example", "rdata": "1.2.3.4"}],
            },
        )
        + eve(
            event_type="dns",
            dns={"version": 3, "queries": [{"rrname": "x.example"}, {"rrname": "evil.example"}, 5, None]},
        )
        + eve(event_type="dns", dns={"queries": "evil.example"})
        + eve(event_type="dns", dns=["evil.example"])
        + eve(event_type="dns", dns={"rrname": ["evil.example"]})
        + eve(event_type="http", http={"hostname": "evil.example", "url": "/x"})
        + eve(event_type="http", http={"hostname": "evil.example:8080", "url": "/y"})
        + eve(event_type="http", http={"hostname": None, "url": "http://evil.example/x"})
        + eve(event_type="http", http={"hostname": 5, "url": 7})
        + eve(event_type="http", http="evil.example")
    )
    alerts, lines, events, problems, _ = run(
        write(tmp_path, "eve.json", data.replace(b'"203.0.113.9"', b'"8.8.8.8"')), "suricata"
    )
    assert (lines, events, problems) == (11, 11, {})
    # dom: v1, v2, v3 (one of the queries), rrname as a list, the plain http hostname;
    # url: hostname + url, and an absolute url without hostname. A hostname holding a
    # port ("evil.example:8080") is taken literally (docs: domain-name = http.hostname).
    assert alerts == ["dom"] * 5 + ["url", "url"]


# -- Zeek TSV --------------------------------------------------------------------------

F = ["ts", "uid", "id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p", "proto", "query"]
T = ["time", "string", "addr", "port", "addr", "port", "enum", "string"]
F2 = ["ts", "uid", "query", "id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p", "proto"]
T2 = ["time", "string", "string", "addr", "port", "addr", "port", "enum"]


def header(fields=F, types=T) -> str:
    return (
        "#separator \\x09\n#set_separator\t,\n#empty_field\t(empty)\n#unset_field\t-\n#path\tdns\n"
        "#open\t2026-03-01-10-00-00\n#fields\t" + "\t".join(fields) + "\n#types\t" + "\t".join(types) + "\n"
    )


def row(query: str, resp: str = "8.8.8.8") -> str:
    return "\t".join(["1772359200.000000", "C1", "10.0.0.1", "5353", resp, "53", "udp", query]) + "\n"


def row2(query: str) -> str:
    return "\t".join(["1772359201.0", "C9", query, "10.0.0.2", "1", "8.8.4.4", "53", "udp"]) + "\n"


def test_zeek_tsv_columns_escapes_and_crlf(tmp_path):
    text = (
        header()
        + row("evil.example")
        + row("ok.example", "203.0.113.9")
        + "1\tC2\t10.0.0.1\n"
        + row("a").rstrip("\n")
        + "\textra\n"
        + row("evil\\x2eexample")
        + row("-")
        + row("(empty)")
        + "\n"
        + "#close\t2026-03-01-11-00-00\n"
    )
    for newline in ("\n", "\r\n"):
        path = write(tmp_path, "dns.log", text.replace("\n", newline).encode())
        alerts, lines, events, problems, _ = run(path)
        assert lines == 17 and events == 5
        assert problems == {
            "has 3 columns where #fields names 8": 1,
            "has 9 columns where #fields names 8": 1,
        }
        assert alerts == ["dom", "dom", "ip"]


def test_zeek_tsv_without_fields_header(tmp_path):
    path = write(tmp_path, "dns.log", ("#separator \\x09\n#path\tdns\n" + row("evil.example") * 2).encode())
    assert run(path) == ([], 4, 0, {"TSV record before the #fields header line": 2}, {})


def test_zeek_tsv_invalid_utf8_and_nul(tmp_path):
    data = (
        header().encode()
        + row("ev\xffil").encode("latin-1")
        + row("evil.example").encode().replace(b"C1", b"C\x001")
        + b"\x00\n"
    )
    alerts, lines, events, problems, _ = run(write(tmp_path, "dns.log", data))
    assert alerts == ["dom"] and lines == 11 and events == 1
    assert problems == {"not UTF-8 text": 1, "has 1 columns where #fields names 8": 1}


def test_zeek_tsv_sets_and_other_separator(tmp_path):
    fields = [
        "ts",
        "uid",
        "id.orig_h",
        "id.orig_p",
        "id.resp_h",
        "id.resp_p",
        "tx_hosts",
        "rx_hosts",
        "fuid",
        "md5",
    ]
    types = ["time", "string", "addr", "port", "addr", "port", "set[addr]", "set[addr]", "string", "string"]
    text = (
        "#separator \\x7c\n#set_separator|;\n#empty_field|(empty)\n#unset_field|-\n#path|files\n"
        "#fields|"
        + "|".join(fields)
        + "\n#types|"
        + "|".join(types)
        + "\n"
        + "|".join(
            ["1.0", "C1", "10.0.0.1", "1", "10.0.0.2", "2", "10.9.9.9;203.0.113.9", "(empty)", "F1", "-"]
        )
        + "\n"
        + "|".join(["1.0", "C1", "10.0.0.1", "1", "10.0.0.2", "2", "-", "198.51.100.1", "F2", "x"])
        + "\n"
    )
    alerts, lines, events, problems, _ = run(write(tmp_path, "files.log", text.encode()), "zeek")
    assert (lines, events, problems) == (9, 2, {})
    assert alerts == ["cidr", "ip"]


def test_zeek_tsv_second_header_block(tmp_path):
    """Log rotation: a second header block, columns in another order, mid-file."""
    text = (
        header() + row("evil.example") + row("x.example") + header(F2, T2) + row2("evil.example") + row2("y")
    )
    assert run(write(tmp_path, "dns.log", text.encode())) == (["dom", "dom"], 20, 4, {}, {})


def test_zeek_tsv_second_header_block_with_workers(tmp_path):
    # batch 1: first header + 2 rows; batch 2: the second header; batch 3: rows of the
    # second header. Every batch is parsed in a worker, after the preamble.
    text = (
        header()
        + row("evil.example")
        + row("x.example")
        + header(F2, T2)
        + "#x\n"
        + row2("a.example")
        + row2("evil.example")
        + row2("b.example")
        + "#x\n" * 6
    )
    path = write(tmp_path, "dns.log", text.encode())
    single = run(path, batch_lines=10)
    assert single == (["dom", "dom"], 28, 5, {}, {})
    # Workers parse each batch after the header block in force where it starts (a log
    # rotated mid-file starts a new one): the same result as a single process.
    assert run(path, batch_lines=10, workers=2) == single


def test_zeek_json_lines(tmp_path):
    lines = [
        {"_path": "dns", "ts": 1.0, "id.orig_h": "10.0.0.1", "id.resp_h": "8.8.8.8", "query": "evil.example"},
        {
            "_path": "http",
            "ts": "2026-03-01T10:00:00Z",
            "id.orig_h": "10.0.0.1",
            "id.resp_h": "1.1.1.1",
            "host": "evil.example",
            "uri": "/x",
        },
        {"_path": ["dns"], "id.orig_h": "10.0.0.1", "query": "evil.example"},  # guessed: dns
        {"_path": "weird", "id.orig_h": 5, "id.resp_h": ["203.0.113.9"], "query": {"a": 1}},
        {"_path": "conn", "id.orig_h": "198.51.100.200", "id.resp_h": "203.0.113.9", "proto": 6},
        {"nothing": "known"},
    ]
    data = b"".join(orjson.dumps(x) + b"\n" for x in lines) + b'{"_path": "dns", \n' + b"[1]\n"
    alerts, n, events, problems, skipped = run(write(tmp_path, "z.json", data), "zeek")
    assert n == 8 and events == 5
    assert problems == {"not valid JSON": 1, "TSV record before the #fields header line": 1}
    assert skipped == {"zeek record of an unsupported log": 1}
    # a list in id.resp_h gives one address per element (the "weird" record is guessed dns)
    assert alerts == ["cidr", "dom", "dom", "dom", "ip", "ip", "url"]


# -- empty sources and stdin -----------------------------------------------------------


def test_empty_sources(tmp_path):
    assert run(write(tmp_path, "e.json", b"")) == ([], 0, 0, {}, {})
    assert run(write(tmp_path, "e.json", b""), "zeek") == ([], 0, 0, {}, {})
    assert run(write(tmp_path, "e.json", b""), "suricata") == ([], 0, 0, {}, {})


def test_stdin(monkeypatch):
    data = gzip.compress(eve() + b"garbage\n" + eve(dest_ip="8.8.8.8"))
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BufferedReader(io.BytesIO(data))))
    assert run("-") == (["ip"], 3, 2, {"not valid JSON": 1}, {})


# -- the command line, on both backends ------------------------------------------------


def test_cli_detect_bad_inputs_not_fatal(exchange, database_url, tmp_path):
    m = make_member(exchange, "North Telecom")
    exchange.admin.create_community("isac", default_tlp=Tlp.GREEN)
    exchange.admin.set_membership("North Telecom", "isac", True, True, Tlp.AMBER)
    cid = exchange.admin.get_community("isac").collection_id
    assert not exchange.ingest.add_objects(
        m.principal,
        cid,
        [indicator("203.0.113.9"), indicator(pattern="[domain-name:value = 'evil.example']")],
    ).failures
    good = write(
        tmp_path,
        "eve.json",
        eve() + b"[]\n" + eve(event_type="dns", dest_ip="8.8.8.8", dns={"rrname": "evil.example"}),
    )
    empty = write(tmp_path, "empty.json", b"")
    dns_log = write(tmp_path, "dns.log", (header() + row("evil.example") + "short\n").encode())
    out = tmp_path / "alerts.jsonl"
    result = CliRunner().invoke(
        app,
        [
            "--database-url",
            database_url,
            "detect",
            "--community",
            "isac",
            "--user",
            m.user,
            "--output",
            str(out),
            str(good),
            str(empty),
            str(dns_log),
        ],
    )
    assert result.exit_code == 0, result.output
    alerts = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(alerts) == 3
    assert {a["event_kind"] for a in alerts} == {"suricata:flow", "suricata:dns", "zeek:dns"}
    assert "not a JSON object" in result.output and "columns" in result.output
