"""Matching a round: the tokens that at least the threshold of its committed members hold, with
their holders and sealed labels, and the operator's aggregate view (counts only, never a token).

Matching reads the standing sets of the round's scope (``StandingSets``), counting only the
members that committed to the round (``SubmissionRepository``). Nothing here commits.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from itertools import groupby
from operator import itemgetter
from typing import Any

from sqlalchemy import Connection, Select, func, null, select, true, update

from alliance_psi.errors import InvalidRequest
from alliance_psi.protocol.model import SubmissionState
from alliance_psi.storage._common import batched, stream
from alliance_psi.storage.rounds_repo import RoundRepository
from alliance_psi.storage.schema import (
    member_set_state,
    member_sets,
    rounds,
    set_holders,
    submission_chunks,
    submissions,
)
from alliance_psi.storage.submissions_repo import SubmissionRepository

__all__ = ["MatchRepository"]


class MatchRepository:
    """Matching over the standing sets, and the counts kept of it, over one connection."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._rounds, self._submissions = RoundRepository(conn), SubmissionRepository(conn)

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
        members = self._submissions.committed_members(round_id)
        if len(members) < threshold:
            return
        scope = self._rounds.set_scope(round_id)
        state = member_set_state.c
        owners = dict(
            self._conn.execute(
                select(state.set_id, state.member_id).where(state.set_scope == scope, state.member_id.in_(members))
            ).all()
        )
        for token, group in groupby(self._candidate_rows(scope, threshold, list(owners), labels), key=itemgetter(0)):
            holders = list(group)
            if len(holders) >= threshold:
                for _, set_id, label in holders:
                    yield bytes(token), owners[set_id], label, len(holders)

    def _candidate_rows(self, scope: str, threshold: int, set_ids: list[str], labels: bool) -> Iterator[Sequence[Any]]:
        """(token, set id, label) of the rounds' sets for every token whose holder count over the
        scope is at least ``threshold``, ordered by token then set id, streamed.

        Holder counts over every standing set of the scope are kept as deltas commit. They are an
        upper bound of the counts among one round's members, so the tokens at or above the
        threshold are the only candidates; their rows give the exact count. Without labels the
        (scope, token, set) index answers alone, without reading the table.
        """
        held, counted = member_sets.c, set_holders.c
        if self._conn.dialect.name == "postgresql":
            yield from stream(self._conn, self._probe_candidates(scope, threshold, set_ids, labels))
            return
        columns = (held.match_token, held.set_id, held.sealed_label if labels else null())
        # SQLite: the candidates, then their rows by primary-key lookups in batches.
        candidates = self._conn.execute(
            select(counted.match_token)
            .where(counted.set_scope == scope, counted.holders >= threshold)
            .order_by(counted.match_token)
        ).scalars()
        for batch in batched(candidates):
            yield from self._conn.execute(
                select(*columns)
                .where(held.set_scope == scope, held.match_token.in_(batch), held.set_id.in_(set_ids))
                .order_by(held.match_token, held.set_id)
            )

    def _probe_candidates(self, scope: str, threshold: int, set_ids: list[str], labels: bool) -> Select[Any]:
        """PostgreSQL: the candidates from the (scope, holders) index, each probing the set table's
        (scope, token, set) index for its holders, whatever the statistics say.

        A plain join of the two token tables is planned from the statistics of their partitioned
        parents, which autovacuum never gathers: without an ``ANALYZE`` first (seconds, growing
        with the tables) PostgreSQL sorts and merges every row of every set. A ``LATERAL``
        subquery kept apart by ``OFFSET 0`` cannot be flattened into a join, so each candidate
        is one index probe (run-time partition pruning sends it to the token's partition), and
        the cost follows the candidates, not the tables. Not tried on Citus: it has refused
        ``OFFSET`` in a subquery it would push down (citusdata/citus#1342), so a Citus cluster may
        need the plain join form of this statement (docs/design.md, Scaling).
        For the rest of the transaction, JIT compilation is off (PostgreSQL starts it for any plan
        it thinks costly; index probes gain nothing from it, and it cost most of a second) and a
        cursor is planned for reading every row (``cursor_tuple_fraction``; planned for the first
        tenth, the server-side cursor walked every holder count in token order instead).
        """
        held, counted = member_sets.c, set_holders.c
        self._conn.exec_driver_sql("SET LOCAL jit = off")
        self._conn.exec_driver_sql("SET LOCAL cursor_tuple_fraction = 1.0")
        probe = (
            select(held.set_id, held.sealed_label if labels else null().label("sealed_label"))
            .where(
                held.set_scope == counted.set_scope,
                held.match_token == counted.match_token,
                held.set_id.in_(set_ids),
            )
            .offset(0)
            .lateral("holder")
        )
        return (
            select(counted.match_token, probe.c.set_id, probe.c.sealed_label)
            .select_from(set_holders.join(probe, true()))
            .where(counted.set_scope == scope, counted.holders >= threshold)
            .order_by(counted.match_token, probe.c.set_id)
        )

    def holders(self, scope: str, tokens: Iterable[bytes]) -> dict[bytes, list[tuple[str, bytes | None]]]:
        """{token: [(member_id, sealed label), ...]} of every standing set of ``scope`` holding one of
        ``tokens`` now, members in order (what a continuous scope's alerts carry). Whole sets staged
        but not committed are not counted: only the sets ``member_set_state`` points at."""
        held, state = member_sets.c, member_set_state.c
        found: dict[bytes, list[tuple[str, bytes | None]]] = {}
        for batch in batched(tokens):
            rows = self._conn.execute(
                select(held.match_token, state.member_id, held.sealed_label)
                .select_from(
                    member_sets.join(
                        member_set_state, (state.set_scope == held.set_scope) & (state.set_id == held.set_id)
                    )
                )
                .where(held.set_scope == scope, held.match_token.in_(batch))
                .order_by(held.match_token, state.member_id)
            )
            for token, member, label in rows:
                found.setdefault(bytes(token), []).append((member, bytes(label) if label is not None else None))
        return found

    def holdings(self, scope: str, tokens: Iterable[bytes]) -> dict[str, int]:
        """{member_id: how many of ``tokens`` its standing set of ``scope`` holds}, counted in the
        database (members that hold none are absent): what ``holders`` would give, without its rows."""
        held, state = member_sets.c, member_set_state.c
        counts: dict[str, int] = {}
        for batch in batched(tokens):
            rows = self._conn.execute(
                select(state.member_id, func.count())
                .select_from(
                    member_sets.join(
                        member_set_state, (state.set_scope == held.set_scope) & (state.set_id == held.set_id)
                    )
                )
                .where(held.set_scope == scope, held.match_token.in_(batch))
                .group_by(state.member_id)
            )
            for member, count in rows:
                counts[member] = counts.get(member, 0) + int(count)
        return counts

    def matched_of(self, scope: str, member_id: str, threshold: int) -> list[bytes]:
        """The tokens of ``member_id``'s standing set in ``scope`` that at least ``threshold`` sets hold."""
        held, state, counted = member_sets.c, member_set_state.c, set_holders.c
        return [
            bytes(token)
            for token in self._conn.execute(
                select(held.match_token)
                .select_from(
                    member_sets.join(
                        member_set_state, (state.set_scope == held.set_scope) & (state.set_id == held.set_id)
                    ).join(
                        set_holders, (counted.set_scope == held.set_scope) & (counted.match_token == held.match_token)
                    )
                )
                .where(held.set_scope == scope, state.member_id == member_id, counted.holders >= threshold)
                .order_by(held.match_token)
            ).scalars()
        ]

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
