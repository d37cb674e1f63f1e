"""A member's result as a Merkle tree: a small signed header and one leaf per matched token.

A result can hold a million matched tokens with peer labels (hundreds of MB), so it is never one
message nor one signature over one blob. The coordinator signs a **header** that commits to the
**leaves** through their RFC 9162 Merkle tree head (``crypto.merkle``); the leaves travel in
pages after the header, and the member recomputes the root over every page before it keeps
anything. One lead is provable to an outsider with only the coordinator's public key: the signed
header, its leaf and the leaf's inclusion proof (``verify_lead``).

Canonical encodings (one byte string per value, so a signature means one thing), version 5::

    header = "APSI-RESULT" 0x05
             lp(round_id) lp(member_id) lp(key_epoch)          lp(s) = I2OSP(len(s), 2) || s (UTF-8)
             I2OSP(threshold, 2) I2OSP(label_cap, 2)           label_cap: peer labels per leaf at most (0: none)
             I2OSP(submitted_count, 8) I2OSP(match_count, 8)
             root (32)                                         MTH over the leaves, in token order
             lp(checkpoint) checkpoint_signature (64)          the audit log's signed head after matching
             I2OSP(audit_index, 8)                             the log entry that issued this result
             I2OSP(len(pin), 1) || pin                         the member's enrolled key pin (32), or none (0)
    leaf   = match_token (16) I2OSP(holder_count, 4) I2OSP(len(labels), 2)
             per peer label, in increasing (sealed, sealer) order:
                 I2OSP(len(sealed), 2) || sealed || lp(sealer)    sealer "": not named

Headers of version 4 (before label caps) are still read, as a cap of 0: results kept before stay
readable for reports. A leaf carries at most ``label_cap`` labels (``protocol.label_cap``); the
label checks then prove ``min(holder_count, label_cap + 1)`` holders.

Leaves are in strictly increasing token order; leaf ``i`` is leaf ``i`` of the tree. The
header's signature uses the context ``"result"`` (``crypto.signing``). The key pin is the SHA-256
of the SubjectPublicKeyInfo the coordinator enrolled for the member when it signed
(``services.pki.spki_sha256``): it binds the result to the key the member's reports are signed
with, so a certificate the CA holder minted for the member's name with another key cannot sign a
report that verifies against this result.

Results are checked against the audit log: the coordinator's ``result.issue`` entry for the
result (leaf ``audit_index`` of the log) holds its root and count, and the header carries the
checkpoint (``protocol.checkpoints``) in which that entry is included. The entry and its
inclusion proof travel beside the header (``SignedResultHeader``); ``check_issue_entry`` checks
them, so a result the log does not record is refused.

Every check raises: ``InvalidSignature`` for a header that does not verify or is for someone
else, ``InvalidRequest`` for bytes that are not canonical, ``ResultMismatch`` for leaves that
do not add up to the signed header.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import pairwise

from alliance_psi.crypto.derive import MATCH_TOKEN_BYTES
from alliance_psi.crypto.merkle import HASH_BYTES, MemoryTree, TreeBuilder, leaf_hash, verify_inclusion
from alliance_psi.crypto.signing import SigningKey, verify
from alliance_psi.errors import InvalidProof, InvalidRequest, InvalidSignature, ResultMismatch
from alliance_psi.protocol._codec import Reader, lp
from alliance_psi.protocol.checkpoints import SignedCheckpoint, decode_checkpoint, open_checkpoint
from alliance_psi.protocol.model import MatchedToken, MemberResult, PeerLabel

__all__ = [
    "KEY_PIN_BYTES",
    "PAGE_BYTES",
    "RESULT_CONTEXT",
    "RESULT_FORMAT_VERSION",
    "LeafPage",
    "LeafProof",
    "LeafVerifier",
    "ResultBuilder",
    "ResultHeader",
    "SignedResultHeader",
    "check_issue_entry",
    "check_leaf",
    "decode_header",
    "decode_leaf",
    "encode_header",
    "encode_leaf",
    "holder_leaves",
    "lead_proofs",
    "open_header",
    "reopen_result",
    "result_tree",
    "sign_header",
    "verify_lead",
]

RESULT_CONTEXT = "result"
_SIGNATURE_BYTES = 64
RESULT_FORMAT_VERSION = 5  # 3: the audit log's checkpoint; 4: the member's key pin; 5: the label cap.
_READ_VERSIONS = (4, RESULT_FORMAT_VERSION)
_MAGIC = b"APSI-RESULT"
_HEADER_PREFIX = _MAGIC + bytes([RESULT_FORMAT_VERSION])
# A page of leaves stays far below any gRPC message limit: 256 KiB of leaves, or one leaf if a
# single leaf is larger (a token held by about 850 members, each with a label).
PAGE_BYTES = 256 * 1024
KEY_PIN_BYTES = 32


@dataclass(frozen=True, slots=True)
class ResultHeader:
    """What the coordinator signs for one member's result (see the module docstring)."""

    round_id: str
    member_id: str
    key_epoch: str
    threshold: int
    submitted_count: int
    match_count: int
    root: bytes
    checkpoint: SignedCheckpoint
    audit_index: int
    member_key_pin: bytes = b""  # SHA-256 of the member's enrolled SPKI, or b"" if it has none.
    label_cap: int = 0  # Peer labels per leaf at most (``protocol.label_cap``); 0: no cap.


@dataclass(frozen=True, slots=True)
class SignedResultHeader:
    """The header as sent: its canonical bytes, the coordinator's signature and key id, and the
    audit-log entry that issued the result with its inclusion proof in the header's checkpoint."""

    header: bytes
    signature: bytes
    key_id: str
    audit_entry: bytes = b""
    audit_proof: tuple[bytes, ...] = ()


@dataclass(frozen=True, slots=True)
class LeafPage:
    """Consecutive leaves of a result (canonical bytes), the first being leaf ``first_leaf``."""

    page_index: int
    first_leaf: int
    leaves: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class LeafProof:
    """One leaf with its index and RFC 9162 inclusion proof in the result's tree."""

    index: int
    leaf: bytes
    proof: tuple[bytes, ...]


# Headers -----------------------------------------------------------------------------------------


def encode_header(header: ResultHeader) -> bytes:
    """The canonical bytes of ``header``."""
    if len(header.root) != HASH_BYTES:
        raise ValueError("root must be 32 bytes")
    if len(header.member_key_pin) not in (0, KEY_PIN_BYTES):
        raise ValueError(f"a member key pin is {KEY_PIN_BYTES} bytes (or none)")
    return b"".join(
        [
            _HEADER_PREFIX,
            lp(header.round_id),
            lp(header.member_id),
            lp(header.key_epoch),
            header.threshold.to_bytes(2, "big"),
            header.label_cap.to_bytes(2, "big"),
            header.submitted_count.to_bytes(8, "big"),
            header.match_count.to_bytes(8, "big"),
            header.root,
            len(header.checkpoint.body).to_bytes(2, "big"),
            header.checkpoint.body,
            header.checkpoint.signature,
            header.audit_index.to_bytes(8, "big"),
            len(header.member_key_pin).to_bytes(1, "big"),
            header.member_key_pin,
        ]
    )


def decode_header(data: bytes) -> ResultHeader:
    """Parse canonical header bytes; raise ``InvalidRequest`` if they are anything else."""
    reader = Reader(data, "result header")
    if reader.take(len(_MAGIC)) != _MAGIC or (version := reader.int(1)) not in _READ_VERSIONS:
        raise reader.fail(f"unknown format or version (this node reads versions {_READ_VERSIONS})")
    round_id, member_id, key_epoch = reader.text(), reader.text(), reader.text()
    threshold = reader.int(2)
    label_cap = reader.int(2) if version >= 5 else 0
    submitted, count, root = reader.int(8), reader.int(8), reader.take(HASH_BYTES)
    checkpoint = SignedCheckpoint(reader.take(reader.int(2)), reader.take(_SIGNATURE_BYTES))
    audit_index, pin_length = reader.int(8), reader.int(1)
    if pin_length not in (0, KEY_PIN_BYTES):
        raise reader.fail(f"a member key pin is {KEY_PIN_BYTES} bytes or none, not {pin_length}")
    pin = reader.take(pin_length)
    header = ResultHeader(
        round_id, member_id, key_epoch, threshold, submitted, count, root, checkpoint, audit_index, pin, label_cap
    )
    reader.end()
    return header


def sign_header(key: SigningKey, header: ResultHeader) -> SignedResultHeader:
    """Encode and sign ``header`` with the coordinator's key."""
    data = encode_header(header)
    return SignedResultHeader(data, key.sign(RESULT_CONTEXT, data), key.key_id)


def open_header(
    public_key: bytes, data: bytes, signature: bytes, *, round_id: str | None = None, member_id: str | None = None
) -> ResultHeader:
    """Verify, parse and check a signed header (meant for ``member_id`` in ``round_id`` when given).

    The signature is checked before anything is parsed, then the embedded checkpoint's. Raises
    ``InvalidSignature`` if either does not verify or the header is for another round or
    member, and ``InvalidRequest`` if signed bytes are malformed.
    """
    try:
        verify(public_key, RESULT_CONTEXT, data, signature)
    except InvalidSignature as exc:
        raise InvalidSignature(f"the coordinator's signature over the result header: {exc}") from None
    header = decode_header(data)
    open_checkpoint(public_key, header.checkpoint)
    if (round_id is not None and header.round_id != round_id) or (
        member_id is not None and header.member_id != member_id
    ):
        raise InvalidSignature(
            f"result is for round {header.round_id!r} and member {header.member_id!r}, "
            f"expected {round_id!r} and {member_id!r}"
        )
    return header


# Leaves ------------------------------------------------------------------------------------------


def _label_key(label: PeerLabel) -> tuple[bytes, str]:
    return (label.sealed, label.sealer or "")


def encode_leaf(match: MatchedToken) -> bytes:
    """The canonical bytes of one matched token (labels sorted here, whatever their order)."""
    if len(match.match_token) != MATCH_TOKEN_BYTES:
        raise ValueError(f"match token must be {MATCH_TOKEN_BYTES} bytes")
    parts = [match.match_token, match.holder_count.to_bytes(4, "big"), len(match.peer_labels).to_bytes(2, "big")]
    for label in sorted(match.peer_labels, key=_label_key):
        parts += [len(label.sealed).to_bytes(2, "big"), label.sealed, lp(label.sealer or "")]
    return b"".join(parts)


def holder_leaves(match_token: bytes, holder_count: int, labels: Sequence[PeerLabel | None]) -> list[bytes]:
    """The leaf of each holder of ``match_token``, one per entry of ``labels`` (that holder's own
    label, or None), in the same order: holder ``i``'s leaf carries every other holder's label,
    and is byte for byte ``encode_leaf(MatchedToken(match_token, holder_count, peers of i))``.

    The coordinator's matching step builds every leaf of a token at once this way: the labels
    are encoded and sorted once, not once per holder, and holders without a label of their own
    (every holder, in a round that does not share labels) share one leaf object.
    """
    if len(match_token) != MATCH_TOKEN_BYTES:
        raise ValueError(f"match token must be {MATCH_TOKEN_BYTES} bytes")
    prefix = match_token + holder_count.to_bytes(4, "big")
    pieces = sorted(
        (_label_key(label), holder, len(label.sealed).to_bytes(2, "big") + label.sealed + lp(label.sealer or ""))
        for holder, label in enumerate(labels)
        if label is not None
    )
    everyone = prefix + len(pieces).to_bytes(2, "big") + b"".join(piece for _, _, piece in pieces)
    leaves = [everyone] * len(labels)
    if pieces:
        others = (len(pieces) - 1).to_bytes(2, "big")
        for position, (_, holder, _) in enumerate(pieces):
            rest = b"".join(piece for index, (_, _, piece) in enumerate(pieces) if index != position)
            leaves[holder] = prefix + others + rest
    return leaves


def decode_leaf(data: bytes) -> MatchedToken:
    """Parse canonical leaf bytes; raise ``InvalidRequest`` if they are anything else."""
    reader = Reader(data, "result leaf")
    token, holders = reader.take(MATCH_TOKEN_BYTES), reader.int(4)
    labels = []
    for _ in range(reader.int(2)):
        sealed = reader.take(reader.int(2))
        labels.append(PeerLabel(sealed, reader.text() or None))
    reader.end()
    if any(_label_key(a) > _label_key(b) for a, b in pairwise(labels)):
        raise reader.fail("peer labels not in canonical order")
    return MatchedToken(token, holders, tuple(labels))


class ResultBuilder:
    """The coordinator's side: matches in increasing token order in, pages and the root out.

    ``add`` returns a page each time one is full (at most ``page_bytes`` of leaves, or a single
    larger leaf), ``finish`` the last one; ``root`` is the Merkle tree head over every leaf.
    Memory stays one page plus O(log n) hashes.
    """

    def __init__(self, page_bytes: int = PAGE_BYTES) -> None:
        self.page_bytes = page_bytes
        self._tree = TreeBuilder()
        self._page: list[bytes] = []
        self._page_size = self._page_first = self.pages = 0

    @property
    def count(self) -> int:
        return self._tree.size

    def add(self, match: MatchedToken) -> LeafPage | None:
        return self.add_leaf(encode_leaf(match))

    def add_leaf(self, leaf: bytes, digest: bytes | None = None) -> LeafPage | None:
        """``add`` for a leaf already encoded (``encode_leaf``, ``holder_leaves``); ``digest``, if
        given, must be its ``leaf_hash`` (computed once for a leaf several results share)."""
        full = self._cut() if self._page and self._page_size + len(leaf) > self.page_bytes else None
        self._tree.append(leaf_hash(leaf) if digest is None else digest)
        self._page.append(leaf)
        self._page_size += len(leaf)
        return full

    def finish(self) -> LeafPage | None:
        return self._cut() if self._page else None

    def root(self) -> bytes:
        return self._tree.root()

    def _cut(self) -> LeafPage:
        page = LeafPage(self.pages, self._page_first, tuple(self._page))
        self.pages += 1
        self._page_first += len(self._page)
        self._page, self._page_size = [], 0
        return page


class LeafVerifier:
    """Checks a result's leaves, page after page, against its verified header.

    Feed every page in order (``add``), then call ``finish``: it raises ``ResultMismatch`` unless
    the leaves are exactly ``match_count`` canonical leaves in strictly increasing token order
    whose Merkle tree head is the signed root. Memory stays O(log n) whatever the result's size.
    """

    def __init__(self, header: ResultHeader) -> None:
        self.header = header
        self._tree = TreeBuilder()
        self._last_token = b""
        self._next_page = 0

    @property
    def count(self) -> int:
        """Leaves checked so far."""
        return self._tree.size

    def add(self, page: LeafPage) -> list[MatchedToken]:
        """Check one page; return its matches (decoded). Raises ``ResultMismatch``."""
        if page.page_index != self._next_page or page.first_leaf != self._tree.size:
            raise ResultMismatch(
                f"result page {page.page_index} starting at leaf {page.first_leaf} arrived out of order "
                f"(expected page {self._next_page} at leaf {self._tree.size})"
            )
        if not page.leaves:
            raise ResultMismatch(f"result page {page.page_index} is empty")
        self._next_page += 1
        matches = []
        for leaf in page.leaves:
            if self._tree.size >= self.header.match_count:
                raise ResultMismatch(f"result has more leaves than the {self.header.match_count} signed")
            try:
                match = decode_leaf(leaf)
            except InvalidRequest as exc:
                raise ResultMismatch(f"result leaf {self._tree.size}: {exc}") from None
            if match.match_token <= self._last_token:
                raise ResultMismatch(f"result leaf {self._tree.size}: tokens not in strictly increasing order")
            if self.header.label_cap and len(match.peer_labels) > self.header.label_cap:
                raise ResultMismatch(
                    f"result leaf {self._tree.size}: {len(match.peer_labels)} peer labels, more than the signed "
                    f"label cap {self.header.label_cap}"
                )
            self._last_token = match.match_token
            self._tree.append(leaf_hash(leaf))
            matches.append(match)
        return matches

    def finish(self) -> None:
        """Raise ``ResultMismatch`` unless every signed leaf arrived and they make the signed root."""
        if self._tree.size != self.header.match_count:
            raise ResultMismatch(f"result has {self._tree.size} leaves, the signed header {self.header.match_count}")
        if self._tree.root() != self.header.root:
            raise ResultMismatch("result leaves do not make the signed Merkle root")


def result_tree(
    result: MemberResult, *, checkpoint: SignedCheckpoint, audit_index: int, member_key_pin: bytes = b""
) -> tuple[ResultHeader, tuple[bytes, ...]]:
    """The header (unsigned, naming ``member_key_pin``) and the leaves, in order, of a result held in memory."""
    builder = ResultBuilder()
    matches = sorted(result.matches, key=lambda m: m.match_token)
    leaves = tuple(encode_leaf(match) for match in matches)
    for match in matches:
        builder.add(match)
    header = ResultHeader(
        result.round_id,
        result.member_id,
        result.key_epoch,
        result.threshold,
        result.submitted_count,
        builder.count,
        builder.root(),
        checkpoint,
        audit_index,
        member_key_pin,
    )
    return header, leaves


def reopen_result(
    public_key: bytes, header: bytes, signature: bytes, leaves: Iterable[bytes], *, round_id: str, member_id: str
) -> MemberResult:
    """Verify a kept result again, header and every leaf, and return it whole.

    Raises ``InvalidSignature`` (header), ``ResultMismatch`` (leaves), ``InvalidRequest``.
    """
    opened = open_header(public_key, header, signature, round_id=round_id, member_id=member_id)
    verifier, kept = LeafVerifier(opened), tuple(leaves)
    matches = verifier.add(LeafPage(0, 0, kept)) if kept else []
    verifier.finish()
    return MemberResult(
        opened.round_id, opened.member_id, opened.key_epoch, opened.threshold, opened.submitted_count, tuple(matches)
    )


# One lead, provable to an outsider -----------------------------------------------------------------


def lead_proofs(leaves: Sequence[bytes], wanted: Iterable[int]) -> dict[int, LeafProof]:
    """Inclusion proofs for the leaves at the ``wanted`` indices of a result's leaves (all of them,
    in order, as kept by the member). Memory is about two hashes per leaf."""
    tree = MemoryTree([leaf_hash(leaf) for leaf in leaves])
    return {i: LeafProof(i, leaves[i], tuple(tree.inclusion_proof(i))) for i in wanted}


def check_issue_entry(header: ResultHeader, entry: bytes, proof: Sequence[bytes]) -> None:
    """Check that the audit log records this result: ``entry`` is leaf ``header.audit_index`` of
    the log in the header's checkpoint, and it is the ``result.issue`` entry for this round,
    member, count and root. The header must be verified (``open_header``).

    Raises:
        ResultMismatch: the entry is not in the checkpoint, or records another result.
    """
    checkpoint = decode_checkpoint(header.checkpoint.body)
    try:
        verify_inclusion(leaf_hash(entry), header.audit_index, checkpoint.tree_size, proof, checkpoint.root)
    except InvalidProof as exc:
        raise ResultMismatch(f"the result's audit-log entry is not in the signed checkpoint: {exc}") from None
    try:
        recorded = json.loads(entry.decode("utf-8"))
        detail = recorded["detail"]
        fields = (recorded["action"], detail["round_id"], detail["member_id"], detail["matches"], detail["root"])
    except (ValueError, KeyError, TypeError):
        raise ResultMismatch("the result's audit-log entry is not a result.issue entry") from None
    expected = ("result.issue", header.round_id, header.member_id, header.match_count, header.root.hex())
    if fields != expected:
        raise ResultMismatch("the result's audit-log entry records another result than the signed header")


def check_leaf(header: ResultHeader, lead: LeafProof) -> MatchedToken:
    """The match of ``lead`` if its inclusion proof leads to the (verified) header's root.

    Raises ``ResultMismatch`` if it does not, ``InvalidRequest`` if the leaf is malformed.
    """
    match = decode_leaf(lead.leaf)
    try:
        verify_inclusion(leaf_hash(lead.leaf), lead.index, header.match_count, lead.proof, header.root)
    except InvalidProof as exc:
        raise ResultMismatch(f"leaf {lead.index} is not in the signed result: {exc}") from None
    return match


def verify_lead(
    public_key: bytes,
    header: bytes,
    signature: bytes,
    lead: LeafProof,
    *,
    round_id: str | None = None,
    member_id: str | None = None,
) -> tuple[ResultHeader, MatchedToken]:
    """Check one lead with the coordinator's public key alone: the signed header, the lead's leaf
    and its inclusion proof. Returns the header and the leaf's match.

    What it proves: the coordinator signed a result for this member and round in which this
    token matched with this holder count and these sealed peer labels (with their attested
    sealers). Raises ``InvalidSignature`` (header), ``ResultMismatch`` (leaf not in the signed
    tree) or ``InvalidRequest`` (malformed bytes).
    """
    opened = open_header(public_key, header, signature, round_id=round_id, member_id=member_id)
    return opened, check_leaf(opened, lead)
