"""Custodian replicas: two ``custodian serve`` processes with one key share and one PostgreSQL quota
store, called round-robin by members' clients over both addresses, never let a member past its quota."""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine, text

from alliance_psi.cli._options import PeerAddress
from alliance_psi.cli._processes import ServerProcess, tls_args
from alliance_psi.cli.main import main
from alliance_psi.config import PeerEndpoint
from alliance_psi.crypto.suite import RISTRETTO255_SHA512
from alliance_psi.errors import QuotaExceeded
from alliance_psi.services.clients import CustodianClient, RetryPolicy
from alliance_psi.storage import QuotaRepository, make_engine
from tests.helpers.dns_server import serving_a_records
from tests.integration.services.conftest import AlliancePki
from tests.integration.services.harness import EPOCH
from tests.integration.services.monitored import handled, scrape
from tests.integration.services.processes import enrol

MEMBERS = ("bank-a", "bank-b", "bank-c")
QUOTA = 1_500
BATCH = 50
THREADS_PER_MEMBER = 3


@pytest.fixture
def quota_store(pg_admin_engine: Engine) -> Iterator[str]:
    """The URL of a fresh PostgreSQL database, the replicas' shared quota store."""
    name = f"test_{uuid.uuid4().hex[:16]}"
    with pg_admin_engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    yield pg_admin_engine.url.set(database=name).render_as_string(hide_password=False)
    with pg_admin_engine.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def replica(pki: AlliancePki, share: Path, database: str, *options: str, listen: str = "127.0.0.1:0") -> ServerProcess:
    return ServerProcess(
        [
            "custodian",
            "serve",
            "--name",
            "custodian-1",
            "--listen",
            listen,
            *options,
            *tls_args(pki.directory, "custodian-1"),
            "--key-share",
            str(share),
            "--database",
            database,
            "--quota",
            str(QUOTA),
        ]
    )


def cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def fresh_batch() -> list[bytes]:
    suite = RISTRETTO255_SHA512
    return [suite.hash_to_group(os.urandom(32)) for _ in range(BATCH)]


def test_replicas_sharing_one_quota_store_never_let_a_member_past_its_quota(
    pki: AlliancePki, quota_store: str, tmp_path: Path
) -> None:
    share = tmp_path / "custodian.share"
    assert CliRunner().invoke(main, ["custodian", "init-share", "--epoch", EPOCH, "--out", str(share)]).exit_code == 0
    enrol("custodian", quota_store, pki, MEMBERS)
    with replica(pki, share, quota_store) as first, replica(pki, share, quota_store) as second:
        ticks = {p.proc.pid: cpu_ticks(p.proc.pid) for p in (first, second)}
        evaluated: dict[str, int] = dict.fromkeys(MEMBERS, 0)
        refused: dict[str, int] = dict.fromkeys(MEMBERS, 0)
        lock = threading.Lock()
        barrier = threading.Barrier(len(MEMBERS) * THREADS_PER_MEMBER)
        errors: list[BaseException] = []

        def hammer(member: str) -> None:
            # Every thread its own channel over both replicas, calls round-robin.
            client = CustodianClient(
                first.address,
                pki.material(member),
                RetryPolicy(attempts=1, timeout=120),
                name="custodian-1",
                replicas=[second.address],
            )
            try:
                barrier.wait()
                while True:
                    try:
                        answer = client.evaluate(EPOCH, fresh_batch())
                    except QuotaExceeded:
                        with lock:
                            refused[member] += 1
                        return
                    assert len(answer) == BATCH
                    with lock:
                        evaluated[member] += BATCH
            except BaseException as exc:  # noqa: BLE001 - reported by the main thread.
                errors.append(exc)
            finally:
                client.close()

        threads = [threading.Thread(target=hammer, args=(m,)) for m in MEMBERS for _ in range(THREADS_PER_MEMBER)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=600)
        assert not errors, errors
        spent = {pid: cpu_ticks(pid) - before for pid, before in ticks.items()}

    # Each member got exactly its quota evaluated, never more, however its calls were spread.
    assert evaluated == dict.fromkeys(MEMBERS, QUOTA)
    assert refused == dict.fromkeys(MEMBERS, THREADS_PER_MEMBER)
    engine = make_engine(quota_store)
    try:
        with engine.connect() as conn:
            assert QuotaRepository(conn).usage(EPOCH) == dict.fromkeys(MEMBERS, QUOTA)
    finally:
        engine.dispose()
    # Both replicas evaluated: 90 batches of 50 elements were spread over the two processes (a
    # replica that took no call spends about nothing; each batch costs ~50 scalar multiplications).
    assert all(ticks_spent >= 10 for ticks_spent in spent.values()), spent


def test_replicas_behind_one_name_with_several_addresses_each_take_calls(
    pki: AlliancePki, quota_store: str, tmp_path: Path
) -> None:
    # A Kubernetes headless Service: one name, one A record per replica. The member gives that one
    # address; its channel must reach every replica, not only the first address (pick_first).
    share = tmp_path / "custodian.share"
    assert CliRunner().invoke(main, ["custodian", "init-share", "--epoch", EPOCH, "--out", str(share)]).exit_code == 0
    enrol("custodian", quota_store, pki, MEMBERS[:1])
    metrics = ("--metrics-listen", "127.0.0.1:0")
    with replica(pki, share, quota_store, *metrics) as first:
        second_listen = f"127.0.0.2:{first.port}"  # Another loopback address, the same port.
        with (
            replica(pki, share, quota_store, *metrics, listen=second_listen) as second,
            serving_a_records("custodian-1.alliance.test", ["127.0.0.1", "127.0.0.2"]) as dns_port,
        ):
            client = CustodianClient(
                f"dns://127.0.0.1:{dns_port}/custodian-1.alliance.test:{first.port}",
                pki.material(MEMBERS[0]),
                RetryPolicy(attempts=1, timeout=60),
                name="custodian-1",
            )
            with client:
                for _ in range(8):
                    assert len(client.evaluate(EPOCH, fresh_batch())) == BATCH
            calls = [handled(scrape(p.metrics_port), "Evaluate") for p in (first, second) if p.metrics_port]
    assert sum(calls) == 8
    assert all(count > 0 for count in calls), calls


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("custodian-1@10.0.0.5:7101+10.0.0.6:7101", ("10.0.0.5:7101", ("10.0.0.6:7101",))),
        ({"name": "custodian-1", "address": ["10.0.0.5:7101", "h:7101"]}, ("10.0.0.5:7101", ("h:7101",))),
        ("custodian-1@10.0.0.5:7101", ("10.0.0.5:7101", ())),
    ],
)
def test_a_custodians_replicas_are_given_with_its_address(value: Any, expected: tuple[str, tuple[str, ...]]) -> None:
    peer = PeerAddress("custodian").convert(value, None, None)
    assert isinstance(peer, PeerEndpoint)
    assert (peer.address, peer.replicas) == expected
    assert peer.addresses == (expected[0], *expected[1])


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("custodian-1@10.0.0.5:7101+10.0.0.5:7101", "an address is given twice"),
        ("custodian-1@10.0.0.5:7101+nowhere", "'nowhere' is not HOST:PORT"),
        ({"name": "custodian-1", "address": ["10.0.0.5:7101", 7102]}, "a table needs exactly the text keys"),
    ],
)
def test_bad_replica_addresses_are_refused_naming_them(value: Any, message: str) -> None:
    import click

    with pytest.raises(click.BadParameter, match=message):
        PeerAddress("custodian").convert(value, None, None)
