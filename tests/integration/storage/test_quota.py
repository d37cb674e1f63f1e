"""Evaluation quotas: reserve up to the limit, refuse beyond it, even under concurrency; charge a batch once."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine

from alliance_psi.errors import InvalidRequest, QuotaExceeded
from alliance_psi.storage import Charge, QuotaRepository

from .support import NOW, run_concurrently


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


def charge(
    engine: Engine,
    digest: bytes,
    count: int,
    quota: int,
    *,
    member: str = "alpha",
    epoch: str = "E1",
    free_resent: int = 1000,
) -> Charge:
    with engine.begin() as conn:
        return QuotaRepository(conn).charge_batch(epoch, member, digest, count, quota, at=NOW, free_resent=free_resent)


def test_a_batch_is_charged_once_however_often_it_is_sent(engine: Engine) -> None:
    first, second = b"\x01" * 32, b"\x02" * 32
    assert charge(engine, first, 10, 100) == Charge(used=10, charged=True)
    assert charge(engine, first, 10, 100) == Charge(used=10, charged=False)
    assert charge(engine, second, 10, 100) == Charge(used=20, charged=True)
    # Another member, or another epoch, sending the same bytes is charged: digests count apart.
    assert charge(engine, first, 10, 100, member="beta") == Charge(used=10, charged=True)
    assert charge(engine, first, 10, 100, epoch="E2") == Charge(used=10, charged=True)
    with engine.begin() as conn:
        assert QuotaRepository(conn).usage("E1") == {"alpha": 20, "beta": 10}
        assert QuotaRepository(conn).latest_epoch() in {"E1", "E2"}


def test_re_sent_elements_are_free_up_to_the_bound_then_charged(engine: Engine) -> None:
    digest = b"\x07" * 32
    assert charge(engine, digest, 10, 100, free_resent=25) == Charge(used=10, charged=True)
    assert charge(engine, digest, 10, 100, free_resent=25) == Charge(used=10, charged=False)
    assert charge(engine, digest, 10, 100, free_resent=25) == Charge(used=10, charged=False)
    # 30 re-sent elements would pass the bound of 25: this re-send is charged like a new batch.
    assert charge(engine, digest, 10, 100, free_resent=25) == Charge(used=20, charged=True)
    assert charge(engine, digest, 10, 100, free_resent=25) == Charge(used=30, charged=True)
    # Another member's re-sends count apart.
    assert charge(engine, digest, 10, 100, member="beta", free_resent=25) == Charge(used=10, charged=True)
    assert charge(engine, digest, 10, 100, member="beta", free_resent=25) == Charge(used=10, charged=False)


def test_a_batch_over_quota_is_refused_and_leaves_no_charge_behind(engine: Engine) -> None:
    digest = b"\x03" * 32
    charge(engine, b"\x04" * 32, 95, 100)
    with pytest.raises(QuotaExceeded, match="95 of 100 used, 10 requested"):
        charge(engine, digest, 10, 100)
    # The refused batch was not remembered: once the quota allows it, it is charged in full.
    assert charge(engine, digest, 10, 200) == Charge(used=105, charged=True)


def test_a_refund_undoes_one_charge_only(engine: Engine) -> None:
    digest = b"\x05" * 32
    charge(engine, b"\x06" * 32, 7, 100)
    charge(engine, digest, 10, 100)
    with engine.begin() as conn:
        assert QuotaRepository(conn).refund_batch("E1", "alpha", digest) == 7
    with engine.begin() as conn:
        assert QuotaRepository(conn).refund_batch("E1", "alpha", digest) is None
        assert QuotaRepository(conn).used("E1", "alpha") == 7
    # Refunded, it is charged again when sent again.
    assert charge(engine, digest, 10, 100) == Charge(used=17, charged=True)


def test_a_batch_digest_must_be_32_bytes(engine: Engine) -> None:
    with pytest.raises(InvalidRequest, match="32 bytes"):
        charge(engine, b"short", 1, 10)


def test_concurrent_charges_of_one_batch_charge_it_once(engine: Engine) -> None:
    digest = b"\x07" * 32
    outcomes: list[Charge] = []
    run_concurrently(4, lambda _: outcomes.append(charge(engine, digest, 50, 1000)))
    assert sorted(o.charged for o in outcomes) == [False, False, False, True]
    with engine.begin() as conn:
        assert QuotaRepository(conn).used("E1", "alpha") == 50
