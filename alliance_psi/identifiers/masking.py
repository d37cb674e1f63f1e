"""Showing an identifier without showing it: the one masking rule of console output and notices."""

from __future__ import annotations

__all__ = ["mask"]

_SHOWN = 4


def mask(value: str) -> str:
    """``value`` as its last four characters behind ``****``.

    Values shorter than eight characters are hidden whole: four would be half of them.
    """
    return "****" + value[-_SHOWN:] if len(value) >= 2 * _SHOWN else "*" * 2 * _SHOWN
