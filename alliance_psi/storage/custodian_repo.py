"""The key custodian's only state besides its key share: evaluations per member per key epoch.

The counters are what stops a member from probing candidate identifiers: a reservation either
fits the quota entirely or is refused, atomically, however many custodian processes share the
database. Each charged batch is remembered by its digest, so that a batch sent again (a retry,
or a resumed join re-sending byte-identical blinded elements) is not charged twice.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, Connection, delete, select, update

from alliance_psi.errors import InvalidRequest, QuotaExceeded
from alliance_psi.protocol.ports import Charge
from alliance_psi.storage._common import insert_if_absent, insert_ignoring
from alliance_psi.storage.schema import HASH_SIZE, charged_batches, quota_usage

__all__ = ["Charge", "QuotaRepository"]


class QuotaRepository:
    """Per-member evaluation counters for each key epoch, over the caller's connection."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def reserve(self, key_epoch: str, member_id: str, count: int, quota: int) -> int:
        """Add ``count`` evaluations to the member's usage if the total stays within ``quota``.

        Returns the new usage. Safe under concurrent callers on SQLite and PostgreSQL: the check
        and the increment are one conditional UPDATE, so two reservations can never both fit
        into the last remaining units. The reservation is durable when the caller's
        transaction commits.

        Raises:
            QuotaExceeded: ``used + count > quota``; nothing is added.
            InvalidRequest: ``count`` or ``quota`` is negative.
        """
        if count < 0 or quota < 0:
            raise InvalidRequest("an evaluation count and a quota cannot be negative")
        new_used = self._add_within(quota_usage.c.used, key_epoch, member_id, count, quota)
        if new_used is None:
            # No row yet: create it at zero (a concurrent creator wins harmlessly), then retry.
            self._conn.execute(
                insert_ignoring(self._conn, quota_usage).values(key_epoch=key_epoch, member_id=member_id, used=0)
            )
            new_used = self._add_within(quota_usage.c.used, key_epoch, member_id, count, quota)
        if new_used is None:
            used = self.used(key_epoch, member_id)
            raise QuotaExceeded(
                f"evaluation quota exceeded for key epoch {key_epoch}: {used} of {quota} used, {count} requested",
                member_id=member_id,
                quota=quota,
                used=used,
                requested=count,
            )
        return new_used

    def charge_batch(
        self,
        key_epoch: str,
        member_id: str,
        batch_digest: bytes,
        count: int,
        quota: int,
        *,
        at: datetime,
        free_resent: int,
    ) -> Charge:
        """Charge a batch of ``count`` elements to the member's quota, once per ``batch_digest``.

        A batch whose digest was charged before in this key epoch for this member is a re-send:
        it costs nothing while the member's free re-sent elements in the epoch stay within
        ``free_resent`` (evaluating byte-identical elements again tells the member nothing new,
        and a resumed join re-sends what it lost), and beyond that it is charged as a new batch,
        so re-sending is never unbounded free work for the custodian. Otherwise it is charged as
        ``reserve`` does. Two callers charging the same new batch at once charge it once: the
        digest is the primary key.

        Raises:
            QuotaExceeded: the batch does not fit; the caller must roll its transaction back,
                which also forgets the digest recorded here.
            InvalidRequest: the digest is not 32 bytes, or a negative count or quota.
        """
        if len(batch_digest) != HASH_SIZE:
            raise InvalidRequest(f"a batch digest is {HASH_SIZE} bytes")
        row = {
            "key_epoch": key_epoch,
            "member_id": member_id,
            "batch_digest": batch_digest,
            "elements": count,
            "charged_at": at,
        }
        if insert_if_absent(self._conn, charged_batches, row):
            return Charge(self.reserve(key_epoch, member_id, count, quota), charged=True)
        free = self._add_within(quota_usage.c.resent_free, key_epoch, member_id, count, free_resent)
        if free is not None:
            return Charge(free, charged=False)
        return Charge(self.reserve(key_epoch, member_id, count, quota), charged=True)

    def refund_batch(self, key_epoch: str, member_id: str, batch_digest: bytes) -> int | None:
        """Undo ``charge_batch`` for a batch that was not evaluated; return the usage, or None.

        None means no such charge was recorded (it was refunded already, or never made), and
        nothing changed.
        """
        elements = self._conn.execute(
            delete(charged_batches)
            .where(
                charged_batches.c.key_epoch == key_epoch,
                charged_batches.c.member_id == member_id,
                charged_batches.c.batch_digest == batch_digest,
            )
            .returning(charged_batches.c.elements)
        ).scalar_one_or_none()
        if elements is None:
            return None
        used: int = self._conn.execute(
            update(quota_usage)
            .where(
                quota_usage.c.key_epoch == key_epoch,
                quota_usage.c.member_id == member_id,
                quota_usage.c.used >= elements,
            )
            .values(used=quota_usage.c.used - elements)
            .returning(quota_usage.c.used)
        ).scalar_one()
        return used

    def latest_epoch(self) -> str | None:
        """The key epoch of the most recently charged batch (None before the first)."""
        return self._conn.execute(
            select(charged_batches.c.key_epoch).order_by(charged_batches.c.charged_at.desc()).limit(1)
        ).scalar_one_or_none()

    def used(self, key_epoch: str, member_id: str) -> int:
        """Return how many evaluations the member has reserved in the key epoch (0 if none)."""
        used = self._conn.execute(
            select(quota_usage.c.used).where(quota_usage.c.key_epoch == key_epoch, quota_usage.c.member_id == member_id)
        ).scalar_one_or_none()
        return used or 0

    def usage(self, key_epoch: str) -> dict[str, int]:
        """{member id: evaluations reserved} in the key epoch."""
        rows = self._conn.execute(
            select(quota_usage.c.member_id, quota_usage.c.used).where(quota_usage.c.key_epoch == key_epoch)
        )
        return {row.member_id: row.used for row in rows}

    def _add_within(self, counter: Column[int], key_epoch: str, member_id: str, count: int, bound: int) -> int | None:
        """Add ``count`` to the member's ``counter`` if it stays within ``bound``; return the usage, or None."""
        # On PostgreSQL a concurrent UPDATE of the row makes this one wait, then re-check its
        # WHERE clause against the committed value; SQLite runs write transactions one at a time.
        used: int | None = self._conn.execute(
            update(quota_usage)
            .where(quota_usage.c.key_epoch == key_epoch, quota_usage.c.member_id == member_id, counter + count <= bound)
            .values({counter: counter + count})
            .returning(quota_usage.c.used)
        ).scalar_one_or_none()
        return used
