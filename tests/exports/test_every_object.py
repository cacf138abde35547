"""Every format exports every kind of stored object the filters let through.

A store holding indicators of every value kind, the SCOs that carry values (by value
or by hashes), objects without values and free text that breaks naive writers, read
with a type filter that lets all of them through: each format's output must pass its
real parser or published format, on both backends.
"""

from __future__ import annotations

import base64
import csv
import io
import ipaddress
import json
import uuid

import dns.rdatatype
import dns.zone
import idstools.rule
import pytest
import stix2

from commonwatch.domain.markings import Tlp
from commonwatch.services.export import FORMATS
from commonwatch.services.query import ExportFilter

from support.factories import indicator, ipv4, make_member, ts

ODD = 'C2 "x"; y, z\\ |a|\t{b}\r\nnew line é \u2028 =cmd'
SHA256 = "2a0169c72c84e6d3fa49af701fd46ee7aaf1d1d9e107798d93a6ca8df5d25957"
MD5 = "001dd76872d80801692ff942308c64e6"


def _sco(kind: str, **props: object) -> dict[str, object]:
    return {"type": kind, "spec_version": "2.1", "id": f"{kind}--{uuid.uuid4()}", **props}


def _objects() -> list[dict[str, object]]:
    patterns = [
        "[ipv4-addr:value = '45.77.5.1']", "[ipv4-addr:value = '45.77.6.0/24']",
        "[ipv6-addr:value = '2a0c:9a40:5::1']", "[domain-name:value = 'evil-host.xyz']",
        "[url:value = 'http://evil-host.xyz:8080/a;b?c=\"d\"']", "[url:value = 'https://evil-host.xyz/x']",
        "[email-addr:value = 'ceo@evil-host.xyz']", f"[file:hashes.MD5 = '{MD5}']",
        f"[file:hashes.'SHA-256' = '{SHA256}']",
        "[file:hashes.'SHA-1' = '0123456789abcdef0123456789abcdef01234567']",
        f"[file:hashes.'SHA-512' = '{'ab' * 64}']", "[file:name = 'x.exe']",
        "[domain-name:value = 'a-host.xyz' OR domain-name:value = 'b-host.xyz']",
    ]
    found: list[dict[str, object]] = [
        indicator(name=ODD if n % 2 else f"ind {n}", labels=[ODD], confidence=n * 7 % 101,
                  indicator_types=["malicious-activity", "anonymization"] if n % 3 else [ODD],
                  valid_until=ts(100_000_000), **{"pattern": p})
        for n, p in enumerate(patterns)]
    found += [
        ipv4("45.77.7.7"), _sco("ipv6-addr", value="2a0c:9a40:7::7"),
        _sco("domain-name", value="sco-host.top"), _sco("url", value="http://sco-host.top/p"),
        _sco("email-addr", value="x@sco-host.top"),
        _sco("file", name="f.bin", hashes={"MD5": MD5, "SHA-256": SHA256}),
        _sco("artifact", hashes={"SHA-512": "cd" * 64}, payload_bin=base64.b64encode(b"x").decode()),
        _sco("ipv4-addr", value="45.77.8.0/24"),
    ]
    return found


TYPES = ("indicator", "ipv4-addr", "ipv6-addr", "domain-name", "url", "email-addr", "file", "artifact")


@pytest.fixture
def outputs(exchange, svc):
    p = make_member(exchange, "Prod @home + co.")  # names are restricted to a safe alphabet
    exchange.admin.create_community("ring", default_tlp=Tlp.GREEN)
    exchange.admin.set_membership("Prod @home + co.", "ring", True, True, Tlp.RED)
    cid = exchange.admin.get_community("ring").collection_id
    report = exchange.ingest.add_objects(p.principal, cid, _objects())
    assert not report.failures, report.failures
    flt = ExportFilter(types=TYPES)
    found = {}
    for fmt in FORMATS:
        export = svc.export(p.principal, fmt, flt)
        found[fmt] = ("".join(export.chunks), export.stats)
    return found


def test_every_format_reads_every_object(outputs):
    for fmt, (_, stats) in outputs.items():
        if fmt != "suricata-iprep-categories":
            assert stats.objects_read == 21, fmt


def test_suricata_rules_parse(outputs):
    text, _ = outputs["suricata-rules"]
    rules = [idstools.rule.parse(line) for line in text.splitlines()]
    assert rules and all(r is not None for r in rules)
    assert len({r.sid for r in rules}) == len(rules)
    for r in rules:
        assert all(len(m.split(" ", 1)) == 2 and m.split(" ", 1)[1].strip() for m in r.metadata), r.raw
        assert "\n" not in r.raw and "\r" not in r.raw
    # The SCO domain and the SCO http URL (warninglisted values would be left out).
    assert sum(1 for r in rules if "sco-host.top" in r.raw) == 2, outputs["suricata-rules"][1]


def test_datasets_and_iprep(outputs):
    for name in ("string", "md5", "sha256", "ipv4", "ip"):
        text, _ = outputs[f"suricata-dataset-{name}"]
        lines = text.splitlines()
        assert lines and "\n\n" not in text and all(line == line.strip() and line for line in lines)
        for line in lines:
            if name == "string":
                base64.b64decode(line, validate=True)
            elif name in ("md5", "sha256"):
                assert len(line) == (32 if name == "md5" else 64) and int(line, 16) >= 0
            else:
                ipaddress.ip_address(line)
    for line in outputs["suricata-iprep"][0].splitlines():
        ip, category, score = line.split(",")
        ipaddress.ip_network(ip)
        assert 1 <= int(category) <= 7 and 1 <= int(score) <= 127


def test_zeek_rpz_and_plain_lists(outputs):
    lines = outputs["zeek-intel"][0].splitlines()
    assert lines[0].startswith("#fields")
    assert all(len(line.split("\t")) == 5 and all(line.split("\t")) for line in lines[1:])
    assert any(line.startswith("sco-host.top\tIntel::DOMAIN") for line in lines)
    zone = dns.zone.from_text(outputs["rpz"][0], origin="rpz.commonwatch.", relativize=False)
    names = {str(n) for n, _ in zone.iterate_rdatasets(dns.rdatatype.CNAME)}
    assert "sco-host.top.rpz.commonwatch." in names
    for fmt, (text, _) in outputs.items():
        if fmt.startswith("plain-"):
            assert all(line and line == line.strip() for line in text.splitlines()), fmt


def test_csv_stix_and_misp(outputs):
    rows = list(csv.DictReader(io.StringIO(outputs["csv"][0], newline="")))
    assert rows and all(len(r) == 13 and None not in r for r in rows)
    assert any(r["name"] == ODD for r in rows) and all(r["producer"] == "Prod @home + co." for r in rows)
    bundle = stix2.parse(outputs["stix"][0], allow_custom=True)
    assert len(bundle.objects) >= 20
    event = json.loads(outputs["misp"][0])["Event"]
    assert all(a["timestamp"].isdigit() and a["value"] for a in event["Attribute"])
    assert {"sco-host.top", "x@sco-host.top", "cd" * 64} <= {a["value"] for a in event["Attribute"]}
