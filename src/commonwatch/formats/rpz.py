"""DNS Response Policy Zone (RPZ) in BIND zone-file syntax.

The zone carries no ``$ORIGIN``: the server names it in its configuration
(``response-policy { zone "rpz.example"; };``) and every owner name is relative. A
listed domain gets ``CNAME .`` (answer NXDOMAIN) or ``CNAME <walled garden>.`` (rewrite
to a page of the operator's choice), and optionally the same for ``*.domain``
(subdomains). IPv4 addresses and CIDRs become response-IP triggers
(``<prefix>.<reversed octets>.rpz-ip``), so answers pointing at them are rewritten too;
IPv6 triggers are not written (skipped and counted).
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from collections.abc import Iterable, Iterator

from commonwatch.domain.observables import ExportItem, network_int, normalise_domain

BATCH = 2000
SKIP_IPV6 = "IPv6 response-IP triggers are not written to RPZ"
SKIP_LONG = "domain too long once the RPZ zone name is appended"
SKIP_TRIGGER = "domain ending in an RPZ trigger label (rpz-ip, rpz-nsip, rpz-nsdname, rpz-client-ip)"
#: Labels that make an owner name right above the zone's origin a trigger of another
#: kind than a query name: written as a domain, "0.0.0.0.0.rpz-ip" would rewrite
#: every IPv4 answer.
_TRIGGER_LABELS = ("rpz-ip", "rpz-nsip", "rpz-nsdname", "rpz-client-ip")


def header(serial: int, ttl: int = 300) -> str:
    return (f"$TTL {ttl}\n"
            f"@ IN SOA localhost. hostmaster.localhost. {serial} 3600 600 86400 {ttl}\n"
            "@ IN NS localhost.\n")


def _trigger(value: str) -> str:
    """The response-IP trigger name of an IPv4 address or CIDR (RPZ §6.3)."""
    fast = _canonical_trigger(value)
    if fast is not None:
        return fast
    net = ipaddress.ip_network(value, strict=False)
    octets = ".".join(reversed(str(net.network_address).split(".")))
    return f"{net.prefixlen}.{octets}.rpz-ip"


def _canonical_trigger(value: str) -> str | None:
    """:func:`_trigger` of an address or CIDR in canonical dotted-quad form (what the
    observable index holds) without building an ``ipaddress`` network, else None."""
    found = network_int("ipv4-addr", value)
    if found is None:
        return None
    network, prefix = found
    a, b, c, d = network.to_bytes(4, "big")
    return f"{prefix}.{d}.{c}.{b}.{a}.rpz-ip"


def render(
    items: Iterable[ExportItem], serial: int, skipped: Counter[str], *,
    target: str = ".", wildcard: bool = True, ttl: int = 300, max_name: int = 200,
) -> Iterator[str]:
    """The zone; ``target`` ``.`` answers NXDOMAIN, a domain name rewrites to it."""
    if target != ".":
        garden = normalise_domain(target)
        if garden is None:
            raise ValueError(f"walled-garden target {target!r} is not a domain name")
        target = garden + "."
    yield header(serial, ttl)
    lines: list[str] = []
    for item in items:
        for kind, value in item.observables:
            if kind == "domain-name":
                if len(value) > max_name:
                    skipped[SKIP_LONG] += 1
                    continue
                if value.rpartition(".")[2] in _TRIGGER_LABELS:
                    skipped[SKIP_TRIGGER] += 1
                    continue
                lines.append(f"{value} CNAME {target}")
                if wildcard:
                    lines.append(f"*.{value} CNAME {target}")
            elif kind == "ipv4-addr":
                lines.append(f"{_trigger(value)} CNAME {target}")
            elif kind == "ipv6-addr":
                skipped[SKIP_IPV6] += 1
        if len(lines) >= BATCH:
            yield "\n".join(lines) + "\n"
            lines = []
    if lines:
        yield "\n".join(lines) + "\n"
