"""Identifier normalization: raw values in, canonical typed identifiers out.

A pure layer (no crypto, no I/O, no network or database imports). Each type's rules are stated
in its module's docstring; ``normalize(type, raw)`` is the entry point and raises
``alliance_psi.errors.InvalidIdentifier`` with a short reason for any value it rejects. Nothing
that changes a value's meaning is ever fixed up silently.

``normalize`` and ``NORMALIZERS`` load on first use: the normalizers import phonenumbers,
email-validator, idna and OpenCC, which code that only names types (``identifiers.types``,
``identifiers.categories``), such as a member node joining a round, never needs.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from alliance_psi.identifiers.types import Identifier, IdentifierType

if TYPE_CHECKING:
    from alliance_psi.identifiers.registry import NORMALIZERS, normalize

__all__ = ["Identifier", "IdentifierType", "NORMALIZERS", "normalize"]

_FROM_REGISTRY = ("NORMALIZERS", "normalize")


def __getattr__(name: str) -> object:
    if name not in _FROM_REGISTRY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.registry"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_FROM_REGISTRY})
