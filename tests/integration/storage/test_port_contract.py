"""One contract for the roles' ports, run over the in-memory fakes and over SQLite and PostgreSQL.

The fakes (``tests/helpers/memory_ports.py``) make the role tests fast; this file keeps them
honest: every behaviour the roles rely on is checked here on all three, so a fake that drifts
from the storage adapters fails beside the adapter it imitates.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from alliance_psi.crypto.labels import SEALED_LABEL_BYTES
from alliance_psi.errors import (
    Conflict,
    InvalidRequest,
    LimitExceeded,
    NotFound,
    QuotaExceeded,
    RoundClosed,
    SetMismatch,
)
from alliance_psi.protocol.model import Round, RoundState, SubmissionState
from alliance_psi.protocol.ports import Charge
from alliance_psi.protocol.submission import SubmissionDigest, chunk_digest, label_digest, set_digest
from alliance_psi.services.coordinator import sql_unit_of_work
from alliance_psi.services.custodian import SqlQuotaLedger
from tests.conftest import backend_engine
from tests.helpers.memory_ports import MemoryQuotaLedger, MemoryUnitOfWork

NOW = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
UnitOfWork = Callable[[], AbstractContextManager[Any]]


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine | None]:
    """None for the in-memory fakes, else an engine with the schema (as the ``engine`` fixture)."""
    if request.param == "memory":
        yield None
        return
    with backend_engine(request.param, request, tmp_path) as engine:
        yield engine


@pytest.fixture
def uow(backend: Engine | None) -> UnitOfWork:
    return MemoryUnitOfWork() if backend is None else sql_unit_of_work(backend)


@pytest.fixture
def ledger(backend: Engine | None) -> Any:
    return MemoryQuotaLedger() if backend is None else SqlQuotaLedger(backend, "custodian-1")


def a_round(round_id: str = "r1", *, types: tuple[str, ...] = ("phone",), labels: bool = True) -> Round:
    return Round(
        round_id=round_id,
        name="contract",
        threshold=2,
        key_epoch="e1",
        deadline=NOW + timedelta(hours=1),
        allowed_types=types,
        invited=None,
        share_labels=labels,
        created_by="operator",
        created_at=NOW,
    )


def token(n: int) -> bytes:
    return n.to_bytes(16, "big")


def label(n: int) -> bytes:
    return bytes([n]) * SEALED_LABEL_BYTES


def stage(
    uow: UnitOfWork,
    round_id: str,
    member: str,
    index: int,
    items: Any,
    removals: Any = (),
    *,
    replace: bool = True,
    max_items: int | None = None,
) -> bool:
    with uow() as tx:
        return bool(
            tx.submissions.stage_chunk(
                round_id,
                member,
                index,
                items,
                chunk_digest(items, removals),
                at=NOW,
                removals=removals,
                replace=replace,
                max_items=max_items,
            )
        )


def commit_whole(uow: UnitOfWork, round_id: str, member: str, numbers: list[int]) -> Any:
    items = [(token(n), label(n)) for n in sorted(numbers)]
    if items:
        stage(uow, round_id, member, 0, items)
    digest = SubmissionDigest()
    if items:
        digest.update(items)
    whole = set_digest((t, label_digest(lbl)) for t, lbl in items)
    with uow() as tx:
        return tx.submissions.commit_submission(
            round_id,
            member,
            item_count=digest.count,
            digest=digest.digest(),
            at=NOW,
            set_count=len(items),
            set_digest=whole,
        )


def test_rounds(uow: UnitOfWork) -> None:
    with uow() as tx:
        tx.rounds.create_round(a_round("r1"))
        tx.rounds.create_round(a_round("r2", types=("id_card",)))
    with pytest.raises(Conflict, match="already exists"), uow() as tx:
        tx.rounds.create_round(a_round("r1", types=("email",)))
    with pytest.raises(Conflict, match="not matched yet"), uow() as tx:
        tx.rounds.create_round(a_round("r3"))
    with pytest.raises(NotFound, match="no round r9"), uow() as tx:
        tx.rounds.get_round("r9")
    with uow() as tx:
        assert [r.round_id for r in tx.rounds.list_rounds()] == ["r1", "r2"]
        assert tx.rounds.transition_round("r1", RoundState.OPEN, RoundState.CLOSED, at=NOW, reason="why")
        assert not tx.rounds.transition_round("r1", RoundState.OPEN, RoundState.CLOSED, at=NOW)
        assert [r.round_id for r in tx.rounds.list_rounds(RoundState.OPEN)] == ["r2"]
        closed = tx.rounds.get_round("r1")
        assert (closed.state, closed.close_reason, closed.closed_at) == (RoundState.CLOSED, "why", NOW)
    with pytest.raises(InvalidRequest), uow() as tx:
        tx.rounds.transition_round("r1", RoundState.MATCHED, RoundState.OPEN, at=NOW)
    with pytest.raises(NotFound), uow() as tx:
        tx.rounds.transition_round("r9", RoundState.OPEN, RoundState.CLOSED, at=NOW)


def test_staging_and_committing(uow: UnitOfWork) -> None:
    with uow() as tx:
        tx.rounds.create_round(a_round())
    first, second = [(token(1), label(1)), (token(2), label(2))], [(token(3), None)]
    assert stage(uow, "r1", "bank-a", 0, first)
    assert not stage(uow, "r1", "bank-a", 0, first)  # The same chunk again changes nothing.
    with pytest.raises(Conflict, match="chunk 0 already stored with different content"):
        stage(uow, "r1", "bank-a", 0, second)
    with pytest.raises(InvalidRequest, match="chunk 1, item 0: a token this submission already holds"):
        stage(uow, "r1", "bank-a", 1, [(token(2), None)])
    with pytest.raises(Conflict, match="cannot remove tokens"):
        stage(uow, "r1", "bank-a", 1, [], [token(9)])
    with pytest.raises(Conflict, match="started as its whole set"):
        stage(uow, "r1", "bank-a", 1, second, replace=False)
    assert stage(uow, "r1", "bank-a", 2, second)
    with uow() as tx:
        status = tx.submissions.submission_status("r1", "bank-a")
        assert (status.state, status.chunks, status.item_count) == (SubmissionState.STAGING, (0, 2), 3)
        assert tx.submissions.submitted_count("r1", "bank-a") == 3
    digest = SubmissionDigest()
    for items in (first, second):
        digest.update(items)
    with pytest.raises(Conflict, match="missing chunks: 1"), uow() as tx:
        tx.submissions.commit_submission("r1", "bank-a", item_count=3, digest=digest.digest(), at=NOW)
    assert stage(uow, "r1", "bank-a", 1, [(token(4), None)])
    digest = SubmissionDigest()
    for items in (first, [(token(4), None)], second):
        digest.update(items)
    with pytest.raises(Conflict, match="item count mismatch"), uow() as tx:
        tx.submissions.commit_submission("r1", "bank-a", item_count=5, digest=digest.digest(), at=NOW)
    with pytest.raises(Conflict, match="digest mismatch"), uow() as tx:
        tx.submissions.commit_submission("r1", "bank-a", item_count=4, digest=bytes(32), at=NOW)
    with pytest.raises(SetMismatch, match="set count mismatch"), uow() as tx:
        tx.submissions.commit_submission("r1", "bank-a", item_count=4, digest=digest.digest(), at=NOW, set_count=3)
    whole = set_digest(sorted((t, label_digest(lbl)) for t, lbl in [*first, (token(4), None), *second]))
    with uow() as tx:
        committed = tx.submissions.commit_submission(
            "r1", "bank-a", item_count=4, digest=digest.digest(), at=NOW, set_count=4, set_digest=whole
        )
    assert (committed.state, committed.item_count, committed.set_count, committed.set_digest) == (
        SubmissionState.COMMITTED,
        4,
        4,
        whole,
    )
    with uow() as tx:
        again = tx.submissions.commit_submission("r1", "bank-a", item_count=4, digest=digest.digest(), at=NOW)
        assert again == committed and tx.submissions.committed_members("r1") == ["bank-a"]
        assert tx.submissions.submitted_count("r1", "bank-a") == 4
    with pytest.raises(Conflict, match="already committed"), uow() as tx:
        tx.submissions.commit_submission("r1", "bank-a", item_count=0, digest=bytes(32), at=NOW)
    with pytest.raises(Conflict, match="already committed"):
        stage(uow, "r1", "bank-a", 3, [(token(5), None)])


def test_a_refused_commit_leaves_the_staged_submission(uow: UnitOfWork) -> None:
    with uow() as tx:
        tx.rounds.create_round(a_round())
    items = [(token(1), None)]
    stage(uow, "r1", "bank-a", 0, items)
    with pytest.raises(SetMismatch), uow() as tx:
        tx.submissions.commit_submission(
            "r1", "bank-a", item_count=1, digest=_digest(items), at=NOW, set_digest=bytes(32)
        )
    with uow() as tx:
        status = tx.submissions.submission_status("r1", "bank-a")
        assert (status.state, status.set_count, status.set_digest) == (SubmissionState.STAGING, 0, b"")


def _digest(items: Any) -> bytes:
    digest = SubmissionDigest()
    digest.update(items)
    return digest.digest()


def test_deltas_against_the_standing_set(uow: UnitOfWork) -> None:
    with uow() as tx:
        tx.rounds.create_round(a_round("r1"))
    commit_whole(uow, "r1", "bank-a", [1, 2, 3])
    with uow() as tx:
        tx.rounds.transition_round("r1", RoundState.OPEN, RoundState.CLOSED, at=NOW)
        tx.rounds.transition_round("r1", RoundState.CLOSED, RoundState.MATCHED, at=NOW)
        tx.rounds.create_round(a_round("r2"))
        assert tx.submissions.submission_status("r2", "bank-a").set_count == 3
    puts, removals = [(token(2), label(20)), (token(4), label(4))], [token(3)]
    assert stage(uow, "r2", "bank-a", 0, puts, removals, replace=False)
    with pytest.raises(Conflict, match="started as a delta"):
        stage(uow, "r2", "bank-a", 1, [(token(5), None)])
    expected = set_digest(sorted((token(n), label_digest(label(m))) for n, m in ((1, 1), (2, 20), (4, 4))))
    with uow() as tx:
        status = tx.submissions.commit_submission(
            "r2",
            "bank-a",
            item_count=3,
            digest=_digest_with(puts, removals),
            at=NOW,
            replace=False,
            set_count=3,
            set_digest=expected,
        )
    assert (status.set_count, status.set_digest) == (3, expected)


def test_removing_a_token_the_set_lacks_is_refused(uow: UnitOfWork) -> None:
    with uow() as tx:
        tx.rounds.create_round(a_round("r1"))
    commit_whole(uow, "r1", "bank-a", [1])
    with uow() as tx:
        tx.rounds.transition_round("r1", RoundState.OPEN, RoundState.CLOSED, at=NOW)
        tx.rounds.transition_round("r1", RoundState.CLOSED, RoundState.MATCHED, at=NOW)
        tx.rounds.create_round(a_round("r2"))
    stage(uow, "r2", "bank-a", 0, [], [token(7)], replace=False)
    with pytest.raises(Conflict, match="1 removed tokens are not in the member's set"), uow() as tx:
        tx.submissions.commit_submission(
            "r2", "bank-a", item_count=1, digest=_digest_with([], [token(7)]), at=NOW, replace=False
        )


def test_item_limits_per_member_leave_nothing_half_done(uow: UnitOfWork) -> None:
    with uow() as tx:
        tx.rounds.create_round(a_round("r1"))
    assert stage(uow, "r1", "bank-a", 0, [(token(1), None), (token(2), None)], max_items=3)
    with pytest.raises(
        LimitExceeded,
        match="chunk 1: a whole set may hold at most 3 items and removals per member and round; "
        "2 are staged and this chunk adds 2",
    ):
        stage(uow, "r1", "bank-a", 1, [(token(3), None), (token(4), None)], max_items=3)
    with uow() as tx:
        status = tx.submissions.submission_status("r1", "bank-a")
        assert (status.chunks, status.item_count) == ((0,), 2)  # Nothing of the refused chunk.
    with uow() as tx:
        tx.submissions.discard_uncommitted("r1")
    committed = commit_whole(uow, "r1", "bank-a", [1, 2])
    with uow() as tx:
        tx.rounds.transition_round("r1", RoundState.OPEN, RoundState.CLOSED, at=NOW)
        tx.rounds.transition_round("r1", RoundState.CLOSED, RoundState.MATCHED, at=NOW)
        tx.rounds.create_round(a_round("r2"))
    puts = [(token(3), None), (token(4), None)]
    stage(uow, "r2", "bank-a", 0, puts, replace=False, max_items=2)
    with pytest.raises(LimitExceeded, match="the member's set would hold 4 tokens, over the limit of 3"), uow() as tx:
        tx.submissions.commit_submission(
            "r2", "bank-a", item_count=2, digest=_digest_with(puts, []), at=NOW, replace=False, max_set_items=3
        )
    with uow() as tx:
        status = tx.submissions.submission_status("r2", "bank-a")
        assert status.state is SubmissionState.STAGING
        assert (status.set_count, status.set_digest) == (committed.set_count, committed.set_digest)
        assert list(tx.matching.match("r1", 1)) == [(token(n), "bank-a", label(n), 1) for n in (1, 2)]


def _digest_with(items: Any, removals: Any) -> bytes:
    digest = SubmissionDigest()
    digest.update(items, removals)
    return digest.digest()


def test_matching_counts_committed_members_only(uow: UnitOfWork) -> None:
    with uow() as tx:
        tx.rounds.create_round(a_round())
    commit_whole(uow, "r1", "bank-a", [1, 2, 3])
    commit_whole(uow, "r1", "bank-b", [2, 3])
    commit_whole(uow, "r1", "bank-c", [3])
    stage(uow, "r1", "bank-d", 0, [(token(1), None)])  # Staged, never committed: invisible.
    with uow() as tx:
        rows = sorted(tx.matching.match("r1", 2))
        assert rows == sorted(
            [
                (token(2), "bank-a", label(2), 2),
                (token(2), "bank-b", label(2), 2),
                (token(3), "bank-a", label(3), 3),
                (token(3), "bank-b", label(3), 3),
                (token(3), "bank-c", label(3), 3),
            ]
        )
        assert sorted(tx.matching.match("r1", 3, labels=False)) == [
            (token(3), m, None, 3) for m in ("bank-a", "bank-b", "bank-c")
        ]
        assert list(tx.matching.match("r1", 4)) == []
    with pytest.raises(InvalidRequest), uow() as tx:
        list(tx.matching.match("r1", 0))
    with uow() as tx:
        tx.rounds.transition_round("r1", RoundState.OPEN, RoundState.CLOSED, at=NOW)
        assert tx.submissions.discard_uncommitted("r1") == 1
        assert tx.submissions.submission_status("r1", "bank-d").state is SubmissionState.NONE
    with pytest.raises(RoundClosed):
        stage(uow, "r1", "bank-d", 0, [(token(1), None)])


def test_results(uow: UnitOfWork) -> None:
    with uow() as tx:
        tx.rounds.create_round(a_round())
        tx.results.store_result_page("r1", "bank-a", 0, 0, [b"leaf-0", b"leaf-1"])
        tx.results.store_result_page("r1", "bank-a", 1, 2, [b"leaf-2"])
        tx.results.store_result("r1", "bank-a", b"header", b"sig", 2, at=NOW)
        assert tx.results.get_result("r1", "bank-a") == (b"header", b"sig", 2)
        assert tx.results.get_result_page("r1", "bank-a", 1) == (2, (b"leaf-2",))
    with pytest.raises(Conflict), uow() as tx:
        tx.results.store_result("r1", "bank-a", b"other", b"sig", 2, at=NOW)
    with pytest.raises(Conflict), uow() as tx:
        tx.results.store_result_page("r1", "bank-a", 0, 0, [b"other"])
    with pytest.raises(NotFound, match="no result for bank-b in round r1"), uow() as tx:
        tx.results.get_result("r1", "bank-b")
    with pytest.raises(NotFound, match="no page 2 of the result for bank-a in round r1"), uow() as tx:
        tx.results.get_result_page("r1", "bank-a", 2)


def test_quota_ledger(ledger: Any) -> None:
    first, second, third = b"\x01" * 32, b"\x02" * 32, b"\x03" * 32
    assert ledger.used("e1", "bank-a") == 0
    assert ledger.charge("e1", "bank-a", first, 6, 10, 6) == Charge(6, True)
    assert ledger.charge("e1", "bank-a", first, 6, 10, 6) == Charge(6, False)  # The same batch again: free.
    with pytest.raises(QuotaExceeded) as refused:
        ledger.charge("e1", "bank-a", second, 5, 10, 6)
    assert (refused.value.member_id, refused.value.quota, refused.value.used, refused.value.requested) == (
        "bank-a",
        10,
        6,
        5,
    )
    assert ledger.charge("e1", "bank-a", second, 4, 10, 6) == Charge(10, True)  # Refused, it was not remembered.
    assert (ledger.used("e1", "bank-a"), ledger.used("e2", "bank-a"), ledger.used("e1", "bank-b")) == (10, 0, 0)
    ledger.refund("e1", "bank-a", second, "malformed element")
    ledger.refund("e1", "bank-a", second, "malformed element")  # Once only.
    ledger.refund("e1", "bank-a", third, "malformed element")  # Never charged: nothing happens.
    assert ledger.used("e1", "bank-a") == 6
    assert ledger.charge("e1", "bank-a", second, 4, 10, 6) == Charge(10, True)  # Refunded: charged when sent again.
    # Re-sent elements are free up to the member's bound per epoch (5 here), then charged anew.
    assert ledger.charge("e1", "bank-c", first, 3, 9, 5) == Charge(3, True)
    assert ledger.charge("e1", "bank-c", first, 3, 9, 5) == Charge(3, False)  # 3 of 5 free.
    assert ledger.charge("e1", "bank-c", first, 3, 9, 5) == Charge(6, True)  # 6 > 5: charged.
    assert ledger.charge("e1", "bank-c", first, 3, 9, 5) == Charge(9, True)
    with pytest.raises(QuotaExceeded):  # A charged re-send needs the quota like any batch.
        ledger.charge("e1", "bank-c", first, 3, 9, 5)
    assert ledger.charge("e2", "bank-c", first, 3, 9, 5) == Charge(3, True)  # Bounds count per epoch.
    assert ledger.charge("e2", "bank-c", first, 3, 9, 5) == Charge(3, False)
    with pytest.raises(InvalidRequest):
        ledger.charge("e1", "bank-b", third, -1, 10, 6)
    with pytest.raises(InvalidRequest):
        ledger.charge("e1", "bank-b", b"short", 1, 10, 6)


def test_names_of_the_members_that_chose_to_be_named(uow: UnitOfWork) -> None:
    with uow() as tx:
        tx.rounds.create_round(a_round())
    for member, numbers in (("bank-a", [1, 2]), ("bank-b", [2]), ("bank-c", [2])):
        commit_whole(uow, "r1", member, numbers)
    stage(uow, "r1", "bank-d", 0, [(token(9), label(9))])  # Staged only: never named.
    with uow() as tx:
        tx.submissions.record_share_name("r1", "bank-a", True)
        tx.submissions.record_share_name("r1", "bank-c", True)
        tx.submissions.record_share_name("r1", "bank-c", False)  # Its last commit's choice counts.
        tx.submissions.record_share_name("r1", "bank-d", True)
        # No display names enrolled here: a member is named by its id (the coordinator's
        # enrolment list supplies display names; see test_attested_names).
        assert tx.submissions.sealer_names("r1") == {"bank-a": "bank-a"}
