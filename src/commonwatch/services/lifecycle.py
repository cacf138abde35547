"""Lifecycle of a member's own indicators: scores now, and expiry written into the data.

:meth:`LifecycleService.scores` scores the caller's organisation's indicators in one
community with the decay policy (:mod:`commonwatch.domain.lifecycle`), restarting each
decay at the last sighting the caller can see. :meth:`LifecycleService.expire` writes
the outcome as new versions of those indicators, so that exports, TAXII clients and
federated peers receive it rather than recomputing it (STIX 2.1 §3.6 versioning):

* a live indicator gets ``valid_until`` = the moment its decay reaches the revoke
  score — never later than the ``valid_until`` its producer first published, and
  moved later when a new sighting restarts the decay;
* an indicator whose score fell to the revoke score or under it, or that the producer
  names, gets ``revoked: true`` (and ``valid_until`` no later than that moment). A
  revoked version is a tombstone: it stays stored and travels like any version.

Everything is read through the visibility-filtered query service, and written through
the ingest service as the caller; running ``expire`` twice writes nothing the second
time.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from commonwatch.clock import Clock, now_us
from commonwatch.domain.lifecycle import (
    DEFAULT_POLICY,
    Assessment,
    DecayPolicy,
    assess,
    sighting_time_us,
)
from commonwatch.domain.markings import Tlp
from commonwatch.domain.stix import format_timestamp, parse_timestamp
from commonwatch.domain.visibility import Principal
from commonwatch.errors import InputTooLarge, NotFound
from commonwatch.services.ingest import IngestService
from commonwatch.services.query import (
    CommunityRef,
    ExportFilter,
    ObjectFilter,
    QueryService,
    VersionSelector,
)
from commonwatch.services.status import FailureDetail, failures_json

#: Objects per ingest envelope when writing expiries.
_BATCH = 1000
#: Indicator ids given to revoke in one call.
MAX_REVOKE = 10_000
_MS = 1000


@dataclass(frozen=True, slots=True)
class IndicatorScore:
    """One of the caller's indicators as the policy sees it now."""

    id: str
    kind: str | None
    value: str | None
    base: float
    score: float
    last_sighting_us: int | None
    valid_until: str | None
    #: The ``valid_until`` the policy gives it (what ``expire`` writes while it is live).
    expires_us: int | None
    revoked: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "kind": self.kind, "value": self.value, "base": self.base,
            "score": round(self.score, 2),
            "last_sighting": _text(self.last_sighting_us),
            "valid_until": self.valid_until,
            "expires_at": _text(self.expires_us),
            "revoked": self.revoked,
        }


@dataclass(frozen=True, slots=True)
class Change:
    """One new version ``expire`` writes (or would write, on a dry run)."""

    id: str
    valid_until: str
    revoked: bool
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "valid_until": self.valid_until, "revoked": self.revoked,
                "reason": self.reason}


@dataclass(slots=True)
class ExpiryReport:
    """What ``expire`` did: the versions written, and any the exchange refused."""

    community: str
    dry_run: bool
    changes: list[Change] = field(default_factory=list)
    failures: list[FailureDetail] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "community": self.community, "dry_run": self.dry_run,
            "changes": [c.to_json() for c in self.changes],
            "failures": failures_json(self.failures),
        }


@dataclass(slots=True)
class _Own:
    obj: dict[str, Any]
    last_sighting_us: int | None = None
    first_valid_until_us: int | None = None


def _text(us: int | None) -> str | None:
    return None if us is None else format_timestamp(us)


def _ceil_ms(us: int) -> int:
    return -(-us // _MS) * _MS


def _us(value: object) -> int | None:
    try:
        return parse_timestamp(value) if isinstance(value, str) else None
    except ValueError:
        return None


class LifecycleService:
    """Scores and expiry of one organisation's own indicators in one community."""

    def __init__(self, query: QueryService, ingest: IngestService, *,
                 policy: DecayPolicy = DEFAULT_POLICY, clock: Clock = now_us) -> None:
        self._query = query
        self._ingest = ingest
        self.policy = policy
        self._clock = clock

    # -- reading ---------------------------------------------------------------------
    def _community(self, principal: Principal, community: str) -> CommunityRef:
        """The community by name or collection id; NotFound unless the caller reads it."""
        chosen = self._query.export_communities(principal, ExportFilter(communities=(community,)))
        return chosen[0][0]

    def _stream(self, principal: Principal, community: CommunityRef, kind: str,
                ceiling: Tlp = Tlp.RED) -> Iterable[Any]:
        """The newest visible version of each object of ``kind``, revoked ones included: of
        several copies, the one the caller reads (its own, else the first stored), as
        TAXII and lookups give it, not the one an export's lifecycle filters would rank."""
        flt = ExportFilter(communities=(community.collection_id,), types=(kind,), tlp_ceiling=ceiling,
                           include_revoked=True, include_expired=True)
        return self._query.stream_latest(principal, flt)

    def last_sightings(self, principal: Principal, community: str, ceiling: Tlp = Tlp.RED) -> dict[str, int]:
        """Indicator id -> when it was last seen, over the sightings the caller can see
        (and, with ``ceiling``, only those at or below that TLP).

        The ``last_sighting_us`` that :func:`commonwatch.domain.lifecycle.score` takes, for
        read paths (exports) that score indicators of any producer.
        """
        return self._last_seen(principal, self._community(principal, community), ceiling)

    def _last_seen(self, principal: Principal, community: CommunityRef,
                   ceiling: Tlp = Tlp.RED) -> dict[str, int]:
        last: dict[str, int] = {}
        for row in self._stream(principal, community, "sighting", ceiling):
            sighting = orjson.loads(row.raw)
            if sighting.get("revoked") is True:  # withdrawn: it saw nothing
                continue
            target, seen = sighting.get("sighting_of_ref"), sighting_time_us(sighting)
            if isinstance(target, str) and seen is not None and seen > last.get(target, seen - 1):
                last[target] = seen
        return last

    def _own(self, principal: Principal, community: CommunityRef) -> dict[str, _Own]:
        """The newest version of each indicator of the caller's organisation: those it
        holds a copy of and may version (a copy of another member's indicator is not its
        own: ingest would refuse its expiry)."""
        own = {row.stix_id: _Own(orjson.loads(row.raw))
               for row in self._stream(principal, community, "indicator")
               if row.producer_org_id == principal.org_id}
        creators = {stix_id: c if isinstance(c := item.obj.get("created_by_ref"), str) else None
                    for stix_id, item in own.items()}
        mine = self._ingest.versionable(principal, community.collection_id, creators) if own else set()
        own = {stix_id: item for stix_id, item in own.items() if stix_id in mine}
        for stix_id, seen in self._last_seen(principal, community).items():
            if stix_id in own:
                own[stix_id].last_sighting_us = seen
        self._first_versions(principal, community, own)
        return own

    def _first_versions(self, principal: Principal, community: CommunityRef, own: dict[str, _Own]) -> None:
        """Record the ``valid_until`` each indicator's first version published (a cap)."""
        ids = sorted(own)
        for start in range(0, len(ids), _BATCH):
            flt = ObjectFilter(ids=tuple(ids[start:start + _BATCH]), limit=_BATCH,
                               versions=VersionSelector(first=True, last=False))
            while True:
                page = self._query.objects(principal, community.collection_id, flt)
                for row in page.rows:
                    first = orjson.loads(row.raw)
                    own[first["id"]].first_valid_until_us = _us(first.get("valid_until"))
                if not page.more:
                    break
                flt = ObjectFilter(ids=flt.ids, limit=_BATCH, versions=flt.versions, next=page.next)

    def _expires_us(self, item: _Own, assessment: Assessment) -> int | None:
        """The ``valid_until`` the policy gives a live indicator (ms precision, > valid_from)."""
        if assessment.decays_at_us is None:
            return None
        until = assessment.decays_at_us
        if item.first_valid_until_us is not None:
            until = min(until, item.first_valid_until_us)
        valid_from = _us(item.obj.get("valid_from"))
        if valid_from is not None:
            until = max(until, valid_from + _MS)  # STIX 2.1 §4.7: valid_until > valid_from
        return _ceil_ms(until)

    def scores(self, principal: Principal, community: str) -> list[IndicatorScore]:
        """Every own indicator of the caller's organisation in ``community``, scored now."""
        ref = self._community(principal, community)
        now = self._clock()
        out = []
        for stix_id, item in sorted(self._own(principal, ref).items()):
            a = assess(item.obj, now, item.last_sighting_us, self.policy)
            out.append(IndicatorScore(
                id=stix_id, kind=a.kind, value=a.value, base=a.base, score=a.score,
                last_sighting_us=item.last_sighting_us, valid_until=item.obj.get("valid_until"),
                expires_us=self._expires_us(item, a), revoked=item.obj.get("revoked") is True,
            ))
        return out

    # -- writing ---------------------------------------------------------------------
    def expire(self, principal: Principal, community: str, *, dry_run: bool = False,
               revoke: Sequence[str] = ()) -> ExpiryReport:
        """Write expiry and revocation of the caller's indicators as new versions.

        ``revoke`` names indicators the producer revokes now whatever their score; an id
        that is not an indicator of the caller's organisation in ``community`` is refused
        (NotFound) before anything is written.
        """
        if len(revoke) > MAX_REVOKE:
            raise InputTooLarge(f"{len(revoke)} indicators to revoke; at most {MAX_REVOKE} per call")
        ref = self._community(principal, community)
        own = self._own(principal, ref)
        unknown = sorted(set(revoke) - set(own))
        if unknown:
            raise NotFound(f"no indicator of your organisation with id {unknown[0]!r} is in community "
                           f"{ref.name!r}")
        now = self._clock()
        report = ExpiryReport(community=ref.name, dry_run=dry_run)
        versions = []
        for stix_id, item in sorted(own.items()):
            change = self._plan(item, now, stix_id in revoke)
            if change is None:
                continue
            report.changes.append(change)
            versions.append(self._new_version(item.obj, change, now))
        if not dry_run:
            for start in range(0, len(versions), _BATCH):
                batch = versions[start:start + _BATCH]
                status = self._ingest.add_objects(principal, ref.collection_id, batch)
                report.failures.extend(status.failures)
        return report

    def _plan(self, item: _Own, now: int, revoke_requested: bool) -> Change | None:
        """The new version one indicator needs, or None (revoked ones never change)."""
        obj = item.obj
        if obj.get("revoked") is True:
            return None
        a = assess(obj, now, item.last_sighting_us, self.policy)
        expires = self._expires_us(item, a)
        if expires is None:
            return None
        current = _us(obj.get("valid_until"))
        if revoke_requested or a.decay_score <= self.policy.revoke_score:
            end = expires
            if revoke_requested:  # ends now (yet after valid_from), unless the decay ended it earlier
                valid_from = _us(obj.get("valid_from"))
                end = min(expires, max(_ceil_ms(now), _ceil_ms(valid_from + _MS) if valid_from else 0))
            until = end if current is None else min(current, end)
            reason = ("revoked on request" if revoke_requested else f"score {a.decay_score:.1f} is at "
                      f"or under the revoke score {self.policy.revoke_score:g}")
            return Change(obj["id"], format_timestamp(until), True, reason)
        if current != expires:
            reason = f"valid_until {'set' if current is None else 'moved'} by the decay policy"
            return Change(obj["id"], format_timestamp(expires), False, reason)
        return None

    @staticmethod
    def _new_version(obj: dict[str, Any], change: Change, now: int) -> dict[str, Any]:
        modified = _us(obj.get("modified")) or _us(obj.get("created")) or 0
        version = dict(obj)
        version["modified"] = format_timestamp(max(now - now % _MS, modified + _MS))
        version["valid_until"] = change.valid_until
        if change.revoked:
            version["revoked"] = True
        return version
