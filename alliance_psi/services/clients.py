"""Clients of the custodians and the coordinator, with retries and clear failures.

Transient failures (UNAVAILABLE, DEADLINE_EXCEEDED) are retried with exponential backoff; a peer
that stays down becomes ``PeerUnavailable`` naming it, after a bounded time, never a hang. Every
other status comes back as the typed error of ``services.status``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from typing import Self, TypeVar

import grpc

from alliance_psi.config import TlsMaterial
from alliance_psi.errors import PeerUnavailable
from alliance_psi.protocol import messages
from alliance_psi.protocol._pb import coordinator_pb2_grpc, custodian_pb2_grpc
from alliance_psi.protocol.coordinator import Chunk, Commit, RoundSpec
from alliance_psi.protocol.custodian import EpochStatus
from alliance_psi.protocol.messages import pb_coordinator, pb_custodian
from alliance_psi.protocol.model import Round, RoundState, SubmissionStatus
from alliance_psi.services.status import from_rpc_error
from alliance_psi.services.tls import secure_channel

__all__ = ["CoordinatorClient", "CustodianChain", "CustodianClient", "RetryPolicy"]

T = TypeVar("T")
_TRANSIENT = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}


class RetryPolicy:
    """``attempts`` tries with ``base * 4**n`` seconds between them, each call bounded by ``timeout``."""

    def __init__(self, attempts: int = 4, base: float = 0.2, timeout: float = 60.0) -> None:
        self.attempts, self.base, self.timeout = attempts, base, timeout

    def call(self, peer: str, fn: Callable[[float], T]) -> T:
        last: grpc.RpcError | None = None
        for attempt in range(self.attempts):
            try:
                return fn(self.timeout)
            except grpc.RpcError as err:
                if err.code() not in _TRANSIENT:
                    raise from_rpc_error(err, peer=peer) from None
                last = err
                if attempt + 1 < self.attempts:
                    time.sleep(self.base * 4**attempt)
        detail = last.details() if last is not None else ""
        raise PeerUnavailable(f"{peer} is unreachable after {self.attempts} attempts: {detail}")


class _Client:
    def __init__(self, target: str, tls: TlsMaterial, retry: RetryPolicy | None = None, *, what: str) -> None:
        self.target, self.peer = target, f"{what} at {target}"
        self.retry = retry or RetryPolicy()
        self.channel = secure_channel(target, tls)

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class CustodianClient(_Client):
    def __init__(self, target: str, tls: TlsMaterial, retry: RetryPolicy | None = None) -> None:
        super().__init__(target, tls, retry, what="custodian")
        self.stub = custodian_pb2_grpc.OprfEvaluatorStub(self.channel)

    def epoch(self) -> EpochStatus:
        return messages.epoch_from_pb(
            self.retry.call(self.peer, lambda t: self.stub.GetEpoch(pb_custodian.GetEpochRequest(), timeout=t))
        )

    def evaluate(self, key_epoch: str, elements: Sequence[bytes]) -> list[bytes]:
        request = messages.evaluate_request(key_epoch, elements)
        response = self.retry.call(self.peer, lambda t: self.stub.Evaluate(request, timeout=t))
        return list(response.elements)


class CustodianChain:
    """Evaluates blinded elements through every custodian in turn (docs/design.md, protocol step 3)."""

    def __init__(self, clients: Sequence[CustodianClient], key_epoch: str) -> None:
        self.clients, self.key_epoch = list(clients), key_epoch

    def __call__(self, elements: Sequence[bytes]) -> list[bytes]:
        current = list(elements)
        for client in self.clients:
            current = client.evaluate(self.key_epoch, current)
        return current

    def close(self) -> None:
        for client in self.clients:
            client.close()


class CoordinatorClient(_Client):
    def __init__(self, target: str, tls: TlsMaterial, retry: RetryPolicy | None = None) -> None:
        super().__init__(target, tls, retry, what="coordinator")
        self.stub = coordinator_pb2_grpc.CoordinatorStub(self.channel)

    def create_round(self, spec: RoundSpec) -> Round:
        request = messages.round_spec_to_pb(spec)
        return messages.round_from_pb(self.retry.call(self.peer, lambda t: self.stub.CreateRound(request, timeout=t)))[
            0
        ]

    def close_round(self, round_id: str, reason: str = "") -> Round:
        request = pb_coordinator.CloseRoundRequest(round_id=round_id, reason=reason)
        return messages.round_from_pb(self.retry.call(self.peer, lambda t: self.stub.CloseRound(request, timeout=t)))[0]

    def get_round(self, round_id: str) -> tuple[Round, int]:
        request = pb_coordinator.GetRoundRequest(round_id=round_id)
        return messages.round_from_pb(self.retry.call(self.peer, lambda t: self.stub.GetRound(request, timeout=t)))

    def list_rounds(self, state: RoundState | None = None) -> list[tuple[Round, int]]:
        request = pb_coordinator.ListRoundsRequest(state=state.value if state else "")
        response = self.retry.call(self.peer, lambda t: self.stub.ListRounds(request, timeout=t))
        return [messages.round_from_pb(r) for r in response.rounds]

    def upload_chunks(self, chunks: Iterable[Chunk]) -> tuple[int, int]:
        """Stream chunks; return (stored, already stored). Not retried: the caller resumes from status."""
        try:
            summary = self.stub.UploadChunks((messages.chunk_to_pb(c) for c in chunks), timeout=self.retry.timeout * 10)
        except grpc.RpcError as err:
            raise from_rpc_error(err, peer=self.peer) from None
        return summary.chunks_stored, summary.chunks_already_stored

    def submission_status(self, round_id: str, member_id: str) -> SubmissionStatus:
        request = pb_coordinator.GetSubmissionRequest(round_id=round_id)
        return messages.status_from_pb(
            self.retry.call(self.peer, lambda t: self.stub.GetSubmission(request, timeout=t)), member_id
        )

    def commit(self, commit: Commit, member_id: str) -> SubmissionStatus:
        request = messages.commit_to_pb(commit)
        return messages.status_from_pb(
            self.retry.call(self.peer, lambda t: self.stub.CommitSubmission(request, timeout=t)), member_id
        )

    def get_result(self, round_id: str) -> tuple[bytes, bytes]:
        request = pb_coordinator.GetResultRequest(round_id=round_id)
        response = self.retry.call(self.peer, lambda t: self.stub.GetResult(request, timeout=t))
        return response.payload, response.signature
