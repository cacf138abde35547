"""Lookup and correlation: who else knows this value, and what do they say about it.

For each looked-up value: every object version the caller can see that states it (an
SCO, or an indicator with a single-value pattern, found through the observable index,
including containing CIDRs and parent domains), the organisations that reported it
(by name when the object names its producer, else by sector), first and last seen,
the sightings of those indicators and the opinions on them, and warninglist hits.

Everything counted comes from rows that passed the visibility rule in SQL
(:func:`commonwatch.services.statements.visible`, the rule every read uses): a value
known only from objects the caller cannot see answers exactly like an unknown value.

A bulk lookup (up to :data:`MAX_VALUES` values) is planned as a whole: each distinct
value is classified and expanded into index keys once, the distinct keys of one kind
are bound as one list parameter, and one statement probes them in every community the
caller can read (one branch of the visibility rule per community, see
:func:`commonwatch.services.lookup_sql.observables_query`). Each matched object is
decoded once, whatever the number of keys and values that reach it, and statements run
on the driver's cursor: at 10^4
values the per-value, per-key and per-row Python work, not the database, is what
costs. (A bulk lookup builds about 10^5 small containers; the server and the CLI tune
the garbage collector for such work, see :mod:`commonwatch.process`.) Each value's
answer is the one it gets when looked up alone.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import orjson
from sqlalchemy import (
    Connection,
    Engine,
)

from commonwatch.domain.correlation import Key, classify, keys_for
from commonwatch.domain.indexing import OPINION_OF, SIGHTING_OF
from commonwatch.domain.markings import Tlp
from commonwatch.domain.observables import Observable
from commonwatch.domain.stix import format_timestamp, parse_timestamp
from commonwatch.domain.visibility import Clearance, Principal
from commonwatch.domain.warninglists import Warninglists
from commonwatch.errors import InputTooLarge
from commonwatch.services import lookup_sql as q
from commonwatch.services import statements as sql
from commonwatch.services.query import CommunityRef, QueryService
from commonwatch.storage import index as index_repo

#: Values per lookup request (the bulk form); more are refused with a message.
MAX_VALUES = 10_000
#: Lookups of at least this many values are bulk: on PostgreSQL they run without JIT
#: compilation.
_BULK = 500
OPINIONS = ("strongly-disagree", "disagree", "neutral", "agree", "strongly-agree")
_UNKNOWN_VALUE = ("not an IP address, CIDR, domain, URL, e-mail address or "
                  "MD5/SHA-1/SHA-256/SHA-512 hash")
_LABELS = {int(level): level.label for level in Tlp}
_NOTHING: Mapping[str, Any] = MappingProxyType({})


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
    #: (organisation name or None, sector) of each sighting's producer, in the order found
    sighters: tuple[tuple[str | None, str | None], ...] = ()
    #: opinion -> count, and sector -> opinion -> count (immutable empty defaults: a bulk
    #: answer allocates containers only for what it found)
    opinions: Mapping[str, int] = field(default_factory=lambda: _NOTHING)
    opinions_by_sector: Mapping[str, Mapping[str, int]] = field(default_factory=lambda: _NOTHING)
    warninglists: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        if self.error is not None:
            return {"value": self.value, "error": self.error}
        # One entry per distinct reporter (a missing name and an empty one are alike).
        reporters = {(m.reporter.get("organisation") or "", m.reporter.get("sector") or ""): m.reporter
                     for m in self.matches}
        return {
            "value": self.value, "kind": self.kind, "normalised": self.normalised,
            "found": bool(self.matches),
            "matches": [m.to_json() for m in self.matches],
            "reporters": list(reporters.values()),
            "first_seen": _text(self.first_seen_us), "last_seen": _text(self.last_seen_us),
            "sightings": {"count": self.sightings, "reports": self.sighting_reports,
                          "by": [{"organisation": o, "sector": s} for o, s in self.sighters]},
            "opinions": _counts(self.opinions),
            "opinions_by_sector": {sector: _counts(counts)
                                   for sector, counts in sorted(self.opinions_by_sector.items())},
            "warninglists": list(self.warninglists),
        }


_NO_OPINIONS = dict.fromkeys(OPINIONS, 0)


def _counts(opinions: Mapping[str, int]) -> dict[str, int]:
    """Every opinion value with its count, in the order of the scale."""
    if not opinions:
        return _NO_OPINIONS.copy()
    return {name: opinions.get(name, 0) for name in OPINIONS}


def _text(us: int | None) -> str | None:
    return None if us is None else format_timestamp(us)


# -- the service ---------------------------------------------------------------------------

Org = tuple[str, str, str]  # name, sector, identity id
#: (first, last) seen of one object as stored: STIX timestamp texts, or other values
#: (absent, not text) that count for nothing on their side.
Span = tuple[object, object]
#: A key of group ``g`` at rank ``r`` in its keys_for list is coded ``g * _RANKS + r``:
#: plain ints, so a bulk lookup's tables hold no per-key containers for the collector.
_RANKS = 1024


@dataclass(slots=True)
class _Tally:
    """Sightings and opinions of one group's matched objects."""

    sightings: int = 0
    reports: int = 0
    spans: list[Span] = field(default_factory=list)
    sighters: dict[tuple[str | None, str | None], None] = field(default_factory=dict)
    opinions: Counter[str] = field(default_factory=Counter)
    by_sector: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))


@dataclass(slots=True)
class _Plan:
    """One lookup, planned: distinct observables ("groups") and what each found."""

    #: per value: its group, or -1 when it is not a value lookups understand
    group_of: list[int]
    observables: list[Observable]
    keys: list[list[Key]]  # per group, in keys_for order (exact first)
    #: per group that matched: object row id -> rank of its closest key
    best: dict[int, dict[int, int]] = field(default_factory=dict)
    #: object row id -> :func:`_decoded` (a tuple of plain values: nothing for the collector)
    objects: dict[int, tuple[Any, ...]] = field(default_factory=dict)
    tallies: dict[int, _Tally] = field(default_factory=dict)


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
        return self._lookup(principal, values)

    def lookup_json(self, principal: Principal | None, values: Sequence[str]) -> list[dict[str, Any]]:
        """:meth:`lookup`, each answer as JSON (:meth:`Answer.to_json`)."""
        return [a.to_json() for a in self.lookup(principal, values)]

    def _lookup(self, principal: Principal | None, values: Sequence[str]) -> list[Answer]:
        plan = _plan(values)
        communities: dict[int, str] = {}
        if plan.observables:
            with self._engine.connect() as conn:
                if conn.dialect.name == "postgresql" and len(plan.observables) >= _BULK:
                    # A bulk list's estimated cost passes jit_above_cost, and compiling the
                    # statement (~0.2 s) would cost more than its thousands of index probes.
                    conn.exec_driver_sql("SET LOCAL jit = off")
                readable = self._query.collections(principal, conn)
                communities = {c.id: c.name for c, _ in readable}
                orgs = {oid: (name, sector, identity) for oid, name, sector, identity in conn.execute(q.ORGS)}
                prefixes = index_repo.stored_prefixes(conn, list(communities))
                plan.keys = [keys_for(observable, prefixes) for observable in plan.observables]
                if readable:
                    self._match(conn, readable, plan, orgs)
                    self._references(conn, readable, plan, orgs)
        return self._answers(values, plan, communities)

    @staticmethod
    def _match(conn: Connection, readable: list[tuple[CommunityRef, Clearance]], plan: _Plan,
               orgs: dict[int, Org]) -> None:
        """Probe every distinct key once, in all readable communities; keep for each group
        and object its closest key."""
        wanted: dict[str, dict[str, Any]] = {}  # kind -> value -> code or [codes]
        for g, keys in enumerate(plan.keys):
            for rank, (kind, value, _) in enumerate(keys):
                code = g * _RANKS + rank
                of_kind = wanted.get(kind)
                if of_kind is None:
                    of_kind = wanted[kind] = {}
                known = of_kind.get(value)
                if known is None:
                    of_kind[value] = code
                elif type(known) is int:
                    of_kind[value] = [known, code]
                else:
                    known.append(code)
        dialect = conn.dialect.name
        query = q.observables_query(tuple(sql.Sight.of(k) for _, k in readable), dialect)
        params: dict[str, Any] = {}
        for n, (community, clearance) in enumerate(readable):
            params |= q.community_params(n, community.id, clearance)
        objects, best = plan.objects, plan.best
        for kind, of_kind in wanted.items():
            # In index order: consecutive probes then share most of their B-tree pages.
            for chunk in q.chunks(sorted(of_kind), dialect):
                rows = sql.driver_rows(conn, query, params | {"kind": kind, "values": q.bind(chunk, dialect)})
                for value, row_id, community_id, stix_id, type_, tlp, producer, raw in rows:
                    if row_id not in objects:
                        objects[row_id] = _decoded(raw, community_id, stix_id, type_, tlp, orgs.get(producer))
                    codes = of_kind[value]
                    for code in (codes,) if type(codes) is int else codes:
                        g, rank = divmod(code, _RANKS)
                        mine = best.get(g)
                        if mine is None:
                            best[g] = {row_id: rank}
                        elif rank < mine.get(row_id, _RANKS):
                            mine[row_id] = rank

    @staticmethod
    def _references(conn: Connection, readable: list[tuple[CommunityRef, Clearance]], plan: _Plan,
                    orgs: dict[int, Org]) -> None:
        """Count the visible sightings of, and opinions on, the matched objects."""
        targets: dict[int, dict[str, list[int]]] = defaultdict(dict)  # community -> STIX id -> groups
        for g, mine in plan.best.items():
            for row_id in mine:
                community_id, stix_id = plan.objects[row_id][:2]
                targets[community_id].setdefault(stix_id, []).append(g)
        dialect = conn.dialect.name
        for community, clearance in readable:
            here = targets.get(community.id)
            if not here:
                continue
            query = q.refs_query(sql.Sight.of(clearance), dialect)
            params = sql.sight_params(clearance) | {"community": community.id}
            rows = []
            for chunk in q.chunks(sorted(here), dialect):
                rows += sql.driver_rows(conn, query, params | {"targets": q.bind(chunk, dialect)})
            rows.sort(key=lambda row: (row[0], row[1], row[2]))  # as the index orders them
            _tally(rows, here, plan.tallies, orgs)

    def _answers(self, values: Sequence[str], plan: _Plan, communities: dict[int, str]) -> list[Answer]:
        """One Answer per value, from what its group found."""
        warninglists = self._warninglists()
        done: dict[int, tuple[list[Match], tuple[str, ...], int | None, int | None]] = {}
        answers = []
        for value, g in zip(values, plan.group_of, strict=True):
            if g < 0:
                answers.append(Answer(value=value, error=_UNKNOWN_VALUE))
                continue
            observable = plan.observables[g]
            tally = plan.tallies.get(g)
            if g in done:  # an equal value: the same findings, in containers of its own
                matches, hits, first, last = done[g]
                matches = list(matches)
            else:
                matches, spans = _matches(plan, g, communities)
                first, last = _seen(spans + tally.spans if tally is not None else spans)
                hits = warninglists.hits(*observable)
                done[g] = (matches, hits, first, last)
            answer = Answer(value=value, kind=observable.kind, normalised=observable.value,
                            matches=matches, first_seen_us=first, last_seen_us=last, warninglists=hits)
            if tally is not None:
                answer.sightings, answer.sighting_reports = tally.sightings, tally.reports
                answer.sighters = tuple(tally.sighters)
                answer.opinions = dict(tally.opinions)
                answer.opinions_by_sector = {s: dict(c) for s, c in tally.by_sector.items()}
            answers.append(answer)
        return answers


def _plan(values: Sequence[str]) -> _Plan:
    """Classify each distinct value once; equal values (and values that normalise alike)
    share one group."""
    groups: dict[Observable, int] = {}
    classified: dict[str, int] = {}
    group_of = []
    for value in values:
        g = classified.get(value, -2) if isinstance(value, str) else -1
        if g == -2:
            observable = classify(value)
            g = -1 if observable is None else groups.setdefault(observable, len(groups))
            classified[value] = g
        group_of.append(g)
    return _Plan(group_of, list(groups), [])


def _tally(rows: list[Any], targets: dict[str, list[int]], tallies: dict[int, _Tally],
           orgs: dict[int, Org]) -> None:
    """Add the sightings and opinions of ``rows`` (one community's) to the groups that
    matched their targets."""
    decoded: dict[int, dict[str, Any]] = {}
    for target, relation, _, row_id, producer, raw in rows:
        obj = decoded.get(row_id)
        if obj is None:
            obj = decoded[row_id] = orjson.loads(raw)
        if relation == SIGHTING_OF:
            count = obj.get("count", 1)
            count = count if isinstance(count, int) else 1
            # A sighting that names nobody (posted anonymously) shows nobody, not even a
            # sector: where one member has that sector, it would name the member.
            sighter = _reporter(obj, orgs.get(producer)) if "created_by_ref" in obj else _NOBODY
            span = (obj.get("first_seen"), obj.get("last_seen"))
            for g in targets[target]:
                tally = tallies.get(g) or tallies.setdefault(g, _Tally())
                tally.sightings += count
                tally.reports += 1
                tally.sighters[sighter] = None
                tally.spans.append(span)
        elif relation == OPINION_OF and obj.get("opinion") in OPINIONS:
            opinion = obj["opinion"]
            sector = orgs[producer][1] if producer in orgs else "unknown"
            for g in targets[target]:
                tally = tallies.get(g) or tallies.setdefault(g, _Tally())
                tally.opinions[opinion] += 1
                tally.by_sector[sector][opinion] += 1


_NOBODY: tuple[str | None, str | None] = (None, None)


def _matches(plan: _Plan, g: int, communities: dict[int, str]) -> tuple[list[Match], list[Span]]:
    """Group ``g``'s matches, one per object with its closest key (exact first, then the
    nearest containing network or parent domain), exact matches first, then by
    community and id; and the seen spans of those objects (for :func:`_seen`)."""
    mine = plan.best.get(g)
    if mine is None:
        return [], []
    found = []
    spans = []
    keys, objects = plan.keys[g], plan.objects
    for n, (row_id, rank) in enumerate(mine.items()):
        (community_id, stix_id, type_, label, name, sector, confidence, valid_from, valid_until,
         revoked, created, modified, span) = objects[row_id]
        spans.append(span)
        community = communities[community_id]
        # n: equal keys keep the order found, as a stable sort would (there are none: no
        # two visible versions share community and id, so the probe order is irrelevant)
        found.append((rank != 0, community, stix_id, n, Match(
            stix_id, type_, community, keys[rank], label, {"organisation": name, "sector": sector},
            confidence, valid_from, valid_until, revoked, created, modified)))
    found.sort()
    return [item[4] for item in found], spans


def _seen(spans: list[Span]) -> tuple[int | None, int | None]:
    """The earliest first and the latest last of ``spans`` as microseconds (None: none).

    A span with an invalid timestamp counts for nothing; a value that is not text counts
    for nothing on its side. Only the two candidates are parsed, not every matched
    object's timestamps: valid STIX timestamps without their final ``Z`` order as
    text as they do in time (fixed-width fields, then the fraction's digits);
    texts that differ but parse alike (trailing zeros, digits past the sixth, a leap
    second) are ties either way. Should a candidate's span turn out invalid, every span
    is parsed.
    """
    low = high = None
    low_key = high_key = ""
    for span in spans:
        first, last = span
        if isinstance(first, str) and (low is None or first[:-1] < low_key):
            low, low_key = span, first[:-1]
        if isinstance(last, str) and (high is None or last[:-1] > high_key):
            high, high_key = span, last[:-1]
    parsed_low = _span(*low) if low is not None else (None, None)
    parsed_high = parsed_low if high is low else _span(*high) if high is not None else (None, None)
    if parsed_low is not None and parsed_high is not None:
        return parsed_low[0], parsed_high[1]
    first_us = last_us = None
    for span in spans:
        first_us, last_us = _widen(first_us, last_us, _span(*span))
    return first_us, last_us


def _widen(first: int | None, last: int | None, span: tuple[int | None, int | None] | None
           ) -> tuple[int | None, int | None]:
    """First/last seen widened with a span of :func:`_span` (None: ignored)."""
    if span is not None:
        if span[0] is not None and (first is None or span[0] < first):
            first = span[0]
        if span[1] is not None and (last is None or span[1] > last):
            last = span[1]
    return first, last


def _decoded(raw: bytes, community_id: int, stix_id: str, type_: str, tlp: int, org: Org | None
             ) -> tuple[Any, ...]:
    """What a match needs of one object version, decoded once per lookup."""
    obj = orjson.loads(raw)
    get = obj.get
    name, sector = _reporter(obj, org)
    confidence, valid_from = get("confidence"), get("valid_from")
    created, modified = get("created"), get("modified")
    return (community_id, stix_id, type_, _LABELS[tlp], name, sector,
            confidence if isinstance(confidence, int) else None,
            valid_from, get("valid_until"), get("revoked") is True, created, modified,
            (valid_from or created, modified or created))


def _reporter(obj: dict[str, Any], org: Org | None) -> tuple[str | None, str | None]:
    """(organisation name or None, sector) of an object's producer: the name only when the
    object itself names its producer (``created_by_ref``), the sector always."""
    name, sector, identity = org if org is not None else (None, None, None)
    return (name if name is not None and obj.get("created_by_ref") == identity else None), sector


def _span(first: object, last: object) -> tuple[int | None, int | None] | None:
    """Two STIX timestamps as microseconds (None when absent); None if either is invalid."""
    try:
        first_us = parse_timestamp(first) if isinstance(first, str) else None
        last_us = parse_timestamp(last) if isinstance(last, str) else None
    except ValueError:
        return None  # stored objects were validated; an optional property may still be odd
    return first_us, last_us
