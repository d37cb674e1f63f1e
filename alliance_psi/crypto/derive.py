"""Step 5 of the design: a match token and a label key from the OPRF output, domain-separated.

``y`` is the 64-byte OPRF output, already a uniformly random PRF value, so HKDF's extract step
is skipped (RFC 5869 section 3.3) and each value is ``HKDF-Expand(y, info, L)`` with its own
``info``. For ``L`` no larger than the hash output, HKDF-Expand is one HMAC:
``T(1) = HMAC-Hash(PRK, info || 0x01)``. It is computed that way, with the standard library's
one-shot HMAC, because the member derives millions of these; the tests check it against
``cryptography``'s ``HKDFExpand`` and committed vectors.

Security: the token reveals nothing about the label key (distinct ``info``), and both are secrets
of the member node until the token is submitted; the label key never leaves the node.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

__all__ = [
    "INFO_LABEL_KEY",
    "INFO_MATCH_TOKEN",
    "LABEL_KEY_BYTES",
    "MATCH_TOKEN_BYTES",
    "Derived",
    "derive",
]

MATCH_TOKEN_BYTES = 16
LABEL_KEY_BYTES = 32
INFO_MATCH_TOKEN = b"alliance-psi/v1 match-token"
INFO_LABEL_KEY = b"alliance-psi/v1 label-key"

# T(1) = HMAC-Hash(PRK, T(0) || info || 0x01) with T(0) empty.
_TOKEN_MSG = INFO_MATCH_TOKEN + b"\x01"
_LABEL_MSG = INFO_LABEL_KEY + b"\x01"


@dataclass(frozen=True, slots=True)
class Derived:
    """The two values a member derives from one identifier's OPRF output."""

    match_token: bytes
    label_key: bytes

    def __repr__(self) -> str:
        return f"Derived(match_token={self.match_token.hex()}, label_key=<secret>)"


def derive(oprf_output: bytes) -> Derived:
    """Return the 16-byte match token and 32-byte label key for one OPRF output."""
    if len(oprf_output) < 32:
        raise ValueError("OPRF output too short to derive from")
    return Derived(
        match_token=hmac.digest(oprf_output, _TOKEN_MSG, "sha512")[:MATCH_TOKEN_BYTES],
        label_key=hmac.digest(oprf_output, _LABEL_MSG, "sha512")[:LABEL_KEY_BYTES],
    )
