"""Batch forms of the OPRF steps, for millions of identifiers.

A member blinds a whole batch with one secret scalar ``r`` (the design allows a fresh or
per-batch blind) and unblinds it with one inversion. Under DDH the custodians still learn
nothing about the inputs, but equal inputs in one batch would give equal blinded elements, so
a batch must hold distinct inputs: ``blind_batch`` refuses duplicates.

The functions are plain module-level callables so that ``parallel.ProcessMap`` can run them
in worker processes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from alliance_psi.crypto.derive import derive
from alliance_psi.crypto.oprf import finalize_unblinded
from alliance_psi.crypto.suite import RISTRETTO255_SHA512, Suite, get_suite
from alliance_psi.errors import CryptoError, MalformedElement

__all__ = [
    "BlindedBatch",
    "DerivedBatch",
    "blind_batch",
    "finalize_and_derive_batch",
    "finalize_batch",
]


@dataclass(frozen=True, slots=True)
class BlindedBatch:
    """What ``blind_batch`` returns: the batch's secret blind and the elements to send."""

    blind: bytes
    """The state to keep on the member node. Never send it."""
    blinded_elements: tuple[bytes, ...]
    """The message to send to the first custodian, in input order."""

    def __repr__(self) -> str:
        return f"BlindedBatch(blind=<secret>, blinded_elements=<{len(self.blinded_elements)}>)"


@dataclass(frozen=True, slots=True)
class DerivedBatch:
    """Match tokens and label keys for a batch, in input order. Label keys never leave the node."""

    match_tokens: tuple[bytes, ...]
    label_keys: tuple[bytes, ...]

    def __repr__(self) -> str:
        return f"DerivedBatch(<{len(self.match_tokens)} tokens>, label_keys=<secret>)"


def blind_batch(
    inputs: Sequence[bytes], blind: bytes | None = None, *, suite_id: str = RISTRETTO255_SHA512.identifier
) -> BlindedBatch:
    """Blind every input with one scalar (fresh unless given). Raises ``ValueError`` on duplicates."""
    if len(set(inputs)) != len(inputs):
        raise ValueError("a batch must not hold the same input twice (equal blinded elements would show it)")
    suite = get_suite(suite_id)
    r = suite.random_scalar() if blind is None else suite.deserialize_scalar(blind)
    h2g, mult = suite.hash_to_group, suite.scalar_mult
    try:
        blinded = tuple(mult(r, h2g(x)) for x in inputs)
    except MalformedElement:
        raise CryptoError("an input hashes to the identity element") from None
    return BlindedBatch(blind=r, blinded_elements=blinded)


def _unblind(suite: Suite, blind: bytes, evaluated_elements: Sequence[bytes], count: int) -> list[bytes]:
    if len(evaluated_elements) != count:
        raise MalformedElement(f"expected {count} evaluated elements, got {len(evaluated_elements)}")
    r_inv = suite.scalar_inverse(blind)
    mult = suite.scalar_mult_checked
    # N = G.ScalarInverse(blind) * evaluatedElement, once per element with one inversion.
    return [mult(r_inv, e) for e in evaluated_elements]


def finalize_batch(
    inputs: Sequence[bytes],
    blind: bytes,
    evaluated_elements: Sequence[bytes],
    *,
    suite_id: str = RISTRETTO255_SHA512.identifier,
) -> list[bytes]:
    """RFC 9497 ``Finalize`` for a batch blinded with one scalar; returns the OPRF outputs.

    Raises ``MalformedElement`` if the custodian returned the wrong count or a bad element.
    """
    suite = get_suite(suite_id)
    unblinded = _unblind(suite, blind, evaluated_elements, len(inputs))
    return [finalize_unblinded(x, n, suite=suite) for x, n in zip(inputs, unblinded, strict=False)]


def finalize_and_derive_batch(
    inputs: Sequence[bytes],
    blind: bytes,
    evaluated_elements: Sequence[bytes],
    *,
    suite_id: str = RISTRETTO255_SHA512.identifier,
) -> DerivedBatch:
    """``finalize_batch`` then ``derive`` per output, so the OPRF outputs never leave the worker."""
    derived = [derive(y) for y in finalize_batch(inputs, blind, evaluated_elements, suite_id=suite_id)]
    return DerivedBatch(
        match_tokens=tuple(d.match_token for d in derived),
        label_keys=tuple(d.label_key for d in derived),
    )
