"""Differential tests: CommonWatch's matcher against stix2-matcher on generated cases.

Hypothesis generates batches of (pattern, observations); each batch is evaluated by
the reference in one subprocess (tests/detect/reference.py). Generation stays inside
the semantics both implement the same way: the documented deviations
(docs/detection.md) are pinned by tests/detect/test_conformance.py instead, and a case
the reference raises on is left out (only its answer can be compared).
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from commonwatch.detect import match

from .reference import run_reference

IPS = ["10.0.0.1", "10.0.0.2", "192.0.2.7", "198.51.100.200"]
CIDRS = ["10.0.0.0/8", "10.0.0.0/31", "192.0.2.0/24", "198.51.100.128/25", "0.0.0.0/1"]
NAMES = ["evil.example", "a.example", "b.test", "Evil.example", "x"]
REGEXES = ["^evil", "example$", "[0-9]", "^[a-z]\\.", "E"]
TIMES = ["2024-01-01T00:00:00Z", "2024-01-01T00:00:30Z", "2024-01-01T00:01:00Z",
         "2024-01-01T00:10:00Z"]

# property -> (kind, object type)
PROPS: dict[str, tuple[str, str]] = {
    "ipv4-addr:value": ("ip", "ipv4-addr"),
    "domain-name:value": ("str", "domain-name"),
    "network-traffic:dst_port": ("int", "network-traffic"),
    "network-traffic:src_ref.value": ("ip", "network-traffic"),
    "network-traffic:protocols[*]": ("str", "network-traffic"),
    "network-traffic:protocols[0]": ("str", "network-traffic"),
    "network-traffic:x_ratio": ("num", "network-traffic"),
    "network-traffic:x_ok": ("bool", "network-traffic"),
    "file:name": ("str", "file"),
    "file:size": ("int", "file"),
}


def _quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


@st.composite
def comparisons(draw: st.DrawFn) -> str:
    path = draw(st.sampled_from(sorted(PROPS)))
    kind = PROPS[path][0]
    neg = "NOT " if draw(st.integers(0, 5)) == 0 else ""
    if kind in ("str", "ip"):
        pool = IPS if kind == "ip" else NAMES + ["tcp", "udp"]
        ops = ["=", "!=", "<", ">=", "IN", "LIKE", "MATCHES"] + (["ISSUBSET"] if kind == "ip" else [])
        op = draw(st.sampled_from(ops))
        if op == "IN":
            values = draw(st.lists(st.sampled_from(pool), min_size=1, max_size=3))
            return f"{path} {neg}IN ({', '.join(map(_quote, values))})"
        if op == "LIKE":
            base = draw(st.sampled_from(pool))
            chars = [draw(st.sampled_from([c, c, "_", "%"])) for c in base[:6]]
            return f"{path} {neg}LIKE {_quote(''.join(chars) + draw(st.sampled_from(['', '%'])))}"
        if op == "MATCHES":
            return f"{path} {neg}MATCHES {_quote(draw(st.sampled_from(REGEXES)))}"
        if op == "ISSUBSET":
            return f"{path} {neg}ISSUBSET {_quote(draw(st.sampled_from(CIDRS)))}"
        return f"{path} {neg}{op} {_quote(draw(st.sampled_from(pool)))}"
    if kind == "bool":
        return f"{path} {neg}{draw(st.sampled_from(['=', '!=']))} {draw(st.sampled_from(['true', 'false']))}"
    op = draw(st.sampled_from(["=", "!=", "<", "<=", ">", ">=", "IN"]))
    numbers = st.sampled_from(["53", "443", "80", "443.0", "0.5", "-1", "70000"])
    if op == "IN":
        values = draw(st.lists(st.sampled_from(["53", "443", "80"]), min_size=1, max_size=3))
        return f"{path} {neg}IN ({', '.join(values)})"
    return f"{path} {neg}{op} {draw(numbers)}"


@st.composite
def comparison_expressions(draw: st.DrawFn) -> str:
    parts = draw(st.lists(comparisons(), min_size=1, max_size=3))
    text = parts[0]
    for part in parts[1:]:
        text += f" {draw(st.sampled_from(['AND', 'OR']))} {part}"
    return f"[{text}]"


def _qualified(draw: st.DrawFn, expr: str) -> str:
    choice = draw(st.integers(0, 6))
    if choice == 0:
        return f"{expr} REPEATS {draw(st.integers(1, 3))} TIMES"
    if choice == 1:
        return f"{expr} WITHIN {draw(st.sampled_from(['30', '45.5', '600']))} SECONDS"
    if choice == 2:
        start, stop = sorted(draw(st.lists(st.sampled_from(TIMES), min_size=2, max_size=2)))
        return f"{expr} START t'{start}' STOP t'{stop}'"
    return expr


@st.composite
def patterns(draw: st.DrawFn) -> str:
    obs = [_qualified(draw, draw(comparison_expressions())) for _ in range(draw(st.integers(1, 3)))]
    text = obs[0]
    for part in obs[1:]:
        text += f" {draw(st.sampled_from(['AND', 'OR', 'FOLLOWEDBY']))} {part}"
    if len(obs) > 1 and draw(st.booleans()):
        text = _qualified(draw, f"({text})")
    return text


@st.composite
def observation_sets(draw: st.DrawFn) -> list[dict[str, Any]]:
    objects: list[dict[str, Any]] = []
    for n in range(draw(st.integers(1, 4))):
        scos: list[dict[str, Any]] = []
        src = {"type": "ipv4-addr", "id": f"ipv4-addr--{n}-s", "value": draw(st.sampled_from(IPS))}
        for k in range(draw(st.integers(1, 3))):
            kind = draw(st.sampled_from(["ipv4-addr", "domain-name", "network-traffic", "file"]))
            oid = f"{kind}--{n}-{k}"
            if kind == "ipv4-addr":
                scos.append({"type": kind, "id": oid, "value": draw(st.sampled_from(IPS))})
            elif kind == "domain-name":
                scos.append({"type": kind, "id": oid, "value": draw(st.sampled_from(NAMES))})
            elif kind == "file":
                scos.append({"type": kind, "id": oid, "name": draw(st.sampled_from(NAMES)),
                             "size": draw(st.sampled_from([0, 443, 70000, 80.5]))})
            else:
                if src not in scos:
                    scos.append(src)
                traffic = {"type": kind, "id": oid, "src_ref": src["id"],
                           "dst_port": draw(st.sampled_from([53, 80, 443, 443.0])),
                           "protocols": draw(st.lists(st.sampled_from(["tcp", "udp", "x"]), max_size=2)),
                           "x_ok": draw(st.booleans())}
                if draw(st.booleans()):
                    traffic["x_ratio"] = draw(st.sampled_from([0.5, 1, -1.0]))
                scos.append(traffic)
        first = draw(st.sampled_from(TIMES))
        last = max(first, draw(st.sampled_from(TIMES)))
        objects.append({"type": "observed-data", "id": f"observed-data--{n}", "first_observed": first,
                        "last_observed": last, "number_observed": draw(st.integers(1, 3)),
                        "object_refs": [s["id"] for s in scos]})
        objects.extend(scos)
    return [{"type": "bundle", "id": "bundle--1", "objects": objects}]


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                HealthCheck.data_too_large])
@given(st.lists(st.tuples(patterns(), observation_sets()), min_size=30, max_size=30))
def test_same_answers_as_the_reference(cases: list[tuple[str, list[dict[str, Any]]]]) -> None:
    reference = run_reference([{"pattern": p, "observations": o} for p, o in cases])
    for (pattern, observations), ref in zip(cases, reference, strict=True):
        if "error" in ref:
            continue
        note(f"pattern: {pattern}\nobservations: {observations}")
        assert match(pattern, observations) is ref["result"], pattern
