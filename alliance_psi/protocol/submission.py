"""Digests over a submission's items, computed the same way by the member and the coordinator.

An item is ``match_token || I2OSP(len(sealed_label), 2) || sealed_label`` (label empty when
the member shares none). A chunk digest is SHA-256 over its items in order; the submission
digest is SHA-256 over every item of chunks 0, 1, 2, ... in order. The coordinator commits a
submission only if its own count and digest equal the member's: nothing lost, nothing added.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from alliance_psi.crypto.derive import MATCH_TOKEN_BYTES
from alliance_psi.crypto.labels import SEALED_LABEL_BYTES
from alliance_psi.errors import InvalidRequest

__all__ = ["MAX_CHUNK_ITEMS", "SubmissionDigest", "chunk_digest", "check_item", "item_bytes"]

MAX_CHUNK_ITEMS = 8192


def check_item(match_token: bytes, sealed_label: bytes | None) -> None:
    """Raise ``InvalidRequest`` unless the token and label have the fixed sizes."""
    if len(match_token) != MATCH_TOKEN_BYTES:
        raise InvalidRequest(f"match token must be {MATCH_TOKEN_BYTES} bytes, got {len(match_token)}")
    if sealed_label and len(sealed_label) != SEALED_LABEL_BYTES:
        raise InvalidRequest(f"sealed label must be empty or {SEALED_LABEL_BYTES} bytes, got {len(sealed_label)}")


def item_bytes(match_token: bytes, sealed_label: bytes | None) -> bytes:
    """The digested form of one item."""
    label = sealed_label or b""
    return match_token + len(label).to_bytes(2, "big") + label


def chunk_digest(items: Iterable[tuple[bytes, bytes | None]]) -> bytes:
    """SHA-256 over a chunk's items in order."""
    h = hashlib.sha256()
    for token, label in items:
        h.update(item_bytes(token, label))
    return h.digest()


class SubmissionDigest:
    """Incremental digest of a whole submission; feed chunks in index order."""

    def __init__(self) -> None:
        self._hash = hashlib.sha256()
        self.count = 0

    def update(self, items: Iterable[tuple[bytes, bytes | None]]) -> None:
        for token, label in items:
            self._hash.update(item_bytes(token, label))
            self.count += 1

    def digest(self) -> bytes:
        return self._hash.digest()
