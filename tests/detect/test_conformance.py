"""The conformance corpus (tests/detect/corpus.py) against CommonWatch and the reference.

CommonWatch must give the expected answer on every case. The reference must agree on
every case marked ``same`` and deviate as recorded on the others, so that the list of
deviations in docs/detection.md stays true.
"""

from __future__ import annotations

import pytest

from commonwatch.detect import match
from commonwatch.errors import InvalidPattern, InvalidStixObject

from .corpus import CASES, Case, bundle, obj, od
from .reference import run_reference


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_commonwatch_gives_the_specified_answer(case: Case) -> None:
    assert match(case.pattern, case.observations) is case.expected


def test_reference_agrees_or_deviates_as_documented() -> None:
    results = run_reference([{"pattern": c.pattern, "observations": c.observations} for c in CASES])
    wrong = []
    for case, got in zip(CASES, results, strict=True):
        if case.ref == "error":
            ok = "error" in got
        elif case.ref == "differs":
            ok = got.get("result") is (not case.expected)
        else:
            ok = got.get("result") is case.expected
        if not ok:
            wrong.append((case.name, case.ref, got))
    assert not wrong


def test_stix_20_embedded_objects() -> None:
    sdo = {"type": "observed-data", "id": "observed-data--1", "first_observed": "2024-01-01T00:00:00Z",
           "last_observed": "2024-01-01T00:00:00Z", "number_observed": 1,
           "objects": {"0": {"type": "ipv4-addr", "value": "10.0.0.1"},
                       "1": {"type": "network-traffic", "src_ref": "0", "dst_port": 22}}}
    assert match("[network-traffic:src_ref.value = '10.0.0.1']", [sdo], stix_version="2.0")
    assert not match("[network-traffic:dst_port = 23]", [sdo], stix_version="2.0")
    assert run_reference([{"pattern": "[network-traffic:src_ref.value = '10.0.0.1']",
                           "observations": [sdo], "stix_version": "2.0"}]) == [{"result": True}]


def test_bare_objects_and_several_bundles_are_one_pool() -> None:
    ip = obj("ipv4-addr", value="10.9.9.9")
    observed = od([ip])
    assert match("[ipv4-addr:value = '10.9.9.9']", observed)  # bare objects, no bundle
    assert match("[ipv4-addr:value = '10.9.9.9']", [bundle(observed[:1])[0], bundle([ip])[0]])


@pytest.mark.parametrize("pattern, message", [
    ("[ipv4-addr:value = ", "not valid STIX 2.1 patterning"),
    ("ipv4-addr:value = '1'", "not valid STIX 2.1 patterning"),
    ("[a:b = 1] REPEATS 0 TIMES", "REPEATS 0 TIMES"),
    ("[a:b = 1] WITHIN 0 SECONDS", "WITHIN 0 SECONDS"),
    ("[a:b IN (1, 'x')]", "one type"),
    ("[a:b MATCHES '(']", "not a valid regular expression"),
    ("[a:b ISSUBSET 'nonsense']", "not an IPv4/IPv6 address"),
    ("[a:b = t'2023-02-30T00:00:00Z']", "not a real date"),
])
def test_invalid_patterns_raise_a_clear_error(pattern: str, message: str) -> None:
    with pytest.raises(InvalidPattern, match=message):
        match(pattern, bundle(od([obj("ipv4-addr", value="1.2.3.4")])))


@pytest.mark.parametrize("observations, message", [
    ([{"type": "observed-data", "id": "observed-data--1", "object_refs": []}], "lacks number_observed"),
    ([{"type": "observed-data", "id": "observed-data--1", "first_observed": "2024-01-01T00:00:00Z",
       "last_observed": "2024-01-01T00:00:00Z", "number_observed": 0, "object_refs": []}], ">= 1"),
    ([{"type": "observed-data", "id": "observed-data--1", "first_observed": "yesterday",
       "last_observed": "2024-01-01T00:00:00Z", "number_observed": 1, "object_refs": []}], "time span"),
    (["not an object"], "expected a STIX object"),
])
def test_malformed_observations_raise_a_clear_error(observations: list, message: str) -> None:
    with pytest.raises(InvalidStixObject, match=message):
        match("[ipv4-addr:value = '1.2.3.4']", observations)
