"""Whatever JSON a member posts, ingest answers with a status — never an exception."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from commonwatch.domain.markings import Tlp

from support.factories import indicator, make_member

_n = itertools.count()
json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=5),
    max_leaves=20,
)
stix_keys = st.sampled_from(
    [
        "type",
        "id",
        "spec_version",
        "created",
        "modified",
        "pattern",
        "pattern_type",
        "valid_from",
        "object_marking_refs",
        "granular_markings",
        "created_by_ref",
        "extensions",
        "hashes",
        "source_ref",
        "target_ref",
        "sighting_of_ref",
        "object_refs",
        "labels",
        "confidence",
        "value",
    ]
)


@st.composite
def mutated_objects(draw):
    obj = indicator()
    for _ in range(draw(st.integers(1, 4))):
        key = draw(stix_keys | st.text(max_size=10))
        if draw(st.booleans()):
            obj.pop(key, None)
        else:
            obj[key] = draw(json_values)
    return obj


@pytest.fixture
def writer(exchange):
    member = make_member(exchange, f"Fuzzer {next(_n)}")
    name = f"fuzz-{next(_n)}"
    exchange.admin.create_community(name, default_tlp=Tlp.GREEN)
    exchange.admin.set_membership(member.org, name)
    return member, exchange.admin.get_community(name).collection_id


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(objects=st.lists(mutated_objects() | json_values, min_size=1, max_size=5))
def test_any_json_gets_a_status_and_every_object_is_accounted_for(exchange, writer, objects):
    member, cid = writer
    report = exchange.ingest.add_objects(member.principal, cid, objects)
    assert len(report.successes) + len(report.failures) == len(objects)
    for failure in report.failures:
        assert failure.message


def test_an_integer_beyond_64_bits_is_a_failure_that_says_so(exchange, writer):
    """JSON parsers differ on such integers (an import reads them exactly): refused, never a crash."""
    member, cid = writer
    big, fine = indicator(), indicator()
    big["x_count"] = 2**70
    report = exchange.ingest.add_objects(member.principal, cid, [big, fine])
    assert [s.id for s in report.successes] == [fine["id"]]
    assert [(f.id, f.message) for f in report.failures] == [
        (big["id"], "the object cannot be stored as JSON: Integer exceeds 64-bit range")]
