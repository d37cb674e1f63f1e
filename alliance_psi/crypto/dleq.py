"""RFC 9497 section 2.2: batched discrete-logarithm-equivalence (DLEQ) proofs.

``generate_proof(k, A, B, C, D)`` proves ``k·A == B`` and ``k·C[i] == D[i]`` for every ``i`` with one
constant-size proof ``c || s`` (two scalars); ``verify_proof`` checks it and raises ``InvalidProof``
otherwise (never a boolean). The code follows the RFC's pseudo-code line by line.

A threshold custodian proves a batch with ``A = G``, ``B = λ_i·K_i`` and secret ``λ_i·k_i``: the
folded scalar it applied (``crypto.threshold.fold``) against its public commitment ``K_i`` scaled
by the public Lagrange coefficient. The member computes ``λ_i·K_i`` once per batch, so checking
the folded answers costs it nothing per element beyond the proof itself.

Proofs use the VOPRF mode's context string (``"OPRFV1-" || 0x01 || "-" || identifier``), as RFC
9497 does, so the RFC's VOPRF test vectors check this code; the outputs themselves stay OPRF
mode (the proof is about the group elements, not how they were hashed).

Cost: ``generate_proof`` is ``m + 2`` scalar multiplications for ``m`` elements (the server's
``ComputeCompositesFast``), ``verify_proof`` ``2m + 4`` (``ComputeComposites``).
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence

from alliance_psi.crypto.suite import RISTRETTO255_SHA512, STR_HASH_TO_SCALAR, STR_OPRF, Suite
from alliance_psi.errors import CryptoError, InvalidProof, MalformedElement

__all__ = ["MODE_VOPRF", "PROOF_BYTES", "compute_composites", "generate_proof", "verify_proof", "voprf_context"]

MODE_VOPRF = 0x01
PROOF_BYTES = 2 * RISTRETTO255_SHA512.Ns
STR_SEED = b"Seed-"
STR_COMPOSITE = b"Composite"
STR_CHALLENGE = b"Challenge"
_MAX_BATCH = 2**16  # The composite transcript carries I2OSP(i, 2).


def voprf_context(suite: Suite = RISTRETTO255_SHA512) -> bytes:
    """``contextString`` of the VOPRF mode: ``"OPRFV1-" || I2OSP(0x01, 1) || "-" || identifier``."""
    return STR_OPRF + bytes([MODE_VOPRF]) + b"-" + suite.identifier.encode("ascii")


def _framed(*parts: bytes) -> bytes:
    # I2OSP(len(x), 2) || x for each part.
    return b"".join(len(part).to_bytes(2, "big") + part for part in parts)


def _composite_scalars(suite: Suite, context: bytes, B: bytes, C: Sequence[bytes], D: Sequence[bytes]) -> list[bytes]:
    if not C or len(C) != len(D) or len(C) > _MAX_BATCH:
        raise CryptoError(f"a DLEQ proof covers 1 to {_MAX_BATCH} pairs, of equal lists")
    # seedDST = "Seed-" || contextString
    # seedTranscript = I2OSP(len(Bm), 2) || Bm || I2OSP(len(seedDST), 2) || seedDST
    # seed = Hash(seedTranscript)
    seed = suite.hash(_framed(B, STR_SEED + context))
    prefix = _framed(seed)
    dst = STR_HASH_TO_SCALAR + context
    # compositeTranscript = I2OSP(len(seed), 2) || seed || I2OSP(i, 2) ||
    #   I2OSP(len(Ci), 2) || Ci || I2OSP(len(Di), 2) || Di || "Composite"
    # di = G.HashToScalar(compositeTranscript)
    return [
        suite.hash_to_scalar(prefix + i.to_bytes(2, "big") + _framed(c, d) + STR_COMPOSITE, dst)
        for i, (c, d) in enumerate(zip(C, D, strict=True))
    ]


def _weighted_sum(suite: Suite, scalars: Sequence[bytes], elements: Sequence[bytes]) -> bytes:
    # M = di * C[i] + M, starting from G.Identity().
    total = bytes(suite.Ne)
    for d, element in zip(scalars, elements, strict=True):
        total = suite.element_add(total, suite.scalar_mult(d, element))
    return total


def compute_composites(
    B: bytes, C: Sequence[bytes], D: Sequence[bytes], *, k: bytes | None = None, context: bytes, suite: Suite
) -> tuple[bytes, bytes]:
    """RFC 9497 ``ComputeComposites(B, C, D)``, or ``ComputeCompositesFast(k, B, C, D)`` with ``k``.

    Every element must already be checked (``deserialize_element``).
    """
    scalars = _composite_scalars(suite, context, B, C, D)
    M = _weighted_sum(suite, scalars, C)
    # Z = k * M (fast, for the prover) or Z = Σ di * D[i] (for the verifier).
    Z = _weighted_sum(suite, scalars, D) if k is None else suite.scalar_mult(k, M)
    return M, Z


def _challenge(suite: Suite, context: bytes, B: bytes, M: bytes, Z: bytes, t2: bytes, t3: bytes) -> bytes:
    # challengeTranscript = I2OSP(len(Bm), 2) || Bm || ... || I2OSP(len(a3), 2) || a3 || "Challenge"
    # c = G.HashToScalar(challengeTranscript)
    return suite.hash_to_scalar(_framed(B, M, Z, t2, t3) + STR_CHALLENGE, STR_HASH_TO_SCALAR + context)


def generate_proof(
    k: bytes,
    A: bytes,
    B: bytes,
    C: Sequence[bytes],
    D: Sequence[bytes],
    *,
    suite: Suite = RISTRETTO255_SHA512,
    context: bytes | None = None,
    r: bytes | None = None,
) -> bytes:
    """RFC 9497 ``GenerateProof(k, A, B, C, D)``: the proof ``c || s`` that ``k·A == B`` and ``k·C == D``.

    ``r`` is the proof's random scalar, fresh from the CSPRNG unless a test vector fixes it.
    ``context`` defaults to the suite's VOPRF context string.

    Raises:
        CryptoError: empty or unequal lists, or (negligibly) a composite that is the identity.
    """
    context = voprf_context(suite) if context is None else context
    try:
        # (M, Z) = ComputeCompositesFast(k, B, C, D)
        M, Z = compute_composites(B, C, D, k=k, context=context, suite=suite)
        # r = G.RandomScalar(); t2 = r * A; t3 = r * M
        r = suite.random_scalar() if r is None else suite.deserialize_scalar(r)
        t2, t3 = suite.scalar_mult(r, A), suite.scalar_mult(r, M)
    except MalformedElement as exc:
        raise CryptoError(f"cannot prove this batch: {exc}") from None
    c = _challenge(suite, context, B, M, Z, t2, t3)
    # s = r - c * k
    s = suite.scalar_sub(r, suite.scalar_mul(c, k))
    return c + s


def verify_proof(
    A: bytes,
    B: bytes,
    C: Sequence[bytes],
    D: Sequence[bytes],
    proof: bytes,
    *,
    suite: Suite = RISTRETTO255_SHA512,
    context: bytes | None = None,
) -> None:
    """RFC 9497 ``VerifyProof(A, B, C, D, proof)``; returns only if the proof holds.

    Every element must already be checked (``deserialize_element``): the member checks each
    custodian's answer as it arrives.

    Raises:
        InvalidProof: the proof is not two canonical scalars, or does not prove ``k·A == B`` and
            ``k·C[i] == D[i]`` for one ``k``.
    """
    context = voprf_context(suite) if context is None else context
    if len(proof) != 2 * suite.Ns:
        raise InvalidProof(f"a DLEQ proof is {2 * suite.Ns} bytes, not {len(proof)}")
    c, s = proof[: suite.Ns], proof[suite.Ns :]
    if not all(_canonical_scalar(suite, x) for x in (c, s)):
        raise InvalidProof("a DLEQ proof scalar is not reduced modulo the group order")
    try:
        # (M, Z) = ComputeComposites(B, C, D)
        M, Z = compute_composites(B, C, D, context=context, suite=suite)
        # t2 = ((s * A) + (c * B)); t3 = ((s * M) + (c * Z))
        t2 = suite.element_add(_mult(suite, s, A), _mult(suite, c, B))
        t3 = suite.element_add(_mult(suite, s, M), _mult(suite, c, Z))
    except (MalformedElement, CryptoError) as exc:
        raise InvalidProof(f"DLEQ proof does not verify: {exc}") from None
    # expectedC = G.HashToScalar(challengeTranscript); verified = (expectedC == c)
    if not hmac.compare_digest(_challenge(suite, context, B, M, Z, t2, t3), c):
        raise InvalidProof("DLEQ proof does not verify")


def _mult(suite: Suite, scalar: bytes, element: bytes) -> bytes:
    """``scalar * element`` where a zero scalar or an identity element gives the identity."""
    identity = bytes(suite.Ne)
    if element == identity or scalar == bytes(suite.Ns):
        return identity
    return suite.scalar_mult(scalar, element)


def _canonical_scalar(suite: Suite, x: bytes) -> bool:
    try:
        suite.deserialize_scalar(x)
    except CryptoError:
        return x == bytes(suite.Ns)  # Zero is a valid (if unlikely) proof scalar.
    return True
