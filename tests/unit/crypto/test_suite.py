"""ristretto255 element and scalar handling: RFC 9496 Appendix A, and everything a peer could send wrong."""

from __future__ import annotations

import hashlib

import pysodium
import pytest

from alliance_psi.crypto.suite import RISTRETTO255_SHA512 as SUITE
from alliance_psi.crypto.suite import get_suite
from alliance_psi.errors import ConfigurationError, MalformedElement, MalformedScalar
from tests.helpers.vectors import load_json

RFC9496 = load_json("rfc9496/ristretto255.json")
ORDER = 2**252 + 27742317777372353535851937790883648493


def scalar(n: int) -> bytes:
    return n.to_bytes(32, "little")


def test_vectors_present() -> None:
    assert len(RFC9496["multiples_of_generator"]) == 16
    assert len(RFC9496["invalid_encodings"]) == 29
    assert len(RFC9496["one_way_map"]) == 7


@pytest.mark.parametrize("k", range(1, 16))
def test_multiples_of_generator(k: int) -> None:
    expected = bytes.fromhex(RFC9496["multiples_of_generator"][k])
    assert SUITE.scalar_mult_base(scalar(k)) == expected
    assert SUITE.deserialize_element(expected) == expected


def test_identity_is_rejected() -> None:
    identity = bytes.fromhex(RFC9496["multiples_of_generator"][0])
    with pytest.raises(MalformedElement, match="identity"):
        SUITE.deserialize_element(identity)
    with pytest.raises(MalformedElement):
        SUITE.scalar_mult(scalar(5), identity)


@pytest.mark.parametrize(
    "case",
    RFC9496["invalid_encodings"],
    ids=[f"{c['reason']}-{c['encoding'][:8]}" for c in RFC9496["invalid_encodings"]],
)
def test_invalid_encodings_rejected(case: dict[str, str]) -> None:
    encoding = bytes.fromhex(case["encoding"])
    with pytest.raises(MalformedElement, match="not a canonical ristretto255 encoding"):
        SUITE.deserialize_element(encoding)
    with pytest.raises(MalformedElement):
        SUITE.scalar_mult(scalar(7), encoding)


@pytest.mark.parametrize("case", RFC9496["one_way_map"], ids=[c["label"][:20] for c in RFC9496["one_way_map"]])
def test_one_way_map(case: dict[str, str]) -> None:
    uniform = hashlib.sha512(case["label"].encode()).digest()
    assert pysodium.crypto_core_ristretto255_from_hash(uniform) == bytes.fromhex(case["encoding"])


def test_non_canonical_alias_of_a_valid_point_rejected() -> None:
    # 2p - s decodes to the same point as s if canonicity is not checked (RFC 9496 section 4.3.1).
    s = int.from_bytes(bytes.fromhex(RFC9496["multiples_of_generator"][3]), "little")
    alias = (2 * (2**255 - 19) - s).to_bytes(32, "little")
    with pytest.raises(MalformedElement):
        SUITE.deserialize_element(alias)


@pytest.mark.parametrize("length", [0, 31, 33, 64])
def test_wrong_length_elements_rejected(length: int) -> None:
    with pytest.raises(MalformedElement, match="must be 32 bytes"):
        SUITE.deserialize_element(b"\x02" * length)


def test_non_bytes_element_rejected() -> None:
    with pytest.raises(MalformedElement):
        SUITE.deserialize_element("e2f2ae0a" * 8)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "buf, reason",
    [
        (scalar(0), "zero scalar"),
        (scalar(ORDER), "not reduced"),
        (scalar(ORDER + 1), "not reduced"),
        (b"\xff" * 32, "not reduced"),
        (b"\x01" * 31, "must be 32 bytes"),
    ],
    ids=["zero", "order", "order+1", "all-ones", "short"],
)
def test_bad_scalars_rejected(buf: bytes, reason: str) -> None:
    with pytest.raises(MalformedScalar, match=reason):
        SUITE.deserialize_scalar(buf)


def test_good_scalars_accepted() -> None:
    for n in (1, 2, ORDER - 1):
        assert SUITE.deserialize_scalar(scalar(n)) == scalar(n)


def test_scalar_arithmetic() -> None:
    a, b = SUITE.random_scalar(), SUITE.random_scalar()
    ab = SUITE.scalar_mul(a, b)
    assert int.from_bytes(ab, "little") == int.from_bytes(a, "little") * int.from_bytes(b, "little") % ORDER
    assert SUITE.scalar_mul(a, SUITE.scalar_inverse(a)) == scalar(1)
    with pytest.raises(MalformedScalar):
        SUITE.scalar_inverse(scalar(0))


def test_context_string() -> None:
    assert SUITE.context_string == b"OPRFV1-\x00-ristretto255-SHA512"


def test_get_suite() -> None:
    assert get_suite("ristretto255-SHA512") is SUITE
    with pytest.raises(ConfigurationError, match="unknown OPRF suite 'P256-SHA256'"):
        get_suite("P256-SHA256")


@pytest.mark.parametrize("k", range(1, 16))
def test_top_bit_set_rejected(k: int) -> None:
    # libsodium 1.0.18 ignores bit 255 while decoding; RFC 9496 requires rejecting it.
    encoding = bytearray.fromhex(RFC9496["multiples_of_generator"][k])
    encoding[31] |= 0x80
    with pytest.raises(MalformedElement):
        SUITE.deserialize_element(bytes(encoding))


@pytest.mark.parametrize(
    "case",
    RFC9496["invalid_encodings"],
    ids=[f"{c['reason']}-{c['encoding'][:8]}" for c in RFC9496["invalid_encodings"]],
)
def test_checked_multiplication_refuses_what_decoding_refuses(case: dict[str, str]) -> None:
    with pytest.raises(MalformedElement, match="not a canonical ristretto255 encoding"):
        SUITE.scalar_mult_checked(scalar(7), bytes.fromhex(case["encoding"]))


def test_checked_multiplication_on_valid_identity_and_aliases() -> None:
    base = bytes.fromhex(RFC9496["multiples_of_generator"][1])
    assert SUITE.scalar_mult_checked(scalar(3), base) == bytes.fromhex(RFC9496["multiples_of_generator"][3])
    with pytest.raises(MalformedElement, match="identity"):
        SUITE.scalar_mult_checked(scalar(3), bytes(32))
    alias = bytearray(base)
    alias[31] |= 0x80
    with pytest.raises(MalformedElement, match="not a canonical"):
        SUITE.scalar_mult_checked(scalar(3), bytes(alias))
    with pytest.raises(MalformedElement, match="must be 32 bytes"):
        SUITE.scalar_mult_checked(scalar(3), base[:31])


MULTIPLES = [bytes.fromhex(m) for m in RFC9496["multiples_of_generator"][1:]]


def test_batch_multiplication_equals_one_at_a_time() -> None:
    # k·(j·G) = (k·j)·G for the RFC's multiples, and any batch equals the element-wise products.
    assert SUITE.scalar_mult_batch(scalar(1), MULTIPLES) == MULTIPLES
    assert SUITE.scalar_mult_batch(scalar(2), MULTIPLES[:7]) == MULTIPLES[1:15:2]
    k = SUITE.random_scalar()
    assert SUITE.scalar_mult_batch(k, MULTIPLES) == [SUITE.scalar_mult_checked(k, m) for m in MULTIPLES]
    assert SUITE.scalar_mult_batch(k, []) == []


@pytest.mark.parametrize(
    "case",
    RFC9496["invalid_encodings"],
    ids=[f"{c['reason']}-{c['encoding'][:8]}" for c in RFC9496["invalid_encodings"]],
)
def test_batch_multiplication_names_an_invalid_encoding_by_its_index(case: dict[str, str]) -> None:
    batch = [*MULTIPLES[:4], bytes.fromhex(case["encoding"]), *MULTIPLES[4:]]
    with pytest.raises(MalformedElement, match="^element 4: not a canonical ristretto255 encoding"):
        SUITE.scalar_mult_batch(scalar(7), batch)


@pytest.mark.parametrize("k", [1, 2, 15])
def test_batch_multiplication_refuses_the_top_bit_libsodium_ignores(k: int) -> None:
    alias = bytearray(MULTIPLES[k - 1])
    alias[31] |= 0x80
    with pytest.raises(MalformedElement, match="^element 2: not a canonical"):
        SUITE.scalar_mult_batch(scalar(3), [*MULTIPLES[:2], bytes(alias), *MULTIPLES[2:]])


def test_batch_multiplication_names_the_first_bad_element() -> None:
    alias = bytearray(MULTIPLES[0])
    alias[31] |= 0x80
    # An undecodable element before an element with the top bit set: the first one is named.
    with pytest.raises(MalformedElement, match="^element 1: not a canonical"):
        SUITE.scalar_mult_batch(scalar(3), [MULTIPLES[0], b"\xff" * 32, bytes(alias)])
    with pytest.raises(MalformedElement, match="^element 3: identity element"):
        SUITE.scalar_mult_batch(scalar(3), [*MULTIPLES[:3], bytes(32), b"\xff" * 32])
    with pytest.raises(MalformedElement, match="^element 1: element must be 32 bytes"):
        SUITE.scalar_mult_batch(scalar(3), [MULTIPLES[0], MULTIPLES[1][:31], bytes(32)])
    with pytest.raises(MalformedScalar, match="must be 32 bytes"):
        SUITE.scalar_mult_batch(scalar(3)[:31], MULTIPLES)
