"""Evaluation quotas: reserve up to the limit, refuse beyond it, even under concurrency."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine

from alliance_psi.errors import InvalidRequest, QuotaExceeded
from alliance_psi.storage import QuotaRepository

from .support import run_concurrently


def reserve(engine: Engine, count: int, quota: int, *, member: str = "alpha", epoch: str = "E1") -> int:
    with engine.begin() as conn:
        return QuotaRepository(conn).reserve(epoch, member, count, quota)


def test_reserve_up_to_the_limit_then_refuse_with_numbers(engine: Engine) -> None:
    assert reserve(engine, 600, 1000) == 600
    assert reserve(engine, 390, 1000) == 990
    with pytest.raises(QuotaExceeded) as info:
        reserve(engine, 20, 1000)
    error = info.value
    assert str(error) == "evaluation quota exceeded for key epoch E1: 990 of 1000 used, 20 requested"
    assert (error.member_id, error.quota, error.used, error.requested) == ("alpha", 1000, 990, 20)
    assert reserve(engine, 10, 1000) == 1000
    with engine.begin() as conn:
        repo = QuotaRepository(conn)
        assert repo.used("E1", "alpha") == 1000
        # Other members and other epochs count apart.
        assert repo.used("E1", "beta") == 0
        assert repo.used("E2", "alpha") == 0


def test_a_first_reservation_over_quota_is_refused(engine: Engine) -> None:
    with pytest.raises(QuotaExceeded, match="0 of 5 used, 6 requested"):
        reserve(engine, 6, 5)
    with engine.begin() as conn:
        assert QuotaRepository(conn).used("E1", "alpha") == 0


def test_negative_counts_are_refused(engine: Engine) -> None:
    with engine.begin() as conn, pytest.raises(InvalidRequest):
        QuotaRepository(conn).reserve("E1", "alpha", -1, 10)


def test_concurrent_reservations_never_exceed_the_quota(engine: Engine) -> None:
    quota, threads, attempts, step = 60, 4, 25, 1
    granted = [0] * threads
    refused = [0] * threads

    def work(slot: int) -> None:
        for _ in range(attempts):
            try:
                reserve(engine, step, quota, member="racer")
                granted[slot] += step
            except QuotaExceeded:
                refused[slot] += 1

    run_concurrently(threads, work)
    assert sum(granted) == quota
    assert sum(refused) == threads * attempts - quota
    with engine.begin() as conn:
        assert QuotaRepository(conn).used("E1", "racer") == quota
