"""A throwaway alliance on this machine, for the demo and the benchmarks.

``LocalAlliance`` writes a CA and certificates, the coordinator's signing key and the custodians'
key shares under a directory: one chain custodian (the benchmarks' alliance), or with
``threshold=True`` (the demo's) three custodians holding a 2-of-3 threshold epoch that this
module deals itself (``deal_epoch_for_testing``: the dealer knows the whole key, which only a
demo may do) and its public epoch file. Each custodian, as an independent one would, certifies
itself with a CA of its own, which every member's ``node.toml`` pins for it. It enrols the members
(and the operator, as admin) in each server's own database as each server's operator would,
starts the coordinator and the custodians as separate server processes on loopback ports, writes
one ``node.toml`` per member, and stops the servers on exit.
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
from alliance_psi.errors import AlliancePsiError, ConfigurationError

__all__ = ["EPOCH", "LocalAlliance", "local_alliance"]

EPOCH = "demo-epoch"
THRESHOLD_CUSTODIANS = ("custodian-1", "custodian-2", "custodian-3")
THRESHOLD = 2


@dataclass
class LocalAlliance:
    """A running local alliance: where its files are and where its servers listen."""

    root: Path
    members: list[str]
    coordinator: ServerProcess
    custodian: ServerProcess
    custodian_replicas: tuple[ServerProcess, ...] = ()  # More processes of custodian-1, if any.
    others: tuple[ServerProcess, ...] = ()  # custodian-2 and custodian-3 of a threshold alliance.
    epoch_file: Path | None = None  # A threshold alliance's public epoch file.

    @property
    def custodians(self) -> tuple[ServerProcess, ...]:
        """One process per custodian (custodian-1 first; its replicas not included)."""
        return (self.custodian, *self.others)

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

    def create_round(
        self,
        *,
        name: str,
        threshold: int,
        types: Sequence[str],
        share_labels: bool = True,
        continuous: bool = False,
        labels_at_match: bool = False,
    ) -> str:
        """Open a round (``continuous``: a continuous scope) inviting every member, as the operator;
        return its id. ``labels_at_match``: a batch round whose labels are sealed at match."""
        from alliance_psi.config import TlsConfig
        from alliance_psi.protocol.coordinator import RoundSpec
        from alliance_psi.protocol.model import NO_DEADLINE, Role, RoundKind
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
            deadline=NO_DEADLINE if continuous else datetime.now(UTC) + timedelta(hours=2),
            allowed_types=tuple(types),
            invited=tuple(self.members),
            share_labels=share_labels,
            kind=RoundKind.CONTINUOUS if continuous else RoundKind.BATCH,
            labels_at_match=labels_at_match,
        )
        with CoordinatorClient(self.coordinator.address, tls) as admin:
            return admin.create_round(spec).round_id


def _custodian_dir(root: Path, name: str) -> Path:
    return root / ("custodian" if name == "custodian-1" else name)


def _write_keys(root: Path, members: Sequence[str], *, threshold: bool) -> None:
    from alliance_psi.crypto.key_shares import KeyShare
    from alliance_psi.crypto.signing import SigningKey
    from alliance_psi.crypto.threshold_keys import deal_epoch_for_testing
    from alliance_psi.protocol.model import Role
    from alliance_psi.services import pki

    pki_dir = root / "alliance" / "pki"
    ca = pki.init_ca("Local")
    pki.write_ca(ca, pki_dir)
    parties = [(Role.COORDINATOR, "coordinator"), (Role.ADMIN, "operator")]
    for role, name in parties + [(Role.MEMBER, m) for m in members]:
        pki.write_issued(pki.issue(ca, role=role, name=name), pki_dir, name)
    # Each custodian is another institution's: its certificate comes from its own CA, not the alliance's.
    names = THRESHOLD_CUSTODIANS if threshold else THRESHOLD_CUSTODIANS[:1]
    for name in names:
        custodian_ca = pki.init_ca(f"Local {name}")
        pki.write_ca(custodian_ca, _custodian_dir(root, name) / "ca")
        pki.write_issued(pki.issue(custodian_ca, role=Role.CUSTODIAN, name=name), _custodian_dir(root, name), name)
    signing = SigningKey.generate()
    write_file_atomic(root / "alliance" / "signing.key", signing.to_pem())
    (root / "alliance" / "signing.pub").write_text(signing.public_key.hex() + "\n")
    if not threshold:
        write_file_atomic(root / "alliance" / "custodian.share", KeyShare.generate(EPOCH).to_bytes())
        return
    # DEALER MODE, for the demo only: whoever deals knows the whole key (an alliance runs the
    # custodians' key generation instead).
    shares, public = deal_epoch_for_testing(EPOCH, names, threshold=THRESHOLD)
    for name, share in zip(names, shares, strict=True):
        write_file_atomic(_custodian_dir(root, name) / "epoch.share", share.to_bytes())
    write_file_atomic(root / "alliance" / "epoch.json", public.to_bytes(), private=False)


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


def _custodian_args(root: Path, name: str, database: str, quota: int, *, threshold: bool) -> list[str]:
    alliance_dir, custodian_dir, pki_dir = root / "alliance", _custodian_dir(root, name), root / "alliance" / "pki"
    share = ["--key-share", str(alliance_dir / "custodian.share")]
    if threshold:
        share = ["--key-share", str(custodian_dir / "epoch.share"), "--epoch-file", str(alliance_dir / "epoch.json")]
    return [
        "custodian",
        "serve",
        "--name",
        name,
        "--listen",
        "127.0.0.1:0",
        *("--ca", str(pki_dir / "ca.pem"), "--own-ca", str(custodian_dir / "ca" / "ca.pem")),
        *("--cert", str(custodian_dir / f"{name}.pem"), "--key", str(custodian_dir / f"{name}.key")),
        *share,
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
    threshold: bool = False,
) -> Iterator[LocalAlliance]:
    """Create (replacing ``root``) and run a local alliance; stop its servers on exit.

    Every path written into the members' node.toml is absolute: a node resolves relative paths
    against its file's folder, not against where the demo runs. The coordinator's and the
    custodian's databases are SQLite files under ``root`` unless URLs are given (an empty
    PostgreSQL database each, for the benchmarks); ``custodian_replicas`` > 1 runs that many
    processes of custodian-1 over one quota database (which must then be PostgreSQL), and every
    member's node.toml names them all. With ``threshold``, three custodians (each on its own SQLite
    quota database) serve a dealt 2-of-3 epoch and every node.toml names the public epoch file.

    Raises:
        ConfigurationError: ``threshold`` with custodian replicas or a custodian database URL.
    """
    if threshold and (custodian_database is not None or custodian_replicas > 1):
        raise ConfigurationError("a threshold local alliance has one SQLite quota database per custodian, no replicas")
    root = root.resolve()
    if root.exists():
        shutil.rmtree(root)
    (root / "alliance").mkdir(parents=True)
    _write_keys(root, members, threshold=threshold)
    alliance_dir = root / "alliance"
    pki_dir = alliance_dir / "pki"
    custodian_dir = root / "custodian"
    custodian_db = custodian_database or f"sqlite:///{alliance_dir / 'custodian.db'}"
    coordinator_db = coordinator_database or f"sqlite:///{alliance_dir / 'coordinator.db'}"
    _enrol(custodian_db, pki_dir, members)
    _enrol(coordinator_db, pki_dir, members, admins=["operator"], display_names=display_names)
    with contextlib.ExitStack() as stack:
        custodians = [
            stack.enter_context(
                ServerProcess(_custodian_args(root, "custodian-1", custodian_db, quota, threshold=threshold))
            )
            for _ in range(max(custodian_replicas, 1))
        ]
        others = []
        for name in THRESHOLD_CUSTODIANS[1:] if threshold else ():
            database = f"sqlite:///{_custodian_dir(root, name) / 'quota.db'}"
            _enrol(database, pki_dir, members)
            others.append(
                stack.enter_context(ServerProcess(_custodian_args(root, name, database, quota, threshold=threshold)))
            )
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
                    "custodian": [
                        f"custodian-1@{addresses},ca={custodian_dir / 'ca' / 'ca.pem'}",
                        *(
                            f"{name}@{server.address},ca={_custodian_dir(root, name) / 'ca' / 'ca.pem'}"
                            for name, server in zip(THRESHOLD_CUSTODIANS[1:], others, strict=False)
                        ),
                    ],
                    **({"epoch-file": str(alliance_dir / "epoch.json")} if threshold else {}),
                    "coordinator-key": str(alliance_dir / "signing.pub"),
                    "data-dir": str(home / "secrets"),
                    **({"display-name": display_names[member]} if display_names and member in display_names else {}),
                },
            )
        epoch_file = alliance_dir / "epoch.json" if threshold else None
        yield LocalAlliance(
            root, list(members), coordinator, custodians[0], tuple(custodians[1:]), tuple(others), epoch_file
        )
