"""The plain health port of real ``serve`` processes: liveness, readiness and its reasons, the
``alliance-psi health`` command a container's HEALTHCHECK runs, and bad options refused clearly."""

from __future__ import annotations

import logging
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import text

from alliance_psi.cli._processes import cli_command
from alliance_psi.cli.main import main
from alliance_psi.services.metrics import Metrics
from alliance_psi.services.monitoring import serve_monitoring
from alliance_psi.services.readiness import Readiness
from tests.integration.services.conftest import AlliancePki
from tests.integration.services.monitored import (
    coordinator_serve,
    custodian_serve,
    get,
    readyz_until,
    scrape,
    value,
    wait_ready,
)

pytestmark = pytest.mark.timeout(300)


def health(url: str) -> Any:
    return CliRunner().invoke(main, ["health", "--url", url])


def test_ready_live_and_the_health_command(tmp_path: Path, pki: AlliancePki) -> None:
    with custodian_serve(tmp_path, pki) as custodian:
        port = custodian.metrics_port
        assert get(port, "/healthz") == (200, "ok\n")
        wait_ready(port)
        assert get(port, "/readyz") == (200, "ready\n")
        assert get(port, "/nothing")[0] == 404
        ready = health(f"http://127.0.0.1:{port}/readyz")
        assert ready.exit_code == 0 and ready.output == "ready\n"
        # Nothing of the gRPC port is plain: the health port is the only one a probe without a certificate reads.
        assert get(port, "/metrics")[0] == 200


def test_not_ready_when_the_postgresql_database_is_gone(tmp_path: Path, pki: AlliancePki, pg_admin_engine: Any) -> None:
    name = f"test_{uuid.uuid4().hex[:16]}"
    with pg_admin_engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = pg_admin_engine.url.set(database=name).render_as_string(hide_password=False)
    try:
        with coordinator_serve(tmp_path, pki, url) as coordinator:
            port = coordinator.metrics_port
            wait_ready(port)
            with pg_admin_engine.connect() as conn:
                conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
            assert readyz_until(port, 503) == "not ready: database: unreachable (OperationalError)\n"
            refused = health(f"http://127.0.0.1:{port}/readyz")
            assert refused.exit_code == 1
            assert "answered 503: not ready: database: unreachable (OperationalError)" in refused.output
            assert get(port, "/healthz") == (200, "ok\n")  # Alive: a restart would not bring the database back.
            assert value(scrape(port), "alliance_psi_database_up") == 0
    finally:
        with pg_admin_engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def test_not_ready_when_the_sqlite_file_or_a_tls_file_is_gone(tmp_path: Path, pki: AlliancePki) -> None:
    database = tmp_path / "coordinator.db"
    with coordinator_serve(tmp_path, pki, f"sqlite:///{database}") as coordinator:
        port = coordinator.metrics_port
        wait_ready(port)
        (tmp_path / "tls" / "coordinator.pem").unlink()
        body = readyz_until(port, 503)
        assert body == "not ready: tls: a TLS file is missing, unreadable or not PEM\n"
        database.unlink()
        deadline = time.monotonic() + 60
        while "database" not in body:
            assert time.monotonic() < deadline, body
            body = readyz_until(port, 503)
        assert "not ready: database: the SQLite file is gone\n" in body
        assert str(tmp_path) not in body  # Whoever reaches the port learns no path; the log names them.
        while f"the SQLite file is gone ({database})" not in "".join(coordinator.lines):
            assert time.monotonic() < deadline, "".join(coordinator.lines[-20:])
            time.sleep(0.1)
        tls_file = tmp_path / "tls" / "coordinator.pem"
        assert f"tls: a TLS file is missing, unreadable or not PEM (TLS option 'cert': file not found: {tls_file})" in (
            "".join(coordinator.lines)
        )


def test_the_health_command_says_why_it_cannot_ask() -> None:
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    refused = health(f"http://127.0.0.1:{port}/readyz")
    assert refused.exit_code == 1 and f"cannot reach http://127.0.0.1:{port}/readyz: " in refused.output
    for url in ("file:///etc/passwd", "https://127.0.0.1:9464/readyz", "127.0.0.1:9464"):
        bad = health(url)
        assert bad.exit_code == 2 and "give an http:// URL" in bad.output, url


def serve_fails(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cli_command(*args), capture_output=True, text=True, timeout=120, check=False)


def test_a_taken_metrics_port_stops_the_server_before_it_creates_anything(tmp_path: Path, pki: AlliancePki) -> None:
    database = tmp_path / "custodian.db"
    share = tmp_path / "custodian.share"
    assert CliRunner().invoke(main, ["custodian", "init-share", "--epoch", "e1", "--out", str(share)]).exit_code == 0
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = serve_fails(
            "custodian",
            "serve",
            "--name",
            "custodian-1",
            "--listen",
            "127.0.0.1:0",
            "--ca",
            str(pki.directory / "ca.pem"),
            "--cert",
            str(pki.directory / "custodian-1.pem"),
            "--key",
            str(pki.directory / "custodian-1.key"),
            "--key-share",
            str(share),
            "--database",
            f"sqlite:///{database}",
            "--metrics-listen",
            f"127.0.0.1:{port}",
        )
    assert done.returncode == 1
    assert done.stderr.strip().endswith(
        f"Error: cannot serve metrics and health on 127.0.0.1:{port}: Address already in use (the port is in use "
        "by another process, or the address is not one of this machine's)"
    )
    assert not database.exists()


@pytest.mark.parametrize(
    "option, value_, message",
    [
        ("--log-format", "xml", "Invalid value for '--log-format': 'xml' is not one of 'text', 'json'."),
        ("--log-level", "verbose", "Invalid value for '--log-level': 'verbose' is not one of"),
        ("--metrics-listen", "9464", "Invalid value for '--metrics-listen': '9464' is not HOST:PORT"),
        (
            "--metrics-listen",
            "127.0.0.1:70000",
            "Invalid value for '--metrics-listen': '127.0.0.1:70000' is not HOST:PORT",
        ),
    ],
)
@pytest.mark.parametrize("server", ["coordinator", "custodian"])
def test_bad_monitoring_options_are_refused_naming_the_option(
    tmp_path: Path, server: str, option: str, value_: str, message: str
) -> None:
    required = {
        "coordinator": ["--signing-key", "k"],
        "custodian": ["--name", "custodian-1", "--key-share", "s"],
    }[server]
    args = [server, "serve", "--ca", "a", "--cert", "b", "--key", "c", "--database", f"sqlite:///{tmp_path}/x.db"]
    refused = CliRunner().invoke(main, [*args, *required, option, value_])
    assert refused.exit_code == 2 and message in refused.output, refused.output
    assert not (tmp_path / "x.db").exists()


def test_the_port_answers_only_get_and_head_on_its_three_paths() -> None:
    readiness = Readiness(["database", "grpc"], min_interval=0)
    with serve_monitoring("127.0.0.1:0", Metrics(process=False), readiness) as port:
        assert get(port, "/readyz") == (503, "not ready: starting: waiting for database, grpc\n")
        readiness.met("database")
        readiness.met("grpc")
        assert get(port, "/readyz") == (200, "ready\n")
        head = urllib.request.Request(f"http://127.0.0.1:{port}/readyz", method="HEAD")
        with urllib.request.urlopen(head, timeout=30) as answer:
            assert answer.status == 200 and answer.read() == b""
        post = urllib.request.Request(f"http://127.0.0.1:{port}/metrics", data=b"x", method="POST")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(post, timeout=30)
        assert refused.value.code == 405 and refused.value.headers["Allow"] == "GET, HEAD"
        assert get(port, "/metrics?name[]=alliance_psi_build_info")[1].startswith("# HELP alliance_psi_build_info")
        readiness.stopping()
        assert get(port, "/readyz") == (503, "not ready: stopping\n")
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5)


def test_a_request_line_is_logged_without_its_control_characters(caplog: pytest.LogCaptureFixture) -> None:
    # Whoever reaches the port chooses the request line: an escape sequence in it must not reach an
    # operator's terminal through the text log (http.server escapes them; the port's handler too).
    caplog.set_level(logging.DEBUG, logger="alliance_psi.services.monitoring")
    with serve_monitoring("127.0.0.1:0", Metrics(process=False), Readiness([])) as port:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as client:
            client.sendall(b"GET /\x1b[2J\x07x HTTP/1.0\r\n\r\n")
            assert client.makefile("rb").read().startswith(b"HTTP/1.0 404")  # To the end: then it is logged.
        deadline = time.monotonic() + 30
        while not [r for r in caplog.records if "GET /" in r.getMessage()] and time.monotonic() < deadline:
            time.sleep(0.05)
    (logged,) = [r.getMessage() for r in caplog.records if "GET /" in r.getMessage()]
    assert "\x1b" not in logged and "\x07" not in logged
    assert '"GET /\\x1b[2J\\x07x HTTP/1.0" 404' in logged
