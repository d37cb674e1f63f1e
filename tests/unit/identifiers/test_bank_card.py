"""Bank cards (Luhn) and bank accounts (digits only)."""

from __future__ import annotations

import pytest

from alliance_psi.identifiers import normalize

REPEATED = "placeholder: one character repeated"
COUNTING = "placeholder: digits counting up or down (1234…)"

CARD_VALID = {
    "grouped": ("6225 8812 3856 7902", "6225881238567902"),
    "dashes": ("6225-8812-3856-7902", "6225881238567902"),
    "amex_15_digits": ("377677204183651", "377677204183651"),
    "unionpay_19_digits": ("6217008291046375219", "6217008291046375219"),
    "full_width": ("６２２５８８１２３８５６７９０２", "6225881238567902"),
}

CARD_INVALID = {
    "bad_check_digit": ("4111111111111112", "bad check digit"),
    "swapped_digits": ("4111111111111121", "bad check digit"),
    "eleven_digits": ("41111111113", "wrong length: expected 12-19 digits, got 11"),
    "twenty_digits": ("41111111111111111113", "wrong length: expected 12-19 digits, got 20"),
    "letter": ("4111a11111111111", "expected digits only"),
    "arabic_indic_digits": ("٤١١١١١١١١١١١١١١١", "expected digits only"),
    # All zeros passes the Luhn check: the placeholder of a mandatory card field.
    "all_zero": ("0000 0000 0000 0000", REPEATED),
    "one_digit_repeated": ("5" * 16, REPEATED),
    "counting": ("1234 5678 9012 3456", COUNTING),
    # Published test cards (payment networks' and processors' test-card tables).
    "visa_test_card": ("4111 1111 1111 1111", "placeholder: well-known test card (Visa)"),
    "amex_test_card": ("378282246310005", "placeholder: well-known test card (American Express)"),
    "unionpay_test_card": (
        "6216 2610 0000 0000 018",
        "placeholder: well-known test card (China UnionPay's merchant integration test card)",
    ),
    # A real issuer number (BIN) then zeros, completed with a valid check digit.
    "zeros_after_the_bin": ("6222 0000 0000 0000 004", f"{REPEATED} after the issuer number"),
    "counting_after_the_bin": ("6222 0212 3456 7890 128", f"{COUNTING} after the issuer number"),
}

ACCOUNT_VALID = {
    "grouped": ("6222 0000 1234", "622200001234"),
    "leading_zero_kept": ("0391827", "0391827"),
    "thirty_two_digits": ("12" * 16, "12" * 16),
    "no_checksum_needed": ("4111111111111112", "4111111111111112"),
}

ACCOUNT_INVALID = {
    "five_digits": ("12345", "wrong length: expected 6-32 digits, got 5"),
    "thirty_three_digits": ("1" * 33, "wrong length: expected 6-32 digits, got 33"),
    "letters": ("12-34-56-AB", "expected digits only"),
    "all_zero": ("000000", REPEATED),
    "one_digit_repeated": ("9999 9999 9999", REPEATED),
    "counting_up": ("123456", COUNTING),
    "counting_down_through_zero": ("3210 9876", COUNTING),
}


@pytest.mark.parametrize(("raw", "canonical"), CARD_VALID.values(), ids=CARD_VALID.keys())
def test_card_valid(raw: str, canonical: str) -> None:
    assert normalize("bank_card", raw).canonical == canonical


@pytest.mark.parametrize(("raw", "reason"), CARD_INVALID.values(), ids=CARD_INVALID.keys())
def test_card_invalid(rejects, raw: str, reason: str) -> None:
    rejects("bank_card", raw, reason)


@pytest.mark.parametrize(("raw", "canonical"), ACCOUNT_VALID.values(), ids=ACCOUNT_VALID.keys())
def test_account_valid(raw: str, canonical: str) -> None:
    assert normalize("bank_account", raw).canonical == canonical


@pytest.mark.parametrize(("raw", "reason"), ACCOUNT_INVALID.values(), ids=ACCOUNT_INVALID.keys())
def test_account_invalid(rejects, raw: str, reason: str) -> None:
    rejects("bank_account", raw, reason)
