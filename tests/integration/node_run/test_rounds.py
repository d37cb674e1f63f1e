"""``node run`` joins the batch rounds that invite it, as a real process: killed with SIGKILL in the
middle of its submission and started again, it completes the submission once, nothing lost or
sent twice, and keeps the verified result; identifiers imported meanwhile go in the next round as a
delta of just them."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select

from alliance_psi.protocol.model import SubmissionState
from alliance_psi.storage import QuotaRepository
from alliance_psi.storage.schema import submission_chunks, submissions
from tests.integration.node_run.support import NodeRun, drop, node_run, node_toml, wait_for
from tests.integration.services.harness import CATEGORIES, EPOCH, Planted, load, phone, running_alliance

pytestmark = pytest.mark.timeout(900)

EXTRA = 20_000  # bank-a's identifiers beyond the planted ones: five chunks of 4,096.


def staged_chunks(coordinator: Engine, round_id: str) -> int:
    with coordinator.execution_options(sqlite_begin="DEFERRED").connect() as conn:
        return int(
            conn.execute(
                select(func.count())
                .select_from(submission_chunks)
                .where(submission_chunks.c.round_id == round_id, submission_chunks.c.member_id == "bank-a")
            ).scalar_one()
        )


def state_of(coordinator: Engine, round_id: str) -> str | None:
    with coordinator.execution_options(sqlite_begin="DEFERRED").connect() as conn:
        return conn.execute(
            select(submissions.c.state).where(submissions.c.round_id == round_id, submissions.c.member_id == "bank-a")
        ).scalar_one_or_none()


def test_killed_mid_submission_and_started_again_it_submits_once_and_keeps_the_result(tmp_path: Path, pki) -> None:  # type: ignore[no-untyped-def]
    planted = Planted.make(size=20)
    with running_alliance(tmp_path, pki, quota=1_000_000, planted=planted) as alliance:
        load(alliance.member_engines["bank-a"], [phone(1_000_000 + i) for i in range(EXTRA)], "wool_party")
        distinct = len(planted.holdings["bank-a"]) + EXTRA
        admin = alliance.admin()
        round_id = admin.create_round(alliance.spec(2, invited=("bank-a", "bank-b"))).round_id
        bank_b = alliance.node("bank-b")
        bank_b.join(round_id, wait=0)
        config = node_toml(tmp_path, pki, alliance, "bank-a")

        first = NodeRun(config)
        wait_for(lambda: staged_chunks(alliance.coordinator_engine, round_id) > 0, "a chunk of bank-a's", first)
        first.kill()  # Mid-submission: chunks staged, not committed.
        assert state_of(alliance.coordinator_engine, round_id) == SubmissionState.STAGING.value, first.log
        # Imported before it starts again: the resumed submission still rebuilds the same chunks
        # (over the changes it had started with); these go in the next round.
        load(alliance.member_engines["bank-a"], [phone(n) for n in (2_000_001, 2_000_002)], "wool_party")

        with node_run(config) as second:
            second.wait_for_line(f"round {round_id}: committed")
            kept = f"round {round_id}: result verified and kept"  # Fetched, or at once by the join.
            committed_and_kept = f"round {round_id}: committed"
            wait_for(lambda: any("verified and kept" in line for line in second.lines), kept, second)
            (said,) = [line for line in second.lines if "verified and kept" in line]
            assert kept in said or (committed_and_kept in said and "; result verified and kept, " in said), said
            assert said.count("kept") == 1, said
            node = alliance.node("bank-a")
            status = node.coordinator.submission_status(round_id, "bank-a")
            assert (status.state, status.set_count) == (SubmissionState.COMMITTED, distinct)
            assert staged_chunks(alliance.coordinator_engine, round_id) == -(-distinct // 4096)
            leads = node.leads(node.kept_result(round_id))
            two = Planted({m: planted.holdings[m] for m in ("bank-a", "bank-b")})
            assert {lead.canonical: lead.holder_count for lead in leads} == two.expected("bank-a", 2)
            for engine in alliance.custodian_engines:  # Each identifier evaluated and charged once.
                with engine.connect() as conn:
                    assert QuotaRepository(conn).used(EPOCH, "bank-a") == distinct
            log = first.log + second.log
            assert log.count(f"round {round_id}: committed") == 1, log

            # Imported while it runs (through its inbox): the next round sends just those and the two above.
            drop(
                tmp_path / "bank-a-inbox",
                "new.csv",
                "type,value\n" + "".join(f"phone,{phone(n)}\n" for n in (2_000_003, 2_000_004)),
            )
            second.wait_for_line("new.csv imported")
            later = admin.create_round(alliance.spec(2, invited=("bank-a", "bank-b"))).round_id
            line = second.wait_for_line(f"round {later}: committed")
            assert "4 tokens computed, 4 changes sent (changes only)" in line, line
            assert second.stop() == 0, second.log


@pytest.mark.parametrize("joins", ["node run", "by hand"])
def test_a_running_node_answers_a_closed_rounds_request_for_its_matched_tokens_labels(
    joins: str, tmp_path: Path, pki
) -> None:  # type: ignore[no-untyped-def]
    """Whether `node run` joined the round or the member did by hand (`join-rounds = false`)."""
    planted = Planted.make(size=10)
    with running_alliance(tmp_path, pki, planted=planted) as alliance:
        admin = alliance.admin()
        spec = alliance.spec(2, invited=("bank-a", "bank-b"), labels_at_match=True)
        round_id = admin.create_round(spec).round_id
        by_hand = {"join-rounds": "false"} if joins == "by hand" else {}
        with node_run(node_toml(tmp_path, pki, alliance, "bank-a", **by_hand)) as run:
            if by_hand:
                alliance.node("bank-a").join(round_id, wait=0)
            else:
                run.wait_for_line(f"round {round_id}: committed")
            # bank-b's commit closes the round; its join answers for its own labels and waits for
            # bank-a's, which the running node sends when it sees the round asking.
            outcome = alliance.node("bank-b").join(round_id, wait=120)
            assert outcome.result is not None, run.log
            asked = 5 + 6  # What bank-a and bank-b both hold.
            said = run.wait_for_line("sealed and sent for matched tokens")
            assert f"round {round_id}: {asked} labels sealed and sent for matched tokens" in said, run.log
            if not by_hand:  # A node that leaves rounds to `node join` fetches no result either.
                run.wait_for_line(f"round {round_id}: result verified and kept")
            assert run.stop() == 0, run.log
        node = alliance.node("bank-a")
        if by_hand:
            node.fetch_result(round_id, wait=30)
        leads = node.leads(node.kept_result(round_id))
        assert len(leads) == asked and all(
            [label.category for label in lead.peer_labels] == [CATEGORIES[1]] for lead in leads
        ), leads
        assert {lead.canonical for lead in outcome.leads} == {lead.canonical for lead in leads}
