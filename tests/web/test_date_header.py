"""Every response carries exactly one Date, taken when its status line goes out: a
feed's Last-Modified is never later than it (RFC 9110 §8.8.2.1)."""

from __future__ import annotations

import time
from email.utils import parsedate_to_datetime

import httpx

from commonwatch.domain.markings import Tlp
from commonwatch.services.export_filters import build_filter

from support.factories import indicator, make_community, make_member


def test_one_date_per_response_and_never_before_last_modified(exchange, live_server):
    member = make_member(exchange, "Org A")
    cid = make_community(exchange, "c", Tlp.GREEN, {"Org A": (True, Tlp.RED)})
    exchange.feeds.create_feed(member.principal, "ips", "plain-ip", build_filter())
    auth = {"Authorization": f"Bearer {member.token}"}
    with httpx.Client(base_url=live_server.url, headers=auth, timeout=20) as client:
        for path in ("/taxii2/", "/api/feeds", "/no/such/path"):
            resp = client.get(path, headers={"Accept": "application/taxii+json;version=2.1"})
            assert len(resp.headers.get_list("date")) == 1, (path, resp.headers)
            assert abs(parsedate_to_datetime(resp.headers["date"]).timestamp() - time.time()) < 5
        dated = 0
        for k in range(30):  # renders just after a second boundary included
            assert not exchange.ingest.add_objects(member.principal, cid, [
                indicator(f"198.51.100.{k + 1}")]).failures
            resp = client.get("/feeds/ips")
            assert resp.status_code == 200 and len(resp.headers.get_list("date")) == 1
            if "last-modified" in resp.headers:
                dated += 1
                assert (parsedate_to_datetime(resp.headers["last-modified"])
                        <= parsedate_to_datetime(resp.headers["date"])), resp.headers
            time.sleep(0.07)
        assert dated > 0
