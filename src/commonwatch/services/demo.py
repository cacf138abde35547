"""A demo federation: five organisations, two communities, objects at every TLP.

Deterministic ids (UUIDv5) so a demo database looks the same on every machine. All
addresses and domains come from documentation ranges (RFC 5737, RFC 3849, RFC 2606);
every name is fictional.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from commonwatch.domain.markings import (
    RECIPIENTS_EXTENSION_ID,
    RECIPIENTS_PROPERTY,
    TLP2_MARKING_BY_LEVEL,
    Tlp,
)
from commonwatch.services.exchange import Exchange

_NS = uuid.UUID("6f1c0b8e-5d0a-4d67-9d53-3c1c2f7f5a10")


@dataclass(frozen=True, slots=True)
class DemoOrg:
    name: str
    sector: str
    country: str
    user: str


ORGS = (
    DemoOrg("National CERT", "government", "LU", "natcert-analyst"),
    DemoOrg("Northern Telecom", "operator", "LU", "northtel-analyst"),
    DemoOrg("Southern Telecom", "operator", "BE", "southtel-analyst"),
    DemoOrg("Acme Networks", "vendor", "DE", "acme-psirt"),
    DemoOrg("City Hospital", "end-user", "LU", "cityhosp-soc"),
)
ADMIN_USER = "admin"
#: community -> (default TLP, {org name: (can_read, can_write, max_tlp)})
COMMUNITIES: dict[str, tuple[Tlp, dict[str, tuple[bool, bool, Tlp]]]] = {
    "national-network": (
        Tlp.AMBER,
        {
            "National CERT": (True, True, Tlp.RED),
            "Northern Telecom": (True, True, Tlp.RED),
            "Southern Telecom": (True, True, Tlp.AMBER_STRICT),
            "Acme Networks": (True, True, Tlp.AMBER),
            "City Hospital": (True, True, Tlp.GREEN),
        },
    ),
    "telecom-isac": (
        Tlp.GREEN,
        {
            "National CERT": (True, True, Tlp.RED),
            "Northern Telecom": (True, True, Tlp.AMBER_STRICT),
            "Southern Telecom": (True, True, Tlp.AMBER_STRICT),
            "Acme Networks": (True, False, Tlp.GREEN),
        },
    ),
}


def _id(kind: str, name: str) -> str:
    return f"{kind}--{uuid.uuid5(_NS, kind + ':' + name)}"


def _ts(day: int, hour: int = 9) -> str:
    return f"2026-11-{day:02d}T{hour:02d}:00:00.000Z"


def _sdo(kind: str, key: str, identity: str, tlp: Tlp, day: int, **props: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "type": kind,
        "spec_version": "2.1",
        "id": _id(kind, key),
        "created": _ts(day),
        "modified": _ts(day),
        "created_by_ref": identity,
        "object_marking_refs": [TLP2_MARKING_BY_LEVEL[tlp]],
    }
    obj.update(props)
    return obj


def _indicator(value: str, kind: str, identity: str, tlp: Tlp, day: int, label: str) -> dict[str, Any]:
    path = {"ipv4-addr": "value", "domain-name": "value", "url": "value", "file": "hashes.'SHA-256'"}[kind]
    return _sdo(
        "indicator",
        f"{kind}:{value}",
        identity,
        tlp,
        day,
        name=f"{label}: {value}",
        indicator_types=["malicious-activity"],
        pattern=f"[{kind}:{path} = '{value}']",
        pattern_type="stix",
        valid_from=_ts(day),
        confidence=80,
        labels=[label.lower().replace(" ", "-")],
    )


def _relationship(
    identity: str, day: int, source: dict[str, Any], kind: str, target: dict[str, Any]
) -> dict[str, Any]:
    """A TLP:GREEN ``source kind target`` relationship with a deterministic id."""
    return _sdo("relationship", f"{source['id']} {kind} {target['id']}", identity, Tlp.GREEN, day,
                relationship_type=kind, source_ref=source["id"], target_ref=target["id"])


def objects_by_org(identities: dict[str, str]) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """The demo objects: org name -> community -> objects that org posts there."""
    cert, north, south = (
        identities["National CERT"],
        identities["Northern Telecom"],
        identities["Southern Telecom"],
    )
    acme, hosp = identities["Acme Networks"], identities["City Hospital"]
    actor = _sdo(
        "intrusion-set",
        "COPPER SHARK",
        cert,
        Tlp.GREEN,
        2,
        name="COPPER SHARK",
        description="Fictional actor targeting edge routers of network operators.",
        goals=["persistent access to telecom core networks"],
    )
    malware = _sdo(
        "malware",
        "WireTap",
        cert,
        Tlp.GREEN,
        2,
        name="WireTap",
        is_family=True,
        malware_types=["backdoor"],
        description="Implant for router management planes.",
    )
    c2 = [_indicator(f"198.51.100.{n}", "ipv4-addr", cert, Tlp.GREEN, 3, "WireTap C2") for n in (7, 23, 41)]
    doms = [
        _indicator(d, "domain-name", cert, Tlp.CLEAR, 3, "COPPER SHARK phishing")
        for d in ("login-update.example", "router-firmware.example.net")
    ]
    amber = [
        _indicator(f"203.0.113.{n}", "ipv4-addr", cert, Tlp.AMBER, 4, "Scanning infrastructure")
        for n in (5, 66)
    ]
    red = _indicator("192.0.2.200", "ipv4-addr", cert, Tlp.RED, 5, "Victim-specific C2")
    red["extensions"] = {
        RECIPIENTS_EXTENSION_ID: {"extension_type": "property-extension", RECIPIENTS_PROPERTY: [north]}
    }
    rels = [_relationship(cert, 3, i, "indicates", malware) for i in c2]
    uses = _relationship(cert, 2, actor, "uses", malware)
    report = _sdo(
        "report",
        "COPPER SHARK campaign",
        cert,
        Tlp.GREEN,
        6,
        name="COPPER SHARK targets operator edge routers",
        published=_ts(6),
        report_types=["threat-actor", "campaign"],
        object_refs=[actor["id"], malware["id"], uses["id"]] + [i["id"] for i in c2],
    )
    vuln = _sdo(
        "vulnerability",
        "ACME-SA-2026-003",
        acme,
        Tlp.CLEAR,
        4,
        name="EdgeRouter management-plane authentication bypass",
        external_references=[{"source_name": "acme-psirt", "external_id": "ACME-SA-2026-003"}],
    )
    exploit_rel = _relationship(cert, 5, malware, "targets", vuln)
    opinion = _sdo(
        "opinion",
        "acme-on-report",
        acme,
        Tlp.GREEN,
        7,
        opinion="disagree",
        explanation="Affected devices run the patched 4.2 firmware; see ACME-SA-2026-003.",
        object_refs=[report["id"]],
    )
    north_ind = _indicator("198.51.100.99", "ipv4-addr", north, Tlp.AMBER_STRICT, 6, "Brute force source")
    north_url = _indicator(
        "http://router-firmware.example.net/update.bin", "url", north, Tlp.AMBER, 6, "Malware download"
    )
    sight_north = _sdo(
        "sighting",
        "north-sees-c2",
        north,
        Tlp.GREEN,
        8,
        sighting_of_ref=c2[0]["id"],
        count=14,
        first_seen=_ts(7),
        last_seen=_ts(8),
        where_sighted_refs=[north],
    )
    south_hash = _indicator(
        "4f2a9c0d6b1e8a73f5c2d9e0b7a61c3f8e2d4b6a9c0e1f2d3a4b5c6d7e8f9a0b",
        "file",
        south,
        Tlp.GREEN,
        7,
        "WireTap sample",
    )
    sight_south = _sdo(
        "sighting",
        "south-sees-domain",
        south,
        Tlp.AMBER,
        8,
        sighting_of_ref=doms[0]["id"],
        count=3,
        where_sighted_refs=[south],
    )
    sight_hosp = _sdo(
        "sighting",
        "hospital-sees-domain",
        hosp,
        Tlp.GREEN,
        9,
        sighting_of_ref=doms[1]["id"],
        count=1,
        where_sighted_refs=[hosp],
    )
    hosp_ind = _indicator("phish-invoice.example.org", "domain-name", hosp, Tlp.GREEN, 9, "Invoice phishing")
    scos = [
        {"type": "ipv4-addr", "spec_version": "2.1", "id": _id("ipv4-addr", v), "value": v}
        for v in ("198.51.100.7", "198.51.100.23")
    ]
    shared = [actor, malware, *c2, *doms, *rels, uses, report, exploit_rel, *scos]
    return {
        "National CERT": {
            "national-network": [*shared, *amber, red],
            "telecom-isac": [actor, malware, *c2, *rels, uses],
        },
        "Northern Telecom": {
            "national-network": [north_ind, north_url, sight_north],
            "telecom-isac": [north_ind, sight_north],
        },
        "Southern Telecom": {"national-network": [south_hash, sight_south], "telecom-isac": [south_hash]},
        "Acme Networks": {"national-network": [vuln, opinion]},
        "City Hospital": {"national-network": [hosp_ind, sight_hosp]},
    }


def create_demo(exchange: Exchange) -> bool:
    """Create the demo federation unless organisations exist; True if it was created."""
    admin = exchange.admin
    if admin.list_orgs():
        return False
    operator = admin.create_org("Exchange Operators", "other", "LU")
    admin.create_user(operator.name, ADMIN_USER, "admin")
    identities = {}
    for org in ORGS:
        identities[org.name] = admin.create_org(org.name, org.sector, org.country).identity_id
        admin.create_user(org.name, org.user, "analyst")
    collections = {}
    for name, (default, members) in COMMUNITIES.items():
        title = name.replace("-", " ").title()
        collections[name] = admin.create_community(
            name, title, f"Demo community {title}", default
        ).collection_id
        for org_name, (read, write, ceiling) in members.items():
            admin.set_membership(org_name, name, read, write, ceiling)
    for org in ORGS:
        principal = exchange.auth.principal_for_user(org.user)
        for community, objs in objects_by_org(identities).get(org.name, {}).items():
            report = exchange.ingest.add_objects(principal, collections[community], objs)
            if report.failures:
                raise RuntimeError(f"demo data rejected: {report.failures[0]}")
    return True


def demo_tokens(exchange: Exchange) -> list[tuple[str, str, str]]:
    """A fresh token for the admin and each demo organisation's user: (org, user, token)."""
    out = []
    for org_name, user in [("Exchange Operators", ADMIN_USER)] + [(o.name, o.user) for o in ORGS]:
        out.append((org_name, user, exchange.admin.create_token(user, "demo", 30).secret))
    return out
