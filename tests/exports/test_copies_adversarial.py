"""Copies (several organisations holding one STIX id and version) on every read path
but plain TAXII reads (tests/services/test_copies_leaks.py covers those).

The rules (docs/sharing-model.md, "Who may post an id"): a reader gets ONE copy of each
(id, version) — its own if it holds one, else the first stored among those it can see;
the newest version it sees; an export or feed chooses that copy among the copies its
TLP ceiling, producer sectors and lifecycle filters (revoked, expired, minimum
confidence) keep; lookups, sighting totals and opinion counts count only what the
caller sees, one copy per version; the deletions listing has no tombstone for a version
the caller still sees through another copy.

Every copy of the shared indicator states values of its own (an address, a domain, a
URL, an e-mail address, four hashes, a name) besides one value all copies state, so
whatever an output prints — values only, or TLP and producer as well — tells which
copies it was built from.

Where a filter applied after the copy is chosen drops an object another visible copy
would have let through, the case is marked ``# KNOWN:`` (the current behaviour is
asserted).
"""

from __future__ import annotations

import base64
import itertools
import json
import re
import uuid
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from commonwatch.domain.markings import TLP2_MARKING_BY_LEVEL, Tlp
from commonwatch.errors import NotFound
from commonwatch.services.export import FORMATS
from commonwatch.services.export_filters import build_filter
from commonwatch.services.query import ObjectFilter, VersionSelector

from support.factories import indicator, make_member, ts

#: The creator every copy names (a relayed source: ATT&CK objects name MITRE's identity).
MITRE = "identity--c78cb6e5-0c4b-4611-8297-d1b8b55e40b5"
#: A feed's identity, named by relayed sightings and opinions.
SOURCE = "identity--0d3c4b5a-6f7e-4a1b-9c2d-3e4f5a6b7c8d"
SHARED_IP = "45.66.99.99"  # stated by every copy of the shared indicator
ALL_VERSIONS = ObjectFilter(versions=VersionSelector(last=False, all=True))
MARKING_LEVEL = {ref: int(level) for level, ref in TLP2_MARKING_BY_LEVEL.items()}
_run = itertools.count()


# -- the copies and what each output shows of them ---------------------------------------------
def ipv4_of(j: int) -> str:
    return f"45.66.{10 + j}.7"


def hashes_of(j: int) -> dict[str, str]:
    return {"MD5": f"d{j}" * 16, "SHA-1": f"e{j}" * 20, "SHA-256": f"a{j}" * 32, "SHA-512": f"b{j}" * 64}


def pattern_of(j: int) -> str:
    """Copy ``j``'s pattern: values of its own of every kind, and the shared address."""
    h = hashes_of(j)
    tests = [f"ipv4-addr:value = '{ipv4_of(j)}'", f"ipv6-addr:value = '2a0b:4d07:{10 + j}::7'",
             f"domain-name:value = 'copy{j}.bad-relay.net'",
             f"url:value = 'http://gate{j}.bad-relay.org/in.php'",
             f"email-addr:value = 'ops{j}@mail.bad-relay.org'",
             f"file:hashes.MD5 = '{h['MD5']}'", f"file:hashes.'SHA-1' = '{h['SHA-1']}'",
             f"file:hashes.'SHA-256' = '{h['SHA-256']}'", f"file:hashes.'SHA-512' = '{h['SHA-512']}'",
             f"ipv4-addr:value = '{SHARED_IP}'"]
    return " OR ".join(f"[{t}]" for t in tests)


def markers(j: int) -> dict[str, tuple[str, ...]]:
    """What shows copy ``j`` in an output, by kind (rpz writes addresses reversed)."""
    h = hashes_of(j)
    return {
        "ipv4": (ipv4_of(j), f"7.{10 + j}.66.45.rpz-ip"), "ipv6": (f"2a0b:4d07:{10 + j}::7",),
        "domain": (f"copy{j}.bad-relay.net",), "url": (f"gate{j}.bad-relay.org",),
        "email": (f"ops{j}@mail.bad-relay.org",), "md5": (h["MD5"],), "sha1": (h["SHA-1"],),
        "sha256": (h["SHA-256"],), "sha512": (h["SHA-512"],), "name": (f"relay copy {j}",),
    }


_EVERYTHING = frozenset(["ipv4", "ipv6", "domain", "url", "email", "md5", "sha1", "sha256", "sha512",
                         "name"])
_HASHES = frozenset(["md5", "sha1", "sha256", "sha512"])
#: The kinds of value each format prints (hashes have no rule form; rpz no IPv6 trigger).
SHOWN: dict[str, frozenset[str]] = {
    "suricata-rules": frozenset(["ipv4", "ipv6", "domain", "url", "name"]),
    "suricata-dataset-string": frozenset(["domain"]),
    "suricata-dataset-md5": frozenset(["md5"]),
    "suricata-dataset-sha256": frozenset(["sha256"]),
    "suricata-dataset-ipv4": frozenset(["ipv4"]),
    "suricata-dataset-ip": frozenset(["ipv4", "ipv6"]),
    "suricata-iprep": frozenset(["ipv4", "ipv6"]),
    "suricata-iprep-categories": frozenset(),
    "zeek-intel": _EVERYTHING,
    "rpz": frozenset(["ipv4", "domain"]),
    "plain-ip": frozenset(["ipv4", "ipv6"]), "plain-ipv4": frozenset(["ipv4"]),
    "plain-ipv6": frozenset(["ipv6"]), "plain-domain": frozenset(["domain"]),
    "plain-url": frozenset(["url"]), "plain-email": frozenset(["email"]),
    "plain-md5": frozenset(["md5"]), "plain-sha1": frozenset(["sha1"]),
    "plain-sha256": frozenset(["sha256"]), "plain-sha512": frozenset(["sha512"]),
    "plain-hash": _HASHES,
    "csv": _EVERYTHING, "stix": _EVERYTHING, "misp": _EVERYTHING,
}
#: Formats that print the TLP of each value; of those, the ones that print its producer
#: and community too.
LABELLED = frozenset(["suricata-rules", "zeek-intel", "csv", "misp", "stix"])
ATTRIBUTED = frozenset(["suricata-rules", "zeek-intel", "csv"])


def test_every_format_is_covered():
    assert set(SHOWN) == set(FORMATS)


@dataclass(frozen=True)
class Copy:
    community: str
    producer: str
    tlp: Tlp
    version: int = 1


# Posted in this order (so copy 1 is the first stored of north, copy 5 of south).
COPIES = {
    1: Copy("north", "RedHolder", Tlp.RED),  # addressed to RedRecipient only
    2: Copy("north", "CertGov", Tlp.AMBER),
    3: Copy("north", "BankOps", Tlp.GREEN),
    4: Copy("north", "VendorLab", Tlp.CLEAR),
    5: Copy("south", "BankOps", Tlp.CLEAR),
    6: Copy("south", "CertGov", Tlp.GREEN),
    7: Copy("south", "CertGov", Tlp.GREEN, version=2),  # posted by test_a_multi_community_export...
}
PRODUCERS = {"RedHolder": "other", "CertGov": "government", "BankOps": "operator", "VendorLab": "vendor"}
READERS = {"AmberReader": "research", "GreenReader": "end-user", "ClearReader": "research",
           "RedRecipient": "research", "RedBystander": "research", "SouthReader": "research",
           "Outsider": "research"}
NORTH = {"RedHolder": (True, Tlp.RED), "CertGov": (True, Tlp.AMBER), "BankOps": (True, Tlp.AMBER),
         "VendorLab": (True, Tlp.GREEN), "AmberReader": (False, Tlp.AMBER),
         "GreenReader": (False, Tlp.GREEN), "ClearReader": (False, Tlp.CLEAR),
         "RedRecipient": (False, Tlp.RED), "RedBystander": (False, Tlp.RED)}
SOUTH = {"CertGov": (True, Tlp.AMBER), "BankOps": (True, Tlp.AMBER), "AmberReader": (False, Tlp.AMBER),
         "GreenReader": (False, Tlp.GREEN), "SouthReader": (False, Tlp.AMBER)}


@dataclass
class World:
    exchange: Any
    members: dict[str, Any]
    cids: dict[str, str]
    shared_id: str
    objects: dict[int, dict[str, Any]]

    def p(self, name: str) -> Any:
        return self.members[name].principal

    def post(self, j: int) -> dict[str, Any]:
        c = COPIES[j]
        obj = copy_object(self.shared_id, j, c.tlp, version=c.version,
                          recipients=[self.members["RedRecipient"].identity] if c.tlp == Tlp.RED else None)
        report = self.exchange.ingest.add_objects(self.p(c.producer), self.cids[c.community], [obj])
        assert not report.failures and report.stored == [True], (j, report.failures)
        self.objects[j] = obj
        return obj


def copy_object(oid: str, j: int, tlp: Tlp, *, version: int = 1, recipients: list[str] | None = None,
                **extra: Any) -> dict[str, Any]:
    """Copy ``j`` of ``oid``: MITRE's, with values, name, confidence and valid_from of its own
    (a later copy has an earlier valid_from: a lookup mixing copies would show it)."""
    fields: dict[str, Any] = {"confidence": 40 + j, "valid_from": ts(100 - j), **extra}
    return indicator(oid=oid, created=0, modified=version, tlp=tlp, recipients=recipients,
                     created_by=MITRE, pattern=pattern_of(j), name=f"relay copy {j}", **fields)


def make_world(exchange, *, south: bool = True) -> World:
    members = {name: make_member(exchange, name, sector)
               for name, sector in (PRODUCERS | READERS).items()}
    cids = {}
    for name, memberships in (("north", NORTH), ("south", SOUTH))[:2 if south else 1]:
        exchange.admin.create_community(name, default_tlp=Tlp.GREEN)
        for org, (write, tlp) in memberships.items():
            exchange.admin.set_membership(org, name, True, write, tlp)
        cids[name] = exchange.admin.get_community(name).collection_id
    w = World(exchange, members, cids, f"indicator--{uuid.uuid4()}", {})
    for j in (1, 2, 3, 4, 5, 6) if south else (1, 2, 3, 4):
        w.post(j)
    return w


# -- reading outputs ---------------------------------------------------------------------------
def export_text(svc, w: World, reader: str, fmt: str, **filters: Any) -> str:
    return "".join(svc.export(w.p(reader), fmt, build_filter(**filters)).chunks)


def decoded(fmt: str, text: str) -> str:
    if fmt == "suricata-dataset-string":  # base64 of each domain
        return "\n".join(base64.b64decode(line).decode() for line in text.splitlines())
    return text


def copies_in(text: str) -> set[tuple[int, str]]:
    """(copy, kind) of every copy marker found in an output."""
    return {(j, kind) for j in COPIES for kind, marks in markers(j).items()
            if any(m in text for m in marks)}


def tlp_labels(fmt: str, text: str) -> set[str]:
    if fmt == "stix":
        return {Tlp(MARKING_LEVEL[ref]).label for o in json.loads(text)["objects"]
                for ref in o.get("object_marking_refs", [])}
    if fmt == "misp":
        return {"TLP:" + t.upper() for t in re.findall(r'"tlp:([a-z+]+)"', text)}
    return set(re.findall(r"TLP:(?:CLEAR|GREEN|AMBER\+STRICT|AMBER|RED)", text))


def check_output(w: World, fmt: str, text: str, expected: set[int], where: Any) -> None:
    """``text`` (format ``fmt``) is built from exactly the copies ``expected``: all their values
    the format shows, each once, nothing of any other copy, their TLP, producer, community."""
    plain = decoded(fmt, text)
    assert copies_in(plain) == {(j, k) for j in expected for k in SHOWN[fmt]}, (fmt, where)
    if "ipv4" in SHOWN[fmt]:
        shared = "32.99.99.66.45.rpz-ip" if fmt == "rpz" else SHARED_IP
        assert plain.count(shared) == len(expected), (fmt, where)
    if fmt == "stix":
        objects = json.loads(text)["objects"]
        assert sorted(objects, key=lambda o: o["name"]) == [w.objects[j] for j in sorted(expected)], where
    elif fmt == "misp":
        values = [a["value"] for a in json.loads(text)["Event"]["Attribute"]]
        assert len(values) == len(set(values)), where
    else:
        lines = [line for line in plain.splitlines() if line and not line.startswith(("$", "@", "#"))]
        assert len(lines) == len(set(lines)), (fmt, where)
    if fmt in LABELLED:
        assert tlp_labels(fmt, text) == {COPIES[j].tlp.label for j in expected}, (fmt, where)
    if fmt in ATTRIBUTED:
        for producer in PRODUCERS:
            assert (producer in text) == any(COPIES[j].producer == producer for j in expected), (
                fmt, where, producer)
        for community in ("north", "south"):
            assert (community in text) == any(COPIES[j].community == community for j in expected), (
                fmt, where, community)


# -- 1. every export format ---------------------------------------------------------------------
# (reader, filter, the copies exported), in community north. Each line says why.
NORTH_CASES: list[tuple[str, dict[str, Any], set[int]]] = [
    ("AmberReader", {}, {2}),  # first stored it sees (1 is RED, not addressed to it)
    ("GreenReader", {}, {3}),  # 2 is AMBER: the first it sees is 3
    ("ClearReader", {}, {4}),
    ("RedRecipient", {}, {2}),  # sees 1, but RED is above the default ceiling (AMBER)
    ("RedRecipient", {"tlp": "red"}, {1}),
    ("AmberReader", {"tlp": "green"}, {3}),  # 2 is above the ceiling: it never hides 3
    ("AmberReader", {"sectors": ["vendor"]}, {4}),
    ("BankOps", {"sectors": ["government"]}, {2}),  # its own copy is not of the sector
    ("Outsider", {}, set()),  # reads no community: an empty export
]
MORE_NORTH_CASES: list[tuple[str, dict[str, Any], set[int]]] = [
    ("RedHolder", {}, {2}),  # own RED copy above the ceiling: the first stored among the rest
    ("RedHolder", {"tlp": "red"}, {1}),
    ("CertGov", {}, {2}), ("BankOps", {}, {3}), ("VendorLab", {}, {4}),  # their own
    ("CertGov", {"tlp": "green"}, {3}),
    ("BankOps", {"tlp": "clear"}, {4}),
    ("RedBystander", {"tlp": "red"}, {2}),  # 1 is not addressed to it
    ("AmberReader", {"tlp": "red"}, {2}),
    ("AmberReader", {"tlp": "clear"}, {4}),
    ("AmberReader", {"sectors": ["government"]}, {2}),
    ("AmberReader", {"sectors": ["operator", "government"]}, {2}),
    ("AmberReader", {"sectors": ["operator", "vendor"], "tlp": "clear"}, {4}),
    ("AmberReader", {"sectors": ["government"], "tlp": "green"}, set()),
    ("AmberReader", {"sectors": ["other"], "tlp": "red"}, set()),  # 1 is not addressed to it
    ("RedRecipient", {"sectors": ["other"], "tlp": "red"}, {1}),
    ("RedRecipient", {"sectors": ["other"]}, set()),
    ("GreenReader", {"sectors": ["government"]}, set()),  # 2 is invisible to it
    ("ClearReader", {"sectors": ["operator"]}, set()),
    ("VendorLab", {"sectors": ["operator"]}, {3}),
]


def test_every_format_gives_each_reader_the_copy_it_gets(exchange, svc):
    w = make_world(exchange, south=False)
    for reader, filters, expected in NORTH_CASES:
        for fmt in FORMATS:
            text = export_text(svc, w, reader, fmt, communities=[] if reader == "Outsider" else ["north"],
                               **filters)
            check_output(w, fmt, text, expected, (reader, filters))
    for reader, filters, expected in MORE_NORTH_CASES:
        for fmt in ("stix", "csv", "plain-ip"):
            text = export_text(svc, w, reader, fmt, communities=["north"], **filters)
            check_output(w, fmt, text, expected, (reader, filters))
    with pytest.raises(NotFound):  # a community it cannot read: as if there were none
        export_text(svc, w, "Outsider", "csv", communities=["north"])


# (reader, filter, copies) over both communities (the default: every community it reads).
# An id in several communities is exported once: its newest version, of equal versions
# the community created first (north), each community's copy chosen as in one community.
BOTH_CASES: list[tuple[str, dict[str, Any], set[int]]] = [
    ("AmberReader", {}, {2}),  # north 2, south 5
    ("AmberReader", {"tlp": "clear"}, {4}),  # north 4, south 5
    ("GreenReader", {}, {3}),
    ("GreenReader", {"sectors": ["government"]}, {6}),  # nothing in north (2 is AMBER)
    ("SouthReader", {}, {5}),
    ("SouthReader", {"sectors": ["government"]}, {6}),
    ("BankOps", {}, {3}),  # its own in both: north's
    ("CertGov", {"sectors": ["operator"]}, {3}),
    ("ClearReader", {}, {4}),  # reads north only
    ("VendorLab", {"sectors": ["operator"], "tlp": "clear"}, set()),  # 5 is in south, not its
]
# After CertGov posts version 2 (copy 7, GREEN) in south: the newest version wins where
# it is seen and passes the filter.
BOTH_CASES_V2: list[tuple[str, dict[str, Any], set[int]]] = [
    ("AmberReader", {}, {7}), ("GreenReader", {}, {7}), ("SouthReader", {}, {7}),
    ("ClearReader", {}, {4}),
    ("AmberReader", {"tlp": "clear"}, {4}),  # south's newest (2, GREEN) is above the ceiling
    ("AmberReader", {"sectors": ["operator"]}, {3}),  # south's newest is CertGov's
    ("BankOps", {}, {7}),  # its own copies are of version 1
]


def test_a_multi_community_export_gives_one_copy_per_id(exchange, svc):
    w = make_world(exchange)
    formats = ("stix", "csv", "zeek-intel", "suricata-rules", "misp", "plain-ip", "rpz",
               "suricata-dataset-string")
    for cases in (BOTH_CASES, BOTH_CASES_V2):
        if cases is BOTH_CASES_V2:
            w.post(7)
        for reader, filters, expected in cases:
            for fmt in formats if filters == {} else ("stix", "csv"):
                check_output(w, fmt, export_text(svc, w, reader, fmt, **filters), expected, (reader, filters))
            if reader in NORTH and reader in SOUTH:  # both named: as if none were
                named = export_text(svc, w, reader, "stix", communities=["south", "north"], **filters)
                check_output(w, "stix", named, expected, (reader, filters, "named"))
    # one community alone is unchanged by the other
    check_output(w, "csv", export_text(svc, w, "AmberReader", "csv", communities=["north"]), {2}, "north")
    check_output(w, "csv", export_text(svc, w, "AmberReader", "csv", communities=["south"]), {7}, "south")


# -- lifecycle filters, warninglists and scores ---------------------------------------------------
def _pair_world(exchange, name: str, *, others: tuple[str, ...] = ()) -> dict[str, Any]:
    """Community ``name``: A (government) and B (operator) write at AMBER, R reads at AMBER,
    and the organisations of ``others`` (earlier pair worlds) are given the same roles."""
    members = {m: make_member(exchange, f"{name} {m}", sector)
               for m, sector in (("A", "government"), ("B", "operator"), ("R", "research"))}
    exchange.admin.create_community(name, default_tlp=Tlp.GREEN)
    for m, write in (("A", True), ("B", True), ("R", False)):
        for org in (members[m].org, *(f"{other} {m}" for other in others)):
            exchange.admin.set_membership(org, name, True, write, Tlp.AMBER)
    return {"members": members, "cid": exchange.admin.get_community(name).collection_id}


def _post(exchange, member, cid, obj) -> None:
    report = exchange.ingest.add_objects(member.principal, cid, [obj])
    assert not report.failures and report.stored == [True], report.failures


def _scoring(exchange, clock):
    """An export service that scores indicators (the ``svc`` fixture's clock and lists)."""
    from commonwatch.services.export import ExportService
    from commonwatch.services.lifecycle import LifecycleService
    from commonwatch.storage.db import session_factory

    return ExportService(session_factory(exchange.engine), exchange.query, clock=clock,
                         lifecycle=LifecycleService(exchange.query, exchange.ingest, clock=clock))


RECENT = ts(12_700_000)  # about a day before the frozen clock (exports/conftest.py NOW)


@pytest.mark.parametrize("case", ["confidence", "revoked", "expired", "warninglisted", "score"])
def test_a_filter_never_drops_a_copy_another_would_pass(exchange, clock, case):
    """A posts copy 1 of version 1 first, failing the filter; B posts copy 2, passing it.
    Reader R (AMBER) sees both and gets A's (the first stored) on TAXII reads. An export
    chooses among the copies its lifecycle filters keep (not revoked, not expired, minimum
    confidence): R's export holds B's copy. Warninglists and the decay score are applied
    to the chosen copy only (docs/sharing-model.md says so of the score)."""
    svc = _scoring(exchange, clock)
    w = _pair_world(exchange, f"filter-{case}")
    a, b, r = (w["members"][m] for m in "ABR")
    oid = f"indicator--{uuid.uuid4()}"
    failing = {"confidence": {"confidence": 10}, "revoked": {"revoked": True},
               "expired": {"valid_until": ts(12_750_000)}, "warninglisted": {},
               "score": {"confidence": 5}}[case]
    value_a = "10.1.2.3" if case == "warninglisted" else "45.66.50.1"  # 10/8 is on a warninglist
    copy_a = indicator(value_a, oid=oid, created_by=MITRE, modified=1, tlp=Tlp.AMBER, valid_from=RECENT,
                       **failing)
    copy_b = indicator("45.66.50.2", oid=oid, created_by=MITRE, modified=1, tlp=Tlp.GREEN,
                       valid_from=RECENT, confidence=90)
    if case == "revoked":
        # nothing follows a revoked version its poster sees: B (cleared GREEN here) does not see it
        exchange.admin.set_membership(b.org, f"filter-{case}", True, True, Tlp.GREEN)
    _post(exchange, a, w["cid"], copy_a)
    _post(exchange, b, w["cid"], copy_b)
    flt = {"communities": [f"filter-{case}"], **{"confidence": {"min_confidence": 50},
                                                 "score": {"min_score": 50}}.get(case, {})}

    def export(member, fmt, **more) -> str:
        return "".join(svc.export(member.principal, fmt, build_filter(**flt, **more)).chunks)

    assert export(b, "plain-ip").split() == ["45.66.50.2"]  # B's copy passes the filter ...
    assert export(r, "plain-ip", sectors=["operator"]).split() == ["45.66.50.2"]  # ... and R sees it
    ips = export(r, "plain-ip").split()
    bundle = json.loads(export(r, "stix"))["objects"]
    if case in ("warninglisted", "score"):
        # KNOWN: the warninglists and the minimum decay score are applied after the copy is
        # chosen: R gets A's copy (the first stored), which they drop; B's would have passed.
        # Minimal case: A posts version 1 first ("[ipv4-addr:value = '10.1.2.3']", or
        # confidence 5 with min_score 50), then B the same version (45.66.50.2, confidence 90);
        # R's plain-ip and STIX exports are empty.
        assert ips == [] and bundle == []
    else:
        assert ips == ["45.66.50.2"]
        assert bundle == [copy_b]


def test_across_communities_the_copy_a_filter_keeps_is_chosen(exchange, svc):
    """The same version of an id in two communities: the merge of communities chooses, as
    each community does among its copies, the one the export's lifecycle filters keep.
    A posts version 1 (confidence 10) in community one, B the same version (confidence
    90) in community two; R reads both and exports with a minimum confidence of 50."""
    one = _pair_world(exchange, "known-one")
    two = _pair_world(exchange, "known-two", others=("known-one",))
    a, b, r = (one["members"][m] for m in "ABR")
    oid = f"indicator--{uuid.uuid4()}"
    _post(exchange, a, one["cid"], indicator("45.66.51.1", oid=oid, created_by=MITRE, modified=1,
                                             tlp=Tlp.GREEN, confidence=10))
    _post(exchange, b, two["cid"], indicator("45.66.51.2", oid=oid, created_by=MITRE, modified=1,
                                             tlp=Tlp.GREEN, confidence=90))

    def ips(**flt) -> list[str]:
        flt = build_filter(min_confidence=50, **flt)
        return "".join(svc.export(r.principal, "plain-ip", flt).chunks).split()

    assert ips(communities=["known-two"]) == ["45.66.51.2"]
    assert ips() == ["45.66.51.2"]  # not community one's copy, which the filter drops
    assert "".join(svc.export(r.principal, "plain-ip", build_filter()).chunks).split() == [
        "45.66.51.1"]  # without the filter: the community read first


def _merge_world(exchange, case: str = "confidence") -> tuple[Any, str]:
    """Community one: version 2 of an id by A. Community two: version 1, A's copy first,
    failing the filter of :data:`MERGE_FILTERS` (``case``), then B's, passing it. R reads both."""
    one = _pair_world(exchange, f"merge-one-{case}")
    two = _pair_world(exchange, f"merge-two-{case}", others=(f"merge-one-{case}",))
    a, b, r = (one["members"][m] for m in "ABR")
    oid = f"indicator--{uuid.uuid4()}"
    failing = {"confidence": {"confidence": 10}, "expired": {"valid_until": ts(12_750_000)}}[case]
    _post(exchange, a, one["cid"], indicator("45.66.60.3", oid=oid, created_by=MITRE, modified=2,
                                             tlp=Tlp.GREEN, confidence=90))
    _post(exchange, a, two["cid"], indicator("45.66.60.1", oid=oid, created_by=MITRE, modified=1,
                                             tlp=Tlp.GREEN, valid_from=RECENT, **failing))
    _post(exchange, b, two["cid"], indicator("45.66.60.2", oid=oid, created_by=MITRE, modified=1,
                                             tlp=Tlp.GREEN, confidence=90))
    return r, oid


MERGE_FILTERS = {"confidence": {"min_confidence": 50}, "expired": {}}


@pytest.mark.parametrize("case", list(MERGE_FILTERS))

def test_an_id_in_two_communities_is_exported_once_whatever_the_filters(exchange, svc, case):
    r, oid = _merge_world(exchange, case)
    flt = build_filter(**MERGE_FILTERS[case])
    both = build_filter(include_expired=True)  # no lifecycle filter: once
    assert "".join(svc.export(r.principal, "plain-ip", both).chunks).split() == ["45.66.60.3"]
    bundle = json.loads("".join(svc.export(r.principal, "stix", flt).chunks))["objects"]
    # Community two's stream must hold the version once (B's copy, which passes the
    # filter, ranked before A's, which does not): the merge of communities pairs one row
    # per id per stream, and a second row of the id would be exported on its own.
    assert [(o["id"], o["modified"]) for o in bundle] == [(oid, ts(2))]
    assert "".join(svc.export(r.principal, "plain-ip", flt).chunks).split() == ["45.66.60.3"]



def test_export_stats_count_one_object_once(exchange, svc):
    r, _ = _merge_world(exchange)
    flt = build_filter(communities=["merge-two-confidence"], min_confidence=50)
    export = svc.export(r.principal, "plain-ip", flt)
    assert "".join(export.chunks).split() == ["45.66.60.2"]
    # One object, read once: A's copy, which the export did not choose, is neither read
    # nor counted as skipped ("confidence below the minimum") in what `commonwatch
    # export` prints.
    stats = export.stats
    assert (stats.objects_read, stats.objects_exported, dict(stats.skipped)) == (1, 1, {})


# -- 2. the property test: exports against a reference model ----------------------------------------
# The model is written from the rules alone and shares no code with src/.
P_ORGS = 4
P_SECTORS = ("government", "operator", "vendor", "operator")
P_RED = 4
P_AMBER = 2
tlps = st.integers(0, P_RED)
_orgs_by_database: dict[str, list[Any]] = {}


@dataclass(frozen=True)
class PCommunity:
    default_tlp: int
    public: bool
    members: dict[int, tuple[bool, int]]  # org -> (can_read, max TLP); every member writes


@dataclass(frozen=True)
class PPost:
    poster: int
    key: int  # which of two ids
    version: int  # its `modified`: 1 or 2
    tlp: int | None  # None: unmarked, the community's default applies
    recipients: frozenset[int]  # named when the TLP is RED
    confidence: int


@dataclass(frozen=True)
class PRow:
    seq: int  # storage order
    post: PPost
    tlp: int  # effective
    value: str


@st.composite
def copy_worlds(draw):
    community = PCommunity(
        default_tlp=draw(tlps), public=draw(st.booleans()),
        members=draw(st.dictionaries(st.integers(0, P_ORGS - 1),
                                     st.tuples(st.sampled_from([True, True, False]), tlps), min_size=2)))
    posts = draw(st.lists(
        st.builds(PPost, poster=st.sampled_from(sorted(community.members)), key=st.integers(0, 1),
                  version=st.integers(1, 2), tlp=st.none() | tlps,
                  recipients=st.frozensets(st.integers(0, P_ORGS - 1)), confidence=st.sampled_from([20, 80])),
        min_size=1, max_size=8, unique_by=lambda p: (p.poster, p.key, p.version)))
    ceiling = draw(st.none() | tlps)  # None: the default ceiling
    sectors = tuple(draw(st.lists(st.sampled_from(P_SECTORS[:3]), max_size=2, unique=True)))
    return community, posts, (ceiling, sectors, draw(st.sampled_from([None, 50])))


def p_sees(org: int, c: PCommunity, row: PRow) -> bool:
    """The visibility rule: own; members who read, up to their TLP (RED: when named);
    TLP:CLEAR in a public community."""
    if row.post.poster == org:
        return True
    can_read, max_tlp = c.members.get(org, (False, -1))
    if can_read and row.tlp <= max_tlp and (row.tlp < P_RED or org in row.post.recipients):
        return True
    return c.public and row.tlp == 0


def p_export(org: int, c: PCommunity, rows: list[PRow], ceiling: int | None, sectors: tuple[str, ...],
             min_confidence: int | None) -> dict[int, PRow]:
    """id -> the copy an export gives ``org``: the newest version it sees; of its copies
    those the filters keep (ceiling, default AMBER; producer sectors; confidence); the
    reader's own among them, else the first stored."""
    top = P_AMBER if ceiling is None else ceiling
    out = {}
    for key in {r.post.key for r in rows}:
        seen = [r for r in rows if r.post.key == key and p_sees(org, c, r)]
        if not seen:
            continue
        newest = max(r.post.version for r in seen)
        kept = [r for r in seen if r.post.version == newest and r.tlp <= top
                and (not sectors or P_SECTORS[r.post.poster] in sectors)
                and (min_confidence is None or r.post.confidence >= min_confidence)]
        if kept:
            own = [r for r in kept if r.post.poster == org]
            out[key] = own[0] if own else min(kept, key=lambda r: r.seq)
    return out


_EXAMPLE = PCommunity(default_tlp=1, public=False,
                      members={0: (True, 2), 1: (True, 2), 2: (True, 4), 3: (False, 1)})
_EXAMPLE_POSTS = [PPost(0, 0, 1, 2, frozenset(), 20), PPost(1, 0, 1, 1, frozenset(), 80),
                  PPost(3, 0, 1, 4, frozenset({2}), 80), PPost(0, 1, 1, 1, frozenset(), 80),
                  PPost(2, 1, 2, 0, frozenset(), 80)]


def _property_orgs(exchange) -> list[Any]:
    """Four organisations per database, shared by the examples (each has its community)."""
    url = exchange.settings.database_url
    if url not in _orgs_by_database:
        _orgs_by_database[url] = [make_member(exchange, f"Prop {i}", P_SECTORS[i]) for i in range(P_ORGS)]
    return _orgs_by_database[url]


@settings(max_examples=20, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(world=copy_worlds())
# Always tried: id 0 version 1 held by org 0 (AMBER, confidence 20, first), org 1 (GREEN,
# 80) and org 3 (RED, addressed to org 2; org 3 writes without reading); id 1 version 2
# by org 2 (CLEAR) over org 0's version 1. Org 2 must get org 1's copy with a minimum
# confidence, and with a GREEN ceiling and operators only.
@example(world=(_EXAMPLE, _EXAMPLE_POSTS, (None, (), 50)))
@example(world=(_EXAMPLE, _EXAMPLE_POSTS, (1, ("operator",), None)))
def test_exports_of_copies_match_the_model(exchange, svc, world):
    c, posts, (ceiling, sectors, min_confidence) = world
    run = next(_run)
    orgs = _property_orgs(exchange)
    name = f"prop-{run}"
    exchange.admin.create_community(name, default_tlp=Tlp(c.default_tlp), public=c.public)
    for org, (can_read, max_tlp) in c.members.items():
        exchange.admin.set_membership(orgs[org].org, name, can_read, True, Tlp(max_tlp))
    cid = exchange.admin.get_community(name).collection_id
    ids = [f"indicator--{uuid.uuid4()}" for _ in range(2)]
    rows: list[PRow] = []
    objects: dict[int, dict[str, Any]] = {}
    for n, p in enumerate(posts):
        tlp = c.default_tlp if p.tlp is None else p.tlp
        named = sorted(p.recipients) if tlp == P_RED else []
        obj = indicator(f"45.68.{n}.1", oid=ids[p.key], created=0, modified=p.version, created_by=MITRE,
                        tlp=None if p.tlp is None else Tlp(p.tlp), confidence=p.confidence,
                        recipients=[orgs[r].identity for r in named] or None, name=f"post {n}")
        report = exchange.ingest.add_objects(orgs[p.poster].principal, cid, [obj])
        assert not report.failures and report.stored == [True], (n, p, report.failures)
        rows.append(PRow(n, p, tlp, f"45.68.{n}.1"))
        objects[n] = obj
    filters = [({}, None, (), None)]
    filters.append(({"tlp": Tlp(ceiling).name.lower().replace("_", "+")} if ceiling is not None else {},
                    ceiling, sectors, min_confidence))
    for org in range(P_ORGS):
        readable = c.members.get(org, (False, 0))[0] or c.public
        for given_filter, top, kept_sectors, minimum in filters:
            flt = build_filter(communities=[name], sectors=kept_sectors, min_confidence=minimum,
                               **given_filter)
            if not readable:
                with pytest.raises(NotFound):
                    svc.export(orgs[org].principal, "stix", flt)
                continue
            expected = p_export(org, c, rows, top, kept_sectors, minimum)
            where = (org, given_filter, kept_sectors, minimum)
            bundle = json.loads("".join(svc.export(orgs[org].principal, "stix", flt).chunks))
            assert sorted(bundle["objects"], key=lambda o: o["id"]) == [
                objects[expected[k].seq] for k in sorted(expected, key=lambda k: ids[k])], where
            ips = "".join(svc.export(orgs[org].principal, "plain-ip", flt).chunks).split()
            assert sorted(ips) == sorted(r.value for r in expected.values()), where


# -- 3. lookups ---------------------------------------------------------------------------------------
# The copy each reader gets per community on reads and lookups (visibility only: no ceiling).
LOOKUP_COPIES = {
    "RedHolder": {1}, "CertGov": {2, 6}, "BankOps": {3, 5}, "VendorLab": {4},
    "AmberReader": {2, 5}, "GreenReader": {3, 5}, "ClearReader": {4}, "RedRecipient": {1},
    "RedBystander": {2}, "SouthReader": {5}, "Outsider": set(),
}


def _as_unknown(answer: dict[str, Any], unknown: dict[str, Any]) -> dict[str, Any]:
    """``unknown`` (the answer for a value nobody stated) with ``answer``'s value."""
    return dict(unknown, value=answer["value"], normalised=answer["normalised"])


def test_lookups_answer_with_the_copy_each_reader_gets(exchange):
    w = make_world(exchange)
    nobody_ip, nobody_host = "45.66.77.7", "www.copy9.bad-relay.net"
    values = [SHARED_IP, *(ipv4_of(j) for j in range(1, 7)),
              *(f"www.copy{j}.bad-relay.net" for j in range(1, 7)), nobody_ip, nobody_host]
    for reader, chosen in LOOKUP_COPIES.items():
        answers = [a.to_json() for a in exchange.lookup.lookup(w.p(reader), values)]
        shared, by_ip, by_host = answers[0], answers[1:7], answers[7:13]
        unknown_ip, unknown_host = answers[13], answers[14]
        assert not unknown_ip["found"] and not unknown_host["found"]
        # the shared value: one match per community the reader sees a copy in, that copy's
        expected = sorted(chosen, key=lambda j: COPIES[j].community)
        assert [(m["id"], m["community"], m["tlp"], m["reporter"], m["confidence"], m["valid_from"])
                for m in shared["matches"]] == [
            (w.shared_id, COPIES[j].community, COPIES[j].tlp.label,
             {"organisation": None, "sector": PRODUCERS[COPIES[j].producer]}, 40 + j, ts(100 - j))
            for j in expected], reader
        if chosen:
            assert shared["first_seen"] == ts(100 - max(chosen))  # no other copy's valid_from
        else:
            assert shared == _as_unknown(shared, unknown_ip), reader
        assert [m["community"] for m in shared["matches"]] == sorted({COPIES[j].community for j in chosen})
        # a value only another copy states: answered like a value nobody stated
        for j, (ip, host) in enumerate(zip(by_ip, by_host, strict=True), 1):
            if j in chosen:
                assert [(m["community"], m["matched"]["relation"]) for m in ip["matches"]] == [
                    (COPIES[j].community, "exact")], (reader, j)
                assert [(m["community"], m["matched"]["relation"]) for m in host["matches"]] == [
                    (COPIES[j].community, "subdomain-of")], (reader, j)
            else:
                assert ip == _as_unknown(ip, unknown_ip), (reader, j)
                assert host == _as_unknown(host, unknown_host), (reader, j)
    # anonymous callers read no community here
    anonymous = [a.to_json() for a in exchange.lookup.lookup(None, [SHARED_IP, nobody_ip])]
    assert anonymous[0] == _as_unknown(anonymous[0], anonymous[1])


# -- 4. sightings and opinions ------------------------------------------------------------------------
def _sighting(sid: str, of: str, count: int, tlp: Tlp, *, modified: int = 5,
              last: int = 46) -> dict[str, Any]:
    return {"type": "sighting", "spec_version": "2.1", "id": sid, "created": ts(5), "modified": ts(modified),
            "sighting_of_ref": of, "count": count, "first_seen": ts(45), "last_seen": ts(last),
            "created_by_ref": SOURCE, "object_marking_refs": [TLP2_MARKING_BY_LEVEL[tlp]]}


def _opinion(oid: str, about: str, opinion: str, tlp: Tlp) -> dict[str, Any]:
    return {"type": "opinion", "spec_version": "2.1", "id": oid, "created": ts(7), "modified": ts(7),
            "object_refs": [about], "opinion": opinion, "created_by_ref": SOURCE,
            "object_marking_refs": [TLP2_MARKING_BY_LEVEL[tlp]]}


def test_sightings_and_opinions_count_one_copy_per_version(exchange):
    """An indicator held by A (AMBER, first) and B (GREEN); sightings and opinions relayed
    by both (identical copies, copies that differ, versions). Each reader counts each
    sighting once, from the copy of its newest visible version that it gets."""
    names = {"A": "government", "B": "operator", "R": "research", "G": "end-user", "W": "research"}
    m = {k: make_member(exchange, f"Sight {k}", sector) for k, sector in names.items()}
    exchange.admin.create_community("sightings", default_tlp=Tlp.GREEN)
    for k, tlp in (("A", Tlp.AMBER), ("B", Tlp.AMBER), ("R", Tlp.AMBER), ("G", Tlp.GREEN), ("W", Tlp.CLEAR)):
        exchange.admin.set_membership(m[k].org, "sightings", True, True, tlp)
    cid = exchange.admin.get_community("sightings").collection_id
    value = "45.66.30.1"
    y = indicator(value, oid=f"indicator--{uuid.uuid4()}", created_by=MITRE, tlp=Tlp.AMBER)
    yid = y["id"]
    s1, s2, s3, s4, o1, o2 = (f"{kind}--{uuid.uuid4()}" for kind in ["sighting"] * 4 + ["opinion"] * 2)
    posts = [
        ("A", y), ("B", dict(y, object_marking_refs=[TLP2_MARKING_BY_LEVEL[Tlp.GREEN]])),
        ("A", _sighting(s1, yid, 7, Tlp.GREEN)), ("B", _sighting(s1, yid, 7, Tlp.GREEN)),  # identical
        ("A", _sighting(s2, yid, 10, Tlp.AMBER, last=50)), ("B", _sighting(s2, yid, 20, Tlp.GREEN, last=60)),
        ("A", _sighting(s3, yid, 3, Tlp.GREEN)), ("A", _sighting(s3, yid, 4, Tlp.AMBER, modified=6)),
        ("A", _sighting(s4, yid, 1, Tlp.CLEAR)),
        ("A", _opinion(o1, yid, "agree", Tlp.GREEN)), ("B", _opinion(o1, yid, "agree", Tlp.GREEN)),
        ("A", _opinion(o2, yid, "strongly-disagree", Tlp.AMBER)),
        ("B", _opinion(o2, yid, "agree", Tlp.GREEN)),
    ]
    for k, obj in posts:
        _post(exchange, m[k], cid, obj)
    gov, op = (None, "government"), (None, "operator")
    # reader -> (count, reports, last_seen, sighters, opinions, opinions by sector)
    expected = {
        # own copies of s1, s2; s3 version 2; s4 / own opinions
        "A": (7 + 10 + 4 + 1, 4, ts(50), {gov}, {"agree": 1, "strongly-disagree": 1},
              {"government": {"agree": 1, "strongly-disagree": 1}}),
        "B": (7 + 20 + 4 + 1, 4, ts(60), {op, gov}, {"agree": 2}, {"operator": {"agree": 2}}),
        # the first stored copies (A's)
        "R": (7 + 10 + 4 + 1, 4, ts(50), {gov}, {"agree": 1, "strongly-disagree": 1},
              {"government": {"agree": 1, "strongly-disagree": 1}}),
        # A's GREEN copy of s1 (first), B's of s2 (A's is AMBER), s3 version 1
        "G": (7 + 20 + 3 + 1, 4, ts(60), {gov, op}, {"agree": 2},
              {"government": {"agree": 1}, "operator": {"agree": 1}}),
    }

    def check(k: str, count: int, reports: int, last: str, sighters: set, opinions: dict, by_sector: dict):
        (answer,) = exchange.lookup.lookup(m[k].principal, [value])
        assert [(x.id, x.tlp) for x in answer.matches] == [
            (yid, "TLP:GREEN" if k in ("B", "G") else "TLP:AMBER")], k
        assert (answer.sightings, answer.sighting_reports) == (count, reports), k
        assert answer.to_json()["last_seen"] == last, k
        assert set(answer.sighters) == sighters, k
        assert (answer.opinions, answer.opinions_by_sector) == (opinions, by_sector), k

    for k, facts in expected.items():
        check(k, *facts)
    # W sees only s4 (CLEAR), not the indicator: as if the value were unknown
    unseen, unknown = exchange.lookup.lookup(m["W"].principal, [value, "45.66.30.2"])
    assert unseen.to_json() == _as_unknown(unseen.to_json(), unknown.to_json())

    # the quick form sights the indicator once, at the TLP of the copy the sighter gets
    (by_r,) = exchange.sightings.sight(m["R"].principal, "sightings", value, 2)
    (by_g,) = exchange.sightings.sight(m["G"].principal, "sightings", value, 3)
    assert by_r.sighting["object_marking_refs"] == [TLP2_MARKING_BY_LEVEL[Tlp.AMBER]]
    assert by_g.sighting["object_marking_refs"] == [TLP2_MARKING_BY_LEVEL[Tlp.GREEN]]
    r_name, g_name = (m["R"].org, "research"), (m["G"].org, "end-user")
    for k, extra, more_sighters in (("R", 5, {r_name, g_name}), ("A", 5, {r_name, g_name}),
                                    ("G", 3, {g_name})):
        count, reports, last, sighters, opinions, by_sector = expected[k]
        assert exchange.lookup.lookup(m[k].principal, [value])[0].sightings == count + extra, k
        assert set(exchange.lookup.lookup(m[k].principal, [value])[0].sighters) == sighters | more_sighters, k


# -- 5. pull feeds ------------------------------------------------------------------------------------
def _feed_world(exchange) -> dict[str, Any]:
    """Community 'fed': A (government) and B (operator) write at AMBER, V (vendor) at
    GREEN, G (end-user) at GREEN; R (research) reads at AMBER."""
    sectors = {"A": "government", "B": "operator", "V": "vendor", "G": "end-user", "R": "research"}
    m = {k: make_member(exchange, f"Feed {k}", sector) for k, sector in sectors.items()}
    exchange.admin.create_community("fed", default_tlp=Tlp.GREEN)
    for k, write, tlp in (("A", True, Tlp.AMBER), ("B", True, Tlp.AMBER), ("V", True, Tlp.GREEN),
                          ("G", True, Tlp.GREEN), ("R", False, Tlp.AMBER)):
        exchange.admin.set_membership(m[k].org, "fed", True, write, tlp)
    return {"m": m, "cid": exchange.admin.get_community("fed").collection_id,
            "oid": f"indicator--{uuid.uuid4()}"}


def _feed_copy(w: dict[str, Any], value: str, tlp: Tlp) -> dict[str, Any]:
    return indicator(value, oid=w["oid"], created_by=MITRE, modified=1, tlp=tlp)


class FeedReader:
    """One organisation's feed, fetched like a client that keeps the last ETag."""

    def __init__(self, feeds, clock, member, name: str, **filters: Any) -> None:
        self.feeds, self.clock, self.member = feeds, clock, member
        self.feed = feeds.create_feed(member.principal, name, "plain-ip", build_filter(**filters))
        self.etag = ""
        self.fetch()

    def fetch(self) -> list[str]:
        export, etag, _ = self.feeds.render_feed(self.member.principal, self.feed)
        body = "".join(export.chunks).split()
        self.etag = etag
        assert self.feeds.validators(self.member.principal, self.feed)[::2] == (etag, True)
        return body

    def changed(self, body: list[str]) -> None:
        """The content changed: the stored validators are stale, and a new ETag comes."""
        self.clock.now += 2_000_000
        old = self.etag
        etag, _, current = self.feeds.validators(self.member.principal, self.feed)
        assert not current and etag != old
        assert self.fetch() == body
        assert self.etag != old

    def same(self, body: list[str]) -> None:
        """The content did not change (the ETag may or may not)."""
        self.clock.now += 2_000_000
        assert self.fetch() == body


def test_feed_etags_move_when_the_copy_a_reader_gets_changes(exchange, feeds, clock):
    w = _feed_world(exchange)
    m, cid = w["m"], w["cid"]
    g = FeedReader(feeds, clock, m["G"], "ips", communities=["fed"])
    r = FeedReader(feeds, clock, m["R"], "green-ips", communities=["fed"], tlp="green")
    both = (g, r)
    assert g.fetch() == r.fetch() == []
    # A's AMBER copy: G cannot see it; it is above R's ceiling
    _post(exchange, m["A"], cid, _feed_copy(w, "45.66.40.1", Tlp.AMBER))
    for f in both:
        f.same([])
    # B's GREEN copy: the first G sees, and the first under R's GREEN ceiling
    _post(exchange, m["B"], cid, _feed_copy(w, "45.66.40.2", Tlp.GREEN))
    for f in both:
        f.changed(["45.66.40.2"])
    # V's CLEAR copy, stored later: nobody's choice changes
    _post(exchange, m["V"], cid, _feed_copy(w, "45.66.40.3", Tlp.CLEAR))
    for f in both:
        f.same(["45.66.40.2"])
    # B deletes its copy: both fall back to V's
    exchange.ingest.delete_object(m["B"].principal, cid, w["oid"], ALL_VERSIONS)
    for f in both:
        f.changed(["45.66.40.3"])
    # G's own copy: G gets it; R still gets V's (the first stored of those under its ceiling)
    _post(exchange, m["G"], cid, _feed_copy(w, "45.66.40.4", Tlp.GREEN))
    g.changed(["45.66.40.4"])
    r.same(["45.66.40.3"])
    exchange.ingest.delete_object(m["G"].principal, cid, w["oid"], ALL_VERSIONS)
    g.changed(["45.66.40.3"])
    r.same(["45.66.40.3"])
    # A deletes its AMBER copy, which neither could have in its feed
    exchange.ingest.delete_object(m["A"].principal, cid, w["oid"], ALL_VERSIONS)
    for f in both:
        f.same(["45.66.40.3"])
    # V deletes the last copy
    exchange.ingest.delete_object(m["V"].principal, cid, w["oid"], ALL_VERSIONS)
    for f in both:
        f.changed([])


def test_a_copy_the_reader_cannot_see_never_moves_its_etag(exchange, feeds, clock):
    w = _feed_world(exchange)
    m, cid = w["m"], w["cid"]
    _post(exchange, m["B"], cid, _feed_copy(w, "45.66.41.2", Tlp.GREEN))
    g = FeedReader(feeds, clock, m["G"], "ips", communities=["fed"])
    assert g.fetch() == ["45.66.41.2"]
    before = feeds.validators(m["G"].principal, g.feed)
    clock.now += 2_000_000
    _post(exchange, m["A"], cid, _feed_copy(w, "45.66.41.1", Tlp.AMBER))  # invisible to G
    assert g.fetch() == ["45.66.41.2"]  # the content is the same ...
    # ... and so are the validators: a post the reader cannot see must not tell it, by a
    # new ETag, that something happened above its clearance.
    assert feeds.validators(m["G"].principal, g.feed) == before


# -- 6. deletions --------------------------------------------------------------------------------------
def test_a_deleted_copy_leaves_no_tombstone_where_another_is_seen(exchange, svc):
    """Version 1 held by D (RED, addressed to RR), A (GREEN) and B (AMBER), in that
    order; version 2 by A only (GREEN). Tombstones go to those who lose a version."""
    sectors = {"A": "government", "B": "operator", "D": "other", "G": "end-user", "R": "research",
               "W": "research", "RR": "research"}
    m = {k: make_member(exchange, f"Del {k}", sector) for k, sector in sectors.items()}
    exchange.admin.create_community("del", default_tlp=Tlp.GREEN)
    for k, write, tlp in (("A", True, Tlp.AMBER), ("B", True, Tlp.AMBER), ("D", True, Tlp.RED),
                          ("G", False, Tlp.GREEN), ("R", False, Tlp.AMBER), ("W", False, Tlp.CLEAR),
                          ("RR", False, Tlp.RED)):
        exchange.admin.set_membership(m[k].org, "del", True, write, tlp)
    cid = exchange.admin.get_community("del").collection_id
    oid = f"indicator--{uuid.uuid4()}"
    v1, v2 = 1_767_225_601_000_000, 1_767_225_602_000_000  # ts(1), ts(2) in µs

    def copy(value: str, tlp: Tlp, version: int = 1, **extra) -> dict[str, Any]:
        return indicator(value, oid=oid, created_by=MITRE, modified=version, tlp=tlp, **extra)

    _post(exchange, m["D"], cid, copy("45.66.70.4", Tlp.RED, recipients=[m["RR"].identity]))
    _post(exchange, m["A"], cid, copy("45.66.70.1", Tlp.GREEN))
    _post(exchange, m["B"], cid, copy("45.66.70.2", Tlp.AMBER))
    _post(exchange, m["A"], cid, copy("45.66.70.3", Tlp.GREEN, version=2))

    def gone(k: str) -> list[tuple[str, int]]:
        return [(t.stix_id, t.version_us) for t in exchange.query.deletions(m[k].principal, cid).rows]

    def ips(k: str) -> list[str]:
        flt = build_filter(communities=["del"], tlp="red")
        return "".join(svc.export(m[k].principal, "plain-ip", flt).chunks).split()

    assert all(gone(k) == [] for k in m)
    exchange.ingest.delete_object(m["A"].principal, cid, oid, ALL_VERSIONS)
    expected = {
        "A": [(oid, v2)], "B": [(oid, v2)], "R": [(oid, v2)],  # they still see B's version 1
        "D": [(oid, v2)], "RR": [(oid, v2)],  # they see D's (and B's) version 1
        "G": [(oid, v1), (oid, v2)],  # saw A's GREEN copy only
        "W": [],  # never saw a version
    }
    assert {k: sorted(gone(k)) for k in m} == expected
    assert (ips("R"), ips("G"), ips("RR"), ips("D"), ips("W")) == (
        ["45.66.70.2"], [], ["45.66.70.4"], ["45.66.70.4"], [])
    # D deletes its RED copy: RR and D still see B's version 1
    exchange.ingest.delete_object(m["D"].principal, cid, oid, ALL_VERSIONS)
    assert {k: sorted(gone(k)) for k in m} == expected
    assert (ips("RR"), ips("D")) == (["45.66.70.2"], ["45.66.70.2"])
    # B deletes the last copy of version 1: now it is gone for everyone who saw it
    exchange.ingest.delete_object(m["B"].principal, cid, oid, ALL_VERSIONS)
    for k in ("A", "B", "R", "D", "RR", "G"):
        assert set(gone(k)) == {(oid, v1), (oid, v2)}, k
    assert gone("W") == []
    assert all(ips(k) == [] for k in m)


def test_a_version_gone_for_good_has_one_tombstone(exchange):
    members = {k: make_member(exchange, f"Tomb {k}") for k in ("A", "B", "R")}
    exchange.admin.create_community("tomb", default_tlp=Tlp.GREEN)
    for k, write in (("A", True), ("B", True), ("R", False)):
        exchange.admin.set_membership(members[k].org, "tomb", True, write, Tlp.AMBER)
    cid = exchange.admin.get_community("tomb").collection_id
    oid = f"indicator--{uuid.uuid4()}"
    for k in "AB":
        _post(exchange, members[k], cid, indicator("45.66.71.1", oid=oid, created_by=MITRE, modified=1,
                                                   tlp=Tlp.GREEN if k == "A" else Tlp.AMBER))
    for k in "AB":
        exchange.ingest.delete_object(members[k].principal, cid, oid, ALL_VERSIONS)
    rows = exchange.query.deletions(members["R"].principal, cid).rows
    # R read one copy of version 1 and is told once that it is gone (by the last copy's
    # tombstone): two would show how many members held the version.
    assert [(t.stix_id, t.version_us) for t in rows] == [(oid, 1_767_225_601_000_000)]
