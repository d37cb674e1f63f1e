"""The member node's own CPU per identifier in a cold batch round, above the crypto: this tree and REV's.

Usage:
    .venv/bin/python bench/member_path.py                        # 20,000 identifiers, this tree, 3 turns
    .venv/bin/python bench/member_path.py --before main          # and main's code, turn by turn
    .venv/bin/python bench/member_path.py --before main --before HEAD~1 --size 200000   # two REVs
    .venv/bin/python bench/member_path.py --profile /tmp/member.prof   # cProfile of this tree's one run

One SQLite node database of ``--size`` phones (one category) is made first; every run starts from a
copy of it, in a process of its own with one tree's ``alliance_psi`` first on its path (REV's from
``git archive``). A run is ``MemberRole.tokenize`` (identifiers read by pages, 2 crypto worker
processes for blind and finalize, tokens cached batch by batch), then ``MemberRole.submit`` of a
round that shares labels (its count of identifiers lacking a token finds none): the whole set
read in token order, labels encoded and sealed, the set and chunk digests, each chunk turned into
its protobuf message and serialized (what the gRPC client sends), the node's pending rows
written, and the commit recorded. The custodian is left out: the evaluator returns the blinded
elements as they are (a key of 1), and the coordinator is a stub that serializes the chunks and
answers the commit. What is measured is the node's main process CPU (``time.process_time``): its
SQL, label sealing, digests, protobuf and hand-off to the workers, never the workers' group
operations (the crypto floor), which run in other processes. ``--profile`` times cProfile by
CPU, not wall time (waits for the workers are not work), which inflates call-heavy code.

Turns alternate between the trees, so a busy machine slows both alike; printed per tree: the median
µs per identifier of tokenize and of submit, the node process's peak RSS, and with ``--before``
(more than once for several REVs) this tree / REV, turn by turn.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, os.environ.get("MEMBER_PATH_TREE") or str(Path(__file__).resolve().parent.parent))

from alliance_psi.protocol.member import MemberRole
from alliance_psi.protocol.messages import chunk_to_pb
from alliance_psi.protocol.model import Round, SubmissionState, SubmissionStatus
from alliance_psi.services.member import SqlNodeUnitOfWork
from alliance_psi.storage import MemberRepository, create_schema

try:  # The node's engine, as its commands open it (a tree before make_node_engine: make_engine's).
    from alliance_psi.storage import make_node_engine
except ImportError:
    from alliance_psi.storage import make_engine as make_node_engine

ROOT = Path(__file__).resolve().parent.parent
EPOCH = "bench-epoch"
MEMBER = "bench-member"


class IdentityEvaluator:
    """A custodian with the key 1: the member's work without the custodian's."""

    def key_epochs(self) -> list[str]:
        return [EPOCH]

    def evaluate(self, key_epoch: str, elements: Sequence[bytes]) -> list[bytes]:
        return list(elements)


class StubCoordinator:
    """Serializes every chunk as the gRPC client would, and commits what it is told."""

    def __init__(self) -> None:
        self.bytes = 0
        self.digests = ""  # The commit's delta and set digests: the same bytes from every tree.

    def submission_status(self, round_id: str, member_id: str) -> SubmissionStatus:
        return SubmissionStatus(round_id, member_id, SubmissionState.NONE)

    def upload_chunks(self, chunks: Iterable[Any]) -> tuple[int, int]:
        stored = 0
        for chunk in chunks:
            self.bytes += len(chunk_to_pb(chunk).SerializeToString())
            stored += 1
        return stored, 0

    def commit(self, commit: Any, member_id: str) -> SubmissionStatus:
        self.digests = f"{commit.digest.hex()[:16]}/{commit.set_digest.hex()[:16]}"
        return SubmissionStatus(
            commit.round_id,
            member_id,
            SubmissionState.COMMITTED,
            item_count=commit.item_count,
            set_count=commit.set_count,
            set_digest=commit.set_digest,
        )


def make_database(path: Path, size: int) -> None:
    engine = make_node_engine(f"sqlite:///{path}")
    create_schema(engine)
    rows = (
        {"type": "phone", "canonical": f"+86139{(i * 48271 + 20481736) % 10**8:08d}", "category": "wool_party"}
        | {"severity": ""}
        for i in range(size)
    )
    with engine.begin() as conn:
        MemberRepository(conn).upsert_identifiers(rows)
    engine.dispose()


def one_run(database: Path, size: int) -> dict[str, Any]:
    """Tokenize and submit on ``database``; this process's CPU µs per identifier for each, and the
    commit's digests (the blind and nonce keys are fixed, so every tree must send the same bytes)."""
    engine = make_node_engine(f"sqlite:///{database}")
    coordinator = StubCoordinator()
    role = MemberRole(
        member_id=MEMBER,
        uow=SqlNodeUnitOfWork(engine),
        evaluator=IdentityEvaluator(),  # type: ignore[arg-type]
        coordinator=coordinator,  # type: ignore[arg-type]
        coordinator_key=b"\0" * 32,
        nonce_key=b"n" * 32,
        blind_key=b"b" * 32,
        workers=2,
    )
    now = datetime.now(UTC)
    round_ = Round("r1", "bench", 2, EPOCH, now + timedelta(hours=1), ("phone",), None, True, created_at=now)
    start = time.process_time()
    done = role.tokenize(EPOCH, round_.allowed_types)
    tokenized = time.process_time()
    submitted = role.submit(round_, status=coordinator.submission_status(round_.round_id, MEMBER))
    end = time.process_time()
    engine.dispose()
    if done != size or submitted.set_count != size:
        raise SystemExit(f"tokenized {done} and submitted {submitted.set_count} of {size}")
    return {
        "tokenize_us": (tokenized - start) / size * 1e6,
        "submit_us": (end - tokenized) / size * 1e6,
        "total_us": (end - start) / size * 1e6,
        "peak_mib": _peak_rss_mib(),
        "digests": coordinator.digests,
    }


def _peak_rss_mib() -> float:
    """This process's peak RSS (VmHWM) in MiB: the node's process, its page caches included."""
    status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    return int(status["VmHWM"].split()[0]) / 1024


def child(tree: Path | None, template: Path, work: Path, size: int) -> dict[str, Any]:
    """One run in a new process, on a copy of ``template``, with ``tree``'s package (this tree's if None)."""
    database = work / "node.db"
    shutil.copyfile(template, database)
    env = dict(os.environ)
    env.pop("MEMBER_PATH_TREE", None)
    if tree is not None:
        env["MEMBER_PATH_TREE"] = str(tree)
        env["PYTHONPATH"] = str(tree)  # The crypto workers import the package too.
    out = subprocess.run(
        [sys.executable, __file__, "--child", str(database), "--size", str(size)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    database.unlink()
    return dict(json.loads(out.stdout.splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=20_000)
    parser.add_argument("--turns", type=int, default=3)
    parser.add_argument(
        "--before", metavar="REV", action="append", default=[], help="also run REV's code, turn by turn"
    )
    parser.add_argument("--profile", type=Path, help="cProfile one run of this tree into FILE")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(one_run(args.child, args.size)))
        return
    with tempfile.TemporaryDirectory(prefix="member-path-") as temp:
        root = Path(temp)
        template = root / "template.db"
        make_database(template, args.size)
        if args.profile:
            import cProfile

            database = root / "node.db"
            shutil.copyfile(template, database)
            profiler = cProfile.Profile(time.process_time)  # CPU time: waits for the workers are not work.
            print(profiler.runcall(one_run, database, args.size))
            profiler.dump_stats(args.profile)
            return
        trees: dict[str, Path | None] = {"this tree": None}
        if args.before:
            from bench.custodian_batch import source_tree  # Here only: the runs import no more than they measure.

            for n, rev in enumerate(args.before):
                trees[rev] = source_tree(rev, root / f"before-{n}")
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in trees}
        loads = [os.getloadavg()[0]]
        for turn in range(args.turns):
            for name, tree in trees.items():
                runs[name].append(child(tree, template, root, args.size))
                loads.append(os.getloadavg()[0])
                print(f"turn {turn + 1} {name}: {runs[name][-1]} load {loads[-1]:.1f}", file=sys.stderr)
    sent = {r.pop("digests") for results in runs.values() for r in results}
    print(
        f"{args.size} identifiers, member's main process CPU, µs per identifier, and peak RSS, MiB (median of "
        f"{args.turns} turns; load average {min(loads):.1f} to {max(loads):.1f}):"
    )
    print(
        f"  commit digests (delta/set): {' '.join(sorted(sent))}" + (" (every run the same)" if len(sent) == 1 else "")
    )
    for name, results in runs.items():
        figures = {key: statistics.median(r[key] for r in results) for key in results[0]}
        print(f"  {name:>10}: " + ", ".join(f"{key.rsplit('_', 1)[0]} {value:.1f}" for key, value in figures.items()))
    for rev in args.before:
        for key in [key for key in runs["this tree"][0] if key.endswith("_us")]:
            ratios = [now[key] / then[key] for now, then in zip(runs["this tree"], runs[rev], strict=True)]
            print(
                f"  {key[:-3]}: this tree / {rev} = {statistics.median(ratios):.2f} (turns: "
                + ", ".join(f"{r:.2f}" for r in ratios)
                + ")"
            )


if __name__ == "__main__":
    main()
