"""Small helpers the repositories share: dialect-neutral upserts, batching, streaming, JSON."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

from sqlalchemy import Connection, Executable, Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Result
from sqlalchemy.exc import DBAPIError

from alliance_psi.crypto.parallel import chunked

__all__ = [
    "IN_BATCH",
    "STREAM_BATCH",
    "batched",
    "bulk_insert",
    "canonical_json",
    "insert_if_absent",
    "insert_ignoring",
    "placeholder",
    "stream",
]

T = TypeVar("T")

# Bound parameters per IN (...) list: far below SQLite's and PostgreSQL's limits.
IN_BATCH = 500
# Rows fetched per round trip when streaming large results.
STREAM_BATCH = 10_000


def insert_ignoring(conn: Connection, table: Table, *, conflict_on: Sequence[str] | None = None) -> Any:
    """Return ``INSERT … ON CONFLICT DO NOTHING`` for the connection's backend.

    Unlike catching an IntegrityError, this leaves a PostgreSQL transaction usable, and a
    concurrent insert of the same key waits for the other transaction instead of failing.
    """
    dialect = conn.dialect.name
    if dialect == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing(index_elements=conflict_on)
    if dialect == "sqlite":
        return sqlite.insert(table).on_conflict_do_nothing(index_elements=conflict_on)
    raise NotImplementedError(f"unsupported database backend {dialect!r}")


def insert_if_absent(conn: Connection, table: Table, values: Mapping[str, Any]) -> bool:
    """Insert one row unless its key exists; return whether it was inserted.

    RETURNING tells, where INSERT's rowcount is not reported by every driver.
    """
    key = next(iter(table.primary_key.columns))
    statement = insert_ignoring(conn, table).values(**values).returning(key)
    return conn.execute(statement).first() is not None


def placeholder(conn: Connection) -> str:
    """The driver's placeholder for a positional parameter in raw SQL (``?`` or ``%s``)."""
    return "?" if conn.dialect.paramstyle == "qmark" else "%s"


def bulk_insert(
    conn: Connection,
    table: Table,
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    *,
    ignore_existing: bool = False,
) -> None:
    """Insert many rows of plain values (str, int, bool, bytes, None): ``COPY … FROM STDIN`` on
    PostgreSQL, the driver's executemany on SQLite.

    SQLAlchemy's own executemany processes every parameter of every row in Python, which costs
    more than the insert itself for hundreds of thousands of tokens. Only for columns whose
    values need no type conversion; the statement names the table's columns. With
    ``ignore_existing``, rows whose key exists are skipped (``ON CONFLICT DO NOTHING``, which
    SQLite and PostgreSQL both understand; COPY cannot skip, so PostgreSQL inserts then).

    Raises:
        sqlalchemy.exc.IntegrityError: without ``ignore_existing``, a row's key exists or a
            constraint fails (from COPY too); run it in a savepoint to keep the transaction.
        sqlalchemy.exc.DBAPIError: any other refusal of the database, of the class an INSERT's
            would have (from COPY too).
    """
    if not rows:
        return
    if conn.dialect.name == "postgresql" and not ignore_existing:
        _copy_rows(conn, table, columns, rows)
        return
    names = ", ".join(table.c[name].name for name in columns)
    marks = ", ".join([placeholder(conn)] * len(columns))
    conflict = " ON CONFLICT DO NOTHING" if ignore_existing else ""
    conn.exec_driver_sql(f"INSERT INTO {table.name} ({names}) VALUES ({marks}){conflict}", list(map(tuple, rows)))


def _copy_rows(conn: Connection, table: Table, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """``COPY table (columns) FROM STDIN`` in PostgreSQL's binary format, through psycopg 3, in
    the connection's transaction: one statement and one stream for all the rows. The driver's
    errors are raised as SQLAlchemy's (``IntegrityError``, ``DataError``, ``OperationalError`` …),
    as they would be from an INSERT, without parameters."""
    import psycopg  # Only a PostgreSQL connection gets here; member nodes on SQLite never load it.

    names = ", ".join(table.c[name].name for name in columns)
    types = [table.c[name].type.compile(dialect=conn.dialect).lower() for name in columns]
    statement = f"COPY {table.name} ({names}) FROM STDIN (FORMAT BINARY)"
    driver = conn.connection.driver_connection
    assert isinstance(driver, psycopg.Connection)
    try:
        with driver.cursor() as cursor, cursor.copy(statement) as copy:
            copy.set_types(types)
            for row in rows:
                copy.write_row(row)
    except psycopg.Error as exc:
        raise DBAPIError.instance(statement, None, exc, psycopg.Error, hide_parameters=True) from None


def batched(items: Iterable[T], size: int = IN_BATCH) -> Iterator[list[T]]:
    """Yield lists of at most ``size`` items, in order (``IN_BATCH`` by default)."""
    return chunked(items, size)


def stream(conn: Connection, statement: Executable, params: Mapping[str, Any] | None = None) -> Result[Any]:
    """Execute ``statement`` fetching rows in batches (a server-side cursor on PostgreSQL).

    The options apply to this statement only, never to the caller's connection. The result must
    be consumed before the transaction ends.
    """
    return conn.execute(statement, params or {}, execution_options={"yield_per": STREAM_BATCH})


def canonical_json(value: Any) -> str:
    """Serialize ``value`` as canonical JSON: sorted keys, no spaces, UTF-8 text, no NaN."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
