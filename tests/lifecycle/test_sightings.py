"""The sightings quick form: what is created, for whom it is visible, and what is refused."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest

from commonwatch.domain.markings import (
    RECIPIENTS_EXTENSION_ID,
    RECIPIENTS_PROPERTY,
    TLP2_MARKING_BY_LEVEL,
    Tlp,
)
from commonwatch.errors import InputTooLarge, InvalidParameter, NotFound, PermissionDenied
from commonwatch.services.query import ObjectFilter
from commonwatch.services.sightings import SightingService

from support.factories import indicator, make_member, new_version, ts

DATA = Path(__file__).parent / "data"
NOW = 1_780_000_000_000_000  # 2026-05-28T20:26:40Z, frozen


def service(world, clock=lambda: NOW) -> SightingService:
    x = world.exchange
    return SightingService(x.query, x.lookup, x.ingest, clock=clock)


def counts(world, value):
    """Sightings count each organisation sees for ``value`` through lookup."""
    return {m.org: world.exchange.lookup.lookup(m.principal, [value])[0].sightings
            for m in (world.cert, world.op, world.vendor, world.user)}


def stored(world, member, sighting_id):
    page = world.exchange.query.objects(member.principal, world.cid, ObjectFilter(ids=(sighting_id,)))
    return [orjson.loads(r.raw) for r in page.rows]


def test_one_sighting_per_visible_indicator_with_its_own_fields(world):
    exact = indicator("203.0.113.5", tlp=Tlp.GREEN, created_by=world.cert.identity)
    net = indicator(pattern="[ipv4-addr:value = '203.0.113.0/24']", tlp=Tlp.AMBER,
                    created_by=world.cert.identity)
    hidden = indicator("203.0.113.5", tlp=Tlp.AMBER_STRICT, created_by=world.cert.identity)
    world.add(world.cert, [exact, net, hidden])

    made = service(world).sight(world.op.principal, "main", "203.0.113.5", 3, ts(10), ts(20), "core router")
    assert sorted((s.indicator_id, s.matched) for s in made) == sorted(
        [(exact["id"], "exact"), (net["id"], "contained-in")])  # the AMBER+STRICT one is not visible
    by_target = {s.indicator_id: s.sighting for s in made}
    green = by_target[exact["id"]]
    assert green["object_marking_refs"] == [TLP2_MARKING_BY_LEVEL[Tlp.GREEN]]  # the indicator's TLP
    assert by_target[net["id"]]["object_marking_refs"] == [TLP2_MARKING_BY_LEVEL[Tlp.AMBER]]
    assert green["created_by_ref"] == world.op.identity and green["where_sighted_refs"] == [world.op.identity]
    assert (green["count"], green["first_seen"], green["last_seen"]) == (3, ts(10), ts(20))
    assert green["description"] == "core router" and green["created"] == "2026-05-28T20:26:40.000Z"
    assert stored(world, world.op, green["id"]) == [green]
    assert counts(world, "203.0.113.5") == {"CERT": 3 + 3, "Operator": 6, "Vendor": 3, "Hospital": 6}


def test_default_seen_times_and_explicit_tlp(world):
    ind = indicator("203.0.113.6", tlp=Tlp.AMBER, created_by=world.cert.identity)
    world.add(world.cert, [ind])
    [made] = service(world).sight(world.op.principal, world.cid, "203.0.113.6", tlp="clear")
    s = made.sighting
    assert s["first_seen"] == s["last_seen"] == "2026-05-28T20:26:40.000Z" and s["count"] == 1
    assert s["object_marking_refs"] == [TLP2_MARKING_BY_LEVEL[Tlp.CLEAR]]
    [later] = service(world).sight(world.op.principal, "main", "203.0.113.6", first_seen=ts(5))
    assert (later.sighting["first_seen"], later.sighting["last_seen"]) == (ts(5), "2026-05-28T20:26:40.000Z")


def test_anonymous_sightings_name_nobody_yet_count(world):
    ind = indicator("203.0.113.7", tlp=Tlp.GREEN, created_by=world.cert.identity)
    world.add(world.cert, [ind])
    [made] = service(world).sight(world.op.principal, "main", "203.0.113.7", 4, anonymous=True,
                                  where="a PoP")
    s = made.sighting
    assert "created_by_ref" not in s and "where_sighted_refs" not in s
    text = json.dumps(stored(world, world.cert, s["id"]))
    assert world.op.identity not in text and "Operator" not in text
    answer = world.exchange.lookup.lookup(world.cert.principal, ["203.0.113.7"])[0].to_json()
    assert answer["sightings"] == {"count": 4, "reports": 1,
                                   "by": [{"organisation": None, "sector": None}]}
    assert world.op.identity not in json.dumps(answer) and "Operator" not in json.dumps(answer)
    assert "operator" not in json.dumps(answer["sightings"])  # not even the sector (one member has it)
    assert answer["reporters"] == [{"organisation": "CERT", "sector": "government"}]


def test_red_sighting_is_addressed_to_the_named_producer_only(world):
    ind = indicator("203.0.113.8", tlp=Tlp.GREEN, created_by=world.cert.identity)
    world.add(world.cert, [ind])
    [made] = service(world).sight(world.op.principal, "main", "203.0.113.8", 2, tlp=Tlp.RED, anonymous=True)
    ext = made.sighting["extensions"][RECIPIENTS_EXTENSION_ID]
    assert ext[RECIPIENTS_PROPERTY] == [world.cert.identity]
    assert counts(world, "203.0.113.8") == {"CERT": 2, "Operator": 2, "Vendor": 0, "Hospital": 0}

    # a RED sighting of your own indicator needs no recipient
    mine = indicator("203.0.113.9", tlp=Tlp.AMBER, created_by=world.op.identity)
    world.add(world.op, [mine])
    [own] = service(world).sight(world.op.principal, "main", "203.0.113.9", tlp=Tlp.RED)
    assert "extensions" not in own.sighting
    assert counts(world, "203.0.113.9") == {"CERT": 0, "Operator": 1, "Vendor": 0, "Hospital": 0}


def test_red_sighting_of_an_unnamed_producer_is_refused_and_stores_nothing(world):
    anon = indicator("203.0.113.10", tlp=Tlp.GREEN)  # no created_by_ref: its producer stays unnamed
    world.add(world.cert, [anon])
    with pytest.raises(InvalidParameter, match="does not name its producer") as exc:
        service(world).sight(world.op.principal, "main", "203.0.113.10", tlp=Tlp.RED)
    assert world.cert.identity not in exc.value.message and "CERT" not in exc.value.message
    assert counts(world, "203.0.113.10")["Operator"] == 0
    [ok] = service(world).sight(world.op.principal, "main", "203.0.113.10", tlp=Tlp.AMBER)
    assert counts(world, "203.0.113.10") == {"CERT": 1, "Operator": 1, "Vendor": 0, "Hospital": 1}


def test_who_sees_a_sighting_at_every_tlp(world):
    cleared = {"CERT": Tlp.RED, "Operator": Tlp.AMBER, "Vendor": Tlp.GREEN, "Hospital": Tlp.AMBER_STRICT}
    for n, level in enumerate(Tlp):
        value = f"198.51.100.{n}"
        world.add(world.vendor, [indicator(value, tlp=Tlp.CLEAR, created_by=world.vendor.identity)])
        service(world).sight(world.user.principal, "main", value, 5, tlp=level)
        # RED is addressed to the producer (the Vendor), which is cleared for GREEN only
        expected = {org: 5 if org == "Hospital" or (level <= ceiling and level < Tlp.RED) else 0
                    for org, ceiling in cleared.items()}
        assert counts(world, value) == expected, level


def test_no_match_hidden_match_and_other_community_answer_alike(world):
    hidden = indicator("192.0.2.44", tlp=Tlp.AMBER, created_by=world.cert.identity)
    world.add(world.cert, [hidden])
    world.exchange.admin.create_community("other")
    world.exchange.admin.set_membership("Vendor", "other", True, True, Tlp.AMBER)
    svc = service(world)
    messages = []
    for value in ("192.0.2.44", "192.0.2.45"):
        with pytest.raises(NotFound) as exc:
            svc.sight(world.vendor.principal, "main", value)
        messages.append(exc.value.message.replace(value, "V"))
    with pytest.raises(NotFound) as exc:
        svc.sight(world.vendor.principal, "other", "192.0.2.44")
    assert messages[0] == messages[1] and "nothing was recorded" in messages[0]
    assert "other" in exc.value.message
    with pytest.raises(NotFound, match="no community 'nowhere'"):
        svc.sight(world.vendor.principal, "nowhere", "192.0.2.44")
    assert counts(world, "192.0.2.44")["CERT"] == 0


def test_revoked_indicators_are_not_sighted(world):
    ind = indicator("192.0.2.50", tlp=Tlp.GREEN, created_by=world.cert.identity)
    world.add(world.cert, [ind])
    world.add(world.cert, [new_version(ind, 30, revoked=True)])
    with pytest.raises(NotFound):
        service(world).sight(world.op.principal, "main", "192.0.2.50")


BAD_INPUT = [
    ({"count": -1}, InvalidParameter, "count must be"),
    ({"count": 1_000_000_000}, InvalidParameter, "999999999"),
    ({"count": True}, InvalidParameter, "count must be"),
    ({"first_seen": "yesterday"}, InvalidParameter, "first_seen"),
    ({"last_seen": "2026-01-01T00:00:00.000+01:00"}, InvalidParameter, "last_seen"),
    ({"first_seen": ts(50), "last_seen": ts(40)}, InvalidParameter, "earlier than first_seen"),
    ({"where": "x" * 1025}, InputTooLarge, "1024"),
    ({"tlp": "purple"}, InvalidParameter, "unknown TLP"),
]


def test_bad_input_is_refused_with_a_reason(world):
    world.add(world.cert, [indicator("192.0.2.60", tlp=Tlp.GREEN)])
    for kwargs, error, words in BAD_INPUT:
        with pytest.raises(error, match=words):
            service(world).sight(world.op.principal, "main", "192.0.2.60", **kwargs)
    with pytest.raises(InvalidParameter, match="not an IP address"):
        service(world).sight(world.op.principal, "main", "not a value !")
    assert counts(world, "192.0.2.60")["Operator"] == 0


def test_readers_may_not_sight(world):
    world.add(world.cert, [indicator("192.0.2.70", tlp=Tlp.GREEN)])
    reader = make_member(world.exchange, "Readers", "research", role="reader")
    world.exchange.admin.set_membership("Readers", "main", True, True, Tlp.AMBER)
    with pytest.raises(PermissionDenied):
        service(world).sight(reader.principal, "main", "192.0.2.70")


def test_the_oasis_sample_is_sighted_like_its_own_sighting(world):
    bundle = json.loads((DATA / "cti-doc_sighting-of-an-indicator.json").read_text())
    world.add(world.cert, bundle["objects"])  # indicator, two identities and Beta's sighting
    [made] = service(world).sight(world.op.principal, "main", "hxxp://paypa1[.]banking[.]com")
    sample = next(o for o in bundle["objects"] if o["type"] == "sighting")
    assert made.sighting["sighting_of_ref"] == sample["sighting_of_ref"]
    assert set(sample) - {"created_by_ref"} <= set(made.sighting)
    # unmarked objects take the community's default, AMBER: the Vendor (GREEN) sees none of it
    answer = world.exchange.lookup.lookup(world.op.principal, ["http://paypa1.banking.com"])[0]
    assert (answer.sightings, answer.sighting_reports) == (2, 2)  # Beta's and the Operator's
    assert not world.exchange.lookup.lookup(world.vendor.principal, ["http://paypa1.banking.com"])[0].matches
