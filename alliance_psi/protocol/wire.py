"""Limits on a request's encoding, checked on its raw bytes before protobuf decodes it.

Decoding materialises every element of a repeated field: 2.6 MB of empty ``SubmittedToken``
entries (2 bytes each on the wire) become 1.3 million messages, about 75 MB in protobuf's
arena, before any count could be checked on the decoded message. A ``WireLimit`` therefore bounds
both the bytes of a request and the number of its top-level fields (each element of a repeated
field is one), and ``check_wire`` walks the top level of the encoding without decoding anything,
stopping at the first field over the limit.

The walk is written here because protobuf offers no way to bound a message's fields before
decoding it. It reads only tags and lengths (the protobuf wire format: a varint key, whose low
three bits are the wire type, then a varint, 8 bytes, a varint length and that many bytes, or 4
bytes) and never looks inside a field.
"""

from __future__ import annotations

from dataclasses import dataclass

from alliance_psi.errors import InvalidRequest, LimitExceeded

__all__ = ["SMALL_REQUEST", "WireLimit", "check_wire", "field_bytes", "varint_bytes"]

_VARINT, _FIXED64, _LENGTH_DELIMITED, _FIXED32 = 0, 1, 2, 5
_MIN_FIELD_BYTES = 2  # A key byte and at least one byte of value.


@dataclass(frozen=True, slots=True)
class WireLimit:
    """The largest legal encoding of one request message.

    ``max_bytes`` bounds its size; ``max_fields``, when set, the number of its top-level fields
    (a repeated field counts once per element). Without ``max_fields`` the size alone bounds what
    decoding costs, which is right for small messages.
    """

    max_bytes: int
    max_fields: int | None = None


# Every request without a limit of its own: round ids, names, invitation lists.
SMALL_REQUEST = WireLimit(64 * 1024)


def varint_bytes(value: int) -> int:
    """How many bytes the protobuf varint encoding of ``value`` (>= 0) takes."""
    return max(1, (value.bit_length() + 6) // 7)


def field_bytes(payload: int) -> int:
    """The encoded size of a length-delimited field numbered 1 to 15 with ``payload`` bytes."""
    return 1 + varint_bytes(payload) + payload


def check_wire(data: bytes, limit: WireLimit, *, what: str) -> None:
    """Raise unless ``data`` fits ``limit``; ``what`` names the request in the message.

    Raises:
        LimitExceeded: more bytes or more top-level fields than the limit allows.
        InvalidRequest: the top level of the encoding is not protobuf wire format (only checked
            when fields are counted; the decoder finds the rest).
    """
    if len(data) > limit.max_bytes:
        raise LimitExceeded(f"{what}: a request of {len(data)} bytes is over the limit of {limit.max_bytes}")
    if limit.max_fields is None or len(data) <= _MIN_FIELD_BYTES * limit.max_fields:
        return  # Too short to hold more fields than allowed.
    if _count_fields(data, limit.max_fields) > limit.max_fields:
        raise LimitExceeded(f"{what}: a request of more than {limit.max_fields} fields is over the limit")


def _count_fields(data: bytes, stop_after: int) -> int:
    """Top-level fields of ``data``, counting no further than ``stop_after + 1``.

    A chunk holds thousands of fields, each walked here in Python: one-byte keys and lengths of
    one or two bytes (every key and length of our messages but the largest) are read inline."""
    count, position, end = 0, 0, len(data)
    try:
        while position < end and count <= stop_after:
            key = data[position]
            position += 1
            if key & 0x80:
                key, position = _varint(data, position - 1)
            wire_type = key & 7
            if wire_type == _LENGTH_DELIMITED:
                length = data[position]
                if length < 0x80:
                    position += 1 + length
                elif data[position + 1] < 0x80:
                    position += 2 + ((length & 0x7F) | data[position + 1] << 7)
                else:
                    length, position = _varint(data, position)
                    position += length
            elif wire_type == _VARINT:
                _, position = _varint(data, position)
            elif wire_type == _FIXED64:
                position += 8
            elif wire_type == _FIXED32:
                position += 4
            else:
                raise InvalidRequest(f"wire type {wire_type} is not used by alliance-psi messages")
            count += 1
    except IndexError:
        position = end + 1
    if position > end:
        raise InvalidRequest("the request's encoding is truncated")
    return count


def _varint(data: bytes, position: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[position]
        position += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, position
        shift += 7
        if shift > 63:
            raise InvalidRequest("a varint in the request is longer than 10 bytes")
