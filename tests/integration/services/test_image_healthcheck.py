"""The container image's health check (deploy/image/healthcheck.py) against real servers over TLS."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from alliance_psi.protocol.model import Role
from alliance_psi.services import pki as pki_module
from alliance_psi.services.pki import identity_dns_name
from tests.integration.services.harness import running_alliance

pytestmark = pytest.mark.timeout(120)
SCRIPT = Path(__file__).resolve().parents[3] / "deploy" / "image" / "healthcheck.py"


def _check(address: str | None, ca: Path | None = None, server: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALLIANCE_PSI_HEALTH_")}
    for key, value in (("ADDRESS", address), ("CA", ca), ("SERVER", server)):
        if value is not None:
            env[f"ALLIANCE_PSI_HEALTH_{key}"] = str(value)
    return subprocess.run(
        [sys.executable, str(SCRIPT)], env=env, capture_output=True, text=True, timeout=30, check=False
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_healthy_servers_pass_and_a_wrong_server_or_ca_fails(tmp_path: Path, pki) -> None:  # type: ignore[no-untyped-def]
    own_ca = pki_module.init_ca("Independent custodian-2")
    alliance_ca = tmp_path / "ca.pem"
    alliance_ca.write_bytes(pki.ca.cert_pem)
    with running_alliance(tmp_path, pki, custodians=2, own_cas={"custodian-2": own_ca}) as alliance:
        coordinator = identity_dns_name(Role.COORDINATOR, "coordinator")
        custodian_2 = identity_dns_name(Role.CUSTODIAN, "custodian-2")
        custodian_2_ca = alliance.custodian_cas["custodian-2"]

        assert _check(alliance.coordinator_address, alliance_ca, coordinator).returncode == 0
        assert _check(alliance.custodian_addresses[1], custodian_2_ca, custodian_2).returncode == 0

        # custodian-2 serves a certificate of its own CA: the alliance CA does not vouch for it.
        refused = _check(alliance.custodian_addresses[1], alliance_ca, custodian_2)
        assert refused.returncode == 1
        assert "certificate verify failed" in refused.stderr
        # Another party at the address: the name does not match.
        other = _check(alliance.custodian_addresses[1], custodian_2_ca, coordinator)
        assert other.returncode == 1
        assert "coordinator.coordinator.alliance-psi.internal" in other.stderr


def test_nothing_listening_fails_and_an_unchecked_container_passes(tmp_path: Path) -> None:
    down = _check(f"127.0.0.1:{_free_port()}", tmp_path / "ca.pem", "coordinator.coordinator.alliance-psi.internal")
    assert down.returncode == 1
    assert down.stderr.startswith("unhealthy: 127.0.0.1:")

    missing = _check("127.0.0.1:7100")
    assert missing.returncode == 1
    assert "ALLIANCE_PSI_HEALTH_CA is not set" in missing.stderr

    assert _check(None).returncode == 0
