"""Sealed labels: what a member says about an identifier, readable only by other holders of it.

A label is sealed with ChaCha20-Poly1305 under the label key derived from the identifier's OPRF
output, so only a member holding the same identifier can open it. The plaintext is padded to a
fixed size so that the coordinator, which stores sealed labels, learns nothing from their length.

Wire format (version 2), always ``SEALED_LABEL_BYTES`` long::

    0x02 || sealer (16) || nonce (12) || ChaCha20-Poly1305(key, nonce, pad(plaintext), aad)
    pad(p) = I2OSP(len(p), 2) || p || zeros, to PADDED_PLAINTEXT_BYTES
    aad    = "alliance-psi/v2 label" || lp(key_epoch) || match_token || lp(scope) || sealer
    lp(s)  = I2OSP(len(s), 2) || s (UTF-8)

The associated data binds a label to its key epoch, its token and the **scope** it was submitted
in (``Round.set_scope``: key epoch, identifier types, label sharing). A label stays at the
coordinator from round to round within its scope (submissions are deltas), so it is bound to the
scope, not to one round: a label cannot be replayed into another scope (it does not open there),
a withdrawn identifier's label is deleted by the member's next delta, and rotating the epoch
makes every old label unusable, as it does old tokens.

``sealer`` is the sealing member's **pseudonym for this token in this scope**, in the clear
beside the ciphertext and authenticated as part of the associated data::

    sealer = HMAC-SHA256(sealer_key, "alliance-psi/v2 label-sealer" || lp(scope) || match_token)[:16]

``sealer_key`` is a secret of the sealing member node (its label-nonce key), never shared. Two
labels of one honest sealer for one token and scope carry the same pseudonym, so a reader can
tell duplicates apart from labels of distinct members, and a member recognises its own label
(it recomputes its pseudonym) however the bytes around it were changed: changing the pseudonym
breaks the tag. Pseudonyms of one member for different tokens or scopes are unrelated, so they
do not say who sealed, nor link one member's labels across tokens. A member that holds the label
key can seal under any pseudonym it likes: pseudonyms tell honest sealers apart, they do not
count members (docs/design.md).

A member node seals with a synthetic nonce over the same key::

    nonce = HMAC-SHA256(sealer_key, "alliance-psi/v2 label-nonce" || aad || plaintext)[:12]

so a resent chunk gives the same bytes, while the same label of the same identifier in two
scopes of an epoch gives unrelated bytes (the scope is in the associated data, and so in the
nonce and the pseudonym): the coordinator, which keeps both, cannot see they are equal. Without a
``sealer_key`` (tests, the self-check) nonce and pseudonym are random. Every failure to open
raises the same ``InvalidLabel``, so a peer learns nothing about which check failed.
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
    "LABEL_VERSION",
    "MAX_LABEL_PLAINTEXT_BYTES",
    "PADDED_PLAINTEXT_BYTES",
    "SEALED_LABEL_BYTES",
    "SEALER_BYTES",
    "LabelContext",
    "OpenedLabel",
    "ScopeSealer",
    "open_label",
    "seal_label",
    "sealer_pseudonym",
]

LABEL_VERSION = 0x02
SEALER_BYTES = 16
NONCE_BYTES = 12
TAG_BYTES = 16
PADDED_PLAINTEXT_BYTES = 256
MAX_LABEL_PLAINTEXT_BYTES = PADDED_PLAINTEXT_BYTES - 2
SEALED_LABEL_BYTES = 1 + SEALER_BYTES + NONCE_BYTES + PADDED_PLAINTEXT_BYTES + TAG_BYTES
_VERSION_BYTE = bytes([LABEL_VERSION])
_AAD_PREFIX = b"alliance-psi/v2 label"
_SEALER_PREFIX = b"alliance-psi/v2 label-sealer"
_NONCE_PREFIX = b"alliance-psi/v2 label-nonce"
_NONCE_AT = 1 + SEALER_BYTES
_BODY_AT = _NONCE_AT + NONCE_BYTES


def _lp(text: str) -> bytes:
    encoded = text.encode("utf-8")
    return len(encoded).to_bytes(2, "big") + encoded


@dataclass(frozen=True, slots=True)
class LabelContext:
    """What a sealed label is bound to: the key epoch, the token, and the scope it is submitted in
    (``Round.set_scope``); a label opens only in the context it was sealed in."""

    key_epoch: str
    match_token: bytes
    scope: str

    def __post_init__(self) -> None:
        if len(self.match_token) != MATCH_TOKEN_BYTES:
            raise ValueError(f"match token must be {MATCH_TOKEN_BYTES} bytes")

    def associated_data(self, sealer: bytes) -> bytes:
        """The AEAD associated data for this context and ``sealer``'s pseudonym."""
        return _AAD_PREFIX + _lp(self.key_epoch) + self.match_token + _lp(self.scope) + sealer


@dataclass(frozen=True, slots=True)
class OpenedLabel:
    """An opened label: its plaintext and the sealer's pseudonym for the token (``sealer_pseudonym``)."""

    plaintext: bytes
    sealer: bytes


def sealer_pseudonym(sealer_key: bytes, context: LabelContext) -> bytes:
    """The pseudonym a member with ``sealer_key`` seals ``context``'s token under, in its scope.

    Deterministic, so a member recognises its own label; unrelated across tokens and scopes, and
    unlinkable to the member without ``sealer_key`` (HMAC-SHA256 as a PRF).
    """
    message = _SEALER_PREFIX + _lp(context.scope) + context.match_token
    return hmac.digest(sealer_key, message, "sha256")[:SEALER_BYTES]


def _pad(plaintext: bytes) -> bytes:
    if len(plaintext) > MAX_LABEL_PLAINTEXT_BYTES:
        raise LabelTooLarge(f"label is {len(plaintext)} bytes; at most {MAX_LABEL_PLAINTEXT_BYTES} fit the padded size")
    return len(plaintext).to_bytes(2, "big") + plaintext + bytes(MAX_LABEL_PLAINTEXT_BYTES - len(plaintext))


def _check_label_key(label_key: bytes) -> None:
    if len(label_key) != LABEL_KEY_BYTES:
        raise ValueError(f"label key must be {LABEL_KEY_BYTES} bytes")


def _seal_with_nonce(label_key: bytes, plaintext: bytes, context: LabelContext, sealer: bytes, nonce: bytes) -> bytes:
    # Private seam for committed vectors; seal_label derives the sealer and nonce itself.
    _check_label_key(label_key)
    aad = context.associated_data(sealer)
    return _VERSION_BYTE + sealer + nonce + ChaCha20Poly1305(label_key).encrypt(nonce, _pad(plaintext), aad)


class ScopeSealer:
    """``seal_label`` with one ``sealer_key`` for the tokens of one key epoch and scope, many at a time.

    What the associated data and the two HMACs (pseudonym and synthetic nonce) hold before the
    token is computed once: the HMAC states over those prefixes are copied per label, and the
    padding of the last plaintext is kept. ``seal`` gives the same bytes as ``seal_label`` (which
    uses it) and ``pseudonym`` those of ``sealer_pseudonym``, for the same key, epoch and scope.
    """

    __slots__ = ("_aad_head", "_nonce", "_padded", "_plaintext", "_pseudonym", "_scope")

    def __init__(self, sealer_key: bytes, key_epoch: str, scope: str) -> None:
        self._aad_head = _AAD_PREFIX + _lp(key_epoch)
        self._scope = _lp(scope)
        # sealer = HMAC(sealer_key, _SEALER_PREFIX || lp(scope) || token); nonce = HMAC(sealer_key,
        # _NONCE_PREFIX || aad || plaintext), where aad starts with _AAD_PREFIX || lp(key_epoch).
        self._pseudonym = hmac.new(sealer_key, _SEALER_PREFIX + self._scope, "sha256")
        self._nonce = hmac.new(sealer_key, _NONCE_PREFIX + self._aad_head, "sha256")
        self._plaintext, self._padded = b"", _pad(b"")

    def pseudonym(self, match_token: bytes) -> bytes:
        """``sealer_pseudonym`` for ``match_token`` in this sealer's scope."""
        mac = self._pseudonym.copy()
        mac.update(match_token)
        return mac.digest()[:SEALER_BYTES]

    def seal(self, label_key: bytes, match_token: bytes, plaintext: bytes) -> bytes:
        """The sealed label of ``plaintext`` for ``match_token``, as ``seal_label`` with this sealer's key.

        Raises ``LabelTooLarge`` if it does not fit, ``ValueError`` for a token or key of the wrong size.
        """
        if len(match_token) != MATCH_TOKEN_BYTES:
            raise ValueError(f"match token must be {MATCH_TOKEN_BYTES} bytes")
        _check_label_key(label_key)
        if plaintext != self._plaintext:  # Most labels of a set are equal: pad each one once.
            self._padded, self._plaintext = _pad(plaintext), plaintext
        sealer = self.pseudonym(match_token)
        tail = match_token + self._scope + sealer  # aad = _aad_head || tail
        mac = self._nonce.copy()
        mac.update(tail + plaintext)
        nonce = mac.digest()[:NONCE_BYTES]
        body = ChaCha20Poly1305(label_key).encrypt(nonce, self._padded, self._aad_head + tail)
        return _VERSION_BYTE + sealer + nonce + body


def seal_label(label_key: bytes, plaintext: bytes, context: LabelContext, *, sealer_key: bytes | None = None) -> bytes:
    """Seal ``plaintext`` (at most ``MAX_LABEL_PLAINTEXT_BYTES``) for the holders of one identifier.

    Returns exactly ``SEALED_LABEL_BYTES`` bytes. Raises ``LabelTooLarge`` if it does not fit.

    With ``sealer_key`` (a secret of the sealing member, never shared) the pseudonym is
    ``sealer_pseudonym`` and the nonce synthetic (see the module docstring): a member that resends
    a chunk after a dropped connection produces the same bytes, while a changed label, another
    scope or another member gets a different nonce (no nonce reuse under the shared label key)
    and unrelated ciphertext. Without it both are random. ``ScopeSealer`` seals many labels of
    one scope with one key.
    """
    if sealer_key is None:
        return _seal_with_nonce(label_key, plaintext, context, os.urandom(SEALER_BYTES), os.urandom(NONCE_BYTES))
    return ScopeSealer(sealer_key, context.key_epoch, context.scope).seal(label_key, context.match_token, plaintext)


def open_label(label_key: bytes, sealed: bytes, context: LabelContext) -> OpenedLabel:
    """Open a sealed label sealed in ``context``; raise ``InvalidLabel`` for every kind of failure.

    The returned sealer pseudonym is authenticated: it is the one the label was sealed under.
    """
    if len(sealed) != SEALED_LABEL_BYTES or sealed[0] != LABEL_VERSION or len(label_key) != LABEL_KEY_BYTES:
        raise InvalidLabel()
    sealer, nonce, body = sealed[1:_NONCE_AT], sealed[_NONCE_AT:_BODY_AT], sealed[_BODY_AT:]
    try:
        padded = ChaCha20Poly1305(label_key).decrypt(nonce, body, context.associated_data(sealer))
    except (InvalidTag, ValueError):
        raise InvalidLabel() from None
    length = int.from_bytes(padded[:2], "big")
    # The padding is authenticated, but a sealer that wrote a bad length or non-zero padding is
    # refused all the same: one canonical plaintext per label.
    if length > MAX_LABEL_PLAINTEXT_BYTES or any(padded[2 + length :]):
        raise InvalidLabel()
    return OpenedLabel(padded[2 : 2 + length], sealer)
