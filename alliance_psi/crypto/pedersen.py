"""Pedersen verifiable secret sharing over ristretto255 (Pedersen, CRYPTO 1991): the dealing step
of the custodians' distributed key generation (``crypto.dkg``).

A dealer draws two random polynomials of degree ``t = τ - 1``, ``f(z) = a_0 + a_1·z + … + a_t·z^t``
(the secret is ``a_0``) and ``f'(z) = b_0 + …`` (blinding), publishes ``C_k = a_k·G + b_k·H`` for
``k = 0..t`` and hands custodian ``j`` the pair ``(f(j), f'(j))`` privately. Custodian ``j`` checks

    f(j)·G + f'(j)·H == Σ_k C_k · j^k

(``check_pedersen_share``). The commitments hide ``a_0`` perfectly (each ``C_k`` is a uniformly
random element whatever ``a_k`` is) and bind the dealer to one polynomial unless it knows
``log_G(H)``. Feldman's commitments ``A_k = a_k·G`` (``feldman_commitments``) bind too but reveal
``a_0·G``: the DKG publishes them only once the set of qualified dealers is fixed.

The second generator ``H`` is ``hash_to_ristretto255`` (RFC 9380 appendix B, suite
``ristretto255_XMD:SHA-512_R255MAP_RO_``) of a fixed public string under a domain-separation tag
of its own: ``expand_message_xmd`` gives 64 uniform bytes and RFC 9496's one-way map (section
4.3.4, libsodium's ``crypto_core_ristretto255_from_hash``) turns them into an element. The map is
one-way and its output is uniformly distributed, so nobody, whoever chose the string, knows the
discrete logarithm of ``H`` to the base ``G``: finding it is a discrete-logarithm problem on a
random element. A generator picked as ``x·G`` by anyone would let that party open a commitment
to any value. Anyone can recompute ``H`` from the string (``GENERATOR_H`` is checked at import).

Scalars are Python ``int`` values modulo the group order ``ORDER`` inside this module and travel
as 32-byte little-endian canonical encodings. Elements are 32-byte canonical ristretto255
encodings; the identity appears only as an intermediate sum, never from a peer
(``decode_element`` refuses it, as RFC 9497 does for blinded elements).

Hand-written because no maintained Python library offers Pedersen VSS on ristretto255; the group
operations are libsodium's (through pysodium), and what is written here is polynomial
arithmetic modulo the order and the checks above.

A share is a secret: ``PedersenShare``'s ``repr`` hides it, and it travels only to its holder
over mutual TLS (and to everyone only when its dealer is accused, which is the protocol).
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import cast

import pysodium

from alliance_psi.crypto.h2c import expand_message_xmd
from alliance_psi.crypto.suite import RISTRETTO255_SHA512
from alliance_psi.errors import CryptoError, InvalidShare, MalformedScalar

__all__ = [
    "GENERATOR_G",
    "GENERATOR_H",
    "H_DST",
    "H_SEED",
    "IDENTITY",
    "ORDER",
    "Commitments",
    "PedersenShare",
    "Polynomial",
    "add_elements",
    "check_feldman_share",
    "check_pedersen_share",
    "commitment_at",
    "decode_element",
    "decode_scalar",
    "encode_scalar",
    "feldman_commitments",
    "interpolate",
    "mul_base",
    "mul_element",
    "pedersen_commitments",
]

ORDER = RISTRETTO255_SHA512.order
IDENTITY = bytes(RISTRETTO255_SHA512.Ne)
# hash_to_ristretto255(H_SEED) with DST = H_DST (RFC 9380 appendix B; the DST names the suite as
# section 3.1 asks, and this protocol and version, so that no other use of the hash yields H).
H_DST = b"alliance-psi-v1-PedersenH-ristretto255_XMD:SHA-512_R255MAP_RO_"
H_SEED = b"alliance-psi Pedersen VSS second generator H"

Commitments = tuple[bytes, ...]
"""``C_0 .. C_t`` (or ``A_0 .. A_t``): one 32-byte element per coefficient, lowest degree first."""


def encode_scalar(value: int) -> bytes:
    """The 32-byte little-endian canonical encoding of ``value mod ORDER``."""
    return RISTRETTO255_SHA512.scalar_from_int(value)


def decode_scalar(buf: bytes) -> int:
    """The scalar a peer sent: 32 bytes, canonical (below ``ORDER``). Zero is allowed here.

    Raises:
        MalformedScalar: wrong length or not reduced.
    """
    if not isinstance(buf, (bytes, bytearray)) or len(buf) != 32:
        raise MalformedScalar("scalar must be 32 bytes")
    value = int.from_bytes(buf, "little")
    if value >= ORDER:
        raise MalformedScalar("scalar not reduced modulo the group order")
    return value


def decode_element(buf: bytes) -> bytes:
    """The element a peer sent: a canonical, non-identity ristretto255 encoding.

    Raises:
        MalformedElement: wrong length, not canonical, not a group element, or the identity
            (``Suite.deserialize_element``, the one check of a peer's element).
    """
    return RISTRETTO255_SHA512.deserialize_element(buf)


def mul_base(scalar: int) -> bytes:
    """``scalar·G``; the identity for a scalar that is zero modulo the order."""
    scalar %= ORDER
    if scalar == 0:
        return IDENTITY
    return cast(bytes, pysodium.crypto_scalarmult_ristretto255_base(encode_scalar(scalar)))


def mul_element(scalar: int, element: bytes) -> bytes:
    """``scalar·element`` for an element already decoded (or the identity)."""
    scalar %= ORDER
    if scalar == 0 or element == IDENTITY:
        return IDENTITY
    # The group has prime order: a non-zero multiple of a non-identity element is never the identity.
    return cast(bytes, pysodium.crypto_scalarmult_ristretto255(encode_scalar(scalar), element))


def add_elements(*elements: bytes) -> bytes:
    """The sum of ``elements`` (the identity for none)."""
    total = IDENTITY
    for element in elements:
        total = cast(bytes, pysodium.crypto_core_ristretto255_add(total, element))
    return total


def _hash_to_ristretto255(msg: bytes, dst: bytes) -> bytes:
    # uniform_bytes = expand_message_xmd(msg, DST, 64); P = ristretto255_map(uniform_bytes)
    return cast(bytes, pysodium.crypto_core_ristretto255_from_hash(expand_message_xmd(msg, dst, 64)))


GENERATOR_G = mul_base(1)
GENERATOR_H = _hash_to_ristretto255(H_SEED, H_DST)
if GENERATOR_H in (IDENTITY, GENERATOR_G):  # pragma: no cover - a property of the fixed string
    raise CryptoError("the Pedersen generator H must differ from G and the identity")


@dataclass(frozen=True, slots=True)
class PedersenShare:
    """What dealer ``i`` gives custodian ``j``: ``value = f(j)`` and ``blinding = f'(j)``. Secret."""

    value: int = field(repr=False)
    blinding: int = field(repr=False)

    def __post_init__(self) -> None:
        if not (0 <= self.value < ORDER and 0 <= self.blinding < ORDER):
            raise MalformedScalar("share scalars must be reduced modulo the group order")


@dataclass(frozen=True, slots=True)
class Polynomial:
    """``f(z) = Σ_k coefficients[k]·z^k`` modulo ``ORDER``. Secret: ``repr`` hides the coefficients."""

    coefficients: tuple[int, ...] = field(repr=False)

    def __post_init__(self) -> None:
        if not self.coefficients:
            raise ValueError("a polynomial needs at least one coefficient")
        object.__setattr__(self, "coefficients", tuple(c % ORDER for c in self.coefficients))

    @classmethod
    def random(cls, degree: int) -> Polynomial:
        """A uniformly random polynomial of ``degree`` from the OS CSPRNG (non-zero coefficients)."""
        if degree < 0:
            raise ValueError("degree must be at least 0")
        return cls(tuple(1 + secrets.randbelow(ORDER - 1) for _ in range(degree + 1)))

    @property
    def degree(self) -> int:
        return len(self.coefficients) - 1

    def __call__(self, x: int) -> int:
        # Horner's rule.
        result = 0
        for coefficient in reversed(self.coefficients):
            result = (result * x + coefficient) % ORDER
        return result


def pedersen_commitments(f: Polynomial, f_blinding: Polynomial) -> Commitments:
    """``C_k = a_k·G + b_k·H`` for each coefficient ``a_k`` of ``f`` and ``b_k`` of ``f_blinding``."""
    if f.degree != f_blinding.degree:
        raise ValueError("the secret and blinding polynomials must have the same degree")
    return tuple(
        add_elements(mul_base(a), mul_element(b, GENERATOR_H))
        for a, b in zip(f.coefficients, f_blinding.coefficients, strict=True)
    )


def feldman_commitments(f: Polynomial) -> Commitments:
    """``A_k = a_k·G`` for each coefficient of ``f`` (``A_0`` is the dealer's public contribution)."""
    return tuple(mul_base(a) for a in f.coefficients)


def commitment_at(commitments: Sequence[bytes], x: int) -> bytes:
    """``Σ_k commitments[k]·x^k``: the commitment to the polynomials' values at ``x``."""
    terms, power = [], 1
    for commitment in commitments:
        terms.append(mul_element(power, commitment))
        power = power * x % ORDER
    return add_elements(*terms)


def check_pedersen_share(commitments: Sequence[bytes], x: int, share: PedersenShare) -> None:
    """Raise ``InvalidShare`` unless ``share.value·G + share.blinding·H == Σ_k C_k·x^k``."""
    left = add_elements(mul_base(share.value), mul_element(share.blinding, GENERATOR_H))
    if not hmac.compare_digest(left, commitment_at(commitments, x)):
        raise InvalidShare(f"the share for custodian {x} does not match its dealer's commitments")


def check_feldman_share(commitments: Sequence[bytes], x: int, value: int) -> None:
    """Raise ``InvalidShare`` unless ``value·G == Σ_k A_k·x^k``."""
    if not hmac.compare_digest(mul_base(value), commitment_at(commitments, x)):
        raise InvalidShare(f"the share for custodian {x} does not match its dealer's public coefficients")


def interpolate(points: Mapping[int, int]) -> Polynomial:
    """The polynomial of degree ``len(points) − 1`` through ``{x: f(x)}`` (Lagrange, coefficient form)."""
    xs = list(points)
    if not xs or len({x % ORDER for x in xs}) != len(xs):
        raise ValueError("interpolation needs distinct points")
    coefficients = [0] * len(xs)
    for x in xs:
        # basis(z) = Π_{m ≠ x} (z − m) / (x − m), expanded one factor at a time.
        basis, denominator = [1], 1
        for m in xs:
            if m != x:
                # (z − m)·basis: coefficient k is basis[k−1] − m·basis[k].
                basis = [(lower - m * same) % ORDER for lower, same in zip([0, *basis], [*basis, 0], strict=True)]
                denominator = denominator * (x - m) % ORDER
        scale = points[x] * pow(denominator, -1, ORDER) % ORDER
        for k, b in enumerate(basis):
            coefficients[k] = (coefficients[k] + scale * b) % ORDER
    return Polynomial(tuple(coefficients))
