"""The custodian's gRPC servicer: decode, call ``CustodianRole``, encode. Nothing else."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import grpc
from sqlalchemy import Engine

from alliance_psi.errors import QuotaExceeded
from alliance_psi.protocol import messages
from alliance_psi.protocol._pb import custodian_pb2_grpc
from alliance_psi.protocol.custodian import CustodianRole
from alliance_psi.protocol.messages import pb_custodian
from alliance_psi.protocol.model import Role
from alliance_psi.protocol.ports import Charge
from alliance_psi.services.interceptors import identity_of
from alliance_psi.services.server import Registration, guarded
from alliance_psi.storage import AuditLog, QuotaRepository

__all__ = ["OprfEvaluatorServicer", "SqlQuotaLedger", "custodian_registration"]

SERVICE = "alliance_psi.v1.OprfEvaluator"
_MEMBERS = frozenset({Role.MEMBER})


class SqlQuotaLedger:
    """Quota charges and their audit entries, in one transaction per batch.

    Every batch leaves an audit entry: ``evaluate`` (with ``charged`` 0 for a batch sent again),
    ``evaluate.refused`` (over quota, in a transaction of its own since the charge rolled back)
    or ``evaluate.refund`` (charged, then not evaluated). Counts and digests only.
    """

    def __init__(self, engine: Engine, custodian: str) -> None:
        self.engine, self.custodian = engine, custodian

    def charge(
        self, key_epoch: str, member_id: str, batch_digest: bytes, count: int, quota: int, free_resent: int
    ) -> Charge:
        now = datetime.now(UTC)
        try:
            with self.engine.begin() as conn:
                charge = QuotaRepository(conn).charge_batch(
                    key_epoch, member_id, batch_digest, count, quota, at=now, free_resent=free_resent
                )
                AuditLog(conn).append(
                    actor=member_id,
                    action="evaluate",
                    at=now,
                    detail={
                        "key_epoch": key_epoch,
                        "elements": count,
                        "charged": count if charge.charged else 0,
                        "used": charge.used,
                        "batch": batch_digest.hex(),
                    },
                )
                return charge
        except QuotaExceeded as exc:
            with self.engine.begin() as conn:
                AuditLog(conn).append(
                    actor=member_id,
                    action="evaluate.refused",
                    at=now,
                    detail={"key_epoch": key_epoch, "requested": count, "used": exc.used, "quota": quota},
                )
            raise

    def refund(self, key_epoch: str, member_id: str, batch_digest: bytes, reason: str) -> None:
        with self.engine.begin() as conn:
            used = QuotaRepository(conn).refund_batch(key_epoch, member_id, batch_digest)
            if used is not None:
                AuditLog(conn).append(
                    actor=member_id,
                    action="evaluate.refund",
                    at=datetime.now(UTC),
                    detail={"key_epoch": key_epoch, "used": used, "batch": batch_digest.hex(), "reason": reason},
                )

    def used(self, key_epoch: str, member_id: str) -> int:
        # A read: on SQLite it need not wait for, nor hold, the write lock.
        with self.engine.execution_options(sqlite_begin="DEFERRED").connect() as conn:
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
        evaluation = self.role.evaluate(
            identity_of(context),
            request.key_epoch,
            messages.evaluate_from_pb(request),
            subset=messages.evaluate_subset_from_pb(request),
            prove=request.prove,
        )
        return pb_custodian.EvaluateResponse(
            batch_id=request.batch_id, elements=evaluation.elements, used=evaluation.used, proof=evaluation.proof
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
    return Registration(
        custodian_pb2_grpc.add_OprfEvaluatorServicer_to_server,
        OprfEvaluatorServicer(role),
        SERVICE,
        {"GetEpoch": _MEMBERS, "Evaluate": _MEMBERS, "EvaluateStream": _MEMBERS},
        request_limits={"Evaluate": messages.EVALUATE_REQUEST, "EvaluateStream": messages.EVALUATE_REQUEST},
    )
