"""Interpolating Shamir shares at zero in the tests, with ``crypto.threshold``'s coefficients."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence

from alliance_psi.crypto.pedersen import ORDER
from alliance_psi.crypto.threshold import lagrange_coefficient


def lagrange_at_zero(index: int, subset: Sequence[int]) -> int:
    """``crypto.threshold``'s Lagrange coefficient at zero, as an int."""
    return int.from_bytes(lagrange_coefficient(index, list(subset)), "little")


def the_key(shares: Mapping[int, int], threshold: int) -> int:
    """The secret every ``threshold``-subset of ``shares`` ({index: share}) interpolates to; the
    caller's test fails (AssertionError) if two subsets disagree."""
    keys = {
        sum(lagrange_at_zero(i, subset) * shares[i] for i in subset) % ORDER
        for subset in itertools.combinations(sorted(shares), threshold)
    }
    assert len(keys) == 1, f"{len(keys)} different keys from the {threshold}-subsets"
    (key,) = keys
    return key
