"""IMEIs (15 digits, Luhn) and vendor device ids (UUID form or 16-hex Android ID)."""

from __future__ import annotations

import pytest

from alliance_psi.identifiers import normalize

REPEATED = "placeholder: one character repeated"

IMEI_VALID = {
    "plain": ("868912045523815", "868912045523815"),
    "grouped_with_dashes": ("86-891204-552381-5", "868912045523815"),
    "grouped_with_spaces": ("35 218407 365928 2", "352184073659282"),
}

IMEI_INVALID = {
    "fourteen_digits_not_completed": ("86891204552381", "wrong length: expected 15 digits, got 14"),
    "sixteen_digits_imeisv": ("8689120455238151", "wrong length: expected 15 digits, got 16"),
    "bad_check_digit": ("868912045523816", "bad check digit"),
    "letters": ("49015420323751A", "expected digits only"),
    "all_zero_placeholder": ("000000000000000", REPEATED),
    "one_digit_repeated": ("5" * 15, REPEATED),
    "counting_then_check_digit": ("123456789012347", "placeholder: digits counting up or down (1234…)"),
    "wikipedia_example": (
        "490154203237518",
        "placeholder: well-known example IMEI (the check-digit example of the IMEI article and many docs)",
    ),
    "wikipedia_structure_example": (
        "35-209900-176148-1",
        "placeholder: well-known example IMEI (the structure example of the IMEI article: 35-209900-176148-1)",
    ),
}

IDFA = "6d92078a-8246-4ba4-ae5b-76104861e7dc"

SAME_IDFA = {
    "canonical": IDFA,
    "upper_case": IDFA.upper(),
    "without_dashes": IDFA.replace("-", ""),
    "upper_without_dashes": IDFA.replace("-", "").upper(),
}

DEVICE_ID_VALID = {
    "android_id": ("9774D56D682E549C", "9774d56d682e549c"),
    "oaid_uuid": ("A1B2C3D4-0000-1111-2222-333344445555", "a1b2c3d4-0000-1111-2222-333344445555"),
}

NOT_A_DEVICE_ID = "not a uuid or 16-hex-digit device id"

DEVICE_ID_INVALID = {
    "all_zero_idfa": ("00000000-0000-0000-0000-000000000000", REPEATED),
    "all_zero_idfa_without_dashes": ("0" * 32, REPEATED),
    "all_f_uuid": ("FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF", REPEATED),
    "all_zero_android_id": ("0" * 16, REPEATED),
    "all_f_android_id": ("f" * 16, REPEATED),
    "braces": ("{" + IDFA + "}", NOT_A_DEVICE_ID),
    "urn_prefix": ("urn:uuid:" + IDFA, NOT_A_DEVICE_ID),
    "misplaced_dashes": ("6d92-078a8246-4ba4-ae5b-76104861e7dc", NOT_A_DEVICE_ID),
    "too_short": (IDFA[:-1], NOT_A_DEVICE_ID),
    "non_hex": ("g" * 16, NOT_A_DEVICE_ID),
    "fifteen_hex": ("9774d56d682e549", NOT_A_DEVICE_ID),
}


@pytest.mark.parametrize(("raw", "canonical"), IMEI_VALID.values(), ids=IMEI_VALID.keys())
def test_imei_valid(raw: str, canonical: str) -> None:
    assert normalize("imei", raw).canonical == canonical


@pytest.mark.parametrize(("raw", "reason"), IMEI_INVALID.values(), ids=IMEI_INVALID.keys())
def test_imei_invalid(rejects, raw: str, reason: str) -> None:
    rejects("imei", raw, reason)


@pytest.mark.parametrize("raw", SAME_IDFA.values(), ids=SAME_IDFA.keys())
def test_uuid_spellings_give_one_canonical(raw: str) -> None:
    assert normalize("device_id", raw).canonical == IDFA


@pytest.mark.parametrize(("raw", "canonical"), DEVICE_ID_VALID.values(), ids=DEVICE_ID_VALID.keys())
def test_device_id_valid(raw: str, canonical: str) -> None:
    assert normalize("device_id", raw).canonical == canonical


@pytest.mark.parametrize(("raw", "reason"), DEVICE_ID_INVALID.values(), ids=DEVICE_ID_INVALID.keys())
def test_device_id_invalid(rejects, raw: str, reason: str) -> None:
    rejects("device_id", raw, reason)
