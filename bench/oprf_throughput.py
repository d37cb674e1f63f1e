"""Member- and custodian-side OPRF throughput, against OpenMined PSI's client, on the same items.

Usage:  .venv/bin/python bench/oprf_throughput.py [--n 100000] [--workers 2] [--memory]
(`make bench` makes .venv-bench with `openmined-psi` and runs this.)

Member side = HashToGroup + blind, then unblind + Finalize + derive (token and label key), the
whole of a member's crypto per identifier, streamed in batches over a process pool.
Custodian side = element validation + one scalar multiplication per element, for one share.
OpenMined PSI client = CreateRequest + GetIntersection (its server's setup and processing are
not counted), with reveal_intersection=True and a RAW setup, on the same items.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

from alliance_psi.crypto.batch import blind_batch, finalize_and_derive_batch
from alliance_psi.crypto.key_shares import KeyShare
from alliance_psi.crypto.parallel import ProcessMap, chunked, tokenize

BATCH = 1024


def items(n: int, offset: int = 0) -> list[bytes]:
    """Distinct OPRF inputs shaped like canonical mainland mobile numbers."""
    return [b"phone\x00+86138%08d" % (i + offset) for i in range(n)]


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def _evaluate_job(args: tuple[bytes, tuple[bytes, ...]]) -> list[bytes]:
    share_bytes, elements = args
    return KeyShare.from_bytes(share_bytes).blind_evaluate(elements)


def ours(xs: list[bytes], workers: int) -> dict[str, float]:
    """Time each stage over the whole set, each stage using `workers` processes."""
    share = KeyShare.generate("bench")
    batches = list(chunked(xs, BATCH))
    with ProcessMap(workers) as pool:
        list(pool.map(blind_batch, batches[:2]))  # Warm the workers up (imports, libsodium load).
        t_blind, blinded = timed(lambda: list(pool.map(blind_batch, batches)))
        jobs = [(share.to_bytes(), b.blinded_elements) for b in blinded]  # type: ignore[attr-defined]
        t_eval, evaluated = timed(lambda: list(pool.map(_evaluate_job, jobs)))

        def finalize_all() -> list[object]:
            futures = [
                pool.submit(finalize_and_derive_batch, x, b.blind, e)
                for x, b, e in zip(batches, blinded, evaluated, strict=False)  # type: ignore[call-overload]
            ]
            return [f.result() for f in futures]

        t_final, _ = timed(finalize_all)
    return {"blind_s": t_blind, "custodian_s": t_eval, "finalize_derive_s": t_final, "member_s": t_blind + t_final}


def openmined(n: int, python: str | None) -> dict[str, float] | None:
    """OpenMined PSI's client in its own interpreter (its protobuf pin conflicts with ours)."""
    if not python or not os.path.exists(python):
        return None
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "openmined_client.py")
    out = subprocess.run([python, script, str(n)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def memory_probe(n: int) -> int:
    """Peak RSS (KiB) of a fresh process that streams n items through `tokenize`."""
    code = (
        "import resource,sys\n"
        "from bench.oprf_throughput import stream_only\n"
        f"stream_only({n})\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    )
    return int(out.stdout.split()[-1])


def stream_only(n: int) -> None:
    share = KeyShare.generate("bench")

    def gen() -> Iterator[bytes]:
        for i in range(n):
            yield b"phone\x00+86139%08d" % i

    tokens = 0
    with ProcessMap(2) as pool:
        for _, derived in tokenize(gen(), share.blind_evaluate, pool=pool):
            tokens += len(derived.match_tokens)
    assert tokens == n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000, help="identifiers (default 100000)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="worker processes")
    parser.add_argument("--memory", action="store_true", help="also measure peak RSS when streaming 50k vs 400k")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON too")
    parser.add_argument(
        "--openmined-python",
        default=".venv-bench/bin/python",
        help="interpreter with openmined-psi installed (made by `make bench`)",
    )
    args = parser.parse_args()

    xs = items(args.n)
    print(f"machine: {platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}, n={args.n}")
    mine = ours(xs, args.workers)
    single = ours(xs[: max(args.n // 10, BATCH)], 1)
    scale = args.n / max(args.n // 10, BATCH)
    om = openmined(args.n, args.openmined_python)

    per = lambda seconds: seconds / args.n * 1e6  # noqa: E731 - microseconds per identifier
    print(
        f"alliance-psi member side, {args.workers} workers: {mine['member_s']:.2f} s "
        f"({per(mine['member_s']):.1f} us/id, {args.n / mine['member_s']:,.0f} ids/s)"
        f"  [blind {mine['blind_s']:.2f} s, finalize+derive {mine['finalize_derive_s']:.2f} s]"
    )
    print(
        f"alliance-psi member side, 1 worker (on n/10, scaled): {single['member_s'] * scale:.2f} s "
        f"({per(single['member_s'] * scale):.1f} us/id)"
    )
    print(
        f"alliance-psi custodian side, one share, {args.workers} workers: {mine['custodian_s']:.2f} s "
        f"({per(mine['custodian_s']):.1f} us/element); 1 worker: {per(single['custodian_s'] * scale):.1f} us/element"
    )
    result = {
        "n": args.n,
        "workers": args.workers,
        "ours": mine,
        "ours_single_scaled": {k: v * scale for k, v in single.items()},
    }
    if om is None:
        print("OpenMined PSI not run: `make bench` makes .venv-bench with openmined-psi")
    else:
        print(
            f"OpenMined PSI client (CreateRequest + GetIntersection): {om['client_s']:.2f} s "
            f"({per(om['client_s']):.1f} us/id)  [request {om['request_s']:.2f} s, intersection {om['intersection_s']:.2f} s]"
        )
        ratio = mine["member_s"] / om["client_s"]
        print(
            f"ratio alliance-psi member / OpenMined client = {ratio:.2f}  (target <= 1.0: {'met' if ratio <= 1.0 else 'NOT met'})"
        )
        result["openmined"] = om
        result["ratio"] = ratio
    if args.memory:
        small, large = memory_probe(50_000), memory_probe(400_000)
        print(
            f"peak RSS streaming 50,000: {small / 1024:.1f} MiB; 400,000: {large / 1024:.1f} MiB (x{large / small:.2f} for 8x the input)"
        )
        result["rss_kib"] = {"50000": small, "400000": large}
    if args.json:
        print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
