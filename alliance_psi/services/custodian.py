"""The custodian's gRPC servicer: decode, call ``CustodianRole``, encode. Nothing else."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import grpc
from sqlalchemy import Engine

from alliance_psi.protocol import messages
from alliance_psi.protocol._pb import custodian_pb2_grpc
from alliance_psi.protocol.custodian import CustodianRole
from alliance_psi.protocol.messages import pb_custodian
from alliance_psi.protocol.model import Role
from alliance_psi.services.interceptors import identity_of
from alliance_psi.services.server import Registration, guarded
from alliance_psi.storage import AuditLog, QuotaRepository

__all__ = ["OprfEvaluatorServicer", "SqlQuotaLedger", "custodian_registration"]

SERVICE = "alliance_psi.v1.OprfEvaluator"
_MEMBERS = frozenset({Role.MEMBER})


class SqlQuotaLedger:
    """Quota reservations and their audit entries, in one transaction per batch."""

    def __init__(self, engine: Engine, custodian: str) -> None:
        self.engine, self.custodian = engine, custodian

    def reserve(self, key_epoch: str, member_id: str, count: int, quota: int) -> int:
        with self.engine.begin() as conn:
            used = QuotaRepository(conn).reserve(key_epoch, member_id, count, quota)
            AuditLog(conn).append(
                actor=member_id,
                action="evaluate",
                at=datetime.now(UTC),
                detail={"key_epoch": key_epoch, "elements": count, "used": used},
            )
            return used

    def used(self, key_epoch: str, member_id: str) -> int:
        with self.engine.connect() as conn:
            return QuotaRepository(conn).used(key_epoch, member_id)


class OprfEvaluatorServicer(custodian_pb2_grpc.OprfEvaluatorServicer):
    def __init__(self, role: CustodianRole) -> None:
        self.role = role

    def GetEpoch(self, request: pb_custodian.GetEpochRequest, context: grpc.ServicerContext) -> pb_custodian.EpochInfo:
        with guarded(context):
            return messages.epoch_to_pb(self.role.epoch_status(identity_of(context)))

    def _evaluate(
        self, request: pb_custodian.EvaluateRequest, context: grpc.ServicerContext
    ) -> pb_custodian.EvaluateResponse:
        evaluation = self.role.evaluate(identity_of(context), request.key_epoch, list(request.elements))
        return pb_custodian.EvaluateResponse(
            batch_id=request.batch_id, elements=evaluation.elements, used=evaluation.used
        )

    def Evaluate(
        self, request: pb_custodian.EvaluateRequest, context: grpc.ServicerContext
    ) -> pb_custodian.EvaluateResponse:
        with guarded(context):
            return self._evaluate(request, context)

    def EvaluateStream(
        self, request_iterator: Iterator[pb_custodian.EvaluateRequest], context: grpc.ServicerContext
    ) -> Iterator[pb_custodian.EvaluateResponse]:
        with guarded(context):
            for request in request_iterator:
                yield self._evaluate(request, context)


def custodian_registration(role: CustodianRole) -> Registration:
    return (
        custodian_pb2_grpc.add_OprfEvaluatorServicer_to_server,
        OprfEvaluatorServicer(role),
        SERVICE,
        {"GetEpoch": _MEMBERS, "Evaluate": _MEMBERS, "EvaluateStream": _MEMBERS},
    )
