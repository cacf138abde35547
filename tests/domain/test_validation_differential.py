"""Differential test: validate_object against the OASIS reference validator.

The reference is stix2-validator 3.3.2 (``validate_parsed_json``, STIX 2.1, warnings
are not errors). Every object of the tests/data/stix/v21 bundles, and systematic
mutations of them and of hand-written objects of every type, must get the same
verdict (accept/reject) from both, except the cases of EXCEPTIONS, each justified by
STIX 2.1 (OASIS Standard, 10 June 2021).
"""

from __future__ import annotations

import copy
import fnmatch
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from stix2validator import ValidationOptions, validate_parsed_json

from commonwatch.domain.stix import validate_object
from commonwatch.errors import InputError

DATA = Path(__file__).parent.parent / "data" / "stix" / "v21"
OPTIONS = ValidationOptions(version="2.1")
# The reference's SHOULD checks (warnings, which never count) crash on many malformed
# values (AttributeError, TypeError...); a crashed run is repeated without them.
NO_SHOULDS = ValidationOptions(version="2.1", disabled=["all"])
T0, T1 = "2024-05-01T10:00:00.000Z", "2024-05-02T10:00:00.000Z"
AMBER = "marking-definition--f88d31f6-486f-44da-b317-01333bde0b82"
DROP = object()


def uid(kind: str, n: int = 1) -> str:
    return f"{kind}--00000000-0000-4000-8000-{n:012d}"


def reference_accepts(obj: Any) -> bool:
    """The reference's verdict. It raises on some malformed input (ValidationError for a
    missing id or type; TypeError, ValueError... from MUST checks given a wrong JSON
    type): an object it cannot validate is not accepted."""
    for options in (OPTIONS, NO_SHOULDS):
        try:
            return validate_parsed_json(copy.deepcopy(obj), options).is_valid
        except Exception:  # noqa: BLE001
            pass
    return False


def commonwatch_accepts(obj: Any) -> bool:
    try:
        validate_object(copy.deepcopy(obj))
    except InputError:
        return False
    return True


# --- The base corpus -----------------------------------------------------------------


def sdo(kind: str, **props: Any) -> dict[str, Any]:
    return {"type": kind, "spec_version": "2.1", "id": uid(kind), "created": T0, "modified": T1,
            **props}


def sco(kind: str, **props: Any) -> dict[str, Any]:
    return {"type": kind, "spec_version": "2.1", "id": uid(kind), **props}


KCP = [{"kill_chain_name": "lockheed-martin-cyber-kill-chain", "phase_name": "delivery"}]
HAND_WRITTEN: list[dict[str, Any]] = [
    sdo("indicator", name="bad ip", pattern="[ipv4-addr:value = '198.51.100.1']",
        pattern_type="stix", valid_from=T0, indicator_types=["malicious-activity"],
        created_by_ref=uid("identity"), object_marking_refs=[AMBER], confidence=80, lang="en",
        kill_chain_phases=KCP, labels=["x"], revoked=False,
        external_references=[{"source_name": "acme", "url": "https://example.com/1"}]),
    sdo("malware", name="Poison Ivy", is_family=True, malware_types=["remote-access-trojan"],
        first_seen=T0, last_seen=T1, sample_refs=[uid("file")]),
    sdo("threat-actor", name="APT0", threat_actor_types=["nation-state"], aliases=["zero"]),
    sdo("identity", name="ACME", identity_class="organization", sectors=["technology"]),
    sdo("report", name="r", published=T0, object_refs=[uid("indicator"), uid("malware")]),
    sdo("relationship", relationship_type="indicates", source_ref=uid("indicator"),
        target_ref=uid("malware"), start_time=T0, stop_time=T1),
    sdo("sighting", sighting_of_ref=uid("indicator"), count=2, first_seen=T0, last_seen=T1,
        where_sighted_refs=[uid("identity")], observed_data_refs=[uid("observed-data")]),
    sdo("attack-pattern", name="spearphishing", kill_chain_phases=KCP),
    sdo("campaign", name="c", first_seen=T0, last_seen=T1, objective="steal"),
    sdo("course-of-action", name="block"),
    sdo("grouping", context="suspicious-activity", object_refs=[uid("file"), uid("malware")]),
    sdo("infrastructure", name="c2", infrastructure_types=["command-and-control"]),
    sdo("intrusion-set", name="is", goals=["money"], resource_level="government"),
    sdo("location", name="Paris", latitude=48.8, longitude=2.3, precision=10.0, country="FR"),
    sdo("malware-analysis", product="sandbox", result="malicious",
        analysis_sco_refs=[uid("file")], sample_ref=uid("file")),
    sdo("note", content="see this", object_refs=[uid("malware")], authors=["me"]),
    sdo("observed-data", first_observed=T0, last_observed=T1, number_observed=3,
        object_refs=[uid("ipv4-addr"), uid("network-traffic")]),
    sdo("opinion", opinion="strongly-agree", object_refs=[uid("report")], explanation="yes"),
    sdo("tool", name="nmap", tool_types=["network-capture"], tool_version="7.9"),
    sdo("vulnerability", name="CVE-2021-44228",
        external_references=[{"source_name": "cve", "external_id": "CVE-2021-44228"}]),
    sdo("incident", name="breach"),
    {"type": "marking-definition", "spec_version": "2.1", "id": uid("marking-definition"),
     "created": T0, "definition_type": "statement", "definition": {"statement": "(c) ACME"}},
    sco("ipv4-addr", value="198.51.100.1"),
    sco("ipv6-addr", value="2001:db8::1"),
    sco("domain-name", value="example.com", resolves_to_refs=[uid("ipv4-addr")]),
    sco("url", value="https://example.com/x"),
    sco("file", name="a.exe", size=10, hashes={"SHA-256": "ab" * 32, "MD5": "cd" * 16}),
    sco("email-addr", value="a@example.com", display_name="A"),
    sco("network-traffic", src_ref=uid("ipv4-addr"), dst_ref=uid("ipv4-addr", 2), src_port=80,
        protocols=["ipv4", "tcp"], start=T0, end=T1),
    sco("mac-addr", value="00:0a:95:9d:68:16"),
    sco("autonomous-system", number=64496, name="AS"),
    sco("mutex", name="Global\\m"),
    sco("software", name="Word", vendor="Microsoft"),
    sco("artifact", mime_type="text/plain", payload_bin="aGVsbG8="),
    sco("user-account", user_id="1001", account_login="root"),
    sco("process", pid=4, command_line="cmd.exe"),
    sco("directory", path="C:\\Windows"),
    sco("windows-registry-key", key="HKEY_LOCAL_MACHINE\\Software"),
    sco("x509-certificate", serial_number="01", issuer="CN=x"),
    sco("email-message", is_multipart=False, body="hi", subject="s", from_ref=uid("email-addr")),
]


def _corpus() -> list[tuple[str, dict[str, Any]]]:
    out = []
    for path in sorted(DATA.glob("*.json")):
        for obj in json.loads(path.read_text(encoding="utf-8"))["objects"]:
            out.append((f"{path.stem[:14]}:{obj['id'][:-28]}", obj))
    return out


CORPUS = _corpus()

# --- Mutations -----------------------------------------------------------------------

WRONG_TYPE: dict[type, tuple[Any, ...]] = {
    str: (7, ["x"]), bool: ("true", 1), int: ("1", 1.5), float: ("1.5", True),
    list: ("x", {"a": "b"}), dict: ("x", [{"a": "b"}]),
}
BAD_TIMESTAMPS = {
    "no-z": "2024-05-01T10:00:00.000", "month-13": "2024-13-01T10:00:00.000Z",
    "no-time": "2024-05-01", "lowercase-t": "2024-05-01t10:00:00.000Z",
    "offset": "2024-05-01T10:00:00.000+00:00", "feb-30": "2024-02-30T10:00:00.000Z",
}
TIMESTAMP_PROPS = {"created", "modified", "valid_from", "valid_until", "first_seen", "last_seen",
                   "published", "first_observed", "last_observed", "start_time", "stop_time"}
BAD_IDS = {
    "not-uuid": "{t}--not-a-uuid", "uppercase-type": "{T}--00000000-0000-4000-8000-000000000001",
    "uppercase-uuid": "{t}--0000000A-0000-4000-8000-00000000000B",
    "uuid-v1": "{t}--6ba7b810-9dad-11d1-80b4-00c04fd430c8",
    "uuid-v0": "{t}--00000000-0000-0000-8000-000000000001",
    "bad-variant": "{t}--00000000-0000-4000-0000-000000000001",
    "single-dash": "{t}-00000000-0000-4000-8000-000000000001",
    "other-type": "x-other--00000000-0000-4000-8000-000000000001",
}
CUSTOM_NAMES = ("x_ok", "acme_ok", "X_Upper", "xy", "x_" + "a" * 249, "x_" + "a" * 248, "x-hyphen",
                "x_sp ace")


def generic(obj: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    """Drop each property; wrong JSON types; empty lists and dicts; bad timestamps."""
    for name, value in obj.items():
        yield f"drop:{name}", {k: v for k, v in obj.items() if k != name}
        if name == "type":
            continue
        for index, wrong in enumerate(WRONG_TYPE.get(type(value), ())):
            yield f"type{index}:{name}", {**obj, name: wrong}
        if type(value) in (list, dict):
            yield f"empty:{name}", {**obj, name: type(value)()}
        if name in TIMESTAMP_PROPS:
            for what, bad in BAD_TIMESTAMPS.items():
                yield f"ts-{what}:{name}", {**obj, name: bad}


def specific(obj: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    """Mutations of the common properties and identifiers, for the hand-written bases."""
    t = obj["type"]
    for what, pattern in BAD_IDS.items():
        yield f"id-{what}", {**obj, "id": pattern.format(t=t, T=t.upper())}
    yield "type-mismatch", {**obj, "type": "x-acme" if t != "x-acme" else "x-other"}
    for version in ("2.0", "2.2", 2.1, ""):
        yield f"spec_version={version!r}", {**obj, "spec_version": version}
    for name in CUSTOM_NAMES:
        yield f"custom:{name[:12]}{len(name)}", {**obj, name: "v"}
    yield "custom-bad-ref", {**obj, "x_thing_ref": "not-an-id"}
    yield "marking-ref-identity", {**obj, "object_marking_refs": [uid("identity")]}
    yield "granular-bad-selector", {**obj, "granular_markings": [
        {"marking_ref": AMBER, "selectors": ["no_such_property"]}]}
    yield "granular-ok", {**obj, "granular_markings": [{"marking_ref": AMBER, "selectors": ["id"]}]}
    yield "granular-no-ref", {**obj, "granular_markings": [{"selectors": ["id"]}]}
    yield "granular-lang", {**obj, "granular_markings": [{"lang": "en", "selectors": ["id"]}]}
    yield "granular-empty-selectors", {**obj, "granular_markings": [
        {"marking_ref": AMBER, "selectors": []}]}
    if "created" not in obj:  # an SCO
        yield "sco-no-spec_version", {k: v for k, v in obj.items() if k != "spec_version"}
        yield "defanged", {**obj, "defanged": True}
        yield "defanged-str", {**obj, "defanged": "yes"}
        return
    yield "modified<created", {**obj, "modified": "2024-04-30T10:00:00.000Z"}
    yield "modified=created", {**obj, "modified": obj["created"]}
    yield "created-leap-second", {**obj, "created": "2016-12-31T23:59:60.000Z",
                                  "modified": "2017-01-01T00:00:00.000Z"}
    yield "created-no-fraction", {**obj, "created": "2024-05-01T10:00:00Z"}
    yield "created-9-digits", {**obj, "created": "2024-05-01T10:00:00.123456789Z"}
    yield "created_by_ref-malware", {**obj, "created_by_ref": uid("malware")}
    yield "created_by_ref-bad", {**obj, "created_by_ref": "identity--x"}
    yield "external-ref-no-source", {**obj, "external_references": [{"url": "https://e.x"}]}
    yield "external-ref-only-source", {**obj, "external_references": [{"source_name": "x"}]}
    yield "external-ref-bad-hash", {**obj, "external_references": [
        {"source_name": "x", "url": "https://e.x", "hashes": {"SHA-256": "00"}}]}
    if t == "marking-definition":
        return
    for value in (0, 100, 101, -1, 50.5, True, "50"):
        yield f"confidence={value!r}", {**obj, "confidence": value}
    for value in (True, "true", 1):
        yield f"revoked={value!r}", {**obj, "revoked": value}
    for value in ("en", "en-US", "zh-Hant-TW", "", "en_US", "not a tag", 5):
        yield f"lang={value!r}", {**obj, "lang": value}
    if "kill_chain_phases" in obj:
        for what, kcp in KCP_VARIANTS.items():
            yield f"kill_chain-{what}", {**obj, "kill_chain_phases": kcp}


KCP_VARIANTS: dict[str, Any] = {
    "no-phase": [{"kill_chain_name": "k"}], "no-name": [{"phase_name": "p"}], "str": ["delivery"],
    "int": [{"kill_chain_name": "k", "phase_name": 1}], "empty-obj": [{}],
    "upper": [{"kill_chain_name": "Lockheed Martin", "phase_name": "Delivery"}],
}


def by_type(kind: str) -> dict[str, Any]:
    return next(obj for obj in HAND_WRITTEN if obj["type"] == kind)


def variant(kind: str, **changes: Any) -> dict[str, Any]:
    obj = copy.deepcopy(by_type(kind))
    for name, value in changes.items():
        obj.pop(name) if value is DROP else obj.__setitem__(name, value)
    return obj


def targeted() -> Iterator[tuple[str, Any]]:
    """Type-specific rules of STIX 2.1 §4-§7, one case each."""
    for kind in ("marking-definition", "relationship", "sighting", "bundle", "ipv4-addr",
                 "language-content", "malware", "file"):
        yield f"relationship-source-{kind}", variant("relationship", source_ref=uid(kind))
        yield f"relationship-target-{kind}", variant("relationship", target_ref=uid(kind))
    yield "relationship-type-upper", variant("relationship", relationship_type="Indicates")
    yield "relationship-stop=start", variant("relationship", stop_time=T0)
    yield "relationship-stop<start", variant("relationship", start_time=T1, stop_time=T0)
    for kind in ("relationship", "sighting", "marking-definition", "ipv4-addr", "x-acme",
                 "language-content", "identity"):
        yield f"sighting_of-{kind}", variant("sighting", sighting_of_ref=uid(kind))
    yield "sighting-where-malware", variant("sighting", where_sighted_refs=[uid("malware")])
    yield "sighting-observed-indicator", variant("sighting", observed_data_refs=[uid("indicator")])
    yield "sighting-count-negative", variant("sighting", count=-1)
    yield "sighting-count-1e9", variant("sighting", count=1_000_000_000)
    yield "sighting-last<first", variant("sighting", first_seen=T1, last_seen=T0)
    for value in ("agree", "Agree", "strongly agree", "maybe", "", 1):
        yield f"opinion={value!r}", variant("opinion", opinion=value)
    for what, pattern in {
        "unclosed": "[ipv4-addr:value = '1.2.3.4'", "no-brackets": "ipv4-addr:value = '1.2.3.4'",
        "bad-op": "[ipv4-addr:value === '1.2.3.4']", "unquoted": "[ipv4-addr:value = 1.2.3.4]",
        "empty": "",
        "bad-type": "[IPv4-Addr:value = '1.2.3.4']",
        "and-or": "[file:name = 'a' AND file:size > 3] OR [url:value = 'x']",
        "qualifier": "[file:name = 'a'] REPEATS 5 TIMES WITHIN 10 SECONDS",
        "bad-qualifier": "[file:name = 'a'] WITHIN -5 SECONDS",
        "hash-path": "[file:hashes.'SHA-256' = 'ab']", "bad-timestamp": "[file:name = 'a'] START "
        "t'2024-13-01T00:00:00Z' STOP t'2024-05-01T00:00:00Z'",
        "custom-type": "[x-acme:prop = 'a']", "like": "[url:value LIKE 'http%']",
        "matches": "[url:value MATCHES '^http']", "set": "[ipv4-addr:value IN ('a', 'b')]",
        "not-issubset": "[ipv4-addr:value NOT ISSUBSET '10.0.0.0/8']",
    }.items():
        yield f"pattern-{what}", variant("indicator", pattern=pattern)
    yield "pattern-type-empty", variant("indicator", pattern_type="")
    yield "pattern-sigma-junk", variant("indicator", pattern_type="sigma", pattern="((")
    yield "valid_until=valid_from", variant("indicator", valid_until=T0)
    yield "indicator-type-num", variant("indicator", indicator_types=[1])
    yield "malware-family-no-name", variant("malware", name=DROP)
    yield "malware-sample-indicator", variant("malware", sample_refs=[uid("indicator")])
    yield "malware-no-family", variant("malware", is_family=False, name=DROP)
    yield "report-ref-bundle", variant("report", object_refs=[uid("bundle")])
    yield "location-lat-91", variant("location", latitude=91.0)
    yield "location-lon-181", variant("location", longitude=-181)
    yield "location-lat-only", variant("location", longitude=DROP, precision=DROP)
    yield "location-nothing", variant("location", longitude=DROP, latitude=DROP, country=DROP,
                                      precision=DROP)
    yield "location-precision-neg", variant("location", precision=-1.0)
    yield "observed-number-0", variant("observed-data", number_observed=0)
    yield "observed-number-1e9", variant("observed-data", number_observed=1_000_000_000)
    yield "observed-only-sdo", variant("observed-data", object_refs=[uid("malware")])
    yield "observed-last<first", variant("observed-data", first_observed=T1, last_observed=T0)
    yield "observed-both", variant("observed-data", objects={"0": {"type": "url", "value": "x"}})
    yield "analysis-no-result", variant("malware-analysis", result=DROP, analysis_sco_refs=DROP)
    yield "analysis-sco-refs-sdo", variant("malware-analysis", analysis_sco_refs=[uid("malware")])
    yield "marking-tlp-custom-id", variant("marking-definition", definition_type="tlp",
                                           definition={"tlp": "amber"})
    yield "marking-statement-int", variant("marking-definition", definition={"statement": 1})
    yield "marking-self", variant("marking-definition", object_marking_refs=[uid("marking-definition")])
    yield "marking-modified", variant("marking-definition", modified=T1)
    yield "marking-no-definition", variant("marking-definition", definition=DROP)
    for what, hashes in {
        "md5-short": {"MD5": "abc"}, "md5-nonhex": {"MD5": "zz" * 16}, "sha1-short": {"SHA-1": "ab"},
        "sha256-upper": {"SHA-256": "AB" * 32}, "lower-md5": {"md5": "ab" * 16},
        "custom-ok": {"x_acme": "anything"}, "key-2": {"ab": "cd"}, "key-space": {"my hash": "x"},
        "int": {"MD5": 5}, "ssdeep": {"SSDEEP": "3:a:b"}, "tlsh": {"TLSH": "T1" + "a" * 70},
        "sha3-bad": {"SHA3-256": "00"}, "sha512-ok": {"SHA-512": "ab" * 64},
    }.items():
        yield f"file-hashes-{what}", variant("file", hashes=hashes)
    yield "file-size-neg", variant("file", size=-1)
    yield "file-no-name-no-hash", variant("file", name=DROP, hashes=DROP)
    yield "file-magic-odd", variant("file", magic_number_hex="abc")
    yield "ipv4-cidr", variant("ipv4-addr", value="10.0.0.0/8")
    yield "ipv4-resolves-domain", variant("ipv4-addr", resolves_to_refs=[uid("domain-name")])
    yield "domain-resolves-url", variant("domain-name", resolves_to_refs=[uid("url")])
    yield "traffic-port-65536", variant("network-traffic", src_port=65536)
    yield "traffic-no-src-dst", variant("network-traffic", src_ref=DROP, dst_ref=DROP)
    yield "traffic-src-url", variant("network-traffic", src_ref=uid("url"))
    yield "traffic-active-end", variant("network-traffic", is_active=True)
    yield "traffic-end<start", variant("network-traffic", start=T1, end=T0)
    yield "mac-upper", variant("mac-addr", value="00:0A:95:9D:68:16")
    yield "mac-dashes", variant("mac-addr", value="00-0a-95-9d-68-16")
    yield "artifact-bad-base64", variant("artifact", payload_bin="not base64!")
    yield "artifact-url-no-hash", variant("artifact", payload_bin=DROP, url="https://e.x/a")
    yield "email-multipart-body", variant("email-message", is_multipart=True)
    yield "email-from-url", variant("email-message", from_ref=uid("url"))
    # a MIME part with neither body nor body_raw_ref: §6.6.2, one of them MUST be present
    yield "email-mime-empty-part", variant("email-message", is_multipart=True, body=DROP,
                                           body_multipart=[{"content_type": "text/plain"}])
    yield "process-nothing", variant("process", pid=DROP, command_line=DROP)
    yield "x509-nothing", variant("x509-certificate", serial_number=DROP, issuer=DROP)
    yield "extensions-empty", variant("file", extensions={})
    yield "extensions-bad-key", variant("file", extensions={"extension-definition--x": {"a": 1}})
    yield "extensions-archive-no-refs", variant("file", extensions={"archive-ext": {"comment": "c"}})
    yield "custom-type-upper", {**by_type("url"), "type": "X-Acme", "id": uid("X-Acme")}
    yield "custom-type-short", {**by_type("url"), "type": "xy", "id": uid("xy")}
    yield "custom-type-ok", {**by_type("url"), "type": "x-acme", "id": uid("x-acme")}
    yield "custom-sdo-ok", {**by_type("course-of-action"), "type": "x-acme", "id": uid("x-acme")}


def _mutation_cases() -> dict[str, list[tuple[str, Any]]]:
    """Cases by the object they mutate (one test each, failures listed by case)."""
    bases = [(f"hand:{obj['type']}", obj) for obj in HAND_WRITTEN]
    seen: dict[str, int] = {}
    for name, obj in sorted(CORPUS, key=lambda item: -len(item[1])):
        if seen.get(obj["type"], 0) < 2 and commonwatch_accepts(obj) and reference_accepts(obj):
            seen[obj["type"]] = seen.get(obj["type"], 0) + 1
            bases.append((name, obj))
    groups: dict[str, dict[str, Any]] = {}
    for name, obj in bases:
        mutations = generic(obj)
        if name.startswith("hand:"):
            mutations = (*mutations, *specific(obj))
        cases = groups.setdefault(name, {})
        for what, mutated in mutations:
            cases[f"{name}:{what}"] = mutated
    groups["target"] = {f"target:{what}": obj for what, obj in targeted()}
    return {name: list(cases.items()) for name, cases in groups.items()}


MUTATIONS = _mutation_cases()

# --- Where the two may differ: case pattern -> (CommonWatch's verdict, why) ----------

_CW_STRICTER = False  # CommonWatch rejects, the reference accepts
_REF_STRICTER = True  # CommonWatch accepts, the reference rejects
EXCEPTIONS: dict[str, tuple[bool, str]] = {
    "*:spec_version='2.0'": (_CW_STRICTER, "§3.2: spec_version MUST be 2.1 for 2.1 objects"),
    "*:type-mismatch": (_CW_STRICTER, "§2.9: the id's object-type MUST be the object's type"),
    "*:custom:x_aaaaaaaaaa251": (_CW_STRICTER, "§11.1: custom property names MUST be <= 250 chars"),
    "*:custom:x_sp ace8": (_CW_STRICTER, "§11.1: custom property names MUST be [a-z0-9_]"),
    **dict.fromkeys(("hand:marking-definition:custom:X_Upper7", "hand:marking-definition:custom:xy2",
                     "hand:marking-definition:custom:x-hyphen8"),
                    (_CW_STRICTER, "§11.1 names: the reference skips marking-definitions")),
    "*:custom-bad-ref": (_CW_STRICTER, "§2.9/§3.1: properties ending in _ref hold identifiers"),
    "*:marking-ref-identity": (_CW_STRICTER, "§7.2.2: object_marking_refs are marking-definition ids"),
    "*:created_by_ref-malware": (_CW_STRICTER, "§3.2: created_by_ref is the id of an identity object"),
    "hand:marking-definition:created-no-fraction": (
        _CW_STRICTER, "§3.2: created MUST be precise to the millisecond (§7.2.1 uses §3.2)"),
    "*marking-definition--*:empty:definition": (
        _CW_STRICTER, "§7.2.1.3/§7.2.1.4: a statement/tlp definition MUST hold its property"),
    "target:sighting_of-ipv4-addr": (_CW_STRICTER, "§5.2: sighting_of_ref MUST reference an SDO"),
    "target:malware-sample-indicator": (_CW_STRICTER, "§4.11: sample_refs are file or artifact ids"),
    "target:analysis-sco-refs-sdo": (_CW_STRICTER, "§4.12: analysis_sco_refs reference SCOs"),
    "target:location-precision-neg": (_CW_STRICTER, "§4.10: precision is a distance in meters"),
    "target:ipv4-resolves-domain": (_CW_STRICTER, "§6.4: resolves_to_refs MUST be mac-addr"),
    "target:domain-resolves-url": (_CW_STRICTER, "§6.3: resolves_to_refs MUST be ip/domain"),
    "target:traffic-src-url": (_CW_STRICTER, "§6.12: src_ref MUST be an ip, mac or domain"),
    "target:email-from-url": (_CW_STRICTER, "§6.6: from_ref MUST be of type email-addr"),
    "*:created-leap-second": (_REF_STRICTER, "§2.15: RFC 3339 timestamps allow the leap second :60"),
    "*:lang='zh-Hant-TW'": (_REF_STRICTER, "§3.2: lang is any RFC 5646 tag; the reference lacks scripts"),
    "*:granular-lang": (_REF_STRICTER, "§7.2.3: lang MAY replace marking_ref in a granular marking"),
    "*windows-registry-key*:drop:key": (_REF_STRICTER, "§6.17: every property is optional"),
    "target:file-hashes-tlsh": (_REF_STRICTER, "§2.7/§10.5: no MUST fixes a TLSH digest's length"),
    # §3.2 table: SCOs and marking-definitions (§7.2.1) have no created/modified, so these
    # names are custom properties with free values (§11.1); the reference parses them.
    "*marking-definition*:t*:modified": (_REF_STRICTER, "§7.2.1: no modified property"),
    "hand:marking-definition:modified<created": (_REF_STRICTER, "§7.2.1: no modified property"),
    "*software--*:t*:created": (_REF_STRICTER, "§6.14: an SCO has no created property"),
    "*software--*:t*:modified": (_REF_STRICTER, "§6.14: an SCO has no modified property"),
    # §2.9: RFC 4122 UUIDs of any version are identifiers; that an SCO without ID
    # contributing properties (a process) SHOULD use UUIDv4 is a SHOULD.
    "hand:process:id-uuid-v1": (_REF_STRICTER, "§2.9: UUIDv4 for such SCOs is a SHOULD"),
    # pattern_type is required (§4.7); an empty string names no pattern language to read
    # the pattern with: CommonWatch refuses it, as it refuses empty required text.
    "target:pattern-type-empty": (_CW_STRICTER, "§4.7: pattern_type names the pattern language"),
    # OpenCTI redefines predefined TLP:WHITE as {"TLP": "TLP:WHITE"}.
    "corpus:*613f2e26-407d-48c7-9eca-b8e91df99dc9": (
        _CW_STRICTER, "§7.2.1.4: the predefined TLP markings MUST be used as defined"),
}


def exception(case: str) -> tuple[bool, str] | None:
    return next((v for pattern, v in EXCEPTIONS.items() if fnmatch.fnmatchcase(case, pattern)), None)


def disagreement(case: str, obj: Any) -> str | None:
    """Why the verdicts on ``obj`` are wrong, or None."""
    reference, ours = reference_accepts(obj), commonwatch_accepts(obj)
    allowed = exception(case)
    if allowed is None:
        return None if ours == reference else f"{case}: reference accepts={reference}, CommonWatch={ours}"
    return None if ours == allowed[0] else f"{case}: CommonWatch accepts={ours}; expected per {allowed[1]}"


def test_the_corpus_is_there() -> None:
    assert len(CORPUS) == 161 and sum(map(len, MUTATIONS.values())) > 4000


def test_corpus_objects() -> None:
    wrong = [found for _, o in CORPUS if (found := disagreement(f"corpus:{o['id']}", o))]
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("base", sorted(MUTATIONS))
def test_mutations(base: str) -> None:
    """Every mutation of one base object (or the targeted cases): the failures list the
    cases by name."""
    wrong = [found for case, obj in MUTATIONS[base] if (found := disagreement(case, obj))]
    assert not wrong, "\n".join(wrong)


def test_every_exception_is_used() -> None:
    ids = [case for cases in MUTATIONS.values() for case, _ in cases]
    ids += [f"corpus:{o['id']}" for _, o in CORPUS]
    unused = [p for p in EXCEPTIONS if not any(fnmatch.fnmatchcase(i, p) for i in ids)]
    assert not unused
