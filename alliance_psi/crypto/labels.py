"""Sealed labels: what a member says about an identifier, readable only by other holders of it.

A label is sealed with ChaCha20-Poly1305 under the label key derived from the identifier's OPRF
output, so only a member holding the same identifier can open it. The plaintext is padded to a
fixed size so that the coordinator, which stores sealed labels, learns nothing from their length.

Wire format (version 1), always ``SEALED_LABEL_BYTES`` long::

    0x01 || nonce (12) || ChaCha20-Poly1305(key, nonce, pad(plaintext), aad)
    pad(p) = I2OSP(len(p), 2) || p || zeros, to PADDED_PLAINTEXT_BYTES
    aad    = "alliance-psi/v1 label" || I2OSP(len(key_epoch), 2) || key_epoch || match_token

The associated data binds a label to its key epoch and token. A label stays at the coordinator
from round to round within the epoch (submissions are deltas), so it is bound to the epoch, not
to one round: a withdrawn identifier's label is deleted by the member's next delta, and rotating
the epoch makes every old label unusable, as it does old tokens.

A member node seals with a synthetic nonce (``seal_label``'s ``nonce_key``) bound to the scope
the label is submitted in (``Round.set_scope``)::

    nonce = HMAC-SHA256(nonce_key, "alliance-psi/v1 label-nonce" || I2OSP(len(scope), 2) || scope
                                   || aad || plaintext)[:12]

so a resent chunk gives the same bytes, while the same label of the same identifier in two
scopes of an epoch gives unrelated bytes: the coordinator, which keeps both, cannot see they are
equal. The scope goes into the nonce only, not the associated data, so opening needs no scope.
Every failure to open raises the same ``InvalidLabel``, so a peer learns nothing about which
check failed.
"""

from __future__ import annotations

import hmac
import os
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from alliance_psi.crypto.derive import LABEL_KEY_BYTES, MATCH_TOKEN_BYTES
from alliance_psi.errors import InvalidLabel, LabelTooLarge

__all__ = [
    "MAX_LABEL_PLAINTEXT_BYTES",
    "PADDED_PLAINTEXT_BYTES",
    "SEALED_LABEL_BYTES",
    "LabelContext",
    "open_label",
    "seal_label",
]

VERSION = 0x01
NONCE_BYTES = 12
TAG_BYTES = 16
PADDED_PLAINTEXT_BYTES = 256
MAX_LABEL_PLAINTEXT_BYTES = PADDED_PLAINTEXT_BYTES - 2
SEALED_LABEL_BYTES = 1 + NONCE_BYTES + PADDED_PLAINTEXT_BYTES + TAG_BYTES
_VERSION_BYTE = bytes([VERSION])
_AAD_PREFIX = b"alliance-psi/v1 label"
_NONCE_PREFIX = b"alliance-psi/v1 label-nonce"


@dataclass(frozen=True, slots=True)
class LabelContext:
    """What a sealed label is bound to: the key epoch its token belongs to and the token."""

    key_epoch: str
    match_token: bytes

    def associated_data(self) -> bytes:
        """The AEAD associated data for this context."""
        key_epoch = self.key_epoch.encode("utf-8")
        if len(self.match_token) != MATCH_TOKEN_BYTES:
            raise ValueError(f"match token must be {MATCH_TOKEN_BYTES} bytes")
        return _AAD_PREFIX + len(key_epoch).to_bytes(2, "big") + key_epoch + self.match_token


def _pad(plaintext: bytes) -> bytes:
    if len(plaintext) > MAX_LABEL_PLAINTEXT_BYTES:
        raise LabelTooLarge(f"label is {len(plaintext)} bytes; at most {MAX_LABEL_PLAINTEXT_BYTES} fit the padded size")
    return len(plaintext).to_bytes(2, "big") + plaintext + bytes(MAX_LABEL_PLAINTEXT_BYTES - len(plaintext))


def _seal_with_nonce(label_key: bytes, plaintext: bytes, context: LabelContext, nonce: bytes) -> bytes:
    # Private seam for committed vectors; seal_label draws the nonce itself.
    return _seal(label_key, plaintext, context.associated_data(), nonce)


def _seal(label_key: bytes, plaintext: bytes, aad: bytes, nonce: bytes) -> bytes:
    if len(label_key) != LABEL_KEY_BYTES:
        raise ValueError(f"label key must be {LABEL_KEY_BYTES} bytes")
    return _VERSION_BYTE + nonce + ChaCha20Poly1305(label_key).encrypt(nonce, _pad(plaintext), aad)


def seal_label(
    label_key: bytes,
    plaintext: bytes,
    context: LabelContext,
    *,
    nonce_key: bytes | None = None,
    scope: str | None = None,
) -> bytes:
    """Seal ``plaintext`` (at most ``MAX_LABEL_PLAINTEXT_BYTES``) for the holders of one identifier.

    Returns exactly ``SEALED_LABEL_BYTES`` bytes. Raises ``LabelTooLarge`` if it does not fit.

    Without ``nonce_key`` the 96-bit nonce is random. With it (a secret of the sealing member,
    never shared) the nonce is synthetic (see the module docstring) over the ``scope`` the label
    is submitted in, the context and the plaintext: a member that resends a chunk after a dropped
    connection produces the same bytes, while a changed label, another scope or another member
    gets a different nonce (no nonce reuse under the shared label key) and unrelated ciphertext.
    Raises ``ValueError`` for a ``nonce_key`` without a ``scope``.
    """
    aad = context.associated_data()
    if nonce_key is None:
        nonce = os.urandom(NONCE_BYTES)
    elif scope is None:
        raise ValueError("a synthetic nonce needs the scope the label is submitted in")
    else:
        encoded = scope.encode("utf-8")
        message = _NONCE_PREFIX + len(encoded).to_bytes(2, "big") + encoded + aad + plaintext
        nonce = hmac.digest(nonce_key, message, "sha256")[:NONCE_BYTES]
    return _seal(label_key, plaintext, aad, nonce)


def open_label(label_key: bytes, sealed: bytes, context: LabelContext) -> bytes:
    """Open a sealed label; raise ``InvalidLabel`` for every kind of failure."""
    if len(sealed) != SEALED_LABEL_BYTES or sealed[0] != VERSION or len(label_key) != LABEL_KEY_BYTES:
        raise InvalidLabel()
    nonce, body = sealed[1 : 1 + NONCE_BYTES], sealed[1 + NONCE_BYTES :]
    try:
        padded = ChaCha20Poly1305(label_key).decrypt(nonce, body, context.associated_data())
    except (InvalidTag, ValueError):
        raise InvalidLabel() from None
    length = int.from_bytes(padded[:2], "big")
    # The padding is authenticated, but a sealer that wrote a bad length or non-zero padding is
    # refused all the same: one canonical plaintext per label.
    if length > MAX_LABEL_PLAINTEXT_BYTES or any(padded[2 + length :]):
        raise InvalidLabel()
    return padded[2 : 2 + length]
