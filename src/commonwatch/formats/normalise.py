"""A lenient normaliser: fix what real-world STIX producers get wrong in harmless ways.

The exchange validates strictly (``domain/stix.py``); many producers emit objects that
are valid in intent but not to the letter. This module repairs those cases, and only
those, so that the meaning of an object never changes:

* timestamps with second precision, a ``+00:00``/``+0000`` offset, a lower-case ``z``,
  a space instead of ``T`` or another UTC offset are rewritten as STIX 2.1 §3.2
  timestamps (``created``/``modified`` with at least millisecond precision);
* ``hashes`` keys in a non-standard spelling (``md5``, ``sha256``, ``SHA256``) take
  the hashing-algorithm vocabulary spelling (§10.7), hex digests are kept as given;
* an SCO without ``spec_version`` gets ``"2.1"`` (§3.2), and an SCO without ``id``
  gets its deterministic id (§2.9).

What it cannot repair is left for the validator, whose message then names the
property and the rule.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from commonwatch.domain.sco_ids import ID_CONTRIBUTING, deterministic_id

_STRICT = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,9})?Z").fullmatch
_STRICT_MS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3,9}Z").fullmatch
_LENIENT = re.compile(
    r"(\d{4})-(\d\d)-(\d\d)(?:[Tt ](\d\d):(\d\d)(?::(\d\d)(?:[.,](\d{1,9}))?)?)?"
    r"\s*(?:([Zz])|([+-])(\d\d):?(\d\d)|UTC)?"
)

#: Top-level timestamp properties of STIX 2.1 objects (§4-§7), and those that need ms.
TIMESTAMP_PROPERTIES = frozenset({
    "created", "modified", "valid_from", "valid_until", "first_seen", "last_seen",
    "first_observed", "last_observed", "published", "start_time", "stop_time", "start", "end",
    "ctime", "mtime", "atime", "date", "created_time", "modified_time", "account_created",
    "account_expires", "credential_last_changed", "account_first_login", "account_last_login",
    "validity_not_before", "validity_not_after",
})
_MS_PROPERTIES = frozenset({"created", "modified"})

#: Spellings seen in the wild -> the hashing-algorithm-ov spelling (STIX 2.1 §10.7).
HASH_NAMES = {
    "md5": "MD5", "sha1": "SHA-1", "sha-1": "SHA-1", "sha256": "SHA-256", "sha-256": "SHA-256",
    "sha512": "SHA-512", "sha-512": "SHA-512", "sha3256": "SHA3-256", "sha3-256": "SHA3-256",
    "sha3512": "SHA3-512", "sha3-512": "SHA3-512", "ssdeep": "SSDEEP", "tlsh": "TLSH",
}
SCO_TYPES = frozenset(ID_CONTRIBUTING)


def fix_timestamp(value: str, need_ms: bool = False) -> str | None:
    """``value`` as a STIX 2.1 timestamp in UTC, or None if it is not a recognisable date-time."""
    if (_STRICT_MS if need_ms else _STRICT)(value):
        return value
    m = _LENIENT.fullmatch(value.strip())
    if m is None:
        return None
    year, month, day, hour, minute, second, fraction, _z, sign, off_h, off_m = m.groups()
    try:
        when = datetime(int(year), int(month), int(day), int(hour or 0), int(minute or 0),
                        int(second or 0), tzinfo=UTC)
    except ValueError:
        return None
    if sign:
        offset = timedelta(hours=int(off_h), minutes=int(off_m))
        when = when - offset if sign == "+" else when + offset
    digits = (fraction or "").ljust(3, "0") if (need_ms or fraction) else ""
    return when.strftime("%Y-%m-%dT%H:%M:%S") + (f".{digits}" if digits else "") + "Z"


def fix_hashes(hashes: Any) -> Any:
    """``hashes`` with vocabulary key spellings (unknown keys kept as they are)."""
    if not isinstance(hashes, dict):
        return hashes
    if all(k in _VOCAB for k in hashes):
        return hashes
    return {HASH_NAMES.get(k.lower().replace("_", "-"), HASH_NAMES.get(k.lower(), k)): v
            for k, v in hashes.items()}


_VOCAB = frozenset(HASH_NAMES.values())


def normalise(obj: dict[str, Any]) -> dict[str, Any]:
    """Repair ``obj`` in place where that is harmless (see module docstring); returns it.

    Designed for the bulk path: one pass over the keys, and a timestamp that is already
    right costs one regular-expression match.
    """
    broken = None
    for name, value in obj.items():
        if name in TIMESTAMP_PROPERTIES and value.__class__ is str \
                and not (_STRICT_MS if name in _MS_PROPERTIES else _STRICT)(value):
            broken = [*(broken or ()), name]
    for name in broken or ():
        fixed = fix_timestamp(obj[name], name in _MS_PROPERTIES)
        if fixed is not None:
            obj[name] = fixed
    if "hashes" in obj:
        obj["hashes"] = fix_hashes(obj["hashes"])
    refs = obj.get("external_references")
    if isinstance(refs, list):
        for ref in refs:
            if isinstance(ref, dict) and "hashes" in ref:
                ref["hashes"] = fix_hashes(ref["hashes"])
    stype = obj.get("type")
    if stype.__class__ is str and stype in SCO_TYPES:
        obj.setdefault("spec_version", "2.1")
        if "id" not in obj:
            obj["id"] = deterministic_id(obj)
    return obj
