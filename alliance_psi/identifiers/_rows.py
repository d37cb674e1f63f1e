"""The rows of a blacklist file before validation, and the rejection of a row.

Shared by the format readers (``_formats``) and the validation (``importer``): the field names and
their column aliases, a row's cells as read, a cell as text, and ``Rejection``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, time

__all__ = ["COLUMN_ALIASES", "FIELDS", "Rejection", "Row", "cell_text", "field_of"]

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
_EXACT_FLOAT_LIMIT = 1e15


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
class Row:
    """A row as read, before validation: its number, its cells by field, and its original cells."""

    row: int
    cells: Mapping[str, object]  # Field name -> the cell as read (text, number, date or None).
    raw: dict[str, str]


def field_of(name: str) -> str | None:
    """The field a column header (or JSON key) names, or None for a column to ignore."""
    return COLUMN_ALIASES.get(name.strip().lower())


def cell_text(cell: object) -> str:
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
