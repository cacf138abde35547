"""Property-based leak tests: what each organisation receives through every TAXII
endpoint equals what a tiny reference model of the visibility rule says.

The model below is written from docs/sharing-model.md alone and shares no code with
the query service. Each hypothesis example builds a fresh small federation (unique
names) in the test's database and then reads everything back over HTTP as every
organisation and as an anonymous reader.
"""

from __future__ import annotations

import itertools
import uuid
from dataclasses import dataclass, field

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from commonwatch.domain.markings import Tlp
from commonwatch.web.app import create_app

from support.factories import indicator, make_member, ts

TAXII = "application/taxii+json;version=2.1"
_run = itertools.count()


# -- the reference model ------------------------------------------------------------------
@dataclass
class MVersion:
    modified: int
    tlp: int | None  # None: unmarked, takes the community default
    recipients: frozenset[int]


@dataclass
class MObject:
    producer: int
    community: int
    versions: list[MVersion]
    id: str = field(default_factory=lambda: f"indicator--{uuid.uuid4()}")


@dataclass
class MCommunity:
    default_tlp: int
    public: bool
    members: dict[int, tuple[bool, int]]  # org -> (can_read, max_tlp)


def model_visible(org: int | None, c: MCommunity, o: MObject, v: MVersion) -> bool:
    tlp = c.default_tlp if v.tlp is None else v.tlp
    if org is not None and org == o.producer:
        return True
    if org is not None and org in c.members:
        can_read, ceiling = c.members[org]
        if can_read and tlp <= ceiling and (tlp < 4 or org in v.recipients):
            return True
    return c.public and tlp == 0


# -- strategies ----------------------------------------------------------------------------
N_ORGS = 3
tlps = st.integers(min_value=0, max_value=4)
communities = st.builds(
    MCommunity,
    default_tlp=tlps,
    public=st.booleans(),
    members=st.dictionaries(st.integers(0, N_ORGS - 1), st.tuples(st.booleans(), tlps)),
)


@st.composite
def worlds(draw):
    comms = draw(st.lists(communities, min_size=1, max_size=2))
    objects = []
    for _ in range(draw(st.integers(1, 6))):
        cidx = draw(st.integers(0, len(comms) - 1))
        writers = [o for o in range(N_ORGS) if o in comms[cidx].members]
        if not writers:
            continue
        n = draw(st.integers(1, 3))
        stamps = sorted(draw(st.sets(st.integers(1, 50), min_size=n, max_size=n)))
        versions = [
            MVersion(m, draw(st.none() | tlps), draw(st.frozensets(st.integers(0, N_ORGS - 1))))
            for m in stamps
        ]
        objects.append(MObject(draw(st.sampled_from(writers)), cidx, versions))
    return comms, objects


# -- the test ---------------------------------------------------------------------------------
def _headers(token: str | None) -> dict[str, str]:
    h = {"Accept": TAXII}
    if token:
        h["Authorization"] = f"Bearer {token}"
    return h


@pytest.fixture
def client(exchange):
    with TestClient(create_app(exchange)) as c:
        yield c


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(world=worlds())
def test_every_taxii_read_matches_the_model(exchange, client, world):
    comms, objects = world
    run = next(_run)
    members = [make_member(exchange, f"Org {run} {i}") for i in range(N_ORGS)]
    cids = []
    for i, c in enumerate(comms):
        name = f"c{run}-{i}"
        exchange.admin.create_community(name, default_tlp=Tlp(c.default_tlp), public=c.public)
        for org, (can_read, ceiling) in c.members.items():
            exchange.admin.set_membership(members[org].org, name, can_read, True, Tlp(ceiling))
        cids.append(exchange.admin.get_community(name).collection_id)
    for o in objects:
        for v in o.versions:
            obj = indicator(
                oid=o.id,
                created=0,
                modified=v.modified,
                tlp=None if v.tlp is None else Tlp(v.tlp),
                recipients=[members[r].identity for r in sorted(v.recipients)] or None,
            )
            report = exchange.ingest.add_objects(members[o.producer].principal, cids[o.community], [obj])
            assert not report.failures, report.failures

    readers = [(i, m.token) for i, m in enumerate(members)] + [(None, None)]
    for org, token in readers:
        _check_reader(client, org, token, comms, cids, objects)


def _expected(org, comms, objects, cidx):
    out = {}
    for o in objects:
        if o.community != cidx:
            continue
        seen = [v.modified for v in o.versions if model_visible(org, comms[cidx], o, v)]
        if seen:
            out[o.id] = sorted(seen)
    return out


def _check_reader(client, org, token, comms, cids, objects):
    h = _headers(token)
    if token is not None:
        listed = {
            c["id"] for c in client.get("/taxii2/api/collections/", headers=h).json().get("collections", [])
        }
        for cidx, c in enumerate(comms):
            knows = (org in c.members) or c.public
            assert (cids[cidx] in listed) == knows
    for cidx, cid in enumerate(cids):
        base = f"/taxii2/api/collections/{cid}/"
        c = comms[cidx]
        resp = client.get(base + "objects/?match[type]=indicator&match[version]=all", headers=h)
        knows = (org is not None and org in c.members) or c.public
        if not knows:
            assert resp.status_code == (401 if token is None else 404)
            continue
        if not c.public and not c.members[org][0]:
            assert resp.status_code == 403  # TAXII 2.1 §5.2: can_read false
            continue
        expected = _expected(org, comms, objects, cidx)
        got: dict[str, list[int]] = {}
        for obj in resp.json().get("objects", []):
            got.setdefault(obj["id"], []).append(obj["modified"])
        assert {k: sorted(v) for k, v in got.items()} == {k: [ts(m) for m in v] for k, v in expected.items()}
        last = client.get(base + "objects/?match[type]=indicator", headers=h).json()
        assert {o["id"]: o["modified"] for o in last.get("objects", [])} == {
            k: ts(max(v)) for k, v in expected.items()
        }
        first = client.get(base + "manifest/?match[type]=indicator&match[version]=first", headers=h).json()
        assert {m["id"]: m["version"] for m in first.get("objects", [])} == {
            k: ts(min(v)) for k, v in expected.items()
        }
        missing = client.get(base + f"objects/indicator--{uuid.uuid4()}/", headers=h)
        for o in objects:
            if o.community != cidx:
                continue
            one = client.get(base + f"objects/{o.id}/?match[version]=all", headers=h)
            versions = client.get(base + f"objects/{o.id}/versions/", headers=h)
            if o.id in expected:
                assert [x["modified"] for x in one.json()["objects"]] == [
                    ts(m) for m in expected[o.id]
                ] or sorted(x["modified"] for x in one.json()["objects"]) == [ts(m) for m in expected[o.id]]
                assert versions.json()["versions"] == [ts(m) for m in expected[o.id]]
            else:
                assert (one.status_code, one.json()) == (missing.status_code, missing.json())
                assert (versions.status_code, versions.json()) == (missing.status_code, missing.json())
