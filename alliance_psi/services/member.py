"""The member node's wiring: its database, its custodians and its coordinator, for ``MemberRole``.

The member's part of a round (docs/design.md, protocol steps 2 to 8) is ``protocol.member.MemberRole``;
this module builds its real adapters from a ``MemberConfig`` (the SQL unit of work over the node
database, the mTLS clients of the custodians and the coordinator) and keeps the node's own
secrets (the label-nonce and blind keys), which never leave the node.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Self

from sqlalchemy import Connection, Engine

from alliance_psi._files import read_secret, write_file_atomic
from alliance_psi.config import MemberConfig
from alliance_psi.crypto.signing import load_public_key
from alliance_psi.defaults import BATCH_SIZE, CHUNK_SIZE
from alliance_psi.errors import ConfigurationError
from alliance_psi.protocol.member import MemberRole
from alliance_psi.protocol.member_delta import Progress, no_progress
from alliance_psi.protocol.model import Role
from alliance_psi.services.cert_checks import load_tls
from alliance_psi.services.clients import CoordinatorClient, CustodianChain, ThresholdCustodians, custodian_evaluator
from alliance_psi.services.epoch_files import load_public_epoch
from alliance_psi.storage import CheckpointStore, KeptResults, MemberRepository, create_schema, make_node_engine
from alliance_psi.storage.node_alerts import NodeAlerts

__all__ = ["MemberNode", "SqlNodeUnitOfWork", "load_blind_key", "load_nonce_key"]


def _node_secret(path: Path, what: str) -> bytes:
    """A 32-byte secret of the node at ``path``, created 0600 on first use. Never leaves the node."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(ConfigurationError):  # Another process created it first: use theirs.
            write_file_atomic(path, secrets.token_bytes(32), replace=False)
    key = read_secret(path, what="label nonce key")
    if len(key) != 32:
        raise ConfigurationError(f"{path} is not a {what} (expected 32 bytes, found {len(key)})")
    return key


def load_nonce_key(data_dir: Path) -> bytes:
    """The node's label-nonce key (see ``seal_label``), created 0600 on first use. Never leaves the node."""
    return _node_secret(data_dir / "label-nonce.key", "label nonce key")


def load_blind_key(data_dir: Path) -> bytes:
    """The node's blind key (see ``crypto.batch.derive_batch_blind``), created 0600 on first use.

    It makes the node's blinded batches repeatable, so a join resumed after an interruption
    re-sends byte-identical batches and the custodians do not charge them twice. Never leaves
    the node; losing it costs only that (new blinds, batches charged again once).
    """
    return _node_secret(data_dir / "blind.key", "blind key")


@dataclass(frozen=True, slots=True)
class _NodeTx:
    repo: MemberRepository
    results: KeptResults
    checkpoints: CheckpointStore
    alerts: NodeAlerts

    @classmethod
    def over(cls, conn: Connection) -> _NodeTx:
        return cls(MemberRepository(conn), KeptResults(conn), CheckpointStore(conn), NodeAlerts(conn))


class SqlNodeUnitOfWork:
    """The member node's database as ``ports.NodeUnitOfWork`` (and the alert follower's
    ``FollowerUnitOfWork``): one connection per transaction."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @contextlib.contextmanager
    def reading(self) -> Iterator[_NodeTx]:
        # A read that does not take SQLite's write lock for the length of a network upload.
        with self.engine.execution_options(sqlite_begin="DEFERRED").connect() as conn:
            yield _NodeTx.over(conn)

    @contextlib.contextmanager
    def writing(self) -> Iterator[_NodeTx]:
        with self.engine.begin() as conn:
            yield _NodeTx.over(conn)


class MemberNode:
    """One member's node: ``role`` (``MemberRole``) over its database, custodians and coordinator client.

    Owns what it was given: ``close`` (or leaving its ``with`` block) closes the clients and
    disposes of the engine.
    """

    def __init__(
        self,
        *,
        member_id: str,
        engine: Engine,
        coordinator: CoordinatorClient,
        custodians: CustodianChain | ThresholdCustodians,
        coordinator_key: bytes,
        nonce_key: bytes,
        share_name: bool = False,
        workers: int | None = None,
        batch_size: int = BATCH_SIZE,
        chunk_size: int = CHUNK_SIZE,
        progress: Progress = no_progress,
        blind_key: bytes | None = None,
    ) -> None:
        """``blind_key`` (``load_blind_key``) makes blinds repeatable; without one they are fresh,
        and a batch sent again after an interruption is charged again by the custodians.
        ``share_name``: the coordinator names this member (as it enrolled it) to the co-holders of
        its labels; labels themselves never carry a name."""
        self.engine, self.coordinator, self.custodians = engine, coordinator, custodians
        self.role = MemberRole(
            member_id=member_id,
            uow=SqlNodeUnitOfWork(engine),
            evaluator=custodians,
            coordinator=coordinator,
            coordinator_key=coordinator_key,
            nonce_key=nonce_key,
            blind_key=blind_key,
            share_name=share_name,
            workers=workers,
            batch_size=batch_size,
            chunk_size=chunk_size,
            progress=progress,
        )

    @classmethod
    def from_config(
        cls, config: MemberConfig, *, progress: Progress = no_progress, report: Callable[[str], None] | None = None
    ) -> MemberNode:
        """Connect to the alliance as ``config`` says (reads the TLS files, keys and epoch file now).

        ``report`` receives the threshold custodians' events a person should see (one down, slow,
        excluded for a wrong answer), once each.
        """
        # The alliance knows this node by its certificate alone: a different member id here would
        # only surface later, as a result "for another member".
        tls = load_tls(config.tls, role=Role.MEMBER, name=config.member_id)
        public = load_public_epoch(config.epoch_file) if config.epoch_file is not None else None
        # Checks pinned CAs first, and for a threshold epoch that the epoch file names every custodian.
        chain = custodian_evaluator(config.custodians, tls, public=public, verify=config.verify, report=report)
        engine = make_node_engine(config.database)
        create_schema(engine)
        try:
            coordinator_key = load_public_key(config.coordinator_public_key.read_bytes())
        except OSError as exc:
            raise ConfigurationError(f"coordinator key {config.coordinator_public_key}: {exc.strerror}") from None
        return cls(
            member_id=config.member_id,
            engine=engine,
            coordinator=CoordinatorClient(config.coordinator.address, tls, name=config.coordinator.name),
            custodians=chain,
            coordinator_key=coordinator_key,
            nonce_key=load_nonce_key(config.data_dir),
            blind_key=load_blind_key(config.data_dir),
            share_name=config.share_name if config.share_name is not None else config.display_name is not None,
            workers=config.workers,
            batch_size=config.batch_size,
            chunk_size=config.chunk_size,
            progress=progress,
        )

    def close(self) -> None:
        self.coordinator.close()
        self.custodians.close()
        self.engine.dispose()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
