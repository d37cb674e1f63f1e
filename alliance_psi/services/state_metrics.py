"""Metrics read from a server's database at scrape time: rounds by state and matches found
(coordinator), quota used per member (custodian), and whether the database answers.

A collector reads at most once per ``min_interval`` seconds and answers from that reading in
between, so a flood of scrapes costs the database one reading per interval. If the database
does not answer, the scrape still succeeds: ``alliance_psi_database_up`` is 0 and the figures
read from it are left out (the failure goes to the log, without parameters).

At a custodian, ``alliance_psi_quota_used`` has one series per member of the current key epoch:
the members this custodian's operator enrolled (and any that used quota in the epoch and were
removed since). Label values come from that list alone, never from a caller; it is as long as
the alliance. Whoever scrapes the port learns how much each member had evaluated: the
custodian's operator's own monitoring only (docs/operations.md, "Monitor").
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from alliance_psi.storage import QuotaRepository
from alliance_psi.storage.figures import alert_positions, matched_tokens, round_counts

__all__ = ["CoordinatorStateCollector", "CustodianStateCollector"]

log = logging.getLogger(__name__)

_MIN_INTERVAL = 1.0


class _DatabaseCollector(Collector):
    """Read figures from the database at most once per ``min_interval``; ``database_up`` always."""

    def __init__(self, engine: Engine, *, min_interval: float = _MIN_INTERVAL) -> None:
        self._reader = engine.execution_options(sqlite_begin="DEFERRED")
        self._min_interval = min_interval
        self._lock = threading.Lock()
        self._read_at = -float("inf")
        self._metrics: list[Metric] = []
        self._up = 0

    def _read(self, conn: Connection) -> Iterable[Metric]:
        raise NotImplementedError

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            if time.monotonic() - self._read_at >= self._min_interval:
                try:
                    with self._reader.connect() as conn:
                        self._metrics, self._up = list(self._read(conn)), 1
                except SQLAlchemyError as exc:
                    log.warning("metrics: cannot read the database", exc_info=exc)
                    self._metrics, self._up = [], 0
                self._read_at = time.monotonic()
            metrics, up = list(self._metrics), self._up
        yield GaugeMetricFamily("alliance_psi_database_up", "1 if the database answered the last reading.", up)
        yield from metrics

    def describe(self) -> Iterator[Metric]:
        return iter(())  # Nothing to read at registration.


class CoordinatorStateCollector(_DatabaseCollector):
    """``alliance_psi_rounds{state}``, ``alliance_psi_tokens_matched_total``, and the alert outbox:
    ``alliance_psi_alerts_queued_total`` (alerts numbered for members, all time) and
    ``alliance_psi_alerts_unacknowledged{member}`` (label values: the outbox's own member ids)."""

    def _read(self, conn: Connection) -> Iterable[Metric]:
        states = GaugeMetricFamily("alliance_psi_rounds", "Rounds of the coordinator by state.", labels=["state"])
        for state, count in round_counts(conn).items():
            states.add_metric([state.value], count)
        matched = CounterMetricFamily(
            "alliance_psi_tokens_matched",
            "Tokens held by at least the threshold of members, summed over matched rounds.",
            matched_tokens(conn),
        )
        positions = alert_positions(conn)
        queued = CounterMetricFamily(
            "alliance_psi_alerts_queued",
            "Alerts of continuous scopes numbered for members (signed and stored in the outbox), all time.",
            sum(last for last, _ in positions.values()),
        )
        waiting = GaugeMetricFamily(
            "alliance_psi_alerts_unacknowledged",
            "Alerts a member has not acknowledged yet (bounded by --max-alert-backlog per member).",
            labels=["member"],
        )
        for member, (last, acked) in sorted(positions.items()):
            waiting.add_metric([member], last - acked)
        return [states, matched, queued, waiting]


class CustodianStateCollector(_DatabaseCollector):
    """``alliance_psi_quota_used`` and ``alliance_psi_quota_limit`` per member in ``key_epoch``.

    ``members()`` gives the enrolled members' names; ``quota_of(name)`` a member's own quota, or
    None for ``default_quota``.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        key_epoch: str,
        members: Callable[[], Iterable[str]],
        quota_of: Callable[[str], int | None],
        default_quota: int,
        min_interval: float = _MIN_INTERVAL,
    ) -> None:
        super().__init__(engine, min_interval=min_interval)
        self._epoch, self._members, self._quota_of, self._default = key_epoch, members, quota_of, default_quota

    def _read(self, conn: Connection) -> Iterable[Metric]:
        usage = QuotaRepository(conn).usage(self._epoch)
        labels = ["key_epoch", "member"]
        used = GaugeMetricFamily(
            "alliance_psi_quota_used", "Elements evaluated for a member in the key epoch.", labels=labels
        )
        limit = GaugeMetricFamily(
            "alliance_psi_quota_limit", "Elements a member may have evaluated per key epoch.", labels=labels
        )
        for member in sorted(set(self._members()) | set(usage)):
            used.add_metric([self._epoch, member], usage.get(member, 0))
            own = self._quota_of(member)
            limit.add_metric([self._epoch, member], own if own is not None else self._default)
        return [used, limit]
