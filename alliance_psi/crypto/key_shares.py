"""Key shares: the epoch key ``k = k1 * k2 * ... * kK`` held as ``K`` shares, never assembled.

A custodian holds one ``KeyShare`` per key epoch and applies it to blinded elements in turn
after the previous custodian. Because scalar multiplication commutes, the order of custodians
does not change the result; because the blind hides the element, no custodian learns anything
about the input. ``KeyShare.to_bytes`` is a versioned encoding for the custodian's key file.

DO NOT SEND A KEY SHARE TO ANY OTHER PARTY. Its ``repr`` never shows the scalar.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from alliance_psi.crypto.oprf import derive_key_pair
from alliance_psi.crypto.suite import RISTRETTO255_SHA512, Suite, get_suite
from alliance_psi.errors import ConfigurationError, MalformedScalar

__all__ = ["KeyShare", "combine_shares_for_testing"]

# A version marker leads every encoding, so a future format is never misread as this one.
_MAGIC = b"APSI-KEYSHARE\x01"
_INFO_PREFIX = b"alliance-psi key share "


@dataclass(frozen=True, slots=True)
class KeyShare:
    """One custodian's share of one epoch's OPRF key."""

    epoch: str
    suite_id: str
    scalar: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if not self.epoch or len(self.epoch.encode("utf-8")) > 255:
            raise ConfigurationError("key epoch must be 1 to 255 bytes of UTF-8")
        suite = get_suite(self.suite_id)
        try:
            suite.deserialize_scalar(self.scalar)
        except MalformedScalar as exc:
            raise ConfigurationError(f"key share for epoch {self.epoch!r} is not usable: {exc}") from None

    @property
    def suite(self) -> Suite:
        """The OPRF suite this share belongs to (fixed per epoch)."""
        return get_suite(self.suite_id)

    @classmethod
    def generate(cls, epoch: str, *, suite: Suite = RISTRETTO255_SHA512) -> KeyShare:
        """A fresh random share from the OS CSPRNG (what a custodian does for a new epoch)."""
        return cls(epoch=epoch, suite_id=suite.identifier, scalar=suite.random_scalar())

    @classmethod
    def from_seed(cls, seed: bytes, epoch: str, *, suite: Suite = RISTRETTO255_SHA512) -> KeyShare:
        """A share from a 32-byte seed with RFC 9497 ``DeriveKeyPair`` (info names the epoch).

        For custodians that keep their seed in an HSM or escrow and rebuild the share from it.
        """
        sk, _ = derive_key_pair(seed, _INFO_PREFIX + epoch.encode("utf-8"), suite=suite)
        return cls(epoch=epoch, suite_id=suite.identifier, scalar=sk)

    def blind_evaluate(self, blinded_elements: Sequence[bytes]) -> list[bytes]:
        """Apply this share to every element (RFC 9497 ``BlindEvaluate`` per element).

        Raises ``MalformedElement`` on the first element that is not a canonical, non-identity
        element, naming its index; nothing is returned for a batch that holds one.
        """
        return self.suite.scalar_mult_batch(self.scalar, blinded_elements)

    def to_bytes(self) -> bytes:
        """Versioned encoding: magic, suite id, epoch, scalar. Secret: store it with 0600 rights."""
        suite = self.suite_id.encode("ascii")
        epoch = self.epoch.encode("utf-8")
        return _MAGIC + bytes([len(suite)]) + suite + bytes([len(epoch)]) + epoch + self.scalar

    @classmethod
    def from_bytes(cls, data: bytes) -> KeyShare:
        """Inverse of ``to_bytes``. Raises ``ConfigurationError`` naming what is wrong."""
        if not data.startswith(_MAGIC):
            raise ConfigurationError("not an alliance-psi key share (bad magic or version)")
        try:
            pos = len(_MAGIC)
            suite_len = data[pos]
            suite_id = data[pos + 1 : pos + 1 + suite_len].decode("ascii")
            pos += 1 + suite_len
            epoch_len = data[pos]
            epoch = data[pos + 1 : pos + 1 + epoch_len].decode("utf-8")
            pos += 1 + epoch_len
            scalar = data[pos:]
        except (IndexError, UnicodeDecodeError):
            raise ConfigurationError("truncated or corrupt key share") from None
        suite = get_suite(suite_id)
        if len(scalar) != suite.Ns:
            raise ConfigurationError("truncated or corrupt key share")
        return cls(epoch=epoch, suite_id=suite_id, scalar=scalar)


def combine_shares_for_testing(shares: Iterable[KeyShare]) -> bytes:
    """Return the epoch key ``k1 * ... * kK``.

    WARNING: for tests only. The design never assembles the epoch key; whoever holds it can
    evaluate the PRF alone and enumerate low-entropy identifiers.
    """
    shares = list(shares)
    if not shares:
        raise ConfigurationError("no key shares")
    if len({(s.epoch, s.suite_id) for s in shares}) != 1:
        raise ConfigurationError("key shares from different epochs or suites")
    suite = shares[0].suite
    key = shares[0].scalar
    for share in shares[1:]:
        key = suite.scalar_mul(key, share.scalar)
    return key
