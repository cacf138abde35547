"""Who may see what: the visibility rule of the sharing model (TLP 2.0, enforced).

A version of an object in community C, with effective TLP ``t``, produced by
organisation P, is visible to a caller of organisation O iff O = P, or all of:

1. O is a member of C with ``can_read``;
2. ``t`` <= the membership's ``max_tlp``;
3. if ``t`` is RED, O's identity is a named recipient of that version.

A public community additionally shows TLP:CLEAR to everyone, anonymous readers
included. The SQL form of this rule lives in ``services/statements.py`` and is
checked against a reference model by the leak tests; :func:`is_visible` is the same
rule over in-memory values, for code that holds one object rather than a query.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from commonwatch.domain.markings import Tlp

ROLES = ("admin", "org-admin", "analyst", "reader", "sync")
WRITE_ROLES = frozenset({"admin", "org-admin", "analyst", "sync"})
SECTORS = ("government", "operator", "vendor", "end-user", "research", "other")


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller: a user of one organisation, with a role."""

    user_id: int
    user_name: str
    org_id: int
    org_identity: str
    role: str

    @property
    def can_write(self) -> bool:
        return self.role in WRITE_ROLES

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


@dataclass(frozen=True, slots=True)
class Clearance:
    """What one caller may see in one community, resolved once per request."""

    org_id: int | None
    identity_id: str | None
    can_read: bool
    can_write: bool
    max_tlp: Tlp
    public: bool

    @property
    def sees_anything(self) -> bool:
        """False when the caller may not even know the community exists."""
        return self.can_read or self.can_write or self.public


def is_visible(
    clearance: Clearance, producer_org_id: int | None, tlp: Tlp, recipients: Collection[str]
) -> bool:
    """The visibility rule over in-memory values (see module docstring)."""
    if clearance.org_id is not None and producer_org_id == clearance.org_id:
        return True
    if clearance.can_read and tlp <= clearance.max_tlp:
        return tlp < Tlp.RED or clearance.identity_id in recipients
    return clearance.public and tlp == Tlp.CLEAR
