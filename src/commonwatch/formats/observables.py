"""Building STIX 2.1 objects from plain values: SCOs, indicator patterns, indicators.

Shared by the MISP, CSV and free-text readers, which all start from "a value of some
kind" (an IP, a domain, a hash...). Values are checked here, so each reader rejects a
malformed value with the same message.
"""

from __future__ import annotations

import ipaddress
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from commonwatch.domain.markings import TLP2_MARKING_BY_LEVEL, Tlp
from commonwatch.domain.observables import is_canonical_ipv4
from commonwatch.domain.sco_ids import STIX_NAMESPACE, sco
from commonwatch.domain.warninglists import Warninglists
from commonwatch.errors import InputError

#: Value kinds the readers understand (the warninglist kinds plus a few more).
KINDS = ("ipv4-addr", "ipv6-addr", "domain-name", "url", "email-addr", "md5", "sha1", "sha256", "sha512",
         "cve", "mutex", "autonomous-system", "mac-addr", "windows-registry-key", "file-name")
HASH_KEYS = {"md5": "MD5", "sha1": "SHA-1", "sha256": "SHA-256", "sha512": "SHA-512"}
_HASH_LEN = {"md5": 32, "sha1": 40, "sha256": 64, "sha512": 128}
_HEX = re.compile(r"[0-9a-fA-F]+").fullmatch
_DOMAIN = re.compile(r"(?=.{1,253}\Z)(?:[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9])?\.)+[a-z][a-z0-9-]{0,62}\.?")
_EMAIL = re.compile(r"[^@\s]{1,64}@[^@\s]{1,255}")
_CVE = re.compile(r"CVE-\d{4}-\d{4,}", re.IGNORECASE)
_MAC = re.compile(r"[0-9a-f]{2}(?::[0-9a-f]{2}){5}")
FIXED_EPOCH = "2020-01-01T00:00:00.000Z"


@dataclass(frozen=True, slots=True)
class ImportContext:
    """What readers need to know about the import they serve (no database access).

    ``own_identity`` is the importing organisation's identity; ``default_tlp`` the
    community's default TLP (the floor for markings derived from distribution);
    ``timestamp`` the time used for objects whose source carries none (fixed in tests).
    """

    own_identity: str
    default_tlp: Tlp = Tlp.AMBER
    warninglists: Warninglists | None = None
    timestamp: str = FIXED_EPOCH
    tlp: Tlp | None = None  # an explicit --tlp for CSV and text input
    labels: Sequence[str] = field(default_factory=tuple)

    def hits(self, kind: str, value: str) -> tuple[str, ...]:
        if self.warninglists is None:
            return ()
        return self.warninglists.hits(kind, value)


def epoch_to_stix(value: Any) -> str:
    """A MISP-style epoch (seconds, int or str) as a STIX timestamp with milliseconds."""
    try:
        return _epoch_text(int(float(value)))
    except (TypeError, ValueError, OverflowError, OSError):
        raise InputError(f"{value!r} is not a Unix timestamp") from None


@lru_cache(maxsize=4096)
def _epoch_text(seconds: int) -> str:
    """Memoised: a feed's attributes share few distinct timestamps."""
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def marking_refs(tlp: Tlp | None) -> dict[str, Any]:
    """``object_marking_refs`` for ``tlp`` (TLP 2.0 marking-definitions), or nothing."""
    return {} if tlp is None else {"object_marking_refs": [TLP2_MARKING_BY_LEVEL[tlp]]}


def ip_kind(value: str) -> str:
    """``ipv4-addr`` or ``ipv6-addr`` for an address or CIDR; InputError otherwise."""
    if is_canonical_ipv4(value):  # the common case, without building an address object
        return "ipv4-addr"
    try:
        net = ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise InputError(f"{value!r} is not an IP address or CIDR range") from None
    return "ipv4-addr" if net.version == 4 else "ipv6-addr"


def clean_value(kind: str, raw: str) -> str:
    """``raw`` checked and put in canonical form for ``kind``; InputError naming the problem."""
    value = raw.strip()
    if not value:
        raise InputError(f"empty {kind} value")
    if kind in ("ipv4-addr", "ipv6-addr"):
        if ip_kind(value) != kind:
            raise InputError(f"{value!r} is not an {kind} value")
        if is_canonical_ipv4(value):
            return value
        if "/" in value:
            net = ipaddress.ip_network(value, strict=False)
            return str(net.network_address) if net.num_addresses == 1 else str(net)
        return str(ipaddress.ip_address(value))
    if kind == "domain-name":
        value = value.lower().rstrip(".")
        if not _DOMAIN.fullmatch(value):
            raise InputError(f"{raw!r} is not a domain name")
        return value
    if kind in _HASH_LEN:
        if len(value) != _HASH_LEN[kind] or not _HEX(value):
            raise InputError(f"{raw!r} is not a {kind.upper()} hash ({_HASH_LEN[kind]} hex digits)")
        return value.lower()
    if kind == "email-addr":
        if not _EMAIL.fullmatch(value):
            raise InputError(f"{raw!r} is not an e-mail address")
        return value
    if kind == "url":
        if "://" not in value or any(c.isspace() for c in value):
            raise InputError(f"{raw!r} is not a URL")
        return value
    if kind == "cve":
        if not _CVE.fullmatch(value):
            raise InputError(f"{raw!r} is not a CVE id")
        return value.upper()
    if kind == "autonomous-system":
        number = value.upper().removeprefix("AS")
        if not number.isdigit():
            raise InputError(f"{raw!r} is not an autonomous system number")
        return number
    if kind == "mac-addr":
        value = value.lower().replace("-", ":")
        if not _MAC.fullmatch(value):
            raise InputError(f"{raw!r} is not a MAC address")
        return value
    if kind in ("mutex", "windows-registry-key", "file-name"):
        return value
    raise InputError(f"unknown value type {kind!r}; use one of {', '.join(KINDS)}")


def observable(kind: str, value: str, **extra: Any) -> dict[str, Any] | None:
    """The SCO stating ``value`` (already clean) of ``kind``; None for ``cve`` (an SDO)."""
    if kind in HASH_KEYS:
        return sco("file", hashes={HASH_KEYS[kind]: value}, **extra)
    if kind == "file-name":
        return sco("file", name=value, **extra)
    if kind == "autonomous-system":
        return sco("autonomous-system", number=int(value), **extra)
    if kind == "mutex":
        return sco("mutex", name=value, **extra)
    if kind == "windows-registry-key":
        return sco("windows-registry-key", key=value, **extra)
    if kind == "cve":
        return None
    return sco(kind, value=value, **extra)


def _quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def comparisons(obj: dict[str, Any]) -> list[str]:
    """STIX patterning comparisons (§9) that together state what the SCO ``obj`` states."""
    stype = obj["type"]
    if stype == "file":
        out = [f"file:hashes.{_path_key(k)} = {_quote(v)}" for k, v in obj.get("hashes", {}).items()]
        if "name" in obj:
            out.append(f"file:name = {_quote(obj['name'])}")
        return out
    if stype == "autonomous-system":
        return [f"autonomous-system:number = {obj['number']}"]
    if stype == "mutex":
        return [f"mutex:name = {_quote(obj['name'])}"]
    if stype == "windows-registry-key":
        return [f"windows-registry-key:key = {_quote(obj['key'])}"]
    return [f"{stype}:value = {_quote(obj['value'])}"]


def _path_key(name: str) -> str:
    return name if re.fullmatch(r"[A-Za-z0-9_]+", name) else f"'{name}'"


def pattern_of(objs: Sequence[dict[str, Any]]) -> str:
    """One observation expression ANDing what ``objs`` state (one object type per bracket)."""
    parts = [f"[{' AND '.join(comparisons(o))}]" for o in objs if comparisons(o)]
    return " AND ".join(parts)


def stable_uuid(*parts: str) -> str:
    """A UUIDv5 (STIX namespace) over ``parts``: the same input gives the same id."""
    return str(uuid.uuid5(STIX_NAMESPACE, "\x1f".join(parts)))


def indicator(
    *, oid: str, pattern: str, created: str, modified: str, created_by: str, tlp: Tlp | None,
    name: str | None = None, description: str | None = None, valid_from: str | None = None,
    valid_until: str | None = None, labels: Sequence[str] = (), confidence: int | None = None,
) -> dict[str, Any]:
    """A STIX 2.1 indicator (§4.7) with ``pattern_type`` stix."""
    obj: dict[str, Any] = {
        "type": "indicator", "spec_version": "2.1", "id": oid, "created": created, "modified": modified,
        "created_by_ref": created_by, "indicator_types": ["malicious-activity"],
        "pattern": pattern, "pattern_type": "stix", "valid_from": valid_from or created,
    }
    if valid_until and valid_until > obj["valid_from"]:
        obj["valid_until"] = valid_until
    if name:
        obj["name"] = name
    if description:
        obj["description"] = description
    if labels:
        obj["labels"] = list(labels)
    if confidence is not None:
        obj["confidence"] = confidence
    obj.update(marking_refs(tlp))
    return obj


def vulnerability(
    cve: str, *, oid: str, created: str, modified: str, created_by: str, tlp: Tlp | None,
    description: str | None = None,
) -> dict[str, Any]:
    """A STIX 2.1 vulnerability (§4.19) for a CVE id."""
    obj = {
        "type": "vulnerability", "spec_version": "2.1", "id": oid, "created": created, "modified": modified,
        "created_by_ref": created_by, "name": cve,
        "external_references": [{"source_name": "cve", "external_id": cve}], **marking_refs(tlp),
    }
    if description:
        obj["description"] = description
    return obj


def fix_day(value: Any) -> str | None:
    """A ``YYYY-MM-DD`` date as the STIX timestamp of its midnight (UTC), or None."""
    if isinstance(value, str) and re.fullmatch(r"\d{4}-\d\d-\d\d", value.strip()):
        try:
            datetime.strptime(value.strip(), "%Y-%m-%d")
        except ValueError:
            return None
        return value.strip() + "T00:00:00.000Z"
    return None
