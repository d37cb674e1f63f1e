"""A member node's deltas to a continuous scope (``MemberRole.submit_delta``) against the real
coordinator over mTLS: each delta goes under the member's next commit sequence and carries only
what changed since its last commit (imports and withdrawals alike); the holders' alerts come out
of the coordinator's outbox (read with the ``WatchAlerts`` client, verified as a node would); bad
input is refused before anything is computed or sent.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from alliance_psi.errors import InvalidRequest, NotFound, RoundClosed
from alliance_psi.protocol.alerts import Alert, AlertKind, verify_alert
from alliance_psi.protocol.coordinator import RoundSpec
from alliance_psi.protocol.member import MemberRole
from alliance_psi.protocol.model import NO_DEADLINE, RoundKind, SubmissionState
from alliance_psi.protocol.node_alerts import AppliedAlert
from alliance_psi.services.clients import CoordinatorClient
from alliance_psi.services.pki import spki_sha256
from alliance_psi.storage import MemberRepository
from alliance_psi.storage.schema import member_pending_state, submissions, token_cache
from tests.integration.services.conftest import AlliancePki
from tests.integration.services.harness import EPOCH, MEMBERS, Alliance, Planted, load, phone, running_alliance

pytestmark = pytest.mark.timeout(300)

NOBODY = Planted({member: set() for member in MEMBERS})
QUIET = {"alert_heartbeat": 3600.0, "alert_poll": 0.2}


def scope_spec(invited: tuple[str, ...] = MEMBERS, kind: RoundKind = RoundKind.CONTINUOUS) -> RoundSpec:
    return RoundSpec("fraud watch", 2, EPOCH, NO_DEADLINE, ("phone",), invited, True, kind=kind)


@contextlib.contextmanager
def alliance_with_scope(tmp_path: Path, pki: AlliancePki) -> Iterator[tuple[Alliance, str]]:
    """The harness's alliance, members holding nothing yet, and a continuous scope at threshold 2."""
    with running_alliance(tmp_path, pki, planted=NOBODY, coordinator_options=QUIET) as alliance:
        with alliance.admin() as admin:
            yield alliance, admin.create_round(scope_spec()).round_id


def alerts_of(alliance: Alliance, member: str, count: int) -> list[Alert]:
    """``member``'s first ``count`` alerts from the coordinator's outbox, each verified."""
    pin = spki_sha256(alliance.pki.issued[member].cert_pem)  # type: ignore[attr-defined]
    found: list[Alert] = []
    tls = alliance.pki.material(member)  # type: ignore[attr-defined]
    deadline = time.monotonic() + 240  # Heartbeats come every 15 s: a missing alert fails, never hangs.
    with CoordinatorClient(alliance.coordinator_address, tls) as client, contextlib.closing(client.watch_alerts()) as s:
        for batch in s:
            found += [
                verify_alert(alliance.signing_key.public_key, a, member_id=member, member_key_pin=pin)
                for a in batch.alerts
            ]
            if len(found) >= count:
                return found
            if time.monotonic() > deadline:
                break
    raise AssertionError(f"the stream of {member}'s alerts ended or stalled after {len(found)} of {count}")


def own(node: MemberRole, alert: Alert | AppliedAlert) -> str:
    """The member's own identifier behind an alert's token (what its node maps it to)."""
    with node.uow.reading() as tx:
        return tx.repo.identifiers_for_tokens(EPOCH, [alert.match_token])[alert.match_token].canonical


def withdraw(alliance: Alliance, member: str, value: str) -> None:
    with alliance.member_engines[member].begin() as conn:
        assert MemberRepository(conn).withdraw("phone", value)


def test_deltas_commit_in_sequence_with_only_the_changes_and_alert_the_holders(
    tmp_path: Path, pki: AlliancePki
) -> None:
    with alliance_with_scope(tmp_path, pki) as (alliance, scope_id):
        a, b, c = (alliance.node(m) for m in MEMBERS)
        load(alliance.member_engines["bank-a"], [phone(1), phone(2)], "wool_party")
        first = a.submit_delta(scope_id)
        assert (first.sequence, first.delta_count, first.replaced, first.set_count) == (1, 2, True, 2)
        load(alliance.member_engines["bank-b"], [phone(2), phone(3)], "loan_intermediary")
        assert b.submit_delta(scope_id).sequence == 1
        [match_a] = alerts_of(alliance, "bank-a", 1)
        [match_b] = alerts_of(alliance, "bank-b", 1)
        assert (match_a.kind, match_a.holder_count, own(a, match_a)) == (AlertKind.MATCH, 2, phone(2))
        assert (match_b.kind, own(b, match_b)) == (AlertKind.MATCH, phone(2))

        # Nothing changed: nothing is committed, and the sequence stays.
        assert a.submit_delta(scope_id).sequence == 0
        assert a.coordinator.submission_status(scope_id, "bank-a").commit_sequence == 1

        # A new identifier is sent alone, as the member's next delta; bank-a is told that bank-c joined.
        load(alliance.member_engines["bank-a"], [phone(4)], "wool_party")
        second = a.submit_delta(scope_id)
        assert (second.sequence, second.delta_count, second.replaced, second.set_count) == (2, 1, False, 3)
        load(alliance.member_engines["bank-c"], [phone(2), phone(4)], "proxy_rights_defense")
        assert c.submit_delta(scope_id).sequence == 1
        joined = alerts_of(alliance, "bank-a", 3)[1:]
        assert sorted((x.kind, own(a, x), x.holder_count) for x in joined) == sorted(
            [(AlertKind.JOINED, phone(2), 3), (AlertKind.MATCH, phone(4), 2)]
        )

        # A withdrawal travels as a delta of one removal; the remaining holders are told.
        withdraw(alliance, "bank-a", phone(2))
        third = a.submit_delta(scope_id)
        assert (third.sequence, third.delta_count, third.replaced, third.set_count) == (3, 1, False, 2)
        withdrawn = alerts_of(alliance, "bank-b", 3)[1:]
        assert [(x.kind, own(b, x), x.holder_count) for x in withdrawn] == [
            (AlertKind.JOINED, phone(2), 3),
            (AlertKind.WITHDRAWN, phone(2), 2),
        ]
        withdraw(alliance, "bank-b", phone(2))
        assert b.submit_delta(scope_id).sequence == 2
        retracted = alerts_of(alliance, "bank-c", 4)
        assert (retracted[-1].kind, own(c, retracted[-1])) == (AlertKind.RETRACTED, phone(2))
        status = a.coordinator.submission_status(scope_id, "bank-a")
        assert (status.state, status.commit_sequence, status.set_count) == (SubmissionState.COMMITTED, 3, 2)


def nothing_started(alliance: Alliance, member: str) -> None:
    """No token computed, no delta pending at the node, nothing staged at the coordinator."""
    with alliance.member_engines[member].connect() as conn:
        assert conn.execute(select(func.count()).select_from(token_cache)).scalar_one() == 0
        assert conn.execute(select(func.count()).select_from(member_pending_state)).scalar_one() == 0
    with alliance.coordinator_engine.connect() as conn:
        where = submissions.c.member_id == member
        assert conn.execute(select(func.count()).select_from(submissions).where(where)).scalar_one() == 0


def test_a_delta_to_a_scope_it_may_not_send_to_is_refused_before_anything_is_computed(
    tmp_path: Path, pki: AlliancePki
) -> None:
    with alliance_with_scope(tmp_path, pki) as (alliance, scope_id), alliance.admin() as admin:
        load(alliance.member_engines["bank-a"], [phone(1)], "wool_party")
        a = alliance.node("bank-a")
        with pytest.raises(NotFound, match="no round s-no-such-scope"):
            a.submit_delta("s-no-such-scope")
        elsewhere = admin.create_round(scope_spec(("bank-b", "bank-c"))).round_id
        with pytest.raises(NotFound, match=f"no round {elsewhere}"):
            a.submit_delta(elsewhere)
        batch = admin.create_round(alliance.spec(2)).round_id
        with pytest.raises(InvalidRequest, match=f"round {batch} is a batch round, not a continuous scope"):
            a.submit_delta(batch)
        with pytest.raises(InvalidRequest, match=f"round {scope_id} is a continuous scope"):
            a.join(scope_id, wait=0)
        admin.close_round(scope_id)
        with pytest.raises(RoundClosed, match=f"scope {scope_id} is closed \\(matched\\): it takes no more deltas"):
            a.submit_delta(scope_id)
        nothing_started(alliance, "bank-a")
