"""``alliance-psi demo``: the whole alliance as separate processes, checked against what it planted."""

from __future__ import annotations

import json
import re
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
    # 2-of-3 threshold custody, dealt by the demo itself: it says so, as a node's join would.
    said = " ".join(done.stdout.split())
    assert "2-of-3 threshold key custodians" in said
    assert "warning: key epoch demo-epoch was dealt by one dealer, who knew the whole key" in said
    # The living service: bank-b's inbox file gives bank-a's node a verified MATCH alert, timed.
    assert re.search(
        r"bank-a's node received the coordinator's signed MATCH alert \(holders 2, verified: .*\) "
        r"\d+\.\d\d s after bank-b's commit",
        said,
    ), said[-3000:]
    logged = [json.loads(line) for line in (out / "bank-a" / "alerts.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [n for n in logged if n["data"]["kind"] == "match" and n["data"]["holder_count"] == 2]
    assert all("value" not in (n["data"]["identifier"] or {}) for n in logged)  # Masked in the member's log.
    assert (out / "bank-b" / "inbox" / "done" / "new-lead.csv").exists()
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
    # Three custodians of one threshold epoch, each certified by a CA of its own, which every member
    # pins for it.
    folders = {"custodian-1": out / "custodian", "custodian-2": out / "custodian-2", "custodian-3": out / "custodian-3"}
    for member in ("bank-a", "bank-b", "cfc-c"):
        node = tomllib.loads((out / member / "node.toml").read_text(encoding="utf-8"))["node"]
        assert len(node["custodian"]) == 3
        for (name, folder), custodian in zip(folders.items(), node["custodian"], strict=True):
            assert custodian.startswith(f"{name}@127.0.0.1:")
            assert custodian.endswith(f",ca={folder / 'ca' / 'ca.pem'}")
        assert node["epoch-file"] == str(out / "alliance" / "epoch.json")
    for name in folders:
        assert not (out / "alliance" / "pki" / f"{name}.pem").exists()
    # The GB18030 file with Chinese headers was imported without rejections.
    assert not list((out / "bank-b").glob("*.rejects.csv"))
    # Each server served the members its own operator enrolled, by key (the operator as admin too).
    for server, database_file, group, names in (
        ("custodian", out / "alliance" / "custodian.db", "member", ["bank-a", "bank-b", "cfc-c"]),
        ("custodian", out / "custodian-3" / "quota.db", "member", ["bank-a", "bank-b", "cfc-c"]),
        ("coordinator", out / "alliance" / "coordinator.db", "member", ["bank-a", "bank-b", "cfc-c"]),
        ("coordinator", out / "alliance" / "coordinator.db", "admin", ["operator"]),
    ):
        database = f"sqlite:///{database_file}"
        listed = CliRunner().invoke(main, [server, group, "list", "--database", database])
        assert listed.exit_code == 0, listed.output
        assert [line.split()[0] for line in listed.output.splitlines()[1:]] == names


def test_demo_refuses_a_threshold_above_the_member_count(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["demo", "--members", "3", "--threshold", "4", "--out", str(tmp_path / "d")])
    assert result.exit_code == 2
    assert "threshold 4 exceeds the 3 members" in result.output
    assert not (tmp_path / "d").exists()
