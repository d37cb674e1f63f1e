"""Per-member item limits at the coordinator, through real member nodes over mTLS: a standing set
per scope and a delta per round are bounded; a refused submission says the limit and changes
nothing of the member's set (SQLite and PostgreSQL)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine

from alliance_psi.crypto.labels import SEALED_LABEL_BYTES
from alliance_psi.errors import InvalidRequest, LimitExceeded
from alliance_psi.protocol.coordinator import Chunk
from alliance_psi.protocol.model import RoundState, SubmissionState
from alliance_psi.protocol.submission import chunk_digest
from alliance_psi.services.clients import CoordinatorClient
from tests.integration.services.harness import CATEGORIES, EPOCH, Planted, load, phone, running_alliance

pytestmark = pytest.mark.timeout(300)


def finish(alliance, round_id: str) -> None:  # type: ignore[no-untyped-def]
    closed = alliance.admin().close_round(round_id)
    assert closed.state is RoundState.MATCHED


def status(alliance, member: str, round_id: str):  # type: ignore[no-untyped-def]
    """The member's submission and standing set, as the coordinator tells the member."""
    client = CoordinatorClient(alliance.coordinator_address, alliance.pki.material(member))
    return client.submission_status(round_id, member)


def submit(alliance, member: str, round_id: str):  # type: ignore[no-untyped-def]
    node = alliance.node(member)
    node.tokenize(EPOCH, ["phone"])
    return node.submit(alliance.admin().get_round(round_id)[0])


def test_a_delta_over_the_round_limit_is_refused(tmp_path: Path, pki, engine: Engine) -> None:  # type: ignore[no-untyped-def]
    planted = Planted.make()
    with running_alliance(tmp_path, pki, coordinator_engine=engine, planted=planted, max_round_items=5) as alliance:
        first = alliance.admin().create_round(alliance.spec(2))
        whole = submit(alliance, "bank-b", first.round_id)  # A whole set is bounded by the set limit, not this one.
        assert whole.replaced and whole.set_count == len(planted.holdings["bank-b"])
        before = status(alliance, "bank-b", first.round_id)
        finish(alliance, first.round_id)
        second = alliance.admin().create_round(alliance.spec(2))
        load(alliance.member_engines["bank-b"], [phone(900 + i) for i in range(6)], CATEGORIES[1])
        with pytest.raises(LimitExceeded) as refused:
            submit(alliance, "bank-b", second.round_id)
        assert str(refused.value).endswith(
            "chunk 0: a delta may hold at most 5 items and removals per member and round; "
            "0 are staged and this chunk adds 6"
        )
        after = status(alliance, "bank-b", second.round_id)
        assert (after.state, after.chunks) == (SubmissionState.NONE, ())  # Nothing of the refused chunk.
        assert (after.set_count, after.set_digest) == (before.set_count, before.set_digest)


def test_a_set_over_the_set_limit_is_refused_whole_or_by_delta(tmp_path: Path, pki, engine: Engine) -> None:  # type: ignore[no-untyped-def]
    planted = Planted.make(size=30)
    limit = len(planted.holdings["bank-a"])
    assert len(planted.holdings["bank-b"]) == limit + 1
    with running_alliance(tmp_path, pki, coordinator_engine=engine, planted=planted, max_set_items=limit) as alliance:
        first = alliance.admin().create_round(alliance.spec(2))
        with pytest.raises(LimitExceeded, match=f"a whole set may hold at most {limit} items and removals per member"):
            submit(alliance, "bank-b", first.round_id)  # Refused at the chunk that goes over, in its upload.
        refused_whole = status(alliance, "bank-b", first.round_id)
        assert (refused_whole.chunks, refused_whole.item_count, refused_whole.set_count) == ((0,), 25, 0)
        assert submit(alliance, "bank-a", first.round_id).set_count == limit  # Exactly at the limit.
        before = status(alliance, "bank-a", first.round_id)
        finish(alliance, first.round_id)
        second = alliance.admin().create_round(alliance.spec(2))
        load(alliance.member_engines["bank-a"], [phone(900)], CATEGORIES[0])
        with pytest.raises(LimitExceeded) as refused:
            submit(alliance, "bank-a", second.round_id)  # Refused at the commit: the delta alone is small.
        assert str(refused.value).endswith(
            f"the member's set would hold {limit + 1} tokens, over the limit of {limit} per member and scope; "
            "withdraw identifiers, or ask the operator to raise --max-set-items"
        )
        after = status(alliance, "bank-a", second.round_id)
        assert after.state is SubmissionState.STAGING  # The delta is staged, not applied.
        assert (after.set_count, after.set_digest) == (before.set_count, before.set_digest)


def a_chunk(round_id: str, index: int, tokens: list[bytes]) -> Chunk:
    items = tuple((token, bytes([index % 256]) * SEALED_LABEL_BYTES) for token in tokens)
    return Chunk(round_id, index, items, chunk_digest(items))


def test_poisoned_chunks_are_refused_by_position_and_spend_the_member_s_budget(  # type: ignore[no-untyped-def]
    tmp_path: Path, pki, engine: Engine
) -> None:
    """Adversary finding 10: a chunk of fresh tokens whose last repeats one of an earlier chunk.
    It is refused by position (never the token) before any row is written, and each refusal
    costs bank-b: past its budget (3 here), its chunks to that round are refused before any
    transaction, while bank-a submits to the same round and bank-b to another."""
    planted = Planted.make()
    with running_alliance(tmp_path, pki, coordinator_engine=engine, planted=planted, max_refused_chunks=3) as alliance:
        round_id = alliance.admin().create_round(alliance.spec(2)).round_id
        other = alliance.admin().create_round(alliance.spec(2, allowed_types=("email",))).round_id
        hostile = CoordinatorClient(alliance.coordinator_address, pki.material("bank-b"))
        repeated = (1).to_bytes(16, "big")
        assert hostile.upload_chunks([a_chunk(round_id, 0, [repeated])]) == (1, 0)
        poisoned = a_chunk(round_id, 1, [(2 + i).to_bytes(16, "big") for i in range(8191)] + [repeated])
        for _ in range(3):
            with pytest.raises(InvalidRequest) as refused:
                hostile.upload_chunks([poisoned])
            assert str(refused.value).endswith(
                "chunk 1, item 8191: a token this submission already holds from another chunk"
            )
            assert repeated.hex() not in str(refused.value)
        for chunk in (poisoned, a_chunk(round_id, 2, [(9_000_000).to_bytes(16, "big")])):
            with pytest.raises(LimitExceeded) as spent:
                hostile.upload_chunks([chunk])
            assert str(spent.value).endswith(
                f"round {round_id}: 3 chunks of this member were refused, at most 3 per member and round; "
                "it may send no more chunks to this round"
            )
        assert (status(alliance, "bank-b", round_id).chunks, status(alliance, "bank-b", round_id).item_count) == (
            (0,),
            1,
        )
        # Others are not held up, and the budget is per round.
        assert submit(alliance, "bank-a", round_id).set_count == len(planted.holdings["bank-a"])
        assert hostile.upload_chunks([a_chunk(other, 0, [repeated])]) == (1, 0)
