"""Warninglists: values that must never be treated as malicious.

A warninglist names values that show up in threat intelligence by mistake: reserved
and private address ranges, public DNS resolvers, the domains of the largest
providers and CDNs, the hashes of empty or test files. An indicator that hits a list
is still stored (the producer said it), but it is flagged in the import summary and
left out of exports by default. The flag is never written into objects: ingest stores
its verdicts next to a version's values with the digest of the lists that gave them
(:meth:`Warninglists.listed_json`, :attr:`Warninglists.digest`), and a reader uses them
only while the same lists are loaded, so a list the operator extends applies
retroactively.

Each list is one JSON file (the built-in ones live in ``commonwatch/data/warninglists``;
an operator adds directories of their own in the same format)::

    {
      "name": "public-dns-resolvers",
      "description": "Anycast addresses of the large public DNS resolvers",
      "source": "where the values come from (URL or document)",
      "licence": "the licence of the source",
      "values": {
        "ipv4-addr": ["8.8.8.8", "1.1.1.0/24"],
        "ipv6-addr": ["2001:4860:4860::8888"],
        "domain-name": ["example.com"],
        "url": ["http://example.com/"],
        "email-addr": ["nobody@example.com"],
        "md5": ["..."], "sha1": ["..."], "sha256": ["..."], "sha512": ["..."]
      }
    }

Address values are addresses or CIDR ranges; a domain entry covers the domain and all
its subdomains; every other kind matches exactly (case-insensitively). An operator list
whose ``name`` equals a built-in one replaces it.

Lookups are pure and done in memory: sets for exact values, parent-suffix walks for
domains, and one sorted boundary array per address family searched with ``bisect``
for ranges, so a call costs a few microseconds.
"""

from __future__ import annotations

import bisect
import hashlib
import ipaddress
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from socket import AF_INET, inet_pton
from urllib.parse import urlsplit

import orjson

from commonwatch.domain.observables import ADDRESS_FAMILIES, network_int
from commonwatch.errors import ConfigError

#: Every kind a list may hold and :meth:`Warninglists.hits` accepts.
KINDS = ("ipv4-addr", "ipv6-addr", "domain-name", "url", "email-addr", "md5", "sha1", "sha256", "sha512")
_HASH_LENGTHS = {"md5": 32, "sha1": 40, "sha256": 64, "sha512": 128}
_EXACT_KINDS = ("url", "email-addr", "md5", "sha1", "sha256", "sha512")
_HEX = frozenset("0123456789abcdef")
#: A URL whose authority is only a host name or IPv4 address (optional port): no user
#: info, no brackets, ASCII, no tab or newline before the path. ``urlsplit(url).hostname``
#: is then the host lower-cased; the host is read with this instead (several times
#: faster); any other URL goes through ``urlsplit``.
_SIMPLE_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://([A-Za-z0-9._-]+)(?::[0-9]*)?(?:[/?#].*)?", re.DOTALL)


@dataclass(frozen=True, slots=True)
class Warninglist:
    """One list as loaded: its provenance and how many values it holds."""

    name: str
    description: str
    source: str
    licence: str
    path: str
    counts: Mapping[str, int] = field(default_factory=dict)


class _RangeIndex:
    """Sorted elementary segments of one address family, each with the lists covering it.

    For every segment we keep, per covering list, the end of that list's merged range
    containing the segment; a CIDR ``[a, b]`` lies inside a list's range iff the
    segment of ``a`` has that list with an end ``>= b``.
    """

    __slots__ = ("_starts", "_covers")

    def __init__(self, ranges: Mapping[str, list[tuple[int, int]]]) -> None:
        merged: dict[str, list[tuple[int, int]]] = {}
        points: set[int] = set()
        for name, spans in ranges.items():
            out: list[tuple[int, int]] = []
            for lo, hi in sorted(spans):
                if out and lo <= out[-1][1] + 1:
                    out[-1] = (out[-1][0], max(out[-1][1], hi))
                else:
                    out.append((lo, hi))
            merged[name] = out
            for lo, hi in out:
                points.add(lo)
                points.add(hi + 1)
        self._starts: list[int] = sorted(points)
        covers: list[tuple[tuple[str, int], ...]] = []
        for start in self._starts:
            here = []
            for name, spans in merged.items():
                i = bisect.bisect_right(spans, (start, float("inf"))) - 1
                if i >= 0 and spans[i][0] <= start <= spans[i][1]:
                    here.append((name, spans[i][1]))
            covers.append(tuple(sorted(here)))
        self._covers = covers

    def hits(self, lo: int, hi: int) -> tuple[str, ...]:
        i = bisect.bisect_right(self._starts, lo) - 1
        if i < 0:
            return ()
        covers = self._covers[i]
        if not covers:  # most addresses lie in a gap between listed ranges
            return ()
        return tuple([name for name, end in covers if end >= hi])


def _parse_ip(kind: str, value: str) -> tuple[int, int] | None:
    """``(first, last)`` integer address of an address or CIDR of ``kind``, or None."""
    found = network_int(kind, value.strip())
    if found is None:
        return None
    first, prefix = found
    return first, first | ((1 << (ADDRESS_FAMILIES[kind][1] - prefix)) - 1)


def _normalise_domain(value: str) -> str:
    return value.strip().rstrip(".").lower()


class Warninglists:
    """The loaded lists; :meth:`hits` is the only question exports and imports ask."""

    def __init__(self, lists: Sequence[tuple[Warninglist, Mapping[str, Iterable[str]]]]) -> None:
        self.lists: tuple[Warninglist, ...] = tuple(meta for meta, _ in lists)
        digest = hashlib.sha256()
        self._exact: dict[str, dict[str, tuple[str, ...]]] = {k: {} for k in _EXACT_KINDS}
        self._domains: dict[str, tuple[str, ...]] = {}
        ranges: dict[str, dict[str, list[tuple[int, int]]]] = {"ipv4-addr": {}, "ipv6-addr": {}}
        for meta, values in lists:
            digest.update(f"\0list {meta.name}".encode())
            for kind, entries in sorted(values.items()):
                entries = list(entries)
                digest.update(f"\0{kind}\0".encode() + "\n".join(entries).encode())
                for raw in entries:
                    self._add(meta, kind, raw, ranges)
        self._ranges = {kind: _RangeIndex(by_list) for kind, by_list in ranges.items()}
        #: Identifies what the lists say (names and values): verdicts computed under one
        #: digest hold for as long as the loaded lists have that digest.
        self.digest = digest.hexdigest()

    def _add(self, meta: Warninglist, kind: str, raw: str,
             ranges: dict[str, dict[str, list[tuple[int, int]]]]) -> None:
        bad = ConfigError(f"warninglist {meta.path}: {raw!r} is not a valid {kind} value; fix or remove it")
        stripped = raw.strip(" ")
        if not stripped or " " in stripped or not stripped.isprintable():
            # No value of any kind holds a space, a line break or a control character;
            # refusing them also keeps the lists' digest unambiguous (entries are joined
            # by line breaks there).
            raise bad
        if kind in ADDRESS_FAMILIES:
            span = _parse_ip(kind, raw)
            if span is None:
                raise bad
            ranges[kind].setdefault(meta.name, []).append(span)
        elif kind == "domain-name":
            name = _normalise_domain(raw)
            if not name or " " in name or "/" in name:
                raise bad
            self._domains[name] = tuple(sorted({*self._domains.get(name, ()), meta.name}))
        else:
            value = raw.strip() if kind == "url" else raw.strip().lower()
            if kind in _HASH_LENGTHS and (len(value) != _HASH_LENGTHS[kind] or not set(value) <= _HEX):
                raise bad
            table = self._exact[kind]
            table[value] = tuple(sorted({*table.get(value, ()), meta.name}))

    def hits(self, kind: str, value: str) -> tuple[str, ...]:
        """Names of the lists ``value`` (of STIX/hash ``kind``) hits, sorted; ``()`` if none.

        ``ipv4-addr``/``ipv6-addr`` accept an address or a CIDR (a CIDR hits when it
        lies wholly inside a listed range); ``domain-name`` hits the listed domain and
        its subdomains; ``url`` hits an exact listed URL and anything its host hits.
        A value that does not parse as ``kind`` hits nothing.
        """
        if kind in ADDRESS_FAMILIES:
            span = _parse_ip(kind, value)
            return self._ranges[kind].hits(*span) if span else ()
        if kind == "domain-name":
            return self._domain_hits(_normalise_domain(value))
        if kind == "url":
            return self._url_hits(value)
        table = self._exact.get(kind)
        if table is None:
            return ()
        return table.get(value.strip().lower(), ())

    def canonical_hits(self, kind: str, value: str) -> tuple[str, ...]:
        """:meth:`hits` of a value as the observable index stores it (normalised by
        :func:`commonwatch.domain.observables.normalise`): the same answer, without
        normalising again. Exports ask it once per exported value."""
        if kind == "ipv4-addr" and "/" not in value:
            try:
                n = int.from_bytes(inet_pton(AF_INET, value), "big")
            except OSError:
                return ()
            return self._ranges["ipv4-addr"].hits(n, n)
        if kind == "domain-name":
            return self._domain_hits(value)
        return self.hits(kind, value)

    def listed_json(self, pairs: Sequence[tuple[str, str]]) -> str | None:
        """The verdicts of normalised (kind, value) pairs as ingest stores them next to
        the values (``stix_objects.export_listed``): a JSON array holding, per pair, the
        names of the lists it hits; None when no pair hits any list."""
        verdicts = [self.canonical_hits(kind, value) for kind, value in pairs]
        if not any(verdicts):
            return None
        return orjson.dumps(verdicts).decode()

    def _domain_hits(self, name: str) -> tuple[str, ...]:
        found: tuple[str, ...] = ()
        while name:
            names = self._domains.get(name)
            if names:
                found = names if not found else tuple(sorted({*found, *names}))
            _, dot, name = name.partition(".")
            if not dot:
                break
        return found

    def _url_hits(self, url: str) -> tuple[str, ...]:
        url = url.strip()
        exact = self._exact["url"].get(url, ())
        simple = _SIMPLE_URL.fullmatch(url)
        if simple is not None:
            host = simple[1].lower()  # what urlsplit(url).hostname is for such a URL
        else:
            try:
                host = urlsplit(url).hostname or ""
            except ValueError:
                return exact
        if not host:
            return exact
        if ":" in host:
            by_host = self.hits("ipv6-addr", host)
        elif host.replace(".", "").isdigit():
            by_host = self.hits("ipv4-addr", host)
        else:
            by_host = self._domain_hits(_normalise_domain(host))
        if not by_host:
            return exact
        return tuple(sorted({*exact, *by_host}))


def _read_list(path: Path, text: str) -> tuple[Warninglist, dict[str, list[str]]]:
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"warninglist {path} is not valid JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise ConfigError(f"warninglist {path} must hold a JSON object")
    for key in ("name", "description", "source", "licence"):
        if not isinstance(doc.get(key), str) or not doc[key].strip():
            raise ConfigError(f"warninglist {path} needs a non-empty string {key!r}")
    values = doc.get("values")
    if not isinstance(values, dict):
        raise ConfigError(f"warninglist {path} needs an object 'values' mapping kinds to lists")
    for kind, entries in values.items():
        if kind not in KINDS:
            raise ConfigError(f"warninglist {path}: unknown kind {kind!r}; use one of {', '.join(KINDS)}")
        if not isinstance(entries, list) or not all(isinstance(v, str) for v in entries):
            raise ConfigError(f"warninglist {path}: values of {kind!r} must be a list of strings")
    meta = Warninglist(
        name=doc["name"], description=doc["description"], source=doc["source"],
        licence=doc["licence"], path=str(path), counts={k: len(v) for k, v in values.items()},
    )
    return meta, values


def builtin_dir() -> Path:
    """Directory of the lists shipped with CommonWatch."""
    return Path(str(resources.files("commonwatch") / "data" / "warninglists"))


def load_warninglists(extra_dirs: Sequence[Path] = ()) -> Warninglists:
    """Built-in lists plus every ``*.json`` list in ``extra_dirs`` (later ones override).

    Raises :class:`~commonwatch.errors.ConfigError` naming the file and value when a
    list is malformed, so a bad operator list is refused at start-up.
    """
    by_name: dict[str, tuple[Warninglist, dict[str, list[str]]]] = {}
    for directory in (builtin_dir(), *map(Path, extra_dirs)):
        if not directory.is_dir():
            raise ConfigError(f"warninglist directory {directory} does not exist")
        for path in sorted(directory.glob("*.json")):
            try:
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:  # a folder named *.json, Latin-1...
                reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
                raise ConfigError(f"warninglist {path} cannot be read: {reason}") from None
            meta, values = _read_list(path, text)
            by_name[meta.name] = (meta, values)
    return Warninglists([by_name[name] for name in sorted(by_name)])


def ip_kind(value: str) -> str:
    """``ipv6-addr`` if ``value`` looks like an IPv6 address or CIDR, else ``ipv4-addr``."""
    return "ipv6-addr" if ":" in value else "ipv4-addr"


def is_ip(value: str) -> bool:
    """Whether ``value`` is an IPv4/IPv6 address or CIDR (helper for callers with raw text)."""
    try:
        ipaddress.ip_network(value.strip(), strict=False)
    except ValueError:
        return False
    return True
