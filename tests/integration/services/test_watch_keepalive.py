"""A watch lives on keepalive pings: the server allows them at the interval clients use.

The deployed intervals are tens of seconds (``services.tls``); the real-server test scales both
sides down by the same factor, keeping their ratio, and holds a watch over several pings. The
control, a client pinging faster than the server allows, has its stream cut: pings do flow.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import grpc
import pytest

from alliance_psi.protocol.coordinator import RoundSpec
from alliance_psi.protocol.messages import alert_batch_from_pb, pb_coordinator
from alliance_psi.protocol.model import NO_DEADLINE, RoundKind
from alliance_psi.services import tls
from alliance_psi.services.clients import CoordinatorClient
from tests.helpers.continuous import DeltaSender, label, token
from tests.integration.services.conftest import AlliancePki
from tests.integration.services.harness import COORDINATOR, MEMBERS, running_alliance

pytestmark = pytest.mark.timeout(180)

SCALE = 10  # Deployed milliseconds / test milliseconds (gRPC pings at most once a second).


def option(options: tuple[tuple[str, object], ...], name: str) -> int:
    return int(dict(options)[name])  # type: ignore[call-overload]


def test_clients_ping_no_more_often_than_servers_allow() -> None:
    client_ping = option(tls.CHANNEL_OPTIONS, "grpc.keepalive_time_ms")
    server_floor = option(tls.SERVER_OPTIONS, "grpc.http2.min_ping_interval_without_data_ms")
    assert client_ping >= server_floor  # 30 s against 20 s: a watch's pings never strike.
    # Both sides ping only during calls; a watch is a call, so its connection is pinged.
    assert option(tls.CHANNEL_OPTIONS, "grpc.keepalive_permit_without_calls") == 0
    assert option(tls.SERVER_OPTIONS, "grpc.keepalive_permit_without_calls") == 0


def scaled(options: tuple[tuple[str, object], ...]) -> tuple[tuple[str, object], ...]:
    timed = {"grpc.keepalive_time_ms", "grpc.keepalive_timeout_ms", "grpc.http2.min_ping_interval_without_data_ms"}
    return tuple((k, int(v) // SCALE if k in timed else v) for k, v in options)  # type: ignore[call-overload]


@pytest.mark.parametrize("client_ping_ms", [option(tls.CHANNEL_OPTIONS, "grpc.keepalive_time_ms") // SCALE, 1000])
def test_a_watch_outlives_many_keepalive_pings(
    client_ping_ms: int, tmp_path: Path, pki: AlliancePki, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tls, "SERVER_OPTIONS", scaled(tls.SERVER_OPTIONS))  # The server's floor: 2 s.
    allowed = client_ping_ms >= option(tls.SERVER_OPTIONS, "grpc.http2.min_ping_interval_without_data_ms")
    options = [("grpc.keepalive_time_ms", client_ping_ms), ("grpc.keepalive_timeout_ms", 5000)]
    quiet = {"alert_heartbeat": 3600.0, "alert_poll": 0.2}
    with running_alliance(tmp_path, pki, coordinator_options=quiet) as alliance:
        with alliance.admin() as admin:
            scope = admin.create_round(
                RoundSpec("watch", 2, "epoch-test", NO_DEADLINE, ("phone",), MEMBERS, True, kind=RoundKind.CONTINUOUS)
            )
        channel = tls.secure_channel(
            alliance.coordinator_address, pki.material("bank-a"), server=COORDINATOR, options=options
        )
        watch = channel.unary_stream(
            "/alliance_psi.v1.Coordinator/WatchAlerts",
            request_serializer=pb_coordinator.WatchAlertsRequest.SerializeToString,
            response_deserializer=pb_coordinator.AlertBatch.FromString,
        )
        stream = watch(pb_coordinator.WatchAlertsRequest(), timeout=120)
        with contextlib.closing(channel):
            time.sleep(10)  # Several of the client's pings on a quiet stream (no heartbeat, no alert).
            for member, mark in (("bank-a", 1), ("bank-b", 2)):
                with CoordinatorClient(alliance.coordinator_address, pki.material(member)) as sending:
                    DeltaSender(sending, member, scope.round_id).send({token(1): label(mark)}, replace=True)
            if allowed:
                batch = alert_batch_from_pb(next(stream))
                assert [len(batch.alerts), batch.head_sequence] == [1, 1]
            else:
                with pytest.raises(grpc.RpcError) as cut:
                    next(stream)
                assert cut.value.code() is grpc.StatusCode.UNAVAILABLE
