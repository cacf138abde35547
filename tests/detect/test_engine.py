"""The index engine: same matches as full evaluation of every pattern on every event.

The indicator set is generated from values that occur in the real samples (so hits are
plenty) plus shapes the index cannot use; the engine's matches must equal brute-force
evaluation of each pattern, and the single-event ones must equal the reference
matcher's answers on the same events written as STIX observed-data.
"""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from commonwatch.detect import compile_pattern
from commonwatch.detect.engine import IndicatorSet, compile_indicators
from commonwatch.detect.evaluate import Observed
from commonwatch.detect.events import build_observation, probes
from commonwatch.detect.scan import scan
from commonwatch.domain.timestamps import format_timestamp
from commonwatch.formats.telemetry import adapters_for, builtin_adapters, sniff
from commonwatch.formats.telemetry.generic import load_mapping
from commonwatch.formats.telemetry.source import Problems

from .reference import run_reference
from .test_telemetry import DATA, read

SAMPLES = ["surevego_eve.json", "suricata-verify_tls-fingerprint-alert_eve.json",
           "suricata-verify_output-eve-fileinfo_eve.json", "rita_dns.json", "rita_http.json",
           "rita_closed_conn.log", "rita_proxy_files.log", "wrccdc_x509.json", "flows.nfdump.csv"]
KINDS = [k for a in builtin_adapters().values() for k in a.kinds] + [
    load_mapping(str(DATA / "proxy-mapping.json"))]


@pytest.fixture(scope="module")
def events() -> list[Any]:
    found = []
    for name in SAMPLES:
        found += read(DATA / name)[0]
    return found


def _walk(obj: dict[str, Any], objects: dict[str, Any], prefix: str, out: set[tuple[str, Any]]) -> None:
    for key, value in obj.items():
        if key in ("type", "id"):
            continue
        name = key if key.replace("_", "a").isalnum() and not key[0].isdigit() else f"'{key}'"
        path = f"{prefix}.{name}" if prefix else name
        if key.endswith("_ref"):
            out.add((f"{path}.value", objects[value].get("value")))
        elif type(value) is dict:
            _walk(value, objects, path, out)
        elif type(value) is list:
            out.update((f"{path}[*]", v) for v in value)
        else:
            out.add((path, value))


def test_probes_are_exactly_the_values_of_the_built_observation(events: list[Any]) -> None:
    for kind, record in events:
        obs = build_observation(kind, record)
        walked: set[tuple[str, Any]] = set()
        for obj in obs.objects.values():
            found: set[tuple[str, Any]] = set()
            _walk(obj, obs.objects, "", found)
            walked |= {(f"{obj['type']}:{p}", v) for p, v in found}
        assert walked == set(probes(kind, record)), kind.name


def _indicators(events: list[Any], rng: random.Random) -> list[tuple[str, str, None]]:
    pool: dict[str, list[Any]] = {}
    for kind, record in events:
        for path, value in probes(kind, record):
            pool.setdefault(path, []).append(value)
    strings = sorted((p, v) for p, vs in pool.items() for v in set(vs) if isinstance(v, str))
    numbers = sorted((p, v) for p, vs in pool.items() for v in set(vs) if type(v) is int)
    ips = sorted({v for p, v in strings if p == "ipv4-addr:value"})

    def q(v: str) -> str:
        return "'" + v.replace("\\", "\\\\").replace("'", "\\'") + "'"

    patterns: list[str] = []
    for path, value in rng.sample(strings, 120):
        patterns.append(f"[{path} = {q(value)}]")
    for path, value in rng.sample(numbers, 10):
        patterns.append(f"[{path} = {value}]")
    for ip in rng.sample(ips, 8):
        a, b, _, _ = ip.split(".")
        patterns.append(f"[ipv4-addr:value ISSUBSET '{a}.{b}.0.0/16']")
        patterns.append(f"[network-traffic:dst_ref.value ISSUBSET '{ip}/32' "
                        "AND network-traffic:dst_port > 52]")
    for _ in range(15):
        (p1, v1), (p2, v2) = rng.sample(strings, 2)
        alternative = f"{p2} = {q(v2)}" if "hashes" in p2 else f"{p2} IN ({q(v2)}, 'zzz')"
        patterns.append(f"[{p1} = {q(v1)} OR {alternative}]")
        patterns.append(f"[{p1} = {q(v1)}] FOLLOWEDBY [{p2} = {q(v2)}]")
        patterns.append(f"[{p1} = {q(v1)}] AND [{p2} = {q(v2)}] WITHIN 300 SECONDS")
        patterns.append(f"[{p1} = {q(v1)}] REPEATS 2 TIMES")
        patterns.append(f"[{p1} = {q(v1)}] OR [{p2} = {q(v2)}]")
    patterns += [
        "[domain-name:value LIKE '%.debian.org']", "[domain-name:value MATCHES '^[a-z]+\\\\.com$']",
        "[network-traffic:dst_port != 80 AND network-traffic:protocols[*] = 'udp']",
        "[network-traffic:protocols[0] = 'tcp' AND network-traffic:dst_port = 443]",
        "[file:size > 1000]", "[EXISTS x509-certificate:hashes.'SHA-256']",
        "[ipv4-addr:value = '172.17.0.2'] START t'2017-01-30T15:12:30Z' STOP t'2017-01-30T15:13:00Z'",
        "[url:value LIKE 'http://deb.debian.org/%'] FOLLOWEDBY [file:name LIKE '%.deb']",
        "[ipv6-addr:value = '172.17.0.2']", "[ipv4-addr:value = '2001:db8::7']",
    ]
    return [(f"indicator--{n}", p, None) for n, p in enumerate(patterns)]


def _brute_force(indicators: list[tuple[str, str, None]], observed: list[Observed]) -> set[tuple[str, tuple]]:
    found: set[tuple[str, tuple]] = set()
    for key, pattern, _ in indicators:
        compiled = compile_pattern(pattern)
        if compiled.size == 1 or "] OR [" in pattern:  # every binding is one event
            found |= {(key, (i,)) for i, o in enumerate(observed) if compiled.matches([o])}
        elif compiled.matches(observed):
            found.add((key, ()))
    return found


def _engine(iset: IndicatorSet, events: list[Any]) -> set[tuple[str, tuple]]:
    return {(m.key, m.positions if iset.entries[m.key].single_event else ()) for m in scan(iset, events)}


def test_index_engine_equals_full_evaluation(events: list[Any]) -> None:
    indicators = _indicators(events, random.Random(7))
    iset, rejected = compile_indicators(KINDS, indicators)
    assert rejected == [] and 0 < iset.unindexed < 10
    observed = [build_observation(k, r) for k, r in events]
    expected = _brute_force(indicators, observed)
    assert len(expected) > 100
    assert _engine(iset, events) == expected


def test_incremental_add_and_remove(events: list[Any]) -> None:
    indicators = _indicators(events, random.Random(11))
    iset, _ = compile_indicators(KINDS, indicators[:100])
    scan(iset, events)  # plans are cached; changes must invalidate them
    for key, pattern, meta in indicators[100:]:
        iset.add(key, pattern, meta)
    for key, _, _ in indicators[:50]:
        assert iset.remove(key)
    assert not iset.remove("indicator--nope")
    fresh, _ = compile_indicators(KINDS, indicators[50:])
    assert _engine(iset, events) == _engine(fresh, events)
    iset.add("indicator--60", "[domain-name:value = 'replaced.example']")  # replacing a key
    assert "indicator--60" not in {m.key for m in scan(iset, events)}


def test_unusable_patterns_are_rejected_with_reasons() -> None:
    iset, rejected = compile_indicators(KINDS, [
        ("a", "[ipv4-addr:value = '1.2.3.4']", None), ("b", "[oops", None),
        ("c", "[a:b = 1] REPEATS 0 TIMES", None), ("d", "[ipv4-addr:value ISSUBSET 'x']", None)])
    assert len(iset) == 1 and [k for k, _ in rejected] == ["b", "c", "d"]
    assert all(reason for _, reason in rejected)


def _as_stix(kind: Any, record: dict[str, Any], n: int) -> list[dict[str, Any]]:
    obs = build_observation(kind, record)
    ids = {local: f"{obj['type']}--00000000-0000-4000-8000-{n:06d}{i:06d}"
           for i, (local, obj) in enumerate(obs.objects.items())}
    scos = []
    for local, obj in obs.objects.items():
        sco = {k: (ids[v] if k.endswith("_ref") else v) for k, v in obj.items()}
        sco["id"] = ids[local]
        scos.append(sco)
    at = format_timestamp(obs.first_us)
    return [{"type": "bundle", "id": "bundle--1", "objects": [
        {"type": "observed-data", "id": f"observed-data--00000000-0000-4000-8000-{n:012d}",
         "first_observed": at, "last_observed": at, "number_observed": 1,
         "object_refs": list(ids.values())}, *scos]}]


def test_single_event_matches_equal_the_reference(events: list[Any]) -> None:
    rng = random.Random(3)
    indicators = [i for i in _indicators(events, rng) if "ISSUBSET" not in i[1]
                  and "FOLLOWEDBY" not in i[1] and "] AND [" not in i[1] and "REPEATS" not in i[1]
                  and "ipv6-addr" not in i[1]]
    iset, _ = compile_indicators(KINDS, indicators)
    hit = sorted({m.positions[0] for m in scan(iset, events)})
    chosen = rng.sample(hit, 8) + rng.sample(range(len(events)), 4)  # hits and (mostly) misses
    subset = [events[i] for i in chosen]
    matched = {m.key for m in scan(iset, subset)}
    indicators = [i for i in indicators if i[0] in matched] + rng.sample(
        [i for i in indicators if i[0] not in matched], 20)
    iset, _ = compile_indicators(KINDS, indicators)
    engine = {(m.key, m.positions[0]) for m in scan(iset, subset)}
    cases, keys = [], []
    for j, (kind, record) in enumerate(subset):
        bundle = _as_stix(kind, record, j)
        for key, pattern, _ in indicators:
            cases.append({"pattern": pattern, "observations": bundle})
            keys.append((key, j))
    reference = run_reference(cases)
    assert all("error" not in r for r in reference)
    expected = {k for k, r in zip(keys, reference, strict=True) if r["result"]}
    assert len(expected) >= 8 and engine == expected


def test_two_values_for_one_property_become_two_objects() -> None:
    from commonwatch.formats.telemetry.suricata import KINDS as EVE

    record = {"event_type": "alert", "src_ip": "10.0.0.1", "dest_ip": "2001:db8::2",
              "dns": {"rrname": "a.example"}, "http": {"hostname": "b.example", "url": "/x"},
              "tls": {"sni": "c.example"}}
    kind = EVE["alert"]
    test_probes_are_exactly_the_values_of_the_built_observation([(kind, record)])
    iset, _ = compile_indicators(KINDS, [
        ("a", "[domain-name:value = 'a.example']", None), ("b", "[domain-name:value = 'b.example']", None),
        ("both", "[domain-name:value = 'a.example' AND domain-name:value = 'c.example']", None),
        ("v6", "[ipv6-addr:value = '2001:db8::2']", None), ("v4", "[ipv4-addr:value = '2001:db8::2']", None)])
    assert {m.key for m in scan(iset, [(kind, record)])} == {"a", "b", "v6"}


# Shapes the unparsed shortcut (analysis.Analyser._canonical_analysis) sees: the first of each
# (type, path) is parsed in full, so invalid shapes, keywords, addresses typed otherwise
# and hash paths must come out exactly as the general path gives them.
SHORTCUT_CASES = [
    "[ipv4-addr:value = '198.51.100.7']", "[ipv4-addr:value = '198.51.100.8']",
    "[ipv4-addr:value = '2001:db8::1']", "[ipv6-addr:value = '2001:db8::1']", "[ipv6-addr:value = '1.2.3.4']",
    "[domain-name:value = 'a.example']", "[domain-name:value = '']", "[domain-name:value = 'b.example']",
    "[url:value = 'http://x.example/a b?c=\"d\"']", "[url:value = 'http://x.example/it''s']",
    "[file:hashes.MD5 = 'd41d8cd98f00b204e9800998ecf8427e']", "[file:hashes.MD5 = 'nothex']",
    "[file:name = 'AND']", "[x-custom:value = 'q']", "[x-custom:value = 'r']", "[file:AND = 'q']",
    "[file:true = 'q']", "[file:name.AND = 'q']", "[network-traffic:src_ref.value = '10.0.0.1']",
    "[x509-certificate:serial_number = '01']", "[email-addr:value = 'a@b.example']",
    "[domain-name:valuex = 'a']", "[domain-name:value = 'a'] ", "[domain-name:value  = 'a']",
]


def _analysis(iset: IndicatorSet, patterns: list[str]) -> list[Any]:
    found: list[Any] = []
    for n, pattern in enumerate(patterns):
        try:
            iset.add(f"k{n}", pattern)
        except Exception as exc:  # noqa: BLE001 - the exact error is compared
            found.append((type(exc).__name__, str(exc)))
            continue
        e = iset.entries[f"k{n}"]
        found.append((e.keys, e.simple, e.single_event, e.types, e.scanned is not None))
    return found


def test_unparsed_shortcut_equals_the_parser(monkeypatch: pytest.MonkeyPatch) -> None:
    from commonwatch.detect import analysis

    patterns = SHORTCUT_CASES + list(reversed(SHORTCUT_CASES))
    shortcut = _analysis(IndicatorSet(KINDS), patterns)
    monkeypatch.setattr(analysis, "_CANONICAL", analysis.re.compile(r"(?!)"))  # never matches
    assert _analysis(IndicatorSet(KINDS), patterns) == shortcut
    assert sum(type(r[0]) is str for r in shortcut) >= 6  # some are rejected, identically


@pytest.mark.parametrize("max_bits", [12, 24])
def test_value_filter_never_hides_a_hit(events: list[Any], monkeypatch: pytest.MonkeyPatch,
                                        max_bits: int) -> None:
    """The filter grows as values come, and a crowded one (12 bits) only costs time."""
    from commonwatch.detect import engine

    monkeypatch.setattr(engine, "FILTER_MAX_BITS", max_bits)
    rng = random.Random(5)
    indicators = _indicators(events, rng)
    noise = [(f"n{i}", f"[domain-name:value = 'n{i}.example']", None) for i in range(3000)]
    iset, _ = compile_indicators(KINDS, noise + indicators)
    assert (len(iset.filter) == 1 << 12) == (max_bits == 12)  # grown from 4,096 slots unless capped
    for key, _, _ in noise[::2]:
        iset.remove(key)
    fresh, _ = compile_indicators(KINDS, indicators)
    assert _engine(iset, events) == _engine(fresh, events) != set()


def test_many_value_tests_on_one_path_equal_full_evaluation(events: list[Any]) -> None:
    """LIKE tests sharing a path are screened at once on a memo miss (suffix sets, a union)."""
    rng = random.Random(13)
    names = sorted({v for k, r in events for p, v in probes(k, r) if p == "domain-name:value"})
    assert len(names) > 20
    patterns = []
    for name in rng.sample(names, 20):
        patterns += [f"[domain-name:value LIKE '%{name[-7:]}']", f"[domain-name:value LIKE '{name[:4]}%']",
                     f"[domain-name:value LIKE '_{name[1:]}']",
                     f"[domain-name:value NOT LIKE '%{name[-5:]}']"]
    patterns += ["[domain-name:value LIKE '%.nowhere.invalid']", "[domain-name:value MATCHES '^www\\\\.']",
                 "[domain-name:value != 'www.google.com']", "[url:value LIKE 'http://%']",
                 "[domain-name:value LIKE '%']"]
    indicators = [(f"like-{i}", p, None) for i, p in enumerate(patterns)]
    iset, rejected = compile_indicators(KINDS, indicators)
    assert rejected == []
    expected = _brute_force(indicators, [build_observation(k, r) for k, r in events])
    assert len({k for k, _ in expected}) > 40
    assert _engine(iset, events) == expected
    iset.remove("like-0")  # the union follows the set
    iset.add("like-x", "[domain-name:value LIKE 'nothing-like-this']")
    assert not {k for k, _ in _engine(iset, events)} & {"like-0", "like-x"}


@settings(max_examples=400, deadline=None)
@given(st.lists(st.text("ab.%_", max_size=6), min_size=1, max_size=6), st.text("ab.", max_size=8))
def test_like_screen_equals_the_like_regexes(likes: list[str], value: str) -> None:
    """Suffix patterns by set lookups, the rest by their union: as each LIKE regex says."""
    from commonwatch.detect.lookups import LikeScreen
    from commonwatch.detect.values import like_regex

    expected = any(like_regex(like).fullmatch(value) for like in likes)
    assert LikeScreen(likes, ()).may_match(value) == expected


_OCTET = st.integers(0, 255)
_BLOCK = st.tuples(_OCTET, _OCTET, _OCTET, _OCTET, st.integers(8, 32))
_ADDRESS_TEXT = st.one_of(
    st.tuples(_OCTET, _OCTET, _OCTET, _OCTET).map(lambda o: ".".join(map(str, o))),
    st.tuples(_OCTET, _OCTET, _OCTET, _OCTET, st.integers(0, 32)).map(
        lambda o: ".".join(map(str, o[:4])) + f"/{o[4]}"),
    st.text("0123456789./:", max_size=16),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(_BLOCK, min_size=1, max_size=6), st.lists(_ADDRESS_TEXT, min_size=1, max_size=8),
       st.randoms(use_true_random=False))
def test_screened_cidr_lookups_equal_full_evaluation(blocks: list[tuple[int, ...]], texts: list[str],
                                                      rng: random.Random) -> None:
    """IPv4 blocks of /8 or longer screen addresses by their first characters: no hit lost."""
    from commonwatch.formats.telemetry.suricata import KINDS as EVE

    patterns = [f"[ipv4-addr:value ISSUBSET '{a}.{b}.{c}.{d}/{n}']" for a, b, c, d, n in blocks]
    values = texts + [f"{a}.{b}.{rng.randint(0, 255)}.{rng.randint(0, 255)}" for a, b, *_ in blocks]
    events = [(EVE["flow"], {"event_type": "flow", "src_ip": v, "dest_ip": "192.0.2.1", "proto": "TCP"})
              for v in values]
    indicators = [(f"cidr-{i}", p, None) for i, p in enumerate(patterns)]
    iset, rejected = compile_indicators(KINDS, indicators)
    assert rejected == []
    expected = _brute_force(indicators, [build_observation(k, r) for k, r in events])
    assert _engine(iset, events) == expected


@settings(max_examples=300, deadline=None)
@given(_BLOCK, _ADDRESS_TEXT)
def test_issubset_reads_addresses_as_ipaddress_does(block: tuple[int, ...], text: str) -> None:
    """The inet_pton shortcut of ISSUBSET answers what the ipaddress reading answers."""
    import ipaddress

    from commonwatch.detect.values import _subset_test

    outer = ipaddress.ip_network(".".join(map(str, block[:4])) + f"/{block[4]}", strict=False)
    try:
        inner = ipaddress.ip_network(text, strict=False)
        expected = inner.version == 4 and inner.subnet_of(outer)  # type: ignore[arg-type]
    except ValueError:
        expected = False
    assert _subset_test(outer)(text) is expected
    inside = str(outer.network_address + (block[0] * 7919 % outer.num_addresses))
    assert _subset_test(outer)(inside) is True


def test_cidr_lookups_equal_full_evaluation() -> None:
    """IPv4 addresses take the arithmetic path, everything else the memoised one."""
    from commonwatch.formats.telemetry.suricata import KINDS as EVE

    values = ["10.1.2.3", "10.200.0.1", "192.0.2.1", "192.0.2.200", "2001:db8::1", "2001:db9::1",
              "010.1.2.3", "10.1.2.3/32", "not an address", "1.2.3", "::ffff:10.1.2.3", "0.0.0.0"]
    events = [(EVE["flow"], {"event_type": "flow", "src_ip": src, "dest_ip": dst, "proto": "TCP",
                             "src_port": 1, "dest_port": 80})
              for src, dst in zip(values, values[3:] + values[:3], strict=True)]
    patterns = ["[ipv4-addr:value ISSUBSET '10.0.0.0/8']", "[ipv4-addr:value ISSUBSET '192.0.2.128/25']",
                "[network-traffic:dst_ref.value ISSUBSET '10.1.0.0/16']",
                "[ipv6-addr:value ISSUBSET '2001:db8::/32']", "[ipv4-addr:value ISSUBSET '0.0.0.0/0']",
                "[network-traffic:src_ref.value ISSUBSET '10.1.2.3/32' AND network-traffic:dst_port = 80]"]
    indicators = [(f"cidr-{i}", p, None) for i, p in enumerate(patterns)]
    iset, rejected = compile_indicators(KINDS, indicators)
    assert rejected == []
    expected = _brute_force(indicators, [build_observation(k, r) for k, r in events])
    assert len({k for k, _ in expected}) == len(patterns)
    assert _engine(iset, events) == expected



@pytest.mark.parametrize("name", [*SAMPLES, "proxy.jsonl"])
def test_adapter_scan_equals_scan_of_its_events(events: list[Any], name: str) -> None:
    """Each adapter's one-loop scan gives what scan() gives over its events: matches, count, problems."""
    mapping = str(DATA / "proxy-mapping.json") if name == "proxy.jsonl" else None
    own = read(DATA / name, "json", mapping)[0] if mapping else []
    iset, _ = compile_indicators(KINDS, _indicators(events + own, random.Random(5)))
    lines = (DATA / name).read_bytes().splitlines(keepends=True)
    if name.endswith((".json", ".jsonl")):
        lines[3:3] = [b"{not json\n", b"[1, 2]\n", b"\n", b'{"x": "' + b"y" * (1 << 20) + b'"}\n',
                      b'{"event_type": ["flow"], "src_ip": "192.0.2.1"}\n', b'{"event_type": "stats"}\n']
    adapters = adapters_for("auto", mapping)
    adapter = sniff(next(line for line in lines if line.strip()), adapters)
    assert adapter is not None
    fused, listed = adapter.parser(name), adapter.parser(name)
    p_fused, p_listed = Problems(), Problems()
    matched = 0
    for start in range(0, len(lines), 9):
        batch = lines[start:start + 9]
        found, count = fused.scan(iset, batch, start + 1, p_fused)
        events_of_batch = listed(batch, start + 1, p_listed)
        assert count == len(events_of_batch)
        assert [(m.key, m.positions, m.events) for m in found] == [
            (m.key, m.positions, m.events) for m in scan(iset, events_of_batch)]
        matched += len(found)
    assert matched > 0
    assert (p_fused.counts, p_fused.skipped, p_fused.examples) == (
        p_listed.counts, p_listed.skipped, p_listed.examples)


def test_observations_of_the_mentioned_types_evaluate_as_whole_ones(events: list[Any]) -> None:
    """A candidate's observation holds only what its pattern can read: the answers do not change."""
    from commonwatch.detect.analysis import mentioned_types
    from commonwatch.domain.patterns import parse_pattern

    patterns = [p for _, p, _ in _indicators(events, random.Random(3)) if "=" in p or "LIKE" in p]
    patterns += ["[network-traffic:src_ref.value = '172.17.0.2' AND network-traffic:dst_port = 53]",
                 "[EXISTS network-traffic:dst_ref.value]", "[ipv4-addr:value NOT LIKE '10.%']",
                 "[network-traffic:protocols[*] = 'udp' AND network-traffic:src_ref.value ISSUBSET "
                 "'172.16.0.0/12']", "[file:name LIKE '%.deb' OR domain-name:value LIKE '%.org']"]
    sample = random.Random(4).sample(events, 120)
    differ = agree = 0
    for pattern in patterns:
        compiled = compile_pattern(pattern)
        mentions = mentioned_types(parse_pattern(pattern).root)
        for kind, record in sample:
            whole = compiled.matches([build_observation(kind, record)])
            part = build_observation(kind, record, types=mentions)
            assert compiled.matches([part]) == whole, (pattern, kind.name)
            agree += whole
            differ += len(part.objects) < len(build_observation(kind, record).objects)
    assert agree > 20 and differ > 1000


_EVE_VALUES = st.sampled_from(["192.0.2.1", "198.51.100.7", "10.0.0.1", "evil.example", "a.evil.example",
                               "http://evil.example/x", "/x", "d41d8cd98f00b204e9800998ecf8427e", "é.example",
                               "DA:39:a3:ee:5e:6b:4b:0d:32:55:bf:ef:95:60:18:90:af:d8:07:09",
                               "", 80, 1.5, True, None, 2**70, ["192.0.2.1"], {"rrname": "evil.example"}])


def _eve_part(*keys: str) -> st.SearchStrategy[Any]:
    """An eve sub-object with the keys its fields read (often), or an odd value in its place."""
    hot = st.one_of(st.sampled_from(["evil.example", "a.evil.example", "/x", "http://evil.example/x",
                                     "d41d8cd98f00b204e9800998ecf8427e"]), _EVE_VALUES)
    queries = st.lists(st.one_of(st.fixed_dictionaries({"rrname": hot}), hot), max_size=2)
    values = {key: queries if key == "queries" else hot for key in keys}
    return st.one_of(st.fixed_dictionaries({}, optional={**values, "other": _EVE_VALUES}), _EVE_VALUES)


_EVE_RECORD = st.fixed_dictionaries({}, optional={
    "event_type": st.sampled_from(["dns", "http", "tls", "fileinfo", "alert"] * 3 + ["flow", "netflow", 5]),
    "src_ip": _EVE_VALUES, "dest_ip": _EVE_VALUES, "src_port": _EVE_VALUES, "proto": _EVE_VALUES,
    "dns": _eve_part("rrname", "queries"), "http": _eve_part("hostname", "url"),
    "tls": _eve_part("sni", "fingerprint"), "fileinfo": _eve_part("md5", "filename"),
    "timestamp": st.just("2026-01-01T00:00:00.000000+0000"), "noise": _eve_part("rrname")})


_ODD_EVE = [b"{oops\n", b"[1]\n", b"\n",
            b'{"event_type": "dns", "dns": {"rrname": "evil.example"}, "x": "\xff"}\n',
            b'{"event_type": "dns", "src_ip": "10.0.0.1", "dns": {"rrname": "evil.ex\\u0061mple"}}\n',
            b'{"event_type": "dns", "src_ip": "1.1.1.1", "dns": {"rrname": "x"}, '
            b'"dns": {"rrname": "evil.example"}}\n']
_EVE_INDICATORS = [
    ("ip", "[ipv4-addr:value = '192.0.2.1']"), ("dom", "[domain-name:value = 'evil.example']"),
    ("url", "[url:value = 'http://evil.example/x']"),
    ("md5", "[file:hashes.MD5 = 'd41d8cd98f00b204e9800998ecf8427e']"),
    ("like", "[domain-name:value LIKE '%.example']"),
    ("net", "[network-traffic:dst_ref.value ISSUBSET '198.51.100.0/24']"),
    ("seq", "[domain-name:value = 'evil.example'] FOLLOWEDBY [ipv4-addr:value = '10.0.0.1']"),
    ("port", "[network-traffic:src_port = 80]"),
    ("tls", "[x509-certificate:hashes.'SHA-1' = 'da39a3ee5e6b4b0d3255bfef95601890afd80709']")]


@settings(max_examples=300, deadline=None)
@given(st.lists(_EVE_RECORD, min_size=1, max_size=12), st.lists(st.sampled_from(_ODD_EVE), max_size=3))
def test_eve_projection_reads_what_the_whole_event_reads(records: list[dict[str, Any]],
                                                         odd: list[bytes]) -> None:
    """eve.json lines decoded for the probed fields only give the matches of whole events."""
    from commonwatch.formats.telemetry.suricata import SuricataEve

    iset, rejected = compile_indicators(KINDS, [(k, p, None) for k, p in _EVE_INDICATORS])
    assert rejected == []
    lines = [json.dumps(r, ensure_ascii=False).encode() + b"\n" for r in records] + odd
    fused, listed = SuricataEve().parser("t"), SuricataEve().parser("t")
    p_fused, p_listed = Problems(), Problems()
    found, count = fused.scan(iset, lines, 1, p_fused)
    events = listed(lines, 1, p_listed)
    assert count == len(events)
    assert [(m.key, m.positions, m.events) for m in found] == [
        (m.key, m.positions, m.events) for m in scan(iset, events)]
    assert (p_fused.counts, p_fused.skipped) == (p_listed.counts, p_listed.skipped)


def _scanned_as_whole_events(adapter: Any, patterns: list[str], lines: list[bytes]) -> dict[str, int]:
    """Scan ``lines`` with the adapter's projected loop and as whole events: the same matches.

    Returns how many times each pattern matched.
    """
    iset, rejected = compile_indicators(KINDS, [(f"i{n}", p, None) for n, p in enumerate(patterns)])
    assert rejected == []
    fused, listed = adapter.parser("t"), adapter.parser("t")
    total: dict[str, int] = {}
    for start in range(0, len(lines), 500):
        batch = lines[start:start + 500]
        found, count = fused.scan(iset, batch, start + 1, Problems())
        events = listed(batch, start + 1, Problems())
        assert count == len(events)
        assert [(m.key, m.positions, m.events) for m in found] == [
            (m.key, m.positions, m.events) for m in scan(iset, events)]
        for m in found:
            total[m.key] = total.get(m.key, 0) + 1
    return total


def test_eve_projection_on_real_shaped_events() -> None:
    """Real-shaped eve.json of every event type, many hits on every indexed field: same matches."""
    from commonwatch.formats.telemetry.suricata import SuricataEve

    rng = random.Random(9)
    ips = [f"203.0.113.{i}" for i in range(20)]
    domains = [f"host{i}.example.net" for i in range(20)]
    paths = [f"/p/{i}.bin" for i in range(10)]
    md5s = [f"{i:032x}" for i in range(10)]
    sha1s = [f"{i:040x}" for i in range(5)]
    lines = []
    for _ in range(3000):
        kind = rng.choice(["flow", "dns", "dns3", "http", "tls", "fileinfo", "alert"])
        ev: dict[str, Any] = {"timestamp": "2026-01-01T00:00:00.000000+0000",
                              "event_type": "dns" if kind == "dns3" else kind,
                              "src_ip": rng.choice(ips), "dest_ip": rng.choice(ips),
                              "src_port": rng.choice([80, 443, 5000]), "dest_port": 53, "proto": "TCP"}
        if kind in ("dns", "alert"):
            ev["dns"] = {"type": "query", "rrname": rng.choice(domains)}
        if kind == "dns3":
            ev["dns"] = {"version": 3, "queries": [{"rrname": rng.choice(domains)} for _ in range(2)]}
        if kind in ("http", "fileinfo", "alert"):
            ev["http"] = {"hostname": rng.choice(domains), "url": rng.choice(paths), "http_method": "GET"}
        if kind in ("tls", "alert"):
            digest = rng.choice(sha1s)
            ev["tls"] = {"sni": rng.choice(domains), "subject": "CN=x",
                         "fingerprint": ":".join(digest[i:i + 2] for i in range(0, 40, 2))}
        if kind in ("fileinfo", "alert"):
            ev["fileinfo"] = {"filename": "x.bin", "size": 10, "md5": rng.choice(md5s)}
        if kind == "flow":
            ev["flow"] = {"bytes_toserver": 10, "bytes_toclient": 20}
        lines.append(json.dumps(ev).encode() + b"\n")
    patterns = [f"[ipv4-addr:value = '{ip}']" for ip in ips[:3]]
    patterns += [f"[domain-name:value = '{d}']" for d in domains[:3]]
    patterns += [f"[url:value = 'http://{d}{p}']" for d in domains[5:8] for p in paths[:2]]
    patterns += [f"[file:hashes.MD5 = '{m}']" for m in md5s[:2]]
    patterns += [f"[x509-certificate:hashes.'SHA-1' = '{h}']" for h in sha1s[:1]]
    patterns += ["[domain-name:value LIKE 'host1_.%']",
                 "[network-traffic:dst_ref.value ISSUBSET '203.0.113.16/30']",
                 f"[domain-name:value = '{domains[9]}'] FOLLOWEDBY [ipv4-addr:value = '{ips[9]}']",
                 "[network-traffic:src_port = 5000 AND network-traffic:protocols[*] = 'tcp']"]
    total = _scanned_as_whole_events(SuricataEve(), patterns, lines)
    assert len(total) == len(patterns), total


@pytest.mark.parametrize(("with_path", "only_addresses"), [(True, False), (False, False), (False, True)])
def test_zeek_json_projection_on_real_shaped_records(with_path: bool, only_addresses: bool) -> None:
    """Zeek JSON of every log, with and without _path (the log guessed from its fields): same matches."""
    from commonwatch.formats.telemetry.zeek import ZeekLogs

    rng = random.Random(10)
    ips = [f"203.0.113.{i}" for i in range(20)]
    domains = [f"host{i}.example.net" for i in range(20)]
    md5s = [f"{i:032x}" for i in range(10)]
    lines = []
    for _ in range(3000):
        log = rng.choice(["conn", "dns", "http", "ssl", "files", "x509"])
        rec: dict[str, Any] = {"ts": 1767225600.5, "uid": "C1", "id.orig_h": rng.choice(ips),
                               "id.orig_p": rng.choice([53, 5000]), "id.resp_h": rng.choice(ips),
                               "id.resp_p": 53}
        if with_path:
            rec["_path"] = log
        if log == "conn":
            rec.update(proto=rng.choice(["tcp", "udp"]), service=rng.choice(["dns", "http,ssl", None]))
        elif log == "dns":
            rec.update(proto="udp", query=rng.choice(domains), answers=[rng.choice(ips), rng.choice(domains)])
        elif log == "http":
            rec.update(method="GET", host=rng.choice(domains), uri=rng.choice(["/a", "/b", "http://x.example/c"]))
        elif log == "ssl":
            rec.update(server_name=rng.choice(domains), cipher="TLS_AES_128_GCM_SHA256")
        elif log == "files":
            rec = {"ts": 1767225600.5, "fuid": "F1", "tx_hosts": [rng.choice(ips)],
                   "rx_hosts": [rng.choice(ips)], "md5": rng.choice(md5s), "mime_type": "text/plain",
                   **({"_path": log} if with_path else {})}
        else:
            rec = {"ts": 1767225600.5, "certificate.subject": "CN=x", "san.dns": [rng.choice(domains)],
                   "fingerprint": "ab" * 32, **({"_path": log} if with_path else {})}
        lines.append(json.dumps(rec).encode() + b"\n")
    patterns = [f"[ipv4-addr:value = '{ip}']" for ip in ips[:3]]
    patterns += [f"[domain-name:value = '{d}']" for d in domains[:3]]
    patterns += [f"[url:value = 'http://{domains[7]}/a']", "[url:value = 'http://x.example/c']",
                 f"[file:hashes.MD5 = '{md5s[1]}']", "[domain-name:value LIKE 'host1_.%']",
                 "[network-traffic:dst_ref.value ISSUBSET '203.0.113.16/30']",
                 "[network-traffic:protocols[*] = 'ssl']",
                 f"[domain-name:value = '{domains[9]}'] FOLLOWEDBY [ipv4-addr:value = '{ips[9]}']"]
    if only_addresses:  # the log is guessed from fields no probe reads
        patterns = patterns[:3]
    total = _scanned_as_whole_events(ZeekLogs(), patterns, lines)
    assert len(total) == len(patterns), total
