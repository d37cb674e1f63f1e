"""An in-memory stand-in for the coordinator's alert calls (``protocol.alert_follower.FollowerCalls``),
and a node database with identifiers, tokens and peers' sealed labels made for it.

The alerts are signed with a real coordinator key and the labels sealed with the real label
crypto, so the follower's verification and label checks run for real; only the transport is
replaced. Each alert is numbered per member from 1, as the coordinator's alert outbox numbers it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import Engine

from alliance_psi.crypto.labels import LabelContext, seal_label
from alliance_psi.crypto.signing import SigningKey
from alliance_psi.errors import InvalidRequest, NotFound, PeerUnavailable
from alliance_psi.protocol.alerts import Alert, AlertBatch, AlertKind, SignedAlert, sign_alert
from alliance_psi.protocol.leads import LeadLabel
from alliance_psi.protocol.model import PeerLabel, Round
from alliance_psi.protocol.node_rows import CachedToken
from alliance_psi.storage import KeptResults, MemberRepository

EPOCH = "epoch-test"
SCOPE_ID = "watch-1"
SET_SCOPE = f"continuous:{SCOPE_ID}/{EPOCH}/phone/labels"
MEMBER = "bank-a"
RELEASED = datetime(2026, 11, 3, 9, 30, tzinfo=UTC)


def value(i: int) -> str:
    return f"+86139{(i * 48271 + 20481736) % 10**8:08d}"


def token_of(i: int) -> bytes:
    return hashlib.sha256(b"token %d" % i).digest()[:16]


def key_of(i: int) -> bytes:
    return hashlib.sha256(b"label key %d" % i).digest()


def load_node(engine: Engine, held: range) -> None:
    """The member's identifiers ``held``, with their tokens and label keys cached in ``EPOCH``."""
    with engine.begin() as conn:
        repo = MemberRepository(conn)
        repo.upsert_identifiers(
            [
                {"type": "phone", "canonical": value(i), "category": "proxy_rights_defense", "severity": "level1"}
                for i in held
            ]
        )
        ids = {ref.canonical: ref.id for ref in repo.iter_identifiers()}
        repo.cache_tokens(EPOCH, [CachedToken(ids[value(i)], token_of(i), key_of(i)) for i in held])
        KeptResults(conn).record_scope(SCOPE_ID, SET_SCOPE, share_labels=True)  # As its commit records it.


def peer_label(i: int, peer: str, *, category: str = "wool_party", named: bool = True) -> PeerLabel:
    """Peer ``peer``'s label for identifier ``i``, sealed under its real label key in the scope."""
    context = LabelContext(EPOCH, token_of(i), SET_SCOPE)
    plaintext = LeadLabel(category, "level2", None, f"{peer}-case").encode()
    sealed = seal_label(key_of(i), plaintext, context, sealer_key=hashlib.sha256(peer.encode()).digest())
    return PeerLabel(sealed, peer if named else None)


@dataclass
class FakeCoordinator:
    """Signs and queues alerts for ``member``; serves them as ``WatchAlerts`` / ``AckAlerts`` do."""

    key: SigningKey = field(default_factory=SigningKey.generate)
    member: str = MEMBER
    alerts: list[SignedAlert] = field(default_factory=list)
    acked: int = 0
    watches: list[int] = field(default_factory=list)
    break_after: int | None = None  # Alerts sent per watch before the stream "breaks".

    def alert(
        self,
        kind: AlertKind,
        i: int | None,
        holders: int,
        labels: tuple[PeerLabel, ...] = (),
        *,
        member: str | None = None,
    ) -> SignedAlert:
        alert = Alert(
            scope_id=SCOPE_ID,
            member_id=member or self.member,
            key_epoch=EPOCH,
            sequence=len(self.alerts) + 1,
            kind=kind,
            threshold=2,
            released_at=RELEASED,
            match_token=token_of(i) if i is not None else bytes(16),
            holder_count=holders,
            peer_labels=labels,
        )
        signed = sign_alert(self.key, alert)
        self.alerts.append(signed)
        return signed

    def watch_alerts(
        self, scope_id: str = "", from_sequence: int = 0, *, timeout: float | None = None
    ) -> Iterator[AlertBatch]:
        if from_sequence and from_sequence <= self.acked:
            raise InvalidRequest(f"from_sequence {from_sequence} is at or below the acknowledged {self.acked}")
        start = from_sequence or self.acked + 1
        self.watches.append(start)
        pending = self.alerts[start - 1 :]
        for n, signed in enumerate(pending):
            if self.break_after is not None and n >= self.break_after:
                raise PeerUnavailable("coordinator at 127.0.0.1:7100 is unreachable: the stream broke")
            yield AlertBatch((signed,), len(self.alerts), self.acked)
        yield AlertBatch((), len(self.alerts), self.acked)  # A heartbeat.

    def ack_alerts(self, up_to_sequence: int) -> tuple[int, int]:
        if up_to_sequence > len(self.alerts):
            raise InvalidRequest("beyond the last alert released")
        self.acked = max(self.acked, up_to_sequence)
        return self.acked, len(self.alerts)

    def get_round(self, round_id: str) -> tuple[Round, int]:
        raise NotFound(f"no round {round_id}")  # The node recorded its scope when it committed.
