"""The member's own spelling of each identifier: kept on the node beside the normalized value, for
its reports; refreshed by a later import, dropped with the identifier (SQLite and PostgreSQL)."""

from __future__ import annotations

from sqlalchemy import Engine, func, select

from alliance_psi.storage import MemberRepository
from alliance_psi.storage.schema import identifier_spellings

from .support import NOW, token

EPOCH = "2025-03"


def row(canonical: str, spelling: str | None = None) -> dict[str, object]:
    values: dict[str, object] = {"type": "phone", "canonical": canonical, "category": "other", "severity": ""}
    if spelling is not None:
        values["spelling"] = spelling
    return values


def spellings(engine: Engine) -> dict[str, str]:
    with engine.begin() as conn:
        repo = MemberRepository(conn)
        ids = {canonical: id_ for id_, _, canonical in repo.iter_identifiers()}
        repo.cache_tokens(EPOCH, [(id_, token(canonical), bytes(32)) for canonical, id_ in ids.items()])
        found = repo.identifiers_for_tokens(EPOCH, [token(canonical) for canonical in ids])
    return {own[1]: own[6] for own in found.values()}


def test_spellings_are_kept_refreshed_by_the_last_row_and_never_lost_to_a_row_without_one(engine: Engine) -> None:
    with engine.begin() as conn:
        repo = MemberRepository(conn)
        repo.upsert_identifiers([row("+8613915274680", "139 1527 4680"), row("+8613967021853")], at=NOW)
    assert spellings(engine) == {"+8613915274680": "139 1527 4680", "+8613967021853": ""}
    with engine.begin() as conn:
        repo = MemberRepository(conn)
        # Re-imported: the last spelling in a batch wins; a row without one keeps the stored one.
        assert repo.upsert_identifiers(
            [row("+8613915274680", "+86 139-1527-4680"), row("+8613915274680", "+86 13915274680")], at=NOW
        ) == (0, 2)
        repo.upsert_identifiers([row("+8613967021853", "139 6702 1853")], at=NOW)
        repo.upsert_identifiers([row("+8613967021853")], at=NOW)
    assert spellings(engine) == {"+8613915274680": "+86 13915274680", "+8613967021853": "139 6702 1853"}


def test_a_spelling_goes_with_its_identifier(engine: Engine) -> None:
    with engine.begin() as conn:
        repo = MemberRepository(conn)
        repo.upsert_identifiers([row("+8613915274680", "139 1527 4680"), row("+8613967021853", "139-6702-1853")])
        assert repo.withdraw("phone", "+8613915274680")
        assert conn.execute(select(func.count()).select_from(identifier_spellings)).scalar_one() == 1
    assert spellings(engine) == {"+8613967021853": "139-6702-1853"}
