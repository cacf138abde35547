"""Importing files into a community: read, convert, store in batches, summarise.

The readers of ``formats/`` turn each input into a stream of records (an object, or a
rejected input record with its reason); this service sends the objects to
:meth:`IngestService.add_objects` in batches of a few thousand (one transaction each,
so the bulk path is used and memory stays flat however large the input), then
accounts for every record: stored, unchanged (already there: re-importing the same
file stores nothing new), or rejected with file, position and reason. Objects whose
values hit a warninglist are stored and listed in the summary.
"""

from __future__ import annotations

import re
import time
import zlib
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO, Any

from commonwatch.domain.markings import Tlp
from commonwatch.domain.visibility import Principal
from commonwatch.domain.warninglists import Warninglists
from commonwatch.errors import InputError, InvalidParameter, NotFound
from commonwatch.formats import freetext, misp, tabular
from commonwatch.formats.observables import FIXED_EPOCH, ImportContext
from commonwatch.formats.records import Record, rejected
from commonwatch.formats.sources import (
    DETECT_BYTES,
    FORMATS,
    Input,
    broken_off,
    check_size,
    detect_format,
    open_input,
)
from commonwatch.formats.stix_bundle import read_stix
from commonwatch.services.ingest import IngestService
from commonwatch.services.query import CommunityRef, ObjectFilter, QueryService, VersionSelector

DEFAULT_BATCH = 2000
#: Warninglist hits listed one by one in a summary; beyond, they are only counted (memory).
MAX_LISTED_HITS = 10_000
#: Objects the import may not sign on the member's behalf (predefined or self-describing).
_UNSIGNED_TYPES = frozenset({"marking-definition", "identity"})
_SIMPLE_COMPARISON = re.compile(
    r"(ipv4-addr|ipv6-addr|domain-name|url|email-addr):value\s*=\s*'((?:[^'\\]|\\.)*)'"
    r"|file:hashes\.'?(MD5|SHA-1|SHA-256|SHA-512)'?\s*=\s*'([0-9A-Fa-f]+)'"
)
_HASH_KIND = {"MD5": "md5", "SHA-1": "sha1", "SHA-256": "sha256", "SHA-512": "sha512"}


@dataclass(frozen=True, slots=True)
class Rejection:
    """One record that did not go in, and why."""

    source: str
    position: str
    id: str
    reason: str


@dataclass(frozen=True, slots=True)
class WarninglistHit:
    """One stored object whose value is on warninglists."""

    source: str
    position: str
    id: str
    lists: tuple[str, ...]


@dataclass(slots=True)
class ImportSummary:
    """What an import did, record by record where something went wrong."""

    community: str
    inputs: list[str] = field(default_factory=list)
    stored: int = 0
    unchanged: int = 0
    by_type: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    rejections: list[Rejection] = field(default_factory=list)
    hits: list[WarninglistHit] = field(default_factory=list)
    hit_counts: Counter[str] = field(default_factory=Counter)
    hit_total: int = 0
    seconds: float = 0.0
    #: Where the time went: reading and converting, looking up what exists, storing.
    timings: dict[str, float] = field(default_factory=lambda: {"read": 0.0, "lookup": 0.0, "store": 0.0})

    @property
    def rejected(self) -> int:
        return len(self.rejections)

    @property
    def ok(self) -> bool:
        """True when every record went in (stored or already there)."""
        return not self.rejections

    def hits_by_list(self) -> dict[str, int]:
        return dict(sorted(self.hit_counts.items()))

    def add_hit(self, hit: WarninglistHit) -> None:
        self.hit_total += 1
        self.hit_counts.update(hit.lists)
        if len(self.hits) < MAX_LISTED_HITS:
            self.hits.append(hit)

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok, "community": self.community, "inputs": self.inputs,
            "stored": self.stored, "unchanged": self.unchanged, "rejected": self.rejected,
            "by_type": {t: dict(sorted(c.items())) for t, c in sorted(self.by_type.items())},
            "rejections": [_asdict(r) for r in self.rejections],
            "warninglist_hits": {"count": self.hit_total, "by_list": self.hits_by_list(),
                                 "objects": [_asdict(h) for h in self.hits],
                                 "objects_truncated": self.hit_total > len(self.hits)},
            "seconds": round(self.seconds, 3),
            "timings": {k: round(v, 3) for k, v in self.timings.items()},
        }


def _asdict(item: Rejection | WarninglistHit) -> dict[str, Any]:
    return {name: getattr(item, name) for name in item.__slots__}  # type: ignore[union-attr]


def stix_hits(obj: Mapping[str, Any], lists: Warninglists) -> tuple[str, ...]:
    """Warninglists an indicator received as STIX hits, by the values its pattern compares with.

    For the summary only: the object is stored as received, and exports compute the
    flag again from the lists of the day.
    """
    found: set[str] = set()
    if obj.get("type") == "indicator" and obj.get("pattern_type") == "stix" \
            and isinstance(obj.get("pattern"), str):
        for m in _SIMPLE_COMPARISON.finditer(obj["pattern"]):
            if m.group(1):
                found.update(lists.hits(m.group(1), m.group(2).replace("\\'", "'").replace("\\\\", "\\")))
            else:
                found.update(lists.hits(_HASH_KIND[m.group(3)], m.group(4)))
    return tuple(sorted(found))


class ImportService:
    """Imports files of any supported format into one community, as one principal."""

    def __init__(self, ingest: IngestService, query: QueryService, warninglists: Warninglists,
                 batch_size: int = DEFAULT_BATCH) -> None:
        self._ingest = ingest
        self._query = query
        self._warninglists = warninglists
        self._batch_size = batch_size

    # -- setting up -----------------------------------------------------------------
    def community(self, principal: Principal, name_or_id: str) -> CommunityRef:
        """A community the principal may write to, by name or collection id."""
        for community, clearance in self._query.collections(principal):
            if name_or_id in (community.name, community.collection_id):
                if not clearance.can_write:
                    break
                return community
        raise NotFound(f"no community {name_or_id!r} that you may write to; see `commonwatch community list`")

    def context(self, principal: Principal, community: CommunityRef, *, timestamp: str = FIXED_EPOCH,
                tlp: Tlp | None = None, labels: Sequence[str] = ()) -> ImportContext:
        return ImportContext(own_identity=principal.org_identity, default_tlp=Tlp(community.default_tlp),
                             warninglists=self._warninglists, timestamp=timestamp, tlp=tlp,
                             labels=tuple(labels))

    # -- reading --------------------------------------------------------------------
    def read(self, inp: Input, fmt: str, ctx: ImportContext, *, mapping: tabular.Mapping | None = None,
             max_bytes: int) -> Iterator[Record]:
        """Records of one input in format ``fmt`` (``auto`` detects it)."""
        if fmt not in FORMATS:
            raise InvalidParameter(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
        if inp.error is not None:  # found unreadable while its folder was listed
            yield rejected(inp.name, "", inp.error)
            return
        try:
            if inp.kind == "misp-feed" and inp.path is not None:
                yield from misp.read_feed(inp.path, ctx, max_bytes)
                return
            check_size(inp.path, max_bytes)
            with inp.opener() as raw:
                yield from self._read_stream(raw, inp.name, fmt, ctx, mapping, max_bytes)
        except (InputError, OSError, EOFError, zlib.error, RecursionError) as exc:
            reason = (exc.message if isinstance(exc, InputError) else "not valid JSON: nested too deeply"
                      if isinstance(exc, RecursionError) else f"could not be read: {exc}")
            yield rejected(inp.name, "", f"{reason} (records before this point were read)")

    def _read_stream(self, raw: IO[bytes], name: str, fmt: str, ctx: ImportContext,
                     mapping: tabular.Mapping | None, max_bytes: int) -> Iterator[Record]:
        stream = open_input(raw, name, max_bytes)
        if fmt == "auto":
            fmt = detect_format(stream.peek(DETECT_BYTES)[:DETECT_BYTES], name)
        if fmt == "stix":
            yield from read_stix(stream, name)
        elif fmt == "misp":
            yield from misp.read_misp(stream, name, ctx)
        elif fmt == "csv":
            yield from tabular.read_csv(stream, name, ctx, mapping or tabular.Mapping())
        else:
            yield from freetext.read_text(stream, name, ctx)
        why = broken_off(stream)
        if why is not None:
            yield rejected(name, "", f"could not be read: {why} (records before this point were read)")

    # -- storing --------------------------------------------------------------------
    def run(self, principal: Principal, community: CommunityRef, inputs: Iterable[Input], fmt: str,
            ctx: ImportContext, *, mapping: tabular.Mapping | None = None, max_bytes: int,
            progress: Callable[[int], None] | None = None) -> ImportSummary:
        """Import every input; ``progress`` is called with the number of records done."""
        summary = ImportSummary(community=community.name)

        def records() -> Iterator[Record]:
            for inp in inputs:
                summary.inputs.append(inp.name)
                yield from self.read(inp, fmt, ctx, mapping=mapping, max_bytes=max_bytes)

        return self.store(principal, community, records(), summary, progress=progress)

    def store(self, principal: Principal, community: CommunityRef, records: Iterable[Record],
              summary: ImportSummary, *, progress: Callable[[int], None] | None = None) -> ImportSummary:
        """Send ``records`` to the ingest service in batches and account for each."""
        started = time.perf_counter()
        batch: list[Record] = []
        seen: dict[str, list[dict[str, Any]]] = {}
        for record in records:
            if record.obj is None:
                summary.rejections.append(
                    Rejection(record.source, record.position, "", record.reason or "rejected"))
                summary.by_type["(unreadable)"]["rejected"] += 1
                continue
            obj = record.obj
            signable = str(obj.get("type")) not in _UNSIGNED_TYPES
            if signable and "created" in obj and "created_by_ref" not in obj:
                obj["created_by_ref"] = principal.org_identity
            same_id = seen.setdefault(str(obj.get("id")), [])
            if obj in same_id:  # the same object again in this batch (a value repeated in the input)
                summary.unchanged += 1
                summary.by_type[str(obj.get("type"))]["unchanged"] += 1
                continue
            same_id.append(obj)
            batch.append(record)
            if len(batch) >= self._batch_size:
                self._flush(principal, community, batch, summary)
                if progress:
                    progress(len(batch))
                batch, seen = [], {}
        if batch:
            self._flush(principal, community, batch, summary)
            if progress:
                progress(len(batch))
        summary.seconds = time.perf_counter() - started
        timed = summary.timings["lookup"] + summary.timings["store"]
        summary.timings["read"] = max(0.0, summary.seconds - timed)
        return summary

    def _existing(self, principal: Principal, community: CommunityRef, ids: set[str]) -> set[tuple[str, int]]:
        """(id, version) pairs of ``ids`` already stored and visible to the principal."""
        found: set[tuple[str, int]] = set()
        flt = ObjectFilter(ids=tuple(sorted(ids)), versions=VersionSelector(last=False, all=True),
                           limit=max(1000, 4 * len(ids)))
        while True:
            page = self._query.manifest(principal, community.collection_id, flt)
            found.update((row.stix_id, row.version_us) for row in page.rows)
            if not page.more:
                return found
            flt = ObjectFilter(ids=flt.ids, versions=flt.versions, limit=flt.limit, next=page.next)

    def _flush(self, principal: Principal, community: CommunityRef, batch: list[Record],
               summary: ImportSummary) -> None:
        # Only records that must not replace what is there (free-text extractions) need
        # to know what exists; for the rest the ingest report says what was stored anew.
        ids = {str(r.obj.get("id")) for r in batch if r.obj is not None and r.keep_existing}
        started = time.perf_counter()
        existing_ids = {sid for sid, _ in self._existing(principal, community, ids)} if ids else set()
        summary.timings["lookup"] += time.perf_counter() - started
        to_send: list[Record] = []
        for record in batch:
            assert record.obj is not None
            if record.keep_existing and record.obj.get("id") in existing_ids:
                summary.unchanged += 1
                summary.by_type[str(record.obj.get("type"))]["unchanged"] += 1
            else:
                to_send.append(record)
        if not to_send:
            return
        started = time.perf_counter()
        report = self._ingest.add_objects(principal, community.collection_id, [r.obj for r in to_send])
        summary.timings["store"] += time.perf_counter() - started
        failed: set[int] = set()
        for failure, position in zip(report.failures, report.failed_at, strict=True):
            bad = to_send[position]
            failed.add(id(bad))
            stype = str(bad.obj.get("type")) if bad.obj else "(unknown)"
            summary.rejections.append(Rejection(bad.source, bad.position, failure.id, failure.message))
            summary.by_type[stype]["rejected"] += 1
        for success, fresh in zip(report.successes, report.stored, strict=True):
            stype = success.id.partition("--")[0]
            if fresh:
                summary.stored += 1
                summary.by_type[stype]["stored"] += 1
            else:
                summary.unchanged += 1
                summary.by_type[stype]["unchanged"] += 1
        for record in to_send:
            if id(record) in failed or record.obj is None:
                continue
            lists = record.hits if record.hits is not None else stix_hits(record.obj, self._warninglists)
            if lists:
                summary.add_hit(WarninglistHit(record.source, record.position, str(record.obj["id"]), lists))
