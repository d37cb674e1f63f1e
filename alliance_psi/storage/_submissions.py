"""The coordinator's submissions: staging chunks and committing them.

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
from alliance_psi.protocol.submission import SubmissionDigest
from alliance_psi.storage._common import bulk_insert, insert_ignoring, stream
from alliance_psi.storage.schema import (
    HASH_SIZE,
    TOKEN_SIZE,
    rounds,
    submission_chunks,
    submissions,
    submitted_tokens,
    token_holders,
)

__all__ = ["SubmissionStore"]

Item = tuple[bytes, bytes | None]

_MAX_LABEL = 0xFFFF
_MISSING_SHOWN = 10


def _check_items(items: Sequence[Item]) -> None:
    seen: set[bytes] = set()
    for token, label in items:
        if len(token) != TOKEN_SIZE:
            raise InvalidRequest(f"a match token must be {TOKEN_SIZE} bytes")
        if label is not None and len(label) > _MAX_LABEL:
            raise InvalidRequest(f"a sealed label must be at most {_MAX_LABEL} bytes")
        if token in seen:
            raise Conflict("duplicate token in submission")
        seen.add(token)


def _mark(conn: Connection) -> str:
    """The driver's placeholder for a positional parameter."""
    return "?" if conn.dialect.paramstyle == "qmark" else "%s"


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
    ) -> bool:
        """Store one chunk of a member's submission and its tokens, all or nothing.

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
        _check_items(items)
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
                bulk_insert(
                    self._conn,
                    submitted_tokens,
                    ("round_id", "member_id", "match_token", "chunk_index", "position", "sealed_label"),
                    [(round_id, member_id, token, chunk_index, position, label)
                     for position, (token, label) in enumerate(items)],
                )
        except IntegrityError:
            # The chunk index was free (checked under the submission's lock), so the only key
            # left to collide is a token this member already sent in another chunk.
            raise Conflict("duplicate token in submission") from None
        return True

    def submission_status(self, round_id: str, member_id: str) -> SubmissionStatus:
        """Return where a member's submission stands; state NONE if nothing was staged.

        While staging, ``item_count`` is the number of items staged so far and ``digest`` is empty.
        """
        row = self._conn.execute(
            select(submissions.c.state, submissions.c.item_count, submissions.c.digest).where(
                self._key(submissions, round_id, member_id)
            )
        ).one_or_none()
        if row is None:
            return SubmissionStatus(round_id, member_id, SubmissionState.NONE)
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
        )

    def commit_submission(
        self, round_id: str, member_id: str, *, item_count: int, digest: bytes, at: datetime
    ) -> SubmissionStatus:
        """Commit a member's staged chunks, after checking them against its count and digest.

        The count and the digest (``protocol.submission.SubmissionDigest``: SHA-256 over
        ``match_token || I2OSP(len(label), 2) || label`` for every item) are recomputed from the
        stored items in (chunk index, position) order. Committing again with the same count and
        digest returns the status unchanged. A member with nothing to submit commits count 0 and
        the digest of no items.

        Raises:
            NotFound: no such round.
            RoundClosed: the round is no longer open (and the member had not committed).
            Conflict: chunks are missing ("missing chunks: 3, 7"); the count or the digest does
                not match what is stored; or the member already committed something else.
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
        self._conn.execute(
            update(submissions)
            .where(key)
            .values(
                state=SubmissionState.COMMITTED.value, item_count=actual_count, digest=actual_digest, committed_at=at
            )
        )
        self._count_holders(round_id, member_id)
        return self.submission_status(round_id, member_id)

    def _count_holders(self, round_id: str, member_id: str) -> None:
        # One statement inside the database adds the member's tokens to the round's holder
        # counts (SQLite and PostgreSQL both take INSERT ... SELECT ... ON CONFLICT DO UPDATE).
        self._conn.exec_driver_sql(
            f"INSERT INTO {token_holders.name} (round_id, match_token, holders) "
            f"SELECT round_id, match_token, 1 FROM {submitted_tokens.name} WHERE round_id = {_mark(self._conn)} "
            f"AND member_id = {_mark(self._conn)} "
            f"ON CONFLICT (round_id, match_token) DO UPDATE SET holders = {token_holders.name}.holders + 1",
            (round_id, member_id),
        )

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
        """Return how many tokens the member has stored in the round (staged or committed)."""
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
            select(submitted_tokens.c.match_token, submitted_tokens.c.sealed_label)
            .where(self._key(submitted_tokens, round_id, member_id))
            .order_by(submitted_tokens.c.chunk_index, submitted_tokens.c.position),
        )
        digest = SubmissionDigest()
        try:
            digest.update((token, label) for token, label in result)
        finally:
            result.close()
        return digest.count, digest.digest()
