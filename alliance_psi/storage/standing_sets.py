"""Members' standing sets per scope: the tokens each holds, its set's count and digest, and the
holder count of every token, which matching reads.

The digest is a multiset hash (``protocol.submission.SetDigest``) whose state is kept with the
set: a delta updates it from the rows it changes (``delta_digest``, read before the delta is
applied), so a commit costs work in proportion to the delta, not to the set.

A committed whole set replaces the member's set; a committed delta is applied to it (removals,
then puts). The statements run inside the database (SQLite and PostgreSQL both take these forms,
with INSERT ... SELECT ... ON CONFLICT DO UPDATE), so a set costs no per-row round trips. Nothing
here commits; ``SubmissionRepository.commit_submission`` calls these within its transaction.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, delete, select

from alliance_psi.errors import Conflict
from alliance_psi.protocol.continuous import TokenChange
from alliance_psi.protocol.submission import SetDigest, set_state_digest
from alliance_psi.storage._common import placeholder
from alliance_psi.storage.schema import member_set_state, member_sets, set_holders, submitted_tokens

__all__ = ["StandingSets"]


class StandingSets:
    """``member_sets``, ``member_set_state`` and ``set_holders`` over one connection."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def standing(self, scope: str, member_id: str) -> tuple[int, bytes]:
        """(count, digest) of the member's set in ``scope``; (0, b"") if it has none, and an empty
        digest for a set recorded before its digest's state was kept (the member then sends its
        whole set, which records the state)."""
        row = self._conn.execute(
            select(member_set_state.c.item_count, member_set_state.c.set_state).where(
                member_set_state.c.set_scope == scope, member_set_state.c.member_id == member_id
            )
        ).one_or_none()
        if row is None:
            return 0, b""
        return row.item_count, set_state_digest(row.set_state) if row.set_state is not None else b""

    def kept_digest(self, scope: str, member_id: str) -> SetDigest | None:
        """The digest of the member's set in ``scope`` as kept (empty if it has no set), or None
        for a set recorded before its state was kept."""
        row = self._conn.execute(
            select(member_set_state.c.item_count, member_set_state.c.set_state).where(
                member_set_state.c.set_scope == scope, member_set_state.c.member_id == member_id
            )
        ).one_or_none()
        if row is None:
            return SetDigest()
        return None if row.set_state is None else SetDigest(bytes(row.set_state), row.item_count)

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

    def digest(self, scope: str, set_id: str) -> SetDigest:
        """The digest of set ``set_id`` as it is now, from all its rows (a whole set just written)."""
        # The driver's own cursor: no per-row type processing over a whole set.
        m = placeholder(self._conn)
        rows = self._conn.exec_driver_sql(
            f"SELECT match_token, label_digest FROM {member_sets.name} WHERE set_scope = {m} AND set_id = {m}",
            (scope, set_id),
        )
        digest = SetDigest()
        digest.add_all(rows)  # The drivers return BLOB and bytea values as bytes.
        return digest

    def delta_digest(self, round_id: str, member_id: str, scope: str, set_id: str | None, base: SetDigest) -> SetDigest:
        """``base`` (the digest of set ``set_id``) updated with the member's delta staged for
        ``round_id``; call before ``apply_delta``. Reads the staged rows and, for each, the row it
        replaces or removes: work in proportion to the delta. A removal of a token the set does
        not hold changes nothing here (``apply_delta`` refuses it)."""
        m = placeholder(self._conn)
        rows = self._conn.exec_driver_sql(
            f"SELECT s.match_token, s.removed, s.label_digest, ms.label_digest FROM {submitted_tokens.name} s "
            f"LEFT JOIN {member_sets.name} ms ON ms.set_scope = {m} AND ms.set_id = {m} "
            "AND ms.match_token = s.match_token "
            f"WHERE s.round_id = {m} AND s.member_id = {m}",
            (scope, set_id or "", round_id, member_id),
        )
        for raw_token, removed, label, old in rows:
            token = bytes(raw_token)
            if old is not None:
                base.remove(token, bytes(old))
            if not removed:
                base.add(token, bytes(label))
        return base

    def record(
        self, scope: str, member_id: str, set_id: str, digest: SetDigest, *, round_id: str, at: datetime
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
                item_count=digest.count,
                digest=digest.digest(),
                set_state=digest.state(),
                round_id=round_id,
                updated_at=at,
            )
        )

    # What a commit changes, for continuous matching (``protocol.continuous``) --------------------

    def delta_changes(
        self, round_id: str, member_id: str, scope: str, set_id: str | None, *, threshold: int
    ) -> list[TokenChange]:
        """What the member's staged delta changes that may alert, read before it is applied:
        tokens put that are new to set ``set_id`` or get another label (before None: not held)
        and tokens removed that it holds (after None), each with its holder count after the
        delta. Unchanged puts are left out, and so is every token below ``threshold`` both
        before and after (no alert can come of them): the query leaves them out, so a commit
        spends Python work only on the tokens at or near the threshold, however large it is."""
        m = placeholder(self._conn)
        # CROSS JOIN: SQLite keeps the staged delta as the outer loop, each token then looked up
        # by key. With a plain JOIN (and no statistics) it walks the scope's holder counts by
        # ``holders >= threshold - 1``, i.e. every token of every set in the scope: a commit of
        # 100 tokens took 4.6x longer against sets of 100,000 than of 20,000. PostgreSQL plans
        # a CROSS JOIN with a join condition in WHERE as any inner join.
        rows = self._conn.exec_driver_sql(
            f"SELECT s.match_token, ms.label_digest, s.label_digest, s.removed, h.holders "
            f"FROM {submitted_tokens.name} s CROSS JOIN {set_holders.name} h "
            f"LEFT JOIN {member_sets.name} ms ON ms.set_scope = {m} AND ms.set_id = {m} "
            f"AND ms.match_token = s.match_token WHERE s.round_id = {m} AND s.member_id = {m} "
            f"AND h.set_scope = {m} AND h.match_token = s.match_token "
            f"AND (ms.match_token IS NULL OR ms.label_digest <> s.label_digest OR s.removed) "
            f"AND h.holders >= {m} AND (ms.match_token IS NULL OR h.holders >= {m})",
            (scope, set_id or "", round_id, member_id, scope, threshold - 1, threshold),
        )
        changes: list[TokenChange] = []
        for token, old, new, removed, holders in rows:
            if not removed:
                changes.append(_put(token, old, new, holders))
            elif old is not None:  # A removal of a token the set does not hold: ``apply_delta`` refuses it.
                changes.append(TokenChange(bytes(token), bytes(old), None, holders - 1))
        return changes

    def replace_changes(self, scope: str, old: str | None, new: str, *, threshold: int) -> list[TokenChange]:
        """What replacing set ``old`` (None: none) with set ``new`` changes that may alert, as
        ``delta_changes`` says; read before ``replace``."""
        m = placeholder(self._conn)
        sql = self._conn.exec_driver_sql
        changes = [
            _put(token, before, after, holders)
            for token, before, after, holders in sql(
                f"SELECT n.match_token, o.label_digest, n.label_digest, h.holders FROM {member_sets.name} n "
                f"JOIN {set_holders.name} h ON h.set_scope = n.set_scope AND h.match_token = n.match_token "
                f"LEFT JOIN {member_sets.name} o ON o.set_scope = n.set_scope AND o.set_id = {m} "
                f"AND o.match_token = n.match_token WHERE n.set_scope = {m} AND n.set_id = {m} "
                f"AND (o.match_token IS NULL OR o.label_digest <> n.label_digest) "
                f"AND h.holders >= {m} AND (o.match_token IS NULL OR h.holders >= {m})",
                (old or "", scope, new, threshold - 1, threshold),
            )
        ]
        if old is not None:
            changes += [
                TokenChange(bytes(token), bytes(before), None, holders - 1)
                for token, before, holders in sql(
                    f"SELECT o.match_token, o.label_digest, h.holders FROM {member_sets.name} o "
                    f"JOIN {set_holders.name} h ON h.set_scope = o.set_scope AND h.match_token = o.match_token "
                    f"WHERE o.set_scope = {m} AND o.set_id = {m} AND h.holders >= {m} "
                    f"AND NOT EXISTS (SELECT 1 FROM {member_sets.name} n WHERE n.set_scope = {m} "
                    f"AND n.set_id = {m} AND n.match_token = o.match_token)",
                    (scope, old, threshold, scope, new),
                )
            ]
        return changes

    def _leave(self, scope: str, tokens: str, args: tuple[str, ...]) -> None:
        """Take one holder off each of ``tokens`` (a subquery) and drop the counts that reach 0."""
        m = placeholder(self._conn)
        sql = self._conn.exec_driver_sql
        sql(
            f"UPDATE {set_holders.name} SET holders = holders - 1 WHERE set_scope = {m} AND match_token IN ({tokens})",
            (scope, *args),
        )
        sql(f"DELETE FROM {set_holders.name} WHERE set_scope = {m} AND holders <= 0", (scope,))


def _put(token: bytes, before: bytes | None, after: bytes, holders_before: int) -> TokenChange:
    """A token the member put: joined (``before`` None: one holder more) or relabeled."""
    return TokenChange(
        bytes(token), bytes(before) if before is not None else None, bytes(after), holders_before + (before is None)
    )
