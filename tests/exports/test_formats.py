"""Every output format: golden files (frozen items, sids, times, uuids) and validation
against the real parsers or the published formats.

Regenerate the golden files after an intended change with ``CW_REGEN_GOLDEN=1`` and
review the diff.
"""

from __future__ import annotations

import base64
import csv
import io
import ipaddress
import json
import os
from collections import Counter
from pathlib import Path

import dns.rdatatype
import dns.zone
import idstools.rule
import pytest
import stix2

from commonwatch.domain.markings import Tlp
from commonwatch.domain.observables import ExportItem, Observable
from commonwatch.domain.timestamps import parse_timestamp
from commonwatch.formats import csv_export, misp_export, plain_lists, rpz, stix_export, suricata, zeek_intel

GOLDEN = Path(__file__).parent / "data" / "golden"
A_SHA256 = "2a0169c72c84e6d3fa49af701fd46ee7aaf1d1d9e107798d93a6ca8df5d25957"
A_MD5 = "001dd76872d80801692ff942308c64e6"


def _raw(stix_id: str, pattern: str, name: str) -> bytes:
    return json.dumps({
        "type": "indicator", "spec_version": "2.1", "id": stix_id, "created": "2026-01-02T03:04:05.000Z",
        "modified": "2026-01-03T03:04:05.000Z", "name": name, "pattern": pattern, "pattern_type": "stix",
        "valid_from": "2026-01-02T03:04:05Z"}, separators=(",", ":")).encode()


def _item(n: int, tlp: Tlp, name: str, observables: list[tuple[str, str]], **kw: object) -> ExportItem:
    stix_id = f"indicator--00000000-0000-4000-8000-{n:012d}"
    fields: dict[str, object] = dict(
        stix_id=stix_id, type="indicator", name=name, tlp=int(tlp), community="national-network",
        producer="Northern Telecom", confidence=85, created="2026-01-02T03:04:05.000Z",
        modified="2026-01-03T03:04:05.000Z", valid_until=None, labels=("malicious-activity",),
        observables=tuple(Observable(k, v) for k, v in observables),
        raw=_raw(stix_id, "[ipv4-addr:value = '45.77.1.2']", name),
    )
    fields.update(kw)
    fields["version_us"] = parse_timestamp(str(fields["modified"]))
    return ExportItem(**fields)  # type: ignore[arg-type]


ITEMS = [
    _item(1, Tlp.CLEAR, "C2 server", [("ipv4-addr", "45.77.1.2")]),
    _item(2, Tlp.GREEN, 'Botnet "Zed"; stage 2, \\ tab\there', [("ipv4-addr", "45.77.8.0/24"),
                                                                ("ipv6-addr", "2001:db8:42::7")],
          confidence=None, labels=("compromised", "anonymization")),
    _item(3, Tlp.AMBER, "Phishing domain", [("domain-name", "login-secure.bank-verify.xyz")],
          producer="Acme, Inc.", community="vendors"),
    _item(4, Tlp.AMBER_STRICT, "Payload URL", [("url", "http://dl.bad-cdn.top:8080/a;b/c.exe?x=1&y=\"2\""),
                                               ("url", "https://secure.bad-cdn.top/login")], confidence=10),
    _item(5, Tlp.RED, "Dropper", [("md5", A_MD5), ("sha256", A_SHA256)], valid_until="2027-01-01T00:00:00Z"),
    _item(6, Tlp.GREEN, "Sender", [("email-addr", "ceo@bad-cdn.top"), ("domain-name", "xn--bcher-kva.xyz")],
          confidence=0, labels=()),
]


class FixedSids:
    """A stand-in for the database allocator: sequential sids, rev 1."""

    def __init__(self) -> None:
        self.seen: dict[str, int] = {}

    def __call__(self, rows):
        out = []
        for row in rows:
            out.append([])
            for key in row.rule_keys():
                self.seen.setdefault(key, len(self.seen) + 1)
                out[-1].append((suricata.SID_BASE + self.seen[key], 1))
        return out


def render(fmt: str) -> tuple[str, Counter[str]]:
    skipped: Counter[str] = Counter()
    items = iter(ITEMS)
    chunks = {
        "suricata.rules": lambda: suricata.rules(items, suricata.Unremembered(FixedSids()), skipped),
        "suricata-string.lst": lambda: suricata.dataset(items, "string", skipped),
        "suricata-md5.lst": lambda: suricata.dataset(items, "md5", skipped),
        "suricata-sha256.lst": lambda: suricata.dataset(items, "sha256", skipped),
        "suricata-ipv4.lst": lambda: suricata.dataset(items, "ipv4", skipped),
        "suricata-ip.lst": lambda: suricata.dataset(items, "ip", skipped),
        "iprep-categories.txt": lambda: iter([suricata.iprep_categories()]),
        "iprep.list": lambda: suricata.iprep(items),
        "zeek.intel": lambda: zeek_intel.render(items),
        "rpz.zone": lambda: rpz.render(items, 2026010101, skipped),
        "rpz-garden.zone": lambda: rpz.render(items, 7, skipped, target="Walled.Example.NET", wildcard=False),
        "plain-ip.txt": lambda: plain_lists.render(items, plain_lists.LISTS["ip"]),
        "plain-url.txt": lambda: plain_lists.render(items, plain_lists.LISTS["url"], strip_scheme=True),
        "plain-hash.txt": lambda: plain_lists.render(items, plain_lists.LISTS["hash"]),
        "export.csv": lambda: csv_export.render(items),
        "bundle.json": lambda: stix_export.render(items, "bundle--11111111-1111-4111-8111-111111111111"),
        "misp.json": lambda: misp_export.render(items, "22222222-2222-4222-8222-222222222222",
                                                1_767_225_600, "CommonWatch export"),
    }[fmt]()
    return "".join(chunks), skipped


GOLDEN_FILES = ["suricata.rules", "suricata-string.lst", "suricata-md5.lst", "suricata-sha256.lst",
                "suricata-ipv4.lst", "suricata-ip.lst", "iprep-categories.txt", "iprep.list", "zeek.intel",
                "rpz.zone", "rpz-garden.zone", "plain-ip.txt", "plain-url.txt", "plain-hash.txt",
                "export.csv", "bundle.json", "misp.json"]


@pytest.mark.parametrize("name", GOLDEN_FILES)
def test_golden(name):
    text, _ = render(name)
    path = GOLDEN / name
    if os.environ.get("CW_REGEN_GOLDEN"):
        path.write_bytes(text.encode())
    assert text == path.read_bytes().decode()


# -- validation against the real parsers / published formats -------------------------------------

def test_suricata_rules_parse_with_idstools():
    text, skipped = render("suricata.rules")
    rules = [idstools.rule.parse(line) for line in text.splitlines()]
    assert all(r is not None for r in rules), text
    assert len({r.sid for r in rules}) == len(rules) == 6
    assert all(r.rev == 1 and r.sid > suricata.SID_BASE for r in rules)
    assert {r.proto for r in rules} == {"ip", "dns", "http"}
    assert all("TLP:" in r.msg and "CommonWatch" in r.msg for r in rules)
    cw_id = "cw_id indicator--00000000-0000-4000-8000-000000000002"
    assert any(cw_id in m for r in rules for m in r.metadata)
    quoted = next(r for r in rules if "Zed" in r.msg)
    assert '"' not in quoted.msg and ";" not in quoted.msg
    url_rule = next(r for r in rules if r.proto == "http")
    assert 'content:"dl.bad-cdn.top"' in url_rule.raw and "|3B|" in url_rule.raw and "|22|" in url_rule.raw
    # https URL, e-mail, two hashes: no rule form
    assert skipped == Counter({suricata.SKIP_HTTPS: 1, suricata.SKIP_RULE_KIND: 3})


@pytest.mark.parametrize("name", ["suricata-string.lst", "suricata-md5.lst", "suricata-sha256.lst",
                                  "suricata-ipv4.lst", "suricata-ip.lst"])
def test_suricata_datasets_hold_only_values(name):
    text, skipped = render(name)
    assert text.endswith("\n") and "\n\n" not in text and not text.startswith("#")
    lines = text.splitlines()
    assert lines and all(line and line == line.strip() for line in lines)
    if name == "suricata-string.lst":
        assert [base64.b64decode(x, validate=True).decode() for x in lines] == [
            "login-secure.bank-verify.xyz", "xn--bcher-kva.xyz"]
    elif name in ("suricata-md5.lst", "suricata-sha256.lst"):
        assert all(len(x) == (32 if "md5" in name else 64) and int(x, 16) >= 0 for x in lines)
    else:
        assert all(ipaddress.ip_address(x) for x in lines)
        assert skipped == Counter({suricata.SKIP_CIDR: 1})


def test_suricata_iprep_follows_the_published_format():
    categories, _ = render("iprep-categories.txt")
    ids = {}
    for line in categories.splitlines():
        number, short, description = line.split(",")
        assert 1 <= int(number) <= 60 and short.isalnum() and description
        ids[int(number)] = short
    rep, _ = render("iprep.list")
    for line in rep.splitlines():
        ip, category, score = line.split(",")
        ipaddress.ip_network(ip)
        assert int(category) in ids and 1 <= int(score) <= 127
    assert "45.77.8.0/24,3,64" in rep.splitlines() and "45.77.1.2,1,108" in rep.splitlines()


def test_zeek_intel_file():
    text, _ = render("zeek.intel")
    lines = text.splitlines()
    assert lines[0] == "#fields\tindicator\tindicator_type\tmeta.source\tmeta.desc\tmeta.url"
    types = {}
    for line in lines[1:]:
        fields = line.split("\t")
        assert len(fields) == 5 and all(fields)
        types[fields[0]] = fields[1]
    assert types["45.77.8.0/24"] == "Intel::SUBNET" and types["2001:db8:42::7"] == "Intel::ADDR"
    assert types["dl.bad-cdn.top:8080/a;b/c.exe?x=1&y=\"2\""] == "Intel::URL"  # no scheme
    assert types["ceo@bad-cdn.top"] == "Intel::EMAIL" and types[A_SHA256] == "Intel::FILE_HASH"


@pytest.mark.parametrize("name", ["rpz.zone", "rpz-garden.zone"])
def test_rpz_zone_parses_with_dnspython(name):
    text, skipped = render(name)
    zone = dns.zone.from_text(text, origin="rpz.commonwatch.", relativize=False, check_origin=True)
    cnames = {str(n): str(r[0].target) for n, r in zone.iterate_rdatasets(dns.rdatatype.CNAME)}
    target = "." if name == "rpz.zone" else "walled.example.net."
    assert cnames["login-secure.bank-verify.xyz.rpz.commonwatch."] == target
    assert ("*.login-secure.bank-verify.xyz.rpz.commonwatch." in cnames) == (name == "rpz.zone")
    assert cnames["32.2.1.77.45.rpz-ip.rpz.commonwatch."] == target
    assert cnames["24.0.8.77.45.rpz-ip.rpz.commonwatch."] == target
    assert skipped == Counter({rpz.SKIP_IPV6: 1})


def test_rpz_refuses_a_bad_walled_garden():
    with pytest.raises(ValueError, match="walled-garden"):
        "".join(rpz.render(iter(ITEMS), 1, Counter(), target="not a name"))


def test_csv_is_rfc4180_and_formula_safe():
    text, _ = render("export.csv")
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    assert len(rows) == 10 and rows[0]["value"] == "45.77.1.2" and rows[0]["tlp"] == "TLP:CLEAR"
    zed = next(r for r in rows if r["stix_id"].endswith("2"))
    assert zed["name"] == 'Botnet "Zed"; stage 2, \\ tab\there' and zed["confidence"] == ""


def test_stix_bundle_is_valid_stix():
    text, _ = render("bundle.json")
    bundle = stix2.parse(text, allow_custom=False)
    assert len(bundle.objects) == len(ITEMS)


def test_misp_event():
    text, _ = render("misp.json")
    event = json.loads(text)["Event"]
    types = Counter(a["type"] for a in event["Attribute"])
    assert types == Counter({"ip-dst": 3, "domain": 2, "url": 2, "md5": 1, "sha256": 1, "email-src": 1})
    assert all(a["to_ids"] and a["Tag"][0]["name"].startswith("tlp:") for a in event["Attribute"])
    assert {a["Tag"][0]["name"] for a in event["Attribute"]} == {
        "tlp:clear", "tlp:green", "tlp:amber", "tlp:amber+strict", "tlp:red"}
    assert len({a["uuid"] for a in event["Attribute"]}) == 10


def test_streams_are_chunked():
    """Large inputs come out in several chunks (the HTTP feed streams them)."""
    many = [ITEMS[0]._replace(stix_id=f"indicator--{i}") for i in range(12_000)]
    assert len(list(plain_lists.render(iter(many), ("ipv4-addr",)))) > 1
    assert len(list(stix_export.render(iter(many), "bundle--x"))) > 3
