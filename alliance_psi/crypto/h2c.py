"""RFC 9380 section 5.3.1 ``expand_message_xmd``.

Hand-written because neither ``cryptography`` nor libsodium exposes it, and it is a few lines of
SHA-2 over fixed framing. It is checked against RFC 9380 Appendix K.3 in the tests.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

__all__ = ["XmdExpander", "expand_message_xmd"]


class XmdExpander:
    """``expand_message_xmd`` for one hash function and one DST, with the constant prefix hashed once.

    Reusing the expander for many messages is what makes hashing millions of identifiers cheap:
    ``Z_pad`` is exactly one input block of the hash, so its compression is done once and copied.
    """

    def __init__(self, dst: bytes, hash_name: str = "sha512") -> None:
        new: Callable[..., Any] = getattr(hashlib, hash_name)
        probe = new()
        self._new = new
        self._b_in_bytes = probe.digest_size
        self._s_in_bytes = probe.block_size
        # ABORT if len(DST) > 255 (the long-DST rule of section 5.3.3 is not needed here).
        if len(dst) > 255:
            raise ValueError("DST longer than 255 bytes")
        # DST_prime = DST || I2OSP(len(DST), 1)
        self._dst_prime = dst + bytes([len(dst)])
        # Z_pad = I2OSP(0, s_in_bytes)
        self._z_pad_state = new(bytes(self._s_in_bytes))

    def expand(self, msg: bytes, len_in_bytes: int) -> bytes:
        """Return ``len_in_bytes`` uniform bytes derived from ``msg``."""
        b_in_bytes = self._b_in_bytes
        # ell = ceil(len_in_bytes / b_in_bytes)
        ell = -(-len_in_bytes // b_in_bytes)
        # ABORT if ell > 255 or len_in_bytes > 65535
        if ell > 255 or len_in_bytes > 65535 or len_in_bytes <= 0:
            raise ValueError("requested length out of range for expand_message_xmd")
        dst_prime = self._dst_prime
        # msg_prime = Z_pad || msg || l_i_b_str || I2OSP(0, 1) || DST_prime
        h0 = self._z_pad_state.copy()
        h0.update(msg)
        h0.update(len_in_bytes.to_bytes(2, "big") + b"\x00" + dst_prime)
        # b_0 = H(msg_prime)
        b_0 = h0.digest()
        # b_1 = H(b_0 || I2OSP(1, 1) || DST_prime)
        b_i = self._new(b_0 + b"\x01" + dst_prime).digest()
        if ell == 1:
            return bytes(b_i[:len_in_bytes])
        blocks = [b_i]
        b0_int = int.from_bytes(b_0, "big")
        for i in range(2, ell + 1):
            # b_i = H(strxor(b_0, b_(i - 1)) || I2OSP(i, 1) || DST_prime)
            mixed = (b0_int ^ int.from_bytes(b_i, "big")).to_bytes(b_in_bytes, "big")
            b_i = self._new(mixed + bytes([i]) + dst_prime).digest()
            blocks.append(b_i)
        # uniform_bytes = b_1 || ... || b_ell; return substr(uniform_bytes, 0, len_in_bytes)
        return b"".join(blocks)[:len_in_bytes]


def expand_message_xmd(msg: bytes, dst: bytes, len_in_bytes: int, hash_name: str = "sha512") -> bytes:
    """One-shot ``expand_message_xmd(msg, DST, len_in_bytes)`` (RFC 9380 section 5.3.1)."""
    return XmdExpander(dst, hash_name).expand(msg, len_in_bytes)
