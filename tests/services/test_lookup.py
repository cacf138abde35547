"""Lookup and correlation: matches, containment, sightings, opinions, and no leaks."""

from __future__ import annotations

import itertools
import uuid

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from commonwatch.domain.markings import TLP2_MARKING_BY_LEVEL, Tlp
from commonwatch.services.query import ObjectFilter, VersionSelector

from support.factories import indicator, ipv4, make_member, ts

_run = itertools.count()


def _federation(exchange, run="x"):
    cert = make_member(exchange, f"CERT {run}", "government")
    op = make_member(exchange, f"Operator {run}", "operator")
    vendor = make_member(exchange, f"Vendor {run}", "vendor")
    exchange.admin.create_community(f"main-{run}")
    for m, tlp in ((cert, Tlp.RED), (op, Tlp.AMBER), (vendor, Tlp.GREEN)):
        exchange.admin.set_membership(m.org, f"main-{run}", True, True, tlp)
    return cert, op, vendor, exchange.admin.get_community(f"main-{run}").collection_id


def _sighting(of: str, count: int, tlp: Tlp, created_by: str | None = None, n: int = 5) -> dict:
    obj = {"type": "sighting", "spec_version": "2.1", "id": f"sighting--{uuid.uuid4()}",
           "created": ts(n), "modified": ts(n), "sighting_of_ref": of, "count": count,
           "first_seen": ts(n - 2), "last_seen": ts(n + 100),
           "object_marking_refs": [TLP2_MARKING_BY_LEVEL[tlp]]}
    if created_by:
        obj["created_by_ref"] = created_by
    return obj


def _opinion(about: str, opinion: str, n: int = 7) -> dict:
    return {"type": "opinion", "spec_version": "2.1", "id": f"opinion--{uuid.uuid4()}",
            "created": ts(n), "modified": ts(n), "object_refs": [about], "opinion": opinion,
            "object_marking_refs": [TLP2_MARKING_BY_LEVEL[Tlp.GREEN]]}


def _ok(exchange, member, cid, objects):
    report = exchange.ingest.add_objects(member.principal, cid, objects)
    assert not report.failures, report.failures


def test_lookup_finds_exact_contained_and_parent_matches(exchange):
    cert, op, vendor, cid = _federation(exchange)
    exact = indicator("203.0.113.5", tlp=Tlp.GREEN, created_by=cert.identity)
    net = indicator(pattern="[ipv4-addr:value = '198.51.100.0/24']", tlp=Tlp.AMBER)
    domain = indicator(pattern="[domain-name:value = 'Bad-Example.COM']", tlp=Tlp.GREEN)
    _ok(exchange, cert, cid, [exact, net, domain, ipv4("203.0.113.5", Tlp.CLEAR)])

    answers = exchange.lookup.lookup(op.principal, [
        "203.0.113.5", "198.51.100.77", "hxxps://www.bad-example[.]com/login", "8.8.8.8",
        "192.0.2.1", "no such thing !",
    ])
    first, contained, url, dns, unknown, junk = (a.to_json() for a in answers)
    assert {m["id"] for m in first["matches"]} == {exact["id"], ipv4("203.0.113.5")["id"]}
    assert first["reporters"] == [{"organisation": cert.org, "sector": "government"},
                                  {"organisation": None, "sector": "government"}] or \
        {(r["organisation"], r["sector"]) for r in first["reporters"]} == {
            (cert.org, "government"), (None, "government")}
    assert [(m["id"], m["matched"]["relation"], m["matched"]["value"]) for m in contained["matches"]] == [
        (net["id"], "contained-in", "198.51.100.0/24")]
    assert url["kind"] == "url" and url["normalised"] == "https://www.bad-example.com/login"
    assert [(m["id"], m["matched"]["relation"]) for m in url["matches"]] == [(domain["id"], "subdomain-of")]
    assert dns["found"] is False and "public-dns-resolvers" in dns["warninglists"]
    assert unknown["found"] is False and unknown["matches"] == []
    assert "error" in junk and "not an IP address" in junk["error"]


def test_lookup_respects_tlp_and_counts_only_visible_sightings(exchange):
    cert, op, vendor, cid = _federation(exchange)
    ind = indicator("203.0.113.9", tlp=Tlp.GREEN, created_by=cert.identity)
    hidden = indicator("203.0.113.9", tlp=Tlp.AMBER)
    _ok(exchange, cert, cid, [ind, hidden])
    _ok(exchange, op, cid, [_sighting(ind["id"], 5, Tlp.GREEN), _sighting(ind["id"], 7, Tlp.AMBER)])
    _ok(exchange, vendor, cid, [_opinion(ind["id"], "disagree")])
    _ok(exchange, op, cid, [_opinion(ind["id"], "strongly-agree")])

    as_vendor = exchange.lookup.lookup(vendor.principal, ["203.0.113.9"])[0].to_json()
    assert [m["id"] for m in as_vendor["matches"]] == [ind["id"]]  # AMBER indicator hidden
    assert as_vendor["sightings"] == {"count": 5, "reports": 1,  # AMBER sighting not counted
                                      "by": [{"organisation": None, "sector": None}]}  # names nobody
    assert as_vendor["opinions"]["disagree"] == 1 and as_vendor["opinions"]["strongly-agree"] == 1
    assert as_vendor["opinions_by_sector"]["vendor"]["disagree"] == 1
    assert as_vendor["opinions_by_sector"]["operator"]["strongly-agree"] == 1
    assert as_vendor["first_seen"] == ts(0) and as_vendor["last_seen"] == ts(105)

    as_op = exchange.lookup.lookup(op.principal, ["203.0.113.9"])[0].to_json()
    assert {m["id"] for m in as_op["matches"]} == {ind["id"], hidden["id"]}
    assert (as_op["sightings"]["count"], as_op["sightings"]["reports"]) == (12, 2)

    stranger = make_member(exchange, "Stranger", "other")
    nothing = exchange.lookup.lookup(stranger.principal, ["203.0.113.9"])[0].to_json()
    unknown = exchange.lookup.lookup(stranger.principal, ["203.0.113.10"])[0].to_json()
    assert {k: v for k, v in nothing.items() if k not in ("value", "normalised")} == {
        k: v for k, v in unknown.items() if k not in ("value", "normalised")}


def test_deleting_an_object_removes_it_from_lookups(exchange):
    cert, op, vendor, cid = _federation(exchange)
    ind = indicator("203.0.113.77", tlp=Tlp.GREEN)
    _ok(exchange, cert, cid, [ind])
    assert exchange.lookup.lookup(op.principal, ["203.0.113.77"])[0].matches
    every_version = ObjectFilter(versions=VersionSelector(all=True))
    exchange.ingest.delete_object(cert.principal, cid, ind["id"], every_version)
    assert not exchange.lookup.lookup(op.principal, ["203.0.113.77"])[0].matches


def test_a_newer_version_replaces_the_older_values(exchange):
    cert, op, vendor, cid = _federation(exchange)
    ind = indicator("203.0.113.20", tlp=Tlp.GREEN)
    newer = dict(ind, modified=ts(50), pattern="[ipv4-addr:value = '203.0.113.21']")
    _ok(exchange, cert, cid, [ind])
    _ok(exchange, cert, cid, [newer])
    old, new = exchange.lookup.lookup(op.principal, ["203.0.113.20", "203.0.113.21"])
    assert old.matches == [] and [m.id for m in new.matches] == [ind["id"]]


def test_bulk_lookup_refuses_too_many_values(exchange):
    cert, *_ = _federation(exchange)
    from commonwatch.errors import InputTooLarge
    from commonwatch.services.lookup import MAX_VALUES
    try:
        exchange.lookup.lookup(cert.principal, ["1.1.1.1"] * (MAX_VALUES + 1))
    except InputTooLarge as exc:
        assert str(MAX_VALUES) in exc.message
    else:
        raise AssertionError("an oversized lookup was accepted")


# -- leak property: what lookup reports equals the reference visibility model ------------
N_ORGS = 3
tlps = st.integers(0, 4)


@st.composite
def worlds(draw):
    members = draw(st.dictionaries(st.integers(0, N_ORGS - 1), st.tuples(st.booleans(), tlps), min_size=1))
    writers = sorted(members)
    objects = []
    for _ in range(draw(st.integers(1, 5))):
        objects.append((draw(st.sampled_from(writers)), draw(tlps),
                        draw(st.frozensets(st.integers(0, N_ORGS - 1))), draw(st.integers(0, 2))))
    sightings = [(draw(st.sampled_from(writers)), draw(st.integers(0, len(objects) - 1)), draw(tlps),
                  draw(st.integers(1, 50))) for _ in range(draw(st.integers(0, 4)))]
    return draw(tlps), members, objects, sightings


def _sees(org, members, producer, tlp, recipients):
    if org == producer:
        return True
    if org not in members:
        return False
    can_read, ceiling = members[org]
    return can_read and tlp <= ceiling and (tlp < 4 or org in recipients)


@settings(max_examples=20, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(world=worlds())
def test_lookup_reveals_exactly_what_the_model_allows(exchange, world):
    _default, members, objects, sightings = world
    run = next(_run)
    orgs = [make_member(exchange, f"L{run} org {i}") for i in range(N_ORGS)]
    name = f"lk{run}"
    exchange.admin.create_community(name)
    for org, (can_read, ceiling) in members.items():
        exchange.admin.set_membership(orgs[org].org, name, can_read, True, Tlp(ceiling))
    cid = exchange.admin.get_community(name).collection_id
    values = [f"10.{run % 250}.{i}.1" for i in range(3)]
    ids = []
    for producer, tlp, recipients, value in objects:
        obj = indicator(values[value], tlp=Tlp(tlp),
                        recipients=[orgs[r].identity for r in sorted(recipients)] or None)
        _ok(exchange, orgs[producer], cid, [obj])
        ids.append(obj["id"])
    for producer, target, tlp, count in sightings:
        _ok(exchange, orgs[producer], cid, [_sighting(ids[target], count, Tlp(tlp))])

    for org in range(N_ORGS):
        answers = exchange.lookup.lookup(orgs[org].principal, values)
        for v, answer in enumerate(answers):
            seen = {ids[i] for i, (p, t, r, value) in enumerate(objects)
                    if value == v and _sees(org, members, p, t, r)}
            assert {m.id for m in answer.matches} == seen
            expected_count = sum(count for p, target, t, count in sightings
                                 if ids[target] in seen and _sees(org, members, p, t, frozenset()))
            assert answer.sightings == expected_count


def test_an_object_matching_several_keys_is_listed_once(exchange):
    cert, op, vendor, cid = _federation(exchange)
    both = indicator(pattern="[ipv4-addr:value = '192.0.2.7' OR ipv4-addr:value = '192.0.2.0/24']",
                     tlp=Tlp.GREEN)
    _ok(exchange, cert, cid, [both])
    [answer] = exchange.lookup.lookup(op.principal, ["192.0.2.7"])
    assert [(m.id, m.key.relation) for m in answer.matches] == [(both["id"], "exact")]


def test_a_bulk_lookup_answers_each_value_as_a_single_lookup_does(exchange):
    """Values sharing index keys under different relations (a domain and its subdomain,
    a URL and its host), equal and defanged-equal values: the bulk answer of each value is
    its single answer, whatever else is in the list and in whichever order."""
    cert, op, vendor, cid = _federation(exchange)
    parent = indicator(pattern="[domain-name:value = 'example.org']", tlp=Tlp.GREEN, created_by=cert.identity)
    host = indicator(pattern="[domain-name:value = 'www.example.org' OR domain-name:value = 'example.org']",
                     tlp=Tlp.GREEN)
    page = indicator(pattern="[url:value = 'http://www.example.org/x']", tlp=Tlp.AMBER)
    address = indicator("192.0.2.9", tlp=Tlp.GREEN)
    net = indicator(pattern="[ipv4-addr:value = '192.0.2.0/24' OR ipv4-addr:value = '192.0.0.0/16']",
                    tlp=Tlp.GREEN)
    _ok(exchange, cert, cid, [parent, host, page, address, net])
    _ok(exchange, op, cid, [_sighting(parent["id"], 3, Tlp.GREEN), _sighting(address["id"], 4, Tlp.GREEN),
                            _opinion(host["id"], "agree")])
    values = ["www.example.org", "example.org", "http://www.example.org/x", "a.www.example.org",
              "192.0.2.9", "hxxp://192.0.2[.]9/a", "192.0.2.200", "example.org", "not a value !",
              "Example[.]org", "192.0.9.9"]
    singles = [exchange.lookup.lookup(op.principal, [v])[0].to_json() for v in values]
    bulk = exchange.lookup.lookup(op.principal, values)
    assert [a.to_json() for a in bulk] == singles
    backwards = exchange.lookup.lookup(op.principal, values[::-1])
    assert [a.to_json() for a in backwards] == singles[::-1]
    assert bulk[1].matches is not bulk[7].matches  # equal values share no mutable state

    by_value = dict(zip(values, singles, strict=True))
    assert {(m["id"], m["matched"]["relation"]) for m in by_value["example.org"]["matches"]} == {
        (parent["id"], "exact"), (host["id"], "exact")}
    # the closest key: www.example.org itself (exact) for host, the parent for parent
    assert {(m["id"], m["matched"]["value"]) for m in by_value["a.www.example.org"]["matches"]} == {
        (host["id"], "www.example.org"), (parent["id"], "example.org")}
    assert [(m["matched"]["value"]) for m in by_value["192.0.2.200"]["matches"]] == ["192.0.2.0/24"]
    assert by_value["192.0.2.9"]["sightings"]["count"] == 4
    assert by_value["hxxp://192.0.2[.]9/a"]["sightings"]["count"] == 4
    assert by_value["www.example.org"]["sightings"]["count"] == 3
    assert by_value["www.example.org"]["opinions"]["agree"] == 1


# -- leak property over several communities: one statement serves them all -------------------


@st.composite
def federations(draw):
    """Two communities with their own members and clearances; objects in either."""
    members = [draw(st.dictionaries(st.integers(0, N_ORGS - 1), st.tuples(st.booleans(), tlps), min_size=1))
               for _ in range(2)]
    objects = []
    for _ in range(draw(st.integers(1, 6))):
        c = draw(st.integers(0, 1))
        objects.append((c, draw(st.sampled_from(sorted(members[c]))), draw(tlps),
                        draw(st.frozensets(st.integers(0, N_ORGS - 1))), draw(st.integers(0, 2))))
    sightings = []
    for _ in range(draw(st.integers(0, 4))):
        target = draw(st.integers(0, len(objects) - 1))
        c = objects[target][0]
        producer = draw(st.sampled_from(sorted(members[c])))
        sightings.append((producer, target, draw(tlps), draw(st.integers(1, 50))))
    return members, draw(st.booleans()), objects, sightings


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(world=federations())
def test_lookup_over_several_communities_reveals_exactly_what_the_model_allows(exchange, world):
    members, public, objects, sightings = world
    run = next(_run)
    orgs = [make_member(exchange, f"M{run} org {i}") for i in range(N_ORGS)]
    names = [f"mc{run}a", f"mc{run}b"]
    cids = []
    for c, name in enumerate(names):
        exchange.admin.create_community(name, public=public and c == 1)
        for org, (can_read, ceiling) in members[c].items():
            exchange.admin.set_membership(orgs[org].org, name, can_read, True, Tlp(ceiling))
        cids.append(exchange.admin.get_community(name).collection_id)
    values = [f"10.{run % 250}.{i}.1" for i in range(3)]
    ids = []
    for c, producer, tlp, recipients, value in objects:
        obj = indicator(values[value], tlp=Tlp(tlp),
                        recipients=[orgs[r].identity for r in sorted(recipients)] or None)
        _ok(exchange, orgs[producer], cids[c], [obj])
        ids.append(obj["id"])
    for producer, target, tlp, count in sightings:
        _ok(exchange, orgs[producer], cids[objects[target][0]], [_sighting(ids[target], count, Tlp(tlp))])

    def sees(org, c, producer, tlp, recipients):
        if public and c == 1 and tlp == 0:  # a public community's TLP:CLEAR: everyone, anonymous too
            return True
        return org is not None and _sees(org, members[c], producer, tlp, recipients)

    for org in [*range(N_ORGS), None]:
        principal = orgs[org].principal if org is not None else None
        answers = exchange.lookup.lookup(principal, values + values[::-1])
        for v, answer in enumerate(answers):
            v = v if v < len(values) else 2 * len(values) - 1 - v
            seen = {(names[c], ids[i]) for i, (c, p, t, r, value) in enumerate(objects)
                    if value == v and sees(org, c, p, t, r)}
            assert {(m.community, m.id) for m in answer.matches} == seen
            expected = sum(count for p, target, t, count in sightings
                           if (names[objects[target][0]], ids[target]) in seen
                           and sees(org, objects[target][0], p, t, frozenset()))
            assert answer.sightings == expected
