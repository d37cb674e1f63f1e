"""The audit log as an RFC 9162 Merkle tree: append, heads, proofs, verify, tampering, concurrency."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import Engine, delete, select, update

from alliance_psi.crypto.merkle import MemoryTree, leaf_hash, verify_consistency, verify_inclusion
from alliance_psi.errors import AuditLogBroken, NotFound
from alliance_psi.storage import AuditLog
from alliance_psi.storage.schema import audit_log, audit_nodes

from .support import NOW, run_concurrently


def append(engine: Engine, n: int, start: int = 0) -> list[int]:
    with engine.begin() as conn:
        log = AuditLog(conn)
        return [
            log.append(
                actor="coordinator",
                action="chunk.stage",
                detail={"round_id": "r1", "chunk": i, "items": 10 * i, "note": "批次"},
                at=NOW + timedelta(seconds=i),
            )
            for i in range(start, start + n)
        ]


def verify(engine: Engine, checkpoints: list[tuple[int, bytes]] | None = None) -> int:
    with engine.begin() as conn:
        return AuditLog(conn).verify(checkpoints or [])


def head(engine: Engine) -> tuple[int, bytes]:
    with engine.begin() as conn:
        return AuditLog(conn).head()


def test_append_and_verify(engine: Engine) -> None:
    assert verify(engine) == 0 and head(engine) == (0, MemoryTree([]).root())
    assert append(engine, 5) == [1, 2, 3, 4, 5]
    assert verify(engine) == 5
    with engine.begin() as conn:
        log = AuditLog(conn)
        first = log.entry(0)
        assert (first.seq, first.actor, first.detail) == (
            1,
            "coordinator",
            {"chunk": 0, "items": 0, "note": "批次", "round_id": "r1"},
        )
        assert json.loads(first.leaf)["detail"] == first.detail and len(first.nonce) == 16
        assert conn.execute(select(audit_log.c.detail).where(audit_log.c.seq == 1)).scalar() == (
            '{"chunk":0,"items":0,"note":"批次","round_id":"r1"}'
        )


def test_heads_and_proofs_are_rfc9162(engine: Engine) -> None:
    append(engine, 13)
    with engine.begin() as conn:
        log = AuditLog(conn)
        leaves = [leaf_hash(log.leaf(i)) for i in range(13)]
        for size in range(1, 14):
            assert log.root(size) == MemoryTree(leaves[:size]).root()
        size, root = log.head()
        assert size == 13
        for index in range(13):
            proof = log.inclusion_proof(index, 13)
            assert proof == MemoryTree(leaves).inclusion_proof(index)
            verify_inclusion(leaves[index], index, 13, proof, root)
        for first in range(1, 14):
            verify_consistency(first, 13, log.root(first), root, log.consistency_proof(first, 13))
        with pytest.raises(NotFound, match="holds 13 entries, not 14"):
            log.inclusion_proof(0, 14)
        with pytest.raises(NotFound, match="no consistency proof from 0 to 5"):
            log.consistency_proof(0, 5)
        with pytest.raises(NotFound, match="no entry 13"):
            log.entry(13)


def test_an_edited_entry_is_found_by_seq(engine: Engine) -> None:
    append(engine, 5)
    with engine.begin() as conn:
        conn.execute(
            update(audit_log)
            .where(audit_log.c.seq == 3)
            .values(detail='{"chunk":2,"items":0,"note":"批次","round_id":"r1"}')
        )
    with pytest.raises(AuditLogBroken, match="seq 3: entry does not match its leaf hash") as info:
        verify(engine)
    assert info.value.seq == 3


def _rewrite_everything(engine: Engine, seq: int, detail: dict[str, object]) -> None:
    """What the holder of the database can do: edit an entry and recompute every hash above it."""
    from alliance_psi.storage.audit_log import entry_bytes

    with engine.begin() as conn:
        conn.execute(update(audit_log).where(audit_log.c.seq == seq).values(detail=json.dumps(detail)))
        log = AuditLog(conn)
        leaves = []
        for i in range(log.size()):
            entry = log.entry(i)
            leaves.append(
                leaf_hash(entry_bytes(entry.seq, entry.at, entry.actor, entry.action, entry.detail, entry.nonce))
            )
            conn.execute(update(audit_log).where(audit_log.c.seq == i + 1).values(leaf_hash=leaves[-1]))
        conn.execute(delete(audit_nodes))
        tree = MemoryTree(leaves)
        rows = []
        level = 1
        while (1 << level) <= len(leaves):
            rows += [{"level": level, "idx": i, "hash": tree.node(level, i)} for i in range(len(leaves) >> level)]
            level += 1
        conn.execute(audit_nodes.insert(), rows)


def test_a_rewritten_log_passes_alone_and_fails_against_a_kept_checkpoint(engine: Engine) -> None:
    # The weakness of a hash chain (and of any log checked only against itself): the operator
    # edits an entry and recomputes every hash. Alone the log still verifies; against a head a
    # member kept, it does not.
    append(engine, 6)
    kept = head(engine)
    append(engine, 3, start=6)
    _rewrite_everything(engine, 2, {"chunk": 1, "items": 0, "note": "edited", "round_id": "r1"})
    assert verify(engine) == 9
    with pytest.raises(AuditLogBroken, match="first 6 entries do not make the root of a checkpoint for 6") as info:
        verify(engine, [kept])
    assert info.value.seq == 6


def test_a_truncated_tail_fails_against_a_kept_checkpoint(engine: Engine) -> None:
    append(engine, 8)
    kept = head(engine)
    with engine.begin() as conn:  # The last three entries go, with every node above them.
        conn.execute(delete(audit_log).where(audit_log.c.seq > 5))
        for level, idx in conn.execute(select(audit_nodes.c.level, audit_nodes.c.idx)).all():
            if (idx + 1) << level > 5:
                conn.execute(delete(audit_nodes).where(audit_nodes.c.level == level, audit_nodes.c.idx == idx))
    assert verify(engine) == 5
    with pytest.raises(AuditLogBroken, match="holds 5 entries, but a checkpoint was signed for 8"):
        verify(engine, [kept])


def test_a_tampered_node_or_a_stray_one_is_found(engine: Engine) -> None:
    append(engine, 7)
    with engine.begin() as conn:
        conn.execute(update(audit_nodes).where(audit_nodes.c.level == 1, audit_nodes.c.idx == 1).values(hash=bytes(32)))
    with pytest.raises(AuditLogBroken, match=r"stored node \(1, 1\) does not match entries 3 to 4"):
        verify(engine)
    with engine.begin() as conn:
        conn.execute(delete(audit_nodes))
    with pytest.raises(AuditLogBroken, match=r"stored node \(1, 0\) does not match entries 1 to 2"):
        verify(engine)


def test_deleted_entry_is_reported_as_a_gap(engine: Engine) -> None:
    append(engine, 5)
    with engine.begin() as conn:
        conn.execute(delete(audit_log).where(audit_log.c.seq == 4))
    with pytest.raises(AuditLogBroken, match=r"seq 4: gap in seq \(next entry is 5\)") as info:
        verify(engine)
    assert info.value.seq == 4


def test_concurrent_appends_make_one_tree(engine: Engine) -> None:
    threads, per_thread = 4, 15
    seqs: list[int] = []

    def work(slot: int) -> None:
        for i in range(per_thread):
            with engine.begin() as conn:
                seqs.append(AuditLog(conn).append(actor=f"worker-{slot}", action="tick", detail={"i": i}, at=NOW))

    run_concurrently(threads, work)
    assert sorted(seqs) == list(range(1, threads * per_thread + 1))
    assert verify(engine) == threads * per_thread


def test_detail_must_be_json(engine: Engine) -> None:
    with engine.begin() as conn:
        with pytest.raises(TypeError):
            AuditLog(conn).append(actor="a", action="b", detail={"token": b"\x00" * 16}, at=NOW)
        with pytest.raises(ValueError):
            AuditLog(conn).append(actor="a", action="b", detail={"x": float("nan")}, at=NOW)
