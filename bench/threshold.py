"""Threshold custody: the member's cost per identifier, and the evaluation wall time chain vs 2-of-3.

Usage:  .venv/bin/python bench/threshold.py [--size 10000] [--json]

Every custodian is a real ``custodian serve`` process on loopback with mutual TLS, on its own
SQLite quota database; the member is this process, with real mTLS clients. Two groups of three
custodians run side by side: one holding chain shares (``custodian init-share``), one holding a
dealt 2-of-3 threshold epoch (``custodian deal``'s dealer, as in the demo).

1. Member cost per identifier: this process's CPU time (``time.process_time``: every thread,
   gRPC and TLS included) to tokenize ``--size`` fresh identifiers with one crypto process
   (blind, evaluate through the custodians, combine and check, unblind, finalize, derive), for
   one chain custodian, and 2-of-3 with each verification mode (none, sample, proof).
2. Evaluation wall time with three custodians, chain (each in turn) vs 2-of-3 in parallel (sample
   mode): ``MemberRole.tokenize``'s pipeline (what ``node join`` runs before submitting), two
   crypto worker processes, on ``--size`` fresh identifiers each.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import Any

from alliance_psi._files import write_file_atomic
from alliance_psi.cli._processes import ServerProcess
from alliance_psi.config import PeerEndpoint, TlsMaterial
from alliance_psi.crypto.key_shares import KeyShare
from alliance_psi.crypto.parallel import ProcessMap, tokenize
from alliance_psi.crypto.threshold_keys import PublicEpoch, deal_epoch_for_testing
from alliance_psi.protocol.model import Role
from alliance_psi.services import pki
from alliance_psi.services.clients import custodian_evaluator
from alliance_psi.services.enrolment import enrol
from alliance_psi.storage import create_schema, make_engine

EPOCH = "bench-epoch"
NAMES = ("custodian-1", "custodian-2", "custodian-3")
MEMBER = "bench-a"


def items(n: int, offset: int) -> list[bytes]:
    """Distinct OPRF inputs shaped like canonical mainland mobile numbers."""
    return [b"phone\x00+86137%08d" % (i + offset) for i in range(n)]


def custodian_args(root: Path, folder: Path, name: str, share: bytes, *, threshold: bool) -> list[str]:
    """``custodian serve`` arguments for ``name`` holding ``share`` in ``folder`` (made here, with its
    SQLite quota database enrolling ``MEMBER``), with the PKI and epoch file under ``root``."""
    folder.mkdir(parents=True)
    write_file_atomic(folder / "share", share)
    engine = make_engine(f"sqlite:///{folder / 'quota.db'}")
    create_schema(engine)
    enrol(engine, (root / "pki" / f"{MEMBER}.pem").read_bytes(), role=Role.MEMBER)
    engine.dispose()
    args = ["custodian", "serve", "--name", name, "--listen", "127.0.0.1:0"]
    args += ["--ca", str(root / "pki" / "ca.pem"), "--cert", str(root / "pki" / f"{name}.pem")]
    args += ["--key", str(root / "pki" / f"{name}.key"), "--key-share", str(folder / "share")]
    args += ["--database", f"sqlite:///{folder / 'quota.db'}", "--quota", "1000000000"]
    return [*args, "--epoch-file", str(root / "epoch.json")] if threshold else args


@contextlib.contextmanager
def custodians(root: Path) -> Iterator[tuple[TlsMaterial, list[PeerEndpoint], list[PeerEndpoint], PublicEpoch]]:
    """Three chain custodians and three threshold (2-of-3) custodians, as processes; the member's TLS."""
    ca = pki.init_ca("Bench")
    pki.write_ca(ca, root / "pki")
    for role, name in [(Role.MEMBER, MEMBER)] + [(Role.CUSTODIAN, n) for n in NAMES]:
        pki.write_issued(pki.issue(ca, role=role, name=name), root / "pki", name)
    shares, public = deal_epoch_for_testing(EPOCH, NAMES, threshold=2)
    write_file_atomic(root / "epoch.json", public.to_bytes(), private=False)
    with contextlib.ExitStack() as stack:
        chain: list[PeerEndpoint] = []
        threshold: list[PeerEndpoint] = []
        for kind, group in (("chain", chain), ("threshold", threshold)):
            for name, share in zip(NAMES, shares, strict=True):
                data = KeyShare.generate(EPOCH).to_bytes() if kind == "chain" else share.to_bytes()
                args = custodian_args(root, root / kind / name, name, data, threshold=kind == "threshold")
                server = stack.enter_context(ServerProcess(args))
                group.append(PeerEndpoint(name, server.address))
        tls = TlsMaterial(
            (root / "pki" / "ca.pem").read_bytes(),
            (root / "pki" / f"{MEMBER}.pem").read_bytes(),
            (root / "pki" / f"{MEMBER}.key").read_bytes(),
        )
        yield tls, chain, threshold, public


def measured(evaluator: Any, inputs: Sequence[bytes], pool: ProcessMap) -> tuple[float, float]:
    """(CPU seconds of this process, wall seconds) to tokenize ``inputs`` through ``evaluator``."""
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in tokenize(inputs, partial(evaluator.evaluate, EPOCH), pool=pool):
        pass
    return time.process_time() - cpu, time.perf_counter() - wall


def run(make: Callable[[], Any], inputs: Sequence[bytes], warm: Sequence[bytes], workers: int) -> tuple[float, float]:
    """``measured`` for a fresh evaluator and pool, once both are warm (connections, worker processes)."""
    evaluator = make()
    try:
        with ProcessMap(workers) as pool:
            measured(evaluator, warm, pool)
            return measured(evaluator, inputs, pool)
    finally:
        evaluator.close()


def member_costs(
    tls: TlsMaterial, chain: list[PeerEndpoint], threshold: list[PeerEndpoint], public: PublicEpoch, size: int
) -> list[dict[str, Any]]:
    configs: list[tuple[str, Callable[[], Any]]] = [
        ("1 custodian (chain of one)", lambda: custodian_evaluator(chain[:1], tls)),
        ("2-of-3, no check", lambda: custodian_evaluator(threshold, tls, public=public, verify="none")),
        ("2-of-3, sample check (default)", lambda: custodian_evaluator(threshold, tls, public=public, verify="sample")),
        ("2-of-3, proofs", lambda: custodian_evaluator(threshold, tls, public=public, verify="proof")),
    ]
    rows = []
    for offset, (label, make) in enumerate(configs):
        cpu, wall = run(make, items(size, offset * size), items(2048, 90_000_000 + offset * 4096), 1)
        rows.append({"config": label, "cpu_s": cpu, "wall_s": wall, "cpu_us_per_id": cpu / size * 1e6})
    return rows


def join_wall(
    tls: TlsMaterial, chain: list[PeerEndpoint], threshold: list[PeerEndpoint], public: PublicEpoch, size: int
) -> list[dict[str, Any]]:
    configs: list[tuple[str, Callable[[], Any]]] = [
        ("chain of 3 custodians", lambda: custodian_evaluator(chain, tls)),
        ("2-of-3 in parallel (sample check)", lambda: custodian_evaluator(threshold, tls, public=public)),
    ]
    rows = []
    for offset, (label, make) in enumerate(configs):
        _, wall = run(make, items(size, 50_000_000 + offset * size), items(2048, 95_000_000 + offset * 4096), 2)
        rows.append({"config": label, "wall_s": wall, "ids_per_s": size / wall})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=10_000, help="Identifiers per measurement.")
    parser.add_argument("--json", action="store_true", help="Print the figures as JSON too.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder, custodians(Path(folder)) as (tls, chain, threshold, public):
        costs = member_costs(tls, chain, threshold, public, args.size)
        walls = join_wall(tls, chain, threshold, public, args.size)
    print(f"{platform.machine()}, {args.size:,} identifiers per row\n")
    print("member cost per identifier (CPU of the member process, 1 crypto process):")
    base = costs[0]["cpu_us_per_id"]
    unchecked = costs[1]["cpu_us_per_id"]
    for row in costs:
        print(
            f"  {row['config']:<34} {row['cpu_us_per_id']:8.1f} us  x{row['cpu_us_per_id'] / base:.2f} of one "
            f"custodian, x{row['cpu_us_per_id'] / unchecked:.2f} of no check   (wall {row['wall_s']:.2f} s)"
        )
    print("\nevaluation wall time, 3 custodians, 2 crypto processes (join's tokenize stage):")
    for row in walls:
        print(f"  {row['config']:<34} {row['wall_s']:8.2f} s   {row['ids_per_s']:,.0f} identifiers/s")
    if args.json:
        print(json.dumps({"size": args.size, "member_cost": costs, "evaluation_wall": walls}, indent=2))


if __name__ == "__main__":
    main()
