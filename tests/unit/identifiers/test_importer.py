"""Blacklist files: formats, encodings, headers, every kind of rejection, and streaming."""

from __future__ import annotations

import inspect
import io
import json
import zipfile
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, ClassVar

import openpyxl
import pytest

from alliance_psi.errors import truncate_value
from alliance_psi.identifiers import normalize
from alliance_psi.identifiers.importer import (
    CHINA_TIME,
    BlacklistFile,
    ImportFileError,
    ImportRecord,
    Rejection,
    read_blacklist,
)

HEADER = "type,value,category,severity,first_seen,case_ref,note,expires_at\n"
PHONE = "+8613915274680"
CATEGORIES = (
    "proxy_rights_defense (代理维权), anti_collection (反催收), malicious_complaint (恶意投诉), "
    "professional_complainant (职业投诉人), loan_intermediary (贷款中介), wool_party (羊毛党), "
    "money_laundering (洗钱), telecom_fraud (电信诈骗), account_rental (账户出租出借), other (其他, 其它)"
)


def write(tmp_path: Path, name: str, text: str, encoding: str = "utf-8") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


def read(path: Path, **options: Any) -> list[ImportRecord | Rejection]:
    return list(read_blacklist(path, **options))


def record(row: int, type_: str, canonical: str, **fields: Any) -> ImportRecord:
    values = {
        "category": "other",
        "severity": None,
        "first_seen": None,
        "case_ref": None,
        "note": None,
        "expires_at": None,
    } | fields
    return ImportRecord(row=row, type=type_, canonical=canonical, **values)


def rejections(items: list[ImportRecord | Rejection]) -> list[tuple[int, str, str]]:
    return [(item.row, item.field, item.reason) for item in items if isinstance(item, Rejection)]


# Formats and encodings ------------------------------------------------------------------------


def test_csv_utf8_with_every_column(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "list.csv",
        HEADER + "phone,139 1527 4680,wool_party,LEVEL1,2024-03-01,ZJ-2026-000123,seen twice,2030-01-01\n",
    )
    assert read(path) == [
        record(
            2,
            "phone",
            PHONE,
            category="wool_party",
            severity="level1",
            first_seen=date(2024, 3, 1),
            case_ref="ZJ-2026-000123",
            note="seen twice",
            expires_at=datetime(2030, 1, 1, tzinfo=CHINA_TIME),
        )
    ]


def test_csv_utf8_with_bom(tmp_path: Path) -> None:
    path = write(tmp_path, "list.csv", "\ufeffType , VALUE\nphone,13915274680\n")
    assert read(path) == [record(2, "phone", PHONE)]


def test_csv_gb18030_with_chinese_headers_and_org_names(tmp_path: Path) -> None:
    text = (
        "类型,号码,类别,级别,首次发现,案件编号,备注,过期时间\n"
        "org_name,深圳市某某贷款咨询有限公司,贷款中介,二级,2025-01-02,粤-2025-7,冒充银行放贷,\n"
        "uscc,91440300708461136T,反催收,,,,腾讯（深圳）代理,\n"
    )
    path = write(tmp_path, "名单.csv", text, "gb18030")
    assert read(path) == [
        record(
            2,
            "org_name",
            normalize("org_name", "深圳市某某贷款咨询有限公司").canonical,
            category="loan_intermediary",
            severity="level2",
            first_seen=date(2025, 1, 2),
            case_ref="粤-2025-7",
            note="冒充银行放贷",
        ),
        record(3, "uscc", "91440300708461136T", category="anti_collection", note="腾讯（深圳）代理"),
    ]


def test_jsonl_with_aliases_numbers_and_bad_lines(tmp_path: Path) -> None:
    lines = [
        json.dumps({"类型": "phone", "值": 13915274680, "级别": "level2"}, ensure_ascii=False),
        "",
        "{not json",
        json.dumps(["phone", "13915274680"]),
        json.dumps({"type": "phone", "value": "13915274680", "VALUE": "13800138001"}),
        json.dumps({"type": "bank_card", "value": "6228480402564890018", "extra": [1, 2]}),
    ]
    items = read(write(tmp_path, "list.ndjson", "\n".join(lines) + "\n"))
    assert items[0] == record(1, "phone", PHONE, severity="level2")
    assert rejections(items) == [
        (3, "row", "not valid JSON: Expecting property name enclosed in double quotes at column 2"),
        (4, "row", "not a JSON object"),
        (5, "row", "two keys give 'value'"),
    ]
    assert items[1].raw == {"line": "{not json"}  # type: ignore[union-attr]
    assert items[-1] == record(6, "bank_card", "6228480402564890018")


def test_xlsx_cells_numbers_and_dates(tmp_path: Path) -> None:
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.append(["类型", "值", "首次发现", "到期"])
    sheet.append(["phone", 13915274680, datetime(2024, 5, 6), datetime(2030, 1, 2, 9, 30)])
    sheet.append([])
    sheet.append(["id_card", 1.10105194912310e17, None, None])
    sheet.append(["id_card", "44030519870614357x", date(2024, 5, 6), None])
    path = tmp_path / "list.xlsx"
    workbook.save(path)
    assert read(path) == [
        record(
            2, "phone", PHONE, first_seen=date(2024, 5, 6), expires_at=datetime(2030, 1, 2, 9, 30, tzinfo=CHINA_TIME)
        ),
        Rejection(
            4,
            "value",
            "'1.1010…' is a number cell: Excel keeps only 15 digits of a number and the rest are lost; "
            "format the column as Text, paste the numbers again from the source system, and export again",
            {"类型": "id_card", "值": "1.10105194912310e+17", "首次发现": "", "到期": ""},
            "Excel number cell, digits lost",
        ),
        record(5, "id_card", "44030519870614357X", first_seen=date(2024, 5, 6)),
    ]
    assert BlacklistFile(path).rows == 5


def test_not_a_workbook(tmp_path: Path) -> None:
    with pytest.raises(ImportFileError, match=r"list\.xlsx: not an Excel \.xlsx workbook \(BadZipFile\)"):
        read(write(tmp_path, "list.xlsx", "type,value\n"))


def test_a_workbook_whose_sheet_is_damaged_is_refused_whole(tmp_path: Path) -> None:
    workbook = openpyxl.Workbook()
    workbook.active.append(["type", "value"])
    for n in range(50):
        workbook.active.append(["phone", f"139152{n:05d}"])
    whole = tmp_path / "whole.xlsx"
    workbook.save(whole)
    damaged = tmp_path / "list.xlsx"
    with zipfile.ZipFile(whole) as source, zipfile.ZipFile(damaged, "w") as target:
        for item in source.infolist():  # The sheet's XML cut in the middle, as a broken copy leaves it.
            data = source.read(item.filename)
            target.writestr(item, data[: len(data) // 2] if item.filename.endswith("sheet1.xml") else data)
    with pytest.raises(
        ImportFileError, match=r"list\.xlsx: a damaged workbook: its sheet cannot be read past row \d+ "
    ):
        read(damaged)


def test_unsupported_extension(tmp_path: Path) -> None:
    with pytest.raises(ImportFileError, match=r"unsupported file type '\.txt'; use \.csv, \.jsonl, \.ndjson or \.xlsx"):
        read_blacklist(tmp_path / "list.txt")


def test_line_endings_and_multiline_cells_keep_row_numbers(tmp_path: Path) -> None:
    text = 'type,value,note\r"phone",13915274680,"two\r\nlines"\r\rphone,13800138001,\r'
    items = read(write(tmp_path, "list.csv", text))
    assert [(item.row, item.note) for item in items] == [(2, "two\r\nlines"), (5, None)]  # type: ignore[union-attr]


RUNAWAY = "a quoted field runs over the line end (an unclosed quote?) and took in {}; close the quote"


@pytest.mark.parametrize("end", ["\n", "\r\n", "\r"])
def test_an_unclosed_quote_is_named_with_the_rows_it_took_in(tmp_path: Path, end: str) -> None:
    # The quote opened on row 3 runs to the end of the file (or to the next quote, on row 6).
    lines = ["type,value,category", "phone,13915274680,other", '"phone,13900001111,other', "phone,13800138001,other"]
    to_end = read(write(tmp_path, "list.csv", end.join([*lines, "phone,13800138002,other"]) + end))
    assert rejections(to_end) == [(3, "type", RUNAWAY.format("rows 4 to 5"))]
    to_quote = read(write(tmp_path, "list.csv", end.join([*lines, 'phone,"13800138002",other', "qq,48213679"]) + end))
    assert rejections(to_quote) == [(3, "type", RUNAWAY.format("rows 4 to 5"))]
    assert [item.row for item in to_quote if isinstance(item, ImportRecord)] == [2, 6]
    one = read(write(tmp_path, "list.csv", end.join(["type,value", 'phone,"13900001111', "qq,48213679"]) + end))
    assert rejections(one) == [(2, "value", RUNAWAY.format("row 3"))]
    bare = read(
        write(tmp_path, "list.csv", end.join(["13915274680", '"13900001111', "13800138001"]) + end),
        default_type="phone",
    )
    assert rejections(bare) == [(2, "value", RUNAWAY.format("row 3"))]


# Headers and --type -------------------------------------------------------------------------


def test_missing_required_column_names_the_columns_found(tmp_path: Path) -> None:
    path = write(tmp_path, "list.csv", "Value,Category,13915274680\n13800138001,other,\n")
    with pytest.raises(ImportFileError) as info:
        read(path)
    assert str(info.value) == f"{path}: missing required column 'type'; columns found: Value, Category, '139152…'"


@pytest.mark.parametrize(("separator", "shown"), [(";", "';'"), ("\t", "tabs")])
def test_a_file_separated_otherwise_than_by_commas_is_named(tmp_path: Path, separator: str, shown: str) -> None:
    text = separator.join(["类型", "value", "category"]) + "\n" + separator.join(["phone", "13915274680", "other"])
    path = write(tmp_path, "list.csv", text + "\n")
    with pytest.raises(ImportFileError) as info:
        read(path)
    assert str(info.value) == (
        f"{path}: missing required column 'type'; columns found: {truncate_value(text.splitlines()[0])!r}; "
        f'the file seems separated by {shown}, not commas: save it as "CSV UTF-8 (Comma delimited)" (or as .xlsx, '
        "which has no separator; docs/file-format.md)"
    )


def test_empty_file_without_type(tmp_path: Path) -> None:
    with pytest.raises(ImportFileError, match="the file is empty"):
        read(write(tmp_path, "list.csv", "\n\n"))
    with pytest.raises(ImportFileError, match="the file is empty$"):
        read(write(tmp_path, "list.csv", ""), default_type="phone")


@pytest.mark.parametrize(
    "name, text, shape",
    [
        ("list.csv", HEADER + "\n,,,\n", "a header but no data rows"),
        ("list.csv", "value\n", "a header but no data rows"),
        ("list.jsonl", "\n  \n", "no data rows (only blank lines)"),
    ],
)
def test_a_file_without_data_rows_is_refused(tmp_path: Path, name: str, text: str, shape: str) -> None:
    path = write(tmp_path, name, text)
    with pytest.raises(ImportFileError) as raised:
        read(path, default_type="phone")
    assert str(raised.value) == f"{path} has {shape}"


@pytest.mark.parametrize("header", ["value\n", "号码\n", ""], ids=["value", "chinese", "no_header"])
def test_type_option_with_a_single_column(tmp_path: Path, header: str) -> None:
    path = write(tmp_path, "phones.csv", header + "13915274680\n13800138001\n")
    first = 2 if header else 1
    assert read(path, default_type="phone") == [
        record(first, "phone", PHONE),
        record(first + 1, "phone", "+8613800138001"),
    ]


def test_type_option_with_an_unknown_single_header(tmp_path: Path) -> None:
    path = write(tmp_path, "phones.csv", "手机号\n13915274680\n")
    with pytest.raises(ImportFileError, match="missing required column 'value'; columns found: '手机号'$"):
        read(path, default_type="phone")


def test_type_column_wins_over_the_type_option(tmp_path: Path) -> None:
    path = write(tmp_path, "list.csv", "type,value\nqq,10001\n,13915274680\n")
    assert read(path, default_type="phone") == [record(2, "qq", "10001"), record(3, "phone", PHONE)]


def test_unknown_default_type() -> None:
    with pytest.raises(ValueError, match="'pager' is not a valid IdentifierType"):
        read_blacklist("list.csv", default_type="pager")


# Rejections: one per invalid row, its first problem, exact row/field/reason -----------------------


def test_every_kind_of_rejection(tmp_path: Path) -> None:
    rows = [
        "phone,13915274680,,,,,,",
        "phone,1380013800,,,,,,",
        ",13915274680,,,,,,",
        "pager,13915274680,,,,,,",
        "phone,,,,,,,",
        "phone,13800138001,fraud,,,,,",
        "phone,13800138002,,level3,,,,",
        "phone,13800138003,,,01/03/2024,,,",
        "phone,13800138004,,,2024-02-30,,,",
        "phone,13800138005,,,,,,next year",
        "phone,13800138006,,,,案件编号" + "很长" * 11 + ",,",
        "id_card,1.10105E+17,,,,,,",
        "phone,13800138007,,,,,,,extra",
    ]
    items = read(write(tmp_path, "list.csv", HEADER + "\n".join(rows) + "\n"))
    assert rejections(items) == [
        (3, "value", "invalid phone '138001…': not a mainland mobile number"),
        (4, "type", "required"),
        (
            5,
            "type",
            (
                "unknown type 'pager'; known types: phone, id_card, bank_card, bank_account, uscc, email, ip, "
                "imei, device_id, wechat_id, qq, alipay_account, org_name, domain "
                "(or their Chinese names, docs/file-format.md)"
            ),
        ),
        (6, "value", "required"),
        (7, "category", f"unknown category 'fraud'; allowed: {CATEGORIES}"),
        (8, "severity", "unknown severity 'level3'; allowed: level1 (一级), level2 (二级)"),
        (9, "first_seen", "expected YYYY-MM-DD (or YYYY/M/D)"),
        (10, "first_seen", "expected YYYY-MM-DD (or YYYY/M/D)"),
        (11, "expires_at", "expected YYYY-MM-DD (or YYYY/M/D) or YYYY-MM-DD HH:MM[:SS][+HH:MM]"),
        (12, "case_ref", "too long: at most 64 bytes (UTF-8), to fit the shared label"),
        (
            13,
            "value",
            (
                "'1.1010…' looks like a number Excel rewrote in scientific notation, losing digits; "
                "format the column as Text, paste the numbers again from the source system, and export again"
            ),
        ),
        (14, "row", "1 cell(s) beyond the header's 8 columns"),
    ]
    # Counted by kind: nothing of a value, a position or a length.
    assert [item.kind_of_reason for item in items if isinstance(item, Rejection)] == [
        "invalid phone: not a mainland mobile number",
        "required",
        "unknown type",
        "required",
        "unknown category",
        "unknown severity",
        "expected YYYY-MM-DD (or YYYY/M/D)",
        "expected YYYY-MM-DD (or YYYY/M/D)",
        "expected YYYY-MM-DD (or YYYY/M/D) or YYYY-MM-DD HH:MM[:SS][+HH:MM]",
        "too long: at most 64 bytes (UTF-8), to fit the shared label",
        "Excel scientific notation",
        "cells beyond the header",
    ]
    assert items[0] == record(2, "phone", PHONE)
    assert items[1].raw == dict(
        zip(HEADER.strip().split(","), ["phone", "1380013800", "", "", "", "", "", ""], strict=False)
    )  # type: ignore[union-attr]


def test_chinese_type_names(tmp_path: Path) -> None:
    rows = [
        "手机号,13915274680",
        "手机号码,13800138001",
        " 身份证号 ,44030519870614357X",
        "ＱＱ号,10001",
        "ip地址,114.114.114.114",
        "IP地址,114.114.114.115",
        "统一社会信用代码,91440300708461136T",
        "机构名称,马上消费金融股份有限公司",
        "邮箱,zhangsan@qq.com",
        "座机,01012345678",
    ]
    items = read(write(tmp_path, "list.csv", "类型,号码\n" + "\n".join(rows) + "\n"))
    assert [(item.row, item.type) for item in items if isinstance(item, ImportRecord)] == [
        (2, "phone"),
        (3, "phone"),
        (4, "id_card"),
        (5, "qq"),
        (6, "ip"),
        (7, "ip"),
        (8, "uscc"),
        (9, "org_name"),
        (10, "email"),
    ]
    assert rejections(items)[0][:2] == (11, "type")
    assert rejections(items)[0][2].startswith("unknown type '座机'; known types: phone,")


@pytest.mark.parametrize(
    "field", ["type", "value", "category", "severity", "first_seen", "case_ref", "note", "expires_at"]
)
@pytest.mark.parametrize("char", ["\x00", "\x07", "\x1b", "\x7f", "\x85", "\x9b"], ids=repr)
def test_a_control_character_in_any_field_is_rejected_with_the_field_named(
    tmp_path: Path, field: str, char: str
) -> None:
    good = {"type": "phone", "value": "13915274680", "category": "wool_party", "severity": "level1"}
    good |= {"first_seen": "2024-01-02", "case_ref": "ZJ-1", "note": "a note", "expires_at": "2030-01-01"}
    cells = good | {field: good[field][:2] + char + good[field][2:]}
    items = read(write(tmp_path, "list.jsonl", json.dumps(good) + "\n" + json.dumps(cells) + "\n"))
    assert isinstance(items[0], ImportRecord)
    assert rejections(items) == [(2, field, f"control character U+{ord(char):04X}")]
    assert items[1].kind_of_reason == "control character"  # type: ignore[union-attr]


def test_notes_keep_line_breaks_and_tabs_and_values_keep_bidi_marks(tmp_path: Path) -> None:
    lines = [
        {"type": "phone", "value": "\u202d139 1527 4680\u202c", "note": "line one\r\nline\ttwo"},
        {"type": "phone", "value": "13800138001", "case_ref": "ZJ-\u202e1002"},
        {"type": "phone", "value": "13800138002", "note": "\u2066spoof\u2069"},
        {"type": "phone", "value": "13800138003", "case_ref": "ZJ-\ud800"},
        {"type": "phone", "value": "13800138004", "category": "wool_party\t"},
        {"type": "phone", "value": "138\t00138005"},
    ]
    text = "".join(json.dumps(line) + "\n" for line in lines)
    items = read(write(tmp_path, "list.jsonl", text))
    assert items[0] == record(1, "phone", PHONE, note="line one\r\nline\ttwo")
    assert rejections(items) == [
        (2, "case_ref", "bidirectional control character U+202E"),
        (3, "note", "bidirectional control character U+2066"),
        (4, "case_ref", "unpaired surrogate U+D800"),
        (6, "value", "control character U+0009"),
    ]
    # Surrounding whitespace (a trailing tab) is not part of a cell.
    assert items[4] == record(5, "phone", "+8613800138004", category="wool_party")


def test_duplicates_are_not_rejections(tmp_path: Path) -> None:
    items = read(write(tmp_path, "list.csv", "type,value\nphone,13915274680\nphone,+86 139-1527-4680\n"))
    assert items == [record(2, "phone", PHONE), record(3, "phone", PHONE)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2030-01-01", datetime(2029, 12, 31, 16, tzinfo=UTC)),
        ("2030-01-01 08:00", datetime(2030, 1, 1, 0, tzinfo=UTC)),
        ("2030-01-01T08:00:00Z", datetime(2030, 1, 1, 8, tzinfo=UTC)),
        ("2030-01-01T08:00:00+09:00", datetime(2029, 12, 31, 23, tzinfo=UTC)),
    ],
)
def test_expiry_without_a_zone_is_china_time(tmp_path: Path, text: str, expected: datetime) -> None:
    (item,) = read(write(tmp_path, "list.csv", f"type,value,expires_at\nphone,13915274680,{text}\n"))
    assert item.expires_at == expected  # type: ignore[union-attr]
    assert CHINA_TIME.utcoffset(None) == timedelta(hours=8) and isinstance(CHINA_TIME, timezone)


def test_identifiers_only_ignores_the_labels(tmp_path: Path) -> None:
    path = write(tmp_path, "list.csv", "type,value,category\nphone,13915274680,nonsense\n")
    assert read(path, identifiers_only=True) == [record(2, "phone", PHONE)]


def test_reprs_never_show_a_whole_value(tmp_path: Path) -> None:
    items = read(write(tmp_path, "list.csv", "type,value\nphone,13915274680\nphone,13967021853x\n"))
    shown = repr(items)
    assert "'+86139…'" in shown and "'139670…'" in shown
    assert "13915274680" not in shown and "13967021853" not in shown


# Streaming -----------------------------------------------------------------------------------


class CountingReader(io.BufferedReader):
    """A binary file that notes the size of every read."""

    sizes: ClassVar[list[int]] = []

    def read(self, size: int | None = -1) -> bytes:
        data = super().read(size)
        CountingReader.sizes.append(len(data))
        return data


@pytest.mark.parametrize("encoding", ["ascii", "gb18030"])
def test_the_file_is_read_in_chunks_once_to_decide_then_streamed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, encoding: str
) -> None:
    note = "备注" if encoding == "gb18030" else "note"
    path = write(tmp_path, "big.csv", f"type,value,{note}\n" + "phone,13915274680,\n" * 200_000, encoding)
    reads: list[int] = []
    monkeypatch.setattr(Path, "open", lambda self, mode="r": CountingReader(io.FileIO(self, mode)))
    CountingReader.sizes = reads
    blacklist = BlacklistFile(path)
    size = path.stat().st_size
    assert sum(reads) == size and max(reads) <= 64 * 1024  # One pass, in chunks: never the whole file.
    items = blacklist.read()
    assert inspect.isgenerator(items)
    assert next(items) == record(2, "phone", PHONE)
    assert sum(reads) - size <= 2 * 64 * 1024 < size // 20  # Rows stream from the second pass.


def test_rows_counts_lines(tmp_path: Path) -> None:
    assert BlacklistFile(write(tmp_path, "a.csv", "type,value\nphone,1\nphone,2")).rows == 3
    assert BlacklistFile(write(tmp_path, "b.csv", "type,value\r\nphone,1\r\n")).rows == 2
    assert BlacklistFile(write(tmp_path, "c.csv", "type,value\rphone,1\r\nphone,2\n\n")).rows == 4
    assert BlacklistFile(write(tmp_path, "d.jsonl", "")).rows == 0


def test_excel_shapes_are_named_and_chinese_windows_dates_and_spellings_accepted(tmp_path: Path) -> None:
    rows = [
        "phone,13700137012.0,,,,,,",
        "phone,1.38001E+10,,,,,,",
        "phone,13915274680,其它,,2026/10/1,,,2027/1/2",
        "phone,13967021853,,,2026/2/30,,,",
        "qq,10001.0,,,,,,",
    ]
    items = read(write(tmp_path, "list.csv", HEADER + "\n".join(rows) + "\n"))
    assert rejections(items) == [
        (
            2,
            "value",
            "'137001…' looks like a number Excel wrote with a decimal point ('.0'); format the column as Text and export again",
        ),
        (
            3,
            "value",
            (
                "'1.3800…' looks like a number Excel rewrote in scientific notation, losing digits; format the column "
                "as Text, paste the numbers again from the source system, and export again"
            ),
        ),
        (5, "first_seen", "expected YYYY-MM-DD (or YYYY/M/D)"),
        (
            6,
            "value",
            "'10001.…' looks like a number Excel wrote with a decimal point ('.0'); format the column as Text and export again",
        ),
    ]
    assert items[2] == record(
        4,
        "phone",
        PHONE,
        category="other",
        first_seen=date(2026, 10, 1),
        expires_at=datetime(2027, 1, 2, tzinfo=CHINA_TIME),
    )
    assert [item.kind_of_reason for item in items if isinstance(item, Rejection)] == [
        "Excel decimal point",
        "Excel scientific notation",
        "expected YYYY-MM-DD (or YYYY/M/D)",
        "Excel decimal point",
    ]
