"""Exportable observables: the (kind, normalised value) pairs an indicator or SCO states.

Exports, and later the observable index, need the concrete values behind an
indicator: the addresses, domains, URLs and hashes a firewall, resolver or sensor can
act on. They are derived from the indicator's STIX pattern (STIX 2.1 §9) through the
project's one pattern parser (:func:`commonwatch.domain.patterns.parse_pattern`) and
from the ``value``/``hashes`` of cyber-observable objects (STIX 2.1 §6).

Only patterns that match by the presence of one value are exported: one observation
(or observations joined by OR) whose comparisons are ``=`` or ``IN`` against string
literals, joined by OR. Anything else (``AND``, ``FOLLOWEDBY``, qualifiers, ``LIKE``,
``MATCHES``, negation...) is skipped with a counted reason, because exporting one of
its values alone would block more than the producer described.

Normalisation is careful because the same values key correlation later:

* addresses are canonical (:mod:`ipaddress`), a CIDR is its network
  (``10.1.2.3/8`` -> ``10.0.0.0/8``), a full-length prefix is the bare address;
* domains are lower-case A-labels (IDNA 2008 with UTS #46 mapping), without a trailing
  dot, each label 1-63 of letters, digits, ``-`` or ``_``, at most 253 characters;
* URLs keep their path and query as written, with scheme and host lower-cased, the
  host normalised as a domain or address and the default port dropped;
* e-mail addresses have their domain normalised and the local part lower-cased;
* hashes are lower-case hex of the right length for the algorithm.

Kinds use the names of :mod:`commonwatch.domain.warninglists`: ``ipv4-addr``,
``ipv6-addr``, ``domain-name``, ``url``, ``email-addr``, ``md5``, ``sha1``, ``sha256``,
``sha512``. This module is pure: no I/O, no project imports beyond ``domain``.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import idna

from commonwatch.domain.pattern_ast import (
    Comparison,
    ComparisonExpression,
    ComparisonOperator,
    ComparisonOr,
    Observation,
    ObservationExpression,
    ObservationOr,
    PathStep,
    PropertyStep,
    SetLiteral,
    StringLiteral,
)
from commonwatch.domain.patterns import parse_pattern
from commonwatch.errors import InvalidPattern

KINDS = ("ipv4-addr", "ipv6-addr", "domain-name", "url", "email-addr", "md5", "sha1", "sha256", "sha512")
HASH_KINDS = {"md5": 32, "sha1": 40, "sha256": 64, "sha512": 128}

# Reasons an indicator yields nothing (counted by exports, shown to the user).
SKIP_PATTERN_TYPE = "pattern_type is not stix"
SKIP_INVALID_PATTERN = "pattern does not parse"
SKIP_COMPLEX = "pattern is not an equality or IN over single values"
SKIP_UNSUPPORTED = "pattern tests a property exports cannot use"
SKIP_INVALID_VALUE = "pattern value is not a valid address, domain, URL, e-mail or hash"
#: The reasons in a fixed order: ingest stores a reason as its position here (a small
#: integer column), exports read it back. Append only; never reorder.
SKIP_REASONS = (SKIP_PATTERN_TYPE, SKIP_INVALID_PATTERN, SKIP_COMPLEX, SKIP_UNSUPPORTED,
                SKIP_INVALID_VALUE)

#: Hash algorithm names as STIX writes them (§10.7 hashing-algorithm-ov) and as feeds do.
_HASH_NAMES = {
    "MD5": "md5", "SHA-1": "sha1", "SHA1": "sha1", "SHA-256": "sha256", "SHA256": "sha256",
    "SHA-512": "sha512", "SHA512": "sha512",
}
_HEX = re.compile(r"[0-9a-f]+")
_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")
_DEFAULT_PORTS = {"http": 80, "https": 443, "ftp": 21}
MAX_VALUE_LENGTH = 4096


class Observable(NamedTuple):
    """One exportable value: its kind (a warninglist kind) and normalised text."""

    kind: str
    value: str


class Extraction(NamedTuple):
    """What an object yields: the observables, or none and the reason why."""

    observables: tuple[Observable, ...]
    skipped: str | None = None


# --- normalisation ---------------------------------------------------------------------

_OCTET = "(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_DOTTED = re.compile(f"{_OCTET}(?:\\.{_OCTET}){{3}}")
_DOMAIN = re.compile(r"(?:[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?\.)*[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")


#: Address family and width of the address kinds.
ADDRESS_FAMILIES = {"ipv4-addr": (socket.AF_INET, 32), "ipv6-addr": (socket.AF_INET6, 128)}


def network_int(kind: str, value: str) -> tuple[int, int] | None:
    """(network address as an integer, prefix length) of an address or CIDR of ``kind``
    ("ipv4-addr" or "ipv6-addr"), host bits cleared; None if ``value`` is not one.

    ``inet_pton`` rather than :mod:`ipaddress`: several times faster, and callers run it
    per value of an export, a lookup or a warninglist.
    """
    family, bits = ADDRESS_FAMILIES[kind]
    addr, slash, plen = value.partition("/")
    try:
        n = int.from_bytes(socket.inet_pton(family, addr), "big")
    except (OSError, ValueError):
        return None
    if not slash:
        return n, bits
    if not (plen.isascii() and plen.isdigit()) or int(plen) > bits:
        return None
    host_bits = bits - int(plen)
    return (n >> host_bits) << host_bits, int(plen)


def is_canonical_ipv4(text: str) -> bool:
    """Whether ``text`` is an IPv4 address already in canonical dotted form."""
    return _DOTTED.fullmatch(text) is not None


def normalise_ip(value: str) -> Observable | None:
    """An address or CIDR, canonical; None if it is neither."""
    if _DOTTED.fullmatch(value):
        return Observable("ipv4-addr", value)  # already canonical: the common case, fast
    text = value.strip()
    if "%" in text:  # a zone id ("fe80::1%eth0") names an interface of one host: no indicator
        return None
    # Straight to the one family the text can be (what ip_address and ip_network try in
    # turn): IPv6 has a colon, IPv4 only digits and dots. A failed parse raises, and most
    # values that come here (URL hosts, IPv6) would fail the IPv4 attempt.
    six = ":" in text
    if not six and text.strip("0123456789./"):
        return None
    try:
        if "/" in text:
            net: Any = (ipaddress.IPv6Network if six else ipaddress.IPv4Network)(text, strict=False)
            if net.prefixlen == net.max_prefixlen:
                return Observable(f"ipv{net.version}-addr", str(net.network_address))
            return Observable(f"ipv{net.version}-addr", str(net))
        addr: Any = (ipaddress.IPv6Address if six else ipaddress.IPv4Address)(text)
    except ValueError:
        return None
    return Observable(f"ipv{addr.version}-addr", str(addr))


def normalise_domain(value: str) -> str | None:
    """A domain name as lower-case A-labels without trailing dot; None if not a domain."""
    text = value.strip().rstrip(".")
    if len(text) <= 253 and _DOMAIN.fullmatch(text) and text.strip("0123456789."):
        return text  # already lower-case ASCII labels, not all digits: the common case, fast
    if not text or len(text) > 253 or any(c in text for c in " /:@\\*"):
        return None
    if not text.isascii():
        try:
            text = idna.encode(text, uts46=True).decode("ascii")
        except idna.IDNAError:
            return None
    text = text.lower()
    labels = text.split(".")
    if len(text) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        return None
    if all(c.isdigit() or c == "." for c in text):
        return None  # an IPv4 address is not a domain
    return text


def _host(host: str) -> str | None:
    if host.startswith("[") and host.endswith("]"):
        found = normalise_ip(host[1:-1])
        return f"[{found.value}]" if found and found.kind == "ipv6-addr" and "/" not in found.value else None
    found = normalise_ip(host)
    if found is not None:
        return found.value if found.kind == "ipv4-addr" and "/" not in found.value else None
    return normalise_domain(host)


def normalise_url(value: str) -> str | None:
    """A URL with scheme and host normalised, path and query kept; None if not a URL."""
    text = value.strip()
    if not text or any(c in text for c in " \t\r\n"):
        return None
    if "://" not in text:
        text = "http://" + text  # feeds often drop the scheme; STIX url:value should not
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    netloc = parts.netloc.rpartition("@")[2]
    host_text = netloc
    if port is not None or (netloc.endswith(":") and "]" not in netloc[-1:]):
        host_text = netloc.rsplit(":", 1)[0]
    host = _host(host_text) if host_text else None
    if not scheme or host is None:
        return None
    if port is not None and port != _DEFAULT_PORTS.get(scheme):
        host = f"{host}:{port}"
    rest = parts.path or "/"
    if parts.query:
        rest += "?" + parts.query
    return f"{scheme}://{host}{rest}"


def normalise_email(value: str) -> str | None:
    local, at, domain = value.strip().rpartition("@")
    host = normalise_domain(domain) if at and local else None
    if host is None or any(c in local for c in " <>\"\t"):
        return None
    return f"{local.lower()}@{host}"


def normalise_hash(kind: str, value: str) -> str | None:
    text = value.strip().lower()
    return text if len(text) == HASH_KINDS[kind] and _HEX.fullmatch(text) else None


def normalise(kind: str, value: str) -> Observable | None:
    """``value`` of ``kind`` normalised, or None when it is not a valid value of that kind."""
    if len(value) > MAX_VALUE_LENGTH or not value.strip().isprintable():
        # No network value holds a control character or a line break of any kind (NUL,
        # VT, FF, NEL, U+2028...): outputs are line-based, and sensors read them so.
        return None
    if kind in ("ipv4-addr", "ipv6-addr"):
        found = normalise_ip(value)
        return found if found is not None and found.kind == kind else None
    text: str | None
    if kind == "domain-name":
        text = normalise_domain(value)
    elif kind == "url":
        text = normalise_url(value)
    elif kind == "email-addr":
        text = normalise_email(value)
    elif kind in HASH_KINDS:
        text = normalise_hash(kind, value)
    else:
        return None
    return Observable(kind, text) if text is not None else None


# --- patterns --------------------------------------------------------------------------

_VALUE_TYPES = frozenset(("ipv4-addr", "ipv6-addr", "domain-name", "url", "email-addr"))
_REF_KINDS = {("network-traffic", "dst_ref"): "ip", ("network-traffic", "src_ref"): "ip",
              ("email-message", "from_ref"): "email-addr", ("email-message", "sender_ref"): "email-addr"}


def _kind_of(object_type: str, path: tuple[PathStep, ...]) -> str | None:
    """The observable kind a ``type:path`` comparison tests, None if unsupported."""
    names = [step.name if isinstance(step, PropertyStep) else None for step in path]
    if names == ["value"] and object_type in _VALUE_TYPES:
        return object_type
    if len(names) == 2 and names[0] == "hashes" and object_type in ("file", "artifact"):
        return _HASH_NAMES.get(str(names[1]).upper())
    if len(names) == 2 and names[1] == "value":
        return _REF_KINDS.get((object_type, str(names[0])))
    return None


Test = tuple[str, tuple[PathStep, ...], str]


def _comparison_values(expression: ComparisonExpression, out: list[Test]) -> bool:
    """Collect ``(type, path, value)`` of an OR of ``=``/``IN`` string tests; False otherwise."""
    if isinstance(expression, ComparisonOr):
        return all(_comparison_values(operand, out) for operand in expression.operands)
    if not isinstance(expression, Comparison) or expression.negated:
        return False
    value = expression.value
    if expression.operator is ComparisonOperator.EQ and isinstance(value, StringLiteral):
        out.append((expression.object_type, expression.path, value.value))
        return True
    if expression.operator is ComparisonOperator.IN and isinstance(value, SetLiteral):
        strings = [v.value for v in value.values if isinstance(v, StringLiteral)]
        if len(strings) != len(value.values):
            return False
        out.extend((expression.object_type, expression.path, v) for v in strings)
        return True
    return False


def _observation_values(expression: ObservationExpression, out: list[Test]) -> bool:
    if isinstance(expression, ObservationOr):
        return all(_observation_values(operand, out) for operand in expression.operands)
    if isinstance(expression, Observation):
        return _comparison_values(expression.comparison, out)
    return False


@lru_cache(maxsize=8192)
def from_pattern(pattern: str) -> Extraction:
    """The observables of a STIX pattern; cached by text (feeds repeat pattern shapes)."""
    try:
        parsed = parse_pattern(pattern)
    except InvalidPattern:
        return Extraction((), SKIP_INVALID_PATTERN)
    tests: list[Test] = []
    if not _observation_values(parsed.root, tests):
        return Extraction((), SKIP_COMPLEX)
    found: dict[Observable, None] = {}
    for object_type, path, raw in tests:
        kind = _kind_of(object_type, path)
        if kind is None:
            return Extraction((), SKIP_UNSUPPORTED)
        observable = normalise_ip(raw) if kind == "ip" else normalise(kind, raw)
        if observable is None:
            return Extraction((), SKIP_INVALID_VALUE)
        found[observable] = None
    return Extraction(tuple(found))


def from_sco(obj: Mapping[str, Any]) -> Extraction:
    """The observables a cyber-observable object states (its value, or its hashes)."""
    kind = obj.get("type")
    found: list[Observable] = []
    if kind in ("ipv4-addr", "ipv6-addr", "domain-name", "url", "email-addr"):
        value = obj.get("value")
        observable = normalise(kind, value) if isinstance(value, str) else None
        if observable is None:
            return Extraction((), SKIP_INVALID_VALUE)
        found.append(observable)
    elif kind in ("file", "artifact"):
        hashes = obj.get("hashes")
        for name, value in (hashes.items() if isinstance(hashes, dict) else ()):
            hash_kind = _HASH_NAMES.get(str(name).upper())
            if hash_kind and isinstance(value, str):
                observable = normalise(hash_kind, value)
                if observable is not None:
                    found.append(observable)
    if not found:
        return Extraction((), SKIP_UNSUPPORTED)
    return Extraction(tuple(found))


def from_object(obj: Mapping[str, Any]) -> Extraction:
    """The observables of an indicator (by its pattern) or of an SCO."""
    if obj.get("type") == "indicator":
        if obj.get("pattern_type", "stix") != "stix":
            return Extraction((), SKIP_PATTERN_TYPE)
        pattern = obj.get("pattern")
        if not isinstance(pattern, str):
            return Extraction((), SKIP_INVALID_PATTERN)
        return from_pattern(pattern)
    return from_sco(obj)


def kinds_of(observables: Iterable[Observable]) -> set[str]:
    return {o.kind for o in observables}


class ExportItem(NamedTuple):
    """One object as output formats see it: what it says, where it comes from, its values."""

    stix_id: str
    type: str
    name: str
    tlp: int  # a commonwatch.domain.markings.Tlp value
    community: str
    producer: str
    confidence: int | None
    created: str
    modified: str
    valid_until: str | None
    labels: tuple[str, ...]
    observables: tuple[Observable, ...]
    raw: bytes
    warninglists: tuple[str, ...] = ()
    #: When this version was made: its ``modified`` (µs), or when it was added for
    #: objects without versions (SCOs).
    version_us: int = 0
    #: The stored row of this version (0: none), by which Suricata rules are remembered,
    #: and when it was added (``date_added_us``): with the id, what tells the row apart
    #: from a later one given the same id (SQLite reuses the id of a deleted last row).
    row_id: int = 0
    added_us: int = 0
