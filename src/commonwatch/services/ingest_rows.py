"""What an envelope writes: from its prepared candidates to rows, index entries and status.

Kept apart from :mod:`commonwatch.services.ingest` (the service and its transaction):
:func:`plan` has no database. Given the candidates and the versions already stored, it
decides each candidate's fate (:func:`~commonwatch.services.ingest_candidates.conflict`),
assigns date_added, builds the ``stix_objects`` rows with their index entries and export
facts, and keeps ``is_latest`` right within the envelope. The ingest service then writes
what it returns. This is the per-object loop of ingest, compiled with the other hot
modules (``tools/native.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from commonwatch.domain.indexing import indexed
from commonwatch.domain.stix import format_timestamp
from commonwatch.domain.warninglists import Warninglists
from commonwatch.services.ingest_candidates import Candidate, conflict, version_text
from commonwatch.services.status import FailureDetail, StatusDetail
from commonwatch.storage import objects as objects_repo
from commonwatch.storage.index import Entries

_LATEST = objects_repo.COLUMNS.index("is_latest")
_REVOKED = objects_repo.COLUMNS.index("revoked")
_UNLISTED: tuple[str | None, int | None] = (None, None)  # export_listed, listed_stamp: no verdicts


@dataclass
class Planned:
    """What storing an envelope writes and answers."""

    #: date_added of the last row (the community's ``last_added`` when nothing is new).
    last_added: int
    successes: list[StatusDetail] = field(default_factory=list)
    #: (candidate index, failure) of the refused candidates.
    failures: list[tuple[int, FailureDetail]] = field(default_factory=list)
    #: Per success: True when it stored a new version, False for an identical re-post.
    stored: list[bool] = field(default_factory=list)
    #: ``stix_objects`` rows in :data:`~commonwatch.storage.objects.COLUMNS` order.
    rows: list[list[Any]] = field(default_factory=list)
    #: TLP:RED recipients, observable and reference entries, keyed by date_added.
    red: list[tuple[int, frozenset[str]]] = field(default_factory=list)
    observables: list[Entries] = field(default_factory=list)
    refs: list[Entries] = field(default_factory=list)
    #: (id, version) of stored rows that are no longer the newest version of their id.
    superseded: list[tuple[str, int]] = field(default_factory=list)
    #: (id, version) that another organisation holds too (their rows become co_held).
    co_held: list[tuple[str, int]] = field(default_factory=list)


def plan(
    candidates: list[Candidate], known: dict[str, list[objects_repo.Stored]],
    community_id: int, org_id: int | None, verdicts: tuple[Warninglists, int] | None,
    now: int, last_added: int,
) -> Planned:
    """Decide and build what storing ``candidates`` writes.

    ``known``: the stored versions of the candidates' ids (the poster's view marked, see
    ``IngestService._weigh``); each stored candidate is added to its id's list, so a
    later candidate of the envelope is weighed against it too. ``now``: the clock;
    date_added is strictly after ``last_added``, the community's newest.
    """
    out = Planned(last_added)
    newest = {sid: max(v.version_us for v in vs) for sid, vs in known.items() if vs}
    pending: dict[str, list[Any]] = {}  # id -> its newest row of this envelope
    for k, c in enumerate(candidates):
        versions = known.setdefault(c.stix_id, [])
        problem = conflict(c, versions, org_id)
        if problem == "":
            out.successes.append(StatusDetail(c.stix_id, version_text(c, versions, org_id)))
            out.stored.append(False)
            continue
        if problem is not None:
            out.failures.append((k, FailureDetail(c.stix_id, version_text(c, []), problem)))
            continue
        added = out.last_added = max(now, out.last_added + 1)
        version_us = c.versioned_us if c.versioned_us is not None else added
        copy = c.versioned_us is not None and any(v.version_us == version_us for v in versions)
        if copy:
            out.co_held.append((c.stix_id, version_us))
        found, related, facts = indexed(c.obj)
        listed = (verdicts[0].listed_json(found), verdicts[1]) if verdicts and found else _UNLISTED
        # Flags as 0/1, not False/True: the sqlite3 driver binds an exact int as it is,
        # but looks each bool up among its adapters first (a third of a row's binding).
        row = [community_id, c.stix_id, c.type, c.spec_version, version_us,
               added, org_id, c.tlp, 0, c.content_hash, c.raw, *facts, *listed, 1 if copy else 0]
        row[_REVOKED] = 1 if facts.revoked else 0
        versions.append(objects_repo.Stored(version_us, org_id, c.content_hash, c.tlp,
                                            facts.revoked, creator=c.creator))
        _mark_latest(row, newest, pending, out.superseded)
        out.rows.append(row)
        if c.recipients:
            out.red.append((added, c.recipients))
        if found:
            out.observables.append((added, found))
        if related:
            out.refs.append((added, related))
        out.successes.append(StatusDetail(c.stix_id, format_timestamp(version_us)))
        out.stored.append(True)
    return out


def _mark_latest(
    row: list[Any], newest: dict[str, int], pending: dict[str, list[Any]],
    superseded: list[tuple[str, int]],
) -> None:
    """Set ``is_latest`` on a new row and unset it on the version it supersedes."""
    stix_id: str = row[1]
    version_us: int = row[4]
    previous = newest.get(stix_id)
    if previous is not None and version_us < previous:
        return
    if stix_id in pending:
        pending[stix_id][_LATEST] = 0  # superseded within this envelope
    elif previous is not None:
        superseded.append((stix_id, previous))
    row[_LATEST] = 1
    newest[stix_id] = version_us
    pending[stix_id] = row
