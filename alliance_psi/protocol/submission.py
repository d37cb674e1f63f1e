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
- The **set digest** names what the coordinator holds for the member after the commit: a
  homomorphic multiset hash (LtHash16, below) of its entries ``token || label_digest``, where
  ``label_digest`` is the first 16 bytes of SHA-256(sealed label), or 16 zero bytes. Both sides
  keep the hash's 2,048-byte state and update it with each entry added or removed, so a delta
  costs work in proportion to its size, not to the set's; the digest is SHA-256 over
  ``"alliance-psi/v2 set"`` and that state.

LtHash16 (Lewi, Kim, Maykov and Weis, "Securing Update Propagation with Homomorphic Hashing",
2019; folly's ``LtHash<16, 1024>``): an entry hashes, with an extendable-output function, to
1,024 lanes of 16 bits; a set's state is the lane-wise sum of its entries' vectors modulo 2^16,
and removing an entry subtracts its vector. Finding two sets with the same state is as hard as
a short-integer-solution lattice problem in dimension 1,024 (about 200 bits of security in the
paper's analysis), which a plain sum of SHA-256 outputs is not (Wagner's generalized birthday
attack breaks sums of 256-bit hashes). We use SHAKE128 where folly uses BLAKE2xb (Python's
``hashlib`` has SHAKE, not BLAKE2x). It is hand-written (about 40 lines over Python integers):
no maintained Python library implements it.

The coordinator commits only if its own delta count and digest, and the resulting set's count
and digest, equal the member's: nothing lost, nothing added, no drift between rounds.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from operator import itemgetter

from alliance_psi.crypto.derive import MATCH_TOKEN_BYTES
from alliance_psi.crypto.labels import SEALED_LABEL_BYTES
from alliance_psi.errors import InvalidRequest

__all__ = [
    "LABEL_DIGEST_BYTES",
    "MAX_CHUNK_ITEMS",
    "NO_LABEL_DIGEST",
    "SET_STATE_BYTES",
    "SetDigest",
    "SubmissionDigest",
    "check_item",
    "check_items",
    "check_no_repeats",
    "chunk_digest",
    "chunk_position",
    "item_bytes",
    "label_digest",
    "label_digests",
    "removal_bytes",
    "set_digest",
    "set_state_digest",
]

MAX_CHUNK_ITEMS = 8192
LABEL_DIGEST_BYTES = 16
NO_LABEL_DIGEST = bytes(LABEL_DIGEST_BYTES)
_REMOVED = b"\xff\xff"
_SET_PREFIX = b"alliance-psi/v2 set"
_ENTRY_DST = b"alliance-psi/v2 set entry"
SET_STATE_BYTES = 2048  # LtHash16: 1,024 lanes of 16 bits, little-endian.
_LANES = SET_STATE_BYTES // 2
# Python integers hold the state as two sums. ``_total`` is the plain integer sum of the entries'
# lane vectors, each read as one little-endian integer (carries cross lanes there); ``_even`` is
# the sum of their even lanes only, each lane in a 32-bit slot: 16 bits of lane and 16 bits of
# room for carries. ``_total - _even`` is then exactly the sum of the odd lanes, each in the upper
# half of a slot with the next slot's lower half as its room. An entry costs two additions and one
# AND, and both sums stay non-negative: an entry adds at most 2^16 to a lane (a removal adds
# 2^16 - lane, which is -lane modulo 2^16), so 2^15 of them on a reduced state stay below 2^32
# without a carry reaching the next lane (``_REDUCE_EVERY``); one AND per half then reduces every
# lane modulo 2^16.
_SLOTS = int.from_bytes(b"\xff\xff\x00\x00" * (_LANES // 2), "little")
_ODD_SLOTS = _SLOTS << 16
_EVEN_2_16 = int.from_bytes(b"\x00\x00\x01\x00" * (_LANES // 2), "little")  # 2^16 in each even lane.
_ALL_2_16 = int.from_bytes(b"\x00\x00" + b"\x01\x00" * _LANES, "little")  # 2^16 in every lane.
_REDUCE_EVERY = 1 << 15
_ENTRY_HASH = hashlib.shake_128(_ENTRY_DST)  # Copied for each entry: the prefix is absorbed once.

Item = tuple[bytes, bytes | None]


def check_item(match_token: bytes, sealed_label: bytes | None) -> None:
    """Raise ``InvalidRequest`` unless the token and label have the fixed sizes."""
    if len(match_token) != MATCH_TOKEN_BYTES:
        raise InvalidRequest(f"match token must be {MATCH_TOKEN_BYTES} bytes, got {len(match_token)}")
    if sealed_label and len(sealed_label) != SEALED_LABEL_BYTES:
        raise InvalidRequest(f"sealed label must be empty or {SEALED_LABEL_BYTES} bytes, got {len(sealed_label)}")


def check_items(chunk_index: int, items: Sequence[Item], removals: Sequence[bytes]) -> None:
    """Raise ``InvalidRequest`` naming the first item or removal of a chunk whose token or label
    does not have its fixed size (``check_item``). The sizes are compared over the whole chunk at
    once, in C; positions are looked for only in a chunk that fails."""
    sizes = set(map(len, map(itemgetter(0), items))) | set(map(len, removals))
    if sizes <= {MATCH_TOKEN_BYTES} and {len(label) for _, label in items if label} <= {SEALED_LABEL_BYTES}:
        return
    for position, (token, label) in enumerate(items):
        try:
            check_item(token, label)
        except InvalidRequest as exc:
            raise InvalidRequest(f"chunk {chunk_index}, item {position}: {exc}") from None
    for position, token in enumerate(removals):
        try:
            check_item(token, None)
        except InvalidRequest as exc:
            raise InvalidRequest(f"chunk {chunk_index}, removal {position}: {exc}") from None


def _token_at(position: int, items: int) -> str:
    return f"item {position}" if position < items else f"removal {position - items}"


def chunk_position(chunk_index: int, position: int, items: int) -> str:
    """Name the ``position``-th token of a chunk of ``items`` puts then removals, for an error.

    Positions only: an error crosses the network and never carries a token.
    """
    return f"chunk {chunk_index}, {_token_at(position, items)}"


def check_no_repeats(chunk_index: int, items: Sequence[Item], removals: Sequence[bytes]) -> None:
    """Raise ``InvalidRequest`` naming the first token of a chunk that repeats an earlier one."""
    tokens = [*map(itemgetter(0), items), *removals]
    if len(set(tokens)) == len(tokens):
        return
    seen: dict[bytes, int] = {}
    for position, token in enumerate(tokens):
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


def label_digests(sealed_labels: Iterable[bytes | None]) -> list[bytes]:
    """``label_digest`` of each label, in order."""
    sha256, none, size = hashlib.sha256, NO_LABEL_DIGEST, LABEL_DIGEST_BYTES
    return [sha256(label).digest()[:size] if label else none for label in sealed_labels]


class SetDigest:
    """The set digest's LtHash16 state, updated one entry at a time, in any order.

    ``SetDigest(state, count)`` resumes from a state kept earlier (``state()``); ``add`` and
    ``remove`` take an entry (token, label digest) in or out, and ``count`` follows them. Adding
    an entry the set already holds, or removing one it does not hold, is the caller's error: the
    hash cannot tell (the coordinator and the member both know their sets and never do it).
    """

    __slots__ = ("_even", "_pending", "_total", "count")

    def __init__(self, state: bytes | None = None, count: int = 0) -> None:
        if state is None:
            state = bytes(SET_STATE_BYTES)
        if len(state) != SET_STATE_BYTES:
            raise ValueError(f"a set state is {SET_STATE_BYTES} bytes, not {len(state)}")
        self._total = int.from_bytes(state, "little")
        self._even = self._total & _SLOTS
        self._pending = 0
        self.count = count

    def add(self, token: bytes, digest: bytes) -> None:
        """Take entry ``token || digest`` into the set."""
        self.add_all(((token, digest),))

    def add_all(self, entries: Iterable[tuple[bytes, bytes]]) -> None:
        """Take every entry ``token || digest`` of ``entries`` into the set (``add`` for each)."""
        total, even, pending, added = self._total, self._even, self._pending, 0
        copy, from_bytes, slots, reduce_every = _ENTRY_HASH.copy, int.from_bytes, _SLOTS, _REDUCE_EVERY
        for token, digest in entries:
            entry = copy()
            entry.update(token + digest)
            lanes = from_bytes(entry.digest(SET_STATE_BYTES), "little")
            total += lanes
            even += lanes & slots
            added += 1
            pending += 1
            if pending >= reduce_every:
                total = _reduced(total, even)
                even, pending = total & slots, 0
        self._total, self._even, self._pending = total, even, pending
        self.count += added

    def remove(self, token: bytes, digest: bytes) -> None:
        """Take entry ``token || digest`` out of the set (it must be in it)."""
        lanes = _entry_lanes(token, digest)
        # Each lane gains 2^16 - lane, which is -lane modulo 2^16 and fits its slot.
        self._total += _ALL_2_16 - lanes
        self._even += _EVEN_2_16 - (lanes & _SLOTS)
        self.count -= 1
        self._pending += 1
        if self._pending >= _REDUCE_EVERY:
            self._total = _reduced(self._total, self._even)
            self._even, self._pending = self._total & _SLOTS, 0

    update = add  # Feeding a whole set, entry by entry (the order does not matter).

    def state(self) -> bytes:
        """The 2,048-byte state to keep and resume from."""
        return _reduced(self._total, self._even).to_bytes(SET_STATE_BYTES, "little")

    def digest(self) -> bytes:
        """The 32-byte set digest a commit carries."""
        return set_state_digest(self.state())


def _reduced(total: int, even: int) -> int:
    """The state's lanes, each modulo 2^16, as one integer, from the two sums ``SetDigest`` keeps."""
    return (even & _SLOTS) | ((total - even) & _ODD_SLOTS)


def set_state_digest(state: bytes) -> bytes:
    """The set digest of a kept LtHash16 state: SHA-256 over the prefix and the state."""
    return hashlib.sha256(_SET_PREFIX + state).digest()


def _entry_lanes(token: bytes, digest: bytes) -> int:
    entry = _ENTRY_HASH.copy()
    entry.update(token + digest)
    return int.from_bytes(entry.digest(SET_STATE_BYTES), "little")


def set_digest(entries: Iterable[tuple[bytes, bytes]]) -> bytes:
    """The set digest of a set of (token, label digest) entries, in any order, each once."""
    digest = SetDigest()
    digest.add_all(entries)
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
