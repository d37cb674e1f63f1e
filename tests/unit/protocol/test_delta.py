"""The member's delta: one ordered pass over what it wants matched and what it last committed."""

from __future__ import annotations

import pytest

from alliance_psi.protocol.delta import KEEP, PUT, REMOVE, merge_delta


def t(n: int) -> bytes:
    return n.to_bytes(16, "big")


def test_merge_yields_keep_put_and_remove_in_token_order() -> None:
    desired = [(t(1), b"fp1", "row1"), (t(2), b"fp2-new", "row2"), (t(4), b"fp4", "row4")]
    known = [(t(1), b"d1", b"fp1"), (t(2), b"d2", b"fp2"), (t(3), b"d3", b"fp3")]
    assert list(merge_delta(desired, known)) == [
        (KEEP, t(1), b"d1"),  # same label: nothing sent
        (PUT, t(2), (b"fp2-new", "row2")),  # label changed
        (REMOVE, t(3), None),  # withdrawn
        (PUT, t(4), (b"fp4", "row4")),  # new
    ]


def test_merge_of_empty_sides() -> None:
    assert list(merge_delta([], [])) == []
    assert list(merge_delta([(t(1), b"f", 0)], [])) == [(PUT, t(1), (b"f", 0))]
    assert list(merge_delta([], [(t(1), b"d", b"f")])) == [(REMOVE, t(1), None)]


@pytest.mark.parametrize(
    "desired, known",
    [
        ([(t(2), b"", 0), (t(1), b"", 0)], []),
        ([(t(1), b"", 0), (t(1), b"", 0)], []),
        ([], [(t(2), b"", b""), (t(1), b"", b"")]),
    ],
)
def test_merge_refuses_inputs_out_of_order(desired: list, known: list) -> None:  # type: ignore[type-arg]
    with pytest.raises(ValueError, match="unique and in order"):
        list(merge_delta(desired, known))
