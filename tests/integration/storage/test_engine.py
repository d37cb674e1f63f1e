"""make_engine and the schema: pragmas, URLs, UTC datetimes, idempotent creation."""

from __future__ import annotations

import stat
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, event, select, text

from alliance_psi.defaults import NODE_PAGE_CACHE_MIB, NODE_WAL_CHECKPOINT_PAGES
from alliance_psi.errors import ConfigurationError, StorageError
from alliance_psi.storage import MemberRepository, create_schema, make_engine, make_node_engine
from alliance_psi.storage.schema import audit_log, quota_usage


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
        assert conn.execute(text("PRAGMA secure_delete")).scalar() == 1
    engine.dispose()


def test_a_node_database_gets_the_larger_page_cache_and_wal_and_no_other_database_does(tmp_path: Path) -> None:
    # The member node's cold tokenization writes into the token cache's index at random places:
    # its connections keep NODE_PAGE_CACHE_MIB of pages and let the WAL hold
    # NODE_WAL_CHECKPOINT_PAGES; the coordinator's and custodians' keep SQLite's defaults (-2000:
    # 2,000 KiB; 1,000 pages), even opened in the same process after a node's.
    from alliance_psi.cli.node import open_node_database

    node_pragmas = (-1024 * NODE_PAGE_CACHE_MIB, NODE_WAL_CHECKPOINT_PAGES)

    def pragmas(conn: Any) -> tuple[int, int]:
        return conn.execute(text("PRAGMA cache_size")).scalar(), conn.execute(
            text("PRAGMA wal_autocheckpoint")
        ).scalar()

    with open_node_database(f"sqlite:///{tmp_path / 'node.db'}", create=True) as node:
        with node.connect() as conn:
            assert pragmas(conn) == node_pragmas
        other = make_engine(f"sqlite:///{tmp_path / 'coordinator.db'}")
        with other.connect() as conn:
            assert pragmas(conn) == (-2000, 1000)
        other.dispose()
        reading = node.execution_options(sqlite_begin="DEFERRED")  # Two readers at once: two connections.
        with reading.connect() as first, reading.connect() as second:
            assert pragmas(first) == pragmas(second) == node_pragmas
    assert NODE_PAGE_CACHE_MIB * 1024 > 2000 and NODE_WAL_CHECKPOINT_PAGES > 1000


def test_a_node_engine_on_postgresql_works_as_any_other(engine: Engine) -> None:
    # The page cache is SQLite's: on PostgreSQL the node's engine sets nothing and reads as usual.
    node = make_node_engine(engine.url.render_as_string(hide_password=False))
    try:
        with node.begin() as conn:
            MemberRepository(conn).upsert_identifiers(
                [{"type": "phone", "canonical": "+8613800000001", "category": "c", "severity": "s"}]
            )
        with node.connect() as conn:
            assert MemberRepository(conn).count() == 1
    finally:
        node.dispose()


def test_create_schema_again_keeps_every_row(engine: Engine) -> None:
    create_schema(engine)
    entry = {"seq": 1, "at": datetime.now(UTC), "actor": "a", "action": "b", "detail": "{}"}
    with engine.begin() as conn:
        conn.execute(audit_log.insert().values(**entry, nonce=bytes(16), leaf_hash=bytes(32)))
    create_schema(engine)  # A restarted server runs it again over a database in use.
    with engine.connect() as conn:
        rows = conn.execute(select(audit_log.c.seq, audit_log.c.actor, audit_log.c.action)).all()
    assert [tuple(row) for row in rows] == [(1, "a", "b")]


def test_a_database_of_another_version_is_refused_untouched(tmp_path: Path) -> None:
    # An audit log made by the hash-chain version: this version's Merkle log cannot append to it.
    url = f"sqlite:///{tmp_path / 'old.db'}"
    old = make_engine(url)
    with old.begin() as conn:
        conn.exec_driver_sql(
            "CREATE TABLE audit_log (seq BIGINT PRIMARY KEY, at TIMESTAMP, actor TEXT, action TEXT, "
            "detail TEXT, prev_hash BLOB, entry_hash BLOB)"
        )
    with pytest.raises(
        StorageError, match=r"table audit_log lacks columns \['leaf_hash', 'nonce'\] that this version cannot add"
    ):
        create_schema(old)
    with old.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM sqlite_master WHERE type = 'table'").scalar() == 1
    old.dispose()


def test_an_upgrade_that_adds_a_column_with_a_default_keeps_every_row(engine: Engine) -> None:
    # A custodian database from before quota_usage.resent_free: its counters (the defence against
    # probing) must survive the upgrade, and the new column starts at its default.
    create_schema(engine)
    with engine.begin() as conn:
        conn.execute(quota_usage.insert().values(member_id="bank-a", key_epoch="e1", used=7))
        conn.exec_driver_sql("ALTER TABLE quota_usage DROP COLUMN resent_free")
    create_schema(engine)
    with engine.connect() as conn:
        rows = conn.execute(select(quota_usage.c.member_id, quota_usage.c.used, quota_usage.c.resent_free)).all()
    assert [tuple(row) for row in rows] == [("bank-a", 7, 0)]
    create_schema(engine)  # And again: nothing left to add.


def test_datetimes_come_back_utc_aware(engine: Engine) -> None:
    east8 = datetime(2025, 3, 1, 20, 0, 0, 654321, tzinfo=timezone(timedelta(hours=8)))
    with engine.begin() as conn:
        conn.execute(
            audit_log.insert().values(
                seq=1, at=east8, actor="a", action="b", detail="{}", nonce=bytes(16), leaf_hash=bytes(32)
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
                nonce=bytes(16),
                leaf_hash=bytes(32),
            )
        )


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_sqlite_files_are_created_private(tmp_path: Path) -> None:
    path = tmp_path / "node.db"
    engine = make_engine(f"sqlite:///{path}")
    create_schema(engine)
    with engine.connect() as conn:  # Open while the WAL and shared-memory files exist.
        conn.execute(text("SELECT 1"))
        files = sorted(p.name for p in tmp_path.iterdir())
        assert files == ["node.db", "node.db-shm", "node.db-wal"]
        assert {name: _mode(tmp_path / name) for name in files} == dict.fromkeys(files, 0o600)
    engine.dispose()


def test_an_existing_database_open_to_others_is_made_private(tmp_path: Path) -> None:
    path = tmp_path / "node.db"
    engine = make_engine(f"sqlite:///{path}")
    create_schema(engine)
    engine.dispose()
    for name in ("node.db", "node.db-wal", "node.db-journal"):
        (tmp_path / name).touch()
        (tmp_path / name).chmod(0o644)
    make_engine(f"sqlite:///{path}").dispose()
    assert {name: _mode(tmp_path / name) for name in ("node.db", "node.db-wal", "node.db-journal")} == {
        "node.db": 0o600,
        "node.db-wal": 0o600,
        "node.db-journal": 0o600,
    }


def _secure_delete_off_by_default(engine: Engine) -> None:
    # As on an SQLite built without SQLITE_SECURE_DELETE (this one may have it on already): the
    # listener runs first on every new connection, before make_engine's own settings.
    def off(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.execute("PRAGMA secure_delete=OFF")

    event.listen(engine, "connect", off, insert=True)


def _file_after_withdrawal(engine: Engine, path: Path, kept: str, withdrawn: str) -> bytes:
    create_schema(engine)
    rows = [{"type": "phone", "canonical": v, "category": "other", "severity": ""} for v in (kept, withdrawn)]
    with engine.begin() as conn:
        MemberRepository(conn).upsert_identifiers(rows)
    with engine.begin() as conn:
        assert MemberRepository(conn).withdraw("phone", withdrawn)
    engine.dispose()  # The last connection checkpoints the WAL into the file and removes it.
    return path.read_bytes()


# Distinctive values, so that finding them in the file cannot be chance.
KEPT, WITHDRAWN = "+8613900000001", "+8613955501234"


def test_a_withdrawn_identifier_leaves_no_bytes_in_the_file(tmp_path: Path) -> None:
    path = tmp_path / "node.db"
    engine = make_engine(f"sqlite:///{path}")
    _secure_delete_off_by_default(engine)
    data = _file_after_withdrawal(engine, path, KEPT, WITHDRAWN)
    assert KEPT.encode() in data
    assert WITHDRAWN.encode() not in data


def test_without_secure_delete_the_withdrawn_bytes_stay(tmp_path: Path) -> None:
    # The control: the check above finds a deleted value when nothing overwrites it.
    path = tmp_path / "plain.db"
    engine = create_engine(f"sqlite:///{path}")
    _secure_delete_off_by_default(engine)
    assert WITHDRAWN.encode() in _file_after_withdrawal(engine, path, KEPT, WITHDRAWN)
