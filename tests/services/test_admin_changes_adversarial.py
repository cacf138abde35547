"""Adversarial tests of changing and deleting organisations and communities
(``AdminService.update_org``/``delete_org``/``update_community``/``delete_community``,
``storage.objects.purge_community`` and the admin API's PATCH and DELETE), on both
backends.

What they try to break: a deleted organisation's or community's id, which SQLite gives
to the next one, must carry nothing over (statuses, feed states, memberships, sids,
tombstones, index entries); a rename must move every feed ETag and every feed that
names it, and must not let one community's name capture another's feeds; the public
flag must never show more than TLP:CLEAR to anonymous readers; a refused change must
change nothing; who may not administer learns nothing about which names exist; and an
operation that races another (a share, a feed, a rename, a delete) must end in a state
some serial order of the two would give, with a CommonWatch error rather than a raw
database or assertion error.

The races are made deterministic: the racing operation runs in another thread, on its
own connections, just before the first statement of a given kind that the operation
under test sends (:func:`interleaved`).
"""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event, text
from typer.testing import CliRunner

from commonwatch.cli.main import app as cli_app
from commonwatch.domain.markings import Tlp
from commonwatch.errors import (
    AuthenticationRequired,
    CommonWatchError,
    Conflict,
    InvalidParameter,
    NotFound,
)
from commonwatch.services.query import ExportFilter, ObjectFilter, VersionSelector
from commonwatch.web.app import create_app
from commonwatch.web.media import TAXII_MEDIA_TYPE

from support.factories import Member, indicator, make_community, make_member

ALL_VERSIONS = ObjectFilter(versions=VersionSelector(last=False, all=True))
TAXII = {"Accept": TAXII_MEDIA_TYPE}


@dataclass
class Ring:
    P: Member  # producer: writes, cleared to RED
    R: Member  # reader: reads, cleared to AMBER
    cid: str
    obj: dict[str, Any]


@pytest.fixture
def admin_api(exchange) -> Iterator[TestClient]:
    """A client of the app as the instance admin 'operators-user' (organisation
    'Operators'), as in tests/web/conftest.py."""
    admin = make_member(exchange, "Operators", sector="other", role="admin")
    with TestClient(create_app(exchange)) as client:
        client.headers["Authorization"] = f"Bearer {admin.token}"
        yield client


@pytest.fixture
def ring(exchange) -> Ring:
    prod, reader = make_member(exchange, "Prod"), make_member(exchange, "Reader")
    cid = make_community(exchange, "ring", Tlp.GREEN, {"Prod": (True, Tlp.RED), "Reader": (False, Tlp.AMBER)})
    obj = indicator("45.77.1.9")
    assert not exchange.ingest.add_objects(prod.principal, cid, [obj]).failures
    return Ring(prod, reader, cid, obj)


def share(exchange, member: Member, cid: str, *objects: dict[str, Any]) -> None:
    report = exchange.ingest.add_objects(member.principal, cid, list(objects))
    assert not report.failures, report.failures


def render(exchange, member: Member, feed_name: str) -> str:
    feed = exchange.feeds.get_feed(member.principal, feed_name)
    export, _, _ = exchange.feeds.render_feed(member.principal, feed)
    return "".join(export.chunks)


def rows(exchange, sql: str, **params: Any) -> list[tuple[Any, ...]]:
    with exchange.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(sql), params)]


def dangling_feeds(exchange) -> list[tuple[str, str]]:
    """(feed, community key) of every stored feed naming no existing community."""
    known = {k for name, cid in rows(exchange, "SELECT name, collection_id FROM communities")
             for k in (name, cid)}
    return [(name, key) for name, flt in rows(exchange, "SELECT name, filter_json FROM feeds")
            for key in orjson.loads(flt)["communities"] if key not in known]


def indicator_ids(page) -> list[str]:
    return sorted(r.stix_id for r in page.rows if r.stix_id.startswith("indicator--"))


@contextlib.contextmanager
def interleaved(
    engine, pattern: str, action: Callable[[], Any], wait_s: float = 1.5,
) -> Iterator[dict[str, Any]]:
    """Run ``action`` in another thread just before the calling thread sends its first
    statement matching ``pattern`` (a regular expression searched case-insensitively;
    ``^`` for a prefix); the caller's statement waits for it (at most ``wait_s``: a
    racing action that a lock holds back is let go on). Yields the outcome: ``fired``,
    and ``value`` or ``error`` of the action."""
    outcome: dict[str, Any] = {"fired": False}
    caller = threading.get_ident()
    wanted = re.compile(pattern, re.IGNORECASE | re.DOTALL)

    def run() -> None:
        try:
            outcome["value"] = action()
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)

    def before(conn, cursor, statement, parameters, context, executemany) -> None:
        if outcome["fired"] or threading.get_ident() != caller or not wanted.search(statement.lstrip()):
            return
        outcome["fired"] = True
        thread.start()
        thread.join(wait_s)

    event.listen(engine, "before_cursor_execute", before)
    try:
        yield outcome
    finally:
        event.remove(engine, "before_cursor_execute", before)
        if outcome["fired"]:
            thread.join(60)


# -- ids given again: nothing is inherited ------------------------------------------------

def test_an_organisation_on_a_reused_id_inherits_no_status_membership_feed_state_or_token(exchange, ring):
    ghost = make_member(exchange, "Ghost")  # the newest organisation, user, token: SQLite reuses its ids
    exchange.admin.set_membership("Ghost", "ring", True, True, Tlp.AMBER)
    report = exchange.ingest.add_objects(ghost.principal, ring.cid, [{"type": "indicator", "id": "bad"}])
    assert report.failures and not report.successes  # nothing shared: deletable, a status kept
    exchange.feeds.create_feed(ghost.principal, "f", "csv", ExportFilter())
    old_body = render(exchange, ghost, "f")
    old_etag = exchange.feeds.validators(ghost.principal, exchange.feeds.get_feed(ghost.principal, "f"))[0]
    exchange.admin.delete_org("Ghost")


    heir = make_member(exchange, "Heir")
    with pytest.raises(NotFound):
        exchange.ingest.status(heir.principal, report.id)
    with pytest.raises(AuthenticationRequired):
        exchange.auth.authenticate(ghost.token)
    assert ring.cid not in {c.collection_id for c, k in exchange.query.collections(heir.principal)
                            if k.can_read or k.can_write}
    assert rows(exchange, "SELECT count(*) FROM memberships WHERE org_id = :o",
                o=heir.principal.org_id) == [(0,)]
    exchange.feeds.create_feed(heir.principal, "f", "csv", ExportFilter())
    feed = exchange.feeds.get_feed(heir.principal, "f")
    etag, _, current = exchange.feeds.validators(heir.principal, feed)
    assert not current and etag != old_etag  # no 304 to the ghost's body
    body = render(exchange, heir, "f")
    assert "45.77.1.9" in old_body and "45.77.1.9" not in body


def test_a_community_on_a_reused_id_inherits_no_tombstone_index_entry_or_suricata_sid(exchange, ring):
    cid = make_community(exchange, "typo", Tlp.GREEN, {"Prod": (True, Tlp.RED), "Reader": (False, Tlp.AMBER)})
    old = indicator("45.77.4.1")
    share(exchange, ring.P, cid, old)
    rules = "".join(exchange.export.export(ring.R.principal, "suricata-rules",
                                           ExportFilter(communities=("typo",))).chunks)
    old_sids = set(re.findall(r"sid:(\d+);", rules))
    assert "45.77.4.1" in rules and old_sids
    exchange.ingest.delete_object(ring.P.principal, cid, old["id"], ALL_VERSIONS)  # a tombstone
    assert exchange.query.deletions(ring.R.principal, cid).rows
    exchange.admin.delete_community("typo")

    # the same name, members and producer: only the id (and its rows) could carry anything over
    new_cid = make_community(exchange, "typo", Tlp.GREEN,
                             {"Prod": (True, Tlp.RED), "Reader": (False, Tlp.AMBER)})
    assert exchange.query.deletions(ring.R.principal, new_cid).rows == []
    assert indicator_ids(exchange.query.manifest(ring.R.principal, new_cid, ALL_VERSIONS)) == []
    assert not exchange.lookup.lookup(ring.R.principal, ["45.77.4.1"])[0].matches
    fresh = indicator("45.77.4.2")
    share(exchange, ring.P, new_cid, fresh)
    rules = "".join(exchange.export.export(ring.R.principal, "suricata-rules",
                                           ExportFilter(communities=("typo",))).chunks)
    assert "45.77.4.2" in rules and "45.77.4.1" not in rules
    assert not set(re.findall(r"sid:(\d+);", rules)) & old_sids
    with pytest.raises(NotFound):  # the old collection is gone, not answered by the new one
        exchange.query.objects(ring.R.principal, cid, ObjectFilter())


def test_a_taxii_client_paging_a_deleted_community_gets_not_found_not_its_successor(exchange, ring):
    cid = make_community(exchange, "quiet", Tlp.CLEAR, {"Reader": (False, Tlp.AMBER)})
    first = exchange.query.objects(ring.R.principal, cid, ObjectFilter(limit=1))
    assert first.more and first.next  # its two system objects
    exchange.admin.delete_community("quiet")
    make_community(exchange, "quiet", Tlp.CLEAR, {"Reader": (False, Tlp.AMBER)})
    with pytest.raises(NotFound):
        exchange.query.objects(ring.R.principal, cid, ObjectFilter(limit=1, next=first.next))
    with pytest.raises(NotFound):
        exchange.query.deletions(ring.R.principal, cid)


# -- renames: feeds and validators follow, nothing is captured ----------------------------

def test_feed_etags_and_last_modified_move_on_every_rename_and_public_flip_over_http(
        exchange, ring, admin_api):
    exchange.feeds.create_feed(ring.R.principal, "mine", "csv", ExportFilter(communities=("ring",)))
    reader = {"Authorization": f"Bearer {ring.R.token}"}
    first = admin_api.get("/feeds/mine", headers=reader)
    assert first.status_code == 200 and ",ring," in first.text and ",Prod," in first.text
    etag = first.headers["ETag"]
    assert admin_api.get("/feeds/mine", headers={**reader, "If-None-Match": etag}).status_code == 304
    seen = {etag}
    for path, change, expect in (
        ("/api/admin/communities/ring", {"name": "ring-renamed"}, ",ring-renamed,"),
        ("/api/admin/orgs/Prod", {"name": "Prod Renamed"}, ",Prod Renamed,"),
        ("/api/admin/orgs/Prod%20Renamed", {"sector": "government"}, ",Prod Renamed,"),
        ("/api/admin/communities/ring-renamed", {"public": True}, ",ring-renamed,"),
    ):
        assert admin_api.patch(path, json=change).status_code == 200, path
        stale = {"If-None-Match": etag}
        if "Last-Modified" in first.headers:
            stale["If-Modified-Since"] = first.headers["Last-Modified"]
        again = admin_api.get("/feeds/mine", headers={**reader, **stale})
        assert again.status_code == 200, (path, "a 304 to content from before the change")
        assert expect in again.text
        assert again.headers["ETag"] not in seen
        first, etag = again, again.headers["ETag"]
        seen.add(etag)
        assert admin_api.get("/feeds/mine", headers={**reader, "If-None-Match": etag}).status_code == 304


def test_renaming_a_community_to_another_communitys_collection_id_captures_no_feed(exchange, ring):
    members = {"Prod": (True, Tlp.AMBER), "Reader": (False, Tlp.AMBER)}
    make_community(exchange, "alpha", Tlp.GREEN, members)
    b_cid = make_community(exchange, "bravo", Tlp.GREEN, members)
    share(exchange, ring.P, exchange.admin.get_community("alpha").collection_id, indicator("45.77.3.1"))
    share(exchange, ring.P, b_cid, indicator("45.77.3.2"))
    exchange.feeds.create_feed(ring.R.principal, "fa", "plain-ip", ExportFilter(communities=("alpha",)))
    exchange.feeds.create_feed(ring.R.principal, "fb", "plain-ip", ExportFilter(communities=(b_cid,)))
    # Regression: a community could be renamed to another community's collection id (a
    # lowercase UUID passed the name pattern), and feeds and exports name a community by
    # name or collection id in one namespace: feed 'fa' then read bravo's objects. Names
    # of a collection id's form are refused.
    with contextlib.suppress(Conflict, InvalidParameter):
        exchange.admin.update_community("alpha", new_name=b_cid)
    assert render(exchange, ring.R, "fa") == "45.77.3.1\n"
    assert render(exchange, ring.R, "fb") == "45.77.3.2\n"


def test_a_rename_rewrites_exactly_the_feeds_that_name_it_and_a_freed_name_captures_none(exchange, ring):
    make_community(exchange, "ring-two", Tlp.GREEN, {"Prod": (True, Tlp.AMBER), "Reader": (False, Tlp.AMBER)})
    two_cid = exchange.admin.get_community("ring-two").collection_id
    share(exchange, ring.P, two_cid, indicator("45.77.5.2"))
    both = exchange.feeds.create_feed(ring.R.principal, "both", "plain-ip",
                                       ExportFilter(communities=("ring", ring.cid)))
    other = exchange.feeds.create_feed(ring.R.principal, "other", "plain-ip",
                                        ExportFilter(communities=("ring-two",), types=("indicator", "ring")))
    exchange.admin.update_community("ring", new_name="ring-one")
    assert orjson.loads(exchange.feeds.get_feed(ring.R.principal, "both").filter_json)["communities"] == [
        "ring-one", ring.cid]
    unchanged = exchange.feeds.get_feed(ring.R.principal, "other")
    assert (unchanged.filter_json, unchanged.updated_us) == (other.filter_json, other.updated_us)
    # the old name given to the other community: the feeds keep reading what they read
    exchange.admin.update_community("ring-two", new_name="ring")
    assert render(exchange, ring.R, "both") == "45.77.1.9\n"
    assert render(exchange, ring.R, "other") == "45.77.5.2\n"
    assert both.filter_json != exchange.feeds.get_feed(ring.R.principal, "both").filter_json
    assert dangling_feeds(exchange) == []


def test_a_refused_community_rename_leaves_feeds_and_their_validators_as_they_were(exchange, ring):
    exchange.admin.create_community("taken")
    exchange.feeds.create_feed(ring.R.principal, "mine", "csv", ExportFilter(communities=("ring",)))
    render(exchange, ring.R, "mine")
    before = exchange.feeds.get_feed(ring.R.principal, "mine")
    etag, _, current = exchange.feeds.validators(ring.R.principal, before)
    assert current
    for change in ({"new_name": "taken"}, {"new_name": "taken", "title": "x" * 201},
                   {"new_name": "ring-x", "description": "bad\x00"}):
        with pytest.raises((Conflict, InvalidParameter)):
            exchange.admin.update_community("ring", **change)
    after = exchange.feeds.get_feed(ring.R.principal, "mine")
    assert (after.filter_json, after.updated_us) == (before.filter_json, before.updated_us)
    assert exchange.feeds.validators(ring.R.principal, after) == (etag, _, True)
    community = exchange.admin.get_community("ring")
    assert (community.name, community.title, community.description) == ("ring", "ring", "")


@pytest.mark.parametrize("bad", ["Ring", " ring", "ring ", "ring\n", "ring\x00", "rïng", "-ring", "",
                                 "r" * 101, "ring/two", "ring_two", "ri ng"])
def test_malformed_community_names_are_refused(exchange, ring, bad):
    with pytest.raises(InvalidParameter):
        exchange.admin.update_community("ring", new_name=bad)
    assert exchange.admin.get_community("ring").collection_id == ring.cid


@pytest.mark.parametrize("bad", ["Prod\n", "Prod\x00", "Pröd", "", " Prod", "Prod ", "x" * 201,
                                 "Prod\tNet", "Prod/Net", "\u200bProd"])
def test_malformed_organisation_names_are_refused(exchange, ring, bad):
    with pytest.raises(InvalidParameter):
        exchange.admin.update_org("Prod", new_name=bad)
    assert exchange.admin.get_org("Prod").identity_id == ring.P.identity


def test_a_country_with_a_trailing_newline_is_refused(exchange, ring):
    # Regression: the country was checked with match(), and '$' matches before a trailing
    # newline: "NL\n" was stored on SQLite and a raw DataError on PostgreSQL.
    with pytest.raises(InvalidParameter):
        exchange.admin.update_org("Prod", country="NL\n")
    assert exchange.admin.get_org("Prod").country is None


def test_a_case_only_rename_of_an_organisation_is_a_rename(exchange, ring):
    org = exchange.admin.update_org("Prod", new_name="PROD")
    assert (org.name, org.identity_id) == ("PROD", ring.P.identity)
    with pytest.raises(NotFound):
        exchange.admin.get_org("Prod")
    rows_ = "".join(exchange.export.export(ring.R.principal, "csv", ExportFilter()).chunks)
    assert ",PROD," in rows_ and ",Prod," not in rows_


def test_renaming_a_community_to_its_own_collection_id_keeps_its_feeds_and_collection(exchange, ring):
    exchange.feeds.create_feed(ring.R.principal, "by-name", "plain-ip", ExportFilter(communities=("ring",)))
    exchange.feeds.create_feed(ring.R.principal, "by-id", "plain-ip", ExportFilter(communities=(ring.cid,)))
    with contextlib.suppress(Conflict, InvalidParameter):
        exchange.admin.update_community("ring", new_name=ring.cid)
    assert render(exchange, ring.R, "by-name") == render(exchange, ring.R, "by-id") == "45.77.1.9\n"
    assert indicator_ids(exchange.query.manifest(ring.R.principal, ring.cid, ObjectFilter())) == [
        ring.obj["id"]]
    with pytest.raises(Conflict):  # both feeds still hold it
        exchange.admin.delete_community(next(c.name for c in exchange.admin.list_communities()
                                             if c.collection_id == ring.cid))
    assert dangling_feeds(exchange) == []


def test_a_feed_rendered_while_names_change_sends_one_generation_and_no_stale_304(exchange, ring):
    share(exchange, ring.P, ring.cid, indicator("45.77.1.10"), indicator("45.77.1.11"))
    exchange.feeds.create_feed(ring.R.principal, "all", "csv", ExportFilter())  # every readable community
    render(exchange, ring.R, "all")  # a stored state: the next render is of the current generation

    def renames() -> None:
        exchange.admin.update_org("Prod", new_name="Prod Two")
        exchange.admin.update_community("ring", new_name="ring-two")

    feed = exchange.feeds.get_feed(ring.R.principal, "all")
    with interleaved(exchange.engine, r"o\.export_values", renames) as raced:
        export, etag, _ = exchange.feeds.render_feed(ring.R.principal, feed)
        body = "".join(export.chunks)
    assert raced["fired"] and "error" not in raced, raced.get("error")
    lines = body.splitlines()[1:]
    assert len(lines) == 3
    generations = {(",ring," in line, ",Prod," in line, ",ring-two," in line, ",Prod Two," in line)
                   for line in lines}
    assert generations in ({(True, True, False, False)}, {(False, False, True, True)}), body
    stored = exchange.feeds.get_feed(ring.R.principal, "all")
    again, _, current = exchange.feeds.validators(ring.R.principal, stored)
    if ",Prod," in body:  # the body from before the renames: its ETag must not be current any more
        assert not (current and again == etag)
    after = render(exchange, ring.R, "all")
    assert ",ring-two," in after and ",Prod Two," in after
    assert ",Prod," not in after and ",ring," not in after


# -- the public flag ------------------------------------------------------------------------

def test_a_community_made_public_shows_anonymous_readers_clear_and_nothing_else(exchange, ring, admin_api):
    objs = {tlp: indicator(f"45.77.6.{int(tlp) + 1}", tlp=tlp) for tlp in (Tlp.CLEAR, Tlp.GREEN, Tlp.AMBER)}
    objs[Tlp.RED] = indicator("45.77.6.9", tlp=Tlp.RED, recipients=[ring.R.identity])
    gone = {tlp: indicator(f"45.77.7.{int(tlp) + 1}", tlp=tlp) for tlp in (Tlp.CLEAR, Tlp.AMBER)}
    share(exchange, ring.P, ring.cid, *objs.values(), *gone.values())
    for obj in gone.values():
        exchange.ingest.delete_object(ring.P.principal, ring.cid, obj["id"], ALL_VERSIONS)
    assert admin_api.patch("/api/admin/communities/ring", json={"public": True}).json()["public"] is True
    base = f"/taxii2/api/collections/{ring.cid}"
    with TestClient(create_app(exchange)) as anon:
        listed = anon.get(f"{base}/objects/", headers=TAXII)
        assert listed.status_code == 200
        ids = {o["id"] for o in listed.json()["objects"] if o["type"] == "indicator"}
        assert ids == {objs[Tlp.CLEAR]["id"]}
        manifest = anon.get(f"{base}/manifest/", headers=TAXII).json()
        assert {o["id"] for o in manifest["objects"] if o["id"].startswith("indicator--")} == ids
        missing = anon.get(f"{base}/objects/indicator--00000000-0000-4000-8000-000000000000/", headers=TAXII)
        for tlp in (Tlp.GREEN, Tlp.AMBER, Tlp.RED):
            for suffix in ("", "versions/"):
                hidden = anon.get(f"{base}/objects/{objs[tlp]['id']}/{suffix}", headers=TAXII)
                assert (hidden.status_code, hidden.json()) == (missing.status_code, missing.json()), tlp
        deletions = anon.get(f"/api/collections/{ring.cid}/deletions").json()["deletions"]
        assert {d["id"] for d in deletions} == {gone[Tlp.CLEAR]["id"]}
        looked = anon.post("/api/lookup", json={"values": ["45.77.6.1", "45.77.6.2", "45.77.6.4",
                                                            "45.77.6.9", "45.77.1.9"]}).json()["results"]
        assert [r["found"] for r in looked] == [True, False, False, False, False]
        assert admin_api.patch("/api/admin/communities/ring", json={"public": False}).status_code == 200
        assert anon.get(f"{base}/objects/", headers=TAXII).status_code == 401
        assert anon.get(f"/api/collections/{ring.cid}/deletions").status_code == 401
        assert not anon.post("/api/lookup", json={"values": ["45.77.6.1"]}).json()["results"][0]["found"]


# -- the admin API: no existence oracle, errors that say what to do ------------------------

def test_non_admins_get_the_same_answer_for_existing_and_missing_names(exchange, ring, admin_api):
    exchange.admin.create_user("Reader", "reader-boss", "org-admin")
    callers = {"org-admin": exchange.admin.create_token("reader-boss").secret, "analyst": ring.P.token,
               "reader": ring.R.token}
    exchange.admin.create_user("Reader", "reader-ro", "reader")
    callers["read-only"] = exchange.admin.create_token("reader-ro").secret
    cases = (("PATCH", "orgs", "Reader", "No Such Org", {"name": "Mine"}),
             ("DELETE", "orgs", "Prod", "No Such Org", None),
             ("PATCH", "communities", "ring", "no-such-ring", {"public": True}),
             ("DELETE", "communities", "ring", "no-such-ring", None))
    for role, token in [*callers.items(), ("anonymous", None)]:
        headers = {"Authorization": f"Bearer {token}" if token else ""}
        for method, kind, there, absent, body in cases:
            a = admin_api.request(method, f"/api/admin/{kind}/{there}", json=body, headers=headers)
            b = admin_api.request(method, f"/api/admin/{kind}/{absent}", json=body, headers=headers)
            assert a.status_code == b.status_code == (401 if token is None else 403), (role, method, kind)
            assert a.json() == b.json(), (role, method, kind)
    assert exchange.admin.get_org("Reader").name == "Reader"
    assert exchange.admin.get_community("ring").public is False


def test_admin_api_errors_say_what_is_wrong_and_what_to_do(exchange, ring, admin_api):
    missing = admin_api.delete("/api/admin/orgs/Nobody")
    assert missing.status_code == 404 and "no organisation named 'Nobody'" in missing.json()["description"]
    shared = admin_api.delete("/api/admin/orgs/Prod")
    assert shared.status_code == 409
    assert "member remove" in shared.json()["description"] and "disable" in shared.json()["description"]
    assert admin_api.delete("/api/admin/communities/ring").status_code == 409
    admin_api.post("/api/admin/communities", json={"name": "quiet"})
    exchange.admin.set_membership("Reader", "quiet", True, False, Tlp.AMBER)
    exchange.feeds.create_feed(ring.R.principal, "q", "csv", ExportFilter(communities=("quiet",)))
    busy = admin_api.delete("/api/admin/communities/quiet")
    assert busy.status_code == 409 and "'q'" in busy.json()["description"]
    clash = admin_api.patch("/api/admin/communities/quiet", json={"name": "ring"})
    assert clash.status_code == 409 and "already exists" in clash.json()["description"]
    assert admin_api.patch("/api/admin/communities/quiet", json={"name": "Quiet"}).status_code == 400
    assert admin_api.patch("/api/admin/orgs/Prod", json={"country": "nl"}).status_code == 400
    assert admin_api.patch("/api/admin/orgs/Prod", json={"name": "Reader"}).status_code == 409
    # nothing of the refused changes happened
    assert exchange.admin.get_community("quiet").name == "quiet"
    assert exchange.admin.get_org("Prod").country is None
    assert exchange.feeds.get_feed(ring.R.principal, "q").name == "q"


def test_the_instance_admin_cannot_delete_the_organisation_of_the_last_admin(exchange, admin_api):
    # Regression: deleting the organisation of the last active instance admin answered 200
    # and locked everyone out of the admin API; it is refused (409).
    answer = admin_api.delete("/api/admin/orgs/Operators")
    assert answer.status_code == 409, answer.text
    assert admin_api.get("/api/admin/orgs").status_code == 200


def test_refused_deletes_change_nothing(exchange, ring):
    exchange.feeds.create_feed(ring.P.principal, "pf", "csv", ExportFilter())
    tables = ("organisations", "users", "api_tokens", "memberships", "feeds", "stix_objects",
              "observables", "ingest_statuses", "communities")
    before = {t: rows(exchange, f"SELECT count(*) FROM {t}") for t in tables}
    with pytest.raises(Conflict):
        exchange.admin.delete_org("Prod")
    with pytest.raises(Conflict):
        exchange.admin.delete_community("ring")
    assert {t: rows(exchange, f"SELECT count(*) FROM {t}") for t in tables} == before
    assert exchange.auth.authenticate(ring.P.token).org_id == ring.P.principal.org_id


# -- races: the outcome of some serial order, or a CommonWatch error -----------------------

def test_deleting_an_organisation_while_it_shares_its_first_object_loses_no_attribution(exchange, ring):
    late = make_member(exchange, "Late")
    exchange.admin.set_membership("Late", "ring", True, True, Tlp.AMBER)
    obj = indicator("45.77.8.1")
    deleted = False
    with (interleaved(exchange.engine, "^DELETE FROM api_tokens",
                      lambda: exchange.ingest.add_objects(late.principal, ring.cid, [obj])) as raced,
          contextlib.suppress(Conflict)):
        exchange.admin.delete_org("Late")
        deleted = True
    assert raced["fired"]
    producers = [p for (p,) in rows(exchange, "SELECT producer_org_id FROM stix_objects WHERE stix_id = :s",
                                    s=obj["id"])]
    # Regression: delete_org counted the organisation's objects, then deleted, without a
    # lock: a share committed in between lost its producer (ON DELETE SET NULL). The
    # organisation's row is now held first (a key share lock from ingest waits for it).
    assert None not in producers, "a shared object lost its producer"
    assert not (deleted and producers)


def test_deleting_a_community_while_a_member_shares_into_it_loses_no_shared_object(exchange, ring):
    cid = make_community(exchange, "quiet", Tlp.GREEN, {"Prod": (True, Tlp.AMBER)})
    obj = indicator("45.77.8.2")
    deleted = False
    with (interleaved(exchange.engine, "^DELETE FROM",
                      lambda: exchange.ingest.add_objects(ring.P.principal, cid, [obj])) as raced,
          contextlib.suppress(Conflict)):
        exchange.admin.delete_community("quiet")
        deleted = True
    assert raced["fired"]
    report = raced.get("value")
    stored = report is not None and bool(report.successes) and not report.failures
    # Regression: delete_community counted the members' objects, then purged, without the
    # community's write lock: an envelope acknowledged in between was purged silently.
    assert not (stored and deleted), "a shared, acknowledged object was purged"


def test_sharing_into_a_community_deleted_meanwhile_is_a_not_found(exchange, ring):
    cid = make_community(exchange, "quiet", Tlp.GREEN, {"Prod": (True, Tlp.AMBER)})
    # Regression: a community deleted between ingest's look-up and its write lock failed
    # an assert (HTTP 500); it is a NotFound.
    with (interleaved(exchange.engine, "^UPDATE communities SET last_added_us",
                      lambda: exchange.admin.delete_community("quiet")) as raced,
          pytest.raises(CommonWatchError)):
        exchange.ingest.add_objects(ring.P.principal, cid, [indicator("45.77.8.3")])
    assert raced["fired"] and "error" not in raced


def test_sharing_as_an_organisation_deleted_meanwhile_is_a_commonwatch_error(exchange, ring):
    late = make_member(exchange, "Late")
    exchange.admin.set_membership("Late", "ring", True, True, Tlp.AMBER)
    # Regression: an organisation deleted after ingest checked its credentials broke the
    # producer's foreign key with a raw IntegrityError (HTTP 500).
    with (interleaved(exchange.engine, "^UPDATE communities SET last_added_us",
                      lambda: exchange.admin.delete_org("Late")) as raced,
          pytest.raises(CommonWatchError)):
        exchange.ingest.add_objects(late.principal, ring.cid, [indicator("45.77.8.4")])
    assert raced["fired"] and "error" not in raced, raced.get("error")
    assert rows(exchange, "SELECT count(*) FROM stix_objects WHERE producer_org_id IS NULL "
                          "AND type = 'indicator'") == [(0,)]


def test_a_feed_created_while_its_community_is_deleted_is_not_left_dangling(exchange, ring):
    make_community(exchange, "quiet", Tlp.GREEN, {"Reader": (False, Tlp.AMBER)})
    feed = ExportFilter(communities=("quiet",))
    with (interleaved(exchange.engine, "^DELETE FROM",
                      lambda: exchange.feeds.create_feed(ring.R.principal, "late", "csv", feed)) as raced,
          contextlib.suppress(Conflict)):
        exchange.admin.delete_community("quiet")
    assert raced["fired"]
    # Regression: a feed created while its community was deleted was left naming a
    # community that no longer exists; feed creation now holds the communities it names.
    assert dangling_feeds(exchange) == []


def test_a_feed_created_while_its_community_is_renamed_follows_the_rename(exchange, ring):
    make_community(exchange, "quiet", Tlp.GREEN, {"Reader": (False, Tlp.AMBER)})
    feed = ExportFilter(communities=("quiet",))
    with interleaved(exchange.engine, "^UPDATE communities SET name",
                     lambda: exchange.feeds.create_feed(ring.R.principal, "late", "csv", feed)) as raced:
        exchange.admin.update_community("quiet", new_name="calm")
    assert raced["fired"] and "error" not in raced, raced.get("error")
    # Regression: a feed created during a rename kept naming the old name.
    assert dangling_feeds(exchange) == []


@pytest.mark.parametrize("kind", ["organisation", "community"])
def test_a_rename_racing_a_delete_is_a_not_found(exchange, ring, kind):
    if kind == "organisation":
        make_member(exchange, "Typo Org")
        prefix, rename = "^UPDATE organisations SET name", lambda: exchange.admin.update_org(
            "Typo Org", new_name="Fixed Org")
        delete = lambda: exchange.admin.delete_org("Typo Org")  # noqa: E731
    else:
        exchange.admin.create_community("typo")
        prefix, rename = "^UPDATE communities SET name", lambda: exchange.admin.update_community(
            "typo", new_name="fixed")
        delete = lambda: exchange.admin.delete_community("typo")  # noqa: E731
    # Regression: a delete committed between a rename's load and its flush raised a raw
    # StaleDataError (HTTP 500); the row is held first and a vanished one is a NotFound.
    with interleaved(exchange.engine, prefix, delete) as raced, pytest.raises(NotFound):
        rename()
    assert raced["fired"] and "error" not in raced, raced.get("error")
    names = {o.name for o in exchange.admin.list_orgs()} | {c.name for c in exchange.admin.list_communities()}
    assert not names & {"Fixed Org", "fixed", "Typo Org", "typo"}


# -- the command line ---------------------------------------------------------------------

def test_cli_changes_and_deletes_that_are_refused_exit_with_a_message_and_change_nothing(
        exchange, ring, database_url):
    runner = CliRunner()

    def cli(*args: str, code: int) -> str:
        result = runner.invoke(cli_app, ["--database-url", database_url, *args])
        assert result.exit_code == code, (args, result.output)
        return result.output

    assert "already exists" in cli("org", "set", "Prod", "--name", "Reader", code=3)
    assert "no organisation named" in cli("org", "set", "Nobody", "--sector", "vendor", code=3)
    assert "sector" in cli("org", "set", "Prod", "--sector", "pirates", code=2)
    assert "member remove" in cli("org", "delete", "Prod", code=3)
    assert "lowercase" in cli("community", "set", "ring", "--name", "Ring", code=2)
    # a rename to its own name is no rename
    assert "'ring'" in cli("community", "set", "ring", "--name", "ring", "--title", "T", code=0)
    assert "object versions" in cli("community", "delete", "ring", code=3)
    assert "no community named" in cli("community", "delete", "nowhere", code=3)
    org, community = exchange.admin.get_org("Prod"), exchange.admin.get_community("ring")
    assert (org.name, org.sector, org.country) == ("Prod", "operator", None)
    assert (community.name, community.collection_id, community.title) == ("ring", ring.cid, "T")
