"""Bank cards (Luhn) and bank accounts (digits only)."""

from __future__ import annotations

import pytest

from alliance_psi.identifiers import normalize

REPEATED = "placeholder: one character repeated"

CARD_VALID = {
    "visa_test_card_grouped": ("4111 1111 1111 1111", "4111111111111111"),
    "visa_test_card_dashes": ("4111-1111-1111-1111", "4111111111111111"),
    "amex_15_digits": ("378282246310005", "378282246310005"),
    "unionpay_16_digits": ("6200 0000 0000 0005", "6200000000000005"),
    "unionpay_19_digits": ("6205500000000000004", "6205500000000000004"),
    "full_width": ("６２０００００００００００００５", "6200000000000005"),
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
}

ACCOUNT_VALID = {
    "grouped": ("6222 0000 1234", "622200001234"),
    "leading_zero_kept": ("0123456", "0123456"),
    "thirty_two_digits": ("12" * 16, "12" * 16),
    "no_checksum_needed": ("4111111111111112", "4111111111111112"),
}

ACCOUNT_INVALID = {
    "five_digits": ("12345", "wrong length: expected 6-32 digits, got 5"),
    "thirty_three_digits": ("1" * 33, "wrong length: expected 6-32 digits, got 33"),
    "letters": ("12-34-56-AB", "expected digits only"),
    "all_zero": ("000000", REPEATED),
    "one_digit_repeated": ("9999 9999 9999", REPEATED),
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
