"""Property test: an export never contains what the caller cannot see.

A tiny reference model of the visibility rule (docs/sharing-model.md), written
without the query service's code, says which version of which object each
organisation may receive; every export (CSV rows and the STIX bundle) must equal it,
for every TLP ceiling, across several organisations and communities.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import uuid

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from commonwatch.domain.markings import Tlp
from commonwatch.services.query import ExportFilter

from support.factories import indicator, make_member

_run = itertools.count()
N_ORGS = 3
tlps = st.integers(0, 4)


@st.composite
def worlds(draw):
    comms = []
    for _ in range(draw(st.integers(1, 2))):
        members = draw(st.dictionaries(st.integers(0, N_ORGS - 1), st.tuples(st.booleans(), tlps),
                                       min_size=1))
        comms.append((draw(tlps), draw(st.booleans()), members))  # default TLP, public, members
    objects = []
    for _ in range(draw(st.integers(1, 6))):
        cidx = draw(st.integers(0, len(comms) - 1))
        producer = draw(st.sampled_from(sorted(comms[cidx][2])))
        n = draw(st.integers(1, 3))
        stamps = sorted(draw(st.sets(st.integers(1, 200), min_size=n, max_size=n)))
        versions = [(m, draw(st.none() | tlps), draw(st.frozensets(st.integers(0, N_ORGS - 1))))
                    for m in stamps]
        objects.append((cidx, producer, versions))
    return comms, objects


def model(org, ceiling, comms, objects):
    """stix index -> exported version stamp, per the visibility rule and the export rules."""
    out = {}
    for i, (cidx, producer, versions) in enumerate(objects):
        default, _public, members = comms[cidx]
        if not members.get(org, (False, 0))[0]:
            continue  # exports read the communities the caller may read
        can_read, max_tlp = members[org]
        seen = []
        for stamp, tlp, recipients in versions:
            t = default if tlp is None else tlp
            visible = org == producer or (t <= max_tlp and (t < 4 or org in recipients))
            if visible:
                seen.append((stamp, t))
        if seen and seen[-1][1] <= ceiling:
            out[i] = seen[-1][0]
    return out


@settings(max_examples=10, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(world=worlds())
def test_exports_match_the_reference_model(exchange, svc, world):
    comms, objects = world
    run = next(_run)
    members = [make_member(exchange, f"Leak {run} {i}") for i in range(N_ORGS)]
    cids = []
    for i, (default, public, mem) in enumerate(comms):
        name = f"leak{run}-{i}"
        exchange.admin.create_community(name, default_tlp=Tlp(default), public=public)
        for org, (can_read, max_tlp) in mem.items():
            exchange.admin.set_membership(members[org].org, name, can_read, True, Tlp(max_tlp))
        cids.append(exchange.admin.get_community(name).collection_id)
    ids = [f"indicator--{uuid.uuid4()}" for _ in objects]
    for i, (cidx, producer, versions) in enumerate(objects):
        for stamp, tlp, recipients in versions:
            obj = indicator(f"45.82.{i}.{stamp}", oid=ids[i], created=0, modified=stamp,
                            tlp=None if tlp is None else Tlp(tlp),
                            recipients=[members[r].identity for r in sorted(recipients)] or None)
            report = exchange.ingest.add_objects(members[producer].principal, cids[cidx], [obj])
            assert not report.failures, report.failures
    for org in range(N_ORGS):
        for ceiling in (Tlp.GREEN, Tlp.AMBER, Tlp.RED):
            allowed = model(org, ceiling, comms, objects)
            expected = {ids[i]: f"45.82.{i}.{stamp}" for i, stamp in allowed.items()}
            flt = ExportFilter(tlp_ceiling=ceiling)
            text = "".join(svc.export(members[org].principal, "csv", flt).chunks)
            got = {r["stix_id"]: r["value"] for r in csv.DictReader(io.StringIO(text))}
            assert got == expected, (org, ceiling)
            bundle = json.loads("".join(svc.export(members[org].principal, "stix", flt).chunks))
            assert {o["id"] for o in bundle["objects"]} == set(expected)
