"""The coordinator process is killed after two of three members committed, restarted on the same
database, and the round completes with the planted result (SQLite and PostgreSQL)."""

from __future__ import annotations

import secrets
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import text

from alliance_psi.cli._processes import ServerProcess, tls_args
from alliance_psi.cli.main import main
from alliance_psi.protocol.member import MemberRole
from alliance_psi.services.clients import CoordinatorClient, CustodianChain, CustodianClient, RetryPolicy
from alliance_psi.services.member import MemberNode
from tests.e2e.support import coordinator_command, coordinator_keys, enrol
from tests.integration.services.harness import CATEGORIES, EPOCH, MEMBERS, Planted, load, round_spec, sqlite_engine

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(params=["sqlite", "postgresql"])
def coordinator_db(request: pytest.FixtureRequest, tmp_path: Path):  # type: ignore[no-untyped-def]
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'coordinator.db'}"
        return
    admin = request.getfixturevalue("pg_admin_engine")
    name = f"restart_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    yield admin.url.set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def test_round_survives_a_coordinator_crash(tmp_path: Path, pki, coordinator_db: str) -> None:  # type: ignore[no-untyped-def]
    public_key = coordinator_keys(tmp_path / "keys")
    assert (
        CliRunner()
        .invoke(main, ["custodian", "init-share", "--epoch", EPOCH, "--out", str(tmp_path / "share")])
        .exit_code
        == 0
    )
    coordinator_cmd = coordinator_command(pki.directory, tmp_path / "keys", coordinator_db, "--tick", "0.2")
    custodian_db = f"sqlite:///{tmp_path / 'custodian.db'}"
    # Each server's operator enrols the members (and admins) it serves.
    enrol("custodian", custodian_db, pki.directory, *MEMBERS)
    enrol("coordinator", coordinator_db, pki.directory, *MEMBERS, admin="admin")
    custodian = ServerProcess(
        [
            "custodian",
            "serve",
            "--name",
            "custodian-1",
            "--listen",
            "127.0.0.1:0",
            *tls_args(pki.directory, "custodian-1"),
            "--key-share",
            str(tmp_path / "share"),
            "--database",
            custodian_db,
        ]
    )
    coordinator = ServerProcess(coordinator_cmd)
    planted = Planted.make()
    engines = {}
    for i, member in enumerate(MEMBERS):
        engines[member] = sqlite_engine(tmp_path / f"{member}.db")
        load(engines[member], sorted(planted.holdings[member]), CATEGORIES[i])

    def node(member: str, address: str) -> MemberRole:
        tls = pki.material(member)
        retry = RetryPolicy(attempts=3, base=0.1, timeout=30)
        return MemberNode(
            member_id=member,
            engine=engines[member],
            coordinator=CoordinatorClient(address, tls, retry),
            custodians=CustodianChain([CustodianClient(custodian.address, tls, retry, name="custodian-1")]),
            coordinator_key=public_key,
            nonce_key=secrets.token_bytes(32),
            workers=1,
            batch_size=50,
            chunk_size=20,
        ).role

    try:
        spec = round_spec(2)
        admin = CoordinatorClient(coordinator.address, pki.material("admin"))
        round_id = admin.create_round(spec).round_id
        for member in MEMBERS[:2]:
            first = node(member, coordinator.address)
            first.tokenize(EPOCH, ["phone"])
            assert first.submit(first.coordinator.get_round(round_id)[0]).set_count == len(planted.holdings[member])
        coordinator.kill()
        coordinator = ServerProcess(coordinator_cmd)
        last = node(MEMBERS[2], coordinator.address)
        outcome = last.join(round_id, wait=60)
        assert {lead.canonical: lead.holder_count for lead in outcome.leads} == planted.expected(MEMBERS[2], 2)
        for member in MEMBERS[:2]:
            again = node(member, coordinator.address)
            again.fetch_result(round_id, wait=30)
            leads = again.leads(again.kept_result(round_id))
            assert {lead.canonical: lead.holder_count for lead in leads} == planted.expected(member, 2)
    finally:
        coordinator.stop()
        custodian.stop()
