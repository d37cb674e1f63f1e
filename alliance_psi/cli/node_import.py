"""``alliance-psi node import | withdraw | purge-expired | status``: the node's own blacklist.

``import`` streams a blacklist file (``alliance_psi.identifiers.importer``; the format is in
docs/file-format.md) into the node's database in one transaction: every valid row or none. The
file's encoding is decided over the whole file first and printed. Rejected rows go to a rejects
file next to the input, the first ``REJECTS_KEPT`` of them, with a count per reason on the console;
a file whose first ``WRONG_FILE_ROWS`` rows are nearly all rejected is taken for the wrong file
and nothing is imported (nor a rejects file written); a file without data rows is refused before
the database is created. ``withdraw`` and ``purge-expired`` delete identifiers (never flag them),
and their cached tokens with them. ``status`` counts what the node holds.

Security: raw identifiers stay on the node, in its database and its rejects file (created with
mode 0600). The console shows counts, rows, fields and reasons, which quote a value only as a
short truncated prefix, and reports a database error by the driver's first line alone, never
with the statement's parameters, which hold the values.
"""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from itertools import chain
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from alliance_psi._plural import plural
from alliance_psi.cli._options import reported
from alliance_psi.cli.node import database_option, node_group, open_node_database
from alliance_psi.errors import InvalidIdentifier
from alliance_psi.identifiers import IdentifierType
from alliance_psi.identifiers.categories import CATEGORY_NAMES, SEVERITY_NAMES
from alliance_psi.identifiers.types import TYPE_ALIASES, identifier_type
from alliance_psi.services.blacklist_import import (
    REJECTS_KEPT,
    SHOWN_PROBLEMS,
    WRONG_FILE_ROWS,
    WRONG_FILE_VALID,
    ImportTally,
    import_records,
)

if TYPE_CHECKING:
    from alliance_psi.identifiers.importer import BlacklistFile, ImportRecord, Rejection

# The importer (with the normalizers it loads), SQLAlchemy, the storage layer and rich are
# imported by the functions that use them, so that only the command that runs pays for them.

__all__ = ["REJECTS_KEPT", "WRONG_FILE_ROWS", "WRONG_FILE_VALID", "import_file", "purge_expired", "status", "withdraw"]

_SHOWN_PROBLEMS = SHOWN_PROBLEMS
_SHOWN_REASONS = 20
_EXISTING_FILE = click.Path(exists=True, dir_okay=False, path_type=Path)


class _TypeName(click.Choice[str]):
    """``--type``: a type name, or one of the Chinese names a file's type column takes (``手机号``)."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        named = identifier_type(value) if isinstance(value, str) else None
        if named is not None:
            return named.value
        try:
            return str(super().convert(value, param, ctx))
        except click.BadParameter as exc:
            self.fail(f"{exc.message} Or a Chinese name, as in a file's type column (docs/file-format.md).", param, ctx)


_TYPE = _TypeName([member.value for member in IdentifierType])


def _encoding_option(function: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--encoding",
        default=None,
        callback=_text_codec,
        help="Encoding of a CSV or JSONL file (any Python codec, e.g. big5); overrides detection.",
    )(function)


def _text_codec(_ctx: click.Context, _param: click.Parameter, name: str | None) -> str | None:
    """Check that ``name`` is a Python text codec, so a typo is a usage error before any work."""
    from alliance_psi.identifiers.importer import ImportFileError, text_codec

    if name is None:
        return None
    try:
        text_codec(name)
    except ImportFileError as error:
        raise click.BadParameter(str(error)) from None
    return name


def _import_help() -> str:
    """``node import --help``: the file format in brief, from the tables the importer uses."""
    columns = {
        "type": f"{', '.join(IdentifierType)}; or a Chinese name: "
        + ", ".join(aliases[0] for aliases in TYPE_ALIASES.values()),
        "value": "the identifier as written (keep long numbers as text in Excel)",
        "category": f"{', '.join(CATEGORY_NAMES)} (or {', '.join(list(CATEGORY_NAMES.values())[:2])}, ...); "
        "default other",
        "severity": f"{', '.join(SEVERITY_NAMES)} (or {', '.join(SEVERITY_NAMES.values())}); optional",
        "first_seen": "YYYY-MM-DD or YYYY/M/D; optional",
        "case_ref": "at most 64 bytes, shared with matching peers; optional",
        "note": "kept on this node only; optional",
        "expires_at": "YYYY-MM-DD or YYYY-MM-DD HH:MM[+08:00], China time without a zone; optional",
    }
    table = "\n".join(
        textwrap.fill(text, 96, initial_indent=f"  {name:<12}", subsequent_indent=" " * 14)
        for name, text in columns.items()
    )
    return f"""Import the blacklist FILE (.csv, .jsonl, .ndjson, .xlsx): every valid row in one transaction.

\b
Columns (a header row; Chinese headers such as 类型 and 号码 work too):
{table}

CSV and JSONL text is UTF-8 (with or without BOM) or GB18030, decided over the whole file and
printed; Big5, mixed encodings and undecodable bytes are refused with line and offset unless
--encoding names the codec. Placeholders are rejected (org names such as N/A or 未知, one digit
repeated, ID cards born before 1900 or in the future, non-public IPs, example.com, ...), and so
are control characters in any field. Rejected rows go to the rejects file, the first
{REJECTS_KEPT:,} of them, with a count per reason on screen. If at most {WRONG_FILE_VALID} of the
first {WRONG_FILE_ROWS:,} rows are valid, the import stops: nothing is imported.

The whole format, with an example file: docs/file-format.md.

Exit code 0 if rows were imported or all were already present, even with some rejected rows; 1 if
the file has no data rows, no row was valid, the file was taken for a wrong one (then no rejects
file is written), or with --strict if any row was rejected (then nothing is imported).
"""


@node_group.command("import", help=_import_help())
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
@_encoding_option
@database_option
def import_file(
    file: Path, type_: str | None, strict: bool, rejects_path: Path | None, encoding: str | None, database: str
) -> None:
    rejects_path = rejects_path or file.with_name(file.name + ".rejects.csv")
    if rejects_path.resolve() == file.resolve():
        raise click.UsageError("--rejects must not be the input file")
    from alliance_psi.identifiers.importer import BlacklistFile

    with reported():
        blacklist = BlacklistFile(file, encoding=encoding)
        _print_encoding(blacklist)
        items = blacklist.read(default_type=type_)
        # A file without data rows is refused here, before the database is created.
        first = next(items)
        with open_node_database(database, create=True) as engine, _progress(blacklist.rows) as advance:
            tally = import_records(
                engine, chain([first], items), rejects_path=rejects_path, strict=strict, advance=advance
            )
    _print_summary(f"import {file.name}", tally)
    if tally.stopped:
        (field_name, kind), _ = tally.reasons.most_common(1)[0]
        raise click.ClickException(
            f"stopped after {WRONG_FILE_ROWS:,} rows, {tally.rejected:,} of them rejected (most often {field_name}: "
            f"{kind}): is this the right file (and the right --type or --encoding)? Nothing imported, and no "
            "rejects file written"
        )
    if tally.rejected > REJECTS_KEPT:
        click.echo(f"first {REJECTS_KEPT:,} of {tally.rejected:,} rejected rows written to {rejects_path} (capped)")
    elif tally.rejected:
        click.echo(f"rejected rows written to {rejects_path}")
    if strict and tally.rejected:
        raise click.ClickException(
            f"strict mode: {plural(tally.rejected, 'row')} rejected, nothing imported; fix the rows listed in "
            f"{rejects_path} and import again"
        )
    if not (tally.figures["imported"] or tally.figures["duplicates"]):
        raise click.ClickException(
            f"no row could be imported; the rejected rows, with their reasons, are listed in {rejects_path}"
        )


def _print_encoding(blacklist: BlacklistFile) -> None:
    """Say which encoding a text file is read in, and whether it was detected or given."""
    if blacklist.encoding is not None:
        how = "detected" if blacklist.encoding.detected else "as given"
        click.echo(f"{blacklist.path.name}: encoding {blacklist.encoding.name} ({how})")


@node_group.command("withdraw")
@click.option("--type", "type_", type=_TYPE, default=None, help="Type of the values (or of --file rows without one).")
@click.option(
    "--stdin",
    "from_stdin",
    is_flag=True,
    help="Read the values from standard input, one per line (with --type; in --encoding, default utf-8): "
    "typed, pasted or redirected (< FILE), they stay out of `ps` and shell history.",
)
@click.option(
    "--file", "file", type=_EXISTING_FILE, default=None, help="Blacklist file of the identifiers to withdraw."
)
@click.argument("values", metavar="[VALUE]...", nargs=-1)
@_encoding_option
@database_option
def withdraw(
    type_: str | None,
    from_stdin: bool,
    file: Path | None,
    values: tuple[str, ...],
    encoding: str | None,
    database: str,
) -> None:
    """Delete identifiers and their cached tokens: --type T --stdin, the rows of --file FILE, or --type T VALUE...

    One transaction. Reports how many were withdrawn, not found, or invalid (with the row, line or
    VALUE's position, and the reason). Exit code 1 only if no value was valid. A VALUE argument is
    seen by every user of the machine (`ps`) and kept in shell history, so the command warns: give
    raw identifiers on standard input (--stdin) or in a file (--file) instead.
    """
    from alliance_psi.identifiers.importer import BlacklistFile, Rejection
    from alliance_psi.storage import MemberRepository

    if sum((bool(values), file is not None, from_stdin)) != 1:
        raise click.UsageError("give one of --type T --stdin, --file FILE or --type T VALUE...")
    if (values or from_stdin) and type_ is None:
        raise click.UsageError(f"{'VALUE arguments need' if values else '--stdin needs'} --type")
    if values:
        click.echo(_VISIBLE_VALUES_WARNING, err=True)
    tally = ImportTally({"withdrawn": 0, "not found": 0, "invalid": 0})
    not_found: list[int] = []
    with reported():
        if file is not None:
            blacklist = BlacklistFile(file, encoding=encoding)
            _print_encoding(blacklist)
            items = blacklist.read(default_type=type_, identifiers_only=True)
        elif from_stdin:
            items = _arguments(type_ or "", _stdin_lines(type_ or "", encoding or "utf-8"))
        else:
            items = _arguments(type_ or "", enumerate(values, 1))
        with open_node_database(database) as engine, engine.begin() as conn:
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
        click.echo(f"not found: {'row' if len(not_found) == 1 else 'rows'} {rows}")
    if tally.rejected and not (tally.figures["withdrawn"] or not_found):
        raise click.ClickException("no valid value to withdraw")


_VISIBLE_VALUES_WARNING = (
    "warning: VALUE arguments are visible to every user of this machine (ps) and kept in your shell history; "
    "give raw identifiers with --stdin (one per line) or --file instead"
)


def _stdin_lines(type_: str, encoding: str) -> Iterator[tuple[int, str]]:
    """Standard input's non-blank lines, numbered from 1, decoded in ``encoding`` (a BOM dropped).

    Raises ``ImportFileError`` naming the line that does not decode (never its bytes).
    """
    import codecs

    from alliance_psi.errors import ImportFileError

    stream = sys.stdin.buffer
    if stream.isatty():
        click.echo(f"reading {type_} values, one per line; end with Ctrl-D", err=True)
    decode = codecs.getincrementaldecoder(encoding)()
    number = 0
    for number, raw in enumerate(stream, 1):
        try:
            line = decode.decode(raw).rstrip("\r\n")
        except UnicodeDecodeError:
            raise ImportFileError(f"standard input: line {number} is not {encoding} text") from None
        if number == 1:
            line = line.removeprefix("\ufeff")
        if line.strip():
            yield number, line
    try:
        decode.decode(b"", final=True)
    except UnicodeDecodeError:
        raise ImportFileError(f"standard input: line {number} is not {encoding} text") from None


def _arguments(type_: str, values: Iterable[tuple[int, str]]) -> Iterator[ImportRecord | Rejection]:
    """Normalize numbered values (VALUE arguments, lines of standard input), as the importer does rows."""
    from alliance_psi.identifiers import normalize
    from alliance_psi.identifiers.importer import ImportRecord, Rejection

    for position, value in values:
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
        with open_node_database(database) as engine, engine.begin() as conn:
            purged = MemberRepository(conn).purge_expired(datetime.now(UTC))
    click.echo(f"purged {plural(purged, 'expired identifier')}")


@node_group.command("status")
@database_option
def status(database: str) -> None:
    """Count this node's identifiers by type and category (never showing a value)."""
    from rich import box
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from alliance_psi.storage import MemberRepository

    with reported():
        with open_node_database(database, read_only=True) as engine, engine.connect() as conn:
            counts = MemberRepository(conn).counts()
    table = Table(title="identifiers on this node", box=box.SIMPLE)
    for name, justify in (("type", "left"), ("category", "left"), ("count", "right")):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for type_, category, count in counts:
        table.add_row(Text(type_), Text(category), str(count))
    table.add_row("total", "", str(sum(count for *_, count in counts)), end_section=True)
    Console().print(table)


# Shared pieces. ------------------------------------------------------------------------------


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


def _print_summary(title: str, tally: ImportTally, *, problems: str = "rejected rows") -> None:
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
    if len(tally.reasons) > 1 or tally.rejected > len(tally.problems):
        by_reason = Table(title="rejected rows by reason", box=box.SIMPLE)
        for name, justify in (("field", "left"), ("reason", "left"), ("rows", "right")):
            by_reason.add_column(name, justify=justify)  # type: ignore[arg-type]
        for (field_name, kind), count in tally.reasons.most_common(_SHOWN_REASONS):
            by_reason.add_row(Text(field_name), Text(kind), f"{count:,}")
        if len(tally.reasons) > _SHOWN_REASONS:
            others = sum(count for _, count in tally.reasons.most_common()[_SHOWN_REASONS:])
            by_reason.add_row("", f"{len(tally.reasons) - _SHOWN_REASONS} other reasons", f"{others:,}")
        console.print(by_reason)
    shown = f"first {len(tally.problems)} of {tally.rejected}" if tally.rejected > len(tally.problems) else "all"
    listing = Table(title=f"{problems} ({shown})", box=box.SIMPLE)
    for name in ("row", "field", "reason"):
        listing.add_column(name)
    for rejection in tally.problems:
        # Text, not markup: a reason quotes part of a value, which must never be read as styling.
        listing.add_row(str(rejection.row), Text(rejection.field), Text(rejection.reason))
    console.print(listing)
