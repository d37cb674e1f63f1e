"""What /readyz answers as a server starts, runs and stops (``services.readiness``), and the
counting hooks other parts call (``services.metrics``)."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from alliance_psi.services.metrics import Metrics
from alliance_psi.services.readiness import NotReady, Readiness


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


def test_an_unexpected_error_in_a_check_shows_only_its_class() -> None:
    readiness = Readiness(["x"], min_interval=0)

    def check() -> None:
        raise RuntimeError("secret detail 0xdeadbeef")

    readiness.met("x", check)
    assert readiness.problems() == ["x: failed (RuntimeError)"]


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
