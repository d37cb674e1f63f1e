"""What the roles need from storage, as structural types; ``storage`` provides the real ones.

The roles never import SQLAlchemy: the services layer hands them a unit of work that opens a
transaction and yields repositories bound to it (cosmicpython's unit of work, with explicit
commit on a clean exit and rollback otherwise).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from alliance_psi.protocol.model import Round, RoundState, SubmissionStatus

__all__ = ["AuditSink", "Charge", "CoordinatorRepo", "CoordinatorTx", "CoordinatorUnitOfWork", "QuotaLedger"]


class AuditSink(Protocol):
    """The audit log, an RFC 9162 Merkle tree (``storage.audit_log``)."""

    def append(self, *, actor: str, action: str, detail: Mapping[str, Any], at: datetime) -> int: ...
    def head(self) -> tuple[int, bytes]: ...
    def root(self, size: int | None = None) -> bytes: ...
    def leaf(self, index: int) -> bytes: ...
    def inclusion_proof(self, index: int, size: int) -> list[bytes]: ...
    def consistency_proof(self, first: int, second: int) -> list[bytes]: ...


@dataclass(frozen=True, slots=True)
class Charge:
    """The outcome of charging one batch of evaluations."""

    used: int
    """The member's usage in the key epoch afterwards."""
    charged: bool
    """False when the same batch had been charged before: it cost nothing this time."""


class QuotaLedger(Protocol):
    """Charges batches of evaluations to a member's quota, and records them, one transaction each.

    ``charge`` counts a batch once per ``batch_digest`` (a byte-identical batch sent again costs
    nothing) and raises ``QuotaExceeded`` when it does not fit, recording nothing; ``refund``
    takes back the charge of a batch that was then not evaluated.
    """

    def charge(self, key_epoch: str, member_id: str, batch_digest: bytes, count: int, quota: int) -> Charge: ...

    def refund(self, key_epoch: str, member_id: str, batch_digest: bytes, reason: str) -> None: ...

    def used(self, key_epoch: str, member_id: str) -> int: ...


class CoordinatorRepo(Protocol):
    def create_round(self, round: Round) -> None: ...
    def get_round(self, round_id: str) -> Round: ...
    def list_rounds(self, state: RoundState | None = None) -> list[Round]: ...
    def transition_round(
        self, round_id: str, from_state: RoundState, to_state: RoundState, *, at: datetime, reason: str = ""
    ) -> bool: ...
    def stage_chunk(
        self,
        round_id: str,
        member_id: str,
        chunk_index: int,
        items: Sequence[tuple[bytes, bytes | None]],
        chunk_digest: bytes,
        *,
        at: datetime,
        removals: Sequence[bytes] = (),
        replace: bool = True,
        max_items: int | None = None,
    ) -> bool: ...
    def submission_status(self, round_id: str, member_id: str) -> SubmissionStatus: ...
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
    ) -> SubmissionStatus: ...
    def record_holder_counts(self, round_id: str, counts: dict[int, int]) -> None: ...
    def discard_uncommitted(self, round_id: str) -> int: ...
    def committed_members(self, round_id: str) -> list[str]: ...
    def match(
        self, round_id: str, threshold: int, *, labels: bool = True
    ) -> Iterator[tuple[bytes, str, bytes | None, int]]: ...
    def submitted_count(self, round_id: str, member_id: str) -> int: ...
    def record_share_name(self, round_id: str, member_id: str, share: bool) -> None: ...
    def sealer_names(self, round_id: str) -> dict[str, str]: ...
    def store_result(
        self, round_id: str, member_id: str, header: bytes, signature: bytes, pages: int, *, at: datetime
    ) -> None: ...
    def store_result_page(
        self, round_id: str, member_id: str, page_index: int, first_leaf: int, leaves: Sequence[bytes]
    ) -> None: ...
    def get_result(self, round_id: str, member_id: str) -> tuple[bytes, bytes, int]: ...
    def get_result_page(self, round_id: str, member_id: str, page_index: int) -> tuple[int, tuple[bytes, ...]]: ...


class CoordinatorTx(Protocol):
    repo: CoordinatorRepo
    audit: AuditSink


class CoordinatorUnitOfWork(Protocol):
    def __call__(self) -> AbstractContextManager[CoordinatorTx]: ...
