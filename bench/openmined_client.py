"""OpenMined PSI's client side on the benchmark's items; run in .venv-bench, prints JSON timings.

Usage: .venv-bench/bin/python bench/openmined_client.py N
       .venv-bench/bin/python bench/openmined_client.py --pairs SETS.json   # every pair of the sets
The items are made exactly as bench/oprf_throughput.py makes them (kept in sync by hand: it is
two lines and this file must not import alliance_psi, whose protobuf differs).
"""

from __future__ import annotations

import json
import sys
import time

import private_set_intersection.python as psi


def items(n: int, offset: int = 0) -> list[str]:
    return [f"phone\x00+86138{i + offset:08d}" for i in range(n)]


# bench/round.py gives its members canonical phone numbers "+86138%08d"; OpenMined hashes the
# OPRF input strings above, which cost the same.


def timed(fn):  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def pairwise(path: str) -> None:
    """The whole two-party protocol for every pair of the sets in ``path`` (a JSON list of lists of
    item strings), one pair after another; prints JSON: each pair's seconds and intersection size."""
    with open(path, encoding="utf-8") as file:
        sets = json.load(file)
    runs = []
    for i in range(len(sets)):
        for j in range(i + 1, len(sets)):
            client = psi.client.CreateWithNewKey(True)
            server = psi.server.CreateWithNewKey(True)
            start = time.perf_counter()
            request = client.CreateRequest(sets[i])
            setup = server.CreateSetupMessage(1e-9, len(sets[i]), sets[j], psi.DataStructure.RAW)
            response = server.ProcessRequest(request)
            found = client.GetIntersection(setup, response)
            runs.append({"pair": [i, j], "seconds": time.perf_counter() - start, "found": len(found)})
    print(json.dumps({"runs": runs, "total_s": sum(run["seconds"] for run in runs)}))


def main() -> None:
    if sys.argv[1] == "--pairs":
        pairwise(sys.argv[2])
        return
    n = int(sys.argv[1])
    full = "--full" in sys.argv
    # Client-side figures: 90% overlap, as bench/oprf_throughput.py. With --full SHARED, the
    # whole two-party protocol on two sets sharing SHARED items, as bench/round.py's members.
    shared = int(sys.argv[sys.argv.index("--full") + 1]) if full else n - n // 10
    client_items = items(n)
    server_items = items(n, offset=n - shared)
    client = psi.client.CreateWithNewKey(True)
    server = psi.server.CreateWithNewKey(True)
    t_request, request = timed(lambda: client.CreateRequest(client_items))
    t_setup, setup = timed(
        lambda: server.CreateSetupMessage(1e-9, len(client_items), server_items, psi.DataStructure.RAW)
    )
    t_process, response = timed(lambda: server.ProcessRequest(request))
    t_intersect, found = timed(lambda: client.GetIntersection(setup, response))
    print(
        json.dumps(
            {
                "request_s": t_request,
                "setup_s": t_setup,
                "process_s": t_process,
                "intersection_s": t_intersect,
                "client_s": t_request + t_intersect,
                "total_s": t_request + t_setup + t_process + t_intersect,
                "found": len(found),
            }
        )
    )


if __name__ == "__main__":
    main()
