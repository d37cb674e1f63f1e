"""Pre-cleaning and error helpers shared by every normalizer.

Contract of ``clean(raw, type)``, applied first by every normalizer, in this order:

1. ``raw`` must be a ``str`` ("value is not text") of at most ``MAX_RAW_LENGTH`` characters
   ("value too long"); the length is checked before anything else.
2. NFKC normalization: full-width digits, letters and punctuation (``１３８``, ``Ａ``, ``＠``,
   ``（）``) and the ideographic space become their ASCII forms.
3. Invisible format characters (Unicode category Cf: zero-width spaces, byte-order marks,
   bidirectional marks) are removed; they carry no meaning in any identifier type.
4. Surrounding whitespace, including tabs and line breaks, is stripped; nothing left gives
   "empty value".
5. Any control character left (Unicode Cc, such as NUL or an inner tab) or unpaired surrogate
   gives "control character in value".

``remove_separators`` then drops inner spaces and dashes for the types whose printed forms use
them as separators (phone numbers, ID cards, bank cards and accounts, USCCs, IMEIs); the other
types keep them and reject them where they are not allowed.

Errors name the type and a short reason; the raw value appears only truncated (see
``alliance_psi.errors.InvalidIdentifier``).
"""

from __future__ import annotations

import unicodedata

from alliance_psi.errors import InvalidIdentifier
from alliance_psi.identifiers.types import IdentifierType

__all__ = [
    "MAX_RAW_LENGTH",
    "clean",
    "digit_string",
    "invalid",
    "is_ascii_digits",
    "remove_separators",
    "wrong_length",
]

MAX_RAW_LENGTH = 256


def invalid(type_: IdentifierType, reason: str, raw: object) -> InvalidIdentifier:
    """Return the error to raise for ``raw`` (shown only as a truncated prefix)."""
    return InvalidIdentifier(reason, type=type_.value, value=raw if isinstance(raw, str) else None)


def wrong_length(expected: str, got: int) -> str:
    """Return the reason for a value of the wrong length, e.g. ``expected 18 digits, got 17``."""
    return f"wrong length: expected {expected}, got {got}"


def clean(raw: str, type_: IdentifierType) -> str:
    """Apply the checks every type shares and return NFKC text without surrounding whitespace.

    Raises ``InvalidIdentifier`` ("value is not text", "value too long", "empty value",
    "control character in value").
    """
    if not isinstance(raw, str):
        raise invalid(type_, "value is not text", raw)
    if len(raw) > MAX_RAW_LENGTH:
        raise invalid(type_, "value too long", raw)
    text = unicodedata.normalize("NFKC", raw)
    text = "".join(ch for ch in text if unicodedata.category(ch) != "Cf").strip()
    if not text:
        raise invalid(type_, "empty value", raw)
    if any(unicodedata.category(ch) in ("Cc", "Cs") for ch in text):
        raise invalid(type_, "control character in value", raw)
    return text


def remove_separators(text: str, extra: str = "") -> str:
    """Remove whitespace, dashes (Unicode Pd) and the characters in ``extra`` from ``text``."""
    return "".join(ch for ch in text if not (ch.isspace() or ch in extra or unicodedata.category(ch) == "Pd"))


def is_ascii_digits(text: str) -> bool:
    """Return whether ``text`` is non-empty and only ASCII digits (``str.isdigit`` alone also
    accepts other scripts' digits, which NFKC leaves alone)."""
    return text.isascii() and text.isdigit()


def digit_string(raw: str, type_: IdentifierType, lengths: range, *, separators: bool = True) -> str:
    """Return the ASCII digits of ``raw`` after ``clean`` (and ``remove_separators`` unless
    ``separators`` is false), checking that their count is in ``lengths``.

    Raises ``InvalidIdentifier`` ("expected digits only", "wrong length: …", or a ``clean``
    reason).
    """
    text = clean(raw, type_)
    digits = remove_separators(text) if separators else text
    if not is_ascii_digits(digits):
        raise invalid(type_, "expected digits only", raw)
    if len(digits) not in lengths:
        raise invalid(type_, wrong_length(_describe(lengths), len(digits)), raw)
    return digits


def _describe(lengths: range) -> str:
    if len(lengths) == 1:
        return f"{lengths.start} digits"
    return f"{lengths.start}-{lengths.stop - 1} digits"
