"""Warninglists: loading, validation, and lookups checked against ``ipaddress``."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from commonwatch.domain.warninglists import builtin_dir, load_warninglists
from commonwatch.errors import ConfigError

WL = load_warninglists()


def test_every_builtin_list_names_source_and_licence() -> None:
    assert len(WL.lists) >= 6
    for meta in WL.lists:
        assert meta.source.strip() and meta.licence.strip() and meta.description.strip()
    names = {m.name for m in WL.lists}
    assert {"private-ip-ranges", "reserved-ip-ranges", "public-dns-resolvers",
            "provider-domains", "empty-and-test-file-hashes"} <= names


@pytest.mark.parametrize(("kind", "value", "expected"), [
    ("ipv4-addr", "10.1.2.3", ("private-ip-ranges",)),
    ("ipv4-addr", "10.1.0.0/16", ("private-ip-ranges",)),
    ("ipv4-addr", "8.0.0.0/8", ()),               # wider than any listed range
    ("ipv4-addr", "172.15.255.255", ()),
    ("ipv4-addr", "172.31.255.255", ("private-ip-ranges",)),
    ("ipv4-addr", "8.8.8.8", ("public-dns-resolvers",)),
    ("ipv4-addr", "8.8.8.8/32", ("public-dns-resolvers",)),
    ("ipv4-addr", "93.184.216.34", ()),
    ("ipv4-addr", "not an ip", ()),
    ("ipv4-addr", "1.2.3.4/33", ()),
    ("ipv6-addr", "2001:db8::1", ("reserved-ip-ranges",)),
    ("ipv6-addr", "2001:DB8:0:0::/64", ("reserved-ip-ranges",)),
    ("ipv6-addr", "2606:4700:4700::1111", ("public-dns-resolvers",)),
    ("ipv6-addr", "2a00:1450::1", ()),
    ("domain-name", "google.com", ("provider-domains",)),
    ("domain-name", "Mail.GOOGLE.com.", ("provider-domains",)),
    ("domain-name", "notgoogle.com", ()),
    ("domain-name", "google.com.evil.net", ()),
    ("domain-name", "printer.local", ("reserved-domains",)),
    ("url", "https://www.microsoft.com/en-us/download", ("provider-domains",)),
    ("url", "http://8.8.8.8:53/x", ("public-dns-resolvers",)),
    ("url", "http://[2001:db8::5]/a", ("reserved-ip-ranges",)),
    ("url", "http://evil.example.org/payload.exe", ("reserved-domains",)),
    ("url", "http://bad.actor.xyz/a", ()),
    ("url", "not a url", ()),
    ("md5", "D41D8CD98F00B204E9800998ECF8427E", ("empty-and-test-file-hashes",)),
    ("sha256", "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f",
     ("empty-and-test-file-hashes",)),
    ("sha1", "0" * 40, ()),
    ("email-addr", "someone@evil.xyz", ()),
    ("no-such-kind", "x", ()),
])
def test_hits(kind: str, value: str, expected: tuple[str, ...]) -> None:
    assert WL.hits(kind, value) == expected


_V4_REFERENCE = [
    (doc["name"], ipaddress.ip_network(entry, strict=False))
    for doc in (json.loads(p.read_text()) for p in builtin_dir().glob("*.json"))
    for entry in doc["values"].get("ipv4-addr", [])
]


def _reference_v4(value: ipaddress.IPv4Network) -> set[str]:
    """Which built-in lists contain ``value``, by brute force over the list files."""
    return {name for name, net in _V4_REFERENCE if value.subnet_of(net)}


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(8, 32))
def test_ipv4_ranges_match_reference(addr: int, plen: int) -> None:
    net = ipaddress.ip_network((addr, plen), strict=False)
    assert set(WL.hits("ipv4-addr", str(net))) == _reference_v4(net)


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(["10.0.0.0", "172.16.0.0", "192.168.0.0", "127.0.0.0", "224.0.0.0", "8.8.8.8",
                        "100.64.0.0", "198.18.0.0", "192.0.2.0"]), st.integers(0, 2**16))
def test_ipv4_near_boundaries_match_reference(base: str, delta: int) -> None:
    for addr in (int(ipaddress.ip_address(base)) - delta, int(ipaddress.ip_address(base)) + delta):
        if 0 <= addr < 2**32:
            net = ipaddress.ip_network((addr, 32))
            assert set(WL.hits("ipv4-addr", str(net.network_address))) == _reference_v4(net)


def _write(directory: Path, name: str, values: dict[str, list[str]], **extra: str) -> None:
    doc = {"name": name, "description": "d", "source": "s", "licence": "l", "values": values, **extra}
    (directory / f"{name}.json").write_text(json.dumps(doc))


def test_operator_lists_extend_and_override(tmp_path: Path) -> None:
    _write(tmp_path, "our-own", {"ipv4-addr": ["203.0.113.7", "198.51.100.0/24"],
                                 "domain-name": ["intranet.corp"], "email-addr": ["Soc@Corp.example"],
                                 "url": ["https://update.vendor.test/check"]})
    _write(tmp_path, "public-dns-resolvers", {"ipv4-addr": ["8.8.4.4"]})
    wl = load_warninglists([tmp_path])
    assert wl.hits("ipv4-addr", "203.0.113.7") == ("our-own", "reserved-ip-ranges")
    assert wl.hits("domain-name", "a.intranet.corp") == ("our-own",)
    assert wl.hits("email-addr", "soc@corp.example") == ("our-own",)
    assert wl.hits("url", "https://update.vendor.test/check") == ("our-own", "reserved-domains")
    assert wl.hits("ipv4-addr", "8.8.8.8") == ()      # the built-in list was replaced
    assert wl.hits("ipv4-addr", "8.8.4.4") == ("public-dns-resolvers",)


@pytest.mark.parametrize(("doc", "message"), [
    ("{", "not valid JSON"),
    ('{"name": "x", "description": "d", "source": "s", "values": {}}', "licence"),
    ('{"name": "x", "description": "d", "source": "s", "licence": "l", "values": {"ip": []}}',
     "unknown kind"),
    ('{"name": "x", "description": "d", "source": "s", "licence": "l", "values": {"ipv4-addr": ["1.2.3"]}}',
     "'1.2.3' is not a valid ipv4-addr"),
    ('{"name": "x", "description": "d", "source": "s", "licence": "l", "values": {"md5": ["abc"]}}',
     "not a valid md5"),
])
def test_malformed_operator_list_is_refused(tmp_path: Path, doc: str, message: str) -> None:
    (tmp_path / "bad.json").write_text(doc)
    with pytest.raises(ConfigError, match=message):
        load_warninglists([tmp_path])


def test_missing_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_warninglists([tmp_path / "nope"])
