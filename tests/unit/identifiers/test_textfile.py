"""The encoding of CSV and JSONL files: decided over every byte, printed, refused when unsound."""

from __future__ import annotations

import codecs
import random
from pathlib import Path

import pytest

from alliance_psi.identifiers import normalize
from alliance_psi.identifiers.importer import BlacklistFile, ImportFileError, ImportRecord, Rejection, read_blacklist
from tests.unit.identifiers import encoding_samples

SAVE_AS = "save it as CSV UTF-8, or name its encoding with --encoding"


def write(tmp_path: Path, data: bytes, name: str = "list.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def encoding_of(path: Path, given: str | None = None) -> tuple[str, str, bool]:
    encoding = BlacklistFile(path, encoding=given).encoding
    assert encoding is not None
    return encoding.codec, encoding.name, encoding.detected


def refusal(path: Path, given: str | None = None) -> str:
    with pytest.raises(ImportFileError) as info:
        BlacklistFile(path, encoding=given)
    return str(info.value).removeprefix(f"{path}: ")


# The encodings members use ----------------------------------------------------------------------


def test_ascii_utf8_bom_and_gb18030(tmp_path: Path) -> None:
    assert encoding_of(write(tmp_path, b"type,value\nphone,13915274680\n")) == ("ascii", "ASCII", True)
    utf8 = write(tmp_path, "type,value,note\nphone,13915274680,张三\n".encode())
    assert encoding_of(utf8) == ("utf-8", "UTF-8", True)
    bom = write(tmp_path, codecs.BOM_UTF8 + "类型,号码\nphone,13915274680\n".encode())
    assert encoding_of(bom) == ("utf-8-sig", "UTF-8 with BOM", True)
    gb = write(tmp_path, "类型,号码,备注\n手机号,13915274680,冒充银行放贷\n".encode("gb18030"))
    assert encoding_of(gb) == ("gb18030", "GB18030", True)
    assert [item.note for item in read_blacklist(gb)] == ["冒充银行放贷"]  # type: ignore[union-attr]


def test_gb18030_whose_start_happens_to_be_valid_utf8(tmp_path: Path) -> None:
    # "洗钱" in GB18030 is CF B4 C7 AE, valid UTF-8 ("ϴǮ"): the first 64 KiB used to decide UTF-8.
    first = b"type,value,category\n" + "phone,13915274680,洗钱\n".encode("gb18030") * 4000
    rest = "org_name,深圳市鑫源贷款咨询有限公司,贷款中介\n".encode("gb18030")
    path = write(tmp_path, first + rest)
    assert len(first) > 64 * 1024
    assert encoding_of(path)[0] == "gb18030"
    items = list(read_blacklist(path))
    assert items[0].category == "money_laundering"  # type: ignore[union-attr]
    assert items[-1] == ImportRecord(
        4002,
        "org_name",
        normalize("org_name", "深圳市鑫源贷款咨询有限公司").canonical,
        "loan_intermediary",
        *[None] * 5,
    )


def test_chinese_after_a_long_ascii_start(tmp_path: Path) -> None:
    ascii_rows = b"phone,13915274680,\n" * 10_000
    path = write(tmp_path, b"type,value,note\n" + ascii_rows + "phone,13800138001,张三\n".encode("gb18030"))
    assert encoding_of(path)[0] == "gb18030"
    assert BlacklistFile(path).rows == 10_002


# Refusals --------------------------------------------------------------------------------------


def test_big5_is_refused_or_read_as_big5_when_named(tmp_path: Path) -> None:
    simplified = "类型,号码,备注\n机构名称,马上消费金融股份有限公司,冒充银行放贷\n"
    big5 = "type,value,note\norg_name,馬上消費金融股份有限公司,冒充銀行放貸\n".encode("big5")
    assert big5.decode("gb18030")  # Big5 bytes are also "valid" GB18030, as garbled text.
    path = write(tmp_path, big5)
    assert refusal(path) == (
        "looks like Big5 (traditional Chinese), which also decodes as GB18030 but into garbled text that "
        "would never match; save it as CSV UTF-8, or pass --encoding big5 (or --encoding gb18030 if it "
        "really is GB18030)"
    )
    assert encoding_of(path, "big5") == ("big5", "Big5", False)
    (record,) = read_blacklist(path, encoding="big5")
    assert isinstance(record, ImportRecord) and record.note == "冒充銀行放貸"
    # Read as Big5, the traditional name folds to the simplified one a GB18030 member holds.
    (expected,) = read_blacklist(write(tmp_path, simplified.encode("gb18030"), "gb.csv"))
    assert record.identifier == expected.identifier  # type: ignore[union-attr]


def test_a_utf8_file_with_one_gb18030_row_is_refused_at_that_row(tmp_path: Path) -> None:
    head = "type,value,note\nphone,13915274680,张三\n".encode() + b"phone,13800138001,\n" * 6000
    bad_row = "phone,13800138002,李四\n".encode("gb18030")
    path = write(tmp_path, head + bad_row + "phone,13800138003,王五\n".encode())
    offset = len(head) + len("phone,13800138002,")
    assert refusal(path) == (
        f"mixed encodings: the file is UTF-8 Chinese, but byte 0xc0 at line 6003, offset {offset} is not UTF-8 "
        "(a row saved in another encoding?); save the whole file as CSV UTF-8"
    )


def test_a_byte_that_no_encoding_decodes(tmp_path: Path) -> None:
    path = write(tmp_path, b"type,value\nphone,1380\xff0138000\n")
    assert refusal(path) == (
        f"not UTF-8 (byte 0xff at line 2, offset 21) nor GB18030 (byte 0xff at line 2, offset 21); {SAVE_AS}"
    )


def test_a_bad_byte_at_the_very_end_of_a_large_file_is_found_before_any_row(tmp_path: Path) -> None:
    body = b"type,value,note\n" + "phone,13915274680,张三\n".encode() * 20_000
    path = write(tmp_path, body + b"phone,13800138001,\x80\n")
    message = refusal(path)
    assert f"byte 0x80 at line 20002, offset {len(body) + 18} is not UTF-8" in message


def test_bom_then_bytes_that_are_not_utf8(tmp_path: Path) -> None:
    path = write(tmp_path, codecs.BOM_UTF8 + b"type,value,note\nphone,13915274680," + "张三\n".encode("gb18030"))
    assert refusal(path) == (
        "byte 0xd5 at line 2, offset 37 is not valid UTF-8, though the file starts with a UTF-8 byte-order mark"
    )


def test_utf16_is_refused_by_name(tmp_path: Path) -> None:
    path = write(tmp_path, "type,value\nphone,13915274680\n".encode("utf-16"))
    assert refusal(path) == f"UTF-16 text (Excel's 'Unicode text'); {SAVE_AS}"


# --encoding ------------------------------------------------------------------------------------


def test_a_named_encoding_must_decode_every_byte(tmp_path: Path) -> None:
    path = write(tmp_path, "type,value,note\nphone,13915274680,张三\n".encode("gb18030"))
    assert refusal(path, "utf-8") == "byte 0xd5 at line 2, offset 34 is not valid utf-8 (the encoding given)"
    assert encoding_of(path, "GBK") == ("gbk", "gbk", False)


def test_a_named_utf8_skips_the_bom(tmp_path: Path) -> None:
    path = write(tmp_path, codecs.BOM_UTF8 + b"type,value\nphone,13915274680\n")
    assert encoding_of(path, "utf8") == ("utf-8-sig", "UTF-8 with BOM", False)
    assert len(list(read_blacklist(path, encoding="utf8"))) == 1


def test_unknown_and_non_text_encodings(tmp_path: Path) -> None:
    path = write(tmp_path, b"type,value\n")
    assert refusal(path, "klingon") == "unknown encoding 'klingon'"
    with pytest.raises(ImportFileError, match="^'hex' is not a text encoding$"):
        BlacklistFile(path, encoding="hex")


def test_no_encoding_for_a_workbook(tmp_path: Path) -> None:
    path = write(tmp_path, b"PK", "list.xlsx")
    assert refusal(path, "big5") == "an encoding applies to CSV and JSONL text, not to .xlsx workbooks"


# Sound on generated files, at every size ---------------------------------------------------------


@pytest.mark.parametrize("rows", [3, 10, 200])
@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("utf-8", "utf-8"),
        ("gb18030", "gb18030"),
        ("traditional-gb18030", "gb18030"),
        ("big5", "looks like Big5"),
        ("mixed", "mixed encodings"),
    ],
)
def test_generated_files(tmp_path: Path, kind: str, expected: str, rows: int) -> None:
    # scripts/measure_encoding_detection.py runs the same files at more sizes and seeds.
    for seed in range(8):
        path = write(tmp_path, encoding_samples.sample(kind, random.Random(seed * 1000 + rows), rows))
        try:
            chosen = encoding_of(path)[0]
        except ImportFileError as error:
            chosen = str(error)
        assert expected in chosen, (seed, chosen)


def test_a_line_too_long_to_sample_whole(tmp_path: Path) -> None:
    note = "，".join(["代理投诉收取高额费用"] * 600)  # 6,600 characters, 13 KB in GB18030
    path = write(tmp_path, f"type,value,note\nphone,13915274680,{note}\n".encode("gb18030"))
    assert encoding_of(path)[0] == "gb18030"
    big5 = write(tmp_path, f"type,value,note\nphone,13915274680,{encoding_samples.traditional(note)}\n".encode("big5"))
    assert refusal(big5).startswith("looks like Big5")


def test_rejections_still_name_rows(tmp_path: Path) -> None:
    path = write(tmp_path, "type,value,note\nphone,1380013800,张三\n".encode("gb18030"))
    assert [(item.row, item.field) for item in read_blacklist(path) if isinstance(item, Rejection)] == [(2, "value")]
