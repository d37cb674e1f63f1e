"""A throwaway alliance on this machine, for the demo and the benchmarks.

``LocalAlliance`` writes a CA and certificates, the coordinator's signing key and one custodian
key share under a directory (the custodian, as an independent one would, certifies itself with a
CA of its own, which every member's ``node.toml`` pins for it), enrols the members (and the operator, as admin) in each server's
own database as each server's operator would, starts the coordinator and the custodian as
separate server processes on loopback ports, writes one ``node.toml`` per member, and stops
the servers on exit.
Members then run as their own ``alliance-psi node`` processes (``node_command``).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from alliance_psi._files import write_file_atomic
from alliance_psi.cli._processes import ServerProcess, cli_command, tls_args
from alliance_psi.errors import AlliancePsiError

__all__ = ["EPOCH", "LocalAlliance", "local_alliance"]

EPOCH = "demo-epoch"


@dataclass
class LocalAlliance:
    """A running local alliance: where its files are and where its servers listen."""

    root: Path
    members: list[str]
    coordinator: ServerProcess
    custodian: ServerProcess
    custodian_replicas: tuple[ServerProcess, ...] = ()  # More processes of custodian-1, if any.

    @property
    def pki_dir(self) -> Path:
        return self.root / "alliance" / "pki"

    def home(self, member: str) -> Path:
        return self.root / member

    def node_command(self, member: str, *args: str) -> list[str]:
        """The argv of ``alliance-psi node --config <member's node.toml> ARGS``."""
        return cli_command("node", "--config", str(self.home(member) / "node.toml"), *args)

    def run_node(self, member: str, *args: str) -> str:
        """Run a node command to completion; raise with its stderr if it fails."""
        done = subprocess.run(self.node_command(member, *args), capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise AlliancePsiError(f"{member}: node {args[0]} failed:\n{(done.stderr or done.stdout).strip()[-2000:]}")
        return done.stdout

    def create_round(self, *, name: str, threshold: int, types: Sequence[str], share_labels: bool = True) -> str:
        """Open a round inviting every member, as the operator; return its id."""
        from alliance_psi.config import TlsConfig
        from alliance_psi.protocol.coordinator import RoundSpec
        from alliance_psi.protocol.model import Role
        from alliance_psi.services.cert_checks import load_tls
        from alliance_psi.services.clients import CoordinatorClient

        config = TlsConfig(
            ca_cert=self.pki_dir / "ca.pem", cert=self.pki_dir / "operator.pem", key=self.pki_dir / "operator.key"
        )
        tls = load_tls(config, role=Role.ADMIN)
        spec = RoundSpec(
            name=name,
            threshold=threshold,
            key_epoch=EPOCH,
            deadline=datetime.now(UTC) + timedelta(hours=2),
            allowed_types=tuple(types),
            invited=tuple(self.members),
            share_labels=share_labels,
        )
        with CoordinatorClient(self.coordinator.address, tls) as admin:
            return admin.create_round(spec).round_id


def _write_keys(root: Path, members: Sequence[str]) -> None:
    from alliance_psi.crypto.key_shares import KeyShare
    from alliance_psi.crypto.signing import SigningKey
    from alliance_psi.protocol.model import Role
    from alliance_psi.services import pki

    pki_dir = root / "alliance" / "pki"
    ca = pki.init_ca("Local")
    pki.write_ca(ca, pki_dir)
    parties = [(Role.COORDINATOR, "coordinator"), (Role.ADMIN, "operator")]
    for role, name in parties + [(Role.MEMBER, m) for m in members]:
        pki.write_issued(pki.issue(ca, role=role, name=name), pki_dir, name)
    # The custodian is another institution's: its certificate comes from its own CA, not the alliance's.
    custodian_ca = pki.init_ca("Local custodian-1")
    pki.write_ca(custodian_ca, root / "custodian" / "ca")
    pki.write_issued(
        pki.issue(custodian_ca, role=Role.CUSTODIAN, name="custodian-1"), root / "custodian", "custodian-1"
    )
    signing = SigningKey.generate()
    write_file_atomic(root / "alliance" / "signing.key", signing.to_pem())
    (root / "alliance" / "signing.pub").write_text(signing.public_key.hex() + "\n")
    write_file_atomic(root / "alliance" / "custodian.share", KeyShare.generate(EPOCH).to_bytes())


def _enrol(
    database: str,
    pki_dir: Path,
    members: Sequence[str],
    *,
    admins: Sequence[str] = (),
    display_names: dict[str, str] | None = None,
) -> None:
    """Enrol ``members`` (and ``admins``) by their certificates' keys in one server's database,
    with the ``display_names`` co-holders see (at the coordinator)."""
    from alliance_psi.protocol.model import Role
    from alliance_psi.services.enrolment import enrol
    from alliance_psi.storage import create_schema, make_engine

    engine = make_engine(database)
    try:
        create_schema(engine)
        for role, names in ((Role.MEMBER, members), (Role.ADMIN, admins)):
            for name in names:
                shown = (display_names or {}).get(name) if role is Role.MEMBER else None
                enrol(engine, (pki_dir / f"{name}.pem").read_bytes(), role=role, display_name=shown)
    finally:
        engine.dispose()


def _write_node_toml(path: Path, values: dict[str, Any]) -> None:
    lines = ["[node]"]
    for key, value in values.items():
        rendered = (
            f"[{', '.join(json.dumps(v) for v in value)}]"
            if isinstance(value, list)
            else json.dumps(value, ensure_ascii=False)
        )
        lines.append(f"{key} = {rendered}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _custodian_args(root: Path, database: str, quota: int) -> list[str]:
    alliance_dir, custodian_dir, pki_dir = root / "alliance", root / "custodian", root / "alliance" / "pki"
    return [
        "custodian",
        "serve",
        "--name",
        "custodian-1",
        "--listen",
        "127.0.0.1:0",
        *("--ca", str(pki_dir / "ca.pem"), "--own-ca", str(custodian_dir / "ca" / "ca.pem")),
        *("--cert", str(custodian_dir / "custodian-1.pem"), "--key", str(custodian_dir / "custodian-1.key")),
        "--key-share",
        str(alliance_dir / "custodian.share"),
        "--database",
        database,
        "--quota",
        str(quota),
    ]


@contextlib.contextmanager
def local_alliance(
    root: Path,
    members: Sequence[str],
    *,
    display_names: dict[str, str] | None = None,
    quota: int = 50_000_000,
    coordinator_database: str | None = None,
    custodian_database: str | None = None,
    custodian_replicas: int = 1,
) -> Iterator[LocalAlliance]:
    """Create (replacing ``root``) and run a local alliance; stop its servers on exit.

    Every path written into the members' node.toml is absolute: a node resolves relative paths
    against its file's folder, not against where the demo runs. The coordinator's and the
    custodian's databases are SQLite files under ``root`` unless URLs are given (an empty
    PostgreSQL database each, for the benchmarks); ``custodian_replicas`` > 1 runs that many
    processes of custodian-1 over one quota database (which must then be PostgreSQL), and every
    member's node.toml names them all.
    """
    root = root.resolve()
    if root.exists():
        shutil.rmtree(root)
    (root / "alliance").mkdir(parents=True)
    _write_keys(root, members)
    alliance_dir = root / "alliance"
    pki_dir = alliance_dir / "pki"
    custodian_dir = root / "custodian"
    custodian_db = custodian_database or f"sqlite:///{alliance_dir / 'custodian.db'}"
    coordinator_db = coordinator_database or f"sqlite:///{alliance_dir / 'coordinator.db'}"
    _enrol(custodian_db, pki_dir, members)
    _enrol(coordinator_db, pki_dir, members, admins=["operator"], display_names=display_names)
    with contextlib.ExitStack() as stack:
        custodians = [
            stack.enter_context(ServerProcess(_custodian_args(root, custodian_db, quota)))
            for _ in range(max(custodian_replicas, 1))
        ]
        coordinator = stack.enter_context(
            ServerProcess(
                [
                    "coordinator",
                    "serve",
                    "--listen",
                    "127.0.0.1:0",
                    *tls_args(pki_dir, "coordinator"),
                    "--signing-key",
                    str(alliance_dir / "signing.key"),
                    "--database",
                    coordinator_db,
                    "--tick",
                    "0.2",
                ]
            )
        )
        addresses = "+".join(c.address for c in custodians)
        for member in members:
            home = root / member
            home.mkdir(parents=True)
            _write_node_toml(
                home / "node.toml",
                {
                    "database": f"sqlite:///{home / 'node.db'}",
                    "member-id": member,
                    "ca": str(pki_dir / "ca.pem"),
                    "cert": str(pki_dir / f"{member}.pem"),
                    "key": str(pki_dir / f"{member}.key"),
                    "coordinator": coordinator.address,
                    "custodian": [f"custodian-1@{addresses},ca={custodian_dir / 'ca' / 'ca.pem'}"],
                    "coordinator-key": str(alliance_dir / "signing.pub"),
                    "data-dir": str(home / "secrets"),
                    **({"display-name": display_names[member]} if display_names and member in display_names else {}),
                },
            )
        yield LocalAlliance(root, list(members), coordinator, custodians[0], tuple(custodians[1:]))
