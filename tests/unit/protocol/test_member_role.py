"""The member's role over in-memory ports (no SQL, no gRPC), against the real custodian and coordinator roles.

The same rules run over SQLite, PostgreSQL and real mTLS servers in ``tests/integration/services``
and ``tests/e2e``; these pin each one alone, in milliseconds: the delta a withdrawal or a new
label sends, a record that disagrees with the coordinator's, an upload resumed, a result refused.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import timedelta

import pytest

from alliance_psi.crypto.key_shares import KeyShare
from alliance_psi.crypto.signing import SigningKey
from alliance_psi.errors import (
    InvalidSignature,
    LogInconsistent,
    NotFound,
    ResultMismatch,
    RoundClosed,
    SetMismatch,
    WrongEpoch,
)
from alliance_psi.protocol.checkpoints import decode_checkpoint
from alliance_psi.protocol.coordinator import Commit, CoordinatorRole, RoundSpec
from alliance_psi.protocol.custodian import CustodianRole
from alliance_psi.protocol.member import MemberRole
from alliance_psi.protocol.model import Identity, Role, Round, SubmissionState, SubmissionStatus
from alliance_psi.protocol.node_rows import SetRecord
from alliance_psi.protocol.result_codec import LeafPage, SignedResultHeader, decode_leaf, encode_leaf
from tests.helpers.memory_node import LoopbackCoordinator, MemoryNodeUnitOfWork, RoleEvaluator
from tests.helpers.memory_ports import FakeClock, MemoryQuotaLedger, MemoryUnitOfWork

EPOCH = "e1"
KEY = SigningKey.generate()
ADMIN = Identity("operator", Role.ADMIN)
A, B = "bank-a", "bank-b"
HOLDINGS = {A: range(1, 7), B: range(4, 10)}  # Phones 4, 5 and 6 are held by both.


def phone(n: int) -> str:
    return f"+86138{n:08d}"


class World:
    """Two members with their node databases, two custodians and a coordinator, all in memory."""

    def __init__(self, *, custodian_epoch: str = EPOCH) -> None:
        self.clock = FakeClock()
        self.coordinator_uow = MemoryUnitOfWork()
        self.coordinator = CoordinatorRole(self.coordinator_uow, KEY, known_types=["phone"], clock=self.clock)
        self.custodians = [
            CustodianRole(f"custodian-{i}", KeyShare.generate(custodian_epoch), quota_per_member=10_000, ledger=ledger)
            for i, ledger in enumerate((MemoryQuotaLedger(), MemoryQuotaLedger()), 1)
        ]
        self.nodes = {member: MemoryNodeUnitOfWork() for member in HOLDINGS}
        for member, numbers in HOLDINGS.items():
            for n in numbers:
                self.nodes[member].add("phone", phone(n), category="wool_party" if member == A else "anti_collection")
        self.evaluators = {member: RoleEvaluator(self.custodians, member) for member in HOLDINGS}

    def member(
        self,
        name: str,
        *,
        coordinator: LoopbackCoordinator | None = None,
        chunk_size: int = 2,
        share_name: bool = False,
    ) -> MemberRole:
        return MemberRole(
            member_id=name,
            uow=self.nodes[name],
            evaluator=self.evaluators[name],
            coordinator=coordinator or LoopbackCoordinator(self.coordinator, name),
            coordinator_key=KEY.public_key,
            nonce_key=name.encode().ljust(32, b"\0"),
            workers=1,
            batch_size=4,
            chunk_size=chunk_size,
            share_name=share_name,
            clock=self.clock,
        )

    def open_round(self) -> Round:
        spec = RoundSpec("r", 2, EPOCH, self.clock() + timedelta(hours=1), ("phone",), (A, B), share_labels=True)
        return self.coordinator.create_round(ADMIN, spec)

    def round_of_both(self) -> Round:
        """A round both members join: A first (it commits, not matched yet), then B (it is matched)."""
        round_ = self.open_round()
        assert self.member(A).join(round_.round_id, wait=0).result is None
        self.member(B).join(round_.round_id, wait=0)
        return round_


def lead_labels(role: MemberRole, round_id: str) -> dict[str, set[str]]:
    """{canonical: peer categories} of the member's leads in a round (its result fetched and kept first)."""
    round_, _ = role.coordinator.get_round(round_id)
    role.fetch_and_keep(round_)
    return {
        lead.canonical: {label.category for label in lead.peer_labels}
        for lead in role.leads(role.kept_result(round_id))
    }


def test_a_round_maps_the_matches_back_to_own_identifiers_with_the_peers_labels() -> None:
    world = World()
    round_ = world.open_round()
    first = world.member(A).join(round_.round_id, wait=0)
    assert (first.result, first.tokens_computed, first.submitted, first.delta_count, first.replaced) == (
        None,
        6,
        6,
        6,
        True,
    )
    second = world.member(B).join(round_.round_id, wait=0)
    assert second.result is not None and second.result.match_count == 3
    assert {lead.canonical: lead.holder_count for lead in second.leads} == {phone(n): 2 for n in (4, 5, 6)}
    assert lead_labels(world.member(A), round_.round_id) == {phone(n): {"anti_collection"} for n in (4, 5, 6)}


def test_a_member_is_named_to_its_co_holders_only_if_it_chose_and_as_the_coordinator_attests() -> None:
    world = World()
    round_ = world.open_round()
    world.member(A, share_name=True).join(round_.round_id, wait=0)
    outcome = world.member(B).join(round_.round_id, wait=0)
    assert {label.member for lead in outcome.leads for label in lead.peer_labels} == {A}
    world.member(A).fetch_and_keep(round_)
    leads = world.member(A).leads(world.member(A).kept_result(round_.round_id))
    assert leads and {label.member for lead in leads for label in lead.peer_labels} == {None}


def test_a_second_round_sends_only_the_withdrawal() -> None:
    world = World()
    world.round_of_both()
    evaluated = world.evaluators[A].evaluated
    assert world.nodes[A].withdraw("phone", phone(5))
    round_ = world.open_round()
    outcome = world.member(A).join(round_.round_id, wait=0)
    assert (outcome.tokens_computed, outcome.delta_count, outcome.replaced, outcome.submitted) == (0, 1, False, 5)
    assert world.evaluators[A].evaluated == evaluated  # No identifier went to the custodians again.
    assert world.member(B).join(round_.round_id, wait=0).delta_count == 0
    assert set(lead_labels(world.member(B), round_.round_id)) == {phone(4), phone(6)}


def test_a_join_of_a_round_committed_and_kept_before_sends_nothing_and_says_so() -> None:
    world = World()
    round_ = world.open_round()
    world.member(A).join(round_.round_id, wait=0)
    first = world.member(B).join(round_.round_id, wait=0)
    assert first.result is not None and not first.committed_before and not first.kept_before
    again = world.member(B).join(round_.round_id, wait=0)
    assert again.committed_before and again.kept_before and again.result == first.result
    assert (again.tokens_computed, again.submitted) == (0, first.submitted)
    fetched_now = world.member(A).join(round_.round_id, wait=0)  # A committed, never fetched.
    assert fetched_now.committed_before and not fetched_now.kept_before and fetched_now.result is not None


def test_a_relabelled_identifier_is_put_again_with_its_new_label() -> None:
    world = World()
    world.round_of_both()
    world.nodes[A].add("phone", phone(4), category="money_laundering")
    round_ = world.open_round()
    outcome = world.member(A).join(round_.round_id, wait=0)
    assert (outcome.delta_count, outcome.replaced, outcome.submitted) == (1, False, 6)
    world.member(B).join(round_.round_id, wait=0)
    labels = lead_labels(world.member(B), round_.round_id)
    assert labels[phone(4)] == {"money_laundering"} and labels[phone(5)] == {"wool_party"}


def test_a_record_that_disagrees_is_refused_at_commit_and_forgotten_so_the_next_round_sends_the_whole_set() -> None:
    world = World()
    round_ = world.round_of_both()
    record = world.nodes[A].state.submitted[round_.set_scope]
    for token in record:  # Its state still agrees with the coordinator's; its rows do not.
        record[token] = record[token]._replace(label_digest=bytes(16))
    world.nodes[A].add("phone", phone(4), category="money_laundering")  # A delta that replaces one of them.
    second = world.open_round()
    with pytest.raises(SetMismatch, match="set digest mismatch.*reset and its next round sends the whole set"):
        world.member(A).join(second.round_id, wait=0)
    assert world.nodes[A].repo.submitted_state(second.set_scope) is None
    assert list(world.nodes[A].repo.iter_submitted(second.set_scope)) == []
    world.coordinator.close_round(ADMIN, second.round_id)
    third = world.open_round()
    outcome = world.member(A).join(third.round_id, wait=0)
    assert (outcome.replaced, outcome.delta_count) == (True, 6)
    world.member(B).join(third.round_id, wait=0)
    assert set(lead_labels(world.member(A), third.round_id)) == {phone(n) for n in (4, 5, 6)}


def test_a_record_of_another_set_than_the_coordinator_holds_sends_the_whole_set() -> None:
    world = World()
    round_ = world.round_of_both()
    state = world.nodes[A].state.submitted_state
    state[round_.set_scope] = SetRecord(state[round_.set_scope].item_count - 1, state[round_.set_scope].digest)
    outcome = world.member(A).join(world.open_round().round_id, wait=0)
    assert (outcome.replaced, outcome.delta_count, outcome.submitted) == (True, 6, 6)


def test_an_interrupted_upload_resumes_with_only_the_chunks_the_coordinator_lacks() -> None:
    world = World()
    round_ = world.open_round()
    assert world.member(A).tokenize(EPOCH, ["phone"]) == 6
    broken = LoopbackCoordinator(world.coordinator, A, fail_after=2)
    with pytest.raises(ConnectionError):
        world.member(A, coordinator=broken).submit(round_)
    assert broken.uploaded == [0, 1]
    assert world.nodes[A].repo.submitted_state(round_.set_scope) is None  # Nothing recorded before the commit.
    status = world.coordinator.submission_status(Identity(A, Role.MEMBER), round_.round_id)
    assert (status.state, status.chunks) == (SubmissionState.STAGING, (0, 1))
    resumed = LoopbackCoordinator(world.coordinator, A)
    sent = world.member(A, coordinator=resumed).submit(round_)
    assert resumed.uploaded == [2]  # Chunks 0 and 1 were rebuilt, digested and skipped.
    assert (sent.set_count, sent.delta_count, sent.replaced) == (6, 6, True)
    assert world.nodes[A].repo.submitted_state(round_.set_scope) is not None


def test_a_delta_resumes_after_the_same_rows_are_imported_again() -> None:
    # A delta of five new identifiers breaks off after its first chunk; the bank's daily full export
    # then comes in again (nothing in it changed). The resumed delta rebuilds the same chunks and
    # commits: rows imported again unchanged keep their change stamps, so none leaves its window.
    world = World()
    world.round_of_both()
    for n in range(20, 25):
        world.nodes[A].add("phone", phone(n), category="wool_party")
    round_ = world.open_round()
    with pytest.raises(ConnectionError):
        world.member(A, coordinator=LoopbackCoordinator(world.coordinator, A, fail_after=1)).submit(round_)
    for n in (*range(1, 7), *range(20, 25)):
        world.nodes[A].add("phone", phone(n), category="wool_party")
    sent = world.member(A).submit(round_)
    assert (sent.set_count, sent.delta_count, sent.replaced) == (11, 5, False)


def _raise_a_holder_count(part: SignedResultHeader | LeafPage) -> SignedResultHeader | LeafPage:
    if isinstance(part, LeafPage) and part.page_index == 0:
        first = decode_leaf(part.leaves[0])
        changed = encode_leaf(dataclasses.replace(first, holder_count=first.holder_count + 1))
        return dataclasses.replace(part, leaves=(changed, *part.leaves[1:]))
    return part


def _flip_the_signature(part: SignedResultHeader | LeafPage) -> SignedResultHeader | LeafPage:
    if isinstance(part, SignedResultHeader):
        return dataclasses.replace(part, signature=bytes([part.signature[0] ^ 1]) + part.signature[1:])
    return part


@pytest.mark.parametrize(
    ("tamper", "error", "message"),
    [
        (_raise_a_holder_count, ResultMismatch, "signed Merkle root; the result is refused and nothing of it kept"),
        (_flip_the_signature, InvalidSignature, "does not verify"),
    ],
    ids=["changed leaf", "changed signature"],
)
def test_a_result_that_fails_verification_is_refused_and_nothing_of_it_kept(tamper, error, message) -> None:  # type: ignore[no-untyped-def]
    world = World()
    round_ = world.round_of_both()
    lying = LoopbackCoordinator(world.coordinator, A, tamper=tamper)
    with pytest.raises(error, match=message):
        world.member(A, coordinator=lying).fetch_and_keep(round_)
    with pytest.raises(NotFound):
        world.member(A).kept_result(round_.round_id)
    world.member(A).fetch_and_keep(round_)  # The honest result is kept.
    assert len(world.member(A).kept_result(round_.round_id).matches) == 3


def test_custodians_on_another_key_epoch_stop_the_join_before_anything_is_sent() -> None:
    world = World(custodian_epoch="e2")
    round_ = world.open_round()
    with pytest.raises(WrongEpoch, match="round .* uses key epoch 'e1'; custodians serve \\['e2'\\]"):
        world.member(A).join(round_.round_id, wait=0)
    assert world.evaluators[A].evaluated == 0
    status = world.coordinator.submission_status(Identity(A, Role.MEMBER), round_.round_id)
    assert status.state is SubmissionState.NONE


def test_past_the_deadline_the_node_sends_nothing_even_before_the_coordinator_closes_the_round() -> None:
    world = World()
    round_ = world.open_round()
    world.clock.advance(hours=1)  # The deadline; no tick has closed the round yet.
    with pytest.raises(RoundClosed, match="passed its deadline"):
        world.member(A).join(round_.round_id, wait=0)
    assert world.evaluators[A].evaluated == 0


def test_a_coordinator_whose_log_lost_entries_it_showed_is_refused_before_anything_is_sent() -> None:
    world = World()
    world.round_of_both()
    second = world.open_round()
    world.member(A).check_log()
    (seen,) = (decode_checkpoint(kept.body).tree_size for kept in world.nodes[A].state.checkpoints[-1:])
    del world.coordinator_uow.audit.entries[seen - 1 :]  # The log's tail, gone (a restored backup, say).
    with pytest.raises(LogInconsistent, match=f"audit log shrank from {seen} entries .* to {seen - 1}"):
        world.member(A).join(second.round_id, wait=0)
    assert [evidence.kind for evidence in world.nodes[A].state.evidence] == ["shrunk"]
    status = world.coordinator.submission_status(Identity(A, Role.MEMBER), second.round_id)
    assert status.state is SubmissionState.NONE


def test_a_delta_reads_only_what_changed_since_the_scope_last_committed() -> None:
    world = World()
    round_ = world.round_of_both()
    # Unchanged identifiers are never read again: were they, losing their cached tokens would
    # take them out of the set (a full comparison sends them as removals).
    state = world.nodes[A].state
    state.tokens = {key: value for key, value in state.tokens.items() if key[1] not in (1, 2)}
    world.nodes[A].add("phone", phone(7), category="wool_party")
    second = world.open_round()
    outcome = world.member(A).join(second.round_id, wait=0)
    assert (outcome.tokens_computed, outcome.delta_count, outcome.replaced, outcome.submitted) == (1, 1, False, 7)
    assert world.nodes[A].repo.submitted_state(round_.set_scope) is not None


class _LostCommitReply(LoopbackCoordinator):
    """Commits, then loses the reply: the node stops between the coordinator's commit and its record."""

    def commit(self, commit: Commit, member_id: str) -> SubmissionStatus:
        super().commit(commit, member_id)
        raise ConnectionError("the node stopped before it recorded the commit")


def test_a_commit_the_node_did_not_record_is_recorded_when_it_comes_back_and_nothing_is_sent_twice() -> None:
    world = World()
    world.round_of_both()
    world.nodes[A].add("phone", phone(7), category="wool_party")
    second = world.open_round()
    with pytest.raises(ConnectionError):
        world.member(A, coordinator=_LostCommitReply(world.coordinator, A)).join(second.round_id, wait=0)
    assert world.nodes[A].repo.pending_set(second.set_scope) is not None
    outcome = world.member(A).join(second.round_id, wait=0)  # Committed already: recorded, not sent again.
    assert (outcome.delta_count, outcome.submitted) == (1, 7)
    assert world.nodes[A].repo.pending_set(second.set_scope) is None
    world.nodes[A].add("phone", phone(8), category="wool_party")
    world.coordinator.close_round(ADMIN, second.round_id)
    third = world.member(A).join(world.open_round().round_id, wait=0)
    assert (third.delta_count, third.replaced, third.submitted) == (1, False, 8)  # A delta, not the whole set.


class _FailingEvaluator:
    """The custodians through ``RoleEvaluator``, failing (the network lost) after ``batches`` calls."""

    def __init__(self, inner: RoleEvaluator, batches: int) -> None:
        self.inner, self.left = inner, batches

    def key_epochs(self) -> list[str]:
        return self.inner.key_epochs()

    def evaluate(self, key_epoch: str, elements: Sequence[bytes]) -> list[bytes]:
        if self.left == 0:
            raise ConnectionError("custodian gone")
        self.left -= 1
        return self.inner.evaluate(key_epoch, elements)


def _tokens_by_identifier(node: MemoryNodeUnitOfWork) -> dict[str, tuple[bytes, bytes]]:
    return {node.state.identifiers[id_].canonical: cached for (_, id_), cached in node.state.tokens.items()}


def test_tokenize_reads_by_pages_and_resumes_without_evaluating_a_cached_batch_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    world = World()
    for name in (A, B):  # The same 60 more identifiers at both: A's 66 make 17 batches of 4.
        for n in range(10, 70):
            world.nodes[name].add("phone", phone(n), category="wool_party")
    world.nodes[B].state.tokens.clear()
    monkeypatch.setattr("alliance_psi.protocol.member.TOKENIZE_PAGE", 5)  # Pages across batches.
    member = world.member(A)
    member.evaluator = _FailingEvaluator(world.evaluators[A], batches=12)
    with pytest.raises(ConnectionError):
        member.tokenize(EPOCH, ["phone"])
    cached = len(world.nodes[A].state.tokens)
    # Whole batches only, and only evaluated ones (up to 5 batches in flight are lost with the error).
    assert 0 < cached <= 48 and cached % 4 == 0
    evaluated_before = world.evaluators[A].evaluated
    resumed = world.member(A).tokenize(EPOCH, ["phone"])
    assert resumed == 66 - cached  # The node's own count: nothing cached is done again,
    assert world.evaluators[A].evaluated - evaluated_before == 66 - cached  # nor sent to the custodians.
    monkeypatch.undo()
    assert world.member(B).tokenize(EPOCH, ["phone"]) == 66  # One uninterrupted run, one page.
    a, b = _tokens_by_identifier(world.nodes[A]), _tokens_by_identifier(world.nodes[B])
    shared = {phone(n) for n in range(10, 70)}
    assert len(a) == len(b) == 66 and {k: a[k] for k in shared} == {k: b[k] for k in shared}
