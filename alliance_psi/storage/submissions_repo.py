"""The coordinator's submissions: staging a round's delta in chunks and committing it.

A submission is either the member's whole set for the round's scope (``Round.set_scope``), or a
delta against its standing set: tokens put (added, or their label replaced) and tokens removed.
A whole set is written straight into ``member_sets`` under a new set id, which nothing reads
until the commit points the member at it (so a first submission is written once, not staged and
copied); a delta is staged in ``submitted_tokens`` and applied at commit. The commit checks the
count and digest (over the chunk digests, each checked against its items on arrival), updates
the holder counts of the scope, and checks the resulting set against the member's set count and
digest. Any failed check rolls the whole commit back.

``SubmissionRepository`` composes ``RoundRepository`` (the round's scope and its lock) and
``StandingSets`` (the members' sets the commit changes). Error messages cross the network, so
they name chunk indices and counts, never a token or label.
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from datetime import datetime
from itertools import repeat
from operator import attrgetter, itemgetter
from typing import Any

from sqlalchemy import ColumnElement, Connection, Table, and_, delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError

from alliance_psi.crypto.derive import MATCH_TOKEN_BYTES
from alliance_psi.errors import Conflict, InvalidRequest, LimitExceeded, RoundClosed, SetMismatch
from alliance_psi.protocol.continuous import TokenChange
from alliance_psi.protocol.model import Role, RoundState, SubmissionState, SubmissionStatus
from alliance_psi.protocol.submission import (
    NO_LABEL_DIGEST,
    SetDigest,
    SubmissionDigest,
    check_no_repeats,
    chunk_position,
    label_digests,
)
from alliance_psi.storage._common import batched, bulk_insert, insert_ignoring, placeholder
from alliance_psi.storage.rounds_repo import RoundRepository
from alliance_psi.storage.schema import (
    HASH_SIZE,
    enrolments,
    member_sets,
    submission_chunks,
    submissions,
    submitted_tokens,
)
from alliance_psi.storage.standing_sets import StandingSets

__all__ = ["SubmissionRepository"]

Item = tuple[bytes, bytes | None]

_MAX_LABEL = 0xFFFF
_MISSING_SHOWN = 10


def _check_items(chunk_index: int, items: Sequence[Item], tokens: Sequence[bytes]) -> None:
    """``tokens``: the items' tokens, then the removals."""
    if set(map(len, tokens)) - {MATCH_TOKEN_BYTES}:
        raise InvalidRequest(f"a match token must be {MATCH_TOKEN_BYTES} bytes")
    if max((len(label) for _, label in items if label), default=0) > _MAX_LABEL:
        raise InvalidRequest(f"a sealed label must be at most {_MAX_LABEL} bytes")
    check_no_repeats(chunk_index, items, tokens[len(items) :])


def _missing_chunks_message(present: Sequence[int]) -> str | None:
    missing = sorted(set(range(max(present) + 1)) - set(present)) if present else []
    if not missing:
        return None
    shown = ", ".join(str(i) for i in missing[:_MISSING_SHOWN])
    more = f" and {len(missing) - _MISSING_SHOWN} more" if len(missing) > _MISSING_SHOWN else ""
    return f"missing chunks: {shown}{more}"


class SubmissionRepository:
    """Members' submissions to rounds over one connection: staged in chunks, committed into their
    standing sets, discarded when a round closes without them; nothing here commits."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._rounds, self._sets = RoundRepository(conn), StandingSets(conn)

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
        replace: bool = True,
        max_items: int | None = None,
        sequence: int = 0,
    ) -> bool:
        """Store one chunk of a member's submission (items put, then tokens removed), all or nothing.

        ``replace`` says whether the submission is the member's whole set or a delta; every chunk
        and the commit of one submission must say the same. ``chunk_digest`` must be computed by
        the caller from the chunk's content (with ``protocol.submission.chunk_digest``); it is
        what makes a resend recognisable. Returns False, and changes nothing, if the same chunk
        (same index, same digest) is stored. ``max_items`` bounds the items and removals of the
        whole submission (counted under the submission's lock, so concurrent uploads of one
        member cannot pass it together).

        Raises:
            NotFound: no such round.
            RoundClosed: the round is no longer open.
            Conflict: the member already committed; the index is stored with another digest;
                the chunk is a whole set in a delta submission or the other way round, or
                removes tokens from a whole set.
            InvalidRequest: a negative index, a digest that is not 32 bytes, a token that is
                not 16 bytes or a label over 65535 bytes; a token that repeats one of the chunk
                or one stored in another chunk (named by position, found by primary-key
                lookups before any row is written, so a chunk poisoned with one repeated token
                costs lookups, not thousands of inserts rolled back).
            LimitExceeded: the chunk would take the submission over ``max_items``; nothing is stored.

        In a continuous scope the chunk names its delta's ``sequence`` (the member's last committed
        + 1; ``Conflict`` for any other), and the first chunk after a commit starts the next delta.
        """
        if chunk_index < 0 or len(chunk_digest) != HASH_SIZE:
            raise InvalidRequest("a chunk needs an index >= 0 and a 32-byte digest")
        tokens = [*map(itemgetter(0), items), *removals]
        _check_items(chunk_index, items, tokens)
        if replace and removals:
            raise Conflict("a submission that replaces the whole set cannot remove tokens")
        self._rounds.require_open(round_id)
        if self._rounds.get_round(round_id).continuous:
            self._open_delta(round_id, member_id, replace, sequence)
        else:
            sequence = 0
            if self._lock_submission(round_id, member_id, replace) == SubmissionState.COMMITTED:
                raise Conflict("submission already committed")
        key = self._key(submission_chunks, round_id, member_id)
        stored = self._conn.execute(
            select(submission_chunks.c.chunk_digest).where(key, submission_chunks.c.chunk_index == chunk_index)
        ).scalar_one_or_none()
        if stored is not None:
            if hmac.compare_digest(stored, chunk_digest):
                return False
            raise Conflict(f"chunk {chunk_index} already stored with different content")
        if max_items is not None:
            staged = self._staged_count(round_id, member_id)
            if staged + len(items) + len(removals) > max_items:
                what = "a whole set" if replace else "a delta"
                raise LimitExceeded(
                    f"chunk {chunk_index}: {what} may hold at most {max_items} items and removals per member and "
                    f"round; {staged} are staged and this chunk adds {len(items) + len(removals)}"
                )
        set_id = _set_id(member_id, round_id, sequence)
        self._refuse_stored_tokens(round_id, member_id, chunk_index, tokens, len(items), set_id if replace else None)
        try:
            with self._conn.begin_nested():
                self._conn.execute(
                    submission_chunks.insert().values(
                        round_id=round_id,
                        member_id=member_id,
                        chunk_index=chunk_index,
                        item_count=len(items) + len(removals),
                        chunk_digest=chunk_digest,
                        received_at=at,
                    )
                )
                labels = [label for _, label in items]
                if replace:
                    scope = self._rounds.set_scope(round_id)
                    bulk_insert(
                        self._conn,
                        member_sets,
                        ("set_scope", "set_id", "match_token", "sealed_label", "label_digest"),
                        list(zip(repeat(scope), repeat(set_id), tokens, labels, label_digests(labels))),  # No removals.
                    )
                else:
                    digests = label_digests(labels)
                    puts = [(round_id, member_id, t, False, lbl, d) for (t, lbl), d in zip(items, digests, strict=True)]
                    removed = [(round_id, member_id, token, True, None, NO_LABEL_DIGEST) for token in removals]
                    bulk_insert(
                        self._conn,
                        submitted_tokens,
                        ("round_id", "member_id", "match_token", "removed", "sealed_label", "label_digest"),
                        [*puts, *removed],
                    )
        except IntegrityError:
            # Unreachable while the submission's lock holds (index and tokens were checked under it).
            raise InvalidRequest(f"chunk {chunk_index}: a token this submission already holds") from None
        return True

    def _refuse_stored_tokens(
        self,
        round_id: str,
        member_id: str,
        chunk_index: int,
        tokens: Sequence[bytes],
        items: int,
        whole_set: str | None,
    ) -> None:
        # Lookups on the primary key of the rows the chunk would add, before any is written, in
        # driver SQL (SQLAlchemy's expanding IN costs more in Python than the lookups themselves).
        # ``tokens``: the chunk's, its ``items`` puts then its removals; ``whole_set``: the id of
        # the whole set being written, or None for a delta.
        if not tokens:
            return
        m = placeholder(self._conn)
        if whole_set is not None:
            mine = f"{member_sets.name} WHERE set_scope = {m} AND set_id = {m}"
            key: tuple[str, str] = (self._rounds.set_scope(round_id), whole_set)
        else:
            mine = f"{submitted_tokens.name} WHERE round_id = {m} AND member_id = {m}"
            key = (round_id, member_id)
        # A node sends its set in token order: when every token stored so far sorts before the
        # chunk's (one seek at the end of the primary key), none of the chunk's can be stored.
        highest = self._conn.exec_driver_sql(
            f"SELECT match_token FROM {mine} ORDER BY match_token DESC LIMIT 1", key
        ).scalar()
        if highest is None or bytes(highest) < min(tokens):
            return
        if self._conn.dialect.name == "postgresql":
            # One lookup of the whole chunk, its tokens as one bytea[] parameter, within the range
            # they span: a node sends its set in token order, so the range holds no earlier chunk's
            # rows and the lookup reads next to nothing (without it, PostgreSQL reads the set so far).
            lookups: list[tuple[str, tuple[Any, ...]]] = [
                (
                    f"SELECT match_token FROM {mine} AND match_token BETWEEN %s AND %s AND match_token = ANY(%s)",
                    (*key, min(tokens), max(tokens), tokens),
                )
            ]
        else:
            lookups = [
                (f"SELECT match_token FROM {mine} AND match_token IN ({', '.join([m] * len(batch))})", (*key, *batch))
                for batch in batched(tokens)
            ]
        stored: set[bytes] = set()
        for statement, parameters in lookups:
            stored.update(bytes(token) for (token,) in self._conn.exec_driver_sql(statement, parameters))
        if stored:
            position = next(i for i, token in enumerate(tokens) if token in stored)
            where = chunk_position(chunk_index, position, items)
            raise InvalidRequest(f"{where}: a token this submission already holds from another chunk")

    def submission_status(self, round_id: str, member_id: str) -> SubmissionStatus:
        """Return where a member's submission stands; state NONE if nothing was staged.

        While staging, ``item_count`` is the number of items staged so far and ``digest`` is empty.
        ``set_count`` and ``set_digest`` describe the member's standing set in the round's scope
        as it is now (zero and empty if it has none): before its commit, what the delta applies to.
        """
        set_count, set_digest_ = self._sets.standing(self._rounds.set_scope(round_id), member_id)
        row = self._conn.execute(
            select(submissions.c.state, submissions.c.item_count, submissions.c.digest, submissions.c.commit_seq).where(
                self._key(submissions, round_id, member_id)
            )
        ).one_or_none()
        if row is None:
            return SubmissionStatus(
                round_id, member_id, SubmissionState.NONE, set_count=set_count, set_digest=set_digest_
            )
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
            commit_sequence=row.commit_seq,
        )

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
        max_set_items: int | None = None,
        sequence: int = 0,
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
            LimitExceeded: the resulting set would hold more than ``max_set_items`` tokens;
                nothing is applied.
        """
        is_open = self._rounds.lock(round_id) == RoundState.OPEN
        # Only an open round gets a submission row; a closed one may still answer a retried commit.
        if is_open:
            self._lock_submission(round_id, member_id, replace)
        if self._committed_already(round_id, member_id, item_count, digest):
            return self.submission_status(round_id, member_id)
        if not is_open:
            raise RoundClosed(f"round {round_id} is no longer open")
        self._check_staged(round_id, member_id, item_count, digest)
        scope = self._rounds.set_scope(round_id)
        set_id, resulting = self._apply(round_id, member_id, scope, replace, sequence)
        _check_resulting_set(resulting.count, resulting.digest(), set_count, set_digest, max_set_items)
        self._mark_committed(
            round_id,
            member_id,
            item_count,
            digest,
            replace=replace,
            set_count=resulting.count,
            at=at,
            sequence=sequence,
        )
        self._sets.record(scope, member_id, set_id, resulting, round_id=round_id, at=at)
        self._conn.execute(delete(submitted_tokens).where(self._key(submitted_tokens, round_id, member_id)))
        return self.submission_status(round_id, member_id)

    def commit_delta(
        self,
        round_id: str,
        member_id: str,
        *,
        sequence: int,
        item_count: int,
        digest: bytes,
        at: datetime,
        replace: bool,
        set_count: int,
        set_digest: bytes,
        threshold: int,
        max_set_items: int | None = None,
    ) -> tuple[SubmissionStatus, list[TokenChange] | None]:
        """Commit delta ``sequence`` of a member to a continuous scope, as ``commit_submission``
        does, and return what it changed that may alert: each token the member joined, left or
        relabeled that is at or above ``threshold`` before or after, with its holder count after
        (``protocol.continuous.TokenChange``), in token order; the others are never read into
        Python. A retried commit of the delta already committed returns the status and None
        (nothing changed this time).

        The scope's row is locked first: the commits of one scope run one at a time, so each
        sees the holder counts the previous one left (what incremental matching needs).

        Raises what ``commit_submission`` raises, and ``Conflict`` when ``sequence`` is not the
        member's last committed delta + 1.
        """
        state = self._rounds.lock(round_id, exclusive=True)
        last = (
            self._conn.execute(
                select(submissions.c.commit_seq).where(self._key(submissions, round_id, member_id))
            ).scalar_one_or_none()
            or 0
        )
        if sequence == last and last and self._committed_already(round_id, member_id, item_count, digest):
            return self.submission_status(round_id, member_id), None
        if state != RoundState.OPEN:
            raise RoundClosed(f"round {round_id} is no longer open")
        self._open_delta(round_id, member_id, replace, sequence)
        # What the delta changes is read before it is applied; the counts after.
        scope = self._rounds.set_scope(round_id)
        current = self._sets.current_set_id(scope, member_id)
        if replace:
            new_set = _set_id(member_id, round_id, sequence)
            changes = self._sets.replace_changes(scope, current, new_set, threshold=threshold)
        else:
            changes = self._sets.delta_changes(round_id, member_id, scope, current, threshold=threshold)
        status = self.commit_submission(
            round_id,
            member_id,
            item_count=item_count,
            digest=digest,
            at=at,
            replace=replace,
            set_count=set_count,
            set_digest=set_digest,
            max_set_items=max_set_items,
            sequence=sequence,
        )
        return status, sorted(changes, key=attrgetter("token"))

    def discard_staged(self, round_id: str, member_id: str) -> None:
        """Drop the member's staged (uncommitted) delta to a continuous scope, so that its next
        attempt starts from nothing; its committed deltas stay. Nothing happens without one."""
        self._discard(round_id, [member_id])

    # The steps of a commit.

    def _open_delta(self, round_id: str, member_id: str, replace: bool, sequence: int) -> None:
        """Lock the member's submission to a continuous scope and make delta ``sequence`` the one
        staging: the first chunk (or empty commit) after a commit starts it, clearing the last
        delta's chunks. Raises ``Conflict`` for another sequence, or the other mode (whole set or
        delta) than the one the staging delta started with."""
        self._add_row(round_id, member_id, replace)
        row = self._conn.execute(
            select(submissions.c.state, submissions.c.replaces_set, submissions.c.commit_seq)
            .where(self._key(submissions, round_id, member_id))
            .with_for_update()
        ).one()
        expected = row.commit_seq + 1
        if sequence != expected:
            done = " is already committed" if 0 < sequence <= row.commit_seq else ""
            raise Conflict(f"delta {sequence}{done}: the next delta of this member to the scope is {expected}")
        if row.state == SubmissionState.COMMITTED.value:
            self._conn.execute(delete(submission_chunks).where(self._key(submission_chunks, round_id, member_id)))
            self._conn.execute(
                update(submissions)
                .where(self._key(submissions, round_id, member_id))
                .values(state=SubmissionState.STAGING.value, replaces_set=replace)
            )
        elif bool(row.replaces_set) != replace:
            raise Conflict(_mode_message(bool(row.replaces_set)))

    def _committed_already(self, round_id: str, member_id: str, item_count: int, digest: bytes) -> bool:
        """True if the member committed this very count and digest (a retried commit).

        Raises ``Conflict`` if it committed something else."""
        stored = self._conn.execute(
            select(submissions.c.state, submissions.c.item_count, submissions.c.digest).where(
                self._key(submissions, round_id, member_id)
            )
        ).one_or_none()
        if stored is None or stored.state != SubmissionState.COMMITTED:
            return False
        if stored.item_count == item_count and hmac.compare_digest(stored.digest, digest):
            return True
        raise Conflict("submission already committed with a different count or digest")

    def _check_staged(self, round_id: str, member_id: str, item_count: int, digest: bytes) -> None:
        """Check that every chunk is staged and that their count and digest are the commit's.

        Raises ``Conflict`` naming the missing chunks, or the count or digest that differs."""
        chunks = self._conn.execute(
            select(submission_chunks.c.chunk_index, submission_chunks.c.item_count, submission_chunks.c.chunk_digest)
            .where(self._key(submission_chunks, round_id, member_id))
            .order_by(submission_chunks.c.chunk_index)
        ).all()
        if missing := _missing_chunks_message([c.chunk_index for c in chunks]):
            raise Conflict(missing)
        recomputed = SubmissionDigest()
        for chunk in chunks:
            recomputed.add_chunk(chunk.chunk_digest, chunk.item_count)
        if recomputed.count != item_count:
            raise Conflict(f"item count mismatch: commit says {item_count}, {recomputed.count} stored")
        if not hmac.compare_digest(recomputed.digest(), digest):
            raise Conflict(f"digest mismatch over the {recomputed.count} stored items")

    def _apply(
        self, round_id: str, member_id: str, scope: str, replace: bool, sequence: int = 0
    ) -> tuple[str, SetDigest]:
        """Make the staged submission the member's set in ``scope``; return that set's id and digest.

        A delta updates the kept digest from the rows it changes; a whole set, or a set whose
        digest state was not kept (recorded by an earlier version), is digested from its rows."""
        current = self._sets.current_set_id(scope, member_id)
        if replace:
            set_id = _set_id(member_id, round_id, sequence)
            self._sets.replace(scope, current, set_id)
            return set_id, self._sets.digest(scope, set_id)
        set_id = current or _set_id(member_id, round_id, sequence)
        kept = self._sets.kept_digest(scope, member_id)
        resulting = None if kept is None else self._sets.delta_digest(round_id, member_id, scope, current, kept)
        self._sets.apply_delta(round_id, member_id, scope, set_id)
        return set_id, resulting if resulting is not None else self._sets.digest(scope, set_id)

    def _mark_committed(
        self,
        round_id: str,
        member_id: str,
        item_count: int,
        digest: bytes,
        *,
        replace: bool,
        set_count: int,
        at: datetime,
        sequence: int = 0,
    ) -> None:
        self._conn.execute(
            update(submissions)
            .where(self._key(submissions, round_id, member_id))
            .values(
                state=SubmissionState.COMMITTED.value,
                item_count=item_count,
                digest=digest,
                committed_at=at,
                replaces_set=replace,
                set_count=set_count,
                commit_seq=sequence,
            )
        )

    def discard_uncommitted(self, round_id: str) -> int:
        """Delete every uncommitted submission of a round with its chunks and tokens.

        Used when a round closes, so that a submission that never committed leaves nothing. In a
        continuous scope a member's committed deltas stay: only the delta it was staging goes.
        Returns the number of staged items (tokens) discarded.
        """
        staging = select(submissions.c.member_id).where(
            submissions.c.round_id == round_id, submissions.c.state == SubmissionState.STAGING.value
        )
        return self._discard(round_id, list(self._conn.execute(staging).scalars()))

    def _discard(self, round_id: str, members: Sequence[str]) -> int:
        """Discard the staged submissions of ``members`` to ``round_id`` (see ``discard_uncommitted``)."""
        rows = self._conn.execute(
            select(submissions.c.member_id, submissions.c.commit_seq).where(
                submissions.c.round_id == round_id,
                submissions.c.member_id.in_(members),
                submissions.c.state == SubmissionState.STAGING.value,
            )
        ).all()
        if not rows:
            return 0
        continuous = self._rounds.get_round(round_id).continuous
        scope, staging = self._rounds.set_scope(round_id), [m for m, _ in rows]
        # Whole sets written for this round that never became a member's set.
        written = [_set_id(m, round_id, seq + 1 if continuous else 0) for m, seq in rows]
        discarded = self._conn.execute(
            delete(member_sets).where(member_sets.c.set_scope == scope, member_sets.c.set_id.in_(written))
        ).rowcount
        # Children first: the foreign keys point from tokens and chunks to submissions.
        deleted = [
            self._conn.execute(delete(table).where(table.c.round_id == round_id, table.c.member_id.in_(staging)))
            for table in (submitted_tokens, submission_chunks)
        ]
        self._conn.execute(delete(submissions).where(self._key_in(round_id, staging), submissions.c.commit_seq == 0))
        self._conn.execute(
            update(submissions)
            .where(self._key_in(round_id, staging), submissions.c.commit_seq > 0)
            .values(state=SubmissionState.COMMITTED.value)
        )
        return discarded + deleted[0].rowcount

    def committed_members(self, round_id: str) -> list[str]:
        """Return the ids of the members that committed to the round, sorted."""
        return list(
            self._conn.execute(
                select(submissions.c.member_id)
                .where(submissions.c.round_id == round_id, _has_committed())
                .order_by(submissions.c.member_id)
            ).scalars()
        )

    def submitted_count(self, round_id: str, member_id: str) -> int:
        """How many tokens the member's set held when it committed to the round (staged items
        so far if it has not committed)."""
        row = self._conn.execute(
            select(submissions.c.state, submissions.c.set_count, submissions.c.commit_seq).where(
                self._key(submissions, round_id, member_id)
            )
        ).one_or_none()
        if row is not None and (row.state == SubmissionState.COMMITTED or row.commit_seq > 0):
            return row.set_count or 0
        return self._staged_count(round_id, member_id)

    # Names the members chose to give their co-holders.

    def record_share_name(self, round_id: str, member_id: str, share: bool) -> None:
        """Record whether the member chose to be named, in this round, to the co-holders of its labels."""
        self._conn.execute(
            update(submissions).where(self._key(submissions, round_id, member_id)).values(share_name=share)
        )

    def sealer_names(self, round_id: str) -> dict[str, str]:
        """{member id: name} of the round's committed members that chose to be named: the display
        name its operator enrolled it with (``coordinator member add --display-name``), or else
        its member id, the name in its certificate. Members that did not choose are absent."""
        enrolled = enrolments.c
        rows = self._conn.execute(
            select(submissions.c.member_id, enrolled.display_name)
            .select_from(
                submissions.outerjoin(
                    enrolments, (enrolled.role == Role.MEMBER.value) & (enrolled.name == submissions.c.member_id)
                )
            )
            .where(
                submissions.c.round_id == round_id,
                _has_committed(),
                submissions.c.share_name.is_(True),
            )
        )
        return {member: display or member for member, display in rows}

    def _staged_count(self, round_id: str, member_id: str) -> int:
        staged: int = self._conn.execute(
            select(func.coalesce(func.sum(submission_chunks.c.item_count), 0)).where(
                self._key(submission_chunks, round_id, member_id)
            )
        ).scalar_one()
        return staged

    # Helpers.

    @staticmethod
    def _key(table: Table, round_id: str, member_id: str) -> ColumnElement[bool]:
        return and_(table.c.round_id == round_id, table.c.member_id == member_id)

    @staticmethod
    def _key_in(round_id: str, members: Sequence[str]) -> ColumnElement[bool]:
        return and_(submissions.c.round_id == round_id, submissions.c.member_id.in_(members))

    def _add_row(self, round_id: str, member_id: str, replace: bool) -> None:
        """The member's submission row, staging, unless it has one."""
        self._conn.execute(
            insert_ignoring(self._conn, submissions).values(
                round_id=round_id,
                member_id=member_id,
                state=SubmissionState.STAGING.value,
                item_count=0,
                replaces_set=replace,
            )
        )

    def _lock_submission(self, round_id: str, member_id: str, replace: bool = True) -> SubmissionState:
        # Create the row if needed, then lock it: a member's chunks and commit are serialized.
        # The first chunk (or an empty commit) fixes whether the submission is a whole set.
        self._add_row(round_id, member_id, replace)
        row = self._conn.execute(
            select(submissions.c.state, submissions.c.replaces_set)
            .where(self._key(submissions, round_id, member_id))
            .with_for_update()
        ).one()
        state = SubmissionState(row.state)
        if state == SubmissionState.STAGING and bool(row.replaces_set) != replace:
            raise Conflict(_mode_message(bool(row.replaces_set)))
        return state


def _set_id(member_id: str, round_id: str, sequence: int = 0) -> str:
    """The id of the set a member's whole-set submission to a round writes (in a continuous
    scope, each delta ``sequence`` that sends the whole set writes one of its own)."""
    return f"{member_id}@{round_id}#{sequence}" if sequence else f"{member_id}@{round_id}"


def _has_committed() -> ColumnElement[bool]:
    """A submission that counts: committed, or (continuous) staging a delta after earlier commits."""
    return or_(submissions.c.state == SubmissionState.COMMITTED.value, submissions.c.commit_seq > 0)


def _mode_message(started_whole: bool) -> str:
    started, other = ("its whole set", "a delta") if started_whole else ("a delta", "a whole set")
    return f"this submission was started as {started}; it cannot continue as {other}"


def _check_resulting_set(
    count: int, digest: bytes, set_count: int | None, set_digest: bytes | None, max_set_items: int | None
) -> None:
    """Check the member's set as the commit would leave it against its limit and the member's own
    count and digest of it. Raises ``LimitExceeded`` or ``SetMismatch``."""
    if max_set_items is not None and count > max_set_items:
        raise LimitExceeded(
            f"the member's set would hold {count} tokens, over the limit of {max_set_items} per member "
            "and scope; withdraw identifiers, or ask the operator to raise --max-set-items"
        )
    if set_count is not None and set_count != count:
        raise SetMismatch(
            f"set count mismatch: commit says {set_count}, the set would hold {count}; send the whole set with replace"
        )
    if set_digest is not None and not hmac.compare_digest(digest, set_digest):
        raise SetMismatch(
            f"set digest mismatch over the {count} tokens the set would hold; send the whole set with replace"
        )
