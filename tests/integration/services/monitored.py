"""An alliance of real ``coordinator serve`` and ``custodian serve`` processes with their metrics
ports open, and member nodes in this process: for the tests of metrics, health and logging."""

from __future__ import annotations

import contextlib
import secrets
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families

from alliance_psi.cli._processes import ServerProcess
from alliance_psi.cli.main import main
from alliance_psi.config import PeerEndpoint
from alliance_psi.protocol.member import JoinOutcome
from alliance_psi.services.clients import CoordinatorClient, CustodianChain, custodian_clients
from alliance_psi.services.member import MemberNode
from tests.integration.services.conftest import AlliancePki
from tests.integration.services.harness import CATEGORIES, MEMBERS, Planted, load, sqlite_engine
from tests.integration.services.processes import coordinator_process, custodian_process

QUOTA = 50_000

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def get(port: int, path: str) -> tuple[int, str]:
    """GET ``path`` on the metrics port: (status, body)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=30) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def wait_ready(port: int | None) -> None:
    """Wait until /readyz answers 200 (the server logs that it serves just before it is ready)."""
    readyz_until(port, 200)


def readyz_until(port: int | None, status: int, timeout: float = 60) -> str:
    """Ask /readyz until it answers ``status`` (a check runs at most once a second); return the body."""
    assert port is not None
    deadline = time.monotonic() + timeout
    while (answer := get(port, "/readyz"))[0] != status:
        assert time.monotonic() < deadline, f"/readyz never answered {status}: {answer}"
        time.sleep(0.1)
    return answer[1]


def scrape(port: int) -> Samples:
    """Every sample of /metrics, by name and labels."""
    status, body = get(port, "/metrics")
    assert status == 200, body
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(body)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sample ``name`` with exactly ``labels`` (0 if there is none)."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def handled(samples: Samples, method: str, code: str = "OK") -> float:
    """How many calls of ``method`` ended with ``code`` (any service, any type)."""
    return sum(
        v
        for (name, labels), v in samples.items()
        if name == "grpc_server_handled_total" and ("grpc_method", method) in labels and ("grpc_code", code) in labels
    )


def coordinator_serve(tmp: Path, pki: AlliancePki, database: str, *options: str) -> ServerProcess:
    """``coordinator serve`` with its metrics port on a free port, members and ``admin`` enrolled,
    its TLS files copied to ``tmp/tls``."""
    tmp.mkdir(parents=True, exist_ok=True)
    admin = ["coordinator", "admin", "add", "--cert", str(pki.directory / "admin.pem"), "--database", database]
    assert CliRunner().invoke(main, admin).exit_code == 0
    monitoring = ("--metrics-listen", "127.0.0.1:0", "--tick", "0.2")
    return coordinator_process(tmp, pki, *monitoring, *options, database=database, tls_dir=tmp / "tls")


def custodian_serve(tmp: Path, pki: AlliancePki, *options: str) -> ServerProcess:
    """``custodian serve`` of key epoch ``EPOCH`` with its metrics port on a free port."""
    tmp.mkdir(parents=True, exist_ok=True)
    monitoring = ("--quota", str(QUOTA), "--metrics-listen", "127.0.0.1:0")
    return custodian_process(tmp, pki, *monitoring, *options, tls_dir=tmp / "tls")


@dataclass
class MonitoredAlliance:
    tmp: Path
    pki: AlliancePki
    coordinator: ServerProcess
    custodian: ServerProcess
    planted: Planted

    def admin(self) -> CoordinatorClient:
        return CoordinatorClient(self.coordinator.address, self.pki.material("admin"))

    def node(self, member: str) -> Any:
        """``member``'s node role over its own database and clients of the server processes."""
        tls = self.pki.material(member)
        chain = CustodianChain(custodian_clients([PeerEndpoint("custodian-1", self.custodian.address)], tls))
        key = bytes.fromhex((self.tmp / "coordinator" / "keys" / "signing.pub").read_text().strip())
        engine = sqlite_engine(self.tmp / f"{member}.db")
        load(engine, sorted(self.planted.holdings[member]), CATEGORIES[MEMBERS.index(member)])
        return MemberNode(
            member_id=member,
            engine=engine,
            coordinator=CoordinatorClient(self.coordinator.address, tls),
            custodians=chain,
            coordinator_key=key,
            nonce_key=secrets.token_bytes(32),
            workers=1,
            batch_size=64,
            chunk_size=25,
        ).role

    def join(self, members: Sequence[str], round_id: str) -> dict[str, JoinOutcome]:
        with ThreadPoolExecutor(len(members)) as pool:
            futures = {m: pool.submit(self.node(m).join, round_id, wait=120) for m in members}
            return {m: f.result() for m, f in futures.items()}


@contextlib.contextmanager
def monitored_alliance(
    tmp: Path, pki: AlliancePki, *options: str, database: str | None = None
) -> Iterator[MonitoredAlliance]:
    """A coordinator (on ``database``, else SQLite in ``tmp``) and one custodian, as processes
    with their metrics ports open and ``options`` added to both command lines."""
    (tmp / "coordinator").mkdir(parents=True, exist_ok=True)
    database = database or f"sqlite:///{tmp / 'coordinator' / 'coordinator.db'}"
    with (
        coordinator_serve(tmp / "coordinator", pki, database, *options) as coordinator,
        custodian_serve(tmp / "custodian", pki, *options) as custodian,
    ):
        wait_ready(coordinator.metrics_port)
        wait_ready(custodian.metrics_port)
        yield MonitoredAlliance(tmp, pki, coordinator, custodian, Planted.make(size=30))
