"""``node run`` sends deltas to the continuous scopes that invite it, as a real process against the
real coordinator: a file dropped in its inbox goes as the member's next delta and its holders get
their alerts; a withdrawal goes as a delta too; killed with SIGKILL in the middle of a delta and
started again, it commits that delta once; a delta whose commit reply was lost is recorded, not
sent again. ``node delta SCOPE`` sends one by hand."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine, func, select

from alliance_psi.cli.main import main
from alliance_psi.config import NodeRunConfig
from alliance_psi.protocol.alerts import AlertKind
from alliance_psi.protocol.model import SubmissionState
from alliance_psi.protocol.node_alerts import AppliedAlert, kind_name
from alliance_psi.services.node_daemon import NodeDaemon
from alliance_psi.storage.node_alerts import NodeAlerts
from alliance_psi.storage.schema import submission_chunks, submissions
from tests.integration.node_run.support import NodeRun, drop, node_run, node_toml, wait_for
from tests.integration.node_run.test_loop import _LosesCommitReply, _NoAlertSide
from tests.integration.services.harness import MEMBERS, load, phone, running_alliance
from tests.integration.services.test_member_deltas import NOBODY, QUIET, alerts_of, own, scope_spec, withdraw

pytestmark = pytest.mark.timeout(900)

EXTRA = 20_000  # bank-a's first delta: five chunks of 4,096.


def staged(coordinator: Engine, scope_id: str) -> tuple[str | None, int, int]:
    """bank-a's submission to the scope at the coordinator: (state, last committed sequence, chunks)."""
    with coordinator.execution_options(sqlite_begin="DEFERRED").connect() as conn:
        row = conn.execute(
            select(submissions.c.state, submissions.c.commit_seq).where(
                submissions.c.round_id == scope_id, submissions.c.member_id == "bank-a"
            )
        ).one_or_none()
        chunks = conn.execute(
            select(func.count())
            .select_from(submission_chunks)
            .where(submission_chunks.c.round_id == scope_id, submission_chunks.c.member_id == "bank-a")
        ).scalar_one()
    return (None, 0, chunks) if row is None else (row.state, row.commit_seq, chunks)


def test_node_run_sends_its_inbox_and_its_withdrawals_as_deltas_and_the_holders_are_alerted(
    tmp_path: Path, pki
) -> None:  # type: ignore[no-untyped-def]
    with running_alliance(tmp_path, pki, planted=NOBODY, coordinator_options=QUIET) as alliance:
        with alliance.admin() as admin:
            scope_id = admin.create_round(scope_spec(("bank-a", "bank-b"))).round_id
        config = node_toml(tmp_path, pki, alliance, "bank-a", **{"submit-every": "0", "join-rounds": "false"})
        with node_run(config) as run:
            drop(
                tmp_path / "bank-a-inbox", "first.csv", "type,value\n" + "".join(f"phone,{phone(n)}\n" for n in (1, 2))
            )
            line = run.wait_for_line(f"scope {scope_id}: delta 1 committed")
            assert "2 changes sent (the whole set), 2 in the set" in line, line
            # bank-b sends a delta by hand, holding one of bank-a's identifiers.
            load(alliance.member_engines["bank-b"], [phone(2), phone(3)], "loan_intermediary")
            config_b = node_toml(tmp_path, pki, alliance, "bank-b")
            sent = CliRunner().invoke(main, ["node", "delta", scope_id, "--config", str(config_b)])
            assert sent.exit_code == 0, sent.output
            assert f"scope {scope_id}: delta 1 committed, 2 changes sent (the whole set), 2 in the set" in sent.output
            a, b = alliance.node("bank-a"), alliance.node("bank-b")
            # bank-a's alert is read where its node run applied it: that node acknowledges what it
            # applies, and an acknowledged alert is never sent again, so a watch of the test's own
            # could wait for it forever. bank-b runs no node: its alerts wait at the coordinator.
            [match_a] = applied_alerts(alliance.member_engines["bank-a"], 1, run)
            [match_b] = alerts_of(alliance, "bank-b", 1)
            assert (match_a.kind, own(a, match_a)) == (kind_name(AlertKind.MATCH), phone(2))
            assert (match_b.kind, own(b, match_b)) == (AlertKind.MATCH, phone(2))
            again = CliRunner().invoke(main, ["node", "delta", scope_id, "--config", str(config_b)])
            assert again.exit_code == 0, again.output
            assert "nothing changed since this member's last delta; nothing sent" in again.output

            withdraw(alliance, "bank-a", phone(2))  # As `node withdraw` would, while it runs.
            line = run.wait_for_line(f"scope {scope_id}: delta 2 committed")
            assert "1 change sent (changes only), 1 in the set" in line, line
            retracted = alerts_of(alliance, "bank-b", 2)[1]
            assert (retracted.kind, own(b, retracted)) == (AlertKind.RETRACTED, phone(2))
            assert run.stop() == 0, run.log
        for value in (phone(1), phone(2), phone(3)):  # Logs name scopes and counts, never an identifier.
            assert value not in run.log and value.removeprefix("+86") not in run.log


def applied_alerts(engine: Engine, count: int, run: NodeRun) -> list[AppliedAlert]:
    """The first ``count`` alerts ``run`` applied in its node's database, waiting for them."""

    def found() -> list[AppliedAlert] | None:
        with engine.connect() as conn:
            applied = sorted(NodeAlerts(conn).find(), key=lambda alert: alert.sequence)
        return applied[:count] if len(applied) >= count else None

    return wait_for(found, f"{count} alerts applied by node run", run)  # type: ignore[return-value]


def test_killed_mid_delta_and_started_again_it_commits_the_delta_once(tmp_path: Path, pki) -> None:  # type: ignore[no-untyped-def]
    with running_alliance(tmp_path, pki, quota=1_000_000, planted=NOBODY, coordinator_options=QUIET) as alliance:
        load(alliance.member_engines["bank-a"], [phone(1_000_000 + i) for i in range(EXTRA)], "wool_party")
        with alliance.admin() as admin:
            scope_id = admin.create_round(scope_spec(MEMBERS)).round_id
        config = node_toml(tmp_path, pki, alliance, "bank-a", **{"submit-every": "0", "join-rounds": "false"})
        first = NodeRun(config)
        wait_for(lambda: staged(alliance.coordinator_engine, scope_id)[2] > 0, "a chunk of bank-a's delta", first)
        first.kill()  # Mid-delta: chunks staged, not committed.
        assert staged(alliance.coordinator_engine, scope_id)[:2] == (SubmissionState.STAGING.value, 0), first.log
        # Imported before it starts again: the resumed delta rebuilds the same chunks; these go next.
        load(alliance.member_engines["bank-a"], [phone(2_000_001), phone(2_000_002)], "wool_party")
        with node_run(config) as second:
            second.wait_for_line(f"scope {scope_id}: delta 2 committed")
            log = first.log + second.log
            assert log.count(f"scope {scope_id}: delta 1 committed") == 1, log
            assert "delta 2 committed, 2 changes sent (changes only)" in log, log
            status = alliance.node("bank-a").coordinator.submission_status(scope_id, "bank-a")
            assert (status.commit_sequence, status.set_count) == (2, EXTRA + 2)
            assert second.stop() == 0, second.log


def test_a_delta_whose_commit_reply_was_lost_is_recorded_and_not_sent_again(tmp_path: Path, pki) -> None:  # type: ignore[no-untyped-def]
    with running_alliance(tmp_path, pki, planted=NOBODY, coordinator_options=QUIET) as alliance:
        with alliance.admin() as admin:
            scope = admin.create_round(scope_spec(MEMBERS))
        load(alliance.member_engines["bank-a"], [phone(1), phone(2)], "wool_party")
        lossy = _LosesCommitReply(alliance.coordinator_address, pki.material("bank-a"))
        node = alliance.member_node("bank-a", coordinator=lossy)
        log = logging.getLogger("tests.node_run")
        settings = NodeRunConfig(inbox=tmp_path / "inbox", submit_seconds=0, join_rounds=False)
        daemon = NodeDaemon(node, settings, _NoAlertSide(), log)
        daemon.inbox.prepare()
        stop = threading.Event()

        def at_coordinator() -> tuple[int, int, int]:
            status = lossy.submission_status(scope.round_id, "bank-a")
            return status.commit_sequence, status.item_count, status.set_count

        def recorded() -> int | None:
            with node.role.uow.reading() as tx:
                record = tx.repo.submitted_state(scope.set_scope)
            return None if record is None else record.item_count

        daemon.turn(stop)  # Commits delta 1; the reply is lost, so nothing is recorded.
        assert (at_coordinator(), recorded()) == ((1, 2, 2), None)
        daemon.turn(stop)  # Recorded now; nothing sent again.
        assert (at_coordinator(), recorded()) == ((1, 2, 2), 2)
        load(alliance.member_engines["bank-a"], [phone(3)], "wool_party")
        daemon.turn(stop)  # The next delta: the one new identifier, under sequence 2.
        assert (at_coordinator(), recorded()) == ((2, 1, 3), 3)
        node.close()
