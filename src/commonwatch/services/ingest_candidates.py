"""One posted object on its way in: preparing it, and the rules that accept or refuse it.

Kept apart from :mod:`commonwatch.services.ingest` (the service and its transaction):
these are plain functions with no database. Preparation validates an object (STIX 2.1),
checks that it is posted as the poster's own organisation, and works out its TLP and
TLP:RED recipients and its canonical content hash. The acceptance rules
(:func:`conflict`) then weigh it against the versions the poster can see: an object is
versioned by its creator, and nothing follows a revoked version (STIX 2.1 §3.6). The
ingest hot path calls them directly, once per object.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import orjson

from commonwatch.domain.markings import Tlp, effective_tlp, red_recipients
from commonwatch.domain.stix import format_timestamp, validate_object
from commonwatch.domain.visibility import Principal
from commonwatch.errors import InvalidStixObject
from commonwatch.services.query import CommunityRef
from commonwatch.storage import objects as objects_repo


@dataclass(init=False, slots=True)
class Candidate:
    """A validated object ready to be weighed and stored; one is made per object, so
    ``__init__`` is written out (see ``tools/native.py``)."""

    obj: dict[str, Any]
    stix_id: str
    type: str
    spec_version: str
    versioned_us: int | None
    tlp: int
    recipients: frozenset[str]
    content_hash: str
    raw: bytes
    creator: str | None  # created_by_ref

    def __init__(self, obj: dict[str, Any], stix_id: str, type: str, spec_version: str,  # noqa: A002
                 versioned_us: int | None, tlp: int, recipients: frozenset[str], content_hash: str,
                 raw: bytes, creator: str | None) -> None:
        self.obj = obj
        self.stix_id = stix_id
        self.type = type
        self.spec_version = spec_version
        self.versioned_us = versioned_us
        self.tlp = tlp
        self.recipients = recipients
        self.content_hash = content_hash
        self.raw = raw
        self.creator = creator


def describe(obj: object) -> tuple[str, str]:
    """Best-effort id and version of an object for a failure entry."""
    if not isinstance(obj, dict):
        return "", ""
    oid = obj.get("id") if isinstance(obj.get("id"), str) else ""
    version = obj.get("modified") or obj.get("created") or ""
    return str(oid), version if isinstance(version, str) else ""


# -- preparation (no database) -----------------------------------------------

_LEVELS = tuple(Tlp)  # Tlp by level: an enum call per object costs more than the rest of the TLP work
def prepare(
    obj: object, community: CommunityRef, principal: Principal,
    identities: dict[str, int],
) -> Candidate:
    meta = validate_object(obj)
    assert isinstance(obj, dict)  # validate_object guarantees it
    creator = meta.created_by_ref
    if creator is not None and identities.get(creator, principal.org_id) != principal.org_id:
        raise InvalidStixObject(
            f"'created_by_ref' names {creator}, the identity of another member "
            "organisation; post objects as your own organisation", meta.id,
        )
    if meta.type == "identity" and identities.get(meta.id, principal.org_id) != principal.org_id:
        # Readers name a producer after its identity object: only the member says who it is.
        raise InvalidStixObject(
            f"{meta.id} is the identity of another member organisation; only that "
            "organisation may post it", meta.id,
        )
    recipients = red_recipients(obj)
    tlp = effective_tlp(meta.marking_refs, _LEVELS[community.default_tlp])
    return _candidate(obj, meta.id, meta.type, meta.spec_version,
                      meta.modified_us or meta.created_us, tlp, recipients)


def prepare_trusted(obj: dict[str, Any]) -> Candidate:
    meta = validate_object(obj)
    return _candidate(obj, meta.id, meta.type, meta.spec_version,
                      meta.modified_us or meta.created_us, Tlp.CLEAR, frozenset())


def _candidate(
    obj: dict[str, Any], stix_id: str, type_: str, spec_version: str,
    versioned_us: int | None, tlp: Tlp, recipients: frozenset[str],
) -> Candidate:
    try:
        canonical = orjson.dumps(obj, option=orjson.OPT_SORT_KEYS)
    except TypeError as exc:  # an integer beyond 64 bits, a value JSON cannot hold
        raise InvalidStixObject(f"the object cannot be stored as JSON: {exc}", stix_id) from None
    creator = obj.get("created_by_ref")
    return Candidate(obj, stix_id, type_, spec_version, versioned_us, int(tlp), recipients,
                     hashlib.sha256(canonical).hexdigest(), orjson.dumps(obj),
                     creator if isinstance(creator, str) else None)


# -- acceptance (against the versions the poster sees) -------------------------
def conflict(c: Candidate, versions: list[objects_repo.Stored], org_id: int | None) -> str | None:
    """None to store, "" for an identical re-post, else the failure message.

    Each organisation holds its own copy of what it posts, and only the versions
    the poster can see count (``seen``). Among them:

    - the poster's own identical version makes an identical re-post (matching
      another organisation's would say that it exists: SCO ids are derived from the
      value, anyone can name one);
    - a version of the poster's own is never replaced by other content;
    - nothing follows a revoked version (STIX 2.1 §3.6);
    - where another organisation's versions are visible, the poster may post a copy
      of one of them, or versions that name the same ``created_by_ref`` as theirs
      (both relay one source, such as MITRE ATT&CK) or as a version it holds itself
      (its own object, posted while it could not see theirs). The creator of a
      version is who may version it (STIX 2.1 §3.6); an object without one is its
      producer's only (:func:`theirs`).
    """
    if any(v.content_hash == c.content_hash and v.producer == org_id for v in versions):
        return ""
    seen = [v for v in versions if v.seen]
    if c.versioned_us is None or not seen:
        return None
    if any(v.version_us == c.versioned_us and v.producer == org_id for v in seen):
        return (f"version {format_timestamp(c.versioned_us)} of {c.stix_id} already "
                "exists with different content; a new version needs a later 'modified'")
    copy = any(v.content_hash == c.content_hash for v in seen)
    if not copy and _newest_read(seen, org_id).revoked:
        return (f"{c.stix_id} is revoked; a revoked object cannot be updated "
                "(STIX 2.1 §3.6): create a new object instead")
    if copy or not theirs(c.creator, seen, org_id):
        return None
    return (f"{c.stix_id} is an object another organisation produced in this collection; "
            "only its creator may add versions of it (a member relaying the same source "
            "posts it with the same 'created_by_ref')")


def theirs(creator: str | None, seen: list[objects_repo.Stored], org_id: int | None) -> bool:
    """Whether other organisations' versions among ``seen`` (those the poster sees) keep
    ``org_id`` from posting a version that names ``creator`` (see :func:`conflict`).
    Copies others made of the poster's own versions (it held that content first) do not."""
    first: dict[tuple[int, str], int | None] = {}  # the first visible holder of each content
    for v in seen:  # in the order stored
        first.setdefault((v.version_us, v.content_hash), v.producer)
    others = [v for v in seen if v.producer != org_id and first[v.version_us, v.content_hash] != org_id]
    return bool(others) and not (creator is not None and (
        all(v.creator == creator for v in others)
        or any(v.creator == creator for v in seen if v.producer == org_id)))


def _newest_read(seen: list[objects_repo.Stored], org_id: int | None) -> objects_repo.Stored:
    """The newest version the poster reads (``match[version]=last``): of the copies of
    the newest version, its own, else the first stored (``seen`` is in that order)."""
    newest = max(v.version_us for v in seen)
    copies = [v for v in seen if v.version_us == newest]
    return next((v for v in copies if v.producer == org_id), copies[0])


def version_text(c: Candidate, versions: list[objects_repo.Stored],
                 org_id: int | None = None) -> str:
    """The version a status entry names: ``modified``, else the poster's identical version."""
    if c.versioned_us is not None:
        return format_timestamp(c.versioned_us)
    for v in versions:
        if v.content_hash == c.content_hash and v.producer == org_id:
            return format_timestamp(v.version_us)
    return ""
