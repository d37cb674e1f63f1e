"""The member node's alert side, wired for ``node run`` (and ``node follow``): the follower and the
notifiers' dispatcher over the node's database and its coordinator client.

``AlertSide.run(stop)`` runs both until ``stop`` is set: the dispatcher in a thread of its own, the
follower in the caller's. Both keep every effect in the node's database (``protocol.alert_follower``,
``services.notifiers``), so a process killed at any point loses nothing and applies nothing twice
when it starts again. The side has a coordinator channel of its own, closed as soon as ``stop`` is
set: a watch waiting for its next message (up to the coordinator's heartbeat) ends at once, and
the node's other calls are not cut.

Usage, in a daemon's loop::

    side = AlertSide.from_config(member_config, notify_config, engine=engine, write=print,
                                 report=log.warning)
    threading.Thread(target=side.run, args=(stop,)).start()   # ... stop.set() on SIGTERM
    ...
    side.close()
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
from alliance_psi.protocol.model import Role
from alliance_psi.services.cert_checks import load_tls
from alliance_psi.services.clients import CoordinatorClient
from alliance_psi.services.member import SqlNodeUnitOfWork, load_nonce_key
from alliance_psi.services.metrics import Metrics
from alliance_psi.services.notifiers import Dispatcher, build_notifiers
from alliance_psi.services.pki_requests import key_pin

__all__ = ["AlertSide"]


def _nothing(_: str) -> None:
    pass


class AlertSide:
    """The follower and the dispatcher of one member node (see the module)."""

    def __init__(self, follower: AlertFollower, dispatcher: Dispatcher, coordinator: CoordinatorClient) -> None:
        self.follower, self.dispatcher, self.coordinator = follower, dispatcher, coordinator

    @classmethod
    def from_config(
        cls,
        member: MemberConfig,
        notify: NotifyConfig,
        *,
        engine: Engine,
        write: Callable[[str], None],
        report: Callable[[str], None] = _nothing,
        metrics: Metrics | None = None,
    ) -> AlertSide:
        """Build both from the node's settings; reads the keys, the TLS files and the webhook secret now.

        ``write`` prints a console notice; ``report`` gets the follower's log lines (no identifier);
        ``metrics`` counts the notices delivered and the failed attempts (``Dispatcher``).

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
        tls = load_tls(member.tls, role=Role.MEMBER, name=member.member_id)
        coordinator = CoordinatorClient(member.coordinator.address, tls, name=member.coordinator.name)
        dispatcher = Dispatcher(engine, notifiers, schedules, metrics=metrics)
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
        return cls(follower, dispatcher, coordinator)

    def run(self, stop: threading.Event) -> None:
        """Follow alerts and deliver notices until ``stop`` is set; returns when both have ended.

        Once ``stop`` is set the side's coordinator channel is closed, ending the watch at once;
        what the follower was doing then fails as a broken call, harmlessly (nothing is applied
        half, and an alert applied but not yet acknowledged is acknowledged at the next start).
        """
        done = threading.Event()  # Not ``stop``: a follower that fails must not stop the caller's other work.
        delivering = threading.Thread(target=self.dispatcher.run, args=(done,), name="alert-notifiers", daemon=True)
        delivering.start()
        cutting = threading.Thread(target=self._cut_at, args=(stop, done), name="alert-watch-stop", daemon=True)
        cutting.start()
        try:
            self.follower.run(stop)
        except ValueError:  # A call started on the channel just closed: the stop, not a failure.
            if not stop.is_set():
                raise
        finally:
            done.set()
            self.dispatcher.wake.set()
            delivering.join()
            cutting.join()

    def _cut_at(self, stop: threading.Event, done: threading.Event) -> None:
        while not done.is_set():
            if stop.wait(0.2):
                self.coordinator.close()
                return

    def close(self) -> None:
        self.dispatcher.close()
        self.coordinator.close()
