"""The coordinator's CPU per submitted token in a cold batch round: upload, staging and commit.

Usage:
    .venv/bin/python bench/coordinator_upload.py                          # 2 members x 20,000, this tree
    .venv/bin/python bench/coordinator_upload.py --before main --turns 5  # REV's code beside it
    .venv/bin/python bench/coordinator_upload.py --profile /tmp/upload.pstats --turns 1
    .venv/bin/python bench/coordinator_upload.py --postgres postgresql+psycopg://...  # on PostgreSQL

Each of ``--members`` members' whole sets of ``--tokens`` random tokens (a tenth of them held by
every member), each with a random sealed-label-sized label, in chunks of the member node's
default size, is encoded once as ``SubmissionChunk`` requests (the bytes gRPC hands the
coordinator). Each measurement is a fresh process of one tree's code (this tree's, or with
``--before REV`` the ``alliance_psi`` of ``git archive REV``) on a fresh database with the
coordinator's own settings (``make_engine``): SQLite, or a database created on the PostgreSQL
server ``--postgres`` and dropped after. A batch round sharing labels invites the members and
one more (so that it stays open: no matching is timed); then each member's upload, each
request as the server takes it (the wire limit check, decoding, ``chunk_from_pb``,
``CoordinatorRole.upload_chunk``: checks, digests, staging), and its commit
(``CoordinatorRole.commit``: the staged set becomes the standing set, holder counts, the set
digest). gRPC and TLS are left out. The trees take turns, ``--turns`` times, in alternating
order, so that a busy machine slows each alike.

Printed: the CPU (user + system) per token of the upload and of the commit, of this process and,
on PostgreSQL, of the server's backends for the database (its background writer and
checkpointer are left out), medians over the turns, and with ``--before`` this tree's over
REV's, turn by turn (median and quartiles). ``--profile FILE`` keeps this tree's first turn's
cProfile statistics (of this process only) and prints their top. Each measurement also times
its tree's set digest (LtHash16) alone over as many random entries, after the round.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
EPOCH = "bench"


def encode_set(members: int, tokens: int, chunk_size: int, path: Path) -> None:
    """Write each member's requests and its commit's figures to ``path`` (JSON, hex): ``tokens``
    each, a tenth of them held by every member (what the holder counts update, not insert)."""
    sys.path.insert(0, str(ROOT))
    from alliance_psi.crypto.labels import SEALED_LABEL_BYTES
    from alliance_psi.protocol._pb import coordinator_pb2 as pb
    from alliance_psi.protocol.submission import SetDigest, SubmissionDigest, label_digest

    shared = [os.urandom(16) for _ in range(tokens // 10)]
    sets = []
    for _ in range(members):
        own = shared + [os.urandom(16) for _ in range(tokens - len(shared))]
        items = sorted((token, os.urandom(SEALED_LABEL_BYTES)) for token in own)
        whole, digest, requests = SetDigest(), SubmissionDigest(), []
        for index, start in enumerate(range(0, tokens, chunk_size)):
            part = items[start : start + chunk_size]
            chunk_digest = digest.update(part)
            request = pb.SubmissionChunk(
                round_id="ROUND",
                chunk_index=index,
                chunk_digest=chunk_digest,
                items=[pb.SubmittedToken(match_token=t, sealed_label=label) for t, label in part],
            )
            requests.append(request.SerializeToString().hex())
            for token, label in part:
                whole.add(token, label_digest(label))
        commit = {"count": digest.count, "digest": digest.digest().hex(), "set_digest": whole.digest().hex()}
        sets.append({"requests": requests, "commit": commit})
    path.write_text(json.dumps(sets))


def measure(tree: Path, data: Path, profile: Path | None, server: str | None) -> dict[str, float]:
    """One cold upload and commit with ``tree``'s code (run in a process of its own), on a fresh
    SQLite database, or a fresh database of PostgreSQL ``server`` (a URL), dropped after."""
    sys.path.insert(0, str(tree))
    import cProfile

    from alliance_psi.crypto.signing import SigningKey
    from alliance_psi.protocol import messages
    from alliance_psi.protocol._pb import coordinator_pb2 as pb
    from alliance_psi.protocol.coordinator import Commit, CoordinatorRole, RoundSpec
    from alliance_psi.protocol.model import NO_DEADLINE, Identity, Role
    from alliance_psi.protocol.wire import check_wire
    from alliance_psi.services.coordinator import sql_unit_of_work
    from alliance_psi.storage import create_schema, make_engine

    assert Path(messages.__file__).is_relative_to(tree), messages.__file__
    loaded = json.loads(data.read_text())
    names = [f"m{i}" for i in range(len(loaded))]
    with tempfile.TemporaryDirectory(prefix="coordinator-upload-") as folder, _database(server, folder) as url:
        engine = make_engine(url)
        create_schema(engine)
        role = CoordinatorRole(sql_unit_of_work(engine), SigningKey.generate(), known_types=["phone"])
        # One member more is invited than submits: the round stays open (no matching is timed).
        spec = RoundSpec("bench", 2, EPOCH, NO_DEADLINE, ("phone",), (*names, "absent"), True)
        round_id = role.create_round(Identity("operator", Role.ADMIN), spec).round_id
        work = []
        for name, member in zip(names, loaded, strict=True):
            figures = member["commit"]
            count, digest, set_digest = figures["count"], bytes.fromhex(figures["digest"]), figures["set_digest"]
            commit = Commit(round_id, count, digest, count, bytes.fromhex(set_digest), True)
            work.append(
                (Identity(name, Role.MEMBER), [_with_round(r, round_id, pb) for r in member["requests"]], commit)
            )
        profiler = cProfile.Profile() if profile else None
        upload = committing = 0.0
        for caller, requests, commit in work:
            if profiler:
                profiler.enable()
            began, server_began = time.process_time(), _server_cpu(engine)
            for request in requests:
                check_wire(request, messages.CHUNK_REQUEST, what="UploadChunks")
                assert role.upload_chunk(caller, messages.chunk_from_pb(pb.SubmissionChunk.FromString(request)))
            uploaded, server_uploaded = time.process_time(), _server_cpu(engine)
            status = role.commit(caller, commit)
            committed, server_committed = time.process_time(), _server_cpu(engine)
            if profiler:
                profiler.disable()
            assert status.set_count == commit.set_count, status
            upload += uploaded - began + _spent(server_began, server_uploaded)
            committing += committed - uploaded + _spent(server_uploaded, server_committed)
        if profiler:
            profiler.dump_stats(str(profile))
        engine.dispose()
    tokens = sum(m["commit"]["count"] for m in loaded)
    return {"upload": upload, "commit": committing, "tokens": tokens, "set_digest": _set_digest_seconds(tokens)}


def _set_digest_seconds(entries: int) -> float:
    """CPU seconds of this tree's set digest over ``entries`` random entries, fed as its commit
    feeds a whole set (``add_all`` where the tree has it, else ``add`` entry by entry)."""
    from alliance_psi.protocol.submission import SetDigest

    rows = [(os.urandom(16), os.urandom(16)) for _ in range(entries)]
    digest = SetDigest()
    began = time.process_time()
    if hasattr(digest, "add_all"):
        digest.add_all(rows)
    else:
        for token, label in rows:
            digest.add(token, label)
    return time.process_time() - began


def _server_cpu(engine: Any) -> dict[int, float]:
    """CPU seconds of each PostgreSQL backend serving this database ({} on SQLite): the
    coordinator's SQL runs there, not in this process."""
    if engine.dialect.name != "postgresql":
        return {}
    with engine.connect() as conn:
        pids = conn.exec_driver_sql("SELECT pid FROM pg_stat_activity WHERE datname = current_database()").scalars()
        return {pid: _cpu_seconds(pid) for pid in pids}


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _spent(before: dict[int, float], after: dict[int, float]) -> float:
    return sum(seconds - before.get(pid, 0.0) for pid, seconds in after.items())


@contextlib.contextmanager
def _database(server: str | None, folder: str) -> Iterator[str]:
    if server is None:
        yield f"sqlite:///{folder}/coordinator.db"
        return
    from sqlalchemy.engine import make_url

    from alliance_psi.storage import make_engine

    name = f"coordinator_upload_{os.getpid()}"
    admin = make_engine(server).execution_options(isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    try:
        yield make_url(server).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE {name}")
        admin.dispose()


def _with_round(hexed: str, round_id: str, pb: Any) -> bytes:
    request = pb.SubmissionChunk.FromString(bytes.fromhex(hexed))
    request.round_id = round_id
    return bytes(request.SerializeToString())


def source_tree(rev: str, into: Path) -> Path:
    """``alliance_psi`` of commit ``rev``, extracted under ``into``."""
    sys.path.insert(0, str(ROOT))
    from bench.custodian_batch import source_tree as extract

    return extract(rev, into)


def run_turn(tree: Path, data: Path, profile: Path | None, server: str | None) -> dict[str, float]:
    command = [sys.executable, __file__, "--measure", str(tree), "--data", str(data)]
    if server:
        command += ["--postgres", server]
    if profile:
        command += ["--profile", str(profile)]
    done = subprocess.run(command, capture_output=True, text=True, check=False, cwd=tree)
    if done.returncode:
        raise SystemExit(f"the measurement of {tree} failed:\n{done.stderr}")
    result: dict[str, float] = json.loads(done.stdout.splitlines()[-1])
    return result


def quartiles(values: list[float]) -> str:
    if len(values) < 2:
        return f"{values[0]:.2f}"
    low, mid, high = statistics.quantiles(values, n=4)
    return f"{mid:.2f} (quartiles {low:.2f} to {high:.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", type=int, default=2)
    parser.add_argument("--tokens", type=int, default=20_000, help="per member")
    parser.add_argument("--chunk-size", type=int, default=4096)
    parser.add_argument("--turns", type=int, default=3)
    parser.add_argument("--before", metavar="REV", help="also measure REV's code, turn by turn")
    parser.add_argument("--profile", type=Path, help="keep this tree's first turn's cProfile statistics here")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--postgres", metavar="URL", help="a PostgreSQL server to measure on instead of SQLite")
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure.resolve(), args.data, args.profile, args.postgres)))
        return
    with tempfile.TemporaryDirectory(prefix="coordinator-upload-") as folder:
        data = Path(folder) / "set.json"
        encode_set(args.members, args.tokens, args.chunk_size, data)
        trees = {"this tree": ROOT}
        if args.before:
            trees[args.before] = source_tree(args.before, Path(folder) / "before")
        results: dict[str, list[dict[str, float]]] = {name: [] for name in trees}
        for turn in range(args.turns):
            order = list(trees.items())
            for name, tree in order if turn % 2 == 0 else reversed(order):
                profile = args.profile if args.profile and name == "this tree" and turn == 0 else None
                results[name].append(run_turn(tree, data, profile, args.postgres))
                last = results[name][-1]
                print(
                    f"turn {turn}, {name}: upload {last['upload'] / last['tokens'] * 1e6:.1f} µs, "
                    f"commit {last['commit'] / last['tokens'] * 1e6:.1f} µs per token",
                    flush=True,
                )
    print(
        f"\n{args.members} members x {args.tokens:,} tokens with sealed labels, chunks of {args.chunk_size}; CPU per token, median of {args.turns}:"
    )
    for name, rows in results.items():
        upload = statistics.median(r["upload"] / r["tokens"] * 1e6 for r in rows)
        commit = statistics.median(r["commit"] / r["tokens"] * 1e6 for r in rows)
        total = statistics.median((r["upload"] + r["commit"]) / r["tokens"] * 1e6 for r in rows)
        lthash = statistics.median(r["set_digest"] / r["tokens"] * 1e6 for r in rows)
        print(
            f"  {name:>10}: upload {upload:6.1f} µs, commit {commit:6.1f} µs, both {total:6.1f} µs "
            f"(set digest alone, in the same process: {lthash:.2f} µs per entry)"
        )
    if args.before:
        now, then = results["this tree"], results[args.before]
        for what in ("upload", "commit", "set_digest"):
            print(
                f"  {what}: this tree / {args.before} = {quartiles([a[what] / b[what] for a, b in zip(now, then, strict=True)])}"
            )
        both = [(a["upload"] + a["commit"]) / (b["upload"] + b["commit"]) for a, b in zip(now, then, strict=True)]
        print(f"  both: this tree / {args.before} = {quartiles(both)}")
    print(f"  load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if args.profile:
        import pstats

        pstats.Stats(str(args.profile)).sort_stats("tottime").print_stats(args.top)


if __name__ == "__main__":
    main()
