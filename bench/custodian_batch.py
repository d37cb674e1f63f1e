"""The custodian's CPU per evaluated element, against one scalar multiplication, in one run.

Usage:
    .venv/bin/python bench/custodian_batch.py                         # 100,000 elements, this tree
    .venv/bin/python bench/custodian_batch.py --before main~3         # the same, and REV's custodian beside it
    .venv/bin/python bench/custodian_batch.py --elements 20000 --json

Every custodian is a real ``custodian serve`` process on loopback with mutual TLS, on its own
SQLite quota database: a chain custodian and a threshold custodian (share 1 of a dealt 2-of-3
epoch, asked for the subset {1, 2}), each of this tree's code and, with ``--before REV``, each of
REV's (``git archive REV alliance_psi`` run from a temporary folder), all started at once. This
process sends every custodian the same fresh batches of 1,024 distinct elements (2 calls in
flight, as a member node does), taking turns between the custodians batch by batch so that a
busy machine slows each of them alike, plus every 64th batch's first 16 elements with a DLEQ
proof to the threshold custodians (what a sample-checking member asks of a third custodian).

Printed per custodian: its process's CPU seconds (user + system, every thread: gRPC, TLS,
decoding, the quota ledger and audit log, the multiplications) per element, and that over one
ristretto255 multiplication (libsodium, measured in this process during the same run, between the
custodians' turns). ``--profile`` also samples the first custodian with py-spy (if installed).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from alliance_psi._files import write_file_atomic
from alliance_psi.cli._processes import ServerProcess
from alliance_psi.config import TlsMaterial
from alliance_psi.crypto.key_shares import KeyShare
from alliance_psi.crypto.suite import RISTRETTO255_SHA512 as SUITE
from alliance_psi.crypto.threshold_keys import deal_epoch_for_testing
from alliance_psi.protocol.model import Role
from alliance_psi.services import pki
from alliance_psi.services.clients import CustodianClient
from bench.threshold import EPOCH, MEMBER, custodian_args

ROOT = Path(__file__).resolve().parent.parent
BATCH = 1024
SAMPLE, SAMPLE_EVERY = 16, 64
TURN = 4  # Batches a custodian evaluates before the next one takes its turn.


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a running process (every thread, not its children)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def multiplication_us(count: int = 2000) -> float:
    """CPU microseconds of one ristretto255 scalar multiplication (libsodium through the suite)."""
    scalar, element = SUITE.random_scalar(), SUITE.hash_to_group(b"bench")
    mult = SUITE.scalar_mult
    start = time.process_time()
    for _ in range(count):
        element = mult(scalar, element)
    return (time.process_time() - start) / count * 1e6


def source_tree(rev: str, into: Path) -> Path:
    """``alliance_psi`` of commit ``rev``, extracted under ``into``."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "alliance_psi"], capture_output=True, check=True)
    into.mkdir(parents=True)
    with tarfile.open(fileobj=__import__("io").BytesIO(archive.stdout)) as tar:
        tar.extractall(into, filter="data")
    return into


@contextlib.contextmanager
def code_of(tree: Path | None) -> Iterator[None]:
    """Start child processes with ``tree``'s package first on their path (this tree's if None)."""
    if tree is None:
        yield
        return
    cwd, path = os.getcwd(), os.environ.get("PYTHONPATH")
    os.chdir(tree)  # ``python -m`` puts the working folder first on sys.path.
    os.environ["PYTHONPATH"] = str(tree)
    try:
        yield
    finally:
        os.chdir(cwd)
        if path is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = path


class Custodian:
    """One ``custodian serve`` process and this process's client of it."""

    def __init__(self, label: str, server: ServerProcess, client: CustodianClient, subset: tuple[int, ...]) -> None:
        self.label, self.server, self.client, self.subset = label, server, client, subset
        self.cpu = 0.0
        self.elements = 0
        self.turns: list[float] = []

    def evaluate(self, elements: Sequence[bytes], prove: bool = False) -> None:
        if self.subset:
            self.client.evaluate_folded(EPOCH, elements, subset=self.subset, prove=prove)
        else:
            self.client.evaluate(EPOCH, elements)


@contextlib.contextmanager
def custodians(root: Path, trees: dict[str, Path | None]) -> Iterator[list[Custodian]]:
    """A chain and a threshold custodian per code tree, as processes, with clients."""
    ca = pki.init_ca("Bench")
    pki.write_ca(ca, root / "pki")
    name = "custodian-1"
    for role, who in ((Role.MEMBER, MEMBER), (Role.CUSTODIAN, name)):
        pki.write_issued(pki.issue(ca, role=role, name=who), root / "pki", who)
    shares, public = deal_epoch_for_testing(EPOCH, ("custodian-1", "custodian-2", "custodian-3"), threshold=2)
    write_file_atomic(root / "epoch.json", public.to_bytes(), private=False)
    tls = TlsMaterial(*((root / "pki" / f).read_bytes() for f in ("ca.pem", f"{MEMBER}.pem", f"{MEMBER}.key")))
    chain_share = KeyShare.generate(EPOCH).to_bytes()
    made: list[Custodian] = []
    with contextlib.ExitStack() as stack:
        for code, tree in trees.items():
            for kind, data in (("chain", chain_share), ("2-of-3", shares[0].to_bytes())):
                args = custodian_args(root, root / code / kind, name, data, threshold=kind == "2-of-3")
                with code_of(tree):
                    server = stack.enter_context(ServerProcess(args))
                client = stack.enter_context(CustodianClient(server.address, tls, name=name))
                made.append(Custodian(f"{code}, {kind}", server, client, (1, 2) if kind == "2-of-3" else ()))
        yield made


def batches(count: int, offset: int) -> list[list[bytes]]:
    """``count`` elements in batches of ``BATCH``: multiples of G, distinct, cheap to make."""
    g = SUITE.scalar_mult_base(SUITE.scalar_from_int(1))
    step = SUITE.scalar_mult_base(SUITE.scalar_from_int(offset + 7))
    out, element = [], step
    for _ in range(count):
        element = SUITE.element_add(element, g)
        out.append(element)
    return [out[i : i + BATCH] for i in range(0, count, BATCH)]


def drive(group: list[Custodian], elements: int) -> list[float]:
    """Every custodian evaluates the same batches, turn by turn (4 batches each, the order reversed
    every turn); returns the multiplications measured between turns. Each custodian's ``turns``
    holds its CPU seconds per turn, so that two custodians compare turn by turn."""
    work = batches(elements, 0)
    warm = batches(4 * BATCH, 10**6)
    mults: list[float] = []
    with ThreadPoolExecutor(2) as pool:
        for custodian in group:
            list(pool.map(custodian.evaluate, warm))
        for number, start in enumerate(range(0, len(work), TURN)):
            turn = work[start : start + TURN]
            for custodian in group if number % 2 else group[::-1]:
                before = cpu_seconds(custodian.server.proc.pid)
                list(pool.map(custodian.evaluate, turn))
                if custodian.subset and number % (SAMPLE_EVERY // TURN) == 0:
                    custodian.evaluate(turn[0][:SAMPLE], prove=True)
                spent = cpu_seconds(custodian.server.proc.pid) - before
                custodian.turns.append(spent / sum(len(b) for b in turn))
                custodian.cpu += spent
                custodian.elements += sum(len(b) for b in turn)
            mults.append(multiplication_us(300))
    return mults


def profile(pid: int, seconds: float, out: Path) -> subprocess.Popen[bytes] | None:
    spy = Path(sys.executable).parent / "py-spy"
    if not spy.exists():
        print("(py-spy is not installed: no profile)")
        return None
    command = [str(spy), "record", "--pid", str(pid), "--duration", str(int(seconds)), "--format", "raw"]
    return subprocess.Popen(
        [*command, "--native", "--threads", "--output", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--elements", type=int, default=100_000)
    parser.add_argument("--before", metavar="REV", help="also run REV's custodian code, side by side")
    parser.add_argument("--profile", type=Path, metavar="FILE", help="py-spy raw profile of the first custodian")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    load = os.getloadavg()
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        trees: dict[str, Path | None] = {"this tree": None}
        if args.before:
            trees[args.before] = source_tree(args.before, root / "before")
        with custodians(root, trees) as group:
            spy = profile(group[0].server.proc.pid, 600, args.profile) if args.profile else None
            started = time.perf_counter()
            mults = drive(group, args.elements)
            wall = time.perf_counter() - started
            if spy is not None:
                spy.send_signal(signal.SIGINT)  # py-spy writes its profile on SIGINT.
                spy.wait()
    mults.sort()
    mult = mults[len(mults) // 2]
    rows: list[dict[str, Any]] = []
    for custodian in group:
        per = custodian.cpu / custodian.elements * 1e6
        rows.append({"custodian": custodian.label, "cpu_us_per_element": per, "per_multiplication": per / mult})
    print(
        f"{args.elements:,} elements per custodian in batches of {BATCH:,}, 2 calls in flight, {wall:.1f} s; "
        f"load average {load[0]:.1f} at start, {os.getloadavg()[0]:.1f} at end"
    )
    print(f"one ristretto255 multiplication: {mult:.1f} us CPU (median of {len(mults)} measurements in this run)")
    for row in rows:
        print(
            f"  {row['custodian']:<22} {row['cpu_us_per_element']:7.1f} us CPU per element"
            f" = {row['per_multiplication']:.2f} multiplications"
        )
    if args.before:
        for kind in ("chain", "2-of-3"):
            now = next(r for r in rows if r["custodian"] == f"this tree, {kind}")
            then = next(r for r in rows if r["custodian"] == f"{args.before}, {kind}")
            mine = next(c for c in group if c.label == f"this tree, {kind}")
            theirs = next(c for c in group if c.label == f"{args.before}, {kind}")
            pairs = sorted(a / b for a, b in zip(mine.turns, theirs.turns, strict=True) if b)
            print(
                f"  {kind}: this tree / {args.before} = {now['cpu_us_per_element'] / then['cpu_us_per_element']:.2f} "
                f"over the run, {pairs[len(pairs) // 2]:.2f} median of {len(pairs)} turns "
                f"(quartiles {pairs[len(pairs) // 4]:.2f} to {pairs[3 * len(pairs) // 4]:.2f})"
            )
    if args.json:
        print(json.dumps({"elements": args.elements, "multiplication_us": mult, "load": load, "rows": rows}))


if __name__ == "__main__":
    main()
