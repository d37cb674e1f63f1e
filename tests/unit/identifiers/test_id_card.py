"""Resident ID numbers: ISO 7064 MOD 11-2 check character, legacy 15-digit upgrade."""

from __future__ import annotations

import pytest

from alliance_psi.identifiers import normalize

# The worked example of GB 11643-1999.
ID = "11010519491231002X"

SAME_ID = {
    "canonical": ID,
    "lower_case_x": "11010519491231002x",
    "grouped_with_spaces": "110105 19491231 002X",
    "grouped_with_dashes": "110105-19491231-002X",
    "full_width": "１１０１０５１９４９１２３１００２Ｘ",
    "legacy_15_digits": "110105491231002",
}

VALID = {
    "digit_check_character": ("440524188001010014", "440524188001010014"),
    "leap_day": ("110105200002290013", "110105200002290013"),
    "legacy_upgrade_digit_check": ("440524800101001", "440524198001010013"),
}

NOT_DIGITS = "expected 17 digits and a check character 0-9 or X"

INVALID = {
    "seventeen_digits": (
        "11010519491231002",
        "wrong length: expected 18 characters (or 15 digits), got 17",
    ),
    "nineteen_chars": (
        "11010519491231002X1",
        "wrong length: expected 18 characters (or 15 digits), got 19",
    ),
    "bad_check_character": ("110105194912310021", "bad check character"),
    "bad_check_digit_instead_of_x": ("110105194912310020", "bad check character"),
    "letter_check_character": ("11010519491231002Y", NOT_DIGITS),
    "letter_in_body": ("1101051949123A002X", NOT_DIGITS),
    "legacy_with_x": ("11010549123100X", "expected digits only in a 15-digit legacy number"),
    "february_30": ("11010519490230002X", "invalid birth date"),
    "month_13": ("11010519491331002X", "invalid birth date"),
    "not_a_leap_year": ("11010519000229002X", "invalid birth date"),
    "year_1700": ("11010517000101002X", "invalid birth date"),
    "legacy_bad_date": ("110105490230002", "invalid birth date"),
    "region_starts_with_9": ("91010519491231002X", "invalid region code"),
    "region_starts_with_0": ("01010519491231002X", "invalid region code"),
}


@pytest.mark.parametrize("raw", SAME_ID.values(), ids=SAME_ID.keys())
def test_equivalent_spellings_give_one_canonical(raw: str) -> None:
    assert normalize("id_card", raw).canonical == ID


@pytest.mark.parametrize(("raw", "canonical"), VALID.values(), ids=VALID.keys())
def test_valid(raw: str, canonical: str) -> None:
    assert normalize("id_card", raw).canonical == canonical


@pytest.mark.parametrize(("raw", "reason"), INVALID.values(), ids=INVALID.keys())
def test_invalid(rejects, raw: str, reason: str) -> None:
    rejects("id_card", raw, reason)
