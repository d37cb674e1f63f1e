"""Request limits on the wire: the largest legal requests, computed once, and the field count
checked on raw bytes before anything is decoded."""

from __future__ import annotations

import pytest

from alliance_psi.crypto.derive import MATCH_TOKEN_BYTES
from alliance_psi.crypto.dleq import PROOF_BYTES
from alliance_psi.crypto.labels import SEALED_LABEL_BYTES
from alliance_psi.crypto.threshold import MAX_CUSTODIANS
from alliance_psi.errors import InvalidRequest, LimitExceeded
from alliance_psi.protocol import messages
from alliance_psi.protocol.coordinator import MAX_ID_CHARS, Chunk
from alliance_psi.protocol.custodian import MAX_EVALUATE_BATCH
from alliance_psi.protocol.messages import pb_coordinator, pb_custodian
from alliance_psi.protocol.submission import MAX_CHUNK_ITEMS
from alliance_psi.protocol.wire import SMALL_REQUEST, WireLimit, check_wire

UINT32_MAX, UINT64_MAX = 2**32 - 1, 2**64 - 1


def largest_chunk() -> pb_coordinator.SubmissionChunk:
    item = pb_coordinator.SubmittedToken(
        match_token=b"\xff" * MATCH_TOKEN_BYTES, sealed_label=b"\xff" * SEALED_LABEL_BYTES
    )
    return pb_coordinator.SubmissionChunk(
        round_id="r" * MAX_ID_CHARS,
        chunk_index=UINT32_MAX,
        items=[item] * MAX_CHUNK_ITEMS,
        chunk_digest=b"\xff" * 32,
        delta=True,
        sequence=UINT64_MAX,
    )


def test_the_chunk_limit_is_exactly_the_largest_legal_chunk() -> None:
    chunk = largest_chunk()
    assert chunk.ByteSize() == messages.CHUNK_REQUEST.max_bytes
    assert 2_600_000 < messages.CHUNK_REQUEST.max_bytes < 2_700_000  # "A full chunk is about 2.7 MB."
    check_wire(chunk.SerializeToString(), messages.CHUNK_REQUEST, what="UploadChunks")


def test_the_evaluate_limits_are_exactly_the_largest_legal_batch() -> None:
    request = pb_custodian.EvaluateRequest(
        key_epoch="e" * MAX_ID_CHARS,
        elements=[b"\xff" * messages.ELEMENT_BYTES] * MAX_EVALUATE_BATCH,
        batch_id=UINT64_MAX,
        subset=[2**32 - 1] * MAX_CUSTODIANS,  # The widest subset a threshold request can name, packed.
        prove=True,
    )
    assert request.ByteSize() == messages.EVALUATE_REQUEST.max_bytes
    check_wire(request.SerializeToString(), messages.EVALUATE_REQUEST, what="Evaluate")
    response = pb_custodian.EvaluateResponse(
        batch_id=UINT64_MAX,
        elements=[b"\xff" * messages.ELEMENT_BYTES] * MAX_EVALUATE_BATCH,
        used=UINT64_MAX,
        proof=b"\xff" * PROOF_BYTES,
    )
    assert response.ByteSize() == messages.EVALUATE_RESPONSE_BYTES


def test_a_chunk_of_empty_items_is_refused_by_its_field_count() -> None:
    # A round id and 8197 empty items: 16 KB, small, but one field more than a chunk may hold.
    empties = pb_coordinator.SubmissionChunk(
        round_id="r1", items=[pb_coordinator.SubmittedToken()] * (MAX_CHUNK_ITEMS + 5)
    ).SerializeToString()
    with pytest.raises(LimitExceeded, match="UploadChunks: a request of more than 8197 fields is over the limit"):
        check_wire(empties, messages.CHUNK_REQUEST, what="UploadChunks")


def test_one_byte_over_the_limit_is_refused() -> None:
    with pytest.raises(LimitExceeded, match="GetRound: a request of 65537 bytes is over the limit of 65536"):
        check_wire(b"\x00" * (SMALL_REQUEST.max_bytes + 1), SMALL_REQUEST, what="GetRound")


@pytest.mark.parametrize(
    "data, reason",
    [
        (b"\x1a\x05ab", "truncated"),  # A length past the end.
        (b"\x08\x01\x1a\x85", "truncated"),  # A length whose second byte is missing.
        (b"\x08\xff\xff", "truncated"),  # A varint that never ends.
        (b"\x0b" * 20, "wire type 3"),  # Groups: not used by any alliance-psi message.
        (b"\x08" + b"\xff" * 11 + b"\x01", "longer than 10 bytes"),
    ],
)
def test_broken_wire_format_is_an_invalid_request(data: bytes, reason: str) -> None:
    with pytest.raises(InvalidRequest, match=reason):
        check_wire(data, WireLimit(max_bytes=100, max_fields=1), what="M")


@pytest.mark.parametrize("length", [0, 127, 128, 300, 16383, 16384, 70000], ids=lambda n: f"{n} bytes")
def test_fields_are_counted_whatever_the_length_of_their_keys_and_lengths(length: int) -> None:
    # Lengths of one, two and three varint bytes, keys of one byte (field 3) and two (field 16).
    def field(number: int) -> bytes:
        key = number << 3 | 2
        return _varint(key) + _varint(length) + b"x" * length

    data = field(3) + field(16) + field(3) + b"\x08\x96\x01"  # And a varint field: 4 fields.
    check_wire(data, WireLimit(max_bytes=len(data), max_fields=4), what="M")
    if len(data) > 2 * 3:
        with pytest.raises(LimitExceeded, match="more than 3 fields"):
            check_wire(data, WireLimit(max_bytes=len(data), max_fields=3), what="M")
    cut = field(3) + field(16)[:-1]  # The second field one byte short.
    with pytest.raises(InvalidRequest, match="truncated"):
        check_wire(cut, WireLimit(max_bytes=len(cut), max_fields=1), what="M")


def _varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    return bytes([*out, value])


def test_short_requests_are_not_walked() -> None:
    # Too short to hold more than max_fields fields: accepted as is (the decoder judges the rest).
    check_wire(b"\x0b\x0b", WireLimit(max_bytes=100, max_fields=1), what="M")


def test_chunk_from_pb_counts_before_it_builds_tuples() -> None:
    m = pb_coordinator.SubmissionChunk(round_id="r1", removed_tokens=[b"t" * 16] * (MAX_CHUNK_ITEMS + 1))
    with pytest.raises(InvalidRequest, match="must hold 1 to 8192 items and removals, got 8193"):
        messages.chunk_from_pb(m)


def test_evaluate_from_pb_checks_count_and_element_sizes() -> None:
    with pytest.raises(InvalidRequest, match="empty batch"):
        messages.evaluate_from_pb(pb_custodian.EvaluateRequest(key_epoch="e"))
    with pytest.raises(InvalidRequest, match="batch of 8193 elements; at most 8192"):
        messages.evaluate_from_pb(
            pb_custodian.EvaluateRequest(key_epoch="e", elements=[b""] * (MAX_EVALUATE_BATCH + 1))
        )
    with pytest.raises(InvalidRequest, match="element 1: must be 32 bytes, got 0"):
        messages.evaluate_from_pb(pb_custodian.EvaluateRequest(key_epoch="e", elements=[b"x" * 32, b""]))


def test_a_chunk_goes_through_its_message_unchanged() -> None:
    # Items with and without a label, removals, a delta's sequence: the message is the one made of
    # separately built items (the same bytes on the wire), and reads back as the chunk sent.
    items = ((b"a" * 16, b"L" * SEALED_LABEL_BYTES), (b"b" * 16, None), (b"c" * 16, b"M" * SEALED_LABEL_BYTES))
    chunk = Chunk("r1", 3, items, b"d" * 32, (b"e" * 16, b"f" * 16), replace=False, sequence=7)
    separately = pb_coordinator.SubmissionChunk(
        round_id="r1",
        chunk_index=3,
        chunk_digest=b"d" * 32,
        items=[pb_coordinator.SubmittedToken(match_token=t, sealed_label=label or b"") for t, label in items],
        removed_tokens=[b"e" * 16, b"f" * 16],
        delta=True,
        sequence=7,
    )
    message = messages.chunk_to_pb(chunk)
    assert message.SerializeToString(deterministic=True) == separately.SerializeToString(deterministic=True)
    assert messages.chunk_from_pb(message) == chunk
