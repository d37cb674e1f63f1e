"""No identifier, token, label or SQL parameter in any log line or in an error that crosses the
network; logs as configured by the serve commands (``cli._logging``), over real servers."""

from __future__ import annotations

import io
import json
import logging
import re
import socket
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import pytest
from sqlalchemy import Engine, insert, select, text
from sqlalchemy.exc import IntegrityError

from alliance_psi._database_errors import describe_database_error
from alliance_psi.cli._logging import configure_logging
from alliance_psi.config import MonitoringConfig
from alliance_psi.errors import AlliancePsiError
from alliance_psi.services.metrics import Metrics
from alliance_psi.services.tls import secure_channel
from alliance_psi.storage.schema import enrolments, member_sets, token_cache
from tests.integration.services.conftest import AlliancePki
from tests.integration.services.harness import COORDINATOR, MEMBERS, Planted, running_alliance
from tests.integration.services.monitored import coordinator_serve, scrape, wait_ready

pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    """Logging as a serve command sets it up (JSON, DEBUG), into a buffer; restored afterwards."""
    root = logging.getLogger()
    saved = (list(root.handlers), root.level, logging.getLogger("alliance_psi").level)
    saved_sqlalchemy = logging.getLogger("sqlalchemy").level
    buffer = io.StringIO()
    configure_logging(MonitoringConfig(log_level="debug", log_format="json"), stream=buffer)
    try:
        yield buffer
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        logging.getLogger("alliance_psi").setLevel(saved[2])
        logging.getLogger("sqlalchemy").setLevel(saved_sqlalchemy)


def secrets_in(text_: str, secrets: set[str]) -> list[str]:
    return sorted(secret for secret in secrets if secret in text_)


def member_tokens(engine: Engine) -> set[str]:
    """Hex of every token the member computed, and of every label key: what must never be logged."""
    with engine.connect() as conn:
        rows = conn.execute(select(token_cache.c.match_token, token_cache.c.label_key)).all()
    return {form for row in rows for value in row for form in (value.hex(), repr(value))}


def identifiers(planted: Planted) -> set[str]:
    """Each planted phone number as stored (+86…) and as written without the country code."""
    values = {v for held in planted.holdings.values() for v in held}
    return values | {v.removeprefix("+86") for v in values}


def fail_inserts_of_tokens(engine: Engine) -> None:
    """Make the coordinator's count of each token's holders, written at every commit, fail in the
    database itself (PostgreSQL's error then quotes the row, a token, in its DETAIL line)."""
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("ALTER TABLE set_holders ADD CONSTRAINT boom CHECK (false) NOT VALID"))
        else:
            conn.execute(
                text("CREATE TRIGGER boom BEFORE INSERT ON set_holders BEGIN SELECT RAISE(ABORT, 'boom'); END")
            )


def test_a_database_error_in_a_call_leaves_no_token_in_the_log_or_on_the_wire(
    tmp_path: Path, pki: AlliancePki, engine: Engine, log_lines: io.StringIO
) -> None:
    planted = Planted.make(size=10)
    with running_alliance(tmp_path, pki, coordinator_engine=engine, planted=planted) as alliance:
        fail_inserts_of_tokens(engine)
        round_id = alliance.admin().create_round(alliance.spec(2)).round_id
        with pytest.raises(AlliancePsiError) as failed:
            alliance.node("bank-a").join(round_id, wait=30)
        tokens = member_tokens(alliance.member_engines["bank-a"])
    assert len(tokens) >= 2 * len(planted.holdings["bank-a"])  # Its tokens and label keys were computed.
    sent = str(failed.value)
    assert "internal error" in sent and "boom" not in sent and not secrets_in(sent, tokens)
    logged = log_lines.getvalue()
    records = [json.loads(line) for line in logged.splitlines()]
    internal = [r for r in records if r["message"] == "internal error in IntegrityError"]
    assert internal and internal[0]["level"] == "ERROR" and internal[0]["logger"] == "alliance_psi.services.status"
    trace = internal[0]["exc_info"]
    if engine.dialect.name == "postgresql":
        # The table may be one of set_holders' partitions (storage.partitions).
        assert re.search(
            r'sqlalchemy\.exc\.IntegrityError: new row for relation "(set_holders\w*)" violates check constraint '
            r'"boom" \(SQLSTATE 23514, table \1, constraint boom\)\Z',
            trace,
        ), trace[-300:]
    else:
        assert trace.endswith("sqlalchemy.exc.IntegrityError: boom")
    for leak in ("Failing row", "DETAIL", "[parameters", "parameters hidden", "[SQL:", "INSERT INTO"):
        assert leak not in logged, leak
    assert not secrets_in(logged, tokens | identifiers(planted))


def test_database_errors_carry_no_parameters_and_are_described_without_values(engine: Engine) -> None:
    secret_name = "bank-secret-13920481736"
    secret_pin = bytes(range(32))
    with pytest.raises(IntegrityError) as refused, engine.begin() as conn:
        conn.execute(
            insert(enrolments).values(
                role="member", name=secret_name, key_pin=secret_pin, quota=0, added_at=datetime.now(UTC)
            )
        )
    message = str(refused.value)
    assert "[SQL parameters hidden due to hide_parameters=True]" in message
    assert secret_pin.hex() not in message and repr(secret_pin) not in message
    if engine.dialect.name == "sqlite":  # PostgreSQL's own DETAIL line quotes the row: hence the next check.
        assert secret_name not in message
    described = describe_database_error(refused.value)
    assert described is not None and "ck_enrolments_quota" in described
    assert secret_name not in described and secret_pin.hex() not in described and "DETAIL" not in described


def test_a_round_logged_at_debug_shows_no_identifier_token_or_label(
    tmp_path: Path, pki: AlliancePki, log_lines: io.StringIO
) -> None:
    planted = Planted.make(size=20)
    servers = {"coordinator": Metrics(process=False), "custodian-1": Metrics(process=False)}
    with running_alliance(tmp_path, pki, planted=planted, custodians=1, metrics=servers) as alliance:
        round_id = alliance.admin().create_round(alliance.spec(2)).round_id
        with ThreadPoolExecutor(len(MEMBERS)) as pool:
            outcomes = list(pool.map(lambda m: alliance.node(m).join(round_id, wait=120), MEMBERS))
        assert all(outcome.leads for outcome in outcomes)
        secrets = identifiers(planted)
        for member in MEMBERS:
            secrets |= member_tokens(alliance.member_engines[member])
        with alliance.coordinator_engine.connect() as conn:
            for token, label in conn.execute(select(member_sets.c.match_token, member_sets.c.sealed_label)):
                secrets |= {token.hex(), token.hex()[:16]}
                if label:
                    secrets |= {label.hex(), label.hex()[:32]}
    lines = log_lines.getvalue().splitlines()
    records = [json.loads(line) for line in lines]
    assert any(r["level"] == "DEBUG" and r["message"].startswith("UploadChunks ended OK") for r in records)
    assert any(r["message"].endswith("for alliance_psi.v1.Coordinator") for r in records)
    leaked = {line for line in lines if secrets_in(line, secrets)}
    assert not leaked, sorted(leaked)[:3]


def test_json_logs_of_a_serve_process_are_json_lines_only(tmp_path: Path, pki: AlliancePki) -> None:
    database = f"sqlite:///{tmp_path / 'coordinator.db'}"
    with coordinator_serve(tmp_path, pki, database, "--log-format", "json", "--log-level", "debug") as server:
        wait_ready(server.metrics_port)
        assert server.metrics_port is not None
        scrape(server.metrics_port)
        # A plaintext client on the TLS port: gRPC's C core would print a line for the failed handshake.
        with socket.create_connection(("127.0.0.1", server.port)) as plain:
            plain.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            plain.recv(100)
        with secure_channel(server.address, pki.material("bank-a"), server=COORDINATOR) as channel:
            with pytest.raises(grpc.RpcError):
                channel.unary_unary("/alliance_psi.v1.Coordinator/CreateRound")(b"", timeout=30)
    lines = [line for line in server.lines if line.strip()]
    records: list[dict[str, Any]] = []
    for line in lines:
        record = json.loads(line)  # Every line: no plain start-up line, no C-core line.
        assert {"timestamp", "level", "logger", "message"} <= set(record), record
        records.append(record)
    messages = [(r["level"], r["logger"], r["message"]) for r in records]
    assert ("INFO", "alliance_psi.cli", "coordinator coordinator: 3 member(s) and 1 admin(s) enrolled") in messages
    assert any(
        level == "WARNING" and message.startswith("refused ") and "CreateRound from member:bank-a" in message
        for level, _, message in messages
    )
    assert any(level == "DEBUG" and logger == "alliance_psi.services.monitoring" for level, logger, _ in messages)
