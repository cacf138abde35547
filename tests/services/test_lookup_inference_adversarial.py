"""Adversarial inference hunt: the value lookup and the detection service.

DESIGN.md: "an object the requester cannot see answers exactly like an object that does
not exist ... counts, correlations and sighting totals include only what the requester
can see". The sound check used throughout: the same caller asks the same thing before and
after objects it may not see are written (or a clearance is lowered), and the whole answer
— every match, reporter, count, sighter, opinion tally, first/last seen, the HTTP status
and body, a detection run's alerts and summary — must be identical.

Beyond tests/services/test_leak_hunt.py and test_lookup*.py this covers: hidden objects
of every lookup kind (CIDRs at new prefix lengths, IPv6 networks, parent domains and
subdomains, URLs on a hidden host, e-mail domains, file hashes, copies of a visible SCO),
in a community the caller is not a member of, may only write to, or that is public;
visible sightings and opinions that point at ids only a hidden object carries; RED
naming a member not cleared for RED; clearances lowered after posting; anonymous
sightings; TLP markings the ingest misreads; and detection (summary, alerts, producer
naming, published sightings, refresh after a clearance change, refusals).
"""

from __future__ import annotations

import itertools
import json
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from commonwatch.cli.main import app
from commonwatch.clock import now_us
from commonwatch.domain.markings import (
    TLP2_EXTENSION_ID,
    TLP2_MARKING_BY_LEVEL,
    Tlp,
)
from commonwatch.errors import NotFound
from commonwatch.services.detect import DetectOptions, DetectService
from commonwatch.services.exchange import Exchange
from commonwatch.services.query import ObjectFilter, VersionSelector
from commonwatch.web.app import create_app

from support.factories import Member, indicator, ipv4, make_member, marked, new_version, ts

DAY = 86_400
_run = itertools.count()
EVERY_VERSION = ObjectFilter(versions=VersionSelector(all=True, last=False))

MD5 = "d41d8cd98f00b204e9800998ecf8427e"
SHA1 = "da39a3ee5e6b4b0d3255bfef95601890afd80709"
SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

#: Every kind of value, and the relations that reach stored keys: containing networks
#: (at lengths stored only by hidden objects too), parent domains, subdomains (which a
#: lookup does not reach), URLs on a domain or address host, e-mail domains, hashes.
VALUES = [
    "45.83.113.10", "45.83.113.11", "45.83.113.12", "45.83.113.200", "45.83.112.7", "45.83.112.0/24",
    "45.83.0.0/16", "45.9.9.9", "2001:db8:0:1::7", "2001:db8:1::9", "2001:db8::/48",
    "example-bad.test", "sub.example-bad.test", "a.sub.example-bad.test", "x.a.sub.example-bad.test",
    "elsewhere.test", "http://sub.example-bad.test/x", "hxxp://sub.example-bad[.]test/y",
    "http://45.83.113.12/z", "http://[2001:db8:1::9]/", "ops@example-bad.test", "OPS[@]example-bad[.]test",
    "noc@elsewhere.test", MD5, MD5.upper(), SHA1, SHA256, "not a value !",
]


# -- helpers -----------------------------------------------------------------------------------
def sighting(target: str, *, count: int = 7, seen: int = 5 * DAY, by: str | None = None,
             sid: str | None = None) -> dict[str, Any]:
    obj = {"type": "sighting", "spec_version": "2.1", "id": sid or f"sighting--{uuid.uuid4()}",
           "created": ts(seen), "modified": ts(seen), "sighting_of_ref": target, "count": count,
           "first_seen": ts(seen - 60), "last_seen": ts(seen)}
    if by:
        obj["created_by_ref"] = by
    return obj


def opinion(targets: list[str], value: str = "strongly-disagree", *, by: str | None = None) -> dict[str, Any]:
    obj = {"type": "opinion", "spec_version": "2.1", "id": f"opinion--{uuid.uuid4()}",
           "created": ts(100), "modified": ts(100), "opinion": value, "object_refs": targets}
    if by:
        obj["created_by_ref"] = by
    return obj


def sco(kind: str, **props: Any) -> dict[str, Any]:
    key = json.dumps(props, sort_keys=True)
    return {"type": kind, "spec_version": "2.1", "id": f"{kind}--{uuid.uuid5(uuid.NAMESPACE_URL, key)}",
            **props}


def add(exchange: Exchange, member: Member, cid: str, objects: list[dict[str, Any]]) -> None:
    report = exchange.ingest.add_objects(member.principal, cid, objects)
    assert not report.failures, [f.message for f in report.failures]


def bearer(member: Member) -> dict[str, str]:
    return {"Authorization": f"Bearer {member.token}"}


def http_answer(client: TestClient, member: Member | None, values: list[str]) -> list[tuple[int, bytes]]:
    """Status and raw body of the bulk form, and of the single form for a few values."""
    headers = bearer(member) if member else {}
    out = [(r.status_code, r.content) for r in [client.post("/api/lookup", json={"values": values},
                                                            headers=headers)]]
    for value in values[:4]:
        r = client.get("/api/lookup", params={"value": value}, headers=headers)
        out.append((r.status_code, r.content))
    return out


@pytest.fixture
def client(exchange: Exchange):
    with TestClient(create_app(exchange)) as c:
        yield c


# Caller clearance, level of what is hidden, and whether a RED object also names the caller.
HIDDEN = [
    pytest.param(Tlp.GREEN, Tlp.AMBER, False, id="green-vs-amber"),
    pytest.param(Tlp.AMBER, Tlp.AMBER_STRICT, False, id="amber-vs-amber+strict"),
    pytest.param(Tlp.RED, Tlp.RED, False, id="red-cleared-not-named"),
    pytest.param(Tlp.AMBER_STRICT, Tlp.RED, True, id="red-named-not-cleared"),
]
_HIDDEN_VALUES = [tuple(p.values) for p in HIDDEN]


class World:
    """Producer A (government, RED everywhere), caller B, vendor C (GREEN) in 'main';
    A alone in 'secret'; B write-only in 'wo'; 'pub' is public (B not a member)."""

    def __init__(self, exchange: Exchange, clearance: Tlp) -> None:
        n = next(_run)
        self.x = exchange
        self.a = make_member(exchange, f"Producer {n}", "government")
        self.b = make_member(exchange, f"Caller {n}", "operator")
        self.c = make_member(exchange, f"Vendor {n}", "vendor")
        self.names = {w: f"{w}-{n}" for w in ("main", "secret", "wo", "pub")}
        self.cids: dict[str, str] = {}
        for where, name in self.names.items():
            exchange.admin.create_community(name, default_tlp=Tlp.GREEN, public=where == "pub")
            exchange.admin.set_membership(self.a.org, name, True, True, Tlp.RED)
            self.cids[where] = exchange.admin.get_community(name).collection_id
        exchange.admin.set_membership(self.b.org, self.names["main"], True, True, clearance)
        exchange.admin.set_membership(self.c.org, self.names["main"], True, True, Tlp.GREEN)
        exchange.admin.set_membership(self.b.org, self.names["wo"], False, True, Tlp.RED)

    def post(self, member: Member, where: str, objects: list[dict[str, Any]]) -> None:
        add(self.x, member, self.cids[where], objects)

    def lookup(self, member: Member | None, values: list[str] = VALUES) -> list[dict[str, Any]]:
        return self.x.lookup.lookup_json(member.principal if member else None, values)


def _baseline(w: World, hidden_ids: dict[str, str]) -> dict[str, dict[str, Any]]:
    """What the caller sees: GREEN objects of every kind in 'main', CLEAR ones in 'pub',
    and visible sightings and opinions that point at ids only hidden objects will carry."""
    a = w.a
    vis = {
        "ip": indicator("45.83.113.10", tlp=Tlp.GREEN, created_by=a.identity, confidence=60,
                        valid_until=ts(400 * DAY)),
        "net": indicator(pattern="[ipv4-addr:value = '45.83.0.0/16']", tlp=Tlp.GREEN),
        "dom": indicator(pattern="[domain-name:value = 'example-bad.test']", tlp=Tlp.GREEN,
                         created_by=a.identity),
        "ip6": indicator(pattern="[ipv6-addr:value = '2001:db8:0:1::7']", tlp=Tlp.GREEN),
        "sco": ipv4("45.83.113.11", Tlp.GREEN),
        "file": marked(sco("file", hashes={"MD5": MD5, "SHA-256": SHA256}), Tlp.GREEN),
        "mail": marked(sco("email-addr", value="noc@elsewhere.test"), Tlp.GREEN),
    }
    w.post(a, "main", list(vis.values()))
    w.post(a, "main", [marked(sighting(vis["ip"]["id"], count=2, seen=DAY, by=a.identity), Tlp.GREEN),
                       marked(opinion([vis["ip"]["id"]], "agree"), Tlp.GREEN)])
    # C's visible sightings and opinions of ids that no object the caller can see carries
    w.post(w.c, "main", [marked(sighting(i, count=11, seen=3 * DAY, by=w.c.identity), Tlp.GREEN)
                         for i in hidden_ids.values()])
    w.post(w.c, "main", [marked(opinion(list(hidden_ids.values()) + [vis["sco"]["id"]], "disagree"),
                                Tlp.GREEN)])
    w.post(a, "pub", [indicator("45.83.113.10", tlp=Tlp.CLEAR, created_by=a.identity)])
    return vis


KINDS = ["ip", "ip-new", "cidr", "cidr-wide", "ip6-net", "ip6-addr", "dom-same", "dom-sub", "url",
         "url-ip", "email", "hash", "sco-copy", "sighting", "opinion", "newer-revoked", "newer-repoint"]
WHERE = ["main", "secret", "wo", "pub"]


def _hidden_objects(kind: str, where: str, vis: dict[str, dict[str, Any]], hidden_ids: dict[str, str],
                    a: Member) -> list[dict[str, Any]]:
    """The objects of one palette entry, unmarked (the caller marks them)."""
    ind = lambda pattern, **kw: indicator(pattern=pattern, created_by=a.identity,  # noqa: E731
                                          oid=hidden_ids.get(kind), **kw)
    if kind == "ip":
        return [ind("[ipv4-addr:value = '45.83.113.10']", confidence=99, created=-30 * DAY)]
    if kind == "ip-new":
        return [ind("[ipv4-addr:value = '45.83.113.12']")]
    if kind == "cidr":
        return [ind("[ipv4-addr:value = '45.83.112.0/23']")]
    if kind == "cidr-wide":
        return [ind("[ipv4-addr:value = '45.80.0.0/13' OR ipv4-addr:value = '45.0.0.0/8']")]
    if kind == "ip6-net":
        return [ind("[ipv6-addr:value = '2001:db8::/35']")]
    if kind == "ip6-addr":
        return [ind("[ipv6-addr:value = '2001:db8:1::9']")]
    if kind == "dom-same":
        return [ind("[domain-name:value = 'example-bad.test']", created=-50 * DAY)]
    if kind == "dom-sub":
        return [ind("[domain-name:value = 'a.sub.example-bad.test' OR "
                    "domain-name:value = 'sub.example-bad.test']")]
    if kind == "url":
        return [ind("[url:value = 'http://sub.example-bad.test/x']")]
    if kind == "url-ip":
        return [ind("[url:value = 'http://45.83.113.12/z']")]
    if kind == "email":
        return [ind("[email-addr:value = 'ops@example-bad.test']"),
                sco("email-addr", value="noc@elsewhere.test"), sco("domain-name", value="elsewhere.test")]
    if kind == "hash":
        return [sco("file", hashes={"MD5": MD5, "SHA-1": SHA1}), ind(f"[file:hashes.'SHA-256' = '{SHA256}']")]
    if kind == "sco-copy":  # a copy of the visible SCO under another TLP, and another address
        return [ipv4("45.83.113.11"), ipv4("45.83.113.200")]
    if kind == "sighting":
        return [sighting(vis["ip"]["id"], count=1000, seen=300 * DAY, by=a.identity),
                sighting(vis["dom"]["id"], count=5, seen=-90 * DAY)]
    if kind == "opinion":
        return [opinion([vis["ip"]["id"], vis["sco"]["id"], vis["file"]["id"]], by=a.identity),
                opinion([vis["dom"]["id"]], "strongly-agree")]
    if kind == "newer-revoked":
        return [new_version(vis["ip"], 9, revoked=True, confidence=1)]
    assert kind == "newer-repoint"
    return [new_version(vis["dom"], 9, pattern="[domain-name:value = 'elsewhere.test']",
                        valid_from=ts(-200 * DAY))]


def _mark_hidden(obj: dict[str, Any], where: str, level: Tlp, a: Member, b: Member, names_b: bool
                 ) -> dict[str, Any]:
    if where != "main":  # the community hides it, not the marking
        return marked(obj, Tlp.GREEN)
    if level == Tlp.RED:
        return marked(obj, Tlp.RED, [a.identity, b.identity] if names_b else [a.identity])
    return marked(obj, level)


# -- lookup: hidden objects of every kind, anywhere --------------------------------------------
@example(hidden=_HIDDEN_VALUES[0], palette=[(kind, "main") for kind in KINDS])
@example(hidden=_HIDDEN_VALUES[3], palette=[(kind, "main") for kind in KINDS])
@example(hidden=_HIDDEN_VALUES[2], palette=[(kind, WHERE[1 + i % 3]) for i, kind in enumerate(KINDS)])
@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(hidden=st.sampled_from(_HIDDEN_VALUES),
       palette=st.lists(st.tuples(st.sampled_from(KINDS), st.sampled_from(WHERE)), min_size=1, max_size=7,
                        unique=True))
def test_lookup_answers_never_move_with_hidden_objects_of_any_kind(exchange, client, hidden, palette):
    clearance, level, names_b = hidden
    w = World(exchange, clearance)
    hidden_ids = {k: f"indicator--{uuid.uuid4()}" for k in ("ip", "ip-new", "cidr", "dom-same", "url")}
    vis = _baseline(w, hidden_ids)
    before = w.lookup(w.b)
    before_anonymous = w.lookup(None)
    before_http = http_answer(client, w.b, VALUES)
    producer_before = w.lookup(w.a)
    assert before[0]["found"] and before[0]["sightings"]["count"] == 2  # sanity: the baseline shows

    for kind, where in palette:
        if kind.startswith("newer") and where != "main":
            # the visible object's id in another community: a new object there
            objects = [dict(o, modified=o["created"]) for o in _hidden_objects(kind, where, vis, {}, w.a)]
        else:
            objects = _hidden_objects(kind, where, vis, hidden_ids if where == "main" else {}, w.a)
        w.post(w.a, where, [_mark_hidden(o, where, level, w.a, w.b, names_b) for o in objects])

    if any(kind not in ("sighting", "opinion") or where == "main" for kind, where in palette):
        assert w.lookup(w.a) != producer_before  # sanity: the producer finds what it added
    assert w.lookup(w.b) == before
    assert w.lookup(None) == before_anonymous
    assert http_answer(client, w.b, VALUES) == before_http
    # each value alone answers as in the bulk (no hidden state shared between values)
    for i in (0, 6, 12, 16):
        assert w.lookup(w.b, [VALUES[i]]) == [before[i]]


def test_bulk_lookup_past_the_statement_chunk_answers_as_without_hidden_objects(exchange):
    """1,500 distinct values: past the bulk threshold (PostgreSQL: JIT off) and past one
    bound list (PostgreSQL: 1,000 keys per statement), hidden objects in every chunk."""
    w = World(exchange, Tlp.AMBER)
    values = [f"10.{i // 250}.{i % 250}.1" for i in range(1500)]
    visible = [indicator(values[i], tlp=Tlp.GREEN, created_by=w.a.identity) for i in range(0, 1500, 300)]
    w.post(w.a, "main", visible + [marked(sighting(visible[0]["id"], count=2), Tlp.GREEN)])
    before = w.lookup(w.b, values)
    hidden = [marked(indicator(values[i], created_by=w.a.identity), Tlp.AMBER_STRICT)
              for i in range(0, 1500, 150)]
    hidden += [marked(indicator(pattern=f"[ipv4-addr:value = '10.{n}.0.0/17']"), Tlp.RED, [w.a.identity])
               for n in range(6)]
    hidden += [marked(sighting(visible[0]["id"], count=50), Tlp.AMBER_STRICT)]
    w.post(w.a, "main", hidden)
    w.post(w.a, "secret", [indicator(v, tlp=Tlp.CLEAR) for v in values[::97]])
    assert sum(a["found"] for a in before) == 5
    assert sum(a["found"] for a in w.lookup(w.a, values)) > 5  # sanity
    assert w.lookup(w.b, values) == before


def test_cli_lookup_answers_alike_with_and_without_hidden_objects(exchange, database_url):
    w = World(exchange, Tlp.GREEN)
    w.post(w.a, "main", [indicator("45.83.119.1", tlp=Tlp.GREEN, created_by=w.a.identity)])
    values = ["45.83.119.1", "45.83.119.2", "45.83.119.0/24", "cli.example", "www.cli.example"]

    def cli() -> list[str]:
        out = []
        for extra in (["--json"], []):
            result = CliRunner().invoke(app, ["--database-url", database_url, "lookup", "--user", w.b.user,
                                              *extra, *values])
            assert result.exit_code == 0, result.output
            out.append(result.stdout)
        return out

    before = cli()
    w.post(w.a, "main", [marked(o, Tlp.AMBER) for o in (
        indicator("45.83.119.1", created_by=w.a.identity, confidence=90),
        indicator("45.83.119.2"), indicator(pattern="[ipv4-addr:value = '45.83.118.0/23']"),
        indicator(pattern="[domain-name:value = 'cli.example']"))])
    assert [json.loads(line) for line in before[0].splitlines()] == w.lookup(w.b, values)
    assert cli() == before


def test_hidden_only_value_answers_like_an_unknown_value_over_http(exchange, client):
    """GET and POST, single and bulk: status, headers that depend on content, body."""
    w = World(exchange, Tlp.GREEN)
    w.post(w.a, "main", [
        marked(indicator("45.83.114.1", created_by=w.a.identity), Tlp.AMBER),
        marked(indicator(pattern="[domain-name:value = 'hidden.example']"), Tlp.AMBER_STRICT)])
    w.post(w.a, "secret", [indicator("45.83.114.1", tlp=Tlp.CLEAR)])
    for hidden, unknown in (("45.83.114.1", "45.83.114.2"), ("www.hidden.example", "www.absent.example"),
                            ("http://www.hidden.example/", "http://www.absent.example/")):
        got = []
        for value in (hidden, unknown):
            r = client.get("/api/lookup", params={"value": value}, headers=bearer(w.b))
            p = client.post("/api/lookup", json={"values": [value, value]}, headers=bearer(w.b))
            got.append([(x.status_code, x.headers["content-length"], x.headers["content-type"],
                         x.content.replace(value.encode(), b"V").replace(
                             value.replace("www.", "").encode(), b"W")) for x in (r, p)])
        assert got[0] == got[1], (hidden, unknown)


# -- visible sightings and opinions of hidden objects, the reverse direction ----------------
@pytest.mark.parametrize(("clearance", "level", "names_b"), HIDDEN)
def test_visible_references_to_an_id_answer_alike_whether_it_is_hidden_or_absent(
        exchange, clearance, level, names_b):
    """C's GREEN sighting and opinion point at an id; the object with that id (stating the
    looked-up value, next to a visible indicator that states it too) is then posted hidden.
    Nothing in the answer — count, reports, sighters, opinions, first/last seen — moves."""
    w = World(exchange, clearance)
    target = f"indicator--{uuid.uuid4()}"
    visible = indicator("45.83.115.1", tlp=Tlp.GREEN, created_by=w.a.identity)
    w.post(w.a, "main", [visible])
    w.post(w.c, "main", [marked(sighting(target, count=40, seen=50 * DAY, by=w.c.identity), Tlp.GREEN),
                         marked(sighting(visible["id"], count=3, by=w.c.identity), Tlp.GREEN),
                         marked(opinion([target], "strongly-agree", by=w.c.identity), Tlp.GREEN),
                         marked(opinion([target, visible["id"]], "neutral"), Tlp.GREEN)])
    values = ["45.83.115.1", "45.83.115.0/24", "http://45.83.115.1/"]
    before = w.lookup(w.b, values)
    assert before[0]["sightings"]["count"] == 3 and before[0]["opinions"]["neutral"] == 1
    w.post(w.a, "main", [_mark_hidden(indicator("45.83.115.1", oid=target, created_by=w.a.identity,
                                                created=-100 * DAY), "main", level, w.a, w.b, names_b)])
    assert len(w.lookup(w.a, values)[0]["matches"]) == 2  # sanity: the producer sees both
    assert w.lookup(w.b, values) == before


# -- clearances lowered after posting ---------------------------------------------------------
@pytest.mark.parametrize(("start", "end"), [(Tlp.AMBER, Tlp.GREEN), (Tlp.RED, Tlp.AMBER_STRICT),
                                            (Tlp.AMBER, Tlp.CLEAR)])
def test_after_a_clearance_is_lowered_the_caller_answers_as_before_it_was_raised(
        exchange, client, start, end):
    """B posts its own indicator, is cleared higher, reads and even sights and opines on
    what A posts at that level (B's own objects stay visible to B), then is lowered again:
    every answer is back to what it was before A's objects existed."""
    w = World(exchange, end)
    own = indicator("45.83.116.1", tlp=Tlp.CLEAR, created_by=w.b.identity)
    w.post(w.b, "main", [own])
    values = ["45.83.116.1", "45.83.116.2", "45.83.116.0/30", "lowered.example"]
    before, before_http = w.lookup(w.b, values), http_answer(client, w.b, values)
    exchange.admin.set_membership(w.b.org, w.names["main"], True, True, start)
    recipients = [w.a.identity, w.b.identity] if start == Tlp.RED else None
    theirs = [marked(indicator(v, created_by=w.a.identity), start, recipients)
              for v in ("45.83.116.1", "45.83.116.2")]
    theirs.append(marked(indicator(pattern="[domain-name:value = 'lowered.example']"), start, recipients))
    theirs.append(marked(indicator(pattern="[ipv4-addr:value = '45.83.116.0/30']"), start, recipients))
    w.post(w.a, "main", theirs + [marked(sighting(own["id"], count=9, by=w.a.identity), start, recipients),
                                  marked(opinion([own["id"]], by=w.a.identity), start, recipients)])
    raised = w.lookup(w.b, values)
    assert raised != before and raised[1]["found"]  # sanity: while cleared, B sees them
    # B's own sighting and opinion of A's objects, marked at the level B was cleared for
    w.post(w.b, "main", [marked(sighting(t["id"], count=5, by=w.b.identity), start, recipients)
                         for t in theirs] + [marked(opinion([t["id"] for t in theirs], "agree"), start,
                                                    recipients)])
    exchange.admin.set_membership(w.b.org, w.names["main"], True, True, end)
    assert w.lookup(w.b, values) == before
    assert http_answer(client, w.b, values) == before_http


# -- anonymous sightings ------------------------------------------------------------------------
def test_an_anonymous_sighting_answers_alike_whoever_posted_it(exchange):
    """lifecycle.md, "Anonymous sightings": the exchange knows which organisation posted
    an anonymous sighting, "but no read path reveals it: lookup counts sightings without
    naming their reporters". So the answer must not depend on who posted it."""
    w = World(exchange, Tlp.GREEN)
    d = make_member(exchange, f"Second operator {next(_run)}", "end-user")
    exchange.admin.set_membership(d.org, w.names["main"], True, True, Tlp.GREEN)
    w.post(w.a, "main", [indicator("45.83.117.1", tlp=Tlp.GREEN, created_by=w.a.identity)])
    cid = w.cids["main"]
    answers = []
    for sighter in (w.c, d):  # a vendor, then an end-user: each the only one of its sector
        made = exchange.sightings.sight(sighter.principal, w.names["main"], "45.83.117.1", 4,
                                        first_seen=ts(DAY), last_seen=ts(2 * DAY), anonymous=True,
                                        tlp=Tlp.GREEN)
        assert "created_by_ref" not in made[0].sighting
        answers.append(w.lookup(w.b, ["45.83.117.1"]))
        exchange.ingest.delete_object(sighter.principal, cid, made[0].sighting["id"], EVERY_VERSION)
    assert answers[0][0]["sightings"]["count"] == 4
    assert {k: v for k, v in answers[0][0].items() if k != "sightings"} == {
        k: v for k, v in answers[1][0].items() if k != "sightings"}
    # Regression: lookup named an anonymous sighting's poster by sector ("by": [{"organisation":
    # null, "sector": "vendor"}]), against lifecycle.md; the only member of a sector was named.
    assert answers[0][0]["sightings"] == answers[1][0]["sightings"]


# -- TLP markings the ingest misreads, as the lookup then serves them ------------------------
def test_a_red_marking_spelled_in_upper_case_hex_is_not_served_to_a_green_member(exchange):
    """The TLP:RED marking-definition id with its UUID in upper case (RFC 4122: hex digits
    are case-insensitive on input; the STIX identifier schema allows A-F) is accepted by
    ingest; the object must then not reach a member cleared for GREEN only."""
    w = World(exchange, Tlp.GREEN)
    red = TLP2_MARKING_BY_LEVEL[Tlp.RED]
    upper = red.split("--")[0] + "--" + red.split("--")[1].upper()
    values = ["45.83.118.1", "45.83.118.2"]
    before = w.lookup(w.b, values)
    report = exchange.ingest.add_objects(w.a.principal, w.cids["main"], [
        indicator("45.83.118.1", created_by=w.a.identity, object_marking_refs=[red]),
        indicator("45.83.118.2", created_by=w.a.identity, object_marking_refs=[upper]),
    ])
    after = w.lookup(w.b, values)
    assert after[0] == before[0]  # the canonical spelling is enforced
    if not report.failures:
        # Regression: an indicator marked only with TLP:RED's id in upper case was stored as
        # unmarked (community default TLP:GREEN), and lookup served it to a GREEN member.
        assert after[1] == before[1]


@pytest.mark.parametrize("level", [Tlp.AMBER, Tlp.RED])
def test_a_granular_marking_above_the_object_marking_hides_the_object(exchange, level):
    """The effective TLP is the most restrictive of object and granular markings
    (sharing-model.md), in TLP 1.0 and 2.0 spellings alike."""
    w = World(exchange, Tlp.GREEN)
    tlp1 = {Tlp.AMBER: "marking-definition--f88d31f6-486f-44da-b317-01333bde0b82",
            Tlp.RED: "marking-definition--5e57c739-391a-4eb3-b6be-7d15ca92d5ed"}[level]
    values = ["45.83.120.1", "45.83.120.2", "45.83.120.3"]
    before = w.lookup(w.b, values)
    w.post(w.a, "main", [
        indicator("45.83.120.1", tlp=Tlp.GREEN, granular_markings=[
            {"marking_ref": TLP2_MARKING_BY_LEVEL[level], "selectors": ["pattern"]}]),
        indicator("45.83.120.2", tlp=Tlp.CLEAR,
                  granular_markings=[{"marking_ref": tlp1, "selectors": ["name"]}]),
        indicator("45.83.120.3", object_marking_refs=[TLP2_MARKING_BY_LEVEL[Tlp.GREEN], tlp1]),
    ])
    assert all(a["found"] for a in w.lookup(w.a, values))  # sanity
    assert w.lookup(w.b, values) == before


def test_a_tlp2_red_marking_definition_of_the_members_own_is_refused_or_enforced(exchange):
    """A marking-definition carrying the OASIS TLP 2.0 extension with ``tlp_2_0: red``
    (what ingest refuses for TLP 1.0 — "reference one of those instead" — it accepts
    here): either ingest refuses it, or an object marked with it is not served to a
    member cleared for GREEN."""
    w = World(exchange, Tlp.GREEN)
    definition = {"type": "marking-definition", "spec_version": "2.1",
                  "id": f"marking-definition--{uuid.uuid4()}", "created": ts(0), "name": "TLP:RED",
                  "created_by_ref": w.a.identity,
                  "extensions": {TLP2_EXTENSION_ID: {"extension_type": "property-extension",
                                                     "tlp_2_0": "red"}}}
    tlp1 = {"type": "marking-definition", "spec_version": "2.1", "id": f"marking-definition--{uuid.uuid4()}",
            "created": ts(0), "definition_type": "tlp", "definition": {"tlp": "red"}}
    refused = exchange.ingest.add_objects(w.a.principal, w.cids["main"], [tlp1])
    assert refused.failures and "reserved" in refused.failures[0].message  # the TLP 1.0 form
    before = w.lookup(w.b, ["45.83.118.3"])
    report = exchange.ingest.add_objects(w.a.principal, w.cids["main"], [
        definition,
        indicator("45.83.118.3", created_by=w.a.identity, object_marking_refs=[definition["id"]])])
    # Refused, and so is the object marked with it (stored, it would go out as GREEN).
    assert [f.id.partition("--")[0] for f in report.failures] == ["marking-definition", "indicator"]
    assert "reserved" in report.failures[0].message and definition["id"] in report.failures[1].message
    assert w.lookup(w.b, ["45.83.118.3"]) == before
    if not report.failures:
        # Regression: the member's own TLP 2.0 RED marking-definition was accepted and then
        # ignored: the object took the community default TLP:GREEN. Ingest now refuses it.
        assert w.lookup(w.b, ["45.83.118.3"]) == before


# -- detection ----------------------------------------------------------------------------------
def _eve(kind: str, value: str, t: int) -> bytes:
    rec: dict[str, Any] = {"timestamp": f"2026-03-01T10:00:{t:02d}.000000+0000", "src_ip": "10.0.0.1",
                           "src_port": 40000 + t, "proto": "UDP" if kind == "dns" else "TCP"}
    if kind == "dns":
        rec |= {"event_type": "dns", "dest_ip": "10.0.0.53", "dest_port": 53,
                "dns": {"type": "query", "rrname": value, "rrtype": "A"}}
    else:
        rec |= {"event_type": "flow", "dest_ip": value, "dest_port": 443,
                "flow": {"pkts_toserver": 3, "bytes_toserver": 300}}
    return orjson.dumps(rec) + b"\n"


def _zeek_dns(value: str, t: int) -> bytes:
    return orjson.dumps({"_path": "dns", "ts": 1772359200.0 + t, "uid": f"C{t}", "id.orig_h": "10.0.0.1",
                         "id.orig_p": 5353, "id.resp_h": "10.0.0.53", "id.resp_p": 53, "proto": "udp",
                         "query": value}) + b"\n"


TELEMETRY = [("dns", "seen.example"), ("flow", "203.0.113.9"), ("dns", "hidden.example"),
             ("flow", "198.51.100.7"), ("dns", "revoked.example"), ("dns", "www.seen.example"),
             ("flow", "203.0.113.10"), ("dns", "expired.example"), ("dns", "later.example")]


def _logs(tmp_path: Path) -> list[str]:
    eve = tmp_path / "eve.json"
    eve.write_bytes(b"".join(_eve(k, v, i) for i, (k, v) in enumerate(TELEMETRY * 2)))
    zeek = tmp_path / "dns.log"
    zeek.write_bytes(b"".join(_zeek_dns(v, i) for i, (k, v) in enumerate(TELEMETRY) if k == "dns"))
    return [str(eve), str(zeek)]


def _detector(exchange: Exchange, clock=None) -> DetectService:
    return DetectService(exchange.query, exchange.ingest,
                         lambda: {o.identity_id: (o.name, o.sector) for o in exchange.admin.list_orgs()},
                         **({"clock": clock} if clock else {}))


def _detect(exchange: Exchange, member: Member, community: str, logs: list[str], **options: Any):
    alerts: list[dict[str, Any]] = []
    s = _detector(exchange).run(member.principal, logs, DetectOptions(community=community, **options),
                                alerts.append)
    summary = (s.indicators, s.unindexed, sorted(s.rejected), s.skipped_indicators, s.lines, s.events,
               s.alerts, dict(s.problems.counts), dict(s.problems.skipped), s.sightings, s.sighting_failures)
    return [orjson.dumps(a, option=orjson.OPT_SORT_KEYS) for a in alerts], summary


@pytest.mark.parametrize(("clearance", "level", "names_b"), HIDDEN)
def test_detection_alerts_and_summary_never_move_with_hidden_indicators(
        exchange, tmp_path, clearance, level, names_b):
    """Hidden: an identity object naming the producer, active indicators on values in the
    logs (exact, a containing network, a parent domain, a FOLLOWEDBY of two events),
    revoked, expired and non-STIX ones, a pattern the engine rejects, and hidden newer
    versions of the visible indicators (revoked, or stating another value)."""
    w = World(exchange, clearance)
    logs = _logs(tmp_path)
    a = w.a
    seen = indicator(pattern="[domain-name:value = 'seen.example']", tlp=Tlp.GREEN, created_by=a.identity,
                     confidence=70)
    addr = indicator("203.0.113.9", tlp=Tlp.GREEN, created_by=a.identity)
    w.post(a, "main", [seen, addr])
    before = _detect(exchange, w.b, w.names["main"], logs)
    producer_before = _detect(exchange, a, w.names["main"], logs)
    assert len(before[0]) == 5 and all(b'"producer":"a member of sector government"' in x for x in before[0])

    h = lambda obj: _mark_hidden(obj, "main", level, a, w.b, names_b)  # noqa: E731
    identity = {"type": "identity", "spec_version": "2.1", "id": a.identity, "created": ts(0),
                "modified": ts(0), "name": a.org, "identity_class": "organization"}
    w.post(a, "main", [h(o) for o in [
        identity,
        indicator(pattern="[domain-name:value = 'hidden.example']", created_by=a.identity),
        indicator("203.0.113.9", created_by=a.identity, confidence=5),
        indicator(pattern="[ipv4-addr:value ISSUBSET '198.51.100.0/24']"),
        indicator(pattern="[domain-name:value = 'seen.example'] FOLLOWEDBY "
                          "[ipv4-addr:value = '203.0.113.9']"),
        indicator(pattern="[domain-name:value = 'revoked.example']", revoked=True),
        indicator(pattern="[domain-name:value = 'expired.example']", valid_until=ts(1)),
        indicator(pattern="[domain-name:value = 'later.example']", pattern_type="sigma"),
        indicator(pattern="[domain-name:value MATCHES '(']"),
        new_version(seen, 5, revoked=True),
        new_version(addr, 5, pattern="[ipv4-addr:value = '203.0.113.10']"),
    ]])
    w.post(a, "secret", [indicator(pattern="[domain-name:value = 'hidden.example']", tlp=Tlp.CLEAR),
                         marked(identity, Tlp.CLEAR)])
    assert _detect(exchange, a, w.names["main"], logs) != producer_before  # sanity
    assert _detect(exchange, w.b, w.names["main"], logs) == before


def test_detection_refuses_a_community_it_cannot_read_like_a_missing_one(exchange, tmp_path):
    w = World(exchange, Tlp.GREEN)
    w.post(w.a, "pub", [indicator(pattern="[domain-name:value = 'seen.example']", tlp=Tlp.CLEAR)])
    messages = []
    for name in (w.names["secret"], w.names["wo"], w.names["pub"], w.cids["secret"], "no-such-community"):
        with pytest.raises(NotFound) as err:
            _detector(exchange).run(w.b.principal, _logs(tmp_path), DetectOptions(community=name),
                                    lambda alert: None)
        messages.append(err.value.message.replace(repr(name), "N"))
    assert len(set(messages)) == 1, messages


def test_detection_sightings_reach_only_members_who_see_the_indicator_they_sight(exchange, tmp_path):
    """--sight marks each sighting with the TLP of the indicator version the detector
    matched. Every member that can read a published sighting can read that version."""
    w = World(exchange, Tlp.AMBER)
    d = make_member(exchange, f"Strict {next(_run)}", "research")
    exchange.admin.set_membership(d.org, w.names["main"], True, True, Tlp.AMBER_STRICT)
    a, b = w.a, w.b
    objects = [
        indicator(pattern="[domain-name:value = 'seen.example']", tlp=Tlp.GREEN, created_by=a.identity),
        indicator("203.0.113.9", tlp=Tlp.AMBER, created_by=a.identity),
        indicator(pattern="[domain-name:value = 'hidden.example']", created_by=a.identity),  # default GREEN
    ]
    w.post(a, "main", objects)
    # a newer version B cannot see, and B's own indicators above and at RED
    w.post(a, "main", [marked(new_version(objects[0], 5), Tlp.AMBER_STRICT)])
    w.post(b, "main", [marked(indicator("198.51.100.7", created_by=b.identity), Tlp.AMBER_STRICT),
                       marked(indicator(pattern="[domain-name:value = 'revoked.example']",
                                        created_by=b.identity), Tlp.RED, [d.identity])])
    tick = [now_us()]

    def clock() -> int:
        return tick[0]

    service = _detector(exchange, clock)
    summary = service.run(b.principal, _logs(tmp_path), DetectOptions(community=w.names["main"], sight=True),
                          lambda alert: None)
    assert summary.sightings == 5 and not summary.sighting_failures
    for m in (a, w.c, d):
        page = exchange.query.objects(m.principal, w.cids["main"], ObjectFilter(
            types=("sighting", "indicator"), versions=VersionSelector(all=True, last=False)))
        got = [orjson.loads(r.raw) for r in page.rows]
        versions = {(o["id"], o["modified"]) for o in got if o["type"] == "indicator"}
        ids = {i for i, _ in versions}
        for s in (o for o in got if o["type"] == "sighting"):
            assert s["sighting_of_ref"] in ids, (m.org, s)


def test_detection_refresh_drops_indicators_the_caller_is_no_longer_cleared_for(exchange, tmp_path):
    """A long run with --refresh: B's clearance is lowered from AMBER to GREEN after the
    first alert. After the next refresh, alerts are those a GREEN member gets (the
    project's own tests: after a clearance change every path answers like a member that
    never was cleared)."""
    w = World(exchange, Tlp.AMBER)
    a, b = w.a, w.b
    amber = indicator(pattern="[domain-name:value = 'hidden.example']", tlp=Tlp.AMBER, created_by=a.identity)
    green = indicator(pattern="[domain-name:value = 'seen.example']", tlp=Tlp.GREEN, created_by=a.identity)
    w.post(a, "main", [amber, green])
    log = tmp_path / "dns.log"
    log.write_bytes(b"".join(_zeek_dns(v, i) for i, v in enumerate(["hidden.example", "seen.example"] * 4)))
    tick = [now_us()]

    def clock() -> int:  # ten seconds pass between two looks at the clock: refresh every batch
        tick[0] += 10_000_000
        return tick[0]

    alerts: list[dict[str, Any]] = []

    def emit(alert: dict[str, Any]) -> None:
        alerts.append(alert)
        if len(alerts) == 1:
            exchange.admin.set_membership(b.org, w.names["main"], True, True, Tlp.GREEN)

    _detector(exchange, clock).run(b.principal, [str(log)], DetectOptions(
        community=w.names["main"], batch_lines=1, refresh_s=1), emit)
    assert [x["indicator"] for x in alerts[:2]] == [amber["id"], green["id"]]
    # lines 3-8 are scanned after at least one refresh that followed the change
    late = [x["indicator"] for x in alerts[2:]]
    assert late.count(green["id"]) == 3
    # Regression: refresh only re-read versions added since the last one, so indicators the
    # caller was no longer cleared for (AMBER, caller now GREEN) kept alerting for the whole run.
    assert amber["id"] not in late


def test_detection_refresh_ignores_what_the_caller_cannot_see_being_written(exchange, tmp_path):
    """While a GREEN caller's run refreshes, the producer adds AMBER indicators on values
    in the logs, a hidden revoked newer version of a visible indicator and an AMBER
    newer version stating another value: the alerts stay those of a run without them
    (only a GREEN indicator posted at the same time is added)."""
    w = World(exchange, Tlp.GREEN)
    a, b = w.a, w.b
    green = indicator(pattern="[domain-name:value = 'seen.example']", tlp=Tlp.GREEN, created_by=a.identity)
    other = indicator(pattern="[domain-name:value = 'later.example']", tlp=Tlp.GREEN, created_by=a.identity)
    w.post(a, "main", [green, other])
    log = tmp_path / "dns.log"
    log.write_bytes(b"".join(_zeek_dns(v, i) for i, v in enumerate(
        ["seen.example", "hidden.example", "later.example", "revoked.example", "fresh.example"] * 3)))
    tick = [now_us()]

    def clock() -> int:
        tick[0] += 10_000_000
        return tick[0]

    alerts: list[str] = []

    def emit(alert: dict[str, Any]) -> None:
        alerts.append(alert["event"]["query"])
        if len(alerts) == 1:
            w.post(a, "main", [marked(o, Tlp.AMBER) for o in (
                indicator(pattern="[domain-name:value = 'hidden.example']", created_by=a.identity),
                indicator(pattern="[domain-name:value = 'revoked.example']", created_by=a.identity),
                new_version(green, 50, revoked=True),
                new_version(other, 50, pattern="[domain-name:value = 'revoked.example']"))]
                   + [indicator(pattern="[domain-name:value = 'fresh.example']", tlp=Tlp.GREEN)])

    _detector(exchange, clock).run(b.principal, [str(log)], DetectOptions(
        community=w.names["main"], batch_lines=1, refresh_s=1), emit)
    # fresh.example: a visible indicator posted at the same time (the refresh did run)
    assert alerts == ["seen.example", "later.example", "fresh.example"] * 3
