"""What an envelope writes (commonwatch.services.ingest_rows.plan), without a database:
date_added, is_latest within the envelope and against stored versions, re-posts and
refusals, index entries. The ingest and TAXII suites check the same through storage."""

from __future__ import annotations

from typing import Any

from commonwatch.domain.markings import Tlp
from commonwatch.domain.stix import parse_timestamp
from commonwatch.domain.visibility import Principal
from commonwatch.services.ingest_candidates import Candidate, prepare
from commonwatch.services.ingest_rows import plan
from commonwatch.services.query import CommunityRef
from commonwatch.storage import objects as objects_repo

from support.factories import indicator, ipv4, new_version, ts

ORG = 7
POSTER = Principal(1, "poster", ORG, "identity--6d0f1c3e-1f0e-4a51-9d5c-6f7e5a3c2b10", "analyst")
COMMUNITY = CommunityRef(3, "c", "collection", "C", "", int(Tlp.GREEN), False)
LATEST = objects_repo.COLUMNS.index("is_latest")
ADDED = objects_repo.COLUMNS.index("date_added_us")


def candidates(*objects: dict[str, Any]) -> list[Candidate]:
    return [prepare(obj, COMMUNITY, POSTER, {}) for obj in objects]


def stored(c: Candidate, producer: int | None = ORG) -> objects_repo.Stored:
    assert c.versioned_us is not None
    return objects_repo.Stored(c.versioned_us, producer, c.content_hash, c.tlp, False, row_id=1)


def test_date_added_is_strictly_after_the_newest_even_when_the_clock_is_behind():
    cs = candidates(indicator(), indicator(), indicator())
    p = plan(cs, {}, COMMUNITY.id, ORG, None, now=1_000, last_added=5_000)
    assert [row[ADDED] for row in p.rows] == [5_001, 5_002, 5_003]
    assert p.last_added == 5_003
    later = plan(candidates(indicator()), {}, COMMUNITY.id, ORG, None, now=9_000, last_added=5_003)
    assert [row[ADDED] for row in later.rows] == [9_000]


def test_only_the_newest_version_of_an_id_in_the_envelope_is_latest():
    first = indicator(modified=10)
    newer, older = new_version(first, 30), new_version(first, 20)
    p = plan(candidates(first, newer, older), {}, COMMUNITY.id, ORG, None, now=1, last_added=0)
    latest = {row[4]: row[LATEST] for row in p.rows}
    assert latest == {parse_timestamp(ts(10)): 0, parse_timestamp(ts(30)): 1,
                      parse_timestamp(ts(20)): 0}
    assert {type(row[LATEST]) for row in p.rows} == {int}  # 0/1: bound without adapters
    assert p.superseded == []  # nothing stored before


def test_a_new_version_supersedes_the_stored_latest_and_an_older_one_does_not():
    obj = indicator(modified=10)
    (old,) = candidates(obj)
    known = {old.stix_id: [stored(old)]}
    p = plan(candidates(new_version(obj, 20)), known, COMMUNITY.id, ORG, None, now=1, last_added=0)
    assert p.superseded == [(old.stix_id, old.versioned_us)] and p.rows[0][LATEST] == 1
    (newest,) = candidates(new_version(obj, 40))
    known = {old.stix_id: [stored(newest)]}
    p = plan(candidates(new_version(obj, 30)), known, COMMUNITY.id, ORG, None, now=1, last_added=0)
    assert p.superseded == [] and p.rows[0][LATEST] == 0


def test_an_identical_repost_succeeds_and_writes_nothing_and_a_refusal_names_its_position():
    obj = indicator(modified=10)
    (c,) = candidates(obj)
    changed = dict(obj, name="same version, other content")
    p = plan(candidates(obj, changed, indicator()), {c.stix_id: [stored(c)]}, COMMUNITY.id, ORG, None,
             now=1, last_added=0)
    assert [s.id for s in p.successes] == [c.stix_id, p.rows[0][1]]
    assert p.stored == [False, True] and len(p.rows) == 1
    ((position, failure),) = p.failures
    assert position == 1 and failure.id == c.stix_id and "already exists" in failure.message


def test_index_entries_and_recipients_are_keyed_by_date_added():
    red = indicator("203.0.113.9", tlp=Tlp.RED, recipients=[POSTER.org_identity])
    p = plan(candidates(ipv4("192.0.2.1"), red), {}, COMMUNITY.id, ORG, None, now=100, last_added=0)
    assert [(added, list(pairs)) for added, pairs in p.observables] == [
        (100, [("ipv4-addr", "192.0.2.1")]), (101, [("ipv4-addr", "203.0.113.9")])]
    assert p.red == [(101, frozenset({POSTER.org_identity}))]
