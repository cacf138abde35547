"""``commonwatch lookup``: what the exchange knows about values, as one user sees it."""

from __future__ import annotations

import sys
from typing import Annotated

import orjson
import typer
from rich.text import Text

from commonwatch.cli.common import out, run, table
from commonwatch.process import tune_for_throughput
from commonwatch.services.exchange import Exchange
from commonwatch.services.lookup import Answer


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    app.command("lookup")(lookup)


def lookup(
    values: Annotated[list[str], typer.Argument(help="Values (IPs, CIDRs, domains, URLs, e-mails, "
                                                      "hashes); '-' reads one per line from stdin.")],
    user: Annotated[str, typer.Option("--user", help="Look up as this user (sees what it may see).")],
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines, one result per value.")] = False,
) -> None:
    """Every visible object that mentions each value, who reported it, sightings, opinions."""
    wanted = [line.strip() for line in sys.stdin if line.strip()] if values == ["-"] else values

    def action(exchange: Exchange) -> list[Answer]:
        tune_for_throughput()  # up to 10^4 values: ~10^5 short-lived containers
        return exchange.lookup.lookup(exchange.auth.principal_for_user(user), wanted)

    answers = run(action)
    if as_json:
        sys.stdout.write("".join(orjson.dumps(a.to_json()).decode() + "\n" for a in answers))
        return
    rows = table("value", "matches", "reporters", "sightings", "opinions +/-", "last seen",
                 "warninglists")
    rows.columns[0].no_wrap = True
    for a in answers:
        j = a.to_json()
        if "error" in j:
            rows.add_row(a.value, Text(str(j["error"]), style="red"), "", "", "", "", "")
            continue
        reporters = ", ".join(r["organisation"] or f"({r['sector']})" for r in j["reporters"])
        ops = j["opinions"]
        agree = ops["agree"] + ops["strongly-agree"]
        disagree = ops["disagree"] + ops["strongly-disagree"]
        rows.add_row(a.value, str(len(a.matches)), reporters, str(a.sightings), f"{agree}/{disagree}",
                     j["last_seen"] or "", ", ".join(a.warninglists))
    out.print(rows)
