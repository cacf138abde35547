"""``commonwatch sight``: report that a value was seen, as sightings of the matching indicators."""

from __future__ import annotations

import sys
from typing import Annotated

import orjson
import typer

from commonwatch.cli.common import out, run, table, tlp_option
from commonwatch.domain.markings import TLP_MARKING_IDS
from commonwatch.services.exchange import Exchange
from commonwatch.services.sightings import Sighted


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    app.command("sight")(sight)


def sight(
    value: Annotated[str, typer.Argument(help="The value seen: IP, CIDR, domain, URL, e-mail or hash.")],
    community: Annotated[str, typer.Option("--community", help="Community (name or collection id).")],
    user: Annotated[str, typer.Option("--user", help="Sight as this user (its organisation reports).")],
    count: Annotated[int, typer.Option("--count", help="How many times it was seen.")] = 1,
    first_seen: Annotated[str | None, typer.Option("--first-seen", help="STIX timestamp, "
                                                   "e.g. 2026-03-01T10:00:00.000Z.")] = None,
    last_seen: Annotated[str | None, typer.Option("--last-seen", help="STIX timestamp "
                                                  "(default: now).")] = None,
    where: Annotated[str | None, typer.Option("--where", help="Where it was seen (free text, "
                                              "becomes the sighting's description).")] = None,
    anonymous: Annotated[bool, typer.Option("--anonymous", help="Name nobody: the community "
                                            "sees your sector only.")] = False,
    tlp: Annotated[str | None, typer.Option("--tlp", help="TLP of the sightings (default: that "
                                            "of each sighted indicator).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the sightings created as JSON.")] = False,
) -> None:
    """Record sightings of every indicator you can see that states VALUE."""
    level = tlp_option(tlp) if tlp is not None else None

    def action(exchange: Exchange) -> list[Sighted]:
        principal = exchange.auth.principal_for_user(user)
        return exchange.sightings.sight(principal, community, value, count, first_seen,
                                                last_seen, where, anonymous, level)

    created = run(action)
    if as_json:
        sys.stdout.write(orjson.dumps({"sightings": [s.to_json() for s in created]}).decode() + "\n")
        return
    rows = table("sighting", "indicator", "matched as", "count", "TLP")
    for column in rows.columns[:2]:
        column.overflow = "fold"  # ids are copied whole, never cut
    for s in created:
        level_ = TLP_MARKING_IDS[s.sighting["object_marking_refs"][0]]
        rows.add_row(s.sighting["id"], s.indicator_id, s.matched, str(s.sighting["count"]), level_.label)
    out.print(rows)
