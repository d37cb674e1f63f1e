"""Threshold 2HashDH (TOPPSS, Jarecki, Kiayias, Krawczyk and Xu, 2017) over an RFC 9497 suite.

The epoch key ``k`` is Shamir-shared: custodian ``i`` (1 to ``n``) holds ``k_i = f(i)`` of a random
polynomial ``f`` of degree ``τ − 1`` with ``f(0) = k``. For any subset ``S`` of ``τ`` custodians,
``k = Σ_{i∈S} λ_i·k_i`` with the Lagrange coefficients at zero ``λ_i = Π_{j∈S, j≠i} j / (j − i)``.

The member blinds once (``B = r·H(x)``) and sends the same batch to the ``τ`` custodians of ``S``;
custodian ``i`` returns ``λ_i·k_i·B`` (``fold``: the coefficient is folded into the scalar, so one
scalar multiplication per element); the member adds the ``τ`` answers (``combine``), giving
``k·B``, and unblinds once. The output is RFC 9497's OPRF output under ``k``: with ``τ = n = 1``,
``λ_1 = 1`` and ``k_1 = k``.

The Lagrange coefficients are computed here over libsodium's scalar arithmetic (modulo the group
order): no maintained Python library offers Shamir sharing over the ristretto255 scalar field
(the ones on PyPI share over their own prime fields or bytes), and the formula is five lines.
Indexes are public small integers, so nothing here needs to be constant time except the shares
themselves, which only pass through libsodium.

``deal_for_testing`` is a trusted dealer: whoever runs it knows the whole key. For tests and the
demo only; an alliance generates its shares with the custodians' distributed key generation.
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence

from alliance_psi.crypto.suite import RISTRETTO255_SHA512, Suite
from alliance_psi.errors import CryptoError, InvalidRequest, MalformedElement

__all__ = [
    "MAX_CUSTODIANS",
    "check_subset",
    "combine",
    "deal_for_testing",
    "fold",
    "interpolate_elements",
    "lagrange_coefficient",
    "polynomial_at",
]

MAX_CUSTODIANS = 64
"""The most custodians an epoch may have (indexes 1 to 64): a bound on every subset a peer names."""


def check_subset(subset: Sequence[int], *, threshold: int, count: int, own: int | None = None) -> tuple[int, ...]:
    """``subset`` as a tuple, if it names ``threshold`` distinct custodians among 1..``count``.

    ``own`` (a custodian checking a member's request) must be one of them.

    Raises:
        InvalidRequest: wrong size, an index repeated or out of 1..``count``, or ``own`` missing;
            the message names the index.
    """
    indexes = tuple(subset)
    if len(indexes) != threshold:
        raise InvalidRequest(f"the subset names {len(indexes)} custodians; the threshold is {threshold}")
    seen: set[int] = set()
    for index in indexes:
        if not 1 <= index <= count:
            raise InvalidRequest(f"custodian index {index} is out of range 1..{count}")
        if index in seen:
            raise InvalidRequest(f"custodian index {index} is named twice in the subset")
        seen.add(index)
    if own is not None and own not in seen:
        raise InvalidRequest(f"the subset {list(indexes)} does not name this custodian (index {own})")
    return indexes


def lagrange_coefficient(index: int, subset: Sequence[int], *, suite: Suite = RISTRETTO255_SHA512) -> bytes:
    """``λ_index = Π_{j∈subset, j≠index} j / (j − index)`` modulo the group order, as a scalar.

    ``subset`` holds distinct positive indexes including ``index`` (``check_subset``); the
    coefficient is never zero for such a subset.
    """
    if index not in subset or len(set(subset)) != len(subset) or min(subset) < 1:
        raise CryptoError(f"no Lagrange coefficient for {index} in {list(subset)}")
    return _lagrange_at(index, subset, 0, suite)


def _lagrange_at(index: int, indexes: Sequence[int], at: int, suite: Suite) -> bytes:
    """``Π_{j∈indexes, j≠index} (at − j) / (index − j)``: the weight of the point at ``index`` in
    the value at ``at`` (with ``at = 0``, ``Π j / (j − index)``). ``indexes`` are distinct."""
    numerator = denominator = suite.scalar_from_int(1)
    for other in indexes:
        if other != index:
            numerator = suite.scalar_mul(numerator, suite.scalar_from_int(at - other))
            denominator = suite.scalar_mul(denominator, suite.scalar_from_int(index - other))
    return suite.scalar_mul(numerator, suite.scalar_inverse(denominator))


def fold(share: bytes, index: int, subset: Sequence[int], *, suite: Suite = RISTRETTO255_SHA512) -> bytes:
    """``λ_index · k_index``: the scalar a custodian applies for ``subset`` (secret, like the share)."""
    return suite.scalar_mul(lagrange_coefficient(index, subset, suite=suite), share)


def combine(answers: Sequence[Sequence[bytes]], *, suite: Suite = RISTRETTO255_SHA512) -> list[bytes]:
    """Element-wise sums of the custodians' folded answers: ``Σ_i λ_i·k_i·B = k·B`` per element.

    Each answer is one custodian's list, in the batch's order; every element must already be
    checked (``deserialize_element``), as the member does on receipt.

    Raises:
        MalformedElement: the lists differ in length, or a sum is the identity (an honest set of
            custodians never gives one, since ``B`` is not the identity and ``k`` is not zero).
    """
    if not answers:
        raise CryptoError("no answers to combine")
    length = len(answers[0])
    if any(len(answer) != length for answer in answers):
        raise MalformedElement("custodians answered batches of different lengths")
    add, identity = suite.element_add, bytes(suite.Ne)
    sums = list(answers[0])
    for answer in answers[1:]:
        sums = [add(a, b) for a, b in zip(sums, answer, strict=True)]
    if any(total == identity for total in sums):
        raise MalformedElement("the combined evaluation is the identity element")
    return sums


def polynomial_at(coefficients: Sequence[bytes], x: int, *, suite: Suite = RISTRETTO255_SHA512) -> bytes:
    """``f(x) = Σ_j a_j·x^j`` for scalar coefficients ``a_0..a_{τ−1}`` (Horner's rule), as a scalar."""
    point = suite.scalar_from_int(x)
    value = suite.scalar_from_int(0)
    for coefficient in reversed(coefficients):
        value = suite.scalar_add(suite.scalar_mul(value, point), coefficient)
    return value


def interpolate_elements(
    points: Sequence[tuple[int, bytes]], at_index: int = 0, *, suite: Suite = RISTRETTO255_SHA512
) -> bytes:
    """``F(at_index)`` for the degree ``len(points) − 1`` polynomial "in the exponent" through ``points``.

    ``points`` are ``(index, F(index))`` with checked elements; with ``at_index = 0`` and
    ``F(i) = K_i = k_i·G`` this gives ``K = k·G``. Used to check that public commitments agree.
    Returns the serialized sum, which may be the identity (all zeros).
    """
    indexes = [index for index, _ in points]
    if len(set(indexes)) != len(indexes) or at_index in indexes:
        raise CryptoError("interpolation needs distinct indexes other than the point asked for")
    total = bytes(suite.Ne)
    for index, element in points:
        total = suite.element_add(total, suite.scalar_mult(_lagrange_at(index, indexes, at_index, suite), element))
    return total


def deal_for_testing(
    key: bytes, *, threshold: int, count: int, suite: Suite = RISTRETTO255_SHA512
) -> list[tuple[int, bytes]]:
    """Shamir shares ``(i, f(i))`` for ``i`` in 1..``count`` of ``key`` with a random polynomial.

    WARNING: a trusted dealer, for tests and the demo. Whoever calls it knows the whole key and
    can evaluate the PRF alone, so it can enumerate low-entropy identifiers.

    Raises:
        CryptoError: ``threshold`` not in 1..``count`` or ``count`` above ``MAX_CUSTODIANS``.
    """
    if not 1 <= threshold <= count <= MAX_CUSTODIANS:
        raise CryptoError(f"need 1 <= threshold <= custodians <= {MAX_CUSTODIANS}, got {threshold} of {count}")
    coefficients = [key] + [suite.random_scalar() for _ in range(threshold - 1)]
    shares = [(index, polynomial_at(coefficients, index, suite=suite)) for index in range(1, count + 1)]
    if any(hmac.compare_digest(share, bytes(suite.Ns)) for _, share in shares):  # Secrets: constant time.
        # Probability about count / 2^252; drawing again is simpler than reasoning about a zero share.
        return deal_for_testing(key, threshold=threshold, count=count, suite=suite)
    return shares
