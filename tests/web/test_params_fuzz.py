"""Any query string gets 200 or a 400 that explains itself — never a 500."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from commonwatch.web.app import create_app

from support.factories import indicator, make_member

TAXII = "application/taxii+json;version=2.1"
names = st.sampled_from(
    [
        "added_after",
        "limit",
        "next",
        "match[id]",
        "match[type]",
        "match[version]",
        "match[spec_version]",
        "match[foo]",
    ]
) | st.text(max_size=8)
values = st.sampled_from(
    [
        "first",
        "last",
        "all",
        "2026-01-01T00:00:00Z",
        "2026-01-01T00:00:00.123456789Z",
        "indicator",
        "indicator--1",
        "1",
        "0",
        "-1",
        "2.1",
        ",",
        "",
        "Y3cxOjU",
    ]
) | st.text(max_size=30)


@pytest.fixture
def setup(exchange):
    member = make_member(exchange, "Fuzz Org")
    exchange.admin.create_community("fuzz")
    exchange.admin.set_membership(member.org, "fuzz")
    cid = exchange.admin.get_community("fuzz").collection_id
    exchange.ingest.add_objects(member.principal, cid, [indicator() for _ in range(3)])
    with TestClient(create_app(exchange)) as client:
        client.headers.update({"Authorization": f"Bearer {member.token}", "Accept": TAXII})
        yield client, cid


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    query=st.lists(st.tuples(names, values), max_size=5),
    endpoint=st.sampled_from(["objects/", "manifest/", "objects/{id}/", "objects/{id}/versions/"]),
)
def test_no_query_string_breaks_a_read(setup, query, endpoint):
    client, cid = setup
    path = f"/taxii2/api/collections/{cid}/" + endpoint.format(
        id="indicator--7d1a3c3e-3c1b-4d5e-9f6a-0b1c2d3e4f5a"
    )
    resp = client.get(path, params=query)
    assert resp.status_code in (200, 400, 404), resp.text
    assert resp.headers["content-type"] == TAXII
    if resp.status_code == 400:
        assert resp.json()["description"]
