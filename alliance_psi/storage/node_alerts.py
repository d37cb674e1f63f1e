"""The member node's alerts, the sequence of the last one applied, and the notifiers' outbox.

``apply`` stores an alert, its outbox rows and the new applied sequence in the caller's
transaction, and only if the alert is the next in sequence (a compare-and-set on the cursor): an
alert is applied exactly once, even by two followers at once. Outbox rows are delivered
(``due``, ``delivered``, ``failed``) by the notifiers; a delivered row's body is emptied, since it
may hold a raw identifier (``protocol.node_alerts.notice``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import fields
from datetime import date, datetime
from typing import Any

from sqlalchemy import Connection, Row, Select, func, select, update

from alliance_psi.errors import Conflict, NotFound
from alliance_psi.protocol.leads import LeadLabel
from alliance_psi.protocol.node_alerts import (
    LEAD_KINDS,
    RESYNC_KIND,
    AppliedAlert,
    Channel,
    DeliveryState,
    OutboxMessage,
)
from alliance_psi.storage._common import insert_if_absent
from alliance_psi.storage.schema import member_alert_cursor, member_alert_outbox, member_alerts

__all__ = ["AlertFilter", "NodeAlerts"]


def _labels_json(labels: Sequence[LeadLabel]) -> str:
    return json.dumps(
        [
            {
                "category": label.category,
                "severity": label.severity,
                "first_seen": label.first_seen.isoformat() if label.first_seen else None,
                "case_ref": label.case_ref,
                "member": label.member,
            }
            for label in labels
        ],
        ensure_ascii=False,
        sort_keys=True,
    )


def _labels_from(text: str) -> tuple[tuple[LeadLabel, ...], int]:
    """The stored peer labels, and how many no longer pass ``LeadLabel``'s checks: kept before they
    grew stricter (a peer's case reference with a control character), now counted unreadable."""
    entries, labels = json.loads(text), []
    for entry in entries:
        try:
            labels.append(
                LeadLabel(
                    entry["category"],
                    entry["severity"],
                    date.fromisoformat(entry["first_seen"]) if entry["first_seen"] else None,
                    entry["case_ref"],
                    entry["member"],
                )
            )
        except ValueError:
            continue
    return tuple(labels), len(entries) - len(labels)


def _alert(row: Row[Any]) -> AppliedAlert:
    values = {field.name: row._mapping[field.name] for field in fields(AppliedAlert)}
    labels, unfit = _labels_from(values["peer_labels"])
    values.update(
        match_token=bytes(values["match_token"]),
        signed=bytes(values["signed"]),
        signature=bytes(values["signature"]),
        peer_labels=labels,
        unreadable_labels=values["unreadable_labels"] + unfit,
        ack_note=values["ack_note"] or "",
    )
    return AppliedAlert(**values)


class AlertFilter:
    """Which alerts ``NodeAlerts.find`` returns: all by default, newest first.

    ``scope`` and ``kind`` match exactly; ``unacked`` keeps those no investigator acknowledged;
    ``current`` keeps the alerts that stand now (``NodeAlerts.standing``); ``since`` keeps those
    applied at or after it; ``limit`` caps how many.
    """

    def __init__(
        self,
        *,
        scope: str | None = None,
        kind: str | None = None,
        unacked: bool = False,
        current: bool = False,
        since: datetime | None = None,
        limit: int | None = None,
    ) -> None:
        self.scope, self.kind, self.unacked, self.current = scope, kind, unacked, current
        self.since, self.limit = since, limit


class NodeAlerts:
    """The node's alerts and outbox over the caller's connection."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    # The cursor and applying ---------------------------------------------------------------

    def applied_sequence(self, stream: str) -> int:
        """The sequence number of the last alert applied from ``stream`` (0: none yet)."""
        cursor = member_alert_cursor.c
        value = self._conn.execute(select(cursor.applied_sequence).where(cursor.stream == stream)).scalar()
        return int(value) if value is not None else 0

    def apply(self, stream: str, alert: AppliedAlert, outbox: Sequence[OutboxMessage]) -> None:
        """Store ``alert`` and its outbox rows and make it the last applied of ``stream``.

        Raises:
            Conflict: ``alert`` is not the next in sequence (another follower applied it, or a gap);
                nothing is written.
        """
        cursor = member_alert_cursor.c
        expected = alert.sequence - 1
        if expected == 0:
            moved = insert_if_absent(self._conn, member_alert_cursor, {"stream": stream, "applied_sequence": 1})
        else:
            moved = bool(
                self._conn.execute(
                    update(member_alert_cursor)
                    .where(cursor.stream == stream, cursor.applied_sequence == expected)
                    .values(applied_sequence=alert.sequence)
                ).rowcount
            )
        if not moved:
            raise Conflict(
                f"alert {alert.sequence} of {stream} is not the next to apply (last applied: "
                f"{self.applied_sequence(stream)})"
            )
        row = {field.name: getattr(alert, field.name) for field in fields(AppliedAlert)}
        self._conn.execute(member_alerts.insert().values({**row, "peer_labels": _labels_json(alert.peer_labels)}))
        if outbox:
            self._conn.execute(
                member_alert_outbox.insert(),
                [
                    {
                        "sequence": m.sequence,
                        "channel": m.channel.value,
                        "message_id": m.message_id,
                        "body": m.body,
                        "state": m.state.value,
                        "attempts": m.attempts,
                        "next_attempt_at": m.next_attempt_at,
                        "last_error": m.last_error,
                        "updated_at": alert.applied_at,
                    }
                    for m in outbox
                ],
            )

    # Reading and acknowledging -------------------------------------------------------------

    def get(self, alert: str) -> AppliedAlert:
        """The alert with sequence number ``alert`` (all digits), or whose id starts with ``alert``.

        Raises:
            NotFound: no such alert, or the prefix is not unique.
        """
        c = member_alerts.c
        # ASCII digits that fit a 64-bit column (not '²', which isdigit() takes): a sequence number.
        by_sequence = alert.isascii() and alert.isdigit() and len(alert) <= 18
        condition = c.sequence == int(alert) if by_sequence else c.alert_id.startswith(alert, autoescape=True)
        rows = self._conn.execute(select(member_alerts).where(condition).limit(2)).all()
        if len(rows) != 1:
            why = "no alert" if not rows else "more than one alert"
            raise NotFound(f"{why} with id or sequence {alert!r}")
        return _alert(rows[0])

    def find(self, where: AlertFilter | None = None) -> list[AppliedAlert]:
        """Alerts matching ``where``, newest (highest sequence) first."""
        where = where or AlertFilter()
        c = member_alerts.c
        query: Select[Any] = select(member_alerts)
        if where.current:
            query = query.where(c.sequence.in_(_standing()))
        if where.scope is not None:
            query = query.where(c.scope == where.scope)
        if where.kind is not None:
            query = query.where(c.kind == where.kind)
        if where.unacked:
            query = query.where(c.acked_at.is_(None))
        if where.since is not None:
            query = query.where(c.applied_at >= where.since)
        query = query.order_by(c.sequence.desc())
        if where.limit is not None:
            query = query.limit(where.limit)
        return [_alert(row) for row in self._conn.execute(query)]

    def is_current(self, scope: str, match_token: bytes) -> bool:
        """Whether the latest alert of ``match_token`` in ``scope`` stands (``_standing``)."""
        return self._conn.execute(_standing(scope, match_token).limit(1)).first() is not None

    def skip_to(self, stream: str, sequence: int) -> None:
        """Make ``sequence`` the last applied of ``stream`` without applying what comes before it
        (alerts the coordinator will not send again); never moves the cursor back."""
        cursor = member_alert_cursor.c
        if not insert_if_absent(self._conn, member_alert_cursor, {"stream": stream, "applied_sequence": sequence}):
            self._conn.execute(
                update(member_alert_cursor)
                .where(cursor.stream == stream, cursor.applied_sequence < sequence)
                .values(applied_sequence=sequence)
            )

    def scopes(self) -> list[str]:
        """Every scope the node has alerts of, in order."""
        c = member_alerts.c
        return [row[0] for row in self._conn.execute(select(c.scope).distinct().order_by(c.scope))]

    def ack(self, sequence: int, *, at: datetime, note: str = "") -> bool:
        """Record that an investigator acknowledged alert ``sequence``; False if it already was."""
        c = member_alerts.c
        done = self._conn.execute(
            update(member_alerts).where(c.sequence == sequence, c.acked_at.is_(None)).values(acked_at=at, ack_note=note)
        )
        return bool(done.rowcount)

    # The outbox ------------------------------------------------------------------------------

    def due(self, channel: Channel, now: datetime, limit: int = 100) -> list[OutboxMessage]:
        """Pending messages of ``channel`` whose next attempt is due, oldest alert first."""
        o = member_alert_outbox.c
        rows = self._conn.execute(
            select(member_alert_outbox)
            .where(o.channel == channel.value, o.state == DeliveryState.PENDING.value, o.next_attempt_at <= now)
            .order_by(o.sequence)
            .limit(limit)
        )
        return [_message(row) for row in rows]

    def next_due(self, channel: Channel) -> datetime | None:
        """When the earliest pending message of ``channel`` is due, or None if none is pending."""
        o = member_alert_outbox.c
        when: datetime | None = self._conn.execute(
            select(func.min(o.next_attempt_at)).where(
                o.channel == channel.value, o.state == DeliveryState.PENDING.value
            )
        ).scalar()
        return when

    def delivered(self, sequence: int, channel: Channel, *, at: datetime) -> None:
        """Mark a message delivered and drop its body (it may hold a raw identifier)."""
        o = member_alert_outbox.c
        self._conn.execute(
            update(member_alert_outbox)
            .where(o.sequence == sequence, o.channel == channel.value)
            .values(
                state=DeliveryState.DELIVERED.value, body=b"", attempts=o.attempts + 1, last_error="", updated_at=at
            )
        )

    def failed(self, sequence: int, channel: Channel, *, at: datetime, error: str, retry_at: datetime | None) -> None:
        """Record a failed attempt: try again at ``retry_at``, or, with None, the message is dead (a dead letter)."""
        o = member_alert_outbox.c
        state = DeliveryState.PENDING if retry_at is not None else DeliveryState.DEAD
        self._conn.execute(
            update(member_alert_outbox)
            .where(o.sequence == sequence, o.channel == channel.value)
            .values(
                state=state.value,
                attempts=o.attempts + 1,
                next_attempt_at=retry_at if retry_at is not None else o.next_attempt_at,
                last_error=error,
                updated_at=at,
            )
        )

    def redeliver(self, sequence: int, channel: Channel, *, at: datetime) -> bool:
        """Make a dead message pending again, due now (its retry budget starts over); False if it is not dead."""
        o = member_alert_outbox.c
        done = self._conn.execute(
            update(member_alert_outbox)
            .where(o.sequence == sequence, o.channel == channel.value, o.state == DeliveryState.DEAD.value)
            .values(state=DeliveryState.PENDING.value, attempts=0, next_attempt_at=at, updated_at=at)
        )
        return bool(done.rowcount)

    def messages(self, *, sequence: int | None = None, state: DeliveryState | None = None) -> list[OutboxMessage]:
        """Outbox rows, of one alert or in one state, by alert then channel."""
        o = member_alert_outbox.c
        query = select(member_alert_outbox).order_by(o.sequence, o.channel)
        if sequence is not None:
            query = query.where(o.sequence == sequence)
        if state is not None:
            query = query.where(o.state == state.value)
        return [_message(row) for row in self._conn.execute(query)]


def _standing(scope: str | None = None, match_token: bytes | None = None) -> Select[Any]:
    """The sequences of the alerts that stand now: for each token of each scope its latest alert,
    if that says the token is a lead (``LEAD_KINDS``), was not refused, and no RESYNC of the scope
    came after it (a resync replaces the scope's leads by the snapshots that follow it). Given a
    ``scope`` and ``match_token``, only that token's (an index lookup, not a pass over the table)."""
    c = member_alerts.c
    latest = select(func.max(c.sequence)).group_by(c.scope, c.match_token)
    if scope is not None and match_token is not None:
        latest = latest.where(c.scope == scope, c.match_token == match_token)
    resync = member_alerts.alias("resync")
    later_resync = (
        select(resync.c.sequence)
        .where(resync.c.scope == c.scope, resync.c.kind == RESYNC_KIND, resync.c.sequence > c.sequence)
        .exists()
    )
    return select(c.sequence).where(c.sequence.in_(latest), c.kind.in_(LEAD_KINDS), c.refused.is_(None), ~later_resync)


def _message(row: Row[Any]) -> OutboxMessage:
    r = row._mapping
    return OutboxMessage(
        sequence=int(r["sequence"]),
        channel=Channel(r["channel"]),
        message_id=r["message_id"],
        body=bytes(r["body"]),
        state=DeliveryState(r["state"]),
        attempts=int(r["attempts"]),
        next_attempt_at=r["next_attempt_at"],
        last_error=r["last_error"] or "",
    )
