"""Custodian replicas: evaluation throughput with 1, 2, … custodian processes sharing one quota store.

Usage:
    .venv/bin/python bench/custodian_replicas.py --database postgresql://…/postgres [--replicas 1,2]
        [--members 4] [--batches 8] [--batch 1024]

For each replica count, a local alliance whose custodian-1 runs as that many ``custodian serve``
processes with one key share and one fresh PostgreSQL quota database (made from the server named
by ``--database``); ``--members`` clients, each with its own member certificate and one channel
over every replica's address (round-robin, as a member node), evaluate ``--batches`` batches of
``--batch`` fresh elements each, all at once. Prints elements per second, each replica's CPU
seconds and the load average (1/5/15 minutes) at the start and end of the timed part.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import text

from alliance_psi.cli._local_alliance import EPOCH, local_alliance
from alliance_psi.config import TlsConfig
from alliance_psi.crypto.suite import RISTRETTO255_SHA512
from alliance_psi.services.anchors import load_anchor
from alliance_psi.services.cert_checks import load_tls
from alliance_psi.services.clients import CustodianClient, RetryPolicy
from alliance_psi.storage import make_engine
from bench.alliance_scale import load
from bench.round import cpu_seconds


def fresh_database(server: str) -> str:
    admin = make_engine(server).execution_options(isolation_level="AUTOCOMMIT")
    name = f"bench_replicas_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return make_engine(server).url.set(database=name).render_as_string(hide_password=False)


def measure(replicas: int, args: argparse.Namespace) -> tuple[float, list[float], str]:
    """(elements per second, each replica's CPU seconds, the load average at start -> end)."""
    names = [f"m{i}" for i in range(args.members)]
    database = fresh_database(args.database)
    suite = RISTRETTO255_SHA512
    batches = {
        m: [[suite.hash_to_group(os.urandom(32)) for _ in range(args.batch)] for _ in range(args.batches)]
        for m in names
    }
    with local_alliance(args.out, names, custodian_database=database, custodian_replicas=replicas) as alliance:
        processes = [alliance.custodian, *alliance.custodian_replicas]
        addresses = [p.address for p in processes]
        pki, anchor_file = alliance.pki_dir, alliance.root / "custodian" / "ca" / "ca.pem"
        clients = {}
        for m in names:
            tls = load_tls(TlsConfig(ca_cert=pki / "ca.pem", cert=pki / f"{m}.pem", key=pki / f"{m}.key"))
            anchor = load_anchor(anchor_file, custodian="custodian-1", alliance_ca=tls.ca_cert)
            clients[m] = CustodianClient(
                addresses[0], tls, RetryPolicy(timeout=600), name="custodian-1", anchor=anchor, replicas=addresses[1:]
            )
            clients[m].epoch()  # Connected before the clock starts.
        cpu = [cpu_seconds(p.proc.pid) for p in processes]
        barrier = threading.Barrier(len(names) + 1)

        def work(member: str) -> None:
            barrier.wait()
            for batch in batches[member]:
                clients[member].evaluate(EPOCH, batch)

        threads = [threading.Thread(target=work, args=(m,)) for m in names]
        for thread in threads:
            thread.start()
        barrier.wait()
        began, before = time.perf_counter(), load()
        for thread in threads:
            thread.join()
        elapsed, after = time.perf_counter() - began, load()
        spent = [cpu_seconds(p.proc.pid) - before for p, before in zip(processes, cpu, strict=True)]
        for client in clients.values():
            client.close()
    return args.members * args.batches * args.batch / elapsed, spent, f"{before} -> {after}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", required=True, help="a PostgreSQL server URL (a database is made per run)")
    parser.add_argument("--replicas", default="1,2")
    parser.add_argument("--members", type=int, default=4)
    parser.add_argument("--batches", type=int, default=8)
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--out", type=Path, default=Path("/tmp/alliance-psi-replicas"))
    args = parser.parse_args()
    print("| replicas | elements/s | CPU seconds per replica | load average (1/5/15 min), start -> end |")
    for replicas in (int(r) for r in args.replicas.split(",")):
        rate, spent, loads = measure(replicas, args)
        print(f"| {replicas} | {rate:,.0f} | {', '.join(f'{s:.1f}' for s in spent)} | {loads} |", flush=True)


if __name__ == "__main__":
    main()
