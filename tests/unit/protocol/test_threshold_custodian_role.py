"""A threshold custodian's rules: Lagrange folding for the named subset, proofs, and the subsets it refuses."""

from __future__ import annotations

import pytest

from alliance_psi.crypto import dleq, oprf
from alliance_psi.crypto.batch import blind_batch, finalize_batch
from alliance_psi.crypto.key_shares import KeyShare
from alliance_psi.crypto.suite import RISTRETTO255_SHA512 as SUITE
from alliance_psi.crypto.threshold import combine, lagrange_coefficient
from alliance_psi.crypto.threshold_keys import deal_epoch_for_testing
from alliance_psi.errors import InvalidProof, InvalidRequest, QuotaExceeded
from alliance_psi.protocol.custodian import CustodianRole
from alliance_psi.protocol.model import Identity, Role
from tests.helpers.memory_ports import MemoryQuotaLedger

A = Identity("bank-a", Role.MEMBER)
NAMES = ["custodian-1", "custodian-2", "custodian-3"]
KEY = SUITE.random_scalar()
SHARES, PUBLIC = deal_epoch_for_testing("e1", NAMES, threshold=2, key=KEY)
INPUTS = [b"phone\x00+8613915274680", b"qq\x0048213679", b"bank_card\x006222021234567890128"]
G = SUITE.scalar_mult_base(SUITE.scalar_from_int(1))


def custodians(quota: int = 100) -> list[CustodianRole]:
    return [
        CustodianRole(name, share, quota_per_member=quota, ledger=MemoryQuotaLedger())
        for name, share in zip(NAMES, SHARES, strict=True)
    ]


@pytest.mark.parametrize("subset", [(1, 2), (1, 3), (2, 3), (3, 1)])
def test_any_two_custodians_give_the_single_key_oprf(subset: tuple[int, int]) -> None:
    roles = custodians()
    batch = blind_batch(INPUTS)
    answers = [roles[i - 1].evaluate(A, "e1", batch.blinded_elements, subset=subset).elements for i in subset]
    assert finalize_batch(INPUTS, batch.blind, combine(answers)) == [oprf.evaluate(KEY, x) for x in INPUTS]


def test_proof_verifies_against_the_folded_public_commitment() -> None:
    roles = custodians()
    batch = blind_batch(INPUTS)
    evaluation = roles[1].evaluate(A, "e1", batch.blinded_elements, subset=(2, 3), prove=True)
    assert len(evaluation.proof) == dleq.PROOF_BYTES
    folded_commitment = SUITE.scalar_mult(lagrange_coefficient(2, (2, 3)), PUBLIC.by_index(2).commitment)
    dleq.verify_proof(G, folded_commitment, list(batch.blinded_elements), evaluation.elements, evaluation.proof)
    # Against another custodian's commitment, or another subset's coefficient, it fails.
    for wrong in (
        SUITE.scalar_mult(lagrange_coefficient(2, (2, 3)), PUBLIC.by_index(3).commitment),
        SUITE.scalar_mult(lagrange_coefficient(2, (1, 2)), PUBLIC.by_index(2).commitment),
    ):
        with pytest.raises(InvalidProof):
            dleq.verify_proof(G, wrong, list(batch.blinded_elements), evaluation.elements, evaluation.proof)
    assert roles[1].evaluate(A, "e1", batch.blinded_elements, subset=(2, 3)).proof == b""


@pytest.mark.parametrize(
    ("subset", "reason"),
    [
        ((), "name the subset of custodians"),
        ((1, 1), "named twice"),
        ((1, 3), "does not name this custodian .index 2."),
        ((2, 4), "out of range 1..3"),
        ((2, 0), "out of range 1..3"),
        ((2,), "threshold is 2"),
        ((1, 2, 3), "threshold is 2"),
    ],
)
def test_bad_subsets_are_refused_before_any_charge(subset: tuple[int, ...], reason: str) -> None:
    ledger = MemoryQuotaLedger()
    role = CustodianRole("custodian-2", SHARES[1], quota_per_member=10, ledger=ledger)
    with pytest.raises(InvalidRequest, match=reason):
        role.evaluate(A, "e1", blind_batch(INPUTS).blinded_elements, subset=subset)
    assert ledger.charges == 0


def test_a_chain_custodian_refuses_a_subset_or_a_proof() -> None:
    ledger = MemoryQuotaLedger()
    role = CustodianRole("custodian-1", KeyShare.generate("e1"), quota_per_member=10, ledger=ledger)
    for options in ({"subset": (1, 2)}, {"prove": True}):
        with pytest.raises(InvalidRequest, match="holds a chain share"):
            role.evaluate(A, "e1", blind_batch(INPUTS).blinded_elements, **options)  # type: ignore[arg-type]
    assert ledger.charges == 0


def test_the_same_batch_for_another_subset_is_not_charged_twice() -> None:
    role = custodians(quota=4)[0]
    batch = blind_batch(INPUTS).blinded_elements
    first = role.evaluate(A, "e1", batch, subset=(1, 2))
    second = role.evaluate(A, "e1", batch, subset=(1, 3))
    proved = role.evaluate(A, "e1", batch, subset=(1, 3), prove=True)
    assert (first.used, second.used, proved.used) == (3, 3, 3)
    assert first.elements != second.elements and second.elements == proved.elements
    # Each answer is kept under its own subset: asked again, each comes back as it was.
    assert role.evaluate(A, "e1", batch, subset=(1, 2)) == first
    assert role.evaluate(A, "e1", batch, subset=(1, 3), prove=True) == proved
    with pytest.raises(QuotaExceeded):
        role.evaluate(A, "e1", blind_batch(INPUTS[:2]).blinded_elements, subset=(1, 2))


def test_epoch_status_names_the_share() -> None:
    status = custodians()[2].epoch_status(A)
    assert (status.index, status.threshold, status.custodian_count) == (3, 2, 3)
    assert status.commitment == PUBLIC.by_index(3).commitment
