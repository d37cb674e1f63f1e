"""Unified social credit codes: GB 32100-2015 check character."""

from __future__ import annotations

import pytest

from alliance_psi.identifiers import normalize

# Codes published by the organizations themselves (business licences), each checked here by the
# GB 32100 algorithm; the first is the example used by hutool's CreditCodeUtil.
PUBLISHED = {
    "hutool_example": "91350100M000100Y43",
    "huawei_technologies": "914403001922038216",
    "shenzhen_tencent_computer_systems": "91440300708461136T",
    "xiaomi_technology": "91110108551385082Q",
}

SPELLINGS = {
    "lower_case": ("91350100m000100y43", "91350100M000100Y43"),
    "grouped": ("913501 00M000100 Y43", "91350100M000100Y43"),
    "full_width": ("９１４４０３００７０８４６１１３６Ｔ", "91440300708461136T"),
    "lower_case_check_letter": ("91440300708461136t", "91440300708461136T"),
}

ALPHABET_REASON = "character outside the uscc alphabet (0-9, A-Y without I O S V Z)"

INVALID = {
    "mutated_check_character": ("91350100M000100Y44", "bad check character"),
    "mutated_body": ("91350100M000200Y43", "bad check character"),
    "mutated_letter": ("91440300708461136X", "bad check character"),
    "seventeen_chars": ("91350100M000100Y4", "wrong length: expected 18 characters, got 17"),
    "letter_i": ("91350100M000100I43", ALPHABET_REASON),
    "letter_o": ("91350100O000100Y43", ALPHABET_REASON),
    "letter_z": ("9135010ZM000100Y43", ALPHABET_REASON),
    "punctuation": ("91350100M000100Y4.", ALPHABET_REASON),
    # All zeros has a valid check character (0).
    "all_zero": ("0" * 18, "placeholder: one character repeated"),
}


@pytest.mark.parametrize("code", PUBLISHED.values(), ids=PUBLISHED.keys())
def test_published_codes_validate(code: str) -> None:
    assert normalize("uscc", code).canonical == code


@pytest.mark.parametrize(("raw", "canonical"), SPELLINGS.values(), ids=SPELLINGS.keys())
def test_spellings(raw: str, canonical: str) -> None:
    assert normalize("uscc", raw).canonical == canonical


@pytest.mark.parametrize(("raw", "reason"), INVALID.values(), ids=INVALID.keys())
def test_invalid(rejects, raw: str, reason: str) -> None:
    rejects("uscc", raw, reason)
