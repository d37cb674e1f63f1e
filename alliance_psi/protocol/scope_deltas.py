"""A member's delta to a continuous scope, committed and matched in one transaction.

``commit_and_match`` is ``CoordinatorRole.commit`` for a continuous scope (``protocol.continuous``):
the delta is committed under its sequence, its changes become alerts (``AlertOutbox``), released
or held in the same transaction, and the commit is audited as a round's is. ``discard_refused``
drops a member's staged delta after it was refused for its content, so that the next attempt
starts from its first chunk instead of staying stuck on chunks the member can no longer rebuild.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from alliance_psi.errors import NotFound
from alliance_psi.protocol.alert_outbox import AlertOutbox
from alliance_psi.protocol.model import Round, RoundState, SubmissionState, SubmissionStatus
from alliance_psi.protocol.ports import CoordinatorTx, CoordinatorUnitOfWork

if TYPE_CHECKING:  # ``protocol.coordinator`` imports this module.
    from alliance_psi.protocol.coordinator import Commit

__all__ = ["commit_and_match", "commit_detail", "discard_refused"]


def commit_detail(commit: Commit) -> dict[str, object]:
    """What the audit log keeps of a commit: counts and digests, never a token."""
    return {
        "round_id": commit.round_id,
        "items": commit.item_count,
        "digest": commit.digest.hex(),
        "replace": commit.replace,
        "set_count": commit.set_count,
        "set_digest": commit.set_digest.hex(),
        "share_name": commit.share_name,
    }


def commit_and_match(
    tx: CoordinatorTx,
    scope: Round,
    member_id: str,
    commit: Commit,
    *,
    outbox: AlertOutbox,
    now: datetime,
    max_set_items: int | None,
) -> tuple[SubmissionStatus, set[str]]:
    """Commit delta ``commit.sequence`` of ``member_id`` to ``scope`` and write its alerts, in ``tx``.

    Returns the member's status and the members alerted now (their watches are to be woken once
    ``tx`` commits). A retried commit of the last delta changes and alerts nothing. Raises what
    ``SubmissionsRepo.commit_delta`` raises.
    """
    status, changes = tx.submissions.commit_delta(
        commit.round_id,
        member_id,
        sequence=commit.sequence,
        item_count=commit.item_count,
        digest=commit.digest,
        at=now,
        replace=commit.replace,
        set_count=commit.set_count,
        set_digest=commit.set_digest,
        threshold=scope.threshold,
        max_set_items=max_set_items,
    )
    if changes is None:  # The same commit again: it changed nothing this time.
        return status, set()
    tx.submissions.record_share_name(commit.round_id, member_id, commit.share_name)
    detail = {**commit_detail(commit), "sequence": commit.sequence}
    tx.audit.append(actor=member_id, action="submission.commit", at=now, detail=detail)
    return status, outbox.commit(tx, scope, member_id, changes, now)


def discard_refused(uow: CoordinatorUnitOfWork, member_id: str, round_id: str, sequence: int) -> bool:
    """After a chunk or commit of delta ``sequence`` to a continuous scope was refused for its
    content, drop the member's staged delta (its own, never committed); return whether it did.
    Nothing is dropped for another sequence (a stale retry) or while chunks are missing below
    the last one stored (an upload to resume)."""
    with uow() as tx:
        try:
            found = tx.rounds.get_round(round_id)
        except NotFound:
            return False
        if not found.continuous or found.state is not RoundState.OPEN:
            return False
        status = tx.submissions.submission_status(round_id, member_id)
        if status.state is not SubmissionState.STAGING or sequence != status.commit_sequence + 1:
            return False
        if list(status.chunks) != list(range(len(status.chunks))):
            return False
        tx.submissions.discard_staged(round_id, member_id)
        return True
