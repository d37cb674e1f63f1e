"""The coordinator's alert outbox: each member's signed alerts, numbered without gaps, until it
acknowledges them; and the alerts of scopes with a minimum interval, held until their release.

Numbers are given under the member's ``alert_members`` row lock (``allocate``): two commits that
alert one member at once take turns, and a rolled-back commit gives its numbers back, so a
member's alerts are 1, 2, 3, ... with no gap, in the order they became visible. Nothing here
commits; the caller owns the transaction. Rows hold tokens and sealed labels, never an identifier.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Connection, delete, func, select, update

from alliance_psi.errors import InvalidRequest
from alliance_psi.protocol.alerts import AlertKind, StoredAlert, decode_labels, encode_labels
from alliance_psi.protocol.continuous import AlertDraft
from alliance_psi.storage._common import bulk_insert, insert_ignoring
from alliance_psi.storage.schema import alert_members, alert_outbox, alert_overflows, alerts_pending

__all__ = ["AlertRepository"]


class AlertRepository:
    """``alert_members``, ``alert_outbox``, ``alert_overflows`` and ``alerts_pending`` over one connection."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    # Numbering and storing ---------------------------------------------------------------------

    def position(self, member_id: str, *, lock: bool = False) -> tuple[int, int]:
        """(last sequence given, last acknowledged) of the member; (0, 0) before its first alert.
        ``lock`` holds its row to the end of the transaction (creating it if needed)."""
        if lock:
            self._conn.execute(
                insert_ignoring(self._conn, alert_members).values(
                    member_id=member_id, last_sequence=0, acked_sequence=0
                )
            )
        query = select(alert_members.c.last_sequence, alert_members.c.acked_sequence).where(
            alert_members.c.member_id == member_id
        )
        row = self._conn.execute(query.with_for_update() if lock else query).one_or_none()
        return (row.last_sequence, row.acked_sequence) if row else (0, 0)

    def allocate(self, member_id: str, count: int) -> int:
        """Give the member the next ``count`` sequence numbers; return the first. Locks its row."""
        self.position(member_id, lock=True)
        last = self._conn.execute(
            update(alert_members)
            .where(alert_members.c.member_id == member_id)
            .values(last_sequence=alert_members.c.last_sequence + count)
            .returning(alert_members.c.last_sequence)
        ).scalar_one()
        return int(last) - count + 1

    def store(self, member_id: str, alerts: Sequence[StoredAlert]) -> None:
        """Store numbered, signed alerts of the member."""
        bulk_insert(
            self._conn,
            alert_outbox,
            ("member_id", "sequence", "scope_id", "alert", "signature"),
            [(member_id, a.sequence, a.scope_id, a.alert, a.signature) for a in alerts],
        )

    def read(
        self, member_id: str, after: int, *, scope_id: str = "", max_alerts: int, max_bytes: int
    ) -> list[StoredAlert]:
        """The member's alerts after sequence ``after`` (of ``scope_id`` only, if given), in order:
        at most ``max_alerts``, and no more than ``max_bytes`` of alerts unless the first alone is."""
        c = alert_outbox.c
        query = select(c.sequence, c.scope_id, c.alert, c.signature).where(c.member_id == member_id, c.sequence > after)
        if scope_id:
            query = query.where(c.scope_id == scope_id)
        found: list[StoredAlert] = []
        size = 0
        for row in self._conn.execute(query.order_by(c.sequence).limit(max_alerts)):
            size += len(row.alert) + len(row.signature)
            if found and size > max_bytes:
                break
            found.append(StoredAlert(row.sequence, row.scope_id, bytes(row.alert), bytes(row.signature)))
        return found

    def ack(self, member_id: str, up_to: int) -> tuple[int, int]:
        """Acknowledge the member's alerts up to ``up_to`` and delete them; return (acknowledged,
        last). Less than already acknowledged changes nothing.

        Raises:
            InvalidRequest: ``up_to`` is beyond the last alert given.
        """
        last, acked = self.position(member_id, lock=True)
        if up_to > last:
            raise InvalidRequest(f"up_to_sequence: {up_to} is beyond the last alert, {last}")
        if up_to > acked:
            self._conn.execute(
                update(alert_members).where(alert_members.c.member_id == member_id).values(acked_sequence=up_to)
            )
            self._conn.execute(
                delete(alert_outbox).where(alert_outbox.c.member_id == member_id, alert_outbox.c.sequence <= up_to)
            )
            acked = up_to
        return acked, last

    # Overflow ------------------------------------------------------------------------------------

    def overflowed(self, member_id: str) -> list[str]:
        """The scopes whose alerts stopped for the member (an OVERFLOW alert was its last of them)."""
        c = alert_overflows.c
        return list(
            self._conn.execute(select(c.scope_id).where(c.member_id == member_id).order_by(c.scope_id)).scalars()
        )

    def mark_overflow(self, member_id: str, scope_id: str, sequence: int) -> None:
        self._conn.execute(
            alert_overflows.insert().values(member_id=member_id, scope_id=scope_id, since_sequence=sequence)
        )

    def clear_overflow(self, member_id: str, scope_id: str) -> None:
        self._conn.execute(
            delete(alert_overflows).where(
                alert_overflows.c.member_id == member_id, alert_overflows.c.scope_id == scope_id
            )
        )

    # Held until the scope's interval boundary -------------------------------------------------------

    def hold(self, scope_id: str, drafts: Sequence[AlertDraft], *, release_at: datetime) -> None:
        """Keep ``drafts`` of ``scope_id`` unnumbered until ``release_at``."""
        if drafts:
            self._conn.execute(
                alerts_pending.insert(),
                [
                    {
                        "scope_id": scope_id,
                        "member_id": d.member_id,
                        "release_at": release_at,
                        "kind": int(d.kind),
                        "match_token": d.token,
                        "holder_count": d.holder_count,
                        "labels": encode_labels(d.peer_labels),
                    }
                    for d in drafts
                ],
            )

    def due_scopes(self, now: datetime) -> list[str]:
        """The scopes with held alerts due at ``now``."""
        c = alerts_pending.c
        return list(
            self._conn.execute(
                select(c.scope_id).where(c.release_at <= now).group_by(c.scope_id).order_by(c.scope_id)
            ).scalars()
        )

    def take_due(self, scope_id: str, now: datetime) -> list[tuple[datetime, AlertDraft]]:
        """Remove and return the scope's held alerts due at ``now``, each with its release time, in
        the order they were held."""
        c = alerts_pending.c
        due = (c.scope_id == scope_id) & (c.release_at <= now)
        rows = self._conn.execute(select(alerts_pending).where(due).order_by(c.id)).all()
        self._conn.execute(delete(alerts_pending).where(due))
        return [
            (
                row.release_at,
                AlertDraft(
                    row.member_id,
                    AlertKind(row.kind),
                    bytes(row.match_token),
                    row.holder_count,
                    decode_labels(row.labels),
                ),
            )
            for row in rows
        ]

    def held(self, scope_id: str, member_id: str, *, release_at: datetime) -> int:
        """How many alerts of the scope are held for the member until ``release_at``."""
        c = alerts_pending.c
        return int(
            self._conn.execute(
                select(func.count()).where(c.scope_id == scope_id, c.member_id == member_id, c.release_at == release_at)
            ).scalar_one()
        )
