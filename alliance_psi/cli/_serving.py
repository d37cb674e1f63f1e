"""Running a role's server until it is told to stop: the part ``coordinator serve`` and
``custodian serve`` share. Imported only by those commands (it loads gRPC and SQLAlchemy)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager

from sqlalchemy import Engine

from alliance_psi.cli._options import wait_for_stop_signal
from alliance_psi.config import ServerLimits, TlsConfig, TlsMaterial
from alliance_psi.protocol.model import Role
from alliance_psi.services.cert_checks import load_tls
from alliance_psi.services.interceptors import PeerCheck
from alliance_psi.services.refusals import sql_audit_writer
from alliance_psi.services.revocation import RevocationList
from alliance_psi.services.server import Registration, run_server

__all__ = ["serve_until_stopped", "server_tls"]


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
    checks: Sequence[PeerCheck] = (),
    companions: Sequence[AbstractContextManager[object]] = (),
) -> None:
    """Serve until SIGTERM or SIGINT, reloading ``revocations`` on SIGHUP and as its file changes.

    ``checks`` are the server's own admission rules (its enrolment list). Refused calls go to the
    audit log in ``engine``. ``started(port)`` runs once the server listens (it says so on
    stderr); ``companions`` (a coordinator's ticker) run alongside. The process exits
    within ``2 * shutdown_grace_seconds + 1`` seconds of the signal, whatever is still running.

    Raises:
        ConfigurationError: the address cannot be bound.
    """
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
            )
        )
        for companion in companions:
            stack.enter_context(companion)
        started(port)
        wait_for_stop_signal(
            on_hangup=revocations.reload if revocations is not None else None,
            exit_within=2 * limits.shutdown_grace_seconds + 1,
        )
