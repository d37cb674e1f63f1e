"""IdentifierType, Identifier, its OPRF input and its log-safe repr."""

from __future__ import annotations

import dataclasses

import pytest

import alliance_psi.identifiers as identifiers
from alliance_psi.identifiers import Identifier, IdentifierType
from alliance_psi.identifiers.types import TYPE_ALIASES, identifier_type

EXPECTED_VALUES = {
    "PHONE": "phone",
    "ID_CARD": "id_card",
    "BANK_CARD": "bank_card",
    "BANK_ACCOUNT": "bank_account",
    "USCC": "uscc",
    "EMAIL": "email",
    "IP": "ip",
    "IMEI": "imei",
    "DEVICE_ID": "device_id",
    "WECHAT_ID": "wechat_id",
    "QQ": "qq",
    "ALIPAY_ACCOUNT": "alipay_account",
    "ORG_NAME": "org_name",
    "DOMAIN": "domain",
}


def test_exported_members() -> None:
    expected = ["IdentifierType", "Identifier", "normalize", "NORMALIZERS"]
    assert identifiers.__all__ == sorted(expected)


def test_type_members_and_values() -> None:
    assert {member.name: member.value for member in IdentifierType} == EXPECTED_VALUES


def test_type_values_are_ascii_without_nul() -> None:
    # The OPRF input is injective because no type value contains the 0x00 separator.
    for member in IdentifierType:
        assert member.value.isascii()
        assert "\x00" not in member.value


def test_oprf_input_matches_design_step_1() -> None:
    identifier = Identifier(IdentifierType.PHONE, "+8613915274680")
    assert identifier.oprf_input() == b"phone\x00+8613915274680"


def test_oprf_input_is_utf8() -> None:
    identifier = Identifier(IdentifierType.ORG_NAME, "银行")
    assert identifier.oprf_input() == b"org_name\x00" + "银行".encode()


def test_str_is_type_and_canonical() -> None:
    assert str(Identifier(IdentifierType.PHONE, "+8613915274680")) == "phone:+8613915274680"
    identifier = Identifier(IdentifierType.ID_CARD, "44030519870614357X")
    assert str(identifier) == "id_card:44030519870614357X"


def test_repr_truncates_the_value() -> None:
    identifier = Identifier(IdentifierType.PHONE, "+8613915274680")
    assert repr(identifier) == "Identifier(type=phone, canonical='+86139…')"


@pytest.mark.parametrize("canonical", ["10001", "ab", "x", "44030519870614357X"])
def test_repr_never_shows_a_value_in_full(canonical: str) -> None:
    assert canonical not in repr(Identifier(IdentifierType.QQ, canonical))


def test_identifier_is_frozen_and_hashable() -> None:
    identifier = Identifier(IdentifierType.QQ, "10001")
    with pytest.raises(dataclasses.FrozenInstanceError):
        identifier.canonical = "10002"  # type: ignore[misc]
    assert {identifier, Identifier(IdentifierType.QQ, "10001")} == {identifier}


def test_identifier_requires_an_identifier_type() -> None:
    with pytest.raises(TypeError):
        Identifier("phone", "+8613915274680")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Identifier(IdentifierType.PHONE, b"+8613915274680")  # type: ignore[arg-type]


def test_every_type_has_chinese_names_that_name_no_other_type() -> None:
    assert set(TYPE_ALIASES) == set(IdentifierType)
    names = [name.lower() for aliases in TYPE_ALIASES.values() for name in aliases]
    names += [member.value for member in IdentifierType]
    assert len(names) == len(set(names))


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("phone", IdentifierType.PHONE),
        (" PHONE ", IdentifierType.PHONE),
        ("手机号", IdentifierType.PHONE),
        ("身份证", IdentifierType.ID_CARD),
        ("ip地址", IdentifierType.IP),
        ("ＱＱ号", IdentifierType.QQ),
        ("IMEI号", IdentifierType.IMEI),
        ("座机", None),
        ("", None),
    ],
)
def test_identifier_type_by_name(name: str, expected: IdentifierType | None) -> None:
    assert identifier_type(name) is expected
