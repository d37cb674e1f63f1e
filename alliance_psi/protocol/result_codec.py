"""The canonical encoding of a member's result, and its signature.

One byte string per result, the same for equal results, so that a signature over it means one
thing. Version 1::

    "APSI-RESULT" 0x01
    lp(round_id) lp(member_id) lp(key_epoch)          lp(s) = I2OSP(len(s), 2) || s (UTF-8)
    I2OSP(threshold, 2) I2OSP(submitted_count, 8) I2OSP(len(matches), 4)
    per match, in increasing token order:
        match_token (16) I2OSP(holder_count, 4) I2OSP(len(labels), 2)
        per label, in increasing byte order: I2OSP(len(label), 2) || label

``open_result`` verifies the signature before it parses anything and checks that the result is
for the round and member the caller expects: a member never acts on a result it cannot prove
the coordinator issued for it.
"""

from __future__ import annotations

from alliance_psi.crypto.derive import MATCH_TOKEN_BYTES
from alliance_psi.crypto.signing import SigningKey, verify
from alliance_psi.errors import InvalidRequest, InvalidSignature
from alliance_psi.protocol.model import MatchedToken, MemberResult

__all__ = ["RESULT_CONTEXT", "decode_result", "encode_result", "open_result", "sign_result"]

RESULT_CONTEXT = "result"
_MAGIC = b"APSI-RESULT\x01"


def _lp(text: str) -> bytes:
    data = text.encode("utf-8")
    return len(data).to_bytes(2, "big") + data


def encode_result(result: MemberResult) -> bytes:
    """The canonical bytes of ``result`` (matches and labels sorted here, whatever their order)."""
    parts = [
        _MAGIC,
        _lp(result.round_id),
        _lp(result.member_id),
        _lp(result.key_epoch),
        result.threshold.to_bytes(2, "big"),
        result.submitted_count.to_bytes(8, "big"),
        len(result.matches).to_bytes(4, "big"),
    ]
    for match in sorted(result.matches, key=lambda m: m.match_token):
        parts += [match.match_token, match.holder_count.to_bytes(4, "big"), len(match.peer_labels).to_bytes(2, "big")]
        for label in sorted(match.peer_labels):
            parts += [len(label).to_bytes(2, "big"), label]
    return b"".join(parts)


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise InvalidRequest("malformed result payload: truncated")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def int(self, n: int) -> int:
        return int.from_bytes(self.take(n), "big")

    def text(self) -> str:
        try:
            return self.take(self.int(2)).decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidRequest("malformed result payload: bad UTF-8") from None


def decode_result(payload: bytes) -> MemberResult:
    """Parse canonical bytes; raise ``InvalidRequest`` if they are not exactly that."""
    reader = _Reader(payload)
    if reader.take(len(_MAGIC)) != _MAGIC:
        raise InvalidRequest("malformed result payload: unknown format or version")
    round_id, member_id, key_epoch = reader.text(), reader.text(), reader.text()
    threshold, submitted, count = reader.int(2), reader.int(8), reader.int(4)
    matches = []
    for _ in range(count):
        token, holders = reader.take(MATCH_TOKEN_BYTES), reader.int(4)
        labels = tuple(reader.take(reader.int(2)) for _ in range(reader.int(2)))
        matches.append(MatchedToken(token, holders, labels))
    result = MemberResult(round_id, member_id, key_epoch, threshold, submitted, tuple(matches))
    if reader.pos != len(payload) or encode_result(result) != payload:
        raise InvalidRequest("malformed result payload: not in canonical form")
    return result


def sign_result(key: SigningKey, result: MemberResult) -> tuple[bytes, bytes]:
    """Return ``(payload, signature)`` for ``result``."""
    payload = encode_result(result)
    return payload, key.sign(RESULT_CONTEXT, payload)


def open_result(public_key: bytes, payload: bytes, signature: bytes, *, round_id: str, member_id: str) -> MemberResult:
    """Verify, parse and check a result meant for ``member_id`` in ``round_id``.

    Raises ``InvalidSignature`` if the signature does not verify or the result is for another
    round or member, and ``InvalidRequest`` if a signed payload is malformed.
    """
    verify(public_key, RESULT_CONTEXT, payload, signature)
    result = decode_result(payload)
    if result.round_id != round_id or result.member_id != member_id:
        raise InvalidSignature(
            f"result is for round {result.round_id!r} and member {result.member_id!r}, "
            f"expected {round_id!r} and {member_id!r}"
        )
    return result
