"""Building an engine: SQLite (the default) or PostgreSQL, with the same schema and code.

``make_engine`` is a function, never an import side effect. On SQLite it turns on WAL,
``synchronous=NORMAL``, foreign keys (the member node's token cache cascades on withdrawal) and a
30 s busy timeout, and it makes every transaction a write transaction (``BEGIN IMMEDIATE``), so
that read-then-write sequences such as a quota reservation or an audit-log append are
serialized by SQLite itself instead of failing with "database is locked" on upgrade. A
read-only caller may opt out with ``engine.execution_options(sqlite_begin="DEFERRED")``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import ArgumentError

from alliance_psi.errors import ConfigurationError, StorageError
from alliance_psi.storage.schema import metadata

__all__ = ["create_schema", "make_engine"]

_BUSY_TIMEOUT_MS = 30_000
_SQLITE_BEGIN_MODES = {"DEFERRED", "IMMEDIATE", "EXCLUSIVE"}
_PG_DRIVER = "postgresql+psycopg"


def make_engine(url: str) -> Engine:
    """Return an engine for ``url`` (``sqlite:///path`` or ``postgresql://…``).

    PostgreSQL URLs without a driver, or naming ``psycopg``, use psycopg 3.

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
        return _sqlite_engine(parsed)
    if backend in ("postgresql", "postgres") and driver in ("", "psycopg"):
        return create_engine(parsed.set(drivername=_PG_DRIVER), pool_pre_ping=True)
    raise ConfigurationError(f"unsupported database URL scheme {parsed.drivername!r}: use sqlite:/// or postgresql://")


def create_schema(engine: Engine) -> None:
    """Create every missing table and index; running it again changes nothing."""
    metadata.create_all(engine, checkfirst=True)


def _sqlite_engine(url: URL) -> Engine:
    database = url.database or ""
    in_memory = database in ("", ":memory:") or database.startswith("file::memory:")
    if not in_memory:
        directory = Path(database).expanduser().resolve().parent
        if not directory.is_dir():
            raise StorageError(f"cannot open SQLite database {database}: directory {directory} does not exist")
    engine = create_engine(url, connect_args={"check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # SQLAlchemy, not the sqlite3 module, decides when a transaction begins (see _on_begin).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            if not in_memory:
                cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        mode = str(conn.get_execution_options().get("sqlite_begin", "IMMEDIATE")).upper()
        if mode not in _SQLITE_BEGIN_MODES:
            raise ConfigurationError(f"sqlite_begin must be one of {sorted(_SQLITE_BEGIN_MODES)}")
        conn.exec_driver_sql(f"BEGIN {mode}")

    return engine
