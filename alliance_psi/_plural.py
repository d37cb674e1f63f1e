"""Counted nouns in English, for every message and report that says how many: ``1 lead``, ``2 leads``."""

from __future__ import annotations

__all__ = ["plural"]


def plural(count: int, noun: str, plural_noun: str | None = None) -> str:
    """``count`` with thousands separators and ``noun`` in the number that fits it.

    ``plural(1, "lead")`` is ``1 lead``, ``plural(0, "lead")`` is ``0 leads`` and
    ``plural(2_000, "entry", "entries")`` is ``2,000 entries``: English takes the singular for one
    only. The plural is ``noun + "s"`` unless ``plural_noun`` says otherwise.
    """
    return f"{count:,} {noun if count == 1 else plural_noun or noun + 's'}"
