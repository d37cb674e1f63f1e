"""The key custodian's only state besides its key share: evaluations per member per key epoch.

The counters are what stops a member from probing candidate identifiers: a reservation either
fits the quota entirely or is refused, atomically, however many custodian processes share the
database.
"""

from __future__ import annotations

from sqlalchemy import Connection, select, update

from alliance_psi.errors import InvalidRequest, QuotaExceeded
from alliance_psi.storage._common import insert_ignoring
from alliance_psi.storage.schema import quota_usage

__all__ = ["QuotaRepository"]


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
        new_used = self._add_within_quota(key_epoch, member_id, count, quota)
        if new_used is None:
            # No row yet: create it at zero (a concurrent creator wins harmlessly), then retry.
            self._conn.execute(
                insert_ignoring(self._conn, quota_usage).values(key_epoch=key_epoch, member_id=member_id, used=0)
            )
            new_used = self._add_within_quota(key_epoch, member_id, count, quota)
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

    def used(self, key_epoch: str, member_id: str) -> int:
        """Return how many evaluations the member has reserved in the key epoch (0 if none)."""
        used = self._conn.execute(
            select(quota_usage.c.used).where(quota_usage.c.key_epoch == key_epoch, quota_usage.c.member_id == member_id)
        ).scalar_one_or_none()
        return used or 0

    def _add_within_quota(self, key_epoch: str, member_id: str, count: int, quota: int) -> int | None:
        # On PostgreSQL a concurrent UPDATE of the row makes this one wait, then re-check its
        # WHERE clause against the committed value; SQLite runs write transactions one at a time.
        return self._conn.execute(
            update(quota_usage)
            .where(
                quota_usage.c.key_epoch == key_epoch,
                quota_usage.c.member_id == member_id,
                quota_usage.c.used + count <= quota,
            )
            .values(used=quota_usage.c.used + count)
            .returning(quota_usage.c.used)
        ).scalar_one_or_none()
