"""The sightings quick form: "we saw VALUE N times" becomes STIX sightings (STIX 2.1 §5.2).

A member gives a value (address, domain, URL, hash...), a count and when; the service
finds, through the lookup service, the indicators *it can see* in the community that
state the value — exactly, or as a containing network or parent domain, as lookup
matches them — and posts one ``sighting`` per indicator on the member's behalf:
``sighting_of_ref`` the indicator, ``count``, ``first_seen``/``last_seen``,
``where_sighted_refs`` and ``created_by_ref`` the member's identity.

Anonymous sightings (``anonymous=True``) name nobody: no ``created_by_ref``, no
``where_sighted_refs``. The exchange still records which organisation posted them (only
it may add versions); no read path returns that record (lookup counts an anonymous
sighting with neither an organisation nor a sector for its reporter).

TLP: each sighting carries its own marking, chosen by the sighter (by default the TLP of
the sighted indicator). The indicator's producer sees the count of a sighting exactly
when the visibility rule lets it read the sighting; nothing is widened on its behalf,
with one addition the sighter's choice implies: a TLP:RED sighting names the
indicator's producer as its recipient (the TLP:RED recipient extension of
:mod:`commonwatch.domain.markings`). The producer is named only when the indicator
itself names its producer (``created_by_ref``), because the sighter can read its own
sighting and must not learn who produced an indicator that does not say so; a TLP:RED
sighting of such an indicator is refused with a message, since no one else could read it
(this includes the sighter's own indicators when they do not name their producer: the
read paths do not tell the service who produced an unnamed indicator).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import orjson

from commonwatch.clock import Clock, now_us
from commonwatch.domain.markings import (
    RECIPIENTS_EXTENSION_ID,
    RECIPIENTS_PROPERTY,
    TLP2_MARKING_BY_LEVEL,
    Tlp,
    parse_tlp,
)
from commonwatch.domain.stix import format_timestamp
from commonwatch.domain.timestamps import parse_when
from commonwatch.domain.visibility import Principal
from commonwatch.errors import (
    InputTooLarge,
    InvalidParameter,
    InvalidStixObject,
    NotFound,
    PermissionDenied,
)
from commonwatch.services.ingest import IngestService
from commonwatch.services.lookup import LookupService, Match
from commonwatch.services.query import CommunityRef, ObjectFilter, QueryService

#: STIX 2.1 §5.2: ``count`` is an integer between 0 and 999,999,999 inclusive.
MAX_COUNT = 999_999_999
#: Longest ``where`` text (it becomes the sighting's ``description``).
MAX_WHERE = 1024
#: Indicators one quick sighting may sight (a short prefix can match many networks).
MAX_INDICATORS = 1000
_MS = 1000


@dataclass(frozen=True, slots=True)
class SightingRequest:
    """What the quick form asks for, validated."""

    value: str
    count: int = 1
    first_seen: str | None = None
    last_seen: str | None = None
    where: str | None = None
    anonymous: bool = False
    tlp: Tlp | None = None


@dataclass(frozen=True, slots=True)
class Sighted:
    """One sighting created: the object as stored and what it sights."""

    indicator_id: str
    matched: str
    sighting: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"indicator": self.indicator_id, "matched": self.matched, "sighting": self.sighting}


def _stamp(name: str, value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return parse_when(value, name)
    except ValueError as exc:
        raise InvalidParameter(str(exc)) from None


def _ms(us: int) -> int:
    return us - us % _MS


class SightingService:
    """Creates sightings of the indicators a member can see, on its behalf."""

    def __init__(self, query: QueryService, lookup: LookupService, ingest: IngestService, *,
                 clock: Clock = now_us) -> None:
        self._query = query
        self._lookup = lookup
        self._ingest = ingest
        self._clock = clock

    def sight(
        self, principal: Principal, community: str, value: str, count: int = 1,
        first_seen: str | None = None, last_seen: str | None = None, where: str | None = None,
        anonymous: bool = False, tlp: Tlp | str | None = None,
    ) -> list[Sighted]:
        """Post one sighting per visible indicator stating ``value`` in ``community``.

        Raises NotFound (the same message whether indicators are missing or hidden) when
        no visible, unrevoked indicator states the value; InvalidParameter for bad input.
        """
        level = parse_tlp(tlp) if isinstance(tlp, str) else tlp
        request = SightingRequest(value, count, first_seen, last_seen, where, anonymous, level)
        first_us, last_us = self._check(request)
        ref = self._community(principal, community)
        matches = self._indicators(principal, ref, value)
        recipients = self._recipients(principal, ref, request, matches)
        sightings = [self._sighting(principal, request, m, recipients.get(m.id), first_us, last_us)
                     for m in matches]
        report = self._ingest.add_objects(principal, ref.collection_id, [s.sighting for s in sightings])
        if report.failures:
            failure = report.failures[0]
            raise InvalidStixObject(f"the sighting {failure.id} was refused: {failure.message}",
                                    failure.id)
        return sightings

    # -- input -----------------------------------------------------------------------
    def _check(self, request: SightingRequest) -> tuple[int, int]:
        if isinstance(request.count, bool) or not isinstance(request.count, int) or not (
                0 <= request.count <= MAX_COUNT):
            raise InvalidParameter(f"count must be a whole number from 0 to {MAX_COUNT}, "
                                   f"not {request.count!r}")
        if request.where is not None and len(request.where) > MAX_WHERE:
            raise InputTooLarge(f"'where' is {len(request.where)} characters; at most {MAX_WHERE} "
                                "are accepted")
        now = _ms(self._clock())
        first = _stamp("first_seen", request.first_seen)
        last = _stamp("last_seen", request.last_seen)
        if last is None:
            last = max(now, first) if first is not None else now
        if first is None:
            first = last
        if last < first:
            raise InvalidParameter("last_seen is earlier than first_seen; STIX 2.1 §5.2 requires "
                                   "last_seen >= first_seen")
        return first, last

    def _community(self, principal: Principal, community: str) -> CommunityRef:
        for ref, _clearance in self._query.collections(principal):
            if community in (ref.name, ref.collection_id):
                return ref
        raise NotFound(f"no community {community!r} is available to you; see the TAXII collections list")

    def _indicators(self, principal: Principal, ref: CommunityRef, value: str) -> list[Match]:
        """The visible, unrevoked indicators of ``ref`` stating ``value``, one match each."""
        answer = self._lookup.lookup(principal, [value])[0]
        if answer.error is not None:
            raise InvalidParameter(f"{value!r} is {answer.error}")
        found: dict[str, Match] = {}
        for match in answer.matches:  # exact matches sort first, so each keeps its best reason
            if match.type == "indicator" and match.community == ref.name and not match.revoked:
                found.setdefault(match.id, match)
        if not found:
            raise NotFound(f"no indicator you can see in community {ref.name!r} states {value!r} (as a "
                           "value, a containing network or a parent domain); nothing was recorded")
        if len(found) > MAX_INDICATORS:
            raise InputTooLarge(f"{value!r} matches {len(found)} indicators; at most {MAX_INDICATORS} "
                                "are sighted at once — give a more specific value")
        return list(found.values())

    def _recipients(self, principal: Principal, ref: CommunityRef, request: SightingRequest,
                    matches: list[Match]) -> dict[str, str | None]:
        """Whom each TLP:RED sighting is addressed to: the indicator's named producer.

        None for the caller's own indicators (it reads its own sightings anyway). A member
        without read access sees only its own objects, so every match is its own.
        """
        red = [m for m in matches if _level(request, m) == Tlp.RED]
        if not red:
            return {}
        try:
            page = self._query.objects(principal, ref.collection_id,
                                       ObjectFilter(ids=tuple(m.id for m in red), limit=len(red)))
        except PermissionDenied:
            return {m.id: None for m in red}
        creators = {obj.get("id"): obj.get("created_by_ref")
                    for obj in (orjson.loads(r.raw) for r in page.rows)}
        out: dict[str, str | None] = {}
        for m in red:
            creator = creators.get(m.id)
            if creator == principal.org_identity:
                out[m.id] = None
            elif m.reporter.get("organisation") is not None and isinstance(creator, str):
                out[m.id] = creator
            else:
                raise InvalidParameter(
                    f"a TLP:RED sighting of {m.id} could be read by nobody but you: the indicator does "
                    "not name its producer (no created_by_ref), so the sighting cannot be addressed to "
                    "it; choose --tlp amber+strict or lower")
        return out

    # -- the sighting ------------------------------------------------------------------
    def _sighting(self, principal: Principal, request: SightingRequest, match: Match,
                  recipient: str | None, first_us: int, last_us: int) -> Sighted:
        now = format_timestamp(_ms(self._clock()))
        level = _level(request, match)
        obj: dict[str, Any] = {
            "type": "sighting", "spec_version": "2.1", "id": f"sighting--{uuid.uuid4()}",
            "created": now, "modified": now, "sighting_of_ref": match.id, "count": request.count,
            "first_seen": format_timestamp(first_us), "last_seen": format_timestamp(last_us),
            "object_marking_refs": [TLP2_MARKING_BY_LEVEL[level]],
        }
        if not request.anonymous:
            obj["created_by_ref"] = principal.org_identity
            obj["where_sighted_refs"] = [principal.org_identity]
        if request.where:
            obj["description"] = request.where
        if recipient is not None:
            obj["extensions"] = {RECIPIENTS_EXTENSION_ID: {
                "extension_type": "property-extension", RECIPIENTS_PROPERTY: [recipient]}}
        return Sighted(match.id, match.key.relation, obj)


def _level(request: SightingRequest, match: Match) -> Tlp:
    """The sighting's TLP: the sighter's choice, else the sighted indicator's."""
    return request.tlp if request.tlp is not None else parse_tlp(match.tlp)
