"""Fixtures of the storage tests."""

from __future__ import annotations

import pytest

from commonwatch.domain.markings import Tlp

from support.factories import make_member


@pytest.fixture
def fed(exchange):
    """Org A and Org B, both writing in community "c" (GREEN by default), cleared for RED:
    (member A, member B, the collection id)."""
    a = make_member(exchange, "Org A")
    b = make_member(exchange, "Org B")
    exchange.admin.create_community("c", default_tlp=Tlp.GREEN)
    exchange.admin.set_membership(a.org, "c", True, True, Tlp.RED)
    exchange.admin.set_membership(b.org, "c", True, True, Tlp.RED)
    return a, b, exchange.admin.get_community("c").collection_id
