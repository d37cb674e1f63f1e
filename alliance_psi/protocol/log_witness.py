"""The member node as a witness of the coordinator's audit log.

Each contact (join, fetch, an imported checkpoint of another member) hands the node a signed
checkpoint; ``LogWitness.witness`` checks it against the largest one the node kept, through the
coordinator's signed consistency statements, and keeps it. When the log contradicts a kept
checkpoint (an entry edited with every hash recomputed, a truncated tail, a fork shown to two
members) the node refuses to go on and keeps the signed documents that show it, for
``alliance-psi node checkpoints-export`` and anyone with the coordinator's public key.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from alliance_psi.errors import InvalidRequest, LogInconsistent, NotFound
from alliance_psi.protocol.checkpoints import (
    Checkpoint,
    Evidence,
    SignedCheckpoint,
    SignedStatement,
    check_against,
    open_checkpoint,
)
from alliance_psi.protocol.ports import CoordinatorCalls, NodeUnitOfWork

__all__ = ["LogWitness"]


def _utcnow() -> datetime:
    return datetime.now(UTC)


class LogWitness:
    """Checks and keeps checkpoints of the coordinator's log in the member node's database."""

    def __init__(
        self,
        uow: NodeUnitOfWork,
        coordinator: CoordinatorCalls,
        coordinator_key: bytes,
        *,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self.uow, self.coordinator, self.coordinator_key, self.clock = uow, coordinator, coordinator_key, clock

    def witness(self, signed: SignedCheckpoint) -> Checkpoint:
        """Check a checkpoint of the coordinator's audit log and keep it.

        It must be signed by the coordinator's key, and consistent with the largest checkpoint
        this node kept: the same root for the same size, a larger log proven to extend it (the
        coordinator's signed consistency statement), never a smaller log at a later time. The
        first checkpoint a node sees is taken on trust.

        Raises:
            InvalidSignature: not signed by the coordinator's key.
            LogInconsistent: the log contradicts a kept checkpoint; the signed documents that show
                it, when there are any, are kept in the node database.
        """
        head = open_checkpoint(self.coordinator_key, signed)
        with self.uow.reading() as tx:
            known = tx.checkpoints.largest()
        if known is not None:
            try:
                check_against(self.coordinator_key, known, signed, self._consistency)
            except LogInconsistent as exc:
                evidence = exc.evidence if isinstance(exc.evidence, Evidence) else None
                if evidence is not None:
                    with self.uow.writing() as tx:
                        tx.checkpoints.add_evidence(evidence, at=self.clock())
                kept = "; the signed evidence is kept (alliance-psi node checkpoints-export)" if evidence else ""
                raise LogInconsistent(
                    f"the coordinator's audit log is inconsistent: {exc}{kept}", evidence=evidence
                ) from None
        with self.uow.writing() as tx:
            tx.checkpoints.add(signed, at=self.clock())
        return head

    def _consistency(self, first: int, second: int) -> SignedStatement | None:
        try:
            return self.coordinator.consistency(first, second)
        except (NotFound, InvalidRequest):  # The coordinator cannot prove it (its log is shorter, say).
            return None
