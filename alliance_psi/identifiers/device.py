"""Device identifiers: IMEIs and vendor device ids.

Contract of ``normalize_imei(raw)``: 15 digits (spaces and dashes between them ignored) whose
last digit is the Luhn check digit of the first 14 (3GPP TS 23.003). A 14-digit IMEI without
its check digit is rejected rather than completed, and so is one digit repeated (all zeros is
what emulators and restricted devices report), digits counting up or down in the first 14
(``12345678901234`` and its check digit), and the examples of ``IMEI_PLACEHOLDERS``.

Contract of ``normalize_device_id(raw)``, for vendor ids:

- UUID form (IDFA, IDFV, OAID): ``8-4-4-4-12`` hex digits, or 32 hex digits without dashes,
  gives the lower-case dashed form.
- 16 hex digits (Android ID) gives the lower-case form.
- One hex digit repeated is rejected in both forms: the all-zero UUID is the advertising id of
  every device with "limit ad tracking" on (millions of them), ``ffff…`` the value of a failed read.
- Anything else is rejected.
"""

from __future__ import annotations

import re
import uuid

from alliance_psi.identifiers._checksum import luhn_valid
from alliance_psi.identifiers._text import clean, digit_string, invalid
from alliance_psi.identifiers.placeholders import (
    IMEI_PLACEHOLDERS,
    REPEATED_CHARACTER,
    digit_placeholder,
    listed,
    one_repeated_character,
)
from alliance_psi.identifiers.types import IdentifierType

__all__ = ["normalize_device_id", "normalize_imei"]

_IMEI_LENGTHS = range(15, 16)
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|[0-9a-f]{32}")
_ANDROID_ID = re.compile(r"[0-9a-f]{16}")


def normalize_imei(raw: str) -> str:
    """Return the 15 digits of an IMEI.

    Raises ``InvalidIdentifier`` ("expected digits only", "wrong length: …", "placeholder: …",
    "bad check digit", or a shared pre-cleaning reason).
    """
    type_ = IdentifierType.IMEI
    digits = digit_string(raw, type_, _IMEI_LENGTHS)
    if reason := digit_placeholder(digits) or digit_placeholder(digits[:-1]):
        raise invalid(type_, reason, raw)
    if not luhn_valid(digits):
        raise invalid(type_, "bad check digit", raw)
    if reason := listed(IMEI_PLACEHOLDERS, digits):
        raise invalid(type_, reason, raw)
    return digits


def normalize_device_id(raw: str) -> str:
    """Return the lower-case canonical form of a vendor device id.

    Raises ``InvalidIdentifier`` ("not a uuid or 16-hex-digit device id", "placeholder: one
    character repeated", or a shared pre-cleaning reason).
    """
    type_ = IdentifierType.DEVICE_ID
    text = clean(raw, type_).lower()
    if _UUID.fullmatch(text):
        canonical = str(uuid.UUID(text))
    elif _ANDROID_ID.fullmatch(text):
        canonical = text
    else:
        raise invalid(type_, "not a uuid or 16-hex-digit device id", raw)
    if one_repeated_character(canonical.replace("-", "")):
        raise invalid(type_, REPEATED_CHARACTER, raw)
    return canonical
