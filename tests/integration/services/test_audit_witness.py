"""The coordinator's audit log seen from outside, over real gRPC and mutual TLS: members keep its
signed checkpoints, results are proven to be in it, and a log rewritten with every hash
recomputed, truncated, or forked between two members is caught by a member, who keeps signed
evidence that anyone with the coordinator's public key can check."""

from __future__ import annotations

import json
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import delete, select, update

from alliance_psi.cli.main import main
from alliance_psi.crypto.merkle import MemoryTree, leaf_hash
from alliance_psi.errors import LogInconsistent, NotAuthorized, NotFound
from alliance_psi.protocol.checkpoints import Evidence, check_evidence, open_checkpoint
from alliance_psi.protocol.log_evidence import read_document, write_document
from alliance_psi.protocol.result_codec import decode_header
from alliance_psi.services.clients import CoordinatorClient
from alliance_psi.storage import AuditLog, CheckpointStore, KeptResults
from alliance_psi.storage.audit_log import entry_bytes
from alliance_psi.storage.schema import audit_log, audit_nodes
from tests.integration.services.harness import MEMBERS, running_alliance, second_coordinator, sqlite_engine

pytestmark = pytest.mark.timeout(240)


def join_all(alliance, round_id: str, members=MEMBERS) -> None:  # type: ignore[no-untyped-def]
    with ThreadPoolExecutor(len(members)) as pool:
        for joined in [pool.submit(alliance.node(m).join, round_id, wait=60) for m in members]:
            joined.result()


def kept_checkpoints(alliance, member: str) -> list[tuple[int, bytes]]:  # type: ignore[no-untyped-def]
    with alliance.member_engines[member].connect() as conn:
        heads = [open_checkpoint(alliance.signing_key.public_key, c) for c in CheckpointStore(conn).all()]
    return [(head.tree_size, head.root) for head in heads]


def kept_evidence(alliance, member: str) -> list[Evidence]:  # type: ignore[no-untyped-def]
    with alliance.member_engines[member].connect() as conn:
        return [found for found, _ in CheckpointStore(conn).evidence()]


def rewrite_log(engine, seq: int, detail: dict[str, object]) -> None:  # type: ignore[no-untyped-def]
    """What whoever holds the coordinator's database can do: edit an entry, then recompute every
    leaf hash and every node, so that the log verifies on its own."""
    with engine.begin() as conn:
        conn.execute(update(audit_log).where(audit_log.c.seq == seq).values(detail=json.dumps(detail)))
        rebuild_nodes(conn)


def truncate_log(engine, keep: int) -> None:  # type: ignore[no-untyped-def]
    with engine.begin() as conn:
        conn.execute(delete(audit_log).where(audit_log.c.seq > keep))
        rebuild_nodes(conn)


def rebuild_nodes(conn) -> None:  # type: ignore[no-untyped-def]
    log, leaves = AuditLog(conn), []
    for index in range(log.size()):
        entry = log.entry(index)
        leaves.append(leaf_hash(entry_bytes(entry.seq, entry.at, entry.actor, entry.action, entry.detail, entry.nonce)))
        conn.execute(update(audit_log).where(audit_log.c.seq == index + 1).values(leaf_hash=leaves[-1]))
    conn.execute(delete(audit_nodes))
    tree, rows, level = MemoryTree(leaves), [], 1
    while (1 << level) <= len(leaves):
        rows += [{"level": level, "idx": i, "hash": tree.node(level, i)} for i in range(len(leaves) >> level)]
        level += 1
    if rows:
        conn.execute(audit_nodes.insert(), rows)
    assert log.verify() == len(leaves)  # The rewritten log checks out on its own.


def test_members_keep_checkpoints_and_each_result_is_proven_in_the_log(tmp_path: Path, pki) -> None:  # type: ignore[no-untyped-def]
    with running_alliance(tmp_path, pki) as alliance:
        round_id = alliance.admin().create_round(alliance.spec(2)).round_id
        join_all(alliance, round_id)
        for member in MEMBERS:
            with alliance.member_engines[member].connect() as conn:
                header = decode_header(KeptResults(conn).get_result(round_id)[2])
            # The checkpoint of the member's first contact, and the one its result carried.
            result_cp = open_checkpoint(alliance.signing_key.public_key, header.checkpoint)
            assert (result_cp.tree_size, result_cp.root) in kept_checkpoints(alliance, member)
            assert len(kept_checkpoints(alliance, member)) >= 2
        # A member reads the log entries about itself, not another member's; the operator any.
        member = CoordinatorClient(alliance.coordinator_address, pki.material("bank-a"))
        with alliance.coordinator_engine.connect() as conn:
            rows = conn.execute(select(audit_log.c.seq, audit_log.c.action, audit_log.c.detail)).all()
        size = len(rows)
        own = next(s for s, a, d in rows if a == "result.issue" and json.loads(d)["member_id"] == "bank-a")
        other = next(s for s, a, d in rows if a == "result.issue" and json.loads(d)["member_id"] == "bank-b")
        entry, proof = member.inclusion(own - 1, size)
        assert json.loads(entry)["detail"]["member_id"] == "bank-a" and proof
        with pytest.raises(NotAuthorized, match=f"entry {other - 1} of the audit log is not about member bank-a"):
            member.inclusion(other - 1, size)
        assert json.loads(alliance.admin().inclusion(other - 1, size)[0])["detail"]["member_id"] == "bank-b"
        with pytest.raises(NotFound):
            member.consistency(1, size + 5)


def test_an_entry_edited_with_every_hash_recomputed_is_caught_at_the_next_contact(tmp_path: Path, pki) -> None:  # type: ignore[no-untyped-def]
    with running_alliance(tmp_path, pki) as alliance:
        first = alliance.admin().create_round(alliance.spec(2)).round_id
        join_all(alliance, first)
        # The operator changes the first round's threshold in the log and recomputes everything.
        with alliance.coordinator_engine.connect() as conn:
            detail = json.loads(conn.execute(select(audit_log.c.detail).where(audit_log.c.seq == 1)).scalar_one())
        rewrite_log(alliance.coordinator_engine, 1, {**detail, "threshold": 3})
        # Alone, the operator's database still verifies, as a hash chain did.
        database = f"sqlite:///{tmp_path / 'coordinator.db'}"
        alone = CliRunner().invoke(main, ["coordinator", "audit-verify", "--database", database])
        assert alone.exit_code == 0, alone.output
        second = alliance.admin().create_round(alliance.spec(2)).round_id
        with pytest.raises(LogInconsistent) as caught:
            alliance.node("bank-a").join(second, wait=60)
        assert str(caught.value) == (
            "the coordinator's audit log is inconsistent: the audit log's first "
            f"{kept_checkpoints(alliance, 'bank-a')[-1][0]} entries no longer make the root of the checkpoint signed "
            "for them: an entry was changed after it was signed; the signed evidence is kept "
            "(alliance-psi node checkpoints-export)"
        )
        (evidence,) = kept_evidence(alliance, "bank-a")
        assert check_evidence(alliance.signing_key.public_key, evidence).startswith(
            "proven: the coordinator signed two different roots for its first"
        )
        # Exported, the evidence convicts the log before any outsider; bank-b's honest checkpoints
        # make the operator's own check fail too.
        key = tmp_path / "signing.pub"
        key.write_text(alliance.signing_key.public_key.hex())
        exported = {}
        for member in ("bank-a", "bank-b"):
            exported[member] = tmp_path / f"{member}-checkpoints.json"
            done = CliRunner().invoke(
                main,
                ["node", "checkpoints-export", "-o", str(exported[member]), "--database",
                 f"sqlite:///{tmp_path / f'{member}.db'}"],
            )  # fmt: skip
            assert done.exit_code == 0, done.output
        outsider = CliRunner().invoke(
            main,
            ["coordinator", "audit-verify", "--checkpoints", str(exported["bank-a"]), "--coordinator-key", str(key)],
        )
        assert outsider.exit_code == 1 and "evidence 1 (fork): proven: the coordinator signed two" in outsider.output
        operator = CliRunner().invoke(
            main,
            ["coordinator", "audit-verify", "--database", database, "--checkpoints", str(exported["bank-b"]),
             "--coordinator-key", str(key)],
        )  # fmt: skip
        assert operator.exit_code == 1, operator.output
        assert "do not make the root of a checkpoint for" in operator.output


def test_a_truncated_tail_is_caught_at_the_next_contact(tmp_path: Path, pki) -> None:  # type: ignore[no-untyped-def]
    with running_alliance(tmp_path, pki) as alliance:
        round_id = alliance.admin().create_round(alliance.spec(2)).round_id
        join_all(alliance, round_id)
        size = kept_checkpoints(alliance, "bank-a")[-1][0]
        truncate_log(alliance.coordinator_engine, size - 3)  # The round's last entries are gone.
        with pytest.raises(LogInconsistent, match=f"the audit log shrank from {size} entries"):
            alliance.node("bank-a").fetch_result(round_id)
        (evidence,) = kept_evidence(alliance, "bank-a")
        assert evidence.kind == "shrunk"
        assert check_evidence(alliance.signing_key.public_key, evidence).startswith(
            f"proven: the coordinator signed {size} entries at"
        )


def test_a_log_forked_between_two_members_is_caught_when_they_compare(tmp_path: Path, pki) -> None:  # type: ignore[no-untyped-def]
    with running_alliance(tmp_path, pki) as alliance:
        round_id = alliance.admin().create_round(alliance.spec(2)).round_id
        join_all(alliance, round_id)
        # The operator copies its database and from now on shows bank-b another log than bank-a.
        raw = alliance.coordinator_engine.raw_connection()
        try:
            with sqlite3.connect(tmp_path / "fork.db") as copy:
                raw.driver_connection.backup(copy)  # type: ignore[union-attr]
        finally:
            raw.close()
        fork = sqlite_engine(tmp_path / "fork.db")
        with second_coordinator(alliance, fork) as address:
            alliance.admin().create_round(alliance.spec(2, name="what bank-a sees"))
            CoordinatorClient(address, pki.material("admin")).create_round(alliance.spec(2, name="what bank-b sees"))
            a, b = alliance.node("bank-a"), alliance.node("bank-b")
            b.coordinator = b.log.coordinator = CoordinatorClient(address, pki.material("bank-b"))
            a.check_log()
            b.check_log()  # Each alone sees a log that only grew.
            with alliance.member_engines["bank-a"].connect() as conn:
                shared = read_document(write_document(CheckpointStore(conn).all(), []))[0]
            with pytest.raises(LogInconsistent, match="two checkpoints give two different roots"):
                for signed in shared:
                    b.log.witness(signed)
        (evidence,) = kept_evidence(alliance, "bank-b")
        assert check_evidence(alliance.signing_key.public_key, evidence).startswith(
            "proven: the coordinator signed two different roots for its first"
        )


def test_a_result_the_log_does_not_record_is_refused(tmp_path: Path, pki) -> None:  # type: ignore[no-untyped-def]
    # The operator (who holds the signing key) re-signs bank-a's result header so that it points
    # at another entry of the log: the entry is really in the signed checkpoint, but it records
    # bank-b's result, not this one. The member refuses it and keeps nothing.
    from alliance_psi.errors import ResultMismatch
    from alliance_psi.protocol.result_codec import sign_header
    from alliance_psi.storage.schema import result_headers

    with running_alliance(tmp_path, pki) as alliance:
        round_id = alliance.admin().create_round(alliance.spec(2)).round_id
        for member in MEMBERS:
            node = alliance.node(member)
            node.tokenize("epoch-test", ["phone"])
            node.submit(node.coordinator.get_round(round_id)[0])
        with alliance.coordinator_engine.begin() as conn:
            rows = {
                row.member_id: row
                for row in conn.execute(select(result_headers).where(result_headers.c.round_id == round_id))
            }
            own, other = decode_header(rows["bank-a"].header), decode_header(rows["bank-b"].header)
            forged = sign_header(alliance.signing_key, replace(own, audit_index=other.audit_index))
            conn.execute(
                update(result_headers)
                .where(result_headers.c.round_id == round_id, result_headers.c.member_id == "bank-a")
                .values(header=forged.header, signature=forged.signature)
            )
        with pytest.raises(ResultMismatch, match="records another result than the signed header"):
            alliance.node("bank-a").fetch_result(round_id)
        with alliance.member_engines["bank-a"].connect() as conn, pytest.raises(NotFound):
            KeptResults(conn).get_result(round_id)
