"""Identifier normalization: raw values in, canonical typed identifiers out.

A pure layer (no crypto, no I/O, no network or database imports). Each type's rules are stated
in its module's docstring; ``normalize(type, raw)`` is the entry point and raises
``alliance_psi.errors.InvalidIdentifier`` with a short reason for any value it rejects. Nothing
that changes a value's meaning is ever fixed up silently.
"""

from alliance_psi.identifiers.registry import NORMALIZERS, normalize
from alliance_psi.identifiers.types import Identifier, IdentifierType

__all__ = ["Identifier", "IdentifierType", "NORMALIZERS", "normalize"]
