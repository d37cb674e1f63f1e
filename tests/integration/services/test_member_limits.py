"""Per-member item limits at the coordinator, through real member nodes over mTLS: a standing set
per scope and a delta per round are bounded; a refused submission says the limit and changes
nothing of the member's set (SQLite and PostgreSQL)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine

from alliance_psi.errors import LimitExceeded
from alliance_psi.protocol.model import RoundState, SubmissionState
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
