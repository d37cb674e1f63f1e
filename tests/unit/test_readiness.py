"""What /readyz answers as a server starts, runs and stops (``services.readiness``), and the
counting hooks other parts call (``services.metrics``)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine, text

from alliance_psi.config import TlsConfig
from alliance_psi.errors import ConfigurationError
from alliance_psi.services.metrics import Metrics
from alliance_psi.services.readiness import (
    NotReady,
    Readiness,
    database_check,
    folder_writable_check,
    tls_files_check,
)


def test_not_ready_until_every_need_is_met_and_again_once_stopping() -> None:
    readiness = Readiness(["tls", "database", "grpc"], min_interval=0)
    assert readiness.problems() == ["starting: waiting for tls, database, grpc"]
    readiness.met("tls")
    readiness.met("database")
    assert readiness.problems() == ["starting: waiting for grpc"]
    readiness.met("grpc")
    assert readiness.problems() == []
    readiness.stopping()
    assert readiness.problems() == ["stopping"]


def test_a_failing_check_names_its_need_and_reason_and_clears_when_it_passes() -> None:
    readiness = Readiness(["database"], min_interval=0)
    broken = [True]

    def check() -> None:
        if broken[0]:
            raise NotReady("unreachable (OperationalError)")

    readiness.met("database", check)
    assert readiness.problems() == ["database: unreachable (OperationalError)"]
    broken[0] = False
    assert readiness.problems() == []


@pytest.mark.parametrize(
    "error",
    # Any error but NotReady and an unreachable peer, ours too: its message may name a path.
    [RuntimeError("secret detail 0xdeadbeef"), ConfigurationError("key file /srv/alliance/secret.key: not found")],
    ids=lambda e: type(e).__name__,
)
def test_an_unexpected_error_in_a_check_shows_only_its_class(error: Exception) -> None:
    readiness = Readiness(["x"], min_interval=0)

    def check() -> None:
        raise error

    readiness.met("x", check)
    assert readiness.problems() == [f"x: failed ({type(error).__name__})"]


def test_reasons_name_no_path_and_the_log_names_the_paths_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # /readyz answers anyone who reaches the port: where the node keeps its files is not theirs to read.
    caplog.set_level(logging.INFO, logger="alliance_psi.services.readiness")
    inbox, database = tmp_path / "inbox", tmp_path / "node.db"
    engine = create_engine(f"sqlite:///{database}")
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))
    engine.dispose()
    database.unlink()
    tls = TlsConfig(ca_cert=tmp_path / "ca.pem", cert=tmp_path / "bank-a.pem", key=tmp_path / "bank-a.key")
    readiness = Readiness(["inbox", "database", "tls"], min_interval=0)
    readiness.met("inbox", folder_writable_check(inbox))
    readiness.met("database", database_check(engine))
    readiness.met("tls", tls_files_check(tls))
    for _ in range(3):
        assert readiness.problems() == [
            "inbox: folder not writable",
            "database: the SQLite file is gone",
            "tls: a TLS file is missing, unreadable or not PEM",
        ]
    (logged,) = [r for r in caplog.records if r.name == "alliance_psi.services.readiness"]  # Once: nothing changed.
    assert logged.levelno == logging.WARNING
    assert logged.getMessage() == (
        f"not ready: inbox: folder not writable ({inbox}: No such file or directory); "
        f"database: the SQLite file is gone ({database}); "
        f"tls: a TLS file is missing, unreadable or not PEM (TLS option 'ca_cert': file not found: {tmp_path / 'ca.pem'})"
    )
    inbox.mkdir()
    assert readiness.problems() == [
        "database: the SQLite file is gone",
        "tls: a TLS file is missing, unreadable or not PEM",
    ]
    assert len([r for r in caplog.records if r.name == "alliance_psi.services.readiness"]) == 2  # Changed: logged.


def test_checks_run_at_most_once_per_interval_however_often_asked() -> None:
    readiness = Readiness(["database"], min_interval=3600)
    runs = []
    readiness.met("database", lambda: runs.append(1))
    for _ in range(50):
        assert readiness.problems() == []
    assert len(runs) == 1


def samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = metrics.exposition().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_the_counting_hooks_count_under_fixed_label_values() -> None:
    metrics = Metrics(process=False)
    metrics.count_alerts("delivered", 3)
    metrics.count_alerts("failed")
    metrics.count_import_rows(accepted=980, rejected=20)
    found = samples(metrics)
    assert found[("alliance_psi_alerts_total", (("outcome", "delivered"),))] == 3
    assert found[("alliance_psi_alerts_total", (("outcome", "failed"),))] == 1
    assert found[("alliance_psi_import_rows_total", (("outcome", "accepted"),))] == 980
    assert found[("alliance_psi_import_rows_total", (("outcome", "rejected"),))] == 20
    with pytest.raises(ValueError, match="alert outcome must be one of"):
        metrics.count_alerts("lost")  # type: ignore[arg-type]
    assert ("alliance_psi_alerts_total", (("outcome", "lost"),)) not in samples(metrics)
