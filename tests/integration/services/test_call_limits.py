"""One member cannot stop or exhaust a server: calls per peer and in total, open streams, calls per
second, and calls idle on their peer are bounded, over real mTLS on loopback servers.

Before these limits, 16 idle streams from one member took every worker thread of a server and
every other caller waited until its deadline.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from alliance_psi.config import ServerLimits
from alliance_psi.errors import ServerBusy
from alliance_psi.protocol.messages import pb_coordinator, pb_custodian
from alliance_psi.services.clients import CoordinatorClient, RetryPolicy
from alliance_psi.services.tls import secure_channel
from tests.integration.services.harness import COORDINATOR, EPOCH, custodian, running_alliance

pytestmark = pytest.mark.timeout(180)

UPLOAD = "/alliance_psi.v1.Coordinator/UploadChunks"
EVALUATE_STREAM = "/alliance_psi.v1.OprfEvaluator/EvaluateStream"
LIST_ROUNDS = "/alliance_psi.v1.Coordinator/ListRounds"


def _idle(stop: threading.Event) -> Iterator[bytes]:
    """A request stream that sends nothing until ``stop`` is set."""
    stop.wait()
    yield from ()


def hold_streams(channel: grpc.Channel, method: str, count: int, stop: threading.Event) -> list[grpc.Future]:
    """Open ``count`` streams of ``method`` that send nothing until ``stop``; return their calls."""
    if method == EVALUATE_STREAM:
        stub = channel.stream_stream(method)
    else:
        stub = channel.stream_unary(method)
    return [
        stub.future(_idle(stop), timeout=120) if method == UPLOAD else stub(_idle(stop), timeout=120)
        for _ in range(count)
    ]


def refused_and_held(calls: list[grpc.Future], expected_refused: int) -> tuple[list[grpc.Future], list[grpc.Future]]:
    """Wait until ``expected_refused`` calls have ended (the server refuses at once); split them."""
    deadline = time.monotonic() + 60
    while sum(call.done() for call in calls) < expected_refused and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # Give a wrongly refused held call the chance to show up as ended.
    return [c for c in calls if c.done()], [c for c in calls if not c.done()]


def eventually_refused(channel: grpc.Channel) -> grpc.RpcError:
    """The error of the first of repeated ListRounds calls that fails (held streams are admitted
    a moment after they open); fails the test if none does within 30 s."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        error = unary_list_rounds(channel)
        if error is not None:
            return error
        time.sleep(0.2)
    pytest.fail("every call succeeded: the limit was not enforced")


def unary_list_rounds(channel: grpc.Channel) -> grpc.RpcError | None:
    stub = channel.unary_unary(
        LIST_ROUNDS,
        request_serializer=pb_coordinator.ListRoundsRequest.SerializeToString,
        response_deserializer=pb_coordinator.ListRoundsResponse.FromString,
    )
    try:
        stub(pb_coordinator.ListRoundsRequest(), timeout=30)
    except grpc.RpcError as err:
        return err
    return None


def test_idle_streams_of_one_member_do_not_starve_another(tmp_path: Path, pki) -> None:  # type: ignore[no-untyped-def]
    limits = ServerLimits(max_calls=16, max_calls_per_peer=6, max_streams_per_peer=4)
    stop = threading.Event()
    with running_alliance(tmp_path, pki, custodians=1, limits=limits) as alliance:
        round_ = alliance.admin().create_round(alliance.spec(2))
        a_coordinator = secure_channel(alliance.coordinator_address, pki.material("bank-a"), server=COORDINATOR)
        a_custodian = secure_channel(alliance.custodian_addresses[0], pki.material("bank-a"), server=custodian())
        try:
            # More streams than the server has worker threads (max_calls plus a few).
            uploads = hold_streams(a_coordinator, UPLOAD, 40, stop)
            evaluations = hold_streams(a_custodian, EVALUATE_STREAM, 40, stop)
            for calls in (uploads, evaluations):
                refused, held = refused_and_held(calls, 36)
                assert len(held) == 4 and len(refused) == 36
                for call in refused:
                    assert call.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
                    assert call.details() == "too many open streams from member:bank-a: at most 4 at a time"
            # bank-b: unary calls, then a whole submission (custodian evaluations, upload, commit).
            assert (
                unary_list_rounds(
                    secure_channel(alliance.coordinator_address, pki.material("bank-b"), server=COORDINATOR)
                )
                is None
            )
            node = alliance.node("bank-b")
            assert node.tokenize(EPOCH, ["phone"]) > 0
            submitted = node.submit(round_)
            assert submitted.set_count > 0
            assert (
                CoordinatorClient(alliance.coordinator_address, pki.material("bank-b"))
                .submission_status(round_.round_id, "bank-b")
                .state.value
                == "committed"
            )
            # bank-a's own unary calls still fit its remaining two slots.
            assert unary_list_rounds(a_coordinator) is None
        finally:
            stop.set()
            a_coordinator.close()
            a_custodian.close()


def test_a_member_at_its_call_limit_is_refused_and_others_are_not(tmp_path: Path, pki) -> None:  # type: ignore[no-untyped-def]
    limits = ServerLimits(max_calls=16, max_calls_per_peer=4, max_streams_per_peer=4)
    stop = threading.Event()
    with running_alliance(tmp_path, pki, custodians=1, limits=limits) as alliance:
        a = secure_channel(alliance.coordinator_address, pki.material("bank-a"), server=COORDINATOR)
        try:
            calls = hold_streams(a, UPLOAD, 4, stop)  # Kept: a dropped call ends.
            assert len(refused_and_held(calls, 0)[1]) == 4
            refused = eventually_refused(a)
            assert refused.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
            assert refused.details() == "too many calls in progress from member:bank-a: at most 4 at a time"
            assert (
                unary_list_rounds(
                    secure_channel(alliance.coordinator_address, pki.material("bank-b"), server=COORDINATOR)
                )
                is None
            )
        finally:
            stop.set()
            a.close()


def test_the_server_total_is_bounded(tmp_path: Path, pki) -> None:  # type: ignore[no-untyped-def]
    limits = ServerLimits(max_calls=6, max_calls_per_peer=3, max_streams_per_peer=3)
    stop = threading.Event()
    with running_alliance(tmp_path, pki, custodians=1, limits=limits) as alliance:
        channels = [
            secure_channel(alliance.coordinator_address, pki.material(m), server=COORDINATOR)
            for m in ("bank-a", "bank-c")
        ]
        try:
            held = [hold_streams(channel, UPLOAD, 3, stop) for channel in channels]  # Kept: dropped calls end.
            assert [len(refused_and_held(calls, 0)[1]) for calls in held] == [3, 3]
            refused = eventually_refused(
                secure_channel(alliance.coordinator_address, pki.material("bank-b"), server=COORDINATOR)
            )
            assert refused.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
            assert refused.details() == "server busy: 6 calls in progress, the limit; try again later"
        finally:
            stop.set()
            for channel in channels:
                channel.close()


def test_a_stream_idle_on_its_peer_is_ended_and_its_slot_freed(tmp_path: Path, pki) -> None:  # type: ignore[no-untyped-def]
    limits = ServerLimits(max_calls=16, max_calls_per_peer=4, max_streams_per_peer=4, stream_idle_seconds=1)
    stop = threading.Event()
    with running_alliance(tmp_path, pki, custodians=1, limits=limits) as alliance:
        a = secure_channel(alliance.coordinator_address, pki.material("bank-a"), server=COORDINATOR)
        try:
            for _ in range(2):  # The second time round, the slots of the ended streams are free again.
                calls = hold_streams(a, UPLOAD, 4, stop)
                for call in calls:
                    with pytest.raises(grpc.RpcError) as ended:
                        call.result(timeout=60)
                    assert ended.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
                    assert ended.value.details() == "the server ended this call: it waited on its peer for over 1 s"
        finally:
            stop.set()
            a.close()


def test_calls_per_second_are_bounded_per_peer(tmp_path: Path, pki) -> None:  # type: ignore[no-untyped-def]
    limits = ServerLimits(calls_per_second_per_peer=0.01)  # One call, then one per 100 s.
    with running_alliance(tmp_path, pki, custodians=1, limits=limits) as alliance:
        a = secure_channel(alliance.custodian_addresses[0], pki.material("bank-a"), server=custodian())
        b = secure_channel(alliance.custodian_addresses[0], pki.material("bank-b"), server=custodian())
        epoch = a.unary_unary(
            "/alliance_psi.v1.OprfEvaluator/GetEpoch",
            request_serializer=pb_custodian.GetEpochRequest.SerializeToString,
            response_deserializer=pb_custodian.EpochInfo.FromString,
        )
        assert epoch(pb_custodian.GetEpochRequest(), timeout=30).key_epoch == EPOCH
        with pytest.raises(grpc.RpcError) as refused:
            epoch(pb_custodian.GetEpochRequest(), timeout=30)
        assert refused.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert refused.value.details() == "too many calls from member:bank-a: at most 0.01 per second"
        other = b.unary_unary(
            "/alliance_psi.v1.OprfEvaluator/GetEpoch",
            request_serializer=pb_custodian.GetEpochRequest.SerializeToString,
            response_deserializer=pb_custodian.EpochInfo.FromString,
        )
        assert other(pb_custodian.GetEpochRequest(), timeout=30).key_epoch == EPOCH


def test_a_client_refused_for_the_call_rate_pauses_and_tries_again(tmp_path: Path, pki) -> None:  # type: ignore[no-untyped-def]
    # One call per second, a burst of two: the third call at once is refused by the server's
    # admission limit, which did nothing; the client waits (0.5 s, then 2 s) and its call succeeds.
    # A client that may not retry gets the typed refusal, naming the limit.
    limits = ServerLimits(calls_per_second_per_peer=1)
    with running_alliance(tmp_path, pki, custodians=1, limits=limits) as alliance:
        patient = CoordinatorClient(alliance.coordinator_address, pki.material("bank-a"), RetryPolicy(base=0.5))
        assert [patient.list_rounds() for _ in range(4)] == [[]] * 4
        impatient = CoordinatorClient(alliance.coordinator_address, pki.material("bank-b"), RetryPolicy(attempts=1))
        impatient.list_rounds()
        impatient.list_rounds()
        with pytest.raises(ServerBusy, match="too many calls from member:bank-b: at most 1 per second"):
            impatient.list_rounds()
