"""``commonwatch lifecycle``: decay scores of your indicators, and their expiry written as data."""

from __future__ import annotations

import sys
from typing import Annotated

import orjson
import typer
from rich.markup import escape

from commonwatch.cli.common import out, run, table
from commonwatch.services.exchange import Exchange
from commonwatch.services.lifecycle import ExpiryReport, IndicatorScore

lifecycle_app = typer.Typer(no_args_is_help=True,
                            help="Indicator lifecycle: decay scores and expiry (docs/lifecycle.md).")
Community = Annotated[str, typer.Option("--community", help="Community (name or collection id).")]
User = Annotated[str, typer.Option("--user", help="Act as this user (its organisation's indicators).")]
Json = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    app.add_typer(lifecycle_app, name="lifecycle")


@lifecycle_app.command("scores")
def scores(community: Community, user: User, as_json: Json = False) -> None:
    """Score every indicator your organisation produced in the community."""

    def action(exchange: Exchange) -> list[IndicatorScore]:
        return exchange.lifecycle.scores(exchange.auth.principal_for_user(user), community)

    found = run(action)
    if as_json:
        sys.stdout.write(orjson.dumps({"indicators": [s.to_json() for s in found]}).decode() + "\n")
        return
    rows = table("id", "type", "value", "score", "expires at", "revoked")
    rows.columns[0].overflow = rows.columns[2].overflow = "fold"  # copied whole, never cut
    for s in found:
        j = s.to_json()
        rows.add_row(s.id, s.kind or "", s.value or "", f"{s.score:.1f}", j["expires_at"] or "",
                     "yes" if s.revoked else "")
    out.print(rows)


@lifecycle_app.command("expire")
def expire(
    community: Community, user: User,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show the new versions, write nothing.")] = False,
    revoke: Annotated[list[str] | None, typer.Option("--revoke", help="Also revoke this indicator "
                                                     "of yours now (repeatable).")] = None,
    as_json: Json = False,
) -> None:
    """Write valid_until / revoked of your decayed indicators as new versions."""

    def action(exchange: Exchange) -> ExpiryReport:
        principal = exchange.auth.principal_for_user(user)
        return exchange.lifecycle.expire(principal, community, dry_run=dry_run,
                                                  revoke=tuple(revoke or ()))

    report = run(action)
    if as_json:
        sys.stdout.write(orjson.dumps(report.to_json()).decode() + "\n")
    else:
        rows = table("id", "valid_until", "revoked", "why")
        rows.columns[0].overflow = "fold"
        for c in report.changes:
            rows.add_row(c.id, c.valid_until, "yes" if c.revoked else "", c.reason)
        out.print(rows)
        verb = "would write" if dry_run else "wrote"
        out.print(f"{verb} {len(report.changes)} new version(s) in {report.community!r}", highlight=False)
        for f in report.failures:
            out.print(f"[red]refused:[/red] {escape(f'{f.id}: {f.message}')}", highlight=False)
    if report.failures:
        raise typer.Exit(1)
