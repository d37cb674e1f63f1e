"""Prime-order group suites for the OPRF (RFC 9497 section 4), behind one small interface.

Elements and scalars travel as their serialized bytes; a suite checks them where they enter
(``deserialize_element`` / ``deserialize_scalar``) and every operation refuses what it cannot use.
The suite is fixed per key epoch: shares, blinded elements and tokens of one suite never mix
with another's.

Only ristretto255-SHA512 ships: through libsodium it meets the member-side throughput target
(see ``BENCHMARKS.md``), so no second suite is needed yet.
"""

from __future__ import annotations

import abc
import ctypes
import hashlib
import hmac
from collections.abc import Sequence
from typing import cast

import pysodium

from alliance_psi.crypto.h2c import XmdExpander
from alliance_psi.errors import ConfigurationError, MalformedElement, MalformedScalar

__all__ = ["RISTRETTO255_SHA512", "Ristretto255Sha512", "Suite", "get_suite"]

# contextString = "OPRFV1-" || I2OSP(mode, 1) || "-" || identifier
STR_OPRF = b"OPRFV1-"
STR_HASH_TO_GROUP = b"HashToGroup-"
STR_HASH_TO_SCALAR = b"HashToScalar-"
MODE_OPRF = 0x00


class Suite(abc.ABC):
    """One RFC 9497 ciphersuite in OPRF mode: a prime-order group and a hash."""

    identifier: str
    Ne: int  # Bytes of a serialized element.
    Ns: int  # Bytes of a serialized scalar.
    Nh: int  # Bytes of the hash output.

    @property
    def context_string(self) -> bytes:
        """``"OPRFV1-" || I2OSP(mode, 1) || "-" || identifier`` for OPRF mode."""
        return STR_OPRF + bytes([MODE_OPRF]) + b"-" + self.identifier.encode("ascii")

    @abc.abstractmethod
    def hash(self, data: bytes) -> bytes:
        """The suite's hash function ``Hash``."""

    @abc.abstractmethod
    def hash_to_group(self, msg: bytes) -> bytes:
        """``HashToGroup(msg)`` with the suite's DST; returns a serialized element."""

    @abc.abstractmethod
    def hash_to_scalar(self, msg: bytes, dst: bytes) -> bytes:
        """``HashToScalar(msg, DST)``; returns a serialized scalar (possibly zero)."""

    @abc.abstractmethod
    def deserialize_element(self, buf: bytes) -> bytes:
        """Return ``buf`` if it is a canonical encoding of a non-identity element.

        Raises ``MalformedElement`` otherwise (wrong length, non-canonical, not on the group,
        or the identity).
        """

    @abc.abstractmethod
    def deserialize_scalar(self, buf: bytes) -> bytes:
        """Return ``buf`` if it is a canonical encoding of a non-zero scalar, else raise ``MalformedScalar``."""

    @abc.abstractmethod
    def scalar_mult(self, scalar: bytes, element: bytes) -> bytes:
        """Return ``scalar * element``.

        Raises ``MalformedElement`` if ``element`` is not a valid non-identity element or the
        product is the identity.
        """

    def scalar_mult_checked(self, scalar: bytes, element: bytes) -> bytes:
        """Return ``scalar * element`` for an element from another party, checked as by
        ``deserialize_element`` (``MalformedElement`` naming the reason). Suites may do it faster."""
        return self.scalar_mult(scalar, self.deserialize_element(element))

    def scalar_mult_batch(self, scalar: bytes, elements: Sequence[bytes]) -> list[bytes]:
        """``[scalar * e for e in elements]`` for elements from another party, each checked as by
        ``scalar_mult_checked``; ``scalar`` must be a checked scalar.

        Raises ``MalformedElement`` for the first element that is not a canonical, non-identity
        element (or whose product is the identity), naming its index: ``element 3: identity
        element``. Nothing is returned for a batch that holds one. Suites may do it faster.
        """
        results = []
        for index, element in enumerate(elements):
            try:
                results.append(self.scalar_mult_checked(scalar, element))
            except MalformedElement as exc:
                raise MalformedElement(f"element {index}: {exc}") from None
        return results

    @abc.abstractmethod
    def scalar_mult_base(self, scalar: bytes) -> bytes:
        """Return ``scalar * G`` for the group generator ``G``."""

    @abc.abstractmethod
    def scalar_inverse(self, scalar: bytes) -> bytes:
        """Return the inverse of a non-zero scalar modulo the group order."""

    @abc.abstractmethod
    def scalar_mul(self, a: bytes, b: bytes) -> bytes:
        """Return ``a * b`` modulo the group order."""

    @abc.abstractmethod
    def random_scalar(self) -> bytes:
        """Return a uniformly random non-zero scalar from the operating system's CSPRNG."""

    @abc.abstractmethod
    def scalar_add(self, a: bytes, b: bytes) -> bytes:
        """Return ``a + b`` modulo the group order."""

    @abc.abstractmethod
    def scalar_sub(self, a: bytes, b: bytes) -> bytes:
        """Return ``a - b`` modulo the group order."""

    def scalar_from_int(self, value: int) -> bytes:
        """The scalar ``value`` modulo the group order (small public integers: indexes, counters)."""
        return (value % self.order).to_bytes(self.Ns, "little")

    @property
    @abc.abstractmethod
    def order(self) -> int:
        """The prime order of the group."""

    @abc.abstractmethod
    def element_add(self, a: bytes, b: bytes) -> bytes:
        """Return ``a + b`` for two elements this process computed or already checked.

        The sum may be the identity (all zeros for ristretto255): callers that must refuse it
        check it (``deserialize_element``). Never call it on unchecked bytes from a peer.
        """


def _batch_multiplier() -> ctypes._CFuncPtr:  # type: ignore[name-defined]
    """libsodium's ``crypto_scalarmult_ristretto255`` taking raw addresses, for ``scalar_mult_batch``.

    A handle of its own on the library pysodium loaded, so that declaring the argument types here
    does not change how pysodium calls the same function.
    """
    function = ctypes.CDLL(pysodium.sodium._name).crypto_scalarmult_ristretto255
    function.argtypes = (ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p)
    function.restype = ctypes.c_int
    return function


class Ristretto255Sha512(Suite):
    """OPRF(ristretto255, SHA-512), RFC 9497 section 4.1, over libsodium (through pysodium)."""

    identifier = "ristretto255-SHA512"
    Ne = 32
    Ns = 32
    Nh = 64
    _ORDER = 2**252 + 27742317777372353535851937790883648493
    _IDENTITY = bytes(32)
    _ZERO_SCALAR = bytes(32)

    def __init__(self) -> None:
        # HashToGroup(): hash_to_ristretto255 with DST = "HashToGroup-" || contextString and
        # expand_message_xmd using SHA-512.
        self._h2g = XmdExpander(STR_HASH_TO_GROUP + self.context_string, "sha512")
        self._h2s: dict[bytes, XmdExpander] = {}
        self._mult_at = _batch_multiplier()

    def hash(self, data: bytes) -> bytes:
        return hashlib.sha512(data).digest()

    def hash_to_group(self, msg: bytes) -> bytes:
        # hash_to_ristretto255(msg): uniform_bytes = expand_message(msg, DST, 64);
        # P = ristretto255_map(uniform_bytes)
        uniform = self._h2g.expand(msg, 64)
        return cast(bytes, pysodium.crypto_core_ristretto255_from_hash(uniform))

    def hash_to_scalar(self, msg: bytes, dst: bytes) -> bytes:
        # uniform_bytes = expand_message_xmd(msg, DST, 64), read as a 512-bit little-endian
        # integer and reduced modulo Group.Order().
        expander = self._h2s.get(dst)
        if expander is None:
            expander = self._h2s.setdefault(dst, XmdExpander(dst, "sha512"))
        return cast(bytes, pysodium.crypto_core_ristretto255_scalar_reduce(expander.expand(msg, 64)))

    def deserialize_element(self, buf: bytes) -> bytes:
        if not isinstance(buf, (bytes, bytearray)) or len(buf) != self.Ne:
            raise MalformedElement(f"element must be {self.Ne} bytes")
        buf = bytes(buf)
        # Decode (RFC 9496 section 4.3.1) rejects non-canonical and invalid encodings. libsodium
        # 1.0.18 (Debian 12) ignores the top bit instead of rejecting it, which gives points a
        # second encoding, so that bit is checked here. The only canonical encoding of the
        # identity is all zeros, which RFC 9497 also rejects.
        if buf[31] & 0x80 or not pysodium.crypto_core_ristretto255_is_valid_point(buf):
            raise MalformedElement("not a canonical ristretto255 encoding")
        if buf == self._IDENTITY:
            raise MalformedElement("identity element")
        return buf

    def deserialize_scalar(self, buf: bytes) -> bytes:
        if not isinstance(buf, (bytes, bytearray)) or len(buf) != self.Ns:
            raise MalformedScalar(f"scalar must be {self.Ns} bytes")
        buf = bytes(buf)
        # Canonical iff reducing it changes nothing; compared in constant time since a scalar
        # is usually a secret (a key share or a blind).
        reduced = pysodium.crypto_core_ristretto255_scalar_reduce(buf + bytes(32))
        if not hmac.compare_digest(reduced, buf):
            raise MalformedScalar("scalar not reduced modulo the group order")
        if hmac.compare_digest(buf, self._ZERO_SCALAR):
            raise MalformedScalar("zero scalar")
        return buf

    def scalar_mult(self, scalar: bytes, element: bytes) -> bytes:
        try:
            # libsodium decodes the element (rejecting invalid encodings) and fails when the
            # product is the identity, which covers an identity input too.
            return cast(bytes, pysodium.crypto_scalarmult_ristretto255(scalar, element))
        except ValueError:
            self.deserialize_element(element)
            raise MalformedElement("product is the identity element") from None

    def scalar_mult_checked(self, scalar: bytes, element: bytes) -> bytes:
        # One decode instead of two on the common path: libsodium's multiplication decodes the
        # element, refusing non-canonical and invalid encodings, and fails when the product is
        # the identity (so for an identity input too). The length and the top bit, which
        # libsodium 1.0.18 ignores, are checked here. On failure, deserialize_element says why.
        if isinstance(element, bytes) and len(element) == 32 and not element[31] & 0x80:
            try:
                return cast(bytes, pysodium.crypto_scalarmult_ristretto255(scalar, element))
            except ValueError:
                pass
        self.deserialize_element(element)
        raise MalformedElement("product is the identity element")

    def scalar_mult_batch(self, scalar: bytes, elements: Sequence[bytes]) -> list[bytes]:
        # One pass in C per check, then a loop that only calls libsodium (which decodes each
        # element, refusing non-canonical and invalid encodings, and fails on an identity product)
        # on addresses in one input and one output buffer: no per-element Python objects until the
        # answer is sliced. pysodium's own wrapper costs ~1.5 us more per call (a version check, a
        # buffer per call); a batch call libsodium does not offer.
        count, size = len(elements), self.Ne
        if len(scalar) != self.Ns:
            raise MalformedScalar(f"scalar must be {self.Ns} bytes")
        if set(map(len, elements)) - {size}:
            bad = next(i for i, e in enumerate(elements) if len(e) != size)
            raise MalformedElement(f"element {bad}: element must be {size} bytes")
        joined = b"".join(elements)
        # libsodium 1.0.18 ignores the top bit of an encoding instead of rejecting it.
        top = joined[size - 1 :: size]
        usable = count if not top or max(top) < 0x80 else next(i for i, b in enumerate(top) if b & 0x80)
        source, answer = ctypes.create_string_buffer(joined, len(joined)), ctypes.create_string_buffer(len(joined))
        source_at, answer_at, mult = ctypes.addressof(source), ctypes.addressof(answer), self._mult_at
        for offset in range(0, usable * size, size):
            if mult(answer_at + offset, scalar, source_at + offset):
                usable = offset // size
                break
        if usable < count:
            try:
                self.deserialize_element(elements[usable])
            except MalformedElement as exc:
                raise MalformedElement(f"element {usable}: {exc}") from None
            raise MalformedElement(f"element {usable}: product is the identity element")
        raw = answer.raw
        return [raw[offset : offset + size] for offset in range(0, len(raw), size)]

    def scalar_mult_base(self, scalar: bytes) -> bytes:
        return cast(bytes, pysodium.crypto_scalarmult_ristretto255_base(scalar))

    def scalar_inverse(self, scalar: bytes) -> bytes:
        try:
            return cast(bytes, pysodium.crypto_core_ristretto255_scalar_invert(scalar))
        except ValueError:
            raise MalformedScalar("zero scalar has no inverse") from None

    def scalar_mul(self, a: bytes, b: bytes) -> bytes:
        return cast(bytes, pysodium.crypto_core_ristretto255_scalar_mul(a, b))

    def random_scalar(self) -> bytes:
        # libsodium draws uniformly from ]0, L[.
        return cast(bytes, pysodium.crypto_core_ristretto255_scalar_random())

    def scalar_add(self, a: bytes, b: bytes) -> bytes:
        return cast(bytes, pysodium.crypto_core_ristretto255_scalar_add(a, b))

    def scalar_sub(self, a: bytes, b: bytes) -> bytes:
        return cast(bytes, pysodium.crypto_core_ristretto255_scalar_sub(a, b))

    @property
    def order(self) -> int:
        return self._ORDER

    def element_add(self, a: bytes, b: bytes) -> bytes:
        # libsodium decodes both (its return code is not surfaced by pysodium), so the inputs
        # must be elements this process made or checked; see the abstract method.
        return cast(bytes, pysodium.crypto_core_ristretto255_add(a, b))


RISTRETTO255_SHA512 = Ristretto255Sha512()

_SUITES: dict[str, Suite] = {RISTRETTO255_SHA512.identifier: RISTRETTO255_SHA512}


def get_suite(identifier: str) -> Suite:
    """Return the suite named ``identifier`` (as RFC 9497 spells it); raise ``ConfigurationError`` if unknown."""
    try:
        return _SUITES[identifier]
    except KeyError:
        known = ", ".join(sorted(_SUITES))
        raise ConfigurationError(f"unknown OPRF suite {identifier!r}; known: {known}") from None
