"""Match token and label key derivation, and sealed labels: committed vectors and every way to fail."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand
from hypothesis import given, settings
from hypothesis import strategies as st

from alliance_psi.crypto.derive import INFO_LABEL_KEY, INFO_MATCH_TOKEN, derive
from alliance_psi.crypto.labels import (
    MAX_LABEL_PLAINTEXT_BYTES,
    SEALED_LABEL_BYTES,
    LabelContext,
    OpenedLabel,
    ScopeSealer,
    _seal_with_nonce,
    open_label,
    seal_label,
    sealer_pseudonym,
)
from alliance_psi.errors import InvalidLabel, LabelTooLarge
from tests.helpers.vectors import load_json

VECTORS = load_json("alliance/derive_and_labels.json")["vectors"]
IDS = [v["key_epoch"] for v in VECTORS]


def test_vectors_present() -> None:
    assert len(VECTORS) == 3


@pytest.mark.parametrize("v", VECTORS, ids=IDS)
def test_derive_vectors(v: dict[str, str]) -> None:
    d = derive(bytes.fromhex(v["oprf_output"]))
    assert d.match_token == bytes.fromhex(v["match_token"])
    assert d.label_key == bytes.fromhex(v["label_key"])


@pytest.mark.parametrize("v", VECTORS, ids=IDS)
def test_seal_vectors(v: dict[str, str]) -> None:
    context = LabelContext(v["key_epoch"], bytes.fromhex(v["match_token"]), v["scope"])
    key, plaintext = bytes.fromhex(v["label_key"]), bytes.fromhex(v["label_plaintext"])
    sealer, nonce = bytes.fromhex(v["sealer"]), bytes.fromhex(v["nonce"])
    sealed = _seal_with_nonce(key, plaintext, context, sealer, nonce)
    assert sealed == bytes.fromhex(v["sealed_label"])
    assert open_label(key, sealed, context) == OpenedLabel(plaintext, sealer)


@settings(max_examples=50)
@given(st.binary(min_size=64, max_size=64))
def test_derive_is_hkdf_expand(y: bytes) -> None:
    d = derive(y)
    assert d.match_token == HKDFExpand(hashes.SHA512(), 16, INFO_MATCH_TOKEN).derive(y)
    assert d.label_key == HKDFExpand(hashes.SHA512(), 32, INFO_LABEL_KEY).derive(y)
    assert d.label_key[:16] != d.match_token
    assert "label_key" in repr(d) and d.label_key.hex() not in repr(d)


KEY = bytes(range(32))
SCOPE = "epoch-1/phone/labels"
CONTEXT = LabelContext("epoch-1", bytes(range(16)), SCOPE)


@pytest.mark.parametrize("size", [0, 1, 100, MAX_LABEL_PLAINTEXT_BYTES])
def test_sealed_size_is_fixed(size: int) -> None:
    sealed = seal_label(KEY, b"x" * size, CONTEXT)
    assert len(sealed) == SEALED_LABEL_BYTES == 301
    assert open_label(KEY, sealed, CONTEXT).plaintext == b"x" * size


def test_two_seals_differ() -> None:
    assert seal_label(KEY, b"same", CONTEXT) != seal_label(KEY, b"same", CONTEXT)


def test_too_large_label_rejected() -> None:
    with pytest.raises(LabelTooLarge, match=f"at most {MAX_LABEL_PLAINTEXT_BYTES}"):
        seal_label(KEY, b"x" * (MAX_LABEL_PLAINTEXT_BYTES + 1), CONTEXT)


def _flip(data: bytes, index: int) -> bytes:
    mutable = bytearray(data)
    mutable[index] ^= 0x01
    return bytes(mutable)


SEALED = seal_label(KEY, b'{"c":"wool_party"}', CONTEXT, sealer_key=b"s" * 32)
FAILURES = {
    "wrong key": (bytes(32), SEALED, CONTEXT),
    "wrong epoch": (KEY, SEALED, LabelContext("epoch-2", CONTEXT.match_token, SCOPE)),
    "wrong token": (KEY, SEALED, LabelContext("epoch-1", bytes(16), SCOPE)),
    "another scope": (KEY, SEALED, LabelContext("epoch-1", CONTEXT.match_token, "epoch-1/email,phone/labels")),
    "flipped version": (KEY, _flip(SEALED, 0), CONTEXT),
    "version 1": (KEY, b"\x01" + SEALED[1:], CONTEXT),
    "flipped sealer": (KEY, _flip(SEALED, 5), CONTEXT),
    "flipped nonce": (KEY, _flip(SEALED, 20), CONTEXT),
    "flipped ciphertext": (KEY, _flip(SEALED, 60), CONTEXT),
    "flipped tag": (KEY, _flip(SEALED, len(SEALED) - 1), CONTEXT),
    "truncated": (KEY, SEALED[:-1], CONTEXT),
    "extended": (KEY, SEALED + b"\x00", CONTEXT),
    "empty": (KEY, b"", CONTEXT),
    "short key": (KEY[:16], SEALED, CONTEXT),
}


@pytest.mark.parametrize("key, sealed, context", list(FAILURES.values()), ids=list(FAILURES))
def test_every_failure_is_the_same_error(key: bytes, sealed: bytes, context: LabelContext) -> None:
    assert open_label(KEY, SEALED, CONTEXT).plaintext == b'{"c":"wool_party"}'  # Only the change fails it.
    with pytest.raises(InvalidLabel) as info:
        open_label(key, sealed, context)
    assert str(info.value) == "sealed label could not be opened"


def test_bad_padding_rejected_even_when_authentic() -> None:
    # A sealer that writes a length larger than the padded size is refused.
    from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

    nonce, sealer = bytes(12), bytes(16)
    padded = (300).to_bytes(2, "big") + bytes(254)
    body = ChaCha20Poly1305(KEY).encrypt(nonce, padded, CONTEXT.associated_data(sealer))
    with pytest.raises(InvalidLabel):
        open_label(KEY, b"\x02" + sealer + nonce + body, CONTEXT)
    padded = (1).to_bytes(2, "big") + b"a" + b"\x00" * 252 + b"\x01"
    body = ChaCha20Poly1305(KEY).encrypt(nonce, padded, CONTEXT.associated_data(sealer))
    with pytest.raises(InvalidLabel):
        open_label(KEY, b"\x02" + sealer + nonce + body, CONTEXT)


def test_synthetic_nonce_is_stable_per_member_scope_and_plaintext() -> None:
    member_a, member_b = b"a" * 32, b"b" * 32
    other_scope = LabelContext("epoch-1", CONTEXT.match_token, "epoch-1/email/labels")
    first = seal_label(KEY, b"same", CONTEXT, sealer_key=member_a)
    assert seal_label(KEY, b"same", CONTEXT, sealer_key=member_a) == first
    assert seal_label(KEY, b"same", CONTEXT, sealer_key=member_b)[17:29] != first[17:29]
    assert seal_label(KEY, b"other", CONTEXT, sealer_key=member_a)[17:29] != first[17:29]
    assert seal_label(KEY, b"same", other_scope, sealer_key=member_a)[17:29] != first[17:29]
    assert open_label(KEY, first, CONTEXT) == OpenedLabel(b"same", sealer_pseudonym(member_a, CONTEXT))


def test_the_sealer_pseudonym_is_one_per_member_token_and_scope() -> None:
    # A member recognises its own label, and two labels of one honest sealer carry one pseudonym,
    # whatever their plaintexts; other members, tokens and scopes give unrelated pseudonyms.
    member_a, member_b = b"a" * 32, b"b" * 32
    mine = sealer_pseudonym(member_a, CONTEXT)
    assert open_label(KEY, seal_label(KEY, b"one", CONTEXT, sealer_key=member_a), CONTEXT).sealer == mine
    assert open_label(KEY, seal_label(KEY, b"two", CONTEXT, sealer_key=member_a), CONTEXT).sealer == mine
    others = {
        sealer_pseudonym(member_b, CONTEXT),
        sealer_pseudonym(member_a, LabelContext("epoch-1", bytes(16), SCOPE)),
        sealer_pseudonym(member_a, LabelContext("epoch-1", CONTEXT.match_token, "epoch-1/email/labels")),
    }
    assert mine not in others and len(others) == 3 and len(mine) == 16


SYNTHETIC = load_json("alliance/derive_and_labels.json")["synthetic_nonces"]


def test_synthetic_nonce_vectors_present() -> None:
    assert len(SYNTHETIC) == 3


@pytest.mark.parametrize("v", SYNTHETIC, ids=[f"{v['sealer_key'][:6]}-{v['scope']}" for v in SYNTHETIC])
def test_synthetic_nonce_vectors(v: dict[str, str]) -> None:
    context = LabelContext(v["key_epoch"], bytes.fromhex(v["match_token"]), v["scope"])
    key, plaintext = bytes.fromhex(v["label_key"]), bytes.fromhex(v["label_plaintext"])
    sealed = seal_label(key, plaintext, context, sealer_key=bytes.fromhex(v["sealer_key"]))
    assert sealed[1:17] == bytes.fromhex(v["sealer"]) and sealed[17:29] == bytes.fromhex(v["nonce"])
    assert sealed == bytes.fromhex(v["sealed_label"])
    scoped = ScopeSealer(bytes.fromhex(v["sealer_key"]), v["key_epoch"], v["scope"])
    assert scoped.seal(key, context.match_token, plaintext) == sealed
    assert scoped.pseudonym(context.match_token) == bytes.fromhex(v["sealer"])
    assert open_label(key, sealed, context) == OpenedLabel(plaintext, bytes.fromhex(v["sealer"]))


def test_the_same_label_in_two_scopes_looks_unrelated_to_the_coordinator() -> None:
    # One member, one identifier, one label, two scopes of the epoch: the coordinator, which keeps
    # both, cannot tell they are equal; nor can it tell two members' equal labels apart from others.
    in_phone, in_both, other_member = (bytes.fromhex(v["sealed_label"]) for v in SYNTHETIC)
    assert in_phone != in_both and in_phone != other_member
    assert sum(x == y for x, y in zip(in_phone[1:], in_both[1:], strict=True)) < SEALED_LABEL_BYTES // 16
    assert len(in_phone) == len(in_both) == SEALED_LABEL_BYTES


def test_one_scope_sealer_seals_each_label_as_seal_label_does_alone() -> None:
    # A node seals a whole set with one ScopeSealer, which keeps the padding of the last plaintext:
    # every label comes out as seal_label seals it alone, whatever was sealed before it.
    member = b"a" * 32
    sealer = ScopeSealer(member, "epoch-1", SCOPE)
    for token, plaintext in [
        (CONTEXT.match_token, b"one"),
        (bytes(16), b"one"),
        (bytes(16), b"two"),
        (CONTEXT.match_token, b""),
        (CONTEXT.match_token, b"one"),
    ]:
        context = LabelContext("epoch-1", token, SCOPE)
        assert sealer.seal(KEY, token, plaintext) == seal_label(KEY, plaintext, context, sealer_key=member)
        assert sealer.pseudonym(token) == sealer_pseudonym(member, context)
    with pytest.raises(LabelTooLarge):
        sealer.seal(KEY, bytes(16), b"x" * (MAX_LABEL_PLAINTEXT_BYTES + 1))
    with pytest.raises(ValueError, match="match token"):
        sealer.seal(KEY, bytes(15), b"one")
    with pytest.raises(ValueError, match="label key"):
        sealer.seal(KEY[:31], bytes(16), b"one")
    assert (
        open_label(KEY, sealer.seal(KEY, bytes(16), b"two"), LabelContext("epoch-1", bytes(16), SCOPE)).plaintext
        == b"two"
    )
