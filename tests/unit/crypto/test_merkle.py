"""RFC 9162 Merkle trees against transparency-dev/merkle's vectors, and properties over random trees."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alliance_psi.crypto.merkle import (
    EMPTY_ROOT,
    MemoryTree,
    TreeBuilder,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root_of,
    verify_consistency,
    verify_inclusion,
)
from alliance_psi.errors import InvalidProof
from tests.helpers.vectors import VECTORS, load_json

TREE = load_json("rfc9162/transparency-dev-merkle/tree.json")
LEAVES = [bytes.fromhex(x) for x in TREE["leaf_inputs"]]
_PROBES = VECTORS / "rfc9162" / "transparency-dev-merkle"


def h(value: str) -> bytes:
    return bytes.fromhex(value)


def _b64(value: str | None) -> bytes:
    return base64.b64decode(value or "")


def _probes(kind: str) -> list[tuple[str, dict[str, Any]]]:
    return [
        (str(path.relative_to(_PROBES / kind)), load_json(str(path.relative_to(VECTORS))))
        for path in sorted((_PROBES / kind).rglob("*.json"))
    ]


INCLUSION = _probes("inclusion")
CONSISTENCY = _probes("consistency")


def test_vectors_present() -> None:
    assert len(LEAVES) == 8 and len(TREE["roots"]) == 9
    assert len(INCLUSION) == 98 and len(CONSISTENCY) == 98
    assert any(not p["wantErr"] for _, p in INCLUSION) and any(p["wantErr"] for _, p in INCLUSION)
    assert any(not p["wantErr"] for _, p in CONSISTENCY) and any(p["wantErr"] for _, p in CONSISTENCY)


def test_hashing_is_rfc9162() -> None:
    assert EMPTY_ROOT == h(TREE["roots"][0]) == hashlib.sha256(b"").digest()
    assert leaf_hash(b"") == hashlib.sha256(b"\x00").digest()
    assert node_hash(b"l", b"r") == hashlib.sha256(b"\x01lr").digest()


@pytest.mark.parametrize("size", range(9))
def test_tree_heads(size: int) -> None:
    leaves = [leaf_hash(leaf) for leaf in LEAVES[:size]]
    assert root_of(leaves) == h(TREE["roots"][size])
    assert MemoryTree(leaves).root() == h(TREE["roots"][size])


def test_every_complete_subtree() -> None:
    tree = MemoryTree([leaf_hash(leaf) for leaf in LEAVES])
    for level, hashes in enumerate(TREE["node_hashes"]):
        assert [tree.node(level, i) for i in range(len(hashes))] == [h(x) for x in hashes]


@pytest.mark.parametrize("case", TREE["inclusion_proofs"], ids=lambda c: f"{c['index']}:{c['size']}")
def test_inclusion_proof_generation(case: dict[str, Any]) -> None:
    tree = MemoryTree([leaf_hash(leaf) for leaf in LEAVES[: case["size"]]])
    assert tree.inclusion_proof(case["index"]) == [h(x) for x in case["proof"]]


@pytest.mark.parametrize("case", TREE["consistency_proofs"], ids=lambda c: f"{c['size1']}:{c['size2']}")
def test_consistency_proof_generation(case: dict[str, Any]) -> None:
    tree = MemoryTree([leaf_hash(leaf) for leaf in LEAVES[: case["size2"]]])
    assert tree.consistency_proof(case["size1"]) == [h(x) for x in case["proof"]]


@pytest.mark.parametrize("probe", [p for _, p in INCLUSION], ids=[name for name, _ in INCLUSION])
def test_inclusion_verification_probes(probe: dict[str, Any]) -> None:
    proof = [_b64(p) for p in probe["proof"] or []]
    args = (_b64(probe["leafHash"]), probe["leafIdx"], probe["treeSize"], proof, _b64(probe["root"]))
    if probe["wantErr"]:
        with pytest.raises(InvalidProof):
            verify_inclusion(*args)
    else:
        verify_inclusion(*args)


@pytest.mark.parametrize("probe", [p for _, p in CONSISTENCY], ids=[name for name, _ in CONSISTENCY])
def test_consistency_verification_probes(probe: dict[str, Any]) -> None:
    proof = [_b64(p) for p in probe["proof"] or []]
    args = (probe["size1"], probe["size2"], _b64(probe["root1"]), _b64(probe["root2"]), proof)
    if probe["wantErr"]:
        with pytest.raises(InvalidProof):
            verify_consistency(*args)
    else:
        verify_consistency(*args)


def test_generation_refuses_impossible_requests() -> None:
    tree = MemoryTree([leaf_hash(leaf) for leaf in LEAVES])
    with pytest.raises(ValueError, match="not in a tree of 8"):
        inclusion_proof(8, 8, tree.node)
    with pytest.raises(ValueError, match="from 0 to 8"):
        consistency_proof(0, 8, tree.node)
    with pytest.raises(ValueError, match="from 5 to 4"):
        consistency_proof(5, 4, tree.node)
    assert consistency_proof(8, 8, tree.node) == []


# Properties over random trees -------------------------------------------------------------------

sizes = st.integers(min_value=1, max_value=70)


def _tree(size: int) -> MemoryTree:
    return MemoryTree([leaf_hash(i.to_bytes(4, "big")) for i in range(size)])


@settings(max_examples=80)
@given(sizes, st.data())
def test_every_inclusion_proof_verifies_and_no_other_leaf_does(size: int, data: st.DataObject) -> None:
    tree = _tree(size)
    index = data.draw(st.integers(0, size - 1))
    proof = tree.inclusion_proof(index)
    leaf = leaf_hash(index.to_bytes(4, "big"))
    verify_inclusion(leaf, index, size, proof, tree.root())
    with pytest.raises(InvalidProof):
        verify_inclusion(leaf_hash(b"another"), index, size, proof, tree.root())
    if size > 1:
        other = data.draw(st.integers(0, size - 1).filter(lambda i: i != index))
        with pytest.raises(InvalidProof):
            verify_inclusion(leaf, other, size, proof, tree.root())
    if proof:
        flipped = bytearray(proof[-1])
        flipped[0] ^= 1
        with pytest.raises(InvalidProof):
            verify_inclusion(leaf, index, size, [*proof[:-1], bytes(flipped)], tree.root())
        with pytest.raises(InvalidProof):
            verify_inclusion(leaf, index, size, proof[:-1], tree.root())
    with pytest.raises(InvalidProof):
        verify_inclusion(leaf, index, size, [*proof, tree.root()], tree.root())


@settings(max_examples=80)
@given(sizes, st.data())
def test_every_consistency_proof_verifies_and_an_edit_is_caught(size: int, data: st.DataObject) -> None:
    first = data.draw(st.integers(1, size))
    tree = _tree(size)
    earlier = _tree(first)
    proof = tree.consistency_proof(first)
    verify_consistency(first, size, earlier.root(), tree.root(), proof)
    # The same log with one of its first entries edited: no proof links the honest head to it.
    edited_at = data.draw(st.integers(0, first - 1))
    leaves = [leaf_hash(i.to_bytes(4, "big")) for i in range(size)]
    leaves[edited_at] = leaf_hash(b"edited")
    rewritten = MemoryTree(leaves)
    with pytest.raises(InvalidProof):
        verify_consistency(first, size, earlier.root(), rewritten.root(), rewritten.consistency_proof(first))


@settings(max_examples=60)
@given(st.lists(st.binary(max_size=8), max_size=40))
def test_streamed_root_equals_the_definition(items: list[bytes]) -> None:
    def mth(d: list[bytes]) -> bytes:  # RFC 9162 section 2.1.1, recursively, as the RFC writes it.
        if not d:
            return hashlib.sha256(b"").digest()
        if len(d) == 1:
            return leaf_hash(d[0])
        k = 1 << ((len(d) - 1).bit_length() - 1)
        return node_hash(mth(d[:k]), mth(d[k:]))

    builder = TreeBuilder()
    for i, item in enumerate(items):
        assert builder.append(leaf_hash(item)) == i
        assert builder.root() == mth(items[: i + 1])
    assert builder.size == len(items)
    assert MemoryTree([leaf_hash(x) for x in items]).root() == mth(items)
