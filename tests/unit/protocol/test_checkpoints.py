"""Checkpoints and consistency statements: canonical bytes, signatures, and every way a member
catches a log that is not append-only, with evidence an outsider can check."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from alliance_psi.crypto.merkle import MemoryTree, leaf_hash
from alliance_psi.crypto.signing import SigningKey
from alliance_psi.errors import InvalidRequest, InvalidSignature, LogInconsistent
from alliance_psi.protocol.checkpoints import (
    ConsistencyStatement,
    Evidence,
    SignedCheckpoint,
    SignedStatement,
    check_against,
    check_evidence,
    decode_checkpoint,
    open_checkpoint,
    open_statement,
    sign_checkpoint,
    sign_statement,
)
from alliance_psi.protocol.log_evidence import read_document, write_document

KEY = SigningKey.generate()
T0 = datetime(2026, 1, 1, 9, 0, tzinfo=UTC)


def leaves(n: int, edited: int | None = None) -> list[bytes]:
    return [leaf_hash(b"edited" if i == edited else f"entry {i}".encode()) for i in range(n)]


class Log:
    """A coordinator's log in memory, signing what a real coordinator signs."""

    def __init__(self, entries: list[bytes], key: SigningKey = KEY) -> None:
        self.entries, self.key = entries, key

    def checkpoint(self, size: int | None = None, at: datetime = T0) -> SignedCheckpoint:
        size = len(self.entries) if size is None else size
        return sign_checkpoint(self.key, "coordinator", size, MemoryTree(self.entries[:size]).root(), at)

    def prove(self, first: int, second: int) -> SignedStatement | None:
        if second > len(self.entries):
            return None
        tree = MemoryTree(self.entries[:second])
        statement = ConsistencyStatement(
            first, MemoryTree(self.entries[:first]).root(), second, tree.root(), tuple(tree.consistency_proof(first))
        )
        return sign_statement(self.key, statement)


def test_checkpoints_round_trip_and_are_bound_to_the_key() -> None:
    signed = Log(leaves(5)).checkpoint(at=T0 + timedelta(microseconds=1500))
    head = open_checkpoint(KEY.public_key, signed)
    assert (head.origin, head.tree_size, head.key_id) == ("coordinator", 5, KEY.key_id)
    assert head.time == T0 + timedelta(milliseconds=1)  # Kept to the millisecond.
    with pytest.raises(InvalidSignature):
        open_checkpoint(SigningKey.generate().public_key, signed)
    with pytest.raises(InvalidSignature):  # A checkpoint signature is not a result signature.
        open_checkpoint(KEY.public_key, SignedCheckpoint(signed.body, KEY.sign("result", signed.body)))
    with pytest.raises(InvalidRequest, match="not in canonical form|truncated"):
        decode_checkpoint(signed.body + b"\x00")


def test_an_honest_log_passes_whatever_the_order_of_contact() -> None:
    log = Log(leaves(20))
    early, late = log.checkpoint(7, T0), log.checkpoint(20, T0 + timedelta(hours=1))
    check_against(KEY.public_key, early, late, log.prove)  # It grew.
    check_against(KEY.public_key, late, early, log.prove)  # An older checkpoint (a result's) still fits.
    check_against(KEY.public_key, late, log.checkpoint(20, T0 + timedelta(hours=2)), log.prove)


def _caught(known: SignedCheckpoint, new: SignedCheckpoint, log: Log) -> Evidence:
    with pytest.raises(LogInconsistent) as raised:
        check_against(KEY.public_key, known, new, log.prove)
    evidence = raised.value.evidence
    assert isinstance(evidence, Evidence)
    return evidence


def test_an_edited_entry_with_every_hash_recomputed_is_caught_and_proven() -> None:
    honest, rewritten = Log(leaves(12)), Log(leaves(14, edited=3))
    kept = honest.checkpoint(12)
    evidence = _caught(kept, rewritten.checkpoint(14, T0 + timedelta(hours=1)), rewritten)
    assert evidence.kind == "fork" and "no longer make the root" in evidence.reason
    assert check_evidence(KEY.public_key, evidence) == (
        "proven: the coordinator signed two different roots for its first 12 entries"
    )


def test_a_truncated_tail_is_caught_and_proven() -> None:
    full = Log(leaves(12))
    kept = full.checkpoint(12, T0)
    shorter = Log(leaves(9)).checkpoint(9, T0 + timedelta(minutes=5))
    evidence = _caught(kept, shorter, Log(leaves(9)))
    assert evidence.kind == "shrunk" and "shrank from 12 entries" in evidence.reason
    assert check_evidence(KEY.public_key, evidence).startswith("proven: the coordinator signed 12 entries at")


def test_a_fork_of_the_same_size_is_caught_and_proven() -> None:
    one, other = Log(leaves(6)), Log(leaves(6, edited=5))
    evidence = _caught(one.checkpoint(), other.checkpoint(at=T0 + timedelta(seconds=1)), other)
    assert evidence.kind == "fork"
    assert check_evidence(KEY.public_key, evidence).startswith("proven: the coordinator signed two different roots")


def test_a_false_proof_is_caught_and_proven() -> None:
    log = Log(leaves(10))

    def lying(first: int, second: int) -> SignedStatement | None:
        real = open_statement(KEY.public_key, log.prove(first, second))  # type: ignore[arg-type]
        return sign_statement(
            KEY, ConsistencyStatement(first, real.first_root, second, real.second_root, real.proof[:-1])
        )

    with pytest.raises(LogInconsistent) as raised:
        check_against(KEY.public_key, log.checkpoint(4), log.checkpoint(10), lying)
    evidence = raised.value.evidence
    assert isinstance(evidence, Evidence) and evidence.kind == "false-proof"
    assert (
        check_evidence(KEY.public_key, evidence)
        == "proven: the coordinator signed a consistency proof that does not hold"
    )


def test_no_proof_is_a_failure_without_evidence() -> None:
    log = Log(leaves(10))
    with pytest.raises(LogInconsistent, match="gave no consistency proof from 4 to 10") as raised:
        check_against(KEY.public_key, log.checkpoint(4), log.checkpoint(10), lambda first, second: None)
    assert raised.value.evidence is None


def test_evidence_that_does_not_show_its_claim_is_refused() -> None:
    log = Log(leaves(8))
    honest = Evidence("fork", "made up", (log.checkpoint(8), log.checkpoint(8, T0 + timedelta(hours=1))))
    with pytest.raises(InvalidSignature, match="fork evidence does not show what it claims"):
        check_evidence(KEY.public_key, honest)
    grown = Evidence("shrunk", "made up", (log.checkpoint(4, T0), log.checkpoint(8, T0 + timedelta(hours=1))))
    with pytest.raises(InvalidSignature, match="shrunk evidence"):
        check_evidence(KEY.public_key, grown)
    forged = Evidence(
        "fork", "forged", (log.checkpoint(8), Log(leaves(8, edited=1), SigningKey.generate()).checkpoint())
    )
    with pytest.raises(InvalidSignature):
        check_evidence(KEY.public_key, forged)


def test_the_export_file_round_trips_and_names_bad_fields() -> None:
    log = Log(leaves(10))
    evidence = _caught(log.checkpoint(10), Log(leaves(10, edited=2)).checkpoint(at=T0 + timedelta(hours=1)), log)
    data = write_document([log.checkpoint(4), log.checkpoint(10)], [(evidence, T0)])
    checkpoints, found = read_document(data)
    assert [open_checkpoint(KEY.public_key, c).tree_size for c in checkpoints] == [4, 10]
    assert found == [evidence]
    with pytest.raises(InvalidRequest, match="not a checkpoints file"):
        read_document(b"{}")
    with pytest.raises(InvalidRequest, match="checkpoint 1: tree_size or root_hex differs from its signed body"):
        read_document(data.replace(b'"tree_size": 4', b'"tree_size": 5'))
