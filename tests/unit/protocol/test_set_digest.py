"""The set digest: LtHash16 over (token, label digest) entries, updated entry by entry."""

from __future__ import annotations

import hashlib
import random

import pytest

from alliance_psi.protocol import submission
from alliance_psi.protocol.submission import SET_STATE_BYTES, SetDigest, set_digest, set_state_digest


def _entries(n: int, seed: int = 1) -> list[tuple[bytes, bytes]]:
    rng = random.Random(seed)
    return [(rng.randbytes(16), rng.randbytes(16)) for _ in range(n)]


def _naive_state(entries: list[tuple[bytes, bytes]]) -> bytes:
    """The definition, lane by lane: the sum modulo 2^16 of each entry's 1,024 SHAKE128 lanes."""
    lanes = [0] * (SET_STATE_BYTES // 2)
    for token, digest in entries:
        out = hashlib.shake_128(b"alliance-psi/v2 set entry" + token + digest).digest(SET_STATE_BYTES)
        for i in range(len(lanes)):
            lanes[i] = (lanes[i] + int.from_bytes(out[2 * i : 2 * i + 2], "little")) % 65536
    return b"".join(lane.to_bytes(2, "little") for lane in lanes)


def test_the_state_is_the_lane_wise_sum_of_the_entries() -> None:
    entries = _entries(20)
    digest = SetDigest()
    for token, label in entries:
        digest.add(token, label)
    assert digest.state() == _naive_state(entries)
    assert digest.digest() == hashlib.sha256(b"alliance-psi/v2 set" + _naive_state(entries)).digest()
    assert digest.digest() == set_state_digest(digest.state()) == set_digest(entries)


def test_order_does_not_matter_and_removal_undoes_addition(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(submission, "_REDUCE_EVERY", 3)  # Reduce the lanes often, as a million entries would.
    entries = _entries(40)
    forward, backward = SetDigest(), SetDigest()
    for token, label in entries:
        forward.add(token, label)
    for token, label in reversed(entries[10:]):
        backward.add(token, label)
    resumed = SetDigest(forward.state(), forward.count)
    for token, label in entries[:10]:
        resumed.remove(token, label)
    assert (resumed.digest(), resumed.count) == (backward.digest(), backward.count) == (set_digest(entries[10:]), 30)
    for token, label in entries[10:]:
        resumed.remove(token, label)
    assert (resumed.state(), resumed.count) == (bytes(SET_STATE_BYTES), 0)
    assert resumed.digest() == SetDigest().digest()


def test_a_changed_label_or_token_changes_the_digest() -> None:
    (token, label), *rest = _entries(5)
    base = set_digest([(token, label), *rest])
    assert set_digest([(token, bytes(16)), *rest]) != base
    assert set_digest([(bytes(16), label), *rest]) != base
    assert set_digest(rest) != base


def test_a_state_of_the_wrong_size_is_refused() -> None:
    with pytest.raises(ValueError, match="a set state is 2048 bytes, not 32"):
        SetDigest(bytes(32))


class _ConstantXof:
    """An extendable-output function that always answers ``byte`` repeated: the entries whose
    lanes are all 0xFFFF (the most an addition adds) or all 0 (a removal then adds 2^16, its most)."""

    def __init__(self, byte: int) -> None:
        self._byte = byte

    def copy(self) -> _ConstantXof:
        return self

    def update(self, _data: bytes) -> None:
        pass

    def digest(self, length: int) -> bytes:
        return bytes([self._byte]) * length


def test_the_lanes_never_carry_into_each_other_at_the_largest_entries(monkeypatch: pytest.MonkeyPatch) -> None:
    # No SHAKE output can be chosen, so the hash is replaced by one that gives the extreme lanes:
    # twice _REDUCE_EVERY of them, added in one call and removed one by one, would carry from one
    # lane into the next if the state were reduced less often.
    entries = _entries(2 * submission._REDUCE_EVERY + 2)
    monkeypatch.setattr(submission, "_ENTRY_HASH", _ConstantXof(0xFF))
    digest = SetDigest()
    digest.add_all(entries)
    assert digest.state() == ((len(entries) * 0xFFFF) % 65536).to_bytes(2, "little") * (SET_STATE_BYTES // 2)
    monkeypatch.setattr(submission, "_ENTRY_HASH", _ConstantXof(0))
    for token, label in entries:
        digest.remove(token, label)
    assert digest.state() == ((len(entries) * 0xFFFF) % 65536).to_bytes(2, "little") * (SET_STATE_BYTES // 2)
    assert digest.count == 0


def test_adding_many_at_once_is_adding_each(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(submission, "_REDUCE_EVERY", 3)
    entries = _entries(20)
    each, together = SetDigest(), SetDigest()
    for token, label in entries:
        each.add(token, label)
    together.add_all(entries[:7])
    together.add_all(iter(entries[7:]))
    assert (together.state(), together.count) == (each.state(), each.count) == (_naive_state(entries), 20)
