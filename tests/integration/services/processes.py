"""Role servers as real ``alliance-psi ... serve`` processes, for the tests whose property is about
a process: its memory, its signals, its exit, its port."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

from click.testing import CliRunner

from alliance_psi.cli._processes import ServerProcess, tls_args
from alliance_psi.cli.main import main
from tests.integration.services.conftest import AlliancePki
from tests.integration.services.harness import EPOCH

ENROLLED = ("bank-a", "bank-b", "bank-c")


def enrol(server: str, database: str, pki: AlliancePki, members: Sequence[str]) -> None:
    """The server operator's ``member add`` for each of ``members`` (a server serves no one else)."""
    for member in members:
        cert = str(pki.directory / f"{member}.pem")
        added = CliRunner().invoke(main, [server, "member", "add", "--cert", cert, "--database", database])
        assert added.exit_code == 0, added.output


def server_tls_args(pki: AlliancePki, name: str, tls_dir: Path | None) -> list[str]:
    """``--ca/--cert/--key`` for ``name``: the PKI's files, or copies in ``tls_dir`` (a test may break them)."""
    if tls_dir is None:
        return tls_args(pki.directory, name)
    tls_dir.mkdir(parents=True, exist_ok=True)
    for file in ("ca.pem", f"{name}.pem", f"{name}.key"):
        shutil.copy2(pki.directory / file, tls_dir / file)
    return tls_args(tls_dir, name)


def coordinator_process(
    tmp_path: Path,
    pki: AlliancePki,
    *options: str,
    listen: str = "127.0.0.1:0",
    enrolled: Sequence[str] = ENROLLED,
    database: str | None = None,
    tls_dir: Path | None = None,
) -> ServerProcess:
    """``coordinator serve`` on ``database`` (default: a fresh SQLite database in ``tmp_path``)
    with ``options`` added, serving the ``enrolled`` members, its TLS files copied to ``tls_dir``
    if given."""
    keys = tmp_path / "keys"
    if not (keys / "signing.key").exists():
        assert CliRunner().invoke(main, ["coordinator", "keygen", "--out", str(keys)]).exit_code == 0
    database = database or f"sqlite:///{tmp_path / 'coordinator.db'}"
    enrol("coordinator", database, pki, enrolled)
    return ServerProcess(
        [
            "coordinator",
            "serve",
            "--listen",
            listen,
            *server_tls_args(pki, "coordinator", tls_dir),
            "--signing-key",
            str(keys / "signing.key"),
            "--database",
            database,
            *options,
        ]
    )


def custodian_process(
    tmp_path: Path, pki: AlliancePki, *options: str, enrolled: Sequence[str] = ENROLLED, tls_dir: Path | None = None
) -> ServerProcess:
    """``custodian serve`` for key epoch ``EPOCH`` on a fresh SQLite database in ``tmp_path``,
    serving the ``enrolled`` members, its TLS files copied to ``tls_dir`` if given."""
    share = tmp_path / "custodian.share"
    assert CliRunner().invoke(main, ["custodian", "init-share", "--epoch", EPOCH, "--out", str(share)]).exit_code == 0
    database = f"sqlite:///{tmp_path / 'custodian.db'}"
    enrol("custodian", database, pki, enrolled)
    return ServerProcess(
        [
            "custodian",
            "serve",
            "--name",
            "custodian-1",
            "--listen",
            "127.0.0.1:0",
            *server_tls_args(pki, "custodian-1", tls_dir),
            "--key-share",
            str(share),
            "--database",
            database,
            *options,
        ]
    )


def status_kib(pid: int, field: str) -> int:
    """A memory figure of a process from /proc (``VmRSS``: now; ``VmHWM``: its peak so far), in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")
