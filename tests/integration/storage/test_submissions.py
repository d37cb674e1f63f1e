"""Staging chunks, committing, and discarding what never committed."""

from __future__ import annotations

import hashlib

import pytest
from sqlalchemy import Engine, event, func, select

from alliance_psi.errors import Conflict, InvalidRequest, NotFound, RoundClosed
from alliance_psi.protocol.model import RoundState, SubmissionState
from alliance_psi.protocol.submission import chunk_digest
from alliance_psi.storage import CoordinatorRepositories
from alliance_psi.storage.schema import member_sets, submission_chunks, submissions, submitted_tokens

from .support import NOW, Item, items, make_round, submission_digest, token


@pytest.fixture
def round_engine(engine: Engine) -> Engine:
    """The engine, with open round r1."""
    with engine.begin() as conn:
        CoordinatorRepositories(conn).rounds.create_round(make_round("r1"))
    return engine


def stage(engine: Engine, member: str, index: int, chunk: list[Item], *, round_id: str = "r1") -> bool:
    with engine.begin() as conn:
        return CoordinatorRepositories(conn).submissions.stage_chunk(
            round_id, member, index, chunk, chunk_digest(chunk), at=NOW
        )


def commit(engine: Engine, member: str, chunks: list[list[Item]], *, count: int | None = None):  # type: ignore[no-untyped-def]
    size = sum(len(chunk) for chunk in chunks)
    with engine.begin() as conn:
        return CoordinatorRepositories(conn).submissions.commit_submission(
            "r1", member, item_count=size if count is None else count, digest=submission_digest(chunks), at=NOW
        )


def token_rows(engine: Engine, member: str) -> int:
    """Tokens of the member's whole-set submission to r1 written so far."""
    with engine.begin() as conn:
        return conn.execute(
            select(func.count()).select_from(member_sets).where(member_sets.c.set_id == f"{member}@r1")
        ).scalar_one()


def test_resending_the_same_chunk_stores_one_copy(round_engine: Engine) -> None:
    chunk = items("alpha", ["a", "b", "c"])
    assert stage(round_engine, "alpha", 0, chunk) is True
    assert stage(round_engine, "alpha", 0, chunk) is False
    assert token_rows(round_engine, "alpha") == 3
    with round_engine.begin() as conn:
        status = CoordinatorRepositories(conn).submissions.submission_status("r1", "alpha")
    assert (status.state, status.chunks, status.item_count, status.digest) == (SubmissionState.STAGING, (0,), 3, b"")


def test_resending_a_chunk_with_other_content_is_a_conflict(round_engine: Engine) -> None:
    stage(round_engine, "alpha", 0, items("alpha", ["a", "b"]))
    with pytest.raises(Conflict, match="chunk 0 already stored with different content"):
        stage(round_engine, "alpha", 0, items("alpha", ["a", "x"]))
    assert token_rows(round_engine, "alpha") == 2


def test_duplicate_token_across_chunks_is_refused_by_position_without_the_token(round_engine: Engine) -> None:
    stage(round_engine, "alpha", 0, items("alpha", ["a", "b"]))
    with pytest.raises(InvalidRequest, match="^chunk 1, item 1: a token this submission already holds from"):
        stage(round_engine, "alpha", 1, items("alpha", ["c", "a"]))
    with round_engine.begin() as conn:
        status = CoordinatorRepositories(conn).submissions.submission_status("r1", "alpha")
    assert status.chunks == (0,)
    assert token_rows(round_engine, "alpha") == 2
    # The same token from another member is fine.
    assert stage(round_engine, "beta", 0, items("beta", ["a"]))


def inserted_rows(engine: Engine) -> list[int]:
    """A live count of the rows the engine is asked to insert into a submission's token tables."""
    rows = [0]

    def count(conn, cursor, statement, parameters, context, executemany) -> None:  # type: ignore[no-untyped-def]
        if statement.lstrip().upper().startswith(("INSERT INTO MEMBER_SETS", "INSERT INTO SUBMITTED_TOKENS")):
            rows[0] += len(parameters) if executemany else 1

    event.listen(engine, "before_cursor_execute", count)
    return rows


@pytest.mark.parametrize("whole_set", [True, False], ids=["whole set", "delta"])
def test_a_chunk_poisoned_with_a_stored_token_is_refused_before_any_row_is_written(
    round_engine: Engine, whole_set: bool
) -> None:
    """Adversary finding 10: 8,191 fresh tokens and one from an earlier chunk. The chunk is refused
    by position (never the token), before a single row of it is inserted, and keeps nothing."""
    first = items("alpha", ["t"])
    poisoned = items("alpha", [f"fresh {i}" for i in range(8191)]) + first
    with round_engine.begin() as conn:
        repo = CoordinatorRepositories(conn).submissions
        assert repo.stage_chunk("r1", "alpha", 0, first, chunk_digest(first), at=NOW, replace=whole_set)
    rows = inserted_rows(round_engine)
    with pytest.raises(InvalidRequest) as refused, round_engine.begin() as conn:
        repo = CoordinatorRepositories(conn).submissions
        repo.stage_chunk("r1", "alpha", 1, poisoned, chunk_digest(poisoned), at=NOW, replace=whole_set)
    assert str(refused.value) == "chunk 1, item 8191: a token this submission already holds from another chunk"
    assert first[0][0].hex() not in str(refused.value) and rows == [0]
    with round_engine.begin() as conn:
        assert CoordinatorRepositories(conn).submissions.submission_status("r1", "alpha").chunks == (0,)
    if not whole_set:  # A removal of a token the submission puts is the same repeat.
        with pytest.raises(InvalidRequest, match="^chunk 2, removal 0: a token this submission already holds"):
            with round_engine.begin() as conn:
                digest = chunk_digest([], [first[0][0]])
                CoordinatorRepositories(conn).submissions.stage_chunk(
                    "r1", "alpha", 2, [], digest, at=NOW, removals=[first[0][0]], replace=False
                )
        assert rows == [0]


@pytest.mark.parametrize("whole_set", [True, False], ids=["whole set", "delta"])
def test_a_chunk_in_token_order_that_starts_at_the_last_stored_token_is_refused(
    round_engine: Engine, whole_set: bool
) -> None:
    """Chunks sent in token order are checked by the largest stored token alone: a chunk starting
    with that very token repeats it, and is refused by position like any other."""
    ordered = sorted(items("alpha", [f"n{i}" for i in range(6)]))
    first, second = ordered[:3], [ordered[2], *ordered[3:]]
    with round_engine.begin() as conn:
        repo = CoordinatorRepositories(conn).submissions
        assert repo.stage_chunk("r1", "alpha", 0, first, chunk_digest(first), at=NOW, replace=whole_set)
    with pytest.raises(InvalidRequest) as refused, round_engine.begin() as conn:
        repo = CoordinatorRepositories(conn).submissions
        repo.stage_chunk("r1", "alpha", 1, second, chunk_digest(second), at=NOW, replace=whole_set)
    assert str(refused.value) == "chunk 1, item 0: a token this submission already holds from another chunk"
    with round_engine.begin() as conn:
        repo = CoordinatorRepositories(conn).submissions
        assert repo.stage_chunk("r1", "alpha", 1, second[1:], chunk_digest(second[1:]), at=NOW, replace=whole_set)
        assert repo.submission_status("r1", "alpha").item_count == 6


def test_duplicate_token_within_a_chunk_is_refused_by_position(round_engine: Engine) -> None:
    with pytest.raises(InvalidRequest, match="^chunk 0, item 2: repeats the token of item 0$"):
        stage(round_engine, "alpha", 0, items("alpha", ["a", "b", "a"]))
    with round_engine.begin() as conn:
        assert CoordinatorRepositories(conn).submissions.submission_status("r1", "alpha").state == SubmissionState.NONE


def test_malformed_chunks_are_refused(round_engine: Engine) -> None:
    with round_engine.begin() as conn:
        repo = CoordinatorRepositories(conn)
        with pytest.raises(InvalidRequest):
            repo.submissions.stage_chunk("r1", "alpha", 0, [(b"short", None)], bytes(32), at=NOW)
        with pytest.raises(InvalidRequest):
            repo.submissions.stage_chunk("r1", "alpha", -1, [], bytes(32), at=NOW)
        with pytest.raises(InvalidRequest):
            repo.submissions.stage_chunk("r1", "alpha", 0, [], bytes(31), at=NOW)
        with pytest.raises(NotFound):
            repo.submissions.stage_chunk("nope", "alpha", 0, [], bytes(32), at=NOW)


def test_out_of_order_chunks_commit(round_engine: Engine) -> None:
    chunks = [items("alpha", ["a", "b"]), items("alpha", ["c"]), [(token("d"), None), (token("e"), b"")]]
    for index in (2, 0, 1):
        stage(round_engine, "alpha", index, chunks[index])
    status = commit(round_engine, "alpha", chunks)
    assert (status.state, status.chunks, status.item_count) == (SubmissionState.COMMITTED, (0, 1, 2), 5)
    # The digest is SHA-256 over the chunk digests in index order, each SHA-256 over
    # token || I2OSP(len(label), 2) || label for its items in order.
    expected = hashlib.sha256(
        b"".join(
            hashlib.sha256(b"".join(t + len(lab or b"").to_bytes(2, "big") + (lab or b"") for t, lab in chunk)).digest()
            for chunk in chunks
        )
    ).digest()
    assert status.digest == expected


def test_missing_chunks_are_listed(round_engine: Engine) -> None:
    for index in (0, 2, 4):
        stage(round_engine, "alpha", index, items("alpha", [f"t{index}"]))
    with pytest.raises(Conflict, match="^missing chunks: 1, 3$"):
        commit(round_engine, "alpha", [], count=3)


def test_missing_chunks_list_stops_at_ten(round_engine: Engine) -> None:
    stage(round_engine, "alpha", 12, items("alpha", ["z"]))
    with pytest.raises(Conflict, match="^missing chunks: 0, 1, 2, 3, 4, 5, 6, 7, 8, 9 and 2 more$"):
        commit(round_engine, "alpha", [], count=1)


def test_commit_count_and_digest_mismatch(round_engine: Engine) -> None:
    whole = items("alpha", ["a", "b", "c"])
    stage(round_engine, "alpha", 0, whole)
    with pytest.raises(Conflict, match="item count mismatch: commit says 4, 3 stored"):
        commit(round_engine, "alpha", [whole], count=4)
    with pytest.raises(Conflict, match="digest mismatch") as info:
        commit(round_engine, "alpha", [list(reversed(whole))])
    assert whole[0][0].hex() not in str(info.value)
    with round_engine.begin() as conn:
        assert (
            CoordinatorRepositories(conn).submissions.submission_status("r1", "alpha").state == SubmissionState.STAGING
        )


def test_double_commit_is_idempotent_and_a_different_one_conflicts(round_engine: Engine) -> None:
    whole = items("alpha", ["a", "b"])
    stage(round_engine, "alpha", 0, whole)
    first = commit(round_engine, "alpha", [whole])
    assert commit(round_engine, "alpha", [whole]) == first
    with pytest.raises(Conflict, match="already committed"):
        commit(round_engine, "alpha", [whole[:1]])
    with pytest.raises(Conflict, match="^submission already committed$"):
        stage(round_engine, "alpha", 1, items("alpha", ["c"]))


def test_empty_submission_commits(round_engine: Engine) -> None:
    status = commit(round_engine, "alpha", [])
    assert (status.state, status.item_count, status.chunks) == (SubmissionState.COMMITTED, 0, ())


def test_closed_round_refuses_chunks_but_answers_a_retried_commit(round_engine: Engine) -> None:
    whole = items("alpha", ["a"])
    stage(round_engine, "alpha", 0, whole)
    first = commit(round_engine, "alpha", [whole])
    with round_engine.begin() as conn:
        CoordinatorRepositories(conn).rounds.transition_round("r1", RoundState.OPEN, RoundState.CLOSED, at=NOW)
    assert commit(round_engine, "alpha", [whole]) == first
    with pytest.raises(RoundClosed):
        stage(round_engine, "beta", 0, items("beta", ["a"]))
    with pytest.raises(RoundClosed):
        commit(round_engine, "beta", [])


def test_staging_is_invisible_to_match_until_committed(round_engine: Engine) -> None:
    alpha, beta = items("alpha", ["a", "b"]), items("beta", ["a", "c"])
    stage(round_engine, "alpha", 0, alpha)
    stage(round_engine, "beta", 0, beta)
    commit(round_engine, "alpha", [alpha])
    with round_engine.begin() as conn:
        assert list(CoordinatorRepositories(conn).matching.match("r1", 2)) == []
        assert CoordinatorRepositories(conn).submissions.committed_members("r1") == ["alpha"]
    commit(round_engine, "beta", [beta])
    with round_engine.begin() as conn:
        repo = CoordinatorRepositories(conn)
        assert [(t, m, h) for t, m, _, h in repo.matching.match("r1", 2)] == [
            (token("a"), "alpha", 2),
            (token("a"), "beta", 2),
        ]
        assert repo.submissions.committed_members("r1") == ["alpha", "beta"]
        assert repo.submissions.submitted_count("r1", "beta") == 2


def test_discard_uncommitted_leaves_nothing(round_engine: Engine) -> None:
    alpha = items("alpha", ["a"])
    stage(round_engine, "alpha", 0, alpha)
    commit(round_engine, "alpha", [alpha])
    stage(round_engine, "beta", 0, items("beta", ["a", "b"]))
    stage(round_engine, "beta", 1, items("beta", ["c"]))
    stage(round_engine, "gamma", 0, items("gamma", ["d"]))
    with round_engine.begin() as conn:
        repo = CoordinatorRepositories(conn)
        assert repo.rounds.transition_round("r1", RoundState.OPEN, RoundState.CLOSED, at=NOW, reason="deadline")
        assert repo.submissions.discard_uncommitted("r1") == 4  # Items of beta (3) and gamma (1).
    with round_engine.begin() as conn:
        for table in (submissions, submission_chunks):
            members = conn.execute(select(table.c.member_id).distinct()).scalars().all()
            assert members == ["alpha"], table.name
        assert conn.execute(select(member_sets.c.set_id).distinct()).scalars().all() == ["alpha@r1"]
        # alpha's delta was applied to its standing set at commit: no staged rows remain.
        assert conn.execute(select(func.count()).select_from(submitted_tokens)).scalar_one() == 0
        assert CoordinatorRepositories(conn).submissions.submission_status("r1", "beta").state == SubmissionState.NONE
