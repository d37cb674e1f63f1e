"""The member node's alert follower: each alert of its continuous scopes verified, applied exactly
once, and acknowledged (docs/design.md, "Continuous scopes and alerts").

``AlertFollower.run`` watches the coordinator's ``WatchAlerts`` stream from the sequence after the
last one the node applied, until stopped, reconnecting with back-off after any break. For each
alert, in sequence:

1. ``alerts.verify_alert``: the coordinator's signature under the key pinned in the node's
   configuration, for this member (and this node's certificate key, when the alert names one);
2. sequence continuity: an alert already applied is skipped (it is acknowledged again), a gap
   ends the watch, which starts again from the sequence after the last applied;
3. the checks a result gets: an alert saying a token is a lead (at or above the threshold) in a
   scope that shares labels needs ``holder_count - 1`` peer labels that open under the token's
   label key in the scope, none of them this node's own and no two from one sealer
   (``leads.check_labels``); peer names are the sealers the coordinator attests, never a label's
   own claim. An alert whose counted labels fall short of the threshold is kept, marked refused,
   and is not a lead; one whose labels back the threshold but fewer holders than it says stands,
   with the count its labels back (``backed_count``);
4. the peers' labels opened, and the token mapped to the member's own identifier
   (``NodeRepo.identifiers_for_tokens``) for its notices (``node_alerts.NoticePolicy``);
5. the alert, its notices (the notifiers' outbox) and the new applied sequence written in one
   transaction (``AlertsRepo.apply``, a compare-and-set on the sequence);
6. then acknowledged to the coordinator (``AckAlerts``).

So an alert is applied exactly once across disconnects and restarts of either side: a crash
before step 5 commits leaves it unapplied and it comes again; a crash between 5 and 6 brings it
again, and step 2 skips it. The run holds no state that a stop at any point could corrupt: every
effect is in the node's database, so it may be abandoned anywhere (``stop`` is seen after each
batch, heartbeats included).

Free of grpc and SQL: the coordinator is ``FollowerCalls`` (``services.clients.CoordinatorClient``)
and the node's database a ``FollowerUnitOfWork`` (``services.member.SqlNodeUnitOfWork``).
"""

from __future__ import annotations

import itertools
import random
import threading
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from alliance_psi.crypto.labels import LabelContext, sealer_pseudonym
from alliance_psi.errors import AlliancePsiError, Conflict, InvalidRequest
from alliance_psi.protocol.alerts import NO_TOKEN, Alert, AlertKind, SignedAlert, verify_alert
from alliance_psi.protocol.leads import OwnIdentifier, check_labels, open_peer_labels
from alliance_psi.protocol.model import MatchedToken, Round
from alliance_psi.protocol.node_alerts import (
    AppliedAlert,
    Channel,
    NoticePolicy,
    OutboxMessage,
    alert_id_of,
    kind_name,
)
from alliance_psi.protocol.ports import AlertCalls, KeptResultsRepo, NodeRepo

__all__ = [
    "AlertFollower",
    "AlertsRepo",
    "Backoff",
    "backoff_seconds",
    "FollowerCalls",
    "FollowerTx",
    "FollowerUnitOfWork",
]

_NOTIFIED_ALWAYS = frozenset(
    {AlertKind.MATCH, AlertKind.JOINED, AlertKind.RELABELED, AlertKind.WITHDRAWN, AlertKind.RETRACTED}
)
_FOR_PEOPLE_ONLY = frozenset({AlertKind.OVERFLOW, AlertKind.RESYNC})  # Log and console: no token, no lead.


class AlertsRepo(Protocol):
    """The node's applied alerts and their outbox (``storage.node_alerts.NodeAlerts``)."""

    def applied_sequence(self, stream: str) -> int: ...
    def apply(self, stream: str, alert: AppliedAlert, outbox: Sequence[OutboxMessage]) -> None: ...
    def skip_to(self, stream: str, sequence: int) -> None: ...
    def is_current(self, scope: str, match_token: bytes) -> bool: ...


class FollowerTx(Protocol):
    """The repositories of one transaction on the node's database that the follower uses."""

    @property
    def repo(self) -> NodeRepo: ...
    @property
    def results(self) -> KeptResultsRepo: ...
    @property
    def alerts(self) -> AlertsRepo: ...


class FollowerUnitOfWork(Protocol):
    def reading(self) -> AbstractContextManager[FollowerTx]: ...
    def writing(self) -> AbstractContextManager[FollowerTx]: ...


class FollowerCalls(AlertCalls, Protocol):
    """The coordinator's calls the follower makes (``services.clients.CoordinatorClient``): its alerts,
    and a continuous scope's round, to learn the scope its labels are sealed in."""

    def get_round(self, round_id: str) -> tuple[Round, int]: ...


def backoff_seconds(first: float, most: float, failures: int, draw: Callable[[], float] = random.random) -> float:
    """The wait after ``failures`` failures in a row (0 before the first retry): ``first`` seconds
    doubling to ``most``, drawn uniformly from the upper half (jitter, so that many nodes do not
    retry in step). Reconnections here and notifier retries (``services.notifiers``) use it."""
    ceiling = min(most, first * 2.0**failures)
    return ceiling / 2 + draw() * ceiling / 2


@dataclass
class Backoff:
    """Waits between reconnections: ``backoff_seconds`` from ``first`` to ``most``."""

    first: float = 0.5
    most: float = 30.0
    failures: int = 0

    def next(self) -> float:
        wait = backoff_seconds(self.first, self.most, self.failures)
        self.failures += 1
        return wait

    def reset(self) -> None:
        self.failures = 0


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _nothing(_: str) -> None:
    pass


class AlertFollower:
    """Follows this member's alerts (see the module docstring).

    ``coordinator_key`` is the coordinator's public key pinned in the node's configuration;
    ``nonce_key`` the node's label-nonce key (its own sealer pseudonyms come from it; it never
    leaves the node); ``member_key_pin`` the SHA-256 of the node's certificate key, when known.
    ``policy`` says which notifiers get a notice of each alert; ``applied`` is called after each
    commit (the notifiers' dispatcher wakes on it); ``report`` gets one line per event worth a
    log line (a reconnection, a refused alert): none holds an identifier.
    """

    def __init__(
        self,
        *,
        member_id: str,
        uow: FollowerUnitOfWork,
        calls: FollowerCalls,
        coordinator_key: bytes,
        nonce_key: bytes,
        policy: NoticePolicy,
        stream: str = "coordinator",
        member_key_pin: bytes | None = None,
        backoff: Backoff | None = None,
        applied: Callable[[], None] = lambda: None,
        report: Callable[[str], None] = _nothing,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self.member_id, self.uow, self.calls, self.stream = member_id, uow, calls, stream
        self.coordinator_key, self.nonce_key, self.member_key_pin = coordinator_key, nonce_key, member_key_pin
        self.policy, self.backoff = policy, backoff or Backoff()
        self.applied, self.report, self.clock = applied, report, clock
        self._scopes: dict[str, tuple[str, bool]] = {}

    # One alert ---------------------------------------------------------------------------------

    def apply(self, signed: SignedAlert) -> AppliedAlert | None:
        """Verify and apply one alert; None if it was applied before (see the module, steps 1-5).

        Raises:
            InvalidSignature: the alert does not verify (another key, member or key pin).
            InvalidRequest: its signed bytes are not an alert.
            Conflict: it is not the next in sequence (a gap).
        """
        return self._apply(signed)[1]

    def _apply(self, signed: SignedAlert) -> tuple[int, AppliedAlert | None]:
        """``apply``, also returning the alert's sequence number.

        Raises:
            InvalidSignature: the alert does not verify (another key, member or key pin).
            InvalidRequest: its signed bytes are not an alert.
            Conflict: it is not the next in sequence (a gap).
        """
        alert = verify_alert(self.coordinator_key, signed, member_id=self.member_id, member_key_pin=self.member_key_pin)
        with self.uow.reading() as tx:
            if alert.sequence <= tx.alerts.applied_sequence(self.stream):
                return alert.sequence, None
        scope, share_labels = self._label_scope(alert.scope_id)
        with self.uow.writing() as tx:
            last = tx.alerts.applied_sequence(self.stream)
            if alert.sequence <= last:
                return alert.sequence, None  # Another follower applied it meanwhile.
            if alert.sequence != last + 1:
                raise Conflict(f"alert {alert.sequence} came after alert {last}: the stream skipped some")
            own, kept = self._examine(tx, alert, scope, share_labels, signed)
            was_current = (  # Only a snapshot asks whether its token stood before it.
                alert.kind is AlertKind.SNAPSHOT
                and alert.match_token != NO_TOKEN
                and tx.alerts.is_current(alert.scope_id, alert.match_token)
            )
            tx.alerts.apply(self.stream, kept, self._notices(alert, kept, own, was_current))
        self.applied()
        if kept.refused is not None:
            self.report(f"alert {alert.sequence} ({kind_name(alert.kind)} in {alert.scope_id}) refused: {kept.refused}")
        return alert.sequence, kept

    def _label_scope(self, scope_id: str) -> tuple[str, bool]:
        """(the scope labels are sealed in, whether it shares labels) of continuous scope ``scope_id``:
        as the node recorded it when it committed to the scope, else as the coordinator says (a
        wrong answer only makes labels fail to open, which refuses the lead)."""
        if scope_id not in self._scopes:
            with self.uow.reading() as tx:
                recorded = tx.results.recorded_scope(scope_id)
            if recorded is None:
                round, _ = self.calls.get_round(scope_id)
                recorded = (round.set_scope, round.share_labels)
            self._scopes[scope_id] = recorded
        return self._scopes[scope_id]

    def _examine(
        self, tx: FollowerTx, alert: Alert, scope: str, share_labels: bool, signed: SignedAlert
    ) -> tuple[OwnIdentifier | None, AppliedAlert]:
        """The member's identifier behind the alert's token (None: not held) and the alert as kept."""
        token, refused, backed = alert.match_token, None, None
        own = tx.repo.identifiers_for_tokens(alert.key_epoch, [token]).get(token) if token != NO_TOKEN else None
        key = tx.repo.label_keys_for_tokens(alert.key_epoch, [token]).get(token) if own is not None else None
        context = LabelContext(alert.key_epoch, token, scope) if share_labels else None
        match = MatchedToken(token, alert.holder_count, alert.peer_labels)
        if alert.kind.is_lead and own is not None:
            if alert.holder_count < alert.threshold:
                refused = f"a lead alert for {alert.holder_count} holders, below the threshold {alert.threshold}"
            elif key is not None and context is not None:
                own_sealer = sealer_pseudonym(self.nonce_key, context)
                finding = check_labels(
                    match, key, context, own_sealer, threshold=alert.threshold, label_cap=alert.label_cap
                )
                if finding is not None and not finding.stands:
                    refused = finding.reason
                elif finding is not None and finding.backed_count < alert.holder_count:
                    backed = finding.backed_count  # A lead still, held by as many as its labels back.
        labels, unreadable = open_peer_labels(match, key, context)
        kept = AppliedAlert(
            sequence=alert.sequence,
            alert_id=alert_id_of(signed.alert, signed.signature),
            scope=alert.scope_id,
            kind=kind_name(alert.kind),
            key_epoch=alert.key_epoch,
            match_token=token,
            holder_count=alert.holder_count,
            threshold=alert.threshold,
            peer_labels=labels,
            unreadable_labels=unreadable,
            refused=refused,
            backed_count=backed,
            signed=signed.alert,
            signature=signed.signature,
            created_at=alert.released_at,
            applied_at=self.clock(),
        )
        return own, kept

    def _notices(
        self, alert: Alert, kept: AppliedAlert, own: OwnIdentifier | None, was_current: bool
    ) -> list[OutboxMessage]:
        """The outbox rows of ``kept``: notices of changes to the member's leads, for the people
        reading the log and console of a scope event, and of a snapshot only when it brings a
        lead the node did not have (one it missed while it overflowed)."""
        if alert.kind in _FOR_PEOPLE_ONLY:
            people = NoticePolicy(
                [c for c in self.policy.channels if c is not Channel.WEBHOOK], self.policy.include_identifier
            )
            return people.messages(kept, None)
        if own is None:
            return []  # A token the node no longer holds (withdrawn since): nobody to tell about it.
        if alert.kind in _NOTIFIED_ALWAYS or (alert.kind is AlertKind.SNAPSHOT and not was_current):
            return self.policy.messages(kept, own)
        return []

    # The stream --------------------------------------------------------------------------------

    def follow(self, stop: threading.Event) -> int:
        """Watch once, from the sequence after the last applied, applying and acknowledging each
        batch (and heartbeat), until the stream breaks or ``stop`` is set; returns how many
        alerts were applied. Raises what ``apply`` and the coordinator's client raise."""
        with self.uow.reading() as tx:
            last = tx.alerts.applied_sequence(self.stream)
        applied = 0
        stream = iter(self.calls.watch_alerts("", last + 1))
        try:
            first = next(stream, None)  # The stream's first message, or its refusal.
        except InvalidRequest:
            self._catch_up(last)
            return 0
        if first is None:
            return 0
        for batch in itertools.chain((first,), stream):
            self.backoff.reset()
            done = 0
            for signed in batch.alerts:
                sequence, kept = self._apply(signed)
                applied += kept is not None
                done = max(done, sequence)
            if done:
                self.calls.ack_alerts(done)
            if stop.is_set():
                break
        return applied

    def _catch_up(self, last: int) -> None:
        """The coordinator refused to resume after ``last``: it holds a later acknowledgement than
        this node's database (restored from a backup). The alerts in between are gone for this
        node; say so, and go on from there (a later RESYNC restores the scopes' state)."""
        acked, _ = self.calls.ack_alerts(0)
        if acked <= last:
            raise InvalidRequest(f"the coordinator refused to resume alerts after sequence {last}") from None
        with self.uow.writing() as tx:
            tx.alerts.skip_to(self.stream, acked)
        self.report(
            f"alerts {last + 1} to {acked} were acknowledged by this member before but are not in this node's "
            "database (restored from a backup?): they are lost to it; following from the next"
        )

    def run(self, stop: threading.Event) -> None:
        """Follow until ``stop`` is set, reconnecting after any break with back-off (see ``Backoff``).

        An alert that fails verification is not applied and stops nothing but its watch: it comes
        again, and fails again, each time reported, until the coordinator sends a valid one.
        """
        while not stop.is_set():
            try:
                self.follow(stop)  # A watch that ended cleanly waits too: a proxy closing it cannot make this spin.
            except (AlliancePsiError, OSError) as exc:
                if stop.is_set():
                    return  # The stop ended the watch (``services.alert_node`` closes its channel).
                self.report(f"alerts: {type(exc).__name__}: {exc}")
            stop.wait(self.backoff.next())
