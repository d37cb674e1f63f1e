"""docs/file-format.md says what the importer does: its tables are checked against the code's."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from alliance_psi.identifiers import IdentifierType
from alliance_psi.identifiers.categories import CATEGORIES
from alliance_psi.identifiers.importer import COLUMN_ALIASES, ImportRecord, read_blacklist
from alliance_psi.identifiers.placeholders import (
    BANK_CARD_PLACEHOLDERS,
    ID_CARD_PLACEHOLDERS,
    IMEI_PLACEHOLDERS,
    ORG_NAME_PLACEHOLDERS,
    PHONE_PLACEHOLDERS,
    QQ_PLACEHOLDERS,
    RESERVED_DOMAINS,
)
from alliance_psi.identifiers.types import TYPE_ALIASES

DOC = (Path(__file__).parents[3] / "docs" / "file-format.md").read_text(encoding="utf-8")


def section(title: str) -> str:
    return DOC.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]


def table_rows(text: str) -> list[list[str]]:
    rows = [line.strip("|").split("|") for line in text.splitlines() if line.startswith("| ")]
    return [[cell.strip() for cell in row] for row in rows[1:]]


def quoted(cell: str) -> list[str]:
    return re.findall(r"`([^`]+)`", cell)


def test_types_and_their_chinese_names() -> None:
    documented = {quoted(row[0])[0]: quoted(row[1]) for row in table_rows(section("Types").split("###")[0])}
    assert documented == {member.value: list(TYPE_ALIASES[member]) for member in IdentifierType}


def test_columns_and_their_chinese_headers() -> None:
    documented = {
        alias: quoted(row[0])[0] for row in table_rows(section("Columns")) for alias in quoted(row[0]) + quoted(row[1])
    }
    assert documented == COLUMN_ALIASES


def test_categories_and_their_chinese_names(tmp_path: Path) -> None:
    documented = [(quoted(row[0])[0], quoted(row[1])[0]) for row in table_rows(section("Categories and severities"))]
    assert [english for english, _ in documented] == list(CATEGORIES)
    path = tmp_path / "list.csv"
    path.write_text("type,value,category\n" + "".join(f"qq,10001,{chinese}\n" for _, chinese in documented), "utf-8")
    read = [item.category for item in read_blacklist(path) if isinstance(item, ImportRecord)]
    assert read == list(CATEGORIES)


LISTED = [
    *ORG_NAME_PLACEHOLDERS,
    *RESERVED_DOMAINS,
    *(phone.removeprefix("+86") for phone in PHONE_PLACEHOLDERS),
    *ID_CARD_PLACEHOLDERS,
    *BANK_CARD_PLACEHOLDERS,
    *IMEI_PLACEHOLDERS,
    *QQ_PLACEHOLDERS,
]


@pytest.mark.parametrize("name", LISTED)
def test_every_placeholder_and_reserved_name_is_listed(name: str) -> None:
    listed = "".join(row[1] for row in table_rows(section("Types").split("### What each type rejects")[1]))
    assert f"`{name}`" in listed or f"`.{name}`" in listed
