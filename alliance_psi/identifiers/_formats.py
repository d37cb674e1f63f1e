"""The format readers of blacklist files: CSV, JSONL and XLSX rows, numbered as a person sees them.

Each reader yields a ``Row`` (or a ``Rejection`` for a row whose shape is wrong) per non-blank row.
CSV and sheets: the first non-blank row is the header (row 1 of a CSV or sheet counts from the top);
JSONL: one object per line, numbered by line. Text files are read in the encoding ``_textfile``
chose for the whole file; workbooks through openpyxl, read-only.
"""

from __future__ import annotations

import csv
import json
import re
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from itertools import chain
from pathlib import Path
from typing import Any
from zipfile import BadZipFile

from alliance_psi.errors import ImportFileError, InvalidIdentifier, truncate_value
from alliance_psi.identifiers._rows import Rejection, Row, cell_text, field_of
from alliance_psi.identifiers._textfile import TextEncoding, opened, text_lines
from alliance_psi.identifiers.registry import normalize

__all__ = ["TEXT_READERS", "sheet_rows", "xlsx_rows"]

_LINE_END = re.compile(r"\r\n|\r|\n")  # The line ends the csv module reads.


def _tabular(
    rows: Iterator[tuple[int, list[Any]]], path: Path, default_type: str | None, *, quoted: bool = False
) -> Iterator[Row | Rejection]:
    """Map the first non-blank row (the header) to fields, then yield each non-blank row under it.

    ``quoted`` (CSV): a line break in a cell came from quoting; outside a note it is a quote left
    open, and the row is refused naming the rows it swallowed (``_runaway``).
    """
    shown_rows = ((number, [cell_text(cell) for cell in cells], cells) for number, cells in rows)
    non_blank = (shown_row for shown_row in shown_rows if any(shown_row[1]))
    if (first := next(non_blank, None)) is None:
        raise ImportFileError(f"{path}: the file is empty" + (" (no header row)" if default_type is None else ""))
    if default_type is not None and _is_bare_value(first[1], default_type):
        for number, shown, cells in chain([first], non_blank):
            raw = {"value": shown[0]}
            yield (quoted and _runaway(number, shown, {0: "value"}, raw)) or Row(number, {"value": cells[0]}, raw)
        return
    shown = first[1]
    while not shown[-1]:
        shown.pop()
    header = [name or f"column {index}" for index, name in enumerate(shown, 1)]
    fields = _header_fields(header, path, default_type)
    for number, shown, cells in non_blank:
        raw = dict(zip(header, shown + [""] * (len(header) - len(shown)), strict=False))
        if quoted and (runaway := _runaway(number, shown, fields, raw)):
            yield runaway
        elif extra := sum(1 for cell in shown[len(header) :] if cell):
            reason = f"{extra} cell(s) beyond the header's {len(header)} columns"
            yield Rejection(number, "row", reason, raw, "cells beyond the header")
        else:
            yield Row(number, {name: cells[index] for index, name in fields.items() if index < len(cells)}, raw)


def _runaway(number: int, shown: list[str], fields: dict[int, str], raw: dict[str, str]) -> Rejection | None:
    """The rejection of CSV row ``number`` if a quoted cell other than the note runs over a line
    end: a quote left open (``"phone,139…``) reads the next rows into the cell, up to the next
    quote or the end of the file. The reason names the rows taken in, so none is lost unseen."""
    for index, name in fields.items():
        breaks = len(_LINE_END.findall(shown[index].rstrip("\r\n"))) if index < len(shown) else 0
        if name != "note" and breaks:
            last = number + breaks
            taken = f"row {last}" if last == number + 1 else f"rows {number + 1} to {last}"
            reason = f"a quoted field runs over the line end (an unclosed quote?) and took in {taken}; close the quote"
            return Rejection(number, name, reason, raw, "quoted field runs over the line end")
    return None


def _is_bare_value(shown: list[str], default_type: str) -> bool:
    """Whether a first row is one value of ``default_type`` in the first column, not a header."""
    if not shown[0] or any(shown[1:]) or field_of(shown[0]) is not None:
        return False
    try:
        normalize(default_type, shown[0])
    except InvalidIdentifier:
        return False
    return True


def _header_fields(header: list[str], path: Path, default_type: str | None) -> dict[int, str]:
    fields: dict[int, str] = {}
    for index, name in enumerate(header):
        if (field_name := field_of(name)) in fields.values():
            raise ImportFileError(f"{path}: two columns give {field_name!r}")
        if field_name is not None:
            fields[index] = field_name
    for required in ("value",) if default_type else ("type", "value"):
        if required not in fields.values():
            # A header without the column may be a first data row: unknown names are shown truncated.
            found = ", ".join(name if field_of(name) else repr(truncate_value(name)) for name in header)
            raise ImportFileError(
                f"{path}: missing required column {required!r}; columns found: {found}{_separator_hint(header)}"
            )
    return fields


def _separator_hint(header: list[str]) -> str:
    """A hint when the header names the columns with another separator than the comma: Excel in
    many European locales saves "CSV" separated by ';', and a tab-separated export is common."""
    for separator, shown in ((";", "';'"), ("\t", "tabs")):
        if any(field_of(part) for name in header if separator in name for part in name.split(separator)):
            return (
                f'; the file seems separated by {shown}, not commas: save it as "CSV UTF-8 (Comma delimited)" '
                "(or as .xlsx, which has no separator; docs/file-format.md)"
            )
    return ""


def _csv_rows(path: Path, encoding: TextEncoding, default_type: str | None) -> Iterator[Row | Rejection]:
    with text_lines(path, encoding) as lines:
        yield from _tabular(_numbered(csv.reader(lines), path), path, default_type, quoted=True)


def _numbered(reader: Any, path: Path) -> Iterator[tuple[int, list[Any]]]:
    """Yield each CSV record with the line it starts on (a quoted cell may span lines)."""
    start = 1
    try:
        for cells in reader:
            yield start, cells
            start = reader.line_num + 1
    except csv.Error as exc:
        raise ImportFileError(f"{path}: line {reader.line_num}: {exc}") from None


def xlsx_rows(path: Path, default_type: str | None) -> Iterator[Row | Rejection]:
    """The rows of the active sheet of the workbook at ``path`` (formulas as their cached values)."""
    with _workbook(path) as workbook:
        yield from _tabular(_sheet(workbook, path), path, default_type)


def _sheet(workbook: Any, path: Path) -> Iterator[tuple[int, list[Any]]]:
    """The active sheet's rows, numbered from 1; a sheet openpyxl cannot read to its end (its XML
    or its compressed data damaged) is an ``ImportFileError``, as a workbook it cannot open is."""
    number = 0
    try:
        for number, cells in enumerate(workbook.active.iter_rows(values_only=True), 1):
            yield number, list(cells)
    except (SyntaxError, BadZipFile, zlib.error, EOFError, KeyError, ValueError) as exc:  # ParseError is a SyntaxError.
        raise ImportFileError(
            f"{path}: a damaged workbook: its sheet cannot be read past row {number} ({type(exc).__name__}); "
            "open it in Excel and save it again"
        ) from None


def _jsonl_rows(path: Path, encoding: TextEncoding, _default_type: str | None) -> Iterator[Row | Rejection]:
    with text_lines(path, encoding) as lines:
        for number, line in enumerate(lines, 1):
            if line.strip():
                yield _json_row(number, line)


def _json_row(number: int, line: str) -> Row | Rejection:
    original = {"line": line.rstrip("\r\n")}
    try:
        item = json.loads(line)
    except json.JSONDecodeError as exc:
        return Rejection(number, "row", f"not valid JSON: {exc.msg} at column {exc.colno}", original, "not valid JSON")
    if not isinstance(item, dict):
        return Rejection(number, "row", "not a JSON object", original)
    cells: dict[str, object] = {}
    for key, value in item.items():
        if (name := field_of(key)) in cells:
            return Rejection(number, "row", f"two keys give {name!r}", original)
        if name is not None:
            cells[name] = value
    return Row(number, cells, original)


# The readers of text files, by extension (``xlsx_rows`` reads workbooks).
TEXT_READERS: dict[str, Callable[[Path, TextEncoding, str | None], Iterator[Row | Rejection]]] = {
    ".csv": _csv_rows,
    ".jsonl": _jsonl_rows,
    ".ndjson": _jsonl_rows,
}


# Workbooks (``_textfile`` reads the text of CSV and JSONL files). ----------------------------


@contextmanager
def _workbook(path: Path) -> Iterator[Any]:
    """The openpyxl workbook at ``path``, read-only, closed on exit."""
    import openpyxl  # Only .xlsx files need it.
    from openpyxl.utils.exceptions import InvalidFileException

    with opened(path) as handle:
        try:
            workbook = openpyxl.load_workbook(handle, read_only=True, data_only=True)
        except (InvalidFileException, BadZipFile, KeyError, OSError, ValueError) as exc:
            raise ImportFileError(f"{path}: not an Excel .xlsx workbook ({type(exc).__name__})") from None
        try:
            yield workbook
        finally:
            workbook.close()


def sheet_rows(path: Path) -> int:
    """The rows of a workbook's active sheet, from its dimension (an upper bound, header included)."""
    with _workbook(path) as workbook:
        return int(workbook.active.max_row)
