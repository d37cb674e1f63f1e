"""What a server or member node counts for Prometheus, on a registry of its own.

One ``Metrics`` per process role (a coordinator, a custodian, a member node): the serve command
makes it, passes it to ``run_server`` (RPCs by method and status, ``services.rpc_metrics``) and
to whatever counts, and ``services.monitoring`` serves it on the plain HTTP port. Usage::

    metrics = Metrics()                                  # process and build metrics included
    metrics.count_tokens_submitted(items=25, removals=1)  # coordinator: a chunk was stored
    metrics.count_alerts("delivered")                    # member node: "delivered" or "failed"
    metrics.count_import_rows(accepted=980, rejected=20)  # member node: a file was imported
    metrics.add_collector(collector)                     # values read at scrape time (rounds, quota)
    metrics.exposition()                                 # the text a scrape gets, as bytes

Security: every label value is one of a fixed set (an outcome, a round state, a method this
server registered) or a name from this server's own enrolment list; none comes from a request,
so no caller can grow the label set, and no identifier, token, label or secret is ever one.
The port has no authentication: whoever reaches it reads every figure here (docs/operations.md,
"Monitor").
"""

from __future__ import annotations

from typing import Literal

from prometheus_client import CollectorRegistry, Counter, Histogram, Info, generate_latest
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from alliance_psi import __version__

__all__ = ["ALERT_OUTCOMES", "AlertOutcome", "Metrics", "RPC_SECONDS_BUCKETS"]

AlertOutcome = Literal["delivered", "failed"]
ALERT_OUTCOMES: tuple[AlertOutcome, ...] = ("delivered", "failed")
# Seconds: from a quick lookup to a long result stream or a big upload.
RPC_SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
_RPC_LABELS = ("grpc_type", "grpc_service", "grpc_method")


class Metrics:
    """One role's metrics, with their own ``CollectorRegistry`` (several servers in one test
    process keep apart figures).

    The RPC metrics carry go-grpc-prometheus's names and labels, so existing gRPC dashboards
    read them: ``grpc_server_started_total``, ``grpc_server_handled_total`` (with
    ``grpc_code``) and the ``grpc_server_handling_seconds`` histogram. Each counter of this
    module starts at zero for each of its label values, so a rate is defined from the first
    scrape. ``process=False`` leaves out the process, platform and garbage-collector metrics.
    """

    def __init__(self, *, process: bool = True) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        if process:
            ProcessCollector(registry=self.registry)
            PlatformCollector(registry=self.registry)
            GCCollector(registry=self.registry)
        Info("alliance_psi_build", "The alliance-psi version of this process.", registry=self.registry).info(
            {"version": __version__}
        )
        self.rpc_started = Counter(
            "grpc_server_started", "RPCs started on the server.", _RPC_LABELS, registry=self.registry
        )
        self.rpc_handled = Counter(
            "grpc_server_handled",
            "RPCs completed on the server, whatever their status.",
            (*_RPC_LABELS, "grpc_code"),
            registry=self.registry,
        )
        self.rpc_seconds = Histogram(
            "grpc_server_handling_seconds",
            "Seconds from the start of an RPC to its end (for a stream, until its last message).",
            _RPC_LABELS,
            buckets=RPC_SECONDS_BUCKETS,
            registry=self.registry,
        )
        self._tokens_submitted = Counter(
            "alliance_psi_tokens_submitted",
            "Tokens the coordinator stored from members' chunks (kind: item put, or removal).",
            ("kind",),
            registry=self.registry,
        )
        self._alerts = Counter(
            "alliance_psi_alerts",
            "Alerts queued for members (coordinator), delivered by or failed at a notifier (member node).",
            ("outcome",),
            registry=self.registry,
        )
        self._import_rows = Counter(
            "alliance_psi_import_rows",
            "Rows of blacklist files the member node imported (accepted) or refused (rejected).",
            ("outcome",),
            registry=self.registry,
        )
        for kind in ("item", "removal"):
            self._tokens_submitted.labels(kind=kind)
        for alert_outcome in ALERT_OUTCOMES:
            self._alerts.labels(outcome=alert_outcome)
        for row_outcome in ("accepted", "rejected"):
            self._import_rows.labels(outcome=row_outcome)

    def count_tokens_submitted(self, *, items: int, removals: int = 0) -> None:
        """A chunk of ``items`` tokens put and ``removals`` removed was stored."""
        self._tokens_submitted.labels(kind="item").inc(items)
        self._tokens_submitted.labels(kind="removal").inc(removals)

    def count_alerts(self, outcome: AlertOutcome, count: int = 1) -> None:
        """``count`` alert notices were delivered, or failed a delivery attempt (member node's notifiers;
        the coordinator's outbox is read at scrape time by ``state_metrics``).

        Raises:
            ValueError: ``outcome`` is not one of ``ALERT_OUTCOMES``.
        """
        if outcome not in ALERT_OUTCOMES:
            raise ValueError(f"alert outcome must be one of {ALERT_OUTCOMES}, not {outcome!r}")
        self._alerts.labels(outcome=outcome).inc(count)

    def count_import_rows(self, *, accepted: int, rejected: int) -> None:
        """An import kept ``accepted`` rows and refused ``rejected`` (never the rows themselves)."""
        self._import_rows.labels(outcome="accepted").inc(accepted)
        self._import_rows.labels(outcome="rejected").inc(rejected)

    def add_collector(self, collector: Collector) -> None:
        """Read ``collector`` at every scrape (``services.state_metrics``: rounds, quota)."""
        self.registry.register(collector)

    def exposition(self) -> bytes:
        """The Prometheus text format of every metric now: what a scrape of ``/metrics`` gets."""
        return generate_latest(self.registry)
