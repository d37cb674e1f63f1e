"""``node run`` follows its member's alerts and notifies, as a real process against the real
coordinator over mTLS on loopback, with a real webhook receiver (an HTTP server in this test).

bank-b commits an identifier bank-a holds to a continuous scope; bank-a's ``node run`` gets the
coordinator's signed MATCH alert, verifies and stores it, and posts its Standard Webhooks notice
(checked with the published ``standardwebhooks`` package). Killed with SIGKILL while alerts arrive
and started again, it loses none and applies none twice; a notice the receiver may have got just
before the kill is sent again with the same ``webhook-id``, so a receiver that drops duplicates by
id (as the convention asks) sees each alert once.

The members' deltas travel the real way (chunks and commits over gRPC, ``tests.helpers.continuous``),
as the coordinator's alert tests send them. Nothing waits on a clock to assert anything.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from standardwebhooks.webhooks import Webhook

from alliance_psi.protocol.alerts import SignedAlert, verify_alert
from alliance_psi.protocol.node_alerts import Channel, DeliveryState
from alliance_psi.storage.node_alerts import NodeAlerts
from tests.integration.node_run.support import node_run, wait_for
from tests.integration.services.conftest import AlliancePki
from tests.integration.services.test_alert_delivery import alliance_with_scope, client

from .support import Receiver, free_port, write_secret
from .test_alerts_live import HEARTBEAT, Member, node_toml

pytestmark = pytest.mark.timeout(600)


def run_toml(member: Member, folder: Path, alliance: object, pki: AlliancePki, receiver: Receiver) -> Path:
    """``member``'s node.toml for ``node run``, its notifiers set in the file: the webhook (secret in
    ``webhook.secret``), the alert log. Batch rounds are left alone: only alerts are under test."""
    toml = node_toml(member, folder, alliance, pki)  # type: ignore[arg-type]
    with toml.open("a") as file:
        file.write(
            f'webhook-url = "{receiver.url}"\nwebhook-secret-file = "webhook.secret"\n'
            'inbox = "inbox"\npoll-every = 0.1\njoin-rounds = false\n'
        )
    return toml


def webhook_messages(member: Member) -> dict[int, str]:
    """The node's webhook message id of each alert, by sequence."""
    with member.engine.connect() as conn:
        return {m.sequence: m.message_id for m in NodeAlerts(conn).messages() if m.channel is Channel.WEBHOOK}


def delivered(member: Member, count: int) -> bool:
    with member.engine.connect() as conn:
        messages = NodeAlerts(conn).messages()
    return len(messages) == 3 * count and all(m.state is DeliveryState.DELIVERED for m in messages)


def test_node_run_notifies_the_signed_match_and_survives_sigkill_without_loss_or_repeat(
    tmp_path: Path, pki: AlliancePki
) -> None:
    with alliance_with_scope(tmp_path, pki, **HEARTBEAT) as (alliance, scope_id):
        folder = tmp_path / "bank-a"
        a, b = Member(alliance, scope_id, "bank-a", folder), Member(alliance, scope_id, "bank-b", tmp_path / "bank-b")
        secret = write_secret(folder / "webhook.secret")
        receiver = Receiver(free_port())
        toml = run_toml(a, folder, alliance, pki, receiver)
        a.hold(*range(1, 8))
        with receiver.serving():
            with node_run(toml) as first:
                b.hold(1)  # A shared identifier: bank-a's MATCH.
                wait_for(lambda: receiver.requests, "the webhook's first request", first)
                (request,) = receiver.requests
                notice = Webhook(secret).verify(request.body, request.headers)
                assert notice["type"] == "alliance-psi.alert.match"
                assert notice["data"]["sequence"] == 1 and notice["data"]["holder_count"] == 2
                assert notice["data"]["identifier"]["type"] == "phone"
                assert "value" not in notice["data"]["identifier"]  # Masked by default.
                assert request.headers["webhook-id"] == webhook_messages(a)[1]
                with a.engine.connect() as conn:
                    (stored,) = NodeAlerts(conn).find()
                signed = SignedAlert(stored.signed, stored.signature, alliance.signing_key.key_id)
                alert = verify_alert(alliance.signing_key.public_key, signed, member_id="bank-a")
                assert (alert.kind.name, alert.scope_id, alert.holder_count) == ("MATCH", scope_id, 2)

                for i in (2, 3, 4):
                    b.hold(i)
                wait_for(lambda: a.applied() >= 3, "three alerts applied", first)
                first.kill()  # SIGKILL, wherever it is: mid-stream, mid-delivery or between.
            for i in (5, 6, 7):
                b.hold(i)  # Released while the node is down.
            with node_run(toml) as second:
                wait_for(lambda: a.applied() >= 7 and delivered(a, 7), "seven alerts applied and notified", second)
                assert second.stop() == 0, second.log
        assert [(s, kind, holders, refused) for s, kind, holders, refused in a.alerts()] == [
            (s, "match", 2, None) for s in range(1, 8)
        ]
        with client(alliance, "bank-a") as coordinator:
            assert coordinator.ack_alerts(0) == (7, 7)  # Every alert acknowledged, none pending.
        ids = webhook_messages(a)
        assert len(set(ids.values())) == 7
        received: dict[str, bytes] = {}
        for request in receiver.requests:
            Webhook(secret).verify(request.body, request.headers)
            message_id = request.headers["webhook-id"]
            assert received.setdefault(message_id, request.body) == request.body  # A repeat is the same notice.
        assert set(received) == set(ids.values())  # Each alert reached the receiver, under its one id.
        sequences = sorted(json.loads(body)["data"]["sequence"] for body in received.values())
        assert sequences == list(range(1, 8))
        logged = [json.loads(line)["data"]["sequence"] for line in (folder / "alerts.jsonl").read_text().splitlines()]
        assert sorted(set(logged)) == list(range(1, 8))


def test_node_run_counts_notices_delivered_and_failed_attempts_on_its_metrics_port(
    tmp_path: Path, pki: AlliancePki
) -> None:
    from tests.integration.services.monitored import scrape, value

    def alerts(port: int) -> dict[str, float]:
        samples = scrape(port)
        return {o: value(samples, "alliance_psi_alerts_total", outcome=o) for o in ("delivered", "failed")}

    with alliance_with_scope(tmp_path, pki, **HEARTBEAT) as (alliance, scope_id):
        folder = tmp_path / "bank-a"
        a, b = Member(alliance, scope_id, "bank-a", folder), Member(alliance, scope_id, "bank-b", tmp_path / "bank-b")
        write_secret(folder / "webhook.secret")
        receiver = Receiver(free_port(), status=500)  # The webhook refuses at first.
        toml = run_toml(a, folder, alliance, pki, receiver)
        a.hold(1, 2)
        with receiver.serving(), node_run(toml, "--metrics-listen", "127.0.0.1:0") as run:
            port = run.metrics_port
            assert alerts(port) == {"delivered": 0, "failed": 0}
            b.hold(1)  # bank-a's MATCH: one notice each for the webhook, the alert log and the console.
            wait_for(lambda: alerts(port)["failed"] >= 1, "a failed webhook attempt counted", run)
            wait_for(lambda: alerts(port)["delivered"] == 2, "the log's and console's notices counted", run)
            receiver.status = 204
            wait_for(lambda: alerts(port)["delivered"] == 3, "the webhook's notice counted once delivered", run)
            assert delivered(a, 1)
            assert run.stop() == 0, run.log
