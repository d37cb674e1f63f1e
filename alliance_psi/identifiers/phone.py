"""Phone numbers: E.164, with mainland China as the default region.

Contract of ``normalize_phone(raw)``:

- Spaces, dashes, dots and parentheses between digits are ignored; any other character (letters,
  including vanity numbers and "ext." suffixes) is rejected.
- Numbers without an international prefix are read as Chinese: ``13800138000``,
  ``8613800138000``, ``+86 138-0013-8000`` and ``008613800138000`` (``00`` is China's
  international prefix) all give ``+8613800138000``. No other country is ever guessed.
- A +86 number must be a valid mainland mobile number (libphonenumber type MOBILE or
  FIXED_LINE_OR_MOBILE); landlines and invalid numbers give "not a mainland mobile number".
- A number with another country code (written with ``+`` or ``00``) must be valid for that
  country and is kept in E.164.
"""

from __future__ import annotations

import re

import phonenumbers
from phonenumbers import PhoneNumberType

from alliance_psi.identifiers._text import clean, invalid, remove_separators
from alliance_psi.identifiers.types import IdentifierType

__all__ = ["normalize_phone"]

_TYPE = IdentifierType.PHONE
_DEFAULT_REGION = "CN"
_MAINLAND_CODE = 86
_MOBILE_TYPES = (PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE_OR_MOBILE)
_DIALLABLE = re.compile(r"\+?[0-9]+", re.ASCII)


def normalize_phone(raw: str) -> str:
    """Return the E.164 form of a phone number.

    Raises ``InvalidIdentifier`` ("letters or symbols in phone number", "not a phone number",
    "not a mainland mobile number", "not a valid phone number", or a shared pre-cleaning reason).
    """
    compact = remove_separators(clean(raw, _TYPE), extra="().")
    if not _DIALLABLE.fullmatch(compact):
        raise invalid(_TYPE, "letters or symbols in phone number", raw)
    try:
        number = phonenumbers.parse(compact, _DEFAULT_REGION)
    except phonenumbers.NumberParseException:
        raise invalid(_TYPE, "not a phone number", raw) from None
    if number.country_code == _MAINLAND_CODE:
        if not _is_mainland_mobile(number):
            raise invalid(_TYPE, "not a mainland mobile number", raw)
    elif not phonenumbers.is_valid_number(number):
        raise invalid(_TYPE, "not a valid phone number", raw)
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _is_mainland_mobile(number: phonenumbers.PhoneNumber) -> bool:
    if not phonenumbers.is_valid_number(number):
        return False
    return phonenumbers.number_type(number) in _MOBILE_TYPES
