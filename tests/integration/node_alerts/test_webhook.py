"""The webhook notifier on a real HTTP server on loopback: Standard Webhooks signatures (checked with
the published ``standardwebhooks`` package), retries with the same message id, dead letters, and
bad configuration refused with a clear error."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine
from standardwebhooks.webhooks import Webhook

from alliance_psi.config import NotifyConfig, WebhookConfig
from alliance_psi.errors import ConfigurationError
from alliance_psi.protocol.leads import OwnIdentifier
from alliance_psi.protocol.node_alerts import DeliveryState
from alliance_psi.services.notifiers import Dispatcher, build_notifiers, load_webhook_secret
from alliance_psi.storage.node_alerts import NodeAlerts

from .support import NOW, Receiver, applied, free_port, write_secret

OWN = OwnIdentifier("phone", "+8613915274680", "proxy_rights_defense", "level1", None, "A-0914")


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


def setup(
    engine: Engine, tmp_path: Path, url: str, *, include: bool = False, attempts: int = 5
) -> tuple[Dispatcher, Clock, str]:
    secret = write_secret(tmp_path / "webhook.secret")
    config = NotifyConfig(
        webhook=WebhookConfig(url=url, secret_file=tmp_path / "webhook.secret", max_attempts=attempts),
        console=False,
        include_identifiers=include,
    )
    notifiers, schedules, policy = build_notifiers(config, write=print)
    alert = applied(1, hashlib.sha256(b"a").digest()[:16])
    with engine.begin() as conn:
        NodeAlerts(conn).apply("coordinator", alert, policy.messages(alert, OWN))
    clock = Clock()
    return Dispatcher(engine, notifiers, schedules, clock=clock), clock, secret


def verified(secret: str, body: bytes, headers: dict[str, str]) -> dict[str, object]:
    # The reference package checks the timestamp against the real clock; our requests carry it.
    return Webhook(secret).verify(body, headers)  # type: ignore[no-any-return]


def test_a_webhook_down_then_up_gets_the_alert_once_with_one_message_id(engine: Engine, tmp_path: Path) -> None:
    receiver = Receiver(free_port(), status=503)
    dispatcher, clock, secret = setup(engine, tmp_path, receiver.url)
    with receiver.serving():  # Up, but failing.
        assert dispatcher.deliver_due() == 0
    assert dispatcher.deliver_due() == 0  # Not due yet: nothing attempted.
    clock.now += timedelta(hours=1)
    assert dispatcher.deliver_due() == 0  # Down: connection refused.
    with engine.connect() as conn:
        (message,) = NodeAlerts(conn).messages()
    assert (message.state, message.attempts) == (DeliveryState.PENDING, 2)
    assert "ConnectError" in message.last_error
    clock.now += timedelta(hours=1)
    receiver.status = 204
    with receiver.serving():
        assert dispatcher.deliver_due() == 1
        assert dispatcher.deliver_due() == 0  # Delivered once: never again.
    ids = {request.headers["webhook-id"] for request in receiver.requests}
    assert ids == {message.message_id} and [r.status for r in receiver.requests] == [503, 204]
    for request in receiver.requests:
        data = verified(secret, request.body, request.headers)
        assert data["type"] == "alliance-psi.alert.match"
    with engine.connect() as conn:
        (done,) = NodeAlerts(conn).messages()
    assert (done.state, done.attempts, done.body) == (DeliveryState.DELIVERED, 3, b"")


def test_the_signature_does_not_verify_under_another_secret_or_body(engine: Engine, tmp_path: Path) -> None:
    receiver = Receiver(free_port())
    dispatcher, _, secret = setup(engine, tmp_path, receiver.url)
    with receiver.serving():
        dispatcher.deliver_due()
    (request,) = receiver.requests
    other = write_secret(tmp_path / "other.secret")
    with pytest.raises(Exception, match="No matching signature"):
        verified(other, request.body, request.headers)
    with pytest.raises(Exception, match="No matching signature"):
        verified(secret, request.body.replace(b'"match"', b'"retracted"'), request.headers)


def test_the_body_masks_the_identifier_unless_asked(engine: Engine, tmp_path: Path) -> None:
    receiver = Receiver(free_port())
    dispatcher, _, secret = setup(engine, tmp_path, receiver.url)
    with receiver.serving():
        dispatcher.deliver_due()
    data = verified(secret, receiver.requests[0].body, receiver.requests[0].headers)["data"]
    assert data["identifier"] == {"type": "phone", "masked": "****4680"}  # type: ignore[index]
    assert b"13915274680" not in receiver.requests[0].body and b"A-0914" not in receiver.requests[0].body
    assert b"B-77" not in receiver.requests[0].body and b"bank-b" not in receiver.requests[0].body
    assert data["peer_categories"] == ["wool_party"] and data["holder_count"] == 2  # type: ignore[index]


def test_the_full_identifier_only_behind_the_option(engine: Engine, tmp_path: Path) -> None:
    receiver = Receiver(free_port())
    dispatcher, _, secret = setup(engine, tmp_path, receiver.url, include=True)
    with receiver.serving():
        dispatcher.deliver_due()
    data = verified(secret, receiver.requests[0].body, receiver.requests[0].headers)["data"]
    assert data["identifier"]["value"] == "+8613915274680"  # type: ignore[index]


def test_a_target_down_past_the_budget_leaves_a_dead_letter(engine: Engine, tmp_path: Path) -> None:
    dispatcher, clock, _ = setup(engine, tmp_path, f"http://127.0.0.1:{free_port()}/", attempts=3)
    for _ in range(5):
        dispatcher.deliver_due()
        clock.now += timedelta(hours=2)
    with engine.connect() as conn:
        (dead,) = NodeAlerts(conn).messages()
    assert (dead.state, dead.attempts) == (DeliveryState.DEAD, 3)
    assert "ConnectError" in dead.last_error and dead.body  # Kept whole for a redelivery.


def test_a_redirect_is_a_failure_not_followed(engine: Engine, tmp_path: Path) -> None:
    receiver = Receiver(free_port(), status=307)
    dispatcher, _, _ = setup(engine, tmp_path, receiver.url)
    with receiver.serving():
        assert dispatcher.deliver_due() == 0
    with engine.connect() as conn:
        (message,) = NodeAlerts(conn).messages()
    assert message.state is DeliveryState.PENDING and "HTTP 307" in message.last_error


def test_the_log_notice_is_one_json_line_per_alert(engine: Engine, tmp_path: Path) -> None:
    log = tmp_path / "alerts.jsonl"
    notifiers, schedules, policy = build_notifiers(NotifyConfig(alert_log=log, console=False), write=print)
    for sequence in (1, 2):
        alert = applied(sequence, bytes([sequence]) * 16)
        with engine.begin() as conn:
            NodeAlerts(conn).apply("coordinator", alert, policy.messages(alert, OWN))
    Dispatcher(engine, notifiers, schedules, clock=lambda: NOW).deliver_due()
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert [line["data"]["sequence"] for line in lines] == [1, 2]
    assert log.stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize(
    "url, why",
    [
        ("ftp://cases.example/hook", "give an https:// URL with a host"),
        ("https:///hook", "give an https:// URL with a host"),
        ("cases.example/hook", "give an https:// URL with a host"),
        ("http://cases.example/hook", "plain http to cases.example"),
        ("https://user:pw@cases.example/hook", "carries a user name or password"),
        ("https://cases.example:port/hook", "is not a URL"),
    ],
)
def test_a_bad_webhook_url_is_refused(url: str, why: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=why):
        WebhookConfig(url=url, secret_file=tmp_path / "s")


def test_http_to_loopback_is_accepted(tmp_path: Path) -> None:
    for url in ("http://127.0.0.1:8080/x", "http://localhost/x", "http://[::1]:9/x"):
        WebhookConfig(url=url, secret_file=tmp_path / "s")


@pytest.mark.parametrize(
    "content, why",
    [
        (None, "does not exist"),
        ("c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0", "does not start with 'whsec_'"),
        ("whsec_Zm9v*YmFyYmF6", "is not base64"),
        ("whsec_c2hvcnQ=", "holds a 5-byte secret"),
        ("whsec_\u00e9", "is not a Standard Webhooks secret"),
    ],
)
def test_a_bad_secret_file_is_refused(content: str | None, why: str, tmp_path: Path) -> None:
    path = tmp_path / "webhook.secret"
    if content is not None:
        path.write_text(content)
        path.chmod(0o600)
    with pytest.raises(ConfigurationError, match=why) as raised:
        load_webhook_secret(path)
    assert str(path) in str(raised.value)
    if content is not None:
        assert content.removeprefix("whsec_")[:8] not in str(raised.value).split(str(path))[1]


def test_a_secret_file_others_can_read_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "webhook.secret"
    write_secret(path)
    path.chmod(0o644)
    with pytest.raises(ConfigurationError, match="chmod 600"):
        load_webhook_secret(path)


def test_a_secret_as_written_by_the_reference_package_is_accepted(tmp_path: Path) -> None:
    text = write_secret(tmp_path / "webhook.secret")
    assert load_webhook_secret(tmp_path / "webhook.secret") == Webhook(text)._whsecret
    assert isinstance(datetime.now(UTC), datetime)
