"""The coordinator's rules, over in-memory ports and a clock the test moves (no SQL, no gRPC).

The same rules run over SQLite, PostgreSQL and real mTLS in ``tests/integration``; these tests
pin each rule alone, in milliseconds, including the moments a real clock cannot be made to hit.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from alliance_psi.crypto.labels import SEALED_LABEL_BYTES
from alliance_psi.crypto.signing import SigningKey
from alliance_psi.errors import (
    ConfigurationError,
    Conflict,
    InvalidRequest,
    LimitExceeded,
    NotAuthorized,
    NotFound,
    RoundClosed,
    SetMismatch,
)
from alliance_psi.protocol.coordinator import Chunk, Commit, CoordinatorRole, RoundSpec
from alliance_psi.protocol.model import Identity, MemberResult, Role, RoundState, SubmissionState
from alliance_psi.protocol.result_codec import reopen_result
from alliance_psi.protocol.submission import SubmissionDigest, label_digest, set_digest
from tests.helpers.memory_ports import FakeClock, MemoryUnitOfWork

ADMIN = Identity("operator", Role.ADMIN)
A, B, C = (Identity(f"bank-{x}", Role.MEMBER) for x in "abc")
KEY = SigningKey.generate()


def token(n: int) -> bytes:
    return n.to_bytes(16, "big")


def label(member: Identity, n: int) -> bytes:
    return (member.name.encode() + bytes([n % 256])).ljust(SEALED_LABEL_BYTES, b"\0")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def uow() -> MemoryUnitOfWork:
    return MemoryUnitOfWork()


@pytest.fixture
def role(uow: MemoryUnitOfWork, clock: FakeClock) -> CoordinatorRole:
    return CoordinatorRole(uow, KEY, known_types=["phone", "id_card"], clock=clock)


def spec(clock: FakeClock, threshold: int = 2, **overrides: object) -> RoundSpec:
    fields: dict[str, object] = {
        "name": "r",
        "threshold": threshold,
        "key_epoch": "e1",
        "deadline": clock() + timedelta(hours=1),
        "allowed_types": ("phone",),
        "invited": ("bank-a", "bank-b", "bank-c"),
        "share_labels": True,
    }
    fields.update(overrides)
    return RoundSpec(**fields)  # type: ignore[arg-type]


def submit(role: CoordinatorRole, member: Identity, round_id: str, tokens: list[int], *, labels: bool = True) -> None:
    """The member's whole set in one chunk, committed."""
    items = tuple((token(n), label(member, n) if labels else None) for n in sorted(tokens))
    digest = SubmissionDigest()
    if items:
        role.upload_chunk(member, Chunk(round_id, 0, items, digest.update(items)))
    whole = set_digest((t, label_digest(lbl)) for t, lbl in items)
    role.commit(member, Commit(round_id, digest.count, digest.digest(), len(items), whole, replace=True))


def result_of(role: CoordinatorRole, member: Identity, round_id: str) -> MemberResult:
    """The member's signed result, every page checked against the signed root."""
    header, pages = role.get_result(member, round_id)
    leaves = [leaf for page in pages for leaf in page.leaves]
    return reopen_result(
        KEY.public_key, header.header, header.signature, leaves, round_id=round_id, member_id=member.name
    )


def matches(role: CoordinatorRole, member: Identity, round_id: str) -> dict[int, int]:
    return {int.from_bytes(m.match_token, "big"): m.holder_count for m in result_of(role, member, round_id).matches}


# Closing ---------------------------------------------------------------------------------------


def test_a_round_closes_at_its_deadline_on_the_next_tick(role: CoordinatorRole, clock: FakeClock) -> None:
    round_id = role.create_round(ADMIN, spec(clock)).round_id
    submit(role, A, round_id, [1, 2])
    submit(role, B, round_id, [2, 3])
    clock.advance(minutes=59, seconds=59)
    assert role.tick() == []
    clock.advance(seconds=1)  # Exactly the deadline.
    assert role.tick() == [round_id]
    final, committed = role.get_round(ADMIN, round_id)
    assert (final.state, final.close_reason, final.closed_at, committed) == (
        RoundState.MATCHED,
        "deadline reached",
        clock(),
        2,
    )
    assert matches(role, A, round_id) == {2: 2}
    assert role.tick() == []  # Nothing left to do.


def test_past_the_deadline_the_coordinator_refuses_before_any_tick(role: CoordinatorRole, clock: FakeClock) -> None:
    round_id = role.create_round(ADMIN, spec(clock)).round_id
    items = ((token(1), None),)
    digest = SubmissionDigest()
    role.upload_chunk(A, Chunk(round_id, 0, items, digest.update(items)))
    clock.advance(hours=1)
    with pytest.raises(RoundClosed, match="passed its deadline"):
        role.upload_chunk(A, Chunk(round_id, 1, ((token(2), None),), SubmissionDigest().update(((token(2), None),))))
    with pytest.raises(RoundClosed, match="passed its deadline"):
        role.commit(A, Commit(round_id, digest.count, digest.digest(), 1, bytes(32), replace=True))
    assert role.get_round(ADMIN, round_id)[0].state is RoundState.OPEN


def test_a_round_closes_when_every_invited_member_committed(role: CoordinatorRole, clock: FakeClock) -> None:
    round_id = role.create_round(ADMIN, spec(clock, invited=("bank-a", "bank-b"))).round_id
    submit(role, A, round_id, [1, 2])
    assert role.get_round(ADMIN, round_id)[0].state is RoundState.OPEN
    submit(role, B, round_id, [2])
    final, _ = role.get_round(ADMIN, round_id)
    assert final.state is RoundState.MATCHED and final.close_reason == "all invited members committed"
    assert matches(role, B, round_id) == {2: 2}


def test_a_round_open_to_all_waits_for_its_deadline(role: CoordinatorRole, clock: FakeClock) -> None:
    round_id = role.create_round(ADMIN, spec(clock, invited=None)).round_id
    for member in (A, B, C):
        submit(role, member, round_id, [1])
    assert role.get_round(ADMIN, round_id)[0].state is RoundState.OPEN


def test_closing_discards_uncommitted_submissions(
    role: CoordinatorRole, clock: FakeClock, uow: MemoryUnitOfWork
) -> None:
    round_id = role.create_round(ADMIN, spec(clock)).round_id
    submit(role, A, round_id, [1])
    items = ((token(1), None), (token(2), None))
    role.upload_chunk(B, Chunk(round_id, 0, items, SubmissionDigest().update(items)))
    role.close_round(ADMIN, round_id, "enough")
    assert role.submission_status(B, round_id).state is SubmissionState.NONE
    (closing,) = [e for e in uow.audit.entries if e["action"] == "round.close"]
    assert closing["detail"]["discarded_uncommitted_items"] == 2
    with pytest.raises(NotFound, match="no result for bank-b"):
        role.get_result(B, round_id)


def test_a_round_inviting_a_member_nobody_enrolled_is_refused(uow: MemoryUnitOfWork, clock: FakeClock) -> None:
    pins = {"bank-a": b"pa", "bank-b": b"pb", "bank-c": b"pc"}
    role = CoordinatorRole(uow, KEY, known_types=["phone"], clock=clock, key_pins=pins.get)
    with pytest.raises(InvalidRequest, match="not enrolled at this coordinator: bank-x, bank-y"):
        role.create_round(ADMIN, spec(clock, invited=("bank-a", "bank-y", "bank-x")))
    assert role.list_rounds(ADMIN) == []
    assert role.create_round(ADMIN, spec(clock, invited=("bank-a", "bank-b"))).invited == ("bank-a", "bank-b")
    assert role.create_round(ADMIN, spec(clock, invited=None, key_epoch="e2")).invited is None  # Every member.


def test_only_an_admin_creates_and_closes(role: CoordinatorRole, clock: FakeClock) -> None:
    with pytest.raises(NotAuthorized):
        role.create_round(A, spec(clock))
    round_id = role.create_round(ADMIN, spec(clock)).round_id
    with pytest.raises(NotAuthorized):
        role.close_round(A, round_id)
    role.close_round(ADMIN, round_id)
    with pytest.raises(RoundClosed, match="already matched"):
        role.close_round(ADMIN, round_id)


# Matching --------------------------------------------------------------------------------------

HOLDINGS = {A: [1, 2, 3, 4], B: [2, 3, 5], C: [3, 4, 5, 6]}


@pytest.mark.parametrize(
    "threshold, expected",
    [
        (2, {A: {2: 2, 3: 3, 4: 2}, B: {2: 2, 3: 3, 5: 2}, C: {3: 3, 4: 2, 5: 2}}),
        (3, {A: {3: 3}, B: {3: 3}, C: {3: 3}}),
    ],
)
def test_each_member_gets_its_own_tokens_at_the_threshold(
    role: CoordinatorRole, clock: FakeClock, threshold: int, expected: dict[Identity, dict[int, int]]
) -> None:
    round_id = role.create_round(ADMIN, spec(clock, threshold)).round_id
    for member, held in HOLDINGS.items():
        submit(role, member, round_id, held)
    for member in HOLDINGS:
        assert matches(role, member, round_id) == expected[member]


def test_peers_labels_travel_and_own_labels_do_not(role: CoordinatorRole, clock: FakeClock) -> None:
    round_id = role.create_round(ADMIN, spec(clock)).round_id
    for member, held in HOLDINGS.items():
        submit(role, member, round_id, held)
    result = result_of(role, A, round_id)
    by_token = {int.from_bytes(m.match_token, "big"): {p.sealed for p in m.peer_labels} for m in result.matches}
    assert by_token[3] == {label(B, 3), label(C, 3)}
    assert by_token[4] == {label(C, 4)}


def test_a_round_without_labels_refuses_them_and_returns_none(role: CoordinatorRole, clock: FakeClock) -> None:
    round_id = role.create_round(ADMIN, spec(clock, share_labels=False)).round_id
    items = ((token(1), label(A, 1)),)
    with pytest.raises(InvalidRequest, match="does not share labels"):
        role.upload_chunk(A, Chunk(round_id, 0, items, SubmissionDigest().update(items)))
    submit(role, A, round_id, [1, 2], labels=False)
    submit(role, B, round_id, [1], labels=False)
    submit(role, C, round_id, [1], labels=False)
    result = result_of(role, A, round_id)
    assert [(m.holder_count, m.peer_labels) for m in result.matches] == [(3, ())]


def test_a_later_round_of_the_scope_matches_the_standing_sets_after_a_delta(
    role: CoordinatorRole, clock: FakeClock
) -> None:
    first = role.create_round(ADMIN, spec(clock, invited=("bank-a", "bank-b"))).round_id
    with pytest.raises(Conflict, match="not matched yet"):
        role.create_round(ADMIN, spec(clock, invited=("bank-a", "bank-b")))  # Rounds of a scope run in turn.
    submit(role, A, first, [1, 2])
    submit(role, B, first, [2, 3])
    second = role.create_round(ADMIN, spec(clock, invited=("bank-a", "bank-b"))).round_id
    # bank-a removes 2 and adds 3; bank-b has nothing to change.
    standing = role.submission_status(A, second)
    assert standing.set_count == 2
    puts, removals = ((token(3), label(A, 3)),), (token(2),)
    delta = SubmissionDigest()
    role.upload_chunk(A, Chunk(second, 0, puts, delta.update(puts, removals), removals, replace=False))
    after = set_digest(sorted((token(n), label_digest(label(A, n))) for n in (1, 3)))
    role.commit(A, Commit(second, delta.count, delta.digest(), 2, after, replace=False))
    b_set = set_digest(sorted((token(n), label_digest(label(B, n))) for n in (2, 3)))
    role.commit(B, Commit(second, 0, SubmissionDigest().digest(), 2, b_set, replace=False))
    assert matches(role, A, second) == {3: 2}


def test_a_commit_whose_set_disagrees_changes_nothing(
    role: CoordinatorRole, clock: FakeClock, uow: MemoryUnitOfWork
) -> None:
    round_id = role.create_round(ADMIN, spec(clock)).round_id
    items = ((token(1), None),)
    digest = SubmissionDigest()
    role.upload_chunk(A, Chunk(round_id, 0, items, digest.update(items)))
    entries = len(uow.audit.entries)
    with pytest.raises(SetMismatch, match="set count mismatch"):
        role.commit(A, Commit(round_id, 1, digest.digest(), 2, bytes(32), replace=True))
    assert role.submission_status(A, round_id).state is SubmissionState.STAGING
    assert len(uow.audit.entries) == entries  # The audit entry rolled back with the rest.


# Visibility ------------------------------------------------------------------------------------


def test_members_see_only_rounds_that_invite_them(role: CoordinatorRole, clock: FakeClock) -> None:
    mine = role.create_round(ADMIN, spec(clock, invited=("bank-a", "bank-b"))).round_id
    theirs = role.create_round(ADMIN, spec(clock, invited=("bank-b", "bank-c"), key_epoch="e2")).round_id
    everyone = role.create_round(ADMIN, spec(clock, invited=None, key_epoch="e3")).round_id
    assert [r.round_id for r, _ in role.list_rounds(A)] == sorted([mine, everyone])
    assert {r.round_id for r, _ in role.list_rounds(ADMIN)} == {mine, theirs, everyone}


def test_a_member_cannot_tell_another_members_round_from_no_round(role: CoordinatorRole, clock: FakeClock) -> None:
    theirs = role.create_round(ADMIN, spec(clock, invited=("bank-b", "bank-c"))).round_id
    missing = "r-no-such-round"
    for call in (
        lambda rid: role.get_round(A, rid),
        lambda rid: role.submission_status(A, rid),
        lambda rid: role.get_result(A, rid),
        lambda rid: role.upload_chunk(
            A, Chunk(rid, 0, ((token(1), None),), SubmissionDigest().update(((token(1), None),)))
        ),
        lambda rid: role.commit(A, Commit(rid, 0, bytes(32), 0, bytes(32), replace=True)),
    ):
        with pytest.raises(NotFound) as not_invited:
            call(theirs)
        with pytest.raises(NotFound) as absent:
            call(missing)
        assert str(not_invited.value).replace(theirs, "ROUND") == str(absent.value).replace(missing, "ROUND")


def test_members_see_no_invite_list_and_no_other_names(role: CoordinatorRole, clock: FakeClock) -> None:
    round_id = role.create_round(ADMIN, spec(clock)).round_id
    submit(role, B, round_id, [1])
    seen, committed = role.get_round(A, round_id)
    assert seen.invited == ("bank-a",) and seen.created_by == "" and committed == 0
    assert (seen.key_epoch, seen.allowed_types, seen.share_labels, seen.deadline, seen.threshold) == (
        "e1",
        ("phone",),
        True,
        clock() + timedelta(hours=1),
        2,
    )  # What the member node needs to take part.
    listed = {r.round_id: (r, n) for r, n in role.list_rounds(A)}
    assert listed[round_id] == (seen, 0)
    full, committed = role.get_round(ADMIN, round_id)
    assert full.invited == ("bank-a", "bank-b", "bank-c") and full.created_by == "operator" and committed == 1


def test_members_may_not_do_admin_things_or_submit_as_admins(role: CoordinatorRole, clock: FakeClock) -> None:
    round_id = role.create_round(ADMIN, spec(clock)).round_id
    with pytest.raises(NotAuthorized):
        role.submission_status(ADMIN, round_id)
    with pytest.raises(NotAuthorized):
        role.get_result(Identity("custodian-1", Role.CUSTODIAN), round_id)


def chunk_of(round_id: str, index: int, numbers: list[int], removals: tuple[int, ...] = ()) -> Chunk:
    items = tuple((token(n), label(B, n)) for n in numbers)
    removed = tuple(token(n) for n in removals)
    return Chunk(round_id, index, items, SubmissionDigest().update(items, removed), removed, replace=not removals)


def test_a_token_repeated_within_a_chunk_is_refused_by_position_before_any_transaction(
    role: CoordinatorRole, uow: MemoryUnitOfWork, clock: FakeClock
) -> None:
    round_id = role.create_round(ADMIN, spec(clock)).round_id
    before = uow.opened
    with pytest.raises(InvalidRequest, match="^chunk 0, item 3: repeats the token of item 1$"):
        role.upload_chunk(B, chunk_of(round_id, 0, [1, 2, 3, 2]))
    with pytest.raises(InvalidRequest, match="^chunk 0, removal 0: repeats the token of item 0$"):
        role.upload_chunk(B, chunk_of(round_id, 0, [1], removals=(1,)))
    assert uow.opened == before


def test_a_token_or_label_of_the_wrong_size_is_refused_by_position_before_any_transaction(
    role: CoordinatorRole, uow: MemoryUnitOfWork, clock: FakeClock
) -> None:
    round_id = role.create_round(ADMIN, spec(clock)).round_id
    before = uow.opened
    good = chunk_of(round_id, 0, [1, 2, 3], removals=(4, 5))
    (t1, l1), (t2, l2), (t3, l3) = good.items
    wrong = [
        ((t1, l1), (t2, l2[:-1]), (t3, l3)),  # A label one byte short.
        ((t1, l1), (t2, None), (t3 + b"x", l3)),  # No label is fine; a token one byte long is not.
    ]
    with pytest.raises(
        InvalidRequest,
        match=f"^chunk 0, item 1: sealed label must be empty or {SEALED_LABEL_BYTES} bytes, got {SEALED_LABEL_BYTES - 1}$",
    ):
        role.upload_chunk(B, replace(good, items=wrong[0]))
    with pytest.raises(InvalidRequest, match="^chunk 0, item 2: match token must be 16 bytes, got 17$"):
        role.upload_chunk(B, replace(good, items=wrong[1]))
    with pytest.raises(InvalidRequest, match="^chunk 0, removal 1: match token must be 16 bytes, got 15$"):
        role.upload_chunk(B, replace(good, removals=(good.removals[0], good.removals[1][:-1])))
    assert uow.opened == before


def test_refused_chunks_spend_the_member_s_budget_per_round(uow: MemoryUnitOfWork, clock: FakeClock) -> None:
    role = CoordinatorRole(uow, KEY, known_types=["phone", "id_card"], clock=clock, max_refused_chunks=2)
    round_id = role.create_round(ADMIN, spec(clock)).round_id
    other = role.create_round(ADMIN, spec(clock, allowed_types=("id_card",))).round_id
    assert role.upload_chunk(B, chunk_of(round_id, 0, [1]))
    with pytest.raises(InvalidRequest, match="^chunk 1, item 2: a token this submission already holds"):
        role.upload_chunk(B, chunk_of(round_id, 1, [5, 6, 1]))
    with pytest.raises(Conflict, match="chunk 0 already stored with different content"):
        role.upload_chunk(B, chunk_of(round_id, 0, [7]))
    before = uow.opened
    with pytest.raises(LimitExceeded, match="2 chunks of this member were refused, at most 2 per member and round"):
        role.upload_chunk(B, chunk_of(round_id, 1, [5, 6]))  # A good chunk, refused all the same,
    assert uow.opened == before  # before any transaction.
    assert role.upload_chunk(A, chunk_of(round_id, 0, [1]))  # Another member, the same round.
    assert role.upload_chunk(B, chunk_of(other, 0, [1]))  # The same member, another round.
    # A member not invited to a round spends nothing there: a refusal is counted only inside a
    # round the member may submit to, so counts stay bounded by rounds times members.
    private = role.create_round(ADMIN, spec(clock, share_labels=False, invited=("bank-a", "bank-c"))).round_id
    for _ in range(3):
        with pytest.raises(NotFound):
            role.upload_chunk(B, chunk_of(private, 0, [1, 2]))
    with pytest.raises(ConfigurationError, match="at least 1"):
        CoordinatorRole(uow, KEY, known_types=["phone"], max_refused_chunks=0)
