"""Identifiers Excel damaged (scientific notation, ".0", rounding to 15 digits, lost leading zeros),
in real CSV, XLSX and JSONL files: each refused with what happened and how to fix it, never repaired."""

from __future__ import annotations

import json
from pathlib import Path

import openpyxl

from alliance_psi.identifiers.importer import ImportRecord, Rejection, read_blacklist

RETYPE = "format the column as Text, paste the numbers again from the source system, and export again"
SCIENTIFIC = "looks like a number Excel rewrote in scientific notation, losing digits; " + RETYPE
DECIMAL = "looks like a number Excel wrote with a decimal point ('.0'); format the column as Text and export again"
ROUNDED = "ends in zeros after its 15th digit: Excel kept only the first 15 digits of a long number; " + RETYPE


def rounded(grouped: str) -> str:
    """The rounding reason, with its way out for a real number that ends so: grouped with spaces."""
    return f"{ROUNDED}; a number that really ends so imports grouped with spaces, e.g. {grouped} (docs/file-format.md)"


ROUNDED_ID = rounded("440305 19870614 3000")
DIGITS_LOST = "is a number cell: Excel keeps only 15 digits of a number and the rest are lost; " + RETYPE
LEADING_ZEROS = "is a number cell, which loses leading zeros; " + RETYPE


def outcome(path: Path) -> list[tuple[int, str]]:
    """Each row's number and either its canonical value or its reason."""
    return [
        (item.row, item.canonical if isinstance(item, ImportRecord) else item.reason) for item in read_blacklist(path)
    ]


def test_csv_values_excel_rewrote_are_refused_with_the_fix(tmp_path: Path) -> None:
    rows = [
        "phone,1.39153E+10",
        "phone,13915274680.0",
        "qq,48213679.0",
        "bank_card,6217008291046370000",  # 6217008291046375219 rounded to 15 digits.
        "id_card,440305198706143000",  # 44030519870614357X as a number, rounded.
        "bank_account,622202020011220000",
        "org_name,1.5E+3",
        # The same identifiers, intact, are read.
        "phone,13915274680",
        "bank_card,6217008291046375219",
        "id_card,44030519870614357X",
        # Grouped, the zeros were typed, not rounded; short, a zero ending is no sign of Excel.
        "bank_account,6222 0202 0011 2200 00",
        "bank_account,62220202001122000",
    ]
    path = tmp_path / "list.csv"
    path.write_text("type,value\n" + "\n".join(rows) + "\n", encoding="utf-8")
    assert outcome(path) == [
        (2, f"'1.3915…' {SCIENTIFIC}"),
        (3, f"'139152…' {DECIMAL}"),
        (4, f"'482136…' {DECIMAL}"),
        (5, f"'621700…' {rounded('6222 0202 0011 2200 000')}"),
        (6, f"'440305…' {ROUNDED_ID}"),
        (7, f"'622202…' {rounded('6222 0202 0011 2200 00')}"),
        (8, f"'1.5E+3' {SCIENTIFIC}"),
        (9, "+8613915274680"),
        (10, "6217008291046375219"),
        (11, "44030519870614357X"),
        (12, "622202020011220000"),
        (13, "62220202001122000"),
    ]
    kinds = [item.kind for item in read_blacklist(path) if isinstance(item, Rejection)]
    assert kinds == [
        "Excel scientific notation",
        "Excel decimal point",
        "Excel decimal point",
        "Excel rounded to 15 digits",
        "Excel rounded to 15 digits",
        "Excel rounded to 15 digits",
        "Excel scientific notation",
    ]


def test_xlsx_number_cells_holding_long_identifiers_are_refused(tmp_path: Path) -> None:
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.append(["type", "value"])
    sheet.append(["bank_card", 6217008291046375219])  # Stored as Excel stores it: 15 digits, the rest lost.
    sheet.append(["id_card", 440305198706143570])
    sheet.append(["bank_account", 391827])  # 0391827 as a number.
    sheet.append(["imei", 868912045523815])
    sheet.append(["phone", 13915274680.5])
    sheet.append(["phone", "1.39153E+10"])  # A text cell, as a CSV round trip leaves it.
    # Number cells that hold the whole identifier, and text cells, are read.
    sheet.append(["phone", 13915274680])
    sheet.append(["qq", 48213679])
    sheet.append(["bank_card", "6217008291046375219"])
    sheet.append(["bank_account", "0391827"])
    path = tmp_path / "list.xlsx"
    workbook.save(path)
    assert outcome(path) == [
        (2, f"'6.2170…' {DIGITS_LOST}"),
        (3, f"'4.4030…' {DIGITS_LOST}"),
        (4, f"'391827' {LEADING_ZEROS}"),
        (5, f"'868912…' {LEADING_ZEROS}"),
        (6, "'139152…' is a number cell with decimals, not an identifier; format the column as Text and export again"),
        (7, f"'1.3915…' {SCIENTIFIC}"),
        (8, "+8613915274680"),
        (9, "48213679"),
        (10, "6217008291046375219"),
        (11, "0391827"),
    ]


def test_jsonl_numbers_that_lose_leading_zeros_are_refused(tmp_path: Path) -> None:
    lines = [
        {"type": "bank_account", "value": 391827},
        {"type": "phone", "value": 13915274680},
        {"type": "bank_account", "value": "0391827"},
    ]
    path = tmp_path / "list.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    assert outcome(path) == [(1, f"'391827' {LEADING_ZEROS}"), (2, "+8613915274680"), (3, "0391827")]


def test_a_real_id_ending_in_000_is_refused_with_a_way_that_imports(tmp_path: Path) -> None:
    # A genuine resident ID (its check character is right) whose sequence code ends in zeros: the
    # reason must not only loop ("format the column as Text") but say how to write it so it imports.
    real, grouped = "610113196311013000", "610113 19631101 3000"
    csv_file = tmp_path / "list.csv"
    csv_file.write_text(f"type,value\nid_card,{real}\n", encoding="utf-8")
    jsonl_file = tmp_path / "list.jsonl"
    jsonl_file.write_text(json.dumps({"type": "id_card", "value": real}) + "\n", encoding="utf-8")
    assert outcome(csv_file) == [(2, f"'610113…' {ROUNDED_ID}")]
    assert outcome(jsonl_file) == [(1, f"'610113…' {ROUNDED_ID}")]
    # Written as the reason says, it imports from either.
    csv_file.write_text(f"type,value\nid_card,{grouped}\n", encoding="utf-8")
    jsonl_file.write_text(json.dumps({"type": "id_card", "value": grouped}) + "\n", encoding="utf-8")
    assert outcome(csv_file) == [(2, real)]
    assert outcome(jsonl_file) == [(1, real)]
