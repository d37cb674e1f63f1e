"""Synthetic identifiers: valid under our own normalizers, deterministic per seed, distinct."""

from __future__ import annotations

import csv
import json
import random
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from alliance_psi.identifiers import normalize
from alliance_psi.identifiers.importer import Rejection, read_blacklist
from alliance_psi.identifiers.synthetic import (
    bank_cards,
    blacklist_rows,
    credit_codes,
    mobile_numbers,
    org_code_check,
    resident_ids,
)
from alliance_psi.protocol.leads import CATEGORIES

GENERATORS: dict[str, Callable[[random.Random, int], list[str]]] = {
    "phone": mobile_numbers,
    "id_card": resident_ids,
    "uscc": credit_codes,
    "bank_card": bank_cards,
}
N = 2000

# Organization codes inside USCCs their holders publish (tests/unit/identifiers/test_uscc.py has
# the whole codes): Huawei 914403001922038216, Tencent 91440300708461136T and 9144030071526726XG,
# Xiaomi 91110108551385082Q, and hutool's example 91350100M000100Y43.
ORG_CODES = ["192203821", "708461136", "71526726X", "551385082", "M000100Y4"]


@pytest.mark.parametrize("type_", GENERATORS)
def test_every_value_normalizes(type_: str) -> None:
    values = GENERATORS[type_](random.Random(20260101), N)
    assert len(values) == N
    for value in values:
        normalize(type_, value)


@pytest.mark.parametrize("type_", GENERATORS)
def test_same_seed_same_values_and_no_repeats(type_: str) -> None:
    first = GENERATORS[type_](random.Random(7), 500)
    assert first == GENERATORS[type_](random.Random(7), 500)
    assert first != GENERATORS[type_](random.Random(8), 500)
    assert len(set(first)) == 500


@pytest.mark.parametrize("code", ORG_CODES)
def test_org_code_check_character_matches_published_codes(code: str) -> None:
    assert org_code_check(code[:8]) == code[8]


def test_credit_codes_carry_a_valid_org_code() -> None:
    for code in credit_codes(random.Random(3), 200):
        assert code.startswith("91")
        assert org_code_check(code[8:16]) == code[16]


def test_shapes() -> None:
    rng = random.Random(11)
    assert all(len(v) == 11 and v[0] == "1" for v in mobile_numbers(rng, 200))
    assert all(1950 <= int(v[6:10]) <= 2004 for v in resident_ids(rng, 200))
    assert {len(v) for v in bank_cards(rng, 500)} <= set(range(16, 20))


def test_blacklist_rows() -> None:
    rows = blacklist_rows(random.Random(5), 3000)
    assert rows == blacklist_rows(random.Random(5), 3000)
    assert len({(row["type"], row["value"]) for row in rows}) == 3000
    counts = Counter(row["type"] for row in rows)
    assert counts["phone"] > counts["id_card"] > counts["bank_card"] > counts["uscc"] > 0
    for row in rows:
        assert set(row) == {"type", "value", "category", "severity", "first_seen", "case_ref"}
        normalize(row["type"], row["value"])
        assert row["category"] in CATEGORIES and row["severity"] in ("level1", "level2", "")
        assert row["case_ref"][:3] == "ZJ-" and len(row["case_ref"]) == len("ZJ-2026-000123")
    only = blacklist_rows(random.Random(5), 50, categories=("telecom_fraud",))
    assert {row["category"] for row in only} == {"telecom_fraud"}


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_the_importer_refuses_no_generated_value(tmp_path: Path, suffix: str) -> None:
    """The demo's generator and the importer agree: every value drawn (here 20,000 resident IDs,
    about 18 of which end in ``000`` if drawn blindly, and a large blacklist) goes through the real
    import path, Excel-damage checks included, and none is refused."""
    rng = random.Random(20261123)
    rows = blacklist_rows(rng, 20_000) + [{"type": "id_card", "value": v} for v in resident_ids(rng, 20_000)]
    path = tmp_path / f"list{suffix}"
    with path.open("w", encoding="utf-8", newline="") as handle:
        if suffix == ".csv":
            writer = csv.DictWriter(handle, fieldnames=["type", "value"], extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
        else:
            handle.writelines(json.dumps({"type": row["type"], "value": row["value"]}) + "\n" for row in rows)
    refused = [item for item in read_blacklist(path) if isinstance(item, Rejection)]
    assert [(item.row, item.reason) for item in refused] == []
