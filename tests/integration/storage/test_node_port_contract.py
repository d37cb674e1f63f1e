"""One contract for the member node's ports, run over the in-memory fakes and over SQLite and PostgreSQL.

``tests/helpers/memory_node.py`` makes the member role's tests fast; this file keeps it honest:
what the role relies on of its node database is checked here on all three backends, so a fake
that drifts from ``MemberRepository`` and ``KeptResults`` fails beside them.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from alliance_psi.errors import InvalidRequest, NotFound
from alliance_psi.protocol.leads import LeadChecks, OwnIdentifier, RefusedLead
from alliance_psi.protocol.node_rows import (
    CachedToken,
    IdentifierRef,
    KeptHeader,
    KeptLeaf,
    PendingChange,
    PendingSet,
    SetRecord,
    SubmissionRow,
    SubmittedToken,
)
from alliance_psi.protocol.submission import SET_STATE_BYTES
from alliance_psi.services.member import SqlNodeUnitOfWork
from tests.conftest import backend_engine
from tests.helpers.memory_node import MemoryNodeUnitOfWork

NOW = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
EPOCH, SCOPE = "e1", "e1/phone/labels"


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
def uow(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    if request.param == "memory":
        yield MemoryNodeUnitOfWork()
        return
    engine: Engine
    with backend_engine(request.param, request, tmp_path) as engine:
        yield SqlNodeUnitOfWork(engine)


def token(n: int) -> bytes:
    return n.to_bytes(16, "big")


def key(n: int) -> bytes:
    return bytes([n]) * 32


def phone(n: int) -> str:
    return f"+86138{n:08d}"


def imported(uow: Any, *numbers: int, category: str = "wool_party", types: str = "phone") -> dict[str, int]:
    """Import phones (or ``types``) and return {canonical: id}."""
    rows = [
        {"type": types, "canonical": phone(n), "category": category, "severity": "level1", "case_ref": f"C-{n}"}
        for n in numbers
    ]
    with uow.writing() as tx:
        tx.repo.upsert_identifiers(rows, at=NOW)
    with uow.reading() as tx:
        return {ref.canonical: ref.id for ref in tx.repo.missing_token_ids(EPOCH)}


def test_missing_tokens_come_by_id_and_cached_ones_are_kept(uow: Any) -> None:
    ids = imported(uow, 3, 1, 2)
    imported(uow, 9, types="email")
    with uow.reading() as tx:
        missing = list(tx.repo.missing_token_ids(EPOCH, ["phone"]))
    assert missing == sorted(missing) and {ref.canonical for ref in missing} == {phone(1), phone(2), phone(3)}
    assert all(isinstance(ref, IdentifierRef) for ref in missing)
    with uow.writing() as tx:
        tx.repo.cache_tokens(EPOCH, [CachedToken(ids[phone(1)], token(1), key(1))])
        tx.repo.cache_tokens(EPOCH, [CachedToken(ids[phone(1)], token(7), key(7))])  # A retried batch: kept as first.
    with uow.reading() as tx:
        assert [ref.canonical for ref in tx.repo.missing_token_ids(EPOCH, ["phone"])] == [phone(3), phone(2)]
        assert len(list(tx.repo.missing_token_ids("e2", ["phone"]))) == 3
        assert tx.repo.label_keys_for_tokens(EPOCH, [token(1), token(7)]) == {token(1): key(1)}


def test_missing_tokens_come_by_pages_from_the_last_id_and_are_counted(uow: Any) -> None:
    ids = imported(uow, 1, 2, 3, 4, 5)
    imported(uow, 9, types="email")
    with uow.writing() as tx:
        tx.repo.cache_tokens(EPOCH, [CachedToken(ids[phone(2)], token(2), key(2))])
    with uow.reading() as tx:
        assert tx.repo.count_missing_tokens(EPOCH, ["phone"]) == 4
        assert tx.repo.count_missing_tokens(EPOCH) == 5
        first = list(tx.repo.missing_token_ids(EPOCH, ["phone"], limit=2))
        rest = list(tx.repo.missing_token_ids(EPOCH, ["phone"], after=first[-1].id, limit=2))
        assert list(tx.repo.missing_token_ids(EPOCH, ["phone"], after=rest[-1].id, limit=2)) == []
    assert [ref.canonical for ref in first + rest] == [phone(1), phone(3), phone(4), phone(5)]


def test_a_bad_token_is_refused_and_the_transaction_leaves_nothing(uow: Any) -> None:
    ids = imported(uow, 1, 2)
    with pytest.raises(InvalidRequest), uow.writing() as tx:
        tx.repo.cache_tokens(EPOCH, [CachedToken(ids[phone(1)], token(1), key(1))])
        tx.repo.cache_tokens(EPOCH, [CachedToken(ids[phone(2)], b"short", key(2))])
    with uow.reading() as tx:
        assert len(list(tx.repo.missing_token_ids(EPOCH))) == 2


def test_submission_rows_come_in_token_order_and_map_back_until_withdrawn(uow: Any) -> None:
    ids = imported(uow, 1, 2, 3)
    imported(uow, 4, types="email")
    with uow.writing() as tx:
        tx.repo.cache_tokens(EPOCH, [CachedToken(ids[phone(n)], token(10 - n), key(n)) for n in (1, 2, 3)])
    with uow.reading() as tx:
        rows = list(tx.repo.iter_submission_rows(EPOCH, ["phone"]))
        own = tx.repo.identifiers_for_tokens(EPOCH, [token(9), token(42)])
    assert rows == [
        SubmissionRow(ids[phone(n)], token(10 - n), key(n), "wool_party", "level1", None, f"C-{n}") for n in (3, 2, 1)
    ]
    assert own == {token(9): OwnIdentifier("phone", phone(1), "wool_party", "level1", None, "C-1", "")}
    with uow.writing() as tx:
        tx.repo.upsert_identifiers(
            [
                {
                    "type": "phone",
                    "canonical": phone(1),
                    "category": "other",
                    "severity": "level1",
                    "spelling": "138 0000 0001",
                }
            ]
        )
    imported(uow, 1, category="money_laundering")  # Relabelled: the id, token and spelling stay.
    with uow.writing() as tx:
        assert tx.repo.withdraw("phone", phone(2))
    with uow.reading() as tx:
        assert [(row.match_token, row.category) for row in tx.repo.iter_submission_rows(EPOCH, ["phone"])] == [
            (token(7), "wool_party"),
            (token(9), "money_laundering"),
        ]
        assert tx.repo.identifiers_for_tokens(EPOCH, [token(8)]) == {}
        assert tx.repo.identifiers_for_tokens(EPOCH, [token(9)])[token(9)].spelling == "138 0000 0001"
        assert tx.repo.label_keys_for_tokens(EPOCH, [token(8)]) == {}


def _changes(*changes: tuple[int, bool, int]) -> list[PendingChange]:
    return [PendingChange(token(n), removed, bytes([d]) * 16, b"f" * d) for n, removed, d in changes]


def _pending(replace: bool, count: int, digest: bytes, seq: int | None = None) -> PendingSet:
    return PendingSet("r1", replace, seq, SetRecord(count, digest, bytes([count]) * SET_STATE_BYTES, seq))


def test_the_record_takes_in_a_committed_delta_and_is_forgotten_whole(uow: Any) -> None:
    with uow.writing() as tx:
        tx.repo.add_pending(SCOPE, _changes((1, False, 1), (2, False, 2)))
        tx.repo.set_pending(SCOPE, _pending(True, 2, b"d" * 32))
        tx.repo.apply_pending(SCOPE)
    with uow.writing() as tx:
        tx.repo.add_pending(SCOPE, _changes((3, False, 3)))
        tx.repo.set_pending(SCOPE, PendingSet("r2", False, 5))  # Before its chunks: no record yet.
        assert tx.repo.pending_set(SCOPE) == PendingSet("r2", False, 5, None)
        tx.repo.clear_pending(SCOPE)  # A new attempt rebuilds its delta.
        assert tx.repo.pending_set(SCOPE) is None
        tx.repo.add_pending(SCOPE, _changes((1, True, 0), (2, False, 5), (4, False, 4)))
        tx.repo.set_pending(SCOPE, _pending(False, 2, b"e" * 32, seq=7))
        tx.repo.apply_pending(SCOPE)
        assert tx.repo.pending_set(SCOPE) is None
    with uow.reading() as tx:
        assert list(tx.repo.iter_submitted(SCOPE)) == [
            SubmittedToken(token(2), bytes([5]) * 16, b"f" * 5),
            SubmittedToken(token(4), bytes([4]) * 16, b"f" * 4),
        ]
        assert all(type(value) is bytes for row in tx.repo.iter_submitted(SCOPE) for value in row)
        assert tx.repo.submitted_for_tokens(SCOPE, [token(4), token(1)]) == {
            token(4): SubmittedToken(token(4), bytes([4]) * 16, b"f" * 4)
        }
        assert tx.repo.submitted_state(SCOPE) == SetRecord(2, b"e" * 32, bytes([2]) * SET_STATE_BYTES, 7)
        assert tx.repo.submitted_state("other") is None
    with uow.writing() as tx:
        tx.repo.add_pending(SCOPE, _changes((6, False, 6)))
        tx.repo.set_pending(SCOPE, _pending(True, 1, b"f" * 32))  # The whole set again.
        tx.repo.apply_pending(SCOPE)
    with uow.reading() as tx:
        assert [row.match_token for row in tx.repo.iter_submitted(SCOPE)] == [token(6)]
    with uow.writing() as tx:
        tx.repo.add_pending(SCOPE, _changes((7, False, 7)))
        tx.repo.set_pending(SCOPE, _pending(False, 0, b"g" * 32))
        tx.repo.forget_submitted(SCOPE)
        with pytest.raises(NotFound, match="no built submission is pending"):
            tx.repo.apply_pending(SCOPE)  # Nothing pending survived.
    with uow.reading() as tx:
        assert list(tx.repo.iter_submitted(SCOPE)) == []


def test_changes_are_stamped_in_order_and_read_by_window(uow: Any) -> None:
    with uow.reading() as tx:
        start = tx.repo.change_head()
    ids = imported(uow, 1, 2, 3)
    imported(uow, 4, types="email")
    with uow.writing() as tx:
        tx.repo.cache_tokens(EPOCH, [CachedToken(ids[phone(n)], token(10 - n), key(n)) for n in (1, 2, 3)])
    with uow.reading() as tx:
        first = tx.repo.change_head()
    assert first > start
    imported(uow, 2, category="money_laundering")  # Relabelled.
    imported(uow, 5)  # New, no token yet.
    with uow.writing() as tx:
        assert tx.repo.withdraw("phone", phone(1))
        assert not tx.repo.withdraw("phone", phone(6))
    with uow.reading() as tx:
        head = tx.repo.change_head()
        changed = list(tx.repo.iter_changed_rows(EPOCH, ["phone"], first, head))
        assert [(row.match_token, row.category) for row in changed] == [(token(8), "money_laundering")]
        assert [ref.canonical for ref in tx.repo.missing_token_ids(EPOCH, ["phone"], since=first, upto=head)] == [
            phone(5)
        ]
        assert list(tx.repo.missing_token_ids(EPOCH, ["phone"], since=head, upto=head)) == []
        assert tx.repo.withdrawn_tokens(EPOCH, ["phone"], first, head) == {token(9)}
        assert tx.repo.withdrawn_tokens(EPOCH, ["email"], first, head) == set()
        assert tx.repo.withdrawn_tokens(EPOCH, ["phone"], head, head) == set()
        everything = list(tx.repo.iter_changed_rows(EPOCH, ["phone"], start, head))
        assert [row.match_token for row in everything] == [token(7), token(8)]  # In token order.
    with uow.writing() as tx:  # A record that holds the withdrawn token keeps it in the log.
        tx.repo.add_pending(SCOPE, _changes((9, False, 9)))
        tx.repo.set_pending(SCOPE, _pending(True, 1, b"d" * 32, seq=head))
        tx.repo.apply_pending(SCOPE)
    with uow.reading() as tx:
        assert tx.repo.withdrawn_tokens(EPOCH, ["phone"], first, head) == {token(9)}
    with uow.writing() as tx:  # Once no record holds it, it goes.
        tx.repo.add_pending(SCOPE, _changes((9, True, 0)))
        tx.repo.set_pending(SCOPE, _pending(False, 0, b"e" * 32, seq=head))
        tx.repo.apply_pending(SCOPE)
    with uow.reading() as tx:
        assert tx.repo.withdrawn_tokens(EPOCH, ["phone"], first, head) == set()


def test_a_row_imported_again_unchanged_keeps_its_change_stamp(uow: Any) -> None:
    ids = imported(uow, 1, 2)
    with uow.writing() as tx:
        tx.repo.cache_tokens(EPOCH, [CachedToken(ids[phone(n)], token(n), key(n)) for n in (1, 2)])
    with uow.reading() as tx:
        first = tx.repo.change_head()
    imported(uow, 1, 2)  # The same rows again: their label is the same, so is their stamp.
    with uow.reading() as tx:
        assert list(tx.repo.iter_changed_rows(EPOCH, ["phone"], first, tx.repo.change_head())) == []
    imported(uow, 1, 2, category="money_laundering")  # Relabelled: stamped again.
    with uow.reading() as tx:
        changed = tx.repo.iter_changed_rows(EPOCH, ["phone"], first, tx.repo.change_head())
        assert [(row.match_token, row.category) for row in changed] == [
            (token(1), "money_laundering"),
            (token(2), "money_laundering"),
        ]


def test_a_withdrawal_stays_while_a_delta_read_before_it_may_still_put_its_token(uow: Any) -> None:
    # Scope A's delta was read up to ``before``, with phone 1 in it; the node stopped before it
    # recorded the commit. Phone 1 is withdrawn, and scope B commits (which drops the withdrawals
    # no record holds): A's record holds phone 1 once its commit is recorded, so its next delta
    # must still find the withdrawal, or the coordinator keeps the token for good.
    other = "e1/phone/tokens"
    ids = imported(uow, 1)
    with uow.writing() as tx:
        tx.repo.cache_tokens(EPOCH, [CachedToken(ids[phone(1)], token(1), key(1))])
    with uow.reading() as tx:
        before = tx.repo.change_head()
    with uow.writing() as tx:
        tx.repo.add_pending(SCOPE, _changes((1, False, 1)))
        tx.repo.set_pending(SCOPE, _pending(True, 1, b"a" * 32, seq=before))
    with uow.writing() as tx:
        assert tx.repo.withdraw("phone", phone(1))
    with uow.reading() as tx:
        head = tx.repo.change_head()
    with uow.writing() as tx:
        tx.repo.set_pending(other, _pending(True, 0, b"b" * 32, seq=head))
        tx.repo.apply_pending(other)
    with uow.reading() as tx:
        assert tx.repo.withdrawn_tokens(EPOCH, ["phone"], before, head) == {token(1)}
    with uow.writing() as tx:  # A's commit recorded, then its next delta removes the token: it goes.
        tx.repo.apply_pending(SCOPE)
        tx.repo.add_pending(SCOPE, _changes((1, True, 0)))
        tx.repo.set_pending(SCOPE, _pending(False, 0, b"c" * 32, seq=head))
        tx.repo.apply_pending(SCOPE)
    with uow.reading() as tx:
        assert tx.repo.withdrawn_tokens(EPOCH, ["phone"], before, head) == set()


def test_a_kept_result_is_all_there_or_not_at_all(uow: Any) -> None:
    with pytest.raises(RuntimeError), uow.writing() as tx:
        tx.results.save_header("r1", key_epoch=EPOCH, round_name="first", header=b"h0", signature=b"s0", at=NOW)
        tx.results.add_leaves("r1", [KeptLeaf(0, token(1), b"leaf-0")])
        raise RuntimeError("a page failed its check")
    with uow.reading() as tx, pytest.raises(NotFound, match="no result kept for round r1"):
        tx.results.get_result("r1")
    for header in (b"h1", b"h2"):  # Fetched again: the second copy replaces the first, leaves and all.
        with uow.writing() as tx:
            tx.results.save_header("r1", key_epoch=EPOCH, round_name="named", header=header, signature=b"s", at=NOW)
            tx.results.add_leaves("r1", [KeptLeaf(1, token(2), header + b"-1"), KeptLeaf(0, token(1), header + b"-0")])
    with uow.reading() as tx:
        kept = tx.results.get_result("r1")
        assert (kept.key_epoch, kept.round_name, kept.header, kept.signature) == (EPOCH, "named", b"h2", b"s")
        assert isinstance(kept, KeptHeader) and kept.fetched_at == NOW
        assert list(tx.results.iter_leaves("r1")) == [b"h2-0", b"h2-1"]


def test_the_scope_recorded_at_commit_outlives_fetches_and_refusals_do_not(uow: Any) -> None:
    with uow.reading() as tx:
        assert tx.results.recorded_scope("r1") is None and tx.results.get_checks("r1") == LeadChecks(None)
    with uow.writing() as tx:
        tx.results.record_scope("r1", "e1/phone/tokens", share_labels=False)
        tx.results.record_scope("r1", SCOPE, share_labels=True)  # Recorded again: the last one holds.
        tx.results.record_scope("r2", "e1/phone/tokens", share_labels=False)
    refusals = [
        RefusedLead(token(2), 3, "two peer labels are identical", backed_count=2, stands=True),
        RefusedLead(token(1), 2, "only 0", backed_count=1),
    ]
    with pytest.raises(RuntimeError), uow.writing() as tx:
        tx.results.save_header("r1", key_epoch=EPOCH, round_name="r", header=b"h0", signature=b"s", at=NOW)
        tx.results.save_refusals("r1", refusals[:1])
        raise RuntimeError("a page failed its check")
    with uow.reading() as tx:
        assert tx.results.get_checks("r1") == LeadChecks(SCOPE)
    for kept in (refusals[:1], refusals):  # Fetched again: the second copy's refusals replace the first's.
        with uow.writing() as tx:
            tx.results.save_header("r1", key_epoch=EPOCH, round_name="r", header=b"h", signature=b"s", at=NOW)
            tx.results.save_refusals("r1", kept)
    with uow.reading() as tx:
        assert tx.results.recorded_scope("r1") == (SCOPE, True)
        assert tx.results.get_checks("r1") == LeadChecks(SCOPE, (refusals[1], refusals[0]))
        assert tx.results.get_checks("r1").refused_tokens() == {token(1)}  # token 2 stands, backed by 2 of 3.
        assert tx.results.get_checks("r1").backed_counts() == {token(2): 2}
        assert tx.results.get_checks("r2") == LeadChecks(None)  # A round without labels: no scope to open them.


def test_cached_first_seen_dates_come_back_as_dates(uow: Any) -> None:
    with uow.writing() as tx:
        tx.repo.upsert_identifiers(
            [
                {
                    "type": "phone",
                    "canonical": phone(1),
                    "category": "other",
                    "severity": "level2",
                    "first_seen": date(2025, 3, 1),
                }
            ]
        )
    with uow.reading() as tx:
        (ref,) = tx.repo.missing_token_ids(EPOCH)
    with uow.writing() as tx:
        tx.repo.cache_tokens(EPOCH, [CachedToken(ref.id, token(1), key(1))])
    with uow.reading() as tx:
        (row,) = tx.repo.iter_submission_rows(EPOCH)
    assert (row.first_seen, row.severity, row.case_ref) == (date(2025, 3, 1), "level2", "")
