"""Where a continuous scope's commit of a small delta spends its time, by standing-set size (in-process, SQLite).

Usage:
    .venv/bin/python bench/commit_profile.py [--set-sizes 20000 100000 1000000] [--members 3]
        [--delta 100] [--repeat 5] [--top 15] [--profile-dir DIR]

For each set size: a fresh SQLite database (``make_engine``, the coordinator's own settings), a
``CoordinatorRole`` with its alert outbox, one continuous scope (threshold 2, labels shared), and
``--members`` synthetic members (random tokens, sealed-label-sized labels) that commit their whole
sets, all but the first holding the timed deltas' tokens already (``bench/alerts.py``'s shape).
Then ``--repeat`` times the first member uploads and commits a delta of ``--delta`` new tokens
(each a MATCH for it and a JOINED for every other member), the upload (``upload_chunk``) and the
commit (``CoordinatorRole.commit``) timed apart and profiled together (cProfile, and the process's
CPU time), and every SQL statement they run timed apart (SQLAlchemy's cursor
events), so that a statement whose cost grows with the standing sets shows by name. Members
acknowledge their alerts between commits, as their nodes would.

Printed per size: the commit's median time, its ratio to the smallest size's (within one run: the
machine is shared, so only ratios compare), the load average, the statements by total time, and
the profile's top entries by cumulative and own time. ``--profile-dir`` keeps each size's pstats
file.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import sqlite3
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import event

from alliance_psi.crypto.signing import SigningKey
from alliance_psi.protocol.coordinator import Commit, CoordinatorRole, RoundSpec
from alliance_psi.protocol.model import NO_DEADLINE, Identity, Role, RoundKind
from alliance_psi.protocol.submission import SetDigest
from alliance_psi.services.coordinator import sql_unit_of_work
from alliance_psi.storage import create_schema, make_engine
from bench.alerts import synthetic_delta

EPOCH = "bench"


class Member:
    """A synthetic member: its whole-set digest and commit sequence."""

    def __init__(self, role: CoordinatorRole, name: str, scope_id: str) -> None:
        self.role, self.caller, self.scope_id = role, Identity(name, Role.MEMBER), scope_id
        self.whole, self.sequence = SetDigest(), 0

    def upload(self, tokens: list[bytes], *, replace: bool) -> Commit:
        """Upload ``tokens`` (each with a fresh label) as the next delta; return its commit."""
        chunks, commit = synthetic_delta(self.scope_id, tokens, self.whole, self.sequence + 1, replace=replace)
        for chunk in chunks:
            self.role.upload_chunk(self.caller, chunk)
        self.sequence = commit.sequence
        return commit

    def commit(self, commit: Commit) -> None:
        self.role.commit(self.caller, commit)

    def ack_all(self) -> None:
        _, last = self.role.feed.ack(self.caller, 0)
        self.role.feed.ack(self.caller, last)


class StatementTimes:
    """Seconds and calls per SQL statement (its first 150 characters), while ``on``."""

    def __init__(self, engine: Any) -> None:
        self.on = False
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self.sample: dict[str, tuple[str, Any]] = {}  # A statement's full text and parameters, once.
        self._started: list[float] = []
        event.listen(engine, "before_cursor_execute", self._before)
        event.listen(engine, "after_cursor_execute", self._after)

    def _before(self, *_args: Any) -> None:
        self._started.append(time.perf_counter())

    def _after(self, _conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, many: bool) -> None:
        took = time.perf_counter() - self._started.pop()
        if self.on:
            key = " ".join(statement.split())[:150]
            self.seconds[key] += took
            self.calls[key] += 1
            if not many:
                self.sample.setdefault(key, (statement, parameters))

    def plans(self, path: Path) -> dict[str, list[str]]:
        """EXPLAIN QUERY PLAN of each statement seen (SQLite), on the database at ``path``."""
        found: dict[str, list[str]] = {}
        with sqlite3.connect(path) as conn:
            for key, (statement, parameters) in self.sample.items():
                if statement.lstrip().upper().startswith(("BEGIN", "COMMIT", "ROLLBACK")):
                    continue
                found[key] = [row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {statement}", parameters)]
        return found


def run(size: int, args: argparse.Namespace) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix=f"commit-profile-{size}-", dir=args.tmp))
    engine = make_engine(f"sqlite:///{folder}/coordinator.db")
    create_schema(engine)
    times = StatementTimes(engine)
    role = CoordinatorRole(sql_unit_of_work(engine), SigningKey.generate(), known_types=["phone"])
    names = [f"m{i:02d}" for i in range(args.members)]
    spec = RoundSpec("profile", 2, EPOCH, NO_DEADLINE, ("phone",), tuple(names), True, kind=RoundKind.CONTINUOUS)
    scope_id = role.create_round(Identity("operator", Role.ADMIN), spec).round_id
    members = [Member(role, name, scope_id) for name in names]
    deltas = [[os.urandom(16) for _ in range(args.delta)] for _ in range(args.repeat)]
    shared = [token for delta in deltas for token in delta]
    began = time.perf_counter()
    for member in members:
        own = [os.urandom(16) for _ in range(size - (len(shared) if member is not members[0] else 0))]
        member.commit(member.upload(own + (shared if member is not members[0] else []), replace=True))
        member.ack_all()
    filled = time.perf_counter() - began
    profile = cProfile.Profile()
    commits: list[float] = []
    uploads: list[float] = []
    cpu = 0.0
    for delta in deltas:
        times.on = True
        profile.enable()
        cpu_start, start = time.process_time(), time.perf_counter()
        commit = members[0].upload(delta, replace=False)
        uploaded = time.perf_counter()
        members[0].commit(commit)
        commits.append(time.perf_counter() - uploaded)
        uploads.append(uploaded - start)
        cpu += time.process_time() - cpu_start
        profile.disable()
        times.on = False
        for member in members:
            member.ack_all()
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    db_bytes = sum(f.stat().st_size for f in folder.iterdir())
    plans = times.plans(folder / "coordinator.db") if args.plans else {}
    if args.profile_dir:
        args.profile_dir.mkdir(parents=True, exist_ok=True)
        profile.dump_stats(args.profile_dir / f"commit-{args.members}x{size}.pstats")
    engine.dispose()
    if not args.keep:
        for path in folder.iterdir():
            path.unlink()
        folder.rmdir()
    return {
        "size": size,
        "commits": commits,
        "uploads": uploads,
        "cpu": cpu / len(deltas),
        "load": load,
        "filled": filled,
        "db": db_bytes,
        "times": times,
        "profile": profile,
        "plans": plans,
    }


def report(result: dict[str, Any], smallest: float | None, top: int) -> None:
    median = statistics.median(result["commits"])
    ratio = f"; {median / smallest:.2f}x the smallest set's" if smallest else ""
    print(
        f"\n== {result['size']:,} per member: commit of the delta median {median * 1e3:.1f} ms "
        f"(each: {', '.join(f'{c * 1e3:.0f}' for c in result['commits'])} ms){ratio}; upload median "
        f"{statistics.median(result['uploads']) * 1e3:.1f} ms; CPU of upload and commit {result['cpu'] * 1e3:.1f} ms "
        "per delta (the profile and statement times cover both); "
        f"sets committed in {result['filled']:.1f} s; database {result['db'] / 2**20:.0f} MiB; "
        f"load average {result['load']}",
        flush=True,
    )
    times: StatementTimes = result["times"]
    total = sum(times.seconds.values())
    print(f"   SQL statements: {total * 1e3:.1f} ms over {len(result['commits'])} commits; the top {top}:")
    for statement, seconds in sorted(times.seconds.items(), key=lambda kv: -kv[1])[:top]:
        print(f"   {seconds * 1e3:9.1f} ms {times.calls[statement]:5d}x  {statement}")
    for statement, steps in result["plans"].items():
        print(f"   plan of {statement[:100]}:")
        print("\n".join(f"      {step}" for step in steps))
    for order in ("cumulative", "tottime"):
        out = io.StringIO()
        pstats.Stats(result["profile"], stream=out).sort_stats(order).print_stats(top)
        lines = out.getvalue().splitlines()
        start = next(i for i, line in enumerate(lines) if "ncalls" in line)
        print(f"   profile by {order}:")
        print("\n".join("   " + line for line in lines[start : start + top + 1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set-sizes", type=int, nargs="+", default=[20_000, 100_000])
    parser.add_argument("--members", type=int, default=3)
    parser.add_argument("--delta", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--profile-dir", type=Path, default=None)
    parser.add_argument("--tmp", type=Path, default=None, help="where the databases go (default: the temp dir)")
    parser.add_argument("--plans", action="store_true", help="print each statement's EXPLAIN QUERY PLAN")
    parser.add_argument("--keep", action="store_true", help="keep the databases")
    args = parser.parse_args()
    print(f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {args.members} members, delta of {args.delta} x {args.repeat}")
    smallest = None
    for size in args.set_sizes:
        result = run(size, args)
        report(result, smallest, args.top)
        smallest = smallest or statistics.median(result["commits"])


if __name__ == "__main__":
    main()
