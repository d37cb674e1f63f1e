"""The member node's kept results: each verified signed header and every leaf of its tree.

The node keeps what it verified so that reports can be rebuilt, and every lead proven again, long
after the round (``protocol.result_codec``). A result is written in the caller's transaction
while it streams in, so a result that fails verification leaves nothing behind.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime

from sqlalchemy import Connection, delete, func, select, update

from alliance_psi.errors import NotFound
from alliance_psi.protocol.leads import LeadChecks, RefusedLead
from alliance_psi.protocol.node_rows import KeptHeader, KeptLeaf
from alliance_psi.storage._common import bulk_insert, stream
from alliance_psi.storage.schema import (
    member_conflicting_results,
    member_label_answers,
    member_refused_leads,
    member_result_headers,
    member_result_leaves,
    member_round_scopes,
)

__all__ = ["KeptResults"]


class KeptResults:
    """Kept results over the caller's connection (``ports.KeptResultsRepo``).

    Usage::

        with engine.begin() as conn:          # One transaction: all of the result, or nothing.
            kept = KeptResults(conn)
            kept.save_header(round_id, key_epoch=…, round_name=…, header=…, signature=…, at=now)
            kept.add_leaves(round_id, [(0, token, leaf), …])
    """

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def save_header(
        self, round_id: str, *, key_epoch: str, round_name: str, header: bytes, signature: bytes, at: datetime
    ) -> None:
        """Keep a verified signed header, replacing an earlier copy of the round's result, its leaves and refusals."""
        for table in (member_refused_leads, member_result_leaves):
            self._conn.execute(delete(table).where(table.c.round_id == round_id))
        self._conn.execute(delete(member_result_headers).where(member_result_headers.c.round_id == round_id))
        self._conn.execute(
            member_result_headers.insert().values(
                round_id=round_id,
                key_epoch=key_epoch,
                round_name=round_name,
                header=header,
                signature=signature,
                fetched_at=at,
            )
        )

    def keep_conflicting(self, round_id: str, *, header: bytes, signature: bytes, at: datetime) -> None:
        """Keep another signed header the coordinator gave for a round already kept (evidence of
        equivocation; the kept result stays). Keeping the same one twice changes nothing."""
        table = member_conflicting_results
        seen = self._conn.execute(
            select(table.c.round_id).where(table.c.round_id == round_id, table.c.header == header)
        ).first()
        if seen is None:
            self._conn.execute(
                table.insert().values(round_id=round_id, header=header, signature=signature, fetched_at=at)
            )

    def conflicting(self, round_id: str) -> list[tuple[bytes, bytes]]:
        """The other signed headers (header, signature) the coordinator gave for the round, oldest first."""
        table = member_conflicting_results
        rows = self._conn.execute(
            select(table.c.header, table.c.signature).where(table.c.round_id == round_id).order_by(table.c.fetched_at)
        )
        return [(row.header, row.signature) for row in rows]

    def add_leaves(self, round_id: str, rows: Sequence[KeptLeaf]) -> None:
        """Keep leaves (leaf index, match token, canonical leaf bytes)."""
        bulk_insert(
            self._conn,
            member_result_leaves,
            ("round_id", "leaf_index", "match_token", "leaf"),
            [(round_id, index, token, leaf) for index, token, leaf in rows],
        )

    def get_result(self, round_id: str) -> KeptHeader:
        """The signed header of a kept result; ``NotFound`` if none."""
        row = self._conn.execute(
            select(member_result_headers).where(member_result_headers.c.round_id == round_id)
        ).first()
        if row is None:
            raise NotFound(f"no result kept for round {round_id}: run `alliance-psi node join {round_id}` first")
        return KeptHeader(row.key_epoch, row.round_name, row.header, row.signature, row.fetched_at)

    def iter_leaves(self, round_id: str) -> Iterator[bytes]:
        """Every kept leaf of the round's result, in index order (streamed)."""
        leaves = member_result_leaves.c
        result = stream(self._conn, select(leaves.leaf).where(leaves.round_id == round_id).order_by(leaves.leaf_index))
        try:
            for (leaf,) in result:
                yield leaf
        finally:
            result.close()

    def leaf_count(self, round_id: str) -> int:
        leaves = member_result_leaves.c
        return int(self._conn.execute(select(func.count()).where(leaves.round_id == round_id)).scalar_one())

    def list_results(self) -> list[tuple[str, str, datetime]]:
        """(round_id, round_name, fetched_at) of every kept result, newest first."""
        kept = member_result_headers.c
        query = select(kept.round_id, kept.round_name, kept.fetched_at).order_by(kept.fetched_at.desc())
        return [(row.round_id, row.round_name, row.fetched_at) for row in self._conn.execute(query)]

    def record_label_answers(self, round_id: str, tokens: Sequence[bytes]) -> None:
        """Record that this node sends a label for each of ``tokens`` in ``round_id`` (again: no change)."""
        bulk_insert(
            self._conn,
            member_label_answers,
            ("round_id", "match_token"),
            [(round_id, token) for token in tokens],
            ignore_existing=True,
        )

    def label_answers_count(self, round_id: str) -> int:
        """How many tokens this node sent a label for in ``round_id``."""
        answers = member_label_answers.c
        query = select(func.count()).select_from(member_label_answers).where(answers.round_id == round_id)
        return int(self._conn.execute(query).scalar_one())

    def label_answers_beyond_result(self, round_id: str) -> int:
        """How many tokens this node sent a label for in ``round_id`` that its kept result does not hold."""
        answers, leaves = member_label_answers.c, member_result_leaves.c
        held = select(leaves.match_token).where(leaves.round_id == round_id)
        query = (
            select(func.count())
            .select_from(member_label_answers)
            .where(answers.round_id == round_id, answers.match_token.not_in(held))
        )
        return int(self._conn.execute(query).scalar_one())

    def record_scope(self, round_id: str, set_scope: str, *, share_labels: bool) -> None:
        """Record the scope this node committed to ``round_id`` in (its labels are sealed in it)."""
        scopes = member_round_scopes.c
        values = {"set_scope": set_scope, "share_labels": share_labels}
        if not self._conn.execute(
            update(member_round_scopes).where(scopes.round_id == round_id).values(values)
        ).rowcount:
            self._conn.execute(member_round_scopes.insert().values(round_id=round_id, **values))

    def recorded_scope(self, round_id: str) -> tuple[str, bool] | None:
        """(scope, share_labels) this node recorded for ``round_id`` (``record_scope``), or None."""
        scopes = member_round_scopes.c
        row = self._conn.execute(
            select(scopes.set_scope, scopes.share_labels).where(scopes.round_id == round_id)
        ).first()
        return None if row is None else (row.set_scope, bool(row.share_labels))

    def save_refusals(self, round_id: str, refused: Sequence[RefusedLead]) -> None:
        """Keep the refused leads of the round's result (after ``save_header``, same transaction)."""
        bulk_insert(
            self._conn,
            member_refused_leads,
            ("round_id", "match_token", "holder_count", "reason", "backed_count", "stands"),
            [(round_id, r.match_token, r.holder_count, r.reason, r.backed_count, r.stands) for r in refused],
        )

    def get_checks(self, round_id: str) -> LeadChecks:
        """The scope the round's labels are sealed in (None: no labels, or no scope recorded, as for a
        result kept before nodes checked labels, whose labels of an older format do not open) and
        the refused leads of its kept result."""
        recorded = self.recorded_scope(round_id)
        scope = recorded[0] if recorded is not None and recorded[1] else None
        refused = member_refused_leads.c
        rows = self._conn.execute(
            select(refused.match_token, refused.holder_count, refused.reason, refused.backed_count, refused.stands)
            .where(refused.round_id == round_id)
            .order_by(refused.match_token)
        )
        return LeadChecks(
            scope,
            tuple(
                RefusedLead(bytes(t), int(n), str(reason), int(backed), bool(stands))
                for t, n, reason, backed, stands in rows
            ),
        )
