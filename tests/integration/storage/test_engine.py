"""make_engine and the schema: pragmas, URLs, UTC datetimes, idempotent creation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import Engine, select, text

from alliance_psi.errors import ConfigurationError, StorageError
from alliance_psi.storage import create_schema, make_engine
from alliance_psi.storage.schema import audit_log


def test_sqlite_missing_directory_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "no-such-dir" / "node.db"
    with pytest.raises(StorageError, match=str(path.parent)):
        make_engine(f"sqlite:///{path}")


@pytest.mark.parametrize("url", ["mysql://u@h/db", "postgresql+psycopg2://u@h/db", "not a url"])
def test_unsupported_urls_are_refused(url: str) -> None:
    with pytest.raises(ConfigurationError):
        make_engine(url)


def test_postgresql_url_uses_psycopg() -> None:
    engine = make_engine("postgresql://user@localhost/alliance")
    assert engine.url.drivername == "postgresql+psycopg"
    engine.dispose()


def test_sqlite_pragmas(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'node.db'}")
    with engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA synchronous")).scalar() == 1  # NORMAL
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert conn.execute(text("PRAGMA busy_timeout")).scalar() == 30_000
    engine.dispose()


def test_create_schema_again_keeps_every_row(engine: Engine) -> None:
    create_schema(engine)
    entry = {"seq": 1, "at": datetime.now(UTC), "actor": "a", "action": "b", "detail": "{}"}
    with engine.begin() as conn:
        conn.execute(audit_log.insert().values(**entry, prev_hash=bytes(32), entry_hash=bytes(32)))
    create_schema(engine)  # A restarted server runs it again over a database in use.
    with engine.connect() as conn:
        rows = conn.execute(select(audit_log.c.seq, audit_log.c.actor, audit_log.c.action)).all()
    assert [tuple(row) for row in rows] == [(1, "a", "b")]


def test_datetimes_come_back_utc_aware(engine: Engine) -> None:
    east8 = datetime(2025, 3, 1, 20, 0, 0, 654321, tzinfo=timezone(timedelta(hours=8)))
    with engine.begin() as conn:
        conn.execute(
            audit_log.insert().values(
                seq=1, at=east8, actor="a", action="b", detail="{}", prev_hash=bytes(32), entry_hash=bytes(32)
            )
        )
        stored = conn.execute(select(audit_log.c.at)).scalar_one()
    assert stored == east8
    assert stored.tzinfo == UTC


def test_naive_datetimes_are_refused(engine: Engine) -> None:
    with pytest.raises(Exception, match="naive datetime"), engine.begin() as conn:
        conn.execute(
            audit_log.insert().values(
                seq=1,
                at=datetime(2025, 1, 1),
                actor="a",
                action="b",
                detail="{}",
                prev_hash=bytes(32),
                entry_hash=bytes(32),
            )
        )
