"""A coordinator killed (SIGKILL) after a commit and before delivering its alerts delivers them
after its restart, and members resume from their last acknowledgement: real processes."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
from click.testing import CliRunner

from alliance_psi.cli.main import main
from alliance_psi.protocol.alerts import AlertKind, verify_alert
from alliance_psi.services.clients import CoordinatorClient
from alliance_psi.services.pki import spki_sha256
from tests.helpers.continuous import DeltaSender, label, token
from tests.integration.services.conftest import AlliancePki
from tests.integration.services.processes import coordinator_process

pytestmark = pytest.mark.timeout(300)

T1 = token(1)


def test_alerts_committed_before_a_kill_arrive_after_the_restart(tmp_path: Path, pki: AlliancePki) -> None:
    database = f"sqlite:///{tmp_path / 'coordinator.db'}"
    admin = CliRunner().invoke(
        main, ["coordinator", "admin", "add", "--cert", str(pki.directory / "admin.pem"), "--database", database]
    )
    assert admin.exit_code == 0, admin.output
    tls = ["--ca", str(pki.directory / "ca.pem"), "--cert", str(pki.directory / "admin.pem")]
    tls += ["--key", str(pki.directory / "admin.key")]

    def client(address: str, member: str) -> CoordinatorClient:
        return CoordinatorClient(address, pki.material(member))

    first = coordinator_process(tmp_path, pki)
    try:
        created = CliRunner().invoke(
            main,
            [
                "coordinator",
                "scope",
                "create",
                "--coordinator",
                first.address,
                *tls,
                "--name",
                "watch",
                "--epoch",
                "epoch-test",
                "--types",
                "phone",
                "--invite",
                "bank-a,bank-b,bank-c",
                "--id",
                "watch",
            ],
        )
        assert created.exit_code == 0, created.output
        with client(first.address, "bank-a") as a, client(first.address, "bank-b") as b:
            DeltaSender(a, "bank-a", "watch").send({T1: label(1)}, replace=True)
            DeltaSender(b, "bank-b", "watch").send({T1: label(2)}, replace=True)  # Committed: T1 matches.
        # Before any watch: no alert has left the coordinator.
    finally:
        first.kill()
    assert first.proc.returncode == -9

    public_key = bytes.fromhex((tmp_path / "keys" / "signing.pub").read_text().strip())
    with coordinator_process(tmp_path, pki) as second:
        with client(second.address, "bank-a") as a, contextlib.closing(a.watch_alerts()) as stream:
            batch = next(b for b in stream if b.alerts)
        pin = spki_sha256(pki.issued["bank-a"].cert_pem)
        alerts = [verify_alert(public_key, x, member_id="bank-a", member_key_pin=pin) for x in batch.alerts]
        assert [(x.sequence, x.kind, x.match_token, x.holder_count) for x in alerts] == [(1, AlertKind.MATCH, T1, 2)]
        assert alerts[0].member_key_pin == pin  # The key the coordinator enrolled for bank-a.

        with client(second.address, "bank-b") as b:
            assert b.ack_alerts(1) == (1, 1)
        second.kill()  # Killed again, after bank-b's acknowledgement.

    with coordinator_process(tmp_path, pki) as third:
        with client(third.address, "bank-c") as c:
            DeltaSender(c, "bank-c", "watch").send({T1: label(3)}, replace=True)
        with client(third.address, "bank-b") as b, contextlib.closing(b.watch_alerts()) as stream:
            batch = next(x for x in stream if x.alerts)
        pin = spki_sha256(pki.issued["bank-b"].cert_pem)
        resumed = [verify_alert(public_key, x, member_id="bank-b", member_key_pin=pin) for x in batch.alerts]
        assert [(x.sequence, x.kind, x.holder_count) for x in resumed] == [(2, AlertKind.JOINED, 3)]
