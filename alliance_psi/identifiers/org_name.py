"""Organization names (company, shop or association names).

Contract of ``normalize_org_name(raw)``, in this order:

1. NFKC (in the shared pre-cleaning): full-width letters, digits and brackets become ASCII.
2. Traditional Chinese characters become simplified ones (OpenCC ``t2s``), so
   ``馬上消費金融股份有限公司`` and ``马上消费金融股份有限公司`` are the same name.
3. Every whitespace, punctuation and symbol character (Unicode categories Z*, P* and S*; format
   characters are already gone) is removed, brackets included: ``马上消费金融股份有限公司（）``
   and ``… 有限公司 `` fold to the same name. Letters are lower-cased.
4. Steps 1-3 are repeated until nothing changes, so the result is a fixed point.
5. At least 2 characters must remain, and the result must not be a placeholder: one of
   ``placeholders.ORG_NAME_PLACEHOLDERS`` folded the same way (``N/A``, ``null``, ``未知``,
   ``不详``, ``某某公司``, …) or one character repeated (``xxx``, ``000``).

Folding is lossy by design: two names that differ only in punctuation or script are treated as
one organization.
"""

from __future__ import annotations

import functools
import unicodedata

import opencc

from alliance_psi.identifiers._text import clean, invalid
from alliance_psi.identifiers.placeholders import ORG_NAME_PLACEHOLDERS, REPEATED_CHARACTER, one_repeated_character
from alliance_psi.identifiers.types import IdentifierType

__all__ = ["normalize_org_name"]

_TYPE = IdentifierType.ORG_NAME
_MIN_LENGTH = 2
_OPENCC_CONFIG = "t2s"
_FOLDED_CATEGORIES = ("Z", "P", "S")
# The steps are repeated until the text stops changing (at most this many passes), which keeps
# normalization idempotent: a converted character can itself be a traditional form (薴 → 苧 →
# 苎), and removing a space can let a letter compose with the mark after it (T ¨ → ẗ).
_MAX_PASSES = 4


@functools.cache
def _converter() -> opencc.OpenCC:
    # Loading the dictionaries takes a while, so it is done once, on first use.
    return opencc.OpenCC(_OPENCC_CONFIG)


def normalize_org_name(raw: str) -> str:
    """Return the folded, simplified-Chinese form of an organization name.

    Raises ``InvalidIdentifier`` ("empty after folding", "placeholder, not a name", "placeholder:
    one character repeated", "too short: fewer than 2 characters after folding", or a shared
    pre-cleaning reason).
    """
    folded = _fixed_point(clean(raw, _TYPE))
    if not folded:
        raise invalid(_TYPE, "empty after folding", raw)
    if folded in _placeholders():
        raise invalid(_TYPE, "placeholder, not a name", raw)
    if one_repeated_character(folded):
        raise invalid(_TYPE, REPEATED_CHARACTER, raw)
    if len(folded) < _MIN_LENGTH:
        raise invalid(_TYPE, "too short: fewer than 2 characters after folding", raw)
    return folded


@functools.cache
def _placeholders() -> frozenset[str]:
    """The placeholders in their folded form, which is how names are compared with them."""
    return frozenset(_fixed_point(unicodedata.normalize("NFKC", name)) for name in ORG_NAME_PLACEHOLDERS)


def _fixed_point(text: str) -> str:
    for _ in range(_MAX_PASSES):
        folded = _fold(_converter().convert(_fold(unicodedata.normalize("NFKC", text))))
        if folded == text:
            break
        text = folded
    return text


def _fold(text: str) -> str:
    kept = (ch for ch in text if not unicodedata.category(ch).startswith(_FOLDED_CATEGORIES))
    return "".join(kept).lower()
