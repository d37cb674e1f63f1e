"""Signatures over alliance documents, with a context string per kind of document.

Two signers. The coordinator signs results with its Ed25519 ``SigningKey``; members and third
parties verify with the public key that ships with the alliance configuration. A member node
signs its lead reports with ``CertificateKey``, the ECDSA P-256 private key of its own alliance
certificate (the key its mutual-TLS connections already prove it holds, pinned by enrolment),
so a verifier needs no key beyond the alliance CA.

``verify`` and ``verify_ecdsa`` raise, they never return a bool. Each signature covers
``"alliance-psi/v1 " || context || 0x00 || message`` so that a signature over one kind of
document can never be presented as another kind. That prefix also keeps the certificate key's
two uses apart: a TLS 1.3 CertificateVerify signs a message starting with 64 spaces and a TLS 1.2
one the handshake messages (starting with a ClientHello, type 0x01); ours start with ``a``. A
custodian's certificate key also opens the key-ceremony shares sealed to it with HPKE
(``sealed_shares``, which says why that third use is kept apart from these two).
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature as _CryptographyInvalidSignature
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from alliance_psi.errors import ConfigurationError, InvalidSignature

__all__ = [
    "CertificateKey",
    "SigningKey",
    "key_id",
    "load_certificate_key",
    "load_public_key",
    "verify",
    "verify_ecdsa",
]

_PREFIX = b"alliance-psi/v1 "


def _framed(context: str, message: bytes) -> bytes:
    return _PREFIX + context.encode("ascii") + b"\x00" + message


def _private_key(pem: bytes) -> PrivateKeyTypes:
    try:
        return serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigurationError(f"not a PEM private key: {exc}") from None


def load_certificate_key(pem: bytes) -> ec.EllipticCurvePrivateKey:
    """A certificate's private key from unencrypted PEM; ``ConfigurationError`` unless it is ECDSA P-256."""
    key = _private_key(pem)
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ConfigurationError("certificate key must be ECDSA P-256")
    return key


def key_id(public_key: bytes) -> str:
    """A short public name for a signing key: the first 8 bytes of SHA-256 of the raw key, in hex."""
    return hashlib.sha256(public_key).hexdigest()[:16]


@dataclass(frozen=True)
class SigningKey:
    """The coordinator's Ed25519 signing key. Never leaves the coordinator; ``repr`` hides it."""

    _private: Ed25519PrivateKey = field(repr=False)

    @classmethod
    def generate(cls) -> SigningKey:
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_pem(cls, pem: bytes) -> SigningKey:
        """Load a PKCS#8 PEM key; raises ``ConfigurationError`` if it is not an Ed25519 private key."""
        key = _private_key(pem)
        if not isinstance(key, Ed25519PrivateKey):
            raise ConfigurationError("signing key must be Ed25519")
        return cls(key)

    def to_pem(self) -> bytes:
        return self._private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    @functools.cached_property
    def public_key(self) -> bytes:
        """The raw 32-byte public key, as it ships in the alliance configuration (computed once:
        the coordinator names it in every alert it signs)."""
        return self._private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)

    @functools.cached_property
    def key_id(self) -> str:
        return key_id(self.public_key)

    def sign(self, context: str, message: bytes) -> bytes:
        """Sign ``message`` as a document of kind ``context`` (e.g. ``"result"``, ``"report"``)."""
        return self._private.sign(_framed(context, message))


def load_public_key(data: bytes) -> bytes:
    """Accept a raw 32-byte key, its hex form, or a PEM SubjectPublicKeyInfo; return the raw key.

    Raises ``ConfigurationError`` saying what is wrong for anything else, a damaged PEM included.
    """
    text = data.strip()
    if text.startswith(b"-----BEGIN"):
        try:
            key = serialization.load_pem_public_key(text)
        except (ValueError, TypeError, UnsupportedAlgorithm):
            raise ConfigurationError(
                "public key file is not a readable PEM public key (damaged, truncated, or a private key): "
                "use the signing.pub that `alliance-psi coordinator keygen` wrote"
            ) from None
        if not isinstance(key, Ed25519PublicKey):
            raise ConfigurationError("public key must be Ed25519")
        return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    if len(text) == 64:
        try:
            return bytes.fromhex(text.decode("ascii"))
        except ValueError:
            pass
    if len(data) == 32:
        return data
    raise ConfigurationError("public key must be 32 raw bytes, 64 hex characters or a PEM Ed25519 key")


def verify(public_key: bytes, context: str, message: bytes, signature: bytes) -> None:
    """Raise ``InvalidSignature`` unless ``signature`` is the key's signature of this document."""
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, _framed(context, message))
    except (_CryptographyInvalidSignature, ValueError):
        raise InvalidSignature(f"signature does not verify against key {key_id(public_key)}") from None


@dataclass(frozen=True)
class CertificateKey:
    """A party's ECDSA P-256 certificate key, signing documents (SHA-256, DER signatures).

    Never leaves its node; ``repr`` hides it. ECDSA signatures are randomized: signing the same
    document twice gives two different signatures, both valid.
    """

    _private: ec.EllipticCurvePrivateKey = field(repr=False)

    @classmethod
    def from_pem(cls, pem: bytes) -> CertificateKey:
        """Load an unencrypted PEM private key; ``ConfigurationError`` unless it is ECDSA P-256."""
        return cls(load_certificate_key(pem))

    @property
    def public_key_der(self) -> bytes:
        """The DER SubjectPublicKeyInfo of the key (what its certificate carries)."""
        return self._private.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def sign(self, context: str, message: bytes) -> bytes:
        """Sign ``message`` as a document of kind ``context``; return the DER ECDSA signature."""
        return self._private.sign(_framed(context, message), ec.ECDSA(hashes.SHA256()))


def verify_ecdsa(public_key_der: bytes, context: str, message: bytes, signature: bytes) -> None:
    """Raise ``InvalidSignature`` unless ``signature`` is a ``CertificateKey`` signature of this document.

    ``public_key_der`` is a DER SubjectPublicKeyInfo; any key but ECDSA P-256 is refused.
    """
    try:
        key = serialization.load_der_public_key(public_key_der)
    except (ValueError, TypeError):
        raise InvalidSignature("not a DER public key") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise InvalidSignature("the signing key is not ECDSA P-256")
    try:
        key.verify(signature, _framed(context, message), ec.ECDSA(hashes.SHA256()))
    except _CryptographyInvalidSignature:
        raise InvalidSignature("ECDSA signature does not verify") from None
