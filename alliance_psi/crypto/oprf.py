"""RFC 9497 OPRF mode (0x00), byte for byte.

Client (member node): ``blind`` then ``finalize``. Server (key custodian): ``blind_evaluate``.
``evaluate`` is the unblinded PRF, for tests and for a party that holds the whole key.
``derive_key_pair`` corresponds to RFC 9497 ``DeriveKeyPair``.

Every function takes and returns bytes: serialized scalars and elements of the suite (default
ristretto255-SHA512). Elements received from another party are checked on entry and rejected
with ``MalformedElement``. With a split key (see ``key_shares``) the member runs ``blind`` once,
each custodian applies ``blind_evaluate`` with its share in turn, and ``finalize`` unblinds the
product; with a single key this is exactly RFC 9497.

Security: the blind is the member's secret for one evaluation or one batch; it never leaves the
member node. The OPRF output is a secret from which tokens and label keys are derived.
"""

from __future__ import annotations

from dataclasses import dataclass

from alliance_psi.crypto.suite import RISTRETTO255_SHA512, Suite
from alliance_psi.errors import ConfigurationError, CryptoError, MalformedElement

__all__ = [
    "BlindResult",
    "blind",
    "blind_evaluate",
    "derive_key_pair",
    "evaluate",
    "finalize",
]

STR_FINALIZE = b"Finalize"
STR_DERIVE_KEYPAIR = b"DeriveKeyPair"
_MAX_INPUT = 2**16 - 1


@dataclass(frozen=True, slots=True)
class BlindResult:
    """What ``blind`` returns: the secret to keep and the element to send."""

    blind: bytes
    """The state to keep on the member node (a serialized scalar). Never send it."""
    blinded_element: bytes
    """The message to send to the first key custodian (a serialized element)."""

    def __repr__(self) -> str:
        return f"BlindResult(blind=<secret>, blinded_element={self.blinded_element.hex()})"


def _check_input(input: bytes) -> None:
    if not isinstance(input, (bytes, bytearray)):
        raise TypeError("OPRF input must be bytes")
    if len(input) > _MAX_INPUT:
        raise ValueError("OPRF input longer than 65535 bytes")


def derive_key_pair(seed: bytes, info: bytes, *, suite: Suite = RISTRETTO255_SHA512) -> tuple[bytes, bytes]:
    """RFC 9497 ``DeriveKeyPair(seed, info)``: return ``(skS, pkS)`` as serialized scalar and element.

    Raises ``ConfigurationError`` if ``seed`` is not ``Ns`` bytes or ``info`` is too long, and
    ``CryptoError`` in the negligible case that 256 attempts give a zero scalar.
    """
    if len(seed) != suite.Ns:
        raise ConfigurationError(f"seed must be {suite.Ns} bytes")
    if len(info) > _MAX_INPUT:
        raise ConfigurationError("info longer than 65535 bytes")
    # deriveInput = seed || I2OSP(len(info), 2) || info
    derive_input = seed + len(info).to_bytes(2, "big") + info
    dst = STR_DERIVE_KEYPAIR + suite.context_string
    zero = bytes(suite.Ns)
    # while skS == 0: if counter > 255: raise DeriveKeyPairError
    for counter in range(256):
        # skS = G.HashToScalar(deriveInput || I2OSP(counter, 1), DST = "DeriveKeyPair" || contextString)
        sk = suite.hash_to_scalar(derive_input + bytes([counter]), dst)
        if sk != zero:
            # pkS = G.ScalarMultGen(skS)
            return sk, suite.scalar_mult_base(sk)
    raise CryptoError("DeriveKeyPair: no non-zero scalar in 256 attempts")


def blind(input: bytes, blind: bytes | None = None, *, suite: Suite = RISTRETTO255_SHA512) -> BlindResult:
    """RFC 9497 ``Blind(input)``.

    ``blind`` is drawn fresh from the OS CSPRNG when omitted; pass it only to replay a published
    test vector or to reuse one batch blind (see ``batch``). Raises ``MalformedScalar`` for a
    bad explicit blind and ``CryptoError`` if the input hashes to the identity.
    """
    _check_input(input)
    # blind = G.RandomScalar()
    r = suite.random_scalar() if blind is None else suite.deserialize_scalar(blind)
    # inputElement = G.HashToGroup(input); if inputElement == G.Identity(): raise InvalidInputError
    input_element = suite.hash_to_group(bytes(input))
    try:
        # blindedElement = blind * inputElement
        blinded = suite.scalar_mult(r, input_element)
    except MalformedElement:
        raise CryptoError("input hashes to the identity element") from None
    return BlindResult(blind=r, blinded_element=blinded)


def blind_evaluate(sk: bytes, blinded_element: bytes, *, suite: Suite = RISTRETTO255_SHA512) -> bytes:
    """RFC 9497 ``BlindEvaluate(skS, blindedElement)``: return ``skS * blindedElement``.

    ``blinded_element`` comes from another party: raises ``MalformedElement`` if it is not a
    canonical non-identity element. The key ``sk`` is trusted (the caller loaded and checked it).
    """
    # evaluatedElement = skS * blindedElement (the element is checked as it is decoded)
    return suite.scalar_mult_checked(sk, blinded_element)


def _finalize_hash(input: bytes, element: bytes, suite: Suite) -> bytes:
    # hashInput = I2OSP(len(input), 2) || input ||
    #             I2OSP(len(unblindedElement), 2) || unblindedElement || "Finalize"
    return suite.hash(len(input).to_bytes(2, "big") + input + len(element).to_bytes(2, "big") + element + STR_FINALIZE)


def finalize(input: bytes, blind: bytes, evaluated_element: bytes, *, suite: Suite = RISTRETTO255_SHA512) -> bytes:
    """RFC 9497 ``Finalize(input, blind, evaluatedElement)``: return the ``Nh``-byte OPRF output.

    ``evaluated_element`` comes from the last custodian: raises ``MalformedElement`` if invalid.
    """
    _check_input(input)
    # N = G.ScalarInverse(blind) * evaluatedElement (the element is checked as it is decoded)
    unblinded = suite.scalar_mult_checked(suite.scalar_inverse(blind), evaluated_element)
    return _finalize_hash(bytes(input), unblinded, suite)


def finalize_unblinded(input: bytes, unblinded_element: bytes, *, suite: Suite = RISTRETTO255_SHA512) -> bytes:
    """The hash step of ``Finalize`` for an element already unblinded (batch unblinding)."""
    return _finalize_hash(bytes(input), unblinded_element, suite)


def evaluate(sk: bytes, input: bytes, *, suite: Suite = RISTRETTO255_SHA512) -> bytes:
    """RFC 9497 ``Evaluate(skS, input)``: the PRF without blinding, for a holder of the whole key."""
    _check_input(input)
    # inputElement = G.HashToGroup(input); if inputElement == G.Identity(): raise InvalidInputError
    input_element = suite.hash_to_group(bytes(input))
    # evaluatedElement = skS * inputElement
    evaluated = suite.scalar_mult(sk, input_element)
    # issuedElement = G.SerializeElement(evaluatedElement); hashInput = ... || "Finalize"
    return _finalize_hash(bytes(input), evaluated, suite)
