"""The hash-chained audit log: append, verify, tampering, gaps, concurrent appends."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import Engine, delete, update

from alliance_psi.errors import AuditLogBroken
from alliance_psi.storage import GENESIS_HASH, AuditLog
from alliance_psi.storage.schema import audit_log

from .support import NOW, run_concurrently


def append(engine: Engine, n: int) -> list[int]:
    with engine.begin() as conn:
        log = AuditLog(conn)
        return [
            log.append(
                actor="coordinator",
                action="chunk.stage",
                detail={"round_id": "r1", "chunk": i, "items": 10 * i, "note": "批次"},
                at=NOW + timedelta(seconds=i),
            )
            for i in range(n)
        ]


def verify(engine: Engine) -> int:
    with engine.begin() as conn:
        return AuditLog(conn).verify()


def test_append_and_verify(engine: Engine) -> None:
    assert verify(engine) == 0
    assert append(engine, 5) == [1, 2, 3, 4, 5]
    assert verify(engine) == 5
    with engine.begin() as conn:
        first = conn.execute(audit_log.select().where(audit_log.c.seq == 1)).one()
        assert first.prev_hash == GENESIS_HASH
        assert first.detail == '{"chunk":0,"items":0,"note":"批次","round_id":"r1"}'
        assert AuditLog(conn).head()[0] == 5


def test_tampered_detail_is_found_by_seq(engine: Engine) -> None:
    append(engine, 5)
    with engine.begin() as conn:
        conn.execute(
            update(audit_log)
            .where(audit_log.c.seq == 3)
            .values(detail='{"chunk":2,"items":0,"note":"批次","round_id":"r1"}')
        )
    with pytest.raises(AuditLogBroken, match="seq 3: hash mismatch") as info:
        verify(engine)
    assert info.value.seq == 3


def test_rewritten_hash_breaks_the_next_link(engine: Engine) -> None:
    append(engine, 4)
    with engine.begin() as conn:
        conn.execute(update(audit_log).where(audit_log.c.seq == 2).values(entry_hash=bytes(32)))
    with pytest.raises(AuditLogBroken, match="seq 2: hash mismatch"):
        verify(engine)
    with engine.begin() as conn:
        conn.execute(update(audit_log).where(audit_log.c.seq == 3).values(prev_hash=b"\x01" * 32))
        conn.execute(update(audit_log).where(audit_log.c.seq == 2).values(entry_hash=b"\x01" * 32))
    with pytest.raises(AuditLogBroken, match="seq 2: hash mismatch"):
        verify(engine)


def test_deleted_entry_is_reported_as_a_gap(engine: Engine) -> None:
    append(engine, 5)
    with engine.begin() as conn:
        conn.execute(delete(audit_log).where(audit_log.c.seq == 4))
    with pytest.raises(AuditLogBroken, match=r"seq 4: gap in seq \(next entry is 5\)") as info:
        verify(engine)
    assert info.value.seq == 4


def test_concurrent_appends_make_one_chain(engine: Engine) -> None:
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
