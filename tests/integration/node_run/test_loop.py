"""``node run``'s loop in this process, against a running alliance: it records a commit the
coordinator made but the node did not (it stopped in between) and keeps that round's result; a file
taken out of its inbox while it was being taken in is passed over, not fatal."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import pytest

from alliance_psi.config import NodeRunConfig
from alliance_psi.errors import PeerUnavailable
from alliance_psi.protocol.coordinator import Commit
from alliance_psi.protocol.model import RoundState, SubmissionState, SubmissionStatus
from alliance_psi.services.clients import CoordinatorClient
from alliance_psi.services.node_daemon import NodeDaemon
from tests.integration.node_run.support import wait_for
from tests.integration.services.harness import running_alliance

pytestmark = pytest.mark.timeout(600)


class _NoAlertSide:
    """The loop's turns alone are tested here: its alert side never runs."""

    def run(self, stop: threading.Event) -> None:
        raise AssertionError("turn() does not run the alert side")


class _LosesCommitReply(CoordinatorClient):
    """Commits once, then loses the reply: the node stops between the coordinator's commit and its record."""

    lose = True

    def commit(self, commit: Commit, member_id: str) -> SubmissionStatus:
        status = super().commit(commit, member_id)
        if self.lose:
            self.lose = False
            raise PeerUnavailable("the node stopped before it recorded the commit")
        return status


@pytest.mark.parametrize("looks_while_open", [True, False], ids=["open", "matched"])
def test_a_commit_it_did_not_record_is_recorded_and_the_result_kept(
    tmp_path: Path, pki, looks_while_open: bool
) -> None:  # type: ignore[no-untyped-def]
    with running_alliance(tmp_path, pki) as alliance:
        admin = alliance.admin()
        round_id = admin.create_round(alliance.spec(2, invited=("bank-a", "bank-b"))).round_id
        lossy = _LosesCommitReply(alliance.coordinator_address, pki.material("bank-a"))
        node = alliance.member_node("bank-a", coordinator=lossy)
        log = logging.getLogger("tests.node_run")
        daemon = NodeDaemon(node, NodeRunConfig(inbox=tmp_path / "inbox"), _NoAlertSide(), log)
        daemon.inbox.prepare()
        stop = threading.Event()
        daemon.turn(stop)  # Commits; the reply is lost, so nothing is recorded.
        assert node.coordinator.submission_status(round_id, "bank-a").state is SubmissionState.COMMITTED
        with node.role.uow.reading() as tx:
            assert tx.results.recorded_scope(round_id) is None
        if looks_while_open:  # It looks again while the round is open, then once it is matched.
            daemon.turn(stop)
            with node.role.uow.reading() as tx:
                assert tx.results.recorded_scope(round_id) is not None
        alliance.node("bank-b").join(round_id, wait=0)
        wait_for(lambda: admin.get_round(round_id)[0].state is RoundState.MATCHED, "the round matched")
        daemon.turn(stop)
        with node.role.uow.reading() as tx:
            assert tx.results.recorded_scope(round_id) is not None
            assert tx.results.get_result(round_id).header  # Fetched, verified and kept.
        node.close()


def test_a_file_taken_out_of_the_inbox_meanwhile_is_passed_over(tmp_path: Path, pki) -> None:  # type: ignore[no-untyped-def]
    with running_alliance(tmp_path, pki) as alliance:
        node = alliance.member_node("bank-a")
        log = logging.getLogger("tests.node_run")
        daemon = NodeDaemon(node, NodeRunConfig(inbox=tmp_path / "inbox"), _NoAlertSide(), log)
        daemon.inbox.prepare()
        # Listed as ready, then taken out by someone before (or while) it was read.
        for name in ("gone.csv", "gone.txt"):
            assert daemon.import_file(daemon.inbox.folder / name) is False
        assert not list((daemon.inbox.folder / "failed").iterdir())  # No error file without its file.
        assert not list((daemon.inbox.folder / "done").iterdir())
        node.close()
