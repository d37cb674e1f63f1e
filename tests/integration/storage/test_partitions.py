"""The coordinator's token tables on PostgreSQL: hash-partitioned by token, loaded with COPY, and
moved into partitions in place when a database made before partitioning is upgraded."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, MetaData, event, func, select
from sqlalchemy.exc import DataError, IntegrityError

from alliance_psi.protocol.submission import chunk_digest
from alliance_psi.storage import CoordinatorRepositories, create_schema
from alliance_psi.storage._common import bulk_insert
from alliance_psi.storage.partitions import partition_names
from alliance_psi.storage.schema import TOKEN_PARTITIONS, TOKEN_TABLES, member_sets, rounds, set_holders, submissions
from tests.conftest import backend_engine

from .support import NOW, items, make_round, submission_digest

NAMES = [f"n{i}" for i in range(400)]


@pytest.fixture
def postgresql_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """A fresh PostgreSQL database with the whole schema (these properties are PostgreSQL's own)."""
    with backend_engine("postgresql", request, tmp_path) as engine:
        yield engine


def relkind(engine: Engine, name: str) -> str | None:
    with engine.connect() as conn:
        kind: str | None = conn.exec_driver_sql("SELECT relkind FROM pg_class WHERE relname = %s", (name,)).scalar()
    return kind


def partitions_of(engine: Engine, name: str) -> list[str]:
    with engine.connect() as conn:
        return sorted(
            conn.exec_driver_sql(
                "SELECT inhrelid::regclass::text FROM pg_inherits WHERE inhparent = %s::regclass", (name,)
            ).scalars()
        )


def commit_whole_set(engine: Engine, member: str) -> None:
    chunk = items(member, NAMES)
    with engine.begin() as conn:
        repos = CoordinatorRepositories(conn)
        repos.submissions.stage_chunk("r1", member, 0, chunk, chunk_digest(chunk), at=NOW)
    with engine.begin() as conn:
        CoordinatorRepositories(conn).submissions.commit_submission(
            "r1", member, item_count=len(chunk), digest=submission_digest([chunk]), at=NOW
        )


def test_token_tables_are_hash_partitioned_by_token(postgresql_engine: Engine) -> None:
    with postgresql_engine.begin() as conn:
        CoordinatorRepositories(conn).rounds.create_round(make_round("r1"))
    commit_whole_set(postgresql_engine, "alpha")
    for table in TOKEN_TABLES:
        assert relkind(postgresql_engine, table.name) == "p"
        assert partitions_of(postgresql_engine, table.name) == partition_names(table)
    # The rows are spread over the partitions by token, and read back through the parent.
    with postgresql_engine.connect() as conn:
        per_partition = dict(
            conn.exec_driver_sql("SELECT tableoid::regclass::text, count(*) FROM member_sets GROUP BY 1").all()
        )
        held = conn.execute(select(func.count()).select_from(set_holders)).scalar_one()
    assert sum(per_partition.values()) == held == len(NAMES)
    assert len(per_partition) == TOKEN_PARTITIONS


def test_a_database_made_before_partitioning_is_moved_in_place(postgresql_engine: Engine) -> None:
    # Rebuild the token tables as the version before partitioning made them: plain tables.
    plain = MetaData()
    for referenced in (rounds, submissions):  # For the foreign keys; these tables stay as they are.
        referenced.to_metadata(plain)
    with postgresql_engine.begin() as conn:
        for table in TOKEN_TABLES:
            conn.exec_driver_sql(f"DROP TABLE {table.name}")
        for table in TOKEN_TABLES:
            old = table.to_metadata(plain)
            old.dialect_options["postgresql"]["partition_by"] = None
            old.create(conn)
        CoordinatorRepositories(conn).rounds.create_round(make_round("r1"))
    assert relkind(postgresql_engine, member_sets.name) == "r"
    commit_whole_set(postgresql_engine, "alpha")
    commit_whole_set(postgresql_engine, "beta")
    with postgresql_engine.connect() as conn:
        before = sorted(conn.execute(select(member_sets)).all())
        holders_before = sorted(conn.execute(select(set_holders)).all())

    create_schema(postgresql_engine)

    for table in TOKEN_TABLES:
        assert relkind(postgresql_engine, table.name) == "p"
        assert partitions_of(postgresql_engine, table.name) == partition_names(table)
        assert relkind(postgresql_engine, f"{table.name}_unpartitioned") is None
    with postgresql_engine.connect() as conn:
        assert sorted(conn.execute(select(member_sets)).all()) == before
        assert sorted(conn.execute(select(set_holders)).all()) == holders_before
        assert len(before) == 2 * len(NAMES)
    # The moved tables take new rows, each index in place: the key still refuses a repeat.
    with pytest.raises(IntegrityError), postgresql_engine.begin() as conn:
        bulk_insert(conn, set_holders, ("set_scope", "match_token", "holders"), [(*holders_before[0][:2], 1)])
    create_schema(postgresql_engine)  # Again: nothing left to move.
    assert relkind(postgresql_engine, member_sets.name) == "p"


def test_submitted_chunks_are_loaded_with_copy(postgresql_engine: Engine) -> None:
    with postgresql_engine.begin() as conn:
        CoordinatorRepositories(conn).rounds.create_round(make_round("r1"))
    statements: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    event.listen(postgresql_engine, "before_cursor_execute", seen)
    try:
        commit_whole_set(postgresql_engine, "alpha")
    finally:
        event.remove(postgresql_engine, "before_cursor_execute", seen)
    # COPY goes to the driver directly: no INSERT of the set's rows passed through SQLAlchemy.
    assert not [s for s in statements if s.startswith(f"INSERT INTO {member_sets.name} ")]
    assert [s for s in statements if s.startswith(f"INSERT INTO {set_holders.name} ")]  # The commit's.
    with postgresql_engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(member_sets)).scalar_one() == len(NAMES)


def test_a_copy_that_breaks_a_key_rolls_back_to_its_savepoint(postgresql_engine: Engine) -> None:
    row = ("scope", bytes(16), 1)
    with postgresql_engine.begin() as conn:
        bulk_insert(conn, set_holders, ("set_scope", "match_token", "holders"), [row])
        with pytest.raises(IntegrityError), conn.begin_nested():
            bulk_insert(
                conn, set_holders, ("set_scope", "match_token", "holders"), [("scope", bytes([1]) * 16, 1), row]
            )
        # The transaction goes on: the failed COPY left nothing.
        assert conn.execute(select(func.count()).select_from(set_holders)).scalar_one() == 1


def test_a_copy_the_database_refuses_raises_sqlalchemys_error_of_its_kind(postgresql_engine: Engine) -> None:
    # As an INSERT's would: callers that catch SQLAlchemyError (a node's retry loop) catch it too.
    with pytest.raises(DataError) as refused, postgresql_engine.begin() as conn:
        bulk_insert(conn, set_holders, ("set_scope", "match_token", "holders"), [("nul\x00scope", bytes(16), 1)])
    assert refused.value.orig.sqlstate == "22021"  # type: ignore[union-attr]


def test_sqlite_keeps_plain_token_tables(tmp_path: Path) -> None:
    from alliance_psi.storage import make_engine

    engine = make_engine(f"sqlite:///{tmp_path / 'c.db'}")
    create_schema(engine)
    with engine.connect() as conn:
        names = set(conn.exec_driver_sql("SELECT name FROM sqlite_master WHERE type = 'table'").scalars())
    engine.dispose()
    assert {table.name for table in TOKEN_TABLES} <= names
    assert not {name for name in names if "_p0" in name}
