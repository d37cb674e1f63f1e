"""The custodian and coordinator commands: exit codes, exact messages, and bad input."""

from __future__ import annotations

import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import update

from alliance_psi.cli.main import main
from alliance_psi.crypto.key_shares import KeyShare
from alliance_psi.storage import AuditLog, create_schema, make_engine
from alliance_psi.storage.schema import audit_log


def run(*args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(main, list(args))


def test_init_share_writes_a_private_file_and_refuses_to_overwrite(tmp_path: Path) -> None:
    share = tmp_path / "c1" / "epoch.share"
    result = run("custodian", "init-share", "--epoch", "2026q4", "--out", str(share))
    assert result.exit_code == 0 and result.output == f"wrote key share for epoch 2026q4 to {share}\n"
    assert stat.S_IMODE(share.stat().st_mode) == 0o600
    assert KeyShare.from_bytes(share.read_bytes()).epoch == "2026q4"
    again = run("custodian", "init-share", "--epoch", "2026q4", "--out", str(share))
    assert again.exit_code == 1 and "exists; pass --force" in again.output
    assert run("custodian", "init-share", "--epoch", "x", "--out", str(share), "--force").exit_code == 0


def test_keygen_writes_key_and_public_key(tmp_path: Path) -> None:
    result = run("coordinator", "keygen", "--out", str(tmp_path / "keys"))
    assert result.exit_code == 0 and "key id" in result.output
    assert stat.S_IMODE((tmp_path / "keys" / "signing.key").stat().st_mode) == 0o600
    assert len(bytes.fromhex((tmp_path / "keys" / "signing.pub").read_text().strip())) == 32
    assert run("coordinator", "keygen", "--out", str(tmp_path / "keys")).exit_code == 1


def test_serve_refuses_bad_files_with_the_reason(tmp_path: Path, pki) -> None:  # type: ignore[no-untyped-def]
    tls = [
        "--ca",
        str(pki.directory / "ca.pem"),
        "--cert",
        str(pki.directory / "custodian-1.pem"),
        "--key",
        str(pki.directory / "custodian-1.key"),
    ]
    missing = run(
        "custodian",
        "serve",
        "--name",
        "custodian-1",
        *tls,
        "--key-share",
        str(tmp_path / "none"),
        "--database",
        f"sqlite:///{tmp_path / 'q.db'}",
    )
    assert missing.exit_code == 1 and f"key share {tmp_path / 'none'}: No such file or directory" in missing.output
    (tmp_path / "bad.share").write_bytes(b"not a share")
    (tmp_path / "bad.share").chmod(0o600)  # A secret file: anything looser is refused before reading.
    bad = run(
        "custodian",
        "serve",
        "--name",
        "custodian-1",
        *tls,
        "--key-share",
        str(tmp_path / "bad.share"),
        "--database",
        f"sqlite:///{tmp_path / 'q.db'}",
    )
    assert bad.exit_code == 1 and "not an alliance-psi key share" in bad.output
    (tmp_path / "signing.key").write_text("nonsense")
    coordinator_tls = [arg.replace("custodian-1.", "coordinator.") for arg in tls]
    (tmp_path / "signing.key").chmod(0o600)
    coordinator = run(
        "coordinator",
        "serve",
        *coordinator_tls,
        "--signing-key",
        str(tmp_path / "signing.key"),
        "--database",
        f"sqlite:///{tmp_path / 'c.db'}",
    )
    assert coordinator.exit_code == 1 and "not a PEM private key" in coordinator.output
    nokey = run(
        "custodian",
        "serve",
        "--name",
        "c",
        "--ca",
        str(tmp_path / "nope.pem"),
        "--cert",
        str(tmp_path / "a"),
        "--key",
        str(tmp_path / "b"),
        "--key-share",
        str(tmp_path / "bad.share"),
        "--database",
        "sqlite://",
    )
    assert nokey.exit_code == 1


def test_audit_verify_names_the_first_broken_entry(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    engine = make_engine(url)
    create_schema(engine)
    with engine.begin() as conn:
        log = AuditLog(conn)
        for i in range(5):
            log.append(actor="admin", action="round.create", detail={"round_id": f"r{i}"}, at=datetime.now(UTC))
    ok = run("coordinator", "audit-verify", "--database", url)
    assert ok.exit_code == 0 and ok.output == "audit log intact: 5 entries verified\n"
    with engine.begin() as conn:
        conn.execute(update(audit_log).where(audit_log.c.seq == 3).values(detail='{"round_id":"forged"}'))
    broken = run("coordinator", "audit-verify", "--database", url)
    assert broken.exit_code == 1 and "seq 3" in broken.output
    engine.dispose()


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["coordinator", "round", "create", "--name", "x", "--epoch", "e", "--threshold", "1"],
            "1 is not in the range x>=2",
        ),
        (["custodian", "serve", "--name", "c"], "Missing option '--ca'"),
        (["coordinator", "round", "close"], "Missing argument 'ROUND_ID'"),
    ],
)
def test_usage_errors(args: list[str], message: str, pki) -> None:  # type: ignore[no-untyped-def]
    tls = [
        "--ca",
        str(pki.directory / "ca.pem"),
        "--cert",
        str(pki.directory / "admin.pem"),
        "--key",
        str(pki.directory / "admin.key"),
    ]
    result = run(*args, *(tls if "threshold" in args else []))
    assert result.exit_code == 2 and message in result.output


def test_admin_commands_against_a_coordinator_that_is_down(pki) -> None:  # type: ignore[no-untyped-def]
    tls = [
        "--ca",
        str(pki.directory / "ca.pem"),
        "--cert",
        str(pki.directory / "admin.pem"),
        "--key",
        str(pki.directory / "admin.key"),
    ]
    result = run("coordinator", "round", "list", "--coordinator", "127.0.0.1:1", *tls)
    assert result.exit_code == 1 and "coordinator at 127.0.0.1:1 is unreachable" in result.output


def test_operator_round_commands(tmp_path: Path, pki) -> None:  # type: ignore[no-untyped-def]
    from tests.integration.services.harness import running_alliance

    tls = [
        "--ca",
        str(pki.directory / "ca.pem"),
        "--cert",
        str(pki.directory / "admin.pem"),
        "--key",
        str(pki.directory / "admin.key"),
    ]
    with running_alliance(tmp_path, pki, custodians=1) as alliance:
        target = ["--coordinator", alliance.coordinator_address, *tls]
        created = run(
            "coordinator",
            "round",
            "create",
            *target,
            "--name",
            "November leads",
            "--epoch",
            "epoch-test",
            "--threshold",
            "3",
            "--invite",
            "bank-a,bank-b,bank-c",
            "--types",
            "phone,email",
            "--id",
            "nov-1",
        )
        assert created.exit_code == 0 and created.output == "nov-1\n", created.output
        typo = ["--name", "Typo", "--epoch", "epoch-typo", "--invite", "bank-a,bank-q", "--id", "typo-1"]
        refused = run("coordinator", "round", "create", *target, *typo)
        assert refused.exit_code == 1 and ": --invite: not enrolled at this coordinator: bank-q" in refused.output
        assert "typo-1" not in run("coordinator", "round", "list", *target).output  # Nothing half-made.
        long_id = "2026-11-proxy-rights-defence-guangdong-and-shenzhen-branches-xyz"  # 64: the longest
        other = ["--name", "Long", "--epoch", "epoch-other", "--id", long_id, "--no-share-labels"]
        assert run("coordinator", "round", "create", *target, *other).exit_code == 0
        listed = run("coordinator", "round", "list", *target)
        assert listed.exit_code == 0 and "nov-1" in listed.output and "November leads" in listed.output
        lines = listed.output.splitlines()  # Whole, in an 80-column console.
        assert lines[0].split() == [
            "round",
            "state",
            "t",
            "epoch",
            "types",
            "labels",
            "committed",
            "deadline",
            "(UTC)",
            "name",
        ]
        assert lines[1].split()[:7] == ["nov-1", "open", "3", "epoch-test", "phone,email", "shared", "0"]
        assert lines[2].split()[:8] == [
            long_id,
            "open",
            "2",
            "epoch-other",
            "phone,id_card,bank_card,uscc",
            "not",
            "shared",
            "0",
        ]
        shown = run("coordinator", "round", "show", "nov-1", *target)
        assert shown.exit_code == 0
        facts = dict(line.split(None, 1) for line in shown.output.replace("key epoch", "key-epoch").splitlines())
        assert facts["round"] == "nov-1" and facts["state"] == "open" and facts["key-epoch"] == "epoch-test"
        assert facts["types"] == "phone, email" and facts["invited"] == "bank-a, bank-b, bank-c"
        assert (
            facts["labels"] == "shared with co-holders, at most 8 labels per lead" and facts["committed"] == "0 members"
        )
        assert facts["threshold"] == "3 members"
        shown_long = run("coordinator", "round", "show", long_id, *target)
        assert f"round      {long_id}\n" in shown_long.output
        assert (
            "invited    every member\n" in shown_long.output
            and "labels     not shared (tokens only)\n" in shown_long.output
        )
        closed = run("coordinator", "round", "close", "nov-1", *target, "--reason", "test")
        assert closed.exit_code == 0 and closed.output == "round nov-1 is matched\n"
        again = run("coordinator", "round", "close", "nov-1", *target)
        assert again.exit_code == 1 and "round nov-1 is already matched" in again.output
        duplicate = run(
            "coordinator", "round", "create", *target, "--name", "x", "--epoch", "epoch-test", "--id", "nov-1"
        )
        assert duplicate.exit_code == 1
        member = [
            "--ca",
            str(pki.directory / "ca.pem"),
            "--cert",
            str(pki.directory / "bank-a.pem"),
            "--key",
            str(pki.directory / "bank-a.key"),
        ]
        refused = run(
            "coordinator",
            "round",
            "create",
            "--coordinator",
            alliance.coordinator_address,
            *member,
            "--name",
            "x",
            "--epoch",
            "epoch-test",
        )
        # The client refuses before connecting; the server would refuse too (test_tls_identity.py).
        assert refused.exit_code == 1
        assert refused.output == (
            f"Error: TLS option 'cert': {pki.directory / 'bank-a.pem'} is the certificate of member bank-a; "
            "this command needs an admin certificate\n"
        )
