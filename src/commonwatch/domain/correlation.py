"""Which index keys a looked-up value matches (pure).

A value typed by a user (an address, a CIDR, a domain, a URL, an e-mail address or a
hash, possibly defanged) is classified and normalised like the stored observables
(:mod:`commonwatch.domain.observables`), then expanded into every stored key that
concerns it:

* an address or CIDR matches itself and every stored CIDR that contains it (one exact
  key per shorter prefix: 32 for IPv4, 128 for IPv6, each an index probe);
* a domain matches itself and its parent domains (``a.b.example.com`` ->
  ``b.example.com``, ``example.com``; never a bare top-level domain);
* a URL matches itself and, through its host, that host's keys;
* an e-mail address matches itself and its domain's keys; a hash matches itself.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Collection, Mapping
from socket import inet_ntoa
from typing import NamedTuple

from commonwatch.domain.defang import refang
from commonwatch.domain.observables import (
    ADDRESS_FAMILIES,
    HASH_KINDS,
    Observable,
    network_int,
    normalise,
    normalise_ip,
)

#: Longest value accepted for a lookup (longer ones are refused, not truncated).
MAX_LOOKUP_LENGTH = 2048
_HASH_BY_LENGTH = {length: kind for kind, length in HASH_KINDS.items()}


class Key(NamedTuple):
    """One stored index key a looked-up value matches, and why."""

    kind: str
    value: str
    relation: str  # "exact", "contained-in", "subdomain-of", "host", "domain"


#: An address or network: IPv6 always has a colon; IPv4 (with a prefix or netmask) is
#: ASCII digits, dots and a slash. Anything else cannot parse as either.
_IPV4_CHARS = re.compile(r"[0-9./]+")


def classify(text: str) -> Observable | None:
    """The observable ``text`` denotes, normalised; None if it is none of the kinds."""
    value = refang(text.strip())
    if not value or len(value) > MAX_LOOKUP_LENGTH:
        return None
    # Parsing a hash, domain or URL as an address costs more than the rest of classify.
    # ("://" never parses: an address has no "//", a network exactly one "/".)
    if (":" in value and "://" not in value) or _IPV4_CHARS.fullmatch(value.strip()):
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


def _network_keys(observable: Observable, prefixes: Collection[int] | None = None) -> list[Key]:
    """The address or network itself, then each containing network: of every shorter
    prefix, or only of the prefix lengths in ``prefixes`` (those actually stored)."""
    kind, value = observable
    keys = [Key(kind, value, "exact")]
    found = network_int(kind, value)  # no ipaddress objects (~4 us per value)
    if found is not None:
        (n, prefixlen), bits = found, ADDRESS_FAMILIES[kind][1]
    else:  # what inet_pton does not read (an IPv6 scope id)
        net = ipaddress.ip_network(value, strict=False)
        n, bits, prefixlen = int(net.network_address), net.max_prefixlen, net.prefixlen
    lengths = range(prefixlen - 1, -1, -1) if prefixes is None else sorted(prefixes, reverse=True)
    full = (1 << bits) - 1
    for prefix in lengths:  # integer arithmetic: ipaddress.supernet costs ~8 us per prefix
        if prefix >= prefixlen:
            continue
        m = n & (full << (bits - prefix)) & full
        text = inet_ntoa(m.to_bytes(4, "big")) if bits == 32 else str(ipaddress.IPv6Address(m))
        keys.append(Key(kind, f"{text}/{prefix}", "contained-in"))
    return keys


def _domain_keys(domain: str, relation: str) -> list[Key]:
    keys = [Key("domain-name", domain, relation)]
    labels = domain.split(".")
    keys += [Key("domain-name", ".".join(labels[i:]), "subdomain-of") for i in range(1, len(labels) - 1)]
    return keys


def keys_for(observable: Observable, prefixes: Mapping[str, Collection[int]] | None = None) -> list[Key]:
    """Every stored key ``observable`` matches, itself first.

    ``prefixes``: the CIDR prefix lengths stored per kind; when given, containing
    networks are probed only at those lengths (most data holds a handful of lengths,
    not 32 or 128).
    """
    kind, value = observable
    if kind in ("ipv4-addr", "ipv6-addr"):
        return _network_keys(observable, None if prefixes is None else prefixes.get(kind, ()))
    if kind == "domain-name":
        return _domain_keys(value, "exact")
    if kind == "url":
        keys = [Key(kind, value, "exact")]
        host = value.split("://", 1)[1].split("/", 1)[0]
        host = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        bare = host.strip("[]")
        # Only what could be an address is parsed as one (a failed parse costs ~4 us).
        address = normalise_ip(bare) if ":" in bare or _IPV4_CHARS.fullmatch(bare.strip()) else None
        if address is not None:
            return keys + [k._replace(relation="host") if k.relation == "exact" else k
                           for k in _network_keys(address, None if prefixes is None
                                                  else prefixes.get(address.kind, ()))]
        return keys + _domain_keys(host, "host")
    if kind == "email-addr":
        return [Key(kind, value, "exact")] + _domain_keys(value.rpartition("@")[2], "domain")
    return [Key(kind, value, "exact")]
