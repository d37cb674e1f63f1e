"""RFC 9380 Appendix K.3: expand_message_xmd(SHA-512)."""

from __future__ import annotations

import pytest

from alliance_psi.crypto.h2c import XmdExpander, expand_message_xmd
from tests.helpers.vectors import load_rfc_text

_GROUPS = load_rfc_text("rfc9380/expand_message_xmd_sha512.txt")
HEADER = _GROUPS[0]
VECTORS = [g for g in _GROUPS[1:] if "uniform_bytes" in g]
IDS = [f"{v['msg'][:12] or 'empty'}-{v['len_in_bytes']}" for v in VECTORS]


def test_vectors_present() -> None:
    assert len(VECTORS) == 10
    assert HEADER["hash"] == "SHA512"


@pytest.mark.parametrize("v", VECTORS, ids=IDS)
def test_expand_message_xmd(v: dict[str, str]) -> None:
    out = expand_message_xmd(v["msg"].encode(), v["DST"].encode(), int(v["len_in_bytes"], 16))
    assert out == bytes.fromhex(v["uniform_bytes"])


def test_reused_expander_matches_one_shot() -> None:
    expander = XmdExpander(HEADER["DST"].encode())
    for v in VECTORS:
        assert expander.expand(v["msg"].encode(), int(v["len_in_bytes"], 16)) == bytes.fromhex(v["uniform_bytes"])


@pytest.mark.parametrize("length", [0, 255 * 64 + 1, 65536])
def test_out_of_range_lengths_rejected(length: int) -> None:
    with pytest.raises(ValueError, match="out of range"):
        expand_message_xmd(b"abc", b"DST", length)


def test_long_dst_rejected() -> None:
    with pytest.raises(ValueError, match="DST longer than 255"):
        XmdExpander(b"x" * 256)
