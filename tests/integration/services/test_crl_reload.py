"""A certificate revoked with ``pki revoke`` while a server runs is refused within the reload
interval, or at once on SIGHUP; a CRL that turns invalid keeps the list loaded before; a server
never starts with an invalid CRL. Real ``coordinator serve`` processes.

Before: the CRL was read once at start, so a revoked member kept being served until a restart.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import grpc
import pytest
from click.testing import CliRunner
from grpc_health.v1 import health_pb2, health_pb2_grpc

from alliance_psi.cli.main import main
from alliance_psi.errors import AlliancePsiError
from alliance_psi.protocol.model import Role
from alliance_psi.services.tls import secure_channel
from tests.integration.services.conftest import AlliancePki
from tests.integration.services.harness import COORDINATOR
from tests.integration.services.processes import coordinator_process

pytestmark = pytest.mark.timeout(300)

REVOKED = (grpc.StatusCode.UNAUTHENTICATED, "certificate revoked")


def health(address: str, pki: AlliancePki, name: str) -> tuple[grpc.StatusCode, str]:
    """How the server answers a health check from ``name`` (a party it serves may ask)."""
    with secure_channel(address, pki.material(name), server=COORDINATOR) as channel:
        try:
            health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=30)
        except grpc.RpcError as err:
            return err.code(), err.details()
    return grpc.StatusCode.OK, ""


def eventually(address: str, pki: AlliancePki, name: str, expected: tuple[grpc.StatusCode, str]) -> None:
    """Wait (60 s at most: a bound for a busy machine, not a timing claim) for ``expected``."""
    deadline = time.monotonic() + 60
    while (answer := health(address, pki, name)) != expected:
        if time.monotonic() > deadline:
            pytest.fail(f"{name} still gets {answer}, not {expected}")
        time.sleep(0.2)


def revoke(pki: AlliancePki, crl: Path, name: str) -> None:
    result = CliRunner().invoke(
        main, ["pki", "revoke", "--ca-dir", str(pki.directory), "--crl", str(crl), str(pki.directory / f"{name}.pem")]
    )
    assert result.exit_code == 0, result.output


def members(pki: AlliancePki, prefix: str, count: int) -> list[str]:
    names = [f"{prefix}-{i}" for i in range(count)]
    for name in names:
        pki.issue(Role.MEMBER, name)
    return names


def test_a_certificate_revoked_while_serving_is_refused_within_the_interval(tmp_path: Path, pki: AlliancePki) -> None:
    early, later, other = members(pki, "crl-poll", 3)
    crl = tmp_path / "crl.pem"
    revoke(pki, crl, early)
    with coordinator_process(
        tmp_path, pki, "--crl", str(crl), "--crl-reload-seconds", "1", enrolled=(early, later, other)
    ) as server:
        assert health(server.address, pki, early) == REVOKED
        assert health(server.address, pki, later) == (grpc.StatusCode.OK, "")
        revoke(pki, crl, later)
        eventually(server.address, pki, later, REVOKED)
        # A CRL file that turns invalid: the list loaded before stays, and the error is logged.
        crl.write_bytes(b"-----BEGIN X509 CRL-----\nnot a CRL\n-----END X509 CRL-----\n")
        deadline = time.monotonic() + 60
        while not any("not reloaded, still refusing the 2 serials" in line for line in server.lines):
            assert time.monotonic() < deadline, server.lines[-5:]
            time.sleep(0.2)
        assert health(server.address, pki, later) == REVOKED
        assert health(server.address, pki, other) == (grpc.StatusCode.OK, "")


def test_sighup_reloads_the_crl_at_once(tmp_path: Path, pki: AlliancePki) -> None:
    early, later = members(pki, "crl-hup", 2)
    crl = tmp_path / "crl.pem"
    revoke(pki, crl, early)
    with coordinator_process(
        tmp_path, pki, "--crl", str(crl), "--crl-reload-seconds", "3600", enrolled=(early, later)
    ) as server:
        assert health(server.address, pki, later) == (grpc.StatusCode.OK, "")
        revoke(pki, crl, later)
        server.proc.send_signal(signal.SIGHUP)
        eventually(server.address, pki, later, REVOKED)
        assert server.proc.poll() is None  # SIGHUP reloads; it does not stop the server.


def test_a_server_does_not_start_with_an_invalid_crl(tmp_path: Path, pki: AlliancePki) -> None:
    crl = tmp_path / "crl.pem"
    crl.write_bytes(b"-----BEGIN X509 CRL-----\nnot a CRL\n-----END X509 CRL-----\n")
    with pytest.raises(AlliancePsiError) as failed:
        coordinator_process(tmp_path, pki, "--crl", str(crl))
    assert f"Error: CRL {crl}: not a PEM certificate revocation list" in str(failed.value)


def test_an_older_crl_put_back_does_not_un_revoke(tmp_path: Path, pki: AlliancePki) -> None:
    # Adversary round 2, #8: an older CRL, signed by the CA and copied in atomically, silently
    # un-revoked the certificates revoked since. Revocation only grows; a shorter list is refused.
    early, later = members(pki, "crl-old", 2)
    crl, older = tmp_path / "crl.pem", tmp_path / "older.pem"
    revoke(pki, crl, early)
    older.write_bytes(crl.read_bytes())
    with coordinator_process(
        tmp_path, pki, "--crl", str(crl), "--crl-reload-seconds", "3600", enrolled=(early, later)
    ) as server:
        revoke(pki, crl, later)
        server.proc.send_signal(signal.SIGHUP)
        eventually(server.address, pki, later, REVOKED)
        crl.write_bytes(older.read_bytes())  # Put the older CRL back.
        server.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 60
        while not any("no longer revokes 1 of the 2 serials in force" in line for line in server.lines):
            assert time.monotonic() < deadline, server.lines[-5:]
            time.sleep(0.2)
        assert health(server.address, pki, later) == REVOKED
        assert health(server.address, pki, early) == REVOKED
