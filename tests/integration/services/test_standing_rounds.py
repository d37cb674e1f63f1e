"""Rounds after the first in a scope send deltas: new, changed and withdrawn identifiers only."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import select, update

from alliance_psi.errors import Conflict
from alliance_psi.storage import MemberRepository
from alliance_psi.storage.schema import identifiers, member_submitted
from tests.integration.services.harness import MEMBERS, Planted, load, phone, running_alliance
from tests.integration.services.test_round import join_all

pytestmark = pytest.mark.timeout(180)


def leads(outcome) -> dict[str, int]:  # type: ignore[no-untyped-def]
    return {lead.canonical: lead.holder_count for lead in outcome.leads}


def test_later_rounds_send_only_what_changed(tmp_path: Path, pki) -> None:  # type: ignore[no-untyped-def]
    planted = Planted.make()
    with running_alliance(tmp_path, pki, planted=planted) as alliance:
        first = join_all(alliance, alliance.admin().create_round(alliance.spec(2)).round_id)
        assert all(o.replaced and o.delta_count == len(planted.holdings[m]) for m, o in first.items())

        second = join_all(alliance, alliance.admin().create_round(alliance.spec(2)).round_id)
        for member, outcome in second.items():
            assert (outcome.replaced, outcome.delta_count, outcome.tokens_computed) == (False, 0, 0)
            assert outcome.submitted == len(planted.holdings[member])
            assert leads(outcome) == planted.expected(member, 2)

        # bank-a withdraws one identifier it shares with bank-b only, and both add a new shared one.
        shared_ab = sorted(planted.holdings["bank-a"] & planted.holdings["bank-b"] - planted.holdings["bank-c"])[0]
        with alliance.member_engines["bank-a"].begin() as conn:
            assert MemberRepository(conn).withdraw("phone", shared_ab)
        planted.holdings["bank-a"].discard(shared_ab)
        new = phone(90_000)
        for member in ("bank-a", "bank-b"):
            load(alliance.member_engines[member], [new], "wool_party")
            planted.holdings[member].add(new)
        third = join_all(alliance, alliance.admin().create_round(alliance.spec(2)).round_id)
        assert {m: (o.delta_count, o.tokens_computed, o.replaced) for m, o in third.items()} == {
            "bank-a": (2, 1, False),
            "bank-b": (1, 1, False),
            "bank-c": (0, 0, False),
        }
        for member, outcome in third.items():
            assert leads(outcome) == planted.expected(member, 2)
            assert outcome.submitted == len(planted.holdings[member])
        assert shared_ab not in leads(third["bank-b"]) and new in leads(third["bank-b"])


def test_a_changed_label_is_sent_again_and_peers_read_the_new_one(tmp_path: Path, pki) -> None:  # type: ignore[no-untyped-def]
    planted = Planted.make()
    with running_alliance(tmp_path, pki, planted=planted) as alliance:
        join_all(alliance, alliance.admin().create_round(alliance.spec(2)).round_id)
        shared = sorted(planted.holdings["bank-a"] & planted.holdings["bank-b"])[0]
        load(alliance.member_engines["bank-a"], [shared], "money_laundering")  # Re-import: category changed.
        outcome = join_all(alliance, alliance.admin().create_round(alliance.spec(2)).round_id)
        assert outcome["bank-a"].delta_count == 1 and outcome["bank-b"].delta_count == 0
        lead = next(lead for lead in outcome["bank-b"].leads if lead.canonical == shared)
        assert "money_laundering" in {label.category for label in lead.peer_labels}
        assert "wool_party" not in {label.category for label in lead.peer_labels}


def test_a_node_restored_from_an_old_backup_sends_the_whole_set(tmp_path: Path, pki) -> None:  # type: ignore[no-untyped-def]
    planted = Planted.make()
    with running_alliance(tmp_path, pki, planted=planted) as alliance:
        join_all(alliance, alliance.admin().create_round(alliance.spec(2)).round_id)
        database = tmp_path / "bank-c.db"
        backup = tmp_path / "bank-c.backup.db"
        with sqlite3.connect(database) as live, sqlite3.connect(backup) as copy:
            live.backup(copy)
        load(alliance.member_engines["bank-c"], [phone(80_000)], "wool_party")
        planted.holdings["bank-c"].add(phone(80_000))
        join_all(alliance, alliance.admin().create_round(alliance.spec(2)).round_id)
        alliance.member_engines["bank-c"].dispose()
        with sqlite3.connect(backup) as copy, sqlite3.connect(database) as live:
            copy.backup(live)  # The node's record is one round behind the coordinator now.
        planted.holdings["bank-c"].discard(phone(80_000))
        outcome = join_all(alliance, alliance.admin().create_round(alliance.spec(2)).round_id)
        assert outcome["bank-c"].replaced and outcome["bank-c"].delta_count == len(planted.holdings["bank-c"])
        assert not outcome["bank-a"].replaced and outcome["bank-a"].delta_count == 0
        for member in MEMBERS:
            assert leads(outcome[member]) == planted.expected(member, 2)


def test_a_corrupted_record_is_caught_at_commit_and_reset(tmp_path: Path, pki) -> None:  # type: ignore[no-untyped-def]
    planted = Planted.make()
    with running_alliance(tmp_path, pki, planted=planted) as alliance:
        join_all(alliance, alliance.admin().create_round(alliance.spec(2)).round_id)
        with alliance.member_engines["bank-c"].begin() as conn:
            # The record's rows disagree with its digest state; a delta that replaces one of them shows it.
            conn.execute(update(member_submitted).values(label_digest=bytes(16)))
            type_, canonical = conn.execute(select(identifiers.c.type, identifiers.c.canonical).limit(1)).one()
            relabelled = {"type": type_, "canonical": canonical, "category": "money_laundering", "severity": "level1"}
            MemberRepository(conn).upsert_identifiers([relabelled])
        round_id = alliance.admin().create_round(alliance.spec(2)).round_id
        with pytest.raises(Conflict, match="set digest mismatch.*next round sends the whole set"):
            alliance.node("bank-c").join(round_id, wait=5)
        alliance.admin().close_round(round_id)
        outcome = join_all(alliance, alliance.admin().create_round(alliance.spec(2)).round_id)
        assert outcome["bank-c"].replaced and not outcome["bank-a"].replaced
        for member in MEMBERS:
            assert leads(outcome[member]) == planted.expected(member, 2)


def test_a_member_sitting_out_a_round_does_not_count_in_it(tmp_path: Path, pki) -> None:  # type: ignore[no-untyped-def]
    planted = Planted.make()
    with running_alliance(tmp_path, pki, planted=planted) as alliance:
        join_all(alliance, alliance.admin().create_round(alliance.spec(2)).round_id)
        round_id = alliance.admin().create_round(alliance.spec(2, invited=("bank-a", "bank-b"))).round_id
        outcome = join_all(alliance, round_id, members=("bank-a", "bank-b"))
        two = Planted({m: planted.holdings[m] for m in ("bank-a", "bank-b")})
        for member in ("bank-a", "bank-b"):
            assert leads(outcome[member]) == two.expected(member, 2)


def test_rounds_of_one_scope_run_one_after_another(tmp_path: Path, pki) -> None:  # type: ignore[no-untyped-def]
    with running_alliance(tmp_path, pki) as alliance:
        admin = alliance.admin()
        first = admin.create_round(alliance.spec(2))
        with pytest.raises(Conflict, match=f"round {first.round_id} over the same key epoch"):
            admin.create_round(alliance.spec(2))
        admin.create_round(alliance.spec(2, share_labels=False))  # Another scope.
        admin.close_round(first.round_id)
        admin.create_round(alliance.spec(2))
