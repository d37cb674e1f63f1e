"""Unified social credit codes (统一社会信用代码, GB 32100-2015).

Contract of ``normalize_uscc(raw)``: 18 characters from the alphabet
``0123456789ABCDEFGHJKLMNPQRTUWXY`` (no I, O, S, V, Z), upper-cased, with spaces and dashes
between characters ignored. The 18th character is the GB 32100 check character; a wrong one is
rejected, never corrected. One character repeated (``000000000000000000`` has a valid check
character) is a placeholder and rejected.
"""

from __future__ import annotations

from alliance_psi.identifiers._text import clean, invalid, remove_separators, wrong_length
from alliance_psi.identifiers.placeholders import REPEATED_CHARACTER, one_repeated_character
from alliance_psi.identifiers.types import IdentifierType

__all__ = ["check_character", "normalize_uscc"]

_TYPE = IdentifierType.USCC
_LENGTH = 18
_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_MODULUS = len(_ALPHABET)

# GB 32100-2015 section 5: the weight of position i (1-based, 17 positions) is 3^(i-1) mod 31.
_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)


def check_character(body: str) -> str:
    """Return the GB 32100 check character of the 17-character ``body``."""
    # C18 = 31 - MOD(sum(Ci * Wi), 31), where a result of 31 stands for 0.
    values = (_ALPHABET.index(char) for char in body)
    total = sum(value * weight for value, weight in zip(values, _WEIGHTS, strict=True))
    return _ALPHABET[(_MODULUS - total % _MODULUS) % _MODULUS]


def normalize_uscc(raw: str) -> str:
    """Return the upper-case unified social credit code.

    Raises ``InvalidIdentifier`` ("wrong length: …", "character outside the uscc alphabet",
    "placeholder: one character repeated", "bad check character", or a shared pre-cleaning
    reason).
    """
    code = remove_separators(clean(raw, _TYPE)).upper()
    if len(code) != _LENGTH:
        raise invalid(_TYPE, wrong_length(f"{_LENGTH} characters", len(code)), raw)
    if any(char not in _ALPHABET for char in code):
        reason = "character outside the uscc alphabet (0-9, A-Y without I O S V Z)"
        raise invalid(_TYPE, reason, raw)
    if one_repeated_character(code):
        raise invalid(_TYPE, REPEATED_CHARACTER, raw)
    if code[-1] != check_character(code[:-1]):
        raise invalid(_TYPE, "bad check character", raw)
    return code
