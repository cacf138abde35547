"""Adversarial tests of sightings, opinions, decay scoring and expiry.

Bad input must be refused with a clear error (never a crash, never partial data), and
TLP must hold: nobody receives, counts or infers what they are not cleared for.
"""

from __future__ import annotations

import math
import threading
import uuid

import orjson
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from commonwatch.domain.lifecycle import (
    DAY_US,
    Decay,
    DecayPolicy,
    assess,
    score,
    sighting_time_us,
)
from commonwatch.domain.markings import TLP2_MARKING_BY_LEVEL, Tlp
from commonwatch.domain.stix import parse_timestamp
from commonwatch.errors import (
    CommonWatchError,
    ConfigError,
    InputError,
    InputTooLarge,
    InvalidParameter,
    NotFound,
)
from commonwatch.services.lifecycle import MAX_REVOKE, LifecycleService
from commonwatch.services.query import ObjectFilter, VersionSelector
from commonwatch.services.sightings import SightingService
from commonwatch.web.app import create_app

from support.factories import indicator, ts

T0 = parse_timestamp(ts(0))
NOW = T0 + 10 * DAY_US


def at(days: float):
    moment = T0 + int(days * DAY_US)
    return lambda: moment


def sighter(world, clock=lambda: NOW) -> SightingService:
    x = world.exchange
    return SightingService(x.query, x.lookup, x.ingest, clock=clock)


def life(world, clock=lambda: NOW, policy: DecayPolicy | None = None) -> LifecycleService:
    x = world.exchange
    if policy is None:
        return LifecycleService(x.query, x.ingest, clock=clock)
    return LifecycleService(x.query, x.ingest, clock=clock, policy=policy)


def versions(world, member, stix_id):
    page = world.exchange.query.objects(member.principal, world.cid, ObjectFilter(
        ids=(stix_id,), versions=VersionSelector(all=True, last=False)))
    return [orjson.loads(r.raw) for r in page.rows]


def sightings_of(world, member, value):
    return world.exchange.lookup.lookup(member.principal, [value])[0].sightings


def cli(database_url, *args):
    from commonwatch.cli.main import app

    return CliRunner().invoke(app, ["--database-url", database_url, *args])


def _pure(pattern: str = "[ipv4-addr:value = '203.0.113.1']", **extra):
    obj = {"type": "indicator", "spec_version": "2.1",
           "id": "indicator--00000000-0000-4000-8000-000000000001",
           "created": ts(0), "modified": ts(0), "pattern": pattern, "pattern_type": "stix",
           "valid_from": ts(0)}
    obj.update(extra)
    return obj


# -- decay scoring (pure) ------------------------------------------------------------------


def test_score_of_odd_indicators_stays_within_bounds():
    # valid_from in the future: the base, never more
    future = _pure(valid_from=ts(30 * 86400), confidence=70)
    assert score(future, T0, None) == 70.0
    a = assess(future, T0, None)
    assert a.decays_at_us is not None and a.decays_at_us > parse_timestamp(ts(30 * 86400))
    # valid_until before valid_from: never valid, scores 0
    assert score(_pure(valid_from=ts(100), valid_until=ts(50)), T0 + 200 * 1_000_000, None) == 0.0
    # neither valid_from nor created: no start, score 0, no expiry moment
    bare = _pure()
    del bare["valid_from"], bare["created"]
    a = assess(bare, T0, None)
    assert (a.score, a.decays_at_us) == (0.0, None)
    # ... but a sighting gives it a start
    assert score(bare, T0, T0) == 50.0
    # out-of-range or non-integer confidences fall back to the default base
    for bad in (150, -5, True, "90", 90.5, None):
        assert assess(_pure(confidence=bad), T0, None).base == 50.0, bad
    # unparseable valid_until is ignored rather than crashing
    assert score(_pure(valid_until="never"), T0 + DAY_US, None) > 0
    # a sighting far in the future is a start in the future: base, not above it
    assert score(_pure(confidence=40), T0, T0 + 1000 * DAY_US) == 40.0


@pytest.mark.parametrize("lifetime", [0, -1, -math.inf, math.nan, math.inf])
def test_decay_rejects_nonsense_lifetimes(lifetime):
    with pytest.raises(ConfigError, match="lifetime"):
        Decay(lifetime, 1)


@pytest.mark.parametrize("speed", [0, -2, math.nan])
def test_decay_rejects_nonsense_speeds(speed):
    with pytest.raises(ConfigError, match="speed"):
        Decay(10, speed)


@pytest.mark.parametrize("bad", [-0.1, 100.5, math.nan, math.inf])
def test_policy_rejects_nonsense_thresholds(bad):
    with pytest.raises(ConfigError):
        DecayPolicy(revoke_score=bad)
    with pytest.raises(ConfigError):
        DecayPolicy(default_confidence=bad)


def test_extreme_speeds_keep_the_score_bounded():
    for speed in (1e-300, 1e-6, 1e6, 1e300):
        policy = DecayPolicy(decays={"ipv4-addr": Decay(47, speed)})
        for days in (0, 0.001, 1, 46.999, 47, 1e6):
            a = assess(_pure(confidence=80), T0 + int(days * DAY_US), None, policy)
            assert 0.0 <= a.score <= 80.0 and math.isfinite(a.score), (speed, days)
            assert a.decays_at_us is not None and a.decays_at_us >= T0


@pytest.mark.parametrize("lifetime_days", [1e7, 1e300, float("inf"), float("nan"), 0, -1, "10", True])
def test_lifetimes_beyond_a_century_or_not_numbers_are_refused(lifetime_days):
    """Expiry times computed from them would pass year 9999 (or overflow): refused."""
    with pytest.raises(ConfigError, match="lifetime"):
        Decay(lifetime_days, 1)
    assert Decay(36_500, 1).lifetime_days == 36_500


def test_a_century_lifetime_scores_and_expires_in_the_service(world):
    world.add(world.cert, [indicator("203.0.113.90", tlp=Tlp.GREEN, created_by=world.cert.identity)])
    svc = life(world, policy=DecayPolicy(decays={"ipv4-addr": Decay(36_500, 1)}))
    [s] = svc.scores(world.cert.principal, "main")
    assert 49.9 < s.score <= 50  # a century decays by a fraction of a point a year
    assert s.to_json()["expires_at"] > "2080"  # what `lifecycle scores --json` prints
    svc.expire(world.cert.principal, "main", dry_run=True)


def test_a_sighting_cannot_claim_activity_after_it_was_made():
    """A last_seen after the sighting's own created would hold the decay off at will."""
    made = "2026-01-01T00:00:00.000Z"
    future = {"created": made, "first_seen": made, "last_seen": "9999-12-31T23:59:59.999Z"}
    assert sighting_time_us(future) == parse_timestamp(made)
    assert sighting_time_us({"created": made, "last_seen": "2025-12-31T00:00:00Z"}) < parse_timestamp(made)


# -- sightings: odd spellings ----------------------------------------------------------------


def test_quick_form_reads_odd_spellings_like_lookup(world):
    by = world.cert.identity
    ip6 = indicator(pattern="[ipv6-addr:value = '2001:db8::1']", tlp=Tlp.GREEN, created_by=by)
    dom = indicator(pattern="[domain-name:value = 'bad.example']", tlp=Tlp.GREEN, created_by=by)
    url = indicator(pattern="[url:value = 'http://evil.example/p']", tlp=Tlp.GREEN, created_by=by)
    net = indicator(pattern="[ipv4-addr:value = '203.0.113.0/24']", tlp=Tlp.GREEN, created_by=by)
    idn = indicator(pattern="[domain-name:value = 'xn--bcher-kva.example']", tlp=Tlp.GREEN, created_by=by)
    world.add(world.cert, [ip6, dom, url, net, idn])
    svc = sighter(world)
    cases = [
        ("2001:0DB8:0000:0000:0000:0000:0000:0001", ip6, "exact"),
        ("2001:DB8::1", ip6, "exact"),
        ("BAD.EXAMPLE", dom, "exact"),
        ("bad.example.", dom, "exact"),
        ("WWW.Bad.Example", dom, "subdomain-of"),
        ("HTTP://Evil.Example:80/p", url, "exact"),
        ("hxxp://evil[.]example/p", url, "exact"),
        ("203.0.113.0/24", net, "exact"),
        ("203.0.113.77", net, "contained-in"),
        ("  203.0.113.78  ", net, "contained-in"),
        ("bücher.example", idn, "exact"),
    ]
    for value, target, relation in cases:
        made = svc.sight(world.op.principal, "main", value)
        assert [(m.indicator_id, m.matched) for m in made] == [(target["id"], relation)], value
    # a wider network than any indicator states is not "stated" by them
    with pytest.raises(NotFound):
        svc.sight(world.op.principal, "main", "203.0.0.0/16")
    for junk in ("", "   ", "[2001:db8::1]x", "a" * 5000, "http://", "\x00"):
        with pytest.raises(InvalidParameter):
            svc.sight(world.op.principal, "main", junk)


def test_counts_at_the_limits_and_wrong_types(world):
    ind = indicator("203.0.113.91", tlp=Tlp.GREEN, created_by=world.cert.identity)
    world.add(world.cert, [ind])
    svc = sighter(world)
    [zero] = svc.sight(world.op.principal, "main", "203.0.113.91", 0)
    [top] = svc.sight(world.op.principal, "main", "203.0.113.91", 999_999_999)
    assert (zero.sighting["count"], top.sighting["count"]) == (0, 999_999_999)
    assert sightings_of(world, world.cert, "203.0.113.91") == 999_999_999
    for bad in (-1, -(2 ** 63), 2 ** 64, 1.0, "3", None):
        with pytest.raises(InvalidParameter, match="count must be"):
            svc.sight(world.op.principal, "main", "203.0.113.91", bad)
    assert sightings_of(world, world.cert, "203.0.113.91") == 999_999_999  # nothing more stored


def test_seen_times_in_odd_formats(world):
    world.add(world.cert, [indicator("203.0.113.92", tlp=Tlp.GREEN, created_by=world.cert.identity)])
    svc = sighter(world)
    [d] = svc.sight(world.op.principal, "main", "203.0.113.92", first_seen="2026-01-05",
                    last_seen=" 2026-01-06 ")
    assert (d.sighting["first_seen"], d.sighting["last_seen"]) == (
        "2026-01-05T00:00:00.000Z", "2026-01-06T00:00:00.000Z")
    [only_last] = svc.sight(world.op.principal, "main", "203.0.113.92", last_seen=ts(3600))
    assert only_last.sighting["first_seen"] == only_last.sighting["last_seen"] == ts(3600)
    for bad in ("2026-02-30", "2026-13-01", "2026-01-01T25:00:00Z", "1767225600", "2026-01-01 10:00",
                "", "2026-01-01T00:00:00.000+00:00", "now", "2026-01-01T00:00:00.000Z\x00"):
        with pytest.raises(InvalidParameter, match="first_seen"):
            svc.sight(world.op.principal, "main", "203.0.113.92", first_seen=bad)
    with pytest.raises(InvalidParameter, match="earlier than first_seen"):
        svc.sight(world.op.principal, "main", "203.0.113.92", first_seen="2026-01-06",
                  last_seen="2026-01-05T23:59:59.999Z")
    # only first_seen, later than now: last_seen follows it (never earlier)
    [ahead] = svc.sight(world.op.principal, "main", "203.0.113.92", first_seen=ts(20 * 86400))
    assert ahead.sighting["last_seen"] >= ahead.sighting["first_seen"]
    # sub-millisecond precision is kept exactly or refused, never silently reordered
    [fine] = svc.sight(world.op.principal, "main", "203.0.113.92",
                       first_seen="2026-01-01T00:00:00.000001Z", last_seen="2026-01-01T00:00:00.000002Z")
    assert parse_timestamp(fine.sighting["first_seen"]) <= parse_timestamp(fine.sighting["last_seen"])


def test_where_text_with_control_characters_round_trips_or_is_refused(world):
    world.add(world.cert, [indicator("203.0.113.93", tlp=Tlp.GREEN, created_by=world.cert.identity)])
    svc = sighter(world)
    for where in ("edge\x00router", "ünïcødé 🚨", "x" * 1024, "\ud800"):
        try:
            [made] = svc.sight(world.op.principal, "main", "203.0.113.93", where=where)
        except InputError as exc:  # InvalidParameter / InvalidStixObject: a clear refusal
            assert exc.message
            continue
        page = world.exchange.query.objects(world.op.principal, world.cid,
                                            ObjectFilter(ids=(made.sighting["id"],)))
        [stored] = [orjson.loads(r.raw) for r in page.rows]
        assert stored["description"] == where


# -- sightings: TLP ------------------------------------------------------------------------


def test_hidden_only_values_answer_like_no_indicator_in_every_form(world):
    by = world.cert.identity
    world.add(world.cert, [
        indicator(pattern="[ipv4-addr:value = '10.66.0.0/16']", tlp=Tlp.AMBER_STRICT, created_by=by),
        indicator(pattern="[domain-name:value = 'hidden.example']", tlp=Tlp.AMBER, created_by=by),
        indicator(pattern="[url:value = 'http://hidden.example/x']", tlp=Tlp.AMBER, created_by=by),
        indicator(pattern="[ipv6-addr:value = '2001:db8:66::/48']", tlp=Tlp.RED,
                  recipients=[world.op.identity], created_by=by),
    ])
    svc = sighter(world)
    pairs = [("10.66.1.1", "10.67.1.1"), ("www.hidden.example", "www.absent.example"),
             ("HIDDEN.EXAMPLE", "ABSENT.EXAMPLE"), ("http://hidden.example/x", "http://absent.example/x"),
             ("x@hidden.example", "x@absent.example"), ("2001:db8:66::1", "2001:db8:67::1")]
    app = create_app(world.exchange)
    with TestClient(app) as client:
        for who in (world.vendor, world.op):
            auth = {"Authorization": f"Bearer {who.token}"}
            for hidden, absent in pairs:
                if who is world.op and hidden not in ("10.66.1.1", "2001:db8:66::1"):
                    continue  # the Operator (AMBER) sees the domain and URL ones
                messages, http = [], []
                for value in (hidden, absent):
                    with pytest.raises(NotFound) as exc:
                        svc.sight(who.principal, "main", value, tlp=Tlp.CLEAR)
                    messages.append(exc.value.message.replace(repr(value), "V"))
                    r = client.post("/api/sightings", json={"value": value, "community": "main"},
                                    headers=auth)
                    http.append((r.status_code, r.json()["description"].replace(repr(value), "V")))
                assert messages[0] == messages[1], (who.org, hidden)
                assert http[0] == http[1] and http[0][0] == 404, (who.org, hidden)
    for who in (world.cert, world.op, world.vendor, world.user):
        assert sightings_of(world, who, "10.66.1.1") == 0
        assert sightings_of(world, who, "hidden.example") == 0


def test_sighting_by_reference_to_a_hidden_indicator_reveals_nothing(world):
    """TAXII-style sightings and opinions naming an id the poster cannot see answer exactly
    as for an id that does not exist, and are counted only where the object is visible."""
    hidden = indicator("10.77.0.1", tlp=Tlp.AMBER_STRICT, created_by=world.cert.identity)
    world.add(world.cert, [hidden])
    ghost = f"indicator--{uuid.uuid4()}"

    def sighting_of(ref):
        return {"type": "sighting", "spec_version": "2.1", "id": f"sighting--{uuid.uuid4()}",
                "created": ts(60), "modified": ts(60), "sighting_of_ref": ref, "count": 5,
                "object_marking_refs": [TLP2_MARKING_BY_LEVEL[Tlp.GREEN]]}

    def opinion_on(ref):
        return {"type": "opinion", "spec_version": "2.1", "id": f"opinion--{uuid.uuid4()}",
                "created": ts(60), "modified": ts(60), "object_refs": [ref], "opinion": "disagree",
                "object_marking_refs": [TLP2_MARKING_BY_LEVEL[Tlp.GREEN]]}

    outcomes = []
    for ref in (hidden["id"], ghost):
        report = world.exchange.ingest.add_objects(world.vendor.principal, world.cid,
                                                   [sighting_of(ref), opinion_on(ref)])
        outcomes.append(sorted(f.message.replace(ref, "REF") for f in report.failures))
    assert outcomes[0] == outcomes[1], outcomes
    # the Vendor cannot see the indicator, so no count reaches it through any value
    answer = world.exchange.lookup.lookup(world.vendor.principal, ["10.77.0.1"])[0]
    assert (answer.matches, answer.sightings, sum(answer.opinions.values())) == ([], 0, 0)
    # the Operator (AMBER) cannot see the AMBER+STRICT indicator either
    answer = world.exchange.lookup.lookup(world.op.principal, ["10.77.0.1"])[0]
    assert (answer.matches, answer.sightings, sum(answer.opinions.values())) == ([], 0, 0)


def test_red_sighting_never_reaches_uncleared_members(world):
    ind = indicator("203.0.113.94", tlp=Tlp.CLEAR, created_by=world.vendor.identity)
    world.add(world.vendor, [ind])
    sighter(world).sight(world.op.principal, "main", "203.0.113.94", 7, tlp=Tlp.RED)
    # the Vendor is named as recipient but cleared for GREEN only: nothing reaches it
    assert {m.org: sightings_of(world, m, "203.0.113.94")
            for m in (world.cert, world.op, world.vendor, world.user)} == {
        "CERT": 0, "Operator": 7, "Vendor": 0, "Hospital": 0}
    # nor does it restart the Vendor's decay
    assert life(world).last_sightings(world.vendor.principal, "main") == {}


# -- sightings far in the future ----------------------------------------------------------


def test_future_sighting_by_another_member_does_not_break_the_producers_lifecycle(world, database_url):
    # A sighting dated up to year 9999 (any member, any visible indicator) neither breaks
    # the producer's scores and expiry (times are capped at what STIX can state) nor
    # holds the decay off (it counts from when the sighting was made).
    ind = indicator("203.0.113.95", tlp=Tlp.GREEN, created_by=world.cert.identity, confidence=90)
    world.add(world.cert, [ind])
    try:
        sighter(world).sight(world.vendor.principal, "main", "203.0.113.95",
                             first_seen="9999-12-30", last_seen="9999-12-31T23:59:59.999Z")
    except InvalidParameter:
        return
    svc = life(world)
    [s] = svc.scores(world.cert.principal, "main")
    assert s.score == 90.0
    svc.expire(world.cert.principal, "main", dry_run=True)
    result = cli(database_url, "lifecycle", "scores", "--community", "main", "--user", world.cert.user)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception


def test_future_sighting_cannot_extend_past_the_producers_explicit_end(world):
    ind = indicator("203.0.113.96", tlp=Tlp.GREEN, created_by=world.cert.identity, confidence=90,
                    valid_until=ts(30 * 86400))
    world.add(world.cert, [ind])
    sighter(world).sight(world.op.principal, "main", "203.0.113.96",
                         first_seen="2030-01-01", last_seen="2030-01-02")
    svc = life(world)
    [s] = svc.scores(world.cert.principal, "main")
    assert s.expires_us <= T0 + 30 * DAY_US  # the producer's end stands
    for change in svc.expire(world.cert.principal, "main").changes:
        assert parse_timestamp(change.valid_until) <= T0 + 30 * DAY_US
    assert versions(world, world.cert, ind["id"])[-1]["valid_until"] == ts(30 * 86400)


# -- expiry ------------------------------------------------------------------------------


def test_expire_of_odd_validity_windows_keeps_valid_until_after_valid_from(world):
    by = world.cert.identity
    future = indicator("203.0.113.97", tlp=Tlp.GREEN, created_by=by, valid_from=ts(40 * 86400))
    weak_future = indicator("203.0.113.98", tlp=Tlp.GREEN, created_by=by, confidence=5,
                            valid_from=ts(40 * 86400))
    world.add(world.cert, [future, weak_future])
    svc = life(world)
    report = svc.expire(world.cert.principal, "main", revoke=[future["id"]])
    assert not report.failures
    for obj in (future, weak_future):
        latest = versions(world, world.cert, obj["id"])[-1]
        assert latest["revoked"] is True
        assert parse_timestamp(latest["valid_until"]) > parse_timestamp(latest["valid_from"]), obj["id"]
    assert svc.expire(world.cert.principal, "main").changes == []


def test_inverted_validity_window_is_refused_or_never_written_back(world):
    bad = indicator("203.0.113.99", tlp=Tlp.GREEN, created_by=world.cert.identity,
                    valid_from=ts(5000), valid_until=ts(1000))
    report = world.exchange.ingest.add_objects(world.cert.principal, world.cid, [bad])
    if report.failures:
        assert "valid_until" in report.failures[0].message
        assert life(world).scores(world.cert.principal, "main") == []
        return
    done = life(world).expire(world.cert.principal, "main", revoke=[bad["id"]])
    for change in done.changes:
        assert parse_timestamp(change.valid_until) > parse_timestamp(bad["valid_from"])


def test_refused_revoke_writes_nothing_at_all(world):
    mine = indicator("203.0.113.100", tlp=Tlp.GREEN, created_by=world.cert.identity, confidence=5)
    theirs = indicator("203.0.113.101", tlp=Tlp.AMBER_STRICT, created_by=world.op.identity)
    world.add(world.cert, [mine])
    world.add(world.op, [theirs])
    svc = life(world)
    messages = []
    for foreign in (theirs["id"], f"indicator--{uuid.uuid4()}", "", "not an id", theirs["id"].upper()):
        with pytest.raises(NotFound, match="no indicator of your organisation") as exc:
            svc.expire(world.cert.principal, "main", revoke=[mine["id"], foreign])
        messages.append(exc.value.message.replace(repr(foreign), "X"))
    assert len(set(messages)) == 1  # a hidden indicator answers like a missing one
    assert len(versions(world, world.cert, mine["id"])) == 1  # the valid revoke was not written
    assert len(versions(world, world.op, theirs["id"])) == 1
    with pytest.raises(InputTooLarge, match=str(MAX_REVOKE)):
        svc.expire(world.cert.principal, "main", revoke=[mine["id"]] * (MAX_REVOKE + 1))
    assert len(versions(world, world.cert, mine["id"])) == 1
    # revoking the same id twice in one call writes one version
    report = svc.expire(world.cert.principal, "main", revoke=[mine["id"], mine["id"]])
    assert [c.id for c in report.changes] == [mine["id"]]
    assert len(versions(world, world.cert, mine["id"])) == 2


def test_revoked_on_request_is_never_changed_again_even_after_sightings(world):
    ind = indicator("203.0.113.102", tlp=Tlp.GREEN, created_by=world.cert.identity, confidence=90)
    world.add(world.cert, [ind])
    life(world, at(1)).expire(world.cert.principal, "main", revoke=[ind["id"]])
    with pytest.raises(NotFound):  # revoked: no longer sighted
        sighter(world, at(2)).sight(world.op.principal, "main", "203.0.113.102")
    assert life(world, at(3)).expire(world.cert.principal, "main").changes == []
    [s] = life(world, at(3)).scores(world.cert.principal, "main")
    assert s.revoked and s.score == 0.0
    assert len(versions(world, world.cert, ind["id"])) == 2


def test_dry_run_changes_nothing_and_matches_the_real_run(world):
    objs = [indicator(f"203.0.114.{i}", tlp=Tlp.GREEN, created_by=world.cert.identity,
                      confidence=c) for i, c in enumerate((0, 20, 90, 100))]
    world.add(world.cert, objs)
    svc = life(world, at(3))
    dry = svc.expire(world.cert.principal, "main", dry_run=True)
    dry_again = svc.expire(world.cert.principal, "main", dry_run=True)
    assert [c.to_json() for c in dry.changes] == [c.to_json() for c in dry_again.changes]
    assert all(len(versions(world, world.cert, o["id"])) == 1 for o in objs)
    real = svc.expire(world.cert.principal, "main")
    assert [c.to_json() for c in real.changes] == [c.to_json() for c in dry.changes]
    revoked = {c.id for c in real.changes if c.revoked}
    assert revoked == {objs[0]["id"], objs[1]["id"]}  # at or under the revoke score 20
    assert svc.expire(world.cert.principal, "main").changes == []
    assert svc.expire(world.cert.principal, "main", dry_run=True).changes == []


def test_concurrent_expire_writes_each_version_once(world):
    objs = [indicator(f"203.0.115.{i}", tlp=Tlp.GREEN, created_by=world.cert.identity, confidence=60)
            for i in range(20)]
    world.add(world.cert, objs)
    barrier = threading.Barrier(3)
    results, errors = [], []

    def run():
        barrier.wait()
        try:
            results.append(life(world, at(5)).expire(world.cert.principal, "main"))
        except Exception as exc:  # noqa: BLE001 - what escapes is the finding
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert all(isinstance(e, CommonWatchError) for e in errors), errors
    assert results, errors
    for o in objs:
        history = versions(world, world.cert, o["id"])
        assert len(history) == 2, o["id"]
        assert "valid_until" in history[-1]
    assert life(world, at(5)).expire(world.cert.principal, "main").changes == []


def test_expire_of_many_indicators_crosses_batches(world):
    n = 1003
    objs = [indicator(f"10.{i // 250}.{i % 250}.1", tlp=Tlp.GREEN, created_by=world.cert.identity,
                      confidence=10 if i % 2 else 80) for i in range(n)]
    report = world.exchange.ingest.add_objects(world.cert.principal, world.cid, objs)
    assert not report.failures
    svc = life(world, at(1))
    assert len(svc.scores(world.cert.principal, "main")) == n
    done = svc.expire(world.cert.principal, "main")
    assert len(done.changes) == n and not done.failures
    assert sum(c.revoked for c in done.changes) == n // 2
    assert svc.expire(world.cert.principal, "main").changes == []
    assert len(versions(world, world.cert, objs[-1]["id"])) == 2


# -- CLI and HTTP ----------------------------------------------------------------------------


def test_cli_refuses_bad_input_without_tracebacks(world, database_url):
    world.add(world.cert, [indicator("203.0.113.103", tlp=Tlp.GREEN, created_by=world.cert.identity)])
    sight = ["sight", "--community", "main", "--user", world.op.user]
    cases = [
        ([*sight, "203.0.113.103", "--first-seen", "2026-02-30"], 2, "first_seen"),
        ([*sight, "203.0.113.103", "--first-seen", ts(50), "--last-seen", ts(40)], 2, "earlier"),
        ([*sight, "203.0.113.103", "--count", "1000000000"], 2, "count"),
        ([*sight, "203.0.113.103", "--count", "1.5"], 2, "count"),
        ([*sight, "203.0.113.103", "--where", "w" * 1025], 2, "1024"),
        ([*sight, ""], 2, ""),
        ([*sight, "203.0.113.104"], 3, "no indicator you can see"),
        (["sight", "--community", "nowhere", "--user", world.op.user, "203.0.113.103"], 3, "nowhere"),
        (["lifecycle", "expire", "--community", "main", "--user", world.cert.user, "--revoke", "x"], 3,
         "no indicator of your organisation"),
        (["lifecycle", "scores", "--community", "nowhere", "--user", world.cert.user], 3, "nowhere"),
        (["lifecycle", "scores", "--community", "main", "--user", "nobody"], 3, "nobody"),
    ]
    for args, code, words in cases:
        result = cli(database_url, *args)
        assert result.exit_code == code, (args, result.output)
        assert result.exception is None or isinstance(result.exception, SystemExit), (args, result.exception)
        assert words in result.output, (args, result.output)
    assert sightings_of(world, world.cert, "203.0.113.103") == 0


def test_http_sightings_refuse_bad_bodies_with_400(world):
    world.add(world.cert, [indicator("203.0.113.105", tlp=Tlp.GREEN, created_by=world.cert.identity)])
    auth = {"Authorization": f"Bearer {world.op.token}"}
    good = {"value": "203.0.113.105", "community": "main"}
    bad_bodies = [
        {**good, "count": 1.5}, {**good, "count": -1}, {**good, "count": 10 ** 30},
        {**good, "count": None}, {**good, "first_seen": "2026-02-30"},
        {**good, "first_seen": ts(50), "last_seen": ts(40)}, {**good, "first_seen": 1767225600},
        {**good, "tlp": ""}, {**good, "tlp": "red; drop"}, {**good, "anonymous": "maybe"},
        {**good, "value": ""}, {**good, "value": "x" * 3000}, {**good, "where": "w" * 1025},
        {"community": "main"}, {**good, "value": ["203.0.113.105"]}, [good], "text", None,
    ]
    with TestClient(create_app(world.exchange)) as client:
        for body in bad_bodies:
            r = client.post("/api/sightings", json=body, headers=auth)
            assert r.status_code == 400, (body, r.status_code, r.text)
            assert r.json().get("description"), (body, r.text)
        raw = client.post("/api/sightings", content=b"{not json", headers={
            **auth, "Content-Type": "application/json"})
        assert raw.status_code == 400, raw.text
        nul = client.post("/api/sightings", json={**good, "where": "a\x00b"}, headers=auth)
        assert nul.status_code in (201, 400), nul.text
        ok = client.post("/api/sightings", json={**good, "count": 0, "tlp": "TLP:AMBER+STRICT"},
                         headers=auth)
        assert ok.status_code == 201, ok.text
        assert ok.json()["sightings"][0]["sighting"]["object_marking_refs"] == [
            TLP2_MARKING_BY_LEVEL[Tlp.AMBER_STRICT]]
    expected = 0 if nul.status_code == 400 else 1
    assert sightings_of(world, world.cert, "203.0.113.105") == expected


def test_too_many_matching_indicators_are_refused_and_nothing_is_stored(world):
    objs = [indicator("10.200.0.1", tlp=Tlp.GREEN, created_by=world.cert.identity) for _ in range(1001)]
    assert not world.exchange.ingest.add_objects(world.cert.principal, world.cid, objs).failures
    with pytest.raises(InputTooLarge, match="1001"):
        sighter(world).sight(world.op.principal, "main", "10.200.0.1")
    assert sightings_of(world, world.cert, "10.200.0.1") == 0
    assert life(world).last_sightings(world.cert.principal, "main") == {}


def test_write_only_member_sights_only_its_own_indicators(world):
    world.exchange.admin.set_membership("Vendor", "main", False, True, Tlp.GREEN)
    theirs = indicator("203.0.113.120", tlp=Tlp.CLEAR, created_by=world.cert.identity)
    mine = indicator("203.0.113.121", tlp=Tlp.GREEN, created_by=world.vendor.identity)
    world.add(world.cert, [theirs])
    world.add(world.vendor, [mine])
    svc = sighter(world)
    messages = []
    for value in ("203.0.113.120", "203.0.113.122"):
        with pytest.raises(NotFound) as exc:
            svc.sight(world.vendor.principal, "main", value)
        messages.append(exc.value.message.replace(repr(value), "V"))
    assert messages[0] == messages[1]
    [own] = svc.sight(world.vendor.principal, "main", "203.0.113.121", 2, tlp=Tlp.RED)
    assert own.indicator_id == mine["id"] and "extensions" not in own.sighting
    assert sightings_of(world, world.cert, "203.0.113.120") == 0
    assert sightings_of(world, world.cert, "203.0.113.121") == 0  # RED, and not addressed to the CERT


def test_opinions_and_sightings_on_a_visible_indicator_reach_exactly_its_readers(world):
    ind = indicator("10.78.0.1", tlp=Tlp.AMBER_STRICT, created_by=world.cert.identity)
    world.add(world.cert, [ind])
    opinion = {"type": "opinion", "spec_version": "2.1", "id": f"opinion--{uuid.uuid4()}",
               "created": ts(60), "modified": ts(60), "object_refs": [ind["id"]], "opinion": "agree",
               "object_marking_refs": [TLP2_MARKING_BY_LEVEL[Tlp.CLEAR]]}
    world.add(world.user, [opinion])  # the Hospital sees the indicator
    sighter(world).sight(world.user.principal, "main", "10.78.0.1", 4, tlp=Tlp.CLEAR)
    seen = {m.org: world.exchange.lookup.lookup(m.principal, ["10.78.0.1"])[0]
            for m in (world.cert, world.op, world.vendor, world.user)}
    for org in ("CERT", "Hospital"):
        assert (seen[org].sightings, seen[org].opinions.get("agree")) == (4, 1), org
    for org in ("Operator", "Vendor"):  # the CLEAR opinion/sighting must not reveal the hidden indicator
        assert (seen[org].matches, seen[org].sightings, sum(seen[org].opinions.values())) == ([], 0, 0), org
