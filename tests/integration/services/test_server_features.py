"""What every alliance server offers besides its service: health, reflection, and size limits."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from alliance_psi.protocol.messages import pb_coordinator
from alliance_psi.protocol.model import Identity, Role
from alliance_psi.services.tls import MAX_REQUEST_BYTES, secure_channel
from tests.integration.services.harness import running_alliance

pytestmark = pytest.mark.timeout(120)
COORDINATOR = Identity(name="coordinator", role=Role.COORDINATOR)
CUSTODIAN_1 = Identity(name="custodian-1", role=Role.CUSTODIAN)


def test_health_and_reflection_answer_enrolled_members(tmp_path: Path, pki) -> None:  # type: ignore[no-untyped-def]
    with running_alliance(tmp_path, pki, custodians=1) as alliance:
        for address, server, service in (
            (alliance.coordinator_address, COORDINATOR, "alliance_psi.v1.Coordinator"),
            (alliance.custodian_addresses[0], CUSTODIAN_1, "alliance_psi.v1.OprfEvaluator"),
        ):
            with secure_channel(address, pki.material("bank-a"), server=server) as channel:
                health = health_pb2_grpc.HealthStub(channel)
                reply = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
                assert reply.status == health_pb2.HealthCheckResponse.SERVING
                reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
                responses = reflection.ServerReflectionInfo(
                    iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=10
                )
                names = {s.name for r in responses for s in r.list_services_response.service}
                assert service in names and "grpc.health.v1.Health" in names


def test_an_oversized_message_is_refused_before_any_handler(tmp_path: Path, pki) -> None:  # type: ignore[no-untyped-def]
    with running_alliance(tmp_path, pki, custodians=1) as alliance:
        round_ = alliance.admin().create_round(alliance.spec(2))
        item = pb_coordinator.SubmittedToken(match_token=b"\x01" * 16, sealed_label=b"\x02" * 1_000_000)
        huge = pb_coordinator.SubmissionChunk(round_id=round_.round_id, chunk_index=0, items=[item] * 70)
        assert huge.ByteSize() > MAX_REQUEST_BYTES
        options = [("grpc.max_send_message_length", 2 * MAX_REQUEST_BYTES)]
        with secure_channel(
            alliance.coordinator_address, pki.material("bank-a"), server=COORDINATOR, options=options
        ) as channel:
            stub = channel.stream_unary(
                "/alliance_psi.v1.Coordinator/UploadChunks",
                request_serializer=pb_coordinator.SubmissionChunk.SerializeToString,
                response_deserializer=pb_coordinator.UploadSummary.FromString,
            )
            with pytest.raises(grpc.RpcError) as refused:
                stub(iter([huge]), timeout=60)
        assert refused.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        client = alliance.admin()
        assert client.get_round(round_.round_id)[1] == 0
