"""Bank card numbers and bank account numbers.

Contract:

- ``normalize_bank_card(raw)``: a payment card number (PAN) of 12-19 digits passing the Luhn
  check; spaces and dashes between digits are ignored. A wrong check digit is rejected.
- ``normalize_bank_account(raw)``: a bank account number of 6-32 digits, spaces and dashes
  ignored; account numbers have no common check digit, so none is verified.
- Both reject one digit repeated (``0000 0000 0000 0000`` passes the Luhn check) and digits
  counting up or down (``123456``): the placeholders of a mandatory field. A card is also
  rejected when it is a published test card (``BANK_CARD_PLACEHOLDERS``: ``4111 1111 1111 1111``,
  UnionPay's ``6216 2610 0000 0000 018``), or when the digits between its 6-digit issuer number
  (BIN) and its check digit are one digit repeated or counting (``6222 0000 0000 0000 00x``,
  completed with a valid check digit; about 2 real cards in 100 million).

The canonical form is the bare digit string.
"""

from __future__ import annotations

from alliance_psi.identifiers._checksum import luhn_valid
from alliance_psi.identifiers._text import digit_string, invalid
from alliance_psi.identifiers.placeholders import BANK_CARD_PLACEHOLDERS, digit_placeholder, listed
from alliance_psi.identifiers.types import IdentifierType

__all__ = ["normalize_bank_account", "normalize_bank_card"]

_CARD_LENGTHS = range(12, 20)
_ACCOUNT_LENGTHS = range(6, 33)
_BIN_LENGTH = 6


def normalize_bank_card(raw: str) -> str:
    """Return the digits of a bank card number.

    Raises ``InvalidIdentifier`` ("expected digits only", "wrong length: …", "bad check digit",
    "placeholder: …", or a shared pre-cleaning reason).
    """
    digits = digit_string(raw, IdentifierType.BANK_CARD, _CARD_LENGTHS)
    if reason := digit_placeholder(digits):
        raise invalid(IdentifierType.BANK_CARD, reason, raw)
    if not luhn_valid(digits):
        raise invalid(IdentifierType.BANK_CARD, "bad check digit", raw)
    if reason := listed(BANK_CARD_PLACEHOLDERS, digits):
        raise invalid(IdentifierType.BANK_CARD, reason, raw)
    if reason := digit_placeholder(digits[_BIN_LENGTH:-1]):
        raise invalid(IdentifierType.BANK_CARD, f"{reason} after the issuer number", raw)
    return digits


def normalize_bank_account(raw: str) -> str:
    """Return the digits of a bank account number.

    Raises ``InvalidIdentifier`` ("expected digits only", "wrong length: …", "placeholder: …",
    or a shared pre-cleaning reason).
    """
    digits = digit_string(raw, IdentifierType.BANK_ACCOUNT, _ACCOUNT_LENGTHS)
    if reason := digit_placeholder(digits):
        raise invalid(IdentifierType.BANK_ACCOUNT, reason, raw)
    return digits
