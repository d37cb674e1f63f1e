"""Alerts of continuous scopes: what the coordinator tells a holder when one of its tokens changes.

In a continuous scope every committed delta is matched at once (``protocol.continuous``), and
each holder of a token the delta changed gets an alert, signed by the coordinator's result key:

- ``MATCH``: the token reached the threshold (every holder gets one), or this member just joined
  a token already at or above it;
- ``JOINED``: another member joined a matched token (new count and labels);
- ``RELABELED``: another holder of a matched token changed its label;
- ``WITHDRAWN``: another holder withdrew it and it is still at or above the threshold;
- ``RETRACTED``: a withdrawal dropped it below the threshold: it is no longer a lead;
- ``OVERFLOW``: the member left too many alerts unacknowledged; alerts of the scope for it stop
  here, and a ``RESYNC`` follows once it has acknowledged every alert;
- ``RESYNC``: the member's state of the scope is replaced by the ``SNAPSHOT`` alerts that follow
  it at once (``holder_count`` of them, in consecutive sequence numbers);
- ``SNAPSHOT``: one of the member's matched tokens as it stands.

An alert carries a match token and sealed labels, never an identifier: the member node maps the
token back to its own identifier. Like a result's leaf, it carries every other holder's sealed
label (in a scope that shares labels) with its attested sealer, so the node checks the holder
count against the labels (``protocol.leads.refuse_leads``) exactly as it does for results.

Each member's alerts are numbered 1, 2, 3, ... across all its scopes, without gaps, in the order
they are released; the member acknowledges what it applied (``AckAlerts``) and resumes after a
disconnect from its last acknowledged sequence, so no alert is lost and none is applied twice.

Canonical encoding (version 2; ``lp`` as in ``result_codec``)::

    alert = "APSI-ALERT" 0x02
            lp(scope_id) lp(member_id) lp(key_epoch)
            I2OSP(sequence, 8) I2OSP(kind, 1) I2OSP(threshold, 2)
            I2OSP(label_cap, 2)                        peer labels at most (``protocol.label_cap``; 0: none)
            I2OSP(released_at, 8)                      Unix seconds: when it was released (the
                                                       scope's interval boundary, not the commit)
            match_token (16) I2OSP(holder_count, 4)    zeros and 0 for OVERFLOW; RESYNC: the count
            I2OSP(len(labels), 2) labels               as in a result leaf, sorted
            I2OSP(len(pin), 1) || pin                  the member's enrolled key pin (32), or none

Alerts of version 1 (before label caps) are still read, as a cap of 0. The signature uses the
context ``"alert"`` (``crypto.signing``), so an alert can never pass for a
result or a checkpoint. ``verify_alert`` is what a member node runs on each one it receives.
"""

from __future__ import annotations

import enum
import hmac
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import pairwise

from alliance_psi.crypto.derive import MATCH_TOKEN_BYTES
from alliance_psi.crypto.signing import SigningKey, key_id, verify
from alliance_psi.errors import InvalidRequest, InvalidSignature
from alliance_psi.protocol._codec import Reader, lp
from alliance_psi.protocol.model import PeerLabel
from alliance_psi.protocol.result_codec import KEY_PIN_BYTES

__all__ = [
    "ALERT_CONTEXT",
    "ALERT_FORMAT_VERSION",
    "NO_TOKEN",
    "Alert",
    "AlertBatch",
    "AlertKind",
    "SignedAlert",
    "StoredAlert",
    "decode_alert",
    "decode_labels",
    "encode_alert",
    "encode_labels",
    "sign_alert",
    "verify_alert",
]

ALERT_CONTEXT = "alert"
ALERT_FORMAT_VERSION = 2  # 2: the label cap.
_READ_VERSIONS = (1, ALERT_FORMAT_VERSION)
_MAGIC = b"APSI-ALERT"
_PREFIX = _MAGIC + bytes([ALERT_FORMAT_VERSION])
NO_TOKEN = bytes(MATCH_TOKEN_BYTES)
"""The token field of an alert about a scope rather than a token (``OVERFLOW``, ``RESYNC``)."""


class AlertKind(enum.IntEnum):
    """What happened to the token (see the module docstring); the value is its byte on the wire."""

    MATCH = 1
    JOINED = 2
    RELABELED = 3
    WITHDRAWN = 4
    RETRACTED = 5
    OVERFLOW = 6
    RESYNC = 7
    SNAPSHOT = 8

    @property
    def is_lead(self) -> bool:
        """Whether, after this alert, the token is one of the member's leads (at or above the threshold)."""
        return self in (AlertKind.MATCH, AlertKind.JOINED, AlertKind.RELABELED, AlertKind.WITHDRAWN, AlertKind.SNAPSHOT)


_SCOPE_KINDS = frozenset({AlertKind.OVERFLOW, AlertKind.RESYNC})


@dataclass(frozen=True, slots=True)
class Alert:
    """One alert for one member (see the module docstring); ``peer_labels`` are the other holders'."""

    scope_id: str
    member_id: str
    key_epoch: str
    sequence: int
    kind: AlertKind
    threshold: int
    released_at: datetime
    match_token: bytes
    holder_count: int
    peer_labels: tuple[PeerLabel, ...] = ()
    member_key_pin: bytes = b""  # SHA-256 of the member's enrolled SPKI, or b"" if it has none.
    label_cap: int = 0  # Peer labels at most, the scope's (``protocol.label_cap``); 0: no cap.


@dataclass(frozen=True, slots=True)
class SignedAlert:
    """An alert as sent: its canonical bytes, the coordinator's signature and key id."""

    alert: bytes
    signature: bytes
    key_id: str


@dataclass(frozen=True, slots=True)
class StoredAlert:
    """A numbered, signed alert as the coordinator's outbox keeps it, with its scope."""

    sequence: int
    scope_id: str
    alert: bytes
    signature: bytes


@dataclass(frozen=True, slots=True)
class AlertBatch:
    """One message of a ``WatchAlerts`` stream: alerts in increasing sequence (none: a heartbeat),
    the member's last released sequence and its last acknowledged one when it was sent."""

    alerts: tuple[SignedAlert, ...]
    head_sequence: int
    acked_sequence: int


def _label_key(label: PeerLabel) -> tuple[bytes, str]:
    return (label.sealed, label.sealer or "")


def encode_labels(labels: tuple[PeerLabel, ...]) -> bytes:
    """``I2OSP(len(labels), 2)`` then each label as in a result leaf, in canonical order."""
    parts = [len(labels).to_bytes(2, "big")]
    for label in sorted(labels, key=_label_key):
        parts += [len(label.sealed).to_bytes(2, "big"), label.sealed, lp(label.sealer or "")]
    return b"".join(parts)


def _read_labels(reader: Reader) -> tuple[PeerLabel, ...]:
    labels = []
    for _ in range(reader.int(2)):
        sealed = reader.take(reader.int(2))
        labels.append(PeerLabel(sealed, reader.text() or None))
    if any(_label_key(a) > _label_key(b) for a, b in pairwise(labels)):
        raise reader.fail("peer labels not in canonical order")
    return tuple(labels)


def decode_labels(data: bytes) -> tuple[PeerLabel, ...]:
    """The labels ``encode_labels`` wrote; ``InvalidRequest`` for anything else."""
    reader = Reader(data, "peer labels")
    labels = _read_labels(reader)
    reader.end()
    return labels


def encode_alert(alert: Alert) -> bytes:
    """The canonical bytes of ``alert`` (labels sorted here, whatever their order).

    Raises ``ValueError`` for a field that has no canonical form (a token not 16 bytes, a pin not
    32 bytes or none, a naive time, a sequence below 1).
    """
    if len(alert.match_token) != MATCH_TOKEN_BYTES:
        raise ValueError(f"match token must be {MATCH_TOKEN_BYTES} bytes")
    if len(alert.member_key_pin) not in (0, KEY_PIN_BYTES):
        raise ValueError(f"a member key pin is {KEY_PIN_BYTES} bytes (or none)")
    if alert.released_at.tzinfo is None:
        raise ValueError("released_at must be timezone-aware")
    if alert.sequence < 1:
        raise ValueError("alert sequences start at 1")
    parts = [
        _PREFIX,
        lp(alert.scope_id),
        lp(alert.member_id),
        lp(alert.key_epoch),
        alert.sequence.to_bytes(8, "big"),
        int(alert.kind).to_bytes(1, "big"),
        alert.threshold.to_bytes(2, "big"),
        alert.label_cap.to_bytes(2, "big"),
        int(alert.released_at.timestamp()).to_bytes(8, "big"),
        alert.match_token,
        alert.holder_count.to_bytes(4, "big"),
        encode_labels(alert.peer_labels),
        len(alert.member_key_pin).to_bytes(1, "big"),
        alert.member_key_pin,
    ]
    return b"".join(parts)


def decode_alert(data: bytes) -> Alert:
    """Parse canonical alert bytes; raise ``InvalidRequest`` if they are anything else."""
    reader = Reader(data, "alert")
    if reader.take(len(_MAGIC)) != _MAGIC or (version := reader.int(1)) not in _READ_VERSIONS:
        raise reader.fail(f"unknown format or version (this node reads versions {_READ_VERSIONS})")
    scope_id, member_id, key_epoch = reader.text(), reader.text(), reader.text()
    sequence, kind_byte, threshold = reader.int(8), reader.int(1), reader.int(2)
    label_cap = reader.int(2) if version >= 2 else 0
    try:
        kind = AlertKind(kind_byte)
    except ValueError:
        raise reader.fail(f"unknown kind {kind_byte}") from None
    if sequence < 1:
        raise reader.fail("sequence 0")
    try:
        released_at = datetime.fromtimestamp(reader.int(8), UTC)
    except (OverflowError, OSError, ValueError):  # Beyond the year 9999, or what the platform's time_t holds.
        raise reader.fail("release time out of range") from None
    token, holders = reader.take(MATCH_TOKEN_BYTES), reader.int(4)
    labels = _read_labels(reader)
    pin_length = reader.int(1)
    if pin_length not in (0, KEY_PIN_BYTES):
        raise reader.fail(f"a member key pin is {KEY_PIN_BYTES} bytes or none, not {pin_length}")
    pin = reader.take(pin_length)
    reader.end()
    if kind in _SCOPE_KINDS and (token != NO_TOKEN or labels):
        raise reader.fail(f"a {kind.name} alert names no token and no label")
    if label_cap and len(labels) > label_cap:
        raise reader.fail(f"{len(labels)} peer labels, more than the signed label cap {label_cap}")
    return Alert(
        scope_id, member_id, key_epoch, sequence, kind, threshold, released_at, token, holders, labels, pin, label_cap
    )


def sign_alert(key: SigningKey, alert: Alert) -> SignedAlert:
    """Encode and sign ``alert`` with the coordinator's result key."""
    data = encode_alert(alert)
    return SignedAlert(data, key.sign(ALERT_CONTEXT, data), key.key_id)


def verify_alert(
    public_key: bytes, signed: SignedAlert, *, member_id: str, member_key_pin: bytes | None = None
) -> Alert:
    """Verify and parse one alert received by member ``member_id``; what a member node runs first.

    ``public_key`` is the coordinator's key pinned in the node's configuration (a key id that is
    not its own is refused before anything else). The signature is checked before anything is
    parsed. ``member_key_pin`` is the SHA-256 of the node's own certificate key: an alert that
    names another pin was issued for a key the coordinator enrolled under this member's name but
    that is not this node's (the CA holder's certificate), as ``result_codec`` headers are checked.

    Raises:
        InvalidSignature: another signing key, a signature that does not verify, an alert for
            another member, or one that names another member key pin.
        InvalidRequest: signed bytes that are not a canonical alert.
    """
    expected = key_id(public_key)
    if signed.key_id and not hmac.compare_digest(signed.key_id.encode(), expected.encode()):
        raise InvalidSignature(f"alert signed by key {signed.key_id}, not the coordinator's key {expected}")
    try:
        verify(public_key, ALERT_CONTEXT, signed.alert, signed.signature)
    except InvalidSignature as exc:
        raise InvalidSignature(f"the coordinator's signature over an alert: {exc}") from None
    try:
        alert = decode_alert(signed.alert)
    except InvalidRequest as exc:
        raise InvalidRequest(f"a signed alert: {exc}") from None
    if alert.member_id != member_id:
        raise InvalidSignature(f"alert {alert.sequence} is for member {alert.member_id!r}, not {member_id!r}")
    if (
        member_key_pin is not None
        and alert.member_key_pin
        and not hmac.compare_digest(alert.member_key_pin, member_key_pin)
    ):
        raise InvalidSignature(
            f"alert {alert.sequence} names another key pin than this node's certificate key: the coordinator "
            f"enrolled another key for member {member_id!r}"
        )
    return alert
