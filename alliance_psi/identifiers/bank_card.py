"""Bank card numbers and bank account numbers.

Contract:

- ``normalize_bank_card(raw)``: a payment card number (PAN) of 12-19 digits passing the Luhn
  check; spaces and dashes between digits are ignored. A wrong check digit is rejected.
- ``normalize_bank_account(raw)``: a bank account number of 6-32 digits, spaces and dashes
  ignored; account numbers have no common check digit, so none is verified.
- Both reject one digit repeated (``0000 0000 0000 0000`` passes the Luhn check): the
  placeholder of a mandatory field, never a real card or account.

The canonical form is the bare digit string.
"""

from __future__ import annotations

from alliance_psi.identifiers._checksum import luhn_valid
from alliance_psi.identifiers._text import digit_string, invalid
from alliance_psi.identifiers.placeholders import REPEATED_CHARACTER, one_repeated_character
from alliance_psi.identifiers.types import IdentifierType

__all__ = ["normalize_bank_account", "normalize_bank_card"]

_CARD_LENGTHS = range(12, 20)
_ACCOUNT_LENGTHS = range(6, 33)


def normalize_bank_card(raw: str) -> str:
    """Return the digits of a bank card number.

    Raises ``InvalidIdentifier`` ("expected digits only", "wrong length: …", "placeholder: one
    character repeated", "bad check digit", or a shared pre-cleaning reason).
    """
    digits = digit_string(raw, IdentifierType.BANK_CARD, _CARD_LENGTHS)
    if one_repeated_character(digits):
        raise invalid(IdentifierType.BANK_CARD, REPEATED_CHARACTER, raw)
    if not luhn_valid(digits):
        raise invalid(IdentifierType.BANK_CARD, "bad check digit", raw)
    return digits


def normalize_bank_account(raw: str) -> str:
    """Return the digits of a bank account number.

    Raises ``InvalidIdentifier`` ("expected digits only", "wrong length: …", "placeholder: one
    character repeated", or a shared pre-cleaning reason).
    """
    digits = digit_string(raw, IdentifierType.BANK_ACCOUNT, _ACCOUNT_LENGTHS)
    if one_repeated_character(digits):
        raise invalid(IdentifierType.BANK_ACCOUNT, REPEATED_CHARACTER, raw)
    return digits
