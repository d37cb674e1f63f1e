"""Throughput of the coordinator's matching step on SQLite and PostgreSQL.

Usage: .venv/bin/python bench/matching.py [--members 10] [--per-member 100000] [--zipf]
           [--database URL [--database URL ...]]
       .venv/bin/python bench/matching.py --match-closed [--rematch] --database URL

Stages and commits the members' first (whole-set) submissions, timing staging and committing
apart, then times the matching step of ``CoordinatorRole``: finding the tokens held by at least
t members, building each member's result, signing it and storing it, and the state change.
Prints submitted tokens per second. ``--labels`` sends a 301-byte sealed label with each token.
Given several ``--database``, each gets the same sets, and the matching times are compared in
the one run (a new SQLite file when none is given).
``--match-closed`` instead matches the closed rounds already in ``--database`` (one that
bench/coordinator_scale.py filled), as a restarted coordinator would, timing each and printing
this process's peak RSS. Its rounds are matched already: ``--rematch`` first sets the last
matched round of each scope back to closed (its results deleted, in SQL; the audit log keeps the
first issue and gets a second), so that it is matched again over the same standing sets.
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

from sqlalchemy import Engine, delete, func, select, update

from alliance_psi.crypto.labels import SEALED_LABEL_BYTES
from alliance_psi.crypto.signing import SigningKey
from alliance_psi.protocol.coordinator import Chunk, Commit, CoordinatorRole, RoundSpec
from alliance_psi.protocol.model import Identity, Role, RoundKind, RoundState
from alliance_psi.protocol.submission import SetDigest, SubmissionDigest, chunk_digest, label_digest
from alliance_psi.services.coordinator import sql_unit_of_work
from alliance_psi.storage import create_schema, make_engine
from alliance_psi.storage.schema import member_set_state, result_headers, result_pages, rounds, submissions
from bench.coordinator_scale import Tokens, require_empty

CHUNK = 8192


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=10)
    parser.add_argument("--per-member", type=int, default=100_000)
    parser.add_argument("--shared-fraction", type=float, default=0.1)
    parser.add_argument(
        "--zipf",
        action="store_true",
        help="overlap as bench/coordinator_scale.py draws it (a tenth of each set from a Zipf-weighted pool) "
        "instead of --shared-fraction held by all",
    )
    parser.add_argument(
        "--database",
        action="append",
        help="an empty database (repeat to fill each with the same sets); default: a new SQLite file",
    )
    parser.add_argument("--labels", action="store_true", help="a sealed label (random bytes) with every token")
    parser.add_argument("--match-closed", action="store_true", help="match the closed rounds of --database")
    parser.add_argument(
        "--rematch",
        action="store_true",
        help="with --match-closed: first set the last matched round of each scope back to closed (results deleted)",
    )
    args = parser.parse_args()
    if args.rematch and not args.match_closed:
        parser.error("--rematch goes with --match-closed")
    if args.match_closed:
        if not args.database:
            parser.error("--match-closed needs --database")
        for url in args.database:
            match_closed(url, rematch=args.rematch)
        return
    for url in args.database or []:
        require_empty(url)
    urls = args.database or [f"sqlite:///{tempfile.mkdtemp()}/coordinator.db"]
    benches = [Bench(url, args.labels) for url in urls]
    shared = [os.urandom(16) for _ in range(int(args.per_member * args.shared_fraction))]
    pool = Tokens(args.per_member) if args.zipf else None
    for index in range(args.members):
        if pool is not None:
            tokens = pool.member_set(index)
        else:
            # Every member holds the shared tokens (so each matches with holder count = members)
            # and the rest of its own.
            tokens = sorted(shared + [os.urandom(16) for _ in range(args.per_member - len(shared))])
        labels = [os.urandom(SEALED_LABEL_BYTES) if args.labels else None for _ in tokens]
        for bench in benches:
            bench.submit(f"m{index}", tokens, labels)
    overlap = "Zipf-weighted pool" if args.zipf else f"{len(shared):,} shared by all"
    for bench in benches:
        bench.match()
        print(f"{args.members} members x {args.per_member:,} tokens ({overlap}) on {bench.dialect}")
        print(
            f"  staging: {bench.staged:.2f} s ({bench.staged / bench.total * 1e6:.1f} us/token); committing: "
            f"{bench.committed:.2f} s ({bench.committed / bench.total * 1e6:.1f} us/token); closing: {bench.closed:.2f} s"
        )
        print(
            f"  matching step (find, build, sign and store {args.members} results): {bench.matched:.2f} s "
            f"({bench.total / bench.matched:,.0f} submitted tokens/s; target >= 1,000,000); "
            f"load average {os.getloadavg()[0]:.1f}"
        )
    if len(benches) > 1:
        first = benches[0]
        print(
            "matching time relative to the first database: "
            + ", ".join(f"{b.dialect} {b.matched / first.matched:.2f}" for b in benches)
        )


class Bench:
    """One coordinator database, its round, and the times of its stages."""

    def __init__(self, url: str, labels: bool) -> None:
        engine = make_engine(url)
        create_schema(engine)
        self.dialect = engine.dialect.name
        self.role = CoordinatorRole(sql_unit_of_work(engine), SigningKey.generate(), known_types=["phone"])
        spec = RoundSpec("bench", 2, "e", datetime.now(UTC) + timedelta(hours=2), ("phone",), None, labels)
        self.round_id = self.role.create_round(Identity("admin", Role.ADMIN), spec).round_id
        self.staged = self.committed = self.closed = self.matched = 0.0
        self.total = 0

    def submit(self, member: str, tokens: list[bytes], labels: list[bytes | None]) -> None:
        """Stage ``member``'s whole set in chunks and commit it, timing each apart."""
        digest, whole = SubmissionDigest(), SetDigest()
        for token, label in zip(tokens, labels, strict=True):
            whole.update(token, label_digest(label))
        caller = Identity(member, Role.MEMBER)
        start = time.perf_counter()
        for index in range(0, len(tokens), CHUNK):
            items = tuple(zip(tokens[index : index + CHUNK], labels[index : index + CHUNK], strict=True))
            digest.update(items)
            self.role.upload_chunk(caller, Chunk(self.round_id, index // CHUNK, items, chunk_digest(items)))
        self.staged += time.perf_counter() - start
        start = time.perf_counter()
        self.role.commit(
            caller, Commit(self.round_id, digest.count, digest.digest(), whole.count, whole.digest(), True)
        )
        self.committed += time.perf_counter() - start
        self.total += len(tokens)

    def match(self) -> None:
        """Close the round, then time the matching step alone."""
        start = time.perf_counter()
        self.role._close(self.round_id, "bench", actor="bench")
        self.closed = time.perf_counter() - start
        start = time.perf_counter()
        self.role._match(self.round_id)
        self.matched = time.perf_counter() - start


def reset_matched(engine: Engine) -> list[str]:
    """Set the last matched batch round of each scope without an unfinished round back to closed,
    its results deleted, in one transaction (bench only: as if the coordinator had stopped after
    the close and before matching); return their ids."""
    with engine.begin() as conn:
        unfinished = select(rounds.c.set_scope).where(rounds.c.state.in_([RoundState.OPEN, RoundState.CLOSED]))
        last = (
            select(rounds.c.set_scope, func.max(rounds.c.matched_at).label("at"))
            .where(
                rounds.c.state == RoundState.MATCHED,
                rounds.c.kind == RoundKind.BATCH,
                rounds.c.set_scope.not_in(unfinished),
            )
            .group_by(rounds.c.set_scope)
            .subquery()
        )
        ids = list(
            conn.execute(
                select(rounds.c.round_id).join(
                    last, (rounds.c.set_scope == last.c.set_scope) & (rounds.c.matched_at == last.c.at)
                )
            ).scalars()
        )
        conn.execute(delete(result_pages).where(result_pages.c.round_id.in_(ids)))
        conn.execute(delete(result_headers).where(result_headers.c.round_id.in_(ids)))
        conn.execute(
            update(rounds)
            .where(rounds.c.round_id.in_(ids))
            .values(state=RoundState.CLOSED, matched_at=None, match_counts=None)
        )
    return ids


def match_closed(url: str, *, rematch: bool = False) -> None:
    """Match every closed round of ``url`` as ``CoordinatorRole.tick`` does after a restart; time each."""
    engine = make_engine(url)
    shown = engine.url.render_as_string(hide_password=True)
    if rematch:
        print(f"set back to closed in {shown}: {', '.join(reset_matched(engine)) or 'none'}")
    role = CoordinatorRole(sql_unit_of_work(engine), SigningKey.generate(), known_types=["phone"])
    with engine.connect() as conn:
        closed = conn.execute(select(rounds.c.round_id).where(rounds.c.state == RoundState.CLOSED)).scalars().all()
        in_sets = int(conn.execute(select(func.coalesce(func.sum(member_set_state.c.item_count), 0))).scalar_one())
    if not closed:
        hint = "" if rematch else "; --rematch sets the last matched round of each scope back to closed"
        raise SystemExit(f"no closed round in {shown}{hint}")
    for round_id in closed:
        start = time.perf_counter()
        role._match(round_id)
        matched = time.perf_counter() - start
        found, _ = role.get_round(Identity("admin", Role.ADMIN), round_id)
        assert found.state is RoundState.MATCHED
        with engine.connect() as conn:
            members = conn.execute(
                select(func.count())
                .select_from(submissions)
                .where(submissions.c.round_id == round_id, submissions.c.state == "committed")
            ).scalar_one()
            counts = conn.execute(select(rounds.c.match_counts).where(rounds.c.round_id == round_id)).scalar()
        print(
            f"round {round_id}: {members} members, {in_sets:,} tokens in the scope's sets on {engine.dialect.name}: "
            f"matching step {matched:.1f} s ({in_sets / matched:,.0f} tokens/s); tokens by holder count {counts}"
        )
    peak = next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith("VmHWM:"))
    print(f"this process's peak RSS: {int(peak.split()[1]) / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
