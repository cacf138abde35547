"""The shortcuts exports take on their hot path give the answers of the general code.

Each shortcut (host of a URL without ``urlsplit``, RPZ triggers without ``ipaddress``,
warninglist verdicts remembered per value, Suricata bodies built once per object,
communities merged from plain row batches) is checked against the code it replaces.
"""

from __future__ import annotations

import csv
import io
import ipaddress
import re
from urllib.parse import urlsplit

import idstools.rule
from hypothesis import given, settings
from hypothesis import strategies as st

from commonwatch.domain.markings import Tlp
from commonwatch.domain.warninglists import _SIMPLE_URL, Warninglist, Warninglists
from commonwatch.formats import rpz
from commonwatch.services.query import ExportFilter, _merge_communities

from support.factories import indicator, ipv4, make_member

URL_CHARS = "abcXYZ019.-_:/?#@[]%+ \t\n\x01é"


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["http", "HTTPS", "ftp", "h2+x", "1a", ""]), st.sampled_from(["://", ":/", "//", ":"]),
       st.text(URL_CHARS, max_size=30))
def test_simple_url_host_is_what_urlsplit_says(scheme, sep, rest):
    url = scheme + sep + rest
    match = _SIMPLE_URL.fullmatch(url)
    if match is not None:
        assert urlsplit(url).hostname == match[1].lower()


def _reference_url_hits(lists: Warninglists, url: str) -> tuple[str, ...]:
    """``Warninglists._url_hits`` as written before the shortcut: always ``urlsplit``."""
    exact = lists._exact["url"].get(url.strip(), ())
    try:
        host = urlsplit(url.strip()).hostname or ""
    except ValueError:
        return exact
    if not host:
        return exact
    if ":" in host:
        by_host = lists.hits("ipv6-addr", host)
    elif host.replace(".", "").isdigit():
        by_host = lists.hits("ipv4-addr", host)
    else:
        by_host = lists._domain_hits(host.strip().rstrip(".").lower())
    return tuple(sorted({*exact, *by_host})) if by_host else exact


LISTS = Warninglists([(
    Warninglist("t", "test list", "tests", "CC0", "t.json"),
    {"domain-name": ["example.com", "cdn.example.net"], "ipv4-addr": ["192.0.2.0/24"],
     "ipv6-addr": ["2001:db8::/32"], "url": ["http://exact.example.org/x"]},
)])
URLS = ["http://Example.COM/a", "https://sub.example.com:8443/?q=1", "http://exact.example.org/x",
        "http://192.0.2.7/p", "http://[2001:db8::1]/", "http://user@example.com/", "http://example.com.",
        "ftp://cdn.example.net#frag", "http://other.org/\texample.com", " http://example.com/ ",
        "http://exa\tmple.com/", "mailto:x@example.com", "http://[::1/", "HTTP://CDN.EXAMPLE.NET:80"]


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.sampled_from(URLS),
                 st.builds(lambda a, b: a + b, st.sampled_from(URLS), st.text(URL_CHARS, max_size=8))))
def test_url_hits_equal_the_urlsplit_reading(url):
    assert LISTS.hits("url", url) == _reference_url_hits(LISTS, url)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["ipv4-addr", "domain-name", "ipv6-addr", "url"]),
       st.one_of(st.ip_addresses(v=4).map(str), st.ip_addresses(v=6).map(str),
                 st.sampled_from(["example.com", "a.b.Example.COM.", "cdn.example.net", "net", "xexample.com",
                                  "192.0.2.9", "192.0.2.0/25", "192.0.3.0/24", "2001:db8::/48",
                                  "http://exact.example.org/x", "http://a.example.com/"])))
def test_canonical_hits_equal_hits_of_normalised_values(kind, value):
    """Exports screen the index's normalised values without normalising them again."""
    from commonwatch.domain.observables import normalise

    observable = normalise(kind, value)
    if observable is not None:
        assert LISTS.canonical_hits(*observable) == LISTS.hits(*observable)


def _reference_trigger(value: str) -> str:
    net = ipaddress.ip_network(value, strict=False)
    return f"{net.prefixlen}.{'.'.join(reversed(str(net.network_address).split('.')))}.rpz-ip"


@settings(max_examples=300, deadline=None)
@given(st.ip_addresses(v=4), st.none() | st.integers(0, 32))
def test_rpz_trigger_of_canonical_values(address, prefix):
    value = str(address) if prefix is None else f"{address}/{prefix}"
    assert rpz._trigger(value) == _reference_trigger(value)


def test_rpz_trigger_of_other_spellings_falls_back():
    for value in ("10.1.2.3/08", "10.0.0.0/8"):
        assert rpz._trigger(value) == _reference_trigger(value)
    assert rpz._canonical_trigger("010.1.2.3") is None  # ipaddress decides (and refuses)


def test_merge_of_community_batches():
    """Id order, newest version first, one row per id, the first community on a tie."""
    a = iter([("a", [("id1", 5, "a1"), ("id3", 1, "a3")]), ("a", [("id4", 2, "a4")])])
    b = iter([("b", [("id1", 7, "b1"), ("id2", 1, "b2"), ("id3", 1, "b3"), ("id4", 2, "b4")])])
    merged = list(_merge_communities([a, b], batch=2))
    assert merged == [("b", [("id1", 7, "b1"), ("id2", 1, "b2")]),
                      ("a", [("id3", 1, "a3"), ("id4", 2, "a4")])]


def _reference_merge(streams, batch):
    """The merge as written before runs were sliced out: ``heapq.merge`` row by row."""
    import heapq

    def flat(stream):
        for name, rows in stream:
            for row in rows:
                yield name, row

    previous = current = None
    out: list = []
    for name, row in heapq.merge(*map(flat, streams), key=lambda nr: (nr[1][0], -nr[1][1])):
        if row[0] == previous:
            continue
        previous = row[0]
        if name != current or len(out) >= batch:
            if out:
                yield current, out
            current, out = name, []
        out.append(row)
    if out:
        yield current, out


@settings(max_examples=300, deadline=None)
@given(st.lists(st.dictionaries(st.integers(0, 30), st.integers(0, 3), max_size=25), min_size=1, max_size=4),
       st.lists(st.integers(1, 6), min_size=1, max_size=8), st.integers(1, 7))
def test_merge_in_runs_equals_the_row_by_row_merge(communities, splits, batch):
    def streams():
        out = []
        for n, rows in enumerate(communities):
            ordered = [(f"id{i:02d}", version, f"c{n}") for i, version in sorted(rows.items())]
            chunks, at = [], 0
            for k in range(len(ordered) + 1):
                size = splits[(n + k) % len(splits)]
                if at >= len(ordered):
                    break
                chunks.append((f"c{n}", ordered[at:at + size]))
                at += size
            out.append(iter(chunks))
        return out

    assert list(_merge_communities(streams(), batch)) == list(_reference_merge(streams(), batch))


def test_repeated_listed_value_is_counted_each_time(exchange, svc):
    """Verdicts are remembered per value, but every object holding the value counts."""
    p = make_member(exchange, "Prod")
    exchange.admin.create_community("ring", default_tlp=Tlp.GREEN)
    exchange.admin.set_membership("Prod", "ring", True, True, Tlp.RED)
    cid = exchange.admin.get_community("ring").collection_id
    objs = [indicator("10.0.0.1") for _ in range(3)] + [indicator("45.77.9.9") for _ in range(2)]
    objs.append({**indicator(), "pattern": "[ipv4-addr:value = '10.0.0.1' OR ipv4-addr:value = '45.77.9.8']"})
    assert not exchange.ingest.add_objects(p.principal, cid, objs).failures
    for _ in range(2):
        export = svc.export(p.principal, "csv", ExportFilter())
        rows = list(csv.DictReader(io.StringIO("".join(export.chunks))))
        assert sorted(r["value"] for r in rows) == ["45.77.9.8", "45.77.9.9", "45.77.9.9"]
        assert export.stats.skipped["value on a warninglist (value left out)"] == 4
        assert export.stats.skipped["every value of the object is on a warninglist"] == 3
        listed = svc.export(p.principal, "csv", ExportFilter(include_warninglisted=True))
        rows = list(csv.DictReader(io.StringIO("".join(listed.chunks))))
        # The lists an object hits are named on each of its rows: 3 + both rows of the OR.
        assert sum(1 for r in rows if r["warninglists"] == "private-ip-ranges") == 5


def test_suricata_rule_with_braces_in_the_name(exchange, svc):
    """Names are free text: braces reach ``msg`` as written (no template expansion)."""
    p = make_member(exchange, "Prod")
    exchange.admin.create_community("ring", default_tlp=Tlp.GREEN)
    exchange.admin.set_membership("Prod", "ring", True, True, Tlp.RED)
    cid = exchange.admin.get_community("ring").collection_id
    objs = [indicator("45.77.1.1", name="C2 {x} {{y}} {}"), indicator("45.77.1.2", name="a {")]
    assert not exchange.ingest.add_objects(p.principal, cid, objs).failures
    text = "".join(svc.export(p.principal, "suricata-rules", ExportFilter()).chunks)
    parsed = [idstools.rule.parse(line) for line in text.splitlines()]
    assert sorted(r.msg.rsplit(": ", 1)[1] for r in parsed) == ["C2 {x} {{y}} {}", "a {"]
    assert all(r.sid > 1_000_000_000 and r.rev == 1 for r in parsed)


def test_unexplained_export_has_the_same_output(exchange, svc):
    """``explain=False`` (pull feeds) skips only the reasons, never a line of output."""
    p = make_member(exchange, "Prod")
    exchange.admin.create_community("ring", default_tlp=Tlp.GREEN)
    exchange.admin.set_membership("Prod", "ring", True, True, Tlp.RED)
    cid = exchange.admin.get_community("ring").collection_id
    objs = [indicator("45.77.2.1"), indicator("10.0.0.2"),
            {**indicator(), "pattern": "[file:name = 'x.exe']"},
            {**indicator(), "pattern": "[ipv4-addr:value = '45.77.2.3' AND ipv4-addr:value = '45.77.2.4']"}]
    assert not exchange.ingest.add_objects(p.principal, cid, objs).failures
    for fmt in ("plain-ip", "csv", "stix"):
        full = svc.export(p.principal, fmt, ExportFilter())
        quick = svc.export(p.principal, fmt, ExportFilter(), explain=False)
        bundle_id = re.compile(r"bundle--[0-9a-f-]{36}")  # a new uuid per export
        assert bundle_id.sub("", "".join(full.chunks)) == bundle_id.sub("", "".join(quick.chunks))
        assert (full.stats.objects_read, full.stats.objects_exported) == (
            quick.stats.objects_read, quick.stats.objects_exported)
        assert full.stats.skipped.total() == quick.stats.skipped.total()
    assert full.stats.skipped == quick.stats.skipped  # stix: objects are kept whole
    full = svc.export(p.principal, "csv", ExportFilter())
    quick = svc.export(p.principal, "csv", ExportFilter(), explain=False)
    assert "".join(full.chunks) == "".join(quick.chunks)
    assert full.stats.skipped["pattern tests a property exports cannot use"] == 1
    assert full.stats.skipped["pattern is not an equality or IN over single values"] == 1
    assert quick.stats.skipped["object states no exportable value"] == 2
    assert full.stats.skipped["every value of the object is on a warninglist"] == 1
    assert quick.stats.skipped["every value of the object is on a warninglist"] == 1


def _item_from_json(item, obj):
    """What an export item says when read from the object's JSON (the reference the
    export columns are checked against): an SCO's (or an unversioned custom object's)
    ``created``, ``modified``, ``confidence`` are custom properties that mean nothing;
    only an indicator has a ``valid_until``."""
    from commonwatch.domain.observables import ExportItem

    kind = obj.get("type")
    versioned = kind == "indicator" or (kind != "ipv4-addr" and ("created" in obj or "modified" in obj))
    name, labels, created = obj.get("name"), obj.get("indicator_types"), obj.get("created", "")
    confidence = obj.get("confidence")
    return ExportItem(
        item.stix_id, "", name.replace("\x00", "\ufffd") if isinstance(name, str) else "", item.tlp,
        item.community, item.producer,
        confidence if versioned and type(confidence) is int and 0 <= confidence <= 100 else None,
        _as_text(created) if versioned else "", _as_text(obj.get("modified", created)) if versioned else "",
        obj.get("valid_until") if kind == "indicator" else None,
        tuple(x for x in labels if isinstance(x, str)) if isinstance(labels, list) else (),
        item.observables, item.raw, item.warninglists, item.version_us, item.row_id, item.added_us)


def _as_text(value):
    return "" if value is None else value if isinstance(value, str) else str(value)


def test_formats_read_from_the_columns_what_the_json_says(exchange, svc, monkeypatch):
    """Formats print what the export columns hold, never decoding the JSON: their output
    is what the same items read from the objects' JSON give."""
    from commonwatch.services import export as export_module

    p = make_member(exchange, "Prod")
    exchange.admin.create_community("ring", default_tlp=Tlp.GREEN)
    exchange.admin.set_membership("Prod", "ring", True, True, Tlp.RED)
    cid = exchange.admin.get_community("ring").collection_id
    objs = [indicator("45.77.3.1", confidence=90, valid_until="2099-01-01T00:00:00.5Z"),
            indicator("45.77.3.0/24"), indicator("10.0.0.3"),
            {**indicator(), "name": "a \"quoted\", name;\nwith lines",
             "indicator_types": ["anonymization", "benign"],
             "pattern": "[domain-name:value = 'evil.example.org' OR url:value = 'http://evil.example.org/x']"},
            {**indicator(), "pattern": "[file:hashes.MD5 = '0123456789abcdef0123456789abcdef']"},
            {**indicator("45.77.3.2"), "revoked": True},
            ipv4("45.77.3.9")]
    objs[1]["modified"] = "2026-01-02T03:04:05.123456Z"
    assert not exchange.ingest.add_objects(p.principal, cid, objs).failures
    by_id = {o["id"]: o for o in objs}
    seen: list = []
    real = export_module.column_item

    def spy(*args, **kwargs):
        item = real(*args, **kwargs)
        seen.append(item)
        return item

    monkeypatch.setattr(export_module, "column_item", spy)
    for fmt in sorted(export_module.NAMED | export_module.LABELLED):
        seen.clear()
        flt = ExportFilter(types=("indicator", "ipv4-addr"), include_warninglisted=True)
        out = "".join(svc.export(p.principal, fmt, flt).chunks)
        assert len(seen) == 6, fmt  # the revoked one is left out
        reference = [_item_from_json(item, by_id[item.stix_id]) for item in seen]
        # formats that print no times, or no labels, do not even read them
        expected = [r if fmt in export_module.TIMED else r._replace(created="", modified="", valid_until=None)
                    for r in reference]
        expected = [r if fmt in export_module.LABELLED else r._replace(labels=()) for r in expected]
        expected = [r if fmt in export_module.NAMED else r._replace(name="") for r in expected]
        assert seen == expected, fmt
        again = svc._render(fmt, iter(reference), export_module.ExportStats(), export_module.DEFAULT_OPTIONS)
        uuids = re.compile(r'"uuid":"[0-9a-f-]{36}","date"|"timestamp":"\d+","thr')  # the event's own
        assert uuids.sub("", "".join(again)) == uuids.sub("", out), fmt
    assert '"a ""quoted"", name;' in "".join(svc.export(p.principal, "csv", flt).chunks)


def test_stored_verdicts_give_the_live_answers_and_only_under_their_lists(exchange, svc, tmp_path):
    """Ingest stores each version's warninglist verdicts with the digest of the lists;
    an export uses them only when it has the same lists loaded."""
    import json

    import sqlalchemy as sa

    from commonwatch.services.export import ExportService
    from commonwatch.storage.db import session_factory

    p = make_member(exchange, "Prod")
    exchange.admin.create_community("ring", default_tlp=Tlp.GREEN)
    exchange.admin.set_membership("Prod", "ring", True, True, Tlp.RED)
    cid = exchange.admin.get_community("ring").collection_id
    objs = [indicator("45.77.4.1"), indicator("10.0.0.4"), indicator("8.8.8.8"),
            {**indicator(), "pattern": "[ipv4-addr:value = '10.0.0.5' OR ipv4-addr:value = '45.77.4.2' "
                                       "OR domain-name:value = 'www.google.com']"}]
    assert not exchange.ingest.add_objects(p.principal, cid, objs).failures
    with exchange.engine.connect() as conn:
        stored = dict(conn.execute(sa.text(
            "SELECT stix_id, export_listed FROM stix_objects WHERE type = 'indicator' "
            "AND listed_stamp IS NOT NULL")).all())
    assert set(stored) == {o["id"] for o in objs}
    assert stored[objs[0]["id"]] is None and "private-ip-ranges" in stored[objs[1]["id"]]
    assert json.loads(stored[objs[3]["id"]])[1] == []  # one verdict per value, in order

    def outputs(service, live):
        if live:
            service._stamp = lambda: -1
        out = {}
        for fmt, flt in (("plain-ip", ExportFilter()), ("csv", ExportFilter()),
                         ("csv", ExportFilter(include_warninglisted=True)), ("stix", ExportFilter())):
            export = service.export(p.principal, fmt, flt)
            text = re.sub(r"bundle--[0-9a-f-]{36}", "", "".join(export.chunks))
            out[fmt, flt.include_warninglisted] = (text, export.stats)
        return out

    assert svc._stamp() != -1
    live = ExportService(session_factory(exchange.engine), exchange.query,
                         warninglists=lambda: exchange.warninglists)
    assert outputs(svc, live=False) == outputs(live, live=True)
    assert sorted("".join(svc.export(p.principal, "plain-ip", ExportFilter()).chunks).split()) == [
        "45.77.4.1", "45.77.4.2"]
    # Other lists (an operator list added): the stored verdicts no longer apply.
    (tmp_path / "l.json").write_text(json.dumps({"name": "n", "description": "d", "source": "s",
                                                 "licence": "l", "values": {"ipv4-addr": ["45.77.4.1"]}}))
    other = ExportService(session_factory(exchange.engine), exchange.query, warninglist_dirs=[tmp_path])
    assert other._stamp() == -1
    assert "".join(other.export(p.principal, "plain-ip", ExportFilter()).chunks).split() == ["45.77.4.2"]


def test_restamped_verdicts_follow_the_lists_now_loaded(exchange, tmp_path):
    """After the lists change, restamping stores their verdicts; exports read them."""
    import json

    from commonwatch.domain.warninglists import load_warninglists
    from commonwatch.services.export import ExportService
    from commonwatch.services.ingest import IngestService
    from commonwatch.storage.db import session_factory

    p = make_member(exchange, "Prod")
    exchange.admin.create_community("ring", default_tlp=Tlp.GREEN)
    exchange.admin.set_membership("Prod", "ring", True, True, Tlp.RED)
    cid = exchange.admin.get_community("ring").collection_id
    objs = [indicator("45.77.5.1"), indicator("45.77.5.2"), indicator("10.0.0.6")]
    assert not exchange.ingest.add_objects(p.principal, cid, objs).failures
    (tmp_path / "l.json").write_text(json.dumps({"name": "ours", "description": "d", "source": "s",
                                                 "licence": "l", "values": {"ipv4-addr": ["45.77.5.1"]}}))
    lists = load_warninglists([tmp_path])
    sessions = session_factory(exchange.engine)
    ingest = IngestService(sessions, exchange.query, warninglists=lambda: lists)
    export = ExportService(sessions, exchange.query, warninglists=lambda: lists)
    before = export.export(p.principal, "plain-ip", ExportFilter())
    assert export._stamp() == -1 and "".join(before.chunks).split() == ["45.77.5.2"]
    changed = ingest.restamp_verdicts(batch=2)
    assert changed >= 3 and ingest.restamp_verdicts() == 0  # done once
    assert export._stamp() != -1
    after = export.export(p.principal, "plain-ip", ExportFilter(include_warninglisted=True))
    text = "".join(after.chunks)
    assert sorted(text.split()) == ["10.0.0.6", "45.77.5.1", "45.77.5.2"]
    listed = export.export(p.principal, "csv", ExportFilter(include_warninglisted=True))
    rows = {r["value"]: r["warninglists"] for r in csv.DictReader(io.StringIO("".join(listed.chunks)))}
    assert rows["45.77.5.1"] == "ours" and rows["45.77.5.2"] == ""
    assert "private-ip-ranges" in rows["10.0.0.6"]


CSV_CHARS = 'ab ,"\r\n\t;=+-@\x00é\u2028'


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(CSV_CHARS, max_size=8), min_size=2, max_size=13))
def test_csv_lines_are_what_csv_writer_writes(cells):
    from commonwatch.formats import csv_export

    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerow(cells)
    assert csv_export.line(cells) == buffer.getvalue()


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.text(CSV_CHARS, max_size=6), st.text(CSV_CHARS, max_size=6),
                          st.lists(st.text(CSV_CHARS, max_size=5), max_size=2),
                          st.lists(st.text(CSV_CHARS, min_size=1, max_size=6), min_size=1, max_size=3),
                          st.tuples(st.text(CSV_CHARS, max_size=5), st.text(CSV_CHARS, max_size=5),
                                    st.text(CSV_CHARS, max_size=5), st.text(CSV_CHARS, max_size=5)),
                          st.none() | st.integers(0, 100)),
                max_size=4))
def test_csv_export_is_what_csv_writer_writes(objects):
    """Whole exports, each line written whole and checked once: equal to csv.writer
    row by row, every text cell guarded against formulas."""
    from commonwatch.domain.observables import ExportItem, Observable
    from commonwatch.formats import csv_export

    items = [ExportItem(f"indicator--{n}", "indicator", name, int(Tlp.GREEN), community, producer, confidence,
                        created, modified, until or None, tuple(labels),
                        tuple(Observable("url", v) for v in values), b"", ("lists",) if n % 2 else ())
             for n, (name, producer, labels, values, (community, created, modified, until), confidence)
             in enumerate(objects)]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(csv_export.COLUMNS)
    guard = csv_export._cell
    for item in items:
        for _, value in item.observables:
            writer.writerow([guard(value), "url", item.stix_id, guard(item.name), "TLP:GREEN",
                             guard(item.community),
                             guard(item.producer), "" if item.confidence is None else item.confidence,
                             guard(item.created), guard(item.modified), guard(item.valid_until or ""),
                             guard(";".join(item.labels)), ";".join(item.warninglists)])
    assert "".join(csv_export.render(items)) == buffer.getvalue()


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40))
def test_misp_attribute_uuids_are_uuid5(name):
    import uuid

    from commonwatch.formats import misp_export

    assert misp_export.attribute_uuid(name) == str(uuid.uuid5(misp_export._NAMESPACE, name))


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-2**63, 2**63 - 1) | st.floats(allow_nan=False)
    | st.text(max_size=8), lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.text(max_size=4), inner, max_size=3), max_leaves=6)
#: Properties of a validated object (its ``type`` a string: validation checks that first).
HEAD_KEYS = ["name", "confidence", "created", "modified", "valid_until", "indicator_types", "labels", "id"]


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(st.sampled_from(HEAD_KEYS) | st.text(max_size=4).filter(lambda k: k != "type"),
                       JSON_VALUES, max_size=8),
       st.sampled_from(["indicator", "ipv4-addr", "x-custom", None]))
def test_items_from_the_export_columns_equal_items_from_the_whole_object(obj, kind):
    """Whatever a stored object holds, the item built from the columns ingest writes for
    it says what its JSON says (times as text, never a crash)."""
    from commonwatch.domain.indexing import indexed

    if kind is not None:
        obj = {**obj, "type": kind}
    from commonwatch.domain.observables import ExportItem
    from commonwatch.services.export_rows import column_item

    facts = indexed(obj).facts
    item = column_item("indicator--x", 1, "ring", "Prod", facts.confidence, (), (), 5, b"{}",
                       facts.name, facts.labels, facts.times)
    expected = _item_from_json(ExportItem("indicator--x", "", "", 1, "ring", "Prod", None, "", "", None, (),
                                          (), b"{}", (), 5), obj)
    until = expected.valid_until
    until = None if until is None else (until if isinstance(until, str) else str(until)).replace("\n", " ")
    assert item == expected._replace(
        created=expected.created.replace("\n", " ").replace("\x00", "\ufffd"),
        modified=expected.modified.replace("\n", " ").replace("\x00", "\ufffd"),
        valid_until=None if not until else until.replace("\x00", "\ufffd"))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.text(max_size=12), st.sampled_from(["ipv4-addr", "url", "md5", "email-addr"]),
                          st.text(max_size=12), st.sampled_from([0, 1, 2, 3, 4])), max_size=5))
def test_misp_attributes_are_what_orjson_writes_of_their_dicts(objects):
    """The MISP export writes each attribute from shared fragments: the JSON is exactly
    orjson's of the attribute as a dict."""
    import orjson

    from commonwatch.domain.observables import ExportItem, Observable
    from commonwatch.formats import misp_export

    items = [ExportItem(f"indicator--{n}", "", name, tlp, "ring", "Prod", None, "", "", None, (),
                        (Observable(kind, value),), b"", (), 1_767_225_600_123_456 + n)
             for n, (name, kind, value, tlp) in enumerate(objects)]
    text = "".join(misp_export.render(items, "event-uuid", 1_767_225_600, "info"))
    expected = [{"uuid": i.stix_id.partition("--")[2],
                 "type": misp_export._TYPES[o.kind][0], "category": misp_export._TYPES[o.kind][1],
                 "to_ids": True, "value": o.value, "comment": f"{i.stix_id} {i.name}".strip()[:1000],
                 "timestamp": str(i.version_us // 1_000_000), "distribution": "5",
                 "Tag": misp_export._TAGS[i.tlp]} for i in items for o in i.observables]
    assert text.endswith(orjson.dumps(expected).decode()[1:] + "}}\n")
