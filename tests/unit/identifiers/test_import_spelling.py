"""The importer keeps each value as the member wrote it, beside the normalized one, for reports."""

from __future__ import annotations

from pathlib import Path

from alliance_psi.identifiers.importer import ImportRecord, read_blacklist


def test_each_record_keeps_the_members_spelling(tmp_path: Path) -> None:
    path = tmp_path / "list.csv"
    path.write_text(
        "类型,号码\n手机号, +86 139-1527-4680 \nid_card,44030519870614357x\norg_name,深圳市某某法律諮詢有限公司\n",
        encoding="utf-8",
    )
    records = [item for item in read_blacklist(path) if isinstance(item, ImportRecord)]
    assert [(r.canonical, r.spelling) for r in records] == [
        ("+8613915274680", "+86 139-1527-4680"),  # Stripped of surrounding spaces, otherwise as written.
        ("44030519870614357X", "44030519870614357x"),
        ("深圳市某某法律咨询有限公司", "深圳市某某法律諮詢有限公司"),
    ]
    assert "139-1527" not in repr(records[0])  # Like the value, never in a repr.
