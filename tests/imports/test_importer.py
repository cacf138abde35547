"""Imports into a real database (SQLite and PostgreSQL): accounting, re-imports, CLI, API, TAXII.

What is imported must come back through TAXII to exactly the organisations the
visibility rule allows, like any object posted over TAXII.
"""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from taxii2client.v21 import Collection
from typer.testing import CliRunner

from commonwatch.cli.main import app
from commonwatch.domain.markings import TLP_MARKING_IDS, Tlp
from commonwatch.domain.visibility import is_visible
from commonwatch.domain.warninglists import load_warninglists
from commonwatch.formats.sources import DEFAULT_MAX_BYTES, expand
from commonwatch.services.importer import ImportService, ImportSummary
from commonwatch.services.query import ObjectFilter, VersionSelector
from imports.helpers import DATA, FROZEN_TIME

from conftest import count_rows
from support.factories import make_member

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
EVENT = "misp_event_phishing.json"


@pytest.fixture
def world(exchange):
    """Three members of one community: the importer (RED), a GREEN reader and an AMBER reader."""
    alice = make_member(exchange, "Alice Telecom")
    bob = make_member(exchange, "Bob CERT", sector="government")
    carol = make_member(exchange, "Carol Vendor", sector="vendor")
    exchange.admin.create_community("ops", "Operators", "", Tlp.AMBER)
    exchange.admin.set_membership(alice.org, "ops", True, True, Tlp.RED)
    exchange.admin.set_membership(bob.org, "ops", True, False, Tlp.GREEN)
    exchange.admin.set_membership(carol.org, "ops", True, True, Tlp.AMBER)
    return alice, bob, carol


def run_import(exchange, member, *paths: Path | str, fmt: str = "auto") -> ImportSummary:
    service = ImportService(exchange.ingest, exchange.query, load_warninglists(), batch_size=50)
    community = service.community(member.principal, "ops")
    ctx = service.context(member.principal, community, timestamp=FROZEN_TIME)
    return service.run(member.principal, community, list(expand([str(p) for p in paths])), fmt, ctx,
                       max_bytes=DEFAULT_MAX_BYTES)


def test_misp_event_is_accounted_for_record_by_record(exchange, world) -> None:
    alice, _, _ = world
    summary = run_import(exchange, alice, DATA / EVENT)
    assert summary.rejected == 3 and not summary.ok
    reasons = {r.position.rsplit(" ", 1)[-1]: r.reason for r in summary.rejections}
    assert "sharing group" in reasons["6553a0c0-0008-4a00-8000-000000000008"]
    assert all(r.source.endswith(EVENT) for r in summary.rejections)
    assert summary.stored == sum(c["stored"] for c in summary.by_type.values())
    assert summary.by_type["indicator"]["stored"] == 11 and summary.by_type["report"]["stored"] == 1
    lists = summary.hits_by_list()
    assert lists["public-dns-resolvers"] == 1 and lists["reserved-ip-ranges"] >= 3
    body = summary.to_json()
    assert body["rejected"] == 3 and body["warninglist_hits"]["count"] == len(summary.hits)


def test_reimport_creates_no_duplicates_and_no_versions(exchange, world) -> None:
    alice, _, _ = world
    first = run_import(exchange, alice, DATA / EVENT, DATA / "threat_report.txt", DATA / "indicators.csv")
    rows = count_rows(exchange, "stix_objects")
    again = run_import(exchange, alice, DATA / EVENT, DATA / "threat_report.txt", DATA / "indicators.csv")
    assert count_rows(exchange, "stix_objects") == rows
    assert again.stored == 0 and again.unchanged == first.stored + first.unchanged
    assert again.rejected == first.rejected


def test_same_observable_from_two_organisations_is_one_object(exchange, world) -> None:
    alice, _, carol = world
    run_import(exchange, alice, DATA / "indicators.csv")
    run_import(exchange, carol, DATA / "indicators.csv")
    page = exchange.query.manifest(alice.principal, exchange.admin.get_community("ops").collection_id,
                                   ObjectFilter(types=("ipv4-addr",), limit=1000))
    ids = [r.stix_id for r in page.rows]
    assert len(set(ids)) == 2  # 203.0.113.77 and 10.0.0.0/8: one id each
    assert len(ids) == len(set(ids))  # identical content from both: one version


def test_stix_bundles_keep_their_content_and_get_signed(exchange, world) -> None:
    alice, _, _ = world
    summary = run_import(exchange, alice, DATA / "stix20_poison_ivy_bundle.json")
    assert summary.rejected == 1 and "pattern" in summary.rejections[0].reason
    assert summary.rejections[0].position == "object 8"
    cid = exchange.admin.get_community("ops").collection_id
    page = exchange.query.objects(alice.principal, cid, ObjectFilter(ids=(
        "indicator--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f",
        "relationship--44298a74-ba52-4f0c-87a3-1824e67d7fad")))
    objs = [json.loads(r.raw) for r in page.rows]
    # the bundle names its (non-member) producer, which is kept
    assert {o["created_by_ref"] for o in objs} == {"identity--f431f809-377b-45e0-aa1c-6a4751cae5ff"}
    hits = {h.id for h in summary.hits}
    assert "indicator--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f" in hits  # 198.51.100.3 is a documentation range


def test_bad_inputs_never_abort_and_are_listed(exchange, world, tmp_path) -> None:
    alice, _, _ = world
    tmp_path = tmp_path / "inputs"
    tmp_path.mkdir()
    (tmp_path / "broken.json").write_text('{"type": "bundle", "objects": [{"type": "indicator"')
    (tmp_path / "report.txt.gz").write_bytes(gzip.compress(b"beacon to evil-c2[.]top\n"))
    (tmp_path / "zero.txt").write_text("")
    summary = run_import(exchange, alice, tmp_path)
    assert summary.by_type["indicator"]["stored"] == 1  # the gzip text went in
    where = {Path(r.source).name: r.reason for r in summary.rejections}
    assert "not valid JSON" in where["broken.json"]


def test_imported_objects_reach_exactly_the_right_organisations(exchange, world) -> None:
    """The visibility rule holds for every imported object version, for every member.

    The reference reads the table directly (producer, raw JSON) and applies the rule of
    docs/sharing-model.md to the markings in the JSON; the system under test is the
    query service every read path uses.
    """
    alice, bob, carol = world
    run_import(exchange, alice, DATA / EVENT)
    run_import(exchange, carol, DATA / "threat_report.txt")
    run_import(exchange, carol, DATA / "indicators.csv")
    run_import(exchange, carol, DATA / "misp_feed")  # TLP:CLEAR events: Bob sees these
    cid = exchange.admin.get_community("ops").collection_id
    with exchange.engine.connect() as conn:
        stored = conn.execute(
            sa.text("SELECT stix_id, version_us, producer_org_id, raw FROM stix_objects")).all()
    assert len(stored) > 60
    for member in (alice, bob, carol):
        _, clearance = exchange.query.collection(member.principal, cid)
        every = ObjectFilter(limit=10_000, versions=VersionSelector(last=False, all=True))
        page = exchange.query.manifest(member.principal, cid, every)
        seen = {(r.stix_id, r.version_us) for r in page.rows}
        expected = {(sid, version) for sid, version, producer, raw in stored
                    if is_visible(clearance, producer, _tlp(json.loads(raw), producer), frozenset())}
        assert seen == expected, member.org
        assert len(seen) > 20
    # spot checks: the distribution-0 indicator is Alice's alone; Bob (GREEN) sees no AMBER report
    secret = "indicator--6553a0c0-0006-4a00-8000-000000000006"
    assert secret in {o["id"] for o in _objects(exchange, alice, cid)}
    assert secret not in {o["id"] for o in _objects(exchange, carol, cid)}
    bob_sees = {o["id"] for o in _objects(exchange, bob, cid)}
    assert "report--6553a0c0-1c2d-4e5f-8a9b-0c1d2e3f4a5b" not in bob_sees


def _objects(exchange, member, cid: str) -> list[dict[str, Any]]:
    page = exchange.query.objects(member.principal, cid, ObjectFilter(limit=10_000))
    return [json.loads(r.raw) for r in page.rows]


def _tlp(obj: dict[str, Any], producer: int | None) -> Tlp:
    if producer is None:  # what the exchange itself publishes in every community
        return Tlp.CLEAR
    levels = [TLP_MARKING_IDS[m] for m in obj.get("object_marking_refs", []) if m in TLP_MARKING_IDS]
    return max(levels) if levels else Tlp.AMBER  # the community default


# -- the command line ---------------------------------------------------------------------------
@pytest.fixture
def cli(database_url):
    runner = CliRunner()

    def run(*args: str, code: int = 0, stdin: bytes | None = None) -> str:
        result = runner.invoke(app, ["--database-url", database_url, "import", *args], input=stdin)
        assert result.exit_code == code, result.output
        return result.output

    return run


def test_cli_exit_codes_summary_and_stdin(cli, world, tmp_path) -> None:
    alice, _, _ = world
    user = ["--community", "ops", "--user", alice.user]
    clean = tmp_path / "clean.csv"
    clean.write_text("value,type\nbad.example.com,domain\n")
    out = cli(*user, str(clean))
    assert "2 stored, 0 unchanged, 0 rejected" in out
    out = cli(*user, str(DATA / EVENT), code=2)
    assert "3 records rejected" in out and "sharing group" in out and "public-dns-resolvers" in out
    out = cli(*user, "--format", "text", "--json", "-", stdin=b"C2: hxxp://evil-c2[.]top/x\n")
    body = json.loads(out)
    assert body["ok"] and body["stored"] == 2 and body["inputs"] == ["<stdin>"]
    feed = tmp_path / "feed"
    shutil.copytree(DATA / "misp_feed", feed)
    out = cli(*user, str(feed), code=2)
    assert "not in the feed" in out
    out = cli(*user, "--format", "xml", str(clean), code=2)
    out = cli("--community", "nowhere", "--user", alice.user, str(clean), code=3)
    assert "no community 'nowhere'" in out
    out = cli(*user, str(tmp_path / "missing.json"), code=2)
    assert "no such file or directory" in out


# -- the JSON API ------------------------------------------------------------------------------
def test_api_import_is_authenticated_limited_and_answers_the_summary(live_server, world) -> None:
    alice, bob, _ = world
    url = f"{live_server.url}/api/import"
    body = (DATA / "indicators.csv").read_bytes()
    assert httpx.post(url, params={"community": "ops"}, content=body).status_code == 401
    answer = httpx.post(url, params={"community": "ops", "format": "csv", "name": "indicators.csv"},
                        content=body, auth=(alice.user, alice.token))
    assert answer.status_code == 200, answer.text
    summary = answer.json()
    assert summary["ok"] is False and summary["rejected"] == 5 and summary["stored"] > 10
    assert summary["rejections"][0]["source"] == "indicators.csv"
    assert summary["rejections"][0]["position"] == "line 11"
    # Bob may read the community but not write to it
    refused = httpx.post(url, params={"community": "ops"}, content=body, auth=(bob.user, bob.token))
    assert refused.status_code == 404
    bad = httpx.post(url, params={"community": "ops", "format": "xml"}, content=body,
                     auth=(alice.user, alice.token))
    assert bad.status_code == 400 and "unknown format" in bad.text


def test_round_trip_through_taxii(live_server, exchange, world) -> None:
    alice, bob, carol = world
    run_import(exchange, alice, DATA / EVENT)
    cid = exchange.admin.get_community("ops").collection_id
    url = f"{live_server.url}/taxii2/api/collections/{cid}/"

    def ids(member) -> set[str]:
        coll = Collection(url, user=member.user, password=member.token)
        return {o["id"] for o in coll.get_objects().get("objects", [])}

    report = "report--6553a0c0-1c2d-4e5f-8a9b-0c1d2e3f4a5b"
    amber_file = "indicator--6553a0c0-000e-4a00-8000-00000000000e"
    secret = "indicator--6553a0c0-0006-4a00-8000-000000000006"
    assert {report, amber_file, secret} <= ids(alice)
    assert report in ids(carol) and amber_file in ids(carol) and secret not in ids(carol)
    assert not {report, amber_file, secret} & ids(bob)
