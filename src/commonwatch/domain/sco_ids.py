"""Deterministic identifiers of cyber-observable objects (STIX 2.1 §2.9).

An SCO's id is ``<type>--<UUIDv5>`` in the STIX namespace
``00abedb4-aa42-466c-9c01-fed23315a9b7`` over the JSON canonicalisation (RFC 8785)
of its *ID contributing properties*, listed per type in the "ID Contributing
Properties" of each SCO section (§6). So the same IP address shared by two
organisations is one observable, and re-importing a file yields the same ids.

Where ``hashes`` contributes, one hash is used, chosen in the order MD5, SHA-1,
SHA-256, SHA-512, then the first other algorithm (as the OASIS reference library
``stix2`` does; the tests check equality with it). Types with no contributing
property present (e.g. ``process``, or a custom SCO) get a random UUIDv4, as §2.9
says.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Mapping
from typing import Any

STIX_NAMESPACE = uuid.UUID("00abedb4-aa42-466c-9c01-fed23315a9b7")

#: STIX 2.1 §6: the ID contributing properties of each predefined SCO type.
ID_CONTRIBUTING: Mapping[str, tuple[str, ...]] = {
    "artifact": ("hashes", "payload_bin"),
    "autonomous-system": ("number",),
    "directory": ("path",),
    "domain-name": ("value",),
    "email-addr": ("value",),
    "email-message": ("from_ref", "subject", "body"),
    "file": ("hashes", "name", "extensions", "parent_directory_ref"),
    "ipv4-addr": ("value",),
    "ipv6-addr": ("value",),
    "mac-addr": ("value",),
    "mutex": ("name",),
    "network-traffic": ("start", "end", "src_ref", "dst_ref", "src_port", "dst_port", "protocols",
                        "extensions"),
    "process": (),
    "software": ("name", "cpe", "swid", "vendor", "version"),
    "url": ("value",),
    "user-account": ("account_type", "user_id", "account_login"),
    "windows-registry-key": ("key", "values"),
    "x509-certificate": ("hashes", "serial_number"),
}
_HASH_ORDER = ("MD5", "SHA-1", "SHA-256", "SHA-512")


def _one_hash(hashes: Mapping[str, Any]) -> dict[str, Any] | None:
    for name in _HASH_ORDER:
        if name in hashes:
            return {name: hashes[name]}
    for name, value in hashes.items():
        return {name: value}
    return None


def canonical_json(value: Any) -> str:
    """RFC 8785 canonical JSON for the values SCO properties hold.

    Keys sorted, no whitespace, UTF-8 text kept as is. For the ASCII property names
    and the strings and integers of contributing properties this equals JCS; floats
    are not used by any contributing property.
    """
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


_PREFIX = hashlib.sha1(STIX_NAMESPACE.bytes)  # noqa: S324 - UUIDv5 is SHA-1 (RFC 4122 §4.3)
_VARIANT = {c: "89ab"[int(c, 16) & 3] for c in "0123456789abcdef"}


def uuid5_text(name: str) -> str:
    """``str(uuid.uuid5(STIX_NAMESPACE, name))`` without the :class:`uuid.UUID` object:
    SHA-1 of the namespace and the name, version 5, variant RFC 4122."""
    h = _PREFIX.copy()
    h.update(name.encode())
    x = h.hexdigest()
    return f"{x[:8]}-{x[8:12]}-5{x[13:16]}-{_VARIANT[x[16]]}{x[17:20]}-{x[20:32]}"


def _plain(text: str) -> bool:
    """Whether JSON writes ``text`` between its quotes as it is (no character to escape)."""
    return text.isprintable() and '"' not in text and "\\" not in text


#: The properties of a file SCO known by its hashes alone (none else contributes).
_FILE_BY_HASH = frozenset(("type", "spec_version", "id", "hashes", "object_marking_refs", "defanged"))


def deterministic_id(obj: Mapping[str, Any]) -> str:
    """The STIX 2.1 §2.9 id of the SCO ``obj`` (its ``id``, if any, is ignored)."""
    stype = str(obj["type"])
    value = obj.get("value")
    if type(value) is str and _plain(value) and ID_CONTRIBUTING.get(stype) == ("value",):
        # Addresses, domains, URLs: {"value":"..."} is the canonical form, written directly.
        return stype + "--" + uuid5_text('{"value":"' + value + '"}')
    hashes = obj.get("hashes")
    if stype == "file" and type(hashes) is dict and len(hashes) == 1 and obj.keys() <= _FILE_BY_HASH:
        (algorithm, digest), = hashes.items()
        if type(algorithm) is str and type(digest) is str and _plain(algorithm) and _plain(digest):
            # A file known by one hash: {"hashes":{"<algorithm>":"<digest>"}}, written directly.
            return "file--" + uuid5_text('{"hashes":{"' + algorithm + '":"' + digest + '"}}')
    contributing: dict[str, Any] = {}
    for name in ID_CONTRIBUTING.get(stype, ()):
        if name not in obj:
            continue
        value = obj[name]
        if name == "hashes" and isinstance(value, Mapping):
            value = _one_hash(value)
            if value is None:
                continue
        contributing[name] = value
    if not contributing:
        return f"{stype}--{uuid.uuid4()}"
    return f"{stype}--{uuid5_text(canonical_json(contributing))}"


def sco(stype: str, **props: Any) -> dict[str, Any]:
    """A new STIX 2.1 SCO of ``stype`` with ``props`` and its deterministic id."""
    obj: dict[str, Any] = {"type": stype, "spec_version": "2.1", **props}
    obj["id"] = deterministic_id(obj)
    return obj
