"""A small federation for the sightings and lifecycle tests."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from commonwatch.domain.markings import Tlp
from commonwatch.services.exchange import Exchange

from support.factories import Member, make_member


@dataclass
class World:
    exchange: Exchange
    cid: str
    cert: Member      # government, cleared for RED
    op: Member        # operator, AMBER
    vendor: Member    # vendor, GREEN
    user: Member      # end-user, AMBER+STRICT

    def add(self, member: Member, objects: list[dict]) -> None:
        report = self.exchange.ingest.add_objects(member.principal, self.cid, objects)
        assert not report.failures, report.failures


@pytest.fixture
def world(exchange: Exchange) -> World:
    cert = make_member(exchange, "CERT", "government")
    op = make_member(exchange, "Operator", "operator")
    vendor = make_member(exchange, "Vendor", "vendor")
    user = make_member(exchange, "Hospital", "end-user")
    exchange.admin.create_community("main")
    for m, tlp in ((cert, Tlp.RED), (op, Tlp.AMBER), (vendor, Tlp.GREEN), (user, Tlp.AMBER_STRICT)):
        exchange.admin.set_membership(m.org, "main", True, True, tlp)
    return World(exchange, exchange.admin.get_community("main").collection_id, cert, op, vendor, user)
