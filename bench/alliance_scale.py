"""Many members: a full-stack round of 200 member nodes, each with its own database and certificate.

Usage:
    .venv/bin/python bench/alliance_scale.py                       # 200 x 10,000, SQLite coordinator
    .venv/bin/python bench/alliance_scale.py --database 'postgresql+psycopg://postgres@/EMPTY_DB?host=/tmp/scale-pg&port=5432'
    .venv/bin/python bench/alliance_scale.py --members 20 --size 2000 --parallel 4

The coordinator and the custodian run as server processes; every member is its own ``alliance-psi
node`` process with its own node database and certificate, over mutual TLS on loopback. Overlap is
Zipf-like: each member draws a fifth of its identifiers from a shared pool with weights 1/rank
(so most pooled identifiers are held by one member and a long tail by many) and the rest are its
own. On 2 cores the members run ``--parallel`` at a time (each node tokenizes with its own worker
processes): every member imports, then every member joins without waiting (tokens, submission,
commit), the operator closes the round (the coordinator matches it before answering: the
matching time), then every member fetches and verifies its result. Prints the wall time of each
stage, the members' phases summed, the matching time, the coordinator's database size and the
peak memory of every process (servers, and the members' largest and median).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import random
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from alliance_psi.cli._local_alliance import EPOCH, LocalAlliance, local_alliance
from alliance_psi.config import TlsConfig
from alliance_psi.protocol.coordinator import RoundSpec
from alliance_psi.protocol.model import Role
from alliance_psi.services.cert_checks import load_tls
from alliance_psi.services.clients import CoordinatorClient, RetryPolicy
from bench.coordinator_scale import database_size, require_empty
from bench.round import peak_rss_kib, write_csv

_MATCHED = re.compile(r"verified and kept: ([\d,]+) matched token")


def member_sets(members: int, size: int, seed: int = 14) -> list[list[str]]:
    """Each member's phone numbers: a fifth from a shared pool by Zipf-like weights, the rest its own."""
    pool_size = members * size // 5
    pool = [f"+86139{i:08d}" for i in range(pool_size)]
    cumulative = list(itertools.accumulate(1.0 / (i + 1) for i in range(pool_size)))
    sets = []
    for m in range(members):
        rng = random.Random(seed + m)
        shared = sorted(set(rng.choices(pool, cum_weights=cumulative, k=size // 5)))
        own = [f"+86138{m * size + i:08d}" for i in range(size - len(shared))]
        sets.append(shared + own)
    return sets


def holders_histogram(sets: list[list[str]]) -> dict[int, int]:
    counts: dict[str, int] = {}
    for values in sets:
        for value in values:
            counts[value] = counts.get(value, 0) + 1
    histogram: dict[int, int] = {}
    for count in counts.values():
        histogram[count] = histogram.get(count, 0) + 1
    return dict(sorted(histogram.items()))


def run_members(
    alliance: LocalAlliance, parallel: int, args_of: Callable[[str], list[str]]
) -> tuple[float, dict[str, float], dict[str, str]]:
    """Run one node command per member, ``parallel`` at a time; (wall seconds, {member: peak RSS
    MiB}, {member: stdout})."""
    rss: dict[str, float] = {}
    outputs: dict[str, str] = {}

    def one(member: str) -> None:
        args = args_of(member)
        out, err = alliance.home(member) / f"{args[0]}.out", alliance.home(member) / f"{args[0]}.err"
        with out.open("w") as stdout, err.open("w") as stderr:
            proc = subprocess.Popen(alliance.node_command(member, *args), stdout=stdout, stderr=stderr, text=True)
            # The node's own peak RSS (VmHWM), read while it runs: wait4's ru_maxrss would also count
            # this process's RSS at the fork before exec (hundreds of MiB holding every member's set).
            peak, status = 0, None
            while status is None:
                with contextlib.suppress(OSError, ValueError):
                    peak = max(peak, peak_rss_kib(proc.pid))
                pid, code, _ = os.wait4(proc.pid, os.WNOHANG)
                if pid:
                    status = code
                else:
                    time.sleep(0.05)
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit(f"{member} {args[0]} failed:\n{err.read_text()[-2000:]}")
        outputs[member], rss[member] = out.read_text(), peak / 1024

    began, before = time.perf_counter(), load()
    with ThreadPoolExecutor(parallel) as pool:
        list(pool.map(one, alliance.members))
    print(
        f"  node {args_of(alliance.members[0])[0]}: {time.perf_counter() - began:.1f} s, load {before} -> {load()}",
        flush=True,
    )
    return time.perf_counter() - began, rss, outputs


def load() -> str:
    """The load average (1, 5, 15 min): the machine is shared, so every figure carries it."""
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


def spread(rss: dict[str, float]) -> str:
    values = list(rss.values())
    return f"median {statistics.median(values):.0f}, largest {max(values):.0f}"


def phases(outputs: dict[str, str]) -> dict[str, float]:
    """The join phases every member printed ("seconds: tokenize" …), summed over members."""
    summed: dict[str, float] = {}
    for stdout in outputs.values():
        for line in stdout.splitlines():
            if "│ seconds:" in line:
                name, value = (part.strip() for part in line.split("│")[1:3])
                key = name.removeprefix("seconds: ")
                summed[key] = summed.get(key, 0.0) + float(value)
    return summed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=200)
    parser.add_argument("--size", type=int, default=10_000)
    parser.add_argument("--threshold", type=int, default=2)
    parser.add_argument("--parallel", type=int, default=4, help="member processes at a time")
    parser.add_argument("--database", default=None, help="the coordinator's (empty) database; default SQLite")
    parser.add_argument("--out", type=Path, default=Path("/tmp/alliance-psi-alliance-scale"))
    args = parser.parse_args()
    if args.database:
        require_empty(args.database)
    names = [f"m{i:03d}" for i in range(args.members)]
    sets = member_sets(args.members, args.size)
    histogram = holders_histogram(sets)
    at_threshold = sum(n for holders, n in histogram.items() if holders >= args.threshold)
    print(
        f"{args.members} members x {args.size:,} identifiers, {args.parallel} member processes at a time; "
        f"distinct identifiers {sum(histogram.values()):,}; held by >= {args.threshold}: {at_threshold:,}; "
        f"most holders of one identifier: {max(histogram)}; load {load()}",
        flush=True,
    )
    started = time.perf_counter()
    with local_alliance(args.out, names, coordinator_database=args.database) as alliance:
        for member, values in zip(names, sets, strict=True):
            write_csv(alliance.home(member) / "list.csv", values)
        import_s, import_rss, _ = run_members(
            alliance, args.parallel, lambda m: ["import", str(alliance.home(m) / "list.csv")]
        )
        pki = alliance.pki_dir
        admin_tls = load_tls(
            TlsConfig(ca_cert=pki / "ca.pem", cert=pki / "operator.pem", key=pki / "operator.key"), role=Role.ADMIN
        )
        wait = RetryPolicy(attempts=1, timeout=4 * 3600)  # The close answers once matching is done.
        with CoordinatorClient(alliance.coordinator.address, admin_tls, wait) as admin:
            spec = RoundSpec(
                "scale", args.threshold, EPOCH, datetime.now(UTC) + timedelta(hours=12), ("phone",), None, True
            )
            round_id = admin.create_round(spec).round_id
            join_s, join_rss, joined = run_members(alliance, args.parallel, lambda m: ["join", round_id, "--wait", "0"])
            began, before = time.perf_counter(), load()
            admin.close_round(round_id, "bench")
            match_s = time.perf_counter() - began
            print(f"  close (matching): {match_s:.2f} s, load {before} -> {load()}", flush=True)
        fetch_s, fetch_rss, fetched = run_members(
            alliance, args.parallel, lambda m: ["fetch", round_id, "--wait", "600"]
        )
        servers = {
            "coordinator": peak_rss_kib(alliance.coordinator.proc.pid) / 1024,
            "custodian": peak_rss_kib(alliance.custodian.proc.pid) / 1024,
        }
        database = args.database or f"sqlite:///{alliance.root / 'alliance' / 'coordinator.db'}"
        size = database_size(database)
    leads = sum(int(m[1].replace(",", "")) for out in fetched.values() if (m := _MATCHED.search(out)))
    total = time.perf_counter() - started
    backend = "PostgreSQL" if args.database else "SQLite"
    print(f"coordinator on {backend}; wall {total:.0f} s in all (set-up and servers included); load {load()}")
    print(f"  import: {import_s:.1f} s wall ({args.members * args.size / import_s:,.0f} identifiers/s)")
    print(
        f"  join (tokens, submit, commit): {join_s:.1f} s wall ({args.members * args.size / join_s:,.0f} "
        f"identifiers/s); members' phases summed: " + ", ".join(f"{k} {v:.0f} s" for k, v in phases(joined).items())
    )
    print(f"  matching ({args.members} sets, {args.members * args.size:,} tokens): {match_s:.2f} s")
    print(f"  fetch and verify results: {fetch_s:.1f} s wall; matched tokens in all results: {leads:,}")
    print(f"  coordinator database: {size / 2**20:.0f} MiB")
    print(f"  peak RSS MiB: coordinator {servers['coordinator']:.0f}, custodian {servers['custodian']:.0f}")
    print(
        f"  member processes' peak RSS MiB: import {spread(import_rss)}; join {spread(join_rss)}; "
        f"fetch {spread(fetch_rss)}"
    )


if __name__ == "__main__":
    main()
