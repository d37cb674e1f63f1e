"""Split key: K custodian shares whose product is the epoch key, applied in any order."""

from __future__ import annotations

import itertools

import pytest

from alliance_psi.crypto import oprf
from alliance_psi.crypto.key_shares import KeyShare, combine_shares_for_testing
from alliance_psi.errors import ConfigurationError, MalformedElement

INPUTS = [b"phone\x00+8613915274680", b"id_card\x0044030519870614357X", b"\x00", b""]


def chain(shares: list[KeyShare], element: bytes) -> bytes:
    for share in shares:
        (element,) = share.blind_evaluate([element])
    return element


@pytest.mark.parametrize("x", INPUTS, ids=["phone", "id_card", "zero-byte", "empty"])
def test_three_shares_equal_one_key_in_any_order(x: bytes) -> None:
    shares = [KeyShare.generate("epoch-1") for _ in range(3)]
    key = combine_shares_for_testing(shares)
    expected = oprf.evaluate(key, x)
    for order in itertools.permutations(shares):
        blinded = oprf.blind(x)
        evaluated = chain(list(order), blinded.blinded_element)
        assert oprf.finalize(x, blinded.blind, evaluated) == expected


def test_one_share_is_plain_rfc9497() -> None:
    share = KeyShare.generate("e")
    blinded = oprf.blind(b"abc")
    evaluated = share.blind_evaluate([blinded.blinded_element])[0]
    assert evaluated == oprf.blind_evaluate(share.scalar, blinded.blinded_element)
    assert oprf.finalize(b"abc", blinded.blind, evaluated) == oprf.evaluate(share.scalar, b"abc")


def test_missing_share_gives_a_different_output() -> None:
    shares = [KeyShare.generate("e") for _ in range(3)]
    blinded = oprf.blind(b"abc")
    full = oprf.finalize(b"abc", blinded.blind, chain(shares, blinded.blinded_element))
    partial = oprf.finalize(b"abc", blinded.blind, chain(shares[:2], blinded.blinded_element))
    assert full != partial


def test_seeded_share_is_deterministic_and_epoch_bound() -> None:
    seed = bytes(range(32))
    assert KeyShare.from_seed(seed, "e1") == KeyShare.from_seed(seed, "e1")
    assert KeyShare.from_seed(seed, "e1").scalar != KeyShare.from_seed(seed, "e2").scalar


def test_round_trip_encoding() -> None:
    share = KeyShare.generate("2026-Q4 第一期")
    assert KeyShare.from_bytes(share.to_bytes()) == share


@pytest.mark.parametrize(
    "data, reason",
    [
        (b"", "bad magic"),
        (b"APSI-KEYSHARE\x02" + bytes(40), "bad magic"),
        (b"APSI-KEYSHARE\x01", "truncated"),
        (b"APSI-KEYSHARE\x01\x13ristretto255-SHA512\x01e" + bytes(31), "truncated"),
        (b"APSI-KEYSHARE\x01\x0bP256-SHA256\x01e" + bytes(32), "unknown OPRF suite"),
        (b"APSI-KEYSHARE\x01\x13ristretto255-SHA512\x01e" + bytes(32), "zero scalar"),
        (b"APSI-KEYSHARE\x01\x13ristretto255-SHA512\x01e" + b"\xff" * 32, "not reduced"),
    ],
    ids=["empty", "version-2", "no-body", "short-scalar", "unknown-suite", "zero", "unreduced"],
)
def test_bad_encodings_rejected(data: bytes, reason: str) -> None:
    with pytest.raises(ConfigurationError, match=reason):
        KeyShare.from_bytes(data)


def test_repr_hides_the_scalar() -> None:
    share = KeyShare.generate("e")
    assert share.scalar.hex() not in repr(share)


def test_custodian_rejects_a_batch_with_a_malformed_element() -> None:
    share = KeyShare.generate("e")
    good = oprf.blind(b"a").blinded_element
    with pytest.raises(MalformedElement, match="identity"):
        share.blind_evaluate([good, bytes(32)])
    with pytest.raises(MalformedElement, match="must be 32 bytes"):
        share.blind_evaluate([good[:31]])


def test_combining_mismatched_shares_refused() -> None:
    with pytest.raises(ConfigurationError, match="different epochs"):
        combine_shares_for_testing([KeyShare.generate("a"), KeyShare.generate("b")])
    with pytest.raises(ConfigurationError, match="no key shares"):
        combine_shares_for_testing([])
