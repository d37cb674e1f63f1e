"""The coordinator's alert outbox: alerts numbered, signed and stored in the commit's transaction.

``AlertOutbox.route`` takes the drafts a commit made (``protocol.continuous``). In a scope without
a minimum interval they are released at once: numbered per member (``AlertsRepo.allocate``, no
gaps), signed with the coordinator's result key (``alerts.sign_alert``) and stored, all in the
commit's transaction, so a commit and its alerts are kept or lost together (a coordinator killed
after the commit delivers them after its restart). In a scope with a minimum interval they are
held unnumbered until the next multiple of the interval after the scope's creation, and
``release_due`` (the coordinator's tick) releases each scope's due alerts, stamped with that
boundary, never the commit's time: members learn at most which interval a change fell in.

A member's unacknowledged alerts are bounded by ``max_backlog``: the alert that would go over it
is replaced by one ``OVERFLOW`` alert for the scope, which then sends that member nothing more.
So are its held alerts: more than ``max_backlog + 1`` of a scope for one boundary would be
released as that one ``OVERFLOW`` all the same, so no more are held, however many commits come.
Once the member has acknowledged every alert, ``resync`` sends it a ``RESYNC`` alert and one
``SNAPSHOT`` alert per token of the scope it holds at the threshold: its state, in full.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta

from alliance_psi.crypto.signing import SigningKey
from alliance_psi.protocol.alerts import NO_TOKEN, Alert, AlertKind, StoredAlert, sign_alert
from alliance_psi.protocol.continuous import AlertDraft, TokenChange, drafts_for
from alliance_psi.protocol.model import PeerLabel, Round
from alliance_psi.protocol.ports import CoordinatorTx, CoordinatorUnitOfWork

__all__ = ["AlertOutbox", "release_time"]


def release_time(scope: Round, now: datetime) -> datetime:
    """When an alert of ``scope`` made at ``now`` is released: at once without a minimum interval,
    else at the first multiple of the interval after the scope's creation that is not before ``now``."""
    interval, created = scope.min_interval_seconds, scope.created_at
    if not interval or created is None:
        return now
    periods = math.ceil((now - created).total_seconds() / interval)
    return created + timedelta(seconds=max(periods, 0) * interval)


class AlertOutbox:
    """Numbers, signs and stores alerts (see the module docstring).

    ``key_pins`` gives the key pin the coordinator enrolled for a member (None: none); each alert
    names it, as each result header does.
    """

    def __init__(
        self,
        key: SigningKey,
        *,
        max_backlog: int,
        key_pins: Callable[[str], bytes | None] = lambda member_id: None,
    ) -> None:
        if max_backlog < 1:
            raise ValueError("max_backlog must be at least 1")
        self.key, self.max_backlog, self.key_pins = key, max_backlog, key_pins

    def drafts(
        self, tx: CoordinatorTx, scope: Round, committer: str, changes: Sequence[TokenChange]
    ) -> list[AlertDraft]:
        """The alerts ``changes`` of ``committer``'s commit give; holders are read only for the
        tokens at or above the threshold before or after it (``TokenChange.concerns``)."""
        concerned = [c for c in changes if c.concerns(scope.threshold)]
        if not concerned:
            return []
        holders = tx.matching.holders(scope.set_scope, [c.token for c in concerned])
        sealers = tx.submissions.sealer_names(scope.round_id) if scope.share_labels else {}
        found: list[AlertDraft] = []
        for change in concerned:
            found += drafts_for(
                change,
                committer=committer,
                threshold=scope.threshold,
                holders=holders.get(change.token, []),
                sealers=sealers,
                share_labels=scope.share_labels,
            )
        return found

    def route(self, tx: CoordinatorTx, scope: Round, drafts: Sequence[AlertDraft], now: datetime) -> set[str]:
        """Release ``drafts`` now, or hold them until the scope's interval boundary; return the
        members alerted now."""
        if not drafts:
            return set()
        at = release_time(scope, now)
        if at > now:
            self._hold(tx, scope, drafts, at)
            return set()
        # On a boundary itself: the alerts held for it go first, so that numbers follow events.
        return self._release_held(tx, scope, now) | self.release(tx, scope, drafts, at=at)

    def release(self, tx: CoordinatorTx, scope: Round, drafts: Iterable[AlertDraft], *, at: datetime) -> set[str]:
        """Number, sign and store ``drafts`` of ``scope`` stamped ``at``; return the members alerted.

        Members are numbered in id order (their rows are locked in that order by every caller,
        so concurrent commits never wait on each other in a cycle)."""
        by_member: dict[str, list[AlertDraft]] = {}
        for draft in drafts:
            by_member.setdefault(draft.member_id, []).append(draft)
        alerted: set[str] = set()
        for member in sorted(by_member):
            wanted = by_member[member]
            last, acked = tx.alerts.position(member, lock=True)
            if scope.round_id in tx.alerts.overflowed(member):
                continue
            alerted.add(member)
            if last - acked + len(wanted) > self.max_backlog:
                first = tx.alerts.allocate(member, 1)
                self._store(tx, scope, member, first, [AlertDraft(member, AlertKind.OVERFLOW, NO_TOKEN, 0)], at)
                tx.alerts.mark_overflow(member, scope.round_id, first)
                continue
            self._store(tx, scope, member, tx.alerts.allocate(member, len(wanted)), wanted, at)
        return alerted

    def _hold(self, tx: CoordinatorTx, scope: Round, drafts: Sequence[AlertDraft], at: datetime) -> None:
        """Hold ``drafts`` until ``at``, at most ``max_backlog + 1`` per member: ``release`` turns
        that many into one ``OVERFLOW`` whatever the member's backlog, so the rest would be
        dropped there (a member that a flood of commits alerts costs no more storage)."""
        room: dict[str, int] = {}
        kept: list[AlertDraft] = []
        for draft in drafts:
            member = draft.member_id
            if member not in room:
                room[member] = self.max_backlog + 1 - tx.alerts.held(scope.round_id, member, release_at=at)
            if room[member] > 0:
                room[member] -= 1
                kept.append(draft)
        tx.alerts.hold(scope.round_id, kept, release_at=at)

    def release_due(
        self, uow: CoordinatorUnitOfWork, now: datetime, *, reader: CoordinatorUnitOfWork | None = None
    ) -> set[str]:
        """Release every held alert due at ``now``, a scope per transaction; return the members
        alerted. ``reader`` looks for due scopes first without taking the write lock (the tick
        asks every second; most of the time there is nothing due)."""
        with (reader or uow)() as tx:
            scopes = tx.alerts.due_scopes(now)
        alerted: set[str] = set()
        for scope_id in scopes:
            with uow() as tx:
                alerted |= self._release_held(tx, tx.rounds.get_round(scope_id), now)
        return alerted

    def _release_held(self, tx: CoordinatorTx, scope: Round, now: datetime) -> set[str]:
        """Release the scope's held alerts due at ``now``, each stamped with its boundary."""
        if not scope.min_interval_seconds:
            return set()
        due = tx.alerts.take_due(scope.round_id, now)
        alerted: set[str] = set()
        for at in sorted({at for at, _ in due}):
            alerted |= self.release(tx, scope, [d for when, d in due if when == at], at=at)
        return alerted

    def resync(self, tx: CoordinatorTx, member: str, now: datetime) -> bool:
        """If ``member`` has acknowledged every alert and some scope overflowed for it, send it a
        ``RESYNC`` and the ``SNAPSHOT`` of its state in each such scope; return whether it did."""
        last, acked = tx.alerts.position(member, lock=True)
        scopes = tx.alerts.overflowed(member) if last == acked else []
        for scope_id in scopes:
            scope = tx.rounds.get_round(scope_id)
            tokens = tx.matching.matched_of(scope.set_scope, member, scope.threshold)
            holders = tx.matching.holders(scope.set_scope, tokens)
            sealers = tx.submissions.sealer_names(scope_id) if scope.share_labels else {}
            snapshot = [
                AlertDraft(
                    member,
                    AlertKind.SNAPSHOT,
                    token,
                    len(holders[token]),
                    tuple(PeerLabel(lbl, sealers.get(m)) for m, lbl in holders[token] if m != member and lbl)
                    if scope.share_labels
                    else (),
                )
                for token in tokens
            ]
            marker = AlertDraft(member, AlertKind.RESYNC, NO_TOKEN, len(snapshot))
            self._store(tx, scope, member, tx.alerts.allocate(member, 1 + len(snapshot)), [marker, *snapshot], now)
            tx.alerts.clear_overflow(member, scope_id)
        return bool(scopes)

    def _store(
        self, tx: CoordinatorTx, scope: Round, member: str, first: int, drafts: Sequence[AlertDraft], at: datetime
    ) -> None:
        pin = self.key_pins(member) or b""
        stored = []
        for sequence, draft in enumerate(drafts, first):
            alert = Alert(
                scope.round_id,
                member,
                scope.key_epoch,
                sequence,
                draft.kind,
                scope.threshold,
                at,
                draft.token,
                draft.holder_count,
                draft.peer_labels,
                pin,
            )
            signed = sign_alert(self.key, alert)
            stored.append(StoredAlert(sequence, scope.round_id, signed.alert, signed.signature))
        tx.alerts.store(member, stored)
