"""Labels sealed at match: which holders the coordinator asked for which matched token's label,
and their answers (``Round.labels_at_match``). Nothing here commits.

The rows live from the moment the coordinator asks (after matching a closed round) until the
round's results are issued, which carry the answered labels; then they are deleted. Error
messages may cross the network to the member that sent the items: they name positions, never a
token.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

from sqlalchemy import Connection, delete, false, func, select, true

from alliance_psi.errors import Conflict, InvalidRequest
from alliance_psi.storage._common import batched, bulk_insert, placeholder, stream
from alliance_psi.storage.schema import round_labels

__all__ = ["RoundLabelRepository"]


class RoundLabelRepository:
    """The ``round_labels`` table over one connection."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def ask(self, round_id: str, requests: Iterable[tuple[bytes, str]]) -> int:
        """Record that each (token, member) of ``requests`` is asked for its label; return how many."""
        count = 0
        for batch in batched(requests, 10_000):
            bulk_insert(
                self._conn,
                round_labels,
                ("round_id", "match_token", "member_id", "answered"),
                [(round_id, token, member, False) for token, member in batch],
            )
            count += len(batch)
        return count

    def asked(self, round_id: str, member_id: str, *, after: bytes = b"", limit: int) -> list[bytes]:
        """The tokens ``member_id`` was asked to label and has not answered, in token order, the
        first ``limit`` after ``after``."""
        c = round_labels.c
        query = (
            select(c.match_token)
            .where(c.round_id == round_id, c.member_id == member_id, c.answered == false(), c.match_token > after)
            .order_by(c.match_token)
            .limit(limit)
        )
        return [bytes(token) for token in self._conn.execute(query).scalars()]

    def answer(self, round_id: str, member_id: str, items: Sequence[tuple[bytes, bytes | None]]) -> int:
        """Record ``member_id``'s labels for tokens it was asked for (None or empty: it has none to
        share); return how many were answered now. Answering a token again with the same label
        changes nothing (a resent call).

        Raises (nothing recorded, the caller's transaction to roll back):
            InvalidRequest: an item's token was not asked of this member in this round.
            Conflict: an item's token was answered already with another label.
        """
        c = round_labels.c
        known: dict[bytes, tuple[bool, bytes | None]] = {}
        for batch in batched([token for token, _ in items]):
            rows = self._conn.execute(
                select(c.match_token, c.answered, c.sealed_label).where(
                    c.round_id == round_id, c.member_id == member_id, c.match_token.in_(batch)
                )
            )
            known.update({bytes(row.match_token): (bool(row.answered), row.sealed_label) for row in rows})
        fresh: list[tuple[bytes, bytes | None]] = []
        for index, (token, label) in enumerate(items):
            if token not in known:
                raise InvalidRequest(f"item {index}: not a token this member was asked to label in round {round_id}")
            answered, stored = known[token]
            if answered:
                if (stored or b"") != (label or b""):
                    raise Conflict(f"item {index}: answered already with another label")
                continue
            fresh.append((token, label or None))
        if fresh:
            # The driver's executemany: SQLAlchemy's own costs ~450 µs a row here (a statement built
            # per row), more than the update itself; the values need no conversion.
            mark = placeholder(self._conn)
            self._conn.exec_driver_sql(
                f"UPDATE {round_labels.name} SET sealed_label = {mark}, answered = {mark} "
                f"WHERE round_id = {mark} AND member_id = {mark} AND match_token = {mark}",
                [(label, True, round_id, member_id, token) for token, label in fresh],
            )
        return len(fresh)

    def has_outstanding(self, round_id: str, member_id: str | None = None) -> bool:
        """Whether an asked label of the round (of ``member_id``, if given) is not answered yet: one
        index probe (``LIMIT 1``), whatever the round's size."""
        c = round_labels.c
        query = select(c.match_token).where(c.round_id == round_id, c.answered == false()).limit(1)
        if member_id is not None:
            query = query.where(c.member_id == member_id)
        return self._conn.execute(query).first() is not None

    def unanswered_by_member(self, round_id: str) -> dict[str, int]:
        """{member: asked labels it has not answered} of the round, members with none left out."""
        c = round_labels.c
        query = (
            select(c.member_id, func.count())
            .where(c.round_id == round_id, c.answered == false())
            .group_by(c.member_id)
            .order_by(c.member_id)
        )
        return {member: int(count) for member, count in self._conn.execute(query)}

    def answers(self, round_id: str) -> Iterator[tuple[bytes, str, bytes]]:
        """(token, member, sealed label) of every label answered in the round, in token then member
        order, streamed (consume inside the caller's transaction)."""
        c = round_labels.c
        query = (
            select(c.match_token, c.member_id, c.sealed_label)
            .where(c.round_id == round_id, c.answered == true(), c.sealed_label.is_not(None))
            .order_by(c.match_token, c.member_id)
        )
        for row in stream(self._conn, query):
            yield bytes(row.match_token), row.member_id, bytes(row.sealed_label)

    def clear(self, round_id: str) -> int:
        """Delete the round's rows (its results carry the labels now); return how many."""
        return int(self._conn.execute(delete(round_labels).where(round_labels.c.round_id == round_id)).rowcount or 0)
