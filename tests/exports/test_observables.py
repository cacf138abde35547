"""Indicator patterns and SCOs to exportable (kind, normalised value) pairs."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from commonwatch.domain import observables as ob
from commonwatch.domain.observables import Observable, from_object, from_pattern, normalise

DATA = Path(__file__).parent / "data"


@pytest.mark.parametrize(("kind", "raw", "expected"), [
    ("ipv4-addr", " 203.0.113.7 ", "203.0.113.7"),
    ("ipv4-addr", "45.77.1.2/32", "45.77.1.2"),
    ("ipv4-addr", "45.77.1.2/24", "45.77.1.0/24"),
    ("ipv6-addr", "2001:DB8:0:0::1", "2001:db8::1"),
    ("ipv6-addr", "2001:db8::1/48", "2001:db8::/48"),
    ("domain-name", "Evil.Example.ORG.", "evil.example.org"),
    ("domain-name", "bücher.de", "xn--bcher-kva.de"),
    ("domain-name", "_dmarc.mail.example.net", "_dmarc.mail.example.net"),
    ("url", "HTTP://Evil.ORG:80/Path?A=1", "http://evil.org/Path?A=1"),
    ("url", "https://evil.org:8443", "https://evil.org:8443/"),
    ("url", "evil.org/x", "http://evil.org/x"),
    ("url", "http://[2001:DB8::1]/a", "http://[2001:db8::1]/a"),
    ("url", "http://bücher.de/x", "http://xn--bcher-kva.de/x"),
    ("email-addr", "Bad.Guy@Evil.ORG", "bad.guy@evil.org"),
    ("md5", "D41D8CD98F00B204E9800998ECF8427E", "d41d8cd98f00b204e9800998ecf8427e"),
])
def test_values_are_normalised(kind, raw, expected):
    assert normalise(kind, raw) == Observable(kind, expected)


@pytest.mark.parametrize(("kind", "raw"), [
    ("ipv4-addr", "300.1.1.1"), ("ipv4-addr", "2001:db8::1"), ("ipv6-addr", "1.2.3.4"),
    ("domain-name", "a..b"), ("domain-name", "-bad-.org"), ("domain-name", "x" * 64 + ".org"),
    ("domain-name", "1.2.3.4"), ("domain-name", "has space.org"), ("domain-name", "*.wild.org"),
    ("url", "http://"), ("url", "http://a b/"), ("url", "http://evil.org:99999/"),
    ("email-addr", "nobody"), ("email-addr", "@evil.org"), ("md5", "abc"), ("sha256", "zz" * 32),
    ("ja3", "anything"),
])
def test_invalid_values_are_refused(kind, raw):
    assert normalise(kind, raw) is None


@pytest.mark.parametrize(("pattern", "expected"), [
    ("[ipv4-addr:value = '45.77.1.2']", [("ipv4-addr", "45.77.1.2")]),
    ("[ipv4-addr:value IN ('45.77.1.2', '45.77.1.3')]",
     [("ipv4-addr", "45.77.1.2"), ("ipv4-addr", "45.77.1.3")]),
    ("[domain-name:value = 'a.org' OR domain-name:value = 'b.org']",
     [("domain-name", "a.org"), ("domain-name", "b.org")]),
    ("[url:value = 'http://a.org/x'] OR [email-addr:value = 'x@b.org']",
     [("url", "http://a.org/x"), ("email-addr", "x@b.org")]),
    ("[file:hashes.'SHA-256' = '" + "A" * 64 + "']", [("sha256", "a" * 64)]),
    ("[file:hashes.md5 = '001dd76872d80801692ff942308c64e6']", [("md5", "001dd76872d80801692ff942308c64e6")]),
    ("[network-traffic:dst_ref.value = '2001:db8::5']", [("ipv6-addr", "2001:db8::5")]),
    ("[ipv4-addr:value = '45.77.1.2' OR ipv4-addr:value = '45.77.1.2']", [("ipv4-addr", "45.77.1.2")]),
])
def test_simple_patterns_yield_their_values(pattern, expected):
    found = from_pattern(pattern)
    assert found.skipped is None
    assert [tuple(o) for o in found.observables] == expected


@pytest.mark.parametrize(("pattern", "reason"), [
    ("[ipv4-addr:value = '1.2.3.4' AND ipv4-addr:value = '5.6.7.8']", ob.SKIP_COMPLEX),
    ("[ipv4-addr:value = '1.2.3.4'] FOLLOWEDBY [ipv4-addr:value = '5.6.7.8']", ob.SKIP_COMPLEX),
    ("[ipv4-addr:value = '1.2.3.4'] WITHIN 10 SECONDS", ob.SKIP_COMPLEX),
    ("[ipv4-addr:value != '1.2.3.4']", ob.SKIP_COMPLEX),
    ("[ipv4-addr:value ISSUBSET '10.0.0.0/8']", ob.SKIP_COMPLEX),
    ("[domain-name:value LIKE '%.evil.org']", ob.SKIP_COMPLEX),
    ("[ipv4-addr:value NOT = '1.2.3.4']", ob.SKIP_COMPLEX),
    ("[file:name = 'evil.exe']", ob.SKIP_UNSUPPORTED),
    ("[ipv4-addr:value = 'not-an-ip']", ob.SKIP_INVALID_VALUE),
    ("[ipv4-addr:value = ", ob.SKIP_INVALID_PATTERN),
])
def test_other_patterns_are_skipped_with_a_reason(pattern, reason):
    assert from_pattern(pattern) == ((), reason)


def test_objects_and_pattern_types():
    snort = {"type": "indicator", "pattern_type": "snort", "pattern": "alert"}
    assert from_object(snort).skipped == ob.SKIP_PATTERN_TYPE
    domain = from_object({"type": "domain-name", "value": "Evil.ORG"})
    assert domain.observables == (Observable("domain-name", "evil.org"),)
    assert from_object({"type": "file", "hashes": {"MD5": "A" * 32, "SSDEEP": "3:x"}}).observables == (
        Observable("md5", "a" * 32),)
    assert from_object({"type": "malware", "name": "x"}).skipped == ob.SKIP_UNSUPPORTED


def test_real_samples():
    """APT1 (OASIS example) and OpenCTI test data: what is simple is exported, the rest counted."""
    bundle = json.loads((DATA / "schemas-example_apt1.json").read_text())
    results = [from_object(o) for o in bundle["objects"] if o["type"] == "indicator"]
    values = [o for r in results for o in r.observables]
    assert Observable("ipv4-addr", "223.166.0.0/15") in values
    assert Observable("domain-name", "hugesoft.org") in values
    assert Observable("md5", "001dd76872d80801692ff942308c64e6") in values
    assert sum(1 for r in results if r.skipped == ob.SKIP_COMPLEX) == 2  # the x509 AND patterns
    assert len(values) == 10
    opencti = json.loads((DATA / "opencti_DATA-TEST-STIX2_v2.json").read_text())
    found = [from_object(o) for o in opencti["objects"] if o["type"] == "indicator"]
    assert {o.kind for r in found for o in r.observables} == {"domain-name", "sha256"}


@settings(max_examples=100)
@given(st.ip_addresses(), st.integers(0, 128))
def test_address_normalisation_is_canonical_and_idempotent(address, prefix):
    prefix = min(prefix, address.max_prefixlen)
    text = f"{address}/{prefix}"
    found = ob.normalise_ip(text)
    assert found is not None
    assert ob.normalise_ip(found.value) == found  # idempotent
    net = ipaddress.ip_network(text, strict=False)
    assert ipaddress.ip_network(found.value) == net


@settings(max_examples=100)
@given(st.from_regex(r"[a-zA-Z0-9]([a-zA-Z0-9-]{0,10}[a-zA-Z0-9])?(\.[a-zA-Z]{2,6}){1,3}\.?", fullmatch=True))
def test_domain_normalisation_is_idempotent(domain):
    once = ob.normalise_domain(domain)
    assert once is not None and once == once.lower() and not once.endswith(".")
    assert ob.normalise_domain(once) == once


def _generic_ip(value: str) -> Observable | None:
    """What address normalisation answers, through ipaddress's family-guessing parsers."""
    text = value.strip()
    if "%" in text:
        return None
    try:
        if "/" in text:
            net = ipaddress.ip_network(text, strict=False)
            if net.prefixlen == net.max_prefixlen:
                return Observable(f"ipv{net.version}-addr", str(net.network_address))
            return Observable(f"ipv{net.version}-addr", str(net))
        addr = ipaddress.ip_address(text)
    except ValueError:
        return None
    return Observable(f"ipv{addr.version}-addr", str(addr))


_IP_TEXT = st.one_of(
    st.text(alphabet="0123456789abcdefABCDEFgx.:/% -[]\u0661\uff11", max_size=16),
    st.builds(lambda a, p: f"{a}/{p}", st.ip_addresses(), st.integers(0, 130)),
    st.builds(lambda a, tail: f"{a}{tail}", st.ip_addresses(), st.sampled_from(["", " ", "x", "/", "/1.2"])),
    st.sampled_from(["1.2.3.4/255.255.255.0", "1.2.3.4/0.0.0.255", "::ffff:1.2.3.4", "example.com",
                     "01.2.3.4", "1.2.3", "::/0", "fe80::1%eth0"]),
)


@settings(max_examples=2000)
@given(_IP_TEXT)
def test_address_normalisation_goes_straight_to_the_family_and_answers_like_ipaddress(text):
    """Regression guard for the fast path: IPv6 parsed as IPv6 at once, non-addresses
    refused before any parse; the answers are those of ip_address / ip_network."""
    assert ob.normalise_ip(text) == _generic_ip(text)
