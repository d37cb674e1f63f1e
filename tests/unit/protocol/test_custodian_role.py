"""The custodian's rules over an in-memory quota ledger: epochs, batches, elements, roles, quota."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import pytest

from alliance_psi.crypto.key_shares import KeyShare
from alliance_psi.crypto.oprf import blind, evaluate, finalize
from alliance_psi.errors import InvalidRequest, MalformedElement, NotAuthorized, QuotaExceeded, WrongEpoch
from alliance_psi.protocol.custodian import MAX_EVALUATE_BATCH, CustodianRole, Evaluation
from alliance_psi.protocol.model import Identity, Role
from tests.helpers.memory_ports import MemoryQuotaLedger

A, B = Identity("bank-a", Role.MEMBER), Identity("bank-b", Role.MEMBER)
SHARE = KeyShare.generate("e1")


@pytest.fixture
def ledger() -> MemoryQuotaLedger:
    return MemoryQuotaLedger()


@pytest.fixture
def custodian(ledger: MemoryQuotaLedger) -> CustodianRole:
    return CustodianRole("custodian-1", SHARE, quota_per_member=10, ledger=ledger)


def elements(n: int, start: int = 0) -> list[bytes]:
    return [blind(b"id %d" % i).blinded_element for i in range(start, start + n)]


def test_evaluation_applies_the_share_and_counts_it(custodian: CustodianRole) -> None:
    identifier = b"phone:+8613915274680"
    blinded = blind(identifier)
    evaluation = custodian.evaluate(A, "e1", [blinded.blinded_element])
    assert evaluation.used == 1
    # One custodian holds the whole key here: unblinded, it is RFC 9497's OPRF under the share.
    assert finalize(identifier, blinded.blind, evaluation.elements[0]) == evaluate(SHARE.scalar, identifier)


def test_quota_is_per_member_and_a_refused_batch_counts_nothing(
    custodian: CustodianRole, ledger: MemoryQuotaLedger
) -> None:
    assert custodian.evaluate(A, "e1", elements(6)).used == 6
    with pytest.raises(QuotaExceeded) as refused:
        custodian.evaluate(A, "e1", elements(5, 6))
    assert (refused.value.member_id, refused.value.quota, refused.value.used, refused.value.requested) == (
        "bank-a",
        10,
        6,
        5,
    )
    assert custodian.epoch_status(A).used == 6
    assert custodian.evaluate(A, "e1", elements(4, 6)).used == 10  # Exactly the quota fits.
    assert custodian.evaluate(B, "e1", elements(10)).used == 10  # Another member's quota is its own.
    assert [entry["detail"]["used"] for entry in ledger.audit.entries if entry["action"] == "evaluate"] == [6, 10, 10]


def test_a_malformed_element_refuses_the_batch_and_it_stays_charged(
    custodian: CustodianRole, ledger: MemoryQuotaLedger
) -> None:
    for bad in (bytes(32), b"\xff" * 32, b"\x01" * 31):
        with pytest.raises(MalformedElement, match=r"^element 2\b"):  # The first bad one, by its index.
            custodian.evaluate(A, "e1", [*elements(2), bad, *elements(1, 9)])
    # A 31-byte element is refused before the charge; the two undecodable batches (4 elements each)
    # were multiplied up to their bad element and stay charged (no free CPU for a batch with a bad tail).
    assert custodian.epoch_status(A).used == 8
    assert [e["action"] for e in ledger.audit.entries] == ["evaluate"] * 2


def test_the_quota_is_charged_before_any_element_is_read(custodian: CustodianRole, ledger: MemoryQuotaLedger) -> None:
    custodian.evaluate(A, "e1", elements(6))
    # Undecodable elements over quota: the refusal is the quota's, so none of them was decoded.
    with pytest.raises(QuotaExceeded):
        custodian.evaluate(A, "e1", [b"\xff" * 32] * 5)
    assert ledger.charges == 2 and custodian.epoch_status(A).used == 6


def test_a_batch_sent_again_is_evaluated_again_without_a_second_charge(custodian: CustodianRole) -> None:
    batch = elements(6)
    first = custodian.evaluate(A, "e1", batch)
    again = custodian.evaluate(A, "e1", batch)
    assert (again.elements, again.used) == (first.elements, 6)
    with pytest.raises(QuotaExceeded):  # A different batch is charged: 6 + 6 > 10.
        custodian.evaluate(A, "e1", batch[::-1])


class CountingShare(KeyShare):
    """The real share, counting the elements it multiplies (in ``multiplied``, shared by all)."""

    multiplied: ClassVar[list[int]] = []

    def blind_evaluate(self, blinded: Sequence[bytes]) -> list[bytes]:
        CountingShare.multiplied.append(len(blinded))
        return KeyShare.blind_evaluate(self, blinded)


def counting_custodian(ledger: MemoryQuotaLedger, *, kept: int, free: int, quota: int = 100) -> CustodianRole:
    CountingShare.multiplied.clear()
    share = CountingShare(epoch=SHARE.epoch, suite_id=SHARE.suite_id, scalar=SHARE.scalar)
    return CustodianRole(
        "c", share, quota_per_member=quota, ledger=ledger, kept_answers_per_member=kept, free_resent_per_member=free
    )


def test_a_batch_sent_again_is_answered_from_the_kept_answers_without_computing(ledger: MemoryQuotaLedger) -> None:
    custodian = counting_custodian(ledger, kept=8, free=6)
    batch = elements(6)
    first = custodian.evaluate(A, "e1", batch)
    for _ in range(50):  # A hostile member re-sending one batch: no multiplication, no charge.
        assert custodian.evaluate(A, "e1", batch) == first
    assert (CountingShare.multiplied, ledger.charges, custodian.epoch_status(A).used) == ([6], 1, 6)
    # Kept per member: B sending the same bytes is B's own new batch, charged and computed.
    assert custodian.evaluate(B, "e1", batch).used == 6
    assert CountingShare.multiplied == [6, 6]
    # A bounded memory: 6 + 6 > 8 drops A's older answer, least recently used first; sent
    # again, it is computed again (a free re-send: 6 of the 6 free elements).
    custodian.evaluate(A, "e1", elements(6, 6))
    assert custodian.evaluate(A, "e1", batch) == Evaluation(first.elements, 12)
    assert CountingShare.multiplied == [6, 6, 6, 6]


def test_re_sends_the_memory_no_longer_holds_are_free_up_to_the_bound_then_charged(
    ledger: MemoryQuotaLedger,
) -> None:
    custodian = counting_custodian(ledger, kept=0, free=12, quota=20)
    batch = elements(6)
    first = custodian.evaluate(A, "e1", batch)
    # Nothing kept: each re-send is computed again; the first 12 re-sent elements are free.
    assert [custodian.evaluate(A, "e1", batch).used for _ in range(2)] == [6, 6]
    # Beyond the bound, a re-send is charged as a new batch, until the quota refuses it.
    assert [custodian.evaluate(A, "e1", batch).used for _ in range(2)] == [12, 18]
    with pytest.raises(QuotaExceeded):
        custodian.evaluate(A, "e1", batch)
    assert custodian.evaluate(A, "e1", batch[:1]).elements == first.elements[:1]  # 19 of 20.
    assert CountingShare.multiplied == [6] * 5 + [1]
    assert [e["detail"]["charged"] for e in ledger.audit.entries if e["action"] == "evaluate"] == [6, 0, 0, 6, 6, 1]


def test_negative_bounds_are_refused() -> None:
    with pytest.raises(InvalidRequest, match="cannot be negative"):
        CustodianRole("c", SHARE, quota_per_member=1, ledger=MemoryQuotaLedger(), free_resent_per_member=-1)
    with pytest.raises(InvalidRequest, match="cannot be negative"):
        CustodianRole("c", SHARE, quota_per_member=1, ledger=MemoryQuotaLedger(), kept_answers_per_member=-1)


def test_an_enrolled_member_may_have_its_own_quota(ledger: MemoryQuotaLedger) -> None:
    own = {"bank-b": 3}
    custodian = CustodianRole("c", SHARE, quota_per_member=10, ledger=ledger, quota_of=own.get)
    assert (custodian.epoch_status(A).quota, custodian.epoch_status(B).quota) == (10, 3)
    with pytest.raises(QuotaExceeded, match="0 of 3 used, 4 requested"):
        custodian.evaluate(B, "e1", elements(4))


def test_wrong_epoch_empty_and_oversized_batches_are_refused(custodian: CustodianRole) -> None:
    with pytest.raises(WrongEpoch, match="serves key epoch 'e1', not 'e2'"):
        custodian.evaluate(A, "e2", elements(1))
    with pytest.raises(InvalidRequest, match="empty batch"):
        custodian.evaluate(A, "e1", [])
    one = elements(1)
    with pytest.raises(InvalidRequest, match=f"at most {MAX_EVALUATE_BATCH}"):
        custodian.evaluate(A, "e1", one * (MAX_EVALUATE_BATCH + 1))
    assert custodian.epoch_status(A).used == 0


@pytest.mark.parametrize("role", [Role.ADMIN, Role.CUSTODIAN, Role.COORDINATOR])
def test_only_members_have_elements_evaluated(custodian: CustodianRole, role: Role) -> None:
    with pytest.raises(NotAuthorized):
        custodian.evaluate(Identity("x", role), "e1", elements(1))
    with pytest.raises(NotAuthorized):
        custodian.epoch_status(Identity("x", role))


def test_epoch_status_tells_a_member_its_own_quota(custodian: CustodianRole) -> None:
    custodian.evaluate(A, "e1", elements(3))
    status = custodian.epoch_status(A)
    assert (status.key_epoch, status.suite, status.quota, status.used, status.custodian) == (
        "e1",
        SHARE.suite_id,
        10,
        3,
        "custodian-1",
    )
    assert custodian.epoch_status(B).used == 0


def test_a_quota_below_one_is_refused() -> None:
    with pytest.raises(InvalidRequest, match="at least 1"):
        CustodianRole("c", SHARE, quota_per_member=0, ledger=MemoryQuotaLedger())
