"""The GJKR distributed key generation, run in memory with a perfect broadcast channel.

``run`` plays every step for all participants; a test's ``Cheat`` changes what one dealer sends,
broadcasts or answers, and the test checks who is disqualified and that the honest custodians'
shares still interpolate to the published key.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from alliance_psi.crypto import oprf
from alliance_psi.crypto.dkg import (
    Disqualified,
    DkgParameters,
    DkgResult,
    Fault,
    Participant,
    decode_commitments,
    judge_extraction,
    outcome,
    qualify,
    reconstruct,
)
from alliance_psi.crypto.pedersen import (
    ORDER,
    Commitments,
    PedersenShare,
    Polynomial,
    encode_scalar,
    feldman_commitments,
    mul_base,
    pedersen_commitments,
)
from alliance_psi.crypto.threshold import combine, fold
from alliance_psi.errors import CryptoError, InvalidShare, MalformedElement
from tests.helpers.shamir import the_key


@dataclass
class Cheat:
    """What one dealer does wrong; each hook gets the honest value and returns what is sent."""

    dealer: int
    share_to: Callable[[int, PedersenShare], PedersenShare | None] = lambda j, s: s
    answer: Callable[[int, PedersenShare], PedersenShare | None] = lambda j, s: s
    extraction: Callable[[Commitments], Commitments | None] = lambda a: a
    deals: bool = True
    false_extraction_complaint: dict[int, PedersenShare] = field(default_factory=dict)


def bump(share: PedersenShare) -> PedersenShare:
    return PedersenShare((share.value + 1) % ORDER, share.blinding)


def run(
    params: DkgParameters,
    *,
    cheat: Cheat | None = None,
    polynomials: dict[int, tuple[Polynomial, Polynomial]] | None = None,
) -> dict[int, DkgResult]:
    """Every step for every participant; returns the honest participants' results."""
    polynomials = polynomials or {}
    people = {i: Participant(params, i, polynomials=polynomials.get(i)) for i in params.indices}
    cheater = cheat.dealer if cheat else None
    dealings = {i: p.deal() for i, p in people.items()}
    commitments: dict[int, Commitments | None] = {i: d.commitments for i, d in dealings.items()}
    if cheat and not cheat.deals:
        commitments[cheat.dealer] = None
    for j, receiver in people.items():
        for i, dealing in dealings.items():
            share: PedersenShare | None = dealing.shares[j]
            if i == cheater and i != j and cheat is not None and share is not None:
                share = cheat.share_to(j, share)
            receiver.receive(i, commitments[i], share)
    complaints = {j: p.complaints for j, p in people.items()}
    answers: dict[int, dict[int, PedersenShare]] = {}
    for i, person in people.items():
        complainers = [j for j, against in complaints.items() if i in against]
        given = person.answer(complainers)
        if i == cheater and cheat is not None:
            given = {j: a for j, s in given.items() if (a := cheat.answer(j, s)) is not None}
        answers[i] = given
    disqualified = qualify(params, commitments, complaints, answers)
    qualified = [i for i in params.indices if i not in disqualified]
    for p in people.values():
        p.adopt(disqualified, answers)
    extraction: dict[int, Commitments | None] = {i: people[i].extraction() for i in qualified}
    if cheater in extraction and cheat is not None:
        extraction[cheater] = cheat.extraction(extraction[cheater] or ())
    evidence = {j: p.check_extraction(extraction) for j, p in people.items()}
    if cheat is not None and cheat.false_extraction_complaint:
        evidence[cheat.dealer] = cheat.false_extraction_complaint
    dealt = {i: c for i, c in commitments.items() if c is not None}
    to_rebuild = judge_extraction(params, qualified, dealt, extraction, evidence)
    coefficients = {i: c for i, c in extraction.items() if c is not None and i not in to_rebuild}
    for dealer in to_rebuild:
        revealed = {j: s for j, p in people.items() if j != dealer for s in [p.reveal([dealer]).get(dealer)] if s}
        coefficients[dealer] = reconstruct(params, dealt[dealer], revealed)
    public = outcome(params, disqualified, coefficients, to_rebuild)
    return {j: p.result(public) for j, p in people.items() if j != cheater}


def assert_consistent(results: dict[int, DkgResult], params: DkgParameters) -> int:
    """Every τ-subset of the shares interpolates to one key k with k·G the published K; returns k."""
    public = next(iter(results.values())).outcome
    assert all(r.outcome == public for r in results.values())
    key = the_key({j: r.share for j, r in results.items()}, params.threshold)
    assert mul_base(key) == public.public_key
    for j, r in results.items():
        assert mul_base(r.share) == public.verification_keys[j]
    return key


KNOWN = {
    1: (Polynomial((3, 1)), Polynomial((101, 102))),
    2: (Polynomial((5, 9)), Polynomial((103, 104))),
    3: (Polynomial((7, 2)), Polynomial((105, 106))),
}


def test_known_polynomials_give_the_sum_of_the_secrets_and_its_shares() -> None:
    params = DkgParameters(threshold=2, participants=3)
    results = run(params, polynomials=KNOWN)
    # k = 3 + 5 + 7; k_j = Σ_i f_i(j) = 15 + 12·j.
    assert assert_consistent(results, params) == 15
    assert {j: r.share for j, r in results.items()} == {1: 27, 2: 39, 3: 51}
    public = results[1].outcome
    assert public.public_key == mul_base(15)
    assert public.verification_keys == {1: mul_base(27), 2: mul_base(39), 3: mul_base(51)}
    assert public.qualified == {1, 2, 3} and not public.disqualified and not public.reconstructed


@pytest.mark.parametrize("threshold, participants", [(1, 2), (2, 2), (2, 3), (3, 3), (3, 5), (4, 7)])
def test_random_runs_agree_on_one_key_that_any_threshold_of_shares_gives(threshold: int, participants: int) -> None:
    params = DkgParameters(threshold=threshold, participants=participants)
    assert_consistent(run(params), params)


def test_the_shares_evaluate_the_oprf_of_the_generated_key_as_threshold_custodians_do() -> None:
    params = DkgParameters(threshold=2, participants=3)
    results = run(params)
    key = encode_scalar(assert_consistent(results, params))
    x = b"phone\x00+8613915274680"
    blinded = oprf.blind(x)
    for subset in itertools.combinations(sorted(results), 2):
        answers = [
            [oprf.blind_evaluate(fold(encode_scalar(results[j].share), j, subset), blinded.blinded_element)]
            for j in subset
        ]
        (combined,) = combine(answers)
        assert oprf.finalize(x, blinded.blind, combined) == oprf.evaluate(key, x)


def test_a_dealer_sending_bad_shares_to_more_than_t_is_disqualified_and_the_rest_complete() -> None:
    params = DkgParameters(threshold=2, participants=3)
    results = run(params, cheat=Cheat(dealer=3, share_to=lambda j, s: bump(s)), polynomials=KNOWN)
    public = results[1].outcome
    assert public.disqualified == {3: Disqualified(Fault.TOO_MANY_COMPLAINTS, frozenset({1, 2}))}
    assert public.qualified == {1, 2}
    assert assert_consistent(results, params) == 3 + 5  # Dealer 3's secret 7 is left out.


def test_a_dealer_that_answers_its_one_complaint_correctly_stays() -> None:
    params = DkgParameters(threshold=2, participants=3)
    cheat = Cheat(dealer=3, share_to=lambda j, s: bump(s) if j == 1 else s)
    results = run(params, cheat=cheat, polynomials=KNOWN)
    assert not results[1].outcome.disqualified
    assert assert_consistent(results, params) == 15


def test_a_dealer_that_answers_with_a_bad_share_is_disqualified() -> None:
    params = DkgParameters(threshold=2, participants=3)
    cheat = Cheat(dealer=3, share_to=lambda j, s: bump(s) if j == 1 else s, answer=lambda j, s: bump(s))
    results = run(params, cheat=cheat, polynomials=KNOWN)
    assert results[2].outcome.disqualified == {3: Disqualified(Fault.BAD_ANSWER, frozenset({1}))}
    assert assert_consistent(results, params) == 8


def test_a_dealer_that_leaves_a_complaint_unanswered_or_sends_nothing_is_disqualified() -> None:
    params = DkgParameters(threshold=2, participants=3)
    cheat = Cheat(dealer=2, share_to=lambda j, s: None if j == 3 else s, answer=lambda j, s: None)
    results = run(params, cheat=cheat, polynomials=KNOWN)
    assert results[1].outcome.disqualified == {2: Disqualified(Fault.UNANSWERED_COMPLAINT, frozenset({3}))}
    assert assert_consistent(results, params) == 10
    results = run(params, cheat=Cheat(dealer=2, deals=False), polynomials=KNOWN)
    assert results[3].outcome.disqualified == {2: Disqualified(Fault.DEALT_NOTHING)}


def test_wrong_public_coefficients_are_replaced_by_the_reconstructed_ones() -> None:
    params = DkgParameters(threshold=2, participants=3)
    # Dealer 3 publishes A_0 = 70·G instead of 7·G, which would shift K; its shares were right.
    cheat = Cheat(dealer=3, extraction=lambda a: (mul_base(70), a[1]))
    results = run(params, cheat=cheat, polynomials=KNOWN)
    public = results[1].outcome
    assert public.reconstructed == {3: frozenset({1, 2})}
    assert public.qualified == {1, 2, 3}
    assert assert_consistent(results, params) == 15


def test_missing_public_coefficients_are_reconstructed() -> None:
    params = DkgParameters(threshold=2, participants=3)
    results = run(params, cheat=Cheat(dealer=1, extraction=lambda a: None), polynomials=KNOWN)
    assert results[2].outcome.reconstructed == {1: frozenset()}
    assert assert_consistent(results, params) == 15


def test_a_false_extraction_complaint_is_ignored() -> None:
    params = DkgParameters(threshold=2, participants=3)
    # Participant 3 "shows" a share from dealer 1 that is not on dealer 1's commitments.
    cheat = Cheat(dealer=3, false_extraction_complaint={1: PedersenShare(1, 1)})
    results = run(params, cheat=cheat, polynomials=KNOWN)
    assert not results[1].outcome.reconstructed
    assert assert_consistent(results, params) == 15


def test_reconstruction_needs_threshold_valid_shares() -> None:
    params = DkgParameters(threshold=2, participants=3)
    f, fb = KNOWN[1]
    commitments = pedersen_commitments(f, fb)
    assert reconstruct(params, commitments, {2: PedersenShare(f(2), fb(2)), 3: PedersenShare(f(3), fb(3))}) == (
        feldman_commitments(f)
    )
    with pytest.raises(InvalidShare, match="only 1 revealed shares"):
        reconstruct(params, commitments, {2: PedersenShare(f(2), fb(2)), 3: PedersenShare(f(3), fb(3) + 1)})


def test_parameters_and_commitments_from_peers_are_checked() -> None:
    with pytest.raises(ValueError, match="2 to 64 custodians"):
        DkgParameters(threshold=1, participants=1)
    with pytest.raises(ValueError, match="threshold must be 1 to 3"):
        DkgParameters(threshold=4, participants=3)
    params = DkgParameters(threshold=2, participants=3)
    with pytest.raises(MalformedElement, match="expected 2 commitments"):
        decode_commitments([mul_base(1)], params)
    with pytest.raises(MalformedElement, match="identity"):
        decode_commitments([mul_base(1), bytes(32)], params)
    with pytest.raises(ValueError, match="degree τ−1 = 1"):
        Participant(params, 1, polynomials=(Polynomial((1,)), Polynomial((1,))))
    with pytest.raises(ValueError, match="index 4"):
        Participant(params, 4)


def test_everyone_disqualified_gives_no_key() -> None:
    params = DkgParameters(threshold=1, participants=2)
    with pytest.raises(CryptoError, match="every dealer"):
        outcome(params, {1: Disqualified(Fault.DEALT_NOTHING), 2: Disqualified(Fault.DEALT_NOTHING)}, {}, {})


def test_equivocation_found_by_the_broadcast_layer_disqualifies() -> None:
    params = DkgParameters(threshold=2, participants=3)
    dealings = {i: Participant(params, i).deal() for i in params.indices}
    found = qualify(params, {i: d.commitments for i, d in dealings.items()}, {}, {}, equivocated=[2])
    assert found == {2: Disqualified(Fault.EQUIVOCATED)}
