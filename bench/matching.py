"""Throughput of the coordinator's matching step on SQLite (or PostgreSQL with --database).

Usage: .venv/bin/python bench/matching.py [--members 10] [--per-member 100000] [--database URL]

Stages and commits the members' first (whole-set) submissions, timing staging and committing
apart, then times the matching step of ``CoordinatorRole``: finding the tokens held by at least
t members, building each member's result, signing it and storing it, and the state change.
Prints submitted tokens per second. ``--labels`` sends a 301-byte sealed label with each token.
``--match-closed`` instead matches the closed rounds already in ``--database`` (one that
bench/coordinator_scale.py filled), as a restarted coordinator would, timing each and printing
this process's peak RSS.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from alliance_psi.crypto.labels import SEALED_LABEL_BYTES
from alliance_psi.crypto.signing import SigningKey
from alliance_psi.protocol.coordinator import Chunk, Commit, CoordinatorRole, RoundSpec
from alliance_psi.protocol.model import Identity, Role
from alliance_psi.protocol.submission import SetDigest, SubmissionDigest, chunk_digest, label_digest
from alliance_psi.services.coordinator import sql_unit_of_work
from alliance_psi.storage import create_schema, make_engine

CHUNK = 8192


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=10)
    parser.add_argument("--per-member", type=int, default=100_000)
    parser.add_argument("--shared-fraction", type=float, default=0.1)
    parser.add_argument("--database", default=None)
    parser.add_argument("--labels", action="store_true", help="a sealed label (random bytes) with every token")
    parser.add_argument("--match-closed", action="store_true", help="match the closed rounds of --database")
    args = parser.parse_args()
    if args.match_closed:
        match_closed(args.database)
        return
    url = args.database or f"sqlite:///{tempfile.mkdtemp()}/coordinator.db"
    engine = make_engine(url)
    create_schema(engine)
    members = [f"m{i}" for i in range(args.members)]
    role = CoordinatorRole(sql_unit_of_work(engine), SigningKey.generate(), known_types=["phone"])
    created = role.create_round(
        Identity("admin", Role.ADMIN),
        RoundSpec("bench", 2, "e", datetime.now(UTC) + timedelta(hours=2), ("phone",), None, args.labels),
    )
    shared = [os.urandom(16) for _ in range(int(args.per_member * args.shared_fraction))]
    staged = committed = 0.0
    for _i, member in enumerate(members):
        # Every member holds the shared tokens (so each matches with holder count = members)
        # and the rest of its own.
        tokens = sorted(shared + [os.urandom(16) for _ in range(args.per_member - len(shared))])
        labels = [os.urandom(SEALED_LABEL_BYTES) if args.labels else None for _ in tokens]
        digest, whole = SubmissionDigest(), SetDigest()
        for token, label in zip(tokens, labels, strict=False):
            whole.update(token, label_digest(label))
        caller = Identity(member, Role.MEMBER)
        start = time.perf_counter()
        for index in range(0, len(tokens), CHUNK):
            items = tuple(zip(tokens[index : index + CHUNK], labels[index : index + CHUNK], strict=False))
            digest.update(items)
            role.upload_chunk(caller, Chunk(created.round_id, index // CHUNK, items, chunk_digest(items)))
        staged += time.perf_counter() - start
        start = time.perf_counter()
        role.commit(caller, Commit(created.round_id, digest.count, digest.digest(), whole.count, whole.digest(), True))
        committed += time.perf_counter() - start
    total = args.members * args.per_member
    start = time.perf_counter()
    role._close(created.round_id, "bench", actor="bench")
    closed = time.perf_counter() - start
    start = time.perf_counter()
    role._match(created.round_id)
    matched = time.perf_counter() - start
    print(
        f"{args.members} members x {args.per_member:,} tokens ({len(shared):,} shared by all) on {engine.dialect.name}"
    )
    print(
        f"staging: {staged:.2f} s ({staged / total * 1e6:.1f} us/token); committing: {committed:.2f} s "
        f"({committed / total * 1e6:.1f} us/token); closing: {closed:.2f} s"
    )
    print(
        f"matching step (group in SQL, build, sign and store {args.members} results): {matched:.2f} s "
        f"({total / matched:,.0f} submitted tokens/s; target >= 1,000,000)"
    )


def match_closed(url: str) -> None:
    """Match every closed round of ``url`` as ``CoordinatorRole.tick`` does after a restart; time each."""
    from alliance_psi.protocol.model import RoundState

    engine = make_engine(url)
    role = CoordinatorRole(sql_unit_of_work(engine), SigningKey.generate(), known_types=["phone"])
    with engine.connect() as conn:
        closed = conn.exec_driver_sql("SELECT round_id FROM rounds WHERE state = 'closed'").scalars().all()
        in_sets = int(conn.exec_driver_sql("SELECT coalesce(sum(item_count), 0) FROM member_set_state").scalar_one())
    for round_id in closed:
        start = time.perf_counter()
        role._match(round_id)
        matched = time.perf_counter() - start
        found, _ = role.get_round(Identity("admin", Role.ADMIN), round_id)
        assert found.state is RoundState.MATCHED
        with engine.connect() as conn:
            members = conn.exec_driver_sql(
                "SELECT count(*) FROM submissions WHERE round_id = %s AND state = 'committed'", (round_id,)
            ).scalar_one()
            counts = conn.exec_driver_sql("SELECT match_counts FROM rounds WHERE round_id = %s", (round_id,)).scalar()
        print(
            f"round {round_id}: {members} members, {in_sets:,} tokens in the scope's sets on {engine.dialect.name}: "
            f"matching step {matched:.1f} s ({in_sets / matched:,.0f} tokens/s); tokens by holder count {counts}"
        )
    peak = next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith("VmHWM:"))
    print(f"this process's peak RSS: {int(peak.split()[1]) / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
