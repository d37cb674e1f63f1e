"""WatchAlerts and AckAlerts over real mTLS on loopback: delivery, resume, and their abuse.

Members' deltas are synthetic (``tests.helpers.continuous``) but travel the real way: chunks and
commits over gRPC to the real coordinator, whose alerts each watching member checks with
``verify_alert`` against the coordinator's key. Nothing here waits on a clock to assert anything:
streams are read until the alerts expected arrive (the test's timeout is the only clock).
"""

from __future__ import annotations

import contextlib
import itertools
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from alliance_psi.config import ServerLimits
from alliance_psi.errors import InvalidRequest, LimitExceeded, NotAuthorized, NotFound
from alliance_psi.protocol.alerts import Alert, AlertBatch, AlertKind, verify_alert
from alliance_psi.protocol.coordinator import RoundSpec
from alliance_psi.protocol.model import NO_DEADLINE, Role, RoundKind
from alliance_psi.services.clients import CoordinatorClient
from alliance_psi.services.pki import spki_sha256
from alliance_psi.services.tls import secure_channel
from tests.helpers.continuous import DeltaSender, label, token
from tests.integration.services.conftest import AlliancePki
from tests.integration.services.harness import (
    COORDINATOR,
    MEMBERS,
    Alliance,
    enrol_all,
    running_alliance,
    sqlite_engine,
)

pytestmark = pytest.mark.timeout(180)

T1, T2, T3 = token(1), token(2), token(3)
# Watches send no heartbeat within a test, unless a test asks for one: a stream stays quiet.
QUIET = {"alert_heartbeat": 3600.0, "alert_poll": 0.2}


@contextlib.contextmanager
def alliance_with_scope(
    tmp_path: Path,
    pki: AlliancePki,
    *,
    limits: ServerLimits | None = None,
    also_enrolled: tuple[str, ...] = (),
    **options: object,
) -> Iterator[tuple[Alliance, str]]:
    """The harness's alliance with a continuous scope (threshold 2, labels shared) for its members;
    ``also_enrolled`` members are enrolled at the coordinator but not invited."""
    engine = sqlite_engine(tmp_path / "coordinator.db")
    enrol_all(engine, pki, also_enrolled)
    with running_alliance(
        tmp_path, pki, coordinator_engine=engine, limits=limits, coordinator_options={**QUIET, **options}
    ) as alliance:
        with alliance.admin() as admin:
            scope = admin.create_round(
                RoundSpec(
                    "fraud watch", 2, "epoch-test", NO_DEADLINE, ("phone",), MEMBERS, True, kind=RoundKind.CONTINUOUS
                )
            )
        yield alliance, scope.round_id


def client(alliance: Alliance, member: str) -> CoordinatorClient:
    return CoordinatorClient(alliance.coordinator_address, alliance.pki.material(member))  # type: ignore[attr-defined]


def sender(alliance: Alliance, scope_id: str, member: str) -> DeltaSender:
    return DeltaSender(client(alliance, member), member, scope_id)


def read_alerts(
    alliance: Alliance, stream: Iterator[AlertBatch], member: str, count: int
) -> tuple[list[Alert], list[AlertBatch]]:
    """Read ``stream`` until ``count`` alerts came; each verified as the member's node would."""
    pin = spki_sha256(alliance.pki.issued[member].cert_pem)  # type: ignore[attr-defined]
    alerts: list[Alert] = []
    batches: list[AlertBatch] = []
    for batch in stream:
        batches.append(batch)
        alerts += [
            verify_alert(alliance.signing_key.public_key, a, member_id=member, member_key_pin=pin) for a in batch.alerts
        ]
        if len(alerts) >= count:
            break
    return alerts, batches


def match_both(alliance: Alliance, scope_id: str) -> None:
    """bank-a and bank-b both hold T1: a MATCH for each."""
    sender(alliance, scope_id, "bank-a").send({T1: label(1), T2: label(2)}, replace=True)
    sender(alliance, scope_id, "bank-b").send({T1: label(11)}, replace=True)


def test_alerts_stream_to_their_holders_and_resume_from_the_last_acknowledgement(
    tmp_path: Path, pki: AlliancePki
) -> None:
    with alliance_with_scope(tmp_path, pki) as (alliance, scope_id), client(alliance, "bank-a") as a:
        match_both(alliance, scope_id)
        with contextlib.closing(a.watch_alerts()) as stream:
            first, _ = read_alerts(alliance, stream, "bank-a", 1)
        assert [(x.sequence, x.kind, x.match_token, x.holder_count) for x in first] == [(1, AlertKind.MATCH, T1, 2)]
        # Disconnected without acknowledging; bank-c joins T1 and bank-b withdraws meanwhile.
        sender(alliance, scope_id, "bank-c").send({T1: label(21), T2: label(22)}, replace=True)
        with contextlib.closing(a.watch_alerts()) as stream:
            again, _ = read_alerts(alliance, stream, "bank-a", 3)
        assert [(x.sequence, x.kind, x.match_token) for x in again] == [
            (1, AlertKind.MATCH, T1),  # Not acknowledged: sent again.
            (2, AlertKind.JOINED, T1),
            (3, AlertKind.MATCH, T2),
        ]
        assert a.ack_alerts(2) == (2, 3)
        with contextlib.closing(a.watch_alerts()) as stream:
            rest, _ = read_alerts(alliance, stream, "bank-a", 1)
        assert [x.sequence for x in rest] == [3]  # Never anything at or below the acknowledgement.
        with contextlib.closing(a.watch_alerts(scope_id, from_sequence=3)) as stream:
            assert [x.sequence for x in read_alerts(alliance, stream, "bank-a", 1)[0]] == [3]


def test_a_member_that_holds_nothing_receives_nothing_and_sees_only_its_own(tmp_path: Path, pki: AlliancePki) -> None:
    with alliance_with_scope(tmp_path, pki, alert_heartbeat=0.2) as (alliance, scope_id):
        match_both(alliance, scope_id)
        with client(alliance, "bank-c") as c, contextlib.closing(c.watch_alerts()) as stream:
            heartbeats = list(itertools.islice(stream, 3))
        assert [(b.alerts, b.head_sequence, b.acked_sequence) for b in heartbeats] == [((), 0, 0)] * 3
        with client(alliance, "bank-b") as b, contextlib.closing(b.watch_alerts()) as stream:
            mine, _ = read_alerts(alliance, stream, "bank-b", 1)  # verify_alert: each is bank-b's.
        assert [x.member_id for x in mine] == ["bank-b"]


def test_a_watch_waiting_for_alerts_is_not_idle_and_gets_the_next_alert(tmp_path: Path, pki: AlliancePki) -> None:
    # The reaper ends calls that wait on their peer for over a second here; a watch waits on the
    # coordinator, so it stays, with no message on it until the next alert (no heartbeat).
    limits = ServerLimits(stream_idle_seconds=1.0)
    with alliance_with_scope(tmp_path, pki, limits=limits) as (alliance, scope_id), client(alliance, "bank-a") as a:
        with contextlib.closing(a.watch_alerts()) as stream:  # The call is open from here.
            sender(alliance, scope_id, "bank-a").send({T1: label(1)}, replace=True)
            with client(alliance, "bank-c") as c:  # Other calls come and go while it waits.
                for _ in range(10):
                    c.list_rounds()
            time.sleep(4 * limits.stream_idle_seconds)  # The reaper's chances (it looks every second).
            sender(alliance, scope_id, "bank-b").send({T1: label(11)}, replace=True)
            alerts, batches = read_alerts(alliance, stream, "bank-a", 1)
        assert [x.kind for x in alerts] == [AlertKind.MATCH] and len(batches) == 1


def test_a_member_may_not_hold_more_watches_than_its_stream_slots(tmp_path: Path, pki: AlliancePki) -> None:
    limits = ServerLimits(max_streams_per_peer=2)
    with alliance_with_scope(tmp_path, pki, limits=limits, alert_heartbeat=0.2) as (alliance, _):
        with client(alliance, "bank-a") as a, client(alliance, "bank-b") as b:
            streams = [a.watch_alerts() for _ in range(2)]
            for stream in streams:
                next(stream)  # Each is open: its first heartbeat came.
            with pytest.raises(LimitExceeded, match="too many open streams from member:bank-a: at most 2"):
                next(a.watch_alerts())
            with contextlib.closing(b.watch_alerts()) as other:  # Another member's slots are its own.
                assert next(other).alerts == ()
            for stream in streams:
                stream.close()


def test_a_forged_from_sequence_is_refused(tmp_path: Path, pki: AlliancePki) -> None:
    with alliance_with_scope(tmp_path, pki) as (alliance, scope_id), client(alliance, "bank-a") as a:
        match_both(alliance, scope_id)
        assert a.ack_alerts(1) == (1, 1)
        with pytest.raises(InvalidRequest, match="alerts up to 1 are acknowledged and never sent again"):
            next(a.watch_alerts(from_sequence=1))
        with pytest.raises(InvalidRequest, match="from_sequence: 18446744073709551615 is beyond the next alert"):
            next(a.watch_alerts(from_sequence=2**64 - 1))
        with pytest.raises(InvalidRequest, match="up_to_sequence: 9 is beyond the last alert, 1"):
            a.ack_alerts(9)


def test_another_members_scope_is_not_found_as_a_missing_one(tmp_path: Path, pki: AlliancePki) -> None:
    pki.issue(Role.MEMBER, "bank-outside")
    with alliance_with_scope(tmp_path, pki, also_enrolled=("bank-outside",)) as (alliance, scope_id):
        with client(alliance, "bank-outside") as outside:
            with pytest.raises(NotFound) as not_invited:
                next(outside.watch_alerts(scope_id))
            with pytest.raises(NotFound) as missing:
                next(outside.watch_alerts("s-no-such-scope"))
            assert str(not_invited.value).replace(scope_id, "X") == str(missing.value).replace("s-no-such-scope", "X")
        with alliance.admin() as admin, pytest.raises(NotAuthorized, match="role admin may not call WatchAlerts"):
            next(admin.watch_alerts())


def test_an_unenrolled_callers_garbage_is_refused_before_it_is_decoded(tmp_path: Path, pki: AlliancePki) -> None:
    pki.issue(Role.MEMBER, "bank-stranger")
    with alliance_with_scope(tmp_path, pki) as (alliance, _):
        channel = secure_channel(alliance.coordinator_address, pki.material("bank-stranger"), server=COORDINATOR)
        watch = channel.unary_stream("/alliance_psi.v1.Coordinator/WatchAlerts")
        with pytest.raises(grpc.RpcError) as refused:
            next(iter(watch(b"\xff\xff\xff not a request", timeout=30)))
        assert refused.value.code() in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED)
        channel.close()


def test_alerts_come_in_bounded_pages(tmp_path: Path, pki: AlliancePki) -> None:
    with alliance_with_scope(tmp_path, pki) as (alliance, scope_id), client(alliance, "bank-a") as a:
        alliance.coordinator_role.feed.page_alerts = 2
        tokens = {token(i): label(i) for i in range(10, 15)}
        sender(alliance, scope_id, "bank-a").send(tokens, replace=True)
        sender(alliance, scope_id, "bank-b").send({t: label(100) for t in tokens}, replace=True)
        with contextlib.closing(a.watch_alerts()) as stream:
            alerts, batches = read_alerts(alliance, stream, "bank-a", 5)
        assert [x.sequence for x in alerts] == [1, 2, 3, 4, 5]
        assert [len(b.alerts) for b in batches] == [2, 2, 1]
        alliance.coordinator_role.feed.page_bytes = 1  # Smaller than any alert: one a message.
        with contextlib.closing(a.watch_alerts()) as stream:
            alerts, batches = read_alerts(alliance, stream, "bank-a", 5)
        assert [len(b.alerts) for b in batches] == [1, 1, 1, 1, 1]
