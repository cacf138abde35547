"""The in-memory visibility rule against the rule as docs/sharing-model.md states it."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from commonwatch.domain.markings import Tlp
from commonwatch.domain.visibility import Clearance, Principal, is_visible

tlps = st.sampled_from(list(Tlp))


@given(
    viewer=st.none() | st.integers(1, 3), producer=st.none() | st.integers(1, 3),
    member=st.booleans(), can_read=st.booleans(), ceiling=tlps, public=st.booleans(),
    tlp=tlps, recipients=st.frozensets(st.integers(1, 3)),
)
def test_is_visible_follows_the_documented_rule(
    viewer, producer, member, can_read, ceiling, public, tlp, recipients
):
    identities = {n: f"identity--{n}" for n in recipients}
    clearance = Clearance(
        org_id=viewer, identity_id=None if viewer is None else f"identity--{viewer}",
        can_read=bool(viewer is not None and member and can_read), can_write=False,
        max_tlp=ceiling if viewer is not None and member else Tlp.CLEAR, public=public,
    )
    expected = (
        (viewer is not None and viewer == producer)
        or (clearance.can_read and tlp <= ceiling and (tlp < Tlp.RED or viewer in recipients))
        or (public and tlp == Tlp.CLEAR)
    )
    assert is_visible(clearance, producer, tlp, set(identities.values())) == expected


def test_principal_roles():
    analyst = Principal(1, "a", 1, "identity--1", "analyst")
    reader = Principal(2, "r", 1, "identity--1", "reader")
    admin = Principal(3, "x", 1, "identity--1", "admin")
    assert analyst.can_write and not reader.can_write and admin.is_admin and not analyst.is_admin
