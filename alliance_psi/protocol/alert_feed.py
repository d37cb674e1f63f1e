"""Delivering alerts: a member's watch over its outbox, and its acknowledgements.

``AlertFeed.start`` checks a watch before anything is sent: the caller is a member, a named scope
is a continuous scope that invites it (``NotFound`` alike for one that does not exist and one
that does not invite it), and ``from_sequence`` neither reaches back to what it acknowledged
(those alerts are deleted: "none delivered past an ack") nor skips ahead of the next to come.
``batches`` then sends the member's own alerts in sequence order, a bounded page per message,
waits on ``AlertSignal`` (woken by the commit that released alerts for the member) or polls the
outbox every ``poll_seconds`` (alerts another coordinator process released), and sends an empty
batch (a heartbeat) after ``heartbeat_seconds`` without one, until ``active()`` turns false.
``ack`` deletes the member's alerts up to a sequence; an acknowledged alert is never sent again.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime

from alliance_psi.errors import InvalidRequest, NotAuthorized, NotFound
from alliance_psi.protocol.alert_outbox import AlertOutbox
from alliance_psi.protocol.alerts import AlertBatch, SignedAlert
from alliance_psi.protocol.model import Identity, Role
from alliance_psi.protocol.ports import CoordinatorTx, CoordinatorUnitOfWork
from alliance_psi.protocol.result_codec import PAGE_BYTES

__all__ = ["PAGE_ALERTS", "AlertFeed", "AlertSignal"]

PAGE_ALERTS = 512
"""Alerts in one ``WatchAlerts`` message at most (and at most ``result_codec.PAGE_BYTES`` of them,
unless a single alert is larger: a token held by hundreds of members with labels)."""


class AlertSignal:
    """Wakes the watches of members that have new alerts, in this process."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._versions: dict[str, int] = {}

    def version(self, member_id: str) -> int:
        with self._changed:
            return self._versions.get(member_id, 0)

    def notify(self, members: Iterable[str]) -> None:
        """Tell the watches of ``members`` that alerts were released (call after the commit)."""
        with self._changed:
            for member in members:
                self._versions[member] = self._versions.get(member, 0) + 1
            self._changed.notify_all()

    def wait(self, member_id: str, seen: int, timeout: float) -> None:
        """Return once ``member_id``'s version differs from ``seen``, or after ``timeout`` seconds."""
        with self._changed:
            self._changed.wait_for(lambda: self._versions.get(member_id, 0) != seen, timeout=timeout)


class AlertFeed:
    """Members' watches and acknowledgements over the outbox (see the module docstring).

    ``uow`` writes (acknowledgements); ``reader`` reads the outbox for watches and may be a
    unit of work that takes no write lock. ``clock`` stamps a resync's alerts.
    """

    def __init__(
        self,
        uow: CoordinatorUnitOfWork,
        outbox: AlertOutbox,
        *,
        key_id: str,
        clock: Callable[[], datetime],
        reader: CoordinatorUnitOfWork | None = None,
        signal: AlertSignal | None = None,
        page_alerts: int = PAGE_ALERTS,
        page_bytes: int = PAGE_BYTES,
        heartbeat_seconds: float = 15.0,
        poll_seconds: float = 2.0,
    ) -> None:
        self.uow, self.reader, self.outbox, self.key_id, self.clock = uow, reader or uow, outbox, key_id, clock
        self.signal = signal or AlertSignal()
        self.page_alerts, self.page_bytes = page_alerts, page_bytes
        self.heartbeat_seconds, self.poll_seconds = heartbeat_seconds, poll_seconds

    def start(self, caller: Identity, scope_id: str, from_sequence: int) -> int:
        """Check a watch; return the sequence after which it starts.

        Raises:
            NotAuthorized: the caller is not a member.
            NotFound: ``scope_id`` names no continuous scope that invites the caller.
            InvalidRequest: ``from_sequence`` is at or below the caller's last acknowledged
                sequence, or beyond the one after its last alert.
        """
        if caller.role is not Role.MEMBER:
            raise NotAuthorized(f"role {caller.role} has no alerts")
        with self.reader() as tx:
            if scope_id:
                _visible_scope(tx, caller, scope_id)
            last, acked = tx.alerts.position(caller.name)
        if from_sequence == 0:
            return acked
        if from_sequence <= acked:
            raise InvalidRequest(
                f"from_sequence: alerts up to {acked} are acknowledged and never sent again; watch from {acked + 1} "
                "(or 0: after the last acknowledged)"
            )
        if from_sequence > last + 1:
            raise InvalidRequest(f"from_sequence: {from_sequence} is beyond the next alert to come, {last + 1}")
        return from_sequence - 1

    def batches(
        self, caller: Identity, scope_id: str, after: int, *, active: Callable[[], bool] = lambda: True
    ) -> Iterator[AlertBatch]:
        """The caller's alerts after ``after`` (of ``scope_id``, if given), a page per batch, as they
        are released, with heartbeats; ends once ``active()`` is false (checked at least every
        ``poll_seconds``). Each page is read in its own short transaction."""
        member, quiet_since = caller.name, time.monotonic()
        while active():
            seen = self.signal.version(member)
            with self.reader() as tx:
                found = tx.alerts.read(
                    member, after, scope_id=scope_id, max_alerts=self.page_alerts, max_bytes=self.page_bytes
                )
                last, acked = tx.alerts.position(member)
            if found:
                after = found[-1].sequence
                yield AlertBatch(tuple(SignedAlert(a.alert, a.signature, self.key_id) for a in found), last, acked)
                quiet_since = time.monotonic()
                continue
            quiet = time.monotonic() - quiet_since
            if quiet >= self.heartbeat_seconds:
                yield AlertBatch((), last, acked)
                quiet_since, quiet = time.monotonic(), 0.0
            self.signal.wait(member, seen, min(self.poll_seconds, self.heartbeat_seconds - quiet))

    def ack(self, caller: Identity, up_to: int) -> tuple[int, int]:
        """Acknowledge the caller's alerts up to ``up_to``: deleted, never sent again. Return
        (acknowledged, last). Once everything is acknowledged, a scope that overflowed for the
        caller is resynchronized (``AlertOutbox.resync``).

        Raises ``NotAuthorized`` (not a member) and ``InvalidRequest`` (beyond the last alert).
        """
        if caller.role is not Role.MEMBER:
            raise NotAuthorized(f"role {caller.role} has no alerts")
        with self.uow() as tx:
            acked, last = tx.alerts.ack(caller.name, up_to)
            resynced = self.outbox.resync(tx, caller.name, self.clock())
            if resynced:
                last, acked = tx.alerts.position(caller.name)
        if resynced:
            self.signal.notify([caller.name])
        return acked, last


def _visible_scope(tx: CoordinatorTx, caller: Identity, scope_id: str) -> None:
    """Raise ``NotFound`` unless ``scope_id`` is a continuous scope that invites the caller: the
    same error for a missing scope, a batch round and a scope of other members."""
    try:
        found = tx.rounds.get_round(scope_id)
    except NotFound:
        raise NotFound(f"no continuous scope {scope_id}") from None
    if not found.continuous or not found.invites(caller.name):
        raise NotFound(f"no continuous scope {scope_id}")
