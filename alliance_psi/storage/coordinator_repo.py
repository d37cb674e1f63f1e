"""The coordinator's repository: rounds, submissions, matching and signed results.

The coordinator stores match tokens, sealed labels, counts and digests, never an identifier.
Every method runs in the caller's transaction (``with engine.begin() as conn:``); nothing here
commits. Error messages may cross the network, so none shows a token or a label.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from itertools import groupby
from operator import itemgetter
from typing import Any

from sqlalchemy import Row, func, null, select, update
from sqlalchemy.exc import IntegrityError

from alliance_psi.errors import Conflict, InvalidRequest, NotFound, StorageError
from alliance_psi.protocol.model import Role, Round, RoundState, SubmissionState
from alliance_psi.storage._common import batched, insert_if_absent
from alliance_psi.storage._submissions import SubmissionStore
from alliance_psi.storage.schema import (
    enrolments,
    member_set_state,
    member_sets,
    result_headers,
    result_pages,
    rounds,
    set_holders,
    submission_chunks,
    submissions,
)

__all__ = ["CoordinatorRepository"]

# Rounds of one scope run one after another: at most one of them is open or closed at a time.
_UNFINISHED = (RoundState.OPEN.value, RoundState.CLOSED.value)

# A round only moves forward; each move stamps its own column.
_TRANSITIONS = {
    (RoundState.OPEN, RoundState.CLOSED): "closed_at",
    (RoundState.CLOSED, RoundState.MATCHED): "matched_at",
}


class CoordinatorRepository(SubmissionStore):
    """Rounds, submissions (see ``SubmissionStore``), matching and results, over one connection.

    Usage::

        with engine.begin() as conn:
            repo = CoordinatorRepository(conn)
            repo.stage_chunk(round_id, member_id, 0, items, digest, at=now)
    """

    # Rounds.

    def create_round(self, round: Round) -> None:
        """Store a new round; ``created_at`` defaults to now.

        Raises:
            Conflict: a round with this id exists.
        """
        values = {
            "round_id": round.round_id,
            "name": round.name,
            "threshold": round.threshold,
            "key_epoch": round.key_epoch,
            "deadline": round.deadline,
            "allowed_types": json.dumps(list(round.allowed_types)),
            "invited": None if round.invited is None else json.dumps(list(round.invited)),
            "share_labels": round.share_labels,
            "state": round.state.value,
            "created_by": round.created_by,
            "created_at": round.created_at or datetime.now(UTC),
            "closed_at": round.closed_at,
            "close_reason": round.close_reason,
            "matched_at": round.matched_at,
            "set_scope": round.set_scope,
        }
        if self._conn.execute(select(rounds.c.round_id).where(rounds.c.round_id == round.round_id)).first():
            raise Conflict(f"round {round.round_id} already exists")
        unfinished = self._conn.execute(
            select(rounds.c.round_id).where(rounds.c.set_scope == round.set_scope, rounds.c.state.in_(_UNFINISHED))
        ).scalar()
        if unfinished is not None:
            raise Conflict(
                f"round {unfinished} over the same key epoch, types and label sharing is not matched yet; "
                "close it first (rounds of one scope run one after another)"
            )
        try:
            with self._conn.begin_nested():
                self._conn.execute(rounds.insert().values(values))
        except IntegrityError:  # A concurrent creation won the race (the partial unique index).
            raise Conflict(f"round {round.round_id} or another unfinished round of its scope already exists") from None

    def get_round(self, round_id: str) -> Round:
        """Return the round.

        Raises:
            NotFound: no such round.
        """
        row = self._conn.execute(select(rounds).where(rounds.c.round_id == round_id)).one_or_none()
        if row is None:
            raise NotFound(f"no round {round_id}")
        return _round_from_row(row)

    def list_rounds(self, state: RoundState | None = None) -> list[Round]:
        """Return every round, or those in ``state``, oldest first."""
        query = select(rounds).order_by(rounds.c.created_at, rounds.c.round_id)
        if state is not None:
            query = query.where(rounds.c.state == state.value)
        return [_round_from_row(row) for row in self._conn.execute(query)]

    def transition_round(
        self, round_id: str, from_state: RoundState, to_state: RoundState, *, at: datetime, reason: str = ""
    ) -> bool:
        """Move a round from ``from_state`` to ``to_state`` if it is still in ``from_state``.

        A compare-and-set: returns False, changing nothing, when the round has already moved.
        Closing records ``at`` and ``reason``; matching records ``at``.

        Raises:
            InvalidRequest: the move is not open → closed or closed → matched.
            NotFound: no such round.
        """
        stamp = _TRANSITIONS.get((from_state, to_state))
        if stamp is None:
            raise InvalidRequest(f"a round cannot go from {from_state} to {to_state}")
        values: dict[str, Any] = {"state": to_state.value, stamp: at}
        if to_state == RoundState.CLOSED:
            values["close_reason"] = reason
        moved = self._conn.execute(
            update(rounds).where(rounds.c.round_id == round_id, rounds.c.state == from_state.value).values(**values)
        )
        if moved.rowcount == 1:
            return True
        self.get_round(round_id)  # Raises NotFound if the round does not exist at all.
        return False

    # Matching.

    def match(
        self, round_id: str, threshold: int, *, labels: bool = True
    ) -> Iterator[tuple[bytes, str, bytes | None, int]]:
        """Yield (match_token, member_id, sealed_label, holder_count) for every holder of every
        token that at least ``threshold`` of the round's committed members hold, ordered by token
        (the holders of a token in a fixed order, so matching again gives the same results). With
        ``labels`` False the label is None and no label is read.

        The round matches over the standing sets of its scope, counting only the members that
        committed to it; their sets cannot have changed since, because the next round of the
        scope cannot open before this one is matched. Staged deltas are invisible. Consume the
        iterator inside the caller's transaction.

        Raises:
            InvalidRequest: ``threshold`` is below 1.
        """
        if threshold < 1:
            raise InvalidRequest("threshold must be at least 1")
        members = self.committed_members(round_id)
        if len(members) < threshold:
            return
        scope = self.set_scope(round_id)
        # Holder counts over every standing set of the scope are kept as deltas commit. They are
        # an upper bound of the counts among this round's members, so the tokens at or above
        # the threshold are the only candidates; their rows give the exact count.
        counted = set_holders.c
        candidates = (
            self._conn.execute(
                select(counted.match_token)
                .where(counted.set_scope == scope, counted.holders >= threshold)
                .order_by(counted.match_token)
            )
            .scalars()
            .all()
        )
        state = member_set_state.c
        owners = dict(
            self._conn.execute(
                select(state.set_id, state.member_id).where(state.set_scope == scope, state.member_id.in_(members))
            ).all()
        )
        held = member_sets.c
        # Without labels the (scope, token, set) index answers alone, without reading the table.
        columns = (held.match_token, held.set_id, held.sealed_label if labels else null())
        for batch in batched(candidates):
            rows = self._conn.execute(
                select(*columns)
                .where(held.set_scope == scope, held.match_token.in_(batch), held.set_id.in_(list(owners)))
                .order_by(held.match_token, held.set_id)
            ).all()
            for token, group in groupby(rows, key=itemgetter(0)):
                holders = list(group)
                if len(holders) >= threshold:
                    for _, set_id, label in holders:
                        yield token, owners[set_id], label, len(holders)

    def holder_counts(self, round_id: str) -> dict[int, int]:
        """{holders: tokens} over the round's committed members, for every holder count >= 2.

        Exact while the round is unfinished; ``record_holder_counts`` keeps it when it is matched,
        since its members' sets may change in the next round of the scope.
        """
        counts: dict[int, int] = {}
        for _, rows in groupby(self.match(round_id, 2), key=lambda row: row[0]):
            holders = next(rows)[3]
            counts[holders] = counts.get(holders, 0) + 1
        return dict(sorted(counts.items()))

    def record_holder_counts(self, round_id: str, counts: dict[int, int]) -> None:
        """Keep ``holder_counts`` of a round being matched, for the operator's aggregate view."""
        self._conn.execute(
            update(rounds)
            .where(rounds.c.round_id == round_id)
            .values(match_counts=json.dumps({str(k): v for k, v in counts.items()}))
        )

    def aggregate(self, round_id: str) -> dict[str, Any]:
        """Return the operator's view of a round: sizes and counts only, never a token.

        ``{"round_id": …, "submissions": {member_id: {"state": …, "item_count": …, "set_count": …}},
        "committed_members": n, "matches_by_holder_count": {holders: tokens}}``: ``item_count``
        is the size of the member's delta, ``set_count`` that of its set once committed, and the
        last counts, once the round is matched, the tokens held by exactly ``holders`` of its
        committed members.
        """
        members: dict[str, dict[str, Any]] = {}
        for row in self._conn.execute(
            select(
                submissions.c.member_id, submissions.c.state, submissions.c.item_count, submissions.c.set_count
            ).where(submissions.c.round_id == round_id)
        ):
            members[row.member_id] = {"state": row.state, "item_count": row.item_count, "set_count": row.set_count}
        for member_id, count in self._conn.execute(
            select(submission_chunks.c.member_id, func.sum(submission_chunks.c.item_count))
            .where(submission_chunks.c.round_id == round_id)
            .group_by(submission_chunks.c.member_id)
        ):
            if members[member_id]["state"] != SubmissionState.COMMITTED:
                members[member_id]["item_count"] = count  # Still staging: what is staged so far.
        stored = self._conn.execute(select(rounds.c.match_counts).where(rounds.c.round_id == round_id)).scalar()
        return {
            "round_id": round_id,
            "submissions": dict(sorted(members.items())),
            "committed_members": sum(1 for m in members.values() if m["state"] == SubmissionState.COMMITTED),
            "matches_by_holder_count": (
                {int(k): v for k, v in json.loads(stored).items()}
                if stored is not None
                else self.holder_counts(round_id)
            ),
        }

    # Names the members chose to give their co-holders.

    def record_share_name(self, round_id: str, member_id: str, share: bool) -> None:
        """Record whether the member chose to be named, in this round, to the co-holders of its labels."""
        self._conn.execute(
            update(submissions)
            .where(submissions.c.round_id == round_id, submissions.c.member_id == member_id)
            .values(share_name=share)
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
                submissions.c.state == SubmissionState.COMMITTED.value,
                submissions.c.share_name.is_(True),
            )
        )
        return {member: display or member for member, display in rows}

    # Results.

    def store_result(
        self, round_id: str, member_id: str, header: bytes, signature: bytes, pages: int, *, at: datetime
    ) -> None:
        """Store a member's signed result header and how many pages of leaves it has.

        Raises:
            Conflict: a result is already stored for this member and round.
        """
        values = {
            "round_id": round_id,
            "member_id": member_id,
            "header": header,
            "signature": signature,
            "page_count": pages,
            "created_at": at,
        }
        if not insert_if_absent(self._conn, result_headers, values):
            raise Conflict(f"a result is already stored for {member_id} in round {round_id}")

    def store_result_page(
        self, round_id: str, member_id: str, page_index: int, first_leaf: int, leaves: Sequence[bytes]
    ) -> None:
        """Store one page of a member's result leaves (canonical leaf bytes, in index order).

        Raises:
            Conflict: this page is already stored.
        """
        values = {
            "round_id": round_id,
            "member_id": member_id,
            "page_index": page_index,
            "first_leaf": first_leaf,
            "leaf_count": len(leaves),
            "leaves": b"".join(len(leaf).to_bytes(4, "big") + leaf for leaf in leaves),
        }
        if not insert_if_absent(self._conn, result_pages, values):
            raise Conflict(f"page {page_index} of the result for {member_id} in round {round_id} is already stored")

    def get_result(self, round_id: str, member_id: str) -> tuple[bytes, bytes, int]:
        """Return (header, signature, page count) of a member's result.

        Raises:
            NotFound: no result for this member in this round.
        """
        row = self._conn.execute(
            select(result_headers.c.header, result_headers.c.signature, result_headers.c.page_count).where(
                result_headers.c.round_id == round_id, result_headers.c.member_id == member_id
            )
        ).one_or_none()
        if row is None:
            raise NotFound(f"no result for {member_id} in round {round_id}")
        return row.header, row.signature, row.page_count

    def get_result_page(self, round_id: str, member_id: str, page_index: int) -> tuple[int, tuple[bytes, ...]]:
        """Return (first leaf index, leaves) of one page of a member's result.

        Raises:
            NotFound: no such page.
        """
        page = result_pages.c
        row = self._conn.execute(
            select(page.first_leaf, page.leaf_count, page.leaves).where(
                page.round_id == round_id, page.member_id == member_id, page.page_index == page_index
            )
        ).one_or_none()
        if row is None:
            raise NotFound(f"no page {page_index} of the result for {member_id} in round {round_id}")
        return row.first_leaf, _split_leaves(row.leaves, row.leaf_count)


def _split_leaves(data: bytes, count: int) -> tuple[bytes, ...]:
    leaves, pos = [], 0
    for _ in range(count):
        size = int.from_bytes(data[pos : pos + 4], "big")
        leaves.append(data[pos + 4 : pos + 4 + size])
        pos += 4 + size
    if pos != len(data) or any(len(leaf) == 0 for leaf in leaves):
        raise StorageError("a stored result page is corrupt")
    return tuple(leaves)


def _round_from_row(row: Row[Any]) -> Round:
    return Round(
        round_id=row.round_id,
        name=row.name,
        threshold=row.threshold,
        key_epoch=row.key_epoch,
        deadline=row.deadline,
        allowed_types=tuple(json.loads(row.allowed_types)),
        invited=None if row.invited is None else tuple(json.loads(row.invited)),
        share_labels=bool(row.share_labels),
        state=RoundState(row.state),
        created_by=row.created_by,
        created_at=row.created_at,
        closed_at=row.closed_at,
        close_reason=row.close_reason,
        matched_at=row.matched_at,
    )
