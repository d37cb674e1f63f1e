"""Errors cross a real mutual-TLS gRPC call and come back as the same typed error, decided by the
status details the server sets (ErrorInfo reason, QuotaFailure), never by the message text."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from concurrent import futures

import grpc
import pytest
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from alliance_psi import errors
from alliance_psi.protocol.model import Identity, Role
from alliance_psi.services.status import DOMAIN, abort, from_rpc_error
from alliance_psi.services.tls import secure_channel, server_credentials

_METHOD = "/test.Errors/Fail"


@contextlib.contextmanager
def failing_server(pki, fail: Callable[[grpc.ServicerContext], None]) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """A server over the alliance's mTLS whose one method calls ``fail(context)``."""

    def behaviour(request: bytes, context: grpc.ServicerContext) -> bytes:
        fail(context)
        return b""

    handler = grpc.method_handlers_generic_handler(
        "test.Errors", {"Fail": grpc.unary_unary_rpc_method_handler(behaviour)}
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2), handlers=[handler])
    port = server.add_secure_port("127.0.0.1:0", server_credentials(pki.material("coordinator")))
    server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.stop(grace=None)


def call(pki, address: str) -> errors.AlliancePsiError:  # type: ignore[no-untyped-def]
    with secure_channel(address, pki.material("bank-a"), server=Identity("coordinator", Role.COORDINATOR)) as channel:
        with pytest.raises(grpc.RpcError) as raised:
            channel.unary_unary(_METHOD)(b"", timeout=10)
    return from_rpc_error(raised.value, peer="coordinator at test")


def raising(exc: BaseException) -> Callable[[grpc.ServicerContext], None]:
    return lambda context: abort(context, exc)


@pytest.mark.parametrize(
    "exc",
    [
        errors.InvalidRequest("bad field"),
        errors.CertificateRevoked("certificate revoked"),
        errors.NotAuthorized("no"),
        errors.NotFound("no such round"),
        errors.RoundClosed("round r1 is closed"),
        errors.WrongEpoch("this custodian serves key epoch 'a', not 'b'"),
        errors.Conflict("chunk 1 differs"),
        errors.SetMismatch("set digest mismatch"),
    ],
    ids=lambda exc: type(exc).__name__,
)
def test_request_errors_come_back_as_themselves(pki, exc: errors.RequestError) -> None:  # type: ignore[no-untyped-def]
    with failing_server(pki, raising(exc)) as address:
        got = call(pki, address)
    assert type(got) is type(exc)
    assert str(got) == f"coordinator at test: {exc}"


def test_wrong_epoch_and_round_closed_are_told_apart_by_reason_not_text(pki) -> None:  # type: ignore[no-untyped-def]
    # Same code, same words: only the ErrorInfo reason differs.
    text = "key epoch 'a' is closed"
    with failing_server(pki, raising(errors.WrongEpoch(text))) as address:
        assert type(call(pki, address)) is errors.WrongEpoch
    with failing_server(pki, raising(errors.RoundClosed(text))) as address:
        assert type(call(pki, address)) is errors.RoundClosed


def test_the_quota_detail_becomes_the_error_fields(pki) -> None:  # type: ignore[no-untyped-def]
    exc = errors.QuotaExceeded("quota exceeded", member_id="bank-a", quota=30, used=12, requested=54)
    with failing_server(pki, raising(exc)) as address:
        got = call(pki, address)
    assert isinstance(got, errors.QuotaExceeded)
    assert (got.member_id, got.quota, got.used, got.requested) == ("bank-a", 30, 12, 54)


def test_internal_errors_carry_no_reason_and_no_text(pki) -> None:  # type: ignore[no-untyped-def]
    leaky = errors.InvalidIdentifier("bad check digit", type="id_card", value="44030519870614357X")
    with failing_server(pki, raising(leaky)) as address:
        got = call(pki, address)
    assert type(got) is errors.InvalidRequest and str(got) == "coordinator at test: internal error"


def _with_reason(code: grpc.StatusCode, reason: str, domain: str = DOMAIN) -> Callable[[grpc.ServicerContext], None]:
    def fail(context: grpc.ServicerContext) -> None:
        detail = any_pb2.Any()
        detail.Pack(error_details_pb2.ErrorInfo(reason=reason, domain=domain))
        context.abort_with_status(
            rpc_status.to_status(status_pb2.Status(code=code.value[0], message="m", details=[detail]))
        )

    return fail


@pytest.mark.parametrize(
    "code, reason, domain, expected",
    [
        (grpc.StatusCode.NOT_FOUND, "WRONG_EPOCH", DOMAIN, errors.NotFound),  # A reason of another code.
        (grpc.StatusCode.FAILED_PRECONDITION, "WRONG_EPOCH", "example.com", errors.RoundClosed),  # Another domain.
        (grpc.StatusCode.FAILED_PRECONDITION, "NO_SUCH_REASON", DOMAIN, errors.RoundClosed),
        (grpc.StatusCode.INVALID_ARGUMENT, "REQUEST_ERROR", DOMAIN, errors.RequestError),
    ],
)
def test_a_reason_is_trusted_only_with_its_own_code_and_domain(  # type: ignore[no-untyped-def]
    pki, code: grpc.StatusCode, reason: str, domain: str, expected: type
) -> None:
    with failing_server(pki, _with_reason(code, reason, domain)) as address:
        assert type(call(pki, address)) is expected
