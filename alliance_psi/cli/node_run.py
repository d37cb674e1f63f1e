"""``alliance-psi node run``: the member node as a long-running service (``services.node_daemon``).

This module only builds the configuration and starts the loop in a worker thread; SIGTERM and
SIGINT set its stop event. The loop finishes the step in hand (an import, a batch of tokens, a
chunk) and returns; if it has not within ``NODE_STOP_GRACE_SECONDS``, the process exits anyway,
abandoning it: every step is a transaction or a resumable exchange, so the next start resumes it.
The exit code is 0 after a signal, 1 if the loop failed.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from pathlib import Path
from typing import Any

import click

from alliance_psi.cli._options import custodian_trust_warnings, reported
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
    **options: Any,
) -> None:
    """Run this member node until stopped: import the inbox, join rounds, follow alerts.

    Files dropped in the inbox are imported one at a time, oldest first, each in one transaction,
    and moved to done/ or failed/ with their rejects file; write a file as NAME.part and rename it
    when complete, or let it settle. `node import` and `node withdraw` work while it runs. Alerts
    of continuous scopes are verified, stored once and notified (webhook, alert log, the log on
    standard error), as `node follow` does. Logs go to standard error, without identifiers (an
    alert's line shows the identifier masked). SIGTERM or SIGINT stops it (exit code 0).
    """
    from alliance_psi.cli._logging import configure_logging
    from alliance_psi.config import MonitoringConfig, NodeRunConfig
    from alliance_psi.services.alert_node import AlertSide
    from alliance_psi.services.member import MemberNode
    from alliance_psi.services.node_daemon import NodeDaemon

    configure_logging(MonitoringConfig())  # Text lines on stderr; SQLAlchemy held at warnings.
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
        with open_node_database(database):
            pass  # Refuses a missing database, as every node command but `node import` does.
        for warning in custodian_trust_warnings(config.custodians):
            log.warning("%s", warning.removeprefix("warning: "))
        # Threshold custodians down, slow or excluded (names only): what `node join` prints, logged.
        node = MemberNode.from_config(config, report=lambda event: log.warning("%s", event))
        try:
            # Console notices (identifiers masked) go to the log; the follower's own lines too. The
            # alert side has its own coordinator channel, closed at the stop.
            alerts = AlertSide.from_config(
                config,
                notify,
                engine=node.engine,
                write=lambda line: log.info("%s", line),
                report=lambda line: log.warning("alerts: %s", line),
            )
        except BaseException:
            node.close()
            raise
    daemon = NodeDaemon(node, settings, alerts, log)
    try:
        _serve(daemon, settings.stop_grace_seconds, log)
    finally:
        alerts.close()
        node.close()


def _serve(daemon: Any, grace: float, log: logging.Logger) -> None:
    """Run ``daemon.run(stop)`` in a worker thread until it ends or a signal stops it."""
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
    worker.join(grace)
    if failed.is_set():
        raise SystemExit(1)
    if worker.is_alive():
        log.info("node run: the work in hand did not finish within %gs: abandoned, resumed at the next start", grace)
        logging.shutdown()
        os._exit(0)
