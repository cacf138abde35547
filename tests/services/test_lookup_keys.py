"""The keys of a looked-up URL: its host is keyed as an address exactly when it parses as
one (hosts that cannot be an address are not parsed as one)."""

from __future__ import annotations

import ipaddress

from hypothesis import given
from hypothesis import strategies as st

from commonwatch.domain.correlation import keys_for
from commonwatch.domain.observables import Observable, normalise_ip

_IPV4 = st.integers(0, 2**32 - 1).map(lambda n: str(ipaddress.IPv4Address(n)))
_IPV6 = st.integers(0, 2**128 - 1).map(lambda n: f"[{ipaddress.IPv6Address(n)}]")
#: near misses: a colon only inside brackets, as a URL's host has it (else it is a port)
_ODD = st.one_of(st.text("0123456789abcdef.%-", min_size=1, max_size=24),
                 st.text("0123456789abcdef.:%-", min_size=1, max_size=24).map(lambda t: f"[{t}]"))
_DOMAINS = st.sampled_from(["example.com", "www.bad-example.org", "a.b.c.example.net", "1.2.3.example",
                            "localhost", "xn--bcher-kva.example"])
_HOSTS = st.one_of(_IPV4, _IPV6, _ODD, _DOMAINS)


@given(_HOSTS, st.sampled_from(["", ":8080"]))
def test_a_url_host_is_keyed_as_an_address_exactly_when_it_is_one(host, port):
    keys = keys_for(Observable("url", f"http://{host}{port}/x"), {"ipv4-addr": {24}, "ipv6-addr": {64}})
    assert keys[0].relation == "exact"
    address = normalise_ip(host.strip("[]"))
    if address is not None:
        assert (keys[1].kind, keys[1].value, keys[1].relation) == (address.kind, address.value, "host")
    else:
        assert all(k.kind == "domain-name" for k in keys[1:])
        assert keys[1].relation == "host"
