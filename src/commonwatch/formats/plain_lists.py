"""Plain lists, one value per line: firewall external dynamic lists (EDL) and the like.

Only the values of the chosen kinds are written, normalised, with no header or
comment lines, because EDL consumers (PAN-OS, FortiGate threat feeds, pfBlockerNG,
ipset) treat every line as an entry. ``url`` lists drop the scheme when asked
(PAN-OS URL lists take ``host/path`` entries).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from commonwatch.domain.observables import ExportItem

BATCH = 5000
LISTS: dict[str, tuple[str, ...]] = {
    "ip": ("ipv4-addr", "ipv6-addr"),
    "ipv4": ("ipv4-addr",),
    "ipv6": ("ipv6-addr",),
    "domain": ("domain-name",),
    "url": ("url",),
    "email": ("email-addr",),
    "md5": ("md5",),
    "sha1": ("sha1",),
    "sha256": ("sha256",),
    "sha512": ("sha512",),
    "hash": ("md5", "sha1", "sha256", "sha512"),
}


def render(
    items: Iterable[ExportItem], kinds: tuple[str, ...], *, strip_scheme: bool = False
) -> Iterator[str]:
    lines: list[str] = []
    wanted = frozenset(kinds)
    for item in items:
        for kind, value in item.observables:
            if kind in wanted:
                lines.append(value.partition("://")[2] if strip_scheme and kind == "url" else value)
        if len(lines) >= BATCH:
            yield "\n".join(lines) + "\n"
            lines = []
    if lines:
        yield "\n".join(lines) + "\n"
