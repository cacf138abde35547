"""Tests of the STIX 2.1 validator (commonwatch.domain.stix).

Real-world samples (tests/data/stix, origins in tests/data/NOTICE.md) must validate
object by object, except the objects in SAMPLE_VIOLATIONS, each of which breaks a MUST
of STIX 2.1 (the reason is written next to it). A table of hand-written invalid
objects covers one rule each and checks that the message names the property.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from commonwatch.domain import stix
from commonwatch.domain.stix import (
    StixMeta,
    parse_timestamp,
    validate_object,
)
from commonwatch.errors import InvalidPattern, InvalidStixObject

DATA = Path(__file__).parent.parent / "data" / "stix"


def _stand_in_pattern_validator(pattern: str) -> None:
    """Used only while commonwatch.domain.patterns is not importable."""
    from stix2patterns.validator import run_validator

    errors = run_validator(pattern)
    if errors:
        raise InvalidPattern(errors[0])


@pytest.fixture(autouse=True)
def _pattern_validator(monkeypatch: pytest.MonkeyPatch) -> None:
    try:
        from commonwatch.domain.patterns import validate_pattern  # noqa: F401
    except ImportError:
        monkeypatch.setattr(stix, "_pattern_validator", _stand_in_pattern_validator)


def uid(kind: str, n: int = 1) -> str:
    """A deterministic identifier with a valid UUIDv4 part."""
    return f"{kind}--00000000-0000-4000-8000-{n:012d}"


IDENTITY = uid("identity")
AMBER = "marking-definition--f88d31f6-486f-44da-b317-01333bde0b82"
RED = "marking-definition--5e57c739-391a-4eb3-b6be-7d15ca92d5ed"
EXT_DEF = uid("extension-definition")
T0 = "2024-05-01T10:00:00.000Z"
T1 = "2024-05-02T10:00:00.000Z"
SDO = {"spec_version": "2.1", "created": T0, "modified": T0}


def sdo(kind: str, **props: Any) -> dict[str, Any]:
    return {"type": kind, "id": uid(kind), **SDO, **props}


def sco(kind: str, **props: Any) -> dict[str, Any]:
    return {"type": kind, "id": uid(kind), "spec_version": "2.1", **props}


BASE: dict[str, dict[str, Any]] = {
    "indicator": sdo(
        "indicator",
        created_by_ref=IDENTITY,
        pattern="[ipv4-addr:value = '198.51.100.1']",
        pattern_type="stix",
        valid_from=T0,
        object_marking_refs=[AMBER],
        external_references=[{"source_name": "acme", "url": "https://example.com/r/1"}],
        description="bad address",
    ),
    "malware": sdo("malware", name="Poison Ivy", is_family=True),
    "malware-analysis": sdo("malware-analysis", product="sandbox", result="malicious"),
    "location": sdo("location", country="FR"),
    "note": sdo("note", content="see this", object_refs=[uid("malware")]),
    "observed-data": sdo(
        "observed-data",
        first_observed=T0,
        last_observed=T1,
        number_observed=1,
        object_refs=[uid("ipv4-addr")],
    ),
    "opinion": sdo("opinion", opinion="agree", object_refs=[uid("report")]),
    "report": sdo("report", name="r", published=T0, object_refs=[uid("indicator")]),
    "grouping": sdo("grouping", context="suspicious-activity", object_refs=[uid("file")]),
    "identity": sdo("identity", name="ACME", identity_class="organization"),
    "campaign": sdo("campaign", name="c", first_seen=T0, last_seen=T1),
    "relationship": sdo(
        "relationship",
        relationship_type="indicates",
        source_ref=uid("indicator"),
        target_ref=uid("malware"),
    ),
    "sighting": sdo("sighting", sighting_of_ref=uid("indicator"), count=1),
    "ipv4-addr": sco("ipv4-addr", value="198.51.100.1"),
    "domain-name": sco("domain-name", value="example.com"),
    "network-traffic": sco("network-traffic", src_ref=uid("ipv4-addr"), protocols=["tcp"]),
    "file": sco("file", name="a.exe", hashes={"MD5": "1717b7fff97d37a1e1a0029d83492de1"}),
    "artifact": sco("artifact", payload_bin="aGVsbG8="),
    "email-message": sco("email-message", is_multipart=False, body="hi"),
    "mac-addr": sco("mac-addr", value="00:0a:95:9d:68:16"),
    "process": sco("process", pid=4),
    "x509-certificate": sco("x509-certificate", serial_number="01"),
    "windows-registry-key": sco("windows-registry-key", key="HKEY_LOCAL_MACHINE\\x"),
    "user-account": sco("user-account", user_id="1001"),
    "marking-definition": {
        "type": "marking-definition",
        "spec_version": "2.1",
        "id": uid("marking-definition"),
        "created": T0,
        "definition_type": "statement",
        "definition": {"statement": "Copyright ACME"},
    },
    "extension-definition": sdo(
        "extension-definition",
        created_by_ref=IDENTITY,
        name="acme",
        schema="https://example.com/schema",
        version="1.0",
        extension_types=["property-extension"],
    ),
    "language-content": sdo(
        "language-content",
        object_ref=uid("campaign"),
        contents={"de": {"name": "Kampagne"}},
    ),
}

DROP = object()


def variant(kind: str, **changes: Any) -> dict[str, Any]:
    """BASE[kind] with properties replaced, added or (value DROP) removed."""
    obj = copy.deepcopy(BASE[kind])
    for name, value in changes.items():
        if value is DROP:
            obj.pop(name, None)
        else:
            obj[name] = value
    return obj


# --- Real-world samples --------------------------------------------------------------

START_EQ_STOP = "stop_time' must be later than 'start_time'"
SAMPLE_VIOLATIONS = {
    # opencti_DATA-TEST-STIX2_v2.json (OpenCTI test data, not cleaned for STIX 2.1):
    # §4.14: object_refs are SCOs and SROs, not a malware; the object also lacks
    # created/modified (§3.2) and has both objects and object_refs.
    "observed-data--7d258c31-9a26-4543-aecb-2abc5ed366be": (
        "'object_refs[0]' must reference an SCO or SRO"
    ),
    "malware--faa5b705-cf44-4e50-8472-29e5fec43c3c": "'is_family' is required",  # §4.11
    "malware--c6006dd5-31ca-45c2-8ae0-4e428e712f88": "'is_family' is required",  # §4.11
    "malware-analysis--8fd6fcd4-81a9-4937-92b8-4e1cbe68f263": (
        "at least one of 'result' or 'analysis_sco_refs'"  # §4.12
    ),
    "marking-definition--613f2e26-407d-48c7-9eca-b8e91df99dc9": (
        # The predefined TLP:WHITE id redefined as {"TLP": "TLP:WHITE"} (§7.2.1.4).
        "predefined TLP:WHITE"
    ),
    "location--c3794ffd-0e71-4670-aa4d-978b4cbdc72c": "at least one of 'region'",  # §4.10
    "location--5acd8b26-51c2-4608-86ed-e9edd43ad971": "at least one of 'region'",
    "location--6bf1f67a-6a55-4e4d-b237-6cdda97baef2": "at least one of 'region'",
    "location--bc9f5d2c-7209-4b24-903e-587c7cf00ab1": "at least one of 'region'",
    "relationship--10f2228d-cc68-45e3-bce2-53b1841b01c2": (
        "'modified' must not be earlier than 'created'"  # §3.2
    ),
    "relationship--efc9bbb8-e606-4fb1-83ae-d74690fd0416": (
        "'spec_version' is missing"  # §3.2: no spec_version on an SRO means STIX 2.0
    ),
    # §5.1: source_ref/target_ref cannot point to an SRO.
    "relationship--c32d553c-e22f-40ce-93e6-eb62dd145f3b": "'target_ref' must reference an SDO",
    "relationship--8d2200a8-f9ef-4345-95d1-ba3ed49606f9": "'target_ref' must reference an SDO",
    "relationship--eedcea8f-a464-4977-955c-5113aa3c0896": "'target_ref' must reference an SDO",
    # §5.1: "stop_time MUST be later than the start_time"; these set them equal.
    **{
        f"relationship--{rest}": START_EQ_STOP
        for rest in (
            "10e8c71d-a1b4-4e35-bca8-2e4a3785ea04",
            "9315a197-fe15-4c96-b77c-edcaa5e22ecb",
            "261688c1-0468-4be4-be8f-f70e463ab6ed",
            "ba52fced-422a-4bee-816a-85aa21c9eaca",
            "e35b3fc1-47f3-4ccb-a8fe-65a0864edd02",
            "6d59077d-a2fb-4217-846f-c7cf038672fa",
            "55119cba-8fbe-450b-bb47-3af8db29c187",
            "e50087ed-906a-4d9f-b5c0-39c1d23ca0b2",
            "1fc9b5f8-3822-44c5-85d9-ee3476ca26de",
            "b703f822-f6f0-4d96-9c9b-3fc0bb61e69c",
            "2326c8b3-ef45-4978-98d0-0059728275c4",
            "3541149d-1af6-4688-993c-dc32c7ee3880",
            "3e10618c-a301-43db-87f3-91b9e397c30d",
            "d861deab-84b6-4dc9-bcce-594e3d1c904f",
            "307058e3-84f3-4e9c-8776-2e4fe4d6c6c7",
        )
    },
}


def _sample_objects() -> list[Any]:
    params = []
    for path in sorted((DATA / "v21").glob("*.json")):
        for obj in json.loads(path.read_text(encoding="utf-8"))["objects"]:
            params.append(pytest.param(obj, id=f"{path.stem[:24]}:{obj['id'][:40]}"))
    return params


SAMPLES = _sample_objects()


def test_the_samples_are_there() -> None:
    assert len(SAMPLES) == 161, "tests/data/stix/v21 is incomplete (see NOTICE.md)"


@pytest.mark.parametrize("obj", SAMPLES)
def test_real_world_sample_objects(obj: dict[str, Any]) -> None:
    expected = SAMPLE_VIOLATIONS.get(obj["id"])
    if expected is None:
        meta = validate_object(obj)
        assert (meta.id, meta.type, meta.spec_version) == (obj["id"], obj["type"], "2.1")
    else:
        with pytest.raises(InvalidStixObject) as caught:
            validate_object(obj)
        assert expected in caught.value.message
        assert caught.value.object_id == obj["id"]


def test_stix_20_objects_are_refused_with_a_pointer_to_conversion() -> None:
    bundle = json.loads((DATA / "v20" / "cti-doc_v20_using-marking-definitions.json").read_text())
    for obj in bundle["objects"]:
        with pytest.raises(InvalidStixObject, match="STIX 2.0 object.*stores STIX 2.1 only"):
            validate_object(obj)
    with pytest.raises(InvalidStixObject, match="'spec_version' is \"2.0\""):
        validate_object(variant("indicator", spec_version="2.0"))


# --- One invalid object per rule -------------------------------------------------------

NESTED: dict[str, Any] = {"x": {}}
for _ in range(3000):
    NESTED = {"x": NESTED}

INVALID: list[tuple[str, Any, str]] = [
    # What the object is, the object, a part the message must contain.
    ("not an object", ["indicator"], "must be a JSON object"),
    ("no type", variant("indicator", type=DROP), "'type' is required"),
    ("type with capitals", variant("indicator", type="Indicator"), "'type' must be 3-250"),
    ("type with --", variant("indicator", type="x--acme"), "'type' must be"),
    ("type too short", variant("indicator", type="ab"), "'type' must be"),
    ("bundle", {"type": "bundle", "id": uid("bundle"), "objects": []}, "bundle is not"),
    ("no id", variant("indicator", id=DROP), "'id' must be 'indicator--<"),
    ("foreign id", variant("indicator", id=uid("malware")), "'id' must be 'indicator--<"),
    ("id not a UUID", variant("indicator", id="indicator--xyz"), "got \"indicator--xyz\""),
    ("UUID version 0", variant("indicator", id=uid("indicator").replace("-4000", "-0000")), "'id'"),
    ("UUID variant c", variant("indicator", id=uid("indicator").replace("-8000", "-c000")), "'id'"),
    ("SDO without spec_version", variant("indicator", spec_version=DROP), "STIX 2.0"),
    ("spec_version 2.2", variant("indicator", spec_version="2.2"), "'spec_version' must be"),
    ("SCO spec_version 2.0", variant("ipv4-addr", spec_version="2.0"), "'spec_version'"),
    ("no created", variant("indicator", created=DROP), "'created' is required"),
    ("created in seconds", variant("indicator", created="2024-05-01T10:00:00Z"), "millisecond"),
    ("created lower-case t", variant("indicator", created="2024-05-01t10:00:00.000Z"), "'created"),
    ("created 30 Feb", variant("indicator", created="2024-02-30T10:00:00.000Z"), "'created'"),
    ("created with offset", variant("indicator", created="2024-05-01T10:00:00.000+00:00"), "'cre"),
    ("modified < created", variant("indicator", modified="2024-04-01T10:00:00.000Z"),
     "'modified' must not be earlier than 'created'"),
    ("revoked not bool", variant("indicator", revoked="yes"), "'revoked' must be true or false"),
    ("labels empty", variant("indicator", labels=[]), "'labels' must be a non-empty list"),
    ("labels not strings", variant("indicator", labels=[1]), "'labels[0]' must be a string"),
    ("confidence 101", variant("indicator", confidence=101), "'confidence' must be an integer"),
    ("confidence bool", variant("indicator", confidence=True), "'confidence'"),
    ("lang not a tag", variant("indicator", lang="en US"), "'lang'"),
    ("external_references no source_name",
     variant("indicator", external_references=[{"url": "https://e.com"}]),
     "'external_references[0].source_name' is required"),
    ("external_references only source_name",
     variant("indicator", external_references=[{"source_name": "x"}]),
     "'external_references[0]' must have at least one of 'description'"),
    ("external_references bad hash",
     variant("indicator", external_references=[
         {"source_name": "x", "url": "https://e.com", "hashes": {"SHA-256": "abc"}}]),
     "'external_references[0].hashes.SHA-256' must be 64 hex digits"),
    ("marking ref to identity", variant("indicator", object_marking_refs=[IDENTITY]),
     "'object_marking_refs[0]' must reference a marking-definition"),
    ("object_marking_refs empty", variant("indicator", object_marking_refs=[]),
     "'object_marking_refs' must be a non-empty list"),
    ("granular marking no selectors",
     variant("indicator", granular_markings=[{"marking_ref": RED}]),
     "'granular_markings[0].selectors' is required"),
    ("granular marking lang and ref",
     variant("indicator", granular_markings=[
         {"marking_ref": RED, "lang": "de", "selectors": ["description"]}]),
     "'granular_markings[0].marking_ref' must not be present together with 'lang'"),
    ("granular marking neither", variant("indicator", granular_markings=[{"selectors": ["name"]}]),
     "'granular_markings[0]' must have at least one of 'lang' or 'marking_ref'"),
    ("selector to nothing",
     variant("indicator", granular_markings=[{"marking_ref": RED, "selectors": ["name"]}]),
     "'granular_markings[0].selectors' selector \"name\" does not point"),
    ("created_by_ref to malware", variant("indicator", created_by_ref=uid("malware")),
     "'created_by_ref' must reference an identity; got \"malware--"),
    ("extensions bad key", variant("indicator", extensions={"bad key": {"a": 1}}),
     "'extensions.bad key' must be an extension-definition id or"),
    ("extension not an object", variant("indicator", extensions={EXT_DEF: "on"}),
     f"'extensions.{EXT_DEF}' must be a non-empty JSON object"),
    ("extension_type unknown",
     variant("indicator", extensions={EXT_DEF: {"extension_type": "new-thing"}}),
     f"'extensions.{EXT_DEF}.extension_type' must be one of"),
    ("extension-definition key not an id",
     variant("indicator", extensions={"extension-definition--1234": {"a": 1}}),
     "'extensions.extension-definition--1234' must be an identifier"),
    ("custom property with capitals", variant("indicator", X_Acme=1),
     "'X_Acme' is not a valid property name"),
    ("custom property too short", variant("indicator", xy=1), "'xy' is not a valid property"),
    ("custom _ref not an id", variant("indicator", x_acme_ref="nope"), "'x_acme_ref' must be"),
    ("custom _refs empty", variant("indicator", x_acme_refs=[]), "'x_acme_refs' must be"),
    ("nested custom _ref",
     variant("indicator", x_acme={"owners": [{"owner_ref": "nope"}]}),
     "'x_acme.owners[0].owner_ref' must be an identifier"),
    ("_ref inside an extension",
     variant("indicator", extensions={
         EXT_DEF: {"extension_type": "property-extension", "owner_ref": "nope"}}),
     f"'extensions.{EXT_DEF}.owner_ref' must be an identifier"),
    ("too deeply nested", variant("indicator", x_acme=NESTED), "nested too deeply"),
    ("indicator without pattern", variant("indicator", pattern=DROP),
     "indicator 'pattern' is required"),
    ("indicator bad STIX pattern", variant("indicator", pattern="[ipv4-addr:value = ]"),
     "'pattern' is not valid STIX patterning"),
    ("indicator empty sigma pattern", variant("indicator", pattern="", pattern_type="sigma"),
     "'pattern' must be a non-empty string"),
    ("indicator without pattern_type", variant("indicator", pattern_type=DROP),
     "'pattern_type' is required"),
    ("indicator without valid_from", variant("indicator", valid_from=DROP),
     "'valid_from' is required"),
    ("indicator valid_until = valid_from", variant("indicator", valid_until=T0),
     "'valid_until' must be later than 'valid_from'"),
    ("malware without is_family", variant("malware", is_family=DROP), "'is_family' is required"),
    ("malware family without name", variant("malware", name=DROP),
     "'name' is required when 'is_family' is true"),
    ("malware sample_refs to ipv4", variant("malware", sample_refs=[uid("ipv4-addr")]),
     "'sample_refs[0]' must reference an artifact or file"),
    ("malware-analysis without result", variant("malware-analysis", result=DROP),
     "at least one of 'result' or 'analysis_sco_refs'"),
    ("malware-analysis sample_ref", variant("malware-analysis", sample_ref=uid("url")),
     "'sample_ref' must reference an artifact, file or network-traffic"),
    ("location with nothing", variant("location", country=DROP),
     "must have at least one of 'region' or 'country' or 'latitude'+'longitude'"),
    ("latitude alone", variant("location", latitude=10.5),
     "'longitude' is required when 'latitude' is present"),
    ("latitude 91", variant("location", latitude=91, longitude=0), "'latitude' must be a number"),
    ("precision alone", variant("location", precision=5.0),
     "'latitude' is required when 'precision' is present"),
    ("note without content", variant("note", content=DROP), "'content' is required"),
    ("note without object_refs", variant("note", object_refs=DROP), "'object_refs' is required"),
    ("number_observed 0", variant("observed-data", number_observed=0), "'number_observed'"),
    ("objects and object_refs",
     variant("observed-data", objects={"0": {"type": "file", "name": "a"}}),
     "'object_refs' must not be present together with 'objects'"),
    ("neither objects nor object_refs", variant("observed-data", object_refs=DROP),
     "at least one of 'objects' or 'object_refs'"),
    ("observed-data refs an SDO", variant("observed-data", object_refs=[uid("malware")]),
     "'object_refs[0]' must reference an SCO or SRO"),
    ("observed-data without SCO", variant("observed-data", object_refs=[uid("relationship")]),
     "'object_refs' must contain at least one SCO"),
    ("last_observed < first_observed", variant("observed-data", last_observed=T0, first_observed=T1),
     "'last_observed' must not be earlier than 'first_observed'"),
    ("opinion not in the enum", variant("opinion", opinion="maybe"), "'opinion' must be one of"),
    ("report without published", variant("report", published=DROP), "'published' is required"),
    ("report without object_refs", variant("report", object_refs=DROP), "'object_refs' is req"),
    ("grouping without context", variant("grouping", context=DROP), "'context' is required"),
    ("identity without name", variant("identity", name=DROP), "identity 'name' is required"),
    ("campaign last_seen < first_seen", variant("campaign", first_seen=T1, last_seen=T0),
     "'last_seen' must not be earlier than 'first_seen'"),
    ("relationship_type missing", variant("relationship", relationship_type=DROP),
     "'relationship_type' is required"),
    ("relationship_type capitals", variant("relationship", relationship_type="Uses"),
     "'relationship_type' must be lower-case"),
    ("relationship from a marking", variant("relationship", source_ref=AMBER),
     "'source_ref' must reference an SDO or SCO"),
    ("relationship to a sighting", variant("relationship", target_ref=uid("sighting")),
     "'target_ref' must reference an SDO or SCO"),
    ("relationship stop = start", variant("relationship", start_time=T0, stop_time=T0),
     "'stop_time' must be later than 'start_time'"),
    ("sighting of an SCO", variant("sighting", sighting_of_ref=uid("ipv4-addr")),
     "'sighting_of_ref' must reference an SDO"),
    ("sighting of an SRO", variant("sighting", sighting_of_ref=uid("relationship")),
     "'sighting_of_ref' must reference an SDO"),
    ("observed_data_refs to indicator", variant("sighting", observed_data_refs=[uid("indicator")]),
     "'observed_data_refs[0]' must reference an observed-data"),
    ("where_sighted_refs to malware", variant("sighting", where_sighted_refs=[uid("malware")]),
     "'where_sighted_refs[0]' must reference an identity or location"),
    ("count negative", variant("sighting", count=-1), "'count' must be an integer from 0"),
    ("count too big", variant("sighting", count=1_000_000_000), "'count'"),
    ("sighting last_seen < first_seen", variant("sighting", first_seen=T1, last_seen=T0),
     "'last_seen' must not be earlier than 'first_seen'"),
    ("ipv4-addr without value", variant("ipv4-addr", value=DROP), "'value' is required"),
    ("ipv4 resolves to a domain", variant("ipv4-addr", resolves_to_refs=[uid("domain-name")]),
     "'resolves_to_refs[0]' must reference a mac-addr"),
    ("domain resolves to a url", variant("domain-name", resolves_to_refs=[uid("url")]),
     "'resolves_to_refs[0]' must reference a domain-name, ipv4-addr or ipv6-addr"),
    ("network-traffic without ends", variant("network-traffic", src_ref=DROP),
     "at least one of 'src_ref' or 'dst_ref'"),
    ("network-traffic src is a url", variant("network-traffic", src_ref=uid("url")),
     "'src_ref' must reference a domain-name, ipv4-addr, ipv6-addr or mac-addr"),
    ("port 70000", variant("network-traffic", dst_port=70000), "'dst_port' must be an integer"),
    ("no protocols", variant("network-traffic", protocols=DROP), "'protocols' is required"),
    ("active traffic with an end", variant("network-traffic", is_active=True, end=T0),
     "'end' must not be present when 'is_active' is true"),
    ("file without hashes or name", variant("file", hashes=DROP, name=DROP),
     "at least one of 'hashes' or 'name'"),
    ("MD5 of 31 digits", variant("file", hashes={"MD5": "1717b7fff97d37a1e1a0029d83492de"}),
     "'hashes.MD5' must be 32 hex digits"),
    ("SHA-1 not hex", variant("file", hashes={"SHA-1": "z" * 40}), "'hashes.SHA-1'"),
    ("hash key too short", variant("file", hashes={"md": "00"}), "'hashes' key must be 3-250"),
    ("hash value not a string", variant("file", hashes={"TLSH": 5}), "'hashes.TLSH'"),
    ("size negative", variant("file", size=-1), "'size' must be an integer >= 0"),
    ("parent directory is a file", variant("file", parent_directory_ref=uid("file", 2)),
     "'parent_directory_ref' must reference a directory"),
    ("archive-ext without contains_refs", variant("file", extensions={"archive-ext": {"x": 1}}),
     "'extensions.archive-ext.contains_refs' is required"),
    ("artifact payload and url",
     variant("artifact", url="https://e.com/a", hashes={"MD5": "0" * 32}),
     "'url' must not be present together with 'payload_bin'"),
    ("artifact url without hashes", variant("artifact", payload_bin=DROP, url="https://e.com"),
     "'hashes' is required when 'url' is present"),
    ("artifact bad base64", variant("artifact", payload_bin="a!=="), "'payload_bin' must be"),
    ("artifact key without algorithm", variant("artifact", decryption_key="k"),
     "'encryption_algorithm' is required when 'decryption_key' is present"),
    ("email without is_multipart", variant("email-message", is_multipart=DROP),
     "'is_multipart' is required"),
    ("multipart email with body", variant("email-message", is_multipart=True),
     "'body' must not be present when 'is_multipart' is true"),
    ("email from a url", variant("email-message", from_ref=uid("url")),
     "'from_ref' must reference an email-addr"),
    ("MAC in capitals", variant("mac-addr", value="00:0A:95:9D:68:16"), "'value' must be"),
    ("process with nothing", variant("process", pid=DROP), "at least one property of its own"),
    ("certificate with nothing", variant("x509-certificate", serial_number=DROP),
     "at least one property of its own"),
    ("registry value data_type",
     variant("windows-registry-key", values=[{"name": "a", "data_type": "REG_FOO"}]),
     "'values[0].data_type' must be one of"),
    ("user-account flag not bool", variant("user-account", is_privileged="yes"),
     "'is_privileged' must be true or false"),
    ("marking without definition", variant("marking-definition", definition=DROP),
     "'definition' is required unless 'extensions' is present"),
    ("a new TLP marking", variant("marking-definition", definition_type="tlp",
                                  definition={"tlp": "green"}),
     "'definition_type' must not be \"tlp\""),
    ("predefined TLP id, other level",
     variant("marking-definition", id=AMBER, definition_type="tlp", definition={"tlp": "red"}),
     "'definition' must be {\"tlp\": \"amber\"}"),
    ("statement without statement",
     variant("marking-definition", definition={"text": "Copyright"}), "'definition'"),
    ("marking marks itself",
     variant("marking-definition", object_marking_refs=[uid("marking-definition")]),
     "'object_marking_refs' must not mark the marking definition with itself"),
    ("marking created in seconds", variant("marking-definition", created="2024-05-01T10:00:00Z"),
     "'created' must be precise to at least the millisecond"),
    ("extension-definition anonymous", variant("extension-definition", created_by_ref=DROP),
     "'created_by_ref' is required"),
    ("extension_types unknown", variant("extension-definition", extension_types=["new-smo"]),
     "'extension_types[0]' must be one of"),
    ("extension_properties for a property extension",
     variant("extension-definition", extension_properties=["x_acme"]),
     "'extension_properties' may only be present when"),
    ("language-content without contents", variant("language-content", contents=DROP),
     "'contents' is required"),
    ("translations not an object", variant("language-content", contents={"de": "Kampagne"}),
     "'contents.de' must be a non-empty JSON object"),
    ("custom SDO-like without modified",
     {"type": "x-acme-widget", "id": uid("x-acme-widget"), "spec_version": "2.1", "created": T0},
     "x-acme-widget 'modified' is required"),
    ("custom object with a bad common property",
     {"type": "x-acme-widget", "id": uid("x-acme-widget"), "object_marking_refs": [IDENTITY]},
     "'object_marking_refs[0]' must reference a marking-definition"),
    ("predefined TLP definition without its name (STIX 2.0's form)",
     {"type": "marking-definition", "spec_version": "2.1", "id": AMBER, "created": "2017-01-20T00:00:00.000Z",
      "definition_type": "tlp", "definition": {"tlp": "amber"}},
     "'name' must be \"TLP:AMBER\": this id is the predefined TLP:AMBER marking definition"),
    ("predefined TLP definition, other created",
     {"type": "marking-definition", "spec_version": "2.1", "id": AMBER, "created": T0, "name": "TLP:AMBER",
      "definition_type": "tlp", "definition": {"tlp": "amber"}},
     "'created' must be \"2017-01-20T00:00:00.000Z\""),
    ("pattern testing an upper-case object type",
     variant("indicator", pattern="[IPv4-Addr:value = '198.51.100.1']"),
     'names the object type "IPv4-Addr", which is not a STIX type name'),
    ("e-mail MIME part with neither body nor body_raw_ref",
     variant("email-message", is_multipart=True, body_multipart=[{"content_type": "text/plain"}]),
     "body_multipart[0]"),
]


@pytest.mark.parametrize(
    ("obj", "expected"), [pytest.param(obj, part, id=what) for what, obj, part in INVALID]
)
def test_invalid_objects_are_refused_naming_the_property(obj: Any, expected: str) -> None:
    with pytest.raises(InvalidStixObject) as caught:
        validate_object(obj)
    assert expected in caught.value.message
    if isinstance(obj, dict) and isinstance(obj.get("id"), str):
        assert caught.value.object_id == obj["id"]


def test_every_base_object_is_valid() -> None:
    for obj in BASE.values():
        validate_object(obj)


# --- Valid edge cases ----------------------------------------------------------------

VALID: list[tuple[str, dict[str, Any]]] = [
    ("custom properties, old and new style",
     variant("indicator", x_acme_score=5, acme_notes={"seen_by_ref": IDENTITY, "list": [1, 2]})),
    ("custom SCO-like type, no spec_version",
     {"type": "x-acme-widget", "id": uid("x-acme-widget"), "colour": "red"}),
    ("custom SDO-like type",
     {"type": "acme-campaign", "id": uid("acme-campaign"), **SDO, "name": "x"}),
    ("upper-case UUID hex (RFC 4122 §3)",
     variant("malware", id="malware--0000000A-0000-4000-B000-00000000000F")),
    ("SCO without spec_version", variant("ipv4-addr", spec_version=DROP)),
    ("TLP 2.0 marking through an extension",
     {"type": "marking-definition", "spec_version": "2.1", "created": "2022-10-01T00:00:00.000Z",
      "id": "marking-definition--e828b379-4e03-4974-9ac4-e53a884c97c1", "name": "TLP:RED",
      "extensions": {"extension-definition--60a3c5c5-0d10-413e-aab3-9e08dde9e88d": {
          "extension_type": "property-extension", "tlp_2_0": "red"}}}),
    ("predefined TLP:RED",
     {"type": "marking-definition", "spec_version": "2.1", "id": RED,
      "created": "2017-01-20T00:00:00.000Z", "definition_type": "tlp", "name": "TLP:RED",
      "definition": {"tlp": "red"}}),
    ("TOPLEVEL extension definition",
     variant("extension-definition", extension_types=["toplevel-property-extension"],
             extension_properties=["acme_score"])),
    ("sigma indicator", variant("indicator", pattern="title: x", pattern_type="sigma")),
    ("leap second and 9 fraction digits",
     variant("indicator", valid_from="2016-12-31T23:59:60Z", valid_until="2017-01-01T00:00:00.123456789Z")),
    ("microsecond created", variant("indicator", created="2024-05-01T10:00:00.000001Z",
                                    modified="2024-05-01T10:00:00.000001Z")),
    ("granular markings, list selectors",
     variant("indicator", granular_markings=[
         {"marking_ref": RED, "selectors": ["description", "external_references.[0].url"]},
         {"lang": "de", "selectors": ["description"]}])),
    ("deprecated observed-data objects",
     variant("observed-data", object_refs=DROP, objects={"0": {"type": "file", "name": "a"}})),
    ("file with predefined extensions",
     variant("file", extensions={
         "archive-ext": {"contains_refs": [uid("file", 2), uid("directory")]},
         "ntfs-ext": {"alternate_data_streams": [{"name": "x", "size": 1}]},
         "windows-pebinary-ext": {"pe_type": "exe", "machine_hex": "014c"}})),
    ("network traffic extensions",
     variant("network-traffic", extensions={
         "tcp-ext": {"src_flags_hex": "02"},
         "http-request-ext": {"request_method": "get", "request_value": "/",
                              "request_header": {"User-Agent": "x"}}})),
    ("relationship of custom objects",
     variant("relationship", relationship_type="delivered-by", target_ref=uid("x-acme-widget"))),
    ("sighting of a custom object", variant("sighting", sighting_of_ref=uid("x-acme-thing"),
                                            where_sighted_refs=[uid("location")])),
    ("multipart email",
     variant("email-message", is_multipart=True, body=DROP, body_multipart=[
         {"body": "hi", "content_type": "text/plain"}, {"body_raw_ref": uid("artifact")}])),
    ("location by coordinates", variant("location", country=DROP, latitude=48.8,
                                        longitude=2.3, precision=10)),
    ("observed-data over an SCO and an SRO",
     variant("observed-data", object_refs=[uid("relationship"), uid("file")])),
]


@pytest.mark.parametrize("obj", [pytest.param(obj, id=what) for what, obj in VALID])
def test_valid_edge_cases_are_accepted(obj: dict[str, Any]) -> None:
    assert validate_object(obj).id == obj["id"]


# --- StixMeta ------------------------------------------------------------------------


def test_meta_of_an_sdo_collects_every_marking() -> None:
    obj = variant(
        "indicator",
        modified="2024-05-03T10:00:00.500Z",
        granular_markings=[{"marking_ref": RED, "selectors": ["description"]}],
    )
    assert validate_object(obj) == StixMeta(
        id=obj["id"],
        type="indicator",
        spec_version="2.1",
        created_us=parse_timestamp(T0),
        modified_us=parse_timestamp("2024-05-03T10:00:00.500Z"),
        marking_refs=frozenset({AMBER, RED}),
        created_by_ref=IDENTITY,
    )


def test_meta_of_an_sco_and_of_a_marking_definition() -> None:
    meta = validate_object(variant("ipv4-addr", spec_version=DROP, object_marking_refs=[AMBER]))
    assert (meta.spec_version, meta.created_us, meta.modified_us) == ("2.1", None, None)
    assert meta.marking_refs == {AMBER} and meta.created_by_ref is None
    marking = validate_object(BASE["marking-definition"])
    assert (marking.created_us, marking.modified_us) == (parse_timestamp(T0), None)
    assert validate_object(BASE["malware"]).marking_refs == frozenset()


# --- Robustness: any JSON in any property gives StixMeta or InvalidStixObject ----------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
NAMES = sorted({name for obj in BASE.values() for name in obj} | {
    "extensions", "granular_markings", "hashes", "x_acme_ref", "x_acme_refs", "objects",
    "external_references", "kill_chain_phases", "definition", "start_time", "stop_time",
})


@given(st.sampled_from(sorted(BASE)), st.sampled_from(NAMES), JSON)
def test_any_json_value_is_valid_or_refused_cleanly(kind: str, name: str, value: Any) -> None:
    obj = variant(kind, **{name: value})
    try:
        assert isinstance(validate_object(obj), StixMeta)
    except InvalidStixObject as exc:
        assert exc.message


def test_custom_content_nests_up_to_the_limit_and_no_deeper() -> None:
    """Custom content may nest objects and arrays MAX_DEPTH levels deep, which the
    stored JSON (written by orjson, which stops at 255) can hold; one level more is
    refused with a message that says so, compiled or not (no reliance on Python's
    recursion limit)."""
    import orjson

    from commonwatch.domain.stix_values import MAX_DEPTH

    def nested(levels: int) -> Any:
        value: Any = "leaf"
        for n in range(levels):
            value = {"x": value} if n % 2 else [value]
        return value

    deepest = variant("indicator", x_acme=nested(MAX_DEPTH))
    validate_object(deepest)
    assert orjson.loads(orjson.dumps(deepest)) == deepest
    with pytest.raises(InvalidStixObject, match=f"nested too deeply.*{MAX_DEPTH} levels"):
        validate_object(variant("indicator", x_acme=nested(MAX_DEPTH + 1)))
