"""What the end-to-end tests share: the coordinator's keys, its ``serve`` command line, enrolment."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from alliance_psi.cli._processes import tls_args
from alliance_psi.cli.main import main


def coordinator_keys(directory: Path) -> bytes:
    """Run ``coordinator keygen --out directory``; return the raw public key."""
    assert CliRunner().invoke(main, ["coordinator", "keygen", "--out", str(directory)]).exit_code == 0
    return bytes.fromhex((directory / "signing.pub").read_text().strip())


def coordinator_command(pki_dir: Path, keys: Path, database: str, *extra: str) -> list[str]:
    """``coordinator serve`` on a free loopback port with the test PKI, ``keys/signing.key`` and ``database``."""
    return [
        "coordinator",
        "serve",
        "--listen",
        "127.0.0.1:0",
        *tls_args(pki_dir, "coordinator"),
        "--signing-key",
        str(keys / "signing.key"),
        "--database",
        database,
        *extra,
    ]


def enrol(server: str, database: str, pki_dir: Path, *members: str, admin: str | None = None) -> None:
    """As ``server``'s operator (``coordinator`` or ``custodian``), enrol ``members`` (and ``admin``)."""
    parties = [("member", name) for name in members] + ([("admin", admin)] if admin else [])
    for kind, name in parties:
        args = [server, kind, "add", "--cert", str(pki_dir / f"{name}.pem"), "--database", database]
        enrolled = CliRunner().invoke(main, args)
        assert enrolled.exit_code == 0, enrolled.output
