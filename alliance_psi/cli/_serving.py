"""Running a role's server until it is told to stop: the part ``coordinator serve`` and
``custodian serve`` share. Imported only by those commands (it loads gRPC and SQLAlchemy).

A serve command sets up logging first (``cli._logging``), then ``monitored`` opens the plain
metrics and health port if configured, so that liveness answers while the server loads its
files and database; readiness waits for each of them (``services.readiness``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass

from sqlalchemy import Engine

from alliance_psi.cli._logging import announce
from alliance_psi.cli._options import stop_signals
from alliance_psi.config import MonitoringConfig, ServerLimits, TlsConfig, TlsMaterial
from alliance_psi.protocol.model import Role
from alliance_psi.services.cert_checks import load_tls
from alliance_psi.services.interceptors import PeerCheck
from alliance_psi.services.metrics import Metrics
from alliance_psi.services.monitoring import serve_monitoring
from alliance_psi.services.readiness import Readiness, database_check, tls_files_check
from alliance_psi.services.refusals import sql_audit_writer
from alliance_psi.services.revocation import RevocationList
from alliance_psi.services.server import Registration, run_server

__all__ = ["GRPC", "Monitor", "monitored", "serve_until_stopped", "server_tls"]

GRPC = "grpc"
"""The need ``serve_until_stopped`` meets once the gRPC server listens."""


@dataclass(frozen=True)
class Monitor:
    """A serve command's metrics and readiness, served on the metrics port if one is configured."""

    metrics: Metrics
    readiness: Readiness

    def tls_loaded(self, config: TlsConfig) -> None:
        """The TLS files are loaded; /readyz checks from now on that they stay readable."""
        self.readiness.met("tls", tls_files_check(config))

    def database_opened(self, engine: Engine) -> None:
        """The database is open; /readyz checks from now on that it answers."""
        self.readiness.met("database", database_check(engine))


@contextlib.contextmanager
def monitored(config: MonitoringConfig, *, needs: Sequence[str]) -> Iterator[Monitor]:
    """A ``Monitor`` whose readiness waits for ``needs``; with ``config.metrics_listen``, served
    there until the block ends. Any long-running command can use it after ``configure_logging``::

        with monitored(config.monitoring, needs=("database", "loop")) as monitor:
            monitor.database_opened(engine)      # ready needs it, and checks it from now on
            monitor.readiness.met("loop")        # a need without a check
            monitor.metrics.count_import_rows(accepted=…, rejected=…)
            …
            monitor.readiness.stopping()         # at the stop signal

    A server's ``needs`` include ``GRPC``, which ``serve_until_stopped`` meets.

    Raises:
        ConfigurationError: the metrics address is taken or not this machine's.
    """
    monitor = Monitor(Metrics(), Readiness(needs))
    if config.metrics_listen is None:
        yield monitor
        return
    with serve_monitoring(config.metrics_listen, monitor.metrics, monitor.readiness) as port:
        host = config.metrics_listen.rpartition(":")[0]
        announce(f"metrics and health on http://{host}:{port}/metrics, /healthz and /readyz")
        yield monitor


def server_tls(config: TlsConfig, *, role: Role, name: str) -> tuple[TlsMaterial, RevocationList | None]:
    """A server's checked TLS files (``load_tls``) and its CRL, to enforce and reload.

    Raises:
        ConfigurationError: a TLS file is wrong, or the CRL cannot be loaded: a server never
            starts without the revocations it was given.
    """
    material = load_tls(config, role=role, name=name)
    revocations = RevocationList.from_file(config.crl, material.ca_cert) if config.crl is not None else None
    return material, revocations


def serve_until_stopped(
    registrations: Sequence[Registration],
    *,
    listen: str,
    tls: TlsMaterial,
    revocations: RevocationList | None,
    limits: ServerLimits,
    engine: Engine,
    started: Callable[[int], None],
    monitor: Monitor,
    name: str,
    checks: Sequence[PeerCheck] = (),
    companions: Sequence[AbstractContextManager[object]] = (),
) -> None:
    """Serve until SIGTERM or SIGINT, reloading ``revocations`` on SIGHUP and as its file changes.

    ``checks`` are the server's own admission rules (its enrolment list). Refused calls go to the
    audit log in ``engine``. ``started(port)`` runs once the server listens (it says so on
    stderr); ``companions`` (a coordinator's ticker) run alongside. ``monitor`` counts the calls
    and turns ready once the server listens, not ready again at the stop signal. The process exits
    within ``2 * shutdown_grace_seconds + 1`` seconds of the signal, whatever is still running.
    The stop is said (``announce``) as ``node run`` logs it: ``NAME: SIGTERM received, stopping``,
    then ``NAME: stopped`` once the server and its companions have ended (``name``: the command).

    Raises:
        ConfigurationError: the address cannot be bound.
    """
    # The handlers first: a SIGTERM sent as soon as the port line is out stops the server cleanly.
    wait_for_stop = stop_signals(on_hangup=revocations.reload if revocations is not None else None)
    with contextlib.ExitStack() as stack:
        port = stack.enter_context(
            run_server(
                registrations,
                address=listen,
                tls=tls,
                checks=checks,
                limits=limits,
                revocations=revocations,
                audit=sql_audit_writer(engine),
                metrics=monitor.metrics,
            )
        )
        for companion in companions:
            stack.enter_context(companion)
        monitor.readiness.met(GRPC)  # Before saying so: whoever reads the line may probe at once.
        started(port)
        received = wait_for_stop(2 * limits.shutdown_grace_seconds + 1)
        announce(f"{name}: {received} received, stopping")
        monitor.readiness.stopping()
    announce(f"{name}: stopped")
