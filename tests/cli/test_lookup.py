"""``commonwatch lookup`` as a user: table and JSON lines, stdin, unknown user."""

from __future__ import annotations

import orjson
from typer.testing import CliRunner

from commonwatch.cli.main import app
from commonwatch.domain.markings import Tlp

from support.factories import indicator, make_member


def test_lookup_command(database_url, exchange):
    cert = make_member(exchange, "CERT", "government")
    exchange.admin.create_community("main")
    exchange.admin.set_membership("CERT", "main", True, True, Tlp.AMBER)
    cid = exchange.admin.get_community("main").collection_id
    ind = indicator("203.0.113.50", tlp=Tlp.GREEN, created_by=cert.identity)
    assert not exchange.ingest.add_objects(cert.principal, cid, [ind]).failures
    runner = CliRunner()
    base = ["--database-url", database_url, "lookup", "--user", cert.user]

    shown = runner.invoke(app, [*base, "203.0.113.50", "8.8.8.8"])
    assert shown.exit_code == 0, shown.output
    assert "203.0.113.50" in shown.output and "8.8.8.8" in shown.output

    lines = runner.invoke(app, [*base, "--json", "-"], input="203.0.113.50\n\nbad value\n8.8.8.8\n")
    assert lines.exit_code == 0, lines.output
    results = [orjson.loads(line) for line in lines.output.splitlines()]
    assert [r["value"] for r in results] == ["203.0.113.50", "bad value", "8.8.8.8"]
    assert results[2]["warninglists"] == ["public-dns-resolvers"]
    assert results[0]["matches"][0]["id"] == ind["id"] and "error" in results[1]
    assert results[0]["reporters"] == [{"organisation": "CERT", "sector": "government"}]

    nobody = runner.invoke(app, ["--database-url", database_url, "lookup", "--user", "ghost", "1.1.1.1"])
    assert nobody.exit_code == 3 and "ghost" in nobody.output
