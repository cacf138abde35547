"""Small factories for organisations, tokens and STIX objects."""

from __future__ import annotations

import itertools
import uuid
from dataclasses import dataclass
from typing import Any

from commonwatch.domain.markings import (
    RECIPIENTS_EXTENSION_ID,
    RECIPIENTS_PROPERTY,
    TLP2_MARKING_BY_LEVEL,
    Tlp,
)
from commonwatch.domain.visibility import Principal
from commonwatch.services.exchange import Exchange

_seq = itertools.count(1)


@dataclass
class Member:
    org: str
    user: str
    token: str
    identity: str
    principal: Principal


def make_member(exchange: Exchange, name: str, sector: str = "operator", role: str = "analyst") -> Member:
    exchange.admin.create_org(name, sector)
    user = f"{name.lower().replace(' ', '-')}-user"
    exchange.admin.create_user(name, user, role)
    token = exchange.admin.create_token(user).secret
    principal = exchange.auth.principal_for_user(user)
    return Member(name, user, token, principal.org_identity, principal)


def make_community(
    exchange: Exchange, name: str, default_tlp: Tlp, members: dict[str, tuple[bool, Tlp]],
    title: str | None = None, description: str = "",
) -> str:
    """A community with memberships (organisation -> (can write, max TLP); all may read);
    returns its collection id."""
    exchange.admin.create_community(name, title, description, default_tlp)
    for org, (write, max_tlp) in members.items():
        exchange.admin.set_membership(org, name, True, write, max_tlp)
    return exchange.admin.get_community(name).collection_id


def ts(n: int) -> str:
    """A distinct, increasing STIX timestamp per n (seconds from a fixed base)."""
    base = 1_767_225_600  # 2026-01-01T00:00:00Z
    import datetime as dt

    t = dt.datetime.fromtimestamp(base + n, tz=dt.UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def indicator(
    value: str | None = None, *, tlp: Tlp | None = None, recipients: list[str] | None = None,
    created: int = 0, modified: int | None = None, oid: str | None = None,
    created_by: str | None = None, **extra: Any,
) -> dict[str, Any]:
    n = next(_seq)
    value = value or f"198.51.100.{n % 250}"
    obj: dict[str, Any] = {
        "type": "indicator", "spec_version": "2.1",
        "id": oid or f"indicator--{uuid.uuid4()}",
        "created": ts(created), "modified": ts(created if modified is None else modified),
        "name": f"test indicator {n}", "pattern": f"[ipv4-addr:value = '{value}']",
        "pattern_type": "stix", "valid_from": ts(created), "indicator_types": ["malicious-activity"],
    }
    if created_by:
        obj["created_by_ref"] = created_by
    if tlp is not None:
        obj = marked(obj, tlp, recipients)
    elif recipients is not None:
        obj["extensions"] = _recipients(recipients)
    obj.update(extra)
    return obj


def marked(obj: dict[str, Any], tlp: Tlp, recipients: list[str] | None = None) -> dict[str, Any]:
    """A copy of ``obj`` marked ``tlp`` (TLP 2.0), with TLP:RED ``recipients`` if given."""
    obj = dict(obj)
    obj["object_marking_refs"] = [TLP2_MARKING_BY_LEVEL[tlp]]
    if recipients is not None:
        obj["extensions"] = _recipients(recipients)
    return obj


def _recipients(recipients: list[str]) -> dict[str, Any]:
    return {RECIPIENTS_EXTENSION_ID: {"extension_type": "property-extension",
                                      RECIPIENTS_PROPERTY: recipients}}


def new_version(obj: dict[str, Any], modified: int, **changes: Any) -> dict[str, Any]:
    out = dict(obj)
    out["modified"] = ts(modified)
    out.update(changes)
    return out


def ipv4(value: str, tlp: Tlp | None = None) -> dict[str, Any]:
    obj: dict[str, Any] = {"type": "ipv4-addr", "spec_version": "2.1",
                           "id": f"ipv4-addr--{uuid.uuid5(uuid.NAMESPACE_URL, value)}", "value": value}
    if tlp is not None:
        obj["object_marking_refs"] = [TLP2_MARKING_BY_LEVEL[tlp]]
    return obj
