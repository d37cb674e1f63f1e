"""Hash partitions of the coordinator's token tables on PostgreSQL, and the upgrade of a database
made before them.

``schema.TOKEN_TABLES`` (``member_sets``, ``set_holders``, ``submitted_tokens``) are declared
``PARTITION BY HASH (match_token)`` for PostgreSQL; SQLite ignores the clause and keeps plain
tables. A partitioned table holds no rows itself: ``ensure_partitions`` gives each one
``TOKEN_PARTITIONS`` partitions, ``member_sets_p00`` to ``member_sets_p15``, when it has none (a
database keeps the partitions it was made with). Every primary key and unique index of these
tables includes the token, as PostgreSQL requires of a partitioned table and Citus of a
distributed one (docs/design.md, Scaling), and no code names a partition: queries go to the
parent and PostgreSQL routes each row and each token lookup to its partition.

A database made before partitioning has plain token tables. ``partition_in_place`` moves one
into a partitioned table in the caller's transaction (PostgreSQL's DDL is transactional): the old
table is renamed aside with its indexes, the partitioned one is created, the rows are copied
inside the database, and the old table is dropped. It takes the table's lock and time in
proportion to its rows (a few minutes for tens of millions); an interrupted upgrade leaves the
database as it was.
"""

from __future__ import annotations

from sqlalchemy import Connection, Table

from alliance_psi.storage.schema import TOKEN_PARTITIONS, TOKEN_TABLES

__all__ = ["ensure_partitions", "partition_in_place", "partition_names", "unpartitioned_token_tables"]

_ASIDE = "_unpartitioned"


def partition_names(table: Table, count: int = TOKEN_PARTITIONS) -> list[str]:
    """The names of ``table``'s partitions: ``{table}_p00`` and up."""
    return [f"{table.name}_p{remainder:02d}" for remainder in range(count)]


def _relkind(conn: Connection, name: str) -> str | None:
    """'r' for a plain table, 'p' for a partitioned one, None if there is no such table."""
    kind: str | None = conn.exec_driver_sql(
        "SELECT c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE c.relname = %s AND n.nspname = current_schema()",
        (name,),
    ).scalar_one_or_none()
    return kind


def unpartitioned_token_tables(conn: Connection) -> list[Table]:
    """The token tables that exist as plain tables in this PostgreSQL database (made before
    partitioning); empty on SQLite, where they stay plain."""
    if conn.dialect.name != "postgresql":
        return []
    return [table for table in TOKEN_TABLES if _relkind(conn, table.name) == "r"]


def ensure_partitions(conn: Connection) -> None:
    """Give every partitioned token table without partitions its ``TOKEN_PARTITIONS`` hash
    partitions; a table that has partitions keeps them. Nothing on SQLite."""
    if conn.dialect.name != "postgresql":
        return
    for table in TOKEN_TABLES:
        if _relkind(conn, table.name) != "p":
            continue
        present = conn.exec_driver_sql(
            "SELECT count(*) FROM pg_inherits WHERE inhparent = %s::regclass", (table.name,)
        ).scalar_one()
        if present:
            continue
        for remainder, name in enumerate(partition_names(table)):
            conn.exec_driver_sql(
                f"CREATE TABLE {name} PARTITION OF {table.name} "
                f"FOR VALUES WITH (MODULUS {TOKEN_PARTITIONS}, REMAINDER {remainder})"
            )


def partition_in_place(conn: Connection, table: Table) -> int:
    """Replace the plain PostgreSQL table ``table`` by its partitioned form, keeping every row;
    return the number of rows moved. The caller's transaction makes it all or nothing.

    The table must already have every column of ``table`` (``create_schema`` adds missing ones
    first).
    """
    aside = f"{table.name}{_ASIDE}"
    conn.exec_driver_sql(f"ALTER TABLE {table.name} RENAME TO {aside}")
    # Index names are per schema: the old ones move aside so the new table can take them.
    indexes = conn.exec_driver_sql(
        "SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = %s::regclass",
        (aside,),
    ).scalars()
    for index in list(indexes):
        conn.exec_driver_sql(f"ALTER INDEX {index} RENAME TO {index}{_ASIDE}")
    table.create(conn)
    ensure_partitions(conn)
    columns = ", ".join(column.name for column in table.columns)
    moved = conn.exec_driver_sql(f"INSERT INTO {table.name} ({columns}) SELECT {columns} FROM {aside}").rowcount
    conn.exec_driver_sql(f"DROP TABLE {aside}")
    return int(moved)
