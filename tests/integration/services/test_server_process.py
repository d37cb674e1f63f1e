"""A server process stops when told, whatever its callers did, and never shares its port.

Before: a coordinator that had received undecodable streaming messages never exited on SIGTERM
(grpcio kept the aborted calls forever), and a second coordinator on the same port started
happily (``grpc.so_reuseport``), taking half of the first one's connections.
"""

from __future__ import annotations

import sqlite3
import subprocess
import time
from pathlib import Path

import grpc
import pytest

from alliance_psi.cli._processes import ServerProcess
from alliance_psi.errors import AlliancePsiError, ConfigurationError
from alliance_psi.protocol.messages import pb_coordinator
from alliance_psi.services.coordinator import coordinator_registration
from alliance_psi.services.server import run_server
from alliance_psi.services.tls import secure_channel
from tests.integration.services.conftest import AlliancePki
from tests.integration.services.harness import COORDINATOR, running_alliance
from tests.integration.services.processes import coordinator_process, custodian_process

pytestmark = pytest.mark.timeout(300)

# Generous bounds for a busy machine: the documented exit comes within 2 * grace + 1 s.
EXIT_WAIT = 60


def stop_and_wait(server: ServerProcess) -> int:
    server.proc.terminate()
    try:
        return server.proc.wait(timeout=EXIT_WAIT)
    except subprocess.TimeoutExpired:
        server.kill()
        pytest.fail(f"the server was still running {EXIT_WAIT} s after SIGTERM")


def test_sigterm_after_undecodable_streams_stops_the_coordinator(tmp_path: Path, pki: AlliancePki) -> None:
    # The old hang was a race inside grpcio (about one run in three): several runs, with 1 to 6 calls.
    for run in range(6):
        server = coordinator_process(tmp_path / f"run-{run}", pki, "--shutdown-grace-seconds", "1")
        codes = set()
        with secure_channel(server.address, pki.material("bank-a"), server=COORDINATOR) as channel:
            upload = channel.stream_unary("/alliance_psi.v1.Coordinator/UploadChunks")
            for _ in range(run + 1):
                with pytest.raises(grpc.RpcError) as refused:
                    upload(iter([b"\xff\xff\xff garbage", b"\x0a\x05"]), timeout=30)
                codes.add(refused.value.code())
        assert stop_and_wait(server) == 0, f"run {run}"
        assert codes == {grpc.StatusCode.INVALID_ARGUMENT}


@pytest.mark.parametrize("role", ["coordinator", "custodian"])
def test_sigterm_is_logged_as_node_run_logs_it(tmp_path: Path, pki: AlliancePki, role: str) -> None:
    start = coordinator_process if role == "coordinator" else custodian_process
    server = start(tmp_path, pki, "--shutdown-grace-seconds", "1")
    assert stop_and_wait(server) == 0
    deadline = time.monotonic() + EXIT_WAIT  # The exited process's last lines may still be in the pipe.
    while not any("serve: stopped" in line for line in server.lines) and time.monotonic() < deadline:
        time.sleep(0.05)
    said = [line.strip() for line in server.lines]
    assert f"{role} serve: SIGTERM received, stopping" in said, said[-5:]
    assert said[-1] == f"{role} serve: stopped", said[-5:]


def test_a_call_stuck_past_the_grace_does_not_hold_the_process(tmp_path: Path, pki: AlliancePki) -> None:
    server = coordinator_process(tmp_path, pki, "--shutdown-grace-seconds", "1")
    # Another process holds the database: the coordinator's next transaction waits for SQLite's
    # 30 s busy timeout, where no cancelling reaches it.
    holder = sqlite3.connect(tmp_path / "coordinator.db", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    with secure_channel(server.address, pki.material("bank-a"), server=COORDINATOR) as channel:
        list_rounds = channel.unary_unary(
            "/alliance_psi.v1.Coordinator/ListRounds",
            request_serializer=pb_coordinator.ListRoundsRequest.SerializeToString,
        )
        with pytest.raises(grpc.RpcError) as waiting:
            list_rounds(pb_coordinator.ListRoundsRequest(), timeout=3)
        assert waiting.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED  # The server is stuck in the lock.
    try:
        assert stop_and_wait(server) == 1
    finally:
        holder.rollback()
        holder.close()
    assert any("exiting without waiting further" in line for line in server.lines), server.lines[-5:]


def test_a_second_server_cannot_take_the_port(tmp_path: Path, pki: AlliancePki) -> None:
    with coordinator_process(tmp_path / "first", pki) as first:
        with pytest.raises(AlliancePsiError) as failed:
            coordinator_process(tmp_path / "second", pki, listen=first.address)
        assert f"Error: cannot listen on {first.address}: the port is in use" in str(failed.value)
    (tmp_path / "in-process").mkdir()
    with running_alliance(tmp_path / "in-process", pki, custodians=1) as alliance:
        with pytest.raises(ConfigurationError, match="the port is in use \\(servers never share a port\\)"):
            with run_server(
                [coordinator_registration(alliance.coordinator_role)],
                address=alliance.coordinator_address,
                tls=pki.material("coordinator"),
            ):
                pass
