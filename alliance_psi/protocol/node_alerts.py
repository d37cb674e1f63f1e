"""A member node's applied alerts and the notices it sends about them, free of SQL and HTTP.

``AppliedAlert`` is what the node keeps of one alert of a continuous scope once it verified it
(``protocol.alert_follower``): the coordinator's signed bytes (the evidence), the match token,
the holder count, the peers' opened labels, and, when the label checks failed, why it is not a
lead. It holds no raw identifier: the node maps the token to its own identifier when it shows
the alert (``OwnIdentifier``), so an identifier withdrawn later is gone from its alerts too.

``notice`` builds what the notifiers send (webhook, JSON Lines alert log, console). **By default a
notice carries no raw identifier**: the alert id, scope, kind, identifier type, the identifier
masked to its last four characters (``mask``), the member's own category and severity, the peers'
categories and the holder count. The receiving case system is the member's own, but a webhook
URL is easy to point elsewhere, and logs travel; ``include_identifier`` (an explicit operator
option) adds the normalized value. Peers' case references and names are never in a notice: they
stay in the node's database, for ``node alerts SEQUENCE`` and reports.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from alliance_psi.identifiers.masking import mask
from alliance_psi.protocol.alerts import AlertKind
from alliance_psi.protocol.leads import LeadLabel, OwnIdentifier

__all__ = [
    "LEAD_KINDS",
    "NOTICE_TYPE_PREFIX",
    "RESYNC_KIND",
    "AppliedAlert",
    "Channel",
    "DeliveryState",
    "NoticePolicy",
    "OutboxMessage",
    "alert_id_of",
    "kind_name",
    "message_id_of",
    "notice",
    "notice_bytes",
]

NOTICE_TYPE_PREFIX = "alliance-psi.alert."


def kind_name(kind: AlertKind) -> str:
    """How the node stores and shows an alert kind: ``match``, ``joined``, ``retracted``, ..."""
    return kind.name.lower()


LEAD_KINDS = tuple(kind_name(kind) for kind in AlertKind if kind.is_lead)
"""The kinds after which the alert's token is one of the member's leads (``AlertKind.is_lead``)."""
RESYNC_KIND = kind_name(AlertKind.RESYNC)
"""After it, the scope's leads are the snapshots that follow: earlier alerts of the scope no longer stand."""


class Channel(StrEnum):
    """Where a notice goes: each has its own outbox row per alert."""

    WEBHOOK = "webhook"
    LOG = "log"
    CONSOLE = "console"


class DeliveryState(StrEnum):
    """An outbox row is pending until delivered, or dead once its retry budget is spent."""

    PENDING = "pending"
    DELIVERED = "delivered"
    DEAD = "dead"


def alert_id_of(signed: bytes, signature: bytes) -> str:
    """A stable id for an alert: the first 16 bytes of SHA-256 over its signed bytes and signature, in hex.

    The same alert received again (after a reconnect) has the same id; it names no identifier.
    """
    return hashlib.sha256(len(signed).to_bytes(4, "big") + signed + signature).hexdigest()[:32]


def message_id_of(alert_id: str) -> str:
    """The Standard Webhooks ``webhook-id`` of an alert's notice: the same on every attempt."""
    return f"msg_{alert_id}"


@dataclass(frozen=True, slots=True)
class AppliedAlert:
    """One alert the node verified and applied, as it keeps it.

    ``refused`` is set when the alert's peer labels do not back its holder count (``leads.check_labels``):
    it is then not a lead and no notice goes to the webhook. ``acked_at`` is set when an
    investigator acknowledged it on the node (``node alerts SEQUENCE --ack``), which is not the
    acknowledgement of delivery the node sends the coordinator.
    """

    sequence: int
    alert_id: str
    scope: str
    kind: str
    key_epoch: str
    match_token: bytes
    holder_count: int
    threshold: int
    peer_labels: tuple[LeadLabel, ...]
    unreadable_labels: int
    refused: str | None
    signed: bytes
    signature: bytes
    created_at: datetime
    applied_at: datetime
    acked_at: datetime | None = None
    ack_note: str = ""
    backed_count: int | None = None  # Fewer holders than ``holder_count`` back it by their labels.

    def __repr__(self) -> str:
        return (
            f"AppliedAlert(sequence={self.sequence}, kind={self.kind}, scope={self.scope}, holders={self.holder_count})"
        )

    @property
    def peer_categories(self) -> tuple[str, ...]:
        return tuple(sorted({label.category for label in self.peer_labels}))


@dataclass(frozen=True, slots=True)
class OutboxMessage:
    """One notice waiting for (or done with) one channel."""

    sequence: int
    channel: Channel
    message_id: str
    body: bytes
    state: DeliveryState
    attempts: int
    next_attempt_at: datetime
    last_error: str = ""


def notice(alert: AppliedAlert, own: OwnIdentifier | None, *, include_identifier: bool = False) -> dict[str, object]:
    """The notice of ``alert``, in the Standard Webhooks payload shape (``type``, ``timestamp``, ``data``).

    ``own`` is the member's identifier behind the alert's token, or None when the node no longer
    holds it (withdrawn since). Without ``include_identifier`` the value is masked (see the module).
    """
    identifier: dict[str, str] | None = None
    if own is not None:
        identifier = {"type": own.type, "masked": mask(own.canonical)}
        if include_identifier:
            identifier["value"] = own.canonical
    data: dict[str, object] = {
        "alert_id": alert.alert_id,
        "sequence": alert.sequence,
        "scope": alert.scope,
        "kind": alert.kind,
        "identifier": identifier,
        "category": own.category if own is not None else None,
        "severity": (own.severity or None) if own is not None else None,
        "peer_categories": list(alert.peer_categories),
        "holder_count": alert.holder_count,
        "threshold": alert.threshold,
    }
    if alert.backed_count is not None:
        data["backed_count"] = alert.backed_count  # The holders its peers' labels back: fewer than signed.
    if alert.refused is not None:
        data["refused"] = alert.refused
    return {"type": NOTICE_TYPE_PREFIX + alert.kind, "timestamp": alert.created_at.isoformat(), "data": data}


def notice_bytes(body: dict[str, object]) -> bytes:
    """A notice as compact UTF-8 JSON, keys sorted: the exact bytes that are signed and sent."""
    return json.dumps(body, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode("utf-8")


@dataclass(frozen=True, slots=True)
class NoticePolicy:
    """Which channels get a notice of each alert, and whether the webhook's and the log's carry the
    full identifier (the console's never does: console output ends up in system logs).

    A refused alert (its labels do not back its count) is not a lead: it goes to the log and the
    console, which the member's security officer reads, never to the webhook.
    """

    channels: Collection[Channel] = (Channel.CONSOLE,)
    include_identifier: bool = False

    def messages(self, alert: AppliedAlert, own: OwnIdentifier | None) -> list[OutboxMessage]:
        """The outbox rows for ``alert``, due at once (at its ``applied_at``)."""
        rows = []
        for channel in Channel:
            if channel not in self.channels or (channel is Channel.WEBHOOK and alert.refused is not None):
                continue
            full = self.include_identifier and channel is not Channel.CONSOLE
            body = notice_bytes(notice(alert, own, include_identifier=full))
            rows.append(
                OutboxMessage(
                    alert.sequence,
                    channel,
                    message_id_of(alert.alert_id),
                    body,
                    DeliveryState.PENDING,
                    0,
                    alert.applied_at,
                )
            )
        return rows
