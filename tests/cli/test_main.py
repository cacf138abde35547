"""The ``commonwatch`` CLI, run non-interactively as an operator's script would."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from commonwatch.cli.main import app
from commonwatch.services.demo import COMMUNITIES, ORGS


@pytest.fixture
def cli(database_url):
    runner = CliRunner()

    def run(*args: str, code: int = 0):
        result = runner.invoke(app, ["--database-url", database_url, *args])
        assert result.exit_code == code, result.output
        return result.output

    return run


def test_admin_commands_script_a_federation(cli, exchange):
    cli("org", "create", "Northern Telecom", "--sector", "operator", "--country", "LU")
    cli("user", "create", "north-soc", "--org", "Northern Telecom", "--role", "analyst")
    token = cli("token", "create", "north-soc", "--label", "siem", "--bare").strip()
    assert token.startswith("cw_") and "\n" not in token
    assert exchange.auth.authenticate(token, "north-soc").user_name == "north-soc"
    cli("community", "create", "isac", "--default-tlp", "green", "--public")
    cli("member", "set", "isac", "Northern Telecom", "--no-write", "--max-tlp", "amber+strict")
    listing = cli("member", "list", "isac")
    assert "Northern Telecom" in listing and "TLP:AMBER+STRICT" in listing
    assert "north-soc" in cli("user", "list") and "isac" in cli("community", "list")
    assert "Northern Telecom" in cli("org", "list")
    assert token not in cli("token", "list")  # tokens are never shown again
    token_id = exchange.admin.list_tokens("north-soc")[0][0].id
    cli("token", "revoke", str(token_id))
    from commonwatch.errors import AuthenticationRequired
    with pytest.raises(AuthenticationRequired):
        exchange.auth.authenticate(token)
    cli("member", "remove", "isac", "Northern Telecom")
    assert "Northern Telecom" not in cli("member", "list", "isac")
    assert "now org-admin" in cli("user", "set-role", "north-soc", "org-admin")
    assert exchange.admin.get_user("north-soc").role == "org-admin"
    assert "role 'chief' is not one of" in cli("user", "set-role", "north-soc", "chief", code=2)
    cli("user", "create", "root", "--org", "Northern Telecom", "--role", "admin")
    assert "last active instance admin" in cli("user", "disable", "root", code=3)
    assert "last active instance admin" in cli("user", "set-role", "root", "reader", code=3)
    assert exchange.admin.get_user("root").role == "admin"


def test_organisations_and_communities_are_changed_and_deleted_by_script(cli, exchange):
    cli("org", "create", "Nrthern Telecom", "--sector", "vendor")
    out = cli("org", "set", "Nrthern Telecom", "--name", "Northern Telecom", "--sector", "operator",
              "--country", "LU")
    assert "'Northern Telecom': sector operator, country LU" in out
    assert "already exists" in cli("org", "create", "Northern Telecom", "--sector", "operator", code=3)
    cli("community", "create", "isac")
    out = cli("community", "set", "isac", "--name", "telco-isac", "--title", "Telco ISAC", "--public")
    assert "'telco-isac'" in out and "public=True" in out
    assert exchange.admin.get_community("telco-isac").title == "Telco ISAC"
    assert "public=False" in cli("community", "set", "telco-isac", "--private")
    cli("member", "set", "telco-isac", "Northern Telecom")
    cli("community", "delete", "telco-isac")
    assert "no community named 'telco-isac'" in cli("community", "delete", "telco-isac", code=3)
    cli("org", "delete", "Northern Telecom")
    assert "Northern Telecom" not in cli("org", "list")


def test_errors_say_what_is_wrong_with_exit_codes(cli):
    out = cli("org", "create", "X", "--sector", "pirates", code=2)
    assert "sector" in out
    out = cli("user", "create", "u", "--org", "Nobody", code=3)
    assert "no organisation named 'Nobody'" in out
    cli("org", "create", "Dup", "--sector", "other")
    assert "already exists" in cli("org", "create", "Dup", "--sector", "other", code=3)
    cli("community", "create", "c", "--default-tlp", "purple", code=2)
    assert "Traceback" not in cli("token", "revoke", "999", code=3)


def test_demo_creates_the_federation_once_and_prints_tokens(cli, exchange):
    out = cli("demo")
    assert "created" in out and "/taxii2/" in out
    for org in ORGS:
        assert org.user in out
    assert {c.name for c in exchange.admin.list_communities()} == set(COMMUNITIES)
    again = cli("demo")
    assert "already present" in again
    principal = exchange.auth.principal_for_user(ORGS[4].user)  # the hospital: GREEN max
    (community, _) = [(c, k) for c, k in exchange.query.collections(principal)][0]
    from commonwatch.services.query import ObjectFilter
    rows = exchange.query.objects(principal, community.collection_id, ObjectFilter()).rows
    assert rows and all(b'"marking-definition--55d920b0' not in (r.raw or b"") for r in rows)
