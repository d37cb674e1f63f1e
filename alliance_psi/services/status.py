"""The one table from alliance-psi errors to gRPC status codes, both ways.

Servers call ``abort(context, exc)``; clients call ``from_rpc_error(err)`` to get the typed
error back. Only ``RequestError`` and crypto input errors keep their message on the wire (they
are written never to hold an identifier, a label or a secret); anything else crosses as a bare
``INTERNAL: internal error`` and is logged on the server only. A quota error carries a
``google.rpc.QuotaFailure`` detail, as gRPC's error examples do.
"""

from __future__ import annotations

import logging
from typing import NoReturn

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from alliance_psi import errors

__all__ = ["STATUS_OF", "abort", "from_rpc_error", "status_for"]

log = logging.getLogger(__name__)

# Most specific classes first: the first isinstance match wins.
STATUS_OF: tuple[tuple[type[errors.AlliancePsiError], grpc.StatusCode], ...] = (
    (errors.InvalidRequest, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.NotAuthenticated, grpc.StatusCode.UNAUTHENTICATED),
    (errors.NotAuthorized, grpc.StatusCode.PERMISSION_DENIED),
    (errors.NotFound, grpc.StatusCode.NOT_FOUND),
    (errors.QuotaExceeded, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (errors.RoundClosed, grpc.StatusCode.FAILED_PRECONDITION),
    (errors.WrongEpoch, grpc.StatusCode.FAILED_PRECONDITION),
    (errors.SetMismatch, grpc.StatusCode.ABORTED),
    (errors.Conflict, grpc.StatusCode.ALREADY_EXISTS),
    (errors.MalformedElement, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.MalformedScalar, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.InvalidIdentifier, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.InvalidLabel, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.LabelTooLarge, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.InvalidSignature, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.ConfigurationError, grpc.StatusCode.INTERNAL),
    (errors.PeerUnavailable, grpc.StatusCode.UNAVAILABLE),
    (errors.AuditLogBroken, grpc.StatusCode.DATA_LOSS),
    (errors.StorageError, grpc.StatusCode.INTERNAL),
    (errors.CryptoError, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.RequestError, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.AlliancePsiError, grpc.StatusCode.INTERNAL),
)

# Errors whose message may cross the network. InvalidIdentifier is deliberately absent: its
# message names (a prefix of) a raw value, which must never leave the member node.
_SPEAKS = (errors.RequestError, errors.MalformedElement, errors.MalformedScalar, errors.InvalidLabel)

# Client side: the typed error each status code comes back as.
_ERROR_OF: dict[grpc.StatusCode, type[errors.AlliancePsiError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: errors.InvalidRequest,
    grpc.StatusCode.UNAUTHENTICATED: errors.NotAuthenticated,
    grpc.StatusCode.PERMISSION_DENIED: errors.NotAuthorized,
    grpc.StatusCode.NOT_FOUND: errors.NotFound,
    grpc.StatusCode.FAILED_PRECONDITION: errors.RoundClosed,
    grpc.StatusCode.ALREADY_EXISTS: errors.Conflict,
    grpc.StatusCode.ABORTED: errors.SetMismatch,
    grpc.StatusCode.UNAVAILABLE: errors.PeerUnavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: errors.PeerUnavailable,
}


def status_for(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    """The status code and the message that may be sent for ``exc``."""
    for cls, code in STATUS_OF:
        if isinstance(exc, cls):
            return code, (str(exc) if isinstance(exc, _SPEAKS) else "internal error")
    return grpc.StatusCode.INTERNAL, "internal error"


def abort(context: grpc.ServicerContext, exc: BaseException) -> NoReturn:
    """End the RPC with the status for ``exc`` (never returns)."""
    code, message = status_for(exc)
    if code is grpc.StatusCode.INTERNAL:
        log.error("internal error in %s", type(exc).__name__, exc_info=exc)
    if isinstance(exc, errors.QuotaExceeded):
        detail = any_pb2.Any()
        detail.Pack(
            error_details_pb2.QuotaFailure(
                violations=[
                    error_details_pb2.QuotaFailure.Violation(
                        subject=f"member:{exc.member_id}",
                        description=f"quota {exc.quota}, used {exc.used}, requested {exc.requested}",
                    )
                ]
            )
        )
        status = status_pb2.Status(code=code_pb2.RESOURCE_EXHAUSTED, message=message, details=[detail])
        context.abort_with_status(rpc_status.to_status(status))
    context.abort(code, message)
    raise AssertionError("unreachable")  # pragma: no cover - context.abort raises


def from_rpc_error(err: grpc.RpcError, *, peer: str) -> errors.AlliancePsiError:
    """The typed error for a failed call to ``peer`` (client side)."""
    code = err.code() if hasattr(err, "code") else grpc.StatusCode.UNKNOWN
    details = (err.details() if hasattr(err, "details") else "") or code.name
    if code is grpc.StatusCode.RESOURCE_EXHAUSTED:
        return errors.QuotaExceeded(f"{peer}: {details}", member_id="", quota=0, used=0, requested=0)
    if code is grpc.StatusCode.FAILED_PRECONDITION and "key epoch" in details:
        return errors.WrongEpoch(f"{peer}: {details}")
    cls = _ERROR_OF.get(code)
    if cls is None:
        return errors.AlliancePsiError(f"{peer}: {code.name}: {details}")
    return cls(f"{peer}: {details}")
