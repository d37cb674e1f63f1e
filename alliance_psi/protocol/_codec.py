"""The byte-level pieces the canonical encodings share (results, checkpoints, statements).

``lp`` writes a length-prefixed UTF-8 string, ``I2OSP(len(s), 2) || s``; ``Reader`` reads
fields back and raises ``InvalidRequest`` naming the document for anything that is not exactly
a canonical encoding (truncated, bad UTF-8, trailing bytes).
"""

from __future__ import annotations

from alliance_psi.errors import InvalidRequest

__all__ = ["Reader", "lp"]


def lp(text: str) -> bytes:
    """``I2OSP(len(text), 2) || text`` in UTF-8; ``ValueError`` beyond 65535 bytes."""
    data = text.encode("utf-8")
    if len(data) > 0xFFFF:
        raise ValueError("text longer than 65535 bytes")
    return len(data).to_bytes(2, "big") + data


class Reader:
    """Reads a canonical encoding of ``what`` (named in every error) front to back."""

    def __init__(self, data: bytes, what: str) -> None:
        self.data, self.pos, self.what = data, 0, what

    def fail(self, reason: str) -> InvalidRequest:
        return InvalidRequest(f"malformed {self.what}: {reason}")

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise self.fail("truncated")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def int(self, n: int) -> int:
        return int.from_bytes(self.take(n), "big")

    def text(self) -> str:
        try:
            return self.take(self.int(2)).decode("utf-8")
        except UnicodeDecodeError:
            raise self.fail("bad UTF-8") from None

    def end(self) -> None:
        if self.pos != len(self.data):
            raise self.fail("not in canonical form")
