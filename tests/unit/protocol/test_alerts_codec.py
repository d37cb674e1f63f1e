"""Alerts: canonical bytes, signature and the checks a member node runs (``protocol.alerts``)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest

from alliance_psi.crypto.signing import SigningKey
from alliance_psi.errors import InvalidRequest, InvalidSignature
from alliance_psi.protocol import messages
from alliance_psi.protocol.alerts import (
    ALERT_CONTEXT,
    NO_TOKEN,
    Alert,
    AlertBatch,
    AlertKind,
    SignedAlert,
    decode_alert,
    encode_alert,
    sign_alert,
    verify_alert,
)
from alliance_psi.protocol.model import NO_DEADLINE, PeerLabel, RoundKind
from alliance_psi.protocol.result_codec import RESULT_CONTEXT

KEY = SigningKey.generate()
PIN = bytes(range(32))


def alert(**changes: object) -> Alert:
    base = Alert(
        scope_id="s-1",
        member_id="bank-a",
        key_epoch="2026-01",
        sequence=7,
        kind=AlertKind.JOINED,
        threshold=2,
        released_at=datetime(2026, 1, 5, 9, 30, tzinfo=UTC),
        match_token=b"\x01" * 16,
        holder_count=3,
        peer_labels=(PeerLabel(b"\x09" * 40, "Bank B"), PeerLabel(b"\x02" * 40)),
        member_key_pin=PIN,
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def test_an_alert_round_trips_with_its_labels_in_canonical_order() -> None:
    decoded = decode_alert(encode_alert(alert()))
    assert decoded == alert(peer_labels=(PeerLabel(b"\x02" * 40), PeerLabel(b"\x09" * 40, "Bank B")))
    assert encode_alert(decoded) == encode_alert(alert())


def test_the_member_node_verifies_a_signed_alert() -> None:
    signed = sign_alert(KEY, alert())
    opened = verify_alert(KEY.public_key, signed, member_id="bank-a", member_key_pin=PIN)
    assert (opened.sequence, opened.kind, opened.holder_count) == (7, AlertKind.JOINED, 3)
    assert AlertKind.JOINED.is_lead and not AlertKind.RETRACTED.is_lead


def test_a_tampered_alert_fails_its_signature() -> None:
    signed = sign_alert(KEY, alert())
    forged = bytearray(signed.alert)
    forged[-40] ^= 1
    with pytest.raises(InvalidSignature, match="the coordinator's signature over an alert"):
        verify_alert(KEY.public_key, SignedAlert(bytes(forged), signed.signature, signed.key_id), member_id="bank-a")


def test_an_alert_signed_by_another_key_is_refused_by_its_key_id() -> None:
    other = SigningKey.generate()
    with pytest.raises(InvalidSignature, match=f"signed by key {other.key_id}, not the coordinator's key"):
        verify_alert(KEY.public_key, sign_alert(other, alert()), member_id="bank-a")


def test_a_result_signature_is_no_alert_signature() -> None:
    data = encode_alert(alert())
    signed = SignedAlert(data, KEY.sign(RESULT_CONTEXT, data), KEY.key_id)
    with pytest.raises(InvalidSignature):
        verify_alert(KEY.public_key, signed, member_id="bank-a")


def test_another_members_alert_is_refused() -> None:
    with pytest.raises(InvalidSignature, match="is for member 'bank-a', not 'bank-b'"):
        verify_alert(KEY.public_key, sign_alert(KEY, alert()), member_id="bank-b")


def test_an_alert_naming_another_key_pin_is_refused() -> None:
    with pytest.raises(InvalidSignature, match="names another key pin"):
        verify_alert(KEY.public_key, sign_alert(KEY, alert()), member_id="bank-a", member_key_pin=b"\xee" * 32)
    unpinned = sign_alert(KEY, alert(member_key_pin=b""))
    assert verify_alert(KEY.public_key, unpinned, member_id="bank-a", member_key_pin=PIN).member_key_pin == b""


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda b: b[:-1], "unknown format|truncated|pin"),
        (lambda b: b + b"\x00", "not in canonical form"),
        (lambda b: b"APSI-ALERT\x03" + b[11:], "unknown format or version"),
    ],
    ids=["truncated", "trailing", "version"],
)
def test_bytes_that_are_not_a_canonical_alert_are_refused(mutate, reason) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidRequest, match=reason):
        decode_alert(mutate(encode_alert(alert())))


def test_an_unknown_kind_and_a_scope_alert_with_a_token_are_refused() -> None:
    data = bytearray(encode_alert(alert()))
    kind_at = len(b"APSI-ALERT") + 1 + sum(2 + len(t) for t in ("s-1", "bank-a", "2026-01")) + 8
    data[kind_at] = 99
    with pytest.raises(InvalidRequest, match="unknown kind 99"):
        decode_alert(bytes(data))
    with pytest.raises(InvalidRequest, match="a OVERFLOW alert names no token"):
        decode_alert(encode_alert(alert(kind=AlertKind.OVERFLOW, peer_labels=())))
    overflow = alert(kind=AlertKind.OVERFLOW, match_token=NO_TOKEN, holder_count=0, peer_labels=())
    assert decode_alert(encode_alert(overflow)) == overflow


def test_a_release_time_no_calendar_holds_is_refused_as_malformed() -> None:
    # Even signed by the coordinator's key: the node sets it aside as it does any malformed alert.
    data = bytearray(encode_alert(alert()))
    released_at = len(b"APSI-ALERT") + 1 + sum(2 + len(t) for t in ("s-1", "bank-a", "2026-01")) + 8 + 1 + 2 + 2
    data[released_at : released_at + 8] = b"\xff" * 8
    with pytest.raises(InvalidRequest, match="malformed alert: release time out of range"):
        decode_alert(bytes(data))
    signed = SignedAlert(bytes(data), KEY.sign(ALERT_CONTEXT, bytes(data)), KEY.key_id)
    with pytest.raises(InvalidRequest, match="a signed alert: malformed alert: release time out of range"):
        verify_alert(KEY.public_key, signed, member_id="bank-a")


def test_fields_without_a_canonical_form_are_refused_when_encoding() -> None:
    with pytest.raises(ValueError, match="sequences start at 1"):
        encode_alert(alert(sequence=0))
    with pytest.raises(ValueError, match="timezone-aware"):
        encode_alert(alert(released_at=datetime(2026, 1, 5)))


def test_a_batch_crosses_the_wire_unchanged() -> None:
    batch = AlertBatch(
        (sign_alert(KEY, alert()), sign_alert(KEY, alert(sequence=8))), head_sequence=9, acked_sequence=6
    )
    wire = messages.pb_coordinator.AlertBatch.FromString(messages.alert_batch_to_pb(batch).SerializeToString())
    assert messages.alert_batch_from_pb(wire) == batch


def test_a_continuous_scope_request_without_a_deadline_runs_until_closed() -> None:
    request = messages.pb_coordinator.CreateRoundRequest(
        name="standing", threshold=2, key_epoch="2026-01", allowed_types=["phone"], kind="continuous"
    )
    spec = messages.round_spec_from_pb(request)
    assert (spec.kind, spec.deadline) == (RoundKind.CONTINUOUS, NO_DEADLINE)
    with pytest.raises(InvalidRequest, match="deadline: required"):
        messages.round_spec_from_pb(messages.pb_coordinator.CreateRoundRequest(name="batch", kind=""))
    with pytest.raises(InvalidRequest, match="kind: one of \\['batch', 'continuous'\\], not 'streaming'"):
        messages.round_spec_from_pb(messages.pb_coordinator.CreateRoundRequest(name="x", kind="streaming"))


def test_the_alert_signs_the_label_cap_and_labels_over_it_are_refused() -> None:
    capped = alert(label_cap=1, peer_labels=(PeerLabel(b"L1"),))
    assert decode_alert(encode_alert(capped)) == capped
    over = encode_alert(alert(label_cap=1, peer_labels=(PeerLabel(b"L1"), PeerLabel(b"L2"))))
    with pytest.raises(InvalidRequest, match="2 peer labels, more than the signed label cap 1"):
        decode_alert(over)


def test_an_alert_of_version_1_before_label_caps_still_reads_as_no_cap() -> None:
    data = encode_alert(alert(label_cap=0))
    cap_at = len(b"APSI-ALERT") + 1 + sum(2 + len(t) for t in ("s-1", "bank-a", "2026-01")) + 8 + 1 + 2
    assert data[cap_at : cap_at + 2] == b"\x00\x00"
    assert decode_alert(b"APSI-ALERT\x01" + data[11:cap_at] + data[cap_at + 2 :]) == decode_alert(data)
