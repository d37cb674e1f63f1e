"""The member node's identifiers and token cache: upserts, withdrawal, expiry, cache misses."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event, func, select

from alliance_psi.storage import MemberRepository, create_schema, make_engine
from alliance_psi.storage.schema import token_cache

from .support import NOW, token

EPOCH = "2025-03"


@dataclass(frozen=True)
class Row:
    type: str
    canonical: str
    category: str = "anti_collection"
    severity: str = "level1"
    first_seen: date | None = None
    case_ref: str = ""
    note: str = ""
    expires_at: datetime | None = None


def phone(n: int, **fields: object) -> dict[str, object]:
    return {
        "type": "phone",
        "canonical": f"+86138000{n:05d}",
        "category": "proxy_rights_defense",
        "severity": "level2",
        **fields,
    }


def ids_by_canonical(engine: Engine) -> dict[str, int]:
    with engine.begin() as conn:
        return {canonical: id_ for id_, _, canonical in MemberRepository(conn).iter_identifiers()}


def test_upsert_counts_inserts_and_duplicates(engine: Engine) -> None:
    with engine.begin() as conn:
        repo = MemberRepository(conn)
        assert repo.upsert_identifiers([phone(1), phone(2), phone(1), Row("email", "a@example.com")], at=NOW) == (3, 1)
        assert repo.upsert_identifiers([phone(2, category="wool_party", case_ref="C-9"), phone(3)], at=NOW) == (1, 1)
        assert repo.count() == 4
        assert repo.upsert_identifiers([]) == (0, 0)
    ids = ids_by_canonical(engine)
    with engine.begin() as conn:
        repo = MemberRepository(conn)
        repo.cache_tokens(EPOCH, [(ids["+8613800000002"], token("p2"), bytes(32))])
        # A duplicate refreshes the descriptive fields and keeps the id.
        found = repo.identifiers_for_tokens(EPOCH, [token("p2"), token("unknown")])
    assert found == {token("p2"): ("phone", "+8613800000002", "wool_party", "level2", None, "C-9", "")}


def test_iter_identifiers_filters_by_type(engine: Engine) -> None:
    with engine.begin() as conn:
        repo = MemberRepository(conn)
        repo.upsert_identifiers([phone(1), Row("email", "a@example.com"), phone(2)], at=NOW)
        assert [c for _, _, c in repo.iter_identifiers(["email"])] == ["a@example.com"]
        assert [t for _, t, _ in repo.iter_identifiers()] == ["phone", "email", "phone"]


def test_withdraw_cascades_to_the_token_cache(engine: Engine) -> None:
    with engine.begin() as conn:
        MemberRepository(conn).upsert_identifiers([phone(1), phone(2)], at=NOW)
    ids = ids_by_canonical(engine)
    with engine.begin() as conn:
        repo = MemberRepository(conn)
        repo.cache_tokens(
            EPOCH, [(ids["+8613800000001"], token("p1"), bytes(32)), (ids["+8613800000002"], token("p2"), bytes(32))]
        )
        repo.cache_tokens("2025-04", [(ids["+8613800000001"], token("p1-next"), bytes(32))])
    with engine.begin() as conn:
        repo = MemberRepository(conn)
        assert repo.withdraw("phone", "+8613800000001") is True
        assert repo.withdraw("phone", "+8613800000001") is False
        remaining = conn.execute(select(token_cache.c.identifier_id, token_cache.c.key_epoch)).all()
        assert remaining == [(ids["+8613800000002"], EPOCH)]
        assert repo.identifiers_for_tokens(EPOCH, [token("p1")]) == {}
        assert repo.count() == 1


def test_purge_expired(engine: Engine) -> None:
    rows = [
        phone(1, expires_at=NOW - timedelta(days=1)),
        phone(2, expires_at=NOW),
        phone(3, expires_at=NOW + timedelta(seconds=1)),
        phone(4),
    ]
    with engine.begin() as conn:
        MemberRepository(conn).upsert_identifiers(rows, at=NOW)
    ids = ids_by_canonical(engine)
    with engine.begin() as conn:
        repo = MemberRepository(conn)
        repo.cache_tokens(EPOCH, [(ids["+8613800000001"], token("p1"), bytes(32))])
        assert repo.purge_expired(NOW) == 2
        assert sorted(c for _, _, c in repo.iter_identifiers()) == ["+8613800000003", "+8613800000004"]
        assert conn.execute(select(func.count()).select_from(token_cache)).scalar_one() == 0


def test_missing_token_ids_is_what_still_costs_crypto(engine: Engine) -> None:
    with engine.begin() as conn:
        MemberRepository(conn).upsert_identifiers([phone(1), phone(2), Row("email", "a@example.com"), phone(3)], at=NOW)
    ids = ids_by_canonical(engine)
    with engine.begin() as conn:
        repo = MemberRepository(conn)
        assert [c for _, _, c in repo.missing_token_ids(EPOCH)] == list(ids)
        repo.cache_tokens(
            EPOCH, [(ids["+8613800000001"], token("p1"), b"k" * 32), (ids["a@example.com"], token("e"), b"l" * 32)]
        )
        repo.cache_tokens(EPOCH, [(ids["+8613800000001"], token("p1"), b"k" * 32)])  # A retried batch is harmless.
        assert list(repo.missing_token_ids(EPOCH)) == [
            (ids["+8613800000002"], "phone", "+8613800000002"),
            (ids["+8613800000003"], "phone", "+8613800000003"),
        ]
        assert list(repo.missing_token_ids(EPOCH, ["email"])) == []
        # A new epoch makes every cached token useless.
        assert len(list(repo.missing_token_ids("2025-04"))) == 4
        assert repo.cached_tokens(EPOCH, [ids["+8613800000001"], ids["+8613800000002"]]) == {
            ids["+8613800000001"]: (token("p1"), b"k" * 32)
        }


def test_cached_tokens_and_reverse_lookup_in_batches(engine: Engine) -> None:
    count = 1200  # More than one IN (...) batch.
    with engine.begin() as conn:
        repo = MemberRepository(conn)
        repo.upsert_identifiers([phone(n, first_seen=date(2024, 1, 1)) for n in range(count)], at=NOW)
        ids = [id_ for id_, _, _ in repo.iter_identifiers()]
        repo.cache_tokens(EPOCH, [(id_, token(str(id_)), bytes(32)) for id_ in ids])
        assert len(repo.cached_tokens(EPOCH, ids)) == count
        found = repo.identifiers_for_tokens(EPOCH, [token(str(id_)) for id_ in ids])
    assert len(found) == count
    assert found[token(str(ids[5]))] == (
        "phone",
        "+8613800000005",
        "proxy_rights_defense",
        "level2",
        date(2024, 1, 1),
        "",
        "",
    )


def test_malformed_cache_rows_are_refused(engine: Engine) -> None:
    from alliance_psi.errors import InvalidRequest

    with engine.begin() as conn, pytest.raises(InvalidRequest):
        MemberRepository(conn).cache_tokens(EPOCH, [(1, b"short", bytes(32))])


def test_submission_rows_and_label_keys(engine: Engine) -> None:
    with engine.begin() as conn:
        repo = MemberRepository(conn)
        repo.upsert_identifiers([phone(n, first_seen=date(2024, 5, n + 1), case_ref=f"C{n}") for n in range(5)], at=NOW)
        repo.upsert_identifiers([Row("email", "a@example.com")], at=NOW)
        ids = {canonical: id_ for id_, _, canonical in repo.iter_identifiers()}
        cached = {canonical: (token(canonical), bytes([n]) * 32) for n, canonical in enumerate(ids)}
        # One phone stays uncached: it is not submitted until it has a token.
        repo.cache_tokens(EPOCH, [(ids[c], t, k) for c, (t, k) in cached.items() if c != "+8613800000004"])
        rows = list(repo.iter_submission_rows(EPOCH, ["phone"]))
        keys = repo.label_keys_for_tokens(EPOCH, [token("+8613800000001"), token("a@example.com"), token("nope")])
    expected = sorted(
        (ids[c], t, k, "proxy_rights_defense", "level2", date(2024, 5, n + 1), f"C{n}")
        for n, (c, (t, k)) in enumerate(cached.items())
        if c.startswith("+86") and c != "+8613800000004"
    )
    assert rows == sorted(expected, key=lambda row: row[1])
    assert keys == {t: k for c, (t, k) in cached.items() if c in ("+8613800000001", "a@example.com")}


def test_reads_by_change_stamp_on_sqlite_go_through_the_stamp_index(tmp_path: Path) -> None:
    # What a warm submission reads (the identifiers stamped since the scope's last commit, and
    # those of them without a token) must cost in proportion to the change, not to the set. On
    # SQLite (no statistics) ``type IN`` and ``key_epoch =`` once drew the plan onto their
    # indexes: every identifier of the type or the epoch read to keep the stamped ones (0.4-0.5 s
    # for 999 changed of 100,000). The plans are read here, not timed.
    engine = make_engine(f"sqlite:///{tmp_path / 'node.db'}")
    create_schema(engine)
    with engine.begin() as conn:
        MemberRepository(conn).upsert_identifiers([phone(n) for n in range(50)], at=NOW)
    ids = ids_by_canonical(engine)
    with engine.begin() as conn:
        repo = MemberRepository(conn)
        repo.cache_tokens(EPOCH, [(ids[str(phone(n)["canonical"])], token(f"p{n}"), bytes(32)) for n in range(50)])
        since = repo.change_head()
    with engine.begin() as conn:
        MemberRepository(conn).upsert_identifiers([phone(n, category="wool_party") for n in range(3)] + [phone(60)])
    seen: list[tuple[str, Any]] = []

    def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, _many: bool) -> None:
        seen.append((statement, parameters))

    with engine.begin() as conn:
        repo = MemberRepository(conn)
        upto = repo.change_head()
        event.listen(engine, "before_cursor_execute", record)
        changed = list(repo.iter_changed_rows(EPOCH, ["phone"], since, upto))
        missing = list(repo.missing_token_ids(EPOCH, ["phone"], since=since, upto=upto))
        event.remove(engine, "before_cursor_execute", record)
        assert sorted(row.category for row in changed) == ["wool_party"] * 3
        assert [ref.canonical for ref in missing] == [phone(60)["canonical"]]
        plans = [
            [row[3] for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters)]
            for statement, parameters in seen
        ]
    assert len(plans) == 2
    for steps in plans:
        assert "ix_identifiers_change_seq" in steps[0] or steps[0] == "MULTI-INDEX OR", steps
        assert not [step for step in steps if step.startswith("SCAN") or "(type=?)" in step or "(key_epoch=?)" in step]


@pytest.mark.parametrize("window", [(None, None), (None, "head")], ids=["no window", "up to the head"])
def test_a_page_of_missing_tokens_is_read_from_its_first_id_on_sqlite(
    tmp_path: Path, window: tuple[None, str | None]
) -> None:
    # Cold tokenization reads the identifiers lacking a token by pages (``after``, ``limit``). On
    # SQLite ``type IN`` once drew each page's plan onto the (type, canonical) index: every
    # identifier of the type read and those above ``after`` sorted to keep the page, so each page
    # cost the rest of the set (quadratic in the set). A page must be a rowid range that stops at
    # its limit: no sort. The plans are read here, not timed.
    engine = make_engine(f"sqlite:///{tmp_path / 'node.db'}")
    create_schema(engine)
    with engine.begin() as conn:
        MemberRepository(conn).upsert_identifiers([phone(n) for n in range(10)] + [Row("email", "a@example.com")])
    ids = ids_by_canonical(engine)
    with engine.begin() as conn:
        MemberRepository(conn).cache_tokens(EPOCH, [(ids[str(phone(4)["canonical"])], token("p4"), bytes(32))])
    seen: list[tuple[str, Any]] = []

    def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, _many: bool) -> None:
        seen.append((statement, parameters))

    with engine.begin() as conn:
        repo = MemberRepository(conn)
        upto = repo.change_head() if window[1] else None
        event.listen(engine, "before_cursor_execute", record)
        first = list(repo.missing_token_ids(EPOCH, ["phone"], upto=upto, limit=4))
        rest = list(repo.missing_token_ids(EPOCH, ["phone"], upto=upto, after=first[-1].id, limit=10))
        event.remove(engine, "before_cursor_execute", record)
        assert [ref.canonical for ref in first + rest] == [phone(n)["canonical"] for n in range(10) if n != 4]
        assert repo.count_missing_tokens(EPOCH, ["phone"], upto=upto) == 9
        plans = [
            [row[3] for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters)]
            for statement, parameters in seen
        ]
    engine.dispose()
    assert len(plans) == 2
    for steps in plans:
        assert steps[0] == "SEARCH identifiers USING INTEGER PRIMARY KEY (rowid>?)", steps
        assert not [step for step in steps if "TEMP B-TREE" in step or "(type=?)" in step], steps
