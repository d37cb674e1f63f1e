"""Standing sets: a submission is a delta against what the member committed earlier in the scope."""

from __future__ import annotations

from dataclasses import replace as evolve

import pytest
from sqlalchemy import Engine, func, select

from alliance_psi.errors import Conflict
from alliance_psi.protocol.model import RoundState
from alliance_psi.protocol.submission import SubmissionDigest, chunk_digest, label_digest, set_digest
from alliance_psi.storage import CoordinatorRepositories
from alliance_psi.storage.schema import member_sets, set_holders, submitted_tokens

from .support import NOW, Item, items, label, make_round, token


def send(
    engine: Engine,
    round_id: str,
    member: str,
    puts: list[Item],
    removals: list[bytes] = (),  # type: ignore[assignment]
    *,
    replace: bool,
    expect: dict[bytes, bytes | None] | None = None,
):  # type: ignore[no-untyped-def]
    """Stage one chunk and commit it, with the set digest the member expects (``expect``)."""
    removals = list(removals)
    with engine.begin() as conn:
        repo = CoordinatorRepositories(conn)
        if puts or removals:
            repo.submissions.stage_chunk(
                round_id, member, 0, puts, chunk_digest(puts, removals), at=NOW, removals=removals, replace=replace
            )
    delta = SubmissionDigest()
    if puts or removals:
        delta.update(puts, removals)
    set_count = set_digest_ = None
    if expect is not None:
        set_count = len(expect)
        set_digest_ = set_digest((t, label_digest(lbl)) for t, lbl in sorted(expect.items()))
    with engine.begin() as conn:
        return CoordinatorRepositories(conn).submissions.commit_submission(
            round_id,
            member,
            item_count=delta.count,
            digest=delta.digest(),
            at=NOW,
            replace=replace,
            set_count=set_count,
            set_digest=set_digest_,
        )


def finish(engine: Engine, round_id: str) -> None:
    with engine.begin() as conn:
        repo = CoordinatorRepositories(conn)
        assert repo.rounds.transition_round(round_id, RoundState.OPEN, RoundState.CLOSED, at=NOW)
        repo.matching.record_holder_counts(round_id, repo.matching.holder_counts(round_id))
        assert repo.rounds.transition_round(round_id, RoundState.CLOSED, RoundState.MATCHED, at=NOW)


def matched(engine: Engine, round_id: str, threshold: int = 2) -> list[tuple[bytes, str, bytes | None, int]]:
    with engine.begin() as conn:
        return list(CoordinatorRepositories(conn).matching.match(round_id, threshold))


def open_round(engine: Engine, round_id: str) -> None:
    with engine.begin() as conn:
        CoordinatorRepositories(conn).rounds.create_round(make_round(round_id))


@pytest.fixture
def first_round(engine: Engine) -> Engine:
    """Round r1 matched: alpha holds a, b, c; beta holds a, b, d."""
    open_round(engine, "r1")
    send(engine, "r1", "alpha", items("alpha", ["a", "b", "c"]), replace=True)
    send(engine, "r1", "beta", items("beta", ["a", "b", "d"]), replace=True)
    assert [(t, m) for t, m, _, _ in matched(engine, "r1")] == [
        (t, m) for t in sorted([token("a"), token("b")]) for m in ("alpha", "beta")
    ]
    finish(engine, "r1")
    return engine


def test_a_delta_changes_only_what_it_names(first_round: Engine) -> None:
    open_round(first_round, "r2")
    # alpha withdraws b, adds d and relabels a; beta sends nothing new.
    new_label = label("alpha", "a-corrected")
    expect = {token("a"): new_label, token("c"): label("alpha", "c"), token("d"): label("alpha", "d")}
    status = send(
        first_round,
        "r2",
        "alpha",
        [(token("a"), new_label), *items("alpha", ["d"])],
        [token("b")],
        replace=False,
        expect=expect,
    )
    assert (status.item_count, status.set_count) == (3, 3)
    send(first_round, "r2", "beta", [], replace=False)
    rows = matched(first_round, "r2")
    assert sorted({(t, h) for t, _, _, h in rows}) == sorted([(token("a"), 2), (token("d"), 2)])
    assert (token("a"), "alpha", new_label, 2) in rows  # The replaced label is the one matched.
    with first_round.begin() as conn:
        holders = dict(conn.execute(select(set_holders.c.match_token, set_holders.c.holders)).all())
        assert holders[token("b")] == 1 and holders[token("d")] == 2 and holders[token("c")] == 1
        assert conn.execute(select(func.count()).select_from(submitted_tokens)).scalar_one() == 0


def test_a_member_that_does_not_commit_does_not_count(first_round: Engine) -> None:
    """beta's set from r1 stands, but it did not commit to r2: no token of r2 reaches 2 holders."""
    open_round(first_round, "r2")
    send(first_round, "r2", "alpha", [], replace=False)
    assert matched(first_round, "r2") == []
    with first_round.begin() as conn:
        assert CoordinatorRepositories(conn).matching.holder_counts("r2") == {}


def test_replace_drops_the_standing_set(first_round: Engine) -> None:
    open_round(first_round, "r2")
    send(first_round, "r2", "alpha", items("alpha", ["x"]), replace=True, expect={token("x"): label("alpha", "x")})
    with first_round.begin() as conn:
        tokens = conn.execute(select(member_sets.c.match_token).where(member_sets.c.set_id == "alpha@r2")).scalars()
        assert list(tokens) == [token("x")]
        holders = dict(conn.execute(select(set_holders.c.match_token, set_holders.c.holders)).all())
    assert token("c") not in holders and holders[token("a")] == 1  # Only beta holds a now.


def test_removing_a_token_not_held_changes_nothing(first_round: Engine) -> None:
    open_round(first_round, "r2")
    with pytest.raises(Conflict, match="1 removed tokens are not in the member's set"):
        send(first_round, "r2", "alpha", [], [token("zz")], replace=False)
    with first_round.begin() as conn:
        assert (
            conn.execute(
                select(func.count()).select_from(member_sets).where(member_sets.c.set_id == "alpha@r1")
            ).scalar_one()
            == 3
        )


def test_a_set_digest_that_disagrees_rolls_the_commit_back(first_round: Engine) -> None:
    open_round(first_round, "r2")
    wrong = {token("a"): label("alpha", "a"), token("d"): label("alpha", "d")}  # Forgot b and c.
    with pytest.raises(Conflict, match="set count mismatch: commit says 2, the set would hold 4"):
        send(first_round, "r2", "alpha", items("alpha", ["d"]), replace=False, expect=wrong)
    wrong[token("b")], wrong[token("c")] = label("alpha", "b"), label("alpha", "other")
    with pytest.raises(Conflict, match="set digest mismatch over the 4 tokens"):
        send(first_round, "r2", "alpha", items("alpha", ["d"]), replace=False, expect=wrong)
    with first_round.begin() as conn:
        repo = CoordinatorRepositories(conn)
        status = repo.submissions.submission_status("r2", "alpha")
        assert (status.state, status.set_count) == ("staging", 3)
        alphas = select(member_sets.c.match_token).where(member_sets.c.set_id == "alpha@r1")
        assert token("d") not in conn.execute(alphas).scalars().all()


def test_a_replacing_submission_cannot_remove(first_round: Engine) -> None:
    open_round(first_round, "r2")
    with pytest.raises(Conflict, match="cannot remove"):
        send(first_round, "r2", "alpha", [], [token("a")], replace=True)


def test_a_submission_keeps_the_kind_it_started_as(first_round: Engine) -> None:
    open_round(first_round, "r2")
    with first_round.begin() as conn:
        delta = items("alpha", ["d"])
        CoordinatorRepositories(conn).submissions.stage_chunk(
            "r2", "alpha", 0, delta, chunk_digest(delta), at=NOW, replace=False
        )
    whole = items("alpha", ["e"])
    with (
        pytest.raises(Conflict, match="started as a delta; it cannot continue as a whole set"),
        first_round.begin() as conn,
    ):
        CoordinatorRepositories(conn).submissions.stage_chunk(
            "r2", "alpha", 1, whole, chunk_digest(whole), at=NOW, replace=True
        )
    with pytest.raises(Conflict, match="started as a delta"):
        send(first_round, "r2", "alpha", [], replace=True)


def test_an_uncommitted_whole_set_is_discarded_at_close(first_round: Engine) -> None:
    open_round(first_round, "r2")
    whole = items("alpha", ["p", "q"])
    with first_round.begin() as conn:
        CoordinatorRepositories(conn).submissions.stage_chunk("r2", "alpha", 0, whole, chunk_digest(whole), at=NOW)
    with first_round.begin() as conn:
        repo = CoordinatorRepositories(conn)
        assert repo.rounds.transition_round("r2", RoundState.OPEN, RoundState.CLOSED, at=NOW)
        assert repo.submissions.discard_uncommitted("r2") == 2
        assert (
            conn.execute(
                select(func.count()).select_from(member_sets).where(member_sets.c.set_id == "alpha@r2")
            ).scalar_one()
            == 0
        )
        assert repo.submissions.submission_status("r2", "alpha").set_count == 3  # The standing set is untouched.


def test_status_reports_the_standing_set(first_round: Engine) -> None:
    open_round(first_round, "r2")
    with first_round.begin() as conn:
        status = CoordinatorRepositories(conn).submissions.submission_status("r2", "alpha")
    expected = set_digest((token(n), label_digest(label("alpha", n))) for n in sorted(["a", "b", "c"], key=token))
    assert (status.state, status.set_count, status.set_digest) == ("none", 3, expected)


def test_one_unfinished_round_per_scope(first_round: Engine) -> None:
    open_round(first_round, "r2")
    with pytest.raises(Conflict, match="round r2 over the same key epoch, types and label sharing is not matched yet"):
        open_round(first_round, "r3")
    # Another scope (another key epoch) is independent.
    with first_round.begin() as conn:
        CoordinatorRepositories(conn).rounds.create_round(evolve(make_round("r3"), key_epoch="2025-04"))
    finish(first_round, "r2")
    open_round(first_round, "r4")


def test_holder_counts_are_kept_when_the_round_is_matched(first_round: Engine) -> None:
    open_round(first_round, "r2")
    send(first_round, "r2", "alpha", [], [token("a")], replace=False)
    with first_round.begin() as conn:
        repo = CoordinatorRepositories(conn)
        assert repo.matching.aggregate("r1")["matches_by_holder_count"] == {2: 2}  # As matched, not as now.
        assert repo.matching.aggregate("r2")["matches_by_holder_count"] == {}
