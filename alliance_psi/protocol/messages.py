"""Conversions between the generated protobuf messages and the domain dataclasses.

The only module that imports ``_pb`` message classes (the services layer imports the generated
gRPC stubs to register servicers). Inbound conversions check what protobuf cannot express
(required fields, sizes) and raise ``InvalidRequest`` naming the field; they check the count of
a repeated field before turning its elements into Python objects.

The largest legal requests are computed here from the item sizes (one source of truth): a
submission chunk of ``MAX_CHUNK_ITEMS`` tokens with sealed labels (``CHUNK_REQUEST``, about
2.7 MB) and an evaluation batch of ``MAX_EVALUATE_BATCH`` elements (``EVALUATE_REQUEST``).
Servers refuse anything larger before decoding it (``protocol.wire``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from google.protobuf.message import DecodeError
from google.protobuf.timestamp_pb2 import Timestamp

from alliance_psi.crypto.derive import MATCH_TOKEN_BYTES
from alliance_psi.crypto.dleq import PROOF_BYTES
from alliance_psi.crypto.labels import SEALED_LABEL_BYTES
from alliance_psi.crypto.pedersen import encode_scalar
from alliance_psi.crypto.sealed_shares import SEALED_SHARE_BYTES
from alliance_psi.crypto.suite import RISTRETTO255_SHA512
from alliance_psi.crypto.threshold import MAX_CUSTODIANS
from alliance_psi.errors import InvalidRequest
from alliance_psi.protocol._pb import coordinator_pb2 as pb_coordinator
from alliance_psi.protocol._pb import custodian_pb2 as pb_custodian
from alliance_psi.protocol._pb import key_ceremony_pb2 as pb_ceremony
from alliance_psi.protocol.alerts import AlertBatch, SignedAlert
from alliance_psi.protocol.ceremony_model import Envelope, Payload, Signed, Stage, share_from_bytes
from alliance_psi.protocol.checkpoints import SignedCheckpoint, SignedStatement
from alliance_psi.protocol.coordinator import MAX_ID_CHARS, MAX_LABEL_PAGE, Chunk, Commit, RoundSpec
from alliance_psi.protocol.custodian import MAX_EVALUATE_BATCH, EpochStatus
from alliance_psi.protocol.model import NO_DEADLINE, Round, RoundKind, RoundState, SubmissionState, SubmissionStatus
from alliance_psi.protocol.result_codec import LeafPage, SignedResultHeader
from alliance_psi.protocol.submission import MAX_CHUNK_ITEMS
from alliance_psi.protocol.wire import WireLimit, field_bytes

__all__ = [
    "CEREMONY_REQUEST",
    "CHUNK_REQUEST",
    "LABELS_REQUEST",
    "CeremonyCodec",
    "ELEMENT_BYTES",
    "EVALUATE_REQUEST",
    "EVALUATE_RESPONSE_BYTES",
    "alert_batch_from_pb",
    "alert_batch_to_pb",
    "ceremony_envelope_from_pb",
    "ceremony_envelope_to_pb",
    "checkpoint_from_pb",
    "checkpoint_to_pb",
    "chunk_from_pb",
    "chunk_to_pb",
    "commit_from_pb",
    "commit_to_pb",
    "epoch_from_pb",
    "epoch_to_pb",
    "evaluate_from_pb",
    "evaluate_request",
    "evaluate_subset_from_pb",
    "answer_labels_from_pb",
    "answer_labels_to_pb",
    "inclusion_from_pb",
    "inclusion_to_pb",
    "pb_ceremony",
    "pb_coordinator",
    "pb_custodian",
    "result_part_from_pb",
    "result_part_to_pb",
    "round_from_pb",
    "round_kind_from_pb",
    "round_spec_from_pb",
    "round_spec_to_pb",
    "round_to_pb",
    "statement_from_pb",
    "statement_to_pb",
    "status_from_pb",
    "status_to_pb",
]

# Upper bounds of scalar fields on the wire: a key byte and the longest varint of the type.
_UINT32_FIELD = 1 + 5
_UINT64_FIELD = 1 + 10
_BOOL_FIELD = 1 + 1
ELEMENT_BYTES = RISTRETTO255_SHA512.Ne

# SubmissionChunk: round_id, chunk_index, MAX_CHUNK_ITEMS items (each a SubmittedToken with a
# token and a sealed label, the largest entry; a removal is a bare token), chunk_digest, delta,
# sequence.
_LARGEST_ITEM = field_bytes(field_bytes(MATCH_TOKEN_BYTES) + field_bytes(SEALED_LABEL_BYTES))
CHUNK_REQUEST = WireLimit(
    max_bytes=field_bytes(MAX_ID_CHARS)
    + _UINT32_FIELD
    + MAX_CHUNK_ITEMS * _LARGEST_ITEM
    + field_bytes(32)
    + _BOOL_FIELD
    + _UINT64_FIELD,
    max_fields=MAX_CHUNK_ITEMS + 5,
)
# AnswerLabelsRequest: round_id and at most MAX_LABEL_PAGE items, each a token and a sealed label.
LABELS_REQUEST = WireLimit(
    max_bytes=field_bytes(MAX_ID_CHARS) + MAX_LABEL_PAGE * _LARGEST_ITEM, max_fields=MAX_LABEL_PAGE + 1
)
# EvaluateRequest: key_epoch, MAX_EVALUATE_BATCH elements, batch_id, a subset of at most
# MAX_CUSTODIANS indexes (packed, as proto3 and our clients encode it: one field), prove.
EVALUATE_REQUEST = WireLimit(
    max_bytes=field_bytes(MAX_ID_CHARS)
    + MAX_EVALUATE_BATCH * field_bytes(ELEMENT_BYTES)
    + _UINT64_FIELD
    + field_bytes(MAX_CUSTODIANS * (_UINT32_FIELD - 1))
    + _BOOL_FIELD,
    max_fields=MAX_EVALUATE_BATCH + 4,
)
# EvaluateResponse: batch_id, the evaluated elements, used, a proof.
EVALUATE_RESPONSE_BYTES = (
    _UINT64_FIELD + MAX_EVALUATE_BATCH * field_bytes(ELEMENT_BYTES) + _UINT64_FIELD + field_bytes(PROOF_BYTES)
)
# CeremonyEnvelope: the largest is a round-2 echo relaying one signed round-1 message per
# custodian (each with its certificate); 512 KiB leaves room for 64 custodians' certificates.
# A round-1 envelope adds one sealed share (exactly SEALED_SHARE_BYTES, checked on decoding) to
# its signed message; the echo relays signed messages only, never a sealed share.
CEREMONY_REQUEST = WireLimit(max_bytes=512 * 1024)


def _ts(value: datetime | None) -> Timestamp | None:
    if value is None:
        return None
    ts = Timestamp()
    ts.FromDatetime(value.astimezone(UTC))
    return ts


def _dt(message: object, field: str) -> datetime | None:
    if not message.HasField(field):  # type: ignore[attr-defined]
        return None
    value: datetime = getattr(message, field).ToDatetime(tzinfo=UTC)
    return value


def round_kind_from_pb(kind: str) -> RoundKind:
    """The kind a request names: empty is a batch round (what every older client creates)."""
    try:
        return RoundKind(kind or RoundKind.BATCH.value)
    except ValueError:
        raise InvalidRequest(f"kind: one of {[k.value for k in RoundKind]}, not {kind[:40]!r}") from None


def round_to_pb(r: Round, committed_count: int) -> pb_coordinator.RoundInfo:
    return pb_coordinator.RoundInfo(
        round_id=r.round_id,
        name=r.name,
        threshold=r.threshold,
        key_epoch=r.key_epoch,
        deadline=_ts(r.deadline),
        allowed_types=list(r.allowed_types),
        invited=list(r.invited or ()),
        invite_all=r.invited is None,
        share_labels=r.share_labels,
        state=r.state.value,
        created_by=r.created_by,
        created_at=_ts(r.created_at),
        closed_at=_ts(r.closed_at),
        close_reason=r.close_reason,
        matched_at=_ts(r.matched_at),
        committed_count=committed_count,
        kind=r.kind.value,
        min_interval_seconds=r.min_interval_seconds,
        label_cap=r.label_cap,
        labels_at_match=r.labels_at_match,
        label_window_seconds=r.label_window_seconds,
        labels_due=_ts(r.labels_due),
        labels_awaited=[
            pb_coordinator.LabelsAwaited(member_id=member, labels=count) for member, count in r.labels_awaited
        ],
    )


def round_from_pb(m: pb_coordinator.RoundInfo) -> tuple[Round, int]:
    deadline = _dt(m, "deadline")
    if deadline is None:
        raise InvalidRequest("deadline: required")
    r = Round(
        round_id=m.round_id,
        name=m.name,
        threshold=m.threshold,
        key_epoch=m.key_epoch,
        deadline=deadline,
        allowed_types=tuple(m.allowed_types),
        invited=None if m.invite_all else tuple(m.invited),
        share_labels=m.share_labels,
        state=RoundState(m.state),
        created_by=m.created_by,
        created_at=_dt(m, "created_at"),
        closed_at=_dt(m, "closed_at"),
        close_reason=m.close_reason,
        matched_at=_dt(m, "matched_at"),
        kind=round_kind_from_pb(m.kind),
        min_interval_seconds=m.min_interval_seconds,
        label_cap=m.label_cap,
        labels_at_match=m.labels_at_match,
        label_window_seconds=m.label_window_seconds,
        labels_due=_dt(m, "labels_due"),
        labels_awaited=tuple((a.member_id, a.labels) for a in m.labels_awaited),
    )
    return r, m.committed_count


def round_spec_to_pb(spec: RoundSpec) -> pb_coordinator.CreateRoundRequest:
    return pb_coordinator.CreateRoundRequest(
        round_id=spec.round_id,
        name=spec.name,
        threshold=spec.threshold,
        key_epoch=spec.key_epoch,
        deadline=_ts(spec.deadline),
        allowed_types=list(spec.allowed_types),
        invited=list(spec.invited or ()),
        share_labels=spec.share_labels,
        kind=spec.kind.value,
        min_interval_seconds=spec.min_interval_seconds,
        label_cap=spec.label_cap,
        labels_at_match=spec.labels_at_match,
        label_window_seconds=spec.label_window_seconds,
    )


def round_spec_from_pb(m: pb_coordinator.CreateRoundRequest) -> RoundSpec:
    """The spec; a continuous scope without a deadline runs until it is closed (``NO_DEADLINE``)."""
    kind = round_kind_from_pb(m.kind)
    deadline = _dt(m, "deadline")
    if deadline is None and kind is RoundKind.CONTINUOUS:
        deadline = NO_DEADLINE
    if deadline is None:
        raise InvalidRequest("deadline: required")
    return RoundSpec(
        name=m.name,
        threshold=m.threshold,
        key_epoch=m.key_epoch,
        deadline=deadline,
        allowed_types=tuple(m.allowed_types),
        invited=tuple(m.invited) or None,
        share_labels=m.share_labels,
        round_id=m.round_id,
        kind=kind,
        min_interval_seconds=m.min_interval_seconds,
        label_cap=m.label_cap,
        labels_at_match=m.labels_at_match,
        label_window_seconds=m.label_window_seconds,
    )


def chunk_to_pb(chunk: Chunk) -> pb_coordinator.SubmissionChunk:
    message = pb_coordinator.SubmissionChunk(
        round_id=chunk.round_id,
        chunk_index=chunk.chunk_index,
        chunk_digest=chunk.chunk_digest,
        removed_tokens=chunk.removals,
        delta=not chunk.replace,
        sequence=chunk.sequence,
    )
    # Each item made in place in the repeated field: no message built apart and then copied in.
    add = message.items.add
    for token, label in chunk.items:
        add(match_token=token, sealed_label=label or b"")
    return message


def chunk_from_pb(m: pb_coordinator.SubmissionChunk) -> Chunk:
    """The chunk, once its size is checked (before its items become Python objects)."""
    if not m.round_id:
        raise InvalidRequest("round_id: required")
    size = len(m.items) + len(m.removed_tokens)
    if size > MAX_CHUNK_ITEMS:
        raise InvalidRequest(f"chunk {m.chunk_index}: must hold 1 to {MAX_CHUNK_ITEMS} items and removals, got {size}")
    return Chunk(
        round_id=m.round_id,
        chunk_index=m.chunk_index,
        chunk_digest=m.chunk_digest,
        items=tuple([(item.match_token, item.sealed_label or None) for item in m.items]),
        removals=tuple(m.removed_tokens),
        replace=not m.delta,
        sequence=m.sequence,
    )


def answer_labels_to_pb(
    round_id: str, items: Sequence[tuple[bytes, bytes | None]]
) -> pb_coordinator.AnswerLabelsRequest:
    message = pb_coordinator.AnswerLabelsRequest(round_id=round_id)
    message.items.extend(pb_coordinator.SubmittedToken(match_token=t, sealed_label=label or b"") for t, label in items)
    return message


def answer_labels_from_pb(m: pb_coordinator.AnswerLabelsRequest) -> tuple[str, tuple[tuple[bytes, bytes | None], ...]]:
    """(round id, items), once the count is checked (before the items become Python objects)."""
    if not 0 < len(m.round_id) <= MAX_ID_CHARS:
        raise InvalidRequest(f"round_id: required, at most {MAX_ID_CHARS} characters")
    if not 1 <= len(m.items) <= MAX_LABEL_PAGE:
        raise InvalidRequest(f"items: must hold 1 to {MAX_LABEL_PAGE} labels, got {len(m.items)}")
    return m.round_id, tuple([(item.match_token, item.sealed_label or None) for item in m.items])


def commit_to_pb(c: Commit) -> pb_coordinator.CommitSubmissionRequest:
    return pb_coordinator.CommitSubmissionRequest(
        round_id=c.round_id,
        item_count=c.item_count,
        digest=c.digest,
        delta=not c.replace,
        set_count=c.set_count,
        set_digest=c.set_digest,
        share_name=c.share_name,
        sequence=c.sequence,
    )


def commit_from_pb(m: pb_coordinator.CommitSubmissionRequest) -> Commit:
    if not m.round_id:
        raise InvalidRequest("round_id: required")
    return Commit(
        round_id=m.round_id,
        item_count=m.item_count,
        digest=m.digest,
        set_count=m.set_count,
        set_digest=m.set_digest,
        replace=not m.delta,
        share_name=m.share_name,
        sequence=m.sequence,
    )


def status_to_pb(s: SubmissionStatus) -> pb_coordinator.SubmissionInfo:
    return pb_coordinator.SubmissionInfo(
        round_id=s.round_id,
        state=s.state.value,
        chunks=list(s.chunks),
        item_count=s.item_count,
        digest=s.digest,
        set_count=s.set_count,
        set_digest=s.set_digest,
        commit_sequence=s.commit_sequence,
    )


def status_from_pb(m: pb_coordinator.SubmissionInfo, member_id: str) -> SubmissionStatus:
    return SubmissionStatus(
        round_id=m.round_id,
        member_id=member_id,
        state=SubmissionState(m.state),
        chunks=tuple(m.chunks),
        item_count=m.item_count,
        digest=m.digest,
        set_count=m.set_count,
        set_digest=m.set_digest,
        commit_sequence=m.commit_sequence,
    )


def epoch_to_pb(s: EpochStatus) -> pb_custodian.EpochInfo:
    return pb_custodian.EpochInfo(
        key_epoch=s.key_epoch,
        suite=s.suite,
        quota=s.quota,
        used=s.used,
        custodian=s.custodian,
        index=s.index,
        threshold=s.threshold,
        custodian_count=s.custodian_count,
        commitment=s.commitment,
    )


def epoch_from_pb(m: pb_custodian.EpochInfo) -> EpochStatus:
    return EpochStatus(
        m.key_epoch, m.suite, m.quota, m.used, m.custodian, m.index, m.threshold, m.custodian_count, m.commitment
    )


def evaluate_request(
    key_epoch: str, elements: Sequence[bytes], batch_id: int = 0, *, subset: Sequence[int] = (), prove: bool = False
) -> pb_custodian.EvaluateRequest:
    return pb_custodian.EvaluateRequest(
        key_epoch=key_epoch, elements=list(elements), batch_id=batch_id, subset=list(subset), prove=prove
    )


def evaluate_subset_from_pb(m: pb_custodian.EvaluateRequest) -> tuple[int, ...]:
    """The subset a threshold request names, once its length is checked (the custodian checks the rest).

    Raises ``InvalidRequest`` for more than ``MAX_CUSTODIANS`` indexes.
    """
    if len(m.subset) > MAX_CUSTODIANS:
        raise InvalidRequest(f"a subset of {len(m.subset)} custodians; at most {MAX_CUSTODIANS}")
    return tuple(m.subset)


def evaluate_from_pb(m: pb_custodian.EvaluateRequest) -> list[bytes]:
    """The batch's elements, once their count and sizes are checked (before they become a list).

    Raises ``InvalidRequest`` for an empty batch, more than ``MAX_EVALUATE_BATCH`` elements, or an
    element that is not ``ELEMENT_BYTES`` long (the custodian then checks that each is a valid
    group element).
    """
    count = len(m.elements)
    if not count:
        raise InvalidRequest("empty batch")
    if count > MAX_EVALUATE_BATCH:
        raise InvalidRequest(f"batch of {count} elements; at most {MAX_EVALUATE_BATCH}")
    elements = list(m.elements)
    if set(map(len, elements)) - {ELEMENT_BYTES}:  # One pass in C; the loop only names the first bad one.
        position, element = next((i, e) for i, e in enumerate(elements) if len(e) != ELEMENT_BYTES)
        raise InvalidRequest(f"element {position}: must be {ELEMENT_BYTES} bytes, got {len(element)}")
    return elements


def result_part_to_pb(part: SignedResultHeader | LeafPage) -> pb_coordinator.ResultPart:
    if isinstance(part, SignedResultHeader):
        return pb_coordinator.ResultPart(
            header=pb_coordinator.SignedResultHeader(
                header=part.header,
                signature=part.signature,
                key_id=part.key_id,
                audit_entry=part.audit_entry,
                audit_proof=list(part.audit_proof),
            )
        )
    return pb_coordinator.ResultPart(
        page=pb_coordinator.LeafPage(page_index=part.page_index, first_leaf=part.first_leaf, leaves=list(part.leaves))
    )


def result_part_from_pb(m: pb_coordinator.ResultPart) -> SignedResultHeader | LeafPage:
    """One message of a result stream; ``InvalidRequest`` if it is neither a header nor a page."""
    kind = m.WhichOneof("part")
    if kind == "header":
        h = m.header
        return SignedResultHeader(h.header, h.signature, h.key_id, h.audit_entry, tuple(h.audit_proof))
    if kind == "page":
        return LeafPage(m.page.page_index, m.page.first_leaf, tuple(m.page.leaves))
    raise InvalidRequest("result stream: a message that is neither a header nor a page")


def checkpoint_to_pb(c: SignedCheckpoint) -> pb_coordinator.SignedCheckpoint:
    return pb_coordinator.SignedCheckpoint(body=c.body, signature=c.signature)


def checkpoint_from_pb(m: pb_coordinator.SignedCheckpoint) -> SignedCheckpoint:
    return SignedCheckpoint(m.body, m.signature)


def statement_to_pb(s: SignedStatement) -> pb_coordinator.SignedConsistency:
    return pb_coordinator.SignedConsistency(body=s.body, signature=s.signature)


def statement_from_pb(m: pb_coordinator.SignedConsistency) -> SignedStatement:
    return SignedStatement(m.body, m.signature)


def inclusion_to_pb(entry: bytes, proof: Sequence[bytes]) -> pb_coordinator.AuditInclusion:
    return pb_coordinator.AuditInclusion(entry=entry, proof=list(proof))


def inclusion_from_pb(m: pb_coordinator.AuditInclusion) -> tuple[bytes, tuple[bytes, ...]]:
    return m.entry, tuple(m.proof)


# Key ceremony (protocol.ceremony) ----------------------------------------------------------------


def _signed_to_pb(s: Signed) -> pb_ceremony.SignedPayload:
    return pb_ceremony.SignedPayload(payload=s.payload, signature=s.signature, certificate=s.certificate)


def _signed_from_pb(m: pb_ceremony.SignedPayload) -> Signed:
    return Signed(payload=m.payload, signature=m.signature, certificate=m.certificate)


class CeremonyCodec:
    """``protocol.ceremony.PayloadCodec``: a round's payload as the bytes its sender signs."""

    def encode(self, payload: Payload) -> bytes:
        return pb_ceremony.CeremonyPayload(
            session=payload.session,
            round=payload.stage.value,
            commitments=list(payload.commitments),
            relayed=[_signed_to_pb(s) for s in payload.relayed],
            complaints=sorted(payload.complaints),
            shares=[
                pb_ceremony.RevealedShare(index=i, share=encode_scalar(s.value), blinding=encode_scalar(s.blinding))
                for i, s in sorted(payload.shares.items())
            ],
            digest=payload.digest,
            seen=list(payload.seen),
        ).SerializeToString(deterministic=True)

    def decode(self, data: bytes) -> Payload:
        """Raises ``InvalidRequest`` for bytes that are not a payload, an unknown round or a bad share."""
        m = pb_ceremony.CeremonyPayload()
        try:
            m.ParseFromString(data)
        except DecodeError:
            raise InvalidRequest("the signed message is not a key-ceremony payload") from None
        try:
            stage = Stage(m.round)
        except ValueError:
            raise InvalidRequest(f"round {m.round} is not a round of the key ceremony (1 to {len(Stage)})") from None
        shares = {}
        for item in m.shares:
            if item.index in shares:
                raise InvalidRequest(f"custodian index {item.index} appears twice among the shares")
            shares[item.index] = share_from_bytes(item.share, item.blinding)
        return Payload(
            session=m.session,
            stage=stage,
            commitments=tuple(m.commitments),
            relayed=tuple(_signed_from_pb(s) for s in m.relayed),
            complaints=frozenset(m.complaints),
            shares=shares,
            digest=m.digest,
            seen=tuple(m.seen),
        )


def ceremony_envelope_to_pb(e: Envelope) -> pb_ceremony.CeremonyEnvelope:
    return pb_ceremony.CeremonyEnvelope(
        session=e.session, message=_signed_to_pb(e.message), sealed_share=e.sealed_share
    )


def ceremony_envelope_from_pb(m: pb_ceremony.CeremonyEnvelope) -> Envelope:
    """Raises ``InvalidRequest`` for a missing message or a sealed share of another size than
    ``SEALED_SHARE_BYTES`` (whether it opens is the receiver's to find: ``protocol.ceremony``)."""
    if not m.HasField("message"):
        raise InvalidRequest("the envelope carries no message")
    if m.sealed_share and len(m.sealed_share) != SEALED_SHARE_BYTES:
        raise InvalidRequest(f"a sealed share is {SEALED_SHARE_BYTES} bytes, not {len(m.sealed_share)}")
    return Envelope(session=m.session, message=_signed_from_pb(m.message), sealed_share=m.sealed_share)


def alert_batch_to_pb(batch: AlertBatch) -> pb_coordinator.AlertBatch:
    return pb_coordinator.AlertBatch(
        alerts=[
            pb_coordinator.SignedAlert(alert=a.alert, signature=a.signature, key_id=a.key_id) for a in batch.alerts
        ],
        head_sequence=batch.head_sequence,
        acked_sequence=batch.acked_sequence,
    )


def alert_batch_from_pb(m: pb_coordinator.AlertBatch) -> AlertBatch:
    """A batch as received; each alert is still to be checked (``alerts.verify_alert``)."""
    return AlertBatch(
        tuple(SignedAlert(a.alert, a.signature, a.key_id) for a in m.alerts), m.head_sequence, m.acked_sequence
    )
