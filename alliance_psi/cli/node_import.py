"""``alliance-psi node import | withdraw | purge-expired | status``: the node's own blacklist.

``import`` streams a blacklist file (``alliance_psi.identifiers.importer``) into the node's
database in one transaction: every valid row or none. Rejected rows go to a rejects file next to
the input. ``withdraw`` and ``purge-expired`` delete identifiers (never flag them), and their
cached tokens with them. ``status`` counts what the node holds.

Security: raw identifiers stay on the node, in its database and its rejects file (created with
mode 0600). The console shows counts, rows, fields and reasons, which quote a value only as a
short truncated prefix, and reports a database error by the driver's first line alone, never
with the statement's parameters, which hold the values.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import click

from alliance_psi.cli._options import reported
from alliance_psi.cli.node import database_option, node_group
from alliance_psi.errors import InvalidIdentifier
from alliance_psi.identifiers import IdentifierType

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from alliance_psi.identifiers.importer import ImportRecord, Rejection

# The importer (with the normalizers it loads), SQLAlchemy, the storage layer and rich are
# imported by the functions that use them, so that only the command that runs pays for them.

__all__ = ["import_file", "purge_expired", "status", "withdraw"]

_BATCH = 1000
_SHOWN_PROBLEMS = 10
_EXISTING_FILE = click.Path(exists=True, dir_okay=False, path_type=Path)
_TYPE = click.Choice([member.value for member in IdentifierType])


@dataclass
class _Tally:
    """What a command did, for its summary; ``problems`` keeps only the first few rejections."""

    figures: dict[str, int]
    rejected: int = 0
    problems: list[Rejection] = field(default_factory=list)

    def reject(self, rejection: Rejection) -> None:
        self.rejected += 1
        if len(self.problems) < _SHOWN_PROBLEMS:
            self.problems.append(rejection)


@node_group.command("import")
@click.argument("file", type=_EXISTING_FILE)
@click.option(
    "--type", "type_", type=_TYPE, default=None, help="Type of rows without one (then a value column suffices)."
)
@click.option("--strict", is_flag=True, help="Import nothing if any row is rejected (exit code 1).")
@click.option(
    "--rejects",
    "rejects_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="CSV file for rejected rows (UTF-8 with BOM). [default: FILE.rejects.csv]",
)
@database_option
def import_file(file: Path, type_: str | None, strict: bool, rejects_path: Path | None, database: str) -> None:
    """Import the blacklist FILE (.csv, .jsonl, .ndjson, .xlsx): every valid row in one transaction.

    Exit code 0 if rows were imported or all were already present, even with some rejected rows;
    1 if no row was valid, or with --strict if any row was rejected (then nothing is imported).
    """
    rejects_path = rejects_path or file.with_name(file.name + ".rejects.csv")
    if rejects_path.resolve() == file.resolve():
        raise click.UsageError("--rejects must not be the input file")
    with reported():
        with _engine(database) as engine:
            tally = _import(engine, file, type_, strict, rejects_path)
    _print_summary(f"import {file.name}", tally)
    if tally.rejected:
        click.echo(f"rejected rows written to {rejects_path}")
    if strict and tally.rejected:
        raise click.ClickException(f"strict mode: {tally.rejected} rows rejected, nothing imported")
    if tally.figures["rows read"] and not (tally.figures["imported"] or tally.figures["duplicates"]):
        raise click.ClickException("no row could be imported")


def _import(engine: Engine, file: Path, type_: str | None, strict: bool, rejects_path: Path) -> _Tally:
    """Stream ``file`` into the database in one transaction (rolled back in strict mode with rejections)."""
    from alliance_psi.identifiers.importer import Rejection, count_rows, read_blacklist
    from alliance_psi.storage import MemberRepository

    now = datetime.now(UTC)
    figures = {"rows read": 0, "imported": 0, "duplicates": 0, "rejected": 0, "expired (purged)": 0}
    tally = _Tally(figures)
    items = read_blacklist(file, default_type=type_)
    with (
        _progress(count_rows(file)) as advance,
        _RejectsFile(rejects_path) as rejects,
        engine.connect() as conn,
        conn.begin() as transaction,
    ):
        repo = MemberRepository(conn)
        while batch := list(islice(items, _BATCH)):
            records = []
            for item in batch:
                if isinstance(item, Rejection):
                    tally.reject(item)
                    rejects.write(item)
                else:
                    records.append(_stored(item))
            inserted, duplicates = repo.upsert_identifiers(records, at=now)
            figures.update(
                {
                    "rows read": figures["rows read"] + len(batch),
                    "imported": figures["imported"] + inserted,
                    "duplicates": figures["duplicates"] + duplicates,
                }
            )
            advance(batch[-1].row)
        figures.update({"rejected": tally.rejected, "expired (purged)": repo.purge_expired(now)})
        if strict and tally.rejected:
            transaction.rollback()
            figures.update({"imported": 0, "duplicates": 0, "expired (purged)": 0})
    return tally


def _stored(record: ImportRecord) -> dict[str, Any]:
    """The repository row for a record (the database keeps an absent severity as "")."""
    return {
        "type": record.type,
        "canonical": record.canonical,
        "category": record.category,
        "severity": record.severity or "",
        "first_seen": record.first_seen,
        "case_ref": record.case_ref,
        "note": record.note,
        "expires_at": record.expires_at,
    }


@node_group.command("withdraw")
@click.option(
    "--type", "type_", type=_TYPE, default=None, help="Type of the VALUE arguments (or of --file rows without one)."
)
@click.option(
    "--file", "file", type=_EXISTING_FILE, default=None, help="Blacklist file of the identifiers to withdraw."
)
@click.argument("values", metavar="[VALUE]...", nargs=-1)
@database_option
def withdraw(type_: str | None, file: Path | None, values: tuple[str, ...], database: str) -> None:
    """Delete identifiers and their cached tokens: --type T VALUE..., or the rows of --file FILE.

    One transaction. Reports how many were withdrawn, not found, or invalid (with the row, or the
    VALUE's position, and the reason). Exit code 1 only if no value was valid.
    """
    from alliance_psi.identifiers.importer import Rejection, read_blacklist
    from alliance_psi.storage import MemberRepository

    if bool(values) == (file is not None):
        raise click.UsageError("give either --type T VALUE... or --file FILE")
    if values and type_ is None:
        raise click.UsageError("VALUE arguments need --type")
    tally = _Tally({"withdrawn": 0, "not found": 0, "invalid": 0})
    not_found: list[int] = []
    with reported():
        items = (
            read_blacklist(file, default_type=type_, identifiers_only=True)
            if file is not None
            else _arguments(type_ or "", values)
        )
        with _engine(database) as engine, engine.begin() as conn:
            repo = MemberRepository(conn)
            for item in items:
                if isinstance(item, Rejection):
                    tally.reject(item)
                elif repo.withdraw(item.type, item.canonical):
                    tally.figures["withdrawn"] += 1
                else:
                    not_found.append(item.row)
    tally.figures.update({"not found": len(not_found), "invalid": tally.rejected})
    _print_summary("withdraw", tally, problems="invalid values")
    if not_found:
        rows = ", ".join(map(str, not_found[:_SHOWN_PROBLEMS])) + (", …" if len(not_found) > _SHOWN_PROBLEMS else "")
        click.echo(f"not found: rows {rows}")
    if tally.rejected and not (tally.figures["withdrawn"] or not_found):
        raise click.ClickException("no valid value to withdraw")


def _arguments(type_: str, values: Iterable[str]) -> Iterator[ImportRecord | Rejection]:
    """Normalize VALUE arguments, numbered by position, as the importer does rows."""
    from alliance_psi.identifiers import normalize
    from alliance_psi.identifiers.importer import ImportRecord, Rejection

    for position, value in enumerate(values, 1):
        try:
            canonical = normalize(type_, value).canonical
        except InvalidIdentifier as error:
            yield Rejection(position, "value", str(error), {}, f"invalid {error.type}: {error.reason}")
            continue
        yield ImportRecord(position, type_, canonical, "other", None, None, None, None, None)


@node_group.command("purge-expired")
@database_option
def purge_expired(database: str) -> None:
    """Delete the identifiers whose expiry time has passed, with their cached tokens."""
    from alliance_psi.storage import MemberRepository

    with reported():
        with _engine(database) as engine, engine.begin() as conn:
            purged = MemberRepository(conn).purge_expired(datetime.now(UTC))
    click.echo(f"purged {purged} expired identifiers")


@node_group.command("status")
@database_option
def status(database: str) -> None:
    """Count this node's identifiers by type and category (never showing a value)."""
    from rich import box
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text
    from sqlalchemy import func, select

    from alliance_psi.storage.schema import identifiers

    query = (
        select(identifiers.c.type, identifiers.c.category, func.count())
        .group_by(identifiers.c.type, identifiers.c.category)
        .order_by(identifiers.c.type, identifiers.c.category)
    )
    with reported():
        with _engine(database) as engine, engine.execution_options(sqlite_begin="DEFERRED").connect() as conn:
            counts = [tuple(row) for row in conn.execute(query)]
    table = Table(title="identifiers on this node", box=box.SIMPLE)
    for name, justify in (("type", "left"), ("category", "left"), ("count", "right")):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for type_, category, count in counts:
        table.add_row(Text(type_), Text(category), str(count))
    table.add_row("total", "", str(sum(count for *_, count in counts)), end_section=True)
    Console().print(table)


# Shared pieces. ------------------------------------------------------------------------------


@contextmanager
def _engine(database: str) -> Iterator[Engine]:
    """An engine on the node's database, with the schema created if missing."""
    from alliance_psi.storage import create_schema, make_engine

    engine = make_engine(database)
    try:
        create_schema(engine)
        yield engine
    finally:
        engine.dispose()


@contextmanager
def _progress(total: int | None) -> Iterator[Callable[[int], None]]:
    """A transient progress bar on stderr, shown only on a terminal; yields ``advance(row)``."""
    from rich.console import Console
    from rich.progress import MofNCompleteColumn, Progress

    console = Console(stderr=True)
    columns = (*Progress.get_default_columns(), MofNCompleteColumn())
    with Progress(*columns, console=console, transient=True, disable=not console.is_terminal) as progress:
        task = progress.add_task("reading rows", total=total)
        yield lambda row: progress.update(task, completed=row)


class _RejectsFile:
    """Rejected rows as CSV in UTF-8 with a BOM (so Excel opens it): row, field, reason, then the
    original cells. Created at the first rejection with mode 0600, as it holds raw identifiers."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._handle: TextIO | None = None
        self._columns: list[str] = []

    def __enter__(self) -> _RejectsFile:
        return self

    def write(self, rejection: Rejection) -> None:
        if self._handle is None:
            descriptor = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            self._handle = open(descriptor, "w", encoding="utf-8-sig", newline="")
            self._columns = list(rejection.raw)
            csv.writer(self._handle).writerow(["row", "field", "reason", *self._columns])
        cells = [rejection.raw.get(column, "") for column in self._columns]
        csv.writer(self._handle).writerow([rejection.row, rejection.field, rejection.reason, *cells])

    def __exit__(self, *_: object) -> None:
        if self._handle is not None:
            self._handle.close()


def _print_summary(title: str, tally: _Tally, *, problems: str = "rejected rows") -> None:
    """Print the figures, then the first rejections (row, field, reason; never a whole value)."""
    from rich import box
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = Console()
    table = Table(title=title, box=box.SIMPLE, show_header=False)
    table.add_column("figure")
    table.add_column("count", justify="right")
    for label, count in tally.figures.items():
        table.add_row(label, str(count))
    console.print(table)
    if not tally.problems:
        return
    shown = f"first {len(tally.problems)} of {tally.rejected}" if tally.rejected > len(tally.problems) else "all"
    listing = Table(title=f"{problems} ({shown})", box=box.SIMPLE)
    for name in ("row", "field", "reason"):
        listing.add_column(name)
    for rejection in tally.problems:
        # Text, not markup: a reason quotes part of a value, which must never be read as styling.
        listing.add_row(str(rejection.row), Text(rejection.field), Text(rejection.reason))
    console.print(listing)
