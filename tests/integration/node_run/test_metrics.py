"""``node run --metrics-listen``, a real process scraped over HTTP: the import rows counted as files
go in, /readyz ready only with its database, inbox and coordinator, and a first start in a
container creating its database (``--create-database``)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tests.integration.node_run.support import NodeRun, drop, node_run, node_toml, wait_for
from tests.integration.services.harness import phone, running_alliance
from tests.integration.services.monitored import get, readyz_until, scrape, value

pytestmark = pytest.mark.timeout(600)

HEADER = "type,value,category\n"
MONITORED = ("--metrics-listen", "127.0.0.1:0")


def rows(numbers: range) -> str:
    return HEADER + "".join(f"phone,{phone(n)},wool_party\n" for n in numbers)


def imported_rows(port: int) -> dict[str, float]:
    samples = scrape(port)
    return {o: value(samples, "alliance_psi_import_rows_total", outcome=o) for o in ("accepted", "rejected")}


def test_a_node_counts_its_import_rows_and_is_ready_with_its_database_inbox_and_coordinator(
    tmp_path: Path,
    pki,  # type: ignore[no-untyped-def]
) -> None:
    with running_alliance(tmp_path, pki) as alliance:
        database = tmp_path / "volume" / "bank-a.db"  # A new volume: no database yet.
        database.parent.mkdir()
        config = node_toml(
            tmp_path, pki, alliance, "bank-a", **{"join-rounds": "false", "database": f"sqlite:///{database}"}
        )
        inbox = tmp_path / "bank-a-inbox"
        with node_run(config, *MONITORED, "--create-database") as run:
            port = run.metrics_port
            assert readyz_until(port, 200) == "ready\n"
            assert get(port, "/healthz") == (200, "ok\n")
            assert database.exists()
            assert imported_rows(port) == {"accepted": 0, "rejected": 0}
            drop(inbox, "good.csv", rows(range(100, 105)))
            wait_for((inbox / "done" / "good.csv").exists, "good.csv in done/", run)
            assert imported_rows(port) == {"accepted": 5, "rejected": 0}
            # Strict inbox: one rejected row, nothing of the file imported.
            drop(inbox, "bad.csv", rows(range(200, 202)) + "phone,12345,wool_party\n")
            wait_for((inbox / "failed" / "bad.csv").exists, "bad.csv in failed/", run)
            assert imported_rows(port) == {"accepted": 5, "rejected": 1}
            assert run.stop() == 0, run.log
        assert "12345" not in run.log and phone(100) not in run.log


def test_a_node_whose_coordinator_does_not_answer_is_alive_but_not_ready(tmp_path: Path, pki) -> None:  # type: ignore[no-untyped-def]
    with socket.socket() as probe:  # A loopback port nothing listens on.
        probe.bind(("127.0.0.1", 0))
        silent = probe.getsockname()[1]
    with running_alliance(tmp_path, pki) as alliance:
        config = node_toml(tmp_path, pki, alliance, "bank-a", coordinator=f"127.0.0.1:{silent}")
        with node_run(config, *MONITORED) as run:
            port = run.metrics_port
            # "starting: …" while the node loads, then its checks' answer.
            wait_for(lambda: "starting" not in get(port, "/readyz")[1], "the checks' answer", run)
            assert get(port, "/readyz") == (
                503,
                f"not ready: coordinator: the coordinator at 127.0.0.1:{silent} does not answer (UNAVAILABLE)\n",
            )
            assert get(port, "/healthz") == (200, "ok\n")
            assert run.stop() == 0, run.log


def test_without_create_database_a_missing_database_is_refused(tmp_path: Path, pki) -> None:  # type: ignore[no-untyped-def]
    with running_alliance(tmp_path, pki) as alliance:
        missing = tmp_path / "nowhere.db"
        config = node_toml(tmp_path, pki, alliance, "bank-a", database=f"sqlite:///{missing}")
        run = NodeRun(config, *MONITORED)
        assert run.proc.wait(120) == 1
        wait_for(lambda: "no node database at" in run.log, "the refusal")
        assert not missing.exists()
