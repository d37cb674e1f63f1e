"""The health and reflection services are served to the parties a server serves and to the server's
own identity only, in call slots of their own, and a health Watch is bounded in time; over real
mTLS on loopback servers.

Before: any certificate of the alliance CA could call them, enrolled or not, their calls took the
server's call slots, and a Watch stream was never counted as idle: 16 names the CA holder minted
held all 64 slots of a custodian with 4 Watch streams each, and enrolled members got "server busy"
for as long as the holder liked.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from alliance_psi.config import ServerLimits, TlsMaterial
from alliance_psi.protocol.messages import pb_custodian
from alliance_psi.protocol.model import Identity, Role
from alliance_psi.services import pki as pki_module
from alliance_psi.services.tls import secure_channel
from tests.integration.services.conftest import AlliancePki
from tests.integration.services.harness import COORDINATOR, EPOCH, custodian, running_alliance

pytestmark = pytest.mark.timeout(180)

SERVING = health_pb2.HealthCheckResponse.SERVING


def check(address: str, material: TlsMaterial, server: Identity) -> tuple[grpc.StatusCode, str | None]:
    """A health Check: OK, or the refusal's code and message."""
    with secure_channel(address, material, server=server) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=30)
        except grpc.RpcError as err:
            return err.code(), err.details()
    assert reply.status == SERVING
    return grpc.StatusCode.OK, ""


def reflect(address: str, material: TlsMaterial, server: Identity) -> tuple[grpc.StatusCode, str | None]:
    """A reflection listing: OK, or the refusal's code and message."""
    with secure_channel(address, material, server=server) as channel:
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        try:
            replies = list(reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(iter([request])))
        except grpc.RpcError as err:
            return err.code(), err.details()
    assert replies
    return grpc.StatusCode.OK, ""


def watch(channel: grpc.Channel) -> Iterator[health_pb2.HealthCheckResponse]:
    """A health Watch that has received its first status (raises the refusal if refused)."""
    call = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(), timeout=120)
    assert next(call).status == SERVING
    return call  # type: ignore[no-any-return]


def watches(channel: grpc.Channel, count: int) -> tuple[list[Iterator[object]], list[grpc.RpcError]]:
    """Open ``count`` Watch streams on ``channel``: the ones held and the refusals."""
    held, refused = [], []
    for _ in range(count):
        try:
            held.append(watch(channel))
        except grpc.RpcError as err:
            refused.append(err)
    return held, refused


def get_epoch(address: str, material: TlsMaterial) -> pb_custodian.EpochInfo:
    with secure_channel(address, material, server=custodian()) as channel:
        stub = channel.unary_unary(
            "/alliance_psi.v1.OprfEvaluator/GetEpoch",
            request_serializer=pb_custodian.GetEpochRequest.SerializeToString,
            response_deserializer=pb_custodian.EpochInfo.FromString,
        )
        info: pb_custodian.EpochInfo = stub(pb_custodian.GetEpochRequest(), timeout=30)
        return info


def test_only_served_parties_and_the_server_itself_get_health_and_reflection(tmp_path: Path, pki: AlliancePki) -> None:
    ghost = "open-ghost"
    pki.issue(Role.MEMBER, ghost)  # Issued by the alliance CA, enrolled nowhere.
    # The CA holder mints the custodian's own name with another key.
    minted = pki_module.issue(pki.ca, role=Role.CUSTODIAN, name="custodian-1")
    forged = TlsMaterial(ca_cert=pki.ca.cert_pem, cert=minted.cert_pem, key=minted.key_pem)
    with running_alliance(tmp_path, pki, custodians=1) as alliance:
        at_custodian = alliance.custodian_addresses[0]
        for ask in (check, reflect):
            assert ask(at_custodian, pki.material("bank-a"), custodian()) == (grpc.StatusCode.OK, "")
            assert ask(at_custodian, pki.material("custodian-1"), custodian()) == (grpc.StatusCode.OK, "")
            assert ask(at_custodian, pki.material(ghost), custodian()) == (
                grpc.StatusCode.PERMISSION_DENIED,
                f"member {ghost} is not enrolled at this custodian",
            )
            method = "Check" if ask is check else "ServerReflectionInfo"
            for name, material in (("admin", pki.material("admin")), ("custodian", forged)):
                role = "admin" if name == "admin" else "custodian"
                assert ask(at_custodian, material, custodian()) == (
                    grpc.StatusCode.PERMISSION_DENIED,
                    f"role {role} may not call {method}",
                )
            # The coordinator serves its enrolled admins, and refuses the unenrolled member alike.
            at_coordinator = alliance.coordinator_address
            assert ask(at_coordinator, pki.material("admin"), COORDINATOR) == (grpc.StatusCode.OK, "")
            assert ask(at_coordinator, pki.material("coordinator"), COORDINATOR) == (grpc.StatusCode.OK, "")
            assert ask(at_coordinator, pki.material(ghost), COORDINATOR) == (
                grpc.StatusCode.PERMISSION_DENIED,
                f"member {ghost} is not enrolled at this coordinator",
            )
        with secure_channel(at_custodian, pki.material(ghost), server=custodian()) as channel:
            with pytest.raises(grpc.RpcError) as refused:
                watch(channel)
        assert refused.value.code() is grpc.StatusCode.PERMISSION_DENIED


def test_health_watches_never_take_an_enrolled_member_s_call_slot(tmp_path: Path, pki: AlliancePki) -> None:
    ghosts = [f"slot-ghost-{i}" for i in range(4)]
    for ghost in ghosts:
        pki.issue(Role.MEMBER, ghost)
    limits = ServerLimits(max_calls=4, max_calls_per_peer=4, max_streams_per_peer=4, max_open_calls=4)
    with running_alliance(tmp_path, pki, custodians=1, limits=limits) as alliance:
        address = alliance.custodian_addresses[0]
        channels = [secure_channel(address, pki.material(name), server=custodian()) for name in (*ghosts, "bank-b")]
        try:
            for channel in channels[:-1]:  # Unenrolled names hold nothing.
                held, refused = watches(channel, 4)
                assert held == [] and {err.code() for err in refused} == {grpc.StatusCode.PERMISSION_DENIED}
            # An enrolled member's watches take slots of the health and reflection services only,
            # two at most.
            held, refused = watches(channels[-1], 4)
            assert (
                len(held) == 2
                and [err.details() for err in refused]
                == ["too many calls in progress from member:bank-b: at most 2 at a time"] * 2
            )
            with secure_channel(address, pki.material("bank-c"), server=custodian()) as channel:
                also_held, _ = watches(channel, 2)
                assert len(also_held) == 2
                assert check(address, pki.material("bank-a"), custodian()) == (
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    "health and reflection busy: 4 calls in progress, the limit; try again later",
                )
                # bank-a's own calls are served: a GetEpoch and a whole tokenization.
                assert get_epoch(address, pki.material("bank-a")).key_epoch == EPOCH
                assert alliance.node("bank-a").tokenize(EPOCH, ["phone"]) > 0
        finally:
            for channel in channels:
                channel.close()


def test_a_watch_ends_after_the_idle_time_without_a_change(tmp_path: Path, pki: AlliancePki) -> None:
    limits = ServerLimits(stream_idle_seconds=1)
    with running_alliance(tmp_path, pki, custodians=1, limits=limits) as alliance:
        address = alliance.custodian_addresses[0]
        with secure_channel(address, pki.material("bank-a"), server=custodian()) as channel:
            for _ in range(3):  # More than the two a peer may hold: each ended watch frees its slot.
                call = watch(channel)
                with pytest.raises(grpc.RpcError) as ended:
                    next(call)
                # The server's message, not the client's own 120 s deadline.
                assert ended.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
                assert ended.value.details() == "the server ends a watch after 1 s without a change; watch again"
