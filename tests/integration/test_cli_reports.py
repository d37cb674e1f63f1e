"""The report commands end to end on real SQLite databases: exit codes, exact messages, file modes.

The member database holds real identifiers, cached tokens and a signed result with sealed peer
labels (``tests.unit.reports.support``); the coordinator database holds two members' committed
submissions. Commands are invoked through their groups, as ``alliance-psi`` wires them.
"""

from __future__ import annotations

import json
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from alliance_psi.cli import node_report  # noqa: F401 - attaches `node report` and `node results`.
from alliance_psi.cli.coordinator import coordinator_group
from alliance_psi.cli.node import node_group
from alliance_psi.cli.reports import report_group
from alliance_psi.crypto.signing import SigningKey
from alliance_psi.protocol.model import Round
from alliance_psi.protocol.submission import SubmissionDigest, chunk_digest
from alliance_psi.storage import CoordinatorRepository, MemberRepository, create_schema, make_engine
from tests.unit.reports.support import (
    KEY,
    KEY_EPOCH,
    MEMBER_ID,
    PLANTED,
    ROUND_ID,
    ROUND_NAME,
    member_result,
    signed,
)

NOW = datetime(2025, 7, 1, 9, 30, tzinfo=UTC)
HOLDERS = "leads 1 held by 4, 2 held by 3, 4 held by 2"
RUNNER = CliRunner(env={"COLUMNS": "200"})


@pytest.fixture
def node(tmp_path: Path) -> dict[str, str]:
    """A member database with identifiers, their cached tokens and the kept signed result."""
    url = f"sqlite:///{tmp_path / 'node.db'}"
    engine = make_engine(url)
    create_schema(engine)
    with engine.begin() as conn:
        repo = MemberRepository(conn)
        repo.upsert_identifiers(
            [
                {
                    "type": p.type,
                    "canonical": p.canonical,
                    "category": p.category,
                    "severity": p.severity,
                    "first_seen": p.first_seen,
                    "case_ref": p.case_ref,
                }
                for p in PLANTED
            ],
            at=NOW,
        )
        ids = {(type_, canonical): id_ for id_, type_, canonical in repo.iter_identifiers()}
        repo.cache_tokens(KEY_EPOCH, [(ids[(p.type, p.canonical)], p.token, p.label_key) for p in PLANTED])
        payload, signature = signed(member_result())
        repo.save_result(
            ROUND_ID, key_epoch=KEY_EPOCH, round_name=ROUND_NAME, payload=payload, signature=signature, at=NOW
        )
    engine.dispose()
    key_file = tmp_path / "signing.pub"
    key_file.write_text(KEY.public_key.hex() + "\n")
    return {"database": url, "key": str(key_file), "dir": str(tmp_path)}


def report(node: dict[str, str], output: Path, fmt: str, *extra: str) -> Result:
    return RUNNER.invoke(
        node_group,
        [
            "report",
            ROUND_ID,
            "--format",
            fmt,
            "-o",
            str(output),
            "--database",
            node["database"],
            "--member-id",
            MEMBER_ID,
            "--coordinator-key",
            node["key"],
            *extra,
        ],
    )


def verify(path: Path, key: str) -> Result:
    return RUNNER.invoke(report_group, ["verify", str(path), "--coordinator-key", key])


@pytest.mark.parametrize("fmt", ["html", "csv", "json"])
def test_node_report_writes_a_private_file_atomically(node: dict[str, str], tmp_path: Path, fmt: str) -> None:
    output = tmp_path / f"leads.{fmt}"
    output.write_text("old")
    output.chmod(0o644)
    result = report(node, output, fmt)
    assert result.exit_code == 0, result.output
    assert result.output == (
        f"wrote {output} ({fmt}, mode 0600): 7 leads in round {ROUND_ID} ({ROUND_NAME}), "
        f"{HOLDERS}; verified with coordinator key {KEY.key_id}\n"
    )
    assert stat.S_IMODE(output.stat().st_mode) == 0o600
    assert b"+8613800138000" in output.read_bytes()
    assert {p.name for p in tmp_path.iterdir()} - {"node.db", "node.db-shm", "node.db-wal"} == {
        "signing.pub",
        f"leads.{fmt}",
    }  # No temporary file left behind.


def test_the_json_report_verifies_and_a_tampered_one_names_the_mismatch(node: dict[str, str], tmp_path: Path) -> None:
    output = tmp_path / "leads.json"
    assert report(node, output, "json").exit_code == 0
    valid = verify(output, node["key"])
    assert valid.exit_code == 0, valid.output
    assert valid.output == (
        f"valid: 7 leads of 7 signed matches in round {ROUND_ID} ({ROUND_NAME}) for member "
        f"{MEMBER_ID}; {HOLDERS}; threshold 2, key epoch {KEY_EPOCH}, coordinator key {KEY.key_id}\n"
    )
    doc = json.loads(output.read_bytes())
    doc["leads"][1]["holder_count"] = 4
    tampered = tmp_path / "tampered.json"
    tampered.write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    refused = verify(tampered, node["key"])
    assert refused.exit_code == 1
    assert refused.output == "Error: lead 2 (id_card): holder_count 4 in the report, 3 in the signed result\n"
    other = tmp_path / "other.pub"
    other.write_text(SigningKey.generate().public_key.hex())
    wrong_key = verify(output, str(other))
    assert wrong_key.exit_code == 1 and wrong_key.output.startswith("Error: signature does not verify against key ")


def test_a_withdrawn_identifier_is_left_out_and_the_report_still_verifies(node: dict[str, str], tmp_path: Path) -> None:
    engine = make_engine(node["database"])
    with engine.begin() as conn:
        assert MemberRepository(conn).withdraw("qq", "12345678")
    engine.dispose()
    output = tmp_path / "leads.json"
    result = report(node, output, "json")
    assert result.exit_code == 0, result.output
    assert "6 leads" in result.output and "1 withdrawn identifiers left out" in result.output
    assert "12345678" not in output.read_text(encoding="utf-8")
    assert "valid: 6 leads of 7 signed matches (1 not listed)" in verify(output, node["key"]).output


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["--member-id", "bank-b"],
            f"Error: result is for round '{ROUND_ID}' and member '{MEMBER_ID}', expected '{ROUND_ID}' and 'bank-b'\n",
        ),
    ],
)
def test_a_result_kept_for_another_member_is_refused(
    node: dict[str, str], tmp_path: Path, args: list[str], message: str
) -> None:
    result = report(node, tmp_path / "x.html", "html", *args)
    assert (result.exit_code, result.output) == (1, message)
    assert not (tmp_path / "x.html").exists()


def test_node_report_refuses_a_wrong_key_an_unknown_round_and_a_missing_directory(
    node: dict[str, str], tmp_path: Path
) -> None:
    other = SigningKey.generate()
    (tmp_path / "other.pub").write_text(other.public_key.hex())
    wrong = report(node, tmp_path / "x.html", "html", "--coordinator-key", str(tmp_path / "other.pub"))
    assert (wrong.exit_code, wrong.output) == (1, f"Error: signature does not verify against key {other.key_id}\n")
    unknown = RUNNER.invoke(
        node_group,
        [
            "report",
            "r-nope",
            "--format",
            "csv",
            "-o",
            str(tmp_path / "x.csv"),
            "--database",
            node["database"],
            "--member-id",
            MEMBER_ID,
            "--coordinator-key",
            node["key"],
        ],
    )
    assert (unknown.exit_code, unknown.output) == (
        1,
        "Error: no result kept for round r-nope: run `alliance-psi node join r-nope` first\n",
    )
    missing = report(node, tmp_path / "no" / "x.csv", "csv")
    assert (missing.exit_code, missing.output) == (
        1,
        f"Error: cannot write {tmp_path / 'no' / 'x.csv'}: No such file or directory\n",
    )
    assert not list(tmp_path.glob("*.html"))


def test_node_report_takes_its_identity_from_the_environment(node: dict[str, str], tmp_path: Path) -> None:
    env = {
        "ALLIANCE_PSI_NODE_MEMBER_ID": MEMBER_ID,
        "ALLIANCE_PSI_NODE_COORDINATOR_KEY": node["key"],
        "ALLIANCE_PSI_NODE_DATABASE": node["database"],
    }
    result = RUNNER.invoke(
        node_group, ["report", ROUND_ID, "--format", "json", "-o", str(tmp_path / "r.json")], env=env
    )
    assert result.exit_code == 0, result.output


def test_node_results_masks_values_and_lists_kept_results(node: dict[str, str]) -> None:
    leads = RUNNER.invoke(
        node_group,
        [
            "results",
            ROUND_ID,
            "--database",
            node["database"],
            "--member-id",
            MEMBER_ID,
            "--coordinator-key",
            node["key"],
        ],
    )
    assert leads.exit_code == 0, leads.output
    for planted in PLANTED:
        assert planted.canonical not in leads.output
    for masked in ("****8000", "****002X", "****3445", "****5678", "****有限公司", "****.com", "****'!A0"):
        assert masked in leads.output
    assert "proxy_rights_defense" in leads.output and "malicious_complaint" in leads.output
    assert f"round {ROUND_ID} ({ROUND_NAME}): 7 leads, threshold 2" in leads.output
    listed = RUNNER.invoke(node_group, ["results", "--database", node["database"]])
    assert listed.exit_code == 0, listed.output
    assert ROUND_ID in listed.output and ROUND_NAME in listed.output and "2025-07-01 09:30:00" in listed.output
    unverifiable = RUNNER.invoke(node_group, ["results", ROUND_ID, "--database", node["database"]])
    assert unverifiable.exit_code == 2
    assert "--member-id and --coordinator-key are needed to show a round's leads" in unverifiable.output


def _keep_again(node: dict[str, str], *, key_epoch: str = KEY_EPOCH, round_name: str = ROUND_NAME) -> None:
    # The stored key epoch and round name sit beside the signed payload, outside the signature.
    engine = make_engine(node["database"])
    payload, signature = signed(member_result())
    with engine.begin() as conn:
        MemberRepository(conn).save_result(
            ROUND_ID, key_epoch=key_epoch, round_name=round_name, payload=payload, signature=signature, at=NOW
        )
    engine.dispose()


def test_a_kept_result_filed_under_another_epoch_is_refused(node: dict[str, str], tmp_path: Path) -> None:
    _keep_again(node, key_epoch="2024-01")
    result = report(node, tmp_path / "x.json", "json")
    assert (result.exit_code, result.output) == (
        1,
        "Error: kept result is filed under key epoch '2024-01', signed for '2025-06'\n",
    )


def test_console_output_cannot_carry_escape_sequences_or_markup(node: dict[str, str], tmp_path: Path) -> None:
    _keep_again(node, round_name="季度\x1b[2J[bold red]x[/bold red]\u202e")
    outputs = [
        RUNNER.invoke(node_group, ["results", "--database", node["database"]]).output,
        RUNNER.invoke(
            node_group,
            [
                "results",
                ROUND_ID,
                "--database",
                node["database"],
                "--member-id",
                MEMBER_ID,
                "--coordinator-key",
                node["key"],
            ],
        ).output,
        report(node, tmp_path / "x.html", "html").output,
    ]
    for output in outputs:
        assert "\x1b" not in output and "\u202e" not in output
        assert "季度\ufffd[2J[bold red]x[/bold red]\ufffd" in output
    assert "季度\x1b" not in (tmp_path / "x.html").read_text(encoding="utf-8")


def _token(member: str, index: int) -> bytes:
    return bytes([index]) * 15 + member.encode()[:1]


def test_coordinator_report_shows_counts_and_never_a_token(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'coordinator.db'}"
    engine = make_engine(url)
    create_schema(engine)
    shared = [bytes([i]) * 16 for i in range(1, 4)]
    tokens = {"bank-a": [*shared, _token("a", 9)], "bank-b": [*shared[:2], _token("b", 8), _token("b", 7)]}
    with engine.begin() as conn:
        repo = CoordinatorRepository(conn)
        repo.create_round(
            Round(
                "r1",
                "第一轮",
                2,
                KEY_EPOCH,
                NOW + timedelta(days=1),
                ("phone",),
                None,
                True,
                created_by="admin",
                created_at=NOW,
            )
        )
        for member, owned in tokens.items():
            items = [(token, b"L" * 8) for token in sorted(owned)]
            digest = SubmissionDigest()
            for index in range(0, len(items), 2):
                chunk = items[index : index + 2]
                repo.stage_chunk("r1", member, index // 2, chunk, chunk_digest(chunk), at=NOW)
                digest.update(chunk)
            repo.commit_submission("r1", member, item_count=digest.count, digest=digest.digest(), at=NOW)
    engine.dispose()
    table = RUNNER.invoke(coordinator_group, ["report", "r1", "--database", url])
    assert table.exit_code == 0, table.output
    assert (
        "round r1 (第一轮): open, threshold 2, key epoch 2025-06; 2 members committed, 2 tokens held by at least 2 members"
        in table.output
    )
    as_json = RUNNER.invoke(coordinator_group, ["report", "r1", "--database", url, "--format", "json"])
    assert as_json.exit_code == 0, as_json.output
    assert json.loads(as_json.output) == {
        "round_id": "r1",
        "name": "第一轮",
        "state": "open",
        "threshold": 2,
        "key_epoch": KEY_EPOCH,
        "committed_members": 2,
        "matches_at_threshold": 2,
        "matches_by_holder_count": {"2": 2},
        "submissions": {
            "bank-a": {"state": "committed", "item_count": 4, "set_count": 4},
            "bank-b": {"state": "committed", "item_count": 4, "set_count": 4},
        },
    }
    for output in (table.output, as_json.output):
        for token in [t for owned in tokens.values() for t in owned]:
            assert token.hex() not in output and token.hex()[:8] not in output
            assert repr(token)[2:-1] not in output
    missing = RUNNER.invoke(coordinator_group, ["report", "r9", "--database", url])
    assert (missing.exit_code, missing.output) == (1, "Error: no round r9\n")
