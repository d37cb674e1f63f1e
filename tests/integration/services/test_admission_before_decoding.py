"""Requests are decoded only after their caller is admitted, and garbage does not grow a server.

grpcio decoded every request before the identity interceptor ran: a revoked certificate's garbage
reached the protobuf decoder, and each undecodable request leaked about 10 KB inside grpcio
(2,000 calls grew a coordinator by 40 MB, as much in the second thousand as in the first).
"""

from __future__ import annotations

import threading
from pathlib import Path

import grpc
import pytest

from alliance_psi.errors import NotAuthorized
from alliance_psi.protocol.messages import pb_coordinator
from alliance_psi.protocol.model import Role
from alliance_psi.protocol.wire import SMALL_REQUEST
from alliance_psi.services.interceptors import Peer
from alliance_psi.services.server import Registration, run_server
from alliance_psi.services.tls import secure_channel
from tests.integration.services.conftest import AlliancePki
from tests.integration.services.harness import COORDINATOR
from tests.integration.services.processes import coordinator_process, status_kib

pytestmark = pytest.mark.timeout(300)

SERVICE = "test.Decode"
GARBAGE = b"\xff\xff\xff\xff not a protobuf message " * 10


class CountingDecoder:
    """The real protobuf decoder of SubmissionChunk, counting its calls."""

    def __init__(self) -> None:
        self.calls = 0
        self._lock = threading.Lock()

    def __call__(self, data: bytes) -> pb_coordinator.SubmissionChunk:
        with self._lock:
            self.calls += 1
        return pb_coordinator.SubmissionChunk.FromString(data)


def decode_service(decoder: CountingDecoder) -> Registration:
    def unary(request: pb_coordinator.SubmissionChunk, context: grpc.ServicerContext) -> bytes:
        return b"ok"

    def stream(requests: object, context: grpc.ServicerContext) -> bytes:
        return str(sum(1 for _ in requests)).encode()  # type: ignore[attr-defined]

    handlers = {
        name: make(behavior, request_deserializer=decoder)
        for name, make, behavior in (
            ("Unary", grpc.unary_unary_rpc_method_handler, unary),
            ("Stream", grpc.stream_unary_rpc_method_handler, stream),
            ("AdminOnly", grpc.unary_unary_rpc_method_handler, unary),
        )
    }

    def add(_servicer: object, server: grpc.Server) -> None:
        server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(SERVICE, handlers)])

    members = frozenset({Role.MEMBER})
    return Registration(add, None, SERVICE, {"Unary": members, "Stream": members, "AdminOnly": frozenset({Role.ADMIN})})


def not_enrolled(peer: Peer, method: str) -> None:
    """A server's own admission rule: bank-c is not on this server's enrolment list."""
    if peer.identity.name == "bank-c":
        raise NotAuthorized("member bank-c is not enrolled on this server")


def garbage_call(channel: grpc.Channel, method: str, data: bytes = GARBAGE) -> grpc.RpcError:
    path = f"/{SERVICE}/{method}"
    with pytest.raises(grpc.RpcError) as refused:
        if method == "Stream":
            channel.stream_unary(path)(iter([data, data]), timeout=30)
        else:
            channel.unary_unary(path)(data, timeout=30)
    return refused.value


def test_refused_callers_never_reach_the_decoder(pki: AlliancePki) -> None:
    pki.issue(Role.MEMBER, "bank-revoked-decoding")
    decoder = CountingDecoder()
    server_tls = pki.material("coordinator", crl=pki.revoke("bank-revoked-decoding"))
    with run_server([decode_service(decoder)], address="127.0.0.1:0", tls=server_tls, checks=[not_enrolled]) as port:
        address = f"127.0.0.1:{port}"
        refusals = [
            ("bank-revoked-decoding", "Unary", grpc.StatusCode.UNAUTHENTICATED, "certificate revoked"),
            ("bank-revoked-decoding", "Stream", grpc.StatusCode.UNAUTHENTICATED, "certificate revoked"),
            ("bank-a", "AdminOnly", grpc.StatusCode.PERMISSION_DENIED, "role member may not call AdminOnly"),
            ("bank-c", "Unary", grpc.StatusCode.PERMISSION_DENIED, "member bank-c is not enrolled on this server"),
            ("bank-c", "Stream", grpc.StatusCode.PERMISSION_DENIED, "member bank-c is not enrolled on this server"),
        ]
        for name, method, code, details in refusals:
            with secure_channel(address, pki.material(name), server=COORDINATOR) as channel:
                for _ in range(20):
                    refused = garbage_call(channel, method)
                    assert (refused.code(), refused.details()) == (code, details)
        assert decoder.calls == 0
        with secure_channel(address, pki.material("bank-a"), server=COORDINATOR) as channel:
            oversized = garbage_call(channel, "Unary", b"\x00" * (SMALL_REQUEST.max_bytes + 1))
            assert oversized.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
            assert oversized.details() == "Unary: a request of 65537 bytes is over the limit of 65536"
            assert decoder.calls == 0
            for method in ("Unary", "Stream"):
                undecodable = garbage_call(channel, method)
                assert undecodable.code() is grpc.StatusCode.INVALID_ARGUMENT
                assert undecodable.details() == f"{method}: the request is not a valid message"
            assert decoder.calls == 2  # Admitted, so decoded; the stream stopped at its first bad message.
            assert channel.unary_unary(f"/{SERVICE}/Unary")(b"", timeout=30) == b"ok"


def test_memory_stays_flat_under_garbage_from_revoked_and_enrolled_members(tmp_path: Path, pki: AlliancePki) -> None:
    pki.issue(Role.MEMBER, "bank-revoked-rss")
    crl = tmp_path / "crl.pem"
    crl.write_bytes(pki.revoke("bank-revoked-rss"))
    with coordinator_process(
        tmp_path,
        pki,
        "--crl",
        str(crl),
        "--calls-per-second-per-peer",
        "1000000",  # This test is about decoding, not about the rate limit.
    ) as server:
        for name, expected in (
            ("bank-revoked-rss", grpc.StatusCode.UNAUTHENTICATED),
            ("bank-a", grpc.StatusCode.INVALID_ARGUMENT),
        ):
            with secure_channel(server.address, pki.material(name), server=COORDINATOR) as channel:
                unary = channel.unary_unary("/alliance_psi.v1.Coordinator/GetRound")
                stream = channel.stream_unary("/alliance_psi.v1.Coordinator/UploadChunks")
                marks = [status_kib(server.proc.pid, "VmRSS")]
                for _half in range(2):
                    for i in range(1000):  # Unary and streaming calls in turn.
                        with pytest.raises(grpc.RpcError) as refused:
                            stream(iter([GARBAGE]), timeout=30) if i % 2 else unary(GARBAGE, timeout=30)
                        assert refused.value.code() is expected
                    marks.append(status_kib(server.proc.pid, "VmRSS"))
            first, second = marks[1] - marks[0], marks[2] - marks[1]
            print(f"{name}: RSS {marks} KiB; growth {first} KiB over the first 1,000 calls, {second} over the second")
            assert second <= first / 2 + 2048, f"{name}: RSS grew {second} KiB over the second 1,000 calls"
    refusal_lines = [line for line in server.lines if "refused /alliance_psi" in line]
    # Per peer and method, a line for the first refusal and one with the count of the rest: not one per call.
    assert 4 <= len(refusal_lines) <= 8, refusal_lines
    assert not any("not a protobuf" in line for line in server.lines)  # Request data is never logged.
