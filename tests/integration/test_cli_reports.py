"""The report commands end to end on real SQLite databases: exit codes, exact messages, file modes.

The member database holds real identifiers, cached tokens and a signed result with sealed peer
labels (``tests.unit.reports.support``, whose CA issued bank-a's and bank-b's certificates); the
coordinator database holds two members' committed submissions. Commands are invoked through their
groups, as ``alliance-psi`` wires them. ``report verify --online`` runs against a real alliance:
custodians over real mutual TLS (``tests.integration.services.harness``).
"""

from __future__ import annotations

import json
import stat
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from alliance_psi.cli import node_report  # noqa: F401 - attaches `node report` and `node results`.
from alliance_psi.cli.coordinator import coordinator_group
from alliance_psi.cli.node import node_group
from alliance_psi.cli.reports import report_group
from alliance_psi.crypto.signing import SigningKey
from alliance_psi.protocol.model import Role, Round
from alliance_psi.protocol.submission import SubmissionDigest, chunk_digest
from alliance_psi.services import pki as pki_module
from alliance_psi.services.pki import spki_sha256
from alliance_psi.storage import CoordinatorRepositories, MemberRepository, create_schema, make_engine
from alliance_psi.storage.schema import identifier_spellings
from tests.unit.reports.support import (
    CA,
    CERTS,
    KEY,
    KEY_EPOCH,
    MEMBER_ID,
    PLANTED,
    ROUND_ID,
    ROUND_NAME,
    keep,
    member_result,
)

NOW = datetime(2025, 7, 1, 9, 30, tzinfo=UTC)
HOLDERS = "1 lead held by 4 members; 2 leads, each held by 3 members; 4 leads, each held by 2 members"
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
                    "spelling": p.spelling,
                }
                for p in PLANTED
            ],
            at=NOW,
        )
        ids = {(type_, canonical): id_ for id_, type_, canonical in repo.iter_identifiers()}
        repo.cache_tokens(KEY_EPOCH, [(ids[(p.type, p.canonical)], p.token, p.label_key) for p in PLANTED])
        keep(conn, member_result(), at=NOW)
    engine.dispose()
    key_file = tmp_path / "signing.pub"
    key_file.write_text(KEY.public_key.hex() + "\n")
    pki_dir = tmp_path / "pki"
    pki_dir.mkdir()
    (pki_dir / "ca.pem").write_bytes(CA.cert_pem)
    for name, issued in CERTS.items():
        (pki_dir / f"{name}.pem").write_bytes(issued.cert_pem)
        (pki_dir / f"{name}.key").write_bytes(issued.key_pem)
        (pki_dir / f"{name}.key").chmod(0o600)  # A private key: commands refuse one others may read.
    return {
        "database": url,
        "key": str(key_file),
        "dir": str(tmp_path),
        "ca": str(pki_dir / "ca.pem"),
        "cert": str(pki_dir / "bank-a.pem"),
        "tls_key": str(pki_dir / "bank-a.key"),
    }


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
            "--cert",
            node["cert"],
            "--key",
            node["tls_key"],
            *extra,
        ],
    )


def verify(path: Path, node: dict[str, str], *extra: str, key: str | None = None) -> Result:
    return RUNNER.invoke(
        report_group, ["verify", str(path), "--ca", node["ca"], "--coordinator-key", key or node["key"], *extra]
    )


@pytest.mark.parametrize("fmt", ["html", "csv", "json"])
def test_node_report_writes_a_private_file_atomically(node: dict[str, str], tmp_path: Path, fmt: str) -> None:
    output = tmp_path / f"leads.{fmt}"
    output.write_text("old")
    output.chmod(0o644)
    result = report(node, output, fmt)
    assert result.exit_code == 0, result.output
    evidence = "signed by member bank-a's node" if fmt == "json" else "not evidence: only a JSON report is signed"
    assert result.output == (
        f"wrote {output} ({fmt}, mode 0600): 7 leads in round {ROUND_ID} ({ROUND_NAME}): "
        f"{HOLDERS}; verified with coordinator key {KEY.key_id}; {evidence}\n"
    )
    assert stat.S_IMODE(output.stat().st_mode) == 0o600
    assert b"+8613915274680" in output.read_bytes()
    assert b"+86 139-1527-4680" in output.read_bytes()  # The member's own spelling, beside it.
    assert {p.name for p in tmp_path.iterdir()} - {"node.db", "node.db-shm", "node.db-wal"} == {
        "signing.pub",
        "pki",
        f"leads.{fmt}",
    }  # No temporary file left behind.


def _coverage(crl: str, *, rederived: bool = False) -> str:
    pin = spki_sha256(CERTS["bank-a"].cert_pem).hex()
    serial = CERTS["bank-a"].serial
    unproven = (
        ""
        if rederived
        else "that each identifier value is the one its match token was derived from (only member bank-a's node "
        "says so; --online re-derives the tokens); "
    )
    return (
        f"member signature: member bank-a's node, certificate serial {serial:#x} (key pin sha256:{pin}, the key the "
        "coordinator enrolled for the member), issued by the alliance CA, valid at SIGNED_AT (the signing time the "
        f"node states), {crl}; it covers every field: each lead's identifier value and type, own category, severity, "
        "case reference and first-seen date, the peers' labels as the node opened them (names included), the "
        "counts, the round, the times and the coordinator's evidence\n"
        f"coordinator signature: key {KEY.key_id}, over the header of the result for member bank-a in round "
        f"{ROUND_ID} (threshold, key epoch, submission size, number of matches, Merkle root, the member's enrolled "
        "key pin); each lead's leaf (match token, holder count, sealed peer labels) is in it by its inclusion proof\n"
        f"not proven: {unproven}what the sealed peer labels say and who sealed them (only holders of the identifier "
        "can open them); that the generation time is true\n"
    )


def _signed_at(path: Path) -> str:
    return json.loads(path.read_bytes())["member_signature"]["signed_at"]


def test_the_json_report_verifies_and_says_what_each_signature_covers(node: dict[str, str], tmp_path: Path) -> None:
    output = tmp_path / "leads.json"
    assert report(node, output, "json").exit_code == 0
    valid = verify(output, node)
    assert valid.exit_code == 0, valid.output
    assert valid.output == (
        f"valid: 7 leads of 7 signed matches in round {ROUND_ID} ({ROUND_NAME}) for member "
        f"{MEMBER_ID}; {HOLDERS}; threshold 2, key epoch {KEY_EPOCH}\n"
        + _coverage("revocation NOT checked (no CRL given)").replace("SIGNED_AT", _signed_at(output))
    )
    crl = tmp_path / "crl.pem"
    crl.write_bytes(pki_module.revoke(CA, [CERTS["bank-b"].serial]))
    checked = verify(output, node, "--crl", str(crl))
    assert checked.exit_code == 0, checked.output
    assert "not revoked per the CRL; it covers every field" in checked.output


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda d: d["leads"][0].update(value="+8613967021853"), "lead 1 (phone): value differs"),
        (lambda d: d["leads"][1].update(type="bank_card"), "lead 2 (bank_card): type differs"),
        (lambda d: d["leads"][0].update(case_ref="AJ-2025-9999"), "lead 1 (phone): case_ref differs"),
        (
            lambda d: d["leads"][0]["peer_labels"][1].update(member="假银行"),
            "lead 1 (phone): peer_labels[1].member differs",
        ),
        (lambda d: d["leads"][1].update(holder_count=4), "lead 2 (id_card): holder_count differs"),
        (lambda d: d["leads"][1].update(spelling="44030519870614357X"), "lead 2 (id_card): spelling differs"),
    ],
    ids=["value", "type", "case reference", "peer member name", "holder count", "spelling"],
)
def test_a_tampered_json_report_names_the_lead_and_field(
    node: dict[str, str], tmp_path: Path, change: Callable[[dict[str, Any]], object], message: str
) -> None:
    output = tmp_path / "leads.json"
    assert report(node, output, "json").exit_code == 0
    doc = json.loads(output.read_bytes())
    change(doc)
    tampered = tmp_path / "tampered.json"
    tampered.write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    refused = verify(tampered, node)
    assert (refused.exit_code, refused.output) == (1, f"Error: {message} from what member bank-a signed\n")


def test_report_verify_refuses_a_wrong_key_a_revoked_signer_and_bad_options(
    node: dict[str, str], tmp_path: Path
) -> None:
    output = tmp_path / "leads.json"
    assert report(node, output, "json").exit_code == 0
    other, other_key = tmp_path / "other.pub", SigningKey.generate()
    other.write_text(other_key.public_key.hex())
    wrong_key = verify(output, node, key=str(other))
    assert (wrong_key.exit_code, wrong_key.output) == (
        1,
        (
            "Error: the coordinator's signature over the result header: signature does not verify against key "
            f"{other_key.key_id}; the report names coordinator key {KEY.key_id}: is "
            "--coordinator-key the signing.pub of this report's alliance?\n"
        ),
    )
    html = tmp_path / "leads.html"
    assert report(node, html, "html").exit_code == 0
    as_html = verify(html, node)
    assert as_html.exit_code == 1 and as_html.output.startswith("Error: not a lead report: invalid JSON (")
    assert as_html.output.endswith(
        "Only the signed JSON report (`alliance-psi node report ROUND --format json`) can be verified: the HTML and "
        "CSV reports are for reading, not evidence\n"
    )
    crl = tmp_path / "crl.pem"
    crl.write_bytes(pki_module.revoke(CA, [CERTS["bank-a"].serial]))
    revoked = verify(output, node, "--crl", str(crl))
    assert (revoked.exit_code, revoked.output) == (
        1,
        (
            f"Error: the report's signing certificate (member bank-a, serial {CERTS['bank-a'].serial:#x}) is revoked "
            "by the CRL\n"
        ),
    )
    other_ca = tmp_path / "other-ca.pem"
    other_ca.write_bytes(pki_module.init_ca("Other").cert_pem)
    foreign = RUNNER.invoke(
        report_group, ["verify", str(output), "--ca", str(other_ca), "--coordinator-key", node["key"]]
    )
    assert (foreign.exit_code, foreign.output) == (
        1,
        (
            f"Error: the report's signing certificate (member bank-a, serial {CERTS['bank-a'].serial:#x}) was not "
            "issued by the alliance CA\n"
        ),
    )
    missing_ca = RUNNER.invoke(
        report_group, ["verify", str(output), "--ca", str(tmp_path / "nope.pem"), "--coordinator-key", node["key"]]
    )
    assert (missing_ca.exit_code, missing_ca.output) == (
        1,
        f"Error: --ca {tmp_path / 'nope.pem'}: No such file or directory\n",
    )
    offline_config = verify(output, node, "--config", str(tmp_path / "node.toml"))
    assert offline_config.exit_code == 2 and "--config is only used with --online" in offline_config.output
    no_config = verify(output, node, "--online")
    assert no_config.exit_code == 2 and "--online needs --config" in no_config.output


def test_a_json_report_needs_the_nodes_own_certificate_and_key(node: dict[str, str], tmp_path: Path) -> None:
    output = tmp_path / "leads.json"
    unsigned = RUNNER.invoke(
        node_group,
        ["report", ROUND_ID, "--format", "json", "-o", str(output), "--database", node["database"],
         "--member-id", MEMBER_ID, "--coordinator-key", node["key"]],
    )  # fmt: skip
    assert unsigned.exit_code == 2
    assert "a JSON report is signed by the node: give --cert and --key (the node's TLS files)" in unsigned.output
    pki_dir = Path(node["ca"]).parent
    other = report(node, output, "json", "--cert", str(pki_dir / "bank-b.pem"), "--key", str(pki_dir / "bank-b.key"))
    assert (other.exit_code, other.output) == (
        1,
        "Error: cannot sign member 'bank-a''s report: the certificate names member 'bank-b'\n",
    )
    mismatched = report(node, output, "json", "--key", str(pki_dir / "bank-b.key"))
    assert (mismatched.exit_code, mismatched.output) == (
        1,
        "Error: the private key is not the key of the certificate\n",
    )
    assert not output.exists()


def test_a_withdrawn_identifier_is_left_out_and_the_report_still_verifies(node: dict[str, str], tmp_path: Path) -> None:
    engine = make_engine(node["database"])
    with engine.begin() as conn:
        assert MemberRepository(conn).withdraw("qq", "48213679")
    engine.dispose()
    output = tmp_path / "leads.json"
    result = report(node, output, "json")
    assert result.exit_code == 0, result.output
    assert "6 leads" in result.output and "1 withdrawn identifier left out" in result.output
    assert "48213679" not in output.read_text(encoding="utf-8")
    assert "valid: 6 leads of 7 signed matches (1 not listed)" in verify(output, node).output


def test_counts_of_one_are_singular(node: dict[str, str], tmp_path: Path) -> None:
    engine = make_engine(node["database"])
    with engine.begin() as conn:
        for planted in PLANTED[1:]:
            assert MemberRepository(conn).withdraw(planted.type, planted.canonical)
    engine.dispose()
    output = tmp_path / "leads.json"
    result = report(node, output, "json")
    assert result.exit_code == 0, result.output
    assert f": 1 lead in round {ROUND_ID} " in result.output and ", 6 withdrawn identifiers left out;" in result.output
    assert verify(output, node).output.startswith("valid: 1 lead of 7 signed matches (6 not listed) in round")


def test_a_node_database_made_before_spellings_were_kept_still_reports(node: dict[str, str], tmp_path: Path) -> None:
    engine = make_engine(node["database"])
    identifier_spellings.drop(engine)
    engine.dispose()
    output = tmp_path / "leads.json"
    result = report(node, output, "json")
    assert result.exit_code == 0, result.output
    leads = json.loads(output.read_text(encoding="utf-8"))["leads"]
    assert len(leads) == 7 and {lead["spelling"] for lead in leads} == {None}
    assert verify(output, node).exit_code == 0


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
    assert (wrong.exit_code, wrong.output) == (
        1,
        (
            f"Error: the coordinator's signature over the result header: signature does not verify against key "
            f"{other.key_id}\n"
        ),
    )
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
        "ALLIANCE_PSI_NODE_CERT": node["cert"],
        "ALLIANCE_PSI_NODE_KEY": node["tls_key"],
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
    for masked in ("****4680", "****357X", "****3445", "****3679", "****有限公司", "****.com", "****'!A0"):
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
    # The stored key epoch and round name sit beside the signed header, outside the signature.
    engine = make_engine(node["database"])
    with engine.begin() as conn:
        keep(conn, member_result(), key_epoch=key_epoch, round_name=round_name, at=NOW)
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
        repo = CoordinatorRepositories(conn)
        repo.rounds.create_round(
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
                repo.submissions.stage_chunk("r1", member, index // 2, chunk, chunk_digest(chunk), at=NOW)
                digest.update(chunk)
            repo.submissions.commit_submission("r1", member, item_count=digest.count, digest=digest.digest(), at=NOW)
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


def joined_and_reported(alliance: Any, tmp_path: Path, bank_a: Any) -> tuple[Path, Path]:
    """A round of threshold 2 joined by bank-a, bank-b and bank-c at once, and bank-a's signed JSON
    report of it: (the coordinator's public key file, the report)."""
    round_id = alliance.admin().create_round(alliance.spec(2)).round_id
    with ThreadPoolExecutor(3) as pool:
        for joined in [pool.submit(alliance.node(m).join, round_id, wait=60) for m in ("bank-a", "bank-b", "bank-c")]:
            joined.result()
    key_file = tmp_path / "signing.pub"
    key_file.write_text(alliance.signing_key.public_key.hex())
    honest = tmp_path / "honest.json"
    written = RUNNER.invoke(
        node_group,
        ["report", round_id, "--format", "json", "-o", str(honest), "--database", f"sqlite:///{tmp_path / 'bank-a.db'}",
         "--member-id", "bank-a", "--coordinator-key", str(key_file), "--cert", str(bank_a.cert), "--key", str(bank_a.key)],
    )  # fmt: skip
    assert written.exit_code == 0, written.output
    return key_file, honest


def verify_report(path: Path, bank_a: Any, key_file: Path, *extra: str) -> Result:
    args = ["verify", str(path), "--ca", str(bank_a.ca_cert), "--coordinator-key", str(key_file), *extra]
    return RUNNER.invoke(report_group, args)


def forged_report(honest: Path, planted: Any, bank_a: Any, tmp_path: Path) -> Path:
    """bank-a's own node attaches the first lead's signed token to another of its identifiers and signs."""
    from alliance_psi.reports import ReportSigner, sign_document

    doc = json.loads(honest.read_bytes())
    del doc["member_signature"]
    doc["leads"][0]["value"] = sorted(planted.holdings["bank-a"] - {lead["value"] for lead in doc["leads"]})[0]
    signer = ReportSigner.load(bank_a.cert.read_bytes(), bank_a.key.read_bytes(), member_id="bank-a")
    forged = tmp_path / "forged.json"
    forged.write_text(json.dumps(sign_document(doc, signer, signed_at=datetime.now(UTC)), ensure_ascii=False))
    return forged


@pytest.mark.timeout(180)
def test_online_verification_catches_a_token_a_dishonest_node_attached_to_another_identifier(
    tmp_path: Path,
    pki: Any,
) -> None:
    from alliance_psi.services.custodian import SqlQuotaLedger
    from tests.integration.services.harness import EPOCH, Planted, custodian_name, running_alliance

    planted = Planted.make()
    bank_a, bank_b = pki.tls_config("bank-a"), pki.tls_config("bank-b")
    own_ca = {"custodian-2": pki_module.init_ca("Custodian Two institution")}  # Pinned by bank-b's node.toml.
    with running_alliance(tmp_path, pki, planted=planted, own_cas=own_ca) as alliance:
        key_file, honest = joined_and_reported(alliance, tmp_path, bank_a)
        node_toml = tmp_path / "bank-b.toml"
        first, second = alliance.custodian_addresses
        custodians = (
            f'"{custodian_name(0)}@{first}", "{custodian_name(1)}@{second},ca={alliance.custodian_cas["custodian-2"]}"'
        )
        node_toml.write_text(f'[node]\ncert = "{bank_b.cert}"\nkey = "{bank_b.key}"\ncustodian = [{custodians}]\n')

        ledgers = [
            SqlQuotaLedger(make_engine(f"sqlite:///{tmp_path / f'{custodian_name(i)}.db'}"), custodian_name(i))
            for i in range(2)
        ]
        before = [ledger.used(EPOCH, "bank-b") for ledger in ledgers]
        checked = verify_report(honest, bank_a, key_file, "--online", "--config", str(node_toml))
        assert checked.exit_code == 0, checked.output
        leads = json.loads(honest.read_bytes())["leads"]
        assert len(leads) == len(planted.expected("bank-a", 2)) > 2
        assert checked.output.endswith(
            "online: every lead's identifier derives its match token in the signed result (re-derived through 2 "
            f"custodians as member bank-b, using {len(leads)} evaluations of its quota at each)\n"
        )
        assert "only member bank-a's node says so" not in checked.output
        # The coordinator's signed result names the key bank-a enrolled there, and the report's key is it.
        pin = spki_sha256(pki.issued["bank-a"].cert_pem).hex()
        assert f"(key pin sha256:{pin}, the key the coordinator enrolled for the member)" in checked.output
        assert [ledger.used(EPOCH, "bank-b") - used for ledger, used in zip(ledgers, before, strict=True)] == [
            len(leads),
            len(leads),
        ]

        forged = forged_report(honest, planted, bank_a, tmp_path)
        offline = verify_report(forged, bank_a, key_file)
        assert offline.exit_code == 0, offline.output  # Both signatures hold: only --online can tell.
        caught = verify_report(forged, bank_a, key_file, "--online", "--config", str(node_toml))
        assert (caught.exit_code, caught.output) == (
            1,
            (
                "Error: lead 1 (phone): its value derives another match token than the one in the signed result "
                "(the token belongs to another identifier)\n"
            ),
        )
        for ledger in ledgers:
            ledger.engine.dispose()


@pytest.mark.timeout(300)
def test_online_verification_through_threshold_custodians(tmp_path: Path, pki: Any) -> None:
    # With a threshold node: the leads' tokens re-derived through two of three custodians, checked
    # against the epoch file, and a token attached to another identifier caught.
    from alliance_psi.services.custodian import SqlQuotaLedger
    from tests.integration.services.harness import EPOCH, Planted, custodian_name, running_alliance

    planted = Planted.make()
    bank_a, bank_b = pki.tls_config("bank-a"), pki.tls_config("bank-b")
    with running_alliance(tmp_path, pki, planted=planted, custodians=3, threshold=2) as alliance:
        key_file, honest = joined_and_reported(alliance, tmp_path, bank_a)
        custodians = ", ".join(f'"{custodian_name(i)}@{a}"' for i, a in enumerate(alliance.custodian_addresses))
        node_toml = tmp_path / "bank-b.toml"
        node_toml.write_text(
            f'[node]\ncert = "{bank_b.cert}"\nkey = "{bank_b.key}"\ncustodian = [{custodians}]\n'
            f'epoch-file = "{alliance.epoch_file}"\nverify = "proof"\n'
        )

        ledgers = [
            SqlQuotaLedger(make_engine(f"sqlite:///{tmp_path / f'{custodian_name(i)}.db'}"), custodian_name(i))
            for i in range(3)
        ]
        before = [ledger.used(EPOCH, "bank-b") for ledger in ledgers]
        checked = verify_report(honest, bank_a, key_file, "--online", "--config", str(node_toml))
        assert checked.exit_code == 0, checked.output
        leads = json.loads(honest.read_bytes())["leads"]
        assert checked.output.endswith(
            "online: every lead's identifier derives its match token in the signed result (re-derived through 2 at "
            f"a time of 3 custodians as member bank-b, using {len(leads)} evaluations of its quota at each)\n"
        )
        assert "was dealt by one dealer" in checked.output  # The epoch's origin, said as a node says it.
        # Two custodians evaluated (proof mode asks no third for a sample).
        assert sorted(ledger.used(EPOCH, "bank-b") - used for ledger, used in zip(ledgers, before, strict=True)) == [
            0,
            len(leads),
            len(leads),
        ]

        forged = forged_report(honest, planted, bank_a, tmp_path)
        caught = verify_report(forged, bank_a, key_file, "--online", "--config", str(node_toml))
        assert caught.exit_code == 1
        assert caught.output.endswith(
            "Error: lead 1 (phone): its value derives another match token than the one in the signed result "
            "(the token belongs to another identifier)\n"
        )
        for ledger in ledgers:
            ledger.engine.dispose()


def test_report_verify_online_refuses_a_node_config_it_cannot_use(node: dict[str, str], tmp_path: Path) -> None:
    # Refused before any custodian is called: nothing is charged.
    output = tmp_path / "leads.json"
    assert report(node, output, "json").exit_code == 0
    pki_dir = Path(node["ca"]).parent
    admin = pki_module.issue(CA, role=Role.ADMIN, name="operator")
    (pki_dir / "operator.pem").write_bytes(admin.cert_pem)
    (pki_dir / "operator.key").write_bytes(admin.key_pem)
    (pki_dir / "operator.key").chmod(0o600)
    cases = {
        "": (
            f"Error: {tmp_path / 'node.toml'}: 'custodian' must be a list of custodians, NAME@HOST:PORT[,ca=FILE] or "
            "tables\n"
        ),
        'custodian = ["custodian-1@127.0.0.1:9"]\nkey = "x"\n': (
            f"Error: {tmp_path / 'node.toml'}: 'cert' must be the path of the node's TLS cert\n"
        ),
        f'custodian = ["custodian-1@127.0.0.1:9"]\ncert = "{pki_dir / "operator.pem"}"\nkey = "{pki_dir / "operator.key"}"\n': (
            f"Error: --online needs a member certificate; {pki_dir / 'operator.pem'} names admin operator\n"
        ),
        f'custodian = ["custodian-1@127.0.0.1:9"]\ncert = "{tmp_path / "none.pem"}"\nkey = "{node["tls_key"]}"\n': (
            f"Error: TLS option 'cert': file not found: {tmp_path / 'none.pem'}\n"
        ),
    }
    for table, message in cases.items():
        (tmp_path / "node.toml").write_text("[node]\n" + table)
        refused = verify(output, node, "--online", "--config", str(tmp_path / "node.toml"))
        assert (refused.exit_code, refused.output) == (1, message)


def test_a_kept_leaf_edited_in_the_database_is_refused(node: dict[str, str], tmp_path: Path) -> None:
    # Someone with the node's database raises a lead's holder count: the Merkle root no longer
    # matches the coordinator's signed header, so no report is written.
    from sqlalchemy import select, update

    from alliance_psi.protocol.model import MatchedToken
    from alliance_psi.protocol.result_codec import decode_leaf, encode_leaf
    from alliance_psi.storage.schema import member_result_leaves as leaves

    engine = make_engine(node["database"])
    with engine.begin() as conn:
        index, leaf = conn.execute(select(leaves.c.leaf_index, leaves.c.leaf).limit(1)).one()
        match = decode_leaf(leaf)
        raised = encode_leaf(MatchedToken(match.match_token, match.holder_count + 1, match.peer_labels))
        conn.execute(update(leaves).where(leaves.c.leaf_index == index).values(leaf=raised))
    engine.dispose()
    output = tmp_path / "x.json"
    result = report(node, output, "json")
    assert (result.exit_code, result.output) == (1, "Error: result leaves do not make the signed Merkle root\n")
    assert not output.exists()
