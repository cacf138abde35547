"""``commonwatch``: run the server and administer the exchange.

Every command works non-interactively so operators can script it. Errors print one
line saying what is wrong and exit with status 2 (bad input), 3 (not found or
conflict) or 1 (anything else).
"""

from __future__ import annotations

import signal
import sys
from types import FrameType
from typing import Annotated

import typer
from rich.markup import escape

from commonwatch.cli import detect, exports, imports, lifecycle, lookup, sightings
from commonwatch.cli.common import DbOption, err, out, run, settings, state, table, tlp_option
from commonwatch.domain.markings import Tlp
from commonwatch.errors import CommonWatchError
from commonwatch.process import tune_for_throughput
from commonwatch.services.exchange import Exchange

app = typer.Typer(no_args_is_help=True, help="CommonWatch threat-intelligence exchange.")
org_app = typer.Typer(no_args_is_help=True, help="Organisations (members).")
user_app = typer.Typer(no_args_is_help=True, help="Users of organisations.")
token_app = typer.Typer(no_args_is_help=True, help="API tokens.")
community_app = typer.Typer(no_args_is_help=True, help="Communities (TAXII collections).")
member_app = typer.Typer(no_args_is_help=True, help="Memberships of organisations in communities.")
db_app = typer.Typer(no_args_is_help=True, help="Database schema.")
for sub, name in ((org_app, "org"), (user_app, "user"), (token_app, "token"),
                  (community_app, "community"), (member_app, "member"), (db_app, "db")):
    app.add_typer(sub, name=name)
for commands in (imports, exports, lookup, sightings, lifecycle, detect):
    commands.register(app)

@app.callback()
def main(database_url: DbOption = None) -> None:
    """Settings come from COMMONWATCH_* environment variables and these options."""
    state["database_url"] = database_url


# -- server ----------------------------------------------------------------------------
@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to listen on.")] = None,
    port: Annotated[int | None, typer.Option(help="TCP port.")] = None,
) -> None:
    """Run the TAXII 2.1 server and the JSON API."""
    import uvicorn

    from commonwatch.web.app import SERVER_OPTIONS, create_app

    try:
        config = settings(host=host, port=port)
        exchange = Exchange(config)
        exchange.export.warninglists()  # operator lists checked now, not at the first request
    except CommonWatchError as exc:
        err.print(f"[red]error:[/red] {escape(' '.join(exc.message.split()))}", highlight=False)
        raise typer.Exit(1) from None
    app = create_app(exchange)
    tune_for_throughput()  # a page of 1,000 rows allocates thousands of short-lived objects
    # uvicorn stops gracefully on SIGTERM, then raises the signal again with the handler
    # it found at start: by default that kills the process before the `finally` below,
    # and SQLite's write-ahead log stays beside the file (a copy of the file alone would
    # miss what it holds). This handler turns it into an orderly exit instead.
    previous = signal.signal(signal.SIGTERM, _exit_quietly)
    try:
        uvicorn.run(app, host=config.host, port=config.port, log_level=config.log_level, **SERVER_OPTIONS)
    finally:
        signal.signal(signal.SIGTERM, previous)
        exchange.close()


def _exit_quietly(_signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(0)


@app.command()
def demo(
    host: Annotated[str | None, typer.Option(help="Host shown in the URLs.")] = None,
    port: Annotated[int | None, typer.Option(help="Port shown in the URLs.")] = None,
) -> None:
    """Create the demo federation (if the database is empty) and print fresh tokens."""
    from commonwatch.services.demo import create_demo, demo_tokens

    def action(exchange: Exchange) -> None:
        created = create_demo(exchange)
        s = settings(host=host, port=port)
        base = f"http://{s.host}:{s.port}"
        # Plain lines, never wrapped or cut: people copy these URLs and tokens.
        lines = [
            "Demo federation " + ("created." if created else "already present."),
            f"TAXII discovery:  {base}/taxii2/",
            f"TAXII API root:   {base}/taxii2/api/",
        ]
        lines += [f"  collection {c.name}: {base}/taxii2/api/collections/{c.collection_id}/"
                  for c in exchange.admin.list_communities()]
        lines += [f"Admin API docs:   {base}/api/docs", "",
                  "Demo tokens (HTTP Basic with user + token, or Authorization: Bearer <token>):"]
        lines += [f"  {org:<20} {user:<18} {token}" for org, user, token in demo_tokens(exchange)]
        sys.stdout.write("\n".join(lines) + "\n")

    run(action)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Create or migrate the schema to the newest version."""
    def action(exchange: Exchange) -> None:
        assert exchange.migrated is not None
        before, after = exchange.migrated
        if before == after:
            out.print(f"schema is up to date (revision {after})", highlight=False)
        else:
            out.print(f"schema migrated from revision {before or 'none (new database)'} to {after}",
                      highlight=False)

    run(action)


@db_app.command("restamp-warninglists")
def db_restamp() -> None:
    """Store the verdicts of the warninglists loaded now on stored objects (after the
    lists changed: exports then read them instead of checking the values again)."""
    def action(exchange: Exchange) -> None:
        changed = exchange.ingest.restamp_verdicts()
        out.print(f"warninglist verdicts stored on {changed:,} object versions")

    run(action)


# -- organisations -----------------------------------------------------------------------
@org_app.command("create")
def org_create(
    name: str,
    sector: Annotated[str, typer.Option(help="government, operator, vendor, end-user, research, other")],
    country: Annotated[str | None, typer.Option(help="ISO 3166 alpha-2 code")] = None,
) -> None:
    """Create an organisation and its STIX identity."""
    org = run(lambda x: x.admin.create_org(name, sector, country))
    out.print(f"created organisation {org.name!r} identity {org.identity_id}", highlight=False)


@org_app.command("list")
def org_list() -> None:
    """List organisations."""
    rows = table("name", "sector", "country", "identity")
    for o in run(lambda x: x.admin.list_orgs()):
        rows.add_row(o.name, o.sector, o.country or "", o.identity_id)
    out.print(rows)


@org_app.command("set")
def org_set(
    name: str,
    new_name: Annotated[str | None, typer.Option("--name", help="New name")] = None,
    sector: Annotated[str | None, typer.Option(help="New sector")] = None,
    country: Annotated[str | None, typer.Option(help="ISO 3166 alpha-2 code ('' for none)")] = None,
) -> None:
    """Rename an organisation or change its sector or country (its STIX identity stays)."""
    org = run(lambda x: x.admin.update_org(name, new_name=new_name, sector=sector, country=country))
    out.print(f"organisation {org.name!r}: sector {org.sector}, country {org.country or 'none'}",
              highlight=False)


@org_app.command("delete")
def org_delete(name: str) -> None:
    """Delete an organisation that never shared anything, with its users, tokens and
    feeds (one that did: remove its memberships and disable its users instead)."""
    run(lambda x: x.admin.delete_org(name))
    out.print(f"deleted organisation {name!r}", highlight=False)


# -- users ---------------------------------------------------------------------------
@user_app.command("create")
def user_create(
    name: str,
    org: Annotated[str, typer.Option(help="Organisation name")],
    role: Annotated[str, typer.Option(help="admin, org-admin, analyst, reader, sync")] = "analyst",
) -> None:
    """Create a user in an organisation."""
    user = run(lambda x: x.admin.create_user(org, name, role))
    out.print(f"created user {user.name!r} ({user.role}) in {org!r}", highlight=False)


@user_app.command("list")
def user_list(org: Annotated[str | None, typer.Option(help="Only this organisation")] = None) -> None:
    """List users."""
    rows = table("name", "organisation", "role", "active")
    for u, o in run(lambda x: x.admin.list_users(org)):
        rows.add_row(u.name, o, u.role, "yes" if u.active else "no")
    out.print(rows)


@user_app.command("disable")
def user_disable(name: str) -> None:
    """Disable a user: its tokens stop working."""
    run(lambda x: x.admin.set_user_active(name, False))
    out.print(f"disabled user {name!r}", highlight=False)


@user_app.command("enable")
def user_enable(name: str) -> None:
    """Enable a disabled user again."""
    run(lambda x: x.admin.set_user_active(name, True))
    out.print(f"enabled user {name!r}", highlight=False)


@user_app.command("set-role")
def user_set_role(
    name: str,
    role: Annotated[str, typer.Argument(help="admin, org-admin, analyst, reader, sync")],
) -> None:
    """Change a user's role (it applies from the user's next request)."""
    run(lambda x: x.admin.update_user(name, role=role))
    out.print(f"user {name!r} is now {role}", highlight=False)


# -- tokens ----------------------------------------------------------------------------
@token_app.command("create")
def token_create(
    user: str,
    label: Annotated[str, typer.Option(help="What the token is for")] = "",
    expires_in_days: Annotated[int | None, typer.Option(help="Expiry in days (none: never)")] = None,
    bare: Annotated[bool, typer.Option("--bare", help="Print only the token, for scripts")] = False,
) -> None:
    """Create an API token. It is shown once; only its hash is stored."""
    issued = run(lambda x: x.admin.create_token(user, label, expires_in_days))
    if bare:
        sys.stdout.write(issued.secret + "\n")
        return
    out.print(f"token id {issued.token.id} for {user!r} (shown once, store it now):", highlight=False)
    out.print(issued.secret, highlight=False)


@token_app.command("list")
def token_list(user: Annotated[str | None, typer.Option(help="Only this user")] = None) -> None:
    """List tokens (never the tokens themselves)."""
    rows = table("id", "user", "prefix", "label", "expires", "revoked")
    from commonwatch.domain.stix import format_timestamp

    for t, u in run(lambda x: x.admin.list_tokens(user)):
        rows.add_row(str(t.id), u, t.prefix + "…", t.label,
                      format_timestamp(t.expires_us) if t.expires_us else "never",
                      "yes" if t.revoked_us else "no")
    out.print(rows)


@token_app.command("revoke")
def token_revoke(token_id: int) -> None:
    """Revoke a token by id (see `token list`)."""
    run(lambda x: x.admin.revoke_token(token_id))
    out.print(f"revoked token {token_id}")


# -- communities -----------------------------------------------------------------------
@community_app.command("create")
def community_create(
    name: str,
    title: Annotated[str | None, typer.Option(help="Human title")] = None,
    description: Annotated[str, typer.Option(help="Description")] = "",
    default_tlp: Annotated[str, typer.Option(help="TLP of unmarked objects")] = "amber",
    public: Annotated[bool, typer.Option("--public", help="Show TLP:CLEAR to anonymous readers")] = False,
) -> None:
    """Create a community (one TAXII collection)."""
    tlp = tlp_option(default_tlp)
    c = run(lambda x: x.admin.create_community(name, title, description, tlp, public))
    out.print(f"created community {c.name!r} collection {c.collection_id}", highlight=False)


@community_app.command("list")
def community_list() -> None:
    """List communities."""
    rows = table("name", "collection id", "default TLP", "public")
    for c in run(lambda x: x.admin.list_communities()):
        rows.add_row(c.name, c.collection_id, Tlp(c.default_tlp).label, "yes" if c.public else "no")
    out.print(rows)


@community_app.command("set")
def community_set(
    name: str,
    new_name: Annotated[str | None, typer.Option("--name", help="New name (the collection id stays)")] = None,
    title: Annotated[str | None, typer.Option(help="Human title")] = None,
    description: Annotated[str | None, typer.Option(help="Description")] = None,
    public: Annotated[bool | None, typer.Option(
        "--public/--private", help="Show TLP:CLEAR to anonymous readers, or stop")] = None,
) -> None:
    """Rename a community or change its title, description or public flag."""
    c = run(lambda x: x.admin.update_community(name, new_name=new_name, title=title,
                                               description=description, public=public))
    out.print(f"community {c.name!r} collection {c.collection_id}: public={c.public}", highlight=False)


@community_app.command("delete")
def community_delete(name: str) -> None:
    """Delete a community no member shared anything in and no feed reads."""
    run(lambda x: x.admin.delete_community(name))
    out.print(f"deleted community {name!r}", highlight=False)


# -- memberships -----------------------------------------------------------------------
@member_app.command("set")
def member_set(
    community: str,
    org: str,
    read: Annotated[bool, typer.Option("--read/--no-read", help="May read")] = True,
    write: Annotated[bool, typer.Option("--write/--no-write", help="May write")] = True,
    max_tlp: Annotated[str, typer.Option(help="Highest TLP the member receives")] = "amber",
) -> None:
    """Add an organisation to a community, or change its rights there."""
    tlp = tlp_option(max_tlp)
    run(lambda x: x.admin.set_membership(org, community, read, write, tlp))
    out.print(f"{org!r} in {community!r}: read={read} write={write} max_tlp={tlp.label}", highlight=False)


@member_app.command("remove")
def member_remove(community: str, org: str) -> None:
    """Remove an organisation from a community."""
    run(lambda x: x.admin.remove_membership(org, community))
    out.print(f"removed {org!r} from {community!r}", highlight=False)


@member_app.command("list")
def member_list(community: Annotated[str | None, typer.Argument()] = None) -> None:
    """List memberships."""
    rows = table("community", "organisation", "read", "write", "max TLP")
    for m, o, c in run(lambda x: x.admin.list_memberships(community)):
        rows.add_row(c, o, "yes" if m.can_read else "no", "yes" if m.can_write else "no",
                      Tlp(m.max_tlp).label)
    out.print(rows)
