"""Fixtures of the web tests."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from commonwatch.web.app import create_app

from support.factories import make_member


@pytest.fixture
def admin_api(exchange):
    """A client of the app, authenticated as the instance admin 'operators-user'
    (organisation 'Operators')."""
    admin = make_member(exchange, "Operators", sector="other", role="admin")
    with TestClient(create_app(exchange)) as client:
        client.headers["Authorization"] = f"Bearer {admin.token}"
        yield client
