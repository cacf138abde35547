"""Writing objects into a community: validation, ownership, TLP, bulk insert.

One envelope is one transaction (envelopes posted over TAXII may share one, see
:mod:`commonwatch.services.ingest_queue`). Objects that fail validation are reported in the
status resource's ``failures`` with the reason; the valid objects of the same
envelope are stored. Re-posting an identical object is a success that stores
nothing new.

Ownership: every organisation holds its own copy of what it posts (two members who
import the same public source each keep theirs); reads give each caller one copy per
version. Whether a posting is accepted depends only on the versions the poster can
see (:func:`~commonwatch.services.ingest_candidates.conflict`): an object is versioned
by its creator. An unversioned cyber-observable (deterministic id, no
``created``/``modified``) may be posted by anyone and each distinct posting is its own
version (its TAXII version is its date_added, TAXII 2.1 §3.4.1).

date_added is strictly increasing per community and assigned while the community
row is locked, so commit order equals date_added order and paging with
``added_after`` never skips or repeats an object.

Preparing each posted object and the rules that accept or refuse it are in
:mod:`commonwatch.services.ingest_candidates`; the rows, index entries and status
entries an envelope writes are built by :mod:`commonwatch.services.ingest_rows`.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import orjson
from sqlalchemy import Connection, select
from sqlalchemy.orm import Session, sessionmaker

from commonwatch.clock import Clock, now_us
from commonwatch.domain.indexing import value_pairs
from commonwatch.domain.markings import Tlp, recipients_extension_definition, system_identity
from commonwatch.domain.visibility import Clearance, Principal, is_visible
from commonwatch.domain.warninglists import Warninglists
from commonwatch.errors import InputError, InputTooLarge, NotFound, PermissionDenied
from commonwatch.process import collector_paused
from commonwatch.services.ingest_candidates import (
    Candidate,
    describe,
    prepare,
    prepare_trusted,
    theirs,
)
from commonwatch.services.ingest_rows import plan
from commonwatch.services.query import ObjectFilter, QueryService
from commonwatch.services.query_types import CommunityRef
from commonwatch.services.status import (
    FailureDetail,
    StatusDetail,
    StatusReport,
    failures_json,
    successes_json,
)
from commonwatch.storage import index as index_repo
from commonwatch.storage import objects as objects_repo
from commonwatch.storage import tombstones
from commonwatch.storage.models import IngestStatus, Organisation

_ANALYZE_MIN_ROWS = 20_000


@dataclass(slots=True)
class Checked:
    """An envelope's objects after validation: the candidates to store, the failures."""

    total: int
    candidates: list[Candidate] = field(default_factory=list)
    at: list[int] = field(default_factory=list)  # each candidate's position in the envelope
    failures: list[FailureDetail] = field(default_factory=list)
    failed_at: list[int] = field(default_factory=list)
    #: The warninglists whose verdicts are stored with the values, and their stamp.
    verdicts: tuple[Warninglists, int] | None = None


class IngestService:
    """Validates and stores objects posted by members."""

    def __init__(
        self, sessions: sessionmaker[Session], query: QueryService,
        max_objects: int = 200_000, clock: Clock = now_us,
        warninglists: Callable[[], Warninglists] | None = None,
        committed: Callable[[], None] | None = None,
    ) -> None:
        """``warninglists``: the exchange's lists; the verdicts on each stored version's
        values are then stored with it (exports read them instead of checking again).
        ``committed``: called after each envelope's transaction is committed."""
        self._sessions = sessions
        self._query = query
        self._max_objects = max_objects
        self._clock = clock
        self._warninglists = warninglists
        self._committed = committed
        self._stamps: dict[str, int] = {}  # lists digest -> its stamp id (committed)
        # Rows stored since the planner statistics were last refreshed, and the table
        # size then: statistics are refreshed whenever the table grew by a tenth.
        self._since_analyze = 0
        self._analyzed_at = 0

    def add_objects(
        self, principal: Principal, collection_id: str, objects: Sequence[object]
    ) -> StatusReport:
        """Store an envelope's objects as ``principal``; returns the status resource."""
        with collector_paused():  # thousands of containers alive until the end, no cycles
            request_us = self._clock()
            community, clearance = self.admit(principal, collection_id, len(objects))
            envelope = self.validate(principal, community, objects)
            with self._sessions.begin() as s:
                report = self.store(s, principal, community.id, clearance, envelope,
                                    str(uuid.uuid4()), request_us)
            self.committed(len(report.successes))
            return report

    def admit(
        self, principal: Principal, collection_id: str, count: int
    ) -> tuple[CommunityRef, Clearance]:
        """The community ``principal`` may add ``count`` objects to, and its clearance
        there; refuses (raises) otherwise."""
        if count > self._max_objects:
            raise InputTooLarge(
                f"the envelope holds {count} objects; at most {self._max_objects} "
                "are accepted per request — split it into several envelopes"
            )
        community, clearance = self._query.collection(principal, collection_id)
        if not clearance.can_write:
            raise PermissionDenied(
                "you may not add objects to this collection (your membership or role "
                "does not grant write access)"
            )
        return community, clearance

    def validate(
        self, principal: Principal, community: CommunityRef, objects: Sequence[object]
    ) -> Checked:
        """An envelope's objects checked one by one. Writes nothing but, the first time
        new warninglists are used, their stamp (its own transaction: call it outside one)."""
        identities = self._member_identities()
        envelope = Checked(len(objects), verdicts=self._verdicts())
        candidates, at = envelope.candidates, envelope.at
        failures, failed_at = envelope.failures, envelope.failed_at
        for n, obj in enumerate(objects):
            try:
                candidates.append(prepare(obj, community, principal, identities))
                at.append(n)
            except InputError as exc:
                oid, version = describe(obj)
                failures.append(FailureDetail(oid, version, exc.message))
                failed_at.append(n)
        refused = {f.id for f in failures if f.id.startswith("marking-definition--")}
        if refused:
            envelope.candidates, envelope.at = self._without_refused_markings(
                candidates, at, refused, failures, failed_at)
        return envelope

    def store(
        self, s: Session, principal: Principal, community_id: int, clearance: Clearance,
        envelope: Checked, status_id: str, request_us: int,
    ) -> StatusReport:
        """Store a validated envelope in ``s``'s transaction, with its status resource."""
        failures, failed_at = list(envelope.failures), list(envelope.failed_at)
        successes, rejected, stored = self._store(s, community_id, principal.org_id,
                                                  envelope.candidates, envelope.verdicts, clearance)
        failures.extend(failure for _, failure in rejected)
        failed_at.extend(envelope.at[k] for k, _ in rejected)
        report = StatusReport(
            id=status_id, status="complete", request_us=request_us,
            total_count=envelope.total, successes=successes, failures=failures, stored=stored,
            failed_at=failed_at,
        )
        _add_status(s, report, community_id, principal.org_id)
        return report

    @staticmethod
    def refuse(
        s: Session, org_id: int, community_id: int, status_id: str, request_us: int,
        envelope: Checked,
    ) -> StatusReport:
        """Write the status resource of an envelope none of whose objects is stored (its
        poster may no longer write to the collection), every object a failure."""
        report = StatusReport(
            id=status_id, status="complete", request_us=request_us, total_count=envelope.total,
            successes=[], failures=envelope.failures, failed_at=envelope.failed_at,
        )
        _add_status(s, report, community_id, org_id)
        return report

    def committed(self, stored: int) -> None:
        """After a transaction that stored ``stored`` objects was committed."""
        if self._committed is not None:
            self._committed()
        self._maybe_analyze(stored)

    @staticmethod
    def _without_refused_markings(
        candidates: list[Candidate], at: list[int], refused: set[str],
        failures: list[FailureDetail], failed_at: list[int],
    ) -> tuple[list[Candidate], list[int]]:
        """Refuse the objects marked with a marking-definition this envelope could not
        store: stored, they would be shared under the community's default TLP instead of
        the marking their producer meant."""
        kept: list[Candidate] = []
        kept_at: list[int] = []
        for candidate, n in zip(candidates, at, strict=True):
            obj = candidate.obj
            refs = set(obj.get("object_marking_refs") or ())
            granular = obj.get("granular_markings") or ()
            refs.update(g.get("marking_ref") for g in granular if isinstance(g, dict))
            bad = sorted(ref for ref in refs & refused if isinstance(ref, str))
            if not bad:
                kept.append(candidate)
                kept_at.append(n)
                continue
            oid, version = describe(obj)
            failures.append(FailureDetail(oid, version, (
                f"is marked with {bad[0]}, which this envelope could not store (see its own "
                "failure): refused too, so that it is never shared under another marking")))
            failed_at.append(n)
        return kept, kept_at

    def _maybe_analyze(self, stored: int) -> None:
        self._since_analyze += stored
        if self._since_analyze < max(_ANALYZE_MIN_ROWS, self._analyzed_at // 10):
            return
        with self._sessions.begin() as s:
            objects_repo.refresh_statistics(s.connection())
        self._analyzed_at += self._since_analyze
        self._since_analyze = 0

    def publish_system_objects(self, community_id: int) -> None:
        """Publish the exchange's identity and the TLP:RED recipient extension (CLEAR)."""
        with self._sessions.begin() as s:
            candidates = [
                prepare_trusted(obj) for obj in
                (system_identity(), recipients_extension_definition())
            ]
            self._store(s, community_id, None, candidates, None, None)

    def status(self, principal: Principal, status_id: str) -> StatusReport:
        """A status resource of the caller's own organisation (TAXII 2.1 §4.3)."""
        with self._sessions() as s:
            row = s.get(IngestStatus, status_id) if len(status_id) <= 36 else None
        if row is None or row.org_id != principal.org_id:
            raise NotFound("no status resource with this id is available to you")
        return StatusReport(
            id=row.id, status=row.status, request_us=row.request_us,
            total_count=row.total_count,
            successes=[StatusDetail(**d) for d in orjson.loads(row.successes)],
            failures=[FailureDetail(**d) for d in orjson.loads(row.failures)],
        )

    def delete_object(
        self, principal: Principal, collection_id: str, object_id: str, flt: ObjectFilter
    ) -> int:
        """Delete the caller's own versions of ``object_id`` selected by ``flt``.

        TAXII 2.1 §5.8: without ``match[version]`` every version goes. Versions the
        caller cannot see answer 404 exactly like missing ones; visible versions
        produced by another organisation cannot be deleted (403).
        """
        page = self._query.manifest(principal, collection_id, flt)
        wanted = {r.version_us for r in page.rows}
        if not wanted:
            raise NotFound("no object with this id is available to you")
        community, clearance = self._query.collection(principal, collection_id)
        with self._sessions.begin() as s:
            conn = s.connection()
            # Queued behind this community's writers, as ingest is: a new version racing
            # the delete of the newest one must not leave two versions marked latest.
            last_added = objects_repo.lock_community(conn, community.id)
            visible = [row for row in self._query.visible_versions(conn, clearance, community.id, object_id)
                       if row[2] in wanted]
            chosen = [(row_id, producer) for row_id, producer, _ in visible]
            if not chosen:  # deleted meanwhile (a concurrent DELETE): gone, like a missing one
                raise NotFound("no object with this id is available to you")
            mine = [row_id for row_id, producer in chosen if producer == principal.org_id]
            if not clearance.can_write or not mine:
                raise PermissionDenied(
                    "you may delete only objects your organisation produced, in a "
                    "collection where you have write access"
                )
            tombstones.bury(conn, mine, self._clock())
            done = objects_repo.delete_rows(conn, mine)
            # Another member's copy of a deleted version is now what some readers are
            # served in its place. It is added anew (a new date_added), so that a reader
            # that synchronises by added_after, and was given the deleted copy, is sent it.
            gone = {version for row_id, _, version in visible if row_id in mine}
            survivors = objects_repo.copies_of(conn, community.id, object_id, gone)
            if survivors:
                now = self._clock()
                redated = []
                for row_id in survivors:
                    last_added = max(now, last_added + 1)
                    redated.append((row_id, last_added))
                objects_repo.redate(conn, redated)
                objects_repo.set_last_added(conn, community.id, last_added)
            objects_repo.refresh_latest(conn, community.id, object_id)
            return done

    def versionable(
        self, principal: Principal, collection_id: str, heads: dict[str, str | None]
    ) -> set[str]:
        """Of ``heads`` (id -> the ``created_by_ref`` its new versions name), the ids that are
        ``principal``'s to version: no other organisation's visible versions forbid it
        (:func:`theirs`, as :func:`conflict` decides a posting), whether or not the newest
        is revoked. Nothing is stored."""
        community, clearance = self._query.collection(principal, collection_id)
        with self._sessions() as s:
            conn = s.connection()
            known = objects_repo.existing_versions(conn, community.id, set(heads))
            self._weigh(conn, known, principal.org_id, clearance)
        return {stix_id for stix_id, creator in heads.items()
                if not theirs(creator, [v for v in known.get(stix_id, []) if v.seen], principal.org_id)}

    def _member_identities(self) -> dict[str, int]:
        with self._sessions() as s:
            return {i: o for i, o in s.execute(select(Organisation.identity_id, Organisation.id))}

    # -- storage (one transaction) -------------------------------------------------
    def _verdicts(self) -> tuple[Warninglists, int] | None:
        """The lists and their stamp id, the stamp committed in its own transaction
        (so no stored verdict ever names a stamp that a rollback took back)."""
        if self._warninglists is None:
            return None
        lists = self._warninglists()
        stamp = self._stamps.get(lists.digest)
        if stamp is None:
            with self._sessions.begin() as s:
                made = objects_repo.warninglist_stamp(s.connection(), lists.digest, create=True)
            assert made is not None
            stamp = self._stamps[lists.digest] = made
        return lists, stamp

    def restamp_verdicts(self, batch: int = 5000) -> int:
        """Store, on every version whose warninglist verdicts were stored under other
        lists (or before verdicts were stored), the verdicts of the lists loaded now;
        returns how many versions changed. Exports then read them instead of checking
        those values again. One transaction per ``batch`` versions: ingest goes on."""
        verdicts = self._verdicts()
        if verdicts is None:
            return 0
        lists, stamp = verdicts
        done = after = 0
        while True:
            with self._sessions.begin() as s:
                conn = s.connection()
                rows = objects_repo.unstamped(conn, stamp, after, batch)
                objects_repo.set_verdicts(conn, [
                    (rid, lists.listed_json(value_pairs(values)), stamp) for rid, values in rows])
            if not rows:
                return done
            done += len(rows)
            after = rows[-1][0]

    def _store(
        self, s: Session, community_id: int, org_id: int | None,
        candidates: list[Candidate], verdicts: tuple[Warninglists, int] | None,
        clearance: Clearance | None,
    ) -> tuple[list[StatusDetail], list[tuple[int, FailureDetail]], list[bool]]:
        """Store what is new; (successes, (candidate index, failure)s, per success: stored anew).

        ``clearance``: the poster's; only the versions it can see decide whether a
        posting is accepted (None: the exchange itself, which sees everything).
        """
        conn = s.connection()
        last_added = objects_repo.lock_community(conn, community_id)
        if org_id is not None:
            objects_repo.lock_producer(conn, org_id)
        known = objects_repo.existing_versions(conn, community_id, {c.stix_id for c in candidates})
        # Only versioned objects are weighed against others' versions (an SCO posting is
        # always its own version): re-posting observables many members hold costs nothing.
        versioned = {c.stix_id for c in candidates if c.versioned_us is not None}
        self._weigh(conn, {sid: vs for sid, vs in known.items() if sid in versioned}, org_id, clearance)
        p = plan(candidates, known, community_id, org_id, verdicts, self._clock(), last_added)
        objects_repo.clear_latest(conn, community_id, p.superseded)
        objects_repo.mark_co_held(conn, community_id, p.co_held)
        objects_repo.insert_objects(conn, p.rows)
        objects_repo.insert_recipients(conn, community_id, p.red)
        if p.observables or p.refs:
            first = min(added for added, _ in p.observables[:1] + p.refs[:1])
            ids = index_repo.row_ids(conn, community_id, first, p.last_added)
            index_repo.insert_entries(conn, community_id, ids, p.observables, p.refs)
        if p.rows:
            objects_repo.set_last_added(conn, community_id, p.last_added)
        return p.successes, p.failures, p.stored

    @staticmethod
    def _weigh(
        conn: Connection, known: dict[str, list[objects_repo.Stored]], org_id: int | None,
        clearance: Clearance | None,
    ) -> None:
        """Mark which stored versions (rows, before the envelope adds any) the poster can
        see (``seen``), and read the ``created_by_ref`` of the versions of ids where it sees
        another organisation's.

        Versions the poster cannot see never take part in the decision: accepting or
        refusing a posting must not tell the poster that they exist.
        """
        others = [v for vs in known.values() for v in vs if v.producer != org_id]
        if not others:
            return
        if clearance is not None:
            red = objects_repo.recipients_of(conn, {v.row_id for v in others if v.tlp == Tlp.RED})
            for v in others:
                v.seen = is_visible(clearance, v.producer, Tlp(v.tlp), red.get(v.row_id, ()))
        shared = [vs for vs in known.values() if any(v.seen and v.producer != org_id for v in vs)]
        creators = objects_repo.creators_of(conn, {v.row_id for vs in shared for v in vs if v.seen})
        for vs in shared:
            for v in vs:
                v.creator = creators.get(v.row_id)


def _add_status(s: Session, report: StatusReport, community_id: int, org_id: int) -> None:
    """The status resource's row (a complete one: pending ones are not stored)."""
    s.add(IngestStatus(
        id=report.id, community_id=community_id, org_id=org_id, request_us=report.request_us,
        status=report.status, total_count=report.total_count,
        success_count=len(report.successes), failure_count=len(report.failures), pending_count=0,
        successes=orjson.dumps(successes_json(report.successes)).decode(),
        failures=orjson.dumps(failures_json(report.failures)).decode(),
    ))
