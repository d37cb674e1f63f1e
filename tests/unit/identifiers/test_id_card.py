"""Resident ID numbers: ISO 7064 MOD 11-2 check character, legacy 15-digit upgrade."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from alliance_psi.errors import InvalidIdentifier
from alliance_psi.identifiers import normalize
from alliance_psi.identifiers.id_card import check_character
from alliance_psi.identifiers.types import CHINA_TIME


def with_check(body: str) -> str:
    return body + check_character(body)


# The worked example of GB 11643-1999.
ID = "44030519870614357X"

SAME_ID = {
    "canonical": ID,
    "lower_case_x": "44030519870614357x",
    "grouped_with_spaces": "440305 19870614 357X",
    "grouped_with_dashes": "440305-19870614-357X",
    "full_width": "４４０３０５１９８７０６１４３５７Ｘ",
    "legacy_15_digits": "440305870614357",
}

VALID = {
    "digit_check_character": ("440524198001010013", "440524198001010013"),
    "born_1900": (with_check("11010519000101001"), with_check("11010519000101001")),
    "leap_day": ("110105200002290013", "110105200002290013"),
    # Beside the placeholders: the examples' region born a day later, a sequence code ending in two 6s.
    "near_the_example": (with_check("11010119900308777"), with_check("11010119900308777")),
    "three_of_a_kind_ending": (with_check("44030519870614665"), with_check("44030519870614665")),
    "legacy_upgrade_digit_check": ("440524800101001", "440524198001010013"),
}

EXAMPLE_PREFIX = (
    "placeholder: the region and birth date of the usual documentation example (110101 1990-03-07 or 1990-01-01)"
)
REPEATED_ENDING = "placeholder: sequence code and check character one digit four times"
NOT_DIGITS = "expected 17 digits and a check character 0-9 or X"

INVALID = {
    "seventeen_digits": (
        "44030519870614357",
        "wrong length: expected 18 characters (or 15 digits), got 17",
    ),
    "nineteen_chars": (
        "44030519870614357X1",
        "wrong length: expected 18 characters (or 15 digits), got 19",
    ),
    "bad_check_character": ("440305198706143571", "bad check character"),
    "bad_check_digit_instead_of_x": ("440305198706143570", "bad check character"),
    "letter_check_character": ("44030519870614357Y", NOT_DIGITS),
    "letter_in_body": ("1101051949123A002X", NOT_DIGITS),
    "legacy_with_x": ("11010549123100X", "expected digits only in a 15-digit legacy number"),
    "february_30": ("44030519870230357X", "invalid birth date"),
    "month_13": ("44030519871331357X", "invalid birth date"),
    "not_a_leap_year": ("44030519000229357X", "invalid birth date"),
    "year_1700": ("11010517000101002X", "birth date before 1900"),
    "year_1800": (with_check("11010518000101002"), "birth date before 1900"),
    "last_day_of_1899": (with_check("11010518991231002"), "birth date before 1900"),
    "year_2099": (with_check("11010520990101002"), "birth date in the future"),
    "legacy_bad_date": ("110105490230002", "invalid birth date"),
    "region_starts_with_9": ("91010519491231002X", "invalid region code"),
    "region_starts_with_0": ("01010519491231002X", "invalid region code"),
    # Placeholders (docs/file-format.md).
    "standard_example": (
        "11010519491231002X",
        "placeholder: well-known example resident ID (the worked example of GB 11643-1999)",
    ),
    "standard_example_lower_x": (
        "110105 19491231 002x",
        "placeholder: well-known example resident ID (the worked example of GB 11643-1999)",
    ),
    "documentation_example": (with_check("11010119900307777"), EXAMPLE_PREFIX),
    "documentation_example_other_sequence": (with_check("11010119900307391"), EXAMPLE_PREFIX),
    "generator_default": (with_check("11010119900101123"), EXAMPLE_PREFIX),
    "sequence_and_check_one_digit": ("440305198706146666", REPEATED_ENDING),
    "legacy_one_digit": ("111111111111111", "placeholder: one character repeated"),
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


def test_birth_dates_run_up_to_today_in_china() -> None:
    today = datetime.now(CHINA_TIME).date()
    assert normalize("id_card", with_check(f"110105{today:%Y%m%d}001")).canonical.startswith("110105")
    # The day after tomorrow: still in the future if midnight passes while the test runs.
    later = today + timedelta(days=2)
    with pytest.raises(InvalidIdentifier, match="birth date in the future"):
        normalize("id_card", with_check(f"110105{later:%Y%m%d}001"))
