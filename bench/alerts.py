"""Commit-to-alert latency of a continuous scope, through the real gRPC stack.

Usage:
    .venv/bin/python bench/alerts.py [--members 3 10] [--set-sizes 20000 100000] [--delta 100]
        [--unmatched 0] [--repeat 5] [--database URL] [--profile DIR]

For each member count and set size: a local alliance (``cli._local_alliance``: a ``coordinator
serve`` process on loopback, mutual TLS, one certificate per member), a continuous scope
(threshold 2, labels shared) and synthetic members (random tokens and sealed-label-sized labels,
no member crypto: the coordinator's side is measured) that commit their whole sets to it. Every
member watches its alerts (``WatchAlerts``) in a thread, verifies each (``verify_alert``) and
acknowledges it, as a member node does. Then, ``--repeat`` times, the first member commits a delta
of ``--delta`` new tokens that every other member holds already: each token gives the committer a
MATCH and every other member a JOINED alert, ``members x delta`` alerts per commit. With
``--unmatched N`` each delta also carries N new tokens nobody else holds (no alert): the issue's
drop of 1,000 identifiers of which 100 complete a threshold is ``--delta 100 --unmatched 900``.

Printed per configuration: the commit's own time (the CommitSubmission call, which matches the
delta and writes its alerts in its transaction), the latency from the commit's start to each
alert's arrival at its member (median, p95 and p99 over every alert of every repeat), the latency
past the commit's answer, alerts per second (each commit's alerts over the time from its start
to its last alert's arrival), the ratio of the median latency to the median commit, and the load
average (the machine is shared: the figures are only as good as it was quiet).

Then the CPU per new identifier of a delta (its tokens, alerting or not): the coordinator
process's (upload, commit with its alerts, delivery; user + system from /proc) and this process's
(the synthetic members' upload and their alerts' verification), from the delta's upload to its
last alert's arrival, beside the crypto floor of one identifier measured in this process in the
same run (``bench/round.py``'s ``crypto_costs``: a member's two scalar multiplications and the
one-way map, and the custodian's one; median of a measurement before and after the timed
deltas). The members' own work here is synthetic (no tokenizing, no label sealing), so the ratio
printed, (floor + coordinator CPU) / floor, is the coordinator's share of the issue's "cost per new
identifier within 2x of its crypto cost", not the member node's. With ``--profile DIR``, py-spy
(if installed in the venv) samples the coordinator during the timed deltas, and where its CPU went
is printed (``bench/profile_split.py``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from alliance_psi.cli._local_alliance import EPOCH, LocalAlliance, local_alliance
from alliance_psi.config import TlsConfig
from alliance_psi.crypto.labels import SEALED_LABEL_BYTES
from alliance_psi.errors import AlliancePsiError
from alliance_psi.protocol.alerts import verify_alert
from alliance_psi.protocol.coordinator import Chunk, Commit, RoundSpec
from alliance_psi.protocol.model import NO_DEADLINE, Role, RoundKind
from alliance_psi.protocol.submission import MAX_CHUNK_ITEMS, SetDigest, SubmissionDigest, chunk_digest, label_digest
from alliance_psi.services.cert_checks import load_tls
from alliance_psi.services.clients import CoordinatorClient, RetryPolicy
from bench.coordinator_scale import require_empty
from bench.profile_split import print_split, print_top
from bench.round import cpu_seconds, crypto_costs, profiled


def _tls(alliance: LocalAlliance, name: str, role: Role) -> object:
    pki = alliance.pki_dir
    return load_tls(TlsConfig(ca_cert=pki / "ca.pem", cert=pki / f"{name}.pem", key=pki / f"{name}.key"), role=role)


def synthetic_delta(
    scope_id: str, tokens: list[bytes], whole: SetDigest, sequence: int, *, replace: bool
) -> tuple[list[Chunk], Commit]:
    """Delta ``sequence`` of ``tokens`` (sorted, each with a fresh sealed-label-sized label) in
    chunks, and its commit; ``whole``, the member's set digest, takes the tokens in."""
    items = [(token, os.urandom(SEALED_LABEL_BYTES)) for token in sorted(tokens)]
    for token, label in items:
        whole.update(token, label_digest(label))
    digest, chunks = SubmissionDigest(), []
    for index, start in enumerate(range(0, len(items), MAX_CHUNK_ITEMS)):
        part = tuple(items[start : start + MAX_CHUNK_ITEMS])
        digest.update(part)
        chunks.append(Chunk(scope_id, index, part, chunk_digest(part), (), replace, sequence))
    commit = Commit(scope_id, digest.count, digest.digest(), whole.count, whole.digest(), replace, sequence=sequence)
    return chunks, commit


@dataclass
class Member:
    """A synthetic member of the scope: its deltas (chunks, digests, commit sequence) and its watch."""

    name: str
    client: CoordinatorClient
    scope_id: str
    coordinator_key: bytes
    whole: SetDigest = field(default_factory=SetDigest)
    sequence: int = 0
    after: int = 0  # The last alert acknowledged.
    arrivals: list[tuple[float, int]] = field(default_factory=list)  # (perf_counter, sequence)
    seen: threading.Condition = field(default_factory=threading.Condition)

    def commit(self, tokens: list[bytes], *, replace: bool) -> float:
        """Send ``tokens`` (sorted, each with a fresh label) as delta ``sequence + 1`` and commit it;
        return the commit call's seconds (the upload is not timed)."""
        chunks, commit = synthetic_delta(self.scope_id, tokens, self.whole, self.sequence + 1, replace=replace)
        self.client.upload_chunks(iter(chunks))
        began = time.perf_counter()
        self.client.commit(commit, self.name)
        self.sequence = commit.sequence
        return time.perf_counter() - began

    def watch(self, stop: threading.Event) -> None:
        """Watch, verify and acknowledge this member's alerts until ``stop``; note each arrival."""
        after = self.after
        while not stop.is_set():
            try:
                for batch in self.client.watch_alerts("", after + 1):
                    now = time.perf_counter()
                    for signed in batch.alerts:
                        alert = verify_alert(self.coordinator_key, signed, member_id=self.name)
                        after = alert.sequence
                        with self.seen:
                            self.arrivals.append((now, alert.sequence))
                            self.seen.notify_all()
                    if batch.alerts:
                        self.client.ack_alerts(after)
                    if stop.is_set():
                        return
            except (AlliancePsiError, ValueError):  # The channel closed at the end, or a break: watch again.
                if stop.is_set():
                    return
                time.sleep(0.1)

    def wait_for(self, count: int, timeout: float = 600.0) -> None:
        with self.seen:
            if not self.seen.wait_for(lambda: len(self.arrivals) >= count, timeout):
                raise SystemExit(f"{self.name}: {len(self.arrivals)} alerts of {count} after {timeout:.0f} s")


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def run(members_count: int, set_size: int, args: argparse.Namespace) -> dict[str, float]:
    names = [f"m{i:02d}" for i in range(members_count)]
    out = args.out / f"{members_count}x{set_size}"
    options = {"coordinator_database": args.database} if args.database else {}
    with local_alliance(out, names, **options) as alliance:  # type: ignore[arg-type]
        key = bytes.fromhex((alliance.root / "alliance" / "signing.pub").read_text().strip())
        wait = RetryPolicy(attempts=1, timeout=3600)
        with CoordinatorClient(alliance.coordinator.address, _tls(alliance, "operator", Role.ADMIN), wait) as admin:
            spec = RoundSpec(
                "alerts bench", 2, EPOCH, NO_DEADLINE, ("phone",), tuple(names), True, kind=RoundKind.CONTINUOUS
            )
            scope_id = admin.create_round(spec).round_id
        members = [
            Member(
                name,
                CoordinatorClient(alliance.coordinator.address, _tls(alliance, name, Role.MEMBER), wait),
                scope_id,
                key,
            )
            for name in names
        ]
        deltas = [[os.urandom(16) for _ in range(args.delta)] for _ in range(args.repeat)]
        shared = [token for delta in deltas for token in delta]
        began = time.perf_counter()
        for member in members:  # Own tokens, plus (all but the first member) every delta's tokens.
            own = [os.urandom(16) for _ in range(set_size - (len(shared) if member is not members[0] else 0))]
            member.commit(own + (shared if member is not members[0] else []), replace=True)
        print(
            f"  {members_count} whole sets of {set_size:,} committed in {time.perf_counter() - began:.1f} s",
            flush=True,
        )
        for member in members:  # What the whole sets alerted (the deltas' tokens held by several) is not timed.
            _, member.after = member.client.ack_alerts(0)
            member.client.ack_alerts(member.after)
        stop = threading.Event()
        watchers = [threading.Thread(target=m.watch, args=(stop,), daemon=True) for m in members]
        for watcher in watchers:
            watcher.start()
        commits: list[float] = []
        latencies: list[float] = []
        past_commit: list[float] = []
        rates: list[float] = []
        costs = [crypto_costs()]
        coordinator_pid = alliance.coordinator.proc.pid
        coordinator_cpu = own_cpu = 0.0
        spied = args.profile / f"{members_count}x{set_size}" if args.profile else None
        with profiled(spied, {"coordinator": coordinator_pid}, rate=200):  # py-spy, if asked.
            for delta in deltas:
                counts = [len(m.arrivals) for m in members]
                unmatched = [os.urandom(16) for _ in range(args.unmatched)]
                cpu_before, own_before = cpu_seconds(coordinator_pid), time.process_time()
                started = time.perf_counter()
                commit_seconds = members[0].commit(delta + unmatched, replace=False)
                answered = time.perf_counter()
                for member, count in zip(members, counts, strict=True):
                    member.wait_for(count + len(delta))
                coordinator_cpu += cpu_seconds(coordinator_pid) - cpu_before
                own_cpu += time.process_time() - own_before
                arrivals = [at for m, count in zip(members, counts, strict=True) for at, _ in m.arrivals[count:]]
                commits.append(commit_seconds)
                latencies += [at - started for at in arrivals]
                past_commit += [at - answered for at in arrivals]
                rates.append(len(arrivals) / (max(arrivals) - started))
        costs.append(crypto_costs())
        stop.set()
        for member in members:
            member.client.close()
        for watcher in watchers:
            watcher.join(timeout=30)
    new_identifiers = args.repeat * (args.delta + args.unmatched)
    multiplication = statistics.median(c["multiplication_us"] for c in costs)
    figures = {
        "commit": statistics.median(commits),
        "median": statistics.median(latencies),
        "p95": percentile(latencies, 0.95),
        "p99": percentile(latencies, 0.99),
        "coordinator_us": coordinator_cpu / new_identifiers * 1e6,
        "members_us": own_cpu / new_identifiers * 1e6,
        "floor_us": 3 * multiplication + statistics.median(c["map_us"] for c in costs),
        "past_median": statistics.median(past_commit),
        "past_p95": percentile(past_commit, 0.95),
        "rate": statistics.median(rates),
        "alerts": len(latencies),
    }
    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    unmatched = f" + {args.unmatched} unmatched" if args.unmatched else ""
    print(
        f"{members_count} members x {set_size:,} tokens, delta of {args.delta}{unmatched} "
        f"({members_count * args.delta} alerts) x {args.repeat}: commit {figures['commit'] * 1e3:.0f} ms (median); "
        f"commit-to-alert median {figures['median'] * 1e3:.0f} ms, p95 {figures['p95'] * 1e3:.0f} ms, "
        f"p99 {figures['p99'] * 1e3:.0f} ms (past the commit's answer: median "
        f"{figures['past_median'] * 1e3:.0f} ms, p95 {figures['past_p95'] * 1e3:.0f} ms); "
        f"{figures['rate']:,.0f} alerts/s; latency / commit {figures['median'] / figures['commit']:.2f}; "
        f"load average {load}",
        flush=True,
    )
    print(
        f"  CPU per new identifier ({new_identifiers:,} in {args.repeat} deltas): coordinator "
        f"{figures['coordinator_us']:.0f} us, synthetic members (upload, verify alerts) {figures['members_us']:.0f} us; "
        f"crypto floor per identifier {figures['floor_us']:.0f} us (3 multiplications + 1 map, measured now); "
        f"(floor + coordinator) / floor = {(figures['floor_us'] + figures['coordinator_us']) / figures['floor_us']:.2f} "
        f"(target: within 2); load average {load}",
        flush=True,
    )
    if spied is not None and spied.is_dir():
        cpu = {"coordinator": coordinator_cpu}
        print(f"  where the coordinator's CPU went in the timed deltas (py-spy, {spied}):")
        print_split(spied, cpu)
        print_top(spied, cpu, 15)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, nargs="+", default=[3, 10])
    parser.add_argument("--set-sizes", type=int, nargs="+", default=[20_000, 100_000])
    parser.add_argument("--delta", type=int, default=100, help="new tokens in each timed delta")
    parser.add_argument("--unmatched", type=int, default=0, help="more new tokens per delta that nobody else holds")
    parser.add_argument("--repeat", type=int, default=5, help="timed deltas per configuration")
    parser.add_argument("--database", default=None, help="an empty coordinator database (default: SQLite)")
    parser.add_argument("--out", type=Path, default=Path("/tmp/alliance-psi-alerts-bench"))
    parser.add_argument(
        "--profile", type=Path, metavar="DIR", help="py-spy samples of the coordinator in the timed deltas"
    )
    args = parser.parse_args()
    if args.database and len(args.members) * len(args.set_sizes) > 1:
        parser.error("--database serves one configuration (give one --members and one --set-sizes)")
    if args.database:
        require_empty(args.database)
    print(
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, coordinator on {'SQLite' if not args.database else args.database.split(':')[0]}"
    )
    for members in args.members:
        for size in args.set_sizes:
            run(members, size, args)


if __name__ == "__main__":
    main()
