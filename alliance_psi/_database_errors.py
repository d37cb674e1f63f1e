"""What may be said of a database error in a log line or an error message: ``describe_database_error``.

SQLAlchemy's message of a failed statement holds the statement (and its parameters, unless the
engine hides them), and PostgreSQL's DETAIL line quotes the row it refused: a token, a label, on
a member node a raw identifier. The description keeps the driver's first line (unless it quotes
a value), its SQLSTATE and the table and constraint names, and nothing else. One rule for every
layer: the serve commands' log formatter (``cli._logging``), the CLI's one-line errors
(``cli._options.reported``) and ``node run``'s log lines (``services.node_daemon``).

SQLAlchemy and the drivers are not imported here: an error of a module never loaded cannot exist.
"""

from __future__ import annotations

import sys

__all__ = ["describe_database_error"]

# Data exceptions (SQLSTATE class 22) quote the value they refused in their primary message.
_QUOTING_SQLSTATE_CLASSES = ("22",)


def describe_database_error(exc: BaseException) -> str | None:
    """What may be said of a database error (None if ``exc`` is not one): the driver's first line
    unless it quotes a value, then its SQLSTATE, table and constraint (``new row for relation "t"
    violates check constraint "c" (SQLSTATE 23514, table t, constraint c)``); never the
    statement's parameters, nor PostgreSQL's DETAIL.
    """
    sqlalchemy_exc = sys.modules.get("sqlalchemy.exc")
    if sqlalchemy_exc is not None and isinstance(exc, sqlalchemy_exc.SQLAlchemyError):
        orig = getattr(exc, "orig", None)
        if isinstance(orig, BaseException):
            return _describe_driver_error(orig)
        if isinstance(exc, sqlalchemy_exc.StatementError):
            return type(exc).__name__  # Its message holds the statement and maybe the parameters.
        return _first_line(str(exc)) or type(exc).__name__
    if _is_driver_error(exc):
        return _describe_driver_error(exc)
    return None


def _is_driver_error(exc: BaseException) -> bool:
    psycopg = sys.modules.get("psycopg")
    sqlite3 = sys.modules.get("sqlite3")
    return (psycopg is not None and isinstance(exc, psycopg.Error)) or (
        sqlite3 is not None and isinstance(exc, sqlite3.Error)
    )


def _describe_driver_error(exc: BaseException) -> str:
    sqlstate = getattr(exc, "sqlstate", None)
    diag = getattr(exc, "diag", None)
    details = [f"SQLSTATE {sqlstate}"] if sqlstate else []
    for what in ("table_name", "constraint_name"):
        value = getattr(diag, what, None) if diag is not None else None
        if value:
            details.append(f"{what.removesuffix('_name')} {value}")
    primary = ""
    if not (sqlstate and sqlstate.startswith(_QUOTING_SQLSTATE_CLASSES)):
        primary = _first_line(getattr(diag, "message_primary", None) or str(exc))
    primary = primary or type(exc).__name__
    return f"{primary} ({', '.join(details)})" if details else primary


def _first_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[0] if lines else ""
