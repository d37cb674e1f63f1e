"""Reading a member's blacklist file into validated records, one row at a time.

The format is documented for members in docs/file-format.md; this is its contract.

- ``BlacklistFile(path, encoding=None)`` checks the file as a whole first. Formats by extension:
  ``.csv``, ``.jsonl``/``.ndjson`` (a JSON object per line), ``.xlsx`` (the active sheet, formulas
  as their cached values). CSV and JSONL text is decided over every byte (``_textfile``): UTF-8
  (with or without a BOM), GB18030 (Excel on Chinese Windows), or the codec given; a Big5 file, a
  file mixing encodings, or one that decodes in none is an ``ImportFileError`` naming the line and
  byte offset.
- Columns, matched case-insensitively without surrounding spaces: ``type`` and ``value`` are
  required, the other ``FIELDS`` optional, the Chinese headers of ``COLUMN_ALIASES`` accepted,
  other columns ignored. The first non-blank row of a CSV or sheet is the header; blank rows are
  skipped. With ``default_type`` a row without a type takes it, so a ``value`` column is enough, or
  no header at all: a first row of one cell that is not a column name and normalizes as
  ``default_type`` is data.
- ``read()`` yields, in file order, an ``ImportRecord`` per valid row and a ``Rejection`` (its
  first problem) per invalid one, numbered as a person sees the file: the header is row 1 of a CSV
  or sheet, JSONL rows are line numbers. A control character in any field (tabs and line breaks
  allowed in notes) rejects the row, naming the field. A type cell (a type name or one of its
  Chinese ``TYPE_ALIASES``) wins over ``default_type``. Category defaults to ``other``; severity is
  ``level1``, ``level2`` or empty (both also by their Chinese names; a category also by a
  ``CATEGORY_VARIANTS`` spelling); ``first_seen`` is ``YYYY-MM-DD`` or ``YYYY/M/D`` (Excel's on
  Chinese Windows); ``expires_at`` is such a date (its midnight) or an ISO date-time, read as
  Asia/Shanghai time (UTC+8; China has no DST) when it has no zone; ``case_ref`` follows the
  label's rule (``categories.case_ref_problem``: at most 64 UTF-8 bytes, to fit the shared label,
  and no control, format or separator character), which peers check too. Also rejected: a value Excel damaged (``_excel``: scientific
  notation, a trailing ``.0``, digits rounded away after the 15th, a number cell that lost leading
  zeros), never repaired, a row with cells beyond the header, and a CSV row whose quoted cell
  (not the note) runs over a line end: an unclosed quote, named with the rows it took in. Repeated identifiers are not
  rejected: the repository counts them as duplicates.
- Streams: memory stays constant whatever the file size (openpyxl runs read-only).

Security: raw identifiers stay on the node. Reasons quote a value only as a short truncated prefix
(as ``InvalidIdentifier`` does), and so does a record's ``repr``; ``Rejection.raw`` holds the
original cells for the node's own rejects file and is left out of ``repr``. No reason quotes a
cell with a control character: those are rejected first.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time
from pathlib import Path

from alliance_psi.errors import ImportFileError, InvalidIdentifier, truncate_value
from alliance_psi.identifiers._excel import excel_damage
from alliance_psi.identifiers._formats import TEXT_READERS, sheet_rows, xlsx_rows
from alliance_psi.identifiers._rows import COLUMN_ALIASES, FIELDS, Rejection, Row, cell_text
from alliance_psi.identifiers._textfile import TextEncoding, survey, text_codec
from alliance_psi.identifiers.categories import (
    BIDI_CONTROLS,
    CATEGORIES,
    CATEGORY_NAMES,
    CATEGORY_VARIANTS,
    SEVERITIES,
    SEVERITY_NAMES,
    case_ref_problem,
)
from alliance_psi.identifiers.registry import normalize
from alliance_psi.identifiers.types import CHINA_TIME, Identifier, IdentifierType
from alliance_psi.identifiers.types import identifier_type as named_type

__all__ = [
    "BlacklistFile",
    "CHINA_TIME",
    "COLUMN_ALIASES",
    "FIELDS",
    "ImportFileError",
    "ImportRecord",
    "Rejection",
    "TextEncoding",
    "read_blacklist",
    "text_codec",
]

# The categories and severities by code or by Chinese name (identifiers.categories).
_CATEGORY_ALIASES = (
    {name: name for name in CATEGORIES} | {zh: name for name, zh in CATEGORY_NAMES.items()} | CATEGORY_VARIANTS
)
_SEVERITY_ALIASES = {name: name for name in SEVERITIES} | {zh: name for name, zh in SEVERITY_NAMES.items()}
_FORMATS = ".csv, .jsonl, .ndjson or .xlsx"
# Formats of one record a line, without a header.
_LINE_FORMATS = (".jsonl", ".ndjson")
# Control characters are C0 and C1 (Unicode Cc); surrogates (Cs) are what a JSON "\\ud800" decodes
# to. Notes keep tabs and line breaks (\t \n \r); labels may hold no bidirectional control either.
# The case reference has the label's own rule (categories.case_ref_problem), stricter.
_SURROGATES = r"\ud800-\udfff"
_FORBIDDEN_IN_LABELS = re.compile(rf"[\x00-\x1f\x7f-\x9f{_SURROGATES}{BIDI_CONTROLS}]")
_FORBIDDEN_IN = {
    "value": re.compile(rf"[\x00-\x1f\x7f-\x9f{_SURROGATES}]"),
    "note": re.compile(rf"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f{_SURROGATES}{BIDI_CONTROLS}]"),
}
_CHARACTER_KINDS = {"Cc": "control character", "Cs": "unpaired surrogate"}
_CHECKED_FIELDS = tuple(name for name in FIELDS if name != "case_ref")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}", re.ASCII)
# YYYY/M/D: how Excel on Chinese Windows writes a date cell to CSV (2026/10/1).
_SLASHED_DATE = re.compile(r"(\d{4})/(\d{1,2})/(\d{1,2})", re.ASCII)
_DATETIME = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:?\d{2})?", re.ASCII)


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
    # The value as the member wrote it (stripped), kept on the node for its reports; not part of a
    # record's identity: the same identifier and label, however spelled, are equal records.
    spelling: str = field(default="", compare=False)

    @property
    def identifier(self) -> Identifier:
        """The normalized identifier (its ``repr`` shows only a truncated prefix)."""
        return Identifier(IdentifierType(self.type), self.canonical)

    def __repr__(self) -> str:
        # The identifier's repr shows only a truncated prefix; notes may name people, so none.
        return f"ImportRecord(row={self.row}, {self.identifier!r}, category={self.category}, severity={self.severity})"


class _Reject(Exception):
    def __init__(self, field_name: str, reason: str, kind: str = "") -> None:
        super().__init__(reason)
        self.field, self.reason, self.kind = field_name, reason, kind


class BlacklistFile:
    """A member's blacklist file, checked as a whole before any row is read: its format (by
    extension) and, for CSV and JSONL, its text encoding, decided over every byte (``_textfile``).

    ``encoding`` names a Python codec to read a text file in instead of detecting it. Raises
    ``ImportFileError`` for an unsupported extension, an encoding given for a workbook, and every
    refusal of ``_textfile.survey``.
    """

    def __init__(self, path: str | Path, *, encoding: str | None = None) -> None:
        self.path = Path(path)
        self._format = self.path.suffix.lower()
        if self._format != ".xlsx" and self._format not in TEXT_READERS:
            raise ImportFileError(f"{path}: unsupported file type {self.path.suffix!r}; use {_FORMATS}")
        if self._format == ".xlsx" and encoding is not None:
            raise ImportFileError(f"{path}: an encoding applies to CSV and JSONL text, not to .xlsx workbooks")
        #: The text encoding the file is read in; None for a workbook.
        self.encoding: TextEncoding | None = None if self._format == ".xlsx" else survey(self.path, encoding)

    @property
    def rows(self) -> int:
        """The lines of a text file or the rows of a sheet, header included: an upper bound of the
        data rows, for a progress bar."""
        return self.encoding.lines if self.encoding is not None else sheet_rows(self.path)

    def read(
        self, *, default_type: str | None = None, identifiers_only: bool = False
    ) -> Iterator[ImportRecord | Rejection]:
        """Yield an ``ImportRecord`` or a ``Rejection`` for every data row (see the module).

        ``identifiers_only`` (for withdrawals) checks only type and value; records get category
        ``other``. Raises ``ValueError`` at once for an unknown ``default_type``, and
        ``ImportFileError`` while iterating for a file that cannot be read as a whole (empty, no
        header, or a header and no data row: taking the first item is enough to know).
        """
        default_type = IdentifierType(default_type).value if default_type is not None else None
        if self.encoding is None:
            rows = xlsx_rows(self.path, default_type)
        else:
            rows = TEXT_READERS[self._format](self.path, self.encoding, default_type)
        return self._not_empty(_validated(rows, default_type, identifiers_only))

    def _not_empty(self, items: Iterator[ImportRecord | Rejection]) -> Iterator[ImportRecord | Rejection]:
        """``items``, or ``ImportFileError`` if there is none: a file without data rows is no blacklist."""
        if (first := next(items, None)) is None:
            shape = "no data rows (only blank lines)" if self._format in _LINE_FORMATS else "a header but no data rows"
            raise ImportFileError(f"{self.path} has {shape}")
        yield first
        yield from items


def read_blacklist(
    path: str | Path, *, default_type: str | None = None, identifiers_only: bool = False, encoding: str | None = None
) -> Iterator[ImportRecord | Rejection]:
    """``BlacklistFile(path, encoding=encoding).read(...)``: the rows of ``path``, validated.

    Raises ``ValueError`` for an unknown ``default_type`` before the file is read.
    """
    if default_type is not None:
        IdentifierType(default_type)
    return BlacklistFile(path, encoding=encoding).read(default_type=default_type, identifiers_only=identifiers_only)


def _validated(
    rows: Iterator[Row | Rejection], default_type: str | None, only_ids: bool
) -> Iterator[ImportRecord | Rejection]:
    for row in rows:
        if isinstance(row, Rejection):
            yield row
            continue
        try:
            yield _record(row, default_type, only_ids)
        except _Reject as problem:
            yield Rejection(row.row, problem.field, problem.reason, row.raw, problem.kind)


def _record(row: Row, default_type: str | None, only_ids: bool) -> ImportRecord:
    text = {name: cell_text(row.cells.get(name)) for name in FIELDS}
    _check_characters(text, ("type", "value") if only_ids else _CHECKED_FIELDS)
    identifier_type = named_type(text["type"] or default_type or "")
    if identifier_type is None and not text["type"]:
        raise _Reject("type", "required")
    if identifier_type is None:
        known = f"known types: {', '.join(IdentifierType)} (or their Chinese names, docs/file-format.md)"
        raise _Reject("type", f"unknown type {truncate_value(text['type'])!r}; {known}", "unknown type")
    type_name = identifier_type.value
    if not text["value"]:
        raise _Reject("value", "required")
    if damage := excel_damage(identifier_type, row.cells.get("value"), text["value"]):
        raise _Reject("value", *damage)
    try:
        canonical = normalize(identifier_type, text["value"]).canonical
    except InvalidIdentifier as error:
        raise _Reject("value", str(error), f"invalid {error.type}: {error.reason}") from None
    if only_ids:
        return ImportRecord(row.row, type_name, canonical, "other", None, None, None, None, None)
    if problem := case_ref_problem(text["case_ref"]):
        raise _Reject("case_ref", problem.reason, problem.kind)
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
        spelling=text["value"],
    )


def _choice(text: str, name: str, aliases: Mapping[str, str], allowed: Iterable[str]) -> str | None:
    if not text:
        return None
    if (chosen := aliases.get(text.lower())) is None:
        raise _Reject(
            name, f"unknown {name} {truncate_value(text)!r}; allowed: {_allowed(aliases, allowed)}", f"unknown {name}"
        )
    return chosen


def _allowed(aliases: Mapping[str, str], allowed: Iterable[str]) -> str:
    """The allowed codes, each with its other names: ``level1 (一级), level2 (二级)``."""
    names = {code: [alias for alias, named in aliases.items() if named == code and alias != code] for code in allowed}
    return ", ".join(f"{code} ({', '.join(others)})" if others else code for code, others in names.items())


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


def _calendar_date(text: str) -> date | None:
    """``YYYY-MM-DD`` or ``YYYY/M/D`` as a date; None for neither; ``ValueError`` for no such day."""
    if _DATE.fullmatch(text):
        return date.fromisoformat(text)
    if slashed := _SLASHED_DATE.fullmatch(text):
        return date(*map(int, slashed.groups()))
    return None


def _date(text: str) -> date | None:
    try:
        if (day := _calendar_date(text)) is not None:
            return day
        _empty(text)
        return None
    except ValueError:
        raise _Reject("first_seen", "expected YYYY-MM-DD (or YYYY/M/D)") from None


def _expiry(text: str) -> datetime | None:
    try:
        if (day := _calendar_date(text)) is not None:
            moment = datetime.combine(day, time())
        elif _DATETIME.fullmatch(text):
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        else:
            _empty(text)
            return None
    except ValueError:
        raise _Reject("expires_at", "expected YYYY-MM-DD (or YYYY/M/D) or YYYY-MM-DD HH:MM[:SS][+HH:MM]") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=CHINA_TIME)


def _empty(text: str) -> None:
    """None for an empty optional cell; ``ValueError`` for text in no accepted form."""
    if text:
        raise ValueError("not an accepted form")
