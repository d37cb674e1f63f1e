"""The coordinator's gRPC servicer and its storage wiring: decode, call ``CoordinatorRole``, encode."""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator

from sqlalchemy import Engine

from alliance_psi.defaults import TICK_SECONDS
from alliance_psi.errors import InvalidRequest
from alliance_psi.protocol import messages
from alliance_psi.protocol._pb import coordinator_pb2_grpc
from alliance_psi.protocol.coordinator import MAX_LABEL_PAGE, CoordinatorRole
from alliance_psi.protocol.messages import pb_coordinator
from alliance_psi.protocol.model import Role, RoundState
from alliance_psi.services.interceptors import identity_of
from alliance_psi.services.metrics import Metrics
from alliance_psi.services.server import Registration, guarded
from alliance_psi.storage import CoordinatorRepositories

log = logging.getLogger(__name__)

__all__ = ["CoordinatorServicer", "Ticker", "coordinator_registration", "sql_unit_of_work"]

SERVICE = "alliance_psi.v1.Coordinator"
_ADMIN = frozenset({Role.ADMIN})
_MEMBER = frozenset({Role.MEMBER})
_ANYONE = frozenset({Role.ADMIN, Role.MEMBER})


def sql_unit_of_work(engine: Engine, *, reading: bool = False):  # type: ignore[no-untyped-def]
    """A unit of work over ``engine``: one transaction, committed on a clean exit only.

    ``reading``: for reads only (the alert watches' polls); on SQLite it takes no write lock.
    """
    if reading:
        engine = engine.execution_options(sqlite_begin="DEFERRED")

    @contextlib.contextmanager
    def uow() -> Iterator[CoordinatorRepositories]:
        with engine.begin() as conn:
            yield CoordinatorRepositories(conn)

    return uow


class CoordinatorServicer(coordinator_pb2_grpc.CoordinatorServicer):
    def __init__(self, role: CoordinatorRole, metrics: Metrics | None = None) -> None:
        self.role, self.metrics = role, metrics

    def CreateRound(self, request, context):  # type: ignore[no-untyped-def]
        with guarded(context):
            created = self.role.create_round(identity_of(context), messages.round_spec_from_pb(request))
            return messages.round_to_pb(created, 0)

    def CloseRound(self, request, context):  # type: ignore[no-untyped-def]
        with guarded(context):
            closed = self.role.close_round(identity_of(context), request.round_id, request.reason)
            _, committed = self.role.get_round(identity_of(context), closed.round_id)
            return messages.round_to_pb(closed, committed)

    def GetRound(self, request, context):  # type: ignore[no-untyped-def]
        with guarded(context):
            return messages.round_to_pb(*self.role.get_round(identity_of(context), request.round_id))

    def ListRounds(self, request, context):  # type: ignore[no-untyped-def]
        with guarded(context):
            try:
                state = RoundState(request.state) if request.state else None
            except ValueError:
                raise InvalidRequest(f"state: one of {[s.value for s in RoundState]}") from None
            kind = messages.round_kind_from_pb(request.kind) if request.kind else None
            rounds = self.role.list_rounds(identity_of(context), state, kind)
            return pb_coordinator.ListRoundsResponse(rounds=[messages.round_to_pb(r, n) for r, n in rounds])

    def UploadChunks(self, request_iterator, context):  # type: ignore[no-untyped-def]
        with guarded(context):
            caller = identity_of(context)
            stored = duplicate = 0
            for request in request_iterator:
                chunk = messages.chunk_from_pb(request)
                if self.role.upload_chunk(caller, chunk):
                    stored += 1
                    if self.metrics is not None:
                        self.metrics.count_tokens_submitted(items=len(chunk.items), removals=len(chunk.removals))
                else:
                    duplicate += 1
            return pb_coordinator.UploadSummary(chunks_stored=stored, chunks_already_stored=duplicate)

    def GetSubmission(self, request, context):  # type: ignore[no-untyped-def]
        with guarded(context):
            return messages.status_to_pb(self.role.submission_status(identity_of(context), request.round_id))

    def CommitSubmission(self, request, context):  # type: ignore[no-untyped-def]
        with guarded(context):
            status = self.role.commit(identity_of(context), messages.commit_from_pb(request))
            return messages.status_to_pb(status)

    def GetResult(self, request, context):  # type: ignore[no-untyped-def]
        # A server stream: the header, then the result's pages read from the database one at a
        # time, so the coordinator's memory stays flat whatever the result's size.
        with guarded(context):
            header, pages = self.role.get_result(identity_of(context), request.round_id)
            yield messages.result_part_to_pb(header)
            for page in pages:
                yield messages.result_part_to_pb(page)

    def GetLabelRequests(self, request, context):  # type: ignore[no-untyped-def]
        with guarded(context):
            tokens = self.role.label_requests(
                identity_of(context), request.round_id, after=request.after, limit=request.limit or MAX_LABEL_PAGE
            )
            return pb_coordinator.LabelRequests(match_tokens=tokens)

    def AnswerLabels(self, request, context):  # type: ignore[no-untyped-def]
        with guarded(context):
            caller = identity_of(context)
            round_id, items = messages.answer_labels_from_pb(request)
            return pb_coordinator.AnswerLabelsResponse(all_answered=self.role.answer_labels(caller, round_id, items))

    def WatchAlerts(self, request, context):  # type: ignore[no-untyped-def]
        # A long server stream: each page of alerts read in its own transaction as it is released,
        # heartbeats between; it ends when the member cancels or its connection goes.
        with guarded(context):
            caller = identity_of(context)
            after = self.role.feed.start(caller, request.scope_id, request.from_sequence)
            for batch in self.role.feed.batches(caller, request.scope_id, after, active=context.is_active):
                yield messages.alert_batch_to_pb(batch)

    def AckAlerts(self, request, context):  # type: ignore[no-untyped-def]
        with guarded(context):
            acked, head = self.role.feed.ack(identity_of(context), request.up_to_sequence)
            return pb_coordinator.AckAlertsResponse(acked_sequence=acked, head_sequence=head)

    def GetCheckpoint(self, request, context):  # type: ignore[no-untyped-def]
        with guarded(context):
            return messages.checkpoint_to_pb(self.role.audit.checkpoint(identity_of(context)))

    def GetConsistencyProof(self, request, context):  # type: ignore[no-untyped-def]
        with guarded(context):
            statement = self.role.audit.consistency(identity_of(context), request.first_size, request.second_size)
            return messages.statement_to_pb(statement)

    def GetInclusionProof(self, request, context):  # type: ignore[no-untyped-def]
        with guarded(context):
            entry, proof = self.role.audit.inclusion(identity_of(context), request.index, request.tree_size)
            return messages.inclusion_to_pb(entry, proof)


def coordinator_registration(role: CoordinatorRole, metrics: Metrics | None = None) -> Registration:
    """The coordinator's service for ``run_server``; ``metrics`` counts the tokens stored."""
    return Registration(
        coordinator_pb2_grpc.add_CoordinatorServicer_to_server,
        CoordinatorServicer(role, metrics),
        SERVICE,
        {
            "CreateRound": _ADMIN,
            "CloseRound": _ADMIN,
            "GetRound": _ANYONE,
            "ListRounds": _ANYONE,
            "UploadChunks": _MEMBER,
            "GetSubmission": _MEMBER,
            "CommitSubmission": _MEMBER,
            "GetResult": _MEMBER,
            "GetLabelRequests": _MEMBER,
            "AnswerLabels": _MEMBER,
            "GetCheckpoint": _ANYONE,
            "GetConsistencyProof": _ANYONE,
            "GetInclusionProof": _ANYONE,
            "WatchAlerts": _MEMBER,
            "AckAlerts": _MEMBER,
        },
        request_limits={"UploadChunks": messages.CHUNK_REQUEST, "AnswerLabels": messages.LABELS_REQUEST},
    )


class Ticker:
    """Calls ``role.tick()`` every ``interval`` seconds on a daemon thread (deadlines, crash recovery)."""

    def __init__(self, role: CoordinatorRole, interval: float = TICK_SECONDS) -> None:
        self.role, self.interval = role, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="coordinator-ticker", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.role.tick()
            except Exception:
                log.exception("coordinator tick failed")

    def __enter__(self) -> Ticker:
        self.role.tick()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
