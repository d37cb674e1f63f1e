"""Every error class maps to a gRPC status of its own, and nothing secret crosses the wire."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import grpc
import pytest

import alliance_psi
from alliance_psi import errors
from alliance_psi.services.status import STATUS_OF, from_rpc_error, reason_of, status_for

ALL_ERRORS = [cls for _, cls in inspect.getmembers(errors, inspect.isclass) if issubclass(cls, errors.AlliancePsiError)]


def test_every_error_class_is_mapped_explicitly() -> None:
    mapped = {cls for cls, _ in STATUS_OF}
    unmapped = sorted(cls.__name__ for cls in ALL_ERRORS if cls not in mapped)
    if unmapped:
        pytest.fail(f"Unmapped alliance-psi errors: {unmapped}")


def _subclasses(cls: type) -> set[type]:
    found = set(cls.__subclasses__())
    for sub in list(found):
        found |= _subclasses(sub)
    return found


def test_every_error_lives_in_the_one_tree() -> None:
    # A class defined anywhere else would escape the mapping test above.
    for module in pkgutil.walk_packages(alliance_psi.__path__, "alliance_psi."):
        importlib.import_module(module.name)
    outside = sorted(
        f"{cls.__module__}.{cls.__qualname__}"
        for cls in _subclasses(errors.AlliancePsiError)
        if cls.__module__ != "alliance_psi.errors"
    )
    assert outside == []


def test_reasons_are_the_class_names_in_upper_snake_case() -> None:
    assert reason_of(errors.WrongEpoch) == "WRONG_EPOCH"
    assert reason_of(errors.AuditLogBroken) == "AUDIT_LOG_BROKEN"
    assert len({reason_of(cls) for cls in ALL_ERRORS}) == len(ALL_ERRORS)


def test_specific_classes_come_before_their_bases() -> None:
    order = [cls for cls, _ in STATUS_OF]
    for i, cls in enumerate(order):
        for later in order[i + 1 :]:
            assert not issubclass(later, cls) or later is cls, f"{later.__name__} is shadowed by {cls.__name__}"


@pytest.mark.parametrize(
    "exc, code",
    [
        (errors.InvalidRequest("x"), grpc.StatusCode.INVALID_ARGUMENT),
        (errors.NotAuthenticated("x"), grpc.StatusCode.UNAUTHENTICATED),
        (errors.NotAuthorized("x"), grpc.StatusCode.PERMISSION_DENIED),
        (errors.NotFound("x"), grpc.StatusCode.NOT_FOUND),
        (errors.QuotaExceeded("x", member_id="m", quota=1, used=1, requested=1), grpc.StatusCode.RESOURCE_EXHAUSTED),
        (errors.RoundClosed("x"), grpc.StatusCode.FAILED_PRECONDITION),
        (errors.WrongEpoch("x"), grpc.StatusCode.FAILED_PRECONDITION),
        (errors.Conflict("x"), grpc.StatusCode.ALREADY_EXISTS),
        (errors.MalformedElement("x"), grpc.StatusCode.INVALID_ARGUMENT),
        (errors.AuditLogBroken("x", seq=3), grpc.StatusCode.DATA_LOSS),
        (ValueError("secret detail"), grpc.StatusCode.INTERNAL),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else v.name,
)
def test_codes(exc: BaseException, code: grpc.StatusCode) -> None:
    assert status_for(exc)[0] is code


def test_identifiers_and_internal_details_never_cross() -> None:
    leaky = errors.InvalidIdentifier("bad check digit", type="id_card", value="44030519870614357X", row=4)
    assert "440305" in str(leaky)  # The local message helps the officer find the row...
    assert status_for(leaky) == (grpc.StatusCode.INVALID_ARGUMENT, "internal error")  # ...but never travels.
    assert status_for(errors.StorageError("connection to postgres://user:pw@db failed"))[1] == "internal error"
    assert status_for(errors.RoundClosed("round r1 is closed"))[1] == "round r1 is closed"


class _FakeRpcError(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


@pytest.mark.parametrize(
    "code, details, expected",
    [
        (grpc.StatusCode.PERMISSION_DENIED, "no", errors.NotAuthorized),
        # Without an ErrorInfo the code alone decides; the text never does.
        (grpc.StatusCode.RESOURCE_EXHAUSTED, "quota", errors.LimitExceeded),
        (grpc.StatusCode.FAILED_PRECONDITION, "serves key epoch 'a'", errors.RoundClosed),
        (grpc.StatusCode.FAILED_PRECONDITION, "round is closed", errors.RoundClosed),
        (grpc.StatusCode.UNAVAILABLE, "down", errors.PeerUnavailable),
        (grpc.StatusCode.DATA_LOSS, "broken", errors.AlliancePsiError),
    ],
)
def test_client_side_types(code: grpc.StatusCode, details: str, expected: type) -> None:
    err = from_rpc_error(_FakeRpcError(code, details), peer="coordinator at h:1")
    assert type(err) is expected
    assert str(err).startswith("coordinator at h:1: ")
