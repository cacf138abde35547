"""Detection: a community's active indicators against an operator's own telemetry.

The indicators are read only through :class:`QueryService` — what the caller's
organisation may see in the community, newest visible version of each, type
``indicator`` with ``pattern_type`` ``stix``, not revoked, not past ``valid_until`` —
compiled once into an :class:`~commonwatch.detect.engine.IndicatorSet`, and the logs
are streamed through the telemetry adapters and :func:`~commonwatch.detect.scan.scan`
in batches (``--workers N``: N processes share the compiled set by fork and run the
same pure core).

Each match is an alert (event, indicator id, pattern, producer, TLP, confidence). The
producer is shown by name when its identity object is visible to the caller in the
community, else by its sector only. ``sight=True`` publishes sightings back to the
community through :meth:`IngestService.add_objects`: one per indicator and time window
(``count``, ``first_seen``, ``last_seen``; ``where_sighted_refs`` the caller's
identity), never one per event; the sighting carries the indicator's TLP marking.
"""

from __future__ import annotations

import gc
import itertools
import multiprocessing
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import orjson

from commonwatch.clock import Clock, now_us
from commonwatch.detect.engine import IndicatorSet, compile_indicators
from commonwatch.detect.events import EventKind
from commonwatch.detect.scan import Match
from commonwatch.domain.markings import TLP2_MARKING_BY_LEVEL, Tlp, effective_tlp
from commonwatch.domain.timestamps import format_timestamp, parse_timestamp
from commonwatch.domain.visibility import Principal
from commonwatch.errors import InvalidParameter, InvalidPattern, NotFound
from commonwatch.formats.telemetry import Adapter, Problems, adapters_for, sniff
from commonwatch.formats.telemetry.source import LineParser, batches, open_binary
from commonwatch.services.ingest import IngestService
from commonwatch.services.query import CommunityRef, ObjectFilter, QueryService, encode_cursor

_SIGHTING_NS = uuid.UUID("5b1f0c3e-2d7a-4c1e-9f5e-8c4d2b7a9e61")
_PAGE = 5000


@dataclass(frozen=True, slots=True)
class Indicator:
    """What an alert says about the indicator that matched."""

    id: str
    name: str | None
    pattern: str
    producer: str
    tlp: Tlp
    confidence: int | None
    valid_until_us: int | None = None


@dataclass(frozen=True, slots=True)
class DetectOptions:
    """One run of ``commonwatch detect``."""

    community: str
    since_us: int | None = None
    sight: bool = False
    sight_window_s: int = 3600
    workers: int = 1
    format: str = "auto"
    mapping: str | None = None
    batch_lines: int = 20_000
    #: Re-read indicators added, revoked or expired every this many seconds while
    #: matching (single process only: workers keep the set they were forked with).
    refresh_s: int | None = None
    #: Move the compiled set out of the garbage collector's sight (one-shot processes:
    #: with 10^6 indicators every full collection would walk them all).
    freeze_gc: bool = False


@dataclass(slots=True)
class Watch:
    """What the refreshes of a run compare with: the caller's standing in the community
    (readable, public, clearance) and the newest deletion it has seen there."""

    standing: tuple[Any, ...] | None
    deletions: str | None  # the deletions listing's cursor (None: from the first)


@dataclass(slots=True)
class DetectSummary:
    """What a run did, for the summary line and for tests."""

    indicators: int = 0
    unindexed: int = 0
    rejected: list[tuple[str, str]] = field(default_factory=list)
    skipped_indicators: dict[str, int] = field(default_factory=dict)
    lines: int = 0
    events: int = 0
    alerts: int = 0
    problems: Problems = field(default_factory=Problems)
    sightings: int = 0
    sighting_failures: list[str] = field(default_factory=list)


class DetectService:
    """Loads a community's active indicators and matches telemetry against them."""

    def __init__(self, query: QueryService, ingest: IngestService,
                 org_sectors: Callable[[], dict[str, tuple[str, str]]], clock: Clock = now_us) -> None:
        self._query = query
        self._ingest = ingest
        self._org_sectors = org_sectors  # identity id -> (organisation name, sector)
        self._clock = clock

    # -- indicators ------------------------------------------------------------------
    def community(self, principal: Principal, name: str) -> CommunityRef:
        """A readable community by name or collection id (NotFound otherwise)."""
        for ref, clearance in self._query.collections(principal):
            if name in (ref.name, ref.collection_id) and clearance.can_read:
                return ref
        raise NotFound(f"no community {name!r} is readable by your organisation")

    def _visible(self, principal: Principal, community: CommunityRef, types: tuple[str, ...],
                 since_us: int | None, ids: tuple[str, ...] = ()) -> Iterator[dict[str, Any]]:
        flt = ObjectFilter(types=types, limit=_PAGE, added_after_us=since_us, ids=ids)
        while True:
            page = self._query.objects(principal, community.collection_id, flt)
            for row in page.rows:
                yield orjson.loads(row.raw)
            if not page.more:
                return
            flt = replace(flt, next=page.next)

    def active_indicators(
        self, principal: Principal, community: CommunityRef, since_us: int | None = None,
    ) -> tuple[list[Indicator], dict[str, int]]:
        """Active STIX-pattern indicators visible to ``principal``, and counts of the others."""
        found: list[Indicator] = []
        skipped: dict[str, int] = {}
        for _, indicator, reason in self._versions(principal, community, since_us):
            if indicator is None:
                skipped[reason] = skipped.get(reason, 0) + 1
            else:
                found.append(indicator)
        return found, skipped

    def watch(self, principal: Principal, community: CommunityRef) -> Watch:
        """The caller's standing and newest visible deletion now, for :meth:`refresh`."""
        standing, newest_deletion = self._standing(principal, community)
        return Watch(standing, None if newest_deletion is None else encode_cursor(newest_deletion))

    def _standing(self, principal: Principal, community: CommunityRef) -> tuple[tuple[Any, ...] | None, Any]:
        for ref, clearance, seen in self._query.activity(principal, community_id=community.id):
            if ref.id == community.id:
                standing = (clearance.can_read, ref.public, int(clearance.max_tlp))
                return (standing if clearance.can_read else None), (seen[1] if seen else None)
        return None, None

    def refresh(self, principal: Principal, community: CommunityRef, iset: IndicatorSet,
                since_us: int, watch: Watch | None = None) -> tuple[int, int]:
        """Apply what changed since ``since_us``: (indicators added or replaced, removed).

        New and newer versions are compiled in; revoked ones, ones past ``valid_until``
        and ones no longer usable are taken out — in place, without recompiling the set.
        With ``watch`` (:meth:`watch`), also what changed without a new version: when the
        caller's standing in the community changed (its clearance lowered or raised, its
        membership gone), every indicator is read again and what it may no longer see
        is taken out, as if it had never been cleared; a deleted version gives way to
        the newest one left that the caller can see (or to none).
        """
        added = removed = 0
        resync = False
        newest_deletion = None
        if watch is not None:
            standing, newest_deletion = self._standing(principal, community)
            resync = standing != watch.standing
            watch.standing = standing
        if watch is not None and resync:
            keep: set[str] = set()
            if standing is not None:
                for _obj, indicator, _ in self._versions(principal, community, None):
                    if indicator is not None and self._put(iset, indicator):
                        keep.add(indicator.id)
                        added += 1
            for key in [k for k in iset.entries if k not in keep]:
                removed += iset.remove(key)
            if newest_deletion is not None:
                watch.deletions = encode_cursor(newest_deletion)
            return added, removed
        changed = self._versions(principal, community, since_us)
        if watch is not None:
            changed = itertools.chain(changed, self._after_deletions(principal, community, watch,
                                                                     newest_deletion))
        for obj, indicator, _ in changed:
            if indicator is not None and self._put(iset, indicator):
                added += 1
                continue
            removed += iset.remove(obj["id"])
        now = self._clock()
        for key, entry in list(iset.entries.items()):
            until = entry.meta.valid_until_us if isinstance(entry.meta, Indicator) else None
            if until is not None and until <= now:
                removed += iset.remove(key)
        return added, removed

    @staticmethod
    def _put(iset: IndicatorSet, indicator: Indicator) -> bool:
        """Compile ``indicator`` into the set (replacing its id's entry); False if its
        pattern cannot be."""
        try:
            iset.add(indicator.id, indicator.pattern, indicator)
        except InvalidPattern:
            return False
        return True

    def _after_deletions(self, principal: Principal, community: CommunityRef, watch: Watch, newest: Any,
                         ) -> Iterator[tuple[dict[str, Any], Indicator | None, str]]:
        """For each id a version of which was deleted since ``watch`` last looked: the
        newest visible version left, or the id alone (an object without a version) when
        none is. ``newest``: the newest deletion seen before the listing is read (so none
        is missed; what comes after it is read again next time)."""
        ids: dict[str, None] = {}
        cursor = watch.deletions
        while True:
            page = self._query.deletions(principal, community.collection_id, cursor)
            ids.update(dict.fromkeys(t.stix_id for t in page.rows if t.stix_id.startswith("indicator--")))
            if not page.more:
                break
            cursor = page.next
        if newest is not None:
            watch.deletions = encode_cursor(newest)
        for stix_id in ids:
            found = list(self._versions(principal, community, None, ids=(stix_id,)))
            yield found[0] if found else ({"id": stix_id}, None, "deleted")

    def _versions(self, principal: Principal, community: CommunityRef, since_us: int | None,
                  ids: tuple[str, ...] = ()) -> Iterator[tuple[dict[str, Any], Indicator | None, str]]:
        """Each visible newest indicator version: (object, Indicator if active, why not)."""
        now = self._clock()
        names = {o["id"]: str(o.get("name", "")) for o in
                 self._visible(principal, community, ("identity",), None)}
        sectors = self._org_sectors()
        for obj in self._visible(principal, community, ("indicator",), since_us, ids):
            reason = _inactive(obj, now)
            if reason:
                yield obj, None, reason
                continue
            ref = obj.get("created_by_ref")
            creator: str = ref if isinstance(ref, str) else ""
            if creator == principal.org_identity or creator in names:
                producer = names.get(creator) or sectors.get(creator, ("your organisation", ""))[0]
            elif creator in sectors:
                producer = f"a member of sector {sectors[creator][1]}"
            else:
                producer = "unknown"
            refs = list(obj.get("object_marking_refs") or ()) + [
                g.get("marking_ref", "") for g in obj.get("granular_markings") or () if isinstance(g, dict)]
            confidence = obj.get("confidence")
            until = obj.get("valid_until")
            yield obj, Indicator(
                id=obj["id"], name=obj.get("name"), pattern=obj["pattern"], producer=producer,
                tlp=effective_tlp(refs, Tlp(community.default_tlp)),
                confidence=confidence if type(confidence) is int else None,
                valid_until_us=parse_timestamp(until) if isinstance(until, str) else None,
            ), ""

    def compile(self, indicators: Sequence[Indicator], kinds: Sequence[EventKind]
                ) -> tuple[IndicatorSet, list[tuple[str, str]]]:
        return compile_indicators(kinds, ((i.id, i.pattern, i) for i in indicators))

    # -- a run -----------------------------------------------------------------------
    def run(self, principal: Principal, sources: Sequence[str], options: DetectOptions,
            emit: Callable[[dict[str, Any]], None]) -> DetectSummary:
        """Match ``sources`` (paths, ``-`` for stdin); ``emit`` receives each alert."""
        if not 1 <= options.workers <= MAX_WORKERS:  # each worker is a forked process
            raise InvalidParameter(f"--workers must be 1-{MAX_WORKERS}")
        if options.sight_window_s < 1:
            raise InvalidParameter("the sighting window must be at least one second")
        if options.refresh_s is not None and options.refresh_s < 1:
            raise InvalidParameter("--refresh must be at least one second")
        adapters = adapters_for(options.format, options.mapping)
        community = self.community(principal, options.community)
        watch = self.watch(principal, community)  # before the indicators are read
        indicators, skipped = self.active_indicators(principal, community, options.since_us)
        kinds = [k for a in adapters.values() for k in a.kinds]
        iset, rejected = self.compile(indicators, kinds)
        if options.freeze_gc:
            gc.collect()
            gc.freeze()
        summary = DetectSummary(indicators=len(iset), unindexed=iset.unindexed, rejected=rejected,
                                skipped_indicators=skipped)
        windows: dict[tuple[str, int], list[int]] = {}
        refreshed = self._clock()
        for source in sources:
            for alerts, lines, events, problems in _run_source(iset, adapters, source, options):
                if options.refresh_s and self._clock() - refreshed >= options.refresh_s * 1_000_000:
                    started = self._clock()
                    # A version is dated when its writer takes the lock and seen when it
                    # commits: re-read a margin before the last refresh, so a long write
                    # committed after that refresh read is not missed (re-adding is harmless).
                    self.refresh(principal, community, iset, refreshed - REFRESH_OVERLAP_US, watch)
                    refreshed = started
                summary.lines += lines
                summary.events += events
                summary.problems.merge(problems)
                for alert in alerts:
                    alert["community"] = community.name
                    summary.alerts += 1
                    emit(alert)
                    if options.sight:
                        _window(windows, alert, options.sight_window_s, self._clock())
        if options.sight and windows:
            self._sight(principal, community, iset, windows, options.sight_window_s, summary)
        return summary

    def _sight(self, principal: Principal, community: CommunityRef, iset: IndicatorSet,
               windows: dict[tuple[str, int], list[int]], window_s: int, summary: DetectSummary) -> None:
        now = format_timestamp(self._clock())
        objects = []
        for (indicator_id, start), stamps in sorted(windows.items()):
            tlp = iset.entries[indicator_id].meta.tlp
            key = f"{principal.org_identity}|{indicator_id}|{start}|{window_s}"
            objects.append({
                "type": "sighting", "spec_version": "2.1",
                "id": f"sighting--{uuid.uuid5(_SIGHTING_NS, key)}",
                "created": now, "modified": now, "created_by_ref": principal.org_identity,
                "sighting_of_ref": indicator_id, "count": len(stamps),
                "first_seen": format_timestamp(min(stamps)), "last_seen": format_timestamp(max(stamps)),
                "where_sighted_refs": [principal.org_identity],
                "object_marking_refs": [TLP2_MARKING_BY_LEVEL[tlp]],
            })
        report = self._ingest.add_objects(principal, community.collection_id, objects)
        summary.sightings = len(report.successes)
        summary.sighting_failures = [f"{f.id}: {f.message}" for f in report.failures]


def _inactive(obj: dict[str, Any], now: int) -> str:
    """Why an indicator version is not matched ("" if it is active)."""
    if obj.get("revoked") is True:
        return "revoked"
    if obj.get("pattern_type") != "stix" or not isinstance(obj.get("pattern"), str):
        return "pattern type is not stix"
    until = obj.get("valid_until")
    if isinstance(until, str):
        try:
            if parse_timestamp(until) <= now:
                return "past valid_until"
        except ValueError:
            return "invalid valid_until"
    return ""


def _window(windows: dict[tuple[str, int], list[int]], alert: dict[str, Any], window_s: int,
            now: int) -> None:
    at = alert.get("time_us") or now
    start = at // (window_s * 1_000_000) * window_s * 1_000_000
    windows.setdefault((alert["indicator"], start), []).append(at)


# --- scanning sources (in this process or in workers) --------------------------------------

_Result = tuple[list[dict[str, Any]], int, int, Problems]
#: Most matching processes one run forks.
MAX_WORKERS = 256
#: How far before the previous refresh each refresh reads again (see DetectService.run).
REFRESH_OVERLAP_US = 300_000_000
_STATE: dict[str, Any] = {}  # the compiled set and adapters, inherited by forked workers


def _run_source(iset: IndicatorSet, adapters: dict[str, Adapter], source: str,
                options: DetectOptions) -> Iterator[_Result]:
    with open_binary(source) as stream:
        failures: list[tuple[int, str]] = []  # where a gzip file cut short or corrupt broke off
        chunks = batches(stream, options.batch_lines, failures)
        first = next(chunks, None)
        if first is None:
            yield from _broken_off(source, failures)
            return
        head = next((line for line in first if line.strip()), b"")
        adapter = sniff(head, adapters)
        if adapter is None:
            problems = Problems()
            problems.add(source, 1, "unrecognised log format (use --format, or --mapping for JSON)")
            yield [], sum(len(b) for b in [first, *chunks]), 0, problems
            yield from _broken_off(source, failures)
            return
        if options.workers == 1:  # one parser keeps its state from batch to batch
            parse = adapter.parser(source)
            start = 1
            for lines in itertools.chain([first], chunks):
                yield _scan_batch(iset, parse, source, start, lines)
                start += len(lines)
        else:
            work = _numbered(source, adapter.name, first, chunks)
            _STATE.update(iset=iset, adapters=adapters)
            context = multiprocessing.get_context("fork")
            with context.Pool(options.workers) as pool:
                yield from pool.imap(_worker, work)
        yield from _broken_off(source, failures)


_Job = tuple[str, str, int, list[bytes], list[bytes]]


def _broken_off(source: str, failures: list[tuple[int, str]]) -> Iterator[_Result]:
    """The problem of a source that broke off (see :func:`batches`), if it did."""
    for line, reason in failures:
        problems = Problems()
        problems.add(source, line, reason)
        yield [], 0, 0, problems


def _numbered(source: str, name: str, first: list[bytes], rest: Iterator[list[bytes]]) -> Iterator[_Job]:
    """The batches of a source for workers, with their first line numbers and the header
    lines a stateful format needs before each (a worker parses a batch without the ones
    before).

    Zeek TSV: the header block in force, from its ``#separator`` line on (a log rotated
    mid-file starts a new block); nfdump CSV: the column line of the first batch.
    """
    preamble: list[bytes] = []
    batch, start = first, 1
    while True:
        yield source, name, start, batch, preamble
        if name == "nfdump" and start == 1:
            preamble = [next((line for line in first if line.strip()), b"")]
        if name == "zeek":
            headers = [line for line in batch if line[:1] == b"#"]
            if headers:
                preamble = _header_block(preamble + headers)
        start += len(batch)
        following = next(rest, None)
        if following is None:
            return
        batch = following


def _header_block(headers: list[bytes]) -> list[bytes]:
    """The Zeek TSV header lines in force after ``headers``: from the last ``#separator`` on."""
    starts = [i for i, line in enumerate(headers) if line.startswith(b"#separator")]
    return headers[starts[-1]:] if starts else headers[-64:]


def _worker(job: _Job) -> _Result:
    source, name, start, lines, preamble = job
    parse = _STATE["adapters"][name].parser(source)
    if preamble:
        parse(preamble, 0, Problems())
    return _scan_batch(_STATE["iset"], parse, source, start, lines)


def _scan_batch(iset: IndicatorSet, parse: LineParser, source: str, start: int,
                lines: list[bytes]) -> _Result:
    problems = Problems()
    matches, count = parse.scan(iset, lines, start, problems)
    return [_alert(m, source) for m in matches], len(lines), count, problems


def _alert(m: Match, source: str) -> dict[str, Any]:
    indicator: Indicator = m.meta
    kind, record = m.events[-1]
    at = kind.time_us(record)
    alert: dict[str, Any] = {
        "indicator": indicator.id, "name": indicator.name, "pattern": indicator.pattern,
        "producer": indicator.producer, "tlp": indicator.tlp.label,
        "confidence": indicator.confidence, "source": source, "event_kind": kind.name,
        "time": format_timestamp(at) if at is not None else None, "time_us": at, "event": record,
    }
    if len(m.events) > 1:
        alert["events"] = [record for _, record in m.events]
    return alert
