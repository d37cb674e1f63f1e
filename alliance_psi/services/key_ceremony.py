"""The key ceremony over the custodians' mutual TLS: the ``KeyCeremony`` server, the couriers that
deliver this custodian's messages to its peers, and ``run_ceremony``, which drives the rounds.

Who may deliver: the server admits only certificates of role ``custodian`` (the method policy),
whose key is the one this custodian's operator enrolled for that name (``custodian peer add``:
``services.enrolment``, run by the identity interceptor) and whose name is one of the ceremony's
custodians; all of that is checked before the request is decoded. The caller's name comes from
its certificate, never from a field. A custodian with a CA of its own (``--peer …,ca=FILE``) is
reached through that CA only, and its client certificate is accepted because that CA is added to
the ceremony server's client roots; its enrolled key still decides.

Private shares travel only inside the round-1 envelope to their one receiver, sealed with HPKE to
the key this custodian's operator enrolled for that receiver (``CertificateCredentials.seal_share``,
``crypto.sealed_shares``), never to a key the connection presents. The courier's handshake checks
only that the server's certificate is from the alliance CA (or the peer's own CA) and names the
receiver, which the CA holder can forge; what it would receive, it cannot open.

Bounds: a request is at most ``messages.CEREMONY_REQUEST``; every round waits at most
``round_seconds`` (the first, while the custodians start, until ``deadline``), and the whole
ceremony ends by ``deadline``, after which the server stops.
"""

from __future__ import annotations

import hmac
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime

import grpc
from sqlalchemy import Engine

from alliance_psi import defaults
from alliance_psi.config import PeerEndpoint, ServerLimits, TlsMaterial
from alliance_psi.crypto.pedersen import PedersenShare
from alliance_psi.crypto.sealed_shares import ReceiverKey, ShareContext, seal_share
from alliance_psi.crypto.signing import CertificateKey, verify_ecdsa
from alliance_psi.errors import (
    CeremonyFailed,
    ConfigurationError,
    InvalidSignature,
    NotAuthenticated,
    NotAuthorized,
)
from alliance_psi.protocol import messages
from alliance_psi.protocol._pb import key_ceremony_pb2_grpc
from alliance_psi.protocol.ceremony import (
    SIGNING_CONTEXT,
    CeremonyPlan,
    CeremonyResult,
    KeyCeremony,
    Signed,
    Stage,
)
from alliance_psi.protocol.messages import pb_ceremony
from alliance_psi.protocol.model import Identity, Role
from alliance_psi.services.anchors import TrustAnchor, load_anchor
from alliance_psi.services.enrolment import EnrolmentRoster
from alliance_psi.services.interceptors import Peer, PeerCheck, peer_of
from alliance_psi.services.pki import identity_from_pem, spki_der, spki_sha256
from alliance_psi.services.refusals import AuditWriter
from alliance_psi.services.server import Registration, guarded, run_server
from alliance_psi.services.status import from_rpc_error
from alliance_psi.services.tls import secure_channel
from alliance_psi.storage import AuditLog

__all__ = [
    "CertificateCredentials",
    "CeremonyTimes",
    "KeyCeremonyServicer",
    "ceremony_registration",
    "claim_run",
    "run_ceremony",
]

log = logging.getLogger(__name__)

CLAIM_ACTION = "key-ceremony.dealt"
"""The audit-log entry a custodian writes before it deals in a ceremony's run (its session)."""


def claim_run(engine: Engine, plan: CeremonyPlan, name: str) -> None:
    """Record in this custodian's audit log that it deals in ``plan``'s run, before it deals.

    Security: an honest custodian then deals once per session (per epoch, threshold, custodians
    and attempt), so two different round-1 messages signed by one custodian in one session are
    proof that it equivocated, never a replay of an earlier run (a relay cannot frame it). The
    record lives in the custodian's database: a custodian whose database is replaced loses it.

    Raises:
        ConfigurationError: this custodian dealt in this run before, naming when and the next
            ``--attempt`` to run every custodian with.
    """
    session = plan.session.hex()
    with engine.begin() as conn:
        audit = AuditLog(conn)
        earlier = [e for e in audit.of_action(CLAIM_ACTION) if e.detail.get("session") == session]
        if earlier:
            at = earlier[0].at if earlier[0].at.tzinfo is None else earlier[0].at.astimezone(UTC)  # Stored in UTC.
            raise ConfigurationError(
                f"custodian {name} already took part in this ceremony ({plan.describe()}) at "
                f"{at:%Y-%m-%d %H:%M:%S} UTC: a second run of the same attempt would let a "
                f"peer replay the first run's messages to have a custodian disqualified. Run every custodian with "
                f"--attempt {plan.attempt + 1}"
            )
        audit.append(
            actor="operator",
            action=CLAIM_ACTION,
            at=datetime.now(UTC),
            detail={
                "key_epoch": plan.epoch,
                "attempt": plan.attempt,
                "threshold": plan.threshold,
                "custodians": list(plan.custodians),
                "session": session,
            },
        )


SERVICE = "alliance_psi.v1.KeyCeremony"
_CUSTODIANS = frozenset({Role.CUSTODIAN})
_TRANSIENT = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}
_CALL_SECONDS = 10.0
# Peers start within seconds of each other: reconnect every second at most, not after gRPC's
# default backoff (up to two minutes), which would hold a started ceremony back for nothing.
_RECONNECT = (
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
)


class CertificateCredentials:
    """``protocol.ceremony.CeremonyCredentials`` over certificates: this custodian signs with its TLS
    certificate key; a peer's signature counts only with a certificate of role ``custodian`` whose
    key is the one enrolled for its name here (this custodian's own, for its own messages). Shares
    are sealed to the public key enrolled here for their receiver, and opened with the TLS key."""

    def __init__(self, tls: TlsMaterial, roster: EnrolmentRoster) -> None:
        self._key = CertificateKey.from_pem(tls.key)
        self._receiver = ReceiverKey.from_pem(tls.key)
        self._cert = tls.cert
        self._own = identity_from_pem(tls.cert)
        self._own_pin = spki_sha256(tls.cert)
        self._roster = roster

    def sign(self, payload: bytes) -> Signed:
        return Signed(payload, self._key.sign(SIGNING_CONTEXT, payload), self._cert)

    def signer_of(self, signed: Signed) -> str:
        try:
            identity, pin = identity_from_pem(signed.certificate), spki_sha256(signed.certificate)
        except NotAuthenticated as exc:
            raise InvalidSignature(f"the signer's certificate is not usable: {exc}") from None
        if identity.role is not Role.CUSTODIAN:
            raise InvalidSignature(f"signed by a {identity.role.value}, not a custodian")
        if identity == self._own:
            enrolled: bytes | None = self._own_pin
        else:
            entry = self._roster.find(Role.CUSTODIAN, identity.name)
            enrolled = entry.key_pin if entry is not None else None
        if enrolled is None or enrolled != pin:
            raise InvalidSignature(f"the certificate of {identity.name} does not carry its enrolled key")
        verify_ecdsa(spki_der(signed.certificate), SIGNING_CONTEXT, signed.payload, signed.signature)
        return identity.name

    def seal_share(self, share: PedersenShare, context: ShareContext) -> bytes:
        entry = self._roster.find(Role.CUSTODIAN, context.receiver)
        if entry is None or entry.public_key is None:
            raise ConfigurationError(
                f"no public key of custodian {context.receiver} is enrolled here to seal its share to: enrol its "
                "certificate (again) with `alliance-psi custodian peer add --cert`"
            )
        return seal_share(share, entry.public_key, context)

    def open_share(self, sealed: bytes, context: ShareContext) -> PedersenShare:
        return self._receiver.open_share(sealed, context)


class KeyCeremonyServicer(key_ceremony_pb2_grpc.KeyCeremonyServicer):
    def __init__(self, ceremony: KeyCeremony) -> None:
        self.ceremony = ceremony

    def Deliver(
        self, request: pb_ceremony.CeremonyEnvelope, context: grpc.ServicerContext
    ) -> pb_ceremony.CeremonyReceipt:
        with guarded(context):
            peer = peer_of(context)
            # The signer must be the caller with the very key of its connection (enrolled, checked
            # by the interceptor), not only a custodian of the same name.
            if not hmac.compare_digest(_pin_of(request.message.certificate), peer.spki_sha256):
                raise NotAuthenticated("the message is signed with another key than the caller's certificate")
            stage = self.ceremony.deliver(peer.identity.name, messages.ceremony_envelope_from_pb(request))
            return pb_ceremony.CeremonyReceipt(round=stage.value)


def _pin_of(certificate: bytes) -> bytes:
    try:
        return spki_sha256(certificate)
    except NotAuthenticated:
        return b""


def ceremony_registration(ceremony: KeyCeremony) -> Registration:
    return Registration(
        key_ceremony_pb2_grpc.add_KeyCeremonyServicer_to_server,
        KeyCeremonyServicer(ceremony),
        SERVICE,
        {"Deliver": _CUSTODIANS},
        request_limits={"Deliver": messages.CEREMONY_REQUEST},
    )


def plan_check(plan: CeremonyPlan) -> PeerCheck:
    """A ``PeerCheck`` admitting only custodians named in ``plan`` (before any request is decoded)."""

    def check(peer: Peer, method: str) -> None:
        if peer.identity.role is Role.CUSTODIAN and peer.identity.name not in plan.custodians:
            raise NotAuthorized(f"custodian {peer.identity.name} is not in this ceremony ({plan.describe()})")

    return check


@dataclass(frozen=True, slots=True)
class CeremonyTimes:
    """How long the ceremony may take: ``total_seconds`` from the start (the custodians' operators
    start theirs within it), each round after the first at most ``round_seconds``."""

    total_seconds: float = defaults.CEREMONY_SECONDS
    round_seconds: float = defaults.CEREMONY_ROUND_SECONDS


class _Courier:
    """Delivers this custodian's envelopes to one peer, in order, retrying until the deadline."""

    def __init__(
        self,
        peer: PeerEndpoint,
        tls: TlsMaterial,
        anchor: TrustAnchor | None,
        deadline: float,
        fail: Callable[[str], None],
    ) -> None:
        self.peer, self._deadline, self._fail = peer, deadline, fail
        server = Identity(name=peer.name, role=Role.CUSTODIAN)
        self._channel = secure_channel(peer.address, tls, server=server, anchor=anchor, options=_RECONNECT)
        self._stub = key_ceremony_pb2_grpc.KeyCeremonyStub(self._channel)
        self._queue: queue.Queue[pb_ceremony.CeremonyEnvelope | None] = queue.Queue()
        self.delivered: set[int] = set()
        self._abandoned = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"ceremony-courier-{peer.name}", daemon=True)
        self._thread.start()

    def send(self, envelope: pb_ceremony.CeremonyEnvelope) -> None:
        self._queue.put(envelope)

    def _run(self) -> None:
        while (envelope := self._queue.get()) is not None:
            if not self._deliver(envelope):
                return

    def _deliver(self, envelope: pb_ceremony.CeremonyEnvelope) -> bool:
        pause = 0.1
        while True:
            left = self._deadline - time.monotonic()
            if left <= 0 or self._abandoned.is_set():
                return False
            try:
                receipt = self._stub.Deliver(envelope, timeout=min(_CALL_SECONDS, left), wait_for_ready=False)
            except ValueError:
                return False  # The channel was closed: the ceremony is over (``close``).
            except grpc.RpcError as err:
                if err.code() in _TRANSIENT:
                    self._abandoned.wait(min(pause, max(0.0, self._deadline - time.monotonic())))
                    pause = min(pause * 2, 2.0)
                    continue
                typed = from_rpc_error(err, peer=f"custodian {self.peer.name} at {self.peer.address}")
                self._fail(f"our message was refused by {typed}")
                return False
            self.delivered.add(receipt.round)
            return True

    def close(self, until: float, *, abandon: bool = False) -> None:
        """Finish delivering what is queued (until ``until``; nothing more if ``abandon``: the
        ceremony failed), then close the channel."""
        if abandon:
            self._abandoned.set()
        self._queue.put(None)
        self._thread.join(timeout=max(0.0, until - time.monotonic()))
        self._channel.close()


_DEFAULT_TIMES = CeremonyTimes()
_DEFAULT_LIMITS = ServerLimits()


def _anchors(peers: Sequence[PeerEndpoint], alliance_ca: bytes) -> dict[str, TrustAnchor | None]:
    return {p.name: load_anchor(p.ca, custodian=p.name, alliance_ca=alliance_ca) if p.ca else None for p in peers}


def run_ceremony(
    ceremony: KeyCeremony,
    *,
    listen: str,
    tls: TlsMaterial,
    peers: Sequence[PeerEndpoint],
    checks: Sequence[PeerCheck],
    times: CeremonyTimes = _DEFAULT_TIMES,
    limits: ServerLimits = _DEFAULT_LIMITS,
    started: Callable[[int], None] = lambda port: None,
    progress: Callable[[str], None] = lambda text: None,
    audit: AuditWriter | None = None,
) -> CeremonyResult:
    """Serve ``ceremony`` on ``listen`` and run its rounds with ``peers`` (every other custodian of
    its plan); return this custodian's result.

    ``checks`` are the server's admission rules (its enrolment check); the plan's own check is
    added; ``audit`` receives refused calls (``services.refusals.sql_audit_writer``). The server
    stops when this returns or raises.

    Raises:
        ConfigurationError: ``peers`` do not name exactly the plan's other custodians, a pinned CA
            file is wrong, or ``listen`` cannot be bound.
        CeremonyFailed: a custodian missing at a round's end, refusing our messages, or views that
            differ; no share results.
    """
    plan = ceremony.plan
    others = sorted(set(plan.custodians) - {ceremony.name})
    if sorted(p.name for p in peers) != others:
        raise ConfigurationError(
            f"--peer must name each other custodian of the ceremony once ({', '.join(others)}); "
            f"got {', '.join(sorted(p.name for p in peers)) or 'none'}"
        )
    anchors = _anchors(peers, tls.ca_cert)
    # Peers with a CA of their own present client certificates of that CA: trust it for clients too
    # (their enrolled keys still decide who gets in).
    roots = tls.ca_cert + b"".join(a.cert_pem for a in anchors.values() if a is not None)
    server_tls = replace(tls, ca_cert=roots)
    start = time.monotonic()
    deadline = start + times.total_seconds
    failure: list[str] = []

    def fail(reason: str) -> None:
        failure.append(reason)
        ceremony.fail(reason)

    with run_server(
        [ceremony_registration(ceremony)],
        address=listen,
        tls=server_tls,
        checks=[*checks, plan_check(plan)],
        limits=limits,
        audit=audit,
    ) as port:
        started(port)
        couriers = {p.name: _Courier(p, tls, anchors[p.name], deadline, fail) for p in peers}
        finished = False
        try:
            for stage in Stage:
                for name, envelope in ceremony.message(stage).items():
                    couriers[name].send(messages.ceremony_envelope_to_pb(envelope))
                round_end = deadline if stage is Stage.DEAL else min(deadline, time.monotonic() + times.round_seconds)
                ceremony.wait(stage, round_end)
                ceremony.conclude(stage)
                progress(f"round {stage.value} ({stage.name.lower()}) done at {time.monotonic() - start:.1f} s")
            finished = True
        finally:
            # Peers still need our last messages: deliver what is queued, within the deadline
            # (after a failure, nothing: they fail on their own).
            for courier in couriers.values():
                courier.close(until=min(deadline, time.monotonic() + times.round_seconds), abandon=not finished)
        if failure:
            raise CeremonyFailed(failure[0])
        unconfirmed = sorted(name for name, c in couriers.items() if Stage.CONFIRM.value not in c.delivered)
    result = ceremony.result()
    if unconfirmed:
        note = f"our confirmation may not have reached {', '.join(unconfirmed)} (they finish or fail on their own)"
        result = replace(result, notes=(*result.notes, note))
    return result
