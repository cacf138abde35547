"""A revoked object cannot get new versions (STIX 2.1 §3.6)."""

from __future__ import annotations

from commonwatch.domain.markings import Tlp

from support.factories import indicator, make_member, new_version


def test_revoked_objects_cannot_be_updated(exchange):
    cert = make_member(exchange, "CERT", "government")
    exchange.admin.create_community("main")
    exchange.admin.set_membership("CERT", "main", True, True, Tlp.AMBER)
    cid = exchange.admin.get_community("main").collection_id
    live = indicator()
    revoked = new_version(live, 10, revoked=True)
    assert not exchange.ingest.add_objects(cert.principal, cid, [live]).failures
    assert not exchange.ingest.add_objects(cert.principal, cid, [revoked]).failures
    again = exchange.ingest.add_objects(cert.principal, cid, [new_version(live, 20, revoked=False)])
    assert [f.message for f in again.failures] == [
        f"{live['id']} is revoked; a revoked object cannot be updated (STIX 2.1 §3.6): "
        "create a new object instead"]
    assert exchange.ingest.add_objects(cert.principal, cid, [revoked]).successes  # identical re-post
