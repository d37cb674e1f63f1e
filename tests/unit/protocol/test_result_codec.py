"""Signed results: canonical bytes, strict parsing, and every way a result can be refused."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alliance_psi.crypto.signing import SigningKey, load_public_key, verify
from alliance_psi.errors import ConfigurationError, InvalidRequest, InvalidSignature
from alliance_psi.protocol.model import MatchedToken, MemberResult
from alliance_psi.protocol.result_codec import decode_result, encode_result, open_result, sign_result

KEY = SigningKey.generate()


def result(**overrides) -> MemberResult:  # type: ignore[no-untyped-def]
    fields = {
        "round_id": "r-1",
        "member_id": "bank-a",
        "key_epoch": "e1",
        "threshold": 2,
        "submitted_count": 3,
        "matches": (MatchedToken(b"\x02" * 16, 3, (b"L2", b"L1")), MatchedToken(b"\x01" * 16, 2, ())),
    }
    fields.update(overrides)
    return MemberResult(**fields)  # type: ignore[arg-type]


def test_encoding_is_canonical_whatever_the_order() -> None:
    a = result()
    b = result(matches=tuple(reversed(a.matches)))
    c = result(matches=(MatchedToken(b"\x02" * 16, 3, (b"L1", b"L2")), MatchedToken(b"\x01" * 16, 2, ())))
    assert encode_result(a) == encode_result(b) == encode_result(c)
    decoded = decode_result(encode_result(a))
    assert [m.match_token for m in decoded.matches] == [b"\x01" * 16, b"\x02" * 16]
    assert decoded.matches[1].peer_labels == (b"L1", b"L2")


tokens = st.binary(min_size=16, max_size=16)
labels = st.lists(st.binary(min_size=0, max_size=40), max_size=3)


@settings(max_examples=60)
@given(
    st.dictionaries(tokens, st.tuples(st.integers(2, 50), labels), max_size=8),
    st.text(min_size=1, max_size=20),
    st.integers(0, 2**40),
)
def test_round_trip(entries, round_id, submitted) -> None:  # type: ignore[no-untyped-def]
    matches = tuple(MatchedToken(t, c, tuple(sorted(ls))) for t, (c, ls) in sorted(entries.items()))
    original = result(round_id=round_id, submitted_count=submitted, matches=matches)
    assert decode_result(encode_result(original)) == original


@pytest.mark.parametrize(
    "mutate, reason",
    [
        (lambda p: p[:-1], "truncated"),
        (lambda p: p + b"\x00", "not in canonical form"),
        (lambda p: b"APSI-RESULT\x02" + p[12:], "unknown format or version"),
        (lambda p: b"", "truncated"),
    ],
    ids=["truncated", "trailing", "version", "empty"],
)
def test_malformed_payloads_refused(mutate, reason) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidRequest, match=reason):
        decode_result(mutate(encode_result(result())))


def test_unsorted_payload_is_not_canonical() -> None:
    # Swap two matches by hand: a payload listing tokens out of order must be refused.
    two = encode_result(result())
    first, second = two.find(b"\x01" * 16), two.find(b"\x02" * 16)
    swapped = two[:first] + two[second:] + two[first:second]
    with pytest.raises(InvalidRequest, match="canonical"):
        decode_result(swapped)


def test_open_result_verifies_then_checks_who_it_is_for() -> None:
    payload, signature = sign_result(KEY, result())
    assert open_result(KEY.public_key, payload, signature, round_id="r-1", member_id="bank-a") == decode_result(payload)
    with pytest.raises(InvalidSignature, match="expected 'r-1' and 'bank-b'"):
        open_result(KEY.public_key, payload, signature, round_id="r-1", member_id="bank-b")
    with pytest.raises(InvalidSignature, match="does not verify"):
        open_result(SigningKey.generate().public_key, payload, signature, round_id="r-1", member_id="bank-a")
    tampered = payload[:-1] + bytes([payload[-1] ^ 1])
    with pytest.raises(InvalidSignature):
        open_result(KEY.public_key, tampered, signature, round_id="r-1", member_id="bank-a")


def test_signature_is_bound_to_its_context() -> None:
    signature = KEY.sign("report", b"doc")
    verify(KEY.public_key, "report", b"doc", signature)
    with pytest.raises(InvalidSignature):
        verify(KEY.public_key, "result", b"doc", signature)


def test_key_formats() -> None:
    pem = KEY.to_pem()
    again = SigningKey.from_pem(pem)
    assert again.public_key == KEY.public_key and len(KEY.key_id) == 16
    assert load_public_key(KEY.public_key.hex().encode()) == KEY.public_key
    assert load_public_key(KEY.public_key) == KEY.public_key
    with pytest.raises(ConfigurationError, match="32 raw bytes"):
        load_public_key(b"nonsense")
    with pytest.raises(ConfigurationError, match="not a PEM private key"):
        SigningKey.from_pem(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    assert KEY.to_pem().decode() not in repr(KEY)
