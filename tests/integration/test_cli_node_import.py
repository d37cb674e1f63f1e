"""``alliance-psi node import | withdraw | purge-expired | status`` against a real SQLite file."""

from __future__ import annotations

import csv
import random
import re
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from alliance_psi.cli.main import main
from alliance_psi.cli.node_import import REJECTS_KEPT, WRONG_FILE_ROWS, WRONG_FILE_VALID
from alliance_psi.identifiers import IdentifierType
from alliance_psi.identifiers.synthetic import blacklist_rows
from alliance_psi.storage import MemberRepository, create_schema, make_engine
from alliance_psi.storage.schema import token_cache

HEADER = ["type", "value", "category", "severity", "first_seen", "case_ref", "note", "expires_at"]
VALID = [
    ["phone", "13915274680", "wool_party", "level1", "2024-03-01", "ZJ-2026-000001", "", ""],
    ["phone", "13800138001", "", "", "", "", "", ""],
    ["id_card", "44030519870614357X", "anti_collection", "level2", "", "", "", "2099-01-01"],
    ["phone", "+86 139 1527 4680", "wool_party", "level1", "2024-03-01", "ZJ-2026-000001", "", ""],
]
REJECTED = [
    ["phone", "1380013800", "", "", "", "", "", ""],
    ["bank_card", "6228480402564890019", "", "", "", "", "", ""],
    ["phone", "13800138002", "fraud", "", "", "", "", ""],
]
EXPIRED = [["phone", "13967021853", "", "", "", "", "", "2020-01-01"]]
FIGURE = re.compile(
    r"^\s*(rows read|imported|duplicates|rejected|expired \(purged\)|withdrawn|not found|invalid)"
    r"\s+(\d+)\s*$",
    re.MULTILINE,
)


def run(*args: str, env: dict[str, str] | None = None, stdin: bytes | None = None) -> Result:
    return CliRunner().invoke(main, list(args), input=stdin, env={"COLUMNS": "200", **(env or {})})


def figures(result: Result) -> dict[str, int]:
    return {name: int(count) for name, count in FIGURE.findall(result.stdout)}


def write_csv(path: Path, rows: list[list[str]], header: list[str] = HEADER) -> Path:
    with path.open("w", encoding="utf-8", newline="") as handle:
        csv.writer(handle).writerows([header, *rows])
    return path


@pytest.fixture
def db(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'node.db'}"


def stored(url: str) -> int:
    engine = make_engine(url)
    create_schema(engine)
    try:
        with engine.begin() as conn:
            return MemberRepository(conn).count()
    finally:
        engine.dispose()


def assert_no_raw_values(result: Result) -> None:
    # Reasons quote at most six characters of a value; nothing else shows any.
    assert not re.search(r"\d{7,}", result.output), result.output


def test_import_summary_rejects_file_and_purge(tmp_path: Path, db: str) -> None:
    source = write_csv(tmp_path / "list.csv", VALID[:2] + REJECTED[:1] + VALID[2:] + REJECTED[1:] + EXPIRED)
    result = run("node", "import", str(source), "--database", db)
    assert result.exit_code == 0, result.output
    assert figures(result) == {"rows read": 8, "imported": 4, "duplicates": 1, "rejected": 3, "expired (purged)": 1}
    assert stored(db) == 3
    assert "rejected rows (all)" in result.stdout
    assert re.search(r"^\s*4\s+value\s+invalid phone '138001…': not a mainland mobile number\s*$", result.stdout, re.M)
    assert re.search(r"^\s*7\s+value\s+invalid bank_card '622848…': bad check digit\s*$", result.stdout, re.M)
    assert re.search(
        r"^\s*8\s+category\s+unknown category 'fraud'; allowed: proxy_rights_defense \(代理维权\),", result.stdout, re.M
    )
    rejects = tmp_path / "list.csv.rejects.csv"
    assert f"rejected rows written to {rejects}" in result.stdout
    content = rejects.read_bytes()
    assert content.startswith(b"\xef\xbb\xbf")
    lines = list(csv.reader(content.decode("utf-8-sig").splitlines()))
    assert lines[0] == ["row", "field", "reason", *HEADER]
    assert lines[1:] == [
        ["4", "value", "invalid phone '138001…': not a mainland mobile number", *REJECTED[0]],
        ["7", "value", "invalid bank_card '622848…': bad check digit", *REJECTED[1]],
        ["8", "category", lines[3][2], *REJECTED[2]],
    ]
    assert_no_raw_values(result)


def test_reimport_changes_nothing(tmp_path: Path, db: str) -> None:
    source = write_csv(tmp_path / "list.csv", VALID)
    assert figures(run("node", "import", str(source), "--database", db))["imported"] == 3
    again = run("node", "import", str(source), "--database", db)
    assert again.exit_code == 0
    assert figures(again) == {"rows read": 4, "imported": 0, "duplicates": 4, "rejected": 0, "expired (purged)": 0}
    assert stored(db) == 3
    assert not (tmp_path / "list.csv.rejects.csv").exists()


def test_strict_mode_imports_nothing(tmp_path: Path, db: str) -> None:
    source = write_csv(tmp_path / "list.csv", VALID + REJECTED[:2])
    rejects = tmp_path / "out" / "bad.csv"
    rejects.parent.mkdir()
    result = run("node", "import", str(source), "--strict", "--rejects", str(rejects), "--database", db)
    assert result.exit_code == 1
    assert result.stderr == (
        f"Error: strict mode: 2 rows rejected, nothing imported; fix the rows listed in {rejects} and import again\n"
    )
    assert figures(result)["imported"] == 0 and figures(result)["rejected"] == 2
    assert stored(db) == 0
    assert len(rejects.read_text(encoding="utf-8-sig").splitlines()) == 3


def test_a_file_with_no_valid_row_fails(tmp_path: Path, db: str) -> None:
    result = run("node", "import", str(write_csv(tmp_path / "list.csv", REJECTED)), "--database", db)
    rejects = tmp_path / "list.csv.rejects.csv"
    assert (result.exit_code, result.stderr) == (
        1,
        f"Error: no row could be imported; the rejected rows, with their reasons, are listed in {rejects}\n",
    )
    assert len(rejects.read_text(encoding="utf-8-sig").splitlines()) == 1 + len(REJECTED)
    assert_no_raw_values(result)


def test_a_file_without_data_rows_fails_before_the_database_is_created(tmp_path: Path) -> None:
    source = write_csv(tmp_path / "hdronly.csv", [])
    database = tmp_path / "new.db"
    result = run("node", "import", str(source), "--database", f"sqlite:///{database}")
    assert (result.exit_code, result.stderr) == (1, f"Error: {source} has a header but no data rows\n")
    assert not database.exists() and not (tmp_path / "hdronly.csv.rejects.csv").exists()


def test_type_option_and_usage_errors(tmp_path: Path, db: str) -> None:
    phones = tmp_path / "phones.csv"
    phones.write_text("13915274680\n13800138001\n", encoding="utf-8")
    result = run("node", "import", str(phones), "--type", "phone", "--database", db)
    assert result.exit_code == 0 and figures(result)["imported"] == 2
    bad_type = run("node", "import", str(phones), "--type", "pager", "--database", db)
    assert bad_type.exit_code == 2
    assert "Invalid value for '--type': 'pager' is not one of 'phone', 'id_card', 'bank_card'" in bad_type.stderr
    missing = run("node", "import", str(tmp_path / "none.csv"), "--database", db)
    assert missing.exit_code == 2 and "'FILE': File" in missing.stderr and "does not exist" in missing.stderr
    no_database = run("node", "import", str(phones))
    assert no_database.exit_code == 2 and "Missing option '--database'" in no_database.stderr


def test_file_errors_are_one_line(tmp_path: Path, db: str) -> None:
    source = write_csv(tmp_path / "list.csv", [["13915274680"]], header=["value"])
    result = run("node", "import", str(source), "--database", db)
    assert result.exit_code == 1
    assert result.stderr == f"Error: {source}: missing required column 'type'; columns found: value\n"


def test_database_from_toml_config_and_environment(tmp_path: Path, db: str) -> None:
    source = write_csv(tmp_path / "list.csv", VALID[:1])
    config = tmp_path / "node.toml"
    config.write_text(f'[node]\ndatabase = "{db}"\n', encoding="utf-8")
    from_toml = run("node", "--config", str(config), "import", str(source))
    assert from_toml.exit_code == 0, from_toml.output
    assert stored(db) == 1
    other = f"sqlite:///{tmp_path / 'other.db'}"
    from_env = run("node", "import", str(source), env={"ALLIANCE_PSI_NODE_DATABASE": other})
    assert from_env.exit_code == 0, from_env.output
    assert stored(other) == 1


def test_a_crash_mid_import_leaves_the_database_unchanged(
    tmp_path: Path, db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert run("node", "import", str(write_csv(tmp_path / "first.csv", VALID)), "--database", db).exit_code == 0
    rows = blacklist_rows(random.Random(9), 2500)
    source = write_csv(tmp_path / "big.csv", [[row.get(name, "") for name in HEADER] for row in rows])
    original = MemberRepository.upsert_identifiers
    calls: list[int] = []

    def fail_after_the_first_batch(self: MemberRepository, rows: Any, **kwargs: Any) -> tuple[int, int]:
        # Only the failure is simulated: the first batch really is written, inside the transaction.
        calls.append(1)
        if len(calls) > 1:
            raise OperationalError(
                "INSERT INTO identifiers …", {"canonical": "+8613915274680"}, sqlite3.OperationalError("disk I/O error")
            )
        return original(self, rows, **kwargs)

    monkeypatch.setattr(MemberRepository, "upsert_identifiers", fail_after_the_first_batch)
    result = run("node", "import", str(source), "--database", db)
    assert result.exit_code == 1 and result.stderr == "Error: database error: disk I/O error\n"
    assert len(calls) == 2
    assert stored(db) == 3
    assert_no_raw_values(result)


def import_and_cache(tmp_path: Path, db: str) -> int:
    """Import VALID and cache a token for the first phone; return that identifier's id."""
    assert run("node", "import", str(write_csv(tmp_path / "list.csv", VALID)), "--database", db).exit_code == 0
    engine = make_engine(db)
    with engine.begin() as conn:
        repo = MemberRepository(conn)
        ids = {canonical: id_ for id_, _, canonical in repo.iter_identifiers()}
        repo.cache_tokens("2026q1", [(ids["+8613915274680"], bytes(16), bytes(32))])
    engine.dispose()
    return ids["+8613915274680"]


def cached(db: str, identifier_id: int) -> int:
    engine = make_engine(db)
    with engine.begin() as conn:
        count = conn.execute(
            select(func.count()).select_from(token_cache).where(token_cache.c.identifier_id == identifier_id)
        ).scalar_one()
    engine.dispose()
    return count


def test_withdraw_values_deletes_identifiers_and_cached_tokens(tmp_path: Path, db: str) -> None:
    identifier_id = import_and_cache(tmp_path, db)
    assert cached(db, identifier_id) == 1
    result = run("node", "withdraw", "--database", db, "--type", "phone", "139-1527-4680", "13967021853", "1380013800")
    assert result.exit_code == 0, result.output
    assert figures(result) == {"withdrawn": 1, "not found": 1, "invalid": 1}
    assert "not found: row 2" in result.stdout
    assert re.search(r"^\s*3\s+value\s+invalid phone '138001…': not a mainland mobile number\s*$", result.stdout, re.M)
    assert stored(db) == 2 and cached(db, identifier_id) == 0
    assert_no_raw_values(result)
    # Values on the command line are seen by `ps` and kept in shell history: the command says so.
    assert result.stderr.startswith("warning: VALUE arguments are visible to every user of this machine (ps)")
    assert "--stdin" in result.stderr


def test_withdraw_reads_values_from_standard_input(tmp_path: Path, db: str) -> None:
    """``--stdin`` keeps raw identifiers off the command line: one value a line, numbered by line."""
    identifier_id = import_and_cache(tmp_path, db)
    lines = "\ufeff139-1527-4680\r\n\n  \n13967021853\n1380013800\n+86 138 0013 8001"  # No final line break.
    result = run("node", "withdraw", "--database", db, "--type", "phone", "--stdin", stdin=lines.encode())
    assert result.exit_code == 0, result.output
    assert figures(result) == {"withdrawn": 2, "not found": 1, "invalid": 1}
    assert "not found: row 4" in result.stdout
    assert re.search(r"^\s*5\s+value\s+invalid phone '138001…': not a mainland mobile number\s*$", result.stdout, re.M)
    assert stored(db) == 1 and cached(db, identifier_id) == 0
    assert "warning" not in result.stderr
    assert_no_raw_values(result)

    gb18030 = run(
        "node", "withdraw", "--database", db, "--type", "org_name", "--stdin", "--encoding", "gb18030",
        stdin="某某科技有限公司\n".encode("gb18030"),
    )  # fmt: skip
    assert gb18030.exit_code == 0 and figures(gb18030)["not found"] == 1, gb18030.output
    # Input that does not decode is refused whole, by line, quoting no byte; nothing is withdrawn.
    undecodable = run(
        "node", "withdraw", "--database", db, "--type", "id_card", "--stdin", stdin=b"44030519870614357X\n\xff\xfe1\n"
    )
    assert undecodable.exit_code == 1 and "standard input: line 2 is not utf-8 text" in undecodable.stderr
    assert stored(db) == 1


def test_withdraw_and_import_take_the_chinese_type_names_the_file_takes(tmp_path: Path, db: str) -> None:
    identifier_id = import_and_cache(tmp_path, db)
    result = run("node", "withdraw", "--database", db, "--type", "手机号", "--stdin", stdin=b"139-1527-4680\n")
    assert result.exit_code == 0, result.output
    assert figures(result) == {"withdrawn": 1, "not found": 0, "invalid": 0}
    assert cached(db, identifier_id) == 0
    phones = tmp_path / "phones.csv"
    phones.write_text("13900001111\n", encoding="utf-8")
    imported = run("node", "import", str(phones), "--type", "手机号", "--database", db)
    assert imported.exit_code == 0, imported.output
    unknown = run("node", "withdraw", "--database", db, "--type", "传真", "--stdin", stdin=b"1\n")
    assert unknown.exit_code == 2
    assert "Or a Chinese name, as in a file's type column (docs/file-format.md)." in unknown.output


def test_withdraw_from_a_file(tmp_path: Path, db: str) -> None:
    import_and_cache(tmp_path, db)
    source = tmp_path / "withdraw.csv"
    source.write_text("value,category\n13915274680,not a category\n13800138001,\n13758216094,\n", encoding="utf-8")
    result = run("node", "withdraw", "--database", db, "--type", "phone", "--file", str(source))
    assert result.exit_code == 0, result.output
    assert figures(result) == {"withdrawn": 2, "not found": 1, "invalid": 0}
    assert "not found: row 4" in result.stdout
    assert stored(db) == 1


def test_withdraw_usage_errors(tmp_path: Path, db: str) -> None:
    assert run("node", "import", str(write_csv(tmp_path / "in.csv", VALID[:1])), "--database", db).exit_code == 0
    one_of = "give one of --type T --stdin, --file FILE or --type T VALUE..."
    neither = run("node", "withdraw", "--database", db)
    assert neither.exit_code == 2 and one_of in neither.stderr
    both = run("node", "withdraw", "--database", db, "--type", "phone", "--stdin", "13915274680")
    assert both.exit_code == 2 and one_of in both.stderr
    untyped = run("node", "withdraw", "--database", db, "13915274680")
    assert untyped.exit_code == 2 and "VALUE arguments need --type" in untyped.stderr
    untyped_stdin = run("node", "withdraw", "--database", db, "--stdin", stdin=b"13915274680\n")
    assert untyped_stdin.exit_code == 2 and "--stdin needs --type" in untyped_stdin.stderr
    invalid_only = run("node", "withdraw", "--database", db, "--type", "phone", "12")
    assert invalid_only.exit_code == 1 and "Error: no valid value to withdraw" in invalid_only.stderr


def test_purge_expired_and_status(tmp_path: Path, db: str) -> None:
    import_and_cache(tmp_path, db)
    engine = make_engine(db)
    with engine.begin() as conn:
        MemberRepository(conn).upsert_identifiers(
            [
                {
                    "type": "qq",
                    "canonical": "10001",
                    "category": "other",
                    "severity": "",
                    "expires_at": datetime.now(UTC) - timedelta(minutes=1),
                }
            ]
        )
    engine.dispose()
    status = run("node", "status", "--database", db)
    assert status.exit_code == 0
    counts = re.findall(r"^\s*(\w+)\s+(\w*)\s+(\d+)\s*$", status.stdout, re.M)
    assert counts == [
        ("id_card", "anti_collection", "1"),
        ("phone", "other", "1"),
        ("phone", "wool_party", "1"),
        ("qq", "other", "1"),
        ("total", "", "4"),
    ]
    assert_no_raw_values(status)
    purged = run("node", "purge-expired", "--database", db)
    assert purged.exit_code == 0 and purged.stdout == "purged 1 expired identifier\n"
    assert stored(db) == 3


# Encodings, the rejects file's cap, wrong files ------------------------------------------------


def row(type_: str, value: str, category: str = "") -> list[str]:
    return [type_, value, category, "", "", "", "", ""]


def phones(n: int) -> list[list[str]]:
    return [row("phone", f"1380013{index:04d}") for index in range(n)]


def summary(*, read: int, imported: int, rejected: int, duplicates: int = 0) -> dict[str, int]:
    return {
        "rows read": read,
        "imported": imported,
        "duplicates": duplicates,
        "rejected": rejected,
        "expired (purged)": 0,
    }


def test_the_encoding_is_printed_and_can_be_named(tmp_path: Path, db: str) -> None:
    gb = tmp_path / "gb.csv"
    gb.write_bytes("类型,号码,备注\n手机号,13915274680,冒充银行放贷\n".encode("gb18030"))
    result = run("node", "import", str(gb), "--database", db)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("gb.csv: encoding GB18030 (detected)\n")
    big5 = tmp_path / "big5.csv"
    big5.write_bytes("type,value,note\norg_name,馬上消費金融股份有限公司,冒充銀行放貸\n".encode("big5"))
    refused = run("node", "import", str(big5), "--database", db)
    assert refused.exit_code == 1 and refused.stderr.startswith(f"Error: {big5}: looks like Big5 (traditional Chinese)")
    assert stored(db) == 1
    named = run("node", "import", str(big5), "--encoding", "big5", "--database", db)
    assert named.exit_code == 0, named.output
    assert named.stdout.startswith("big5.csv: encoding Big5 (as given)\n") and stored(db) == 2
    unknown = run("node", "import", str(big5), "--encoding", "klingon", "--database", db)
    assert unknown.exit_code == 2 and "Invalid value for '--encoding': unknown encoding 'klingon'" in unknown.stderr


def test_a_mixed_file_is_refused_with_its_line_and_offset_and_imports_nothing(tmp_path: Path, db: str) -> None:
    head = "type,value,note\nphone,13915274680,张三\n".encode()
    source = tmp_path / "mixed.csv"
    source.write_bytes(head + "phone,13800138001,李四\n".encode("gb18030") + "phone,13800138002,王五\n".encode())
    result = run("node", "import", str(source), "--database", db)
    assert result.exit_code == 1
    offset = len(head) + len("phone,13800138001,")
    assert result.stderr == (
        f"Error: {source}: mixed encodings: the file is UTF-8 Chinese, but byte 0xc0 at line 3, offset {offset} "
        "is not UTF-8 (a row saved in another encoding?); save the whole file as CSV UTF-8\n"
    )
    assert stored(db) == 0 and not (tmp_path / "mixed.csv.rejects.csv").exists()


def test_the_rejects_file_keeps_the_first_rows_and_the_console_counts_every_reason(tmp_path: Path, db: str) -> None:
    bad_types = [row("pager", str(n)) for n in range(6000)]
    bad_categories = [row("qq", str(48_000_000 + n), "fraud") for n in range(4500)]
    source = write_csv(tmp_path / "list.csv", phones(100) + bad_types + bad_categories)
    result = run("node", "import", str(source), "--database", db)
    assert result.exit_code == 0, result.output
    assert figures(result) == summary(read=10_600, imported=100, rejected=10_500)
    rejects = tmp_path / "list.csv.rejects.csv"
    assert f"first 10,000 of 10,500 rejected rows written to {rejects} (capped)" in result.stdout
    assert re.search(r"^\s*type\s+unknown type\s+6,000\s*$", result.stdout, re.M)
    assert re.search(r"^\s*category\s+unknown category\s+4,500\s*$", result.stdout, re.M)
    lines = list(csv.reader(rejects.read_text(encoding="utf-8-sig").splitlines()))
    assert len(lines) == 1 + 10_000 + 1
    assert lines[10_000][:2] == [str(1 + 100 + 6000 + 4000), "category"]  # The 10,000th rejected row.
    assert lines[-1] == ["…", "", "500 more rejected rows not written (capped at 10,000)"]
    assert rejects.stat().st_mode & 0o777 == 0o600


def test_a_file_of_nearly_all_bad_rows_stops_early_and_imports_nothing(tmp_path: Path, db: str) -> None:
    junk = [row("phone", f"hello {n}") for n in range(5000)]
    source = write_csv(tmp_path / "list.csv", phones(10) + junk)
    result = run("node", "import", str(source), "--database", db)
    assert result.exit_code == 1
    assert result.stderr == (
        "Error: stopped after 1,000 rows, 990 of them rejected (most often value: invalid phone: letters or "
        "symbols in phone number): is this the right file (and the right --type or --encoding)? Nothing imported, "
        "and no rejects file written\n"
    )
    assert figures(result)["rows read"] == 1000 and figures(result)["imported"] == 0
    assert stored(db) == 0
    # A wrong file's rejects would be a copy of its raw values that helps fix nothing: none is left.
    assert "written to" not in result.stdout
    assert [path.name for path in tmp_path.iterdir() if "list.csv" in path.name] == ["list.csv"]
    # Eleven valid rows in the first thousand: a dirty file, not a wrong one.
    source = write_csv(tmp_path / "list.csv", [*phones(10), row("phone", "13967021853"), *junk])
    result = run("node", "import", str(source), "--database", db)
    assert result.exit_code == 0, result.output
    assert figures(result) == summary(read=5011, imported=11, rejected=5000)


def test_a_failed_import_leaves_no_rejects_file(tmp_path: Path, db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    rows = blacklist_rows(random.Random(9), 1500)
    bad = [["phone", "1380013800", "", "", "", "", "", ""]]
    source = write_csv(tmp_path / "big.csv", bad + [[row.get(name, "") for name in HEADER] for row in rows])
    rejects = tmp_path / "big.csv.rejects.csv"
    rejects.write_text("from an earlier run\n", encoding="utf-8")

    def fail(self: MemberRepository, rows: Any, **kwargs: Any) -> tuple[int, int]:
        raise OperationalError("INSERT …", {}, sqlite3.OperationalError("disk I/O error"))

    monkeypatch.setattr(MemberRepository, "upsert_identifiers", fail)
    result = run("node", "import", str(source), "--database", db)
    assert result.exit_code == 1 and result.stderr == "Error: database error: disk I/O error\n"
    assert rejects.read_text(encoding="utf-8") == "from an earlier run\n"
    assert [path.name for path in tmp_path.iterdir() if path.name.startswith(".big.csv")] == []


def test_import_help_summarises_the_format_and_points_to_the_document() -> None:
    result = run("node", "import", "--help")
    assert result.exit_code == 0
    for text in ("docs/file-format.md", "手机号", "proxy_rights_defense", "GB18030", "--encoding", "10,000", "类型"):
        assert text in result.stdout, text


def test_the_documented_example_file_imports_every_row(tmp_path: Path, db: str) -> None:
    example = Path(__file__).parents[2] / "docs" / "examples" / "blacklist.csv"
    result = run("node", "import", str(example), "--rejects", str(tmp_path / "rejects.csv"), "--database", db)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("blacklist.csv: encoding UTF-8 with BOM (detected)\n")
    # One row spells an earlier phone number another way: a duplicate, not a second identifier.
    assert figures(result) == summary(read=17, imported=16, rejected=0, duplicates=1)
    status = run("node", "status", "--database", db)
    types = {type_ for type_, _, _ in re.findall(r"^\s*(\w+)\s+(\w+)\s+(\d+)\s*$", status.stdout, re.M)}
    assert types == {member.value for member in IdentifierType}
    assert not (tmp_path / "rejects.csv").exists()


def test_the_documented_limits_are_the_code_s() -> None:
    doc = (Path(__file__).parents[2] / "docs" / "file-format.md").read_text(encoding="utf-8")
    assert f"first **{REJECTS_KEPT:,}** rejected rows" in doc
    assert f"first **{WRONG_FILE_ROWS:,}** rows hold at most **{WRONG_FILE_VALID}** valid ones" in doc


def test_withdraw_reads_a_file_in_the_encoding_named(tmp_path: Path, db: str) -> None:
    big5 = tmp_path / "withdraw.csv"
    big5.write_bytes("type,value,note\norg_name,馬上消費金融股份有限公司,撤回\n".encode("big5"))
    assert run("node", "import", str(big5), "--encoding", "big5", "--database", db).exit_code == 0
    refused = run("node", "withdraw", "--file", str(big5), "--database", db)
    assert refused.exit_code == 1 and "looks like Big5" in refused.stderr and stored(db) == 1
    result = run("node", "withdraw", "--file", str(big5), "--encoding", "big5", "--database", db)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("withdraw.csv: encoding Big5 (as given)\n")
    assert figures(result) == {"withdrawn": 1, "not found": 0, "invalid": 0} and stored(db) == 0


def test_placeholders_and_numbers_excel_damaged_are_refused_by_row(tmp_path: Path, db: str) -> None:
    import openpyxl

    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.append(["类型", "号码"])
    sheet.append(["手机号", "13800138000"])  # Row 2: the usual example number.
    sheet.append(["手机号", 13888888888])
    sheet.append(["银行卡号", "4111 1111 1111 1111"])
    sheet.append(["身份证号", 440305198706143570])  # Row 5: a number cell, its last digits rounded away.
    sheet.append(["手机号", "1.39153E+10"])
    sheet.append(["手机号", 13915274680])  # Row 7: a whole phone number in a number cell is read.
    sheet.append(["身份证号", "44030519870614357X"])
    source = tmp_path / "list.xlsx"
    workbook.save(source)
    result = run("node", "import", str(source), "--database", db)
    assert result.exit_code == 0, result.output
    assert figures(result)["imported"] == 2
    assert figures(result)["rejected"] == 5
    assert stored(db) == 2
    expected = {
        2: r"invalid phone '138001…': placeholder: well-known example mobile number \(China Mobile's",
        3: r"invalid phone '138888…': placeholder: the last 8 digits hold one digit 7 or more times",
        4: r"invalid bank_card '4111 1…': placeholder: well-known test card \(Visa\)",
        5: r"'4\.4030…' is a number cell: Excel keeps only 15 digits of a number and the rest are lost;",
        6: r"'1\.3915…' looks like a number Excel rewrote in scientific notation, losing digits;",
    }
    for row, reason in expected.items():
        assert re.search(rf"^\s*{row}\s+value\s+{reason}", result.stdout, re.M), result.stdout
    assert_no_raw_values(result)
