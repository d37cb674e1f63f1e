"""The operator holds the CA: its certificates alone admit nobody at a server it does not run.

Issue 9 §1: with the CA, the operator issued extra member certificates, took a full quota with
each at the custodian, and dictionary-attacked the coordinator's tokens. Every server now serves
only the parties its own operator enrolled, pinned by public key. These tests replay the attack
over real mutual TLS against the harness's servers, each with its own enrolment list.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import Engine, event, select

from alliance_psi.cli.main import main
from alliance_psi.config import TlsMaterial
from alliance_psi.crypto.oprf import blind
from alliance_psi.errors import NotAuthenticated, NotAuthorized, QuotaExceeded
from alliance_psi.protocol.coordinator import Chunk, Commit
from alliance_psi.protocol.model import Identity, Role
from alliance_psi.services import pki as pki_module
from alliance_psi.services.clients import CoordinatorClient, CustodianClient
from alliance_psi.services.enrolment import EnrolmentCheck, EnrolmentRoster, enrol
from alliance_psi.services.interceptors import Peer
from alliance_psi.storage import QuotaRepository
from alliance_psi.storage.schema import audit_log
from tests.integration.services.conftest import AlliancePki
from tests.integration.services.harness import EPOCH, custodian_name, running_alliance

CUSTODIAN = custodian_name(0)
pytestmark = pytest.mark.timeout(180)

ELEMENTS = [blind(b"phone\x00+8613900000%03d" % i).blinded_element for i in range(5)]


def audit_entries(engine: Engine, action: str) -> list[tuple[str, dict[str, object]]]:
    with engine.connect() as conn:
        rows = conn.execute(select(audit_log.c.actor, audit_log.c.detail).where(audit_log.c.action == action))
        return [(row.actor, json.loads(row.detail)) for row in rows]


def usage(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return QuotaRepository(conn).usage(EPOCH)


def material(pki: AlliancePki, cert_pem: bytes, key_pem: bytes) -> TlsMaterial:
    return TlsMaterial(ca_cert=pki.ca.cert_pem, cert=cert_pem, key=key_pem)


def reissued_with_same_key(pki: AlliancePki, name: str) -> bytes:
    """What the CA holder can do: a fresh certificate (new serial) for ``name`` over its old key."""
    old = x509.load_pem_x509_certificate(pki.issued[name].cert_pem)
    public_key = old.public_key()
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    cert_pem, serial = pki_module.issue_for_key(pki.ca, public_key, role=Role.MEMBER, name=name, valid_days=30)
    assert serial != old.serial_number
    return cert_pem


def eventually(condition: Callable[[], bool], what: str, *, limit: float = 15.0) -> None:
    """Poll ``condition`` until it holds; fail naming ``what`` after ``limit`` seconds (not a timing assertion)."""
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"still not so after {limit} s: {what}")
        time.sleep(0.05)


def test_members_the_operator_mints_are_refused_at_an_independent_custodian(tmp_path: Path, pki: AlliancePki) -> None:
    with running_alliance(tmp_path, pki, custodians=1) as alliance:
        custodian, engine = alliance.custodian_addresses[0], alliance.custodian_engines[0]
        # The operator, holding the CA, mints three members nobody enrolled at this custodian.
        minted = [pki_module.issue(pki.ca, role=Role.MEMBER, name=f"shadow-{i}") for i in range(3)]
        for i, cert in enumerate(minted):
            client = CustodianClient(custodian, material(pki, cert.cert_pem, cert.key_pem), name=CUSTODIAN)
            with pytest.raises(NotAuthorized, match=f"member shadow-{i} is not enrolled at this custodian$"):
                client.evaluate(EPOCH, ELEMENTS)
            # Even malformed elements get the refusal, not INVALID_ARGUMENT: nothing was decoded.
            with pytest.raises(grpc.RpcError) as raw:
                client.stub.Evaluate(client_request([b"\xff" * 32]), timeout=10)
            assert raw.value.code() is grpc.StatusCode.PERMISSION_DENIED
            with pytest.raises(NotAuthorized, match="not enrolled"):
                client.epoch()
            client.close()
        # An enrolled member's name re-issued by the CA holder over a key of its own choosing.
        forged = pki_module.issue(pki.ca, role=Role.MEMBER, name="bank-a")
        with CustodianClient(custodian, material(pki, forged.cert_pem, forged.key_pem), name=CUSTODIAN) as client:
            with pytest.raises(NotAuthenticated, match="key does not match the enrolled key of member bank-a"):
                client.evaluate(EPOCH, ELEMENTS)

        # Nothing was evaluated or charged for any of them; the enrolled member keeps working.
        assert usage(engine) == {}
        assert audit_entries(engine, "evaluate") == []
        with CustodianClient(custodian, pki.material("bank-a"), name=CUSTODIAN) as client:
            assert len(client.evaluate(EPOCH, ELEMENTS)) == len(ELEMENTS)
        assert usage(engine) == {"bank-a": len(ELEMENTS)}

        # Every refusal is in the custodian's audit log, once per party, key and reason.
        refused = audit_entries(engine, "enrolment.refused")
        assert sorted((actor, d["reason"]) for actor, d in refused) == [
            ("bank-a", "key mismatch"),
            ("shadow-0", "not enrolled"),
            ("shadow-1", "not enrolled"),
            ("shadow-2", "not enrolled"),
        ]
        pins = {actor: d["key_pin"] for actor, d in refused}
        assert pins["bank-a"] == pki_module.spki_sha256(forged.cert_pem).hex()
        assert all(d["method"] in {"Evaluate", "GetEpoch"} for _, d in refused)


def test_quota_belongs_to_the_enrolled_member_not_to_a_certificate(tmp_path: Path, pki: AlliancePki) -> None:
    with running_alliance(tmp_path, pki, custodians=1, quota=8) as alliance:
        custodian, engine = alliance.custodian_addresses[0], alliance.custodian_engines[0]
        renewed = material(pki, reissued_with_same_key(pki, "bank-b"), pki.issued["bank-b"].key_pem)
        with (
            CustodianClient(custodian, pki.material("bank-b"), name=CUSTODIAN) as old,
            CustodianClient(custodian, renewed, name=CUSTODIAN) as new,
        ):
            old.evaluate(EPOCH, ELEMENTS)  # 5 of 8.
            assert new.epoch().used == len(ELEMENTS)  # Same name, same key: the same member and quota.
            with pytest.raises(QuotaExceeded, match="5 of 8 used, 4 requested"):
                new.evaluate(EPOCH, [blind(b"x%d" % i).blinded_element for i in range(4)])
        assert usage(engine) == {"bank-b": len(ELEMENTS)}


def test_the_coordinator_serves_only_its_enrolled_members_and_admins(tmp_path: Path, pki: AlliancePki) -> None:
    with running_alliance(tmp_path, pki, custodians=1) as alliance:
        round_ = alliance.admin().create_round(alliance.spec(2))
        shadow = pki_module.issue(pki.ca, role=Role.MEMBER, name="shadow-c")
        chunk = Chunk(round_.round_id, 0, ((b"\x01" * 16, None),), b"\x00" * 32)
        with CoordinatorClient(alliance.coordinator_address, material(pki, shadow.cert_pem, shadow.key_pem)) as client:
            with pytest.raises(NotAuthorized, match="member shadow-c is not enrolled at this coordinator$"):
                client.upload_chunks([chunk])
            with pytest.raises(NotAuthorized, match="not enrolled at this coordinator"):
                next(client.get_result(round_.round_id))
            with pytest.raises(NotAuthorized, match="not enrolled at this coordinator"):
                client.commit(Commit(round_.round_id, 1, b"\x00" * 32, 1, b"\x00" * 32, True), "shadow-c")
        forged = pki_module.issue(pki.ca, role=Role.MEMBER, name="bank-c")
        with CoordinatorClient(alliance.coordinator_address, material(pki, forged.cert_pem, forged.key_pem)) as client:
            with pytest.raises(NotAuthenticated, match="key does not match the enrolled key of member bank-c"):
                next(client.get_result(round_.round_id))
        rogue_admin = pki_module.issue(pki.ca, role=Role.ADMIN, name="admin-2")
        with CoordinatorClient(
            alliance.coordinator_address, material(pki, rogue_admin.cert_pem, rogue_admin.key_pem)
        ) as client:
            with pytest.raises(NotAuthorized, match="admin admin-2 is not enrolled at this coordinator"):
                client.create_round(alliance.spec(2, name="rogue"))
        # Nothing of theirs was staged; the refusals are audited at the coordinator.
        with alliance.admin() as admin:
            assert [r.name for r, _ in admin.list_rounds()] == ["test round"]
        assert alliance.coordinator_role.get_round(Identity(name="admin", role=Role.ADMIN), round_.round_id)[1] == 0
        refused = audit_entries(alliance.coordinator_engine, "enrolment.refused")
        assert sorted({(actor, d["reason"]) for actor, d in refused}) == [
            ("admin-2", "not enrolled"),
            ("bank-c", "key mismatch"),
            ("shadow-c", "not enrolled"),
        ]


def test_enrolment_changes_reach_a_running_server(tmp_path: Path, pki: AlliancePki) -> None:
    """The custodian's operator runs `custodian member remove|add` on its database while it serves."""
    cert = str(pki.directory / "bank-c.pem")
    with running_alliance(tmp_path, pki, custodians=1) as alliance:
        database = alliance.custodian_engines[0].url.render_as_string(hide_password=False)
        with CustodianClient(alliance.custodian_addresses[0], pki.material("bank-c"), name=CUSTODIAN) as client:
            assert client.epoch().quota == 100_000

            def refused() -> bool:
                try:
                    client.epoch()
                except NotAuthorized:
                    return True
                return False

            removed = CliRunner().invoke(main, ["custodian", "member", "remove", "bank-c", "--database", database])
            assert removed.exit_code == 0, removed.output
            eventually(refused, "bank-c refused after its removal")
            added = CliRunner().invoke(
                main, ["custodian", "member", "add", "--cert", cert, "--quota", "3", "--database", database]
            )
            assert added.exit_code == 0, added.output
            eventually(lambda: not refused(), "bank-c served again after its enrolment")
            assert client.epoch().quota == 3  # Its own quota, not the server's default.
            with pytest.raises(QuotaExceeded, match="0 of 3 used, 5 requested"):
                client.evaluate(EPOCH, ELEMENTS)


def client_request(elements: list[bytes]):  # type: ignore[no-untyped-def]
    from alliance_psi.protocol.messages import evaluate_request

    return evaluate_request(EPOCH, elements)


# The cache and the audit coalescing, with a clock the test moves -----------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def peer(pki: AlliancePki, name: str, role: Role = Role.MEMBER) -> Peer:
    cert = pki.issued[name].cert_pem
    return Peer(Identity(name=name, role=role), pki_module.serial_of(cert), pki_module.spki_sha256(cert))


def test_the_enrolment_list_is_read_from_memory_and_refreshed(engine: Engine, pki: AlliancePki) -> None:
    enrol(engine, pki.issued["bank-a"].cert_pem, role=Role.MEMBER)
    clock = Clock()
    roster = EnrolmentRoster(engine, refresh=1.0, clock=clock)
    check = EnrolmentCheck(roster, engine, server="custodian", clock=clock)
    statements: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    for _ in range(1000):
        check(peer(pki, "bank-a"), "/alliance_psi.v1.OprfEvaluator/Evaluate")
    assert statements == []  # A thousand admitted calls, not one query.
    enrol(engine, pki.issued["bank-b"].cert_pem, role=Role.MEMBER)
    statements.clear()
    with pytest.raises(NotAuthorized):  # Not seen yet: the copy is younger than `refresh`.
        check(peer(pki, "bank-b"), "/alliance_psi.v1.OprfEvaluator/Evaluate")
    clock.now += 1.0
    check(peer(pki, "bank-b"), "/alliance_psi.v1.OprfEvaluator/Evaluate")
    check(peer(pki, "bank-b"), "/alliance_psi.v1.OprfEvaluator/Evaluate")
    assert sum("enrolments" in s for s in statements) == 1  # One re-read for both calls.
    # Admins pass a member-only check untouched (the role policy decides about them).
    check(peer(pki, "admin", Role.ADMIN), "/alliance_psi.v1.OprfEvaluator/Evaluate")


def test_refusals_are_audited_without_flooding_the_log(engine: Engine, pki: AlliancePki) -> None:
    clock = Clock()
    check = EnrolmentCheck(EnrolmentRoster(engine, clock=clock), engine, server="custodian", clock=clock)
    for _ in range(5):
        with pytest.raises(NotAuthorized):
            check(peer(pki, "bank-c"), "/alliance_psi.v1.OprfEvaluator/Evaluate")
    assert len(audit_entries(engine, "enrolment.refused")) == 1
    clock.now += 60
    with pytest.raises(NotAuthorized):
        check(peer(pki, "bank-c"), "/alliance_psi.v1.OprfEvaluator/Evaluate")
    first, second = (d for _, d in audit_entries(engine, "enrolment.refused"))
    assert (first["refused_since_last_entry"], second["refused_since_last_entry"]) == (0, 4)
    assert second == {
        "role": "member",
        "reason": "not enrolled",
        "method": "Evaluate",
        "key_pin": pki_module.spki_sha256(pki.issued["bank-c"].cert_pem).hex(),
        "serial": f"{pki.issued['bank-c'].serial:x}",
        "refused_since_last_entry": 4,
    }
