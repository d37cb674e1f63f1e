"""Members' standing sets per scope: the tokens each holds, its set's count and digest, and the
holder count of every token, which matching reads.

A committed whole set replaces the member's set; a committed delta is applied to it (removals,
then puts). The statements run inside the database (SQLite and PostgreSQL both take these forms,
with INSERT ... SELECT ... ON CONFLICT DO UPDATE), so a set costs no per-row round trips. Nothing
here commits; ``SubmissionRepository.commit_submission`` calls these within its transaction.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, delete, select

from alliance_psi.errors import Conflict
from alliance_psi.protocol.submission import SetDigest
from alliance_psi.storage._common import placeholder
from alliance_psi.storage.schema import member_set_state, member_sets, set_holders, submitted_tokens

__all__ = ["StandingSets"]


class StandingSets:
    """``member_sets``, ``member_set_state`` and ``set_holders`` over one connection."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def standing(self, scope: str, member_id: str) -> tuple[int, bytes]:
        """(count, digest) of the member's set in ``scope``; (0, b"") if it has none."""
        row = self._conn.execute(
            select(member_set_state.c.item_count, member_set_state.c.digest).where(
                member_set_state.c.set_scope == scope, member_set_state.c.member_id == member_id
            )
        ).one_or_none()
        return (row.item_count, row.digest) if row else (0, b"")

    def current_set_id(self, scope: str, member_id: str) -> str | None:
        """The id of the member's set in ``scope``, or None if it has none."""
        return self._conn.execute(
            select(member_set_state.c.set_id).where(
                member_set_state.c.set_scope == scope, member_set_state.c.member_id == member_id
            )
        ).scalar_one_or_none()

    def replace(self, scope: str, old: str | None, new: str) -> None:
        """Make set ``new`` (written whole) count as the member's instead of ``old``."""
        m = placeholder(self._conn)
        sql = self._conn.exec_driver_sql
        if old is not None:
            self._leave(
                scope,
                f"SELECT match_token FROM {member_sets.name} WHERE set_scope = {m} AND set_id = {m}",
                (scope, old),
            )
            sql(f"DELETE FROM {member_sets.name} WHERE set_scope = {m} AND set_id = {m}", (scope, old))
        sql(
            f"INSERT INTO {set_holders.name} (set_scope, match_token, holders) "
            f"SELECT set_scope, match_token, 1 FROM {member_sets.name} WHERE set_scope = {m} AND set_id = {m} "
            f"ORDER BY match_token "
            f"ON CONFLICT (set_scope, match_token) DO UPDATE SET holders = {set_holders.name}.holders + 1",
            (scope, new),
        )

    def apply_delta(self, round_id: str, member_id: str, scope: str, set_id: str) -> None:
        """Apply the member's delta staged for ``round_id`` to set ``set_id``.

        Raises:
            Conflict: a removal names a token the set does not hold (nothing applied).
        """
        m = placeholder(self._conn)
        staged = f"FROM {submitted_tokens.name} s WHERE s.round_id = {m} AND s.member_id = {m}"
        in_set = (
            f"SELECT 1 FROM {member_sets.name} ms WHERE ms.set_scope = {m} AND ms.set_id = {m} "
            "AND ms.match_token = s.match_token"
        )
        sql = self._conn.exec_driver_sql
        absent = sql(
            f"SELECT count(*) {staged} AND s.removed AND NOT EXISTS ({in_set})", (round_id, member_id, scope, set_id)
        ).scalar_one()
        if absent:
            raise Conflict(f"{absent} removed tokens are not in the member's set")
        removed = f"SELECT s.match_token {staged} AND s.removed"
        self._leave(scope, removed, (round_id, member_id))
        sql(
            f"DELETE FROM {member_sets.name} WHERE set_scope = {m} AND set_id = {m} AND match_token IN ({removed})",
            (scope, set_id, round_id, member_id),
        )
        # Tokens new to the set gain a holder; tokens already in it only get their label replaced.
        sql(
            f"INSERT INTO {set_holders.name} (set_scope, match_token, holders) "
            f"SELECT {m}, s.match_token, 1 {staged} AND NOT s.removed AND NOT EXISTS ({in_set}) "
            f"ORDER BY s.match_token "
            f"ON CONFLICT (set_scope, match_token) DO UPDATE SET holders = {set_holders.name}.holders + 1",
            (scope, round_id, member_id, scope, set_id),
        )
        sql(
            f"INSERT INTO {member_sets.name} (set_scope, set_id, match_token, sealed_label, label_digest) "
            f"SELECT {m}, {m}, s.match_token, s.sealed_label, s.label_digest {staged} AND NOT s.removed "
            f"ORDER BY s.match_token "
            f"ON CONFLICT (set_scope, set_id, match_token) DO UPDATE "
            f"SET sealed_label = excluded.sealed_label, label_digest = excluded.label_digest",
            (scope, set_id, round_id, member_id),
        )

    def digest(self, scope: str, set_id: str) -> tuple[int, bytes]:
        """(count, ``SetDigest``) of set ``set_id`` as it is now."""
        # The driver's own cursor: no per-row type processing over a whole set.
        m = placeholder(self._conn)
        rows = self._conn.exec_driver_sql(
            f"SELECT match_token, label_digest FROM {member_sets.name} WHERE set_scope = {m} AND set_id = {m} "
            "ORDER BY match_token",
            (scope, set_id),
        )
        digest = SetDigest()
        for token, label in rows:
            digest.update(bytes(token), bytes(label))
        return digest.count, digest.digest()

    def record(
        self, scope: str, member_id: str, set_id: str, count: int, digest: bytes, *, round_id: str, at: datetime
    ) -> None:
        """Point the member at set ``set_id`` in ``scope``, with its count and digest (committed in ``round_id``)."""
        self._conn.execute(
            delete(member_set_state).where(
                member_set_state.c.set_scope == scope, member_set_state.c.member_id == member_id
            )
        )
        self._conn.execute(
            member_set_state.insert().values(
                set_scope=scope,
                member_id=member_id,
                set_id=set_id,
                item_count=count,
                digest=digest,
                round_id=round_id,
                updated_at=at,
            )
        )

    def _leave(self, scope: str, tokens: str, args: tuple[str, ...]) -> None:
        """Take one holder off each of ``tokens`` (a subquery) and drop the counts that reach 0."""
        m = placeholder(self._conn)
        sql = self._conn.exec_driver_sql
        sql(
            f"UPDATE {set_holders.name} SET holders = holders - 1 WHERE set_scope = {m} AND match_token IN ({tokens})",
            (scope, *args),
        )
        sql(f"DELETE FROM {set_holders.name} WHERE set_scope = {m} AND holders <= 0", (scope,))
