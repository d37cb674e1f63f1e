"""Key-ceremony shares sealed with HPKE to the receiver's certificate key: each binding refuses alone."""

from __future__ import annotations

import dataclasses
import hashlib

import pytest
from cryptography.hazmat.primitives import hpke, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from alliance_psi.crypto.pedersen import ORDER, PedersenShare, encode_scalar
from alliance_psi.crypto.sealed_shares import (
    SEALED_SHARE_BYTES,
    SEALED_SHARE_VERSION,
    ReceiverKey,
    ShareContext,
    seal_share,
)
from alliance_psi.errors import ConfigurationError, InvalidSealedShare

SHARE = PedersenShare(ORDER - 2, 12345)
CONTEXT = ShareContext(
    session=hashlib.sha256(b"session").digest(),
    dealing=hashlib.sha256(b"dkg-1's round-1 payload").digest(),
    dealer="dkg-1",
    receiver="dkg-2",
)
REFUSED = "the share custodian dkg-1 sealed to this custodian does not open with this custodian's certificate key"


def receiver() -> tuple[ReceiverKey, bytes]:
    """A receiver's key and its DER SubjectPublicKeyInfo (what a dealer's operator enrols)."""
    private = ec.generate_private_key(ec.SECP256R1())
    der = private.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return ReceiverKey(private), der


def test_a_share_opens_with_the_receivers_key_in_its_context() -> None:
    key, der = receiver()
    sealed = seal_share(SHARE, der, CONTEXT)
    assert len(sealed) == SEALED_SHARE_BYTES == 146 and sealed[0] == SEALED_SHARE_VERSION
    assert key.open_share(sealed, CONTEXT) == SHARE
    # Fresh randomness each time (a new HPKE encapsulation), and no scalar of the share in the clear.
    again = seal_share(SHARE, der, CONTEXT)
    assert again != sealed and key.open_share(again, CONTEXT) == SHARE
    assert encode_scalar(SHARE.value) not in sealed and encode_scalar(SHARE.blinding) not in sealed


def test_info_binds_the_session_the_dealing_and_both_names_length_prefixed() -> None:
    assert CONTEXT.info() == (
        b"alliance-psi/v1 key ceremony share\x00" + CONTEXT.session + CONTEXT.dealing + b"\x05dkg-1" + b"\x05dkg-2"
    )


@pytest.mark.parametrize(
    "context",
    [
        dataclasses.replace(CONTEXT, session=hashlib.sha256(b"another session").digest()),
        dataclasses.replace(CONTEXT, dealing=hashlib.sha256(b"another round-1 payload").digest()),
        dataclasses.replace(CONTEXT, dealer="dkg-2", receiver="dkg-1"),
        dataclasses.replace(CONTEXT, receiver="dkg-3"),
        # The names are length-prefixed: moving characters between them changes the info.
        dataclasses.replace(CONTEXT, dealer="dkg-1d", receiver="kg-2"),
    ],
    ids=["other session", "other dealing", "names swapped", "other receiver", "names shifted"],
)
def test_a_share_does_not_open_in_another_context(context: ShareContext) -> None:
    key, der = receiver()
    sealed = seal_share(SHARE, der, CONTEXT)
    with pytest.raises(InvalidSealedShare, match=f"the share custodian {context.dealer} sealed") as caught:
        key.open_share(sealed, context)
    assert caught.value.dealer == context.dealer


def test_a_share_does_not_open_with_another_key() -> None:
    # Another key under the same name: what the CA holder gets by issuing the receiver's name again.
    sealed = seal_share(SHARE, receiver()[1], CONTEXT)
    with pytest.raises(InvalidSealedShare, match=REFUSED) as caught:
        receiver()[0].open_share(sealed, CONTEXT)
    assert caught.value.dealer == "dkg-1"


def _damaged(sealed: bytes) -> list[bytes]:
    flipped = [bytes([*sealed[:i], sealed[i] ^ 1, *sealed[i + 1 :]]) for i in (1, 40, 66, 100, len(sealed) - 1)]
    truncated = [sealed[:n] for n in (0, 1, 66, 130, len(sealed) - 1)]
    return [*truncated, sealed + b"\x00", bytes([0x02]) + sealed[1:], *flipped]


def test_a_damaged_truncated_or_extended_share_is_refused_with_one_message() -> None:
    key, der = receiver()
    sealed = seal_share(SHARE, der, CONTEXT)
    messages = set()
    for bad in _damaged(sealed):
        with pytest.raises(InvalidSealedShare) as caught:
            key.open_share(bad, CONTEXT)
        messages.add(str(caught.value))
    assert messages == {REFUSED}  # The dealer learns nothing about which check failed.


def test_a_seal_that_opens_to_something_other_than_a_share_is_refused() -> None:
    # Sealed correctly, by a dealer, around scalars that are not reduced modulo the group order.
    key, der = receiver()
    public = serialization.load_der_public_key(der)
    assert isinstance(public, ec.EllipticCurvePublicKey)
    suite = hpke.Suite(hpke.KEM.P256, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_128_GCM)
    not_reduced = bytes([SEALED_SHARE_VERSION]) + suite.encrypt(b"\xff" * 64, public, info=CONTEXT.info())
    assert len(not_reduced) == SEALED_SHARE_BYTES
    with pytest.raises(InvalidSealedShare, match=REFUSED):
        key.open_share(not_reduced, CONTEXT)


def test_sealing_to_a_key_that_is_not_p256_is_a_configuration_error() -> None:
    p384 = ec.generate_private_key(ec.SECP384R1()).public_key()
    ed = ed25519.Ed25519PrivateKey.generate().public_key()
    for key in (p384, ed):
        der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        with pytest.raises(ConfigurationError, match="the key enrolled for dkg-2 is not ECDSA P-256"):
            seal_share(SHARE, der, CONTEXT)
    with pytest.raises(ConfigurationError, match="the key enrolled for dkg-2 is not a DER public key"):
        seal_share(SHARE, b"not a key", CONTEXT)


def test_contexts_refuse_bad_digests_and_names() -> None:
    with pytest.raises(ValueError, match="32-byte digests"):
        dataclasses.replace(CONTEXT, session=b"short")
    with pytest.raises(ValueError, match="32-byte digests"):
        dataclasses.replace(CONTEXT, dealing=b"")
    for name in ("", "x" * 256):
        with pytest.raises(ValueError, match="1 to 255 bytes"):
            dataclasses.replace(CONTEXT, receiver=name)


def test_the_receiver_key_hides_itself() -> None:
    assert "EllipticCurvePrivateKey" not in repr(receiver()[0])
