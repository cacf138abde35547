"""Lookup's shortcuts in classify and keys_for answer exactly as the plain definitions do.

``refang`` returns early when no defanging rule can apply, ``classify`` skips address
parsing when the value cannot be an address; ``keys_for`` reads canonical IPv4 values
without :mod:`ipaddress`. The references below are the plain definitions (refang
everything, try every parser; the standard library's ``supernet``).
"""

from __future__ import annotations

import ipaddress

from hypothesis import given, settings
from hypothesis import strategies as st

from commonwatch.domain.correlation import _HASH_BY_LENGTH, MAX_LOOKUP_LENGTH, classify, keys_for
from commonwatch.domain.defang import _REFANG, refang
from commonwatch.domain.observables import Observable, normalise, normalise_ip


def refang_everything(text: str) -> str:
    for pattern, plain in _REFANG:
        text = pattern.sub(plain, text)
    return text


def reference_classify(text: str) -> Observable | None:
    value = refang_everything(text.strip())
    if not value or len(value) > MAX_LOOKUP_LENGTH:
        return None
    found = normalise_ip(value)
    if found is not None:
        return found
    hex_kind = _HASH_BY_LENGTH.get(len(value))
    if hex_kind is not None and (hashed := normalise(hex_kind, value)) is not None:
        return hashed
    if "://" in value:
        return normalise("url", value)
    if "@" in value:
        return normalise("email-addr", value)
    if "/" in value:
        return normalise("url", value)
    return normalise("domain-name", value)


octets = st.integers(0, 255).map(str)
ipv4 = st.lists(octets, min_size=4, max_size=4).map(".".join)
ipv6 = st.integers(0, 2**128 - 1).map(lambda n: str(ipaddress.IPv6Address(n)))
netmask = st.integers(0, 32).map(lambda p: str(ipaddress.IPv4Network((0, p)).netmask))
address = st.one_of(
    ipv4, ipv6,
    st.tuples(ipv4, st.integers(0, 33).map(str) | netmask).map("/".join),
    st.tuples(ipv6, st.integers(0, 129).map(str)).map("/".join),
    ipv6.map(lambda a: a + "%eth0"), ipv4.map(lambda a: a.replace(".", "", 1)),
)
label = st.text("abcxyz019-_", min_size=1, max_size=8)
domain = st.lists(label, min_size=1, max_size=4).map(".".join) | st.sampled_from(
    ["Bad-Example.COM", "bücher.example", "xn--bcher-kva.example", "1.2.3", "a..b", "example.com."])
url = st.tuples(st.sampled_from(["http://", "https://", "hxxps://", "HXXP://", "fxp://", "h**p://",
                                 "ftp[:]//", "hxxp[://]", ""]),
                domain | address, st.sampled_from(["", "/", "/x?y=1", ":8080/a", ":443/", "/[.]"])
                ).map("".join)
hexdigest = st.sampled_from(sorted(_HASH_BY_LENGTH)).flatmap(
    lambda n: st.text("0123456789abcdefABCDEF", min_size=n, max_size=n))
email = st.tuples(label, st.sampled_from(["@", "[@]", "(at)", " [ at ] "]), domain).map("".join)
noise = st.text("0123456789abcdefhxpXP*:/.[](){}@\\ \t\u2003\u017f\u212aé", max_size=24)
defang = st.sampled_from([lambda v: v, lambda v: v.replace(".", "[.]"), lambda v: v.replace(".", "(dot)"),
                          lambda v: v.replace(".", " [.] "), lambda v: v.replace(".", "\\."),
                          lambda v: v.replace(":", "[:]"), lambda v: f"  {v}\n"])
values = st.tuples(st.one_of(address, domain, url, hexdigest, email, noise), defang).map(
    lambda pair: pair[1](pair[0]))


@settings(max_examples=600)
@given(values)
def test_refang_shortcut_changes_nothing(text):
    assert refang(text) == refang_everything(text)


@settings(max_examples=600)
@given(values)
def test_classify_answers_as_the_plain_definition(text):
    assert classify(text) == reference_classify(text)


@settings(max_examples=300)
@given(st.integers(0, 2**32 - 1), st.integers(0, 32), st.none() | st.sets(st.integers(0, 32)))
def test_ipv4_keys_equal_the_standard_library(n, prefix, stored):
    net = ipaddress.IPv4Network((n, prefix), strict=False)
    observable = classify(str(net))
    assert observable is not None
    lengths = range(net.prefixlen - 1, -1, -1) if stored is None else sorted(
        (p for p in stored if p < net.prefixlen), reverse=True)
    expected = [str(net if net.prefixlen < 32 else net.network_address)] + [
        str(net.supernet(new_prefix=p)) for p in lengths]
    keys = keys_for(observable, None if stored is None else {"ipv4-addr": stored})
    assert [k.value for k in keys] == expected
    assert [k.relation for k in keys] == ["exact"] + ["contained-in"] * len(lengths)
