"""``coordinator audit-verify`` and ``node checkpoints-export``: exact messages and exit codes, on
real SQLite databases and signed checkpoints."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from click.testing import CliRunner, Result

from alliance_psi.cli.main import main
from alliance_psi.crypto.signing import SigningKey
from alliance_psi.protocol.checkpoints import Evidence, sign_checkpoint
from alliance_psi.protocol.log_evidence import write_document
from alliance_psi.storage import AuditLog, CheckpointStore, create_schema, make_engine

NOW = datetime(2026, 1, 1, 9, 0, tzinfo=UTC)
KEY = SigningKey.generate()


def run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def coordinator_db(tmp_path: Path, entries: int) -> str:
    url = f"sqlite:///{tmp_path / 'coordinator.db'}"
    engine = make_engine(url)
    create_schema(engine)
    with engine.begin() as conn:
        log = AuditLog(conn)
        for i in range(entries):
            log.append(actor="admin", action="round.create", detail={"round_id": f"r{i}"}, at=NOW)
    engine.dispose()
    return url


def verify_against(url: str, checkpoints: Path, key: str) -> Result:
    return run(
        "coordinator", "audit-verify", "--database", url, "--checkpoints", str(checkpoints), "--coordinator-key", key
    )


def head(url: str, size: int) -> tuple[int, bytes]:
    engine = make_engine(url)
    with engine.connect() as conn:
        root = AuditLog(conn).root(size)
    engine.dispose()
    return size, root


def key_file(tmp_path: Path, key: SigningKey = KEY) -> str:
    path = tmp_path / "signing.pub"
    path.write_text(key.public_key.hex())
    return str(path)


def test_checkpoints_a_member_kept_are_checked_against_the_database(tmp_path: Path) -> None:
    url = coordinator_db(tmp_path, 6)
    file = tmp_path / "bank-a.json"
    kept = [sign_checkpoint(KEY, "coordinator", *head(url, size), NOW) for size in (2, 6)]
    file.write_bytes(write_document(kept, []))
    ok = verify_against(url, file, key_file(tmp_path))
    assert (ok.exit_code, ok.output) == (
        0,
        (
            f"{file}: 2 checkpoints signed by coordinator key {KEY.key_id}\n"
            f"audit log intact: 6 entries verified, consistent with 2 checkpoints from {file}\n"
        ),
    )
    # A checkpoint for more entries than the database holds: its tail was cut.
    longer = [sign_checkpoint(KEY, "coordinator", 9, head(url, 6)[1], NOW + timedelta(hours=1))]
    file.write_bytes(write_document(longer, []))
    cut = verify_against(url, file, key_file(tmp_path))
    assert cut.exit_code == 1
    assert cut.output.endswith(
        "Error: audit log broken: it holds 6 entries, but a checkpoint was signed for 9 (its tail was removed)\n"
    )


def test_bad_input_is_named(tmp_path: Path) -> None:
    url = coordinator_db(tmp_path, 2)
    assert "give --database, --checkpoints, or both" in run("coordinator", "audit-verify").output
    file = tmp_path / "x.json"
    file.write_text("{}")
    no_key = run("coordinator", "audit-verify", "--checkpoints", str(file))
    assert no_key.exit_code == 2 and "--checkpoints needs --coordinator-key" in no_key.output
    not_ours = run("coordinator", "audit-verify", "--checkpoints", str(file), "--coordinator-key", key_file(tmp_path))
    assert (not_ours.exit_code, not_ours.output) == (
        1,
        "Error: not a checkpoints file: 'format' is not 'alliance-psi/log-checkpoints'\n",
    )
    other = SigningKey.generate()
    file.write_bytes(write_document([sign_checkpoint(other, "coordinator", *head(url, 2), NOW)], []))
    forged = run("coordinator", "audit-verify", "--checkpoints", str(file), "--coordinator-key", key_file(tmp_path))
    assert (forged.exit_code, forged.output) == (
        1,
        (
            "Error: the coordinator's signature over its audit-log checkpoint: signature does not verify against key "
            f"{KEY.key_id}; the checkpoint names key {other.key_id}\n"
        ),
    )
    missing = run(
        "coordinator",
        "audit-verify",
        "--checkpoints",
        str(tmp_path / "none.json"),
        "--coordinator-key",
        key_file(tmp_path),
    )
    assert (missing.exit_code, missing.output) == (1, f"Error: {tmp_path / 'none.json'}: No such file or directory\n")


def test_a_node_exports_what_it_kept(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'node.db'}"
    engine = make_engine(url)
    create_schema(engine)
    first = sign_checkpoint(KEY, "coordinator", 3, bytes(32), NOW)
    fork = sign_checkpoint(KEY, "coordinator", 3, b"\x01" * 32, NOW + timedelta(minutes=1))
    with engine.begin() as conn:
        store = CheckpointStore(conn)
        assert store.add(first, at=NOW) and not store.add(first, at=NOW)
        store.add_evidence(Evidence("fork", "two roots for 3 entries", (first, fork)), at=NOW)
    engine.dispose()
    out = tmp_path / "export.json"
    exported = run("node", "checkpoints-export", "-o", str(out), "--database", url)
    assert (exported.exit_code, exported.output) == (
        0,
        f"wrote {out}: 1 checkpoint; 1 piece of evidence of an inconsistent log\n",
    )
    doc = json.loads(out.read_text())
    assert [c["tree_size"] for c in doc["checkpoints"]] == [3] and doc["evidence"][0]["kind"] == "fork"
    proven = run("coordinator", "audit-verify", "--checkpoints", str(out), "--coordinator-key", key_file(tmp_path))
    assert proven.exit_code == 1
    assert proven.output.endswith(
        "Error: evidence 1 (fork): proven: the coordinator signed two different roots for its first 3 entries\n"
    )
