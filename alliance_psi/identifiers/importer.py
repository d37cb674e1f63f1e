"""Reading a member's blacklist file into validated records, one row at a time.

Contract of ``read_blacklist(path, *, default_type=None)``:

- Formats by extension: ``.csv``, ``.jsonl``/``.ndjson`` (a JSON object per line), ``.xlsx`` (the
  active sheet, formulas as their cached values). Columns, matched case-insensitively without
  surrounding spaces: ``type`` and ``value`` are required, the other ``FIELDS`` optional, the
  Chinese headers of ``COLUMN_ALIASES`` accepted, other columns ignored. The first non-blank row of
  a CSV or sheet is the header; blank rows are skipped. With ``default_type`` a row without a type
  takes it, so a ``value`` column is enough, or no header at all: a first row of one cell that is
  not a column name and normalizes as ``default_type`` is data.
- CSV and JSONL text is UTF-8, UTF-8 with a BOM, or GB18030 (Excel on Chinese Windows), chosen
  deterministically and never switched mid-file (the contract is in ``_textfile``); a byte that
  does not decode is an ``ImportFileError`` naming the file and the byte offset.
- Yields, in file order, an ``ImportRecord`` per valid row and a ``Rejection`` (its first problem)
  per invalid one, numbered as a person sees the file: the header is row 1 of a CSV or sheet, JSONL
  rows are line numbers. A type cell wins over ``default_type``. Category defaults to ``other``;
  severity is ``level1``, ``level2`` or empty (both also by their Chinese names); ``first_seen``
  is ``YYYY-MM-DD``; ``expires_at`` is a date (its midnight) or an ISO date-time, read as
  Asia/Shanghai time (UTC+8; China has no DST) when it has no zone; ``case_ref`` has at most 64
  UTF-8 bytes, to fit the shared label. Also rejected: a value in scientific notation (Excel kept
  only 15 of its digits) and a row with cells beyond the header. Repeated identifiers are not
  rejected: the repository counts them as duplicates.
- Streams: memory stays constant whatever the file size (openpyxl runs read-only).

Security: raw identifiers stay on the node. Reasons quote a value only as a short truncated prefix
(as ``InvalidIdentifier`` does), and so does a record's ``repr``; ``Rejection.raw`` holds the
original cells for the node's own rejects file and is left out of ``repr``.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import re
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, time
from itertools import chain
from pathlib import Path
from typing import Any
from zipfile import BadZipFile

from alliance_psi.errors import ImportFileError, InvalidIdentifier, truncate_value
from alliance_psi.identifiers._textfile import count_lines, opened, text_lines
from alliance_psi.identifiers.categories import CATEGORIES, CATEGORY_NAMES, SEVERITIES, SEVERITY_NAMES
from alliance_psi.identifiers.registry import normalize
from alliance_psi.identifiers.types import CHINA_TIME, Identifier, IdentifierType
from alliance_psi.identifiers.types import identifier_type as named_type

__all__ = [
    "CHINA_TIME",
    "COLUMN_ALIASES",
    "FIELDS",
    "ImportFileError",
    "ImportRecord",
    "Rejection",
    "count_rows",
    "read_blacklist",
]

FIELDS = ("type", "value", "category", "severity", "first_seen", "case_ref", "note", "expires_at")
COLUMN_ALIASES = {name: name for name in FIELDS} | {
    "类型": "type",
    "值": "value",
    "号码": "value",
    "类别": "category",
    "级别": "severity",
    "严重程度": "severity",
    "首次发现": "first_seen",
    "案件编号": "case_ref",
    "备注": "note",
    "到期": "expires_at",
    "过期时间": "expires_at",
}
# The categories and severities by code or by Chinese name (identifiers.categories).
_CATEGORY_ALIASES = {name: name for name in CATEGORIES} | {zh: name for name, zh in CATEGORY_NAMES.items()}
_SEVERITY_ALIASES = {name: name for name in SEVERITIES} | {zh: name for name, zh in SEVERITY_NAMES.items()}
# Control characters are C0 and C1 (Unicode Cc); surrogates (Cs) are what a JSON "\\ud800" decodes
# to. Notes keep tabs and line breaks (\t \n \r); labels may hold no bidirectional control either.
_SURROGATES = r"\ud800-\udfff"
_BIDI_CONTROLS = r"\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"
_FORBIDDEN_IN_LABELS = re.compile(rf"[\x00-\x1f\x7f-\x9f{_SURROGATES}{_BIDI_CONTROLS}]")
_FORBIDDEN_IN = {
    "value": re.compile(rf"[\x00-\x1f\x7f-\x9f{_SURROGATES}]"),
    "note": re.compile(rf"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f{_SURROGATES}{_BIDI_CONTROLS}]"),
}
_CHARACTER_KINDS = {"Cc": "control character", "Cs": "unpaired surrogate"}
# A shared label has a fixed padded size (crypto.labels) that the case reference shares with the rest.
_MAX_CASE_REF_BYTES = 64
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}", re.ASCII)
_DATETIME = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:?\d{2})?", re.ASCII)
# Excel keeps 15 significant digits and shows longer numbers like this: the digits are lost.
_SCIENTIFIC = re.compile(r"\d(\.\d+)?[eE]\+?\d+", re.ASCII)
_EXACT_FLOAT_LIMIT = 1e15


@dataclass(frozen=True, slots=True, repr=False)
class ImportRecord:
    """A valid row: a normalized identifier and the member's own label for it."""

    row: int
    type: str
    canonical: str
    category: str
    severity: str | None
    first_seen: date | None
    case_ref: str | None
    note: str | None
    expires_at: datetime | None

    @property
    def identifier(self) -> Identifier:
        """The normalized identifier (its ``repr`` shows only a truncated prefix)."""
        return Identifier(IdentifierType(self.type), self.canonical)

    def __repr__(self) -> str:
        # The identifier's repr shows only a truncated prefix; notes may name people, so none.
        return f"ImportRecord(row={self.row}, {self.identifier!r}, category={self.category}, severity={self.severity})"


@dataclass(frozen=True, slots=True)
class Rejection:
    """An invalid row: where (``row``, ``field``), why, and its original cells (``raw``, every
    rejection of a file with the same keys: the CSV or sheet header, ``value``, or JSONL ``line``).

    ``kind`` is the reason without any part of a value or position (``invalid phone: not a mainland
    mobile number``, ``unknown category``), to count rejections by reason; empty when the reason
    itself is that (``kind_of_reason`` gives either)."""

    row: int
    field: str
    reason: str
    raw: dict[str, str] = dataclasses.field(repr=False)
    kind: str = ""

    @property
    def kind_of_reason(self) -> str:
        """The reason as counted: ``kind``, or ``reason`` when that quotes nothing."""
        return self.kind or self.reason


@dataclass(frozen=True, slots=True)
class _Row:
    row: int
    cells: Mapping[str, object]  # Field name -> the cell as read (text, number, date or None).
    raw: dict[str, str]


class _Reject(Exception):
    def __init__(self, field_name: str, reason: str, kind: str = "") -> None:
        super().__init__(reason)
        self.field, self.reason, self.kind = field_name, reason, kind


def read_blacklist(
    path: str | Path, *, default_type: str | None = None, identifiers_only: bool = False
) -> Iterator[ImportRecord | Rejection]:
    """Yield an ``ImportRecord`` or a ``Rejection`` for every data row of ``path`` (see the module).

    ``identifiers_only`` (for withdrawals) checks only type and value; records get category ``other``.

    Raises ``ImportFileError`` (at once for an unsupported extension, else while iterating) and
    ``ValueError`` at once for an unknown ``default_type``.
    """
    path = Path(path)
    default_type = IdentifierType(default_type).value if default_type is not None else None
    reader = _READERS.get(path.suffix.lower())
    if reader is None:
        raise ImportFileError(f"{path}: unsupported file type {path.suffix!r}; use .csv, .jsonl, .ndjson or .xlsx")
    return _validated(reader(path, default_type), default_type, identifiers_only)


def count_rows(path: str | Path) -> int | None:
    """Return the lines (CSV, JSONL) or sheet rows (XLSX, from its dimension), header included, or
    None if unknown: a cheap upper bound for a progress bar, not a validation."""
    path = Path(path)
    if path.suffix.lower() == ".xlsx":
        with _workbook(path) as workbook:
            return int(workbook.active.max_row)
    return count_lines(path)


def _validated(
    rows: Iterator[_Row | Rejection], default_type: str | None, only_ids: bool
) -> Iterator[ImportRecord | Rejection]:
    for row in rows:
        if isinstance(row, Rejection):
            yield row
            continue
        try:
            yield _record(row, default_type, only_ids)
        except _Reject as problem:
            yield Rejection(row.row, problem.field, problem.reason, row.raw, problem.kind)


def _record(row: _Row, default_type: str | None, only_ids: bool) -> ImportRecord:
    text = {name: _text(row.cells.get(name)) for name in FIELDS}
    _check_characters(text, ("type", "value") if only_ids else FIELDS)
    identifier_type = named_type(text["type"] or default_type or "")
    if identifier_type is None and not text["type"]:
        raise _Reject("type", "required")
    if identifier_type is None:
        known = f"known types: {', '.join(IdentifierType)} (or their Chinese names, docs/file-format.md)"
        raise _Reject("type", f"unknown type {truncate_value(text['type'])!r}; {known}", "unknown type")
    type_name = identifier_type.value
    if not text["value"]:
        raise _Reject("value", "required")
    if _SCIENTIFIC.fullmatch(text["value"]):
        raise _Reject("value", "number in scientific notation: Excel kept only 15 digits; store the column as text")
    try:
        canonical = normalize(identifier_type, text["value"]).canonical
    except InvalidIdentifier as error:
        raise _Reject("value", str(error), f"invalid {error.type}: {error.reason}") from None
    if only_ids:
        return ImportRecord(row.row, type_name, canonical, "other", None, None, None, None, None)
    if len(text["case_ref"].encode("utf-8")) > _MAX_CASE_REF_BYTES:
        raise _Reject("case_ref", f"too long: at most {_MAX_CASE_REF_BYTES} bytes (UTF-8), to fit the shared label")
    return ImportRecord(
        row=row.row,
        type=type_name,
        canonical=canonical,
        category=_choice(text["category"], "category", _CATEGORY_ALIASES, CATEGORIES) or "other",
        severity=_choice(text["severity"], "severity", _SEVERITY_ALIASES, SEVERITIES),
        first_seen=_date(text["first_seen"]),
        case_ref=text["case_ref"] or None,
        note=text["note"] or None,
        expires_at=_expiry(text["expires_at"]),
    )


def _text(cell: object) -> str:
    """Return a cell as stripped text; a number Excel may have rounded comes out in scientific notation."""
    if cell is None:
        return ""
    if isinstance(cell, datetime):
        return cell.date().isoformat() if cell.time() == time() else cell.isoformat(sep=" ")
    if isinstance(cell, date):
        return cell.isoformat()
    if isinstance(cell, float) and cell.is_integer() and abs(cell) < _EXACT_FLOAT_LIMIT:
        return str(int(cell))
    if isinstance(cell, float) and abs(cell) >= _EXACT_FLOAT_LIMIT:
        return f"{cell:.14e}"
    return str(cell).strip()


def _choice(text: str, name: str, aliases: Mapping[str, str], allowed: Iterable[str]) -> str | None:
    if not text:
        return None
    if (chosen := aliases.get(text.lower())) is None:
        raise _Reject(
            name, f"unknown {name} {truncate_value(text)!r}; allowed: {', '.join(allowed)}", f"unknown {name}"
        )
    return chosen


def _check_characters(text: Mapping[str, str], names: Iterable[str]) -> None:
    """Reject a control character (or an unpaired surrogate, which JSON can spell) in any field.

    Notes may hold tabs and line breaks; values may hold invisible format characters, which
    normalization removes (phone numbers copied from a phone come wrapped in bidi marks); the
    other fields, which peers read in shared labels, may hold no bidirectional control either.
    """
    for name in names:
        pattern = _FORBIDDEN_IN.get(name, _FORBIDDEN_IN_LABELS)
        if match := pattern.search(text[name]):
            char = match.group()
            kind = _CHARACTER_KINDS.get(unicodedata.category(char), "bidirectional control character")
            raise _Reject(name, f"{kind} U+{ord(char):04X}", kind)


def _date(text: str) -> date | None:
    try:
        if _DATE.fullmatch(text):
            return date.fromisoformat(text)
        _empty(text)
        return None
    except ValueError:
        raise _Reject("first_seen", "expected YYYY-MM-DD") from None


def _expiry(text: str) -> datetime | None:
    try:
        if _DATE.fullmatch(text):
            moment = datetime.combine(date.fromisoformat(text), time())
        elif _DATETIME.fullmatch(text):
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        else:
            _empty(text)
            return None
    except ValueError:
        raise _Reject("expires_at", "expected YYYY-MM-DD or YYYY-MM-DD HH:MM[:SS][+HH:MM]") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=CHINA_TIME)


def _empty(text: str) -> None:
    """None for an empty optional cell; ``ValueError`` for text in no accepted form."""
    if text:
        raise ValueError("not an accepted form")


# Formats: each yields _Row (or Rejection) objects numbered as in the file. -------------------


def _tabular(rows: Iterator[tuple[int, list[Any]]], path: Path, default_type: str | None) -> Iterator[_Row | Rejection]:
    """Map the first non-blank row (the header) to fields, then yield each non-blank row under it."""
    shown_rows = ((number, [_text(cell) for cell in cells], cells) for number, cells in rows)
    non_blank = (shown_row for shown_row in shown_rows if any(shown_row[1]))
    if (first := next(non_blank, None)) is None:
        if default_type is None:
            raise ImportFileError(f"{path}: the file is empty (no header row)")
        return
    if default_type is not None and _is_bare_value(first[1], default_type):
        for number, shown, cells in chain([first], non_blank):
            yield _Row(number, {"value": cells[0]}, {"value": shown[0]})
        return
    shown = first[1]
    while not shown[-1]:
        shown.pop()
    header = [name or f"column {index}" for index, name in enumerate(shown, 1)]
    fields = _header_fields(header, path, default_type)
    for number, shown, cells in non_blank:
        raw = dict(zip(header, shown + [""] * (len(header) - len(shown)), strict=False))
        if extra := sum(1 for cell in shown[len(header) :] if cell):
            reason = f"{extra} cell(s) beyond the header's {len(header)} columns"
            yield Rejection(number, "row", reason, raw, "cells beyond the header")
        else:
            yield _Row(number, {name: cells[index] for index, name in fields.items() if index < len(cells)}, raw)


def _is_bare_value(shown: list[str], default_type: str) -> bool:
    """Whether a first row is one value of ``default_type`` in the first column, not a header."""
    if not shown[0] or any(shown[1:]) or _field_of(shown[0]) is not None:
        return False
    try:
        normalize(default_type, shown[0])
    except InvalidIdentifier:
        return False
    return True


def _header_fields(header: list[str], path: Path, default_type: str | None) -> dict[int, str]:
    fields: dict[int, str] = {}
    for index, name in enumerate(header):
        if (field_name := _field_of(name)) in fields.values():
            raise ImportFileError(f"{path}: two columns give {field_name!r}")
        if field_name is not None:
            fields[index] = field_name
    for required in ("value",) if default_type else ("type", "value"):
        if required not in fields.values():
            # A header without the column may be a first data row: unknown names are shown truncated.
            found = ", ".join(name if _field_of(name) else repr(truncate_value(name)) for name in header)
            raise ImportFileError(f"{path}: missing required column {required!r}; columns found: {found}")
    return fields


def _field_of(name: str) -> str | None:
    return COLUMN_ALIASES.get(name.strip().lower())


def _csv_rows(path: Path, default_type: str | None) -> Iterator[_Row | Rejection]:
    with text_lines(path) as lines:
        yield from _tabular(_numbered(csv.reader(lines), path), path, default_type)


def _numbered(reader: Any, path: Path) -> Iterator[tuple[int, list[Any]]]:
    """Yield each CSV record with the line it starts on (a quoted cell may span lines)."""
    start = 1
    try:
        for cells in reader:
            yield start, cells
            start = reader.line_num + 1
    except csv.Error as exc:
        raise ImportFileError(f"{path}: line {reader.line_num}: {exc}") from None


def _xlsx_rows(path: Path, default_type: str | None) -> Iterator[_Row | Rejection]:
    with _workbook(path) as workbook:
        rows = workbook.active.iter_rows(values_only=True)
        yield from _tabular(((number, list(cells)) for number, cells in enumerate(rows, 1)), path, default_type)


def _jsonl_rows(path: Path, _default_type: str | None) -> Iterator[_Row | Rejection]:
    with text_lines(path) as lines:
        for number, line in enumerate(lines, 1):
            if line.strip():
                yield _json_row(number, line)


def _json_row(number: int, line: str) -> _Row | Rejection:
    original = {"line": line.rstrip("\r\n")}
    try:
        item = json.loads(line)
    except json.JSONDecodeError as exc:
        return Rejection(number, "row", f"not valid JSON: {exc.msg} at column {exc.colno}", original, "not valid JSON")
    if not isinstance(item, dict):
        return Rejection(number, "row", "not a JSON object", original)
    cells: dict[str, object] = {}
    for key, value in item.items():
        if (name := _field_of(key)) in cells:
            return Rejection(number, "row", f"two keys give {name!r}", original)
        if name is not None:
            cells[name] = value
    return _Row(number, cells, original)


_READERS: dict[str, Callable[[Path, str | None], Iterator[_Row | Rejection]]] = {
    ".csv": _csv_rows,
    ".jsonl": _jsonl_rows,
    ".ndjson": _jsonl_rows,
    ".xlsx": _xlsx_rows,
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
