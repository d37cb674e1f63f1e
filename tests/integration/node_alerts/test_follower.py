"""The alert follower over a real node database (SQLite and PostgreSQL) and a fake coordinator
port: verified, label-checked alerts applied exactly once across breaks and restarts, then acked."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import Engine

from alliance_psi.crypto.signing import SigningKey
from alliance_psi.errors import Conflict, InvalidSignature
from alliance_psi.protocol.alert_follower import AlertFollower, Backoff
from alliance_psi.protocol.alerts import AlertKind, SignedAlert
from alliance_psi.protocol.node_alerts import Channel, DeliveryState, NoticePolicy
from alliance_psi.services.member import SqlNodeUnitOfWork
from alliance_psi.storage.node_alerts import AlertFilter, NodeAlerts

from .fake_alerts import MEMBER, FakeCoordinator, load_node, peer_label, token_of

NONCE_KEY = bytes(range(32))
POLICY = NoticePolicy((Channel.WEBHOOK, Channel.LOG, Channel.CONSOLE))


def follower(engine: Engine, coordinator: FakeCoordinator, reports: list[str] | None = None) -> AlertFollower:
    return AlertFollower(
        member_id=MEMBER,
        uow=SqlNodeUnitOfWork(engine),
        calls=coordinator,
        coordinator_key=coordinator.key.public_key,
        nonce_key=NONCE_KEY,
        policy=POLICY,
        backoff=Backoff(first=0.01, most=0.02),
        report=(reports.append if reports is not None else lambda _: None),
    )


def alerts(engine: Engine) -> list[tuple[int, str, int, str | None]]:
    with engine.connect() as conn:
        return [(a.sequence, a.kind, a.holder_count, a.refused) for a in reversed(NodeAlerts(conn).find())]


@pytest.fixture
def coordinator() -> FakeCoordinator:
    return FakeCoordinator()


def test_alerts_are_applied_in_order_and_acknowledged(engine: Engine, coordinator: FakeCoordinator) -> None:
    load_node(engine, range(5))
    coordinator.alert(AlertKind.MATCH, 1, 2, (peer_label(1, "bank-b"),))
    coordinator.alert(AlertKind.JOINED, 1, 3, (peer_label(1, "bank-b"), peer_label(1, "bank-c", named=False)))
    assert follower(engine, coordinator).follow(threading.Event()) == 2
    assert alerts(engine) == [(1, "match", 2, None), (2, "joined", 3, None)]
    assert coordinator.acked == 2
    with engine.connect() as conn:
        joined = NodeAlerts(conn).get("2")
        names = sorted((label.member or "-", label.category) for label in joined.peer_labels)
        assert names == [("-", "wool_party"), ("bank-b", "wool_party")]
        assert {m.channel for m in NodeAlerts(conn).messages(sequence=2)} == set(Channel)


def test_a_break_and_a_restart_lose_nothing_and_apply_nothing_twice(
    engine: Engine, coordinator: FakeCoordinator
) -> None:
    load_node(engine, range(10))
    for i in range(6):
        coordinator.alert(AlertKind.MATCH, i, 2, (peer_label(i, "bank-b"),))
    coordinator.break_after = 2
    reports: list[str] = []
    stop = threading.Event()
    first = follower(engine, coordinator, reports)
    with pytest.raises(Exception, match="stream broke"):
        first.follow(stop)
    assert [s for s, *_ in alerts(engine)] == [1, 2]
    coordinator.acked = 1  # The ack of alert 2 was lost with the connection.
    coordinator.break_after = None
    restarted = follower(engine, coordinator, reports)  # A new process: all it knows is in the database.
    assert restarted.follow(stop) == 4
    assert coordinator.watches == [1, 3]
    assert [s for s, *_ in alerts(engine)] == [1, 2, 3, 4, 5, 6] and coordinator.acked == 6


def test_an_alert_sent_again_is_skipped_and_acked_again(engine: Engine, coordinator: FakeCoordinator) -> None:
    load_node(engine, range(3))
    signed = coordinator.alert(AlertKind.MATCH, 1, 2, (peer_label(1, "bank-b"),))
    node = follower(engine, coordinator)
    assert node.apply(signed) is not None
    assert node.apply(signed) is None
    with engine.connect() as conn:
        assert len(NodeAlerts(conn).messages()) == 3


def test_a_gap_in_the_sequence_is_refused(engine: Engine, coordinator: FakeCoordinator) -> None:
    load_node(engine, range(3))
    coordinator.alert(AlertKind.MATCH, 1, 2, (peer_label(1, "bank-b"),))
    second = coordinator.alert(AlertKind.MATCH, 2, 2, (peer_label(2, "bank-b"),))
    with pytest.raises(Conflict, match="came after alert 0"):
        follower(engine, coordinator).apply(second)
    assert alerts(engine) == []


def test_an_alert_signed_by_another_key_is_refused(engine: Engine, coordinator: FakeCoordinator) -> None:
    load_node(engine, range(3))
    honest = coordinator.alert(AlertKind.MATCH, 1, 2, (peer_label(1, "bank-b"),))
    forged = SignedAlert(honest.alert, SigningKey.generate().sign("alert", honest.alert), "")
    with pytest.raises(InvalidSignature):
        follower(engine, coordinator).apply(forged)
    assert alerts(engine) == []


def test_an_alert_for_another_member_is_refused(engine: Engine, coordinator: FakeCoordinator) -> None:
    load_node(engine, range(3))
    other = coordinator.alert(AlertKind.MATCH, 1, 2, (peer_label(1, "bank-b"),), member="bank-b")
    with pytest.raises(InvalidSignature, match="for member 'bank-b'"):
        follower(engine, coordinator).apply(other)


@pytest.mark.parametrize(
    "labels, why",
    [
        ((), "0 peer labels count"),
        (("own",), "own label is returned as a peer's"),
    ],
)
def test_a_holder_count_its_labels_do_not_back_is_refused(
    engine: Engine, coordinator: FakeCoordinator, labels: tuple[str, ...], why: str
) -> None:
    load_node(engine, range(3))
    sealed = []
    for peer in labels:
        if peer == "own":  # This node's own label, sealed under its own nonce key, replayed as a peer's.
            from alliance_psi.crypto.labels import LabelContext, seal_label
            from alliance_psi.protocol.leads import LeadLabel

            from .fake_alerts import EPOCH, SET_SCOPE, key_of

            context = LabelContext(EPOCH, token_of(1), SET_SCOPE)
            mine = seal_label(key_of(1), LeadLabel("other").encode(), context, sealer_key=NONCE_KEY)
            sealed.append(type(peer_label(1, "x"))(mine, "bank-b"))
        else:
            sealed.append(peer_label(1, peer))
    coordinator.alert(AlertKind.MATCH, 1, 1 + max(1, len(labels)), tuple(sealed))
    reports: list[str] = []
    follower(engine, coordinator, reports).follow(threading.Event())
    ((_, _, _, refused),) = alerts(engine)
    assert refused is not None and why in refused
    assert any("refused" in line for line in reports)
    with engine.connect() as conn:
        assert {m.channel for m in NodeAlerts(conn).messages()} == {Channel.LOG, Channel.CONSOLE}
        assert NodeAlerts(conn).find(AlertFilter(current=True)) == []


def test_a_withdrawal_retracts_the_lead(engine: Engine, coordinator: FakeCoordinator) -> None:
    load_node(engine, range(3))
    coordinator.alert(AlertKind.MATCH, 1, 2, (peer_label(1, "bank-b"),))
    coordinator.alert(AlertKind.RETRACTED, 1, 1)
    follower(engine, coordinator).follow(threading.Event())
    assert alerts(engine) == [(1, "match", 2, None), (2, "retracted", 1, None)]
    with engine.connect() as conn:
        assert NodeAlerts(conn).find(AlertFilter(current=True)) == []
        assert [m.state for m in NodeAlerts(conn).messages(sequence=2)] == [DeliveryState.PENDING] * 3


def test_an_alert_about_a_token_no_longer_held_is_kept_without_notices(
    engine: Engine, coordinator: FakeCoordinator
) -> None:
    load_node(engine, range(3))
    coordinator.alert(AlertKind.MATCH, 7, 2, (peer_label(7, "bank-b"),))
    follower(engine, coordinator).follow(threading.Event())
    assert alerts(engine) == [(1, "match", 2, None)]
    with engine.connect() as conn:
        assert NodeAlerts(conn).messages() == []


def test_a_node_behind_the_coordinator_s_acknowledgement_goes_on_from_it(
    engine: Engine, coordinator: FakeCoordinator
) -> None:
    load_node(engine, range(5))
    for i in range(4):
        coordinator.alert(AlertKind.MATCH, i, 2, (peer_label(i, "bank-b"),))
    coordinator.acked = 3  # Acknowledged from a database since restored from an older backup.
    reports: list[str] = []
    node = follower(engine, coordinator, reports)
    assert node.follow(threading.Event()) == 0
    assert any("alerts 1 to 3" in line for line in reports)
    assert node.follow(threading.Event()) == 1
    assert [s for s, *_ in alerts(engine)] == [4]


def test_run_reconnects_after_a_break_until_stopped(engine: Engine, coordinator: FakeCoordinator) -> None:
    load_node(engine, range(5))
    for i in range(4):
        coordinator.alert(AlertKind.MATCH, i, 2, (peer_label(i, "bank-b"),))
    coordinator.break_after = 1
    stop = threading.Event()
    reports: list[str] = []
    node = follower(engine, coordinator, reports)
    node.applied = lambda: stop.set() if coordinator.acked >= 3 else None
    thread = threading.Thread(target=node.run, args=(stop,))
    thread.start()
    thread.join(timeout=60)
    assert not thread.is_alive()
    assert [s for s, *_ in alerts(engine)][:4] == [1, 2, 3, 4][: len(alerts(engine))]
    assert len(alerts(engine)) >= 4 and any("stream broke" in line for line in reports)


def test_a_count_its_labels_back_only_in_part_stands_with_the_backed_count(
    engine: Engine, coordinator: FakeCoordinator
) -> None:
    load_node(engine, range(3))
    twice = peer_label(1, "bank-b")
    coordinator.alert(AlertKind.MATCH, 1, 3, (twice, twice))  # One label counted for two holders.
    follower(engine, coordinator).follow(threading.Event())
    with engine.connect() as conn:
        (alert,) = NodeAlerts(conn).find(AlertFilter(current=True))
        assert (alert.refused, alert.holder_count, alert.backed_count) == (None, 3, 2)
        webhook = next(m for m in NodeAlerts(conn).messages() if m.channel is Channel.WEBHOOK)
    assert b'"backed_count":2' in webhook.body and b'"holder_count":3' in webhook.body
