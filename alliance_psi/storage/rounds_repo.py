"""The coordinator's rounds: created, read, listed and moved forward, each under the caller's transaction.

Rounds of one scope (``Round.set_scope``) run one after another: at most one of them is open or
closed at a time (checked here, and by a partial unique index against a concurrent creation).
Error messages may cross the network; they name round ids only.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Row, select, update
from sqlalchemy.exc import IntegrityError

from alliance_psi.errors import Conflict, InvalidRequest, NotFound, RoundClosed
from alliance_psi.protocol.model import Round, RoundKind, RoundState
from alliance_psi.storage.schema import rounds

__all__ = ["RoundRepository"]

# Rounds of one scope run one after another: at most one of them is open or closed at a time.
_UNFINISHED = (RoundState.OPEN.value, RoundState.CLOSED.value)

# A round only moves forward; each move stamps its own column.
_TRANSITIONS = {
    (RoundState.OPEN, RoundState.CLOSED): "closed_at",
    (RoundState.CLOSED, RoundState.MATCHED): "matched_at",
}


class RoundRepository:
    """The ``rounds`` table over one connection; nothing here commits."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def create_round(self, round: Round) -> None:
        """Store a new round; ``created_at`` defaults to now.

        Raises:
            Conflict: a round with this id exists, or another round of its scope is unfinished.
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
            "kind": round.kind.value,
            "min_interval_seconds": round.min_interval_seconds,
            "label_cap": round.label_cap,
            "label_salt": round.label_salt or None,
            "labels_at_match": round.labels_at_match,
            "label_window_seconds": round.label_window_seconds,
            "labels_due": round.labels_due,
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

    def start_labelling(self, round_id: str, *, due: datetime) -> bool:
        """Set a closed round's ``labels_due`` if it has none yet: a compare-and-set, as
        ``transition_round`` (False, changing nothing, when the round is not closed or was asked
        for its labels already)."""
        moved = self._conn.execute(
            update(rounds)
            .where(
                rounds.c.round_id == round_id,
                rounds.c.state == RoundState.CLOSED.value,
                rounds.c.labels_due.is_(None),
            )
            .values(labels_due=due)
        )
        return moved.rowcount == 1

    def set_scope(self, round_id: str) -> str:
        """The round's ``set_scope``. Raises ``NotFound`` for no such round."""
        scope = self._conn.execute(select(rounds.c.set_scope).where(rounds.c.round_id == round_id)).scalar_one_or_none()
        if scope is None:
            raise NotFound(f"no round {round_id}")
        return str(scope)

    def lock(self, round_id: str, *, exclusive: bool = False) -> RoundState:
        """The round's state, under a shared lock held to the end of the transaction.

        A concurrent close (an UPDATE of this row) waits for this transaction, and this one
        waits for a close in progress, then sees the new state. ``exclusive`` takes the row
        lock itself: the commits of a continuous scope run one at a time (each matches against
        the holder counts the previous one left). Raises ``NotFound``.
        """
        state = self._conn.execute(
            select(rounds.c.state).where(rounds.c.round_id == round_id).with_for_update(read=not exclusive)
        ).scalar_one_or_none()
        if state is None:
            raise NotFound(f"no round {round_id}")
        return RoundState(state)

    def require_open(self, round_id: str) -> None:
        """``lock`` the round; raise ``RoundClosed`` unless it is open (``NotFound`` if there is none)."""
        if self.lock(round_id) != RoundState.OPEN:
            raise RoundClosed(f"round {round_id} is no longer open")


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
        kind=RoundKind(row.kind),
        min_interval_seconds=row.min_interval_seconds,
        label_cap=row.label_cap,
        label_salt=row.label_salt or b"",
        labels_at_match=bool(row.labels_at_match),
        label_window_seconds=row.label_window_seconds,
        labels_due=row.labels_due,
    )
