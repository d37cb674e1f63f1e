"""Pedersen VSS on ristretto255: the second generator, commitments, share checks, interpolation."""

from __future__ import annotations

import itertools

import pysodium
import pytest

from alliance_psi.crypto import pedersen
from alliance_psi.crypto.h2c import expand_message_xmd
from alliance_psi.crypto.pedersen import (
    GENERATOR_G,
    GENERATOR_H,
    ORDER,
    PedersenShare,
    Polynomial,
    add_elements,
    check_feldman_share,
    check_pedersen_share,
    commitment_at,
    decode_element,
    decode_scalar,
    encode_scalar,
    feldman_commitments,
    interpolate,
    mul_base,
    mul_element,
    pedersen_commitments,
)
from alliance_psi.crypto.threshold import lagrange_coefficient
from alliance_psi.errors import InvalidShare, MalformedElement, MalformedScalar

F = Polynomial((5, 7, 11))  # f(z) = 5 + 7z + 11z²
F_BLINDING = Polynomial((13, 17, 19))


def test_h_is_the_documented_hash_to_group_of_the_fixed_string() -> None:
    uniform = expand_message_xmd(pedersen.H_SEED, pedersen.H_DST, 64)
    assert GENERATOR_H == pysodium.crypto_core_ristretto255_from_hash(uniform)
    # A known answer, so that a change of string, tag or map cannot pass unnoticed.
    assert GENERATOR_H.hex() == KNOWN_H
    assert GENERATOR_H not in (GENERATOR_G, pedersen.IDENTITY)
    assert decode_element(GENERATOR_H) == GENERATOR_H


KNOWN_H = "2cbcd57fad4812a3da52c8b736986188036b53603cd4cc4ca2e9edc7efaff057"


def test_g_is_the_ristretto255_base_point() -> None:
    # RFC 9496 section 4.4: the canonical encoding of the generator.
    assert GENERATOR_G.hex() == "e2f2ae0a6abc4e71a884a961c500515f58e30b6aa582dd8db6a65945e08d2d76"


def test_polynomial_evaluates_modulo_the_order() -> None:
    assert [F(x) for x in (0, 1, 2, 3)] == [5, 23, 63, 125]
    assert Polynomial((ORDER + 1,))(0) == 1
    assert Polynomial((-1, 1))(0) == ORDER - 1


def test_a_share_of_known_polynomials_passes_and_any_change_fails() -> None:
    commitments = pedersen_commitments(F, F_BLINDING)
    assert commitments[0] == add_elements(mul_base(5), mul_element(13, GENERATOR_H))
    for j in (1, 2, 3, 7):
        check_pedersen_share(commitments, j, PedersenShare(F(j), F_BLINDING(j)))
        check_feldman_share(feldman_commitments(F), j, F(j))
    with pytest.raises(InvalidShare, match="custodian 2 does not match"):
        check_pedersen_share(commitments, 2, PedersenShare(F(2) + 1, F_BLINDING(2)))
    with pytest.raises(InvalidShare):
        check_pedersen_share(commitments, 2, PedersenShare(F(2), F_BLINDING(2) + 1))
    with pytest.raises(InvalidShare):
        check_pedersen_share(commitments, 3, PedersenShare(F(2), F_BLINDING(2)))  # Another custodian's share.
    with pytest.raises(InvalidShare, match="public coefficients"):
        check_feldman_share(feldman_commitments(F), 2, F(2) + 1)


def test_commitment_at_is_the_commitment_to_the_values() -> None:
    commitments = pedersen_commitments(F, F_BLINDING)
    for x in (1, 4, ORDER - 1):
        expected = add_elements(mul_base(F(x)), mul_element(F_BLINDING(x), GENERATOR_H))
        assert commitment_at(commitments, x) == expected


def test_the_blinding_hides_the_secret_the_feldman_form_does_not() -> None:
    # Same secret, other blinding: other commitments; Feldman's A_0 is the secret times G.
    other = pedersen_commitments(F, Polynomial((14, 17, 19)))
    assert other[0] != pedersen_commitments(F, F_BLINDING)[0]
    assert feldman_commitments(F)[0] == mul_base(5)


@pytest.mark.parametrize("degree", [0, 1, 2, 4])
def test_any_degree_plus_one_points_interpolate_the_polynomial(degree: int) -> None:
    f = Polynomial.random(degree)
    points = {x: f(x) for x in range(1, degree + 4)}
    for subset in itertools.combinations(points, degree + 1):
        chosen = {x: points[x] for x in subset}
        assert interpolate(chosen) == f
        weights = {x: int.from_bytes(lagrange_coefficient(x, list(subset)), "little") for x in subset}
        assert sum(weights[x] * y for x, y in chosen.items()) % ORDER == f(0)


def test_too_few_points_do_not_give_the_secret() -> None:
    f = Polynomial.random(2)
    assert interpolate({1: f(1), 2: f(2)})(0) != f(0)


def test_interpolation_refuses_repeated_points() -> None:
    with pytest.raises(ValueError, match="distinct"):
        interpolate({1: 2, 1 + ORDER: 3})


def test_identity_arithmetic_stays_in_the_group() -> None:
    assert mul_base(0) == mul_base(ORDER) == pedersen.IDENTITY
    assert mul_element(0, GENERATOR_H) == pedersen.IDENTITY
    assert mul_element(3, pedersen.IDENTITY) == pedersen.IDENTITY
    assert add_elements() == pedersen.IDENTITY
    assert add_elements(mul_base(2), mul_base(ORDER - 2)) == pedersen.IDENTITY


def test_scalar_and_element_decoding_refuse_what_a_peer_must_not_send() -> None:
    assert decode_scalar(encode_scalar(ORDER - 1)) == ORDER - 1
    assert decode_scalar(bytes(32)) == 0
    with pytest.raises(MalformedScalar, match="not reduced"):
        decode_scalar(ORDER.to_bytes(32, "little"))
    with pytest.raises(MalformedScalar, match="32 bytes"):
        decode_scalar(b"\x01" * 31)
    with pytest.raises(MalformedElement, match="identity"):
        decode_element(bytes(32))
    with pytest.raises(MalformedElement, match="canonical"):
        decode_element(b"\xff" * 32)
    with pytest.raises(MalformedElement, match="canonical"):
        decode_element(GENERATOR_G[:31] + bytes([GENERATOR_G[31] | 0x80]))
    with pytest.raises(MalformedElement, match="32 bytes"):
        decode_element(GENERATOR_G[:31])


def test_secrets_are_not_shown() -> None:
    assert "5" not in repr(Polynomial((5,)))
    assert str(F(2)) not in repr(PedersenShare(F(2), F_BLINDING(2)))
    with pytest.raises(MalformedScalar):
        PedersenShare(ORDER, 0)
