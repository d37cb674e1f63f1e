"""What users do instead: one alliance-psi round of N members against every pairwise OpenMined PSI.

Usage:
    make bench                                   # once, for .venv-bench with openmined-psi
    .venv/bin/python bench/pairwise.py           # N = 2, 5, 10 members x 10,000 identifiers
    .venv/bin/python bench/pairwise.py --members 2,5 --size 10000

For each N, the same N sets (member i holds identifiers shared a tenth with each neighbour, as in
bench/round.py) go once through a cold alliance-psi round on the real stack (coordinator,
custodian and member nodes as processes, mutual TLS on loopback, SQLite, threshold 2, labels
shared) and through OpenMined PSI's whole two-party protocol for all N(N-1)/2 pairs, one after
another in one process (client request, server setup, server processing, client intersection).
Prints both and their ratio, in the same run on the same machine. The pairwise runs reveal every
pair's overlap to the pair and cannot say "held by at least t members"; the round reveals to
each member only its own identifiers that at least t members hold.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from alliance_psi.cli._local_alliance import local_alliance
from bench.round import ROOT, phones, run_round, write_csv


def member_sets(members: int, size: int) -> list[list[str]]:
    shared = size // 10
    return [phones(i * (size - shared), size) for i in range(members)]


def alliance_round(sets: list[list[str]], out: Path) -> dict[str, float]:
    names = [f"m{i}" for i in range(len(sets))]
    with local_alliance(out, names) as alliance:
        for member, values in zip(names, sets, strict=True):
            alliance.run_node(member, "import", str(write_csv(alliance.home(member) / "list.csv", values)))
        return run_round(alliance, share_labels=True)


def openmined_pairs(sets: list[list[str]], python: str, out: Path) -> dict[str, object]:
    path = out / "pairwise-sets.json"
    out.mkdir(parents=True, exist_ok=True)
    # OpenMined hashes the same OPRF input strings alliance-psi's members do (type, 0x00, value).
    path.write_text(json.dumps([[f"phone\x00{v}" for v in values] for values in sets]), encoding="utf-8")
    done = subprocess.run(
        [python, str(ROOT / "openmined_client.py"), "--pairs", str(path)], capture_output=True, text=True, check=True
    )
    return dict(json.loads(done.stdout))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", default="2,5,10", help="comma-separated member counts")
    parser.add_argument("--size", type=int, default=10_000)
    parser.add_argument("--openmined-python", default=".venv-bench/bin/python")
    parser.add_argument("--out", type=Path, default=Path("/tmp/alliance-psi-pairwise"))
    args = parser.parse_args()
    rows = []
    for members in (int(n) for n in args.members.split(",")):
        sets = member_sets(members, args.size)
        began = time.perf_counter()
        round_ = alliance_round(sets, args.out / f"n{members}")
        pairs = openmined_pairs(sets, args.openmined_python, args.out)
        runs = pairs["runs"]
        assert isinstance(runs, list)
        total = float(pairs["total_s"])  # type: ignore[arg-type]
        ratio = round_["wall_s"] / total
        rows.append((members, round_["wall_s"], len(runs), total, ratio))
        print(
            f"N = {members} x {args.size:,}: alliance-psi round {round_['wall_s']:.2f} s; OpenMined PSI, "
            f"{len(runs)} pairs one after another: {total:.2f} s ({total / len(runs):.2f} s per pair); "
            f"ratio round / pairwise = {ratio:.2f} (measured in {time.perf_counter() - began:.0f} s)"
        )
        print(json.dumps({"members": members, "size": args.size, "round": round_, "openmined": pairs}))
    print("| members | alliance-psi round | pairwise runs | OpenMined PSI, all pairs | ratio |")
    for members, wall, count, total, ratio in rows:
        print(f"| {members} | {wall:.2f} s | {count} | {total:.2f} s | {ratio:.2f} |")


if __name__ == "__main__":
    main()
