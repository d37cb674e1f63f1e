"""Time of the custodians' key ceremony (distributed key generation) for 3 and 5 custodians.

Usage: .venv/bin/python bench/dkg.py [--custodians 3 5] [--threshold-of N:T ...]

For each size, three figures: the crypto alone (every ``crypto.dkg`` step of every participant in
one process, no network); the ceremony over mutual TLS on loopback with every custodian a thread
of one process (``services.key_ceremony.run_ceremony``: servers, signatures, the seven rounds),
until the last custodian has its result; and the ceremony as it runs in production, one
``alliance-psi custodian keygen`` process per custodian, started together, each with its own
SQLite enrolment list, from the start of the processes to the last one's exit (Python's start-up
and the crypto self-check included). τ is the majority, ⌊n/2⌋ + 1.
"""

from __future__ import annotations

import argparse
import functools
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import Engine

from alliance_psi.cli._processes import cli_command, tls_args
from alliance_psi.config import PeerEndpoint, TlsMaterial
from alliance_psi.crypto.dkg import DkgParameters, Participant, judge_extraction, outcome, qualify
from alliance_psi.protocol.ceremony import CeremonyPlan, KeyCeremony
from alliance_psi.protocol.messages import CeremonyCodec
from alliance_psi.protocol.model import Role
from alliance_psi.services import pki
from alliance_psi.services.enrolment import enrol, enrolment_gate
from alliance_psi.services.key_ceremony import CertificateCredentials, run_ceremony
from alliance_psi.storage import create_schema, make_engine


def crypto_only(n: int, threshold: int) -> float:
    """Every step of every participant in one process; seconds."""
    started = time.perf_counter()
    params = DkgParameters(threshold, n)
    people = {i: Participant(params, i) for i in params.indices}
    dealings = {i: p.deal() for i, p in people.items()}
    for j, p in people.items():
        for i, d in dealings.items():
            p.receive(i, d.commitments, d.shares[j])
    commitments = {i: d.commitments for i, d in dealings.items()}
    disqualified = qualify(params, commitments, {j: p.complaints for j, p in people.items()}, {})
    for p in people.values():
        p.adopt(disqualified, {})
    extraction = {i: p.extraction() for i, p in people.items()}
    evidence = {j: p.check_extraction(extraction) for j, p in people.items()}
    rebuild = judge_extraction(params, list(params.indices), commitments, extraction, evidence)
    public = outcome(params, disqualified, {i: e for i, e in extraction.items() if e is not None}, rebuild)
    for p in people.values():
        p.result(public)
    return time.perf_counter() - started


def enrolled(path: Path, name: str, issued: dict[str, pki.IssuedCertificate]) -> Engine:
    """``name``'s SQLite database at ``path``, with every other custodian of ``issued`` enrolled."""
    engine = make_engine(f"sqlite:///{path}")
    create_schema(engine)
    for other, cert in issued.items():
        if other != name:
            enrol(engine, cert.cert_pem, role=Role.CUSTODIAN)
    return engine


def threads(directory: Path, n: int, threshold: int) -> float:
    """``n`` custodians as threads of this process over mTLS on loopback; seconds to the last result."""
    ca = pki.init_ca("Bench threads")
    names = [f"custodian-{i}" for i in range(1, n + 1)]
    issued = {name: pki.issue(ca, role=Role.CUSTODIAN, name=name) for name in names}
    plan = CeremonyPlan.create("bench", threshold, names)
    ports = dict(zip(names, free_ports(n), strict=True))
    runs = []
    for name in names:
        engine = enrolled(directory / f"{name}-threads.db", name, issued)
        roster, check = enrolment_gate(engine, server="custodian", roles=frozenset({Role.CUSTODIAN}))
        tls = TlsMaterial(ca_cert=ca.cert_pem, cert=issued[name].cert_pem, key=issued[name].key_pem)
        role = KeyCeremony(plan, name, CertificateCredentials(tls, roster), CeremonyCodec())
        peers = [PeerEndpoint(o, f"127.0.0.1:{p}") for o, p in ports.items() if o != name]
        runs.append(
            functools.partial(
                run_ceremony, role, listen=f"127.0.0.1:{ports[name]}", tls=tls, peers=peers, checks=[check]
            )
        )
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=n) as pool:
        for result in [pool.submit(run) for run in runs]:
            result.result()
    return time.perf_counter() - started


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def ceremony(directory: Path, n: int, threshold: int) -> float:
    """``n`` keygen processes over mTLS on loopback; seconds from their start to the last exit."""
    ca = pki.init_ca("Bench")
    pki.write_ca(ca, directory)
    names = [f"custodian-{i}" for i in range(1, n + 1)]
    issued = {name: pki.issue(ca, role=Role.CUSTODIAN, name=name) for name in names}
    for name, cert in issued.items():
        pki.write_issued(cert, directory, name)
    for name in names:
        enrolled(directory / f"{name}.db", name, issued).dispose()
    ports = dict(zip(names, free_ports(n), strict=True))
    commands = []
    for name in names:
        peers = [f"--peer={o}@127.0.0.1:{p}" for o, p in ports.items() if o != name]
        commands.append(
            cli_command(
                "custodian",
                "keygen",
                "--name",
                name,
                "--epoch",
                "bench",
                "--threshold",
                str(threshold),
                *peers,
                "--listen",
                f"127.0.0.1:{ports[name]}",
                *tls_args(directory, name),
                "--database",
                f"sqlite:///{directory / f'{name}.db'}",
                "--out",
                str(directory / name),
            )
        )
    started = time.perf_counter()
    procs = [subprocess.Popen(c, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for c in commands]
    for proc in procs:
        _, err = proc.communicate(timeout=600)
        if proc.returncode != 0:
            raise SystemExit(f"keygen failed: {err}")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--custodians", type=int, nargs="+", default=[3, 5])
    args = parser.parse_args()
    print("| custodians n | threshold τ | crypto alone | ceremony, threads over mTLS | keygen processes over mTLS |")
    print("|---:|---:|---:|---:|---:|")
    for n in args.custodians:
        threshold = n // 2 + 1
        crypto = crypto_only(n, threshold)
        with tempfile.TemporaryDirectory() as tmp:
            in_threads = threads(Path(tmp), n, threshold)
            wall = ceremony(Path(tmp), n, threshold)
        print(f"| {n} | {threshold} | {crypto * 1000:.1f} ms | {in_threads:.2f} s | {wall:.2f} s |")


if __name__ == "__main__":
    main()
