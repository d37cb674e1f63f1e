"""Building an engine: SQLite (the default) or PostgreSQL, with the same schema and code.

``make_engine`` is a function, never an import side effect. On SQLite it turns on WAL,
``synchronous=NORMAL``, foreign keys (the member node's token cache cascades on withdrawal), a
30 s busy timeout and ``secure_delete`` (a withdrawn identifier's bytes are overwritten, not
left in the file's free space), and it makes every transaction a write transaction
(``BEGIN IMMEDIATE``), so that read-then-write sequences such as a quota reservation or an
audit-log append are serialized by SQLite itself instead of failing with "database is locked"
on upgrade. A read-only caller may opt out with
``engine.execution_options(sqlite_begin="DEFERRED")``.

A SQLite database file is created with mode 0600 before SQLite opens it (SQLite gives its -wal,
-shm and -journal files the database file's mode), and an existing one, with those files, loses
any group and others' access: the member node's holds raw identifiers and label keys.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path
from typing import Any

from sqlalchemy import Column, Engine, Table, create_engine, event, inspect
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.schema import CreateColumn

from alliance_psi.defaults import NODE_BUSY_TIMEOUT_SECONDS, NODE_PAGE_CACHE_MIB, NODE_WAL_CHECKPOINT_PAGES
from alliance_psi.errors import ConfigurationError, StorageError
from alliance_psi.storage.partitions import ensure_partitions, partition_in_place, unpartitioned_token_tables
from alliance_psi.storage.schema import metadata

__all__ = ["create_schema", "make_engine", "make_node_engine"]

_log = logging.getLogger(__name__)
_BUSY_TIMEOUT_MS = 30_000
_SQLITE_BEGIN_MODES = {"DEFERRED", "IMMEDIATE", "EXCLUSIVE"}
_PG_DRIVER = "postgresql+psycopg"
_SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")


def make_engine(
    url: str,
    *,
    busy_timeout: float = _BUSY_TIMEOUT_MS / 1000,
    page_cache_mib: int | None = None,
    wal_checkpoint_pages: int | None = None,
) -> Engine:
    """Return an engine for ``url`` (``sqlite:///path`` or ``postgresql://…``).

    PostgreSQL URLs without a driver, or naming ``psycopg``, use psycopg 3. The engine hides
    statement parameters (tokens, labels, on a member node raw identifiers) from its errors and
    logs (``hide_parameters``). ``busy_timeout`` is how many seconds a SQLite connection waits
    for another's write lock before it fails ("database is locked"); a member node's commands
    wait longer (``defaults.NODE_BUSY_TIMEOUT_SECONDS``), so that ``node import`` waits for
    ``node run``'s import of a large file rather than failing. ``page_cache_mib`` bounds each
    SQLite connection's page cache at that many MiB instead of SQLite's 2 MiB (``PRAGMA
    cache_size``; a member node's, ``make_node_engine``); ``wal_checkpoint_pages`` lets a SQLite
    file's WAL grow to that many pages before a commit copies them into the database (``PRAGMA
    wal_autocheckpoint``, 1,000 by default), so that a page written by several commits in between
    is copied once. PostgreSQL's cache and log are the server's: both are ignored there.

    Raises:
        StorageError: the directory of a SQLite file does not exist.
        ConfigurationError: the URL cannot be parsed or names another backend or driver.
    """
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ConfigurationError(f"not a database URL: {exc}") from None
    backend, _, driver = parsed.drivername.partition("+")
    if backend == "sqlite" and driver in ("", "pysqlite"):
        return _sqlite_engine(parsed, int(busy_timeout * 1000), page_cache_mib, wal_checkpoint_pages)
    if backend in ("postgresql", "postgres") and driver in ("", "psycopg"):
        return create_engine(parsed.set(drivername=_PG_DRIVER), pool_pre_ping=True, hide_parameters=True)
    raise ConfigurationError(f"unsupported database URL scheme {parsed.drivername!r}: use sqlite:/// or postgresql://")


def make_node_engine(url: str) -> Engine:
    """``make_engine`` for a member node's database, as every node command opens it: a longer wait
    for another's write lock (``NODE_BUSY_TIMEOUT_SECONDS``) and, on SQLite, a larger page cache
    (``NODE_PAGE_CACHE_MIB``) and WAL (``NODE_WAL_CHECKPOINT_PAGES``). The coordinator's and the
    custodians' engines keep SQLite's defaults.

    Raises:
        StorageError, ConfigurationError: as ``make_engine``.
    """
    return make_engine(
        url,
        busy_timeout=NODE_BUSY_TIMEOUT_SECONDS,
        page_cache_mib=NODE_PAGE_CACHE_MIB,
        wal_checkpoint_pages=NODE_WAL_CHECKPOINT_PAGES,
    )


def create_schema(engine: Engine) -> None:
    """Create every missing table and index, and add missing columns that have a default; running
    it again changes nothing.

    An upgrade that only adds tables, or columns with a server default (or nullable ones), is
    applied in place in one transaction, keeping every row (a member's kept results and
    checkpoints, a custodian's quota counters, the coordinator's audit log). On PostgreSQL the
    coordinator's token tables are hash-partitioned by token (``storage.partitions``); a database
    made before that has its plain token tables moved into partitioned ones in the same
    transaction, every row kept (minutes for tens of millions of rows, logged).

    Raises:
        StorageError: a table lacks a column this version cannot add without a value for the rows
            already there (a database made by an incompatible alliance-psi): nothing is changed,
            and the message names the table and the columns.
    """
    existing = inspect(engine)
    to_add: list[tuple[Table, Column[Any]]] = []
    for table in metadata.sorted_tables:
        if not existing.has_table(table.name):
            continue
        found = {column["name"] for column in existing.get_columns(table.name)}
        missing = [table.columns[name] for name in table.columns.keys() if name not in found]
        blocking = sorted(c.name for c in missing if not (c.nullable or c.server_default is not None))
        if blocking:
            raise StorageError(
                f"the database's table {table.name} lacks columns {blocking} that this version cannot add "
                "to existing rows: it was made by an incompatible version of alliance-psi; keep it for the "
                "record and start this version on a new database (docs/operations.md, Upgrade)"
            )
        to_add.extend((table, column) for column in missing)
    with engine.begin() as conn:
        for table, column in to_add:
            conn.exec_driver_sql(
                f"ALTER TABLE {table.name} ADD COLUMN {CreateColumn(column).compile(dialect=engine.dialect)}"
            )
        for table in unpartitioned_token_tables(conn):
            moved = partition_in_place(conn, table)
            _log.warning("upgrade: table %s is now hash-partitioned by token (%d rows moved)", table.name, moved)
        metadata.create_all(conn, checkfirst=True)
        ensure_partitions(conn)
        for table, _ in to_add:  # Indexes over the columns just added (create_all skips existing tables).
            for index in table.indexes:
                index.create(conn, checkfirst=True)


def _sqlite_engine(
    url: URL, busy_timeout_ms: int, page_cache_mib: int | None, wal_checkpoint_pages: int | None
) -> Engine:
    database = url.database or ""
    in_memory = database in ("", ":memory:") or database.startswith("file::memory:")
    if not in_memory:
        directory = Path(database).expanduser().resolve().parent
        if not directory.is_dir():
            raise StorageError(f"cannot open SQLite database {database}: directory {directory} does not exist")
        if not database.startswith("file:"):  # A URI filename: SQLite's own syntax, opened as given.
            _make_private(Path(database))
    engine = create_engine(url, connect_args={"check_same_thread": False}, hide_parameters=True)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # SQLAlchemy, not the sqlite3 module, decides when a transaction begins (see _on_begin).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            if not in_memory:
                cursor.execute("PRAGMA journal_mode=WAL")
                if wal_checkpoint_pages is not None:
                    cursor.execute(f"PRAGMA wal_autocheckpoint={wal_checkpoint_pages}")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")
            cursor.execute("PRAGMA secure_delete=ON")
            if page_cache_mib is not None:
                cursor.execute(f"PRAGMA cache_size={-1024 * page_cache_mib}")  # Negative: KiB, not pages.
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        mode = str(conn.get_execution_options().get("sqlite_begin", "IMMEDIATE")).upper()
        if mode not in _SQLITE_BEGIN_MODES:
            raise ConfigurationError(f"sqlite_begin must be one of {sorted(_SQLITE_BEGIN_MODES)}")
        conn.exec_driver_sql(f"BEGIN {mode}")

    return engine


def _make_private(path: Path) -> None:
    """Create ``path`` 0600 if it does not exist; take group and others' access from it and its side files.

    Raises:
        StorageError: a file exists that this process may not change the mode of.
    """
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass
    except OSError:
        return  # Let SQLite report what is wrong with the path, in its words.
    for candidate in (path, *(path.with_name(path.name + suffix) for suffix in _SQLITE_SIDE_FILES)):
        try:
            mode = stat.S_IMODE(candidate.stat().st_mode)
            if mode & 0o077:
                os.chmod(candidate, mode & 0o700)
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise StorageError(
                f"SQLite file {candidate} is open to group or others and its mode cannot be changed "
                f"({exc.strerror}): run `chmod 600 {candidate}` as its owner"
            ) from None
