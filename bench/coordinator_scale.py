"""A big coordinator: synthetic members submit through the real gRPC API to a coordinator process.

Usage:
    .venv/bin/python bench/coordinator_scale.py --database 'postgresql+psycopg://postgres@/EMPTY_DB?host=/tmp/scale-pg&port=5432'
        [--first 110] [--members 200] [--per-member 100000] [--parallel 4] [--labels]

No member crypto: each member's tokens are random 16-byte strings (most its own, a tenth drawn
from a shared pool with Zipf-like weights, so a long tail of tokens is held by many members),
built into chunks by the protocol layer (``protocol.submission``) and sent over mutual TLS, each
member with its own certificate, to a ``coordinator serve`` process. Round 1: the first
``--first`` members send their whole sets and the operator closes the round, which matches it.
Round 2, same scope: those members commit empty deltas, the others up to ``--members`` send
their whole sets, and the round is matched over every standing set. Prints the submission and
commit times, the matching time (the operator's close, which matches before it answers), the
coordinator's RSS when 1M, 5M, the first round's and the last total of tokens are committed, and
the database's size.
"""

from __future__ import annotations

import argparse
import itertools
import os
import random
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import inspect, select

from alliance_psi.cli._local_alliance import EPOCH, LocalAlliance, local_alliance
from alliance_psi.config import TlsConfig
from alliance_psi.crypto.labels import SEALED_LABEL_BYTES
from alliance_psi.protocol.coordinator import Chunk, Commit, RoundSpec
from alliance_psi.protocol.model import Role
from alliance_psi.protocol.submission import MAX_CHUNK_ITEMS, SetDigest, SubmissionDigest, chunk_digest, label_digest
from alliance_psi.services.cert_checks import load_tls
from alliance_psi.services.clients import CoordinatorClient, RetryPolicy
from alliance_psi.storage import make_engine
from alliance_psi.storage.schema import enrolments, member_set_state, rounds

POOL = 1_000_000
CHECKPOINTS = (1_000_000, 5_000_000)


def status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    return 0


class Tokens:
    """Each member's synthetic set: own random tokens plus a tenth from a Zipf-weighted shared pool."""

    def __init__(self, per_member: int, seed: int = 14) -> None:
        rng = random.Random(seed)
        self.pool = [rng.randbytes(16) for _ in range(POOL)]
        self.cumulative = list(itertools.accumulate(1.0 / (i + 1) ** 1.05 for i in range(POOL)))
        self.per_member = per_member

    def member_set(self, index: int) -> list[bytes]:
        rng = random.Random(index)
        shared = set(rng.choices(self.pool, cum_weights=self.cumulative, k=self.per_member // 10))
        own = [os.urandom(16) for _ in range(self.per_member - len(shared))]
        return sorted(shared.union(own))


class Member:
    """One synthetic member: its certificate, its coordinator channel, its set's count and digest."""

    def __init__(self, alliance: LocalAlliance, name: str) -> None:
        pki = alliance.pki_dir
        tls = load_tls(TlsConfig(ca_cert=pki / "ca.pem", cert=pki / f"{name}.pem", key=pki / f"{name}.key"))
        self.name, self.client = name, CoordinatorClient(alliance.coordinator.address, tls)
        self.set_count, self.set_digest = 0, b""

    def submit_whole(self, round_id: str, tokens: list[bytes], labels: bool) -> tuple[float, float]:
        """Send the whole set in chunks and commit it; (upload seconds, commit seconds)."""
        sealed = (lambda: os.urandom(SEALED_LABEL_BYTES)) if labels else (lambda: None)
        items = [(token, sealed()) for token in tokens]
        whole, digest = SetDigest(), SubmissionDigest()
        for token, label in items:
            whole.update(token, label_digest(label))

        def chunks() -> Iterator[Chunk]:
            for index, start in enumerate(range(0, len(items), MAX_CHUNK_ITEMS)):
                part = tuple(items[start : start + MAX_CHUNK_ITEMS])
                digest.update(part)
                yield Chunk(round_id, index, part, chunk_digest(part), replace=True)

        began = time.perf_counter()
        self.client.upload_chunks(chunks())
        uploaded = time.perf_counter()
        self.set_count, self.set_digest = whole.count, whole.digest()
        self.client.commit(
            Commit(round_id, digest.count, digest.digest(), self.set_count, self.set_digest, True), self.name
        )
        return uploaded - began, time.perf_counter() - uploaded

    def commit_unchanged(self, round_id: str) -> float:
        """Commit an empty delta (the set stays as it is); seconds."""
        began = time.perf_counter()
        nothing = SubmissionDigest()
        self.client.commit(Commit(round_id, 0, nothing.digest(), self.set_count, self.set_digest, False), self.name)
        return time.perf_counter() - began


class Sampler:
    """The coordinator's RSS now and at its peak, noted as the committed total passes checkpoints."""

    def __init__(self, pid: int) -> None:
        self.pid, self.committed, self.notes = pid, 0, []  # type: ignore[var-annotated]
        self.lock = threading.Lock()
        self.pending = list(CHECKPOINTS)

    def add(self, tokens: int) -> None:
        with self.lock:
            self.committed += tokens
            while self.pending and self.committed >= self.pending[0]:
                self.note(f"{self.pending.pop(0):,} tokens committed")

    def note(self, what: str) -> None:
        now, peak = status_kib(self.pid, "VmRSS"), status_kib(self.pid, "VmHWM")
        self.notes.append((what, self.committed, now / 1024, peak / 1024))
        print(
            f"  coordinator RSS at {what} ({self.committed:,} in sets): {now / 1024:.0f} MiB, peak {peak / 1024:.0f} MiB"
            f" (load average {load()})"
        )


def load() -> str:
    """The machine's 1-minute load average now (other engineers share it)."""
    return f"{os.getloadavg()[0]:.1f}"


def require_empty(url: str) -> None:
    """Exit with a message unless ``url``'s database holds no enrolment, round or member set (a
    second run on a filled one would fail on its first enrolment, or skew the figures)."""
    engine = make_engine(url)
    try:
        present = set(inspect(engine).get_table_names())
        with engine.connect() as conn:
            filled = [
                table.name
                for table in (enrolments, rounds, member_set_state)
                if table.name in present and conn.execute(select(table).limit(1)).first() is not None
            ]
    finally:
        engine.dispose()
    if filled:
        shown = engine.url.render_as_string(hide_password=True)
        how = "a new file" if engine.dialect.name == "sqlite" else "CREATE DATABASE; BENCHMARKS.md, section 4"
        raise SystemExit(f"the database {shown} is not empty (rows in {', '.join(filled)}): give an empty one ({how})")


def database_size(url: str) -> int:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            if engine.dialect.name == "postgresql":
                return int(conn.exec_driver_sql("SELECT pg_database_size(current_database())").scalar_one())
    finally:
        engine.dispose()
    return Path(url.removeprefix("sqlite:///")).stat().st_size


def run_round(
    alliance: LocalAlliance,
    admin: CoordinatorClient,
    members: list[Member],
    new: range,
    tokens: Tokens,
    args: argparse.Namespace,
    sampler: Sampler,
) -> None:
    spec = RoundSpec("scale", 2, EPOCH, _deadline(), ("phone",), None, args.labels)
    round_id = admin.create_round(spec).round_id
    upload = commit = 0.0
    lock = threading.Lock()

    def whole(index: int) -> None:
        nonlocal upload, commit
        up, co = members[index].submit_whole(round_id, tokens.member_set(index), args.labels)
        with lock:
            upload, commit = upload + up, commit + co
        sampler.add(members[index].set_count)

    began = time.perf_counter()
    unchanged = [m.commit_unchanged(round_id) for m in members[: new.start]]
    with ThreadPoolExecutor(args.parallel) as pool:
        list(pool.map(whole, new))
    submitted = time.perf_counter() - began
    sampler.note(f"round {round_id}: every set committed")
    began = time.perf_counter()
    admin.close_round(round_id, "bench")
    matched = time.perf_counter() - began
    sampler.note(f"round {round_id}: matched")
    found, _ = admin.get_round(round_id)
    total = sampler.committed
    count = len(new) * args.per_member
    print(
        f"round {round_id}: {len(new)} whole sets of {args.per_member:,} ({count:,} tokens) in {submitted:.1f} s "
        f"wall with {args.parallel} at a time ({count / submitted:,.0f} tokens/s); summed per member: upload "
        f"{upload:.1f} s ({upload / count * 1e6:.1f} us/token), commit {commit:.1f} s ({commit / count * 1e6:.1f} "
        f"us/token); {len(unchanged)} empty deltas committed in {sum(unchanged):.1f} s; load average {load()}"
    )
    print(
        f"  matching {len(members[: new.stop])} members' sets, {total:,} tokens: {matched:.1f} s "
        f"({total / matched:,.0f} tokens/s; target >= 1,000,000); state {found.state}; load average {load()}"
    )
    print(f"  database size: {database_size(args.database) / 2**30:.2f} GiB")


def _deadline():  # type: ignore[no-untyped-def]
    from datetime import UTC, datetime, timedelta

    return datetime.now(UTC) + timedelta(hours=12)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", required=True, help="an empty database for the coordinator (PostgreSQL)")
    parser.add_argument("--first", type=int, default=110)
    parser.add_argument("--members", type=int, default=200)
    parser.add_argument("--per-member", type=int, default=100_000)
    parser.add_argument("--parallel", type=int, default=4, help="members submitting at once")
    parser.add_argument("--labels", action="store_true", help=f"a {SEALED_LABEL_BYTES}-byte sealed label per token")
    parser.add_argument("--out", type=Path, default=Path("/tmp/alliance-psi-coordinator-scale"))
    args = parser.parse_args()
    require_empty(args.database)
    names = [f"m{i:03d}" for i in range(args.members)]
    tokens = Tokens(args.per_member)
    with local_alliance(args.out, names, coordinator_database=args.database) as alliance:
        pid = alliance.coordinator.proc.pid
        sampler = Sampler(pid)
        sampler.note("start")
        members = [Member(alliance, name) for name in names]
        pki = alliance.pki_dir
        admin_tls = load_tls(
            TlsConfig(ca_cert=pki / "ca.pem", cert=pki / "operator.pem", key=pki / "operator.key"), role=Role.ADMIN
        )
        # The operator's close answers once matching is done: no retry, a deadline long enough for it.
        wait = RetryPolicy(attempts=1, timeout=4 * 3600)
        with CoordinatorClient(alliance.coordinator.address, admin_tls, wait) as admin:
            print(f"coordinator on {make_engine(args.database).dialect.name}, labels {'on' if args.labels else 'off'}")
            run_round(alliance, admin, members, range(args.first), tokens, args, sampler)
            if args.members > args.first:
                run_round(alliance, admin, members, range(args.first, args.members), tokens, args, sampler)
        for member in members:
            member.client.close()


if __name__ == "__main__":
    main()
