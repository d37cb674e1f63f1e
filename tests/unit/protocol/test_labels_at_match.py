"""Labels sealed at match (``Round.labels_at_match``), over in-memory ports against the real roles.

Members send tokens only; after the round closes, the holders of each matched token whose labels
its leaves will carry are asked for them, and the results are issued when every one answered or
the window passed. The same flow runs over real gRPC, SQLite and PostgreSQL in
``tests/integration/services/test_labels_at_match.py``.
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest

from alliance_psi.errors import Conflict, InvalidRequest, NotAuthorized, NotFound, RoundClosed
from alliance_psi.protocol.coordinator import Chunk, RoundSpec
from alliance_psi.protocol.model import LABELS_ASKED, Identity, Role, Round, RoundKind, RoundState
from alliance_psi.protocol.submission import chunk_digest
from tests.unit.protocol.test_member_role import ADMIN, EPOCH, A, B, World, lead_labels

SEALED = 301


def at_match_round(world: World, **changes: object) -> Round:
    spec = RoundSpec(
        "r", 2, EPOCH, world.clock() + timedelta(hours=1), ("phone",), (A, B), share_labels=True, labels_at_match=True
    )
    return world.coordinator.create_round(ADMIN, dataclasses.replace(spec, **changes))  # type: ignore[arg-type]


def both_committed(world: World) -> Round:
    """An at-match round both members joined without waiting: closed, asking for labels."""
    round_ = at_match_round(world)
    assert world.member(A).join(round_.round_id, wait=0).result is None
    assert world.member(B).join(round_.round_id, wait=0).result is None  # B answers; A has not yet.
    found, _ = world.coordinator.get_round(ADMIN, round_.round_id)
    assert found.state is RoundState.CLOSED and found.labelling
    return found


def caller(name: str) -> Identity:
    return Identity(name, Role.MEMBER)


def test_members_send_tokens_only_and_the_matched_tokens_labels_reach_the_co_holders() -> None:
    world = World()
    round_ = both_committed(world)
    # The coordinator's standing sets hold no label at all.
    sets = world.coordinator_uow.view.matching._s.sets
    assert sets and all(label is None for members in sets.values() for label in members.values())
    # A is asked for its three matched tokens only (phones 4, 5, 6), B answered already.
    asked = world.coordinator.label_requests(caller(A), round_.round_id)
    assert len(asked) == 3
    assert world.coordinator.label_requests(caller(B), round_.round_id) == []
    assert world.member(A).answer_label_requests(round_) == 3
    # The last answer issues the results at once; the asked labels are gone with them.
    found, _ = world.coordinator.get_round(ADMIN, round_.round_id)
    assert found.state is RoundState.MATCHED
    assert world.coordinator_uow.view.labels._s.labels == {}
    assert lead_labels(world.member(A), round_.round_id) == {f"+86138{n:08d}": {"anti_collection"} for n in (4, 5, 6)}
    assert lead_labels(world.member(B), round_.round_id) == {f"+86138{n:08d}": {"wool_party"} for n in (4, 5, 6)}
    assert "round.labels_asked" in world.coordinator_uow.audit.actions()


def test_a_holder_that_does_not_answer_in_the_window_leaves_its_co_holders_leads_unbacked() -> None:
    world = World()
    round_ = both_committed(world)  # A never answers.
    world.clock.advance(seconds=299)
    world.coordinator.tick()
    assert world.coordinator.get_round(ADMIN, round_.round_id)[0].state is RoundState.CLOSED
    world.clock.advance(seconds=2)
    world.coordinator.tick()
    assert world.coordinator.get_round(ADMIN, round_.round_id)[0].state is RoundState.MATCHED
    # A answered nothing: B's leads carry no peer label and fall below the threshold's backing;
    # A's carry B's label and stand.
    assert lead_labels(world.member(A), round_.round_id) == {f"+86138{n:08d}": {"anti_collection"} for n in (4, 5, 6)}
    assert lead_labels(world.member(B), round_.round_id) == {}
    assert len(world.member(B).lead_checks(round_.round_id).refused) == 3
    with pytest.raises(RoundClosed, match="asks for no labels now"):
        world.member(A).answer_label_requests(round_)


def test_answers_the_round_did_not_ask_for_are_refused_by_position_and_nothing_is_kept() -> None:
    world = World()
    round_ = both_committed(world)
    rid = round_.round_id
    asked = world.coordinator.label_requests(caller(A), rid)
    label = b"\x02" + bytes(SEALED - 1)
    refused = [
        ([(asked[0], label), (bytes(16), label)], InvalidRequest, "item 1: not a token this member was asked"),
        ([(asked[0], label), (asked[0], label)], InvalidRequest, "item 1: repeats the token of item 0"),
        ([(asked[0], b"x" * 10)], InvalidRequest, "item 0: sealed label must be empty or 301 bytes"),
        ([(b"short", label)], InvalidRequest, "item 0: match token must be 16 bytes"),
        ([], InvalidRequest, "items: must hold 1 to 4096"),
    ]
    for items, error, message in refused:
        with pytest.raises(error, match=message):
            world.coordinator.answer_labels(caller(A), rid, items)
        assert world.coordinator_uow.view.labels.unanswered_by_member(rid) == {A: 3}
    # B answered its own already: it cannot replace it; another alliance member is not told the round exists.
    with pytest.raises(Conflict, match="item 0: answered already with another label"):
        world.coordinator.answer_labels(caller(B), rid, [(asked[0], label)])
    with pytest.raises(NotFound):
        world.coordinator.label_requests(caller("bank-c"), rid)
    with pytest.raises(NotAuthorized):
        world.coordinator.answer_labels(ADMIN, rid, [(asked[0], label)])
    # An answer stands: the same again changes nothing, another label is a conflict.
    assert world.coordinator.answer_labels(caller(A), rid, [(asked[0], label)]) is False  # 2 left.
    assert world.coordinator.answer_labels(caller(A), rid, [(asked[0], label)]) is False
    assert world.coordinator_uow.view.labels.unanswered_by_member(rid) == {A: 2}
    with pytest.raises(Conflict, match="item 0: answered already with another label"):
        world.coordinator.answer_labels(caller(A), rid, [(asked[0], b"\x02" + b"\x01" * (SEALED - 1))])
    world.clock.advance(seconds=301)
    with pytest.raises(RoundClosed, match="window for labels closed"):
        world.coordinator.answer_labels(caller(A), rid, [(asked[1], label)])


def test_an_open_round_asks_for_no_labels_and_takes_tokens_only() -> None:
    world = World()
    round_ = at_match_round(world)
    with pytest.raises(RoundClosed, match="is open: it asks for no labels now"):
        world.coordinator.label_requests(caller(A), round_.round_id)
    label = b"\x02" + bytes(SEALED - 1)
    items = ((bytes(16), label),)
    chunk = Chunk(round_.round_id, 0, items, chunk_digest(items, ()))
    with pytest.raises(InvalidRequest, match="asks for labels only where tokens match; send tokens only"):
        world.coordinator.upload_chunk(caller(A), chunk)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"share_labels": False}, "labels_at_match: only a batch round that shares labels"),
        ({"kind": RoundKind.CONTINUOUS}, "labels_at_match: only a batch round that shares labels"),
        ({"label_window_seconds": 9}, "label_window_seconds: must be 10 to 604800"),
        ({"label_window_seconds": 604_801}, "label_window_seconds: must be 10 to 604800"),
        ({"labels_at_match": False, "label_window_seconds": 60}, "only a round with labels_at_match waits"),
    ],
)
def test_a_round_asking_for_labels_at_match_is_refused_where_it_makes_no_sense(
    changes: dict[str, object], message: str
) -> None:
    with pytest.raises(InvalidRequest, match=message):
        at_match_round(World(), **changes)


def test_the_window_is_the_default_or_what_the_admin_chose_and_labels_are_bound_to_the_round() -> None:
    assert at_match_round(World()).label_window_seconds == 300
    other = at_match_round(World(), label_window_seconds=60)
    assert other.label_window_seconds == 60
    assert other.label_scope.endswith(f"/round:{other.round_id}") and other.set_scope.endswith("/labels-at-match")


def test_a_coordinator_that_asks_for_an_unmatched_tokens_label_is_shown_by_the_result() -> None:
    world = World()
    round_ = both_committed(world)
    rid = round_.round_id
    tokens = {
        world.nodes[A].state.identifiers[i].canonical: t for (_, i), (t, _) in world.nodes[A].state.tokens.items()
    }
    unmatched, foreign = tokens["+8613800000001"], bytes(range(16))  # Phone 1: only A holds it.
    # A lying coordinator adds requests: A's unmatched token, and a token A never submitted.
    for token in (unmatched, foreign):
        world.coordinator_uow.state.labels[(rid, token, A)] = (False, None)
    assert world.member(A).answer_label_requests(round_) == 4  # 3 matched + the unmatched one; none for the stranger.
    member = world.member(A)
    member.fetch_and_keep(world.coordinator.get_round(caller(A), rid)[0])
    assert member.labels_beyond_result(rid) == 1
    honest = world.member(B)
    assert honest.labels_beyond_result(rid) == 0  # No result kept yet: nothing to compare.
    honest.fetch_and_keep(world.coordinator.get_round(caller(B), rid)[0])
    assert honest.labels_beyond_result(rid) == 0


def test_a_node_answers_only_from_its_own_record_of_what_it_committed() -> None:
    world = World()
    first = both_committed(world)
    world.member(A).answer_label_requests(first)  # Round 1 issued.
    # A lying coordinator puts A's six tokens and ten strangers as asked of A in a round A never
    # committed to, and then in the round A did commit to.
    ours = sorted(t for t, _ in world.nodes[A].state.tokens.values())
    strangers = [b"\xff" * 15 + bytes([i]) for i in range(10)]  # After all of A's in token order.
    second = at_match_round(world)
    world.member(B).join(second.round_id, wait=0)
    world.coordinator.close_round(ADMIN, second.round_id)  # One committed member: nothing matched or asked.
    asking = dataclasses.replace(second, state=RoundState.CLOSED, labels_due=world.clock() + timedelta(minutes=5))
    for round_ in (asking, world.coordinator.get_round(ADMIN, first.round_id)[0]):
        world.coordinator_uow.state.rounds[round_.round_id] = dataclasses.replace(
            round_, state=RoundState.CLOSED, labels_due=world.clock() + timedelta(minutes=5)
        )
        for token in ours + strangers:
            world.coordinator_uow.state.labels[(round_.round_id, token, A)] = (False, None)
    assert world.member(A).answer_label_requests(asking) == 0  # Not committed to: nothing sent.
    assert world.coordinator_uow.view.labels.unanswered_by_member(asking.round_id) == {A: 16}
    # In its own round it answers at most as many tokens as it committed (six), strangers empty.
    assert world.member(A).answer_label_requests(first) == 6
    unanswered = world.coordinator_uow.view.labels.unanswered_by_member(first.round_id)
    assert unanswered == {A: 10}


def test_a_member_sees_that_a_round_asks_for_labels_not_when_it_closed() -> None:
    world = World()
    round_ = both_committed(world)
    assert world.coordinator.get_round(ADMIN, round_.round_id)[0].labels_due == world.clock() + timedelta(seconds=300)
    seen, _ = world.coordinator.get_round(caller(A), round_.round_id)
    assert seen.labels_due == LABELS_ASKED and seen.labelling and seen.labels_awaited == ()
    # The operator sees who owes labels (B answered in its join), a member does not.
    assert world.coordinator.get_round(ADMIN, round_.round_id)[0].labels_awaited == ((A, 3),)


def test_an_answer_names_a_round_id_of_at_most_64_characters() -> None:
    from alliance_psi.protocol import messages

    request = messages.answer_labels_to_pb("r" * 65, [(bytes(16), None)])
    with pytest.raises(InvalidRequest, match="round_id: required, at most 64 characters"):
        messages.answer_labels_from_pb(request)


@pytest.mark.parametrize("at_match", [True, False])
def test_the_nodes_word_for_a_missing_label_names_the_likely_cause(at_match: bool) -> None:
    from alliance_psi.cli.node_round import refusal_lines
    from alliance_psi.protocol.leads import RefusedLead

    findings = [RefusedLead(bytes(16), 2, "1 label backs 1 of 2 holders", 1), RefusedLead(b"\1" * 16, 3, "x", 2, True)]
    text = " ".join(refusal_lines("r", findings, at_match=at_match))
    likely = "most likely a co-holder did not answer within the round's window"
    assert (likely in text) is at_match
    assert ("are missing (a co-holder that did not answer within the window" in text) is at_match
    assert "REFUSED 1 lead of round r" in text and "1 lead of round r stands with fewer holders" in text
