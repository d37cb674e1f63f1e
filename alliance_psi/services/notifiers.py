"""A member node's notifiers: a Standard Webhooks webhook, a JSON Lines alert log and the console.

Each alert's notices wait in the node database's outbox (``storage.node_alerts``), written in the
transaction that applied the alert, so a restart loses none. ``Dispatcher`` delivers the due ones,
per channel in alert order, and records each attempt: delivered (the body, which may hold a
raw identifier, is dropped), or failed and retried after an exponential back-off with jitter,
or, past the channel's retry budget, kept as a dead letter (``node alerts --dead``).

Delivery is at least once: a node stopped between a webhook's 2xx answer and recording it sends
the message again after its restart, with the same ``webhook-id``, which is how a receiver
following Standard Webhooks drops duplicates. Run one dispatcher per node database.

The webhook follows https://www.standardwebhooks.com: every request has ``webhook-id`` (the same
on every attempt at one alert), ``webhook-timestamp`` (the attempt's time, in seconds) and
``webhook-signature: v1,<base64 HMAC-SHA256(secret, id "." timestamp "." body)>``, with the
``whsec_`` secret read from a file only its owner may read. The signature is three lines of HMAC,
written here; the tests verify it with the published ``standardwebhooks`` package. Requests go
through httpx, which follows no redirect here (a redirect is a failed attempt: a signed alert is
posted where it was configured to go, nowhere else).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import json
import os
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from alliance_psi import __version__
from alliance_psi._files import read_secret
from alliance_psi.config import NotifyConfig, WebhookConfig
from alliance_psi.errors import ConfigurationError, NotificationFailed
from alliance_psi.protocol.alert_follower import backoff_seconds
from alliance_psi.protocol.node_alerts import Channel, NoticePolicy, OutboxMessage
from alliance_psi.services.metrics import Metrics
from alliance_psi.storage.node_alerts import NodeAlerts

if TYPE_CHECKING:
    import httpx

__all__ = [
    "SECRET_PREFIX",
    "AlertLogNotifier",
    "ConsoleNotifier",
    "Dispatcher",
    "Notifier",
    "RetrySchedule",
    "WebhookNotifier",
    "build_notifiers",
    "console_line",
    "load_webhook_secret",
    "secret_text",
    "sign_webhook",
]

SECRET_PREFIX = "whsec_"
_MIN_SECRET_BYTES, _MAX_SECRET_BYTES = 24, 64
_ERROR_TEXT = 300  # Characters of a receiver's answer kept with a failed attempt.
_STOP_CHECK_SECONDS = 0.2  # How soon a waiting dispatcher sees that it is stopped.


def load_webhook_secret(path: Path) -> bytes:
    """The webhook secret in ``path``: ``whsec_`` then the base64 of 24 to 64 random bytes, mode 0600.

    Raises:
        ConfigurationError: the file is missing, unreadable, open to group or others, or does not
            hold such a secret; the message names the file and what is wrong, never the secret.
    """
    what = "webhook secret file"
    try:
        raw = read_secret(path, what=what)
    except FileNotFoundError:
        raise ConfigurationError(f"{what} {path} does not exist (webhook-secret-file)") from None
    except OSError as exc:
        raise ConfigurationError(f"{what} {path}: {exc.strerror}") from None
    expected = (
        f"a Standard Webhooks secret: {SECRET_PREFIX} followed by the base64 of "
        f"{_MIN_SECRET_BYTES} to {_MAX_SECRET_BYTES} random bytes, on one line"
    )
    try:
        text = raw.decode("ascii").strip()
    except UnicodeDecodeError:
        raise ConfigurationError(f"{what} {path} is not {expected}") from None
    if not text.startswith(SECRET_PREFIX):
        raise ConfigurationError(f"{what} {path} does not start with {SECRET_PREFIX!r}: it must hold {expected}")
    encoded = text[len(SECRET_PREFIX) :]
    try:
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ConfigurationError(
            f"{what} {path}: what follows {SECRET_PREFIX!r} is not base64; it must hold {expected}"
        ) from None
    if not _MIN_SECRET_BYTES <= len(key) <= _MAX_SECRET_BYTES:
        raise ConfigurationError(f"{what} {path} holds a {len(key)}-byte secret; it must hold {expected}")
    return key


def sign_webhook(key: bytes, message_id: str, timestamp: int, body: bytes) -> str:
    """The Standard Webhooks signature header value: ``v1,`` and the base64 HMAC-SHA256 of ``id.timestamp.body``."""
    mac = hmac.new(key, message_id.encode() + b"." + str(timestamp).encode() + b"." + body, hashlib.sha256)
    return "v1," + base64.b64encode(mac.digest()).decode("ascii")


class Notifier(Protocol):
    """Delivers one channel's notices; ``deliver`` raises ``NotificationFailed`` saying why it did not."""

    channel: Channel

    def deliver(self, message: OutboxMessage) -> None: ...

    def close(self) -> None: ...


class WebhookNotifier:
    """Posts notices to a Standard Webhooks endpoint (see the module). A 2xx answer is delivery."""

    channel = Channel.WEBHOOK

    def __init__(self, config: WebhookConfig, *, clock: Callable[[], float] = time.time) -> None:
        """Reads the secret now (``load_webhook_secret``), so a bad file fails at start-up."""
        import httpx  # Here, not above: importing httpx loads its command line (click, rich) too.

        self.url, self._key, self._clock = config.url, load_webhook_secret(config.secret_file), clock
        self._client: httpx.Client = httpx.Client(
            timeout=config.timeout_seconds, follow_redirects=False, trust_env=False
        )

    def deliver(self, message: OutboxMessage) -> None:
        import httpx

        timestamp = int(self._clock())
        headers = {
            "content-type": "application/json",
            "user-agent": f"alliance-psi/{__version__}",
            "webhook-id": message.message_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": sign_webhook(self._key, message.message_id, timestamp, message.body),
        }
        try:
            answer = self._client.post(self.url, content=message.body, headers=headers)
        except httpx.HTTPError as exc:
            raise NotificationFailed(f"webhook {self.url}: {type(exc).__name__}: {exc}") from None
        if not answer.is_success:
            said = answer.text[:_ERROR_TEXT].replace("\n", " ")
            raise NotificationFailed(f"webhook {self.url} answered HTTP {answer.status_code}: {said}".rstrip(": "))

    def close(self) -> None:
        self._client.close()


class AlertLogNotifier:
    """Appends each notice as one JSON line to a file (created mode 0600), flushed to disk."""

    channel = Channel.LOG

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        except OSError as exc:
            raise ConfigurationError(f"alert log {path}: {exc.strerror}") from None
        os.close(fd)

    def deliver(self, message: OutboxMessage) -> None:
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, message.body + b"\n")
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise NotificationFailed(f"alert log {self.path}: {exc.strerror}") from None

    def close(self) -> None:
        pass


def console_line(body: bytes) -> str:
    """One line for people from a notice's JSON: kind, scope, identifier (masked), holders, categories."""
    data = json.loads(body)["data"]
    identifier = data["identifier"]
    held = f"{identifier['type']} {identifier['masked']}" if identifier else "an identifier no longer held"
    peers = ", ".join(data["peer_categories"]) or "-"
    line = (
        f"alert {data['sequence']} ({data['alert_id'][:12]}): {data['kind']} in {data['scope']}: {held}, "
        f"{data['holder_count']} holders (threshold {data['threshold']}), peers say {peers}"
    )
    if "refused" in data:
        line += f"; REFUSED, not a lead: {data['refused']}"
    return line


class ConsoleNotifier:
    """Writes one line per notice (``console_line``; identifiers always masked)."""

    channel = Channel.CONSOLE

    def __init__(self, write: Callable[[str], None]) -> None:
        self._write = write

    def deliver(self, message: OutboxMessage) -> None:
        try:
            self._write(console_line(message.body))
        except OSError as exc:
            raise NotificationFailed(f"console: {exc.strerror}") from None

    def close(self) -> None:
        pass


@dataclass(frozen=True, slots=True)
class RetrySchedule:
    """``max_attempts`` attempts; after failed attempt ``n`` (from 1) the next waits ``min(max, first * 2**(n-1))``,
    drawn uniformly from its upper half (jitter, so many nodes do not retry in step)."""

    max_attempts: int
    first_seconds: float
    max_seconds: float

    def delay(self, failed_attempts: int, draw: Callable[[], float] = random.random) -> float | None:
        """Seconds until the next attempt after ``failed_attempts`` failures, or None: the budget is spent."""
        if failed_attempts >= self.max_attempts:
            return None
        return backoff_seconds(self.first_seconds, self.max_seconds, failed_attempts - 1, draw)


# Console and log fail only when the machine does (a full disk): keep trying, a minute apart at most.
_LOCAL_RETRY = RetrySchedule(max_attempts=10_000, first_seconds=1.0, max_seconds=60.0)


def build_notifiers(
    config: NotifyConfig, *, write: Callable[[str], None]
) -> tuple[dict[Channel, Notifier], dict[Channel, RetrySchedule], NoticePolicy]:
    """The notifiers ``config`` asks for, their retry schedules, and the policy the follower writes
    the outbox with. Reads the webhook secret and opens the alert log now.

    Raises:
        ConfigurationError: the webhook secret file or the alert log cannot be used.
    """
    notifiers: dict[Channel, Notifier] = {}
    schedules: dict[Channel, RetrySchedule] = {}
    if config.webhook is not None:
        hook = config.webhook
        notifiers[Channel.WEBHOOK] = WebhookNotifier(hook)
        schedules[Channel.WEBHOOK] = RetrySchedule(hook.max_attempts, hook.first_retry_seconds, hook.max_retry_seconds)
    if config.alert_log is not None:
        notifiers[Channel.LOG] = AlertLogNotifier(config.alert_log)
        schedules[Channel.LOG] = _LOCAL_RETRY
    if config.console:
        notifiers[Channel.CONSOLE] = ConsoleNotifier(write)
        schedules[Channel.CONSOLE] = _LOCAL_RETRY
    return notifiers, schedules, NoticePolicy(tuple(notifiers), config.include_identifiers)


def _utcnow() -> datetime:
    return datetime.now(UTC)


class Dispatcher:
    """Delivers the outbox's due notices through ``notifiers`` until stopped (see the module).

    ``wake`` (set by the follower when it applied an alert) ends a wait early; without it new
    notices go out within ``poll`` seconds. With ``metrics`` (``node run --metrics-listen``) each
    notice delivered counts as ``delivered`` and each failed attempt (retried later, or a dead
    letter) as ``failed`` in ``alliance_psi_alerts_total`` (one notice per alert and notifier).
    """

    def __init__(
        self,
        engine: Engine,
        notifiers: Mapping[Channel, Notifier],
        schedules: Mapping[Channel, RetrySchedule],
        *,
        wake: threading.Event | None = None,
        poll: float = 1.0,
        clock: Callable[[], datetime] = _utcnow,
        metrics: Metrics | None = None,
    ) -> None:
        self.engine, self.notifiers, self.schedules = engine, dict(notifiers), dict(schedules)
        self.metrics = metrics
        self.wake = wake or threading.Event()
        self.poll, self.clock = poll, clock

    @contextlib.contextmanager
    def _outbox(self) -> Iterator[NodeAlerts]:
        with self.engine.begin() as conn:
            yield NodeAlerts(conn)

    def deliver_due(self) -> int:
        """One pass: every due notice of every channel attempted once, in alert order; returns how many were delivered."""
        delivered = 0
        for channel, notifier in self.notifiers.items():
            with self._outbox() as outbox:
                due = outbox.due(channel, self.clock())
            for message in due:
                try:
                    notifier.deliver(message)
                except NotificationFailed as exc:
                    self._failed(message, str(exc))
                    break  # Keep the channel's order: later notices wait for this one.
                with self._outbox() as outbox:
                    outbox.delivered(message.sequence, channel, at=self.clock())
                delivered += 1
                if self.metrics is not None:
                    self.metrics.count_alerts("delivered")
        return delivered

    def _failed(self, message: OutboxMessage, error: str) -> None:
        now = self.clock()
        delay = self.schedules[message.channel].delay(message.attempts + 1)
        retry_at = now + timedelta(seconds=delay) if delay is not None else None
        with self._outbox() as outbox:
            outbox.failed(message.sequence, message.channel, at=now, error=error, retry_at=retry_at)
        if self.metrics is not None:
            self.metrics.count_alerts("failed")

    def seconds_to_next(self) -> float:
        """How long until a pending notice is due (at most ``poll``)."""
        with self._outbox() as outbox:
            due = [when for channel in self.notifiers if (when := outbox.next_due(channel)) is not None]
        if not due:
            return self.poll
        return max(0.0, min(self.poll, (min(due) - self.clock()).total_seconds()))

    def run(self, stop: threading.Event) -> None:
        """Deliver until ``stop`` is set; a notice in flight when it is set finishes (or fails) first."""
        while not stop.is_set():
            try:
                self.deliver_due()
                wait = self.seconds_to_next()
            except SQLAlchemyError:  # Busy or gone for now: every notice stays in the outbox; try again.
                wait = self.poll
            deadline = time.monotonic() + wait
            while not stop.is_set() and not self.wake.is_set() and (left := deadline - time.monotonic()) > 0:
                self.wake.wait(min(left, _STOP_CHECK_SECONDS))
            self.wake.clear()

    def close(self) -> None:
        for notifier in self.notifiers.values():
            notifier.close()


def secret_text(key: bytes) -> str:
    """``key`` written as a Standard Webhooks secret (``whsec_`` and base64), for a new secret file."""
    return SECRET_PREFIX + base64.b64encode(key).decode("ascii")
