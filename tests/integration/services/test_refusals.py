"""A refused call leaves a trace: a log line and an audit entry naming the method, the peer and its
certificate serial and the reason, never request data, and a flood of refusals a bounded one.

Before: calls refused for a revoked certificate, a wrong role or a spent quota left no trace.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import grpc
import pytest
from sqlalchemy import Engine, select

from alliance_psi.crypto.oprf import blind
from alliance_psi.protocol.messages import pb_coordinator
from alliance_psi.protocol.model import Role
from alliance_psi.services.refusals import AUDIT_ACTION
from alliance_psi.services.tls import secure_channel
from alliance_psi.storage import AuditLog, make_engine
from alliance_psi.storage.schema import audit_log
from tests.integration.services.conftest import AlliancePki
from tests.integration.services.harness import COORDINATOR, EPOCH, custodian, custodian_name, running_alliance

pytestmark = pytest.mark.timeout(180)

MARKER = "13915274680"  # Looks like a phone number: request data that must never be logged.


def refusals(engine: Engine) -> list[tuple[str, dict[str, object]]]:
    with engine.connect() as conn:
        AuditLog(conn).verify()  # The entries are part of the hash chain.
        rows = conn.execute(select(audit_log.c.actor, audit_log.c.detail).where(audit_log.c.action == AUDIT_ACTION))
        return [(row.actor, json.loads(row.detail)) for row in rows]


def test_refused_calls_are_logged_and_audited_without_request_data(
    tmp_path: Path, pki: AlliancePki, caplog: pytest.LogCaptureFixture
) -> None:
    revoked = pki.issue(Role.MEMBER, "bank-refused-audit")
    caplog.set_level(logging.WARNING, logger="alliance_psi.services.refusals")
    with running_alliance(tmp_path, pki, custodians=1, quota=10, crl=pki.revoke("bank-refused-audit")) as alliance:
        custodian_engine_path = tmp_path / f"{custodian_name(0)}.db"
        request = pb_coordinator.GetRoundRequest(round_id=f"r-{MARKER}").SerializeToString()
        with secure_channel(
            alliance.coordinator_address, pki.material("bank-refused-audit"), server=COORDINATOR
        ) as channel:
            get_round = channel.unary_unary("/alliance_psi.v1.Coordinator/GetRound")
            for _ in range(300):  # A flood: two audit entries at most, not three hundred.
                with pytest.raises(grpc.RpcError) as refused:
                    get_round(request, timeout=30)
                assert refused.value.code() is grpc.StatusCode.UNAUTHENTICATED
        with secure_channel(alliance.coordinator_address, pki.material("bank-a"), server=COORDINATOR) as channel:
            with pytest.raises(grpc.RpcError) as refused:
                channel.unary_unary("/alliance_psi.v1.Coordinator/CreateRound")(request, timeout=30)
            assert refused.value.code() is grpc.StatusCode.PERMISSION_DENIED
        with secure_channel(alliance.custodian_addresses[0], pki.material("bank-a"), server=custodian()) as channel:
            evaluate = channel.unary_unary("/alliance_psi.v1.OprfEvaluator/Evaluate")
            elements = b"".join(b"\x12\x20" + blind(b"%d" % i).blinded_element for i in range(11))
            with pytest.raises(grpc.RpcError) as refused:
                evaluate(b"\x0a" + bytes([len(EPOCH)]) + EPOCH.encode() + elements, timeout=30)
            assert refused.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED  # Quota 10, 11 asked.
    # The servers have stopped: every refusal is flushed to the audit logs.
    coordinator = refusals(alliance.coordinator_engine)
    flood = [detail for actor, detail in coordinator if actor == "bank-refused-audit"]
    assert 1 <= len(flood) <= 2 and sum(int(d["count"]) for d in flood) == 300  # type: ignore[call-overload]
    assert {(d["method"], d["code"], d["reason"], d["role"], d["serial"]) for d in flood} == {
        ("GetRound", "UNAUTHENTICATED", "certificate revoked", "member", f"{revoked.serial:#x}")
    }
    assert [(d["method"], d["code"], d["reason"]) for actor, d in coordinator if actor == "bank-a"] == [
        ("CreateRound", "PERMISSION_DENIED", "role member may not call CreateRound")
    ]
    custodian_entries = refusals(make_engine(f"sqlite:///{custodian_engine_path}"))
    assert [(actor, d["method"], d["code"]) for actor, d in custodian_entries] == [
        ("bank-a", "Evaluate", "RESOURCE_EXHAUSTED")
    ]
    assert "quota" in str(custodian_entries[0][1]["reason"])
    assert MARKER not in json.dumps(coordinator + custodian_entries)
    lines = [r.getMessage() for r in caplog.records if r.name == "alliance_psi.services.refusals"]
    assert (
        f"refused /alliance_psi.v1.Coordinator/GetRound from member:bank-refused-audit (serial {revoked.serial:#x}): "
        "UNAUTHENTICATED: certificate revoked"
    ) in lines
    assert len(lines) <= 6 and not any(MARKER in line for line in lines)
