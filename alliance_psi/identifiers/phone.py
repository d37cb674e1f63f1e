"""Phone numbers: E.164, with mainland China as the default region.

Contract of ``normalize_phone(raw)``:

- Spaces, dashes, dots and parentheses between digits are ignored; any other character (letters,
  including vanity numbers and "ext." suffixes) is rejected.
- Numbers without an international prefix are read as Chinese: ``13915274680``,
  ``8613915274680``, ``+86 139-1527-4680`` and ``008613915274680`` (``00`` is China's
  international prefix) all give ``+8613915274680``. No other country is ever guessed.
- A +86 number must be a valid mainland mobile number (libphonenumber type MOBILE or
  FIXED_LINE_OR_MOBILE); landlines and invalid numbers give "not a mainland mobile number".
- A mainland number that is a placeholder is rejected (``placeholders``): a well-known example
  (``PHONE_PLACEHOLDERS``: ``13800138000``); a subscriber number (the last 8 digits) with a run
  of 7 or more of one digit (``13888888888``, ``13900000001``) or counting up or down
  (``13012345678``); the prefix echoed, ``138 0013 8000``, the shape of operators' service
  numbers. A real number of such a shape is refused too (about 3 in 10 million).
- A number with another country code (written with ``+`` or ``00``) must be valid for that
  country and is kept in E.164.
"""

from __future__ import annotations

import re

import phonenumbers
from phonenumbers import PhoneNumberType

from alliance_psi.identifiers._text import clean, invalid, remove_separators
from alliance_psi.identifiers.placeholders import PHONE_PLACEHOLDERS, counting, listed
from alliance_psi.identifiers.types import IdentifierType

__all__ = ["normalize_phone"]

_TYPE = IdentifierType.PHONE
_DEFAULT_REGION = "CN"
_MAINLAND_CODE = 86
_MOBILE_TYPES = (PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE_OR_MOBILE)
_DIALLABLE = re.compile(r"\+?[0-9]+", re.ASCII)
_PREFIX_LENGTH = 3
_LONGEST_RUN = 7
_RUN = "placeholder: the last 8 digits hold one digit 7 or more times in a row"
_SUBSCRIBER_COUNTING = "placeholder: the last 8 digits count up or down (…12345678)"
_ECHO = "placeholder: the prefix echoed (like 138 0013 8000), the shape of operators' service numbers"


def normalize_phone(raw: str) -> str:
    """Return the E.164 form of a phone number.

    Raises ``InvalidIdentifier`` ("letters or symbols in phone number", "not a phone number",
    "not a mainland mobile number", "not a valid phone number", "placeholder: …", or a shared
    pre-cleaning reason).
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
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    if number.country_code == _MAINLAND_CODE and (reason := _placeholder(e164, str(number.national_number))):
        raise invalid(_TYPE, reason, raw)
    return e164


def _placeholder(e164: str, national: str) -> str | None:
    """The reason the mainland mobile number (``e164``, 11 ``national`` digits) is a placeholder."""
    prefix, subscriber = national[:_PREFIX_LENGTH], national[_PREFIX_LENGTH:]
    if reason := listed(PHONE_PLACEHOLDERS, e164):
        return reason
    if max(len(run.group()) for run in re.finditer(r"(\d)\1*", subscriber)) >= _LONGEST_RUN:
        return _RUN
    if counting(subscriber):
        return _SUBSCRIBER_COUNTING
    if national == f"{prefix}00{prefix}000":
        return _ECHO
    return None


def _is_mainland_mobile(number: phonenumbers.PhoneNumber) -> bool:
    if not phonenumbers.is_valid_number(number):
        return False
    return phonenumbers.number_type(number) in _MOBILE_TYPES
