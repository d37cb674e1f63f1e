"""Batch forms of the OPRF steps, for millions of identifiers.

A member blinds a whole batch with one secret scalar ``r`` (the design allows a fresh or
per-batch blind) and unblinds it with one inversion. Under DDH the custodians still learn
nothing about the inputs, but equal inputs in one batch would give equal blinded elements, so
a batch must hold distinct inputs: ``blind_batch`` refuses duplicates.

A member node derives ``r`` from its secret blind key, the key epoch and the batch's inputs
(``derive_batch_blind``), as RFC 6979 derives signature nonces: to anyone without the key ``r``
is as good as fresh, and a batch sent again (a retry, a join resumed after a crash) is
byte-identical, so that the custodians do not charge it twice. The price, written down in
``docs/design.md``: a custodian sees that a batch is one the same member sent before (same
inputs, same order, same epoch); batches differing in one input share nothing.

The functions are plain module-level callables so that ``parallel.ProcessMap`` can run them
in worker processes.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass

from alliance_psi.crypto.derive import derive
from alliance_psi.crypto.oprf import finalize_unblinded
from alliance_psi.crypto.suite import RISTRETTO255_SHA512, Suite, get_suite
from alliance_psi.errors import CryptoError, MalformedElement

BLIND_KEY_BYTES = 32
_BLIND_DST = b"alliance-psi/v1 batch blind"

__all__ = [
    "BLIND_KEY_BYTES",
    "BlindedBatch",
    "DerivedBatch",
    "blind_batch",
    "derive_batch_blind",
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


def derive_batch_blind(
    blind_key: bytes, context: bytes, inputs: Sequence[bytes], *, suite_id: str = RISTRETTO255_SHA512.identifier
) -> bytes:
    """The blind of a batch: a scalar determined by the node's secret key, ``context`` and the inputs.

    ``r = HashToScalar(HMAC-SHA512(blind_key, I2OSP(len(context), 2) || context || I2OSP(n, 4)
    || (I2OSP(len(x), 2) || x) for each input x), DST)``. HMAC is a PRF, so without
    ``blind_key`` (never leaves the node) ``r`` cannot be told from a uniformly random scalar.

    Raises:
        ValueError: ``blind_key`` is not 32 bytes, or ``context`` or an input is too long.
    """
    if len(blind_key) != BLIND_KEY_BYTES:
        raise ValueError(f"a blind key is {BLIND_KEY_BYTES} bytes")
    if len(context) > 0xFFFF:
        raise ValueError("blind context too long")
    mac = hmac.new(
        blind_key, len(context).to_bytes(2, "big") + context + len(inputs).to_bytes(4, "big"), hashlib.sha512
    )
    for x in inputs:
        if len(x) > 0xFFFF:
            raise ValueError("an OPRF input is at most 65535 bytes")
        mac.update(len(x).to_bytes(2, "big") + x)
    suite = get_suite(suite_id)
    return suite.deserialize_scalar(suite.hash_to_scalar(mac.digest(), _BLIND_DST))


def blind_batch(
    inputs: Sequence[bytes],
    blind: bytes | None = None,
    *,
    blind_key: bytes | None = None,
    context: bytes = b"",
    suite_id: str = RISTRETTO255_SHA512.identifier,
) -> BlindedBatch:
    """Blind every input with one scalar: ``blind`` if given, else derived from ``blind_key`` and
    ``context`` (``derive_batch_blind``) if given, else fresh. Raises ``ValueError`` on duplicates."""
    if len(set(inputs)) != len(inputs):
        raise ValueError("a batch must not hold the same input twice (equal blinded elements would show it)")
    suite = get_suite(suite_id)
    if blind is None and blind_key is not None:
        blind = derive_batch_blind(blind_key, context, inputs, suite_id=suite_id)
    r = suite.random_scalar() if blind is None else suite.deserialize_scalar(blind)
    h2g = suite.hash_to_group
    try:
        blinded = tuple(suite.scalar_mult_batch(r, [h2g(x) for x in inputs]))
    except MalformedElement:
        raise CryptoError("an input hashes to the identity element") from None
    return BlindedBatch(blind=r, blinded_elements=blinded)


def _unblind(suite: Suite, blind: bytes, evaluated_elements: Sequence[bytes], count: int) -> list[bytes]:
    if len(evaluated_elements) != count:
        raise MalformedElement(f"expected {count} evaluated elements, got {len(evaluated_elements)}")
    # N = G.ScalarInverse(blind) * evaluatedElement, once per element with one inversion.
    return suite.scalar_mult_batch(suite.scalar_inverse(blind), evaluated_elements)


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
