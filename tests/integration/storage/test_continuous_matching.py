"""Continuous scopes on SQLite and PostgreSQL: each commit matched at once into signed alerts.

Each test drives the real ``CoordinatorRole`` over the real storage (the ``engine`` fixture runs it
on both backends) with synthetic members' deltas (``tests.helpers.continuous``), and reads the
outbox as a member node would: every alert is checked with ``verify_alert``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event

from alliance_psi.crypto.signing import SigningKey
from alliance_psi.errors import Conflict, InvalidRequest, NotFound, SetMismatch
from alliance_psi.protocol import alert_outbox
from alliance_psi.protocol.alert_outbox import release_time
from alliance_psi.protocol.alerts import NO_TOKEN, Alert, AlertKind, SignedAlert, verify_alert
from alliance_psi.protocol.continuous import AlertDraft, TokenChange
from alliance_psi.protocol.coordinator import Commit, CoordinatorRole, RoundSpec
from alliance_psi.protocol.label_cap import rank_holders
from alliance_psi.protocol.model import NO_DEADLINE, Identity, Role, RoundKind, RoundState
from alliance_psi.protocol.result_codec import LeafVerifier, decode_header
from alliance_psi.services.coordinator import sql_unit_of_work
from alliance_psi.services.state_metrics import CoordinatorStateCollector
from alliance_psi.storage import create_schema, make_engine
from tests.helpers.continuous import DeltaSender, RoleCalls, label, token
from tests.helpers.memory_ports import FakeClock

ADMIN = Identity("admin", Role.ADMIN)
MEMBERS = ("bank-a", "bank-b", "bank-c", "bank-d")
PIN = bytes(range(32))


@dataclass
class Scope:
    role: CoordinatorRole
    key: SigningKey
    clock: FakeClock
    scope_id: str
    senders: dict[str, DeltaSender]

    def alerts(self, member: str) -> list[Alert]:
        """Every alert of ``member`` still in the outbox, verified as its node would."""
        with self.role.uow() as tx:
            stored = tx.alerts.read(member, 0, max_alerts=10_000, max_bytes=10**9)
        return [
            verify_alert(
                self.key.public_key,
                SignedAlert(a.alert, a.signature, self.key.key_id),
                member_id=member,
                member_key_pin=PIN,
            )
            for a in stored
        ]

    def kinds(self, member: str) -> list[tuple[int, AlertKind, bytes, int]]:
        return [(a.sequence, a.kind, a.match_token, a.holder_count) for a in self.alerts(member)]


def make_scope(engine: Engine, threshold: int = 2, *, share_labels: bool = True, **options: object) -> Scope:
    key, clock = SigningKey.generate(), FakeClock()
    interval = int(options.pop("interval", 0))  # type: ignore[call-overload]
    label_cap = int(options.pop("label_cap", 0))  # type: ignore[call-overload]
    role = CoordinatorRole(
        sql_unit_of_work(engine),
        key,
        known_types=["phone"],
        clock=clock,
        reader=sql_unit_of_work(engine, reading=True),
        key_pins=lambda member: PIN,
        **options,  # type: ignore[arg-type]
    )
    scope = role.create_round(
        ADMIN,
        RoundSpec(
            "standing watch",
            threshold,
            "2026-01",
            NO_DEADLINE,
            ("phone",),
            MEMBERS,
            share_labels,
            kind=RoundKind.CONTINUOUS,
            min_interval_seconds=interval,
            label_cap=label_cap,
        ),
    )
    senders = {m: DeltaSender(RoleCalls(role, m), m, scope.round_id) for m in MEMBERS}
    return Scope(role, key, clock, scope.round_id, senders)


@pytest.fixture
def scope(engine: Engine) -> Iterator[Scope]:
    yield make_scope(engine)


T1, T2, T3 = token(1), token(2), token(3)


def test_each_event_alerts_exactly_the_holders_it_concerns(scope: Scope) -> None:
    a, b, c = (scope.senders[m] for m in MEMBERS[:3])
    a.send({T1: label(1), T2: label(2)}, replace=True)
    assert scope.kinds("bank-a") == []  # Alone on its tokens: nothing yet.

    b.send({T1: label(11), T3: label(13)}, replace=True)  # T1 reaches the threshold.
    assert scope.kinds("bank-a") == [(1, AlertKind.MATCH, T1, 2)]
    assert scope.kinds("bank-b") == [(1, AlertKind.MATCH, T1, 2)]
    assert [p.sealed for p in scope.alerts("bank-a")[0].peer_labels] == [label(11)]
    assert [p.sealed for p in scope.alerts("bank-b")[0].peer_labels] == [label(1)]

    c.send({T1: label(21)})  # Joins a matched token.
    assert scope.kinds("bank-c") == [(1, AlertKind.MATCH, T1, 3)]
    assert scope.kinds("bank-a")[-1] == (2, AlertKind.JOINED, T1, 3)
    assert scope.kinds("bank-b")[-1] == (2, AlertKind.JOINED, T1, 3)
    assert sorted(p.sealed for p in scope.alerts("bank-a")[-1].peer_labels) == sorted([label(11), label(21)])

    b.send({T1: label(11, version=2)})  # Relabels.
    assert scope.kinds("bank-a")[-1] == (3, AlertKind.RELABELED, T1, 3)
    assert label(11, version=2) in [p.sealed for p in scope.alerts("bank-c")[-1].peer_labels]
    assert len(scope.alerts("bank-b")) == 2  # Its own relabel tells it nothing.

    c.send(removals=[T1])  # Withdrawn, still at the threshold.
    assert scope.kinds("bank-a")[-1] == (4, AlertKind.WITHDRAWN, T1, 2)
    assert scope.kinds("bank-b")[-1] == (3, AlertKind.WITHDRAWN, T1, 2)
    assert len(scope.alerts("bank-c")) == 2  # The member that withdrew gets nothing.

    b.send(removals=[T1])  # Below the threshold now: a retraction for the remaining holder.
    assert scope.kinds("bank-a")[-1] == (5, AlertKind.RETRACTED, T1, 1)
    assert [a.sequence for a in scope.alerts("bank-a")] == [1, 2, 3, 4, 5]
    assert len(scope.alerts("bank-b")) == 3
    assert scope.alerts("bank-d") == []  # Holds nothing, hears nothing.
    assert {a.match_token for m in MEMBERS for a in scope.alerts(m)} == {T1}


def test_a_commit_reads_only_the_changes_that_may_alert(engine: Engine) -> None:
    # At threshold 3 a join concerns a token held by 2 before it, a relabel or a withdrawal one
    # held by 3 or more: only those changes leave the database; a delta's other tokens (held by
    # nobody else, or by too few) cost the commit no Python work.
    scope = make_scope(engine, threshold=3)
    seen: list[list[tuple[bytes, int, int]]] = []
    commit = scope.role.outbox.commit

    def recorded(tx: Any, found: Any, committer: str, changes: Sequence[TokenChange], now: Any) -> Any:
        seen.append([(c.token, c.holders_before, c.holders) for c in changes])
        return commit(tx, found, committer, changes, now)

    scope.role.outbox.commit = recorded  # type: ignore[method-assign]
    a, b, c, d = (scope.senders[m] for m in MEMBERS)
    a.send({T1: label(1), T2: label(2), **{token(i): label(i) for i in range(100, 110)}}, replace=True)
    b.send({T1: label(11), T2: label(12)}, replace=True)
    assert seen == [[], []]  # Nothing reached 2 holders before a commit.
    c.send({T1: label(21), T3: label(3)})
    assert seen[-1] == [(T1, 2, 3)]  # T1 reaches 3; T3 is c's alone.
    b.send({T1: label(11, version=2), T2: label(12, version=2)})
    assert seen[-1] == [(T1, 3, 3)]  # A relabel at 3; T2 is held by 2.
    a.send(removals=[T1, T2, token(100)])
    assert seen[-1] == [(T1, 3, 2)]  # Withdrawn from 3; T2 from 2 and token 100 alone do not alert.
    d.send({T1: label(31), T3: label(33)}, replace=True)
    assert seen[-1] == [(T1, 2, 3)]  # A whole set: T1 back to 3; T3 goes from 1 to 2.
    c.send({T3: label(23)}, replace=True)
    assert seen[-1] == [(T1, 3, 2)]  # c's whole set leaves T1 and relabels T3 (held by 2).
    assert [a.kind for a in scope.alerts("bank-d")] == [AlertKind.MATCH, AlertKind.RETRACTED]


def test_an_alert_says_what_a_result_leaf_says(scope: Scope) -> None:
    a, b = scope.senders["bank-a"], scope.senders["bank-b"]
    b.share_name = True
    a.send({T1: label(1)}, replace=True)
    b.send({T1: label(2)}, replace=True)
    alert = scope.alerts("bank-a")[0]
    assert (alert.scope_id, alert.member_id, alert.key_epoch, alert.threshold) == (
        scope.scope_id,
        "bank-a",
        "2026-01",
        2,
    )
    assert [(p.sealed, p.sealer) for p in alert.peer_labels] == [(label(2), "bank-b")]  # Attested: chose to be named.
    assert scope.alerts("bank-b")[0].peer_labels[0].sealer is None  # bank-a did not choose.
    assert alert.member_key_pin == PIN and alert.released_at == scope.clock.now


def test_alerts_and_snapshots_carry_at_most_the_scopes_label_cap(engine: Engine) -> None:
    # Four holders of T1 and T2 in a scope capped at 1 label: every alert carries one, signed with
    # the cap, and only the labels of the first two holders in the coordinator's order circulate.
    scope = make_scope(engine, label_cap=1, max_alert_backlog=2)
    seen: dict[str, list[Alert]] = {m: [] for m in MEMBERS[1:]}
    for i, member in enumerate(MEMBERS):
        scope.senders[member].send({T1: label(i), T2: label(10 + i)}, replace=True)
        for other, applied in seen.items():  # Each but bank-a applies and acknowledges what it got.
            if new := scope.alerts(other):
                applied.extend(new)
                scope.role.feed.ack(Identity(other, Role.MEMBER), new[-1].sequence)
    for member, alerts in seen.items():
        assert alerts and all(a.label_cap == 1 and len(a.peer_labels) == 1 for a in alerts), member
    latest = [a for alerts in seen.values() for a in alerts if a.match_token == T1 and a.holder_count == 4]
    # Which labels those are follows the scope's secret order: bank-b, -c and -d see the other one
    # of the first two if they are among them, else the first (only one label, if bank-a is first).
    with scope.role.uow() as tx:
        first, second = rank_holders(tx.rounds.get_round(scope.scope_id).label_salt, T1, list(MEMBERS))[:2]
    expected = {m: second if m == first else first for m in MEMBERS[1:]}
    labels_of = {m: label(i) for i, m in enumerate(MEMBERS)}
    assert len(latest) == 3 and {a.member_id: a.peer_labels[0].sealed for a in latest} == {
        m: labels_of[seen_] for m, seen_ in expected.items()
    }
    # bank-a overflowed at its third alert; once it acknowledges, its snapshot is capped as well.
    assert [a.kind for a in scope.alerts("bank-a")] == [AlertKind.MATCH, AlertKind.MATCH, AlertKind.OVERFLOW]
    scope.role.feed.ack(Identity("bank-a", Role.MEMBER), 3)
    snapshot = [a for a in scope.alerts("bank-a") if a.kind is AlertKind.SNAPSHOT]
    assert [(a.match_token, a.holder_count, len(a.peer_labels), a.label_cap) for a in snapshot] == [
        (T1, 4, 1, 1),
        (T2, 4, 1, 1),
    ]


def test_a_holder_without_a_label_gets_at_most_the_cap_when_cap_plus_one_are_labelled(engine: Engine) -> None:
    # Capped at 2: three holders of T1 label it, bank-d holds it without a label. Its final result
    # leaf carries the first 2 labels in the coordinator's order, as its alerts do: 3 would be over
    # the signed cap, and its node would refuse the whole result (capcheck finding).
    scope = make_scope(engine, label_cap=2)
    for i, member in enumerate(MEMBERS[:3]):
        scope.senders[member].send({T1: label(i)}, replace=True)
    scope.senders["bank-d"].send({T1: None}, replace=True)
    scope.role.close_round(ADMIN, scope.scope_id)
    for member in MEMBERS:
        header, pages = scope.role.get_result(Identity(member, Role.MEMBER), scope.scope_id)
        verifier = LeafVerifier(decode_header(header.header))
        matches = [match for page in pages for match in verifier.add(page)]
        verifier.finish()
        assert verifier.header.label_cap == 2 and [len(m.peer_labels) for m in matches] == [2], member
    alert = [a for a in scope.alerts("bank-d") if a.holder_count == 4][-1]
    leaf_labels = {p.sealed for p in matches[0].peer_labels}  # bank-d's, the last in MEMBERS.
    assert {p.sealed for p in alert.peer_labels} == leaf_labels


def test_a_scope_without_labels_alerts_with_counts_only(engine: Engine) -> None:
    scope = make_scope(engine, share_labels=False)
    scope.senders["bank-a"].send({T1: None}, replace=True)
    scope.senders["bank-b"].send({T1: None}, replace=True)
    assert [(a.kind, a.holder_count, a.peer_labels) for a in scope.alerts("bank-a")] == [(AlertKind.MATCH, 2, ())]


def test_a_whole_set_sent_again_alerts_only_for_what_changed(scope: Scope) -> None:
    a, b = scope.senders["bank-a"], scope.senders["bank-b"]
    a.send({T1: label(1), T2: label(2)}, replace=True)
    b.send({T1: label(11), T2: label(12)}, replace=True)
    before = scope.kinds("bank-a")
    b.send({T1: label(11), T3: label(13)}, replace=True)  # T2 left, T1 unchanged, T3 new.
    assert scope.kinds("bank-a") == [*before, (3, AlertKind.RETRACTED, T2, 1)]
    assert len(scope.alerts("bank-b")) == 2


def test_a_retried_commit_alerts_nobody_twice(scope: Scope) -> None:
    a, b = scope.senders["bank-a"], scope.senders["bank-b"]
    a.send({T1: label(1)}, replace=True)
    b.send({T1: label(2)}, replace=True)
    status = b.calls.submission_status(scope.scope_id, "bank-b")  # type: ignore[attr-defined]
    retried = Commit(
        scope.scope_id, status.item_count, status.digest, status.set_count, status.set_digest, True, sequence=1
    )
    again = b.calls.commit(retried, "bank-b")  # type: ignore[attr-defined]
    assert again.commit_sequence == 1
    assert len(scope.alerts("bank-a")) == 1 and len(scope.alerts("bank-b")) == 1


def test_a_stale_or_skipped_sequence_is_refused(scope: Scope) -> None:
    a = scope.senders["bank-a"]
    a.send({T1: label(1)}, replace=True)
    a.sequence = 0  # A chunk of delta 1 again, after it was committed.
    with pytest.raises(Conflict, match="delta 1 is already committed: the next delta of this member to the scope is 2"):
        a.send({T2: label(2)})
    a.sequence = 5
    with pytest.raises(Conflict, match="delta 6: the next delta of this member to the scope is 2"):
        a.send({T2: label(2)})


def test_a_commit_refused_for_its_content_discards_the_staged_delta(scope: Scope) -> None:
    a = scope.senders["bank-a"]
    a.send({T1: label(1)}, replace=True)
    a.send({T2: label(2)}, commit=False)
    wrong = Commit(scope.scope_id, 1, b"\x00" * 32, 2, b"\x00" * 32, False, sequence=2)
    with pytest.raises(Conflict, match="digest mismatch .*; the staged delta is discarded"):
        a.calls.commit(wrong, "bank-a")  # type: ignore[attr-defined]
    status = a.calls.submission_status(scope.scope_id, "bank-a")  # type: ignore[attr-defined]
    assert (status.chunks, status.commit_sequence, status.set_count) == ((), 1, 1)
    a.send({T2: label(2)})  # Sent again from its first chunk: it commits.
    assert a.calls.submission_status(scope.scope_id, "bank-a").commit_sequence == 2  # type: ignore[attr-defined]


def test_a_set_the_coordinator_does_not_hold_is_refused_and_nothing_alerts(scope: Scope) -> None:
    a, b = scope.senders["bank-a"], scope.senders["bank-b"]
    a.send({T1: label(1)}, replace=True)
    b.held = {T2: label(2)}  # b believes it holds a set it never sent.
    b.sequence = 0
    with pytest.raises(SetMismatch):
        b.send({T1: label(3)})
    assert scope.alerts("bank-a") == [] and scope.alerts("bank-b") == []


def test_alerts_of_a_scope_with_an_interval_wait_for_its_boundary(engine: Engine) -> None:
    scope = make_scope(engine, interval=60)
    created = scope.clock.now
    scope.clock.advance(seconds=10)
    scope.senders["bank-a"].send({T1: label(1)}, replace=True)
    scope.senders["bank-b"].send({T1: label(2)}, replace=True)
    assert scope.alerts("bank-a") == []  # Committed, matched, held.
    scope.clock.advance(seconds=49)
    scope.role.tick()
    assert scope.alerts("bank-a") == []  # 59 s after creation: not yet.
    scope.clock.advance(seconds=1)
    scope.senders["bank-c"].send({T1: label(3)}, replace=True)  # On the boundary itself: released with it.
    scope.role.tick()
    released = scope.alerts("bank-a")
    assert [(a.sequence, a.kind) for a in released] == [(1, AlertKind.MATCH), (2, AlertKind.JOINED)]
    assert {a.released_at for a in released} == {created.replace(microsecond=0) + (scope.clock.now - created)}
    scope.clock.advance(seconds=1)
    scope.senders["bank-d"].send({T1: label(4)}, replace=True)
    scope.role.tick()
    assert len(scope.alerts("bank-a")) == 2  # The next boundary is 120 s after creation.
    scope.clock.advance(seconds=59)
    scope.role.tick()
    assert [a.kind for a in scope.alerts("bank-a")] == [AlertKind.MATCH, AlertKind.JOINED, AlertKind.JOINED]


def test_a_member_flooded_within_an_interval_has_no_more_held_than_one_overflow_needs(engine: Engine) -> None:
    # Past its backlog + 1, a member's held alerts would be released as one OVERFLOW all the same:
    # the coordinator holds no more of them, however many alerts the interval's commits make.
    scope = make_scope(engine, interval=60, max_alert_backlog=2)
    scope.clock.advance(seconds=10)
    a, b, c, d = (scope.senders[m] for m in MEMBERS)
    tokens = {token(i): label(i) for i in range(10, 15)}
    a.send(tokens, replace=True)
    b.send(tokens, replace=True)  # Five MATCH alerts each for bank-a and bank-b.
    c.send({T1: label(1)}, replace=True)
    d.send({T1: label(2)}, replace=True)  # One each for bank-c and bank-d.
    with scope.role.uow() as tx:
        boundary = release_time(tx.rounds.get_round(scope.scope_id), scope.clock.now)
        held = {m: tx.alerts.held(scope.scope_id, m, release_at=boundary) for m in MEMBERS}
    assert held == {"bank-a": 3, "bank-b": 3, "bank-c": 1, "bank-d": 1}
    scope.clock.advance(seconds=50)
    scope.role.tick()
    assert [x.kind for x in scope.alerts("bank-a")] == [AlertKind.OVERFLOW]
    assert [x.kind for x in scope.alerts("bank-b")] == [AlertKind.OVERFLOW]
    assert [(x.kind, x.match_token) for x in scope.alerts("bank-c")] == [(AlertKind.MATCH, T1)]


@pytest.mark.parametrize("page", [alert_outbox.ALERT_PAGE, 2])
def test_a_member_that_does_not_acknowledge_overflows_then_resyncs(
    engine: Engine, page: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The snapshot is read and signed a page of tokens at a time: no read of more holders at once.
    monkeypatch.setattr(alert_outbox, "ALERT_PAGE", page)
    read = holders_reads(monkeypatch)
    scope = make_scope(engine, max_alert_backlog=2)
    a, b, c = (scope.senders[m] for m in MEMBERS[:3])
    a.send({T1: label(1), T2: label(2), T3: label(3)}, replace=True)
    b.send({T1: label(11), T2: label(12)}, replace=True)  # Two alerts for bank-a: at its bound.
    c.send({T3: label(23)}, replace=True)  # A third would pass it: OVERFLOW instead.
    kinds = [a.kind for a in scope.alerts("bank-a")]
    assert kinds == [AlertKind.MATCH, AlertKind.MATCH, AlertKind.OVERFLOW]
    assert scope.alerts("bank-a")[-1].match_token == NO_TOKEN
    c.send({T1: label(21)})  # Nothing more for bank-a in this scope until it catches up.
    assert len(scope.alerts("bank-a")) == 3
    member = Identity("bank-a", Role.MEMBER)
    assert scope.role.feed.ack(member, 3) == (3, 7)  # A RESYNC and a SNAPSHOT of each of its 3 matched tokens.
    resync = scope.alerts("bank-a")
    assert [(x.sequence, x.kind) for x in resync] == [(4, AlertKind.RESYNC)] + [
        (n, AlertKind.SNAPSHOT) for n in (5, 6, 7)
    ]
    assert resync[0].holder_count == 3
    assert {x.match_token: x.holder_count for x in resync[1:]} == {T1: 3, T2: 2, T3: 2}
    assert [x.match_token for x in resync[1:]] == sorted([T1, T2, T3])
    assert max(read) <= page
    # The operator sees it at scrape time: 7 numbered for bank-a, 4 of them unacknowledged.
    figures = {
        (sample.name, tuple(sample.labels.values())): sample.value
        for family in CoordinatorStateCollector(engine, min_interval=0).collect()
        for sample in family.samples
    }
    others = sum(len(scope.alerts(m)) for m in MEMBERS[1:])  # None of theirs acknowledged.
    assert figures[("alliance_psi_alerts_queued_total", ())] == 7 + others
    assert figures[("alliance_psi_alerts_unacknowledged", ("bank-a",))] == 4
    assert figures[("alliance_psi_alerts_unacknowledged", ("bank-b",))] == len(scope.alerts("bank-b"))


def holders_reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many tokens each ``MatchRepository.holders`` call reads (the real method, counted)."""
    from alliance_psi.storage.matching_repo import MatchRepository

    sizes: list[int] = []
    real = MatchRepository.holders

    def counted(self: MatchRepository, scope: str, tokens: Iterable[bytes]) -> Any:
        tokens = list(tokens)
        sizes.append(len(tokens))
        return real(self, scope, tokens)

    monkeypatch.setattr(MatchRepository, "holders", counted)
    return sizes


def test_acknowledged_alerts_are_deleted_and_never_read_again(scope: Scope) -> None:
    a, b = scope.senders["bank-a"], scope.senders["bank-b"]
    a.send({T1: label(1), T2: label(2)}, replace=True)
    b.send({T1: label(11), T2: label(12)}, replace=True)
    member = Identity("bank-a", Role.MEMBER)
    assert scope.role.feed.ack(member, 1) == (1, 2)
    assert [x.sequence for x in scope.alerts("bank-a")] == [2]
    assert scope.role.feed.ack(member, 0) == (1, 2)  # Less than before: nothing changes.
    with pytest.raises(InvalidRequest, match="up_to_sequence: 3 is beyond the last alert, 2"):
        scope.role.feed.ack(member, 3)
    with pytest.raises(InvalidRequest, match="alerts up to 1 are acknowledged and never sent again; watch from 2"):
        scope.role.feed.start(member, "", 1)
    with pytest.raises(InvalidRequest, match="from_sequence: 4 is beyond the next alert to come, 3"):
        scope.role.feed.start(member, "", 4)
    assert scope.role.feed.start(member, "", 0) == 1
    assert scope.role.feed.start(member, "", 3) == 2


def test_a_scope_that_does_not_invite_the_member_is_not_found_as_a_missing_one(engine: Engine) -> None:
    scope = make_scope(engine)
    outsider = Identity("bank-z", Role.MEMBER)
    with pytest.raises(NotFound) as missing:
        scope.role.feed.start(outsider, "no-such-scope", 0)
    with pytest.raises(NotFound) as not_invited:
        scope.role.feed.start(outsider, scope.scope_id, 0)
    assert str(missing.value).replace("no-such-scope", "X") == str(not_invited.value).replace(scope.scope_id, "X")


def test_closing_a_scope_issues_final_results_over_the_standing_sets(scope: Scope) -> None:
    a, b = scope.senders["bank-a"], scope.senders["bank-b"]
    a.send({T1: label(1), T2: label(2)}, replace=True)
    b.send({T1: label(11)}, replace=True)
    b.send({T2: label(12)}, commit=False)  # Staged, never committed: dropped at closing.
    closed = scope.role.close_round(ADMIN, scope.scope_id)
    assert closed.state is RoundState.MATCHED
    header, pages = scope.role.get_result(Identity("bank-b", Role.MEMBER), scope.scope_id)
    assert header.header and len([leaf for page in pages for leaf in page.leaves]) == 1  # T1 only.


def test_concurrent_commits_of_one_scope_number_every_members_alerts_without_gaps(engine: Engine) -> None:
    # Four members add the same tokens at once, over separate connections: the scope's commits
    # take turns, each seeing the counts the one before left, and every alert is numbered once.
    import threading

    scope = make_scope(engine)
    tokens = {token(i): label(i) for i in range(40, 46)}
    errors: list[BaseException] = []

    def commit(member: str) -> None:
        try:
            scope.senders[member].send(tokens, replace=True)
        except BaseException as exc:  # noqa: BLE001 - reported by the test below
            errors.append(exc)

    threads = [threading.Thread(target=commit, args=(m,)) for m in MEMBERS]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    for member in MEMBERS:
        alerts = scope.alerts(member)
        assert [a.sequence for a in alerts] == list(range(1, len(alerts) + 1))
        # Per token: one MATCH (when it reached 2, or when this member joined later), then a
        # JOINED for each member that joined after this one.
        for t in tokens:
            mine = [(a.kind, a.holder_count) for a in alerts if a.match_token == t]
            assert mine[0][0] is AlertKind.MATCH and all(kind is AlertKind.JOINED for kind, _ in mine[1:])
            assert [count for _, count in mine] == list(range(mine[0][1], 5))
    assert sum(len(scope.alerts(m)) for m in MEMBERS) == len(tokens) * (2 + 3 + 4)


class DraftCount:
    """Wraps the real ``drafts_for`` of the outbox and counts the drafts it built, by member."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.built: dict[str, int] = {}
        real = alert_outbox.drafts_for

        def counted(*args: Any, **kwargs: Any) -> list[AlertDraft]:
            drafts = real(*args, **kwargs)
            for draft in drafts:
                self.built[draft.member_id] = self.built.get(draft.member_id, 0) + 1
            return drafts

        monkeypatch.setattr(alert_outbox, "drafts_for", counted)


@pytest.mark.parametrize("interval", [0, 60], ids=["released", "held"])
def test_a_commit_past_a_members_backlog_drafts_none_of_its_alerts(
    engine: Engine, monkeypatch: pytest.MonkeyPatch, interval: int
) -> None:
    # A huge commit must not build (read, seal into drafts, sign) every alert before it finds the
    # member over its bound: the alerts are counted first, and only what will be kept is drafted.
    scope = make_scope(engine, interval=interval, max_alert_backlog=5)
    scope.clock.advance(seconds=10)  # Between two boundaries (held) or any time (released).
    monkeypatch.setattr(alert_outbox, "ALERT_PAGE", 4)  # Several pages for 40 tokens.
    a, b, c = (scope.senders[m] for m in MEMBERS[:3])
    many = {token(i): label(i) for i in range(100, 140)}
    a.send(many, replace=True)
    c.send({token(100): label(7), token(101): label(8)}, replace=True)  # Two MATCH alerts each for a and c.
    drafts = DraftCount(monkeypatch)
    b.send(many, replace=True)  # 40 alerts for bank-a and for bank-b, 2 JOINED for bank-c.
    if interval:
        # Held: no more than one OVERFLOW needs (backlog + 1 with what is held already), then it.
        assert drafts.built == {"bank-a": 4, "bank-b": 6, "bank-c": 2}
        scope.clock.advance(seconds=interval)
        scope.role.tick()
        assert [x.kind for x in scope.alerts("bank-a")] == [AlertKind.OVERFLOW]
    else:
        assert drafts.built == {"bank-c": 2}  # None for the members it sends past their bound.
        assert [x.kind for x in scope.alerts("bank-a")] == [AlertKind.MATCH, AlertKind.MATCH, AlertKind.OVERFLOW]
    assert [x.kind for x in scope.alerts("bank-b")] == [AlertKind.OVERFLOW]
    assert [(x.sequence, x.kind, x.holder_count) for x in scope.alerts("bank-c")] == [
        (1, AlertKind.MATCH, 2),
        (2, AlertKind.MATCH, 2),
        (3, AlertKind.JOINED, 3),
        (4, AlertKind.JOINED, 3),
    ]


def test_a_commit_drafts_its_alerts_a_page_at_a_time_numbered_without_gaps(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    scope = make_scope(engine, max_alert_backlog=100)
    monkeypatch.setattr(alert_outbox, "ALERT_PAGE", 3)
    a, b = scope.senders["bank-a"], scope.senders["bank-b"]
    tokens = {token(i): label(i) for i in range(200, 210)}
    a.send({**tokens, T1: label(1)}, replace=True)
    b.send({T1: label(2)}, replace=True)
    drafts = DraftCount(monkeypatch)
    b.send(tokens)  # Ten MATCH alerts each, over four pages.
    assert drafts.built == {"bank-a": 10, "bank-b": 10}
    for member in ("bank-a", "bank-b"):
        alerts = scope.alerts(member)
        assert [x.sequence for x in alerts] == list(range(1, 12))
        assert sorted(x.match_token for x in alerts[1:]) == sorted(tokens)
        assert all(x.kind is AlertKind.MATCH and x.holder_count == 2 for x in alerts)


def test_a_delta_commit_on_sqlite_looks_up_only_the_tokens_it_touches(tmp_path: Path) -> None:
    # A commit's cost is to follow its delta, not the standing sets: every statement a delta's
    # commit runs must reach member_sets and set_holders by key. SQLite plans without statistics;
    # once, the query of what a delta changes walked the scope's holder counts from
    # ``holders >= threshold - 1`` (every token of the scope): 4.6x the time at sets of 100,000
    # as at 20,000 for the same 100 tokens. The plans are read here, not timed.
    engine = make_engine(f"sqlite:///{tmp_path / 'coordinator.db'}")
    create_schema(engine)
    scope = make_scope(engine)
    a, b = scope.senders["bank-a"], scope.senders["bank-b"]
    a.send({token(i): label(i) for i in range(40)}, replace=True)
    b.send({token(i): label(100 + i) for i in range(30, 60)}, replace=True)
    seen: list[tuple[str, Any]] = []

    def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, many: bool) -> None:
        if not many and not statement.lstrip().upper().startswith(("BEGIN", "COMMIT", "ROLLBACK")):
            seen.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", record)
    # Joins (a match, and one more holder of a matched token), a relabel, a withdrawal, a new token.
    b.send({token(20): label(1), token(31): label(2), token(32): label(9, 2), token(99): label(9)}, [token(33)])
    event.remove(engine, "before_cursor_execute", record)
    assert any("set_holders" in statement for statement, _ in seen)
    with engine.connect() as conn:
        plans = {
            statement: [row[3] for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters)]
            for statement, parameters in seen
        }
    for statement, steps in plans.items():
        assert not [s for s in steps if s.startswith("SCAN") or "holders>" in s], (statement, steps)
