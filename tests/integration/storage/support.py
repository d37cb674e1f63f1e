"""Builders shared by the storage tests."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from alliance_psi.protocol.model import Round
from alliance_psi.protocol.submission import SubmissionDigest

NOW = datetime(2025, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
LABEL_SIZE = 64

Item = tuple[bytes, bytes | None]


def token(name: str) -> bytes:
    """A 16-byte match token derived from a name, so tests can plant overlaps by name."""
    return hashlib.sha256(b"token:" + name.encode()).digest()[:16]


def label(member: str, name: str) -> bytes:
    """A fixed-size stand-in for a sealed label, unique per (member, token)."""
    return hashlib.sha256(f"label:{member}:{name}".encode()).digest() * (LABEL_SIZE // 32)


def items(member: str, names: list[str]) -> list[Item]:
    return [(token(n), label(member, n)) for n in names]


def submission_digest(chunks: list[list[Item]]) -> bytes:
    """What a member commits with: the digest over its chunks, in index order."""
    digest = SubmissionDigest()
    for chunk in chunks:
        digest.update(chunk)
    return digest.digest()


def make_round(round_id: str = "r1", *, threshold: int = 2, created_at: datetime = NOW) -> Round:
    return Round(
        round_id=round_id,
        name=f"round {round_id}",
        threshold=threshold,
        key_epoch="2025-03",
        deadline=NOW + timedelta(days=7),
        allowed_types=("phone", "bank_card"),
        invited=("alpha", "beta", "gamma"),
        share_labels=True,
        created_by="admin",
        created_at=created_at,
    )


def run_concurrently(count: int, work: Callable[[int], None]) -> None:
    """Run ``work(0) … work(count - 1)`` on as many threads, released together; fail with any error."""
    barrier = threading.Barrier(count)
    errors: list[BaseException] = []

    def worker(slot: int) -> None:
        try:
            barrier.wait()
            work(slot)
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread.
            errors.append(exc)

    pool = [threading.Thread(target=worker, args=(slot,)) for slot in range(count)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join(timeout=60)
    assert not errors, errors
