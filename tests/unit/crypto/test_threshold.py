"""Threshold 2HashDH: any τ custodians' folded answers give RFC 9497's OPRF output under the dealt key."""

from __future__ import annotations

import itertools

import pytest

from alliance_psi.crypto import oprf, threshold
from alliance_psi.crypto.batch import blind_batch, finalize_batch
from alliance_psi.crypto.suite import RISTRETTO255_SHA512 as SUITE
from alliance_psi.errors import CryptoError, InvalidRequest, MalformedElement
from tests.helpers.vectors import load_rfc_text

_GROUPS = load_rfc_text("rfc9497/ristretto255-sha512-oprf.txt")
RFC_KEY = bytes.fromhex(_GROUPS[0]["skSm"])
RFC_VECTORS = [g for g in _GROUPS[1:] if "Output" in g]
INPUTS = [b"phone\x00+8613912345678", b"id_card\x00110105194912310021", b"qq\x0048213679"]


def threshold_outputs(key: bytes, tau: int, n: int, subset: tuple[int, ...], inputs: list[bytes]) -> list[bytes]:
    """The member's path: blind once, one folded answer per custodian of ``subset``, add, unblind once."""
    shares = dict(threshold.deal_for_testing(key, threshold=tau, count=n))
    batch = blind_batch(inputs)
    answers = [
        [SUITE.scalar_mult_checked(threshold.fold(shares[i], i, subset), b) for b in batch.blinded_elements]
        for i in subset
    ]
    return finalize_batch(inputs, batch.blind, threshold.combine(answers))


@pytest.mark.parametrize(("tau", "n"), [(1, 1), (1, 3), (2, 3), (3, 3), (3, 5), (4, 7)])
def test_every_subset_gives_the_single_key_oprf(tau: int, n: int) -> None:
    key = SUITE.random_scalar()
    expected = [oprf.evaluate(key, x) for x in INPUTS]
    subsets = list(itertools.combinations(range(1, n + 1), tau))
    for subset in subsets[:10]:
        assert threshold_outputs(key, tau, n, subset, INPUTS) == expected, subset


@pytest.mark.parametrize("v", RFC_VECTORS, ids=["vector1", "vector2"])
def test_rfc_vectors_with_one_custodian(v: dict[str, str]) -> None:
    (share,) = threshold.deal_for_testing(RFC_KEY, threshold=1, count=1)
    assert share == (1, RFC_KEY)
    assert threshold.lagrange_coefficient(1, (1,)) == SUITE.scalar_from_int(1)
    blinded = bytes.fromhex(v["BlindedElement"])
    evaluated = threshold.combine([[SUITE.scalar_mult_checked(threshold.fold(RFC_KEY, 1, (1,)), blinded)]])
    assert evaluated == [bytes.fromhex(v["EvaluationElement"])]
    assert oprf.finalize(bytes.fromhex(v["Input"]), bytes.fromhex(v["Blind"]), evaluated[0]) == bytes.fromhex(
        v["Output"]
    )


def test_fewer_than_tau_shares_give_another_output() -> None:
    key = SUITE.random_scalar()
    assert threshold_outputs(key, 2, 3, (1,), INPUTS[:1]) != [oprf.evaluate(key, INPUTS[0])]


def test_lagrange_coefficients_sum_to_one() -> None:
    for subset in [(1, 2), (1, 3), (2, 3), (2, 5, 9), (1, 2, 3, 4)]:
        total = SUITE.scalar_from_int(0)
        for i in subset:
            total = SUITE.scalar_add(total, threshold.lagrange_coefficient(i, subset))
        assert total == SUITE.scalar_from_int(1)


def test_interpolating_commitments_gives_the_public_key() -> None:
    key = SUITE.random_scalar()
    shares = threshold.deal_for_testing(key, threshold=3, count=5)
    points = [(i, SUITE.scalar_mult_base(s)) for i, s in shares]
    assert threshold.interpolate_elements(points[1:4], 0) == SUITE.scalar_mult_base(key)
    assert threshold.interpolate_elements(points[:3], 5) == points[4][1]


@pytest.mark.parametrize(
    ("subset", "own", "reason"),
    [
        ((1, 1), 1, "named twice"),
        ((2, 3), 1, "does not name this custodian"),
        ((1, 4), 1, "out of range"),
        ((0, 1), 1, "out of range"),
        ((1,), 1, "threshold is 2"),
        ((1, 2, 3), 1, "threshold is 2"),
    ],
)
def test_bad_subsets_are_refused(subset: tuple[int, ...], own: int, reason: str) -> None:
    with pytest.raises(InvalidRequest, match=reason):
        threshold.check_subset(subset, threshold=2, count=3, own=own)


def test_good_subset() -> None:
    assert threshold.check_subset([3, 1], threshold=2, count=3, own=1) == (3, 1)


def test_combine_refuses_unequal_answers_and_identity_sums() -> None:
    element = SUITE.scalar_mult_base(SUITE.random_scalar())
    minus = SUITE.scalar_mult(SUITE.scalar_sub(SUITE.scalar_from_int(0), SUITE.scalar_from_int(1)), element)
    with pytest.raises(MalformedElement, match="different lengths"):
        threshold.combine([[element], [element, element]])
    with pytest.raises(MalformedElement, match="identity"):
        threshold.combine([[element], [minus]])


@pytest.mark.parametrize(("tau", "n"), [(0, 3), (4, 3), (2, 65)])
def test_dealer_refuses_impossible_thresholds(tau: int, n: int) -> None:
    with pytest.raises(CryptoError):
        threshold.deal_for_testing(SUITE.random_scalar(), threshold=tau, count=n)
