"""A result of 1,000,000 matched tokens with peer labels (about 311 MB of leaves) for one member,
served by a real coordinator process over mutual TLS, streamed in pages, verified and kept by the
member node, while the coordinator's memory stays flat.

Two members submit the same 1,000,000 synthetic 16-byte tokens, each with its own 301-byte
sealed label, straight through ``CoordinatorClient`` (no member crypto is needed for this).
The figures (time and the coordinator's resident memory) are printed; run with ``-s`` to see them.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from alliance_psi.cli._processes import ServerProcess
from alliance_psi.crypto.labels import SEALED_LABEL_BYTES
from alliance_psi.protocol.coordinator import Chunk, Commit, RoundSpec
from alliance_psi.protocol.result_codec import PAGE_BYTES
from alliance_psi.protocol.submission import MAX_CHUNK_ITEMS, SetDigest, SubmissionDigest, label_digest
from alliance_psi.services.clients import CoordinatorClient, CustodianChain, RetryPolicy
from alliance_psi.services.member import MemberNode
from alliance_psi.storage import KeptResults
from tests.e2e.support import coordinator_command, coordinator_keys, enrol
from tests.integration.services.harness import sqlite_engine

pytestmark = [pytest.mark.slow, pytest.mark.timeout(3600)]

TOKENS = 1_000_000
PATIENT = RetryPolicy(attempts=1, timeout=1800)  # The last commit matches the round before it returns.


def _chunks(round_id: str, member: int, digest: SubmissionDigest, whole: SetDigest) -> Iterator[Chunk]:
    for index, start in enumerate(range(0, TOKENS, MAX_CHUNK_ITEMS)):
        labels = os.urandom(SEALED_LABEL_BYTES * MAX_CHUNK_ITEMS)
        items = tuple(
            (i.to_bytes(16, "big"), bytes([member]) + labels[k * SEALED_LABEL_BYTES + 1 : (k + 1) * SEALED_LABEL_BYTES])
            for k, i in enumerate(range(start, min(start + MAX_CHUNK_ITEMS, TOKENS)))
        )
        for token, label in items:
            whole.update(token, label_digest(label))
        yield Chunk(round_id, index, items, digest.update(items))


def _submit(client: CoordinatorClient, round_id: str, member: str, number: int) -> None:
    digest, whole = SubmissionDigest(), SetDigest()
    client.upload_chunks(_chunks(round_id, number, digest, whole))
    client.commit(Commit(round_id, digest.count, digest.digest(), whole.count, whole.digest(), replace=True), member)


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


class _Sampler(threading.Thread):
    """Samples a process's resident memory every 20 ms until stopped."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.peak, self.samples = pid, 0, 0
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.wait(0.02):
            self.peak = max(self.peak, _rss_kib(self.pid))
            self.samples += 1

    def stop(self) -> None:
        self._done.set()
        self.join()


def test_a_million_matched_tokens_stream_with_flat_coordinator_memory(tmp_path: Path, pki) -> None:  # type: ignore[no-untyped-def]
    public_key = coordinator_keys(tmp_path / "keys")
    database = f"sqlite:///{tmp_path / 'coordinator.db'}"
    enrol("coordinator", database, pki.directory, "bank-a", "bank-b", admin="admin")
    coordinator = ServerProcess(coordinator_command(pki.directory, tmp_path / "keys", database))
    figures: dict[str, float] = {}
    try:
        admin = CoordinatorClient(coordinator.address, pki.material("admin"), PATIENT)
        spec = RoundSpec(
            name="a million leads",
            threshold=2,
            key_epoch="epoch-big",
            deadline=datetime.now(UTC) + timedelta(hours=2),
            allowed_types=("phone",),
            invited=("bank-a", "bank-b"),
            share_labels=True,
        )
        round_id = admin.create_round(spec).round_id
        clock = time.perf_counter()
        for number, member in enumerate(("bank-a", "bank-b"), 1):
            with CoordinatorClient(coordinator.address, pki.material(member), PATIENT) as client:
                _submit(client, round_id, member, number)
        figures["submit both and match, s"] = time.perf_counter() - clock

        node = MemberNode(
            member_id="bank-a",
            engine=sqlite_engine(tmp_path / "bank-a.db"),
            coordinator=CoordinatorClient(coordinator.address, pki.material("bank-a"), PATIENT),
            custodians=CustodianChain([]),
            coordinator_key=public_key,
            nonce_key=bytes(32),
        )
        baseline = _rss_kib(coordinator.proc.pid)
        sampler = _Sampler(coordinator.proc.pid)
        sampler.start()
        clock = time.perf_counter()
        try:
            header = node.role.fetch_result(round_id, round_name=spec.name)
        finally:
            sampler.stop()
        figures["fetch, verify and keep, s"] = time.perf_counter() - clock
        with node.engine.connect() as conn:
            kept = KeptResults(conn)
            assert kept.leaf_count(round_id) == TOKENS
            leaf_bytes = sum(len(leaf) for leaf in kept.iter_leaves(round_id))
        node.close()

        assert header.match_count == TOKENS and header.submitted_count == TOKENS
        figures["result leaves, MB"] = leaf_bytes / 1e6
        figures["pages"] = -(-leaf_bytes // PAGE_BYTES)
        figures["coordinator RSS before serving, MB"] = baseline / 1024
        figures["coordinator RSS peak while serving, MB"] = sampler.peak / 1024
        figures["RSS samples"] = sampler.samples
        print("\n" + "\n".join(f"{name}: {value:,.1f}" for name, value in figures.items()))
        assert leaf_bytes > 300e6
        assert sampler.samples > 10
        # Streaming from the database: serving ~311 MB of leaves grows the process by far less
        # than one tenth of it (a result built in memory would grow it by the whole).
        assert sampler.peak - baseline < 30 * 1024
    finally:
        coordinator.stop()
