"""Rounds (create, get, list, compare-and-set transitions) and signed results stored in pages."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
from sqlalchemy import Engine

from alliance_psi.errors import Conflict, InvalidRequest, NotFound
from alliance_psi.protocol.model import RoundState
from alliance_psi.storage import CoordinatorRepositories

from .support import NOW, make_round


def test_create_get_list(engine: Engine) -> None:
    first = make_round("r1")
    second = replace(make_round("r2", created_at=NOW + timedelta(minutes=1)), invited=None, share_labels=False)
    with engine.begin() as conn:
        repo = CoordinatorRepositories(conn)
        repo.rounds.create_round(first)
        repo.rounds.create_round(second)
    with engine.begin() as conn:
        repo = CoordinatorRepositories(conn)
        assert repo.rounds.get_round("r1") == first
        assert repo.rounds.get_round("r2") == second
        assert repo.rounds.list_rounds() == [first, second]
        assert repo.rounds.list_rounds(RoundState.OPEN) == [first, second]
        assert repo.rounds.list_rounds(RoundState.CLOSED) == []


def test_duplicate_round_is_a_conflict(engine: Engine) -> None:
    with engine.begin() as conn:
        CoordinatorRepositories(conn).rounds.create_round(make_round("r1"))
    with pytest.raises(Conflict, match="round r1 already exists"), engine.begin() as conn:
        CoordinatorRepositories(conn).rounds.create_round(replace(make_round("r1"), name="other"))
    with engine.begin() as conn:
        assert CoordinatorRepositories(conn).rounds.get_round("r1").name == "round r1"


def test_unknown_round(engine: Engine) -> None:
    with engine.begin() as conn:
        repo = CoordinatorRepositories(conn)
        with pytest.raises(NotFound, match="no round nope"):
            repo.rounds.get_round("nope")
        with pytest.raises(NotFound):
            repo.rounds.transition_round("nope", RoundState.OPEN, RoundState.CLOSED, at=NOW)


def test_transition_is_compare_and_set(engine: Engine) -> None:
    closed_at, matched_at = NOW + timedelta(hours=1), NOW + timedelta(hours=2)
    with engine.begin() as conn:
        repo = CoordinatorRepositories(conn)
        repo.rounds.create_round(make_round("r1"))
        assert repo.rounds.transition_round("r1", RoundState.OPEN, RoundState.CLOSED, at=closed_at, reason="deadline")
        # The state moved: a second close (say, from a racing deadline timer) does nothing.
        assert not repo.rounds.transition_round("r1", RoundState.OPEN, RoundState.CLOSED, at=matched_at, reason="admin")
        assert repo.rounds.transition_round("r1", RoundState.CLOSED, RoundState.MATCHED, at=matched_at)
        assert not repo.rounds.transition_round("r1", RoundState.CLOSED, RoundState.MATCHED, at=NOW)
    with engine.begin() as conn:
        stored = CoordinatorRepositories(conn).rounds.get_round("r1")
    assert (stored.state, stored.closed_at, stored.close_reason, stored.matched_at) == (
        RoundState.MATCHED,
        closed_at,
        "deadline",
        matched_at,
    )


@pytest.mark.parametrize(
    ("from_state", "to_state"),
    [
        (RoundState.CLOSED, RoundState.OPEN),
        (RoundState.OPEN, RoundState.MATCHED),
        (RoundState.MATCHED, RoundState.CLOSED),
    ],
)
def test_backward_or_skipping_transitions_are_refused(
    engine: Engine, from_state: RoundState, to_state: RoundState
) -> None:
    with engine.begin() as conn, pytest.raises(InvalidRequest):
        CoordinatorRepositories(conn).rounds.transition_round("r1", from_state, to_state, at=NOW)


def test_results_are_a_header_and_pages(engine: Engine) -> None:
    with engine.begin() as conn:
        repo = CoordinatorRepositories(conn)
        repo.rounds.create_round(make_round("r1"))
        repo.results.store_result_page("r1", "alpha", 0, 0, [b"leaf-0", b"leaf-1"])
        repo.results.store_result_page("r1", "alpha", 1, 2, [b"leaf-2" * 1000])
        repo.results.store_result("r1", "alpha", b"header", b"sig", 2, at=NOW)
        repo.results.store_result("r1", "beta", b"empty", b"sig", 0, at=NOW)
    with engine.begin() as conn:
        repo = CoordinatorRepositories(conn)
        assert repo.results.get_result("r1", "alpha") == (b"header", b"sig", 2)
        assert repo.results.get_result_page("r1", "alpha", 0) == (0, (b"leaf-0", b"leaf-1"))
        assert repo.results.get_result_page("r1", "alpha", 1) == (2, (b"leaf-2" * 1000,))
        assert repo.results.get_result("r1", "beta") == (b"empty", b"sig", 0)
        with pytest.raises(Conflict, match="a result is already stored for alpha in round r1"):
            repo.results.store_result("r1", "alpha", b"other", b"sig2", 2, at=NOW)
        with pytest.raises(Conflict, match="page 0 of the result for alpha in round r1 is already stored"):
            repo.results.store_result_page("r1", "alpha", 0, 0, [b"other"])
        with pytest.raises(NotFound, match="no result for gamma in round r1"):
            repo.results.get_result("r1", "gamma")
        with pytest.raises(NotFound, match="no page 2 of the result for alpha"):
            repo.results.get_result_page("r1", "alpha", 2)


def test_a_corrupt_page_is_an_error_not_a_short_result(engine: Engine) -> None:
    from sqlalchemy import update

    from alliance_psi.errors import StorageError
    from alliance_psi.storage.schema import result_pages

    with engine.begin() as conn:
        repo = CoordinatorRepositories(conn)
        repo.rounds.create_round(make_round("r1"))
        repo.results.store_result_page("r1", "alpha", 0, 0, [b"leaf-0", b"leaf-1"])
        conn.execute(update(result_pages).values(leaves=b"\x00\x00\x00\x06leaf-0\x00\x00"))
        with pytest.raises(StorageError, match="a stored result page is corrupt"):
            repo.results.get_result_page("r1", "alpha", 0)
