"""Adversarial MISP imports, checked through what is stored and who can read it.

The promises (docs/import.md, "MISP events and feeds"): attributes and objects become
SCOs and indicators; ``tlp:*`` tags become TLP markings, the most restrictive of event,
object and attribute winning; MISP distribution is honoured and never widened; galaxies
become SDOs; sightings become sightings; the event becomes a report; ids are
deterministic; a malformed record never aborts an import and is never dropped silently.

Every test imports through the real services (ImportService -> IngestService) and reads
back through the one visibility-filtered QueryService as three members of one community
(default TLP:GREEN): Alice imports (cleared RED), Bob reads up to AMBER, Carol up to GREEN.
The events are shaped as MISP, PyMISP and the MISP REST API write them (see
tests/imports/data). A comment "Was:" above an assertion names the defect it found,
since fixed.
"""

from __future__ import annotations

import copy
import gzip
import json
from pathlib import Path
from typing import Any

import pytest

from commonwatch.domain.markings import TLP_MARKING_IDS, Tlp
from commonwatch.domain.warninglists import load_warninglists
from commonwatch.formats.sources import DEFAULT_MAX_BYTES, expand
from commonwatch.services.importer import ImportService, ImportSummary
from commonwatch.services.query import ObjectFilter
from imports.helpers import FROZEN_TIME

from conftest import count_rows
from support.factories import Member, make_community, make_member

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

EVENT_UUID = "7a1c0e5e-3b2d-4c1e-9f00-00000000e000"
REPORT = f"report--{EVENT_UUID}"
PARTNER = "5f0c2a1e-6b7d-4c3e-9a1b-2c3d4e5f6a7b"  # the event's Orgc: not the importing organisation
REF_KEYS = ("object_refs", "where_sighted_refs", "resolves_to_refs", "sighting_of_ref", "source_ref",
            "target_ref", "created_by_ref")


def u(n: int) -> str:
    return f"7a1c0e5e-0000-4a00-8000-{n:012x}"


# -- MISP documents as MISP writes them --------------------------------------------------------
def attr(n: int, **kw: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": str(700 + n), "type": "ip-dst", "category": "Network activity", "to_ids": True,
        "uuid": u(n), "event_id": "1658", "distribution": "5", "timestamp": "1700000000",
        "comment": "", "sharing_group_id": "0", "deleted": False, "disable_correlation": False,
        "object_id": "0", "object_relation": None, "first_seen": None, "last_seen": None,
        "value": f"185.220.101.{n}", "Galaxy": [], "ShadowAttribute": [],
    }
    base.update(kw)
    return base


def tag(name: str, **kw: Any) -> dict[str, Any]:
    return {"id": "12", "name": name, "colour": "#ffffff", "exportable": True, "user_id": "0",
            "hide_tag": False, "numerical_value": None, "is_galaxy": False, "is_custom_galaxy": False,
            "local_only": False, "local": 0, **kw}


def event(**kw: Any) -> dict[str, Any]:
    ev: dict[str, Any] = {
        "id": "1658", "orgc_id": "2", "org_id": "1", "date": "2023-11-14", "threat_level_id": "2",
        "info": "adversarial MISP event", "published": True, "uuid": EVENT_UUID, "attribute_count": "1",
        "analysis": "2", "timestamp": "1700000000", "distribution": "3", "proposal_email_lock": False,
        "locked": False, "publish_timestamp": "1700000500", "sharing_group_id": "0",
        "disable_correlation": False, "extends_uuid": "",
        "Org": {"id": "1", "name": "Alice Telecom MISP", "uuid": "0c7a3d5e-1111-4222-8333-444455556666"},
        "Orgc": {"id": "2", "name": "Partner CERT", "uuid": PARTNER, "local": False},
        "Attribute": [attr(1)], "ShadowAttribute": [], "RelatedEvent": [], "Galaxy": [], "Object": [],
        "Tag": [tag("tlp:clear")],
    }
    ev.update(kw)
    return {"Event": ev}


def cluster(n: int, value: str, ctype: str = "threat-actor", **kw: Any) -> dict[str, Any]:
    return {"id": str(9000 + n), "uuid": u(n), "collection_uuid": "7cdff317-a673-4474-84ec-4f1754947823",
            "type": ctype, "value": value, "tag_name": f'misp-galaxy:{ctype}="{value}"',
            "description": f"{value} (galaxy cluster)", "galaxy_id": "3", "source": "MISP Project",
            "authors": ["Various"], "version": "300", "distribution": "3", "sharing_group_id": None,
            "default": True, "locked": False, "extends_uuid": "", "published": False, "deleted": False,
            "meta": {"synonyms": [f"{value} alias"]}, "tag_id": "44", "local": False, **kw}


def galaxy(*clusters: dict[str, Any], gtype: str = "threat-actor") -> dict[str, Any]:
    return {"id": "3", "uuid": "698774c7-8022-42c4-917f-8d6e4f06ada3", "name": "Threat Actor", "type": gtype,
            "description": "Threat actors", "version": "3", "icon": "user-secret", "namespace": "misp",
            "GalaxyCluster": list(clusters)}


def write(tmp_path: Path, name: str, doc: Any, gz: bool = False) -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    data = json.dumps(doc).encode()
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


# -- the community and the reads ---------------------------------------------------------------
@pytest.fixture
def world(exchange) -> tuple[Member, Member, Member]:
    alice = make_member(exchange, "Alice Telecom")
    bob = make_member(exchange, "Bob CERT", sector="government")
    carol = make_member(exchange, "Carol Vendor", sector="vendor")
    make_community(exchange, "ops", Tlp.GREEN, {alice.org: (True, Tlp.RED), bob.org: (False, Tlp.AMBER),
                                               carol.org: (False, Tlp.GREEN)})
    return alice, bob, carol


def run_import(exchange, member: Member, *paths: Path, max_bytes: int = DEFAULT_MAX_BYTES) -> ImportSummary:
    service = ImportService(exchange.ingest, exchange.query, load_warninglists(), batch_size=50)
    community = service.community(member.principal, "ops")
    ctx = service.context(member.principal, community, timestamp=FROZEN_TIME)
    return service.run(member.principal, community, list(expand([str(p) for p in paths])), "auto", ctx,
                       max_bytes=max_bytes)


def seen_by(exchange, member: Member) -> dict[str, dict[str, Any]]:
    """The newest version of every object ``member`` may read in the community."""
    cid = exchange.admin.get_community("ops").collection_id
    page = exchange.query.objects(member.principal, cid, ObjectFilter(limit=10_000))
    return {obj["id"]: obj for obj in (json.loads(r.raw) for r in page.rows)}


def tlp_of(obj: dict[str, Any]) -> Tlp | None:
    levels = [TLP_MARKING_IDS[m] for m in obj.get("object_marking_refs", []) if m in TLP_MARKING_IDS]
    return max(levels) if levels else None


def refs_of(obj: dict[str, Any]) -> set[str]:
    out: set[str] = set()
    for key in REF_KEYS:
        value = obj.get(key)
        out.update(value if isinstance(value, list) else [value] if isinstance(value, str) else [])
    return out


def content_text(objs: dict[str, dict[str, Any]]) -> str:
    """Every string and number the objects hold, one per line, but their ids and references
    (so a uuid never matches by chance)."""
    out: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                if k != "id" and k not in REF_KEYS:
                    walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)
        elif value is not None:
            out.append(str(value))

    walk(list(objs.values()))
    return "\n".join(out)


def can_read(exchange, member: Member, oid: str) -> bool:
    return oid in seen_by(exchange, member)


def rejected_at(summary: ImportSummary, needle: str) -> list[str]:
    return [r.reason for r in summary.rejections if needle in r.position]


# == TLP tags ==================================================================================
@pytest.mark.parametrize(("event_tags", "attr_tags", "expected"), [
    ([tag("tlp:clear")], [tag("tlp:amber+strict")], Tlp.AMBER_STRICT),
    ([tag("TLP:AMBER")], [tag("tlp:white")], Tlp.AMBER),      # the event's tag is stricter
    ([tag(" tlp:red ")], [], Tlp.RED),
    ([tag("tlp:white")], [tag("TLP:Amber+Strict")], Tlp.AMBER_STRICT),
    (["tlp:green"], [], Tlp.GREEN),                           # a bare tag name
    ([tag("tlp:clear"), tag("tlp:amber")], [tag("tlp:green")], Tlp.AMBER),
])
def test_most_restrictive_tlp_tag_wins_for_what_is_stored(exchange, world, tmp_path, event_tags, attr_tags,
                                                          expected) -> None:
    alice, bob, carol = world
    doc = event(Tag=event_tags, Attribute=[attr(1, Tag=attr_tags), attr(2, to_ids=False, Tag=attr_tags)])
    summary = run_import(exchange, alice, write(tmp_path, "event.json", doc))
    assert summary.ok, summary.rejections
    mine = seen_by(exchange, alice)
    indicator = mine[f"indicator--{u(1)}"]
    sco = next(o for o in mine.values() if o.get("value") == "185.220.101.2")
    assert tlp_of(indicator) == tlp_of(sco) == expected
    for member, ceiling in ((bob, Tlp.AMBER), (carol, Tlp.GREEN)):
        assert (indicator["id"] in seen_by(exchange, member)) == (expected <= ceiling and expected != Tlp.RED)


@pytest.mark.parametrize("form", ["EventTag", "AttributeTag"])
def test_tlp_tag_in_the_rest_api_tag_forms_is_honoured(exchange, world, tmp_path, form) -> None:
    # MISP's REST API (GET /events, restSearch with includeEventTags) writes tags as
    # {"EventTag": [{"local": false, "Tag": {"name": ...}}]}, attributes as "AttributeTag".
    alice, bob, carol = world
    red = [{"id": "31", "event_id": "1658", "tag_id": "3", "local": False, "relationship_type": "",
            "Tag": {"id": "3", "name": "tlp:red", "colour": "#CC0033", "is_galaxy": False}}]
    doc = event(Tag=[], Attribute=[attr(1, **({"AttributeTag": red} if form == "AttributeTag" else {}))],
                **({"EventTag": red} if form == "EventTag" else {}))
    summary = run_import(exchange, alice, write(tmp_path, "event.json", doc))
    ind = f"indicator--{u(1)}"
    assert ind in seen_by(exchange, alice) or rejected_at(summary, u(1))
    # Was: a tlp:red given in MISP's EventTag/AttributeTag form is ignored: the indicator is stored
    # unmarked (community default GREEN) and every member reads it.
    assert not can_read(exchange, bob, ind) and not can_read(exchange, carol, ind)


def test_tlp_tag_with_a_space_after_the_colon_is_not_ignored(exchange, world, tmp_path) -> None:
    alice, bob, _ = world
    doc = event(Tag=[tag("TLP: RED")], Attribute=[attr(1)])
    summary = run_import(exchange, alice, write(tmp_path, "event.json", doc))
    ind = f"indicator--{u(1)}"
    assert ind in seen_by(exchange, alice) or rejected_at(summary, u(1))
    # Was: "TLP: RED" is not read as a TLP tag (and becomes a plain label): the indicator is shared
    # at the community default instead of being refused or kept RED.
    assert not can_read(exchange, bob, ind)


# == distribution: never widened ===============================================================
def test_report_never_names_what_a_narrower_attribute_holds(exchange, world, tmp_path) -> None:
    alice, bob, carol = world
    doc = event(Attribute=[attr(1), attr(2, distribution="0", to_ids=False), attr(3, distribution="1")])
    run_import(exchange, alice, write(tmp_path, "event.json", doc))
    mine = seen_by(exchange, alice)
    secret_sco = next(o["id"] for o in mine.values() if o.get("value") == "185.220.101.2")
    assert tlp_of(mine[secret_sco]) == Tlp.RED and tlp_of(mine[f"indicator--{u(3)}"]) == Tlp.AMBER
    bobs = seen_by(exchange, bob)
    assert secret_sco not in bobs and REPORT in bobs
    # Was: the TLP:CLEAR report lists the ids of distribution-0 content; an SCO id is a UUIDv5 of the
    # value, so anyone who reads the report can confirm a guessed "your organisation only" value.
    assert secret_sco not in bobs[REPORT]["object_refs"]
    carols = seen_by(exchange, carol)
    assert not {r for o in carols.values() for r in refs_of(o)} & (set(mine) - set(carols))


@pytest.mark.parametrize("narrow", [{"distribution": "0"}, {"Tag": [tag("tlp:red")]}])
def test_link_attribute_of_narrower_distribution_stays_out_of_the_report(exchange, world, tmp_path,
                                                                         narrow) -> None:
    alice, bob, _ = world
    url = "https://intranet.alice-telecom.net/cases/INC-4711"
    doc = event(Attribute=[attr(1), attr(2, type="link", category="External analysis", to_ids=False,
                                         value=url, **narrow)])
    summary = run_import(exchange, alice, write(tmp_path, "event.json", doc))
    assert url in content_text(seen_by(exchange, alice)) or rejected_at(summary, u(2))
    # Was: a link attribute becomes an external reference of the report, which carries the event's
    # TLP:CLEAR, so a distribution-0 / tlp:red link is readable by every member.
    assert url not in content_text(seen_by(exchange, bob))


@pytest.mark.parametrize("narrow", [{"distribution": "0"}, {"distribution": "4", "sharing_group_id": "3"}])
def test_galaxy_of_a_narrower_attribute_is_not_linked_for_others(exchange, world, tmp_path, narrow) -> None:
    alice, bob, _ = world
    secret = attr(2, **narrow, Galaxy=[galaxy(cluster(60, "Quiet Lynx"))])
    run_import(exchange, alice, write(tmp_path, "event.json", event(Attribute=[attr(1), secret])))
    actor = f"threat-actor--{u(60)}"
    bobs = seen_by(exchange, bob)
    assert REPORT in bobs and f"indicator--{u(2)}" not in bobs
    # Was: the galaxy attached to a distribution-0 (or rejected sharing-group) attribute becomes an
    # unmarked SDO that the TLP:CLEAR report refers to: the attribution is shared with everyone.
    assert actor not in bobs[REPORT]["object_refs"]


def test_custom_galaxy_cluster_of_distribution_0_is_not_shared(exchange, world, tmp_path) -> None:
    alice, bob, _ = world
    private = cluster(61, "INTERNAL-TRACK-7", default=False, distribution="0", source="Alice Telecom",
                      description="our own tracking name for the insider case")
    run_import(exchange, alice, write(tmp_path, "event.json", event(Galaxy=[galaxy(private)])))
    assert f"threat-actor--{u(61)}" in seen_by(exchange, alice)
    # Was: a custom (non-default) cluster with distribution 0 is stored unmarked and signed by
    # "MISP Project" as if public galaxy knowledge; every member reads it.
    assert "INTERNAL-TRACK-7" not in content_text(seen_by(exchange, bob))


def test_producer_identity_of_a_distribution_0_event_stays_private(exchange, world, tmp_path) -> None:
    alice, bob, _ = world
    doc = event(distribution="0", Orgc={"id": "2", "name": "Secret Source Ltd", "uuid": PARTNER})
    run_import(exchange, alice, write(tmp_path, "event.json", doc))
    mine, bobs = seen_by(exchange, alice), seen_by(exchange, bob)
    assert tlp_of(mine[REPORT]) == Tlp.RED and REPORT not in bobs
    assert mine[REPORT]["created_by_ref"] == f"identity--{PARTNER}"
    # Was: the Orgc identity of a "your organisation only" event is stored unmarked (community
    # default): other members learn who gave Alice this event (a sharing-group event stores none).
    assert not can_read(exchange, bob, f"identity--{PARTNER}")


def test_sighting_organisation_of_a_red_indicator_stays_private(exchange, world, tmp_path) -> None:
    alice, bob, _ = world
    sensor = "8b1e0d2c-9f3a-4b5c-8d7e-6f5a4b3c2d1e"
    sighting = {"id": "5", "attribute_id": "701", "event_id": "1658", "org_id": "7",
                "date_sighting": "1700000100", "uuid": u(80), "source": "", "type": "0",
                "Organisation": {"id": "7", "uuid": sensor, "name": "Quiet Sensor Co"}}
    doc = event(Attribute=[attr(1), attr(2, distribution="0", Sighting=[sighting])])
    summary = run_import(exchange, alice, write(tmp_path, "event.json", doc))
    assert summary.ok, summary.rejections
    mine, bobs = seen_by(exchange, alice), seen_by(exchange, bob)
    assert tlp_of(mine[f"sighting--{u(80)}"]) == Tlp.RED and f"sighting--{u(80)}" not in bobs
    # Was: the sighting is RED, but its where_sighted identity is stored unmarked: other members
    # learn that "Quiet Sensor Co" sighted something in Alice's private data.
    assert not can_read(exchange, bob, f"identity--{sensor}")


def test_sightings_are_never_readable_without_their_indicator(exchange, world, tmp_path) -> None:
    # Two attributes with one uuid (a hand-merged event): the distribution-0 one is stored, the
    # other refused as a conflicting version, and the sighting must follow what was stored.
    alice, bob, _ = world
    sighting = {"uuid": u(81), "type": "0", "date_sighting": "1700000100", "source": "ids"}
    doc = event(Attribute=[attr(1, distribution="0"), attr(1, value="185.220.101.99", Sighting=[sighting])])
    summary = run_import(exchange, alice, write(tmp_path, "event.json", doc))
    assert rejected_at(summary, u(1))  # the conflicting second version is listed, not dropped
    assert tlp_of(seen_by(exchange, alice)[f"indicator--{u(1)}"]) == Tlp.RED
    bobs = seen_by(exchange, bob)
    assert f"indicator--{u(1)}" not in bobs
    orphans = [o["id"] for o in bobs.values() if o["type"] == "sighting" and o["sighting_of_ref"] not in bobs]
    # Was: the sighting takes the TLP of the last attribute with that uuid (CLEAR), not of the stored
    # RED indicator: Bob reads a sighting (and a sighting count) of an indicator he may not see.
    assert orphans == []


def test_object_and_attribute_narrower_than_the_event(exchange, world, tmp_path) -> None:
    alice, bob, carol = world
    domain_ip = {"id": "80", "name": "domain-ip", "meta-category": "network", "uuid": u(100),
                 "timestamp": "1700000000", "distribution": "1", "sharing_group_id": "0", "deleted": False,
                 "comment": "", "ObjectReference": [], "Attribute": [
                     attr(101, type="domain", value="c2.evil-c2.top", object_relation="domain"),
                     attr(102, value="45.142.212.61", object_relation="ip", distribution="0")]}
    file_obj = {"id": "81", "name": "file", "meta-category": "file", "uuid": u(110),
                "timestamp": "1700000000", "distribution": "5", "sharing_group_id": "0", "deleted": False,
                "comment": "dropper",
                "ObjectReference": [{"id": "9", "uuid": u(120), "timestamp": "1700000000",
                                     "object_uuid": u(110), "referenced_uuid": u(100),
                                     "relationship_type": "communicates-with"}],
                "Attribute": [attr(111, type="sha256", category="Payload delivery", object_relation="sha256",
                                   value="9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"),
                              attr(112, type="filename", category="Payload delivery",
                                   object_relation="filename", value="upd.exe", to_ids=False)]}
    summary = run_import(exchange, alice, write(tmp_path, "event.json", event(Object=[domain_ip, file_obj])))
    assert summary.ok, summary.rejections
    mine = seen_by(exchange, alice)
    assert tlp_of(mine[f"indicator--{u(101)}"]) == Tlp.AMBER   # object distribution 1
    assert tlp_of(mine[f"indicator--{u(102)}"]) == Tlp.RED     # attribute distribution 0
    assert tlp_of(mine[f"relationship--{u(120)}"]) == Tlp.AMBER
    bobs, carols = seen_by(exchange, bob), seen_by(exchange, carol)
    assert f"indicator--{u(101)}" in bobs and f"indicator--{u(102)}" not in bobs
    assert f"indicator--{u(110)}" in carols and f"indicator--{u(101)}" not in carols
    assert f"relationship--{u(120)}" not in carols


# == deleted, unknown and odd attributes ========================================================
@pytest.mark.parametrize("deleted", ["one hash", "whole object"])
def test_deleted_attributes_inside_a_file_object_are_not_imported(exchange, world, tmp_path, deleted) -> None:
    alice, _, _ = world
    wrong_hash = "a" * 64
    attrs = [attr(111, type="md5", category="Payload delivery", object_relation="md5",
                  value="5d41402abc4b2a76b9719d911017c592"),
             attr(112, type="sha256", category="Payload delivery", object_relation="sha256", value=wrong_hash,
                  deleted=True)]
    file_obj = {"id": "81", "name": "file", "meta-category": "file", "uuid": u(110),
                "timestamp": "1700000000", "distribution": "5", "sharing_group_id": "0",
                "deleted": deleted == "whole object",
                "comment": "", "ObjectReference": [], "Attribute": attrs}
    if deleted == "whole object":
        for a in attrs:
            a["deleted"] = True
    summary = run_import(exchange, alice, write(tmp_path, "event.json", event(Object=[file_obj])))
    # Was: the file-object path never looks at "deleted": a hash the producer deleted in MISP is
    # stored in the file SCO and in an indicator pattern, and nothing is listed as rejected.
    assert wrong_hash not in content_text(seen_by(exchange, alice))
    assert rejected_at(summary, u(112) if deleted == "one hash" else u(110))


def test_deleted_and_malformed_attributes_are_each_listed(exchange, world, tmp_path) -> None:
    alice, bob, _ = world
    doc = event(Attribute=[
        attr(1), attr(2, deleted=True), attr(3, deleted="1"), attr(4, type=""),
        attr(5, type="ip-dst|port", value="45.142.212.61"), attr(6, type="domain", value="evil-c2[.]top"),
        attr(7, type="filename|sha256", value="a|b.exe|" + "b" * 64),
    ])
    summary = run_import(exchange, alice, write(tmp_path, "event.json", doc))
    for n in range(2, 8):
        reasons = rejected_at(summary, u(n))
        assert len(reasons) == 1 and reasons[0], n
    assert all(r.source.endswith("event.json") for r in summary.rejections) and summary.rejected == 6
    assert f"indicator--{u(1)}" in seen_by(exchange, bob)
    assert "185.220.101.2" not in content_text(seen_by(exchange, alice))


def test_unknown_types_huge_comments_and_seen_times_are_kept(exchange, world, tmp_path) -> None:
    alice, bob, _ = world
    comment = "analyst notes " * 200_000  # 2.8 MB
    doc = event(Attribute=[
        attr(1, comment=comment, disable_correlation=True, first_seen="2022-04-21T16:55:46.000000+00:00",
             last_seen="2031-04-22T16:55:46.123456+02:00"),
        attr(2, type="ja3-fingerprint-md5", value="e7d705a3286e19ea42f587b344ee6865", distribution="0"),
        attr(3, type="ip-src", value=1234),  # a value of the wrong JSON type
    ])
    summary = run_import(exchange, alice, write(tmp_path, "event.json", doc))
    mine = seen_by(exchange, alice)
    ind = mine[f"indicator--{u(1)}"]
    assert ind["description"] == comment
    assert ind["valid_from"].startswith("2022-04-21T16:55:46")
    assert ind["valid_until"].startswith("2031-04-22T14:55:46")
    note = mine[f"note--{u(2)}"]
    assert "e7d705a3286e19ea42f587b344ee6865" in note["content"] and tlp_of(note) == Tlp.RED
    assert f"note--{u(2)}" not in seen_by(exchange, bob)
    assert f"indicator--{u(3)}" in mine or rejected_at(summary, u(3))


@pytest.mark.parametrize(("mtype", "value", "second"), [
    ("ip-dst|port", "45.142.212.61|31337", "31337"),
    ("hostname|port", "c2.evil-c2.top|31337", "31337"),
    ("regkey|value", r"HKLM\Software\Microsoft\Windows\CurrentVersion\Run\updater|C:\Users\Public\upd.exe",
     r"C:\Users\Public\upd.exe"),
])
def test_second_part_of_composite_attributes_is_kept(exchange, world, tmp_path, mtype, value,
                                                         second) -> None:
    alice, _, _ = world
    summary = run_import(exchange, alice, write(tmp_path, "event.json",
                                                event(Attribute=[attr(1, type=mtype, value=value)])))
    mine = seen_by(exchange, alice)
    assert summary.ok and f"indicator--{u(1)}" in mine
    # the pattern states the first part only; the port / registry data survives in the indicator's name
    assert second not in mine[f"indicator--{u(1)}"]["pattern"] and second in content_text(mine)


def test_defanged_and_padded_values(exchange, world, tmp_path) -> None:
    alice, _, _ = world
    doc = event(Attribute=[
        attr(1, value=" 45.142.212.61\n"), attr(2, type="domain", value="Evil-C2.TOP."),
        attr(3, type="domain", value="evil-c2[.]top"),
        attr(4, type="url", value="hxxp://evil-c2[.]top/gate.php"),
    ])
    summary = run_import(exchange, alice, write(tmp_path, "event.json", doc))
    mine = seen_by(exchange, alice)
    assert mine[f"indicator--{u(1)}"]["pattern"] == "[ipv4-addr:value = '45.142.212.61']"
    assert mine[f"indicator--{u(2)}"]["pattern"] == "[domain-name:value = 'evil-c2.top']"
    assert rejected_at(summary, u(3))  # a defanged domain is refused, with its reason
    urls = [o["value"] for o in mine.values() if o["type"] == "url"]
    # Was: a defanged URL is neither refanged nor refused: "hxxp://evil-c2[.]top/gate.php" is stored
    # as a url SCO and an indicator that can never match (domains in the same event are refused).
    assert not [v for v in urls if "[.]" in v or v.startswith("hxxp")]


# == tags, galaxies and event reports: nothing dropped, nothing published that was local ========
def test_local_tags_are_not_published_as_labels(exchange, world, tmp_path) -> None:
    alice, bob, _ = world
    doc = event(Tag=[tag("tlp:clear"), tag("customer:acme-bank-breach", local=1)],
                Attribute=[attr(1, Tag=[tag("case:INC-4711", local=True)])])
    run_import(exchange, alice, write(tmp_path, "event.json", doc))
    bobs = seen_by(exchange, bob)
    assert REPORT in bobs and f"indicator--{u(1)}" in bobs
    # Was: MISP local tags ("local": 1, never synchronised beyond the organisation) become labels of
    # the TLP:CLEAR report and indicator, readable by every member.
    assert "acme-bank" not in content_text(bobs) and "INC-4711" not in content_text(bobs)


def test_event_report_is_not_dropped_silently(exchange, world, tmp_path) -> None:
    alice, _, _ = world
    write_up = f"## Initial access\nSpear-phishing with an ISO attachment; see @[attribute]({u(1)})."
    doc = event(EventReport=[{"id": "3", "uuid": u(90), "event_id": "1658", "name": "Incident write-up",
                              "content": write_up, "distribution": "5", "sharing_group_id": "0",
                              "timestamp": "1700000000", "deleted": False}])
    summary = run_import(exchange, alice, write(tmp_path, "event.json", doc))
    # Was: the event's EventReport (MISP >= 2.4.134 writes it in every event) is neither imported
    # nor listed as rejected: the summary says ok and the analysis is gone.
    assert "Spear-phishing" in content_text(seen_by(exchange, alice)) or rejected_at(summary, u(90)) \
        or any("EventReport" in r.reason or "report" in r.position for r in summary.rejections)


def test_galaxy_of_an_object_attribute_is_not_dropped(exchange, world, tmp_path) -> None:
    alice, _, _ = world
    obj = {"id": "80", "name": "domain-ip", "meta-category": "network", "uuid": u(100),
           "timestamp": "1700000000", "distribution": "5", "sharing_group_id": "0", "deleted": False,
           "comment": "", "ObjectReference": [],
           "Attribute": [attr(101, type="domain", value="c2.evil-c2.top", object_relation="domain",
                              Galaxy=[galaxy(cluster(62, "Fancy Lynx"))])]}
    summary = run_import(exchange, alice, write(tmp_path, "event.json", event(Object=[obj])))
    # Was: galaxies attached to attributes inside objects are never read (only top-level attributes
    # are searched): no threat-actor, no rejection.
    assert can_read(exchange, alice, f"threat-actor--{u(62)}") or rejected_at(summary, "galaxy")


def test_galaxy_tag_of_an_attribute_is_not_dropped(exchange, world, tmp_path) -> None:
    alice, _, _ = world
    doc = event(Attribute=[attr(1), attr(2, to_ids=False, Tag=[tag('misp-galaxy:threat-actor="Sofacy"',
                                                                   is_galaxy=True)])])
    summary = run_import(exchange, alice, write(tmp_path, "event.json", doc))
    assert summary.ok
    # Was: a misp-galaxy tag on an attribute (as in pymisp_sighting_2.json) makes no SDO; on an
    # attribute without to_ids it is not even kept as a label: the attribution vanishes silently.
    assert "Sofacy" in content_text(seen_by(exchange, alice))


def test_event_level_galaxycluster_block_is_not_dropped(exchange, world, tmp_path) -> None:
    # GET /events (the index) writes clusters as Event.GalaxyCluster, each holding its Galaxy.
    alice, _, _ = world
    apt = {**cluster(63, "APT28"), "Galaxy": {k: v for k, v in galaxy().items() if k != "GalaxyCluster"}}
    summary = run_import(exchange, alice, write(tmp_path, "event.json", event(GalaxyCluster=[apt])))
    assert summary.ok
    # Was: an Event.GalaxyCluster block (docs/import.md names the block) is ignored without a word.
    assert can_read(exchange, alice, f"threat-actor--{u(63)}")


def test_galaxy_block_and_tag_give_one_sdo(exchange, world, tmp_path) -> None:
    alice, bob, _ = world
    apt = cluster(64, "Sandworm")
    doc = event(Tag=[tag("tlp:clear"), tag(apt["tag_name"], is_galaxy=True)], Galaxy=[galaxy(apt)])
    run_import(exchange, alice, write(tmp_path, "event.json", doc))
    actors = [o for o in seen_by(exchange, bob).values() if o["type"] == "threat-actor"]
    assert [(a["id"], a["name"], a["aliases"]) for a in actors] == [
        (f"threat-actor--{u(64)}", "Sandworm", ["Sandworm alias"])]


# == sightings ===================================================================================
def test_sightings_of_indicators_and_non_indicators(exchange, world, tmp_path) -> None:
    alice, bob, carol = world
    sightings = [{"uuid": u(81), "type": "0", "date_sighting": 1700000100, "source": "netflow"},
                 {"uuid": u(82), "type": "1", "date_sighting": "1700000200"},
                 {"uuid": u(83), "type": "2", "date_sighting": "1700000300"}]
    doc = event(Attribute=[attr(1, Tag=[tag("tlp:amber")], Sighting=sightings[:3]),
                           attr(2, to_ids=False, Sighting=[{"uuid": u(84), "type": "0",
                                                            "date_sighting": "1700000100"}])])
    summary = run_import(exchange, alice, write(tmp_path, "event.json", doc))
    reasons = {r.position.rsplit(" ", 1)[-1]: r.reason for r in summary.rejections}
    assert set(reasons) == {u(83), u(84)} and "to_ids" in reasons[u(84)]
    assert all(r.source.endswith("event.json") for r in summary.rejections)
    bobs = seen_by(exchange, bob)
    assert bobs[f"sighting--{u(81)}"]["sighting_of_ref"] == f"indicator--{u(1)}"
    assert bobs[f"opinion--{u(82)}"]["opinion"] == "strongly-disagree"
    assert tlp_of(bobs[f"sighting--{u(81)}"]) == Tlp.AMBER
    assert not {f"sighting--{u(81)}", f"opinion--{u(82)}"} & set(seen_by(exchange, carol))


# == producer, determinism, re-import ===========================================================
def test_orgc_other_than_the_importer_signs_and_alice_produces(exchange, world, tmp_path) -> None:
    alice, bob, _ = world
    run_import(exchange, alice, write(tmp_path, "event.json", event()))
    bobs = seen_by(exchange, bob)
    assert bobs[REPORT]["created_by_ref"] == f"identity--{PARTNER}"
    assert bobs[f"indicator--{u(1)}"]["created_by_ref"] == f"identity--{PARTNER}"
    assert bobs[f"identity--{PARTNER}"]["name"] == "Partner CERT"
    own_uuid = alice.identity.removeprefix("identity--")
    mine_too = {**event()["Event"], "Orgc": {"name": "Alice", "uuid": own_uuid}}
    mine_too["uuid"] = u(500)
    run_import(exchange, alice, write(tmp_path, "mine.json", {"Event": mine_too}))
    assert seen_by(exchange, bob)[f"report--{u(500)}"]["created_by_ref"] == alice.identity


def test_reimport_with_int_timestamps_and_gzip_stores_nothing(exchange, world, tmp_path) -> None:
    alice, _, _ = world
    first = event(Attribute=[attr(1), attr(2, to_ids=False), attr(3, type="domain", value="evil-c2.top")])
    summary = run_import(exchange, alice, write(tmp_path, "event.json", first))
    rows = count_rows(exchange, "stix_objects")
    again = copy.deepcopy(first)
    again["Event"]["timestamp"] = 1700000000
    again["Event"]["publish_timestamp"] = 1700000500
    for a in again["Event"]["Attribute"]:
        a["timestamp"], a["to_ids"], a["distribution"] = 1700000000, int(a["to_ids"]), 5
    second = run_import(exchange, alice, write(tmp_path, "again.json.gz", {"response": [again]}, gz=True))
    assert second.ok and second.stored == 0 and second.unchanged == summary.stored
    assert count_rows(exchange, "stix_objects") == rows


def test_event_without_uuid_imported_again_from_another_folder_is_no_duplicate(exchange, world,
                                                                               tmp_path) -> None:
    alice, _, _ = world
    doc = event(Attribute=[{"type": "domain", "category": "Network activity", "value": "evil-c2.top",
                            "to_ids": True, "timestamp": "1700000000"}])
    del doc["Event"]["uuid"]
    run_import(exchange, alice, write(tmp_path, "monday/event.json", doc))
    rows = count_rows(exchange, "stix_objects")
    again = run_import(exchange, alice, write(tmp_path, "tuesday/event.json", doc))
    # Was: an event without a uuid gets ids derived from the input's path, so the same bytes
    # imported from another folder store a second report and a second indicator.
    assert again.stored == 0 and count_rows(exchange, "stix_objects") == rows


# == feeds ======================================================================================
FEED = [f"65bb0000-aaaa-4bbb-8ccc-00000000000{n}" for n in range(1, 6)]


def feed_event(uuid: str, n: int, **kw: Any) -> dict[str, Any]:
    kw.setdefault("Attribute", [attr(n, type="domain", value=f"c{n}.evil-c2.top")])
    ev = event(uuid=uuid, info=f"feed event {n}", **kw)["Event"]
    for key in ("id", "orgc_id", "org_id", "distribution", "sharing_group_id", "Org"):  # as feeds write them
        ev.pop(key, None)
    return {"Event": ev}


def make_feed(tmp_path: Path, events: dict[str, dict[str, Any] | bytes], manifest: list[str]) -> Path:
    feed = tmp_path / "feed"
    feed.mkdir()
    (feed / "manifest.json").write_text(json.dumps({
        e: {"info": "x", "date": "2023-11-14", "timestamp": "1700000000", "Tag": [{"name": "tlp:clear"}],
            "Orgc": {"name": "Partner CERT", "uuid": PARTNER}, "analysis": "2", "threat_level_id": "2"}
        for e in manifest}))
    for name, body in events.items():
        (feed / f"{name}.json").write_bytes(body if isinstance(body, bytes) else json.dumps(body).encode())
    (feed / "hashes.csv").write_text("")
    return feed


def test_feed_one_oversized_event_does_not_abort_the_rest(exchange, world, tmp_path) -> None:
    alice, _, _ = world
    big = feed_event(FEED[1], 2, Attribute=[attr(2, type="text", value="x" * 20_000)])
    feed = make_feed(tmp_path, {FEED[0]: feed_event(FEED[0], 1),
                                FEED[1]: gzip.compress(json.dumps(big).encode()),
                                FEED[2]: feed_event(FEED[2], 3)}, FEED[:3])
    summary = run_import(exchange, alice, feed, max_bytes=10_000)
    assert any("larger than the limit" in r.reason for r in summary.rejections)
    assert f"report--{FEED[0]}" in seen_by(exchange, alice)
    # Was: the size error of one feed file escapes read_feed and ends the whole feed: the events
    # after it (in uuid order) are neither imported nor listed.
    assert can_read(exchange, alice, f"report--{FEED[2]}")


def test_feed_event_file_missing_from_the_manifest_is_not_ignored_silently(exchange, world, tmp_path) -> None:
    alice, _, _ = world
    feed = make_feed(tmp_path, {FEED[0]: feed_event(FEED[0], 1), FEED[3]: feed_event(FEED[3], 4)}, FEED[:1])
    summary = run_import(exchange, alice, feed)
    assert f"report--{FEED[0]}" in seen_by(exchange, alice)
    # Was: an event file in the feed folder that the manifest does not list is skipped without a word
    # (summary ok), although every file below a folder is an input.
    assert can_read(exchange, alice, f"report--{FEED[3]}") or rejected_at(summary, FEED[3]) \
        or any(FEED[3] in r.source for r in summary.rejections)


def test_feed_event_whose_uuid_differs_from_its_file_name(exchange, world, tmp_path) -> None:
    alice, bob, _ = world
    feed = make_feed(tmp_path, {FEED[0]: feed_event(FEED[4], 5), FEED[1]: feed_event(FEED[1], 2)}, FEED[:2])
    summary = run_import(exchange, alice, feed)
    bobs = seen_by(exchange, bob)
    assert summary.ok, summary.rejections
    assert {f"report--{FEED[4]}", f"report--{FEED[1]}"} <= set(bobs) and f"report--{FEED[0]}" not in bobs
    assert bobs[f"report--{FEED[4]}"]["created_by_ref"] == f"identity--{PARTNER}"


def test_gzip_event_over_the_size_limit_is_one_rejection_and_the_next_input_is_read(exchange, world,
                                                                                     tmp_path) -> None:
    alice, _, _ = world
    big = write(tmp_path, "a_big.json.bin", event(Attribute=[attr(1, comment="y" * 50_000)]), gz=True)
    small = write(tmp_path, "b_small.json", event(uuid=u(501), Attribute=[attr(2)]))
    summary = run_import(exchange, alice, big, small, max_bytes=20_000)
    assert [Path(r.source).name for r in summary.rejections] == ["a_big.json.bin"]
    mine = seen_by(exchange, alice)
    assert f"report--{u(501)}" in mine and f"indicator--{u(1)}" not in mine


def test_warninglisted_values_in_composites_and_objects_are_flagged(exchange, world, tmp_path) -> None:
    alice, _, _ = world
    empty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    file_obj = {"id": "81", "name": "file", "meta-category": "file", "uuid": u(110),
                "timestamp": "1700000000", "distribution": "5", "sharing_group_id": "0", "deleted": False,
                "comment": "", "ObjectReference": [],
                "Attribute": [attr(111, type="sha256", object_relation="sha256", value=empty)]}
    doc = event(Object=[file_obj], Attribute=[
        attr(1), attr(2, type="ip-dst|port", value="8.8.8.8|53"),
        attr(3, type="filename|md5", value="eicar.com|44D88612FEA8A8F36DE82E1278ABB02F")])
    summary = run_import(exchange, alice, write(tmp_path, "event.json", doc))
    hits = {h.id: h.lists for h in summary.hits}
    assert hits[f"indicator--{u(2)}"] == ("public-dns-resolvers",)
    assert hits[f"indicator--{u(3)}"] == ("empty-and-test-file-hashes",)
    assert hits[f"indicator--{u(110)}"] == ("empty-and-test-file-hashes",)
    assert f"indicator--{u(1)}" not in hits
