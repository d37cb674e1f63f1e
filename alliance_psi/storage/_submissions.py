"""The coordinator's submissions: staging a round's delta in chunks and committing it.

A submission is a delta against the member's standing set for the round's scope
(``Round.set_scope``): tokens put (added, or their label replaced) and tokens removed, or, with
``replace``, the whole set anew. It is staged in ``submitted_tokens``, invisible to matching;
the commit checks it against the member's count and digest, applies it to ``member_sets`` and
the holder counts of the scope, checks the resulting set against the member's set count and
digest, and deletes the staged rows. Any failed check rolls the whole commit back.

``CoordinatorRepository`` inherits these methods; they live apart to keep each module short.
Error messages cross the network, so they name chunk indices and counts, never a token or label.
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import ColumnElement, Connection, Table, and_, delete, func, select, update
from sqlalchemy.exc import IntegrityError

from alliance_psi.errors import Conflict, InvalidRequest, NotFound, RoundClosed
from alliance_psi.protocol.model import RoundState, SubmissionState, SubmissionStatus
from alliance_psi.protocol.submission import NO_LABEL_DIGEST, SetDigest, SubmissionDigest, label_digest
from alliance_psi.storage._common import bulk_insert, insert_ignoring, placeholder, stream
from alliance_psi.storage.schema import (
    HASH_SIZE,
    TOKEN_SIZE,
    member_set_state,
    member_sets,
    rounds,
    set_holders,
    submission_chunks,
    submissions,
    submitted_tokens,
)

__all__ = ["SubmissionStore"]

Item = tuple[bytes, bytes | None]

_MAX_LABEL = 0xFFFF
_MISSING_SHOWN = 10


def _check_items(items: Sequence[Item], removals: Sequence[bytes]) -> None:
    seen: set[bytes] = set()
    for token, label in [*items, *((t, None) for t in removals)]:
        if len(token) != TOKEN_SIZE:
            raise InvalidRequest(f"a match token must be {TOKEN_SIZE} bytes")
        if label is not None and len(label) > _MAX_LABEL:
            raise InvalidRequest(f"a sealed label must be at most {_MAX_LABEL} bytes")
        if token in seen:
            raise Conflict("duplicate token in submission")
        seen.add(token)


def _missing_chunks_message(present: Sequence[int]) -> str | None:
    missing = sorted(set(range(max(present) + 1)) - set(present)) if present else []
    if not missing:
        return None
    shown = ", ".join(str(i) for i in missing[:_MISSING_SHOWN])
    more = f" and {len(missing) - _MISSING_SHOWN} more" if len(missing) > _MISSING_SHOWN else ""
    return f"missing chunks: {shown}{more}"


class SubmissionStore:
    """Staging and committing of members' submissions (part of ``CoordinatorRepository``)."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def stage_chunk(
        self,
        round_id: str,
        member_id: str,
        chunk_index: int,
        items: Sequence[Item],
        chunk_digest: bytes,
        *,
        at: datetime,
        removals: Sequence[bytes] = (),
    ) -> bool:
        """Store one chunk of a member's delta (items put, then tokens removed), all or nothing.

        ``chunk_digest`` must be computed by the caller from the chunk's content (with
        ``protocol.submission.chunk_digest``); it is what makes a resend recognisable. Returns
        False, and changes nothing, if the same chunk (same index, same digest) is stored.

        Raises:
            NotFound: no such round.
            RoundClosed: the round is no longer open.
            Conflict: the member already committed; the index is stored with another digest;
                a token repeats within the chunk or one stored in another chunk.
            InvalidRequest: a negative index, a digest that is not 32 bytes, a token that is
                not 16 bytes or a label over 65535 bytes.
        """
        if chunk_index < 0 or len(chunk_digest) != HASH_SIZE:
            raise InvalidRequest("a chunk needs an index >= 0 and a 32-byte digest")
        _check_items(items, removals)
        self._require_open(round_id)
        if self._lock_submission(round_id, member_id) == SubmissionState.COMMITTED:
            raise Conflict("submission already committed")
        key = self._key(submission_chunks, round_id, member_id)
        stored = self._conn.execute(
            select(submission_chunks.c.chunk_digest).where(key, submission_chunks.c.chunk_index == chunk_index)
        ).scalar_one_or_none()
        if stored is not None:
            if hmac.compare_digest(stored, chunk_digest):
                return False
            raise Conflict(f"chunk {chunk_index} already stored with different content")
        try:
            with self._conn.begin_nested():
                self._conn.execute(
                    submission_chunks.insert().values(
                        round_id=round_id,
                        member_id=member_id,
                        chunk_index=chunk_index,
                        item_count=len(items),
                        chunk_digest=chunk_digest,
                        received_at=at,
                    )
                )
                puts = [(round_id, member_id, token, chunk_index, position, False, label, label_digest(label))
                        for position, (token, label) in enumerate(items)]
                removed = [(round_id, member_id, token, chunk_index, len(items) + position, True, None, NO_LABEL_DIGEST)
                           for position, token in enumerate(removals)]
                bulk_insert(
                    self._conn,
                    submitted_tokens,
                    ("round_id", "member_id", "match_token", "chunk_index", "position", "removed", "sealed_label",
                     "label_digest"),
                    puts + removed,
                )
        except IntegrityError:
            # The chunk index was free (checked under the submission's lock), so the only key
            # left to collide is a token this member already sent in another chunk.
            raise Conflict("duplicate token in submission") from None
        return True

    def submission_status(self, round_id: str, member_id: str) -> SubmissionStatus:
        """Return where a member's submission stands; state NONE if nothing was staged.

        While staging, ``item_count`` is the number of items staged so far and ``digest`` is empty.
        ``set_count`` and ``set_digest`` describe the member's standing set in the round's scope
        as it is now (zero and empty if it has none): before its commit, what the delta applies to.
        """
        scope = self.set_scope(round_id)
        standing = self._conn.execute(
            select(member_set_state.c.item_count, member_set_state.c.digest).where(
                member_set_state.c.set_scope == scope, member_set_state.c.member_id == member_id)
        ).one_or_none()
        set_count, set_digest_ = (standing.item_count, standing.digest) if standing else (0, b"")
        row = self._conn.execute(
            select(submissions.c.state, submissions.c.item_count, submissions.c.digest).where(
                self._key(submissions, round_id, member_id)
            )
        ).one_or_none()
        if row is None:
            return SubmissionStatus(round_id, member_id, SubmissionState.NONE, set_count=set_count,
                                    set_digest=set_digest_)
        chunks = self._conn.execute(
            select(submission_chunks.c.chunk_index, submission_chunks.c.item_count)
            .where(self._key(submission_chunks, round_id, member_id))
            .order_by(submission_chunks.c.chunk_index)
        ).all()
        state = SubmissionState(row.state)
        committed = state == SubmissionState.COMMITTED
        return SubmissionStatus(
            round_id,
            member_id,
            state,
            chunks=tuple(c.chunk_index for c in chunks),
            item_count=row.item_count if committed else sum(c.item_count for c in chunks),
            digest=(row.digest or b"") if committed else b"",
            set_count=set_count,
            set_digest=set_digest_,
        )

    def set_scope(self, round_id: str) -> str:
        """The round's ``set_scope``. Raises ``NotFound`` for no such round."""
        scope = self._conn.execute(select(rounds.c.set_scope).where(rounds.c.round_id == round_id)).scalar_one_or_none()
        if scope is None:
            raise NotFound(f"no round {round_id}")
        return scope

    def commit_submission(
        self,
        round_id: str,
        member_id: str,
        *,
        item_count: int,
        digest: bytes,
        at: datetime,
        replace: bool = True,
        set_count: int | None = None,
        set_digest: bytes | None = None,
    ) -> SubmissionStatus:
        """Commit a member's staged delta, after checking it against its count and digest.

        The count and the digest (``protocol.submission.SubmissionDigest``) are recomputed from the
        stored items in (chunk index, position) order. The delta is then applied to the member's
        standing set for the round's scope (all of it replaced when ``replace``), and the resulting
        set is checked against ``set_count`` and ``set_digest`` when given. Committing again with
        the same count and digest returns the status unchanged. A member with nothing to change
        commits count 0 and the digest of no items.

        Raises:
            NotFound: no such round.
            RoundClosed: the round is no longer open (and the member had not committed).
            Conflict: chunks are missing ("missing chunks: 3, 7"); the count or the digest does
                not match what is stored; a removal names a token the set does not hold; the
                resulting set differs from the member's count or digest; or the member already
                committed something else. Nothing is applied then.
        """
        key = self._key(submissions, round_id, member_id)
        is_open = self._lock_round(round_id) == RoundState.OPEN
        # Only an open round gets a submission row; a closed one may still answer a retried commit.
        if is_open:
            self._lock_submission(round_id, member_id)
        stored = self._conn.execute(
            select(submissions.c.state, submissions.c.item_count, submissions.c.digest).where(key)
        ).one_or_none()
        if stored is not None and stored.state == SubmissionState.COMMITTED:
            if stored.item_count == item_count and hmac.compare_digest(stored.digest, digest):
                return self.submission_status(round_id, member_id)
            raise Conflict("submission already committed with a different count or digest")
        if not is_open:
            raise RoundClosed(f"round {round_id} is no longer open")
        present = (
            self._conn.execute(
                select(submission_chunks.c.chunk_index).where(self._key(submission_chunks, round_id, member_id))
            )
            .scalars()
            .all()
        )
        if missing := _missing_chunks_message(present):
            raise Conflict(missing)
        actual_count, actual_digest = self._recompute(round_id, member_id)
        if actual_count != item_count:
            raise Conflict(f"item count mismatch: commit says {item_count}, {actual_count} stored")
        if not hmac.compare_digest(actual_digest, digest):
            raise Conflict(f"digest mismatch over the {actual_count} stored items")
        scope = self.set_scope(round_id)
        self._apply_delta(round_id, member_id, scope, replace=replace)
        new_count, new_digest = self._standing_digest(scope, member_id)
        if set_count is not None and set_count != new_count:
            raise Conflict(f"set count mismatch: commit says {set_count}, the set would hold {new_count}; "
                           "send the whole set with replace")
        if set_digest is not None and not hmac.compare_digest(new_digest, set_digest):
            raise Conflict(f"set digest mismatch over the {new_count} tokens the set would hold; "
                           "send the whole set with replace")
        self._conn.execute(
            update(submissions)
            .where(key)
            .values(
                state=SubmissionState.COMMITTED.value, item_count=actual_count, digest=actual_digest, committed_at=at,
                replaces_set=replace, set_count=new_count,
            )
        )
        self._conn.execute(delete(member_set_state).where(
            member_set_state.c.set_scope == scope, member_set_state.c.member_id == member_id))
        self._conn.execute(member_set_state.insert().values(
            set_scope=scope, member_id=member_id, item_count=new_count, digest=new_digest, round_id=round_id,
            updated_at=at))
        self._conn.execute(delete(submitted_tokens).where(self._key(submitted_tokens, round_id, member_id)))
        return self.submission_status(round_id, member_id)

    def _apply_delta(self, round_id: str, member_id: str, scope: str, *, replace: bool) -> None:
        # Statements run inside the database (SQLite and PostgreSQL both take these forms, with
        # INSERT ... SELECT ... ON CONFLICT DO UPDATE), so a delta costs no per-row round trips.
        m = placeholder(self._conn)
        staged = f"FROM {submitted_tokens.name} s WHERE s.round_id = {m} AND s.member_id = {m}"
        in_set = f"SELECT 1 FROM {member_sets.name} ms WHERE ms.set_scope = {m} AND ms.member_id = {m} " \
                 "AND ms.match_token = s.match_token"
        sql = self._conn.exec_driver_sql
        if replace:
            if sql(f"SELECT count(*) {staged} AND s.removed", (round_id, member_id)).scalar_one():
                raise Conflict("a submission that replaces the whole set cannot remove tokens")
            leaving = f"SELECT match_token FROM {member_sets.name} WHERE set_scope = {m} AND member_id = {m}"
            leaving_args: tuple[str, ...] = (scope, member_id)
        else:
            absent = sql(f"SELECT count(*) {staged} AND s.removed AND NOT EXISTS ({in_set})",
                         (round_id, member_id, scope, member_id)).scalar_one()
            if absent:
                raise Conflict(f"{absent} removed tokens are not in the member's set")
            leaving = f"SELECT s.match_token {staged} AND s.removed"
            leaving_args = (round_id, member_id)
        sql(f"UPDATE {set_holders.name} SET holders = holders - 1 WHERE set_scope = {m} AND match_token IN ({leaving})",
            (scope, *leaving_args))
        sql(f"DELETE FROM {member_sets.name} WHERE set_scope = {m} AND member_id = {m} AND match_token IN ({leaving})",
            (scope, member_id, *leaving_args))
        sql(f"DELETE FROM {set_holders.name} WHERE set_scope = {m} AND holders <= 0", (scope,))
        # Tokens new to the set gain a holder; tokens already in it only get their label replaced.
        sql(f"INSERT INTO {set_holders.name} (set_scope, match_token, holders) "
            f"SELECT {m}, s.match_token, 1 {staged} AND NOT s.removed AND NOT EXISTS ({in_set}) "
            f"ORDER BY s.match_token "
            f"ON CONFLICT (set_scope, match_token) DO UPDATE SET holders = {set_holders.name}.holders + 1",
            (scope, round_id, member_id, scope, member_id))
        sql(f"INSERT INTO {member_sets.name} (set_scope, member_id, match_token, sealed_label, label_digest) "
            f"SELECT {m}, s.member_id, s.match_token, s.sealed_label, s.label_digest {staged} AND NOT s.removed "
            f"ORDER BY s.match_token "
            f"ON CONFLICT (set_scope, member_id, match_token) DO UPDATE "
            f"SET sealed_label = excluded.sealed_label, label_digest = excluded.label_digest",
            (scope, round_id, member_id))

    def _standing_digest(self, scope: str, member_id: str) -> tuple[int, bytes]:
        result = stream(
            self._conn,
            select(member_sets.c.match_token, member_sets.c.label_digest)
            .where(member_sets.c.set_scope == scope, member_sets.c.member_id == member_id)
            .order_by(member_sets.c.match_token),
        )
        digest = SetDigest()
        try:
            for token, label in result:
                digest.update(token, label)
        finally:
            result.close()
        return digest.count, digest.digest()

    def discard_uncommitted(self, round_id: str) -> int:
        """Delete every uncommitted submission of a round with its chunks and tokens.

        Used when a round closes, so that a submission that never committed leaves nothing.
        Returns the number of staged items (tokens) discarded.
        """
        staging = select(submissions.c.member_id).where(
            submissions.c.round_id == round_id, submissions.c.state == SubmissionState.STAGING.value
        )
        # Children first: the foreign keys point from tokens and chunks to submissions.
        deleted = [
            self._conn.execute(delete(table).where(table.c.round_id == round_id, table.c.member_id.in_(staging)))
            for table in (submitted_tokens, submission_chunks, submissions)
        ]
        return deleted[0].rowcount

    def committed_members(self, round_id: str) -> list[str]:
        """Return the ids of the members that committed to the round, sorted."""
        return list(
            self._conn.execute(
                select(submissions.c.member_id)
                .where(submissions.c.round_id == round_id, submissions.c.state == SubmissionState.COMMITTED.value)
                .order_by(submissions.c.member_id)
            ).scalars()
        )

    def submitted_count(self, round_id: str, member_id: str) -> int:
        """How many tokens the member's set held when it committed to the round (staged items
        so far if it has not committed)."""
        row = self._conn.execute(
            select(submissions.c.state, submissions.c.set_count).where(self._key(submissions, round_id, member_id))
        ).one_or_none()
        if row is not None and row.state == SubmissionState.COMMITTED:
            return row.set_count or 0
        return self._conn.execute(
            select(func.count()).select_from(submitted_tokens).where(self._key(submitted_tokens, round_id, member_id))
        ).scalar_one()

    # Helpers.

    @staticmethod
    def _key(table: Table, round_id: str, member_id: str) -> ColumnElement[bool]:
        return and_(table.c.round_id == round_id, table.c.member_id == member_id)

    def _lock_round(self, round_id: str) -> RoundState:
        # A shared lock: a concurrent close (an UPDATE of this row) waits for this transaction,
        # and this one waits for a close in progress, then sees the new state.
        state = self._conn.execute(
            select(rounds.c.state).where(rounds.c.round_id == round_id).with_for_update(read=True)
        ).scalar_one_or_none()
        if state is None:
            raise NotFound(f"no round {round_id}")
        return RoundState(state)

    def _require_open(self, round_id: str) -> None:
        if self._lock_round(round_id) != RoundState.OPEN:
            raise RoundClosed(f"round {round_id} is no longer open")

    def _lock_submission(self, round_id: str, member_id: str) -> SubmissionState:
        # Create the row if needed, then lock it: a member's chunks and commit are serialized.
        self._conn.execute(
            insert_ignoring(self._conn, submissions).values(
                round_id=round_id, member_id=member_id, state=SubmissionState.STAGING.value, item_count=0
            )
        )
        state = self._conn.execute(
            select(submissions.c.state).where(self._key(submissions, round_id, member_id)).with_for_update()
        ).scalar_one()
        return SubmissionState(state)

    def _recompute(self, round_id: str, member_id: str) -> tuple[int, bytes]:
        result = stream(
            self._conn,
            select(submitted_tokens.c.match_token, submitted_tokens.c.sealed_label, submitted_tokens.c.removed)
            .where(self._key(submitted_tokens, round_id, member_id))
            .order_by(submitted_tokens.c.chunk_index, submitted_tokens.c.position),
        )
        digest = SubmissionDigest()
        try:
            for token, label, removed in result:
                if removed:
                    digest.update((), (token,))
                else:
                    digest.update(((token, label),))
        finally:
            result.close()
        return digest.count, digest.digest()
