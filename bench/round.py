"""A full round on the real stack (coordinator, custodian and member nodes as processes, mTLS on
loopback), from cold token cache and then warm, against OpenMined PSI on the same two sets.

Usage:
    .venv/bin/python bench/round.py                              # 2 members x 100,000, 10,000 shared
    .venv/bin/python bench/round.py --join                       # each member a `node join` process per round
    .venv/bin/python bench/round.py --members 5 --size 10000     # one row of the scaling table
    .venv/bin/python bench/round.py --scaling                    # members 2,5,10 x 10k,100k
(`make bench` makes .venv-bench with openmined-psi for the comparison.)

Prints wall time, identifiers/s, peak RSS of every process and bytes over loopback, for the cold
round and for a warm round after 1% new identifiers per member (imported with `node import`).

The crypto floor (issue 15): the CPU cost of one ristretto255 scalar multiplication and of the
one-way map (RFC 9497 HashToGroup: expand_message_xmd with SHA-512, then the ristretto255 map),
measured in this process before, during (every 3 s) and after the cold round, and the floor per identifier
they make: a member blinds (the map and a multiplication) and unblinds (one), and each custodian it
asks multiplies once, so 3 multiplications + 1 map with the chain of one custodian this benchmark
runs by default, 4 + 1 with `--threshold` (2-of-3: two custodians answer; the sample check's proofs
and the member's element additions are not counted in the floor). Beside it the round's CPU per
identifier, all processes (members' `node run` with their crypto worker processes, custodians,
coordinator: user + system time from /proc, children included), and efficiency = floor / ours.
With `--profile DIR`, py-spy (if installed in the venv) samples every server and member process
during the cold round and the CPU is split by what it was doing (bench/profile_split.py); with
`--profile-warm DIR` the same for the warm round (200 samples/s), with each process's top frames.

By default each member runs `node run` (started, and its start-up over, before the cold round):
a round lasts from its creation until every member's node has logged its verified result. With
--join, each member runs `node join` as a new process per round, as before `node run` existed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from alliance_psi.cli._local_alliance import LocalAlliance, local_alliance
from alliance_psi.crypto.suite import RISTRETTO255_SHA512
from bench.profile_split import print_split, print_top

ROOT = Path(__file__).resolve().parent
CUSTODIANS = ("custodian", "custodian-2", "custodian-3")


def phones(start: int, count: int) -> list[str]:
    return [f"+86138{i:08d}" for i in range(start, start + count)]


def write_csv(path: Path, values: list[str]) -> Path:
    path.write_text("type,value,category\n" + "".join(f"phone,{v},wool_party\n" for v in values), encoding="utf-8")
    return path


def loopback_bytes() -> int:
    for line in Path("/proc/net/dev").read_text().splitlines():
        if line.strip().startswith("lo:"):
            return int(line.split(":", 1)[1].split()[8])  # Transmitted bytes.
    return 0


def database_mib(path: Path) -> float:
    """What a SQLite database holds, MiB: its pages in use (the write-ahead log's included, free
    pages left by deletions not), read through a read-only connection."""
    import sqlite3

    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
        pages, free, size = (
            conn.execute(f"PRAGMA {name}").fetchone()[0] for name in ("page_count", "freelist_count", "page_size")
        )
    return (pages - free) * size / 2**20


def peak_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a running process and all its descendants, live or ended.

    Ended children that were waited for are in the process's own cutime + cstime; live ones (a
    node's crypto worker processes) are read from /proc, recursively.
    """
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    total = sum(int(fields[i]) for i in (11, 12, 13, 14)) / os.sysconf("SC_CLK_TCK")
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        with contextlib.suppress(FileNotFoundError):
            total += sum(cpu_seconds(int(child)) for child in task.read_text().split())
    return total


def crypto_costs(count: int = 3000) -> dict[str, float]:
    """CPU microseconds of one ristretto255 scalar multiplication and of one HashToGroup, in this thread."""
    suite = RISTRETTO255_SHA512
    scalar, element = suite.random_scalar(), suite.hash_to_group(b"floor")
    start = time.thread_time()
    for _ in range(count):
        element = suite.scalar_mult(scalar, element)
    mult = time.thread_time() - start
    inputs = [b"phone\x00+86139%08d" % i for i in range(count)]
    start = time.thread_time()
    for x in inputs:
        suite.hash_to_group(x)
    return {"multiplication_us": mult / count * 1e6, "map_us": (time.thread_time() - start) / count * 1e6}


@contextlib.contextmanager
def sampled_costs(costs: list[dict[str, float]], every: float = 3.0) -> Iterator[None]:
    """``crypto_costs`` every ``every`` seconds while the block runs (about 1% of one core), so that the
    floor is priced under the load the round itself ran in; appended to ``costs``."""
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(every):
            costs.append(crypto_costs(300))

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


class NodeRun:
    """A member's `node run` process, its log lines kept."""

    def __init__(self, alliance: LocalAlliance, member: str) -> None:
        self.member = member
        self.proc = subprocess.Popen(
            alliance.node_command(member, "run", "--poll-every", "0.05", "--settle-seconds", "0.2"),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=dict(os.environ, PYTHONUNBUFFERED="1"),
        )
        self.lines: list[str] = []
        self.arrived: list[float] = []  # perf_counter when each line arrived, beside ``lines``.
        threading.Thread(target=self._drain, daemon=True).start()
        self.wait(lambda line: "node run: member" in line)

    def _drain(self) -> None:
        for line in self.proc.stderr:  # type: ignore[union-attr]
            self.arrived.append(time.perf_counter())
            self.lines.append(line)

    def first(self, text: str) -> float | None:
        """When the first line containing ``text`` arrived (perf_counter), or None."""
        return next((at for at, line in zip(self.arrived, self.lines, strict=False) if text in line), None)

    def wait(self, found: object, timeout: float = 1800) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if found(line):  # type: ignore[operator]
                    return line
            if self.proc.poll() is not None:
                raise SystemExit(f"{self.member}'s node run ended:\n{''.join(self.lines[-20:])}")
            time.sleep(0.005)
        raise SystemExit(f"{self.member}'s node run: nothing after {timeout}s:\n{''.join(self.lines[-20:])}")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(60)


def server_pids(alliance: LocalAlliance) -> dict[str, int]:
    """The coordinator's and every custodian's process id, by name."""
    custodians = {name: server.proc.pid for name, server in zip(CUSTODIANS, alliance.custodians, strict=False)}
    return {"coordinator": alliance.coordinator.proc.pid, **custodians}


@contextlib.contextmanager
def profiled(folder: Path | None, pids: dict[str, int], rate: int = 50) -> Iterator[None]:
    """py-spy samples of every process in ``pids`` (with its worker processes) into ``folder``, if
    asked, ``rate`` a second."""
    spy = Path(sys.executable).parent / "py-spy"
    if folder is None or not spy.exists():
        if folder is not None:
            print("(py-spy is not installed in this venv: no profile)")
        yield
        return
    folder.mkdir(parents=True, exist_ok=True)
    options = [str(spy), "record", "--format", "raw", "--rate", str(rate), "--subprocesses", "--nonblocking"]
    spies = [
        subprocess.Popen(
            [*options, "--pid", str(pid), "--output", str(folder / f"{name}.txt")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for name, pid in pids.items()
    ]
    time.sleep(1)  # py-spy attaches.
    try:
        yield
    finally:
        for spy_process in spies:
            spy_process.send_signal(signal.SIGINT)  # py-spy writes its samples on SIGINT.
        for spy_process in spies:
            spy_process.wait(60)


def run_round_daemons(
    alliance: LocalAlliance, nodes: list[NodeRun], *, share_labels: bool, at_match: bool = False
) -> dict[str, float]:
    """One round joined by every member's `node run`, from its creation to every member's kept result."""
    pids = {**server_pids(alliance), **{node.member: node.proc.pid for node in nodes}}
    cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    sent = loopback_bytes()
    start = time.perf_counter()
    round_id = alliance.create_round(
        name="bench", threshold=2, types=("phone",), share_labels=share_labels, labels_at_match=at_match
    )
    figures: dict[str, float] = {}
    for node in nodes:
        committed = node.wait(lambda line: f"round {round_id}: committed" in line)
        node.wait(lambda line: f"round {round_id}: " in line and "kept" in line)
        print(f"    {node.member}: {committed.split(': committed, ', 1)[1].strip()}")
        leads = [line for line in node.lines if f"round {round_id}: " in line and "kept" in line]
        figures[f"leads:{node.member}"] = int(leads[-1].rsplit(", ", 1)[1].split()[0].replace(",", ""))
    wall = time.perf_counter() - start
    for node in nodes:  # When each step of the round was logged, from the round's creation.
        for step, text in (("joining", "joining"), ("committed", "committed"), ("kept", "kept")):
            at = node.first(f"round {round_id}: {text}" if step != "kept" else f"round {round_id}: result")
            if at is None and step == "kept":  # The last to commit logs its result with the commit.
                at = node.first(f"round {round_id}: committed")
            figures[f"t_{step}:{node.member}"] = (at - start) if at is not None else -1.0
    return {
        "wall_s": wall,
        "load": os.getloadavg()[0],
        "loopback_mib": (loopback_bytes() - sent) / 2**20,
        **{f"rss_mib:{node.member}": peak_rss_kib(node.proc.pid) / 1024 for node in nodes},
        **figures,
        **{f"cpu_s:{name}": cpu_seconds(pid) - cpu_before[name] for name, pid in pids.items()},
    }


def run_round(alliance: LocalAlliance, *, share_labels: bool, at_match: bool = False) -> dict[str, float]:
    """One round, every member joining at once as its own process; wall time and resources."""
    round_id = alliance.create_round(
        name="bench", threshold=2, types=("phone",), share_labels=share_labels, labels_at_match=at_match
    )
    sent = loopback_bytes()
    servers = server_pids(alliance)
    cpu_before = {name: cpu_seconds(pid) for name, pid in servers.items()}
    start = time.perf_counter()
    procs = {
        m: subprocess.Popen(
            alliance.node_command(m, "join", round_id, "--wait", "600"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for m in alliance.members
    }
    member_rss = {}
    for member, proc in procs.items():
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        stdout, stderr = proc.stdout.read(), proc.stderr.read()  # type: ignore[union-attr]
        if proc.returncode != 0:
            raise SystemExit(f"{member} failed:\n{stderr[-2000:]}")
        member_rss[member] = usage.ru_maxrss
        member_rss[member + ":cpu"] = usage.ru_utime + usage.ru_stime
        leads = [line for line in stdout.splitlines() if line.strip().startswith("│ leads")]
        phases = [line.split("│")[1:3] for line in stdout.splitlines() if "│ seconds:" in line]
        print(f"    {member}: " + ", ".join(f"{k.strip().removeprefix('seconds: ')} {v.strip()} s" for k, v in phases))
        member_rss[member + ":leads"] = int(leads[0].split("│")[2].strip().replace(",", "")) if leads else -1
    wall = time.perf_counter() - start
    return {
        "wall_s": wall,
        "load": os.getloadavg()[0],
        "loopback_mib": (loopback_bytes() - sent) / 2**20,
        **{f"rss_mib:{k}": v / 1024 for k, v in member_rss.items() if ":" not in k},
        **{f"leads:{k.split(':')[0]}": v for k, v in member_rss.items() if k.endswith(":leads")},
        **{f"cpu_s:{k.split(':')[0]}": v for k, v in member_rss.items() if k.endswith(":cpu")},
        **{f"cpu_s:{name}": cpu_seconds(pid) - cpu_before[name] for name, pid in servers.items()},
    }


def bench(
    members: int,
    size: int,
    shared: int,
    *,
    share_labels: bool,
    out: Path,
    at_match: bool = False,
    daemons: bool = True,
    threshold: bool = False,
    profile: Path | None = None,
    profile_warm: Path | None = None,
) -> dict[str, object]:
    names = [f"m{i}" for i in range(members)]
    with local_alliance(out, names, threshold=threshold) as alliance:
        start = time.perf_counter()
        for i, member in enumerate(names):
            # Member i holds [i*size - i*shared, ...): neighbours share `shared` identifiers.
            values = phones(i * (size - shared), size)
            alliance.run_node(member, "import", str(write_csv(alliance.home(member) / "list.csv", values)))
        imported = time.perf_counter() - start
        nodes = [NodeRun(alliance, member) for member in names] if daemons else []
        try:
            rounds = (
                (lambda: run_round_daemons(alliance, nodes, share_labels=share_labels, at_match=at_match))
                if daemons
                else (lambda: run_round(alliance, share_labels=share_labels, at_match=at_match))
            )
            costs = [crypto_costs()]
            pids = {**server_pids(alliance), **{node.member: node.proc.pid for node in nodes}}
            with profiled(profile, pids), sampled_costs(costs):
                cold = rounds()
            cold["coordinator_db_mib"] = database_mib(out / "alliance" / "coordinator.db")
            costs.append(crypto_costs())
            for i, member in enumerate(names):
                new = phones(10**7 + i * size, max(size // 100, 1))
                alliance.run_node(member, "import", str(write_csv(alliance.home(member) / "new.csv", new)))
            with profiled(profile_warm, pids, rate=200):
                warm = rounds()
        finally:
            for node in nodes:
                node.stop()
        servers = {
            "coordinator": peak_rss_kib(alliance.coordinator.proc.pid) / 1024,
            "custodian": peak_rss_kib(alliance.custodian.proc.pid) / 1024,
        }
    return {
        "members": members,
        "size": size,
        "shared": shared,
        "share_labels": share_labels,
        "labels_at_match": at_match,
        "members_run": "node run" if daemons else "node join",
        "import_s": imported,
        "custody": "2-of-3 threshold, sample check" if threshold else "one chain custodian",
        "crypto_us": {key: statistics.median(c[key] for c in costs) for key in costs[0]},
        "crypto_us_runs": costs,
        "profile": str(profile) if profile else None,
        "profile_warm": str(profile_warm) if profile_warm else None,
        "cold": cold,
        "warm": warm,
        "server_rss_mib": servers,
    }


def openmined(size: int, shared: int, python: str) -> dict[str, float] | None:
    if not os.path.exists(python):
        return None
    out = subprocess.run(
        [python, str(ROOT / "openmined_client.py"), str(size), "--full", str(shared)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout)


def crypto_floor(result: dict[str, object]) -> dict[str, float]:
    """The floor of the cold round's CPU from the measured crypto costs, and the round's efficiency against it."""
    costs: dict[str, float] = result["crypto_us"]  # type: ignore[assignment]
    n = int(result["members"]) * int(result["size"])  # type: ignore[call-overload]
    # Blind and unblind at the member, one multiplication per custodian asked (1 in a chain of one, τ = 2).
    multiplications = 2 + (2 if str(result["custody"]).startswith("2-of-3") else 1)
    floor_us = multiplications * costs["multiplication_us"] + costs["map_us"]
    cold: dict[str, float] = result["cold"]  # type: ignore[assignment]
    ours_s = sum(v for k, v in cold.items() if k.startswith("cpu_s"))
    return {
        **costs,
        "multiplications": multiplications,
        "floor_us": floor_us,
        "floor_s": floor_us * n / 1e6,
        "ours_s": ours_s,
        "ours_us": ours_s / n * 1e6,
        "efficiency": floor_us * n / 1e6 / ours_s,
    }


def _labels(result: dict[str, object]) -> str:
    if not result["share_labels"]:
        return "not shared"
    return "shared, sealed at match" if result.get("labels_at_match") else "shared, sealed with every token"


def report(result: dict[str, object], om: dict[str, float] | None) -> None:
    cold, warm = result["cold"], result["warm"]  # type: ignore[index]
    n = int(result["members"]) * int(result["size"])  # type: ignore[call-overload]
    print(
        f"{result['members']} members x {result['size']:,} identifiers ({result['shared']:,} shared with each neighbour), "
        f"labels {_labels(result)}, members as {result['members_run']}; "
        f"import {result['import_s']:.1f} s"
    )
    for name, figures in (("cold", cold), ("warm (1% new)", warm)):
        rss = ", ".join(f"{k.split(':')[1]} {v:.0f}" for k, v in figures.items() if k.startswith("rss_mib"))  # type: ignore[union-attr]
        leads = ", ".join(f"{k.split(':')[1]} {v}" for k, v in figures.items() if k.startswith("leads"))  # type: ignore[union-attr]
        cpu = {k.split(":")[1]: v for k, v in figures.items() if k.startswith("cpu_s")}  # type: ignore[union-attr]
        print(
            f"  {name}: {figures['wall_s']:.2f} s, {n / figures['wall_s']:,.0f} identifiers/s, "  # type: ignore[index]
            f"loopback {figures['loopback_mib']:.1f} MiB; member peak RSS MiB: {rss}; leads: {leads}; "
            f"load average (1 min) at its end {figures.get('load', -1):.2f}"  # type: ignore[union-attr]
            + (
                f"; coordinator database {figures['coordinator_db_mib']:.1f} MiB"
                if "coordinator_db_mib" in figures
                else ""
            )  # type: ignore[operator]
        )  # type: ignore[index]
        steps = {k: v for k, v in figures.items() if k.startswith("t_")}  # type: ignore[union-attr]
        if steps:
            members = sorted({k.split(":")[1] for k in steps})
            print(
                "    timeline from the round's creation, s (joining, committed, result kept): "
                + "; ".join(
                    f"{m} " + ", ".join(f"{steps[f't_{step}:{m}']:.2f}" for step in ("joining", "committed", "kept"))
                    for m in members
                )
            )
        print(
            "    CPU seconds: "
            + ", ".join(f"{k} {v:.1f}" for k, v in cpu.items())
            + f"; total {sum(cpu.values()):.1f} of {2 * figures['wall_s']:.1f} available on 2 cores"
        )  # type: ignore[index]
    print(f"  servers peak RSS MiB: {result['server_rss_mib']}")
    floor = crypto_floor(result)
    print(
        f"  crypto floor ({result['custody']}): one multiplication {floor['multiplication_us']:.1f} us, "
        f"the one-way map {floor['map_us']:.1f} us (CPU, median of {len(result['crypto_us_runs'])} measurements "  # type: ignore[arg-type]
        "in this process before, during and after the cold round); "
        f"{floor['multiplications']} multiplications + 1 map = {floor['floor_us']:.1f} us per identifier, "
        f"{floor['floor_s']:.1f} s for {n:,} identifiers"
    )
    print(
        f"  our CPU per identifier, cold, all processes: {floor['ours_us']:.1f} us "
        f"({floor['ours_s']:.1f} s); efficiency = floor / ours = {floor['efficiency']:.0%} (target >= 90%)"
    )
    print(f"  warm speed-up: {cold['wall_s'] / warm['wall_s']:.1f}x (target >= 20x)")  # type: ignore[index]
    if result.get("profile") and Path(str(result["profile"])).is_dir():
        print("  where the cold round's CPU went (py-spy samples, shares of each process's CPU seconds):")
        cpu = {k.split(":")[1]: v for k, v in cold.items() if k.startswith("cpu_s")}  # type: ignore[union-attr]
        shares = print_split(Path(str(result["profile"])), cpu)
        # The custodian multiplies each member's every element once: its profile prices a
        # multiplication inside the round itself, under the round's own contention.
        in_round = shares.get("custodian", {}).get("multiplication", 0.0) * cpu.get("custodian", 0.0) / n * 1e6
        if in_round:
            at_that = floor["multiplications"] * in_round + floor["map_us"]
            print(
                f"  priced inside the round: the custodian's multiplications took {in_round:.1f} us each "
                f"(its profile); at that price the floor is {at_that:.1f} us per identifier and the efficiency "
                f"{at_that / floor['ours_us']:.0%}"
            )
    if result.get("profile_warm") and Path(str(result["profile_warm"])).is_dir():
        print("  where the warm round's CPU went (py-spy samples at 200/s, shares of each process's CPU seconds):")
        cpu = {k.split(":")[1]: v for k, v in warm.items() if k.startswith("cpu_s")}  # type: ignore[union-attr]
        print_split(Path(str(result["profile_warm"])), cpu)
        print_top(Path(str(result["profile_warm"])), cpu, 15)
    if om:
        ratio = cold["wall_s"] / om["total_s"]  # type: ignore[index]
        print(
            f"  OpenMined PSI, same two sets, in-process: {om['total_s']:.2f} s "
            f"(client request {om['request_s']:.2f}, server setup {om['setup_s']:.2f}, process {om['process_s']:.2f}, "
            f"intersection {om['intersection_s']:.2f}); found {om['found']:,}"
        )
        print(
            f"  ratio alliance-psi cold round / OpenMined = {ratio:.2f} (issue 14: <= 1.0; issue 15: <= 0.75); "
            f"beside it, efficiency against the crypto floor {floor['efficiency']:.0%}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=2)
    parser.add_argument("--size", type=int, default=100_000)
    parser.add_argument("--shared", type=int, default=None, help="default: size/10")
    parser.add_argument("--no-labels", action="store_true", help="rounds that share no labels (tokens only)")
    parser.add_argument(
        "--labels-at-match",
        action="store_true",
        help="labels sealed only for matched tokens, after the round closes (coordinator round create --labels-at-match)",
    )
    parser.add_argument("--scaling", action="store_true", help="members 2,5,10 x 10k,100k (slow)")
    parser.add_argument("--join", action="store_true", help="members as `node join` processes, not `node run`")
    parser.add_argument(
        "--threshold", action="store_true", help="2-of-3 threshold custodians instead of one chain custodian"
    )
    parser.add_argument("--profile", type=Path, metavar="DIR", help="py-spy samples of every process in the cold round")
    parser.add_argument(
        "--profile-warm",
        type=Path,
        metavar="DIR",
        help="py-spy samples of every process in the warm round, with top frames",
    )
    parser.add_argument("--openmined-python", default=".venv-bench/bin/python")
    parser.add_argument("--out", type=Path, default=Path("/tmp/alliance-psi-bench"))
    args = parser.parse_args()
    rows = [(m, s) for s in (10_000, 100_000) for m in (2, 5, 10)] if args.scaling else [(args.members, args.size)]
    for members, size in rows:
        shared = args.shared if args.shared is not None else size // 10
        result = bench(
            members,
            size,
            shared,
            share_labels=not args.no_labels,
            at_match=args.labels_at_match,
            out=args.out,
            daemons=not args.join,
            threshold=args.threshold,
            profile=args.profile,
            profile_warm=args.profile_warm,
        )
        om = openmined(size, shared, args.openmined_python) if members == 2 else None
        report(result, om)
        print(json.dumps({"result": result, "openmined": om}))


if __name__ == "__main__":
    main()
