"""Clients of the custodians and the coordinator, with retries and failures that say what to fix.

Each client is built for one named server (``custodian-1``, ``coordinator``) and its channel
accepts only that server's certificate (``services.tls``): another custodian, the coordinator at
a custodian's address, or a member's certificate is refused by the handshake. A custodian
configured with its own CA (``PeerEndpoint.ca``, ``services.anchors``) is accepted only with a
certificate of that CA: one the alliance CA issued under its name is refused.

Transient failures (UNAVAILABLE, DEADLINE_EXCEEDED) are retried with exponential backoff. After
each, ``services.tls_diagnosis`` looks at what answers at the address: a certificate that is not
the configured server's fails at once as ``HandshakeFailed`` naming the cause and the fix (another
party, another CA, expired, for clients only); a peer that stays down becomes ``PeerUnavailable``
saying why (connection refused, timeout), after a bounded time, never a hang. A server that
refuses our certificate as revoked says so, and the error says to ask for a new one. Every other
status comes back as the typed error of ``services.status``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator, Iterable, Sequence
from typing import Any, Self, TypeVar

import grpc

from alliance_psi.config import PeerEndpoint, TlsMaterial
from alliance_psi.crypto.threshold_keys import PublicEpoch
from alliance_psi.defaults import COORDINATOR_NAME
from alliance_psi.errors import (
    AlliancePsiError,
    CertificateRevoked,
    ConfigurationError,
    HandshakeFailed,
    PeerUnavailable,
    ServerBusy,
)
from alliance_psi.protocol import messages
from alliance_psi.protocol._pb import coordinator_pb2_grpc, custodian_pb2_grpc
from alliance_psi.protocol.alerts import AlertBatch
from alliance_psi.protocol.checkpoints import SignedCheckpoint, SignedStatement
from alliance_psi.protocol.coordinator import Chunk, Commit, RoundSpec
from alliance_psi.protocol.custodian import EpochStatus, Evaluation
from alliance_psi.protocol.messages import pb_coordinator, pb_custodian
from alliance_psi.protocol.model import Identity, Role, Round, RoundKind, RoundState, SubmissionStatus
from alliance_psi.protocol.result_codec import LeafPage, SignedResultHeader
from alliance_psi.protocol.threshold_evaluator import ThresholdEvaluator, VerifyMode
from alliance_psi.services.anchors import TrustAnchor, load_anchor
from alliance_psi.services.cert_checks import party_label
from alliance_psi.services.replicas import REPLICA_OPTIONS, replica_target
from alliance_psi.services.status import from_rpc_error
from alliance_psi.services.tls import secure_channel
from alliance_psi.services.tls_diagnosis import DIAGNOSIS_TIMEOUT, Diagnosis, diagnose

__all__ = [
    "CoordinatorClient",
    "CustodianChain",
    "CustodianClient",
    "RetryPolicy",
    "ThresholdCustodians",
    "custodian_clients",
    "custodian_evaluator",
]

T = TypeVar("T")
_TRANSIENT = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}


class RetryPolicy:
    """``attempts`` tries with ``base * 4**n`` seconds between them, each call bounded by ``timeout``.

    Retried: an unreachable peer, a deadline, and a server's refusal for its admission limits
    (``ServerBusy``: calls per second or in progress), which did nothing; every other refusal is
    final at once.
    """

    def __init__(self, attempts: int = 4, base: float = 0.2, timeout: float = 60.0) -> None:
        self.attempts, self.base, self.timeout = attempts, base, timeout

    def call(self, peer: str, fn: Callable[[float], T], *, explain: Callable[[], Diagnosis | None] | None = None) -> T:
        """Call ``fn(timeout)``, retrying transient failures; ``explain`` says why one happened.

        Raises:
            HandshakeFailed: ``explain`` found a lasting cause (the server's certificate).
            PeerUnavailable: still failing after ``attempts``, with the last cause found.
            ServerBusy: still refused for the server's admission limits after ``attempts``.
            AlliancePsiError: the typed error of any other status (``services.status``).
        """
        last: grpc.RpcError | None = None
        diagnosis: Diagnosis | None = None
        for attempt in range(self.attempts):
            try:
                return fn(self.timeout)
            except grpc.RpcError as err:
                if err.code() not in _TRANSIENT:
                    typed = _typed_error(err, peer)
                    if not isinstance(typed, ServerBusy) or attempt + 1 == self.attempts:
                        raise typed from None
                    time.sleep(self.base * 4**attempt)  # Its admission limits: nothing was done.
                    continue
                last = err
                diagnosis = explain() if explain is not None else None
                if diagnosis is not None and diagnosis.lasting:
                    raise HandshakeFailed(f"cannot trust {peer}: {diagnosis.cause}") from None
                if attempt + 1 < self.attempts:
                    time.sleep(self.base * 4**attempt)
        if diagnosis is not None:
            cause = diagnosis.cause
        else:
            cause = (last.details() or "") if last is not None else ""
            if explain is not None:
                cause = (
                    "its certificate checks out, yet the connection failed: it may refuse ours (it must trust the "
                    f"alliance's ca.pem) or be restarting; gRPC said: {cause}"
                )
        attempts = f"{self.attempts} attempt" + ("s" if self.attempts > 1 else "")
        raise PeerUnavailable(f"{peer} is unreachable after {attempts}: {cause}")


def _typed_error(err: grpc.RpcError, peer: str) -> AlliancePsiError:
    """The typed error of a non-transient status; a revoked certificate of ours says what to do."""
    typed = from_rpc_error(err, peer=peer)
    if isinstance(typed, CertificateRevoked):
        return CertificateRevoked(
            f"{peer} refused our certificate: the alliance CA revoked it; "
            "ask the alliance operator for a new certificate (alliance-psi pki issue)"
        )
    return typed


class _Client:
    def __init__(
        self,
        target: str,
        tls: TlsMaterial,
        retry: RetryPolicy | None,
        *,
        server: Identity,
        anchor: TrustAnchor | None,
        replicas: Sequence[str] = (),
        round_robin: bool = False,
    ) -> None:
        # With replicas, one channel over every address, calls round-robin (``services.replicas``);
        # with ``round_robin``, over every address the target's name resolves to as well; a failure
        # is explained at the first address.
        shown = ", ".join((target, *replicas))
        self.target, self.server, self.peer = target, server, f"{party_label(server)} at {shown}"
        self.retry = retry or RetryPolicy()
        options = REPLICA_OPTIONS if replicas or round_robin else ()
        channel_target = replica_target((target, *replicas))
        self.channel = secure_channel(channel_target, tls, server=server, anchor=anchor, options=options)
        self._tls, self._anchor = tls, anchor

    def _call(self, fn: Callable[[float], T]) -> T:
        """``fn(timeout)`` under the retry policy, with failures explained."""
        return self.retry.call(self.peer, fn, explain=self.explain)

    def _failed(self, err: grpc.RpcError) -> AlliancePsiError:
        """The error of a call that is not retried (a stream); a transient failure is explained too."""
        if err.code() in _TRANSIENT:
            diagnosis = self.explain()
            if diagnosis is not None and diagnosis.lasting:
                return HandshakeFailed(f"cannot trust {self.peer}: {diagnosis.cause}")
        return _typed_error(err, self.peer)

    def _streamed(self, stream: Any, convert: Callable[[Any], T]) -> Generator[T, None, None]:
        """A server stream's messages, converted, as they arrive; its failure as a typed error;
        the call cancelled when the generator is closed."""
        try:
            for message in stream:
                yield convert(message)
        except grpc.RpcError as err:
            raise self._failed(err) from None
        finally:
            stream.cancel()

    def check_serving(self, timeout: float) -> None:
        """Ask the server's gRPC health service once, no retry, within ``timeout`` seconds: what a
        readiness probe asks (``services.readiness``). It crosses mutual TLS like any call, so an
        answer also means this client's certificate is still accepted.

        Raises:
            PeerUnavailable: no answer, or an answer other than SERVING; the message names the
                server and the gRPC status only.
        """
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        try:
            answer = health_pb2_grpc.HealthStub(self.channel).Check(health_pb2.HealthCheckRequest(), timeout=timeout)
        except grpc.RpcError as err:
            raise PeerUnavailable(f"{self.peer} does not answer ({err.code().name})") from None
        if answer.status != health_pb2.HealthCheckResponse.SERVING:
            raise PeerUnavailable(f"{self.peer} is not serving")

    def explain(self) -> Diagnosis | None:
        """What is wrong with the server at this client's address, if anything (after a failure)."""
        timeout = min(self.retry.timeout, DIAGNOSIS_TIMEOUT)
        return diagnose(self.target, server=self.server, tls=self._tls, anchor=self._anchor, timeout=timeout)

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class CustodianClient(_Client):
    """A client of custodian ``name`` at ``target``: no other party's certificate is accepted.

    With ``anchor`` (the custodian's own CA) only a certificate of that CA is: not one the
    alliance CA issued under the same name. Calls go round-robin over every address ``target``'s
    name resolves to (several replicas behind one DNS name, a Kubernetes headless Service) and
    over ``replicas``, more addresses of the same custodian (``services.replicas``).
    """

    def __init__(
        self,
        target: str,
        tls: TlsMaterial,
        retry: RetryPolicy | None = None,
        *,
        name: str,
        anchor: TrustAnchor | None = None,
        replicas: Sequence[str] = (),
    ) -> None:
        super().__init__(
            target,
            tls,
            retry,
            server=Identity(name=name, role=Role.CUSTODIAN),
            anchor=anchor,
            replicas=replicas,
            round_robin=True,
        )
        self.name = name
        self.stub = custodian_pb2_grpc.OprfEvaluatorStub(self.channel)

    def epoch(self) -> EpochStatus:
        return messages.epoch_from_pb(
            self._call(lambda t: self.stub.GetEpoch(pb_custodian.GetEpochRequest(), timeout=t))
        )

    def evaluate(self, key_epoch: str, elements: Sequence[bytes]) -> list[bytes]:
        request = messages.evaluate_request(key_epoch, elements)
        response = self._call(lambda t: self.stub.Evaluate(request, timeout=t))
        return list(response.elements)

    def evaluate_folded(
        self, key_epoch: str, elements: Sequence[bytes], *, subset: Sequence[int], prove: bool = False
    ) -> Evaluation:
        """A threshold custodian's ``λ_i·k_i·B`` for ``subset``, with its DLEQ proof if ``prove``.

        The answer's elements are as received: the caller checks them (``deserialize_element``)
        and the proof. Raises what ``evaluate`` raises.
        """
        request = messages.evaluate_request(key_epoch, elements, subset=subset, prove=prove)
        response = self._call(lambda t: self.stub.Evaluate(request, timeout=t))
        return Evaluation(list(response.elements), response.used, response.proof)


def custodian_clients(
    custodians: Sequence[PeerEndpoint], tls: TlsMaterial, retry: RetryPolicy | None = None
) -> list[CustodianClient]:
    """Clients of ``custodians``, in order, each trusting its own CA (``PeerEndpoint.ca``) if it has one.

    Every pinned CA is read and checked before any client is made, so a bad file fails at start-up.

    Raises:
        ConfigurationError: a pinned CA file is wrong (``services.anchors.load_anchor``).
    """
    anchors = [
        load_anchor(c.ca, custodian=c.name, alliance_ca=tls.ca_cert) if c.ca is not None else None for c in custodians
    ]
    return [
        CustodianClient(c.address, tls, retry, name=c.name, anchor=anchor, replicas=c.replicas)
        for c, anchor in zip(custodians, anchors, strict=True)
    ]


class CustodianChain:
    """The custodians, evaluating blinded elements each in turn (docs/design.md, protocol step 3).

    The member role's ``Evaluator``: the key epoch is named on every call, so one chain serves
    a round of any epoch and nothing about it changes after construction.
    """

    def __init__(self, clients: Sequence[CustodianClient]) -> None:
        self.clients = tuple(clients)

    def key_epochs(self) -> list[str]:
        """The key epoch each custodian serves now, in order (one call to each)."""
        return [client.epoch().key_epoch for client in self.clients]

    def evaluate(self, key_epoch: str, elements: Sequence[bytes]) -> list[bytes]:
        """``elements`` evaluated under ``key_epoch`` by every custodian in turn."""
        current = list(elements)
        for client in self.clients:
            current = client.evaluate(key_epoch, current)
        return current

    def close(self) -> None:
        for client in self.clients:
            client.close()


class ThresholdCustodians(ThresholdEvaluator):
    """``protocol.threshold_evaluator.ThresholdEvaluator`` over mTLS clients, which ``close`` closes."""

    def __init__(self, public: PublicEpoch, clients: Sequence[CustodianClient], **options: Any) -> None:
        super().__init__(public, clients, **options)
        self.clients = tuple(clients)

    def close(self) -> None:
        super().close()
        for client in self.clients:
            client.close()


# A threshold node tries each custodian fewer times than a chain node: it has others to turn to
# (0.2 s and 0.8 s apart, then it is marked down and another one is asked).
THRESHOLD_RETRY = RetryPolicy(attempts=3)


def custodian_evaluator(
    custodians: Sequence[PeerEndpoint],
    tls: TlsMaterial,
    *,
    public: PublicEpoch | None = None,
    verify: str = "sample",
    report: Callable[[str], None] | None = None,
    retry: RetryPolicy | None = None,
) -> CustodianChain | ThresholdCustodians:
    """The member's custodians: a chain in the order given, or with ``public`` any ``τ`` of them at once.

    Raises:
        ConfigurationError: a pinned CA file is wrong, ``verify`` is not a mode, or (threshold) a
            custodian the epoch file does not name, or fewer than ``τ`` of them.
    """
    if public is None:
        return CustodianChain(custodian_clients(custodians, tls, retry))
    try:
        mode = VerifyMode(verify)
    except ValueError:
        raise ConfigurationError(f"verify must be sample or proof, not {verify!r}") from None
    clients = custodian_clients(custodians, tls, retry or THRESHOLD_RETRY)
    try:
        return ThresholdCustodians(public, clients, verify=mode, **({"report": report} if report else {}))
    except ConfigurationError:
        for client in clients:
            client.close()
        raise


class CoordinatorClient(_Client):
    """A client of the coordinator ``name`` (``coordinator`` unless its certificate says otherwise)."""

    def __init__(
        self, target: str, tls: TlsMaterial, retry: RetryPolicy | None = None, *, name: str = COORDINATOR_NAME
    ) -> None:
        super().__init__(target, tls, retry, server=Identity(name=name, role=Role.COORDINATOR), anchor=None)
        self.stub = coordinator_pb2_grpc.CoordinatorStub(self.channel)

    def create_round(self, spec: RoundSpec) -> Round:
        request = messages.round_spec_to_pb(spec)
        return messages.round_from_pb(self._call(lambda t: self.stub.CreateRound(request, timeout=t)))[0]

    def close_round(self, round_id: str, reason: str = "") -> Round:
        request = pb_coordinator.CloseRoundRequest(round_id=round_id, reason=reason)
        return messages.round_from_pb(self._call(lambda t: self.stub.CloseRound(request, timeout=t)))[0]

    def get_round(self, round_id: str) -> tuple[Round, int]:
        request = pb_coordinator.GetRoundRequest(round_id=round_id)
        return messages.round_from_pb(self._call(lambda t: self.stub.GetRound(request, timeout=t)))

    def list_rounds(self, state: RoundState | None = None, kind: RoundKind | None = None) -> list[tuple[Round, int]]:
        """Rounds in ``state`` of ``kind`` (None: any), as the caller may see them."""
        request = pb_coordinator.ListRoundsRequest(state=state.value if state else "", kind=kind.value if kind else "")
        response = self._call(lambda t: self.stub.ListRounds(request, timeout=t))
        return [messages.round_from_pb(r) for r in response.rounds]

    def upload_chunks(self, chunks: Iterable[Chunk]) -> tuple[int, int]:
        """Stream chunks; return (stored, already stored). Not retried: the caller resumes from status."""
        try:
            summary = self.stub.UploadChunks((messages.chunk_to_pb(c) for c in chunks), timeout=self.retry.timeout * 10)
        except grpc.RpcError as err:
            raise self._failed(err) from None
        return summary.chunks_stored, summary.chunks_already_stored

    def submission_status(self, round_id: str, member_id: str) -> SubmissionStatus:
        request = pb_coordinator.GetSubmissionRequest(round_id=round_id)
        return messages.status_from_pb(self._call(lambda t: self.stub.GetSubmission(request, timeout=t)), member_id)

    def commit(self, commit: Commit, member_id: str) -> SubmissionStatus:
        request = messages.commit_to_pb(commit)
        return messages.status_from_pb(self._call(lambda t: self.stub.CommitSubmission(request, timeout=t)), member_id)

    def get_result(self, round_id: str) -> Generator[SignedResultHeader | LeafPage, None, None]:
        """Stream the caller's result: its signed header, then its pages in order.

        Not retried (a broken stream is fetched again from the start); each message arrives as
        it is read. Raises the typed error of the status, ``NotFound`` before matching.
        """
        request = pb_coordinator.GetResultRequest(round_id=round_id)
        yield from self._streamed(
            self.stub.GetResult(request, timeout=self.retry.timeout * 10), messages.result_part_from_pb
        )

    def label_requests(self, round_id: str, *, after: bytes = b"", limit: int = 0) -> list[bytes]:
        """A page of the caller's matched tokens whose labels the round asks for (empty: none left)."""
        request = pb_coordinator.GetLabelRequestsRequest(round_id=round_id, after=after, limit=limit)
        return list(self._call(lambda t: self.stub.GetLabelRequests(request, timeout=t)).match_tokens)

    def answer_labels(self, round_id: str, items: Sequence[tuple[bytes, bytes | None]]) -> bool:
        """Send the caller's sealed labels for asked tokens; return whether it has answered every one
        asked of it. Retried safely: answering a token again with the same label changes nothing."""
        request = messages.answer_labels_to_pb(round_id, items)
        return bool(self._call(lambda t: self.stub.AnswerLabels(request, timeout=t)).all_answered)

    def checkpoint(self) -> SignedCheckpoint:
        """The audit log's signed head now."""
        request = pb_coordinator.GetCheckpointRequest()
        return messages.checkpoint_from_pb(self._call(lambda t: self.stub.GetCheckpoint(request, timeout=t)))

    def consistency(self, first: int, second: int) -> SignedStatement:
        """The coordinator's signed statement that its log's first ``second`` entries extend its first ``first``."""
        request = pb_coordinator.GetConsistencyProofRequest(first_size=first, second_size=second)
        return messages.statement_from_pb(self._call(lambda t: self.stub.GetConsistencyProof(request, timeout=t)))

    def inclusion(self, index: int, tree_size: int) -> tuple[bytes, tuple[bytes, ...]]:
        """Audit-log entry ``index`` and its inclusion proof in the first ``tree_size`` entries."""
        request = pb_coordinator.GetInclusionProofRequest(index=index, tree_size=tree_size)
        return messages.inclusion_from_pb(self._call(lambda t: self.stub.GetInclusionProof(request, timeout=t)))

    # Continuous scopes: alerts -----------------------------------------------------------------

    def watch_alerts(
        self, scope_id: str = "", from_sequence: int = 0, *, timeout: float | None = None
    ) -> Generator[AlertBatch, None, None]:
        """Stream the caller's alerts (every scope, or ``scope_id``'s) from ``from_sequence`` (0: the
        first after its last acknowledgement), each batch as the coordinator sends it, heartbeats
        (batches without alerts) included. The stream lasts until ``timeout`` seconds (None: until
        closed or broken); close the generator to end it.

        Not retried: a broken stream raises the typed error of its status (``PeerUnavailable``
        for a coordinator that went away) and the caller watches again from the sequence after
        the last one it applied. Each alert is still to be checked with ``alerts.verify_alert``.
        Raises ``NotFound`` for a scope that does not exist or does not invite the caller, and
        ``InvalidRequest`` for a ``from_sequence`` at or below the acknowledged one or beyond
        the next to come.
        """
        request = pb_coordinator.WatchAlertsRequest(scope_id=scope_id, from_sequence=from_sequence)
        # The call starts now, not when the first batch is read.
        return self._streamed(self.stub.WatchAlerts(request, timeout=timeout), messages.alert_batch_from_pb)

    def ack_alerts(self, up_to_sequence: int) -> tuple[int, int]:
        """Acknowledge the caller's alerts up to ``up_to_sequence`` (in every scope): they are never
        sent again. Returns (acknowledged, head): the member's last acknowledged and last released
        sequence. Acknowledging less than before changes nothing (a retry is harmless);
        ``InvalidRequest`` beyond the last alert released."""
        request = pb_coordinator.AckAlertsRequest(up_to_sequence=up_to_sequence)
        response = self._call(lambda t: self.stub.AckAlerts(request, timeout=t))
        return response.acked_sequence, response.head_sequence
