"""Check-digit algorithms shared by several identifier types.

Only checksums are hand-written; the type-specific ones (ISO 7064 MOD 11-2 for resident IDs,
GB 32100 for USCCs) live next to their type.
"""

from __future__ import annotations

__all__ = ["luhn_valid"]


def luhn_valid(digits: str) -> bool:
    """Return whether the ASCII digit string ``digits`` passes the Luhn (mod 10) check.

    From the right, every second digit is doubled (minus 9 when over 9); the sum must be a
    multiple of 10. Used by bank cards (ISO/IEC 7812) and IMEIs (3GPP TS 23.003).
    """
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2 == 1:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0
