"""Identifiers Excel damaged on their way into a blacklist file, found before normalization.

Excel keeps a number as a double and at most 15 of its significant digits. A column of ID or card
numbers left in the "General" format is turned into numbers: Excel shows (and exports to CSV)
``1.38001E+10``, rounds an 18- or 19-digit number to 15 digits and fills the rest with zeros
(``6222020200112233456`` becomes ``6222020200112230000``), drops leading zeros, and some exports
add ``.0``. The digits lost are lost for good: any "repair" would be a guess, and a guess is
another person's identifier, so a damaged value is refused with what happened and how to fix it.

Contract of ``excel_damage(type_, cell, text)``: the reason (quoting the value only as a
truncated prefix) and a value-free ``kind`` for the value cell ``cell`` of a row of ``type_``,
read as ``text`` (``_rows.cell_text``), or None. In this order:

- A number cell (an ``.xlsx`` number, a JSON number) that is not a whole number; or a float
  (Excel's own numbers) of more than 15 digits: its digits beyond the 15th are lost.
- A number cell for ``bank_account`` or ``imei``, whose values may begin with 0: a number has no
  leading zeros, so an account that had them became another account.
- Text in scientific notation (``1.38001E+10``, any type).
- For the digit types (``phone``, ``id_card``, ``bank_card``, ``bank_account``, ``qq``, ``imei``,
  ``alipay_account``): digits followed by ``.0`` (``13912345678.0``).
- For ``id_card``, ``bank_card`` and ``bank_account``: 18 digits or more (and nothing else: Excel
  writes no spaces or dashes between them), nothing but zeros after
  the 15th (``6222020200112230000``), a number or text: the mark of Excel's rounding. A real
  number ends so about once in 1,000 (more zeros: rarer), and is refused with them; the reason
  says to write it grouped with spaces, which Excel never does, and it imports. Shorter
  values cannot be told from real ones ending in zeros: a 16-digit card Excel rounded ends in one
  0 and usually fails its check digit, but not always (docs/file-format.md says to format card
  columns as Text).
"""

from __future__ import annotations

import re

from alliance_psi.errors import truncate_value
from alliance_psi.identifiers.types import IdentifierType

__all__ = ["excel_damage"]

_EXCEL_DIGITS = 15
_ROUNDED_MIN_LENGTH = 18
_SCIENTIFIC = re.compile(r"\d(\.\d+)?[eE][+-]?\d+", re.ASCII)
_DECIMAL = re.compile(r"\d+\.0+", re.ASCII)
_DIGIT_TYPES = frozenset(
    {
        IdentifierType.PHONE,
        IdentifierType.ID_CARD,
        IdentifierType.BANK_CARD,
        IdentifierType.BANK_ACCOUNT,
        IdentifierType.QQ,
        IdentifierType.IMEI,
        IdentifierType.ALIPAY_ACCOUNT,
    }
)
_LEADING_ZERO_TYPES = frozenset({IdentifierType.BANK_ACCOUNT, IdentifierType.IMEI})
_ROUNDED_TYPES = frozenset({IdentifierType.ID_CARD, IdentifierType.BANK_CARD, IdentifierType.BANK_ACCOUNT})
_AS_TEXT = "format the column as Text and export again"
_RETYPE = "format the column as Text, paste the numbers again from the source system, and export again"
# How a real number that ends in zeros after its 15th digit is written so that it imports: grouped
# (Excel writes no spaces), in the usual groups of its type (docs/file-format.md).
_GROUPED = {
    IdentifierType.ID_CARD: "440305 19870614 3000",
    IdentifierType.BANK_CARD: "6222 0202 0011 2200 000",
    IdentifierType.BANK_ACCOUNT: "6222 0202 0011 2200 00",
}


def excel_damage(type_: IdentifierType, cell: object, text: str) -> tuple[str, str] | None:
    """Return ``(reason, kind)`` if the value cell looks damaged by Excel (see the module), else None."""
    shown = repr(truncate_value(text))
    if isinstance(cell, float) and not cell.is_integer():
        return f"{shown} is a number cell with decimals, not an identifier; {_AS_TEXT}", "number cell with decimals"
    if isinstance(cell, float) and abs(cell) >= 10**_EXCEL_DIGITS:
        reason = f"{shown} is a number cell: Excel keeps only 15 digits of a number and the rest are lost; {_RETYPE}"
        return reason, "Excel number cell, digits lost"
    if isinstance(cell, int | float) and not isinstance(cell, bool) and type_ in _LEADING_ZERO_TYPES:
        reason = f"{shown} is a number cell, which loses leading zeros; {_RETYPE}"
        return reason, "Excel number cell, leading zeros lost"
    if _SCIENTIFIC.fullmatch(text):
        reason = f"{shown} looks like a number Excel rewrote in scientific notation, losing digits; {_RETYPE}"
        return reason, "Excel scientific notation"
    if type_ in _DIGIT_TYPES and _DECIMAL.fullmatch(text):
        reason = f"{shown} looks like a number Excel wrote with a decimal point ('.0'); {_AS_TEXT}"
        return reason, "Excel decimal point"
    if type_ in _ROUNDED_TYPES and _rounded(text):
        reason = (
            f"{shown} ends in zeros after its 15th digit: Excel kept only the first 15 digits of a "
            f"long number; {_RETYPE}; a number that really ends so imports grouped with spaces, e.g. "
            f"{_GROUPED[type_]} (docs/file-format.md)"
        )
        return reason, "Excel rounded to 15 digits"
    return None


def _rounded(text: str) -> bool:
    """Whether ``text`` is digits only (Excel groups none), 18 or more, zeros after the 15th."""
    return text.isascii() and text.isdigit() and len(text) >= _ROUNDED_MIN_LENGTH and set(text[_EXCEL_DIGITS:]) == {"0"}
