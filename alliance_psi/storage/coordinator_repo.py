"""The coordinator's repositories over one connection: what its unit of work hands the role.

The coordinator stores match tokens, sealed labels, counts and digests, never an identifier.
Each repository is a small class over the caller's connection; nothing here commits::

    with engine.begin() as conn:
        tx = CoordinatorRepositories(conn)
        tx.rounds.create_round(round)
        tx.submissions.stage_chunk(round_id, member_id, 0, items, digest, at=now)
        tx.audit.append(actor="admin", action="round.create", detail={"round_id": …}, at=now)
"""

from __future__ import annotations

from sqlalchemy import Connection

from alliance_psi.storage.alerts_repo import AlertRepository
from alliance_psi.storage.audit_log import AuditLog
from alliance_psi.storage.matching_repo import MatchRepository
from alliance_psi.storage.results_repo import ResultRepository
from alliance_psi.storage.round_labels import RoundLabelRepository
from alliance_psi.storage.rounds_repo import RoundRepository
from alliance_psi.storage.submissions_repo import SubmissionRepository

__all__ = ["CoordinatorRepositories"]


class CoordinatorRepositories:
    """Rounds, submissions, matching, labels asked at match, results, the alert outbox and the audit log, over one
    connection (``protocol.ports.CoordinatorTx``)."""

    def __init__(self, conn: Connection) -> None:
        self.rounds = RoundRepository(conn)
        self.submissions = SubmissionRepository(conn)
        self.matching = MatchRepository(conn)
        self.results = ResultRepository(conn)
        self.labels = RoundLabelRepository(conn)
        self.alerts = AlertRepository(conn)
        self.audit = AuditLog(conn)
