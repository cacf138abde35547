"""``commonwatch export`` and ``commonwatch feed`` run as an operator's script would."""

from __future__ import annotations

import json
import os
import stat

import dns.zone
import pytest
from typer.testing import CliRunner

from commonwatch.cli.exports import write_atomically
from commonwatch.cli.main import app
from commonwatch.domain.markings import Tlp
from commonwatch.errors import InvalidParameter

from support.factories import indicator, make_member


@pytest.fixture
def cli(database_url):
    runner = CliRunner()

    def run(*args: str, code: int = 0):
        result = runner.invoke(app, ["--database-url", database_url, *args])
        assert result.exit_code == code, result.output
        return result.output

    return run


@pytest.fixture
def member(exchange):
    m = make_member(exchange, "Northern Telecom")
    exchange.admin.create_community("ring", default_tlp=Tlp.GREEN)
    exchange.admin.set_membership(m.org, "ring", True, True, Tlp.AMBER)
    cid = exchange.admin.get_community("ring").collection_id
    objs = [indicator("45.83.0.1"), {**indicator(), "pattern": "[domain-name:value = 'evil-cdn.top']"}]
    assert not exchange.ingest.add_objects(m.principal, cid, objs).failures
    return m


def test_export_writes_files_atomically(cli, member, tmp_path):
    (tmp_path / "out").mkdir()
    zone = tmp_path / "out" / "cw.rpz"
    zone.write_text("old content")
    out = cli("export", "--user", member.user, "--format", "rpz", "-o", str(zone))
    assert "2 objects read, 2 passed the filters" in out
    parsed = dns.zone.from_text(zone.read_text(), origin="rpz.example.")
    assert parsed.get_node("evil-cdn.top") is not None and parsed.get_node("*.evil-cdn.top") is not None
    assert [p.name for p in zone.parent.iterdir()] == ["cw.rpz"]  # no temporary file left behind
    assert stat.S_IMODE(zone.stat().st_mode) & 0o044  # readable by the sensor's user
    ips = cli("export", "--user", member.user, "--format", "plain-ip", "--community", "ring")
    assert ips.splitlines()[0] == "45.83.0.1"
    cli("export", "--user", member.user, "--format", "csv", "--tlp", "purple", code=2)
    cli("export", "--user", member.user, "--format", "nope", code=2)
    cli("export", "--user", "ghost", "--format", "csv", code=3)
    assert "no community" in cli("export", "--user", member.user, "-f", "csv", "--community", "x", code=3)
    missing_dir = str(tmp_path / "no" / "f")
    assert "directory" in cli("export", "--user", member.user, "-f", "csv", "-o", missing_dir, code=2)


def test_atomic_write_keeps_the_old_file_on_failure(tmp_path):
    target = tmp_path / "intel.dat"
    target.write_text("previous")

    def chunks():
        yield "half"
        raise InvalidParameter("stream broke")

    with pytest.raises(InvalidParameter):
        write_atomically(target, chunks())
    assert target.read_text() == "previous" and os.listdir(tmp_path) == ["intel.dat"]


def test_feed_commands(cli, member):
    out = cli("feed", "create", "edl", "--user", member.user, "-f", "plain-domain", "--description", "fw")
    assert "GET /feeds/edl" in out
    assert "edl" in cli("feed", "list", "--user", member.user)
    shown = cli("feed", "show", "edl", "--user", member.user)
    assert '"format": "plain-domain"' in shown and '"tlp": "amber"' in shown
    assert "already has a feed" in cli("feed", "create", "edl", "--user", member.user, "-f", "csv", code=3)
    out = cli("feed", "update", "edl", "--user", member.user, "-f", "rpz", "--tlp", "green")
    assert "redefined feed 'edl' (rpz): GET /feeds/edl" in out
    shown = cli("feed", "show", "edl", "--user", member.user)
    assert '"format": "rpz"' in shown and '"tlp": "green"' in shown and '"description": ""' in shown
    assert "no feed named 'nope'" in cli("feed", "update", "nope", "--user", member.user, "-f", "csv", code=3)
    cli("feed", "delete", "edl", "--user", member.user)
    cli("feed", "show", "edl", "--user", member.user, code=3)


def test_restamp_warninglists_command(cli, member, monkeypatch, tmp_path):
    """Same lists: nothing to do. Another list directory: every version is restamped."""
    assert "on 0 object versions" in cli("db", "restamp-warninglists")
    (tmp_path / "l.json").write_text(json.dumps({"name": "ours", "description": "d", "source": "s",
                                                 "licence": "l", "values": {"ipv4-addr": ["45.83.0.1"]}}))
    monkeypatch.setenv("COMMONWATCH_WARNINGLIST_DIRS", str(tmp_path))
    assert "on 2 object versions" in cli("db", "restamp-warninglists")
    out = cli("export", "--user", member.user, "--format", "plain-ip")
    assert "45.83.0.1" not in out
