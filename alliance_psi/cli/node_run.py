"""``alliance-psi node run``: the member node as a long-running service (``services.node_daemon``).

This module only builds the configuration and starts the loop in a worker thread; SIGTERM and
SIGINT set its stop event. The loop finishes the step in hand (an import, a batch of tokens, a
chunk) and returns; if it has not within ``NODE_STOP_GRACE_SECONDS``, the process exits anyway,
abandoning it: every step is a transaction or a resumable exchange, so the next start resumes it.
The exit code is 0 after a signal, 1 if the loop failed.

With ``--metrics-listen`` the plain metrics and health port (``cli._serving.monitored``) opens
before the node loads: /healthz answers at once, /readyz once the database answers, the inbox
takes a file and the coordinator answers its health check, and not from the stop signal on.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from alliance_psi.cli._options import member_trust_warnings, monitoring_config, monitoring_options, reported
from alliance_psi.cli.node import (
    _GIVEN_CONFIG,
    _option,
    database_option,
    member_config,
    network_options,
    node_group,
    notify_config,
    notify_options,
    open_node_database,
)
from alliance_psi.defaults import INBOX_SETTLE_SECONDS, NODE_POLL_SECONDS, NODE_SUBMIT_SECONDS

__all__ = ["run"]

_SECONDS = click.FloatRange(min=0)
_PROBE_SECONDS = 2.0  # How long /readyz waits for the coordinator's answer (its checks: 5 s in all).


@node_group.command("run")
@_option(
    "--inbox",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder where blacklist files are dropped (done/ and failed/ inside). [default: inbox, beside --config]",
)
@_option("--poll-every", type=_SECONDS, default=NODE_POLL_SECONDS, show_default=True, help="Seconds between looks.")
@_option(
    "--submit-every",
    type=_SECONDS,
    default=NODE_SUBMIT_SECONDS,
    show_default=True,
    help="Least seconds between two submissions of changes to one continuous scope.",
)
@_option(
    "--settle-seconds",
    type=_SECONDS,
    default=INBOX_SETTLE_SECONDS,
    show_default=True,
    help="A file unchanged (size and time) this long is complete; NAME.part files are never read.",
)
@_option(
    "--strict-inbox/--no-strict-inbox",
    default=True,
    show_default=True,
    help="A file with any rejected row imports nothing and goes to failed/ (else its valid rows go in).",
)
@_option(
    "--join-rounds/--no-join-rounds",
    default=True,
    show_default=True,
    help="Join the open batch rounds that invite this member, and fetch their results.",
)
@click.option(
    "--create-database",
    is_flag=True,
    help="Create the node database if it does not exist (a container's first start, before any "
    "import). Without it a missing database is refused, as a wrong path.",
)
@monitoring_options
@network_options
@notify_options
@database_option
def run(
    database: str,
    inbox: Path | None,
    poll_every: float,
    submit_every: float,
    settle_seconds: float,
    strict_inbox: bool,
    join_rounds: bool,
    create_database: bool,
    metrics_listen: str | None,
    log_level: str,
    log_format: str,
    **options: Any,
) -> None:
    """Run this member node until stopped: import the inbox, join rounds, follow alerts.

    Files dropped in the inbox are imported one at a time, oldest first, each in one transaction,
    and moved to done/ or failed/ with their rejects file; write a file as NAME.part and rename it
    when complete, or let it settle. `node import` and `node withdraw` work while it runs. Alerts
    of continuous scopes are verified, stored once and notified (webhook, alert log, the log on
    standard error), as `node follow` does. Logs go to standard error, without identifiers (an
    alert's line shows the identifier masked). SIGTERM or SIGINT stops it (exit code 0).
    --metrics-listen serves Prometheus /metrics and the /healthz and /readyz probes (ready: the
    database answers, the inbox is writable and the coordinator answers); docs/operations.md.
    """
    from alliance_psi.cli._logging import configure_logging
    from alliance_psi.cli._serving import monitored
    from alliance_psi.cli.reports import console_safe
    from alliance_psi.config import NodeRunConfig
    from alliance_psi.services.alert_node import AlertSide
    from alliance_psi.services.member import MemberNode
    from alliance_psi.services.node_daemon import NodeDaemon
    from alliance_psi.services.readiness import folder_writable_check

    monitoring = monitoring_config(metrics_listen=metrics_listen, log_level=log_level, log_format=log_format)
    configure_logging(monitoring)  # On stderr; SQLAlchemy held at warnings.
    log = logging.getLogger("alliance_psi.node")
    config = member_config(database, **options)
    notify = notify_config(**options)
    ctx = click.get_current_context()
    given = ctx.meta.get(_GIVEN_CONFIG) or (ctx.parent.params.get("config") if ctx.parent else None)
    with reported():
        settings = NodeRunConfig(
            inbox=inbox or (Path(given).parent if given else Path()) / "inbox",
            poll_seconds=poll_every,
            submit_seconds=submit_every,
            settle_seconds=settle_seconds,
            strict=strict_inbox,
            join_rounds=join_rounds,
        )
    # The port opens first: liveness answers while the node loads; readiness waits for its needs.
    with contextlib.ExitStack() as stack:
        with reported():
            monitor = stack.enter_context(monitored(monitoring, needs=("database", "inbox", "coordinator")))
            # A missing database is refused, as a wrong path (every node command but `node import`
            # refuses it), unless --create-database says this is the node's first start.
            with open_node_database(database, create=create_database):
                pass
            for warning in member_trust_warnings(config):
                log.warning("%s", warning.removeprefix("warning: "))
            # Threshold custodians down, slow or excluded (names only): what `node join` prints, logged.
            node = MemberNode.from_config(config, report=_safe_warning(log, ""))
            stack.callback(node.close)
            # Console notices (identifiers masked) go to the log; the follower's own lines too. The
            # alert side has its own coordinator channel, closed at the stop.
            alerts = AlertSide.from_config(
                config,
                notify,
                engine=node.engine,
                write=lambda line: log.info("%s", console_safe(line)),  # Co-holders' categories, made safe.
                report=_safe_warning(log, "alerts: "),  # Refusals and broken watches, in the coordinator's words.
                metrics=monitor.metrics,
            )
            stack.callback(alerts.close)
        monitor.database_opened(node.engine)
        monitor.readiness.met("inbox", folder_writable_check(settings.inbox))
        monitor.readiness.met("coordinator", functools.partial(node.coordinator.check_serving, _PROBE_SECONDS))
        daemon = NodeDaemon(node, settings, alerts, log, metrics=monitor.metrics)
        _serve(daemon, settings.stop_grace_seconds, log, stopping=monitor.readiness.stopping)


def _safe_warning(log: logging.Logger, prefix: str) -> Callable[[str], None]:
    """A ``report`` that logs each line as a warning after ``prefix``, made console safe first
    (``console_safe``, as every console notice is): a line may carry a peer's or the coordinator's
    text (a scope, an error's message), and an escape sequence or a line break in it must neither
    reach an operator's terminal nor forge a line of the log."""
    from alliance_psi.cli.reports import console_safe

    def report(line: str) -> None:
        log.warning("%s%s", prefix, console_safe(line))

    return report


def _serve(daemon: Any, grace: float, log: logging.Logger, *, stopping: Callable[[], None]) -> None:
    """Run ``daemon.run(stop)`` in a worker thread until it ends or a signal stops it;
    ``stopping()`` runs as the stop begins (/readyz then answers not ready)."""
    stop = threading.Event()
    failed = threading.Event()

    def work() -> None:
        try:
            daemon.run(stop)
        except Exception:
            log.exception("node run failed")
            failed.set()
            stop.set()

    def on_signal(signum: int, _frame: object) -> None:
        log.info("node run: %s received, stopping", signal.Signals(signum).name)
        for ignored in (signal.SIGTERM, signal.SIGINT):  # A second signal changes nothing: the stop is under way.
            signal.signal(ignored, signal.SIG_IGN)
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, on_signal)
    worker = threading.Thread(target=work, name="node-run", daemon=True)
    worker.start()
    while worker.is_alive() and not stop.is_set():
        stop.wait(0.5)
    stopping()
    worker.join(grace)
    if failed.is_set():
        raise SystemExit(1)
    if worker.is_alive():
        log.info("node run: the work in hand did not finish within %gs: abandoned, resumed at the next start", grace)
        logging.shutdown()
        os._exit(0)
