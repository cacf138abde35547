"""Adversarial tests: what counts and summaries make of copies and of what a reader cannot see.

Lookup (matches, reporters, sightings, opinions), the sightings quick form, lifecycle
decay scores and detection each summarise object versions. Several members may hold
their own copy of one (id, version) (docs/sharing-model.md, "Who may post an id"); a
reader gets one copy of each version: its own, else the first stored it can see. So:

- a version held by several members is counted once, and deleting one member's copy
  changes nothing for a reader who still sees another copy;
- counts never include, and never move with, objects or copies the reader cannot see;
- nothing in an answer names or counts a copy or an object the reader cannot see.
"""

from __future__ import annotations

import json
import random
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from commonwatch.domain.markings import (
    RECIPIENTS_EXTENSION_ID,
    RECIPIENTS_PROPERTY,
    TLP2_MARKING_BY_LEVEL,
    Tlp,
)
from commonwatch.services.detect import DetectOptions
from commonwatch.services.exchange import Exchange
from commonwatch.services.lifecycle import LifecycleService
from commonwatch.services.query import ObjectFilter, VersionSelector

from support.factories import Member, indicator, make_community, make_member, new_version, ts

#: A relayed source's identity (MITRE's, as ATT&CK signs its objects): members may each
#: hold a copy of, and relay versions of, what it signs.
MITRE = "identity--c78cb6e5-0c4b-4611-8297-d1b8b55e40b5"
VALUE = "45.77.10.20"
ALL = ObjectFilter(versions=VersionSelector(last=False, all=True))
NOW = 1_767_225_600_000_000 + 10 * 86_400_000_000  # ts(0) + 10 days


@dataclass
class Fed:
    x: Exchange
    cid: str  # community "c"
    other: str  # community "elsewhere": only Alpha and Outsider are members
    a: Member  # operator, AMBER+STRICT: posts first
    b: Member  # operator (the same sector: which of the two copies is read shows nowhere)
    r: Member  # vendor, RED: sees both members' copies
    g: Member  # end-user, GREEN

    def post(self, member: Member, *objects: dict, community: str | None = None) -> None:
        report = self.x.ingest.add_objects(member.principal, community or self.cid, list(objects))
        assert not report.failures, report.failures

    def lookup(self, member: Member, value: str = VALUE) -> dict:
        return self.x.lookup.lookup_json(member.principal, [value])[0]

    def delete(self, member: Member, *objects: dict) -> None:
        for obj in objects:
            assert self.x.ingest.delete_object(member.principal, self.cid, obj["id"], ALL) >= 1


@pytest.fixture
def fed(exchange: Exchange) -> Fed:
    a, b = make_member(exchange, "Alpha"), make_member(exchange, "Beta")
    r, g = make_member(exchange, "Reader", "vendor"), make_member(exchange, "Green", "end-user")
    make_member(exchange, "Outsider", "research")
    cid = make_community(exchange, "c", Tlp.GREEN, {"Alpha": (True, Tlp.AMBER_STRICT),
                                                     "Beta": (True, Tlp.AMBER), "Reader": (True, Tlp.RED),
                                                     "Green": (True, Tlp.GREEN)})
    other = make_community(exchange, "elsewhere", Tlp.GREEN, {"Alpha": (True, Tlp.RED),
                                                              "Outsider": (True, Tlp.RED)})
    return Fed(exchange, cid, other, a, b, r, g)


def marked(obj: dict, tlp: Tlp, *recipients: str, **changes: object) -> dict:
    """``obj`` under another TLP (RED: addressed to ``recipients``), with ``changes``."""
    out = dict(obj, object_marking_refs=[TLP2_MARKING_BY_LEVEL[tlp]], **changes)
    if tlp == Tlp.RED:
        out["extensions"] = {RECIPIENTS_EXTENSION_ID: {"extension_type": "property-extension",
                                                       RECIPIENTS_PROPERTY: list(recipients)}}
    return out


def sighting(of: str, count: int, day: int = 2, tlp: Tlp = Tlp.GREEN, by: str | None = MITRE) -> dict:
    """A sighting last seen ``day`` days after ts(0), made a day later."""
    at, made = ts(day * 86_400), ts((day + 1) * 86_400)
    obj = {"type": "sighting", "spec_version": "2.1", "id": f"sighting--{uuid.uuid4()}",
           "created": made, "modified": made, "sighting_of_ref": of, "count": count,
           "first_seen": ts(day * 86_400 - 60), "last_seen": at}
    if by:
        obj["created_by_ref"] = by
    return marked(obj, tlp)


def opinion(about: str, says: str, tlp: Tlp = Tlp.GREEN, by: str | None = MITRE) -> dict:
    obj = {"type": "opinion", "spec_version": "2.1", "id": f"opinion--{uuid.uuid4()}",
           "created": ts(7), "modified": ts(7), "object_refs": [about], "opinion": says}
    if by:
        obj["created_by_ref"] = by
    return marked(obj, tlp)


def summary(answer: dict) -> tuple:
    """(matches, confidences, sightings count and reports, agree, disagree) of a lookup answer."""
    ops = answer["opinions"]
    return (len(answer["matches"]), [m["confidence"] for m in answer["matches"]],
            answer["sightings"]["count"], answer["sightings"]["reports"], ops["agree"], ops["disagree"])


def eve_log(tmp_path: Path, events: int) -> str:
    path = tmp_path / "eve.json"
    path.write_text("".join(json.dumps({
        "timestamp": f"2026-01-05T10:00:{n:02d}.000000+0000", "flow_id": n, "event_type": "flow",
        "src_ip": "172.16.0.9", "src_port": 40000 + n, "dest_ip": VALUE, "dest_port": 443,
        "proto": "TCP"}) + "\n" for n in range(events)))
    return str(path)


def detect(fed: Fed, member: Member, log: str) -> tuple[list[tuple], tuple]:
    """(alerts as (indicator, producer, tlp, confidence, event time), summary counts)."""
    alerts: list[dict] = []
    done = fed.x.detect.run(member.principal, [log], DetectOptions(community="c"), alerts.append)
    return (sorted((a["indicator"], a["producer"], a["tlp"], a["confidence"], a["time"]) for a in alerts),
            (done.indicators, done.alerts, dict(done.skipped_indicators)))


# -- lookup ------------------------------------------------------------------------------------
def test_lookup_counts_a_version_once_however_many_members_hold_it(fed):
    ind = indicator(VALUE, tlp=Tlp.GREEN, created_by=MITRE, confidence=80)
    seen, agree = sighting(ind["id"], 5), opinion(ind["id"], "agree")
    for holder in (fed.a, fed.b):  # identical copies of each version
        fed.post(holder, ind, seen, agree)
    readers = (fed.a, fed.b, fed.r, fed.g)
    before = [fed.lookup(m) for m in readers]
    assert summary(before[0]) == (1, [80], 5, 1, 1, 0)
    assert all(answer == before[0] for answer in before)  # each reads one copy, all alike
    assert before[0]["sightings"]["by"] == [{"organisation": None, "sector": "operator"}]
    fed.delete(fed.a, ind, seen, agree)  # Beta's copies remain: nothing changes for anyone
    assert [fed.lookup(m) for m in readers] == before
    fed.delete(fed.b, ind, seen, agree)
    assert all(not fed.lookup(m)["found"] for m in readers)


def test_lookup_reads_the_readers_own_copy_else_the_first_stored(fed):
    ind = indicator(VALUE, tlp=Tlp.GREEN, created_by=MITRE, confidence=60)
    seen, says = sighting(ind["id"], 5), opinion(ind["id"], "agree")
    fed.post(fed.a, ind, seen, says)
    # Beta's own content for the same versions
    fed.post(fed.b, dict(ind, confidence=90), dict(seen, count=7), dict(says, opinion="disagree"))
    assert summary(fed.lookup(fed.b)) == (1, [90], 7, 1, 0, 1)
    for m in (fed.a, fed.r, fed.g):
        assert summary(fed.lookup(m)) == (1, [60], 5, 1, 1, 0), m.org
    fed.delete(fed.a, ind, seen, says)
    for m in (fed.a, fed.b, fed.r, fed.g):
        assert summary(fed.lookup(m)) == (1, [90], 7, 1, 0, 1), m.org


def test_an_invisible_first_copy_neither_hides_nor_shows_in_an_answer(fed):
    ind = indicator(VALUE, created_by=MITRE, confidence=90)
    seen, says = sighting(ind["id"], 7), opinion(ind["id"], "agree")
    # Alpha's (operator) AMBER copies are stored first, with other content; Green cannot see them
    fed.post(fed.a, marked(ind, Tlp.AMBER, confidence=10), marked(seen, Tlp.AMBER, count=99),
             marked(says, Tlp.AMBER, opinion="disagree"))
    fed.post(fed.r, marked(ind, Tlp.GREEN), seen, says)  # Reader (vendor): GREEN copies
    green = fed.lookup(fed.g)
    assert summary(green) == (1, [90], 7, 1, 1, 0)
    assert [m["tlp"] for m in green["matches"]] == ["TLP:GREEN"]
    assert green["reporters"] == green["sightings"]["by"] == [{"organisation": None, "sector": "vendor"}]
    assert "operator" not in json.dumps(green)  # nothing of Alpha's copies: not even its sector
    assert summary(fed.lookup(fed.b)) == (1, [10], 99, 1, 0, 1)  # the first stored copy it sees
    assert summary(fed.lookup(fed.r)) == summary(green)  # its own


def test_public_and_write_only_readers_count_only_their_copy(fed):
    """Anonymous callers and non-members see a public community's CLEAR copy; a write-only
    member its own copy only."""
    fed.x.admin.create_community("pub", default_tlp=Tlp.GREEN, public=True)
    for org, can_read in (("Alpha", True), ("Beta", True), ("Green", False)):
        fed.x.admin.set_membership(org, "pub", can_read, True, Tlp.RED)
    pub = fed.x.admin.get_community("pub").collection_id
    ind = indicator(VALUE, created_by=MITRE, confidence=10)
    seen = sighting(ind["id"], 0)
    fed.post(fed.a, marked(ind, Tlp.AMBER), marked(seen, Tlp.AMBER, count=50), community=pub)
    fed.post(fed.b, marked(ind, Tlp.CLEAR, confidence=90), marked(seen, Tlp.CLEAR, count=5), community=pub)
    fed.post(fed.g, marked(ind, Tlp.GREEN, confidence=33), marked(seen, Tlp.GREEN, count=3), community=pub)
    for who, expected in ((None, (90, 5)), (fed.r.principal, (90, 5)), (fed.g.principal, (33, 3))):
        assert summary(fed.x.lookup.lookup_json(who, [VALUE])[0]) == (1, [expected[0]], expected[1], 1, 0, 0)


CLEARED = {"Alpha": Tlp.AMBER_STRICT, "Beta": Tlp.AMBER, "Reader": Tlp.RED, "Green": Tlp.GREEN}


@pytest.mark.parametrize("seed", range(4))
def test_sighting_totals_match_a_model_of_copies_and_visibility(fed, seed):
    """Random copies of sightings (one source, MITRE, relayed by all: every posting is
    accepted), under random TLPs and RED recipients, then deletions of one member's copies:
    each reader's total is the count of one copy (its own, else the first stored it sees)
    of the newest version it sees of each sighting, and nothing else."""
    rnd = random.Random(seed)
    members = (fed.a, fed.b, fed.r, fed.g)
    ind = indicator(VALUE, tlp=Tlp.GREEN, created_by=MITRE)
    fed.post(fed.a, ind)
    ids = [sighting(ind["id"], 0) for _ in range(3)]
    rows: list[tuple[str, int, int, Tlp, frozenset[str], int]] = []  # (org, id, version, tlp, to, count)
    for _ in range(14):
        poster, k, version = rnd.choice(members), rnd.randrange(3), rnd.randint(1, 3)
        if any(r[:3] == (poster.org, k, version) for r in rows):
            continue  # a member's own version is never replaced by other content
        tlp = rnd.choice([Tlp.GREEN, Tlp.AMBER, Tlp.AMBER_STRICT, Tlp.RED])
        to = frozenset(m.org for m in members if rnd.random() < 0.5) if tlp == Tlp.RED else frozenset()
        count = rnd.randint(1, 10**6)
        ids_to = [m.identity for m in members if m.org in to]
        fed.post(poster, marked(new_version(ids[k], (10 + version) * 86_400, count=count), tlp, *ids_to))
        rows.append((poster.org, k, version, tlp, to, count))

    def expected(org: str) -> tuple[int, int]:
        def sees(r: tuple) -> bool:
            ceiling = min(CLEARED[org], Tlp.AMBER_STRICT)
            return r[0] == org or r[3] <= ceiling or (r[3] == Tlp.RED and CLEARED[org] == Tlp.RED
                                                      and org in r[4])
        total = reports = 0
        for k in range(3):
            seen = [r for r in rows if r[1] == k and sees(r)]
            if seen:
                newest = [r for r in seen if r[2] == max(x[2] for x in seen)]
                chosen = next((r for r in newest if r[0] == org), newest[0])
                total, reports = total + chosen[5], reports + 1
        return total, reports

    for step in range(3):
        for m in members:
            got = fed.lookup(m)["sightings"]
            assert (got["count"], got["reports"]) == expected(m.org), (seed, step, m.org, rows)
        if not rows:
            break
        org, k = rnd.choice(rows)[:2]
        fed.delete(next(m for m in members if m.org == org), ids[k])
        rows = [r for r in rows if r[:2] != (org, k)]


def hidden_noise(fed: Fed, ind: dict, seen: dict) -> None:
    """Objects and copies about ``ind`` and its value that only Alpha, who posts them, can
    see: TLP:RED addressed to nobody, or in a community the others are not members of."""
    fed.post(fed.a, marked(seen, Tlp.RED, count=1000),  # a copy of a visible sighting's version
             marked(new_version(seen, 9 * 86_400, count=3000, last_seen=ts(8 * 86_400)), Tlp.RED),
             marked(sighting(ind["id"], 50, day=6), Tlp.RED),
             marked(opinion(ind["id"], "strongly-disagree"), Tlp.RED),
             marked(indicator(VALUE, created_by=MITRE), Tlp.RED))
    if ind.get("created_by_ref") == MITRE:  # a newer version that states another value
        fed.post(fed.a, marked(new_version(ind, 5, pattern="[ipv4-addr:value = '45.77.99.99']"), Tlp.RED))
    fed.post(fed.a, indicator(VALUE, oid=ind["id"]), sighting(ind["id"], 70, day=8),
             opinion(ind["id"], "disagree"), community=fed.other)


def test_objects_and_copies_a_reader_cannot_see_never_move_its_lookup(fed):
    ind = indicator(VALUE, tlp=Tlp.GREEN, created_by=MITRE, confidence=70)
    seen = sighting(ind["id"], 4)
    fed.post(fed.b, ind, seen, opinion(ind["id"], "agree"))
    readers = (fed.r, fed.g)
    before = [fed.lookup(m) for m in readers]
    assert summary(before[1]) == (1, [70], 4, 1, 1, 0)
    hidden_noise(fed, ind, seen)
    assert [fed.lookup(m) for m in readers] == before
    # ... while they do count for Alpha, who can see them: the noise is not inert
    assert summary(fed.lookup(fed.a)) != summary(before[0])


# -- the sightings quick form ----------------------------------------------------------------
def test_a_quick_sighting_sights_a_version_held_twice_once(fed):
    ind = indicator(VALUE, created_by=MITRE)
    fed.post(fed.a, marked(ind, Tlp.AMBER))  # stored first, invisible to Green
    fed.post(fed.b, marked(ind, Tlp.GREEN))
    made = fed.x.sightings.sight(fed.r.principal, "c", VALUE, count=3)
    assert [s.indicator_id for s in made] == [ind["id"]]
    assert made[0].sighting["object_marking_refs"] == [TLP2_MARKING_BY_LEVEL[Tlp.AMBER]]  # what it reads
    made = fed.x.sightings.sight(fed.g.principal, "c", VALUE, count=2)
    assert [s.indicator_id for s in made] == [ind["id"]]
    # Green's sighting carries the TLP of the copy it reads, not of the one it cannot see
    assert made[0].sighting["object_marking_refs"] == [TLP2_MARKING_BY_LEVEL[Tlp.GREEN]]
    counts = {m.org: fed.lookup(m)["sightings"]["count"] for m in (fed.a, fed.b, fed.r, fed.g)}
    assert counts == {"Alpha": 5, "Beta": 5, "Reader": 5, "Green": 2}


# -- lifecycle ---------------------------------------------------------------------------------
def scores(fed: Fed, member: Member) -> list[dict]:
    service = LifecycleService(fed.x.query, fed.x.ingest, clock=lambda: NOW)
    return [s.to_json() for s in service.scores(member.principal, "c")]


def test_decay_restarts_at_the_newest_sighting_the_producer_sees_and_only_there(fed):
    own = indicator(VALUE, tlp=Tlp.GREEN, created_by=fed.b.identity)
    fed.post(fed.b, own)
    seen = sighting(own["id"], 1, day=2)
    fed.post(fed.r, seen)
    fed.post(fed.g, seen)  # an identical copy
    before = scores(fed, fed.b)
    assert [s["last_sighting"] for s in before] == [ts(2 * 86_400)]
    hidden_noise(fed, own, seen)
    fed.post(fed.a, marked(sighting(own["id"], 1, day=8), Tlp.RED, fed.r.identity))  # to Reader only
    assert scores(fed, fed.b) == before
    fed.delete(fed.r, seen)
    assert scores(fed, fed.b) == before  # Green's copy remains
    fed.delete(fed.g, seen)
    assert [s["last_sighting"] for s in scores(fed, fed.b)] == [None]


def test_an_invisible_copy_of_a_sighting_never_moves_a_score(fed):
    own = indicator(VALUE, tlp=Tlp.GREEN, created_by=fed.b.identity)
    fed.post(fed.b, own)
    seen = sighting(own["id"], 1, day=2)
    # Alpha's AMBER+STRICT copy (later last_seen) is stored first; Beta (AMBER) cannot see it
    fed.post(fed.a, marked(seen, Tlp.AMBER_STRICT, last_seen=ts(3 * 86_400)))
    fed.post(fed.r, seen)
    assert [s["last_sighting"] for s in scores(fed, fed.b)] == [ts(2 * 86_400)]


def test_decay_and_scores_read_the_producers_own_copy(fed):
    own = indicator(VALUE, tlp=Tlp.GREEN, created_by=fed.b.identity)
    fed.post(fed.b, own)
    seen = sighting(own["id"], 1, day=6)
    relayed = indicator("45.77.10.21", tlp=Tlp.GREEN, created_by=MITRE)
    fed.post(fed.a, seen, relayed)  # stored first
    # Beta's own copies of the same versions: its sighting withdrawn (last seen on day 2), and
    # the relayed indicator revoked. Beta reads them, not Alpha's, everywhere (TAXII, lookup).
    fed.post(fed.b, dict(seen, revoked=True, first_seen=ts(86_400), last_seen=ts(2 * 86_400)),
             dict(relayed, revoked=True))
    mine = [json.loads(r.raw) for r in fed.x.query.objects(fed.b.principal, fed.cid, ObjectFilter()).rows]
    assert all(o.get("revoked") for o in mine if o["id"] in (seen["id"], relayed["id"]))
    before = {s["id"]: (s["last_sighting"], s["revoked"]) for s in scores(fed, fed.b)}
    fed.delete(fed.a, seen, relayed)  # Beta held its own copies: nothing should change
    after = {s["id"]: (s["last_sighting"], s["revoked"]) for s in scores(fed, fed.b)}
    # Beta's own sighting is withdrawn (revoked): it restarts no decay
    assert after == {own["id"]: (None, False), relayed["id"]: (None, True)}
    # Lifecycle read through an export's default filter, which ranks a copy that is not
    # revoked above the reader's own revoked one: Beta's decay restarted at Alpha's copy of
    # the sighting, Beta's own relayed indicator was missing from its scores, and both
    # changed when Alpha deleted its copies. It reads the caller's own copy now.
    assert before == after


def test_expire_never_claims_a_copy_of_another_members_indicator(fed):
    theirs = indicator(VALUE, tlp=Tlp.GREEN)  # Alpha's, without created_by_ref: Alpha's only
    fed.post(fed.a, theirs)
    fed.post(fed.b, theirs)  # an identical copy, which gives Beta no right to version it
    service = LifecycleService(fed.x.query, fed.x.ingest, clock=lambda: NOW)
    report = service.expire(fed.b.principal, "c")
    # Lifecycle took every row the caller produced as its own indicator, copies included:
    # Beta's copy of Alpha's unsigned indicator was scored as Beta's, and every expire by
    # Beta tried to revoke it and was refused ("another organisation produced"). It takes
    # the indicators ingest would let the caller version (IngestService.versionable).
    assert report.failures == [], [f.message for f in report.failures]
    assert service.expire(fed.b.principal, "c").changes == []


# -- detection ---------------------------------------------------------------------------------
def test_detect_matches_a_version_held_twice_once_and_ignores_what_it_cannot_see(fed, tmp_path):
    log = eve_log(tmp_path, 3)
    ind = indicator(VALUE, tlp=Tlp.GREEN, created_by=MITRE, confidence=75)
    for holder in (fed.a, fed.b):
        fed.post(holder, ind)
    for m in (fed.r, fed.g):
        alerts, counts = detect(fed, m, log)
        assert counts == (1, 3, {}) and {a[0] for a in alerts} == {ind["id"]}, m.org
    before = {m.org: detect(fed, m, log) for m in (fed.r, fed.g)}
    # a revoked newer version and a second indicator neither can see
    fed.post(fed.a, marked(new_version(ind, 6, revoked=True), Tlp.RED, fed.b.identity),
             marked(indicator(VALUE, created_by=MITRE), Tlp.RED, fed.b.identity))
    fed.delete(fed.a, ind)  # Beta's copy remains
    assert {m.org: detect(fed, m, log) for m in (fed.r, fed.g)} == before


def test_detect_reads_the_readers_own_copy(fed, tmp_path):
    log = eve_log(tmp_path, 1)
    ind = indicator(VALUE, tlp=Tlp.GREEN, created_by=MITRE, confidence=20)
    fed.post(fed.a, ind)
    fed.post(fed.b, dict(ind, confidence=95))
    fed.post(fed.r, marked(ind, Tlp.AMBER, revoked=True))  # Reader's own copy: revoked
    assert [a[3] for a in detect(fed, fed.b, log)[0]] == [95]
    assert [a[3] for a in detect(fed, fed.g, log)[0]] == [20]
    assert detect(fed, fed.r, log)[1] == (0, 0, {"revoked": 1})


def test_detect_names_a_producer_only_from_its_own_identity_object(fed, tmp_path):
    log = eve_log(tmp_path, 1)
    fed.post(fed.a, indicator(VALUE, tlp=Tlp.GREEN, created_by=fed.a.identity))
    # Beta posts an identity object under Alpha's identity id, with a name of its choosing
    forged = {"type": "identity", "spec_version": "2.1", "id": fed.a.identity, "created": ts(0),
              "modified": ts(0), "name": "Totally Trustworthy CERT", "identity_class": "organization"}
    report = fed.x.ingest.add_objects(fed.b.principal, fed.cid, [marked(forged, Tlp.GREEN)])
    # Ingest let a member post an identity object under another member's identity id, and
    # detection names a producer after the visible identity object of its created_by_ref:
    # a member could put any name on another member's alerts. Only the member itself may
    # post its identity; Alpha's was never posted, so the alert names its sector only.
    assert "identity of another member organisation" in report.failures[0].message
    assert [a[1] for a in detect(fed, fed.g, log)[0]] == ["a member of sector operator"]
