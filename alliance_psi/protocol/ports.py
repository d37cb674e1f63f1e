"""What the roles need from storage and from their peers, as structural types.

The roles never import SQLAlchemy or grpc: the services layer hands them a unit of work that
opens a transaction and yields repositories bound to it (cosmicpython's unit of work, with
explicit commit on a clean exit and rollback otherwise), and for the member role the clients of
the custodians and the coordinator. ``storage`` and ``services.clients`` provide the real ones;
``tests/helpers/memory_ports.py`` in-memory ones.
"""

from __future__ import annotations

from collections.abc import Collection, Generator, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from alliance_psi.protocol.alerts import AlertBatch, StoredAlert
from alliance_psi.protocol.checkpoints import Evidence, SignedCheckpoint, SignedStatement
from alliance_psi.protocol.leads import LeadChecks, OwnIdentifier, RefusedLead
from alliance_psi.protocol.model import Round, RoundState, SubmissionStatus
from alliance_psi.protocol.node_rows import (
    CachedToken,
    IdentifierRef,
    KeptHeader,
    KeptLeaf,
    PendingChange,
    PendingSet,
    SetRecord,
    SubmissionRow,
    SubmittedToken,
)
from alliance_psi.protocol.result_codec import LeafPage, SignedResultHeader

if TYPE_CHECKING:  # ``protocol.coordinator`` and ``protocol.custodian`` import this module.
    from alliance_psi.protocol.continuous import AlertDraft, TokenChange
    from alliance_psi.protocol.coordinator import Chunk, Commit
    from alliance_psi.protocol.custodian import EpochStatus, Evaluation

__all__ = [
    "AlertCalls",
    "AlertsRepo",
    "AuditSink",
    "Charge",
    "CheckpointsRepo",
    "CoordinatorCalls",
    "CoordinatorTx",
    "CoordinatorUnitOfWork",
    "CustodianCalls",
    "Evaluator",
    "KeptResultsRepo",
    "MatchingRepo",
    "NodeRepo",
    "NodeTx",
    "NodeUnitOfWork",
    "QuotaLedger",
    "ResultsRepo",
    "RoundsRepo",
    "SubmissionsRepo",
]


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

    ``charge`` counts a batch once per ``batch_digest``: a byte-identical batch sent again costs
    nothing while the member's re-sent elements in the epoch stay within ``free_resent``, and is
    charged as a new batch beyond. It raises ``QuotaExceeded`` when a charge does not fit,
    recording nothing; ``refund`` takes back the charge of a batch that was then not evaluated.
    """

    def charge(
        self, key_epoch: str, member_id: str, batch_digest: bytes, count: int, quota: int, free_resent: int
    ) -> Charge: ...

    def refund(self, key_epoch: str, member_id: str, batch_digest: bytes, reason: str) -> None: ...

    def used(self, key_epoch: str, member_id: str) -> int: ...


class RoundsRepo(Protocol):
    """The coordinator's rounds (``storage.RoundRepository``)."""

    def create_round(self, round: Round) -> None: ...
    def get_round(self, round_id: str) -> Round: ...
    def list_rounds(self, state: RoundState | None = None) -> list[Round]: ...
    def transition_round(
        self, round_id: str, from_state: RoundState, to_state: RoundState, *, at: datetime, reason: str = ""
    ) -> bool: ...
    def start_labelling(self, round_id: str, *, due: datetime) -> bool: ...
    def lock(self, round_id: str, *, exclusive: bool = False) -> RoundState: ...


class SubmissionsRepo(Protocol):
    """Members' submissions: staged in chunks, committed into their standing sets
    (``storage.SubmissionRepository``)."""

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
        sequence: int = 0,
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
    def commit_delta(
        self,
        round_id: str,
        member_id: str,
        *,
        sequence: int,
        item_count: int,
        digest: bytes,
        at: datetime,
        replace: bool,
        set_count: int,
        set_digest: bytes,
        threshold: int,
        max_set_items: int | None = None,
    ) -> tuple[SubmissionStatus, list[TokenChange] | None]: ...
    def discard_staged(self, round_id: str, member_id: str) -> None: ...
    def discard_uncommitted(self, round_id: str) -> int: ...
    def committed_members(self, round_id: str) -> list[str]: ...
    def submitted_count(self, round_id: str, member_id: str) -> int: ...
    def record_share_name(self, round_id: str, member_id: str, share: bool) -> None: ...
    def sealer_names(self, round_id: str) -> dict[str, str]: ...


class MatchingRepo(Protocol):
    """Matching over the standing sets of a round's committed members (``storage.MatchRepository``)."""

    def match(
        self, round_id: str, threshold: int, *, labels: bool = True
    ) -> Iterator[tuple[bytes, str, bytes | None, int]]: ...
    def record_holder_counts(self, round_id: str, counts: dict[int, int]) -> None: ...
    def holders(self, scope: str, tokens: Iterable[bytes]) -> dict[bytes, list[tuple[str, bytes | None]]]: ...
    def holdings(self, scope: str, tokens: Iterable[bytes]) -> dict[str, int]: ...
    def matched_of(self, scope: str, member_id: str, threshold: int) -> list[bytes]: ...


class AlertsRepo(Protocol):
    """The alert outbox of continuous scopes (``storage.AlertRepository``)."""

    def position(self, member_id: str, *, lock: bool = False) -> tuple[int, int]: ...
    def allocate(self, member_id: str, count: int) -> int: ...
    def store(self, member_id: str, alerts: Sequence[StoredAlert]) -> None: ...
    def read(
        self, member_id: str, after: int, *, scope_id: str = "", max_alerts: int, max_bytes: int
    ) -> list[StoredAlert]: ...
    def ack(self, member_id: str, up_to: int) -> tuple[int, int]: ...
    def overflowed(self, member_id: str) -> list[str]: ...
    def mark_overflow(self, member_id: str, scope_id: str, sequence: int) -> None: ...
    def clear_overflow(self, member_id: str, scope_id: str) -> None: ...
    def hold(self, scope_id: str, drafts: Sequence[AlertDraft], *, release_at: datetime) -> None: ...
    def held(self, scope_id: str, member_id: str, *, release_at: datetime) -> int: ...
    def due_scopes(self, now: datetime) -> list[str]: ...
    def take_due(self, scope_id: str, now: datetime) -> list[tuple[datetime, AlertDraft]]: ...


class ResultsRepo(Protocol):
    """Signed result headers and their pages of leaves (``storage.ResultRepository``)."""

    def store_result(
        self, round_id: str, member_id: str, header: bytes, signature: bytes, pages: int, *, at: datetime
    ) -> None: ...
    def store_result_page(
        self, round_id: str, member_id: str, page_index: int, first_leaf: int, leaves: Sequence[bytes]
    ) -> None: ...
    def get_result(self, round_id: str, member_id: str) -> tuple[bytes, bytes, int]: ...
    def get_result_page(self, round_id: str, member_id: str, page_index: int) -> tuple[int, tuple[bytes, ...]]: ...


class RoundLabelsRepo(Protocol):
    """Labels asked of the holders of matched tokens in rounds that seal labels at match, and
    their answers (``storage.RoundLabelRepository``)."""

    def ask(self, round_id: str, requests: Iterable[tuple[bytes, str]]) -> int: ...
    def asked(self, round_id: str, member_id: str, *, after: bytes = b"", limit: int) -> list[bytes]: ...
    def answer(self, round_id: str, member_id: str, items: Sequence[tuple[bytes, bytes | None]]) -> int: ...
    def has_outstanding(self, round_id: str, member_id: str | None = None) -> bool: ...
    def unanswered_by_member(self, round_id: str) -> dict[str, int]: ...
    def answers(self, round_id: str) -> Iterator[tuple[bytes, str, bytes]]: ...
    def clear(self, round_id: str) -> int: ...


class CoordinatorTx(Protocol):
    """The coordinator's repositories in one transaction (``storage.CoordinatorRepositories``)."""

    @property
    def rounds(self) -> RoundsRepo: ...
    @property
    def submissions(self) -> SubmissionsRepo: ...
    @property
    def matching(self) -> MatchingRepo: ...
    @property
    def results(self) -> ResultsRepo: ...
    @property
    def labels(self) -> RoundLabelsRepo: ...
    @property
    def alerts(self) -> AlertsRepo: ...
    @property
    def audit(self) -> AuditSink: ...


class CoordinatorUnitOfWork(Protocol):
    def __call__(self) -> AbstractContextManager[CoordinatorTx]: ...


# The member node ------------------------------------------------------------------------------


class NodeRepo(Protocol):
    """The node's identifiers, their cached tokens per key epoch, and its record of what it sent
    per scope (``storage.MemberRepository``). Raw identifiers never leave it but to the member role.

    Every change to the identifiers carries a change stamp, taken in commit order
    (``change_head`` is the last committed); ``iter_changed_rows`` and ``withdrawn_tokens`` read
    what was stamped in a window (``since``, ``upto``], so a delta costs work in proportion to
    what changed."""

    def missing_token_ids(
        self,
        key_epoch: str,
        types: Collection[str] | None = None,
        *,
        since: int | None = None,
        upto: int | None = None,
        after: int = 0,
        limit: int | None = None,
    ) -> Iterator[IdentifierRef]: ...
    def count_missing_tokens(
        self, key_epoch: str, types: Collection[str] | None = None, *, since: int | None = None, upto: int | None = None
    ) -> int: ...
    def cache_tokens(self, key_epoch: str, rows: Sequence[CachedToken]) -> None: ...
    def iter_submission_rows(self, key_epoch: str, types: Collection[str] | None = None) -> Iterator[SubmissionRow]: ...
    def change_head(self) -> int: ...
    def iter_changed_rows(
        self, key_epoch: str, types: Collection[str], since: int, upto: int
    ) -> Iterator[SubmissionRow]: ...
    def withdrawn_tokens(self, key_epoch: str, types: Collection[str], since: int, upto: int) -> set[bytes]: ...
    def submitted_for_tokens(self, set_scope: str, tokens: Iterable[bytes]) -> dict[bytes, SubmittedToken]: ...
    def identifiers_for_tokens(self, key_epoch: str, tokens: Iterable[bytes]) -> dict[bytes, OwnIdentifier]: ...
    def label_keys_for_tokens(self, key_epoch: str, tokens: Iterable[bytes]) -> dict[bytes, bytes]: ...
    def submission_rows_for_tokens(self, key_epoch: str, tokens: Iterable[bytes]) -> dict[bytes, SubmissionRow]: ...
    def iter_submitted(self, set_scope: str) -> Iterator[SubmittedToken]: ...
    def submitted_state(self, set_scope: str) -> SetRecord | None: ...
    def forget_submitted(self, set_scope: str) -> None: ...
    def clear_pending(self, set_scope: str) -> None: ...
    def add_pending(self, set_scope: str, rows: Sequence[PendingChange]) -> None: ...
    def set_pending(self, set_scope: str, pending: PendingSet) -> None: ...
    def pending_set(self, set_scope: str) -> PendingSet | None: ...
    def apply_pending(self, set_scope: str) -> None: ...


class KeptResultsRepo(Protocol):
    """The node's verified results, kept for reports (``storage.KeptResults``)."""

    def save_header(
        self, round_id: str, *, key_epoch: str, round_name: str, header: bytes, signature: bytes, at: datetime
    ) -> None: ...
    def keep_conflicting(self, round_id: str, *, header: bytes, signature: bytes, at: datetime) -> None: ...
    def conflicting(self, round_id: str) -> list[tuple[bytes, bytes]]: ...
    def add_leaves(self, round_id: str, rows: Sequence[KeptLeaf]) -> None: ...
    def get_result(self, round_id: str) -> KeptHeader: ...
    def iter_leaves(self, round_id: str) -> Iterator[bytes]: ...
    def record_scope(self, round_id: str, set_scope: str, *, share_labels: bool) -> None: ...
    def recorded_scope(self, round_id: str) -> tuple[str, bool] | None: ...
    def save_refusals(self, round_id: str, refused: Sequence[RefusedLead]) -> None: ...
    def get_checks(self, round_id: str) -> LeadChecks: ...
    def record_label_answers(self, round_id: str, tokens: Sequence[bytes]) -> None: ...
    def label_answers_beyond_result(self, round_id: str) -> int: ...
    def label_answers_count(self, round_id: str) -> int: ...


class CheckpointsRepo(Protocol):
    """The coordinator's log checkpoints the node accepted, and evidence of an inconsistent log
    (``storage.CheckpointStore``)."""

    def add(self, signed: SignedCheckpoint, *, at: datetime) -> bool: ...
    def largest(self) -> SignedCheckpoint | None: ...
    def add_evidence(self, evidence: Evidence, *, at: datetime) -> None: ...


class NodeTx(Protocol):
    """The repositories of one transaction on the node's database."""

    @property
    def repo(self) -> NodeRepo: ...
    @property
    def results(self) -> KeptResultsRepo: ...
    @property
    def checkpoints(self) -> CheckpointsRepo: ...


class NodeUnitOfWork(Protocol):
    """The member node's database, a transaction at a time.

    ``writing()`` is one transaction, committed on a clean exit and rolled back otherwise.
    ``reading()`` reads without taking the write lock (a long read, such as a set streamed
    while its chunks upload, must not block the node's writes) and commits nothing. Several may
    be open at once, each with its own connection.
    """

    def reading(self) -> AbstractContextManager[NodeTx]: ...
    def writing(self) -> AbstractContextManager[NodeTx]: ...


class CustodianCalls(Protocol):
    """One threshold custodian as a member calls it (``services.clients.CustodianClient``).

    ``name`` is the name in its certificate, which the client checks on every connection.
    """

    name: str

    def epoch(self) -> EpochStatus:
        """The epoch, share index and commitment it serves, and the caller's quota."""
        ...

    def evaluate_folded(
        self, key_epoch: str, elements: Sequence[bytes], *, subset: Sequence[int], prove: bool = False
    ) -> Evaluation:
        """``λ_i·k_i·B`` for each element, for ``subset``; with ``prove`` its DLEQ proof. Unchecked.

        Raises ``PeerUnavailable`` (after its retries), ``HandshakeFailed``, and the typed
        refusals of ``services.status`` (``QuotaExceeded``, ``WrongEpoch``, ``InvalidRequest``...).
        """
        ...


class Evaluator(Protocol):
    """The key custodians, in the member's configured order (``services.clients.CustodianChain``)."""

    def key_epochs(self) -> list[str]:
        """The key epoch each custodian serves now, in order."""
        ...

    def evaluate(self, key_epoch: str, elements: Sequence[bytes]) -> list[bytes]:
        """Blinded elements evaluated under ``key_epoch`` by every custodian in turn, in order.

        Raises what a custodian raises: ``WrongEpoch``, ``QuotaExceeded``, ``MalformedElement``,
        ``PeerUnavailable`` and the rest of ``services.status``.
        """
        ...


class CoordinatorCalls(Protocol):
    """The calls a member node makes to the coordinator (``services.clients.CoordinatorClient``).

    The coordinator knows the caller by its certificate; ``member_id`` only names the caller in
    the statuses returned.
    """

    def get_round(self, round_id: str) -> tuple[Round, int]: ...
    def submission_status(self, round_id: str, member_id: str) -> SubmissionStatus: ...
    def upload_chunks(self, chunks: Iterable[Chunk]) -> tuple[int, int]: ...
    def commit(self, commit: Commit, member_id: str) -> SubmissionStatus: ...
    def get_result(self, round_id: str) -> Generator[SignedResultHeader | LeafPage, None, None]: ...
    def label_requests(self, round_id: str, *, after: bytes = b"", limit: int = 0) -> list[bytes]: ...
    def answer_labels(self, round_id: str, items: Sequence[tuple[bytes, bytes | None]]) -> bool: ...
    def checkpoint(self) -> SignedCheckpoint: ...
    def consistency(self, first: int, second: int) -> SignedStatement: ...


class AlertCalls(Protocol):
    """The calls a member node makes for its alerts (``services.clients.CoordinatorClient``).

    The coordinator knows the caller by its certificate and sends it its own alerts only. Each
    alert of a batch is still to be checked with ``protocol.alerts.verify_alert``; a node applies
    them in sequence order and acknowledges what it applied. After any break it watches again
    from its last acknowledged sequence + 1 (or the sequence after the last one it applied and
    kept, if it keeps them before acknowledging): nothing is lost, nothing is applied twice.
    """

    def watch_alerts(
        self, scope_id: str = "", from_sequence: int = 0, *, timeout: float | None = None
    ) -> Generator[AlertBatch, None, None]:
        """Batches of alerts as they are released, and heartbeats (empty batches)."""
        ...

    def ack_alerts(self, up_to_sequence: int) -> tuple[int, int]:
        """Acknowledge up to ``up_to_sequence``; return (acknowledged, head)."""
        ...
