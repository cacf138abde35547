"""Adversarial tests of feed redefinition (``PUT /api/feeds/{name}``, ``commonwatch feed
update``) and of the Suricata sids remembered per stored row under a rule context
(``RuleContext``: TLP, community and producer names, warninglists, schema revision, the
rule writer's fingerprint), on both backends.

Feeds are driven only over HTTP (TestClient on ``create_app``) and the CLI; exports
through ``exchange.export.export``. Every Suricata output goes through a :class:`Ledger`
holding what a sensor relies on: no sid twice in one output, one text per (sid, rev) over
every output, one sid per (STIX id, match).
"""

from __future__ import annotations

import contextlib
import json
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from typer.testing import CliRunner

from commonwatch.cli.main import app as cli_app
from commonwatch.domain.markings import Tlp
from commonwatch.errors import ConfigError
from commonwatch.formats import suricata
from commonwatch.services.exchange import Exchange
from commonwatch.services.export import ExportService
from commonwatch.services.export_filters import build_filter
from commonwatch.services.query import ExportFilter
from commonwatch.storage import sids as sids_repo
from commonwatch.storage.db import session_factory
from commonwatch.storage.models import StixObject
from commonwatch.web.app import create_app

from support.factories import indicator, make_member
from support.suricata import Ledger

OBJECTS = StixObject.__tablename__


# -- the world --------------------------------------------------------------------------------

@dataclass
class World:
    ex: Exchange
    client: TestClient
    tokens: dict[str, str]
    users: dict[str, str]
    cids: dict[str, str]

    def auth(self, who: str = "bee") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}

    def principal(self, who: str = "bee") -> Any:
        return self.ex.auth.principal_for_user(self.users[who])

    def define(self, name: str, who: str = "bee", **body: Any) -> dict[str, Any]:
        resp = self.client.post("/api/feeds", headers=self.auth(who), json={"name": name, **body})
        assert resp.status_code == 201, resp.text
        return resp.json()

    def put(self, name: str, who: str = "bee", **body: Any) -> Any:
        return self.client.put(f"/api/feeds/{name}", headers=self.auth(who), json=body)

    def get(self, name: str, who: str = "bee", method: str = "GET", **headers: str) -> Any:
        return self.client.request(method, f"/feeds/{name}", headers={**self.auth(who), **headers})

    def shown(self, name: str, who: str = "bee") -> dict[str, Any]:
        resp = self.client.get(f"/api/feeds/{name}", headers=self.auth(who))
        assert resp.status_code == 200, resp.text
        return resp.json()


def populate(ex: Exchange) -> dict[str, Any]:
    """Prod writes (RED) in 'ring', 'yard' and 'vault'; Bee reads 'ring' and 'yard' up to
    AMBER (not 'vault'), and has a reader user too; Other (another organisation) reads 'ring'."""
    members = {"prod": make_member(ex, "Prod"), "bee": make_member(ex, "Bee"),
               "other": make_member(ex, "Other")}
    ex.admin.create_user("Bee", "bee-reader", "reader")
    tokens = {k: m.token for k, m in members.items()}
    tokens["reader"] = ex.admin.create_token("bee-reader").secret
    users = {k: m.user for k, m in members.items()}
    users["reader"] = "bee-reader"
    cids = {}
    for name in ("ring", "yard", "vault"):
        ex.admin.create_community(name, default_tlp=Tlp.GREEN)
        ex.admin.set_membership("Prod", name, True, True, Tlp.RED)
        if name != "vault":
            ex.admin.set_membership("Bee", name, True, False, Tlp.AMBER)
        cids[name] = ex.admin.get_community(name).collection_id
    ex.admin.set_membership("Other", "ring", True, False, Tlp.AMBER)
    prod = members["prod"].principal
    for community, objs in (
        ("ring", [indicator("45.81.0.1", tlp=Tlp.GREEN), indicator("45.81.0.2", tlp=Tlp.AMBER),
                  {**indicator(tlp=Tlp.GREEN), "pattern": "[domain-name:value = 'evil.bad-cdn.top']"}]),
        ("yard", [indicator("45.82.0.1", tlp=Tlp.GREEN)]),
        ("vault", [indicator("45.83.0.1", tlp=Tlp.GREEN)]),
    ):
        assert not ex.ingest.add_objects(prod, cids[community], objs).failures
    return {"tokens": tokens, "users": users, "cids": cids}


@pytest.fixture
def world(exchange) -> Iterator[World]:
    made = populate(exchange)
    # A server error is answered as a server would (500), not raised into the test.
    with TestClient(create_app(exchange), raise_server_exceptions=False) as client:
        yield World(exchange, client, made["tokens"], made["users"], made["cids"])


def lines(body: str) -> list[str]:
    return sorted(body.split())


RING_AMBER = ["45.81.0.1", "45.81.0.2"]
RING_GREEN = ["45.81.0.1"]


# -- concurrency helpers ------------------------------------------------------------------------

class Pause:
    """Wraps ``QueryService.export_communities`` (the check every feed definition makes in
    its transaction, after the feed's row is read and locked): the first call made with a
    connection (a definition's, not an export's) stops there until released."""

    def __init__(self, real: Callable[..., Any]) -> None:
        self.real = real
        self.reached, self.release = threading.Event(), threading.Event()

    def __call__(self, principal: Any, flt: Any, *args: Any, **kwargs: Any) -> Any:
        result = self.real(principal, flt, *args, **kwargs)
        if (args or kwargs.get("conn") is not None) and not self.reached.is_set():
            self.reached.set()
            self.release.wait(20)
        return result


def started(call: Callable[[], Any], out: dict[str, Any], key: str) -> threading.Thread:
    """A running thread that stores ``call()`` (or what it raised) in ``out[key]``."""

    def run() -> None:
        try:
            out[key] = call()
        except BaseException as exc:  # noqa: BLE001 - the tests look at it
            out[key] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def wait_blocked(ex: Exchange, thread: threading.Thread, seconds: float = 1.0) -> None:
    """Until ``thread`` ends, or waits on a lock (PostgreSQL: a lock not granted in this
    database; SQLite: ``seconds`` pass, its busy wait cannot be seen from outside)."""
    deadline = time.monotonic() + (5 if ex.engine.dialect.name == "postgresql" else seconds)
    while thread.is_alive() and time.monotonic() < deadline:
        if ex.engine.dialect.name == "postgresql":
            with ex.engine.connect() as conn:
                if conn.execute(text("SELECT count(*) FROM pg_locks WHERE NOT granted")).scalar_one():
                    time.sleep(0.1)
                    return
        time.sleep(0.02)


# -- Suricata helpers ---------------------------------------------------------------------------

def rules_text(svc: ExportService, principal: Any, flt: ExportFilter | None = None) -> str:
    return "".join(svc.export(principal, "suricata-rules", flt or ExportFilter()).chunks)


def matched(match: str) -> str:
    """The value a Ledger match is about: an address, or a domain without its leading dot."""
    header, _, contents = match.partition("|")
    return header.split()[5] if header.startswith("alert ip") else contents.strip('"').removeprefix(".")


def two_values(a: str, b: str, **kw: Any) -> dict[str, Any]:
    return indicator(**kw, pattern=f"[ipv4-addr:value = '{a}' OR ipv4-addr:value = '{b}']")


def sid_rev(rules: dict[tuple[str, str], Any]) -> dict[tuple[str, str], tuple[int, int]]:
    return {k: (r.sid, r.rev) for k, r in rules.items()}


def key_sid(ex: Exchange, stix_id: str, kind: str, value: str) -> int:
    with ex.engine.connect() as conn:
        found = conn.execute(text("SELECT id FROM suricata_sids WHERE rule_key = :k"),
                             {"k": suricata.rule_key(stix_id, kind, value)}).scalar_one()
    return suricata.SID_BASE + found


def list_dir(folder: Path, kind: str, values: list[str], name: str = "ours") -> Path:
    folder.mkdir()
    (folder / "ours.json").write_text(json.dumps({
        "name": name, "description": "d", "source": "s", "licence": "CC0-1.0", "values": {kind: values}}))
    return folder


def lists_service(ex: Exchange, folder: Path) -> ExportService:
    return ExportService(session_factory(ex.engine), ex.query, warninglist_dirs=[folder])


def patch_schema_revision(monkeypatch: pytest.MonkeyPatch, revision: str) -> None:
    """Every module of the product that imported ``schema_revision`` answers ``revision``."""
    from commonwatch.storage import db

    patched = []
    for name, module in list(sys.modules.items()):
        reads = getattr(module, "schema_revision", None) is db.schema_revision
        if name.startswith("commonwatch.") and reads and module is not db:
            monkeypatch.setattr(module, "schema_revision", lambda conn: revision)
            patched.append(name)
    assert patched, "no module reads the schema revision any more"


# == 1. feed redefinition over HTTP ==============================================================

def test_old_validators_never_get_a_304_after_a_redefinition(world):
    """A device that fetched before the redefinition comes back with its ETag, or only its
    date (the redefinition lands in the same second or the next): the new content, never a
    304; HEAD answers what the next GET serves."""
    w = world
    w.define("ips", format="plain-ip", communities=["ring"])
    first = w.get("ips")
    assert first.status_code == 200 and lines(first.text) == RING_AMBER
    etag, date = first.headers["etag"], first.headers["last-modified"]
    assert w.get("ips", **{"If-None-Match": etag}).status_code == 304
    put = w.put("ips", format="plain-ip", communities=["ring"], tlp="green")
    assert put.status_code == 200, put.text
    assert put.json()["filter"]["tlp"] == "green" and put.json()["url"] == "/feeds/ips"

    by_date = w.get("ips", **{"If-Modified-Since": date})
    assert by_date.status_code == 200 and lines(by_date.text) == RING_GREEN
    assert by_date.headers["etag"] != etag
    head = w.get("ips", method="HEAD", **{"If-None-Match": etag})
    assert head.status_code == 200 and head.headers["etag"] != etag
    by_tag = w.get("ips", **{"If-None-Match": etag, "If-Modified-Since": date})
    assert by_tag.status_code == 200 and lines(by_tag.text) == RING_GREEN
    assert by_tag.headers["etag"] == head.headers["etag"]  # HEAD stored what the GET serves
    assert w.get("ips", **{"If-None-Match": by_tag.headers["etag"]}).status_code == 304
    # The first body's date never passes for the new content either.
    again = w.get("ips", **{"If-Modified-Since": date})
    assert again.status_code == 200 and lines(again.text) == RING_GREEN


def test_a_redefinition_to_the_same_definition_or_back_never_serves_a_stale_304(world):
    w = world
    w.define("ips", format="plain-ip", communities=["ring"], description="a")
    first = w.get("ips")
    etag_a = first.headers["etag"]
    same = w.put("ips", format="plain-ip", communities=["ring"], description="a")
    assert same.status_code == 200
    resp = w.get("ips", **{"If-None-Match": etag_a})
    assert resp.status_code in (200, 304)
    if resp.status_code == 200:
        assert lines(resp.text) == RING_AMBER
    # to B, fetched; back to A: the device holding B's ETag must get A's content
    assert w.put("ips", format="plain-ip", communities=["ring"], tlp="green").status_code == 200
    b = w.get("ips", **{"If-None-Match": etag_a})
    assert b.status_code == 200 and lines(b.text) == RING_GREEN
    assert w.put("ips", format="plain-ip", communities=["ring"], description="a").status_code == 200
    back = w.get("ips", **{"If-None-Match": b.headers["etag"]})
    assert back.status_code == 200 and lines(back.text) == RING_AMBER
    assert back.headers["etag"] != b.headers["etag"]


def test_who_may_redefine_and_what_a_refused_redefinition_leaves(world, database_url):
    """A reader of the organisation is refused, another organisation's analyst is told the
    feed does not exist exactly as for a feed that does not; a community the caller cannot
    read answers like one that does not exist; bad bodies are 400. None changes the feed:
    its definition and its validators stay (a stored ETag is still a 304)."""
    w = world
    w.define("ips", format="plain-ip", communities=["ring"], description="edge")
    etag = w.get("ips").headers["etag"]
    before = w.shown("ips")

    assert w.put("ips", who="reader", format="csv").status_code == 403
    theirs = w.put("ips", who="other", format="csv")
    missing = w.put("no-such-feed", who="other", format="csv")
    assert theirs.status_code == missing.status_code == 404
    assert theirs.json()["description"].replace("'ips'", "X") == \
        missing.json()["description"].replace("'no-such-feed'", "X")
    unreadable = w.put("ips", format="csv", communities=["vault"])
    absent = w.put("ips", format="csv", communities=["vaulx"])
    assert unreadable.status_code == absent.status_code == 404
    assert unreadable.json()["description"].replace("vault", "X") == absent.json()["description"].replace(
        "vaulx", "X")
    by_id = w.put("ips", format="csv", communities=[w.cids["vault"]])
    assert by_id.status_code == 404 and "vault" not in by_id.text
    raw = {**w.auth(), "content-type": "application/json"}
    for body in ('{"format": "csv", "bogus": 1}', '{"format": "csv", "name": "ips"}', '{"format": null}',
                 "{}", "[]", '{"format": "csv", "communities": "ring"}',
                 '{"format": "csv", "description": "a\\u0000b"}',
                 '{"format": "csv", "description": "\\ud800"}', '{"format": "csv", "tlp": "purple"}',
                 '{"format": "csv", "description": "' + "x" * 2001 + '"}',
                 '{"format": "pdf"}', '{"format": "rpz", "rpz_target": "not a domain"}',
                 '{"format": "csv", "min_confidence": "50"}', '{"format": "csv", "include_revoked": "yes"}'):
        resp = w.client.put("/api/feeds/ips", headers=raw, content=body.encode())
        assert resp.status_code in (400, 413), (body[:60], resp.status_code, resp.text)
    runner = CliRunner()
    by_reader = runner.invoke(cli_app, ["--database-url", database_url, "feed", "update", "ips",
                                        "--user", "bee-reader", "-f", "csv"])
    assert by_reader.exit_code != 0, by_reader.output
    by_other = runner.invoke(cli_app, ["--database-url", database_url, "feed", "update", "ips",
                                       "--user", w.users["other"], "-f", "csv"])
    assert by_other.exit_code == 3 and "no feed named 'ips'" in by_other.output
    assert w.shown("ips") == before
    assert w.get("ips", **{"If-None-Match": etag}).status_code == 304


def test_odd_descriptions_round_trip_and_move_the_etag(world, database_url):
    w = world
    w.define("ips", format="plain-ip")
    etag = w.get("ips").headers["etag"]
    for description in ("\U0001F600" * 2000, "\u202eright-to-left\r\nsecond line\t", " ", "x" * 2000):
        resp = w.put("ips", format="plain-ip", description=description)
        assert resp.status_code == 200, resp.text[:200]
        assert w.shown("ips")["description"] == description
        fetched = w.get("ips", **{"If-None-Match": etag})
        assert fetched.status_code == 200 and fetched.headers["etag"] != etag
        etag = fetched.headers["etag"]
    shown = CliRunner().invoke(cli_app, ["--database-url", database_url, "feed", "show", "ips",
                                         "--user", w.users["bee"]])
    assert shown.exit_code == 0 and "x" * 2000 in shown.output.replace("\n", "")


def test_cli_update_is_seen_by_devices_at_once(world, database_url):
    w = world
    w.define("edge", format="plain-ip", communities=["ring"])
    first = w.get("edge")
    runner = CliRunner()
    out = runner.invoke(cli_app, ["--database-url", database_url, "feed", "update", "edge",
                                  "--user", w.users["bee"], "-f", "plain-ip", "--community", "yard",
                                  "--tlp", "green", "--description", "yard only"])
    assert out.exit_code == 0, out.output
    resp = w.get("edge", **{"If-None-Match": first.headers["etag"],
                            "If-Modified-Since": first.headers["last-modified"]})
    assert resp.status_code == 200 and lines(resp.text) == ["45.82.0.1"]
    shown = w.shown("edge")
    assert shown["filter"]["communities"] == ["yard"] and shown["description"] == "yard only"
    # an option left out takes its default: the TLP goes back to amber, the community list to all
    out = runner.invoke(cli_app, ["--database-url", database_url, "feed", "update", "edge",
                                  "--user", w.users["bee"], "-f", "plain-ip"])
    assert out.exit_code == 0, out.output
    resp = w.get("edge", **{"If-None-Match": resp.headers["etag"]})
    assert resp.status_code == 200 and lines(resp.text) == [*RING_AMBER, "45.82.0.1"]


def test_misp_feed_keeps_its_event_uuid_across_redefinitions_of_the_same_filter(world):
    """The event uuid is the same for every export of one organisation with one filter: a
    description change, or a detour through another format, keeps it (MISP updates the
    event), and it is the uuid a plain export with that filter gives."""
    w = world

    def event(resp: Any) -> str:
        assert resp.status_code == 200, resp.text[:200]
        return json.loads(resp.text)["Event"]["uuid"]

    w.define("misp", format="misp", communities=["ring"])
    first = event(w.get("misp"))
    assert w.put("misp", format="misp", communities=["ring"], description="changed").status_code == 200
    assert event(w.get("misp")) == first
    assert w.put("misp", format="csv", communities=["ring"]).status_code == 200
    assert w.get("misp").text.startswith("value,kind,")
    assert w.put("misp", format="misp", communities=["ring"]).status_code == 200
    assert event(w.get("misp")) == first
    plain = w.ex.export.export(w.principal(), "misp", build_filter(communities=["ring"]))
    assert json.loads("".join(plain.chunks))["Event"]["uuid"] == first


def test_misp_feed_keeps_its_event_when_its_community_is_renamed(world):
    """A community renamed by an administrator: the feed follows it (the same community,
    the same content but for the name) and MISP should keep updating one event."""
    w = world
    w.define("misp", format="misp", communities=["ring"])
    first = json.loads(w.get("misp").text)["Event"]
    w.ex.admin.update_community("ring", new_name="ring-two")
    assert w.shown("misp")["filter"]["communities"] == ["ring-two"]
    after = json.loads(w.get("misp").text)["Event"]
    assert len(after["Attribute"]) == len(first["Attribute"])
    # Regression: the event uuid was a UUIDv5 of the stored filter's JSON, which a rename
    # rewrites: every MISP pulling the feed got a second event. Named communities now
    # enter the uuid by their collection ids.
    assert after["uuid"] == first["uuid"]


def test_rules_to_csv_and_back_keeps_every_sid_and_rev(world):
    """A rules feed redefined to CSV and back (and through a narrower TLP ceiling): the
    same rules come back with the same sids and revs (no text changed), as a plain export
    of the same filter gives them."""
    w = world
    ledger = Ledger()
    w.define("ids", format="suricata-rules", communities=["ring"])
    first = ledger.record(w.get("ids").text)
    assert len(first) == 3 and {r.rev for r in first.values()} == {1}
    assert w.put("ids", format="csv", communities=["ring"]).status_code == 200
    head = w.get("ids", method="HEAD", **{"If-None-Match": w.get("ids", method="HEAD").headers["etag"]})
    assert head.status_code == 304
    assert w.get("ids", method="HEAD").headers["content-type"].startswith("text/csv")
    assert w.get("ids").text.startswith("value,kind,")
    assert w.put("ids", format="suricata-rules", communities=["ring"], tlp="green").status_code == 200
    green = ledger.record(w.get("ids").text)
    assert len(green) == 2 and sid_rev(green) == {k: sid_rev(first)[k] for k in green}
    listed = w.put("ids", format="suricata-rules", communities=["ring"], include_warninglisted=True)
    assert listed.status_code == 200
    back = ledger.record(w.get("ids").text)
    assert sid_rev(back) == sid_rev(first)
    plain = ledger.record(rules_text(w.ex.export, w.principal(), build_filter(communities=["ring"])))
    assert sid_rev(plain) == sid_rev(first)


# == 2. redefinitions racing fetches, each other and community changes ===========================

@pytest.mark.parametrize("state", ["stored", "first fetch"])
def test_a_feed_fetched_while_it_is_redefined(world, monkeypatch, state):
    """A GET holds its export's snapshot while a PUT redefines the feed: its body is whole
    and of one definition, its ETag that definition's; the device's next conditional GET
    with that ETag gets the new definition's content, then a 304."""
    w = world
    ex = w.ex
    w.define("edge", format="plain-ip", communities=["ring"])
    if state == "stored":
        w.get("edge")  # the stored state is current: the racing GET answers from it
    real = ex.query.export_batches
    reached, release = threading.Event(), threading.Event()

    def held(*args: Any, **kwargs: Any) -> Iterator[Any]:
        batches = real(*args, **kwargs)
        first = next(batches, None)  # the snapshot is taken
        if not reached.is_set():
            reached.set()
            release.wait(20)
        if first is not None:
            yield first
        yield from batches

    monkeypatch.setattr(ex.query, "export_batches", held)
    out: dict[str, Any] = {}
    fetch = started(lambda: w.get("edge"), out, "get")
    assert reached.wait(20)
    put = w.put("edge", format="csv", communities=["yard"])
    assert put.status_code == 200, put.text
    release.set()
    fetch.join(30)
    got = out["get"]
    assert not isinstance(got, BaseException), got
    assert got.status_code == 200
    old_body = lines(got.text) == RING_AMBER
    new_body = got.text.startswith("value,kind,") and "45.82.0.1" in got.text and "45.81" not in got.text
    assert old_body or new_body, got.text
    nxt = w.get("edge", **{"If-None-Match": got.headers["etag"]})
    if old_body:
        assert nxt.status_code == 200 and nxt.text.startswith("value,kind,") and "45.82.0.1" in nxt.text
        assert nxt.headers["etag"] != got.headers["etag"]
    else:
        assert nxt.status_code == 304
    final = w.get("edge", **{"If-None-Match": nxt.headers["etag"]})
    assert final.status_code == 304


def test_two_redefinitions_at_once_leave_one_of_them_whole(world, monkeypatch):
    """One PUT changes only the format, the other only the description and TLP ceiling;
    they overlap (the first is held after reading the feed). The feed must end as one of the
    two definitions, whole: each PUT replaces the definition whole."""
    w = world
    ex = w.ex
    w.define("edge", format="plain-ip", description="zero")
    pause = Pause(ex.query.export_communities)
    monkeypatch.setattr(ex.query, "export_communities", pause)
    out: dict[str, Any] = {}
    one = started(lambda: w.put("edge", format="csv", description="zero"), out, "one")
    assert pause.reached.wait(20)
    two = started(lambda: w.put("edge", format="plain-ip", description="two", tlp="green"), out, "two")
    wait_blocked(ex, two)
    pause.release.set()
    one.join(30)
    two.join(30)
    assert out["one"].status_code == 200 and out["two"].status_code == 200, (out["one"].text, out["two"].text)
    shown = w.shown("edge")
    final = (shown["format"], shown["description"], shown["filter"]["tlp"])
    # Regression: on SQLite two PUTs at once left a definition nobody sent (one's format
    # with the other's description and filter): the feed was read before any lock. It is
    # now held (SQLite's write lock) before it is read.
    assert final in {("csv", "zero", "amber"), ("plain-ip", "two", "green")}, final
    body = w.get("edge").text
    assert body.startswith("value,kind,") if final[0] == "csv" else lines(body) == ["45.81.0.1", "45.82.0.1"]


def test_a_feed_deleted_while_it_is_redefined(world, monkeypatch):
    """A DELETE of the feed lands while a PUT redefines it (held after reading the feed):
    either the PUT came first (200, then the DELETE removes it) or the feed is gone for
    it (404); never a 5xx, and the feed ends deleted."""
    w = world
    ex = w.ex
    w.define("edge", format="plain-ip")
    pause = Pause(ex.query.export_communities)
    monkeypatch.setattr(ex.query, "export_communities", pause)
    out: dict[str, Any] = {}
    put = started(lambda: w.put("edge", format="csv", description="new"), out, "put")
    assert pause.reached.wait(20)
    gone = started(lambda: w.client.delete("/api/feeds/edge", headers=w.auth()), out, "delete")
    wait_blocked(ex, gone)
    pause.release.set()
    put.join(30)
    gone.join(30)
    assert out["delete"].status_code == 204, out["delete"].text
    # Regression: on SQLite a DELETE committed between the PUT's read and its UPDATE gave a
    # 500 (StaleDataError); the feed is now held before it is read.
    assert out["put"].status_code in (200, 404), (out["put"].status_code, out["put"].text[:300])
    assert w.client.get("/api/feeds/edge", headers=w.auth()).status_code == 404
    assert w.get("edge").status_code == 404


def test_a_rename_of_a_community_only_the_old_definition_named_does_not_undo_a_redefinition(
        world, monkeypatch):
    """The feed read 'ring'; a PUT redefines it to CSV of 'yard' while an administrator
    renames 'ring' (the redefinition holds 'yard', not 'ring'). The redefinition must
    stand: 'yard', as PUT said."""
    w = world
    ex = w.ex
    w.define("edge", format="plain-ip", communities=["ring"])
    pause = Pause(ex.query.export_communities)
    monkeypatch.setattr(ex.query, "export_communities", pause)
    out: dict[str, Any] = {}
    put = started(lambda: w.put("edge", format="csv", communities=["yard"], description="new"), out, "put")
    assert pause.reached.wait(20)
    rename = started(lambda: ex.admin.update_community("ring", new_name="ring-two"), out, "rename")
    wait_blocked(ex, rename)
    pause.release.set()
    put.join(30)
    rename.join(30)
    assert out["put"].status_code == 200, out["put"].text
    assert not isinstance(out["rename"], BaseException), out["rename"]
    shown = w.shown("edge")
    assert (shown["format"], shown["description"]) == ("csv", "new")
    # Regression: on PostgreSQL a community rename read the feeds without locking them and
    # wrote a redefined feed's old filter back over the new one (a lost update); the
    # rename now locks the feeds it rewrites and reads them as committed.
    assert shown["filter"]["communities"] == ["yard"], shown["filter"]
    body = w.get("edge").text
    assert "45.82.0.1" in body and "45.81.0.1" not in body


@pytest.mark.parametrize("change", ["rename", "delete"])
def test_a_community_the_new_definition_names_changed_meanwhile(world, monkeypatch, change):
    """A PUT naming 'yard' holds it: a rename waits and then renames the new definition;
    a delete waits and is then refused, since the feed reads it. Afterwards, the change
    committed first: the PUT naming the old name is a 404 and changes nothing."""
    w = world
    ex = w.ex
    w.define("edge", format="plain-ip", communities=["ring"])
    ex.admin.create_community("empty", default_tlp=Tlp.GREEN)
    ex.admin.set_membership("Bee", "empty", True, False, Tlp.AMBER)
    target = "yard" if change == "rename" else "empty"
    pause = Pause(ex.query.export_communities)
    monkeypatch.setattr(ex.query, "export_communities", pause)
    out: dict[str, Any] = {}
    put = started(lambda: w.put("edge", format="plain-ip", communities=[target]), out, "put")
    assert pause.reached.wait(20)
    if change == "rename":
        other = started(lambda: ex.admin.update_community("yard", new_name="yard-two"), out, "change")
    else:
        other = started(lambda: ex.admin.delete_community("empty"), out, "change")
    wait_blocked(ex, other)
    pause.release.set()
    put.join(30)
    other.join(30)
    assert out["put"].status_code == 200, out["put"].text
    if change == "rename":
        assert not isinstance(out["change"], BaseException), out["change"]
        assert w.shown("edge")["filter"]["communities"] == ["yard-two"]
        assert lines(w.get("edge").text) == ["45.82.0.1"]
    else:
        assert type(out["change"]).__name__ == "Conflict", out["change"]
        assert w.shown("edge")["filter"]["communities"] == ["empty"]
        assert w.get("edge").status_code == 200
    monkeypatch.undo()
    before = w.shown("edge")
    gone = "yard" if change == "rename" else "no-such"
    assert w.put("edge", format="csv", communities=[gone]).status_code == 404
    assert w.shown("edge") == before


# == 3. Suricata rule context ======================================================================

def test_a_renamed_community_bumps_each_rev_once_in_exports_and_in_rules_feeds(world):
    """An administrator's rename of 'ring' (which the feed follows): every rule of it gets
    rev 2 once, with its sid, in the plain export and in the feed alike; the next ones
    keep rev 2, and the feed's stored ETag is a 304 again."""
    w = world
    ledger = Ledger()
    bee = w.principal()
    w.define("ids", format="suricata-rules", communities=["ring"])
    feed = w.get("ids")
    first = ledger.record(feed.text)
    assert sid_rev(ledger.record(rules_text(w.ex.export, bee))) == {
        **sid_rev(first), **sid_rev(ledger.record(rules_text(w.ex.export, bee, ExportFilter(
            communities=("yard",)))))}
    w.ex.admin.update_community("ring", new_name="ring-two")
    renamed = w.get("ids", **{"If-None-Match": feed.headers["etag"]})
    assert renamed.status_code == 200
    after = ledger.record(renamed.text)
    assert after.keys() == first.keys()
    for key, rule in after.items():
        assert (rule.sid, rule.rev) == (first[key].sid, 2) and "ring-two" in rule.msg
    for _ in range(2):
        plain = ledger.record(rules_text(w.ex.export, bee, ExportFilter(communities=("ring-two",))))
        assert sid_rev(plain) == sid_rev(after)
    assert w.get("ids", **{"If-None-Match": renamed.headers["etag"]}).status_code == 304
    assert sid_rev(ledger.record(w.get("ids").text)) == sid_rev(after)


def test_a_rules_feed_toggling_listed_values_and_a_renamed_producer(world):
    """A rules feed whose indicator states a listed address (8.8.8.8, on the built-in
    lists) and another: redefined to keep listed values, then not, then again, across a
    rename of the producer and back. Each rule keeps its sid; its rev moves exactly when
    its text did (the producer's name), once per rename, whatever the redefinitions."""
    w = world
    prod = w.principal("prod")
    obj = two_values("8.8.8.8", "45.81.7.7", tlp=Tlp.GREEN)
    assert not w.ex.ingest.add_objects(prod, w.cids["ring"], [obj]).failures
    ledger = Ledger()
    w.define("ids", format="suricata-rules", communities=["ring"])

    def fetch(keep: bool, rev: int) -> dict[tuple[str, str], Any]:
        put = w.put("ids", format="suricata-rules", communities=["ring"], include_warninglisted=keep)
        assert put.status_code == 200, put.text
        got = ledger.record(w.get("ids").text)
        assert len(got) == (5 if keep else 4) and {r.rev for r in got.values()} == {rev}, sid_rev(got)
        assert any("8.8.8.8" in k[1] for k in got) is keep
        return got

    for keep in (False, True, False):
        fetch(keep, 1)
    w.ex.admin.update_org("Prod", new_name="Prod Renamed")
    for keep in (True, False, True, True):
        assert all("Prod Renamed" in r.msg for r in fetch(keep, 2).values())
    w.ex.admin.update_org("Prod Renamed", new_name="Prod")
    for keep in (False, True):
        fetch(keep, 3)
    assert len(ledger.sid_of) == 5


def test_warninglists_back_and_forth_with_multi_value_rows_never_bump_a_rev(exchange, tmp_path):
    """Lists only leave values out; they never change a rule's text. Across lists that
    come and go, with listed values kept or dropped, every rule keeps its key's sid and
    rev 1, and every (sid, rev) one text; what is remembered equals what the key path
    gives."""
    ex = exchange
    made = populate(ex)
    bee = ex.auth.principal_for_user(made["users"]["bee"])
    prod = ex.auth.principal_for_user(made["users"]["prod"])
    objs = [two_values("45.80.0.1", "45.77.2.2", tlp=Tlp.GREEN), two_values("45.80.0.2", "45.79.9.9",
                                                                            tlp=Tlp.GREEN),
            indicator("45.77.2.3", tlp=Tlp.GREEN),
            {**indicator(tlp=Tlp.GREEN), "pattern": "[domain-name:value = 'a.listed.top' OR "
                                                    "domain-name:value = 'b.kept.top']"}]
    assert not ex.ingest.add_objects(prod, made["cids"]["yard"], objs).failures
    a = lists_service(ex, list_dir(tmp_path / "a", "ipv4-addr", ["45.80.0.0/16"], "list-a"))
    b = lists_service(ex, list_dir(tmp_path / "b", "ipv4-addr", ["45.77.2.0/24"], "list-b"))
    c = lists_service(ex, list_dir(tmp_path / "c", "domain-name", ["listed.top"], "list-c"))
    ledger = Ledger()
    views = [(ex.export, False), (a, False), (b, False), (a, True), (c, False), (b, True), (c, True),
             (ex.export, False), (b, False), (a, False)]
    seen = 0
    for svc, keep in views + views[::-1]:
        flt = ExportFilter(communities=("yard",), include_warninglisted=keep)
        got = ledger.record(rules_text(svc, bee, flt))
        assert {r.rev for r in got.values()} == {1}, sid_rev(got)
        seen = max(seen, len(got))
    assert seen == 8
    for (stix_id, match), sid in ledger.sid_of.items():
        kind = "ipv4-addr" if match.startswith("alert ip") else "domain-name"
        assert sid == key_sid(ex, stix_id, kind, matched(match))
    for svc in (a, b, c):
        remembered = rules_text(svc, bee, ExportFilter(communities=("yard",)))
        with ex.engine.begin() as conn:
            conn.execute(text("DELETE FROM suricata_row_sids"))
        assert rules_text(svc, bee, ExportFilter(communities=("yard",))) == remembered


def test_a_warninglist_entry_holding_a_line_break_or_a_space_is_refused(exchange, tmp_path):
    """Regression: a domain entry could hold a line break, and the lists' digest joins the
    entries with line breaks, so ["a.bad.top", "b.bad.top\nc.bad.top"] and
    ["a.bad.top\nb.bad.top", "c.bad.top"] had one digest while leaving out different
    values: the second set's Suricata rules took the first set's remembered sids (one
    (sid, rev) for two texts), and a feed's old ETag was answered 304 under the other
    set. No value of any kind holds a line break, a control character or a space: such
    entries are refused when the lists load, naming the file and the entry."""
    for n, (kind, entries) in enumerate([
            ("domain-name", ["a.bad.top", "b.bad.top\nc.bad.top"]),
            ("domain-name", ["a.bad.top\nb.bad.top", "c.bad.top"]),
            ("domain-name", ["a.bad.top", "b.bad.top\n"]), ("url", ["http://x.top/a b"]),
            ("url", ["http://x.top/\u0000"]), ("md5", [" ", "0" * 32])]):
        folder = list_dir(tmp_path / f"set{n}", kind, entries)
        with pytest.raises(ConfigError, match=f"not a valid {kind} value"):
            lists_service(exchange, folder).warninglists()
    kept = lists_service(exchange, list_dir(tmp_path / "padded", "domain-name", [" a.bad.top ", "b.bad.top"]))
    assert kept.warninglists().hits("domain-name", "x.a.bad.top") == ("ours",)


def test_export_columns_rewritten_in_sql(exchange, monkeypatch):
    """A migration rewrites stored export columns (a name, a value). Under the same schema
    revision the remembered rules are written as they are (docs/export.md: the stored
    version never changes, but for migrations); once the revision changes, each rule is
    built and looked up again: sids kept for kept values, the rev bumped exactly where
    the text changed, a new value a sid of its own."""
    ex = exchange
    made = populate(ex)
    bee = ex.auth.principal_for_user(made["users"]["bee"])
    prod = ex.auth.principal_for_user(made["users"]["prod"])
    named = indicator("45.77.5.5", tlp=Tlp.GREEN, name="before")
    pair = two_values("45.77.6.1", "45.77.6.2", tlp=Tlp.GREEN, name="pair")
    still = indicator("45.77.7.7", tlp=Tlp.GREEN, name="untouched")
    assert not ex.ingest.add_objects(prod, made["cids"]["yard"], [named, pair, still]).failures
    flt = ExportFilter(communities=("yard",))
    before = rules_text(ex.export, bee, flt)
    first = Ledger().record(before)
    assert len(first) == 5
    with ex.engine.begin() as conn:
        conn.execute(text(f"UPDATE {OBJECTS} SET export_name = 'after migration' WHERE stix_id = :i"),
                     {"i": named["id"]})
        conn.execute(text(f"UPDATE {OBJECTS} SET export_values = :v WHERE stix_id = :i"),
                     {"i": pair["id"], "v": "ipv4-addr 45.77.6.1\nipv4-addr 45.77.6.3"})
    lookups: list[int] = []
    real = sids_repo.known_sids
    monkeypatch.setattr(sids_repo, "known_sids",
                        lambda conn, keys: lookups.append(len(keys)) or real(conn, keys))
    same = rules_text(ex.export, bee, flt)
    assert same == before and "after migration" not in same
    assert lookups == []  # the documented limit: the same context, the remembered rules
    patch_schema_revision(monkeypatch, "9999_rewrote_export_columns")
    ledger = Ledger()
    migrated = ledger.record(rules_text(ex.export, bee, flt))
    assert lookups and lookups[0] == 5  # every rule looked up once by key
    by_value = {k[1]: r for k, r in first.items()}
    for (stix_id, match), rule in migrated.items():
        header = match.split("|")[0]
        value = header.split()[5]
        if stix_id == named["id"]:
            assert (rule.sid, rule.rev) == (by_value[match].sid, 2) and "after migration" in rule.msg
        elif value == "45.77.6.3":
            assert rule.sid == key_sid(ex, stix_id, "ipv4-addr", value)
            assert rule.sid not in {r.sid for r in first.values()} and rule.rev == 1
        else:
            assert (rule.sid, rule.rev) == (by_value[match].sid, by_value[match].rev) == (rule.sid, 1)
    lookups.clear()
    again = ledger.record(rules_text(ex.export, bee, flt))
    assert lookups == [] and sid_rev(again) == sid_rev(migrated)


def test_two_exports_at_once_allocating_the_same_new_rules(exchange, monkeypatch):
    """Two readers export the same new rules at once (both look the keys up before either
    allocates), and two exports of copies of one object in two communities (one key, two
    texts): no sid twice in an output, one sid per match, one text per (sid, rev)."""
    ex = exchange
    made = populate(ex)
    bee = ex.auth.principal_for_user(made["users"]["bee"])
    other = ex.auth.principal_for_user(made["users"]["other"])
    prod = ex.auth.principal_for_user(made["users"]["prod"])
    oid = f"indicator--{uuid.uuid4()}"
    fresh = [indicator(f"45.76.0.{n}", tlp=Tlp.GREEN) for n in range(1, 30)]
    shared = two_values("45.75.0.1", "45.75.0.2", tlp=Tlp.GREEN, oid=oid)
    assert not ex.ingest.add_objects(prod, made["cids"]["ring"], [*fresh, shared]).failures
    assert not ex.ingest.add_objects(prod, made["cids"]["yard"], [shared]).failures
    real = sids_repo.known_sids
    meet = threading.Barrier(2)
    met_by: set[int] = set()

    def met(conn: Any, keys: Any) -> Any:
        found = real(conn, keys)
        if threading.get_ident() not in met_by:  # each export's first look-up, before it inserts
            met_by.add(threading.get_ident())
            with contextlib.suppress(threading.BrokenBarrierError):
                meet.wait(5)  # both read the keys before either inserts (SQLite: then one waits)
        return found

    monkeypatch.setattr(sids_repo, "known_sids", met)
    ledger = Ledger()
    for views in ([(bee, ("ring",)), (other, ("ring",))], [(bee, ("yard",)), (prod, ("yard",))]):
        meet.reset()
        met_by.clear()
        out: dict[str, Any] = {}
        threads = [started(lambda p=p, c=c: rules_text(ex.export, p, ExportFilter(communities=c)),
                           out, str(n)) for n, (p, c) in enumerate(views)]
        for t in threads:
            t.join(60)
        assert not any(isinstance(v, BaseException) for v in out.values()), out
        got = [ledger.record(out[str(n)]) for n in range(2)]
        assert all(len(g) >= 2 for g in got)
        common = got[0].keys() & got[1].keys()
        assert common and all(got[0][k].sid == got[1][k].sid for k in common)
    assert len(ledger.sid_of) == 35  # 29 fresh, the shared object's 2, populate's 4
    monkeypatch.setattr(sids_repo, "known_sids", real)
    for (stix_id, match), sid in ledger.sid_of.items():
        if match.startswith("alert ip"):
            assert sid == key_sid(ex, stix_id, "ipv4-addr", match.split()[5])
