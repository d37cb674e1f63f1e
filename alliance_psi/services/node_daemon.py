"""``node run``: the member node as a long-running service (systemd unit or container).

``NodeDaemon.run(stop)`` loops until ``stop`` is set. Each turn, every ``poll_seconds``:

1. **Inbox** (``services.inbox``): each complete file, oldest first, is imported in one
   transaction (``services.blacklist_import``; strict by default: a file with a rejected row
   imports nothing) and moved to ``done/`` or ``failed/`` with its rejects file. A file dropped
   while another is being imported waits for the next look; none is lost.
2. **Batch rounds** (``join_rounds``): every open batch round that invites this member and that it
   has not committed to is joined at once (tokens for what changed since the scope's last commit,
   the delta, the commit: ``MemberRole.join``), and the verified result of every matched round it
   committed to is fetched and kept. A node that joins rounds by hand turns this off; it still
   answers the closed rounds it committed to that ask for its matched tokens' labels (labels
   sealed at match), whoever joined them: a co-holder's lead may depend on its label.
3. **Continuous scopes**: to every open continuous scope that invites this member, the changes
   since its last commit there go as its next delta (``MemberRole.submit_delta``), at most once
   every ``submit_seconds`` per scope and only when something changed (the change counter says
   so without reading an identifier).

With ``metrics`` (``node run --metrics-listen``), every file taken in counts its rows: accepted
(stored) and rejected (``Metrics.count_import_rows``; a strict inbox's refused file counts none
accepted).

The alert side (``AlertRunner``, ``services.alert_node.AlertSide`` in ``node run``: the follower of
the coordinator's alerts and the notifiers) runs beside the loop in a thread of its own, until
``stop``; each alert is applied once and its notices kept in outboxes in the node's database.

Every step is a transaction of the node's database or a resumable exchange with the coordinator,
so the process may be stopped anywhere: a restart picks up the file still in the inbox, resumes
the submission (same chunks, only those the coordinator lacks) or records the commit it had not
recorded (``MemberRole.settle``). ``node import`` and ``node withdraw`` work meanwhile: the node's
SQLite database runs in WAL mode with a busy timeout (``storage.make_engine``), and the loop holds
the write lock only for one import or one batch of tokens at a time.

Security: log lines name files, rounds, counts, rows, fields and kinds of reasons, never an
identifier, a token or a label.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from sqlalchemy.exc import SQLAlchemyError

from alliance_psi._database_errors import describe_database_error
from alliance_psi._plural import plural
from alliance_psi.config import NodeRunConfig
from alliance_psi.errors import AlliancePsiError, NotFound, RoundClosed
from alliance_psi.protocol.model import Round, RoundKind, RoundState, SubmissionState, SubmissionStatus
from alliance_psi.services.blacklist_import import ImportTally, import_blacklist
from alliance_psi.services.inbox import Inbox
from alliance_psi.services.member import MemberNode
from alliance_psi.services.metrics import Metrics

__all__ = ["AlertRunner", "NodeDaemon"]

_SHOWN_REJECTIONS = 3


class AlertRunner(Protocol):
    """The member node's alert side: follows the coordinator's alerts and notifies, until ``stop``
    (``services.alert_node.AlertSide``)."""

    def run(self, stop: threading.Event) -> None: ...


@dataclass
class NodeDaemon:
    """The member node's service loop (see the module docstring)."""

    node: MemberNode
    settings: NodeRunConfig
    alerts: AlertRunner
    log: logging.Logger
    metrics: Metrics | None = None
    inbox: Inbox = field(init=False)
    _said: dict[str, str] = field(default_factory=dict, init=False)  # Round -> last problem logged.
    _next_delta: dict[str, float] = field(default_factory=dict, init=False)  # Scope -> monotonic time.
    _labelled: set[str] = field(default_factory=set, init=False)  # Rounds whose asked labels this node answered.

    def __post_init__(self) -> None:
        self.inbox = Inbox(self.settings.inbox, settle_seconds=self.settings.settle_seconds)

    @property
    def member_id(self) -> str:
        return self.node.role.member_id

    def run(self, stop: threading.Event) -> None:
        """Import, join and fetch until ``stop`` is set; the alert side runs beside, in its own thread."""
        self.inbox.prepare()
        alerts = threading.Thread(target=self._alerts, args=(stop,), name="alerts", daemon=True)
        alerts.start()
        self.log.info(
            "node run: member %s, inbox %s, looking every %gs%s",
            self.member_id,
            self.settings.inbox,
            self.settings.poll_seconds,
            "" if self.settings.join_rounds else " (batch rounds are joined by hand)",
        )
        while not stop.is_set():
            self.turn(stop)
            stop.wait(self.settings.poll_seconds)
        alerts.join(self.settings.stop_grace_seconds)
        self.log.info("node run: stopped")

    def _alerts(self, stop: threading.Event) -> None:
        try:
            self.alerts.run(stop)
        except Exception:  # The loop goes on without alerts; the log says why.
            self.log.exception("alerts: the alert side stopped")

    def turn(self, stop: threading.Event) -> None:
        """One look at the inbox, then at the coordinator's rounds."""
        for path in self.inbox.ready():
            if stop.is_set():
                return
            self.import_file(path)
        if self.settings.join_rounds and not stop.is_set():
            self._guarded("rounds", functools.partial(self.rounds, stop))
        if not stop.is_set():
            self._guarded("labels", functools.partial(self.labels, stop))
        if not stop.is_set():
            self._guarded("scopes", functools.partial(self.scopes, stop))

    # The inbox --------------------------------------------------------------------------------

    def import_file(self, path: Path) -> bool:
        """Import one inbox file and place it in ``done/`` or ``failed/``; return whether it went in.

        A file taken out of the inbox meanwhile (before it was read, or before it was moved) is
        passed over with a warning: whatever of it was imported stays."""
        try:
            return self._take_in(path)
        except FileNotFoundError as exc:
            self.log.warning(
                "inbox: %s was taken out of the inbox meanwhile (%s); passed over", path.name, exc.strerror
            )
            return False

    def _take_in(self, path: Path) -> bool:
        if not self.inbox.accepted(path):
            placed = self.inbox.place(path, failed=True, error=_NOT_A_BLACKLIST.format(name=path.name))
            self.log.warning(
                "inbox: %s is not a blacklist file (.csv, .jsonl, .xlsx): moved to %s", path.name, placed.file
            )
            return False
        self.log.info("inbox: importing %s", path.name)
        try:
            tally = import_blacklist(
                self.node.engine, path, rejects_path=self.inbox.rejects_path(path), strict=self.settings.strict
            )
        except AlliancePsiError as exc:
            placed = self.inbox.place(path, failed=True, error=str(exc))
            self.log.warning("inbox: %s failed, nothing imported: %s; moved to %s", path.name, exc, placed.file)
            return False
        except SQLAlchemyError as exc:  # The database, not the file: it stays in the inbox for the next turn.
            self.log.warning("inbox: %s not imported this time, %s; tried again", path.name, _database_error(exc))
            return False
        failed = tally.stopped or tally.stored == 0 or (self.settings.strict and tally.rejected > 0)
        placed = self.inbox.place(path, failed=failed)
        if self.metrics is not None:
            self.metrics.count_import_rows(accepted=0 if failed else tally.stored, rejected=tally.rejected)
        self.log.log(
            logging.WARNING if failed or tally.rejected else logging.INFO,
            "inbox: %s %s: %s%s; moved to %s%s",
            path.name,
            _verdict(tally, failed, strict=self.settings.strict),
            ", ".join(f"{count:,} {name}" for name, count in tally.figures.items()),
            _rejections(tally),
            placed.file,
            f", rejected rows in {placed.rejects}" if placed.rejects else "",
        )
        return not failed

    # Batch rounds -----------------------------------------------------------------------------

    def rounds(self, stop: threading.Event) -> None:
        """Join the open batch rounds that invite this member and fetch the results of matched ones."""
        coordinator = self.node.coordinator
        for round_, _ in coordinator.list_rounds(RoundState.OPEN, RoundKind.BATCH):
            if stop.is_set():
                return
            self._guarded(round_.round_id, functools.partial(self._join, round_))
        for round_, _ in coordinator.list_rounds(RoundState.MATCHED):
            if stop.is_set():
                return
            self._guarded(round_.round_id, functools.partial(self._fetch, round_))

    def labels(self, stop: threading.Event) -> None:
        """Answer the closed batch rounds that ask for this node's matched tokens' labels (whether
        this node or `node join` committed to them; one it did not commit to gets nothing)."""
        for round_, _ in self.node.coordinator.list_rounds(RoundState.CLOSED, RoundKind.BATCH):
            if stop.is_set():
                return
            if round_.labelling and round_.round_id not in self._labelled:
                self._guarded(round_.round_id, functools.partial(self._label, round_))

    def _label(self, round_: Round) -> None:
        """Answer a closed round's requests for this node's labels of its matched tokens."""
        try:
            sent = self.node.role.answer_label_requests(round_)
        except RoundClosed as exc:  # Issued meanwhile, or its window passed before this node saw it.
            self.log.info("round %s: it asks for no labels any more: %s", round_.round_id, exc)
            sent = 0
        self._labelled.add(round_.round_id)
        if sent:
            self.log.info("round %s: %s sealed and sent for matched tokens", round_.round_id, plural(sent, "label"))

    def _join(self, round_: Round) -> None:
        status = self.node.coordinator.submission_status(round_.round_id, self.member_id)
        if status.state is SubmissionState.COMMITTED:
            self._settle(round_, status)
            return
        self.log.info("round %s: joining", round_.round_id)
        outcome = self.node.role.join(round_.round_id, wait=0)
        if outcome.labels_sent:  # Its commit closed a round that asked at once.
            self._labelled.add(round_.round_id)
            self.log.info(
                "round %s: %s sealed and sent for matched tokens", round_.round_id, plural(outcome.labels_sent, "label")
            )
        self.log.info(
            "round %s: committed, %s computed, %s sent (%s), %s in the set%s",
            round_.round_id,
            plural(outcome.tokens_computed, "token"),
            plural(outcome.delta_count, "change"),
            "the whole set" if outcome.replaced else "changes only",
            f"{outcome.submitted:,}",
            _result_text(outcome.result.match_count if outcome.result else None),
        )

    # Continuous scopes ------------------------------------------------------------------------

    def scopes(self, stop: threading.Event) -> None:
        """Send a delta to each open continuous scope inviting this member whose ``submit_seconds``
        have passed since its last one, when this node changed since its last commit there."""
        for scope, _ in self.node.coordinator.list_rounds(RoundState.OPEN, RoundKind.CONTINUOUS):
            if stop.is_set():
                return
            if time.monotonic() < self._next_delta.get(scope.round_id, 0.0) or not self.node.role.has_changes(scope):
                continue
            self._next_delta[scope.round_id] = time.monotonic() + self.settings.submit_seconds
            self._guarded(scope.round_id, functools.partial(self._delta, scope))

    def _delta(self, scope: Round) -> None:
        sent = self.node.role.submit_delta(scope.round_id)
        if not sent.sequence:
            return  # Changes outside the scope's types, or none left: nothing to commit.
        self.log.info(
            "scope %s: delta %d committed, %s sent (%s), %s in the set",
            scope.round_id,
            sent.sequence,
            plural(sent.delta_count, "change"),
            "the whole set" if sent.replaced else "changes only",
            f"{sent.set_count:,}",
        )

    def _fetch(self, round_: Round) -> None:
        with self.node.role.uow.reading() as tx:
            recorded = tx.results.recorded_scope(round_.round_id) is not None
            try:
                tx.results.get_result(round_.round_id)
                return  # Kept already.
            except NotFound:
                pass
        if not recorded and not self._settle(round_):
            return  # Not committed by this node (or recorded before this version).
        header = self.node.role.fetch_and_keep(round_)
        self.log.info(
            "round %s: result verified and kept, %s", round_.round_id, plural(header.match_count, "match", "matches")
        )
        findings = self.node.role.lead_checks(round_.round_id).refused
        refused, short = sum(not f.stands for f in findings), sum(f.stands for f in findings)
        if refused or short:
            self.log.warning(
                "round %s: %s refused, %s with fewer holders than signed: their labels do not back the count "
                "(`node fetch %s` names each token and why)",
                round_.round_id,
                plural(refused, "lead"),
                plural(short, "lead"),
                round_.round_id,
            )
        if beyond := self.node.role.labels_beyond_result(round_.round_id):
            self.log.warning(
                "round %s: the coordinator asked this node for the labels of %s not in its signed result "
                "(evidence: member_label_answers beside the kept result)",
                round_.round_id,
                plural(beyond, "token"),
            )

    def _settle(self, round_: Round, status: SubmissionStatus | None = None) -> bool:
        """Record ``round_``'s commit if the coordinator made it but this node stopped before its own
        record (``MemberRole.settle``); the coordinator is asked only when such a delta is pending."""
        with self.node.role.uow.reading() as tx:
            pending = tx.repo.pending_set(round_.set_scope)
        if pending is None or pending.record is None or pending.round_id != round_.round_id:
            return False
        status = status or self.node.coordinator.submission_status(round_.round_id, self.member_id)
        if not self.node.role.settle(round_, status):
            return False
        self.log.info("round %s: its commit, made before the node stopped, is recorded now", round_.round_id)
        return True

    def _guarded(self, what: str, step: Callable[[], None]) -> None:
        """Run ``step``; log an error once per ``what`` until it changes (the step is retried each turn)."""
        try:
            step()
        except (AlliancePsiError, SQLAlchemyError) as exc:
            text = _database_error(exc) if isinstance(exc, SQLAlchemyError) else f"{type(exc).__name__}: {exc}"
            if self._said.get(what) != text:
                self._said[what] = text
                self.log.warning("%s: %s (tried again every %gs)", what, text, self.settings.poll_seconds)
        else:
            if self._said.pop(what, None) is not None:
                self.log.info("%s: working again", what)


def _database_error(exc: SQLAlchemyError) -> str:
    """A database error without its values (a raw identifier may be one): ``describe_database_error``."""
    return f"database error: {describe_database_error(exc)}"


_NOT_A_BLACKLIST = "{name}: not a blacklist file: node run imports .csv, .jsonl, .ndjson and .xlsx files"


def _verdict(tally: ImportTally, failed: bool, *, strict: bool) -> str:
    if tally.stopped:
        return "failed: it looks like the wrong file (nearly every row rejected), nothing imported"
    if failed and strict and tally.rejected:
        return f"failed: {plural(tally.rejected, 'row')} rejected, nothing imported (strict inbox)"
    if failed:
        return "failed: no row could be imported"
    return "imported"


def _rejections(tally: ImportTally) -> str:
    """The first rejected rows by row, field and kind of reason (never a value)."""
    if not tally.problems:
        return ""
    shown = "; ".join(f"row {r.row}, {r.field}: {r.kind_of_reason}" for r in tally.problems[:_SHOWN_REJECTIONS])
    more = f" and {tally.rejected - _SHOWN_REJECTIONS:,} more" if tally.rejected > _SHOWN_REJECTIONS else ""
    return f"; rejected: {shown}{more}"


def _result_text(matches: int | None) -> str:
    return "" if matches is None else f"; result verified and kept, {plural(matches, 'match', 'matches')}"
