"""Synthetic identifiers for demos, tests and benchmarks: realistic in shape, valid under our own
normalizers, and drawn only from the caller's seeded ``random.Random``, so a seed gives the same
values on every machine.

Contract: each function returns ``n`` distinct raw values (as a person would type them) that
the blacklist importer accepts for their type: ``alliance_psi.identifiers.normalize`` takes them and
none looks damaged by Excel (``_excel.excel_damage``, such as a real resident ID ending in
``000``, which the importer refuses as rounded). A draw either refuses is drawn again. They are made up: a value may by
chance belong to a real person or company, so synthetic data is for test systems only, never to be
matched against a real alliance.

- ``mobile_numbers``: 11 digits under mainland mobile prefixes our phone normalizer accepts.
- ``resident_ids``: real region codes, birth dates 1950-2004, a sequence number and the ISO 7064
  MOD 11-2 check character (``id_card.check_character``).
- ``credit_codes``: GB 32100 codes of registered enterprises (authority ``9``, type ``1``), a real
  region code, a 9-character organization code (8 digits and its GB 11714 check character) and the
  GB 32100 check character (``uscc.check_character``).
- ``bank_cards``: common UnionPay BINs, 16-19 digits, completed with a Luhn check digit.
- ``blacklist_rows``: rows for a blacklist file, mostly phones, then ID cards, bank cards, USCCs.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from datetime import date, timedelta

from alliance_psi.errors import InvalidIdentifier
from alliance_psi.identifiers._checksum import luhn_valid
from alliance_psi.identifiers._excel import excel_damage
from alliance_psi.identifiers.categories import CATEGORIES
from alliance_psi.identifiers.id_card import check_character as id_card_check
from alliance_psi.identifiers.registry import normalize
from alliance_psi.identifiers.types import IdentifierType
from alliance_psi.identifiers.uscc import check_character as uscc_check

__all__ = ["bank_cards", "blacklist_rows", "credit_codes", "mobile_numbers", "org_code_check", "resident_ids"]

# 174 (satellite and emergency services) and 179 are left out: most of their numbers are not
# mobile numbers, and our normalizer rejects them.
_MOBILE_PREFIXES = (
    *range(130, 140),
    145,
    147,
    *range(150, 154),
    *range(155, 160),
    166,
    *range(170, 174),
    *range(175, 179),
    *range(180, 190),
    198,
    199,
)
# Dongcheng (Beijing), Xuhui (Shanghai), Nanshan (Shenzhen), Wuhou (Chengdu), Xihu (Hangzhou),
# Tianhe (Guangzhou), Jiang'an (Wuhan), Yanta (Xi'an), Heping (Tianjin), Gulou (Nanjing).
_REGIONS = ("110101", "310104", "440305", "510107", "330106", "440106", "420102", "610113", "120101", "320106")
_BIRTH_START, _BIRTH_DAYS = date(1950, 1, 1), (date(2004, 12, 31) - date(1950, 1, 1)).days + 1
# Common BINs of Chinese banks (ABC, CCB, ICBC, CMB, BOC, BOCOM), with the card length each issues.
_CARD_BINS = (
    ("622848", 19),
    ("621700", 19),
    ("622202", 19),
    ("621226", 19),
    ("622588", 16),
    ("622700", 19),
    ("621661", 19),
    ("622262", 19),
    ("625965", 16),
    ("436742", 16),
)
# GB 11714-1997: weights of the 8 body characters; check = 11 - (sum mod 11), 10 -> X, 11 -> 0.
_ORG_CODE_WEIGHTS = (3, 7, 9, 10, 5, 8, 4, 2)
_ORG_CODE_VALUES = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_TYPE_WEIGHTS = (("phone", 60), ("id_card", 20), ("bank_card", 15), ("uscc", 5))
_FIRST_SEEN_START, _FIRST_SEEN_DAYS = date(2023, 1, 1), 3 * 365
_SEVERITIES = ("level1", "level2", "")


def mobile_numbers(rng: random.Random, n: int) -> list[str]:
    """Return ``n`` distinct 11-digit mainland mobile numbers."""
    return _distinct(rng, n, "phone", lambda r: f"{r.choice(_MOBILE_PREFIXES)}{r.randrange(10**8):08d}")


def resident_ids(rng: random.Random, n: int) -> list[str]:
    """Return ``n`` distinct 18-character resident ID numbers."""

    def one(r: random.Random) -> str:
        born = _BIRTH_START + timedelta(days=r.randrange(_BIRTH_DAYS))
        body = f"{r.choice(_REGIONS)}{born:%Y%m%d}{r.randrange(1, 1000):03d}"
        return body + id_card_check(body)

    return _distinct(rng, n, "id_card", one)


def org_code_check(body: str) -> str:
    """Return the GB 11714 check character of an 8-character organization code body."""
    total = sum(_ORG_CODE_VALUES.index(char) * weight for char, weight in zip(body, _ORG_CODE_WEIGHTS, strict=True))
    check = 11 - total % 11
    return {10: "X", 11: "0"}.get(check, str(check))


def credit_codes(rng: random.Random, n: int) -> list[str]:
    """Return ``n`` distinct 18-character unified social credit codes of enterprises."""

    def one(r: random.Random) -> str:
        org_body = f"{r.randrange(10**8):08d}"
        body = f"91{r.choice(_REGIONS)}{org_body}{org_code_check(org_body)}"
        return body + uscc_check(body)

    return _distinct(rng, n, "uscc", one)


def bank_cards(rng: random.Random, n: int) -> list[str]:
    """Return ``n`` distinct Luhn-valid bank card numbers of 16-19 digits."""

    def one(r: random.Random) -> str:
        bin_, length = r.choice(_CARD_BINS)
        body = bin_ + "".join(r.choice("0123456789") for _ in range(length - len(bin_) - 1))
        # The one digit out of ten that completes a Luhn-valid number.
        return next(body + digit for digit in "0123456789" if luhn_valid(body + digit))

    return _distinct(rng, n, "bank_card", one)


_GENERATORS: dict[str, Callable[[random.Random, int], list[str]]] = {
    "phone": mobile_numbers,
    "id_card": resident_ids,
    "bank_card": bank_cards,
    "uscc": credit_codes,
}


def blacklist_rows(rng: random.Random, n: int, *, categories: Sequence[str] = CATEGORIES) -> list[dict[str, str]]:
    """Return ``n`` blacklist rows with distinct identifiers, as text for a CSV or JSONL file.

    Keys: ``type``, ``value``, ``category`` (from ``categories``), ``severity`` (``level1``,
    ``level2`` or empty), ``first_seen`` (``YYYY-MM-DD``, 2023-2025) and ``case_ref``
    (like ``ZJ-2026-000123``, the year of the case following the first sighting).
    """
    names = [name for name, _ in _TYPE_WEIGHTS]
    weights = [weight for _, weight in _TYPE_WEIGHTS]
    types = rng.choices(names, weights=weights, k=n)
    values = {name: iter(_GENERATORS[name](rng, types.count(name))) for name in names}
    rows: list[dict[str, str]] = []
    for type_ in types:
        first_seen = _FIRST_SEEN_START + timedelta(days=rng.randrange(_FIRST_SEEN_DAYS))
        rows.append(
            {
                "type": type_,
                "value": next(values[type_]),
                "category": rng.choice(categories),
                "severity": rng.choice(_SEVERITIES),
                "first_seen": first_seen.isoformat(),
                "case_ref": f"ZJ-{first_seen.year + 1}-{rng.randrange(1, 10**6):06d}",
            }
        )
    return rows


def _distinct(rng: random.Random, n: int, type_: str, make: Callable[[random.Random], str]) -> list[str]:
    """Draw with ``make`` until there are ``n`` distinct values of ``type_`` that the importer
    accepts, in the order first drawn."""
    seen: dict[str, None] = {}
    while len(seen) < n:
        value = make(rng)
        if _accepted(type_, value):
            seen.setdefault(value)
    return list(seen)


def _accepted(type_: str, value: str) -> bool:
    """Whether the importer takes ``value`` as a text cell of ``type_``: no Excel damage, normalizes."""
    if excel_damage(IdentifierType(type_), value, value) is not None:
        return False
    try:
        normalize(type_, value)
    except InvalidIdentifier:
        return False
    return True
