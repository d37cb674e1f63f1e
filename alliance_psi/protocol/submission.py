"""Digests over a submission, computed the same way by the member and the coordinator.

A submission is a **delta** against the member's set for the round's scope (see
``model.Round.set_scope``): items to put (a token and its sealed label, added or replacing the
label) and tokens to remove. A member with no set yet, or whose record of its set disagrees with
the coordinator's, sends its whole set with ``replace``.

- An item put is ``match_token || I2OSP(len(sealed_label), 2) || sealed_label`` (label empty when
  the member shares none); a removal is ``match_token || 0xFFFF`` (no real label is that long).
- A chunk digest is SHA-256 over the chunk's puts, then its removals, in order; the submission
  digest is SHA-256 over the chunk digests of chunks 0, 1, 2, ... (each chunk's digest is checked
  against its items when it arrives, so the commit need not read the items again).
- The **set digest** names what the coordinator holds for the member after the commit: SHA-256
  over ``"alliance-psi/v1 set"`` then, for each token in byte order, ``token || label_digest``
  where ``label_digest`` is the first 16 bytes of SHA-256(sealed label), or 16 zero bytes.

The coordinator commits only if its own delta count and digest, and the resulting set's count
and digest, equal the member's: nothing lost, nothing added, no drift between rounds.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

from alliance_psi.crypto.derive import MATCH_TOKEN_BYTES
from alliance_psi.crypto.labels import SEALED_LABEL_BYTES
from alliance_psi.errors import InvalidRequest

__all__ = [
    "LABEL_DIGEST_BYTES",
    "MAX_CHUNK_ITEMS",
    "NO_LABEL_DIGEST",
    "SetDigest",
    "SubmissionDigest",
    "check_item",
    "check_no_repeats",
    "chunk_digest",
    "chunk_position",
    "item_bytes",
    "label_digest",
    "removal_bytes",
    "set_digest",
]

MAX_CHUNK_ITEMS = 8192
LABEL_DIGEST_BYTES = 16
NO_LABEL_DIGEST = bytes(LABEL_DIGEST_BYTES)
_REMOVED = b"\xff\xff"
_SET_PREFIX = b"alliance-psi/v1 set"

Item = tuple[bytes, bytes | None]


def check_item(match_token: bytes, sealed_label: bytes | None) -> None:
    """Raise ``InvalidRequest`` unless the token and label have the fixed sizes."""
    if len(match_token) != MATCH_TOKEN_BYTES:
        raise InvalidRequest(f"match token must be {MATCH_TOKEN_BYTES} bytes, got {len(match_token)}")
    if sealed_label and len(sealed_label) != SEALED_LABEL_BYTES:
        raise InvalidRequest(f"sealed label must be empty or {SEALED_LABEL_BYTES} bytes, got {len(sealed_label)}")


def _token_at(position: int, items: int) -> str:
    return f"item {position}" if position < items else f"removal {position - items}"


def chunk_position(chunk_index: int, position: int, items: int) -> str:
    """Name the ``position``-th token of a chunk of ``items`` puts then removals, for an error.

    Positions only: an error crosses the network and never carries a token.
    """
    return f"chunk {chunk_index}, {_token_at(position, items)}"


def check_no_repeats(chunk_index: int, items: Sequence[Item], removals: Sequence[bytes]) -> None:
    """Raise ``InvalidRequest`` naming the first token of a chunk that repeats an earlier one."""
    seen: dict[bytes, int] = {}
    for position, token in enumerate([*(t for t, _ in items), *removals]):
        earlier = seen.setdefault(token, position)
        if earlier != position:
            where = chunk_position(chunk_index, position, len(items))
            raise InvalidRequest(f"{where}: repeats the token of {_token_at(earlier, len(items))}")


def item_bytes(match_token: bytes, sealed_label: bytes | None) -> bytes:
    """The digested form of one item put."""
    label = sealed_label or b""
    return match_token + len(label).to_bytes(2, "big") + label


def removal_bytes(match_token: bytes) -> bytes:
    """The digested form of one removal."""
    return match_token + _REMOVED


def chunk_digest(items: Iterable[Item], removals: Iterable[bytes] = ()) -> bytes:
    """SHA-256 over a chunk's puts, then its removals, in order."""
    h = hashlib.sha256()
    for token, label in items:
        h.update(item_bytes(token, label))
    for token in removals:
        h.update(removal_bytes(token))
    return h.digest()


def label_digest(sealed_label: bytes | None) -> bytes:
    """What the set digest keeps of a label: 16 bytes of its SHA-256, or zeros for none."""
    return hashlib.sha256(sealed_label).digest()[:LABEL_DIGEST_BYTES] if sealed_label else NO_LABEL_DIGEST


class SetDigest:
    """Incremental ``set_digest``: feed (token, label digest) in strictly increasing token order."""

    def __init__(self) -> None:
        self._hash = hashlib.sha256(_SET_PREFIX)
        self._last = b""
        self.count = 0

    def update(self, token: bytes, digest: bytes) -> None:
        if token <= self._last:
            raise ValueError("set entries must be unique and in token order")
        self._hash.update(token + digest)
        self._last = token
        self.count += 1

    def digest(self) -> bytes:
        return self._hash.digest()


def set_digest(entries: Iterable[tuple[bytes, bytes]]) -> bytes:
    """SHA-256 over a set of (token, label digest); ``entries`` must come in token byte order."""
    digest = SetDigest()
    for token, label in entries:
        digest.update(token, label)
    return digest.digest()


class SubmissionDigest:
    """Incremental digest of a whole submission; feed it each chunk, in index order."""

    def __init__(self) -> None:
        self._hash = hashlib.sha256()
        self.count = 0

    def update(self, items: Sequence[Item], removals: Sequence[bytes] = ()) -> bytes:
        """Add one chunk; return its chunk digest."""
        digest = chunk_digest(items, removals)
        self.add_chunk(digest, len(items) + len(removals))
        return digest

    def add_chunk(self, digest: bytes, size: int) -> None:
        """Add one chunk by its (already checked) digest and number of items."""
        self._hash.update(digest)
        self.count += size

    def digest(self) -> bytes:
        return self._hash.digest()
