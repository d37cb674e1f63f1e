"""RFC 9162 Merkle hash trees (section 2.1): tree heads, inclusion and consistency proofs.

The hashing is exactly RFC 9162's (and RFC 6962's) with SHA-256::

    MTH({})   = SHA-256()
    MTH({d0}) = SHA-256(0x00 || d0)                                  (the leaf hash)
    MTH(D[n]) = SHA-256(0x01 || MTH(D[0:k]) || MTH(D[k:n]))          k: largest power of 2 < n

so a leaf can never be taken for an interior node. Results (one leaf per matched token) and
the audit log (one leaf per entry) are trees of this kind; a signed tree head commits to every
leaf, an inclusion proof shows one leaf is in it with log2(n) hashes, and a consistency proof
shows a later tree extends an earlier one (nothing edited, removed or reordered).

Building proofs needs the hashes of complete, aligned subtrees ("nodes"): ``NodeSource`` gives
the hash of the subtree of ``2**level`` leaves starting at leaf ``index * 2**level``. The audit
log keeps these in its database; ``MemoryTree`` builds them from a list of leaf hashes, and
``TreeBuilder`` computes a root over a stream of leaves in O(log n) memory.

Hand-written rather than taken from a library: no maintained Python package implements RFC 9162
proofs over an external node store, and the algorithms are short enough to check line by line
against the RFC's pseudo-code, which sits above the code that implements it. The vectors of
transparency-dev/merkle (tests/vectors/rfc9162) check them.

Verification raises ``InvalidProof``; it never returns a boolean. Hashes are public values, so
comparisons need not be constant time.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence

from alliance_psi.errors import InvalidProof

__all__ = [
    "EMPTY_ROOT",
    "HASH_BYTES",
    "MemoryTree",
    "NodeSource",
    "TreeBuilder",
    "consistency_proof",
    "inclusion_proof",
    "leaf_hash",
    "node_hash",
    "root_of",
    "subtree_hash",
    "verify_consistency",
    "verify_inclusion",
]

HASH_BYTES = 32
_LEAF, _NODE = b"\x00", b"\x01"

# MTH({}) = HASH()
EMPTY_ROOT = hashlib.sha256(b"").digest()

# The hash of the complete subtree of 2**level leaves whose first leaf is index * 2**level.
NodeSource = Callable[[int, int], bytes]


def leaf_hash(leaf: bytes) -> bytes:
    """MTH({d(0)}) = HASH(0x00 || d(0))."""
    return hashlib.sha256(_LEAF + leaf).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """HASH(0x01 || left || right)."""
    return hashlib.sha256(_NODE + left + right).digest()


def _split(n: int) -> int:
    """k, the largest power of two smaller than ``n`` (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


def subtree_hash(nodes: NodeSource, start: int, end: int) -> bytes:
    """MTH(D[start:end]) for a range of the kind RFC 9162's proofs use.

    ``start`` must be a multiple of the smallest power of two at least ``end - start`` (every
    range ``PATH`` and ``SUBPROOF`` visit is), so the range is complete subtrees of ``nodes``.
    """
    n = end - start
    if n <= 0:
        raise ValueError(f"empty or reversed range [{start}, {end})")
    if n & (n - 1) == 0:
        level = n.bit_length() - 1
        if start % n:
            raise ValueError(f"range [{start}, {end}) is not aligned")
        return nodes(level, start >> level)
    # MTH(D[n]) = HASH(0x01 || MTH(D[0:k]) || MTH(D[k:n]))
    k = _split(n)
    return node_hash(subtree_hash(nodes, start, start + k), subtree_hash(nodes, start + k, end))


def inclusion_proof(index: int, size: int, nodes: NodeSource) -> list[bytes]:
    """PATH(m, D[n]) of RFC 9162 section 2.1.3.1, for leaf ``index`` in the tree of ``size`` leaves.

    Raises ``ValueError`` unless ``0 <= index < size``.
    """
    if not 0 <= index < size:
        raise ValueError(f"leaf index {index} is not in a tree of {size} leaves")
    return _path(index, 0, size, nodes)


def _path(m: int, start: int, n: int, nodes: NodeSource) -> list[bytes]:
    # PATH(0, {d(0)}) = {}
    if n == 1:
        return []
    k = _split(n)
    if m < k:
        # PATH(m, D[n]) = PATH(m, D[0:k]) : MTH(D[k:n])     for m < k
        return [*_path(m, start, k, nodes), subtree_hash(nodes, start + k, start + n)]
    # PATH(m, D[n]) = PATH(m - k, D[k:n]) : MTH(D[0:k])     for m >= k
    return [*_path(m - k, start + k, n - k, nodes), subtree_hash(nodes, start, start + k)]


def consistency_proof(first: int, second: int, nodes: NodeSource) -> list[bytes]:
    """PROOF(m, D[n]) of RFC 9162 section 2.1.4.1, from the tree of ``first`` leaves to ``second``.

    Equal sizes give the empty proof. Raises ``ValueError`` unless ``0 < first <= second``.
    """
    if not 0 < first <= second:
        raise ValueError(f"no consistency proof from {first} to {second} leaves")
    if first == second:
        return []
    # PROOF(m, D[n]) = SUBPROOF(m, D[n], true)
    return _subproof(first, 0, second, True, nodes)


def _subproof(m: int, start: int, n: int, b: bool, nodes: NodeSource) -> list[bytes]:
    if m == n:
        # SUBPROOF(m, D[m], true) = {}; SUBPROOF(m, D[m], false) = {MTH(D[m])}
        return [] if b else [subtree_hash(nodes, start, start + m)]
    k = _split(n)
    if m <= k:
        # SUBPROOF(m, D[n], b) = SUBPROOF(m, D[0:k], b) : MTH(D[k:n])            for m <= k
        return [*_subproof(m, start, k, b, nodes), subtree_hash(nodes, start + k, start + n)]
    # SUBPROOF(m, D[n], b) = SUBPROOF(m - k, D[k:n], false) : MTH(D[0:k])       for m > k
    return [*_subproof(m - k, start + k, n - k, False, nodes), subtree_hash(nodes, start, start + k)]


def _lsb(value: int) -> bool:
    return bool(value & 1)


def verify_inclusion(leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes) -> None:
    """RFC 9162 section 2.1.3.2: check that ``leaf`` (a leaf hash) is leaf ``index`` of the tree
    of ``size`` leaves whose head is ``root``.

    Raises:
        InvalidProof: the proof does not verify, or the sizes or hashes are malformed.
    """
    if len(leaf) != HASH_BYTES or any(len(p) != HASH_BYTES for p in proof):
        raise InvalidProof("inclusion proof: hashes must be 32 bytes")
    # 1. If leaf_index is greater than or equal to tree_size, then fail the proof verification.
    if not 0 <= index < size:
        raise InvalidProof(f"inclusion proof: leaf {index} is not in a tree of {size} leaves")
    # 2. Set fn to leaf_index and sn to tree_size - 1.
    fn, sn = index, size - 1
    # 3. Set r to hash.
    r = leaf
    # 4. For each value p in the inclusion_path array:
    for p in proof:
        # If sn is 0, then stop the iteration and fail the proof verification.
        if sn == 0:
            raise InvalidProof("inclusion proof: longer than the path to the root")
        # If LSB(fn) is set, or if fn is equal to sn, then:
        if _lsb(fn) or fn == sn:
            # 1. Set r to HASH(0x01 || p || r).
            r = node_hash(p, r)
            # 2. If LSB(fn) is not set, then right-shift both fn and sn equally until either
            #    LSB(fn) is set or fn is 0.
            while not _lsb(fn) and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        # Otherwise: Set r to HASH(0x01 || r || p).
        else:
            r = node_hash(r, p)
        # Finally, right-shift both fn and sn one time.
        fn, sn = fn >> 1, sn >> 1
    # 5. If sn is equal to 0 and r and the root_hash are equal, then the log has proven the
    #    inclusion of hash. Otherwise, fail the proof verification.
    if sn != 0:
        raise InvalidProof("inclusion proof: shorter than the path to the root")
    if r != root:
        raise InvalidProof("inclusion proof: does not lead to the signed root")


def verify_consistency(first: int, second: int, first_root: bytes, second_root: bytes, proof: Sequence[bytes]) -> None:
    """RFC 9162 section 2.1.4.2: check that the tree of ``second`` leaves with head
    ``second_root`` extends the tree of ``first`` leaves with head ``first_root``.

    The RFC's algorithm covers ``0 < first < second``. Outside it, as transparency-dev/merkle
    does: equal sizes need an empty proof and equal heads; a tree of 0 leaves proves nothing
    and is refused, as is ``first > second``.

    Raises:
        InvalidProof: the proof does not verify, or the sizes or hashes are malformed.
    """
    if not 0 < first <= second:
        raise InvalidProof(f"consistency proof: no proof from {first} to {second} leaves")
    if first == second:
        if proof or first_root != second_root:
            raise InvalidProof(f"consistency proof: two different heads for {first} leaves")
        return
    if any(len(h) != HASH_BYTES for h in (first_root, second_root, *proof)):
        raise InvalidProof("consistency proof: hashes must be 32 bytes")
    # 1. If consistency_path is an empty array, stop and fail the proof verification.
    if not proof:
        raise InvalidProof("consistency proof: empty")
    path = list(proof)
    # 2. If first is an exact power of 2, then prepend first_hash to the consistency_path array.
    if first & (first - 1) == 0:
        path.insert(0, first_root)
    # 3. Set fn to first - 1 and sn to second - 1.
    fn, sn = first - 1, second - 1
    # 4. If LSB(fn) is set, then right-shift both fn and sn equally until LSB(fn) is not set.
    while _lsb(fn):
        fn, sn = fn >> 1, sn >> 1
    # 5. Set both fr and sr to the first value in the consistency_path array.
    fr = sr = path[0]
    # 6. For each subsequent value c in the consistency_path array:
    for c in path[1:]:
        # If sn is 0, then stop the iteration and fail the proof verification.
        if sn == 0:
            raise InvalidProof("consistency proof: longer than the path to the root")
        # If LSB(fn) is set, or if fn is equal to sn, then:
        if _lsb(fn) or fn == sn:
            # 1. Set fr to HASH(0x01 || c || fr).  2. Set sr to HASH(0x01 || c || sr).
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            # 3. If LSB(fn) is not set, then right-shift both fn and sn equally until either
            #    LSB(fn) is set or fn is 0.
            while not _lsb(fn) and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        # Otherwise: Set sr to HASH(0x01 || sr || c).
        else:
            sr = node_hash(sr, c)
        # Finally, right-shift both fn and sn one time.
        fn, sn = fn >> 1, sn >> 1
    # 7. Verify that the fr calculated is equal to the first_hash supplied, that the sr
    #    calculated is equal to the second_hash supplied, and that sn is 0.
    if sn != 0:
        raise InvalidProof("consistency proof: shorter than the path to the root")
    if fr != first_root:
        raise InvalidProof(f"consistency proof: the first {first} leaves do not have the earlier head")
    if sr != second_root:
        raise InvalidProof(f"consistency proof: does not lead to the head of {second} leaves")


class TreeBuilder:
    """MTH over leaves appended one at a time, in O(log n) memory.

    It keeps the hashes of the complete subtrees the leaves so far make up, largest first (the
    "compact range" of the tree), so ``root()`` is available after any number of leaves.
    """

    def __init__(self, on_node: Callable[[int, int, bytes], None] | None = None) -> None:
        """``on_node(level, index, hash)`` is called for each complete interior subtree as it closes."""
        self._size = 0
        # The compact range: one hash per set bit of the size, largest subtree first.
        self._stack: list[bytes] = []
        self._on_node = on_node

    @property
    def size(self) -> int:
        return self._size

    def append(self, leaf: bytes) -> int:
        """Append the leaf hash ``leaf``; return its index."""
        index = remaining = self._size
        current, level, stack = leaf, 0, self._stack
        # Each trailing one-bit of the size is a complete subtree of that level, which the new
        # leaf's subtree completes into one of the next level (the binary carry).
        while remaining & 1:
            current = hashlib.sha256(_NODE + stack.pop() + current).digest()
            level, remaining = level + 1, remaining >> 1
            if self._on_node is not None:
                self._on_node(level, index >> level, current)
        stack.append(current)
        self._size = index + 1
        return index

    def extend(self, leaves: Iterable[bytes]) -> None:
        for leaf in leaves:
            self.append(leaf)

    def root(self) -> bytes:
        """MTH of the leaves appended so far (``EMPTY_ROOT`` for none)."""
        if not self._stack:
            return EMPTY_ROOT
        # The right-most subtrees combine first: MTH(D[k:n]) is the right child at each split.
        current = self._stack[-1]
        for left in reversed(self._stack[:-1]):
            current = node_hash(left, current)
        return current


class MemoryTree:
    """Every complete subtree of a list of leaf hashes, for proofs over a tree held in memory.

    Memory is about twice the leaf hashes; for trees too large for that, keep the nodes in a
    database and pass a ``NodeSource`` to the proof functions instead.
    """

    def __init__(self, leaves: Sequence[bytes]) -> None:
        levels = [list(leaves)]
        while len(levels[-1]) > 1:
            below = levels[-1]
            levels.append([node_hash(below[i], below[i + 1]) for i in range(0, len(below) - 1, 2)])
        self._levels = levels

    @property
    def size(self) -> int:
        return len(self._levels[0])

    def node(self, level: int, index: int) -> bytes:
        """The ``NodeSource`` of this tree."""
        return self._levels[level][index]

    def root(self) -> bytes:
        return subtree_hash(self.node, 0, self.size) if self.size else EMPTY_ROOT

    def inclusion_proof(self, index: int) -> list[bytes]:
        return inclusion_proof(index, self.size, self.node)

    def consistency_proof(self, first: int) -> list[bytes]:
        return consistency_proof(first, self.size, self.node)


def root_of(leaves: Iterable[bytes]) -> bytes:
    """MTH over leaf hashes, streamed (``TreeBuilder``)."""
    builder = TreeBuilder()
    builder.extend(leaves)
    return builder.root()
