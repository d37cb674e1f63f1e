"""The key ceremony over real mutual TLS on loopback: custodians as servers in threads of this
process, each with its own SQLite enrolment list; the CLI's processes are in
tests/integration/test_cli_keygen.py."""

from __future__ import annotations

import hashlib
import socket
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import grpc
import pytest

from alliance_psi.config import PeerEndpoint, TlsMaterial
from alliance_psi.crypto.dkg import Participant
from alliance_psi.crypto.pedersen import ORDER, PedersenShare, Polynomial, decode_scalar, encode_scalar, mul_base
from alliance_psi.crypto.sealed_shares import SEALED_SHARE_BYTES, ReceiverKey, ShareContext
from alliance_psi.errors import CeremonyFailed, InvalidSealedShare
from alliance_psi.protocol._pb import key_ceremony_pb2_grpc
from alliance_psi.protocol.ceremony import CeremonyPlan, CeremonyResult, Envelope, KeyCeremony, Stage
from alliance_psi.protocol.messages import CEREMONY_REQUEST, CeremonyCodec, ceremony_envelope_to_pb, pb_ceremony
from alliance_psi.protocol.model import Identity, Role
from alliance_psi.services import pki as pki_module
from alliance_psi.services.enrolment import enrol, enrolment_gate
from alliance_psi.services.key_ceremony import SERVICE, CeremonyTimes, CertificateCredentials, run_ceremony
from alliance_psi.services.server import Registration, run_server
from alliance_psi.services.tls import secure_channel
from tests.helpers.shamir import the_key as shared_key

from .conftest import AlliancePki
from .harness import sqlite_engine

NAMES = ("dkg-1", "dkg-2", "dkg-3")
TIMES = CeremonyTimes(total_seconds=60, round_seconds=20)


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


@pytest.fixture(scope="module")
def custodians(pki: AlliancePki) -> tuple[str, ...]:
    for name in NAMES:
        pki.issue(Role.CUSTODIAN, name)
    return NAMES


class Custodian:
    """One custodian of a ceremony: its enrolment database (the other custodians enrolled) and role.

    ``own`` holds the TLS material of custodians serving a certificate of their own CA."""

    def __init__(
        self,
        pki: AlliancePki,
        name: str,
        plan: CeremonyPlan,
        tmp_path: Path,
        cls: type[KeyCeremony],
        own: dict[str, TlsMaterial] | None = None,
    ) -> None:
        self.name, self.plan, own = name, plan, own or {}
        self.engine = sqlite_engine(tmp_path / f"{name}.db")
        for other in plan.custodians:
            if other != name:
                cert = own[other].cert if other in own else pki.issued[other].cert_pem
                enrol(self.engine, cert, role=Role.CUSTODIAN)
        self.roster, self.check = enrolment_gate(self.engine, server="custodian", roles=frozenset({Role.CUSTODIAN}))
        self.tls = own.get(name) or pki.material(name)
        self.role = cls(plan, name, CertificateCredentials(self.tls, self.roster), CeremonyCodec())
        self.outcome: CeremonyResult | Exception | None = None


def run_all(
    pki: AlliancePki,
    tmp_path: Path,
    plan: CeremonyPlan,
    *,
    roles: dict[str, type[KeyCeremony]] | None = None,
    times: CeremonyTimes = TIMES,
    own: dict[str, TlsMaterial] | None = None,
) -> dict[str, CeremonyResult | Exception]:
    own = own or {}
    parties = [Custodian(pki, n, plan, tmp_path, (roles or {}).get(n, KeyCeremony), own) for n in plan.custodians]
    ports = dict(zip(plan.custodians, free_ports(len(parties)), strict=True))
    anchors = {}
    for name, material in own.items():
        anchors[name] = tmp_path / f"{name}-ca.pem"
        anchors[name].write_bytes(material.own_ca or b"")

    def run(party: Custodian) -> None:
        peers = [
            PeerEndpoint(n, f"127.0.0.1:{ports[n]}", ca=anchors.get(n)) for n in plan.custodians if n != party.name
        ]
        try:
            party.outcome = run_ceremony(
                party.role,
                listen=f"127.0.0.1:{ports[party.name]}",
                tls=party.tls,
                peers=peers,
                checks=[party.check],
                times=times,
            )
        except Exception as exc:  # noqa: BLE001 - the test inspects it
            party.outcome = exc

    threads = [threading.Thread(target=run, args=(p,)) for p in parties]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert all(p.outcome is not None for p in parties)
    return {p.name: p.outcome for p in parties if p.outcome is not None}


def run_one(
    party: Custodian, port: int, peers: Sequence[PeerEndpoint], times: CeremonyTimes, **extra: Any
) -> CeremonyResult:
    """``party``'s ceremony on ``port``, with ``peers`` as given (``run_ceremony`` keywords in ``extra``)."""
    return run_ceremony(
        party.role, listen=f"127.0.0.1:{port}", tls=party.tls, peers=peers, checks=[party.check], times=times, **extra
    )


def the_key(results: Sequence[CeremonyResult], threshold: int) -> int:
    """The key every τ-subset of the shares interpolates to (one key, or the test fails)."""
    return shared_key({r.index: decode_scalar(r.share) for r in results}, threshold)


def test_three_custodians_generate_one_key_over_mutual_tls(
    pki: AlliancePki, custodians: tuple[str, ...], tmp_path: Path
) -> None:
    plan = CeremonyPlan.create("2026q4", 2, custodians)
    results = run_all(pki, tmp_path, plan)
    finished = [r for r in results.values() if isinstance(r, CeremonyResult)]
    assert len(finished) == 3, results
    key = the_key(finished, 2)
    for r in finished:
        assert r.public_key == mul_base(key)
        assert r.outcome == finished[0].outcome
        assert r.outcome.verification_keys[r.index] == mul_base(decode_scalar(r.share))
        assert not r.disqualified()


def test_a_custodian_with_a_ca_of_its_own_takes_part(
    pki: AlliancePki, custodians: tuple[str, ...], tmp_path: Path
) -> None:
    # dkg-3's institution serves a certificate of its own CA: the others dial it through that CA
    # only, and its ceremony client certificate (of that CA) is admitted by its enrolled key.
    own_ca = pki_module.init_ca("dkg-3's institution")
    served = pki_module.issue(own_ca, role=Role.CUSTODIAN, name="dkg-3")
    material = TlsMaterial(pki.ca.cert_pem, served.cert_pem, served.key_pem, own_ca=own_ca.cert_pem)
    plan = CeremonyPlan.create("2026q4-own", 2, custodians)
    results = run_all(pki, tmp_path, plan, own={"dkg-3": material})
    finished = [r for r in results.values() if isinstance(r, CeremonyResult)]
    assert len(finished) == 3, results
    assert mul_base(the_key(finished, 2)) == finished[0].public_key


class BadDealer(KeyCeremony):
    """Deals every peer a share that fails its commitments (its operator's build is tampered with),
    sealed to the peer's enrolled key as it should be."""

    def message(self, stage: Stage) -> dict[str, Envelope]:
        envelopes = super().message(stage)
        if stage is Stage.DEAL:
            for name, e in envelopes.items():
                good = self._dealing.shares[self.plan.index_of(name)]
                context = self._share_context(e.message.payload, self.name, name)
                sealed = self._credentials.seal_share(PedersenShare((good.value + 1) % ORDER, 0), context)
                envelopes[name] = Envelope(e.session, e.message, sealed)
        return envelopes


def test_a_custodian_dealing_bad_shares_is_named_and_the_others_finish(
    pki: AlliancePki, custodians: tuple[str, ...], tmp_path: Path
) -> None:
    plan = CeremonyPlan.create("2026q4-b", 2, custodians)
    results = run_all(pki, tmp_path, plan, roles={"dkg-2": BadDealer})
    honest = [results["dkg-1"], results["dkg-3"]]
    assert all(isinstance(r, CeremonyResult) for r in honest), results
    for r in honest:
        assert isinstance(r, CeremonyResult)
        assert r.disqualified() == {
            "dkg-2": "its shares to dkg-1, dkg-3 failed its commitments (2 complaints, more than τ−1 = 1)"
        }
        assert r.outcome.qualified == {1, 3}
    key = the_key([r for r in honest if isinstance(r, CeremonyResult)], 2)
    assert all(isinstance(r, CeremonyResult) and r.public_key == mul_base(key) for r in honest)


def test_a_custodian_missing_fails_the_ceremony_naming_it(
    pki: AlliancePki, custodians: tuple[str, ...], tmp_path: Path
) -> None:
    plan = CeremonyPlan.create("2026q4-c", 2, custodians)
    party = Custodian(pki, "dkg-1", plan, tmp_path, KeyCeremony)
    ports = free_ports(3)
    peers = [PeerEndpoint("dkg-2", f"127.0.0.1:{ports[1]}"), PeerEndpoint("dkg-3", f"127.0.0.1:{ports[2]}")]
    with pytest.raises(CeremonyFailed, match=r"no round-1 message \(deal\) from dkg-2, dkg-3 before the deadline"):
        run_one(party, ports[0], peers, CeremonyTimes(total_seconds=2, round_seconds=1))


def deliver_as(material: TlsMaterial, port: int, server: str, envelope: Envelope) -> grpc.RpcError:
    with secure_channel(f"127.0.0.1:{port}", material, server=Identity(server, Role.CUSTODIAN)) as channel:
        stub = key_ceremony_pb2_grpc.KeyCeremonyStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            stub.Deliver(ceremony_envelope_to_pb(envelope), timeout=10)
    return caught.value


@pytest.mark.parametrize(
    "caller, issue, code, details",
    [
        ("bank-a", None, grpc.StatusCode.PERMISSION_DENIED, "role member may not call Deliver"),
        ("dkg-stranger", Role.CUSTODIAN, grpc.StatusCode.PERMISSION_DENIED, "custodian dkg-stranger is not enrolled"),
        ("dkg-2 (re-issued)", Role.CUSTODIAN, grpc.StatusCode.UNAUTHENTICATED, "does not match the enrolled key"),
        ("dkg-outsider", Role.CUSTODIAN, grpc.StatusCode.PERMISSION_DENIED, "dkg-outsider is not in this ceremony"),
        # An enrolled custodian of the ceremony relaying another's signed message as its own.
        ("dkg-3", None, grpc.StatusCode.UNAUTHENTICATED, "signed with another key than the caller's certificate"),
    ],
)
def test_a_peer_with_a_wrong_role_or_unenrolled_key_is_refused_before_decoding(
    pki: AlliancePki,
    custodians: tuple[str, ...],
    tmp_path: Path,
    caller: str,
    issue: Role | None,
    code: grpc.StatusCode,
    details: str,
) -> None:
    plan = CeremonyPlan.create("2026q4-d", 2, custodians)
    party = Custodian(pki, "dkg-1", plan, tmp_path, KeyCeremony)
    if caller == "dkg-2 (re-issued)":
        # The CA holder issues dkg-2's name again, with a key of its own: not the key dkg-1 enrolled.
        impostor = pki_module.issue(pki.ca, role=Role.CUSTODIAN, name="dkg-2")
        material = TlsMaterial(ca_cert=pki.ca.cert_pem, cert=impostor.cert_pem, key=impostor.key_pem)
    else:
        if issue is not None and caller not in pki.issued:
            pki.issue(issue, caller)
        material = pki.material(caller)
    if caller == "dkg-outsider":
        enrol(party.engine, pki.issued[caller].cert_pem, role=Role.CUSTODIAN)  # Enrolled, not in the plan.
    party.roster.reload()
    ports = free_ports(3)
    peers = [PeerEndpoint("dkg-2", f"127.0.0.1:{ports[1]}"), PeerEndpoint("dkg-3", f"127.0.0.1:{ports[2]}")]
    served = threading.Event()
    failure: list[Exception] = []

    def serve() -> None:
        try:
            run_one(
                party, ports[0], peers, CeremonyTimes(total_seconds=8, round_seconds=2), started=lambda _: served.set()
            )
        except CeremonyFailed as exc:
            failure.append(exc)

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        assert served.wait(10)
        # A well-formed round-1 message of dkg-2's, delivered with the wrong certificate.
        sender = Custodian(pki, "dkg-2", plan, tmp_path, KeyCeremony)
        envelope = sender.role.message(Stage.DEAL)["dkg-1"]
        err = deliver_as(material, ports[0], "dkg-1", envelope)
        assert err.code() == code and details in (err.details() or "")
    finally:
        thread.join(timeout=30)
    assert failure  # Nobody else ever delivered: the ceremony ends, failed.


DEALT = (Polynomial.random(1), Polynomial.random(1))  # dkg-1's f and f' (degree τ−1 = 1), known to the test.


class KnownDealer(KeyCeremony):
    """Deals from ``DEALT``, so that the test knows the share each receiver is due."""

    def __init__(
        self, plan: CeremonyPlan, name: str, credentials: CertificateCredentials, codec: CeremonyCodec
    ) -> None:
        dealer = Participant(plan.params, plan.index_of(name), polynomials=DEALT)
        super().__init__(plan, name, credentials, codec, participant=dealer)


class ImpostorServicer(key_ceremony_pb2_grpc.KeyCeremonyServicer):
    """What the CA holder serves under dkg-2's name: it keeps every envelope it is handed."""

    def __init__(self) -> None:
        self.received: list[pb_ceremony.CeremonyEnvelope] = []

    def Deliver(
        self, request: pb_ceremony.CeremonyEnvelope, context: grpc.ServicerContext
    ) -> pb_ceremony.CeremonyReceipt:
        self.received.append(request)
        return pb_ceremony.CeremonyReceipt(round=Stage.DEAL.value)


def test_the_ca_holder_posing_as_a_custodian_receives_no_share_it_can_open(
    pki: AlliancePki, custodians: tuple[str, ...], tmp_path: Path
) -> None:
    # The CA holder issues dkg-2's name with a key of its own and serves the ceremony as dkg-2
    # where dkg-1 dials dkg-2 (a man in the middle): dkg-1's TLS handshake accepts it, since the
    # certificate is from the alliance CA and names dkg-2.
    plan = CeremonyPlan.create("2026q4-mitm", 2, custodians)
    dealer = Custodian(pki, "dkg-1", plan, tmp_path, KnownDealer)
    forged = pki_module.issue(pki.ca, role=Role.CUSTODIAN, name="dkg-2")
    impostor_tls = TlsMaterial(ca_cert=pki.ca.cert_pem, cert=forged.cert_pem, key=forged.key_pem)
    impostor = ImpostorServicer()
    registration = Registration(
        key_ceremony_pb2_grpc.add_KeyCeremonyServicer_to_server,
        impostor,
        SERVICE,
        {"Deliver": frozenset({Role.CUSTODIAN})},
        request_limits={"Deliver": CEREMONY_REQUEST},
    )
    ports = free_ports(2)
    with run_server([registration], address="127.0.0.1:0", tls=impostor_tls) as impostor_port:
        peers = [
            PeerEndpoint("dkg-2", f"127.0.0.1:{impostor_port}"),
            PeerEndpoint("dkg-3", f"127.0.0.1:{ports[1]}"),  # Nobody: the ceremony cannot finish.
        ]
        with pytest.raises(CeremonyFailed):
            run_one(dealer, ports[0], peers, CeremonyTimes(total_seconds=4, round_seconds=2))
    (envelope,) = impostor.received  # dkg-1's round-1 envelope for dkg-2, and nothing after it.
    due = PedersenShare(DEALT[0](2), DEALT[1](2))
    received = envelope.SerializeToString()
    assert encode_scalar(due.value) not in received and encode_scalar(due.blinding) not in received
    # The share is there, sealed to the key dkg-1 enrolled for dkg-2: the impostor's key cannot
    # open it, dkg-2's own can.
    assert len(envelope.sealed_share) == SEALED_SHARE_BYTES
    context = ShareContext(plan.session, hashlib.sha256(envelope.message.payload).digest(), "dkg-1", "dkg-2")
    with pytest.raises(InvalidSealedShare, match="the share custodian dkg-1 sealed to this custodian does not open"):
        ReceiverKey.from_pem(forged.key_pem).open_share(envelope.sealed_share, context)
    assert ReceiverKey.from_pem(pki.issued["dkg-2"].key_pem).open_share(envelope.sealed_share, context) == due
