"""Resident identity card numbers (GB 11643-1999).

Contract of ``normalize_id_card(raw)``:

- Spaces and dashes between characters are ignored; a lower-case check character ``x`` is
  upper-cased.
- 18 characters: 6-digit region code (first digit 1-8), birth date ``YYYYMMDD`` that is a real
  calendar date, 3-digit sequence, and the ISO 7064 MOD 11-2 check character (``0``-``9`` or
  ``X``). A wrong check character is rejected, never corrected.
- The birth date lies between 1900-01-01 and today (China time, UTC+8): a birth in 2099 or 1800
  is a made-up or mistyped number (placeholders such as ``…20990101…`` pass every other check).
  Reading today's date is this module's only dependency on the outside world.
- Placeholders are rejected (``placeholders``): a well-known example (``ID_CARD_PLACEHOLDERS``:
  the worked example of the standard, ``11010519491231002X``); a number whose first 14 digits are
  ``EXAMPLE_PREFIXES`` (Dongcheng, Beijing, born 1990-03-07 or 1990-01-01: the region and birth
  date of the examples copied from page to page, ``110101199003077777``, and of ID generators'
  defaults); one digit typed throughout (``111111111111111``, a valid legacy number); a sequence
  code and check character that are one digit four times (``…19900307 7777``, about 1 real
  number in 1,100).
- 15 digits (legacy numbers issued before 1999) are upgraded: ``19`` is inserted before the
  6-digit ``YYMMDD`` birth date and the check character is computed, so a legacy number and its
  18-digit upgrade normalize to the same canonical value.
"""

from __future__ import annotations

import datetime

from alliance_psi.identifiers._text import (
    clean,
    invalid,
    is_ascii_digits,
    remove_separators,
    wrong_length,
)
from alliance_psi.identifiers.placeholders import (
    ID_CARD_PLACEHOLDERS,
    REPEATED_CHARACTER,
    listed,
    one_repeated_character,
)
from alliance_psi.identifiers.types import CHINA_TIME, IdentifierType

__all__ = ["EXAMPLE_PREFIXES", "check_character", "normalize_id_card"]

# Region and birth date of the documentation examples and generator defaults (see the module).
EXAMPLE_PREFIXES = ("11010119900307", "11010119900101")
_EXAMPLE = "placeholder: the region and birth date of the usual documentation example (110101 1990-03-07 or 1990-01-01)"
_REPEATED_ENDING = "placeholder: sequence code and check character one digit four times"
_ENDING = 4

_TYPE = IdentifierType.ID_CARD
_LEGACY_LENGTH = 15
_LENGTH = 18
_LEGACY_CENTURY = "19"
_VALID_REGION_FIRST_DIGITS = "12345678"
_EARLIEST_BIRTH = datetime.date(1900, 1, 1)

# ISO 7064 MOD 11-2: the weight of position i (1-based, 17 positions) is 2^(18 - i) mod 11.
_WEIGHTS = tuple(pow(2, 17 - index, 11) for index in range(17))
_CHECK_CHARACTERS = "0123456789X"


def check_character(body: str) -> str:
    """Return the ISO 7064 MOD 11-2 check character of the 17-digit ``body``."""
    # The check value c satisfies sum(a_i * w_i) + c = 1 (mod 11).
    total = sum(int(digit) * weight for digit, weight in zip(body, _WEIGHTS, strict=True))
    return _CHECK_CHARACTERS[(1 - total) % 11]


def normalize_id_card(raw: str) -> str:
    """Return the 18-character resident ID number, upgrading 15-digit legacy numbers.

    Raises ``InvalidIdentifier`` ("wrong length: …", "expected digits …", "invalid region code",
    "invalid birth date", "birth date before 1900", "birth date in the future", "bad check
    character", "placeholder: …", or a shared pre-cleaning reason).
    """
    text = remove_separators(clean(raw, _TYPE)).upper()
    if len(text) == _LEGACY_LENGTH:
        body = _legacy_body(text, raw)
    elif len(text) == _LENGTH:
        body = _body(text, raw)
    else:
        raise invalid(_TYPE, wrong_length("18 characters (or 15 digits)", len(text)), raw)
    _check_region(body, raw)
    _check_birth_date(body[6:14], raw)
    expected = check_character(body)
    if len(text) == _LENGTH and text[-1] != expected:
        raise invalid(_TYPE, "bad check character", raw)
    if reason := _placeholder(text, body + expected):
        raise invalid(_TYPE, reason, raw)
    return body + expected


def _placeholder(typed: str, canonical: str) -> str | None:
    """The reason the ID number (as ``typed``, and its 18-character ``canonical`` form) is a placeholder."""
    if reason := listed(ID_CARD_PLACEHOLDERS, canonical):
        return reason
    if canonical.startswith(EXAMPLE_PREFIXES):
        return _EXAMPLE
    if one_repeated_character(typed):
        return REPEATED_CHARACTER
    if one_repeated_character(canonical[-_ENDING:]):
        return _REPEATED_ENDING
    return None


def _legacy_body(text: str, raw: str) -> str:
    if not is_ascii_digits(text):
        raise invalid(_TYPE, "expected digits only in a 15-digit legacy number", raw)
    return text[:6] + _LEGACY_CENTURY + text[6:]


def _body(text: str, raw: str) -> str:
    body, check = text[:-1], text[-1]
    if not is_ascii_digits(body) or check not in _CHECK_CHARACTERS:
        raise invalid(_TYPE, "expected 17 digits and a check character 0-9 or X", raw)
    return body


def _check_region(body: str, raw: str) -> None:
    if body[0] not in _VALID_REGION_FIRST_DIGITS:
        raise invalid(_TYPE, "invalid region code", raw)


def _check_birth_date(yyyymmdd: str, raw: str) -> None:
    year, month, day = int(yyyymmdd[:4]), int(yyyymmdd[4:6]), int(yyyymmdd[6:])
    try:
        born = datetime.date(year, month, day)
    except ValueError:
        raise invalid(_TYPE, "invalid birth date", raw) from None
    if born < _EARLIEST_BIRTH:
        raise invalid(_TYPE, "birth date before 1900", raw)
    if born > datetime.datetime.now(CHINA_TIME).date():
        raise invalid(_TYPE, "birth date in the future", raw)
