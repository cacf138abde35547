"""Free text: refanging, extraction, the usual false positives, and a messy report (golden)."""

from __future__ import annotations

import pytest

from commonwatch.formats.freetext import extract, read_text, refang
from imports.helpers import DATA, OWN_IDENTITY, as_golden


@pytest.mark.parametrize(("defanged", "plain"), [
    ("hxxp://evil[.]com/a", "http://evil.com/a"),
    ("hXXps[:]//evil(.)com", "https://evil.com"),
    ("fxp://files[dot]example[.]org", "ftp://files.example.org"),
    ("user[@]mail(dot)example{.}net", "user@mail.example.net"),
    ("bad(at)example[.]ru", "bad@example.ru"),
    ("198.51.100[.]7", "198.51.100.7"),
    ("evil\\.com", "evil.com"),
    ("https[:]//x[.]com[/]path", "https://x.com/path"),
])
def test_refang(defanged: str, plain: str) -> None:
    assert refang(defanged) == plain


def values(line: str) -> list[tuple[str, str]]:
    return [(f.kind, f.value) for f in extract(line)]


@pytest.mark.parametrize(("line", "expected"), [
    ("C2 hxxp://203.0.113[.]5:8080/gate and evil[.]com",
     [("url", "http://203.0.113.5:8080/gate"), ("domain-name", "evil.com")]),
    ("mail from bad[@]actor[.]ru", [("email-addr", "bad@actor.ru")]),
    ("IPv6 2001:db8::1 and range 2001:db8:abcd::/48", [("ipv6-addr", "2001:db8::1"),
                                                       ("ipv6-addr", "2001:db8:abcd::/48")]),
    ("cidr 10.0.0.0/8, host 192.0.2.1.", [("ipv4-addr", "10.0.0.0/8"), ("ipv4-addr", "192.0.2.1")]),
    ("exploits CVE-2021-44228 and cve-2023-23397", [("cve", "CVE-2021-44228"), ("cve", "CVE-2023-23397")]),
    ("md5 D41D8CD98F00B204E9800998ECF8427E", [("md5", "d41d8cd98f00b204e9800998ecf8427e")]),
    ("sha1 3395856ce81f2b7382dee72602f798b642f14140", [("sha1", "3395856ce81f2b7382dee72602f798b642f14140")]),
    # false positives that must not come out
    ("version 10.2.3.4, v1.0.0.1, build 6.1.7601.17514, firmware 2.3.4.5", []),
    ("OID 1.3.6.1.4.1.311 and 1.2.3.4.5", []),
    ("dropped setup.exe, report.pdf, run.sh and readme.md", []),
    ("not a hash: a1b2c3d4e5f60718293a4b5c6d7e8f90a1 (33 hex), deadbeef", []),
    ("time 12:30:45 and ratio 3:2", []),
    ("uuid 5d0092c5-5f74-4287-9642-33f4c354e56d is not a hash", []),
    # a defanged file-like name was marked as an indicator by the author
    ("payload at evil[.]sh", [("domain-name", "evil.sh")]),
    ("see login.microsoftonline.com.secure-auth.xyz",
     [("domain-name", "login.microsoftonline.com.secure-auth.xyz")]),
    ("a value inside a URL is not repeated: https://evil.com/x?ip=1.2.3.4",
     [("url", "https://evil.com/x?ip=1.2.3.4")]),
    # an IPv6 literal host (RFC 3986), and parentheses: the URL's own, or the sentence's
    ("beacon to http://[2001:db8::1b]:8443/gate.", [("url", "http://[2001:db8::1b]:8443/gate")]),
    ("payload http://evil.example/raw/Loader_(x64) dropped", [("url", "http://evil.example/raw/Loader_(x64)")]),
    ("(see http://evil.example/a), then (http://evil.example/b_(1)).",
     [("url", "http://evil.example/a"), ("url", "http://evil.example/b_(1)")]),
    ("a bare scheme http:// is no URL", []),
    # an e-mail address at an IDN top-level domain, in A-labels
    ("from admin@xn----dtbibgmnyvcg.xn--p1ai today", [("email-addr", "admin@xn----dtbibgmnyvcg.xn--p1ai")]),
])
def test_extract(line: str, expected: list[tuple[str, str]]) -> None:
    assert values(line) == expected


def test_messy_threat_report_golden(ctx, golden) -> None:
    with (DATA / "threat_report.txt").open("rb") as f:
        records = list(read_text(f, "threat_report.txt", ctx))
    golden("threat_report", as_golden(records))
    found = {(r.obj["type"], r.obj.get("value") or r.obj.get("name") or str(r.obj.get("hashes")))
             for r in records if r.obj and r.obj["type"] != "indicator"}
    assert ("url", "https://login-telecom-portal.com/owa/auth.php?id=1") in found
    assert ("email-addr", "billing@telecom-invoices.net") in found
    assert ("domain-name", "update-check.telecom-invoices.net") in found
    assert ("ipv6-addr", "2001:db8:beef::23") in found
    assert ("vulnerability", "CVE-2021-44228") in found
    texts = " ".join(str(v) for _, v in found)
    for absent in ("10.4.2.1", "6.1.7601", "1.3.6.1", "report.pdf", "capture.pcap", "setup.sh",
                   "invoice_0923.exe"):
        assert absent not in texts
    hits = {r.obj["name"]: r.hits for r in records if r.obj and r.hits}
    assert hits["8.8.8.8"] == ("public-dns-resolvers",)
    assert hits["www.microsoft.com"] == ("provider-domains",)
    assert hits["d41d8cd98f00b204e9800998ecf8427e"] == ("empty-and-test-file-hashes",)
    assert hits["10.20.30.40"] == ("private-ip-ranges",)
    indicators = [r.obj for r in records if r.obj and r.obj["type"] == "indicator"]
    assert all(i["created_by_ref"] == OWN_IDENTITY and i["created"] == ctx.timestamp for i in indicators)
    assert all(r.keep_existing for r in records if r.obj and r.obj["type"] == "indicator")


def test_each_value_once(ctx) -> None:
    import io
    text = b"evil[.]com\nagain evil[.]com and EVIL[.]COM\n"
    records = list(read_text(io.BytesIO(text), "t.txt", ctx))
    assert [r.obj["type"] for r in records if r.obj] == ["domain-name", "indicator"]
