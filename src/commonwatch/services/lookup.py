"""Lookup and correlation: who else knows this value, and what do they say about it.

For each looked-up value: every object version the caller can see that states it (an
SCO, or an indicator with a single-value pattern, found through the observable index,
including containing CIDRs and parent domains), the organisations that reported it
(by name when the object names its producer, else by sector), first and last seen,
the sightings of those indicators and the opinions on them, and warninglist hits.

Everything counted comes from rows that passed the visibility rule in SQL
(:func:`commonwatch.services.statements.visible`, the rule every read uses): a value
known only from objects the caller cannot see answers exactly like an unknown value.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import orjson
from sqlalchemy import Connection, Engine, Select, Text, any_, bindparam, column, func, or_, select, true
from sqlalchemy.dialects.postgresql import ARRAY

from commonwatch.domain.correlation import Key, classify, keys_for
from commonwatch.domain.indexing import OPINION_OF, SIGHTING_OF
from commonwatch.domain.markings import Tlp
from commonwatch.domain.observables import Observable
from commonwatch.domain.stix import format_timestamp, parse_timestamp
from commonwatch.domain.visibility import Clearance, Principal
from commonwatch.domain.warninglists import Warninglists
from commonwatch.errors import InputTooLarge
from commonwatch.services import statements as sql
from commonwatch.services.query import CommunityRef, QueryService
from commonwatch.storage import index as index_repo
from commonwatch.storage.index import OBJECT_REFS, OBSERVABLES
from commonwatch.storage.models import Organisation

#: Values per lookup request (the bulk form); more are refused with a message.
MAX_VALUES = 10_000
#: Index keys bound per statement.
_CHUNK = 2_000
OPINIONS = ("strongly-disagree", "disagree", "neutral", "agree", "strongly-agree")


@dataclass(slots=True)
class Match:
    """One visible object version that states the value (or a containing key)."""

    id: str
    type: str
    community: str
    key: Key
    tlp: str
    reporter: dict[str, str | None]
    confidence: int | None
    valid_from: str | None
    valid_until: str | None
    revoked: bool
    created: str | None
    modified: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "type": self.type, "community": self.community,
            "matched": {"kind": self.key.kind, "value": self.key.value, "relation": self.key.relation},
            "tlp": self.tlp, "reporter": self.reporter, "confidence": self.confidence,
            "valid_from": self.valid_from, "valid_until": self.valid_until,
            "revoked": self.revoked, "created": self.created, "modified": self.modified,
        }


@dataclass(slots=True)
class Answer:
    """What the caller may know about one looked-up value."""

    value: str
    kind: str | None = None
    normalised: str | None = None
    error: str | None = None
    matches: list[Match] = field(default_factory=list)
    sightings: int = 0
    sighting_reports: int = 0
    first_seen_us: int | None = None
    last_seen_us: int | None = None
    sighters: dict[tuple[str | None, str | None], None] = field(default_factory=dict)
    opinions: Counter[str] = field(default_factory=Counter)
    opinions_by_sector: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    warninglists: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        if self.error is not None:
            return {"value": self.value, "error": self.error}
        reporters = {tuple(sorted((k, v or "") for k, v in m.reporter.items())): m.reporter
                     for m in self.matches}
        return {
            "value": self.value, "kind": self.kind, "normalised": self.normalised,
            "found": bool(self.matches),
            "matches": [m.to_json() for m in self.matches],
            "reporters": list(reporters.values()),
            "first_seen": _text(self.first_seen_us), "last_seen": _text(self.last_seen_us),
            "sightings": {"count": self.sightings, "reports": self.sighting_reports,
                          "by": [{"organisation": o, "sector": s} for o, s in self.sighters]},
            "opinions": {name: self.opinions.get(name, 0) for name in OPINIONS},
            "opinions_by_sector": {sector: {name: counts.get(name, 0) for name in OPINIONS}
                                   for sector, counts in sorted(self.opinions_by_sector.items())},
            "warninglists": list(self.warninglists),
        }


def _text(us: int | None) -> str | None:
    return None if us is None else format_timestamp(us)


def _latest_visible(o: Any, sight: sql.Sight) -> Any:
    """The newest version of its id among those the caller can see (``version=last``)."""
    return or_(o.is_latest == true(), ~sql._other_version(o, sight, newer=True))


_ORGS = select(Organisation.id, Organisation.name, Organisation.sector, Organisation.identity_id)


def _in_list(col: Any, name: str, dialect: str) -> Any:
    """``col`` is one of a list bound as ONE parameter (a JSON array on SQLite, an array
    on PostgreSQL): the statement text never changes with the list's length."""
    if dialect == "sqlite":
        return col.in_(select(column("value")).select_from(func.json_each(bindparam(name, type_=Text()))))
    return col == any_(bindparam(name, type_=ARRAY(Text)))


def _bind(values: list[str], dialect: str) -> Any:
    return orjson.dumps(values).decode() if dialect == "sqlite" else values


@lru_cache(maxsize=64)
def _observables_query(sight: sql.Sight, dialect: str = "sqlite") -> Select[Any]:
    ob_table, o_table = OBSERVABLES.alias("ob"), sql.OBJECTS.alias("o")
    ob, o = ob_table.c, o_table.c
    return (
        select(ob.kind, ob.value, o.stix_id, o.type, o.tlp, o.producer_org_id, o.raw)
        .join_from(ob_table, o_table, o.id == ob.object_id)
        .where(ob.community_id == bindparam("community"), ob.kind == bindparam("kind"),
               _in_list(ob.value, "values", dialect),
               o.community_id == bindparam("community"),
               sql.visible(o, sight), _latest_visible(o, sight))
    )


@lru_cache(maxsize=64)
def _refs_query(sight: sql.Sight, dialect: str = "sqlite") -> Select[Any]:
    r_table, o_table = OBJECT_REFS.alias("r"), sql.OBJECTS.alias("o")
    r, o = r_table.c, o_table.c
    return (
        select(r.target_id, r.relation, o.producer_org_id, o.raw)
        .join_from(r_table, o_table, o.id == r.object_id)
        .where(r.community_id == bindparam("community"),
               _in_list(r.target_id, "targets", dialect),
               o.community_id == bindparam("community"),
               sql.visible(o, sight), _latest_visible(o, sight))
    )


def _chunks(items: Sequence[str]) -> Iterable[list[str]]:
    for start in range(0, len(items), _CHUNK):
        yield list(items[start:start + _CHUNK])


class LookupService:
    """Answers lookups for one caller, over every community it can read."""

    def __init__(self, engine: Engine, query: QueryService,
                 warninglists: Callable[[], Warninglists]) -> None:
        self._engine = engine  # one plain connection per lookup: ORM sessions cost more here
        self._query = query
        self._warninglists = warninglists

    def lookup(self, principal: Principal | None, values: Sequence[str]) -> list[Answer]:
        """One answer per value, in order; unparseable values get an ``error``."""
        if len(values) > MAX_VALUES:
            raise InputTooLarge(
                f"{len(values)} values in one lookup; at most {MAX_VALUES} are accepted — "
                "split the list"
            )
        answers = [Answer(value=v) for v in values]
        observables: list[tuple[int, Observable]] = []
        for i, answer in enumerate(answers):
            observable = classify(answer.value) if isinstance(answer.value, str) else None
            if observable is None:
                answer.error = ("not an IP address, CIDR, domain, URL, e-mail address or "
                                "MD5/SHA-1/SHA-256/SHA-512 hash")
                continue
            answer.kind, answer.normalised = observable
            answer.warninglists = self._warninglists().hits(*observable)
            observables.append((i, observable))
        if not observables:
            return answers
        with self._engine.connect() as conn:
            communities = self._query.collections(principal, conn)
            prefixes = index_repo.stored_prefixes(conn, [c.id for c, _ in communities])
            wanted: dict[Key, list[int]] = defaultdict(list)
            for i, observable in observables:
                for key in keys_for(observable, prefixes):
                    wanted[key].append(i)
            orgs = {oid: (name, sector, identity) for oid, name, sector, identity in conn.execute(_ORGS)}
            for community, clearance in communities:
                self._community(conn, community, clearance, wanted, answers, orgs)
        for answer in answers:  # one match per object: its closest key (exact first)
            answer.matches.sort(key=lambda m: (m.key.relation != "exact", m.community, m.id))
            unique: dict[tuple[str, str], Match] = {}
            for m in answer.matches:
                unique.setdefault((m.community, m.id), m)
            answer.matches = list(unique.values())
        return answers

    def _community(
        self, conn: Connection, community: CommunityRef, clearance: Clearance,
        wanted: dict[Key, list[int]], answers: list[Answer], orgs: dict[int, tuple[str, str, str]],
    ) -> None:
        sight = sql.Sight.of(clearance)
        params = sql.sight_params(clearance) | {"community": community.id}
        by_kind: dict[str, list[str]] = defaultdict(list)
        relation = {}
        for key in wanted:
            by_kind[key.kind].append(key.value)
            relation[(key.kind, key.value)] = key
        targets: dict[str, set[int]] = defaultdict(set)  # matched object id -> answers
        dialect = conn.dialect.name
        query = _observables_query(sight, dialect)
        for kind, keys in by_kind.items():
            for chunk in _chunks(keys):
                rows = conn.execute(query, params | {"kind": kind, "values": _bind(chunk, dialect)})
                for kind_, value, stix_id, type_, tlp, producer, raw in rows:
                    key = relation[(kind_, value)]
                    obj = orjson.loads(raw)
                    match = _match(obj, stix_id, type_, community, key, tlp, orgs.get(producer))
                    for i in wanted[key]:
                        answers[i].matches.append(match)
                        _seen(answers[i], obj.get("valid_from") or obj.get("created"),
                              obj.get("modified") or obj.get("created"))
                        targets[stix_id].add(i)
        if targets:
            self._references(conn, sight, params, targets, answers, orgs)

    @staticmethod
    def _references(conn: Connection, sight: sql.Sight, params: dict[str, Any],
                    targets: dict[str, set[int]], answers: list[Answer],
                    orgs: dict[int, tuple[str, str, str]]) -> None:
        dialect = conn.dialect.name
        query = _refs_query(sight, dialect)
        for chunk in _chunks(list(targets)):
            rows = conn.execute(query, params | {"targets": _bind(chunk, dialect)})
            for target, relation, producer, raw in rows:
                obj = orjson.loads(raw)
                for i in targets[target]:
                    answer = answers[i]
                    if relation == SIGHTING_OF:
                        count = obj.get("count", 1)
                        answer.sightings += count if isinstance(count, int) else 1
                        answer.sighting_reports += 1
                        answer.sighters[_reporter(obj, orgs.get(producer))] = None
                        _seen(answer, obj.get("first_seen"), obj.get("last_seen"))
                    elif relation == OPINION_OF and obj.get("opinion") in OPINIONS:
                        answer.opinions[obj["opinion"]] += 1
                        sector = orgs[producer][1] if producer in orgs else "unknown"
                        answer.opinions_by_sector[sector][obj["opinion"]] += 1


def _reporter(obj: dict[str, Any], org: tuple[str, str, str] | None) -> tuple[str | None, str | None]:
    """(organisation name or None, sector) of an object's producer: the name only when the
    object itself names its producer (``created_by_ref``), the sector always."""
    name, sector, identity = org if org is not None else (None, None, None)
    return (name if name is not None and obj.get("created_by_ref") == identity else None), sector


def _match(obj: dict[str, Any], stix_id: str, type_: str, community: CommunityRef, key: Key,
           tlp: int, org: tuple[str, str, str] | None) -> Match:
    name, sector = _reporter(obj, org)
    confidence = obj.get("confidence")
    return Match(
        id=stix_id, type=type_, community=community.name, key=key, tlp=Tlp(tlp).label,
        reporter={"organisation": name, "sector": sector},
        confidence=confidence if isinstance(confidence, int) else None,
        valid_from=obj.get("valid_from"), valid_until=obj.get("valid_until"),
        revoked=obj.get("revoked") is True, created=obj.get("created"), modified=obj.get("modified"),
    )


def _seen(answer: Answer, first: object, last: object) -> None:
    """Widen the answer's first/last seen with two STIX timestamps (ignored if invalid)."""
    try:
        first_us = parse_timestamp(first) if isinstance(first, str) else None
        last_us = parse_timestamp(last) if isinstance(last, str) else None
    except ValueError:
        return  # stored objects were validated; an optional property may still be odd
    if first_us is not None and (answer.first_seen_us is None or first_us < answer.first_seen_us):
        answer.first_seen_us = first_us
    if last_us is not None and (answer.last_seen_us is None or last_us > answer.last_seen_us):
        answer.last_seen_us = last_us
