"""Storage over SQLAlchemy Core: SQLite by default, PostgreSQL with the same code and tests.

Each repository takes a ``Connection``; the caller owns the transaction::

    engine = make_engine("sqlite:///coordinator.db")
    create_schema(engine)
    with engine.begin() as conn:          # Commits on success, rolls back on any error.
        tx = CoordinatorRepositories(conn)  # The coordinator's: rounds, submissions, matching, ...
        tx.rounds.create_round(round)
        tx.audit.append(actor="admin", action="round.create", detail={"round_id": …}, at=now)

Raw identifiers are stored only by ``MemberRepository`` on the member's own node. The
coordinator stores tokens, sealed labels and counts; the audit log stores counts and ids only.
The coordinator and each custodian keep their own enrolment list (``EnrolmentRepository``).
"""

from __future__ import annotations

from alliance_psi.storage.audit_log import AuditEntry, AuditLog
from alliance_psi.storage.checkpoint_store import CheckpointStore
from alliance_psi.storage.coordinator_repo import CoordinatorRepositories
from alliance_psi.storage.custodian_repo import Charge, QuotaRepository
from alliance_psi.storage.engine import create_schema, make_engine, make_node_engine
from alliance_psi.storage.enrolment_repo import Enrolment, EnrolmentRepository
from alliance_psi.storage.kept_results import KeptResults
from alliance_psi.storage.matching_repo import MatchRepository
from alliance_psi.storage.member_repo import MemberRepository
from alliance_psi.storage.results_repo import ResultRepository
from alliance_psi.storage.rounds_repo import RoundRepository
from alliance_psi.storage.schema import metadata
from alliance_psi.storage.submissions_repo import SubmissionRepository

__all__ = [
    "AuditEntry",
    "AuditLog",
    "Charge",
    "CheckpointStore",
    "CoordinatorRepositories",
    "Enrolment",
    "EnrolmentRepository",
    "KeptResults",
    "MatchRepository",
    "MemberRepository",
    "QuotaRepository",
    "ResultRepository",
    "RoundRepository",
    "SubmissionRepository",
    "create_schema",
    "make_engine",
    "make_node_engine",
    "metadata",
]
