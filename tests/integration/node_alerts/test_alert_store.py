"""The node's alert store: applied exactly once in sequence, filters, investigator acks, the outbox."""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta

import pytest
from sqlalchemy import Engine, select, update

from alliance_psi.errors import Conflict, NotFound
from alliance_psi.protocol.node_alerts import Channel, DeliveryState, NoticePolicy
from alliance_psi.storage.node_alerts import AlertFilter, NodeAlerts
from alliance_psi.storage.schema import member_alerts

from .support import NOW, applied

STREAM = "coordinator"


def token(name: str) -> bytes:
    return hashlib.sha256(name.encode()).digest()[:16]


def apply(engine: Engine, *alerts: object, policy: NoticePolicy | None = None) -> None:
    policy = policy or NoticePolicy()
    for alert in alerts:
        with engine.begin() as conn:
            NodeAlerts(conn).apply(STREAM, alert, policy.messages(alert, None))  # type: ignore[arg-type]


def test_alerts_apply_in_sequence_and_only_once(engine: Engine) -> None:
    apply(engine, applied(1, token("a")), applied(2, token("b")))
    for wrong in (applied(2, token("b")), applied(4, token("c")), applied(1, token("a"))):
        with pytest.raises(Conflict, match="not the next to apply"), engine.begin() as conn:
            NodeAlerts(conn).apply(STREAM, wrong, [])
    with engine.connect() as conn:
        alerts = NodeAlerts(conn)
        assert alerts.applied_sequence(STREAM) == 2
        assert [a.sequence for a in alerts.find()] == [2, 1]


def test_a_refused_apply_leaves_nothing(engine: Engine) -> None:
    with pytest.raises(Conflict), engine.begin() as conn:
        NodeAlerts(conn).apply(STREAM, applied(3, token("a")), NoticePolicy().messages(applied(3, token("a")), None))
    with engine.connect() as conn:
        assert NodeAlerts(conn).find() == [] and NodeAlerts(conn).messages() == []


def test_an_alert_reads_back_as_applied(engine: Engine) -> None:
    alert = applied(1, token("a"))
    apply(engine, alert)
    with engine.connect() as conn:
        assert NodeAlerts(conn).get(alert.alert_id[:10]) == alert
        assert NodeAlerts(conn).get("1") == alert
        with pytest.raises(NotFound, match="no alert"):
            NodeAlerts(conn).get("ffff")


def test_current_alerts_are_the_latest_per_token_that_is_no_retraction(engine: Engine) -> None:
    apply(
        engine,
        applied(1, token("a")),
        applied(2, token("b")),
        applied(3, token("a"), kind="joined", holders=3),
        applied(4, token("b"), kind="retracted", holders=1),
        applied(5, token("c"), refused="labels do not back it"),
    )
    with engine.connect() as conn:
        current = NodeAlerts(conn).find(AlertFilter(current=True))
        assert [(a.sequence, a.holder_count) for a in current] == [(3, 3)]
        assert NodeAlerts(conn).is_current(current[0].scope, token("a"))
        assert not NodeAlerts(conn).is_current(current[0].scope, token("b"))
        assert [a.sequence for a in NodeAlerts(conn).find(AlertFilter(kind="retracted"))] == [4]


def test_acknowledged_once(engine: Engine) -> None:
    apply(engine, applied(1, token("a")), applied(2, token("b")))
    with engine.begin() as conn:
        assert NodeAlerts(conn).ack(1, at=NOW, note="case opened")
        assert not NodeAlerts(conn).ack(1, at=NOW + timedelta(hours=1), note="again")
    with engine.connect() as conn:
        alerts = NodeAlerts(conn)
        assert [a.sequence for a in alerts.find(AlertFilter(unacked=True))] == [2]
        assert (alerts.get("1").acked_at, alerts.get("1").ack_note) == (NOW, "case opened")


def test_outbox_rows_go_due_failed_dead_and_delivered(engine: Engine) -> None:
    policy = NoticePolicy((Channel.WEBHOOK, Channel.LOG))
    apply(engine, applied(1, token("a")), applied(2, token("b")), policy=policy)
    later = NOW + timedelta(seconds=30)
    with engine.begin() as conn:
        outbox = NodeAlerts(conn)
        assert [m.sequence for m in outbox.due(Channel.WEBHOOK, NOW)] == [1, 2]
        outbox.failed(1, Channel.WEBHOOK, at=NOW, error="HTTP 503", retry_at=later)
        outbox.failed(2, Channel.WEBHOOK, at=NOW, error="HTTP 503", retry_at=None)
        outbox.delivered(1, Channel.LOG, at=NOW)
    with engine.connect() as conn:
        outbox = NodeAlerts(conn)
        assert outbox.due(Channel.WEBHOOK, NOW) == []
        assert outbox.next_due(Channel.WEBHOOK) == later
        (dead,) = outbox.messages(state=DeliveryState.DEAD)
        assert (dead.sequence, dead.attempts, dead.last_error) == (2, 1, "HTTP 503")
        (log,) = outbox.messages(state=DeliveryState.DELIVERED)
        assert (log.channel, log.body, log.attempts) == (Channel.LOG, b"", 1)
    with engine.begin() as conn:
        assert NodeAlerts(conn).redeliver(2, Channel.WEBHOOK, at=later)
        assert not NodeAlerts(conn).redeliver(1, Channel.LOG, at=later)
    with engine.connect() as conn:
        assert [m.sequence for m in NodeAlerts(conn).due(Channel.WEBHOOK, later)] == [1, 2]


def test_a_refused_alert_never_goes_to_the_webhook(engine: Engine) -> None:
    policy = NoticePolicy((Channel.WEBHOOK, Channel.LOG, Channel.CONSOLE))
    apply(engine, applied(1, token("a"), refused="two peer labels are identical"), policy=policy)
    with engine.connect() as conn:
        assert {m.channel for m in NodeAlerts(conn).messages()} == {Channel.LOG, Channel.CONSOLE}


def test_a_resync_replaces_the_scope_s_standing_alerts_by_the_snapshots_after_it(engine: Engine) -> None:
    apply(
        engine,
        applied(1, token("a")),
        applied(2, token("b")),
        applied(3, bytes(16), kind="overflow"),
        applied(4, bytes(16), kind="resync", holders=1),
        applied(5, token("b"), kind="snapshot", holders=3),
    )
    with engine.connect() as conn:
        assert [a.sequence for a in NodeAlerts(conn).find(AlertFilter(current=True))] == [5]


def test_skip_to_never_moves_back(engine: Engine) -> None:
    with engine.begin() as conn:
        NodeAlerts(conn).skip_to(STREAM, 7)
        NodeAlerts(conn).skip_to(STREAM, 3)
        assert NodeAlerts(conn).applied_sequence(STREAM) == 7
    apply(engine, applied(8, token("a")))


def test_a_peer_label_kept_before_the_case_ref_rule_reads_back_counted_unreadable(engine: Engine) -> None:
    # Alerts applied by an earlier version kept a peer's case reference unchecked: reading them
    # must not fail, and the label no longer passes (nor reaches a console or a webhook).
    alert = applied(1, token("a"))
    apply(engine, alert)
    hostile = {"category": "other", "severity": None, "first_seen": None, "case_ref": "\x1b[2J", "member": None}
    kept = [hostile]
    with engine.begin() as conn:
        stored = json.loads(conn.execute(select(member_alerts.c.peer_labels)).scalar_one())
        conn.execute(update(member_alerts).values(peer_labels=json.dumps(stored + kept)))
    with engine.connect() as conn:
        read = NodeAlerts(conn).get("1")
    assert read.peer_labels == alert.peer_labels and read.unreadable_labels == 1
