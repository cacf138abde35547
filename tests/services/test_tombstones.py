"""Deletions leave tombstones, shown to exactly those who could see the deleted version."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from commonwatch.domain.markings import Tlp
from commonwatch.errors import NotFound
from commonwatch.services.query import ObjectFilter, VersionSelector
from commonwatch.web.app import create_app

from support.factories import indicator, make_member, new_version

ALL = ObjectFilter(versions=VersionSelector(all=True))


def test_tombstones_follow_the_visibility_of_the_deleted_version(exchange):
    cert = make_member(exchange, "CERT", "government")
    op = make_member(exchange, "Operator", "operator")
    stranger = make_member(exchange, "Stranger", "other")
    exchange.admin.create_community("main", public=True)
    exchange.admin.set_membership("CERT", "main", True, True, Tlp.RED)
    exchange.admin.set_membership("Operator", "main", True, True, Tlp.AMBER)
    cid = exchange.admin.get_community("main").collection_id
    clear = indicator(tlp=Tlp.CLEAR)
    green = indicator(tlp=Tlp.GREEN)
    red = indicator(tlp=Tlp.RED, recipients=[op.identity])
    amber_v2 = new_version(green, 20, object_marking_refs=indicator(tlp=Tlp.AMBER)["object_marking_refs"])
    report = exchange.ingest.add_objects(cert.principal, cid, [clear, green, red, amber_v2])
    assert not report.failures
    for obj in (clear, green, red):
        exchange.ingest.delete_object(cert.principal, cid, obj["id"], ALL)

    def seen(principal):
        return [(t.stix_id, t.version_us) for t in exchange.query.deletions(principal, cid).rows]

    assert [i for i, _ in seen(cert.principal)] == [clear["id"], green["id"], green["id"], red["id"]]
    assert [i for i, _ in seen(op.principal)] == [clear["id"], green["id"], green["id"]]  # no RED clearance
    assert [i for i, _ in seen(None)] == [clear["id"]]  # public community: CLEAR only
    assert [i for i, _ in seen(stranger.principal)] == [clear["id"]]  # not a member: public view
    exchange.admin.create_community("closed")
    with pytest.raises(NotFound):  # not a member of a closed community: like a missing one
        exchange.query.deletions(stranger.principal, exchange.admin.get_community("closed").collection_id)

    page = exchange.query.deletions(cert.principal, cid, limit=2)
    rest = exchange.query.deletions(cert.principal, cid, page.next, limit=2)
    assert page.more and not rest.more
    assert [t.stix_id for t in page.rows + list(rest.rows)] == [i for i, _ in seen(cert.principal)]

    with TestClient(create_app(exchange)) as client:
        auth = {"Authorization": f"Bearer {op.token}"}
        resp = client.get(f"/api/collections/{cid}/deletions", headers=auth)
        assert resp.status_code == 200
        assert [d["id"] for d in resp.json()["deletions"]] == [clear["id"], green["id"], green["id"]]
        bad = client.get(f"/api/collections/{cid}/deletions?next=garbage", headers=auth)
        assert bad.status_code == 400


def test_a_red_tombstone_goes_to_the_named_recipients_cleared_for_red(exchange):
    cert, named, other = (make_member(exchange, n) for n in ("CERT", "Named", "Other"))
    exchange.admin.create_community("main")
    for m in (cert, named, other):
        exchange.admin.set_membership(m.org, "main", True, True, Tlp.RED)
    cid = exchange.admin.get_community("main").collection_id
    red = indicator(tlp=Tlp.RED, recipients=[named.identity])
    assert not exchange.ingest.add_objects(cert.principal, cid, [red]).failures
    exchange.ingest.delete_object(cert.principal, cid, red["id"], ALL)

    def seen(member):
        return [t.stix_id for t in exchange.query.deletions(member.principal, cid).rows]

    assert seen(cert) == seen(named) == [red["id"]]  # it saw the version: it learns it is gone
    assert seen(other) == []  # cleared for RED but not named: nothing
    exchange.admin.set_membership(named.org, "main", True, True, Tlp.AMBER)
    assert seen(named) == []  # named, but no longer cleared for RED
