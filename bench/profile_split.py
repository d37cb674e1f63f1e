"""Split a process's CPU by what it was doing, from py-spy's raw samples (``bench/round.py --profile``).

Usage:  .venv/bin/python bench/profile_split.py DIR [--cpu NAME=SECONDS ...] [--top N]

Each ``DIR/NAME.txt`` holds py-spy's raw stacks of one process (and its worker processes). A
sample goes to the first category below whose pattern is in its stack (innermost frame first),
so libsodium's work is counted where it is called, whatever called it. Samples of a thread
waiting (``WAITING``: py-spy's non-blocking sampling cannot always tell) are left out. With
``--cpu`` the shares are turned into seconds of that process's measured CPU. ``--top N`` also
prints each process's N frames most often innermost (own time) and most often anywhere in the
stack (inclusive time).
"""

from __future__ import annotations

import argparse
import collections
import json
from pathlib import Path

# (category, substrings of a frame "function (file:line)"), tried innermost frame first.
CATEGORIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "multiplication",
        ("crypto_scalarmult_ristretto255", "scalar_mult (alliance_psi", "scalar_mult_batch", "scalar_mult_checked"),
    ),
    ("one-way map", ("hash_to_group",)),
    ("element checks and sums", ("deserialize_element", "element_add", "combine (alliance_psi")),
    ("DLEQ proofs", ("crypto/dleq.py",)),
    (
        "finalize and derive (SHA-512, HMAC)",
        ("finalize_unblinded", "crypto/derive.py", "finalize_batch", "derive_batch_blind"),
    ),
    ("labels (encode, seal, open)", ("crypto/labels.py", "label")),
    ("set digest (LtHash)", ("lthash", "LtHash", "SetDigest", "_entry_lanes")),
    ("Merkle tree and signatures", ("crypto/merkle.py", "crypto/signing.py")),
    ("SQL (SQLAlchemy, sqlite3, psycopg)", ("sqlalchemy", "sqlite3", "psycopg", "alliance_psi/storage")),
    ("protobuf encode and decode", ("google/protobuf", "protocol/messages.py", "SerializeToString", "FromString")),
    ("gRPC and TLS", ("grpc/", "cygrpc")),
    (
        "worker processes: hand-off (pickle, pipes)",
        ("multiprocessing", "concurrent/futures/process.py", "crypto/parallel.py"),
    ),
    ("imports and start-up", ("<frozen importlib", "_find_and_load")),
)


# Innermost frames of a thread that waits (py-spy's --nonblocking samples cannot always tell an
# idle thread): left out of the shares, which are of the samples that worked.
WAITING = (
    "Condition.wait (threading.py",
    "Event.wait (threading.py",
    "wait (threading.py",
    "_worker (concurrent/futures/thread.py",
    "_serve (grpc/_server.py",
    "wait_for_stop_signal",
    "_recv (multiprocessing/connection.py",
    "_poll (multiprocessing/connection.py",
    "select (selectors.py",
    "sleep",
)


def split(path: Path) -> dict[str, int]:
    """Samples per category in one raw py-spy file; waiting threads under ``(waiting)``."""
    counts: collections.Counter[str] = collections.Counter()
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if not line.strip():
            continue
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")[::-1]
        waiting = any(frames[0].startswith(pattern) or pattern in frames[0] for pattern in WAITING)
        counts["(waiting)" if waiting else _category(frames)] += int(count)
    return dict(counts)


def _category(frames: list[str]) -> str:
    for frame in frames:
        for name, patterns in CATEGORIES:
            if any(pattern in frame for pattern in patterns):
                return name
    return "other Python"


def top_frames(path: Path, count: int = 12) -> tuple[int, list[tuple[str, int]], list[tuple[str, int]]]:
    """(working samples, the frames most often innermost (own time), the frames most often anywhere
    in the stack (inclusive time)) of one raw py-spy file, waiting samples left out."""
    own: collections.Counter[str] = collections.Counter()
    anywhere: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if not line.strip():
            continue
        stack, _, number = line.rpartition(" ")
        frames = stack.split(";")[::-1]
        if any(frames[0].startswith(pattern) or pattern in frames[0] for pattern in WAITING):
            continue
        total += int(number)
        own[frames[0]] += int(number)
        for frame in set(frames):
            anywhere[frame] += int(number)
    return total, own.most_common(count), anywhere.most_common(count)


def print_top(folder: Path, cpu: dict[str, float], count: int = 12) -> None:
    """Print each process's top frames, own and inclusive, as shares of its working samples (and
    seconds of ``cpu[name]`` where given)."""
    for path in sorted(folder.glob("*.txt")):
        total, own, anywhere = top_frames(path, count)
        seconds = cpu.get(path.stem)
        print(f"  {path.stem}: {total:,} samples working" + (f", {seconds:.2f} CPU s" if seconds else ""))
        for title, rows in (("own", own), ("inclusive", anywhere)):
            print(f"    top {count} by {title}:")
            for frame, number in rows:
                share = number / (total or 1)
                extra = f" {share * seconds:6.2f} s" if seconds else ""
                print(f"      {share:6.1%}{extra}  {frame}")


def print_split(folder: Path, cpu: dict[str, float]) -> dict[str, dict[str, float]]:
    """Print each process's split (in seconds of ``cpu[name]`` where given); return the shares."""
    table = {}
    for path in sorted(folder.glob("*.txt")):
        counts = split(path)
        waiting = counts.pop("(waiting)", 0)
        total = sum(counts.values()) or 1
        table[path.stem] = {k: v / total for k, v in sorted(counts.items(), key=lambda kv: -kv[1])}
        seconds = cpu.get(path.stem)
        print(
            f"  {path.stem}: {total:,} samples working ({waiting:,} waiting, left out)"
            + (f", {seconds:.1f} CPU s" if seconds else "")
        )
        for name, share in table[path.stem].items():
            extra = f"  {share * seconds:6.2f} s" if seconds else ""
            print(f"    {share:6.1%}{extra}  {name}")
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--cpu", action="append", default=[], metavar="NAME=SECONDS")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--top", type=int, default=0, metavar="N", help="also each process's top N frames")
    args = parser.parse_args()
    cpu = {name: float(seconds) for name, seconds in (item.split("=", 1) for item in args.cpu)}
    table = print_split(args.folder, cpu)
    if args.top:
        print_top(args.folder, cpu, args.top)
    if args.json:
        print(json.dumps(table))


if __name__ == "__main__":
    main()
