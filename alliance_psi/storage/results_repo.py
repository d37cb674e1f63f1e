"""The coordinator's signed results: one header per member and round, and its pages of leaves.

A header is stored with how many pages it has; each page holds leaves in index order (canonical
leaf bytes, ``protocol.result_codec``). Nothing here commits; the caller owns the transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Connection, select

from alliance_psi.errors import Conflict, NotFound, StorageError
from alliance_psi.storage._common import insert_if_absent
from alliance_psi.storage.schema import result_headers, result_pages

__all__ = ["ResultRepository"]


class ResultRepository:
    """The ``result_headers`` and ``result_pages`` tables over one connection."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

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
            StorageError: the stored page is corrupt.
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
