"""A big member: import and cold tokenization of millions of identifiers, measured, then projected.

Usage:  .venv/bin/python bench/big_member.py [--size 2000000] [--marks 200000,1000000]
                                             [--scaling 20000] [--json]

1. Import: a CSV of ``--size`` phones (written first, streaming) goes through ``import_records``
   (what ``node import`` and ``node run``'s inbox run: streaming reader, normalisation, batched
   upserts into the node's SQLite database, one transaction). Elapsed time, rows/s and this
   process's RSS are taken when the import passes each mark and at the end.
2. Worker scaling: ``--scaling`` fresh identifiers tokenized through the real custodian with 1,
   then 2 crypto worker processes (``crypto.parallel.tokenize``, the join's pipeline), warm, one
   after the other in this run: identifiers/s and the ratio 2 workers / 1 worker.
3. Cold tokenization of the whole node: ``MemberRole.tokenize`` (what ``node join`` runs before it
   submits: hash-to-group and blind in the workers, the custodian's evaluation over mutual TLS,
   unblind, finalize and derive in the workers, tokens cached batch by batch) with 2 workers,
   timed and RSS taken at each mark and at the end.

The custodian is a real ``custodian serve`` process on loopback with its own SQLite quota
database. The load average (``os.getloadavg``) is printed with every phase: the machine is shared.
The CPU time of this process, of its crypto workers and of the custodian is taken with each figure
(from /proc), so per-core costs can be read even when the shared machine's load hides the wall-clock
scaling. Projection to 20,000,000: the per-identifier cost from the last measured segment (marks to
end), times 20,000,000; on 16 cores from CPU time: the workers' CPU per identifier over 16 cores or
the node's main process's (one process), whichever is slower (the custodians' share is on their own
machines). The JSON also keeps the wall-clock estimate (the 1-worker rate times 16 times the
measured 2-worker efficiency), printed as not to be used: on a shared machine the load sets it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import tempfile
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

from alliance_psi._files import write_file_atomic
from alliance_psi.cli._processes import ServerProcess
from alliance_psi.config import PeerEndpoint, TlsMaterial
from alliance_psi.crypto.key_shares import KeyShare
from alliance_psi.crypto.parallel import ProcessMap, available_cores, tokenize
from alliance_psi.identifiers.importer import BlacklistFile
from alliance_psi.protocol.member import MemberRole
from alliance_psi.protocol.model import Role
from alliance_psi.services import pki
from alliance_psi.services.blacklist_import import import_records
from alliance_psi.services.clients import custodian_evaluator
from alliance_psi.services.enrolment import enrol
from alliance_psi.services.member import SqlNodeUnitOfWork
from alliance_psi.storage import create_schema, make_engine

try:  # The node's engine, as its commands open it (a tree before make_node_engine: make_engine's).
    from alliance_psi.storage import make_node_engine
except ImportError:
    make_node_engine = make_engine

EPOCH = "bench-epoch"
MEMBER = "big-member"
TARGET = 20_000_000


def rss_mib() -> tuple[float, float]:
    """(current RSS, peak RSS) of this process in MiB."""
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def descendants() -> dict[int, tuple[str, float, float]]:
    """{pid: (role, CPU seconds, RSS MiB)} of this process's live descendants, from /proc; role is
    "custodian" for the ``custodian serve`` process, "member" for the rest (the crypto workers); the
    entry 0 is the CPU of the children this process has reaped."""
    tick, page = os.sysconf("SC_CLK_TCK"), os.sysconf("SC_PAGE_SIZE")
    parent: dict[int, tuple[int, list[str]]] = {}
    found: dict[int, tuple[str, float, float]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                parent[int(entry.name)] = (int(stat[1]), stat)
    tree: set[int] = set()
    frontier = {os.getpid()}
    while frontier:
        frontier = {pid for pid, (ppid, _) in parent.items() if ppid in frontier} - tree
        tree |= frontier
    for pid in tree:
        stat = parent[pid][1]
        with contextlib.suppress(OSError):
            role = "custodian" if b"custodian\0serve" in Path(f"/proc/{pid}/cmdline").read_bytes() else "member"
            # utime + stime + the reaped children's (workers that exited count in their forkserver's).
            cpu = sum(int(field) for field in stat[11:15]) / tick
            found[pid] = (role, cpu, int(stat[21]) * page / 2**20)
    reaped = os.times()  # This process's reaped children: exited worker processes.
    found[0] = ("member", reaped.children_user + reaped.children_system, 0.0)
    return found


def load() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


def write_csv(path: Path, size: int) -> None:
    with path.open("w", encoding="utf-8") as out:
        out.write("type,value,category\n")
        for start in range(0, size, 100_000):
            # Spread over the subscriber numbers (as tests/integration/services/harness.py's phone()),
            # so few are placeholder shapes (13800000000); distinct up to 100,000,000.
            rows = range(start, min(size, start + 100_000))
            out.write("".join(f"phone,+86139{(i * 48271 + 20481736) % 10**8:08d},wool_party\n" for i in rows))


class Marks:
    """Elapsed seconds and RSS when a running count first reaches each mark."""

    def __init__(self, marks: list[int]) -> None:
        self.todo, self.start, self.cpu = sorted(marks), time.perf_counter(), time.process_time()
        self.before = {pid: cpu for pid, (_, cpu, _) in descendants().items()}
        self.points: list[dict[str, Any]] = []  # "workers_rss_mib" None once the workers exited

    def __call__(self, done: int) -> None:
        while self.todo and done >= self.todo[0]:
            self.todo.pop(0)
            self.take(done)

    def take(self, done: int, *, workers_exited: bool = False) -> None:
        """Note the figures at ``done``; ``workers_exited``: the crypto workers are gone (their CPU
        is counted from their parent, and what is left of the process tree is not their memory)."""
        rss, peak = rss_mib()
        elapsed, cpu = time.perf_counter() - self.start, time.process_time() - self.cpu
        children = descendants()
        spent = {"member": 0.0, "custodian": 0.0}
        for pid, (role, used, _) in children.items():
            spent[role] += used - self.before.get(pid, 0.0)
        workers_rss = None if workers_exited else sum(mib for role, _, mib in children.values() if role == "member")
        self.points.append(
            {
                "n": done,
                "s": elapsed,
                "per_s": done / elapsed,
                "cpu_s": cpu,
                "rss_mib": rss,
                "peak_mib": peak,
                "workers_cpu_s": spent["member"],
                "custodian_cpu_s": spent["custodian"],
                "workers_rss_mib": workers_rss,
            }
        )
        print(
            f"    {done:>12,}  {elapsed:9.1f} s  {done / elapsed:10,.0f}/s  CPU: this process {cpu:7.1f} s, "
            f"its workers {spent['member']:7.1f} s, custodian {spent['custodian']:7.1f} s  RSS {rss:6.1f} MiB "
            f"(workers {'(exited)' if workers_rss is None else f'{workers_rss:6.1f} MiB'})  load {load()}",
            flush=True,
        )


@contextlib.contextmanager
def custodian(root: Path) -> Iterator[tuple[TlsMaterial, PeerEndpoint, Path]]:
    """One chain custodian as a ``custodian serve`` process; the member's TLS; the quota database."""
    ca = pki.init_ca("Bench")
    pki.write_ca(ca, root / "pki")
    for role, name in ((Role.MEMBER, MEMBER), (Role.CUSTODIAN, "custodian-1")):
        pki.write_issued(pki.issue(ca, role=role, name=name), root / "pki", name)
    write_file_atomic(root / "share", KeyShare.generate(EPOCH).to_bytes())
    quota = root / "quota.db"
    engine = make_engine(f"sqlite:///{quota}")
    create_schema(engine)
    enrol(engine, (root / "pki" / f"{MEMBER}.pem").read_bytes(), role=Role.MEMBER)
    engine.dispose()
    args = ["custodian", "serve", "--name", "custodian-1", "--listen", "127.0.0.1:0"]
    args += ["--ca", str(root / "pki" / "ca.pem"), "--cert", str(root / "pki" / "custodian-1.pem")]
    args += ["--key", str(root / "pki" / "custodian-1.key"), "--key-share", str(root / "share")]
    args += ["--database", f"sqlite:///{quota}", "--quota", "1000000000"]
    with ServerProcess(args) as server:
        tls = TlsMaterial(
            (root / "pki" / "ca.pem").read_bytes(),
            (root / "pki" / f"{MEMBER}.pem").read_bytes(),
            (root / "pki" / f"{MEMBER}.key").read_bytes(),
        )
        yield tls, PeerEndpoint("custodian-1", server.address), quota


def import_phase(root: Path, size: int, marks: list[int]) -> tuple[Any, list[dict[str, Any]]]:
    csv = root / "big.csv"
    clock = time.perf_counter()
    write_csv(csv, size)
    print(f"  wrote {size:,} rows ({csv.stat().st_size / 2**20:,.0f} MiB) in {time.perf_counter() - clock:.1f} s")
    engine = make_node_engine(f"sqlite:///{root / 'node.db'}")
    create_schema(engine)
    marker = Marks(marks)
    items = BlacklistFile(csv).read()  # What ``import_blacklist`` streams, with a progress callback.
    # ``row`` is the file's row number; the header is row 1.
    result = import_records(
        engine, items, rejects_path=root / "rejects.csv", strict=False, advance=lambda row: marker(row - 1)
    )
    marker.take(result.stored)
    csv.unlink()
    print(f"  database {(root / 'node.db').stat().st_size / 2**20:,.0f} MiB; {result.figures}")
    return engine, marker.points


def scaling_phase(tls: TlsMaterial, endpoint: PeerEndpoint, size: int) -> list[dict[str, float]]:
    rows = []
    for workers in (1, 2):
        inputs = [b"phone\x00+86137%08d" % (i + workers * 10_000_000) for i in range(size)]
        warm = [b"phone\x00+86136%08d" % (i + workers * 10_000_000) for i in range(2048 * workers)]
        evaluator = custodian_evaluator([endpoint], tls)
        try:
            with ProcessMap(workers) as pool:
                for _ in tokenize(warm, partial(evaluator.evaluate, EPOCH), pool=pool):
                    pass
                before, cpu, clock = load(), time.process_time(), time.perf_counter()
                children = descendants()
                for _ in tokenize(inputs, partial(evaluator.evaluate, EPOCH), pool=pool):
                    pass
                wall, main_cpu = time.perf_counter() - clock, time.process_time() - cpu
                spent = {"member": 0.0, "custodian": 0.0}
                for pid, (role, used, _) in descendants().items():
                    spent[role] += used - children.get(pid, (role, 0.0, 0.0))[1]
        finally:
            evaluator.close()
        member_cpu = main_cpu + spent["member"]
        rows.append(
            {
                "workers": workers,
                "wall_s": wall,
                "per_s": size / wall,
                "main_cpu_s": main_cpu,
                "member_cpu_us_per_id": member_cpu / size * 1e6,
                "custodian_cpu_us_per_id": spent["custodian"] / size * 1e6,
            }
        )
        print(
            f"  {workers} worker(s): {wall:7.1f} s  {size / wall:8,.0f} identifiers/s  member CPU "
            f"{member_cpu / size * 1e6:6.1f} us/id, custodian CPU {spent['custodian'] / size * 1e6:6.1f} us/id  "
            f"load {before} -> {load()}"
        )
    return rows


def tokenize_phase(engine: Any, tls: TlsMaterial, endpoint: PeerEndpoint, marks: list[int], workers: int) -> Any:
    evaluator = custodian_evaluator([endpoint], tls)
    marker = Marks(marks)
    role = MemberRole(
        member_id=MEMBER,
        uow=SqlNodeUnitOfWork(engine),
        evaluator=evaluator,
        coordinator=None,  # type: ignore[arg-type]  # Tokenization never calls the coordinator.
        coordinator_key=b"\0" * 32,
        nonce_key=b"\1" * 32,
        blind_key=b"\2" * 32,
        workers=workers,
        progress=lambda stage, done, total: marker(done),
    )
    try:
        done = role.tokenize(EPOCH, ["phone"])
    finally:
        evaluator.close()
    marker.take(done, workers_exited=True)  # ``tokenize`` closed its worker pool.
    return marker.points


def project(points: list[dict[str, Any]]) -> dict[str, float]:
    """Seconds for TARGET from the last segment's per-identifier cost (the run's steady state)."""
    if len(points) < 2:
        return {"us_per_id_last_segment": 0.0, "projected_s": 0.0}
    (a, b) = points[-2], points[-1]
    per = (b["s"] - a["s"]) / (b["n"] - a["n"])
    return {"us_per_id_last_segment": per * 1e6, "projected_s": b["s"] + per * (TARGET - b["n"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=2_000_000, help="Identifiers imported and tokenized.")
    parser.add_argument("--marks", default="200000,1000000", help="Counts at which time and RSS are taken.")
    parser.add_argument("--scaling", type=int, default=20_000, help="Identifiers per 1- and 2-worker measurement.")
    parser.add_argument("--workers", type=int, default=2, help="Workers for the whole-node tokenization.")
    parser.add_argument("--skip-tokenize", action="store_true", help="Measure the import only.")
    parser.add_argument("--json", action="store_true", help="Print the figures as JSON too.")
    args = parser.parse_args()
    marks = [int(m) for m in args.marks.split(",") if m and int(m) < args.size]
    print(f"{platform.machine()}, {available_cores()} cores, load {load()}, {args.size:,} identifiers")
    figures: dict[str, Any] = {"size": args.size, "cores": available_cores()}
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as folder:
        root = Path(folder)
        print("import (node import's path, one transaction):")
        engine, figures["import"] = import_phase(root, args.size, marks)
        figures["import_projection"] = project(figures["import"])
        if not args.skip_tokenize:
            with custodian(root / "custodian") as (tls, endpoint, _):
                print(f"worker scaling ({args.scaling:,} fresh identifiers each, warm pool and connection):")
                figures["scaling"] = scaling_phase(tls, endpoint, args.scaling)
                figures["ratio_2_to_1"] = figures["scaling"][1]["per_s"] / figures["scaling"][0]["per_s"]
                print(f"  ratio 2 workers / 1 worker: {figures['ratio_2_to_1']:.2f}")
                print(f"cold tokenization of the node ({args.workers} workers, MemberRole.tokenize):")
                figures["tokenize"] = tokenize_phase(engine, tls, endpoint, marks, args.workers)
                figures["tokenize_projection"] = project(figures["tokenize"])
                one = figures["scaling"][0]["per_s"]
                efficiency = figures["ratio_2_to_1"] / 2
                figures["tokenize_16_cores_s"] = TARGET / (one * 16 * efficiency)
                # From CPU time (the load changes it little): the workers' crypto spreads over 16 cores, the
                # node's main process (pages, gRPC, token writes) is one process; the slower of the two.
                last = figures["tokenize"][-1]
                figures["tokenize_cpu_us_per_id"] = {
                    "main": last["cpu_s"] / last["n"] * 1e6,
                    "workers": last["workers_cpu_s"] / last["n"] * 1e6,
                    "custodian": last["custodian_cpu_s"] / last["n"] * 1e6,
                }
                per = figures["tokenize_cpu_us_per_id"]
                figures["tokenize_16_cores_cpu_s"] = TARGET * max(per["workers"] / 16, per["main"]) / 1e6
        engine.dispose()
    print(f"\nprojection to {TARGET:,} (last segment's cost per identifier, linear):")
    imp = figures["import_projection"]
    print(f"  import:        {imp['us_per_id_last_segment']:6.1f} us/id -> {imp['projected_s'] / 60:7.1f} min")
    if "tokenize_projection" in figures:
        tok = figures["tokenize_projection"]
        print(f"  tokenization:  {tok['us_per_id_last_segment']:6.1f} us/id -> {tok['projected_s'] / 3600:7.2f} h here")
        per = figures["tokenize_cpu_us_per_id"]
        print(
            f"  tokenization on 16 cores, the projection to use, from CPU per identifier (workers "
            f"{per['workers']:.1f} us / 16, main process {per['main']:.1f} us on one core, the slower; custodians "
            f"{per['custodian']:.1f} us on their own machines): {figures['tokenize_16_cores_cpu_s'] / 60:.1f} min"
        )
        print(
            f"  (not to be used: wall-clock 1-worker rate x 16 x 2-worker efficiency "
            f"{figures['ratio_2_to_1'] / 2:.2f} = {figures['tokenize_16_cores_s'] / 60:.1f} min; the shared "
            "machine's load sets it)"
        )
    print(f"load at the end {load()}")
    if args.json:
        print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
