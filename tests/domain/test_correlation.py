"""Which stored keys a looked-up value matches."""

from __future__ import annotations

import ipaddress

from hypothesis import given
from hypothesis import strategies as st

from commonwatch.domain.correlation import classify, keys_for, refang


def test_defanged_values_are_classified_and_normalised():
    assert classify("hxxps://Evil[.]Example[.]com/x") == ("url", "https://evil.example.com/x")
    assert classify("bob[@]Example.org") == ("email-addr", "bob@example.org")
    assert classify("10.1.2.3/8") == ("ipv4-addr", "10.0.0.0/8")
    assert classify("D41D8CD98F00B204E9800998ECF8427E") == ("md5", "d41d8cd98f00b204e9800998ecf8427e")
    assert classify("not a value") is None and classify("") is None
    assert refang("1.2.3[.]4") == "1.2.3.4"


def test_parent_domains_stop_before_the_top_level_domain():
    keys = keys_for(classify("a.b.example.com"))
    assert [(k.value, k.relation) for k in keys] == [
        ("a.b.example.com", "exact"), ("b.example.com", "subdomain-of"), ("example.com", "subdomain-of")]


def test_stored_prefix_lengths_limit_the_containing_networks():
    address = classify("203.0.113.77")
    assert len(keys_for(address)) == 33
    only = keys_for(address, {"ipv4-addr": {24, 16, 32}})
    assert [k.value for k in only] == ["203.0.113.77", "203.0.113.0/24", "203.0.0.0/16"]
    assert [k.value for k in keys_for(address, {})] == ["203.0.113.77"]
    url = keys_for(classify("http://203.0.113.77/x"), {"ipv4-addr": {8}})
    assert [(k.kind, k.value, k.relation) for k in url] == [
        ("url", "http://203.0.113.77/x", "exact"), ("ipv4-addr", "203.0.113.77", "host"),
        ("ipv4-addr", "203.0.0.0/8", "contained-in")]


@given(st.integers(0, 2**128 - 1), st.integers(1, 128))
def test_ipv6_containing_networks_equal_the_standard_library(n, prefix):
    net = ipaddress.IPv6Network((n, prefix), strict=False)
    keys = keys_for(classify(str(net)))
    assert [k.value for k in keys[1:]] == [str(net.supernet(new_prefix=p)) for p in range(prefix - 1, -1, -1)]


@given(st.integers(0, 2**32 - 1))
def test_ipv4_containing_networks_equal_the_standard_library(n):
    address = ipaddress.IPv4Address(n)
    keys = keys_for(classify(str(address)))
    net = ipaddress.IPv4Network(n)
    assert [k.value for k in keys[1:]] == [str(net.supernet(new_prefix=p)) for p in range(31, -1, -1)]
