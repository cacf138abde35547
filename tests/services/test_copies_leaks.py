"""Several organisations holding the same STIX id and version in one community.

Two members that import the same bundle (MITRE ATT&CK, say) each hold their own copy
of its objects. These tests check, against a small reference model written from the
rules alone (it shares no code with ``src/``), that

- a posting is accepted or refused exactly as the versions its poster can see say
  (versions it cannot see never change the outcome: no leak through the status);
- every reader gets at most one copy of each (id, version) — its own, else the first
  stored among those it can see — through every TAXII read.

The rules modelled, for a posting of a versioned object by organisation P, with SEEN
the stored versions of that id P can see (its own always among them), in this order:

1. P holds a version with identical content: success, nothing stored;
2. SEEN is empty: stored;
3. P holds a version with the same ``modified``: refused ("already exists ...");
4. no version in SEEN has identical content and the newest version in SEEN is
   revoked: refused ("is revoked");
5. OTHERS = the versions in SEEN by other producers. Stored if a version in SEEN has
   identical content (a copy), or OTHERS is empty, or the posting has a
   ``created_by_ref`` C and (every version in OTHERS has C, or a version P holds has
   C); else refused ("another organisation produced").
"""

from __future__ import annotations

import datetime as dt
import itertools
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from commonwatch.domain.markings import Tlp
from commonwatch.errors import PermissionDenied
from commonwatch.services.query import ObjectFilter, VersionSelector
from commonwatch.web.app import create_app

from support.factories import indicator, make_member, ts

TAXII = "application/taxii+json;version=2.1"
#: A third party's identity (MITRE's, in ATT&CK): what members relaying one source name.
MITRE = "identity--c78cb6e5-0c4b-4611-8297-d1b8b55e40b5"
RED = 4
N_ORGS = 3
_run = itertools.count()

# Outcomes of a posting.
STORED = "stored"
IDENTICAL = "identical re-post"
SAME_VERSION = "already exists with different content"
REVOKED = "is revoked"
OTHERS = "another organisation produced"
_REFUSALS = (SAME_VERSION, REVOKED, OTHERS)


# -- the reference model ----------------------------------------------------------------------
@dataclass(frozen=True)
class MCommunity:
    default_tlp: int
    public: bool
    members: dict[int, tuple[bool, int]]  # org -> (can_read, max_tlp)


@dataclass
class MCopy:
    """One stored row: an organisation's copy of one version of one id."""

    seq: int  # storage order (date_added order)
    key: int  # which id
    modified: int
    producer: int
    tlp: int  # effective TLP
    recipients: frozenset[int]
    creator: str | None
    revoked: bool
    content: dict[str, Any] = field(repr=False)


def m_visible(org: int | None, c: MCommunity, row: MCopy) -> bool:
    if org is not None and org == row.producer:
        return True
    if org is not None and org in c.members:
        can_read, ceiling = c.members[org]
        if can_read and row.tlp <= ceiling and (row.tlp < RED or org in row.recipients):
            return True
    return c.public and row.tlp == 0


def m_pick(org: int | None, copies: list[MCopy]) -> MCopy:
    """The copy of one (id, version) a reader gets among those it can see."""
    own = [r for r in copies if r.producer == org]
    return own[0] if own else min(copies, key=lambda r: r.seq)


def m_decide(org: int, c: MCommunity, post: MCopy, stored: list[MCopy]) -> str:
    """The outcome of ``org`` posting ``post``, from the versions it can see only."""
    versions = [r for r in stored if r.key == post.key]
    mine = [r for r in versions if r.producer == org]
    if any(r.content == post.content for r in mine):
        return IDENTICAL
    seen = [r for r in versions if m_visible(org, c, r)]
    if not seen:
        return STORED
    if any(r.modified == post.modified for r in mine):
        return SAME_VERSION
    copy = any(r.content == post.content for r in seen)
    top = max(r.modified for r in seen)
    # "The newest version in SEEN": the copy of it that the poster itself reads (its
    # own, else the first stored) — the version its `match[version]=last` shows
    # (test_the_revoked_check_weighs_the_copy_the_poster_reads).
    if not copy and m_pick(org, [r for r in seen if r.modified == top]).revoked:
        return REVOKED
    # Copies others made of the poster's own content (it held it first) take nothing from it.
    def first_holder(r: MCopy) -> int:
        return min((x for x in seen if x.modified == r.modified and x.content == r.content),
                   key=lambda x: x.seq).producer

    others = [r for r in seen if r.producer != org and first_holder(r) != org]
    if copy or not others:
        return STORED
    if post.creator is not None and (all(r.creator == post.creator for r in others)
                                     or any(r.creator == post.creator for r in mine)):
        return STORED
    return OTHERS


def m_reads(org: int | None, c: MCommunity, stored: list[MCopy]) -> dict[tuple[int, int], MCopy]:
    """(id, version) -> the copy the reader gets, for every version it can see."""
    groups: dict[tuple[int, int], list[MCopy]] = {}
    for r in stored:
        if m_visible(org, c, r):
            groups.setdefault((r.key, r.modified), []).append(r)
    return {k: m_pick(org, v) for k, v in groups.items()}


# -- helpers on the code under test ------------------------------------------------------------
def outcome(report: Any) -> str:
    """The outcome of a one-object envelope, in the model's terms."""
    if report.failures:
        (failure,) = report.failures
        kinds = [k for k in _REFUSALS if k in failure.message]
        return kinds[0] if len(kinds) == 1 else f"unexpected failure: {failure.message}"
    (stored,) = report.stored
    return STORED if stored else IDENTICAL


def status(report: Any) -> tuple[Any, ...]:
    """A status resource without its id and timestamps."""
    return (tuple((s.id, s.version) for s in report.successes), tuple(report.stored),
            tuple((f.id, f.version, f.message) for f in report.failures))


def headers(token: str | None) -> dict[str, str]:
    h = {"Accept": TAXII}
    if token:
        h["Authorization"] = f"Bearer {token}"
    return h


def added_us(text: str) -> int:
    """A TAXII date_added as microseconds since the epoch."""
    moment = dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.UTC)
    return (moment - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // dt.timedelta(microseconds=1)


def version_us(modified: int) -> int:
    return (1_767_225_600 + modified) * 1_000_000  # ts(n) of support.factories


def stored_rows(exchange: Any, community: str) -> dict[tuple[str, int, int], int]:
    """(stix_id, version_us, producer org id) -> date_added_us of a community's rows."""
    with exchange.engine.connect() as conn:
        cid = conn.execute(sa.text("SELECT id FROM communities WHERE name = :n"),
                           {"n": community}).scalar_one()
        rows = conn.execute(sa.text(
            "SELECT stix_id, version_us, producer_org_id, date_added_us FROM stix_objects "
            "WHERE community_id = :c AND type = 'indicator'"), {"c": cid}).all()
    return {(r[0], r[1], r[2]): r[3] for r in rows}


@pytest.fixture
def client(exchange):
    with TestClient(create_app(exchange)) as c:
        yield c


# -- 1. the property test -----------------------------------------------------------------------
@dataclass(frozen=True)
class Post:
    poster: int
    key: int
    modified: int
    tlp: int | None  # None: unmarked, the community default applies
    recipients: frozenset[int]
    creator: str | None
    revoked: bool
    same_as: int | None = None  # repost the exact object of this earlier post


tlps = st.integers(0, RED)


@st.composite
def worlds(draw):
    community = MCommunity(
        default_tlp=draw(tlps), public=draw(st.booleans()),
        members=draw(st.dictionaries(st.integers(0, N_ORGS - 1),
                                     st.tuples(st.sampled_from([True, True, False]), tlps),
                                     min_size=2)),
    )
    writers = sorted(community.members)
    n_ids = draw(st.integers(2, 3))
    posts: list[Post] = []
    for _ in range(draw(st.integers(1, 12))):
        poster = draw(st.sampled_from(writers))
        if posts and draw(st.integers(0, 2)) == 0:  # the exact object of an earlier post
            k = draw(st.integers(0, len(posts) - 1))
            while posts[k].same_as is not None:
                k = posts[k].same_as
            p = posts[k]
            posts.append(Post(poster, p.key, p.modified, p.tlp, p.recipients, p.creator,
                              p.revoked, same_as=k))
            continue
        tlp = draw(st.none() | tlps)
        effective = community.default_tlp if tlp is None else tlp
        posts.append(Post(
            poster=poster, key=draw(st.integers(0, n_ids - 1)), modified=draw(st.integers(1, 4)),
            tlp=tlp,
            recipients=draw(st.frozensets(st.integers(0, N_ORGS - 1))) if effective == RED
            else frozenset(),
            creator=draw(st.sampled_from([None, MITRE])),
            revoked=draw(st.integers(0, 3)) == 0,
        ))
    return community, n_ids, posts


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(world=worlds())
# Always tried: org 1 holds a RED copy of version 1 (org 2, a RED reader but not a
# recipient, must read org 0's copy), then relays a revocation (version 3) that org 0
# cannot see: org 0's versions 2 and 4 must still be accepted; org 2 copies version 4.
@example(world=(
    MCommunity(default_tlp=1, public=False, members={0: (True, 1), 1: (True, 2), 2: (True, 4)}), 2, [
        Post(0, 0, 1, 1, frozenset(), MITRE, False),
        Post(1, 0, 1, 4, frozenset({1}), MITRE, False),
        Post(1, 0, 3, 2, frozenset(), MITRE, True),
        Post(0, 0, 2, 1, frozenset(), MITRE, False),
        Post(0, 0, 4, 1, frozenset(), MITRE, False),
        Post(2, 0, 4, 1, frozenset(), MITRE, False, same_as=4),
    ]))
def test_postings_and_reads_of_copies_match_the_model(exchange, client, world):
    c, n_ids, posts = world
    run = next(_run)
    members = [make_member(exchange, f"Copies {run} {i}") for i in range(N_ORGS)]
    name = f"copies-{run}"
    exchange.admin.create_community(name, default_tlp=Tlp(c.default_tlp), public=c.public)
    for org, (can_read, ceiling) in c.members.items():
        exchange.admin.set_membership(members[org].org, name, can_read, True, Tlp(ceiling))
    cid = exchange.admin.get_community(name).collection_id
    ids = [f"indicator--{uuid.uuid4()}" for _ in range(n_ids)]

    stored: list[MCopy] = []
    objects: list[dict[str, Any]] = []
    for n, p in enumerate(posts):
        if p.same_as is not None:
            obj = objects[p.same_as]
        else:
            obj = indicator(
                oid=ids[p.key], created=0, modified=p.modified,
                tlp=None if p.tlp is None else Tlp(p.tlp),
                recipients=[members[r].identity for r in sorted(p.recipients)] or None,
                created_by=p.creator, **({"revoked": True} if p.revoked else {}),
            )
        objects.append(obj)
        row = MCopy(seq=n, key=p.key, modified=p.modified, producer=p.poster,
                    tlp=c.default_tlp if p.tlp is None else p.tlp, recipients=p.recipients,
                    creator=p.creator, revoked=p.revoked, content=obj)
        expected = m_decide(p.poster, c, row, stored)
        report = exchange.ingest.add_objects(members[p.poster].principal, cid, [obj])
        assert outcome(report) == expected, (n, p, report.failures)
        if expected == STORED:
            stored.append(row)

    # Storage: one row per model copy; their date_added order is the storage order.
    orgs = {m.principal.org_id: i for i, m in enumerate(members)}
    rows = stored_rows(exchange, name)
    assert sorted((sid, v, orgs[o]) for sid, v, o in rows) == sorted(
        (ids[r.key], version_us(r.modified), r.producer) for r in stored)
    added = {(r.key, r.modified, r.producer): rows[(ids[r.key], version_us(r.modified),
                                                     members[r.producer].principal.org_id)]
             for r in stored}
    assert sorted(stored, key=lambda r: added[(r.key, r.modified, r.producer)]) == stored

    base = f"/taxii2/api/collections/{cid}/"
    for org, token in [(i, m.token) for i, m in enumerate(members)] + [(None, None)]:
        _check_reads(client, base, org, token, c, ids, stored, added)


def _check_reads(client, base, org, token, c, ids, stored, added):
    h = headers(token)
    resp = client.get(base + "objects/?match[type]=indicator&match[version]=all", headers=h)
    if not (org in c.members or c.public):
        assert resp.status_code == (401 if token is None else 404)
        return
    if not c.public and not c.members[org][0]:
        assert resp.status_code == 403
        return
    assert resp.status_code == 200, resp.text
    missing = client.get(base + f"objects/indicator--{uuid.uuid4()}/", headers=h)
    assert missing.status_code == 404
    view = m_reads(org, c, stored)

    def date(r: MCopy) -> int:
        return added[(r.key, r.modified, r.producer)]

    def chosen(which: str) -> list[MCopy]:
        picked = []
        for key in range(len(ids)):
            mods = sorted(m for k, m in view if k == key)
            if mods:
                wanted = {"all": mods, "first": mods[:1], "last": mods[-1:]}[which]
                picked += [view[(key, m)] for m in wanted]
        return sorted(picked, key=date)

    where = f"reader {org}"
    # objects: exactly the chosen copies' JSON, in date_added order
    assert resp.json().get("objects", []) == [r.content for r in chosen("all")], where
    for which in ("first", "last"):
        got = client.get(base + f"objects/?match[type]=indicator&match[version]={which}", headers=h)
        assert got.json().get("objects", []) == [r.content for r in chosen(which)], (where, which)
    # manifest: the same (id, version)s, with the chosen copy's date_added
    for which in ("all", "first", "last"):
        got = client.get(base + f"manifest/?match[type]=indicator&match[version]={which}", headers=h)
        assert [(m["id"], m["version"], added_us(m["date_added"]))
                for m in got.json().get("objects", [])] == [
            (ids[r.key], ts(r.modified), date(r)) for r in chosen(which)], (where, which)
    # per id: versions, and the single-object GET (default: last; all)
    for key, sid in enumerate(ids):
        mine = sorted((r for (k, _), r in view.items() if k == key), key=lambda r: r.modified)
        versions = client.get(base + f"objects/{sid}/versions/", headers=h)
        one = client.get(base + f"objects/{sid}/", headers=h)
        every = client.get(base + f"objects/{sid}/?match[version]=all", headers=h)
        if not mine:
            for got in (versions, one, every):
                assert (got.status_code, got.json()) == (missing.status_code, missing.json()), where
            continue
        assert versions.json()["versions"] == [ts(r.modified) for r in mine], (where, key)
        assert one.json()["objects"] == [mine[-1].content], (where, key)
        assert every.json()["objects"] == [r.content for r in sorted(mine, key=date)], (where, key)


# -- 2. two worlds: an invisible version never changes a posting's outcome ----------------------
P, Q, R = 0, 1, 2
GREEN, AMBER = int(Tlp.GREEN), int(Tlp.AMBER)


@dataclass
class Shape:
    """Postings around one id: ``common`` in both worlds, ``hidden`` (versions P cannot
    see) only in world A, then P's ``probes`` in both, each with the outcome expected."""

    members: dict[int, tuple[bool, int]]
    common: list[tuple[int, dict[str, Any]]]
    hidden: list[tuple[int, dict[str, Any]]]
    probes: list[tuple[dict[str, Any], str]]


def _obj(oid: str, modified: int, tlp: int, creator: str | None = None,
         recipients: list[str] | None = None, **extra: Any) -> dict[str, Any]:
    return indicator(oid=oid, created=0, modified=modified, tlp=Tlp(tlp), created_by=creator,
                     recipients=recipients, **extra)


def _same_version(oid: str, who: list[Any]) -> Shape:
    return Shape(
        members={P: (True, GREEN), Q: (True, AMBER)},
        common=[],
        hidden=[(Q, _obj(oid, 1, AMBER))],
        probes=[(_obj(oid, 1, GREEN), STORED), (_obj(oid, 1, GREEN), SAME_VERSION),
                (_obj(oid, 2, GREEN), STORED)],
    )


def _newer_version(oid: str, who: list[Any]) -> Shape:
    return Shape(
        members={P: (True, GREEN), Q: (True, AMBER)},
        common=[],
        hidden=[(Q, _obj(oid, 3, AMBER))],
        probes=[(_obj(oid, 1, GREEN), STORED), (_obj(oid, 2, GREEN), STORED),
                (_obj(oid, 4, GREEN), STORED)],
    )


def _revoked_newest(oid: str, who: list[Any]) -> Shape:
    return Shape(
        members={P: (True, GREEN), Q: (True, AMBER)},
        common=[(P, _obj(oid, 1, GREEN, MITRE))],
        # Q sees P's version 1 and relays the same source: its revocation is accepted
        hidden=[(Q, _obj(oid, 2, AMBER, MITRE, revoked=True))],
        probes=[(_obj(oid, 3, GREEN, MITRE), STORED), (_obj(oid, 2, GREEN, MITRE), STORED)],
    )


def _red_not_recipient(oid: str, who: list[Any]) -> Shape:
    return Shape(
        members={P: (True, RED), Q: (True, RED), R: (True, RED)},
        common=[],
        hidden=[(Q, _obj(oid, 2, RED, recipients=[who[R].identity])),
                (Q, _obj(oid, 3, RED, recipients=[who[R].identity], revoked=True))],
        probes=[(_obj(oid, 2, AMBER), STORED), (_obj(oid, 3, AMBER), STORED),
                (_obj(oid, 4, AMBER), STORED)],
    )


def _identical_to_invisible(oid: str, who: list[Any]) -> Shape:
    theirs = _obj(oid, 1, AMBER, MITRE)
    return Shape(
        members={P: (True, GREEN), Q: (True, AMBER)},
        common=[],
        hidden=[(Q, theirs)],
        # stored anew in both worlds: not an "identical re-post" of Q's invisible version
        probes=[(theirs, STORED), (theirs, IDENTICAL)],
    )


def _invisible_other_creator(oid: str, who: list[Any]) -> Shape:
    return Shape(
        members={P: (True, GREEN), Q: (True, GREEN), R: (True, 0)},
        common=[(Q, _obj(oid, 1, GREEN, MITRE))],  # visible to P, not to R
        hidden=[(R, _obj(oid, 2, AMBER))],  # R's own object, without a creator
        probes=[(_obj(oid, 3, GREEN, MITRE), STORED), (_obj(oid, 2, GREEN, MITRE), STORED),
                (_obj(oid, 4, GREEN), OTHERS)],
    )


SHAPES: dict[str, Callable[[str, list[Any]], Shape]] = {
    "same version, different content": _same_version,
    "newer and older versions": _newer_version,
    "invisible revoked newest version": _revoked_newest,
    "invisible RED versions, P not a recipient": _red_not_recipient,
    "identical to an invisible version": _identical_to_invisible,
    "invisible version without the visible one's creator": _invisible_other_creator,
}


@pytest.mark.parametrize("shape", list(SHAPES))
def test_invisible_versions_never_change_a_posting(exchange, client, shape):
    who = [make_member(exchange, f"Org {i}") for i in range(N_ORGS)]
    oid = f"indicator--{uuid.uuid4()}"
    s = SHAPES[shape](oid, who)
    worlds = {}
    for world in ("a", "b"):
        exchange.admin.create_community(world, default_tlp=Tlp.GREEN)
        for org, (can_read, ceiling) in s.members.items():
            exchange.admin.set_membership(who[org].org, world, can_read, True, Tlp(ceiling))
        worlds[world] = exchange.admin.get_community(world).collection_id
    for world, cid in worlds.items():
        for org, obj in s.common + (s.hidden if world == "a" else []):
            report = exchange.ingest.add_objects(who[org].principal, cid, [obj])
            assert outcome(report) == STORED, report.failures
    for obj, expected in s.probes:
        a = exchange.ingest.add_objects(who[P].principal, worlds["a"], [obj])
        b = exchange.ingest.add_objects(who[P].principal, worlds["b"], [obj])
        assert status(a) == status(b)
        assert outcome(b) == expected
    # P's reads do not tell the two worlds apart either
    h = headers(who[P].token)
    for path in (f"objects/{oid}/?match[version]=all", f"objects/{oid}/versions/", f"objects/{oid}/"):
        a, b = (client.get(f"/taxii2/api/collections/{worlds[w]}/{path}", headers=h) for w in "ab")
        assert (a.status_code, a.json()) == (b.status_code, b.json()), path


# -- 3. examples ---------------------------------------------------------------------------------
@pytest.fixture
def trio(exchange):
    """Three members of one community (all read up to AMBER, all write)."""
    who = [make_member(exchange, name) for name in ("CERT", "Bank", "Telco")]
    exchange.admin.create_community("shared", default_tlp=Tlp.GREEN)
    for m in who:
        exchange.admin.set_membership(m.org, "shared", True, True, Tlp.AMBER)
    return who, exchange.admin.get_community("shared").collection_id


def _read(client, cid, member, path):
    resp = client.get(f"/taxii2/api/collections/{cid}/{path}", headers=headers(member.token))
    assert resp.status_code == 200, resp.text
    return resp.json()


def test_a_copy_of_a_visible_version_is_accepted(exchange, client, trio):
    (cert, bank, telco), cid = trio
    attack = indicator(created_by=None)  # even without a creator: a copy is always fine
    assert outcome(exchange.ingest.add_objects(cert.principal, cid, [attack])) == STORED
    assert outcome(exchange.ingest.add_objects(bank.principal, cid, [attack])) == STORED
    assert outcome(exchange.ingest.add_objects(bank.principal, cid, [attack])) == IDENTICAL
    assert outcome(exchange.ingest.add_objects(cert.principal, cid, [attack])) == IDENTICAL
    rows = stored_rows(exchange, "shared")
    assert sorted(o for (sid, _, o) in rows if sid == attack["id"]) == sorted(
        [cert.principal.org_id, bank.principal.org_id])
    for m in (cert, bank, telco):  # one version for every reader
        assert _read(client, cid, m, f"objects/{attack['id']}/versions/")["versions"] == [ts(0)]


def test_a_new_version_of_another_organisations_object_needs_its_creator(exchange, trio):
    (cert, bank, _), cid = trio
    theirs = indicator()
    assert outcome(exchange.ingest.add_objects(cert.principal, cid, [theirs])) == STORED
    newer = dict(theirs, modified=ts(5), name="bank's update")
    report = exchange.ingest.add_objects(bank.principal, cid, [newer])
    assert outcome(report) == OTHERS
    assert report.failures[0].message == (
        f"{theirs['id']} is an object another organisation produced in this collection; only its "
        "creator may add versions of it (a member relaying the same source posts it with the "
        "same 'created_by_ref')")
    # naming a creator the producer's version does not name is refused as well
    signed = dict(newer, created_by_ref=MITRE)
    assert outcome(exchange.ingest.add_objects(bank.principal, cid, [signed])) == OTHERS


def test_a_relay_of_the_same_source_is_accepted_and_becomes_last(exchange, client, trio):
    (cert, bank, telco), cid = trio
    v1 = indicator(created_by=MITRE, created=0, modified=1)
    v2 = dict(v1, modified=ts(2), name="ATT&CK v2")
    assert outcome(exchange.ingest.add_objects(cert.principal, cid, [v1])) == STORED
    assert outcome(exchange.ingest.add_objects(bank.principal, cid, [v2])) == STORED
    for reader in (telco, cert, bank):  # each sees both versions
        assert _read(client, cid, reader, f"objects/{v1['id']}/")["objects"] == [v2]
        assert _read(client, cid, reader, f"objects/{v1['id']}/versions/")["versions"] == [ts(1), ts(2)]
        assert _read(client, cid, reader, f"objects/{v1['id']}/?match[version]=first")["objects"] == [v1]
    # and the first producer may follow the relay with the next version
    v3 = dict(v1, modified=ts(3), name="ATT&CK v3")
    assert outcome(exchange.ingest.add_objects(cert.principal, cid, [v3])) == STORED


def test_a_reader_holding_a_copy_gets_its_own(exchange, client, trio):
    (cert, bank, telco), cid = trio
    first = indicator(created_by=MITRE, created=0, modified=1)
    other = dict(first, name="the same version, as the bank's import has it")
    assert outcome(exchange.ingest.add_objects(cert.principal, cid, [first])) == STORED
    assert outcome(exchange.ingest.add_objects(bank.principal, cid, [other])) == STORED
    path = f"objects/?match[id]={first['id']}&match[version]=all"
    assert _read(client, cid, cert, path)["objects"] == [first]
    assert _read(client, cid, bank, path)["objects"] == [other]  # its own copy
    assert _read(client, cid, telco, path)["objects"] == [first]  # the first stored
    # identical copies: the manifest names the reader's own row (its date_added)
    same = indicator(created_by=MITRE)
    exchange.ingest.add_objects(cert.principal, cid, [same])
    exchange.ingest.add_objects(bank.principal, cid, [same])
    rows = stored_rows(exchange, "shared")
    mpath = f"manifest/?match[id]={same['id']}"
    for reader, holder in ((cert, cert), (bank, bank), (telco, cert)):
        (entry,) = _read(client, cid, reader, mpath)["objects"]
        assert added_us(entry["date_added"]) == rows[(same["id"], version_us(0), holder.principal.org_id)]


def test_after_the_first_producer_deletes_its_object_the_other_copy_shows(exchange, client, trio):
    (cert, bank, telco), cid = trio
    v1 = indicator(created_by=MITRE, created=0, modified=1)
    v2 = dict(v1, modified=ts(2), name="v2")
    for obj in (v1, v2):
        assert outcome(exchange.ingest.add_objects(cert.principal, cid, [obj])) == STORED
    assert outcome(exchange.ingest.add_objects(bank.principal, cid, [v1])) == STORED  # a copy
    everything = ObjectFilter(versions=VersionSelector(last=False, all=True))
    assert exchange.ingest.delete_object(cert.principal, cid, v1["id"], everything) == 2
    rows = stored_rows(exchange, "shared")
    for reader in (cert, bank, telco):
        assert _read(client, cid, reader, f"objects/{v1['id']}/versions/")["versions"] == [ts(1)]
        assert _read(client, cid, reader, f"objects/{v1['id']}/")["objects"] == [v1]
        (entry,) = _read(client, cid, reader, f"manifest/?match[id]={v1['id']}&match[version]=all")["objects"]
        assert added_us(entry["date_added"]) == rows[(v1["id"], version_us(1), bank.principal.org_id)]
    # the deleting producer cannot delete the copy it does not hold
    with pytest.raises(PermissionDenied):
        exchange.ingest.delete_object(cert.principal, cid, v1["id"], everything)


def _community(exchange, name, ceilings):
    """A community (default GREEN) whose members all read and write, up to ``ceilings``."""
    exchange.admin.create_community(name, default_tlp=Tlp.GREEN)
    for member, ceiling in ceilings:
        exchange.admin.set_membership(member.org, name, True, True, ceiling)
    return exchange.admin.get_community(name).collection_id


def test_an_invisible_copy_never_hides_a_visible_one(exchange, client):
    cert, bank, telco = (make_member(exchange, n) for n in ("CERT", "Bank", "Telco"))
    cid = _community(exchange, "shared", [(cert, Tlp.AMBER), (bank, Tlp.AMBER), (telco, Tlp.GREEN)])
    first = _obj(f"indicator--{uuid.uuid4()}", 1, AMBER, MITRE)  # stored first; Telco cannot see it
    second = dict(first, object_marking_refs=_obj(first["id"], 1, GREEN)["object_marking_refs"])
    assert outcome(exchange.ingest.add_objects(cert.principal, cid, [first])) == STORED
    assert outcome(exchange.ingest.add_objects(bank.principal, cid, [second])) == STORED
    for path in (f"objects/{first['id']}/", f"objects/{first['id']}/?match[version]=all",
                 f"objects/?match[id]={first['id']}&match[version]=first"):
        assert _read(client, cid, telco, path)["objects"] == [second], path
        assert _read(client, cid, cert, path)["objects"] == [first], path
        assert _read(client, cid, bank, path)["objects"] == [second], path
    assert _read(client, cid, telco, f"objects/{first['id']}/versions/")["versions"] == [ts(1)]


def test_a_red_version_counts_for_its_recipients_only(exchange, client):
    cert, bank, telco = (make_member(exchange, n) for n in ("CERT", "Bank", "Telco"))
    cid = _community(exchange, "shared", [(m, Tlp.RED) for m in (cert, bank, telco)])
    oid = f"indicator--{uuid.uuid4()}"
    red = _obj(oid, 1, RED, recipients=[bank.identity])
    assert outcome(exchange.ingest.add_objects(cert.principal, cid, [red])) == STORED
    # the Bank is a recipient: it sees CERT's version, so a new version needs its creator
    assert outcome(exchange.ingest.add_objects(bank.principal, cid, [_obj(oid, 2, GREEN)])) == OTHERS
    # Telco is not: for it the id is free, its version 1 is stored beside CERT's
    assert outcome(exchange.ingest.add_objects(telco.principal, cid, [_obj(oid, 1, GREEN)])) == STORED
    assert _read(client, cid, bank, f"objects/{oid}/")["objects"] == [red]  # the first stored
    assert _read(client, cid, cert, f"objects/{oid}/")["objects"] == [red]  # its own


def test_a_relay_must_name_the_creator_of_every_visible_producer(exchange):
    cert, bank, telco = (make_member(exchange, n) for n in ("CERT", "Bank", "Telco"))
    cid = _community(exchange, "shared", [(cert, Tlp.AMBER), (bank, Tlp.GREEN), (telco, Tlp.AMBER)])
    oid = f"indicator--{uuid.uuid4()}"
    assert outcome(exchange.ingest.add_objects(cert.principal, cid, [_obj(oid, 1, AMBER, MITRE)])) == STORED
    # the Bank cannot see CERT's version: its own object under the same id, without creator
    assert outcome(exchange.ingest.add_objects(bank.principal, cid, [_obj(oid, 2, GREEN)])) == STORED
    # Telco sees both producers; they do not name one creator, so neither relay is accepted
    assert outcome(exchange.ingest.add_objects(telco.principal, cid, [_obj(oid, 3, GREEN, MITRE)])) == OTHERS
    assert outcome(exchange.ingest.add_objects(telco.principal, cid, [_obj(oid, 3, GREEN)])) == OTHERS
    # CERT sees the Bank's version too, but names the creator of a version it holds itself
    assert outcome(exchange.ingest.add_objects(cert.principal, cid, [_obj(oid, 3, AMBER, MITRE)])) == STORED
    # the Bank still sees no other producer's version: it may go on versioning its own
    assert outcome(exchange.ingest.add_objects(bank.principal, cid, [_obj(oid, 4, GREEN, MITRE)])) == STORED


@pytest.mark.parametrize("revoked_first", [True, False], ids=["revoked-copy-first", "live-copy-first"])
def test_the_revoked_check_weighs_the_copy_the_poster_reads(exchange, client, revoked_first):
    """Two copies of version 2 that P sees, Q's revoked and R's live; P holds a copy of
    R's. P reads R's live copy as the newest version whatever the storage order, so its
    version 3 is accepted in both orders."""
    p, q, r = (make_member(exchange, n) for n in ("P", "Q", "R"))
    cid = _community(exchange, "shared", [(p, Tlp.AMBER), (q, Tlp.AMBER), (r, Tlp.GREEN)])
    oid = f"indicator--{uuid.uuid4()}"
    revoked = _obj(oid, 2, AMBER, MITRE, revoked=True)  # R cannot see it
    live = _obj(oid, 2, GREEN, MITRE)
    order = [(q, revoked), (r, live)] if revoked_first else [(r, live), (q, revoked)]
    for member, obj in order:
        assert outcome(exchange.ingest.add_objects(member.principal, cid, [obj])) == STORED
    assert outcome(exchange.ingest.add_objects(p.principal, cid, [live])) == STORED  # a copy
    assert _read(client, cid, p, f"objects/{oid}/")["objects"] == [live]  # P's own copy is its last
    report = exchange.ingest.add_objects(p.principal, cid, [_obj(oid, 3, GREEN, MITRE)])
    # Regression guard. A check that took the first-stored copy of the newest version
    # (`max(seen, key=version_us)`) answered "is revoked" with
    # revoked-copy-first and "stored" with live-copy-first: the outcome depended only on
    # the storage order of Q's and R's copies, though P reads the same in both.
    assert outcome(report) == STORED, report.failures
