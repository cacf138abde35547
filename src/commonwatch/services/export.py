"""Exports: visible indicators turned into protection for members' networks.

Every export reads through :meth:`QueryService.export_batches` (the rows of
:meth:`QueryService.stream_latest`) — the visibility rule in SQL, then the export
filter (communities, types, TLP ceiling, since, producer sector) — and streams: keyset
batches in, formatted chunks out, so memory stays flat however many objects are
exported. Predicates that need the JSON (confidence, ``revoked``,
``valid_until``) and the warninglists are applied here on each streamed row.

Pull feeds (:mod:`commonwatch.services.feeds`) are rendered through
:meth:`ExportService.export`.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy import Connection, select
from sqlalchemy.orm import Session, sessionmaker

from commonwatch.clock import Clock, now_us
from commonwatch.domain.observables import (
    SKIP_INVALID_VALUE,
    SKIP_REASONS,
    ExportItem,
    Observable,
    normalise_domain,
)
from commonwatch.domain.visibility import Principal
from commonwatch.domain.warninglists import Warninglists, load_warninglists
from commonwatch.errors import InvalidParameter
from commonwatch.formats import (
    csv_export,
    misp_export,
    plain_lists,
    rpz,
    stix_export,
    suricata,
    zeek_intel,
)
from commonwatch.services.export_filters import (
    DEFAULT_OPTIONS,
    FormatOptions,
    filter_to_json,
)
from commonwatch.services.export_rows import (
    NOTHING,
    RowFilter,
    ScoreFilter,
    Screen,
    column_item,
)
from commonwatch.services.query import ExportFilter, QueryService
from commonwatch.services.suricata_sids import SidStore
from commonwatch.storage import objects as objects_repo
from commonwatch.storage.db import schema_revision
from commonwatch.storage.models import Organisation

if TYPE_CHECKING:
    from commonwatch.services.lifecycle import LifecycleService


TEXT = "text/plain; charset=utf-8"
#: Format name -> media type. Plain lists are ``plain-<list>`` (see formats/plain_lists.py).
FORMATS: dict[str, str] = {
    "suricata-rules": TEXT,
    **{f"suricata-dataset-{t}": TEXT for t in suricata.DATASET_TYPES},
    "suricata-iprep": TEXT,
    "suricata-iprep-categories": TEXT,
    "zeek-intel": TEXT,
    "rpz": TEXT,
    **{f"plain-{name}": TEXT for name in plain_lists.LISTS},
    "csv": "text/csv; charset=utf-8",
    "stix": "application/stix+json;version=2.1",
    "misp": "application/json",
}
#: Formats that print an item's name and labels (``export_name``, ``export_labels``);
#: TIMED ones its created, modified and valid_until (``export_times``), besides what
#: every format reads (its values, TLP, community, producer and confidence). No format
#: but the STIX bundle (:data:`RAW_ONLY`) reads the objects' JSON: what they print is in
#: the export columns.
NAMED = frozenset(["zeek-intel", "suricata-rules", "csv", "misp"])
#: Formats that print the object's labels.
LABELLED = frozenset(["suricata-iprep", "csv"])
TIMED = frozenset(["suricata-rules", "csv"])
#: Formats whose items carry the stored row's id (Suricata sids are remembered by row).
ROWED = frozenset(["suricata-rules"])
#: Formats that write the stored JSON as it is.
RAW_ONLY = frozenset(["stix"])
_INVALID_VALUE = SKIP_REASONS.index(SKIP_INVALID_VALUE)
SKIP_NO_VALUES = "object states no exportable value"
SKIP_ALL_LISTED = "every value of the object is on a warninglist"
SKIP_OBJECT_LISTED = "object has a value on a warninglist"


@dataclass(slots=True)
class ExportStats:
    """What an export read and why it left things out; filled while the stream is read."""

    objects_read: int = 0
    objects_exported: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    #: Earliest time (µs) the content changes by itself (a valid_until passing, a decay
    #: score falling below the minimum).
    next_change_us: int | None = None

    def note_change(self, at_us: int) -> None:
        """The content changes at ``at_us``: keep the earliest such time."""
        if self.next_change_us is None or at_us < self.next_change_us:
            self.next_change_us = at_us


@dataclass(slots=True)
class Export:
    """A running export: the chunks to write (lazy) and the stats they fill."""

    format: str
    media_type: str
    chunks: Iterator[str]
    stats: ExportStats


def check_format(name: str) -> str:
    if name not in FORMATS:
        raise InvalidParameter(f"unknown export format {name!r}; use one of {', '.join(FORMATS)}")
    return name


def check_options(options: FormatOptions) -> None:
    if options.rpz_target != "." and normalise_domain(options.rpz_target) is None:
        raise InvalidParameter(
            f"RPZ target {options.rpz_target!r} is not a domain name; use '.' or a domain")


# -- the service ---------------------------------------------------------------------------

class ExportService:
    """Exports over the visibility-filtered query service."""

    def __init__(
        self, sessions: sessionmaker[Session], query: QueryService, *,
        warninglist_dirs: Sequence[Path] = (), warninglists: Callable[[], Warninglists] | None = None,
        clock: Clock = now_us, new_uuid: Callable[[], str] = lambda: str(uuid.uuid4()),
        lifecycle: LifecycleService | None = None,
    ) -> None:
        """``warninglists`` loads the lists (the exchange's, shared); else they are loaded
        from the built-in directory and ``warninglist_dirs``. ``lifecycle`` scores
        indicators (its decay policy, the sightings the caller sees) for filters with a
        minimum score; without it such filters are refused."""
        self._sessions = sessions
        self._query = query
        self._lifecycle = lifecycle
        self._clock = clock
        self._new_uuid = new_uuid
        dirs = tuple(warninglist_dirs)
        self._load_lists = warninglists or (lambda: load_warninglists(dirs))
        self._warninglists: Warninglists | None = None

    # -- warninglists ---------------------------------------------------------------------
    def warninglists(self) -> Warninglists:
        """The lists, loaded once; their digest (names and values) feeds the feeds' ETags."""
        if self._warninglists is None:
            self._warninglists = self._load_lists()
        return self._warninglists

    # -- exports --------------------------------------------------------------------------
    def export(
        self, principal: Principal, fmt: str, flt: ExportFilter,
        options: FormatOptions = DEFAULT_OPTIONS, *, explain: bool = True,
        on_snapshot: Callable[[Connection], None] | None = None,
    ) -> Export:
        """Start an export; nothing is read until ``chunks`` is iterated.

        The communities are resolved now, so a bad community name fails before any
        output is written. ``explain``: count why each object without an exportable
        value was left out; without it they are all counted as :data:`SKIP_NO_VALUES`.
        The output is the same either way. A minimum decay score reads the sightings the
        caller sees in those communities first, and every object's JSON. ``on_snapshot``
        is called with the snapshot's connection once the export's snapshot is taken.
        """
        check_format(fmt)
        chosen = self._query.export_communities(principal, flt)
        check_options(options)
        stats = ExportStats()
        scorer = None if flt.min_score is None else self._scorer(principal, flt, chosen)
        items = self.items(principal, flt, stats, whole_objects=fmt == "stix", explain=explain,
                           raw=fmt in RAW_ONLY, named=fmt in NAMED, labelled=fmt in LABELLED,
                           timed=fmt in TIMED, rowed=fmt in ROWED,
                           scorer=scorer, on_snapshot=on_snapshot)
        event = ""
        if fmt == "misp":
            # Named communities by their collection ids: a rename, or naming one by its id
            # instead of its name, keeps the event MISP updates.
            named = replace(flt, communities=tuple(sorted(c.collection_id for c, _ in chosen))
                            if flt.communities else ())
            event = misp_event_uuid(principal, fmt, filter_to_json(named, options))
        # Listed values are dropped unless asked for: which values a row keeps, so which
        # rules it has, depends on the lists and on that.
        lists = f"{self.warninglists().digest}|{'kept' if flt.include_warninglisted else 'dropped'}"
        return Export(fmt, FORMATS[fmt], self._render(fmt, items, stats, options, event, lists), stats)

    def _scorer(self, principal: Principal, flt: ExportFilter, chosen: Sequence[Any]) -> ScoreFilter:
        """The score filter: the newest sighting of each indicator over the exported
        communities, among those the caller sees at or below the export's TLP ceiling
        (what the output may carry is what may move a score in it)."""
        assert flt.min_score is not None
        if self._lifecycle is None:
            raise InvalidParameter("this export service scores no indicators; drop the score filter")
        last: dict[str, int] = {}
        for community, _ in chosen:
            seen_in = self._lifecycle.last_sightings(principal, community.collection_id, flt.tlp_ceiling)
            for stix_id, seen in seen_in.items():
                if seen > last.get(stix_id, seen - 1):
                    last[stix_id] = seen
        return ScoreFilter(flt.min_score, last, self._lifecycle.policy, self._clock())

    def _render(
        self, fmt: str, items: Iterator[ExportItem], stats: ExportStats, options: FormatOptions,
        event_uuid: str = "", lists: str = "",
    ) -> Iterator[str]:
        now = self._clock()
        if fmt == "suricata-rules":
            return self._rules(items, stats, lists)
        if fmt.startswith("suricata-dataset-"):
            return suricata.dataset(items, fmt.removeprefix("suricata-dataset-"), stats.skipped)
        if fmt == "suricata-iprep":
            return suricata.iprep(items)
        if fmt == "suricata-iprep-categories":
            return iter([suricata.iprep_categories()])
        if fmt == "zeek-intel":
            return zeek_intel.render(items, skipped=stats.skipped)
        if fmt == "rpz":
            return rpz.render(items, now // 1_000_000 % 2**32, stats.skipped,
                              target=options.rpz_target, wildcard=options.rpz_wildcard)
        if fmt.startswith("plain-"):
            kinds = plain_lists.LISTS[fmt.removeprefix("plain-")]
            return plain_lists.render(items, kinds, strip_scheme=options.url_strip_scheme)
        if fmt == "csv":
            return csv_export.render(items)
        if fmt == "stix":
            return stix_export.render(items, f"bundle--{self._new_uuid()}")
        event = event_uuid or self._new_uuid()
        return misp_export.render(items, event, now // 1_000_000, "CommonWatch export")

    def items(
        self, principal: Principal, flt: ExportFilter, stats: ExportStats, *, whole_objects: bool = False,
        explain: bool = True, raw: bool = True, named: bool = True, labelled: bool = True,
        timed: bool = True,
        rowed: bool = False, scorer: ScoreFilter | None = None,
        on_snapshot: Callable[[Connection], None] | None = None,
    ) -> Iterator[ExportItem]:
        """Visible, filtered objects with their exportable values, streamed.

        ``whole_objects``: the object is sent as a whole (STIX bundle), so it is kept
        even without exportable values, and dropped if any of its values is warninglisted.
        ``raw``: the item carries the stored JSON bytes; ``named``: its name; ``labelled``: its labels;
        ``timed``: its times (:func:`~commonwatch.services.export_rows.column_item`);
        ``rowed``: its row's id. Without them those columns are not even read.

        The hot path of every export: rows arrive as plain tuples in batches, are
        filtered on the export columns ingest wrote (no pattern parsed again) and become
        items from those columns: no object's JSON is decoded, except for a minimum
        decay score. The warninglist verdicts of recent values are remembered
        (:class:`~commonwatch.services.export_rows.Screen`).
        """
        producers = self._producer_names()
        stamp = self._stamp()  # -1 (no row has it) when no verdict was stored under these lists
        screen = Screen(self.warninglists(), drop=not (flt.include_warninglisted or whole_objects),
                         skipped=stats.skipped)
        keep_listed = flt.include_warninglisted
        now = self._clock()
        accept = RowFilter(flt, now)
        skipped = stats.skipped
        any_confidence = flt.min_confidence is None  # rows pass the filter on confidence alone
        loads = orjson.loads
        new_observable = tuple.__new__  # Observable without its generated __new__ frame
        batches = self._query.export_batches(
            principal, flt, raw=raw or scorer is not None, names=named, labels=labelled, times=timed,
            row_ids=rowed,
            now_us=now,
            fails=lambda row: accept(row[8], row[9], row[10]) is not None, on_snapshot=on_snapshot)
        for community, rows in batches:
            stats.objects_read += len(rows)
            for (stix_id, version_us, added_us, tlp, producer_id, document, values, skip, revoked, until,
                 confidence, listed, row_stamp, name, labels, times, row_id) in rows:
                # Most rows are neither revoked nor dated: they pass without the call.
                reason = (None if any_confidence and not revoked and until is None
                          else accept(revoked, until, confidence))
                if reason is None and scorer is not None:
                    reason = scorer(stix_id, loads(document), stats)
                if reason is not None:
                    skipped[reason] += 1
                    continue
                if not values:
                    if whole_objects and skip == _INVALID_VALUE:
                        # A value no output may hold (a control character, a zone id...):
                        # the object is not passed on whole either.
                        skipped[SKIP_REASONS[skip]] += 1
                        continue
                    observables, hits = NOTHING
                elif row_stamp == stamp:  # verdicts stored under the lists loaded now
                    if listed is None and "\n" not in values:  # one value, on no list: most rows
                        observables, hits = (new_observable(Observable, values.partition(" ")[::2]),), ()
                    else:
                        observables, hits = screen.stamped(values, listed)
                else:
                    observables, hits = screen(values)
                if not observables and not whole_objects:
                    why = SKIP_REASONS[skip] if explain and skip is not None and not values else None
                    skipped[why or (SKIP_ALL_LISTED if hits else SKIP_NO_VALUES)] += 1
                    continue
                if whole_objects and hits and not keep_listed:
                    skipped[SKIP_OBJECT_LISTED] += 1
                    continue
                stats.objects_exported += 1
                if until is not None:
                    accept.note_expiry(until, stats)
                producer = producers.get(producer_id, "unknown") if producer_id else "unknown"
                yield column_item(stix_id, tlp, community, producer, confidence, observables, hits,
                                  version_us, document if raw else b"", name, labels, times, row_id,
                                  added_us)

    def _stamp(self) -> int:
        """The stamp of the lists loaded now, or -1 if ingest never stored verdicts
        under them."""
        with self._sessions() as s:
            found = objects_repo.warninglist_stamp(s.connection(), self.warninglists().digest,
                                                   create=False)
        return -1 if found is None else found

    def _producer_names(self) -> dict[int, str]:
        with self._sessions() as s:
            return {i: n for i, n in s.execute(select(Organisation.id, Organisation.name))}

    # -- Suricata rules -------------------------------------------------------------------
    def _rules(self, items: Iterator[ExportItem], stats: ExportStats, lists: str) -> Iterator[str]:
        """Suricata rules, their sids and the rules remembered by row kept on one
        connection (:class:`~commonwatch.services.suricata_sids.SidStore`). ``lists``:
        the warninglists' part of the rows' :class:`~commonwatch.formats.suricata.RuleContext`."""
        with self._sessions() as s:
            context = suricata.RuleContext(schema_revision(s.connection()) or "", lists)
        store = SidStore(self._sessions.kw["bind"].connect)
        try:
            yield from suricata.rules(items, store, stats.skipped, context)
        finally:
            # Also when the allocation failed (a pool run dry): the rows' snapshot goes at
            # once, not whenever the traceback holding it is collected.
            close = getattr(items, "close", None)
            if close is not None:
                close()
            store.close()


def prepended(head: Sequence[str], chunks: Iterator[str]) -> Iterator[str]:
    """``head``, then ``chunks``; closing it closes ``chunks``."""
    try:
        yield from head
        yield from chunks
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()


#: The namespace of the MISP event uuids of exports (UUIDv5).
_MISP_EVENTS = uuid.UUID("5b0c7a43-0f8e-5c2e-9a51-6d3f2e1b7c90")


def misp_event_uuid(principal: Principal, fmt: str, filter_json: str) -> str:
    """The uuid of the MISP event an export is: the same for every export of one
    organisation with one filter (a feed, or a scheduled export), so that MISP updates
    that event instead of adding a new one each time."""
    return str(uuid.uuid5(_MISP_EVENTS, f"{principal.org_identity}|{fmt}|{filter_json}"))
