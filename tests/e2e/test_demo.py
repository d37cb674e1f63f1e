"""``alliance-psi demo``: the whole alliance as separate processes, checked against what it planted."""

from __future__ import annotations

import json
import subprocess
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner

from alliance_psi.cli._processes import cli_command
from alliance_psi.cli.main import main

pytestmark = pytest.mark.timeout(600)


def test_demo_finds_exactly_what_it_planted(tmp_path: Path) -> None:
    out = tmp_path / "demo-output"  # The default, relative to where `make demo` runs.
    done = subprocess.run(
        cli_command("demo", "--members", "3", "--size", "80"),
        cwd=tmp_path,
        capture_output=True,
        check=False,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "found == planted for every member" in done.stdout
    # One custodian is one key holder: the demo says so, as a node's join would.
    assert "warning: one key custodian:" in " ".join(done.stdout.split())
    for member in ("bank-a", "bank-b", "cfc-c"):
        html = (out / member / "report.html").read_text(encoding="utf-8")
        assert "<table" in html and "http://" not in html
        report = json.loads((out / member / "report.json").read_text(encoding="utf-8"))
        assert report["member_id"] == member and report["leads"]
        verify = subprocess.run(
            cli_command(
                "report",
                "verify",
                str(out / member / "report.json"),
                "--ca",
                str(out / "alliance" / "pki" / "ca.pem"),
                "--coordinator-key",
                str(out / "alliance" / "signing.pub"),
            ),
            capture_output=True,
            check=False,
            text=True,
        )
        assert verify.returncode == 0 and verify.stdout.startswith("valid"), verify.stdout + verify.stderr
        # The coordinator enrolled each member's key and names it in the signed result.
        assert "the key the coordinator enrolled for the member" in verify.stdout
    # The custodian is certified by its own CA, and every member pins that CA for it.
    for member in ("bank-a", "bank-b", "cfc-c"):
        (custodian,) = tomllib.loads((out / member / "node.toml").read_text(encoding="utf-8"))["node"]["custodian"]
        assert custodian.startswith("custodian-1@127.0.0.1:")
        assert custodian.endswith(f",ca={out / 'custodian' / 'ca' / 'ca.pem'}")
    assert not (out / "alliance" / "pki" / "custodian-1.pem").exists()
    # The GB18030 file with Chinese headers was imported without rejections.
    assert not list((out / "bank-b").glob("*.rejects.csv"))
    # Each server served the members its own operator enrolled, by key (the operator as admin too).
    for server, group, names in (
        ("custodian", "member", ["bank-a", "bank-b", "cfc-c"]),
        ("coordinator", "member", ["bank-a", "bank-b", "cfc-c"]),
        ("coordinator", "admin", ["operator"]),
    ):
        database = f"sqlite:///{out / 'alliance' / f'{server}.db'}"
        listed = CliRunner().invoke(main, [server, group, "list", "--database", database])
        assert listed.exit_code == 0, listed.output
        assert [line.split()[0] for line in listed.output.splitlines()[1:]] == names


def test_demo_refuses_a_threshold_above_the_member_count(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["demo", "--members", "3", "--threshold", "4", "--out", str(tmp_path / "d")])
    assert result.exit_code == 2
    assert "threshold 4 exceeds the 3 members" in result.output
    assert not (tmp_path / "d").exists()
