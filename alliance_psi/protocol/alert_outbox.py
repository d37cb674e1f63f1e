"""The coordinator's alert outbox: alerts numbered, signed and stored in the commit's transaction.

``AlertOutbox.commit`` takes the token changes a commit made (``protocol.continuous``) and writes
their alerts. In a scope without a minimum interval they are released at once: numbered per member (``AlertsRepo.allocate``, no
gaps), signed with the coordinator's result key (``alerts.sign_alert``) and stored, all in the
commit's transaction, so a commit and its alerts are kept or lost together (a coordinator killed
after the commit delivers them after its restart). In a scope with a minimum interval they are
held unnumbered until the next multiple of the interval after the scope's creation, and
``release_due`` (the coordinator's tick) releases each scope's due alerts, stamped with that
boundary, never the commit's time: members learn at most which interval a change fell in.

A member's unacknowledged alerts are bounded by ``max_backlog``: the alerts that would go over it
are replaced by one ``OVERFLOW`` alert for the scope, which then sends that member nothing more.
So are its held alerts: more than ``max_backlog + 1`` of a scope for one boundary would be
released as that one ``OVERFLOW`` all the same, so no more are held, however many commits come.
The alerts a commit gives each member are counted before any is drafted (``MatchingRepo.holdings``
counts in the database), so a commit of any size drafts, signs and stores at most ``max_backlog``
alerts per member (``max_backlog + 1`` held), in pages of ``ALERT_PAGE`` tokens.
Once the member has acknowledged every alert, ``resync`` sends it a ``RESYNC`` alert and one
``SNAPSHOT`` alert per token of the scope it holds at the threshold: its state, in full.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta

from alliance_psi.crypto.signing import SigningKey
from alliance_psi.protocol.alerts import NO_TOKEN, Alert, AlertKind, StoredAlert, sign_alert
from alliance_psi.protocol.continuous import AlertDraft, TokenChange, alert_kinds, drafts_for
from alliance_psi.protocol.label_cap import peer_labels_for
from alliance_psi.protocol.model import PeerLabel, Round
from alliance_psi.protocol.ports import CoordinatorTx, CoordinatorUnitOfWork

__all__ = ["ALERT_PAGE", "AlertOutbox", "release_time"]

ALERT_PAGE = 2048
"""Tokens whose holders (and their sealed labels) are read, and whose alerts are drafted and
stored, at a time: a commit's memory for its alerts stays bounded whatever its size."""


def _peers(
    scope: Round, member: str, token: bytes, holders: Sequence[tuple[str, bytes | None]], sealers: Mapping[str, str]
) -> tuple[PeerLabel, ...]:
    """The other holders' labels ``member``'s snapshot of ``token`` carries (at most the scope's cap)."""
    if not scope.share_labels:
        return ()
    carried = peer_labels_for(member, holders, cap=scope.label_cap, salt=scope.label_salt, token=token)
    return tuple(PeerLabel(label, sealers.get(m)) for m, label in carried)


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

    def commit(
        self, tx: CoordinatorTx, scope: Round, committer: str, changes: Sequence[TokenChange], now: datetime
    ) -> set[str]:
        """Write the alerts ``changes`` of ``committer``'s commit give: released now, or held until
        the scope's interval boundary; return the members alerted now.

        The alerts each member would get are counted first (``alert_kinds`` and one count per
        member in the database, ``MatchingRepo.holdings``), and a member past its bound gets its
        ``OVERFLOW`` (or no more held alerts) before any alert is drafted: a commit builds and signs
        at most ``max_backlog`` alerts per member, whatever its size. Holders (with their labels)
        are then read, and drafts built and stored, ``ALERT_PAGE`` tokens at a time."""
        alerting = [c for c in changes if alert_kinds(c, scope.threshold) != (None, None)]
        if not alerting:
            return set()
        counts = self._counts(tx, scope, committer, alerting)
        at = release_time(scope, now)
        if at > now:
            room = {
                member: min(count, self.max_backlog + 1 - tx.alerts.held(scope.round_id, member, release_at=at))
                for member, count in counts.items()
            }
            for page in self._pages(tx, scope, committer, alerting, room):
                tx.alerts.hold(scope.round_id, page, release_at=at)
            return set()
        # On a boundary itself: the alerts held for it go first, so that numbers follow events.
        alerted = self._release_held(tx, scope, now)
        first: dict[str, int] = {}
        for member in sorted(counts):  # Id order, as ``release`` locks them.
            taken, start = self._reserve(tx, scope, member, counts[member], at)
            if taken:
                alerted.add(member)
            if start is not None:
                first[member] = start
        for page in self._pages(tx, scope, committer, alerting, {m: counts[m] for m in first}):
            by_member: dict[str, list[AlertDraft]] = {}
            for draft in page:
                by_member.setdefault(draft.member_id, []).append(draft)
            for member, drafts in by_member.items():
                self._store(tx, scope, member, first[member], drafts, at)
                first[member] += len(drafts)
        return alerted

    def _counts(
        self, tx: CoordinatorTx, scope: Round, committer: str, alerting: Sequence[TokenChange]
    ) -> dict[str, int]:
        """How many alerts ``alerting`` gives each member, counted without reading a holder's row."""
        to_others = [c.token for c in alerting if alert_kinds(c, scope.threshold)[1] is not None]
        counts = tx.matching.holdings(scope.set_scope, to_others)
        counts.pop(committer, None)
        own = sum(alert_kinds(c, scope.threshold)[0] is not None for c in alerting)
        if own:
            counts[committer] = own
        return counts

    def _pages(
        self,
        tx: CoordinatorTx,
        scope: Round,
        committer: str,
        alerting: Sequence[TokenChange],
        quota: dict[str, int],
    ) -> Iterator[list[AlertDraft]]:
        """The drafts of ``alerting``, a page of tokens at a time, for the members of ``quota`` and
        at most that many each (in token order); no holder row is read for a page none of them need."""
        left = {member: count for member, count in quota.items() if count > 0}
        sealers = tx.submissions.sealer_names(scope.round_id) if scope.share_labels and left else {}
        for start in range(0, len(alerting), ALERT_PAGE):
            if not left:
                return
            page = alerting[start : start + ALERT_PAGE]
            holders = tx.matching.holders(scope.set_scope, [c.token for c in page])
            found: list[AlertDraft] = []
            for change in page:
                for draft in drafts_for(
                    change,
                    committer=committer,
                    threshold=scope.threshold,
                    holders=holders.get(change.token, []),
                    sealers=sealers,
                    share_labels=scope.share_labels,
                    only=left,
                    label_cap=scope.label_cap,
                    label_salt=scope.label_salt,
                ):
                    left[draft.member_id] -= 1
                    if not left[draft.member_id]:
                        del left[draft.member_id]
                    found.append(draft)
            yield found
        if left:  # The commit's transaction holds the scope's lock: the holders cannot have changed.
            raise RuntimeError(f"alerts drafted for {sorted(left)} fell short of their count")

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
            taken, first = self._reserve(tx, scope, member, len(wanted), at)
            if taken:
                alerted.add(member)
            if first is not None:
                self._store(tx, scope, member, first, wanted, at)
        return alerted

    def _reserve(
        self, tx: CoordinatorTx, scope: Round, member: str, count: int, at: datetime
    ) -> tuple[bool, int | None]:
        """Lock ``member``'s position and reserve ``count`` sequence numbers for alerts of ``scope``:
        (whether the member is alerted, the first number reserved or None). None when the scope
        overflowed for it already (not alerted), or when ``count`` more would pass its backlog:
        then its ``OVERFLOW`` alert is stored here instead (alerted)."""
        last, acked = tx.alerts.position(member, lock=True)
        if scope.round_id in tx.alerts.overflowed(member):
            return False, None
        if last - acked + count > self.max_backlog:
            first = tx.alerts.allocate(member, 1)
            self._store(tx, scope, member, first, [AlertDraft(member, AlertKind.OVERFLOW, NO_TOKEN, 0)], at)
            tx.alerts.mark_overflow(member, scope.round_id, first)
            return True, None
        return True, tx.alerts.allocate(member, count)

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
        ``RESYNC`` and the ``SNAPSHOT`` of its state in each such scope; return whether it did.

        The snapshot is read, drafted, signed and stored ``ALERT_PAGE`` tokens at a time, so its
        memory is bounded; its time is not (one signature per lead the member holds in the scope,
        in the caller's transaction: BENCHMARKS.md section 9 gives the rate)."""
        last, acked = tx.alerts.position(member, lock=True)
        scopes = tx.alerts.overflowed(member) if last == acked else []
        for scope_id in scopes:
            scope = tx.rounds.get_round(scope_id)
            tokens = tx.matching.matched_of(scope.set_scope, member, scope.threshold)
            sealers = tx.submissions.sealer_names(scope_id) if scope.share_labels else {}
            first = tx.alerts.allocate(member, 1 + len(tokens))
            self._store(tx, scope, member, first, [AlertDraft(member, AlertKind.RESYNC, NO_TOKEN, len(tokens))], now)
            for start in range(0, len(tokens), ALERT_PAGE):
                page = tokens[start : start + ALERT_PAGE]
                holders = tx.matching.holders(scope.set_scope, page)
                snapshot = [
                    AlertDraft(
                        member,
                        AlertKind.SNAPSHOT,
                        token,
                        len(holders[token]),
                        _peers(scope, member, token, holders[token], sealers),
                    )
                    for token in page
                ]
                self._store(tx, scope, member, first + 1 + start, snapshot, now)
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
                scope.label_cap if scope.share_labels else 0,
            )
            signed = sign_alert(self.key, alert)
            stored.append(StoredAlert(sequence, scope.round_id, signed.alert, signed.signature))
        tx.alerts.store(member, stored)
