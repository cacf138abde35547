"""The STIX 2.1 property tables, transcribed as data for :mod:`commonwatch.domain.stix`.

Each object type maps to a :class:`TypeSpec`: its category, the kind of every property
the specification defines for it (common properties included), the required ones and
the cross-property MUST rules. Nothing here executes a check; ``stix.py`` compiles
these tables once, at import, into closures, so adding a property is a one-line edit.

Section numbers refer to STIX Version 2.1 (OASIS Standard, 10 June 2021): SDOs §4,
SROs §5, SCOs §6, meta objects §7, common properties §3.2, data types §2.

A *kind* is a small tuple, first element the tag:

* ``("str",)``, ``("text",)`` (non-empty string), ``("bool",)``, ``("ts",)``,
  ``("ts_ms",)`` (timestamp with at least millisecond precision, §3.2), ``("lang",)``,
  ``("hex",)``, ``("binary",)``, ``("mac",)``, ``("reltype",)``;
* ``("int", lo, hi)``, ``("num", lo, hi)`` (bounds inclusive, ``None`` = open);
* ``("enum", values)`` (a closed enumeration; open vocabularies are plain strings);
* ``("list", kind)`` (a list; §2.12 prohibits empty lists);
* ``("ref", allowed)`` (identifier whose type is in ``allowed``; upper-case tokens
  name categories, see :data:`ANY` and friends);
* ``("obj", props, required, constraints)`` (an embedded type such as
  external-reference); ``("dict",)`` (dictionary, §2.3); ``("hashes",)`` (§2.7);
  ``("extensions",)`` (§7.3); ``("observed_objects",)`` (deprecated observed-data
  ``objects``, kept opaque because its references are 2.0-style local keys).

A *constraint* is a tuple as well: ``("order", earlier, later, strict)``,
``("any_of", group, ...)``, ``("not_both", a, b)``, ``("requires", a, needed)``,
``("when", prop, value, "forbids"|"requires", other)``, ``("specific",)`` (at least
one type-specific property) and ``("hook", name)`` for the few rules that need code
(see ``stix.py``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

Kind = tuple[Any, ...]
Constraint = tuple[Any, ...]

# Reference categories (upper case: never a valid type name, so never ambiguous).
ANY = "ANY"
SDO = "SDO"  # any type not known to be an SCO, SRO or meta object (custom types allowed)
SCO = "SCO"  # any type not known to be an SDO, SRO or meta object
NODE = "NODE"  # SDO or SCO: what a relationship may join (§5.1)
SCO_OR_SRO = "SCO_OR_SRO"  # what observed-data may point to (§4.14)

STR: Kind = ("str",)
TEXT: Kind = ("text",)
BOOL: Kind = ("bool",)
TS: Kind = ("ts",)
TS_MS: Kind = ("ts_ms",)
LANG: Kind = ("lang",)
HEX: Kind = ("hex",)
DICT: Kind = ("dict",)
HASHES: Kind = ("hashes",)
STRS: Kind = ("list", STR)
NON_NEGATIVE: Kind = ("int", 0, None)
INT: Kind = ("int", None, None)
PORT: Kind = ("int", 0, 65535)


def ref(*types: str) -> Kind:
    """An identifier property that must point at one of ``types`` (or a category)."""
    return ("ref", frozenset(types))


def refs(*types: str) -> Kind:
    """A non-empty list of identifiers, each pointing at one of ``types``."""
    return ("list", ref(*types))


def enum(*values: str) -> Kind:
    """A closed enumeration (STIX ``enum``); open vocabularies (``-ov``) are ``STR``."""
    return ("enum", frozenset(values))


def obj(
    props: Mapping[str, Kind], required: tuple[str, ...] = (), *constraints: Constraint
) -> Kind:
    """An embedded type (STIX 2.1 §2: external-reference, kill-chain-phase...)."""
    return ("obj", dict(props), required, constraints)


@dataclass(frozen=True, slots=True)
class TypeSpec:
    """Everything the validator needs to know about one object type."""

    category: str  # "sdo", "sro", "sco" or "smo" (meta object, §7)
    props: Mapping[str, Kind]
    required: tuple[str, ...] = ()
    constraints: tuple[Constraint, ...] = ()


# --- Embedded types (STIX 2.1 §2.5, §2.11, §7.2.3) ----------------------------------

EXTERNAL_REFERENCE = obj(
    {"source_name": STR, "description": STR, "url": STR, "hashes": HASHES, "external_id": STR},
    ("source_name",),
    ("any_of", ("description",), ("url",), ("external_id",)),
)
KILL_CHAIN_PHASE = obj(
    {"kill_chain_name": STR, "phase_name": STR}, ("kill_chain_name", "phase_name")
)
GRANULAR_MARKING = obj(
    {"lang": LANG, "marking_ref": ref("marking-definition"), "selectors": STRS},
    ("selectors",),
    ("any_of", ("lang",), ("marking_ref",)),
    ("not_both", "lang", "marking_ref"),
)
KILL_CHAIN_PHASES: Kind = ("list", KILL_CHAIN_PHASE)

# --- Common properties (STIX 2.1 §3.2 and its applicability table) -----------------

_MARKINGS: dict[str, Kind] = {
    "object_marking_refs": refs("marking-definition"),
    "granular_markings": ("list", GRANULAR_MARKING),
    "extensions": ("extensions",),
}
_SKIP: Kind = ("skip",)  # type, id, spec_version: checked before the property loop
_BASE: dict[str, Kind] = {"type": _SKIP, "id": _SKIP, "spec_version": _SKIP, **_MARKINGS}
_VERSIONED: dict[str, Kind] = {
    **_BASE, "created_by_ref": ref("identity"), "created": TS_MS, "modified": TS_MS,
    "revoked": BOOL, "labels": STRS, "external_references": ("list", EXTERNAL_REFERENCE),
}
SDO_COMMON: dict[str, Kind] = {**_VERSIONED, "confidence": ("int", 0, 100), "lang": LANG}
SCO_COMMON: dict[str, Kind] = {**_BASE, "defanged": BOOL}
SDO_REQUIRED = ("created", "modified")
SDO_CONSTRAINTS: tuple[Constraint, ...] = (("order", "created", "modified", False),)


def sdo(
    props: Mapping[str, Kind],
    required: tuple[str, ...] = (),
    *c: Constraint,
    category: str = "sdo",
) -> TypeSpec:
    """An SDO (STIX 2.1 §4) or, with ``category="sro"``, an SRO (§5): they share the
    common properties, ``created``/``modified`` required and ordered."""
    return TypeSpec(
        category, {**SDO_COMMON, **props}, SDO_REQUIRED + required, SDO_CONSTRAINTS + c
    )


def sco(props: Mapping[str, Kind], required: tuple[str, ...] = (), *c: Constraint) -> TypeSpec:
    """An SCO: common SCO properties plus ``props`` (STIX 2.1 §6)."""
    return TypeSpec("sco", {**SCO_COMMON, **props}, required, c)


def seen(a: str = "first_seen", b: str = "last_seen") -> Constraint:
    """``b`` MUST be greater than or equal to ``a`` when both are present."""
    return ("order", a, b, False)


NAMED = {"name": STR, "description": STR}
ALIASED = {**NAMED, "aliases": STRS}
SEEN = {"first_seen": TS, "last_seen": TS}

# --- SDOs (STIX 2.1 §4) --------------------------------------------------------------

KCP = KILL_CHAIN_PHASES
SDOS: dict[str, TypeSpec] = {
    "attack-pattern": sdo({**ALIASED, "kill_chain_phases": KCP}, ("name",)),
    "campaign": sdo({**ALIASED, **SEEN, "objective": STR}, ("name",), seen()),
    "course-of-action": sdo(NAMED, ("name",)),
    "grouping": sdo(
        {**NAMED, "context": STR, "object_refs": refs(ANY)}, ("context", "object_refs")
    ),
    "identity": sdo(
        {**NAMED, "roles": STRS, "identity_class": STR, "sectors": STRS,
         "contact_information": STR},
        ("name",),
    ),
    "incident": sdo({**NAMED, "kill_chain_phases": KCP}, ("name",)),
    "indicator": sdo(
        {**NAMED, "indicator_types": STRS, "pattern": TEXT, "pattern_type": TEXT,
         "pattern_version": STR, "valid_from": TS, "valid_until": TS, "kill_chain_phases": KCP},
        ("pattern", "pattern_type", "valid_from"),
        ("order", "valid_from", "valid_until", True),
        ("hook", "pattern"),
    ),
    "infrastructure": sdo(
        {**ALIASED, **SEEN, "infrastructure_types": STRS, "kill_chain_phases": KCP},
        ("name",),
        seen(),
    ),
    "intrusion-set": sdo(
        {**ALIASED, **SEEN, "goals": STRS, "resource_level": STR, "primary_motivation": STR,
         "secondary_motivations": STRS},
        ("name",),
        seen(),
    ),
    "location": sdo(
        {**NAMED, "latitude": ("num", -90, 90), "longitude": ("num", -180, 180),
         "precision": ("num", 0, None), "region": STR, "country": STR,
         "administrative_area": STR, "city": STR, "street_address": STR, "postal_code": STR},
        (),
        ("any_of", ("region",), ("country",), ("latitude", "longitude")),
        ("requires", "latitude", ("longitude",)),
        ("requires", "longitude", ("latitude",)),
        ("requires", "precision", ("latitude", "longitude")),
    ),
    "malware": sdo(
        {**ALIASED, **SEEN, "malware_types": STRS, "is_family": BOOL, "kill_chain_phases": KCP,
         "operating_system_refs": refs("software"), "architecture_execution_envs": STRS,
         "implementation_languages": STRS, "capabilities": STRS,
         "sample_refs": refs("file", "artifact")},
        ("is_family",),
        seen(),
        ("when", "is_family", True, "requires", "name"),
    ),
    "malware-analysis": sdo(
        {"product": STR, "version": STR, "host_vm_ref": ref("software"),
         "operating_system_ref": ref("software"), "installed_software_refs": refs("software"),
         "configuration_version": STR, "modules": STRS, "analysis_engine_version": STR,
         "analysis_definition_version": STR, "submitted": TS, "analysis_started": TS,
         "analysis_ended": TS, "result_name": STR, "result": STR,
         "analysis_sco_refs": refs(SCO), "sample_ref": ref("file", "network-traffic", "artifact")},
        ("product",),
        ("any_of", ("result",), ("analysis_sco_refs",)),
    ),
    "note": sdo(
        {"abstract": STR, "content": STR, "authors": STRS, "object_refs": refs(ANY)},
        ("content", "object_refs"),
    ),
    "observed-data": sdo(
        {"first_observed": TS, "last_observed": TS, "number_observed": ("int", 1, 999_999_999),
         "objects": ("observed_objects",), "object_refs": refs(SCO_OR_SRO)},
        ("first_observed", "last_observed", "number_observed"),
        ("order", "first_observed", "last_observed", False),
        ("any_of", ("objects",), ("object_refs",)),
        ("not_both", "objects", "object_refs"),
        ("hook", "observed_sco"),
    ),
    "opinion": sdo(
        {"explanation": STR, "authors": STRS, "object_refs": refs(ANY),
         "opinion": enum("strongly-disagree", "disagree", "neutral", "agree", "strongly-agree")},
        ("opinion", "object_refs"),
    ),
    "report": sdo(
        {**NAMED, "report_types": STRS, "published": TS, "object_refs": refs(ANY)},
        ("name", "published", "object_refs"),
    ),
    "threat-actor": sdo(
        {**ALIASED, **SEEN, "threat_actor_types": STRS, "roles": STRS, "goals": STRS,
         "sophistication": STR, "resource_level": STR, "primary_motivation": STR,
         "secondary_motivations": STRS, "personal_motivations": STRS},
        ("name",),
        seen(),
    ),
    "tool": sdo(
        {**ALIASED, "tool_types": STRS, "kill_chain_phases": KCP, "tool_version": STR}, ("name",)
    ),
    "vulnerability": sdo(NAMED, ("name",)),
}

# --- SROs (STIX 2.1 §5) --------------------------------------------------------------

SROS: dict[str, TypeSpec] = {
    "relationship": sdo(
        {"relationship_type": ("reltype",), "description": STR, "source_ref": ref(NODE),
         "target_ref": ref(NODE), "start_time": TS, "stop_time": TS},
        ("relationship_type", "source_ref", "target_ref"),
        ("order", "start_time", "stop_time", True),
        category="sro",
    ),
    "sighting": sdo(
        {**SEEN, "description": STR, "count": ("int", 0, 999_999_999),
         "sighting_of_ref": ref(SDO), "observed_data_refs": refs("observed-data"),
         "where_sighted_refs": refs("identity", "location"), "summary": BOOL},
        ("sighting_of_ref",),
        seen(),
        category="sro",
    ),
}

# --- SCOs (STIX 2.1 §6) --------------------------------------------------------------

ADDRESS = ("ipv4-addr", "ipv6-addr", "mac-addr", "domain-name")
FILE_TIMES = {"ctime": TS, "mtime": TS, "atime": TS}
IP_ADDR = {"value": STR, "resolves_to_refs": refs("mac-addr"),
           "belongs_to_refs": refs("autonomous-system")}
MIME_PART = obj({"body": STR, "body_raw_ref": ref("artifact", "file"), "content_type": STR,
                 "content_disposition": STR}, (), ("any_of", ("body",), ("body_raw_ref",)))
REGISTRY_VALUE = obj({"name": STR, "data": STR, "data_type": enum(
    "REG_NONE", "REG_SZ", "REG_EXPAND_SZ", "REG_BINARY", "REG_DWORD", "REG_DWORD_BIG_ENDIAN",
    "REG_DWORD_LITTLE_ENDIAN", "REG_LINK", "REG_MULTI_SZ", "REG_RESOURCE_LIST",
    "REG_FULL_RESOURCE_DESCRIPTION", "REG_RESOURCE_REQUIREMENTS_LIST", "REG_QWORD",
    "REG_INVALID_TYPE")})

SCOS: dict[str, TypeSpec] = {
    "artifact": sco(
        {"mime_type": STR, "payload_bin": ("binary",), "url": STR, "hashes": HASHES,
         "encryption_algorithm": enum("AES-256-GCM", "ChaCha20-Poly1305", "mime-type-indicated"),
         "decryption_key": STR},
        (),
        ("any_of", ("payload_bin",), ("url",)),
        ("not_both", "payload_bin", "url"),
        ("requires", "url", ("hashes",)),
        ("requires", "decryption_key", ("encryption_algorithm",)),
    ),
    "autonomous-system": sco({"number": INT, "name": STR, "rir": STR}, ("number",)),
    "directory": sco(
        {"path": STR, "path_enc": STR, **FILE_TIMES, "contains_refs": refs("file", "directory")},
        ("path",),
    ),
    "domain-name": sco(
        {"value": STR, "resolves_to_refs": refs("ipv4-addr", "ipv6-addr", "domain-name")},
        ("value",),
    ),
    "email-addr": sco(
        {"value": STR, "display_name": STR, "belongs_to_ref": ref("user-account")}, ("value",)
    ),
    "email-message": sco(
        {"is_multipart": BOOL, "date": TS, "content_type": STR, "from_ref": ref("email-addr"),
         "sender_ref": ref("email-addr"), "to_refs": refs("email-addr"),
         "cc_refs": refs("email-addr"), "bcc_refs": refs("email-addr"), "message_id": STR,
         "subject": STR, "received_lines": STRS, "additional_header_fields": DICT, "body": STR,
         "body_multipart": ("list", MIME_PART), "raw_email_ref": ref("artifact")},
        ("is_multipart",),
        ("when", "is_multipart", True, "forbids", "body"),
        ("when", "is_multipart", False, "forbids", "body_multipart"),
    ),
    "file": sco(
        {"hashes": HASHES, "size": NON_NEGATIVE, "name": STR, "name_enc": STR,
         "magic_number_hex": HEX, "mime_type": STR, **FILE_TIMES,
         "parent_directory_ref": ref("directory"), "contains_refs": refs(SCO),
         "content_ref": ref("artifact")},
        (),
        ("any_of", ("hashes",), ("name",)),
    ),
    "ipv4-addr": sco(IP_ADDR, ("value",)),
    "ipv6-addr": sco(IP_ADDR, ("value",)),
    "mac-addr": sco({"value": ("mac",)}, ("value",)),
    "mutex": sco({"name": STR}, ("name",)),
    "network-traffic": sco(
        {"start": TS, "end": TS, "is_active": BOOL, "src_ref": ref(*ADDRESS),
         "dst_ref": ref(*ADDRESS), "src_port": PORT, "dst_port": PORT, "protocols": STRS,
         "src_byte_count": NON_NEGATIVE, "dst_byte_count": NON_NEGATIVE,
         "src_packets": NON_NEGATIVE, "dst_packets": NON_NEGATIVE, "ipfix": DICT,
         "src_payload_ref": ref("artifact"), "dst_payload_ref": ref("artifact"),
         "encapsulates_refs": refs("network-traffic"),
         "encapsulated_by_ref": ref("network-traffic")},
        ("protocols",),
        ("any_of", ("src_ref",), ("dst_ref",)),
        ("when", "is_active", True, "forbids", "end"),
        ("order", "start", "end", False),
    ),
    "process": sco(
        {"is_hidden": BOOL, "pid": INT, "created_time": TS, "cwd": STR, "command_line": STR,
         "environment_variables": DICT, "opened_connection_refs": refs("network-traffic"),
         "creator_user_ref": ref("user-account"), "image_ref": ref("file"),
         "parent_ref": ref("process"), "child_refs": refs("process")},
        (),
        ("specific",),
    ),
    "software": sco(
        {"name": STR, "cpe": STR, "swid": STR, "languages": STRS, "vendor": STR, "version": STR},
        ("name",),
    ),
    "url": sco({"value": STR}, ("value",)),
    "user-account": sco(
        {"user_id": STR, "credential": STR, "account_login": STR, "account_type": STR,
         "display_name": STR, "is_service_account": BOOL, "is_privileged": BOOL,
         "can_escalate_privs": BOOL, "is_disabled": BOOL, "account_created": TS,
         "account_expires": TS, "credential_last_changed": TS, "account_first_login": TS,
         "account_last_login": TS}
    ),
    "windows-registry-key": sco(
        {"key": STR, "values": ("list", REGISTRY_VALUE), "modified_time": TS,
         "creator_user_ref": ref("user-account"), "number_of_subkeys": INT}
    ),
    "x509-certificate": sco(
        {"is_self_signed": BOOL, "hashes": HASHES, "version": STR, "serial_number": STR,
         "signature_algorithm": STR, "issuer": STR, "validity_not_before": TS,
         "validity_not_after": TS, "subject": STR, "subject_public_key_algorithm": STR,
         "subject_public_key_modulus": STR, "subject_public_key_exponent": INT,
         "x509_v3_extensions": DICT},
        (),
        ("specific",),
    ),
}

# --- Predefined SCO extensions (STIX 2.1 §6.x.2), keyed by their reserved names -------

PREDEFINED_EXTENSIONS: dict[str, Kind] = {
    "archive-ext": obj({"contains_refs": refs("file", "directory"), "comment": STR},
                       ("contains_refs",)),
    "ntfs-ext": obj({"sid": STR, "alternate_data_streams": (
        "list", obj({"name": STR, "hashes": HASHES, "size": NON_NEGATIVE}, ("name",)))}),
    "pdf-ext": obj({"version": STR, "is_optimized": BOOL, "document_info_dict": DICT,
                    "pdfid0": STR, "pdfid1": STR}),
    "raster-image-ext": obj({"image_height": INT, "image_width": INT, "bits_per_pixel": INT,
                             "exif_tags": DICT}),
    "windows-pebinary-ext": obj(
        {"pe_type": STR, "imphash": STR, "machine_hex": HEX, "number_of_sections": INT,
         "time_date_stamp": TS, "pointer_to_symbol_table_hex": HEX,
         "number_of_symbols": INT, "size_of_optional_header": INT,
         "characteristics_hex": HEX, "file_header_hashes": HASHES, "optional_header": DICT,
         "sections": ("list", DICT)},
        ("pe_type",),
    ),
    "http-request-ext": obj(
        {"request_method": STR, "request_value": STR, "request_version": STR,
         "request_header": DICT, "message_body_length": INT,
         "message_body_data_ref": ref("artifact")},
        ("request_method", "request_value"),
    ),
    "icmp-ext": obj({"icmp_type_hex": HEX, "icmp_code_hex": HEX},
                    ("icmp_type_hex", "icmp_code_hex")),
    "socket-ext": obj(
        {"address_family": enum("AF_UNSPEC", "AF_INET", "AF_IPX", "AF_APPLETALK", "AF_NETBIOS",
                                "AF_INET6", "AF_IRDA", "AF_BTH"),
         "is_blocking": BOOL, "is_listening": BOOL, "options": DICT,
         "socket_type": enum("SOCK_STREAM", "SOCK_DGRAM", "SOCK_RAW", "SOCK_RDM",
                             "SOCK_SEQPACKET"),
         "socket_descriptor": NON_NEGATIVE, "socket_handle": INT},
        ("address_family",),
    ),
    "tcp-ext": obj({"src_flags_hex": HEX, "dst_flags_hex": HEX}),
    "windows-process-ext": obj(
        {"aslr_enabled": BOOL, "dep_enabled": BOOL, "priority": STR, "owner_sid": STR,
         "window_title": STR, "startup_info": DICT,
         "integrity_level": enum("low", "medium", "high", "system")}
    ),
    "windows-service-ext": obj(
        {"service_name": STR, "descriptions": STRS, "display_name": STR, "group_name": STR,
         "start_type": enum("SERVICE_AUTO_START", "SERVICE_BOOT_START", "SERVICE_DEMAND_START",
                            "SERVICE_DISABLED", "SERVICE_SYSTEM_ALERT"),
         "service_dll_refs": refs("file"),
         "service_type": enum("SERVICE_KERNEL_DRIVER", "SERVICE_FILE_SYSTEM_DRIVER",
                              "SERVICE_WIN32_OWN_PROCESS", "SERVICE_WIN32_SHARE_PROCESS"),
         "service_status": enum("SERVICE_CONTINUE_PENDING", "SERVICE_PAUSE_PENDING",
                                "SERVICE_PAUSED", "SERVICE_RUNNING", "SERVICE_START_PENDING",
                                "SERVICE_STOP_PENDING", "SERVICE_STOPPED")}
    ),
    "unix-account-ext": obj({"gid": INT, "groups": STRS, "home_dir": STR, "shell": STR}),
}

EXTENSION_TYPES = frozenset(
    {"new-sdo", "new-sco", "new-sro", "property-extension", "toplevel-property-extension"}
)

# --- Meta objects (STIX 2.1 §7) ------------------------------------------------------

_LANGUAGE_CONTENT = {k: v for k, v in SDO_COMMON.items() if k != "lang"}
SMOS: dict[str, TypeSpec] = {
    "language-content": TypeSpec(
        "smo",
        {**_LANGUAGE_CONTENT, "object_ref": ref(ANY), "object_modified": TS, "contents": DICT},
        SDO_REQUIRED + ("object_ref", "contents"),
        SDO_CONSTRAINTS + (("hook", "contents"),),
    ),
    "marking-definition": TypeSpec(
        "smo",
        {**_BASE, "created_by_ref": ref("identity"), "created": TS_MS,
         "external_references": ("list", EXTERNAL_REFERENCE), "name": STR,
         "definition_type": STR, "definition": DICT},
        ("created",),
        (("hook", "marking_definition"),),
    ),
    "extension-definition": TypeSpec(
        "smo",
        {**_VERSIONED, "name": STR, "description": STR, "schema": STR, "version": STR,
         "extension_types": ("list", ("enum", EXTENSION_TYPES)), "extension_properties": STRS},
        SDO_REQUIRED + ("created_by_ref", "name", "schema", "version", "extension_types"),
        SDO_CONSTRAINTS + (("hook", "extension_properties"),),
    ),
}

# Custom object types (STIX 2.1 §11.2, or new-sdo/new-sco via an extension-definition):
# SDO-like when they carry created/modified, SCO-like otherwise.
CUSTOM_SDO = TypeSpec("sdo", SDO_COMMON, SDO_REQUIRED, SDO_CONSTRAINTS)
CUSTOM_SCO = TypeSpec("sco", SCO_COMMON)

ALL_TYPES: dict[str, TypeSpec] = {**SDOS, **SROS, **SCOS, **SMOS}

# The four TLP 1.0 marking definitions predefined by STIX 2.1 §7.2.1.4; no other
# marking-definition may use definition_type "tlp".
TLP_MARKINGS: dict[str, str] = {
    "marking-definition--613f2e26-407d-48c7-9eca-b8e91df99dc9": "white",
    "marking-definition--34098fce-860f-48ae-8e50-ebd3cc5e41da": "green",
    "marking-definition--f88d31f6-486f-44da-b317-01333bde0b82": "amber",
    "marking-definition--5e57c739-391a-4eb3-b6be-7d15ca92d5ed": "red",
}
#: The four predefined TLP 1.0 marking definitions, as STIX 2.1 §7.2.1.4 gives them: the
#: only instances of the ``tlp`` definition type there may be.
TLP_DEFINITIONS: dict[str, dict[str, Any]] = {
    id_: {"type": "marking-definition", "spec_version": "2.1", "id": id_,
          "created": "2017-01-20T00:00:00.000Z", "definition_type": "tlp",
          "name": f"TLP:{level.upper()}", "definition": {"tlp": level}}
    for id_, level in TLP_MARKINGS.items()
}

# hash-algorithm-ov entries whose values have a fixed hex length (STIX 2.1 §10.5).
HASH_HEX_LENGTHS: dict[str, int] = {
    "MD5": 32, "SHA-1": 40, "SHA-256": 64, "SHA-512": 128, "SHA3-256": 64, "SHA3-512": 128,
}
