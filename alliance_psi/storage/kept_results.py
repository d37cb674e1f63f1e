"""The member node's kept results: each verified signed header and every leaf of its tree.

The node keeps what it verified so that reports can be rebuilt, and every lead proven again, long
after the round (``protocol.result_codec``). A result is written in the caller's transaction
while it streams in, so a result that fails verification leaves nothing behind.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime

from sqlalchemy import Connection, delete, func, select

from alliance_psi.errors import NotFound
from alliance_psi.protocol.node_rows import KeptHeader, KeptLeaf
from alliance_psi.storage._common import bulk_insert, stream
from alliance_psi.storage.schema import member_result_headers, member_result_leaves

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
        """Keep a verified signed header, replacing an earlier copy of the round's result and its leaves."""
        self._conn.execute(delete(member_result_leaves).where(member_result_leaves.c.round_id == round_id))
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
