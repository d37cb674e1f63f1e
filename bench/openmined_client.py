"""OpenMined PSI's client side on the benchmark's items; run in .venv-bench, prints JSON timings.

Usage: .venv-bench/bin/python bench/openmined_client.py N
The items are made exactly as bench/oprf_throughput.py makes them (kept in sync by hand: it is
two lines and this file must not import alliance_psi, whose protobuf differs).
"""

from __future__ import annotations

import json
import sys
import time

import private_set_intersection.python as psi


def items(n: int, offset: int = 0) -> list[str]:
    return ["phone\x00+86138%08d" % (i + offset) for i in range(n)]


def main() -> None:
    n = int(sys.argv[1])
    client_items = items(n)
    server_items = items(n, offset=n // 10)  # 90% overlap.
    client = psi.client.CreateWithNewKey(True)
    server = psi.server.CreateWithNewKey(True)
    start = time.perf_counter()
    request = client.CreateRequest(client_items)
    t_request = time.perf_counter() - start
    setup = server.CreateSetupMessage(1e-9, len(client_items), server_items, psi.DataStructure.RAW)
    response = server.ProcessRequest(request)
    start = time.perf_counter()
    found = client.GetIntersection(setup, response)
    t_intersect = time.perf_counter() - start
    print(json.dumps({"request_s": t_request, "intersection_s": t_intersect,
                      "client_s": t_request + t_intersect, "found": len(found)}))


if __name__ == "__main__":
    main()
