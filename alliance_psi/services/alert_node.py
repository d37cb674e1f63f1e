"""The member node's alert side, wired for ``node run`` (and ``node follow``): the follower and the
notifiers' dispatcher over the node's database and its coordinator client.

``AlertSide.run(stop)`` runs both until ``stop`` is set: the dispatcher in a thread of its own, the
follower in the caller's. Both keep every effect in the node's database (``protocol.alert_follower``,
``services.notifiers``), so a process killed at any point loses nothing and applies nothing twice
when it starts again.

Usage, in a daemon's loop::

    side = AlertSide.from_config(member_config, notify_config, engine=engine, coordinator=client,
                                 write=print, report=log.warning)
    threading.Thread(target=side.run, args=(stop,)).start()   # ... stop.set() on SIGTERM
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import Engine

from alliance_psi.config import MemberConfig, NotifyConfig
from alliance_psi.crypto.signing import load_public_key
from alliance_psi.errors import ConfigurationError
from alliance_psi.protocol.alert_follower import AlertFollower
from alliance_psi.services.clients import CoordinatorClient
from alliance_psi.services.member import SqlNodeUnitOfWork, load_nonce_key
from alliance_psi.services.notifiers import Dispatcher, build_notifiers
from alliance_psi.services.pki_requests import key_pin

__all__ = ["AlertSide"]


def _nothing(_: str) -> None:
    pass


class AlertSide:
    """The follower and the dispatcher of one member node (see the module)."""

    def __init__(self, follower: AlertFollower, dispatcher: Dispatcher) -> None:
        self.follower, self.dispatcher = follower, dispatcher

    @classmethod
    def from_config(
        cls,
        member: MemberConfig,
        notify: NotifyConfig,
        *,
        engine: Engine,
        coordinator: CoordinatorClient,
        write: Callable[[str], None],
        report: Callable[[str], None] = _nothing,
    ) -> AlertSide:
        """Build both from the node's settings; reads the keys and the webhook secret now.

        ``write`` prints a console notice; ``report`` gets the follower's log lines (no identifier).

        Raises:
            ConfigurationError: a key, the certificate, the webhook secret or the alert log cannot be used.
        """
        try:
            coordinator_key = load_public_key(member.coordinator_public_key.read_bytes())
        except OSError as exc:
            raise ConfigurationError(f"coordinator key {member.coordinator_public_key}: {exc.strerror}") from None
        try:
            public_key = x509.load_pem_x509_certificate(member.tls.cert.read_bytes()).public_key()
        except (OSError, ValueError) as exc:
            raise ConfigurationError(f"cert {member.tls.cert}: {exc}") from None
        if not isinstance(public_key, ec.EllipticCurvePublicKey):
            raise ConfigurationError(f"cert {member.tls.cert} does not hold a member's P-256 key")
        notifiers, schedules, policy = build_notifiers(notify, write=write)
        dispatcher = Dispatcher(engine, notifiers, schedules)
        follower = AlertFollower(
            member_id=member.member_id,
            uow=SqlNodeUnitOfWork(engine),
            calls=coordinator,
            coordinator_key=coordinator_key,
            nonce_key=load_nonce_key(member.data_dir),
            policy=policy,
            stream=member.coordinator.name,
            member_key_pin=key_pin(public_key),
            applied=dispatcher.wake.set,
            report=report,
        )
        return cls(follower, dispatcher)

    def run(self, stop: threading.Event) -> None:
        """Follow alerts and deliver notices until ``stop`` is set; returns when both have ended."""
        done = threading.Event()  # Not ``stop``: a follower that fails must not stop the caller's other work.
        delivering = threading.Thread(target=self.dispatcher.run, args=(done,), name="alert-notifiers", daemon=True)
        delivering.start()
        try:
            self.follower.run(stop)
        finally:
            done.set()
            self.dispatcher.wake.set()
            delivering.join()

    def close(self) -> None:
        self.dispatcher.close()
