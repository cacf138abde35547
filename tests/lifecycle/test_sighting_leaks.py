"""Leak property: the sighting counts everyone sees, the producer included, equal a model.

Random organisations, memberships, indicators (any TLP, recipients, named or unnamed
producer) and quick-form sightings (any TLP or the default, anonymous or not). The
reference model is the visibility rule of the sharing model plus the quick form's one
addition: a TLP:RED sighting is addressed to the indicator's named producer.
"""

from __future__ import annotations

import itertools

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from commonwatch.domain.markings import Tlp
from commonwatch.errors import InvalidParameter, NotFound
from commonwatch.services.lifecycle import LifecycleService
from commonwatch.services.sightings import SightingService

from support.factories import indicator, make_member

N_ORGS = 3
RED = int(Tlp.RED)
_run = itertools.count()
tlps = st.integers(0, 4)


@st.composite
def worlds(draw):
    members = draw(st.dictionaries(st.integers(0, N_ORGS - 1), st.tuples(st.booleans(), tlps), min_size=1))
    writers = sorted(members)
    orgs = st.frozensets(st.integers(0, N_ORGS - 1))
    indicators = [(draw(st.sampled_from(writers)), draw(tlps), draw(orgs), draw(st.integers(0, 1)),
                   draw(st.booleans()))
                  for _ in range(draw(st.integers(1, 4)))]
    sightings = [(draw(st.sampled_from(writers)), draw(st.integers(0, 1)), draw(st.none() | tlps),
                  draw(st.booleans()), draw(st.integers(1, 9)))
                 for _ in range(draw(st.integers(1, 4)))]
    return members, indicators, sightings


def sees(org, members, producer, tlp, recipients):
    """The visibility rule, as the sharing model states it."""
    if org == producer:
        return True
    if org not in members:
        return False
    can_read, ceiling = members[org]
    return can_read and tlp <= ceiling and (tlp < RED or org in recipients)


def model_sight(members, indicators, sighter, value, tlp):
    """What the quick form must do: the sightings it stores, or the error it raises."""
    targets = [i for i, (p, t, r, v, _named) in enumerate(indicators)
               if v == value and sees(sighter, members, p, t, r)]
    if not targets:
        return NotFound, []
    made = []
    for i in targets:
        producer, ind_tlp, _r, _v, named = indicators[i]
        level = ind_tlp if tlp is None else tlp
        recipients = frozenset()
        if level == RED and not named and members[sighter][0]:
            # unnamed producer: cannot be addressed (own indicators too, unless the
            # sighter cannot read the community and so sees only its own objects)
            return InvalidParameter, []
        if level == RED and sighter != producer:
            recipients = frozenset({producer})
        made.append((i, level, recipients))
    return None, made


@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(world=worlds())
def test_sighting_counts_match_the_model(exchange, world):
    members, indicators, actions = world
    run = next(_run)
    orgs = [make_member(exchange, f"S{run} org {i}") for i in range(N_ORGS)]
    name = f"sl{run}"
    exchange.admin.create_community(name)
    for org, (can_read, ceiling) in members.items():
        exchange.admin.set_membership(orgs[org].org, name, can_read, True, Tlp(ceiling))
    cid = exchange.admin.get_community(name).collection_id
    values = [f"10.{run % 250}.{i}.9" for i in range(2)]
    ids = []
    for producer, tlp, recipients, value, named in indicators:
        obj = indicator(values[value], tlp=Tlp(tlp), created_by=orgs[producer].identity if named else None,
                        recipients=[orgs[r].identity for r in sorted(recipients)] or None)
        assert not exchange.ingest.add_objects(orgs[producer].principal, cid, [obj]).failures
        ids.append(obj["id"])

    svc = SightingService(exchange.query, exchange.lookup, exchange.ingest)
    stored = []  # (indicator index, sighter, level, recipients, count)
    for sighter, value, tlp, anonymous, count in actions:
        error, made = model_sight(members, indicators, sighter, value, tlp)
        try:
            svc.sight(orgs[sighter].principal, name, values[value], count,
                      tlp=None if tlp is None else Tlp(tlp), anonymous=anonymous)
        except (NotFound, InvalidParameter) as exc:
            assert type(exc) is error, exc.message
            continue
        assert error is None
        stored += [(i, sighter, level, recipients, count) for i, level, recipients in made]

    for org in range(N_ORGS):
        answers = exchange.lookup.lookup(orgs[org].principal, values)
        for v, answer in enumerate(answers):
            expected = sum(count for i, sighter, level, recipients, count in stored
                           if indicators[i][3] == v and sees(org, members, *indicators[i][:3])
                           and sees(org, members, sighter, level, recipients))
            assert answer.sightings == expected, (org, v)
    # lifecycle's refresh reads the same sightings: those the caller can see, no others
    lifecycle = LifecycleService(exchange.query, exchange.ingest)
    for org in range(N_ORGS):
        if not members.get(org, (False, 0))[0]:
            continue  # no read access: the community is not readable (NotFound)
        expected_ids = {ids[i] for i, sighter, level, recipients, _c in stored
                        if sees(org, members, sighter, level, recipients)}
        assert set(lifecycle.last_sightings(orgs[org].principal, name)) == expected_ids
    # the producer of an indicator sees every sighting of it its clearance admits
    for i, sighter, level, recipients, _count in stored:
        producer = indicators[i][0]
        can_read, ceiling = members[producer]
        if can_read and level <= ceiling and (level < RED or indicators[i][4]):
            assert sees(producer, members, sighter, level, recipients)
