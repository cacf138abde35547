"""The conformance corpus: (pattern, observations, expected) for every rule of STIX 2.1 §9.

Expected values are decided by the specification. ``ref`` says what the reference
matcher (stix2-matcher 3.0.0) does with the case: ``"same"`` (agrees), ``"differs"``
(returns the other answer) or ``"error"`` (raises); every non-``"same"`` case is one of
the deviations listed in docs/detection.md.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

_ids = itertools.count(1)


def obj(type_: str, **props: Any) -> dict[str, Any]:
    """An SCO with a deterministic id."""
    return {"type": type_, "id": f"{type_}--00000000-0000-4000-8000-{next(_ids):012d}", **props}


def od(objs: list[dict[str, Any]], first: str = "2024-01-01T00:00:00Z", last: str | None = None,
       n: int = 1) -> list[dict[str, Any]]:
    """An observed-data referencing ``objs``, followed by the objects."""
    return [{
        "type": "observed-data", "spec_version": "2.1",
        "id": f"observed-data--00000000-0000-4000-8000-{next(_ids):012d}",
        "created": "2024-01-01T00:00:00Z", "modified": "2024-01-01T00:00:00Z",
        "first_observed": first, "last_observed": last or first, "number_observed": n,
        "object_refs": [o["id"] for o in objs],
    }, *objs]


def bundle(*observations: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"type": "bundle", "id": "bundle--00000000-0000-4000-8000-000000000000",
             "objects": [o for obs in observations for o in obs]}]


@dataclass
class Case:
    name: str
    pattern: str
    observations: list[dict[str, Any]]
    expected: bool
    ref: str = "same"
    note: str = field(default="")


def _traffic() -> list[dict[str, Any]]:
    src = obj("ipv4-addr", value="198.51.100.7")
    dst = obj("ipv4-addr", value="203.0.113.9")
    dst6 = obj("ipv6-addr", value="2001:db8::42")
    traffic = obj("network-traffic", src_ref=src["id"], dst_ref=dst["id"], src_port=51000,
                  dst_port=443, protocols=["ipv4", "tcp", "tls"], start="2024-01-01T00:00:00Z",
                  extensions={"http-request-ext": {"request_method": "GET"}},
                  ipfix={"octets": 1500, "ratio": 0.5, "ok": True}, payload_bin="aGVsbG8=")
    other = obj("network-traffic", dst_ref=dst6["id"], dst_port=53, protocols=["udp", "dns"])
    return od([src, dst, dst6, traffic, other])


def _file() -> list[dict[str, Any]]:
    return od([obj("file", name="invoice.pdf.exe", size=73802,
                   hashes={"MD5": "0a0f0c1e2b3d4e5f60718293a4b5c6d7",
                           "SHA-256": "aa" * 32},
                   magic_number_hex="4D5A", ctime="2024-01-01T10:00:00.123Z",
                   x_note="line one\nline two")])


def _url() -> list[dict[str, Any]]:
    return od([obj("url", value="https://evil.example/path?q=1"),
               obj("domain-name", value="evil.example")])


TRAFFIC, FILE, URL = _traffic(), _file(), _url()
T = bundle(TRAFFIC)
F = bundle(FILE)
U = bundle(URL)

CASES: list[Case] = [
    # -- equality and order (§9.5) --
    Case("eq string", "[ipv4-addr:value = '198.51.100.7']", T, True),
    Case("eq case-sensitive", "[domain-name:value = 'EVIL.example']", U, False),
    Case("eq ==", "[ipv4-addr:value == '203.0.113.9']", T, True),
    Case("neq", "[domain-name:value != 'good.example']", U, True),
    Case("neq <>", "[domain-name:value <> 'evil.example']", U, False),
    Case("eq int", "[network-traffic:dst_port = 443]", T, True),
    Case("eq int vs float", "[network-traffic:dst_port = 443.0]", T, True),
    Case("eq float", "[network-traffic:ipfix.ratio = 0.5]", T, True),
    Case("eq bool", "[network-traffic:ipfix.ok = true]", T, True),
    Case("bool is not int", "[network-traffic:ipfix.ok = 1]", T, False),
    Case("string is not int", "[network-traffic:dst_port = '443']", T, False),
    Case("lt", "[network-traffic:dst_port < 444]", T, True),
    Case("le", "[network-traffic:dst_port <= 53]", T, True),
    Case("gt", "[file:size > 70000]", F, True),
    Case("ge false", "[file:size >= 73803]", F, False),
    Case("string order", "[domain-name:value > 'a']", U, True),
    Case("order across types is false", "[domain-name:value > 5]", U, False),
    Case("NOT order across types is still false", "[domain-name:value NOT > 5]", U, False),
    Case("NOT eq", "[domain-name:value NOT = 'evil.example']", U, False),
    Case("missing property never matches", "[file:name != 'x']", U, False),
    # -- timestamps --
    Case("timestamp eq", "[file:ctime = t'2024-01-01T10:00:00.123Z']", F, True),
    Case("timestamp order", "[file:ctime > t'2024-01-01T09:59:59Z']", F, True),
    Case("timestamp not a string", "[file:size = t'2024-01-01T00:00:00Z']", F, False),
    # -- binary and hex (§9.3) --
    Case("hex literal vs _hex property", "[file:magic_number_hex = h'4d5a']", F, True),
    Case("binary literal vs _bin property", "[network-traffic:payload_bin = b'aGVsbG8=']", T, True),
    Case("binary vs string", "[network-traffic:payload_bin = 'hello']", T, True),
    Case("hex literal vs string", "[file:name = h'696e766f6963652e7064662e657865']", F, True),
    Case("binary order", "[file:magic_number_hex > h'4d00']", F, True),
    # -- IN, LIKE, MATCHES --
    Case("in", "[domain-name:value IN ('a.example', 'evil.example')]", U, True),
    Case("not in", "[domain-name:value NOT IN ('a.example', 'evil.example')]", U, False),
    Case("in numbers", "[network-traffic:dst_port IN (80, 443)]", T, True),
    Case("in empty set", "[network-traffic:dst_port IN ()]", T, False),
    Case("like percent", "[url:value LIKE 'https://evil.%']", U, True),
    Case("like underscore", "[domain-name:value LIKE 'evi_.example']", U, True),
    Case("like is anchored", "[domain-name:value LIKE 'evil']", U, False),
    Case("like escapes regex characters", "[domain-name:value LIKE 'evil.exampl.']", U, False),
    Case("matches search", "[url:value MATCHES '^https://[a-z]+\\\\.example/']", U, True),
    Case("matches unanchored", "[url:value MATCHES 'q=[0-9]']", U, True),
    Case("matches false", "[url:value MATCHES '^http:']", U, False),
    Case("not like", "[domain-name:value NOT LIKE '%.org']", U, True),
    # -- ISSUBSET / ISSUPERSET --
    Case("issubset ipv4", "[ipv4-addr:value ISSUBSET '198.51.100.0/24']", T, True),
    Case("issubset ipv4 miss", "[ipv4-addr:value ISSUBSET '192.0.2.0/24']", U, False),
    Case("issubset via ref", "[network-traffic:src_ref.value ISSUBSET '198.51.0.0/16']", T, True),
    Case("not issubset", "[ipv4-addr:value NOT ISSUBSET '198.51.100.0/24']", T, True),
    # -- EXISTS --
    Case("exists", "[EXISTS file:hashes.MD5]", F, True),
    Case("exists missing", "[EXISTS file:hashes.SHA1]", F, False),
    # -- object paths (§9.4) --
    Case("quoted key", "[file:hashes.'SHA-256' = '" + "aa" * 32 + "']", F, True),
    Case("list index", "[network-traffic:protocols[1] = 'tcp']", T, True),
    Case("list index wrong", "[network-traffic:protocols[0] = 'tcp']", T, False),
    Case("list index out of range", "[network-traffic:protocols[9] = 'tcp']", T, False),
    Case("any index", "[network-traffic:protocols[*] = 'tls']", T, True),
    Case("any index on non-list", "[network-traffic:dst_port[*] = 443]", T, False),
    Case("ref", "[network-traffic:dst_ref.value = '203.0.113.9']", T, True),
    Case("ref to other type", "[network-traffic:dst_ref.value = '2001:db8::42']", T, True),
    Case("ref type", "[network-traffic:src_ref.type = 'ipv4-addr']", T, True),
    Case("nested dict", "[network-traffic:extensions.'http-request-ext'.request_method = 'GET']", T, True),
    Case("SDO types are not matched", "[observed-data:number_observed = 1]", T, False),
    # -- comparison AND / OR bind one object --
    Case("and same object", "[network-traffic:dst_port = 443 AND network-traffic:src_port = 51000]", T, True),
    Case("and different objects of one type",
         "[network-traffic:dst_port = 53 AND network-traffic:src_port = 51000]", T, False),
    Case("and different types", "[url:value LIKE '%' AND domain-name:value = 'evil.example']", U, False),
    Case("or within", "[domain-name:value = 'x' OR url:value LIKE 'https:%']", U, True),
    Case("and/or precedence",
         "[domain-name:value = 'x' AND domain-name:value = 'y' OR domain-name:value = 'evil.example']",
         U, True),
    # -- observation expressions (§9.6) --
    Case("obs and distinct observations", "[domain-name:value = 'evil.example'] AND [ipv4-addr:value = "
         "'198.51.100.7']", bundle(URL, TRAFFIC), True),
    Case("obs and needs two observations",
         "[domain-name:value = 'evil.example'] AND [url:value LIKE '%']", U, False),
    Case("obs and number_observed 2",
         "[domain-name:value = 'evil.example'] AND [domain-name:value = 'evil.example']",
         bundle(od([obj("domain-name", value="evil.example")], n=2)), True),
    Case("obs or", "[domain-name:value = 'x'] OR [ipv4-addr:value = '198.51.100.7']", T, True),
    Case("followedby in order",
         "[domain-name:value = 'a.example'] FOLLOWEDBY [domain-name:value = 'b.example']",
         bundle(od([obj("domain-name", value="a.example")], "2024-01-01T00:00:00Z"),
                od([obj("domain-name", value="b.example")], "2024-01-01T00:01:00Z")), True),
    Case("followedby out of order",
         "[domain-name:value = 'b.example'] FOLLOWEDBY [domain-name:value = 'a.example']",
         bundle(od([obj("domain-name", value="a.example")], "2024-01-01T00:00:00Z"),
                od([obj("domain-name", value="b.example")], "2024-01-01T00:01:00Z")), False),
    Case("followedby overlapping spans",
         "[domain-name:value = 'b.example'] FOLLOWEDBY [domain-name:value = 'a.example']",
         bundle(od([obj("domain-name", value="a.example")], "2024-01-01T00:00:00Z",
                   "2024-01-01T00:05:00Z"),
                od([obj("domain-name", value="b.example")], "2024-01-01T00:01:00Z")), True),
    # -- qualifiers --
    Case("repeats", "[domain-name:value = 'a.example'] REPEATS 3 TIMES",
         bundle(*(od([obj("domain-name", value="a.example")]) for _ in range(3))), True),
    Case("repeats too few", "[domain-name:value = 'a.example'] REPEATS 3 TIMES",
         bundle(*(od([obj("domain-name", value="a.example")]) for _ in range(2))), False),
    Case("repeats via number_observed", "[domain-name:value = 'a.example'] REPEATS 3 TIMES",
         bundle(od([obj("domain-name", value="a.example")], n=3)), True),
    Case("within yes",
         "([domain-name:value = 'a.example'] AND [domain-name:value = 'b.example']) WITHIN 60 SECONDS",
         bundle(od([obj("domain-name", value="a.example")], "2024-01-01T00:00:00Z"),
                od([obj("domain-name", value="b.example")], "2024-01-01T00:01:00Z")), True),
    Case("within no",
         "([domain-name:value = 'a.example'] AND [domain-name:value = 'b.example']) WITHIN 59.5 SECONDS",
         bundle(od([obj("domain-name", value="a.example")], "2024-01-01T00:00:00Z"),
                od([obj("domain-name", value="b.example")], "2024-01-01T00:01:00Z")), False),
    Case("start stop inside",
         "[domain-name:value = 'a.example'] START t'2024-01-01T00:00:00Z' STOP t'2024-01-02T00:00:00Z'",
         bundle(od([obj("domain-name", value="a.example")], "2024-01-01T12:00:00Z")), True),
    Case("start stop excludes stop",
         "[domain-name:value = 'a.example'] START t'2023-12-31T00:00:00Z' STOP t'2024-01-01T12:00:00Z'",
         bundle(od([obj("domain-name", value="a.example")], "2024-01-01T12:00:00Z")), False),
    Case("start stop includes start",
         "[domain-name:value = 'a.example'] START t'2024-01-01T12:00:00Z' STOP t'2024-01-02T00:00:00Z'",
         bundle(od([obj("domain-name", value="a.example")], "2024-01-01T12:00:00Z")), True),
    Case("repeats within",
         "[domain-name:value = 'a.example'] REPEATS 2 TIMES WITHIN 10 SECONDS",
         bundle(od([obj("domain-name", value="a.example")], "2024-01-01T00:00:00Z"),
                od([obj("domain-name", value="a.example")], "2024-01-01T00:00:30Z")), False),
    # -- where the reference deviates; the specification decides --
    Case("NOT EXISTS", "[NOT EXISTS file:hashes.SHA1]", F, True, "error",
         "the reference's grammar (stix2-patterns 2.0.0) rejects NOT before EXISTS"),
    Case("NOT EXISTS false", "[NOT EXISTS file:hashes.MD5]", F, False, "error",
         "the reference's grammar (stix2-patterns 2.0.0) rejects NOT before EXISTS"),
    Case("EXISTS inside AND", "[EXISTS file:hashes.MD5 AND file:size > 1]", F, True, "error",
         "the reference has no EXISTS handler; inside AND it crashes"),
    Case("LIKE percent spans newline", "[file:x_note LIKE 'line one%']", F, True, "differs",
         "§9.5: % is any sequence of characters; the reference's '.' stops at a newline"),
    Case("LIKE trailing newline", "[domain-name:value LIKE 'evil.example']",
         bundle(od([obj("domain-name", value="evil.example\n")])), False, "differs",
         "the reference anchors with '$', which also accepts a trailing newline"),
    Case("IN is equality: true is not 1", "[network-traffic:ipfix.ok IN (1, 2)]", T, False, "differs",
         "the reference tests set membership with Python ==, where True == 1"),
    Case("ISSUBSET IPv6", "[ipv6-addr:value ISSUBSET '2001:db8::/32']", T, True, "error",
         "the reference only knows IPv4"),
    Case("ISSUPERSET of a plain address", "[ipv4-addr:value ISSUPERSET '198.51.100.7']", T, True,
         "error", "the reference needs CIDR notation on the observed value"),
    Case("ISSUPERSET CIDR", "[x-net:block ISSUPERSET '10.1.2.3']",
         bundle(od([obj("x-net", block="10.0.0.0/8")])), True),
    Case("ISSUBSET /0", "[ipv4-addr:value ISSUBSET '0.0.0.0/0']", T, True, "error",
         "the reference rejects prefix length 0"),
    Case("ISSUBSET on a non-address value", "[domain-name:value ISSUBSET '10.0.0.0/8']", U, False,
         "error", "the reference raises on a value that is not an IPv4 address"),
]
