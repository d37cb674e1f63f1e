"""Grouping across members: exactly the planted overlaps, with the right holder counts."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from sqlalchemy import Engine, event

from alliance_psi.errors import InvalidRequest
from alliance_psi.protocol.submission import chunk_digest
from alliance_psi.storage import CoordinatorRepositories

from .support import NOW, items, label, make_round, run_concurrently, submission_digest, token

MEMBERS = ("alpha", "beta", "gamma")
CHUNK = 250


def planted_names() -> dict[str, list[str]]:
    """Each member's names: its own ones plus overlaps planted with the others."""
    shared = {
        ("alpha", "beta", "gamma"): [f"all-{i}" for i in range(7)],
        ("alpha", "beta"): [f"ab-{i}" for i in range(11)],
        ("beta", "gamma"): [f"bc-{i}" for i in range(5)],
        ("alpha", "gamma"): [f"ac-{i}" for i in range(3)],
    }
    names = {member: [f"{member}-own-{i}" for i in range(600)] for member in MEMBERS}
    for holders, group in shared.items():
        for member in holders:
            names[member].extend(group)
    # Interleave the planted names with the member's own ones, as real data would be.
    return {member: sorted(group, key=token) for member, group in names.items()}


@pytest.fixture
def submitted(engine: Engine) -> dict[str, list[str]]:
    names = planted_names()
    with engine.begin() as conn:
        repo = CoordinatorRepositories(conn)
        repo.rounds.create_round(make_round("r1"))
        for member, member_names in names.items():
            whole = items(member, member_names)
            chunks = [whole[i : i + CHUNK] for i in range(0, len(whole), CHUNK)]
            for index, chunk in enumerate(chunks):
                repo.submissions.stage_chunk("r1", member, index, chunk, chunk_digest(chunk), at=NOW)
            repo.submissions.commit_submission(
                "r1", member, item_count=len(whole), digest=submission_digest(chunks), at=NOW
            )
    return names


@pytest.mark.parametrize("threshold", [2, 3])
def test_match_returns_exactly_the_planted_tokens(
    engine: Engine, submitted: dict[str, list[str]], threshold: int
) -> None:
    # The expectation, built with Python sets alone.
    holders: dict[str, set[str]] = {}
    for member, names in submitted.items():
        for name in names:
            holders.setdefault(name, set()).add(member)
    expected = sorted(
        (token(name), member, label(member, name), len(members))
        for name, members in holders.items()
        if len(members) >= threshold
        for member in members
    )
    with engine.begin() as conn:
        rows = list(CoordinatorRepositories(conn).matching.match("r1", threshold))
    assert rows == expected
    assert len(rows) == (7 * 3 + (11 + 5 + 3) * 2 if threshold == 2 else 7 * 3)


def test_aggregate_has_sizes_and_counts_only(engine: Engine, submitted: dict[str, list[str]]) -> None:
    with engine.begin() as conn:
        report = CoordinatorRepositories(conn).matching.aggregate("r1")
    assert report == {
        "round_id": "r1",
        "submissions": {
            m: {"state": "committed", "item_count": len(submitted[m]), "set_count": len(submitted[m])} for m in MEMBERS
        },
        "committed_members": 3,
        "matches_by_holder_count": {2: 11 + 5 + 3, 3: 7},
    }
    assert Counter(type(v) for v in report["matches_by_holder_count"]) == Counter({int: 2})


def test_match_threshold_must_be_positive(engine: Engine) -> None:
    with engine.begin() as conn, pytest.raises(InvalidRequest):
        list(CoordinatorRepositories(conn).matching.match("r1", 0))


def test_members_submitting_at_once(engine: Engine) -> None:
    """Four members stage and commit concurrently, each on its own connection."""
    members = [f"m{i}" for i in range(4)]
    with engine.begin() as conn:
        CoordinatorRepositories(conn).rounds.create_round(make_round("r1"))

    def member(slot: int) -> None:
        name = members[slot]
        whole = items(name, ["shared-1", "shared-2"] + [f"{name}-{i}" for i in range(40)])
        chunks = [whole[i : i + 10] for i in range(0, len(whole), 10)]
        for index, chunk in enumerate(chunks):
            with engine.begin() as conn:
                CoordinatorRepositories(conn).submissions.stage_chunk(
                    "r1", name, index, chunk, chunk_digest(chunk), at=NOW
                )
        with engine.begin() as conn:
            CoordinatorRepositories(conn).submissions.commit_submission(
                "r1", name, item_count=len(whole), digest=submission_digest(chunks), at=NOW
            )

    run_concurrently(len(members), member)
    with engine.begin() as conn:
        rows = list(CoordinatorRepositories(conn).matching.match("r1", 4))
    assert sorted((t, m, h) for t, m, _, h in rows) == sorted(
        (token(n), m, 4) for n in ("shared-1", "shared-2") for m in members
    )


def test_postgresql_matching_probes_each_candidate_whatever_the_statistics(
    engine: Engine, submitted: dict[str, list[str]]
) -> None:
    """On PostgreSQL, matching reads the sets through one index probe per candidate token, under
    a nested loop, in a plan that cannot turn into a join over every row of every set (a hash or
    merge join, which needs ``ANALYZE`` of the partitioned tables to be avoided), and runs with
    JIT compilation off and a cursor planned for every row. The plan is read with ``EXPLAIN``
    of the very statement matching sends, in its transaction."""
    if engine.dialect.name != "postgresql":
        pytest.skip("the plan of PostgreSQL's matching statement")
    sent: list[tuple[str, Any]] = []

    def keep(conn, cursor, statement, parameters, context, executemany) -> None:  # type: ignore[no-untyped-def]
        if "member_sets" in statement and "set_holders" in statement:
            sent.append((statement, parameters))

    with engine.begin() as conn:
        event.listen(conn, "before_cursor_execute", keep)
        rows = list(CoordinatorRepositories(conn).matching.match("r1", 2))
        event.remove(conn, "before_cursor_execute", keep)
        assert len(rows) == 7 * 3 + (11 + 5 + 3) * 2
        assert conn.exec_driver_sql("SHOW jit").scalar() == "off"
        assert float(conn.exec_driver_sql("SHOW cursor_tuple_fraction").scalar()) == 1.0
        [(statement, parameters)] = sent
        plan = "\n".join(conn.exec_driver_sql(f"EXPLAIN {statement}", parameters).scalars())
    assert "Nested Loop" in plan
    assert "Hash Join" not in plan and "Merge Join" not in plan, plan
