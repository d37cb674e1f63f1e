"""The one table from alliance-psi errors to gRPC status codes, both ways.

Servers call ``abort(context, exc)``; clients call ``from_rpc_error(err)`` to get the typed
error back. Only ``RequestError`` and crypto input errors keep their message on the wire (they
are written never to hold an identifier, a label or a secret); anything else crosses as a bare
``INTERNAL: internal error`` and is logged on the server only.

The kind of error travels as data, never as text to match: every error that keeps its message
carries a ``google.rpc.ErrorInfo`` whose ``reason`` names its class (``WRONG_EPOCH``,
``ROUND_CLOSED``, …; domain ``alliance-psi``), so a client tells apart the kinds that share a
status code. A quota error also carries a ``google.rpc.QuotaFailure`` (as gRPC's error examples
do): the member as ``subject``, the quota as ``quota_value``, and the ``used`` and ``requested``
counts in the ErrorInfo's metadata; the client rebuilds ``QuotaExceeded`` with all four.
"""

from __future__ import annotations

import logging
import re
from typing import NoReturn

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from alliance_psi import errors

__all__ = ["DOMAIN", "STATUS_OF", "abort", "from_rpc_error", "reason_of", "status_for"]

log = logging.getLogger(__name__)

DOMAIN = "alliance-psi"
_QUOTA_ID = "evaluated-elements-per-member-per-epoch"
_MEMBER_SUBJECT = "member:"

# Most specific classes first: the first isinstance match wins.
STATUS_OF: tuple[tuple[type[errors.AlliancePsiError], grpc.StatusCode], ...] = (
    (errors.InvalidRequest, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.CertificateRevoked, grpc.StatusCode.UNAUTHENTICATED),
    (errors.NotAuthenticated, grpc.StatusCode.UNAUTHENTICATED),
    (errors.NotAuthorized, grpc.StatusCode.PERMISSION_DENIED),
    (errors.NotFound, grpc.StatusCode.NOT_FOUND),
    (errors.QuotaExceeded, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (errors.ServerBusy, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (errors.LimitExceeded, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (errors.RoundClosed, grpc.StatusCode.FAILED_PRECONDITION),
    (errors.WrongEpoch, grpc.StatusCode.FAILED_PRECONDITION),
    (errors.CeremonyMismatch, grpc.StatusCode.FAILED_PRECONDITION),
    (errors.SetMismatch, grpc.StatusCode.ABORTED),
    (errors.Conflict, grpc.StatusCode.ALREADY_EXISTS),
    (errors.MalformedElement, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.MalformedScalar, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.InvalidIdentifier, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.ImportFileError, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.InvalidLabel, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.LabelTooLarge, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.ReportMismatch, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.ResultMismatch, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.LogInconsistent, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.InvalidSignature, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.InvalidProof, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.InvalidSealedShare, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.InvalidShare, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.ConfigurationError, grpc.StatusCode.INTERNAL),
    (errors.CeremonyFailed, grpc.StatusCode.INTERNAL),
    (errors.NotificationFailed, grpc.StatusCode.INTERNAL),
    (errors.HandshakeFailed, grpc.StatusCode.UNAVAILABLE),
    (errors.PeerUnavailable, grpc.StatusCode.UNAVAILABLE),
    (errors.AuditLogBroken, grpc.StatusCode.DATA_LOSS),
    (errors.StorageError, grpc.StatusCode.INTERNAL),
    (errors.CryptoError, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.RequestError, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.AlliancePsiError, grpc.StatusCode.INTERNAL),
)

# Errors whose message may cross the network. InvalidIdentifier and ImportFileError are
# deliberately absent: their messages name (a prefix of) a raw value or a local file, which must
# never leave the member node.
_SPEAKS = (errors.RequestError, errors.MalformedElement, errors.MalformedScalar, errors.InvalidLabel)

# Client side: the typed error each status code comes back as, when no ErrorInfo says more.
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


def reason_of(cls: type[BaseException]) -> str:
    """The ErrorInfo reason for an error class: its name in UPPER_SNAKE_CASE (``WrongEpoch`` → ``WRONG_EPOCH``)."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", cls.__name__).upper()


def _code_of(cls: type[BaseException]) -> grpc.StatusCode:
    return next(code for mapped, code in STATUS_OF if issubclass(cls, mapped))


# Client side: the request errors a reason may name (each built from a message alone), each
# trusted only with its own status code.
_REQUEST_ERROR_OF_REASON: dict[str, type[errors.RequestError]] = {
    reason_of(cls): cls
    for cls, _ in STATUS_OF
    if issubclass(cls, errors.RequestError) and cls is not errors.QuotaExceeded
}


def status_for(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    """The status code and the message that may be sent for ``exc``."""
    for cls, code in STATUS_OF:
        if isinstance(exc, cls):
            return code, (str(exc) if isinstance(exc, _SPEAKS) else "internal error")
    return grpc.StatusCode.INTERNAL, "internal error"


def _packed(message: error_details_pb2.ErrorInfo | error_details_pb2.QuotaFailure) -> any_pb2.Any:
    detail = any_pb2.Any()
    detail.Pack(message)
    return detail


def abort(context: grpc.ServicerContext, exc: BaseException) -> NoReturn:
    """End the RPC with the status for ``exc`` (never returns).

    An error whose message may be sent also carries its ErrorInfo reason; a quota error its
    QuotaFailure. Nothing else about an internal error leaves the server.
    """
    code, message = status_for(exc)
    if code is grpc.StatusCode.INTERNAL:
        log.error("internal error in %s", type(exc).__name__, exc_info=exc)
    if not isinstance(exc, _SPEAKS):
        context.abort(code, message)
        raise AssertionError("unreachable")  # pragma: no cover - context.abort raises
    info = error_details_pb2.ErrorInfo(reason=reason_of(type(exc)), domain=DOMAIN)
    details = [info]
    if isinstance(exc, errors.QuotaExceeded):
        info.metadata.update({"used": str(exc.used), "requested": str(exc.requested)})
        violation = error_details_pb2.QuotaFailure.Violation(
            subject=f"{_MEMBER_SUBJECT}{exc.member_id}",
            description=f"quota {exc.quota}, used {exc.used}, requested {exc.requested}",
            quota_id=_QUOTA_ID,
            quota_value=exc.quota,
        )
        details.append(error_details_pb2.QuotaFailure(violations=[violation]))
    status = status_pb2.Status(code=code.value[0], message=message, details=[_packed(d) for d in details])
    context.abort_with_status(rpc_status.to_status(status))
    raise AssertionError("unreachable")  # pragma: no cover - abort_with_status raises


def _details_of(err: grpc.RpcError) -> tuple[error_details_pb2.ErrorInfo | None, error_details_pb2.QuotaFailure | None]:
    """The ErrorInfo (of our domain) and QuotaFailure a failed call carries, if any."""
    try:
        status = rpc_status.from_call(err) if isinstance(err, grpc.Call) else None
    except ValueError:  # Details that contradict the call's own code or message: ignore them.
        status = None
    info = quota = None
    carried: list[any_pb2.Any] = list(status.details) if status is not None else []
    for detail in carried:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            candidate = error_details_pb2.ErrorInfo()
            detail.Unpack(candidate)
            if candidate.domain == DOMAIN:
                info = candidate
        elif detail.Is(error_details_pb2.QuotaFailure.DESCRIPTOR):
            quota = error_details_pb2.QuotaFailure()
            detail.Unpack(quota)
    return info, quota


def _quota_exceeded(
    message: str, info: error_details_pb2.ErrorInfo | None, quota: error_details_pb2.QuotaFailure | None
) -> errors.QuotaExceeded:
    member_id, limit, used, requested = "", 0, 0, 0
    if quota is not None and quota.violations:
        violation = quota.violations[0]
        member_id = violation.subject.removeprefix(_MEMBER_SUBJECT)
        limit = violation.quota_value
    if info is not None:
        try:
            used, requested = int(info.metadata.get("used", "0")), int(info.metadata.get("requested", "0"))
        except ValueError:
            used, requested = 0, 0
    return errors.QuotaExceeded(message, member_id=member_id, quota=limit, used=used, requested=requested)


def from_rpc_error(err: grpc.RpcError, *, peer: str) -> errors.AlliancePsiError:
    """The typed error for a failed call to ``peer`` (client side).

    The kind comes from the ErrorInfo reason when it names a request error of the same status
    code, else from the code alone (FAILED_PRECONDITION without a reason is ``RoundClosed``);
    never from the message text.
    """
    code = err.code() if hasattr(err, "code") else grpc.StatusCode.UNKNOWN
    details = (err.details() if hasattr(err, "details") else "") or code.name
    message = f"{peer}: {details}"
    info, quota = _details_of(err)
    if code is grpc.StatusCode.RESOURCE_EXHAUSTED:
        if quota is not None or (info is not None and info.reason == reason_of(errors.QuotaExceeded)):
            return _quota_exceeded(message, info, quota)
        if info is not None and info.reason == reason_of(errors.ServerBusy):
            return errors.ServerBusy(message)
        return errors.LimitExceeded(message)  # A server limit, ours or gRPC's own (message size).
    named = _REQUEST_ERROR_OF_REASON.get(info.reason) if info is not None else None
    if named is not None and _code_of(named) is code:
        return named(message)
    cls = _ERROR_OF.get(code)
    if cls is None:
        return errors.AlliancePsiError(f"{peer}: {code.name}: {details}")
    return cls(message)
