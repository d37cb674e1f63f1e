"""Key-ceremony shares sealed to their receiver's enrolled certificate key: HPKE (RFC 9180), base mode.

In round 1 of the key ceremony (``protocol.ceremony``) dealer ``i`` sends custodian ``j`` its
private share ``(f_i(j), f'_i(j))``. TLS alone does not keep it from whoever holds the alliance CA:
it can issue a certificate under ``j``'s name and answer where the dealer dials ``j``. So the dealer
seals the share to the key its own operator *enrolled* for ``j`` (``custodian peer add``, the
enrolment that pins ``j``'s calls), and only the holder of that key can open it.

Suite DHKEM(P-256, HKDF-SHA256), HKDF-SHA256, AES-128-GCM (RFC 9180, section 7: KEM 0x0010,
KDF 0x0001, AEAD 0x0001); the receiver's key pair is the ECDSA P-256 key of its certificate.
Wire format, always ``SEALED_SHARE_BYTES`` long::

    0x01 || enc (65) || ct (64 + 16)
    enc, ct = SealBase(pkR, info, "", encode_scalar(f_i(j)) || encode_scalar(f'_i(j)))    (RFC 9180, 6.1)
    info    = "alliance-psi/v1 key ceremony share" || 0x00 || session (32) || dealing (32)
              || lp(dealer) || lp(receiver)
    lp(s)   = I2OSP(len(s), 1) || s (UTF-8)

``info`` binds a sealed share to its ceremony (``session``: epoch, suite, threshold, custodians),
to the dealer's round-1 message (``dealing``: SHA-256 of the payload the dealer signed, which
holds the commitments the share must pass) and to both names; the KEM binds the receiver's public
key (``kem_context = enc || pkRm``, RFC 9180 section 4.1). A sealed share moved to another
receiver, ceremony, dealer or dealing does not open there. Base mode does not say who sealed: the
ceremony takes that from the channel (a custodian admits a dealer only with its enrolled key, and
the envelope's signed message must be signed by that very key).

Every failure to open raises the same ``InvalidSealedShare`` naming the dealer, so a dealer learns
nothing about which check failed.

One key, two uses: the certificate key signs (TLS CertificateVerify, ``crypto.signing``) and here
receives HPKE. The operations never feed each other: ECDSA signs hashes of framed documents; DHKEM
multiplies the key with a point the sender chose (a valid P-256 point, RFC 9180 section 7.1.4)
and passes the product only through HPKE's labelled HKDF, so neither the raw Diffie-Hellman value
nor anything signed ever comes out of it. A custodian opens at most one share per dealer and ceremony. And a separate key
would protect nothing more here: whoever holds the certificate key can already take part in a
ceremony as that custodian and be dealt its shares (docs/design.md, "Key generation").
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hpke, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from alliance_psi.crypto.pedersen import PedersenShare, decode_scalar, encode_scalar
from alliance_psi.crypto.signing import load_certificate_key
from alliance_psi.errors import ConfigurationError, CryptoError, InvalidSealedShare

__all__ = [
    "SEALED_SHARE_BYTES",
    "SEALED_SHARE_VERSION",
    "ReceiverKey",
    "ShareContext",
    "seal_share",
]

SEALED_SHARE_VERSION = 0x01
_SUITE = hpke.Suite(hpke.KEM.P256, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_128_GCM)
_ENC_BYTES = hpke.KEM.P256.enc_length()  # An uncompressed P-256 point.
_PLAINTEXT_BYTES = 2 * 32
_TAG_BYTES = 16
SEALED_SHARE_BYTES = 1 + _ENC_BYTES + _PLAINTEXT_BYTES + _TAG_BYTES
_VERSION_BYTE = bytes([SEALED_SHARE_VERSION])
_INFO_TAG = b"alliance-psi/v1 key ceremony share\x00"
_DIGEST_BYTES = 32


def _lp(name: str) -> bytes:
    encoded = name.encode("utf-8")
    return bytes([len(encoded)]) + encoded


@dataclass(frozen=True, slots=True)
class ShareContext:
    """What a sealed share is bound to: the ceremony's ``session``, the ``dealing`` (SHA-256 of the
    dealer's signed round-1 payload) and the ``dealer``'s and ``receiver``'s names.

    Raises ``ValueError`` for a session or dealing that is not 32 bytes, or a name that is empty
    or longer than 255 bytes of UTF-8.
    """

    session: bytes
    dealing: bytes
    dealer: str
    receiver: str

    def __post_init__(self) -> None:
        if len(self.session) != _DIGEST_BYTES or len(self.dealing) != _DIGEST_BYTES:
            raise ValueError(f"a share's session and dealing are {_DIGEST_BYTES}-byte digests")
        if not all(0 < len(name.encode("utf-8")) <= 255 for name in (self.dealer, self.receiver)):
            raise ValueError("a dealer's or receiver's name is 1 to 255 bytes of UTF-8")

    def info(self) -> bytes:
        """HPKE's ``info`` for this context (module docstring)."""
        return _INFO_TAG + self.session + self.dealing + _lp(self.dealer) + _lp(self.receiver)


def seal_share(share: PedersenShare, receiver_key: bytes, context: ShareContext) -> bytes:
    """``share`` sealed to ``receiver_key``, the DER SubjectPublicKeyInfo enrolled for
    ``context.receiver``; exactly ``SEALED_SHARE_BYTES`` bytes, fresh randomness each time.

    Raises:
        ConfigurationError: ``receiver_key`` is not a DER ECDSA P-256 public key.
    """
    try:
        key = serialization.load_der_public_key(receiver_key)
    except (ValueError, TypeError):
        raise ConfigurationError(f"the key enrolled for {context.receiver} is not a DER public key") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ConfigurationError(f"the key enrolled for {context.receiver} is not ECDSA P-256")
    plaintext = encode_scalar(share.value) + encode_scalar(share.blinding)
    # RFC 9180, section 6.1: enc, ct = SealBase(pkR, info, aad, pt), returned as enc || ct.
    return _VERSION_BYTE + _SUITE.encrypt(plaintext, key, info=context.info())


@dataclass(frozen=True)
class ReceiverKey:
    """This custodian's certificate key, opening the shares sealed to it. Never leaves its node;
    ``repr`` hides it."""

    _private: ec.EllipticCurvePrivateKey = field(repr=False)

    @classmethod
    def from_pem(cls, pem: bytes) -> ReceiverKey:
        """Load the certificate's unencrypted PEM key; ``ConfigurationError`` unless it is ECDSA P-256."""
        return cls(load_certificate_key(pem))

    def open_share(self, sealed: bytes, context: ShareContext) -> PedersenShare:
        """The share ``context.dealer`` sealed to this key in ``context``.

        Raises:
            InvalidSealedShare: for every cause (module docstring), naming the dealer.
        """
        if len(sealed) != SEALED_SHARE_BYTES or sealed[0] != SEALED_SHARE_VERSION:
            raise InvalidSealedShare(dealer=context.dealer)
        try:
            # RFC 9180, section 6.1: pt = OpenBase(enc, skR, info, aad, ct).
            plaintext = _SUITE.decrypt(sealed[1:], self._private, info=context.info())
            return PedersenShare(decode_scalar(plaintext[:32]), decode_scalar(plaintext[32:]))
        except (InvalidTag, ValueError, CryptoError):
            raise InvalidSealedShare(dealer=context.dealer) from None
