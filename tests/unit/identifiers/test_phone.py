"""Phone numbers: E.164, mainland mobile numbers only for +86."""

from __future__ import annotations

import pytest

from alliance_psi.identifiers import normalize

MOBILE = "+8613915274680"

SAME_MOBILE = {
    "national": "13915274680",
    "plus_86_with_dashes": "+86 139-1527-4680",
    "idd_00_86": "008613915274680",
    "bare_86_prefix": "8613915274680",
    "full_width_digits": "１３９１５２７４６８０",
    "full_width_plus_and_ideographic_space": "＋８６\u3000１３９ １５２７ ４６８０",
    "dots_and_parentheses": "(139) 1527.4680",
    "surrounding_whitespace": "\t 13915274680 \r\n",
    "zero_width_space_inside": "1391527\u200b4680",
    "byte_order_mark": "\ufeff13915274680",
}

VALID = {
    "mainland_199": ("+86 199 1274 5638", "+8619912745638"),
    "mainland_170_virtual_operator": ("17012745638", "+8617012745638"),
    "hong_kong_mobile": ("+852 9123 4567", "+85291234567"),
    "us_number": ("+1 650-253-0000", "+16502530000"),
    "uk_landline_with_plus": ("+44 20 7946 0958", "+442079460958"),
    "uk_landline_with_idd": ("0044 20 7946 0958", "+442079460958"),
}

EXAMPLE = "placeholder: well-known example mobile number (China Mobile's service number, on countless forms and docs)"
RUN = "placeholder: the last 8 digits hold one digit 7 or more times in a row"
COUNTING = "placeholder: the last 8 digits count up or down (…12345678)"
ECHO = "placeholder: the prefix echoed (like 138 0013 8000), the shape of operators' service numbers"

INVALID = {
    "letters": ("1380013800a", "letters or symbols in phone number"),
    "extension": ("+86 139 1527 4680 ext 12", "letters or symbols in phone number"),
    "vanity": ("+1 800 FLOWERS", "letters or symbols in phone number"),
    "plus_in_middle": ("138+0013+8000", "letters or symbols in phone number"),
    "beijing_landline": ("010-12345678", "not a mainland mobile number"),
    "beijing_landline_plus86": ("+86 10 1234 5678", "not a mainland mobile number"),
    "ten_digits": ("1380013800", "not a mainland mobile number"),
    "not_a_mobile_prefix": ("23800138000", "not a mainland mobile number"),
    # A US number without "+" is read as Chinese (a Guangzhou landline), never as American.
    "us_number_without_plus": ("2025550123", "not a mainland mobile number"),
    "invalid_foreign": ("+1 650 253 000", "not a valid phone number"),
    "unknown_country_code": ("+999 1234", "not a phone number"),
    "one_digit": ("1", "not a phone number"),
    # Placeholders (docs/file-format.md): the usual example, in any spelling, and filler shapes.
    "china_mobile_example": ("13800138000", EXAMPLE),
    "china_mobile_example_e164": ("+86 138-0013-8000", EXAMPLE),
    "repeated_digits": ("13888888888", RUN),
    "zeros": ("13000000000", RUN),
    "zeros_then_one": ("139 0000 0001", RUN),
    "counting_up": ("13012345678", COUNTING),
    "counting_down": ("13987654321", COUNTING),
    "counting_through_zero": ("18678901234", COUNTING),
    "prefix_echoed": ("13900139000", ECHO),
    "prefix_echoed_186": ("18600186000", ECHO),
}

# One run of 6 in the last 8 digits, or counting over 7 of them, is not a placeholder shape.
NOT_PLACEHOLDERS = ("13988888801", "13901234569", "13900139001", "+1 650-253-0000")


@pytest.mark.parametrize("raw", SAME_MOBILE.values(), ids=SAME_MOBILE.keys())
def test_equivalent_spellings_give_one_canonical(raw: str) -> None:
    assert normalize("phone", raw).canonical == MOBILE


@pytest.mark.parametrize(("raw", "canonical"), VALID.values(), ids=VALID.keys())
def test_valid(raw: str, canonical: str) -> None:
    assert normalize("phone", raw).canonical == canonical


@pytest.mark.parametrize(("raw", "reason"), INVALID.values(), ids=INVALID.keys())
def test_invalid(rejects, raw: str, reason: str) -> None:
    rejects("phone", raw, reason)


@pytest.mark.parametrize("raw", NOT_PLACEHOLDERS)
def test_near_placeholders_are_accepted(raw: str) -> None:
    assert normalize("phone", raw).canonical.startswith("+")
