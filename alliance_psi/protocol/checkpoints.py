"""Signed checkpoints of the coordinator's audit log, signed consistency statements, and the
checks a member runs on them to catch a log that was rewritten, truncated or forked.

A **checkpoint** says "at ``time`` my audit log held exactly ``tree_size`` entries with Merkle
tree head ``root``", signed by the coordinator's result key (context ``checkpoint``). A
**consistency statement** says "the first ``first_size`` entries of my log have head
``first_root``, the first ``second_size`` have head ``second_root``, and ``proof`` (RFC 9162)
links them", signed (context ``consistency``). Both are canonical bytes, version 1::

    checkpoint  = "APSI-CHECKPOINT" 0x01 lp(origin) I2OSP(tree_size, 8) root (32)
                  I2OSP(time in ms since the Unix epoch, 8) lp(key_id)
    consistency = "APSI-CONSISTENCY" 0x01 I2OSP(first_size, 8) first_root (32)
                  I2OSP(second_size, 8) second_root (32) I2OSP(len(proof), 1) proof (32 each)

A member keeps every checkpoint it sees and, on each contact, checks the new one against the
largest it holds (``check_against``). What an outsider can verify from what the member keeps
(``Evidence``), with the coordinator's public key alone:

- a **fork**: two checkpoints, or a checkpoint and a statement, giving two roots for one size;
- a **shrunk log**: a checkpoint of ``n`` entries timed at or after one of ``m > n`` entries;
- a **false proof**: a signed statement whose proof does not link its own two heads.

Every failure raises ``LogInconsistent``; nothing here returns a boolean.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from alliance_psi.crypto.merkle import HASH_BYTES, verify_consistency
from alliance_psi.crypto.signing import SigningKey, key_id, verify
from alliance_psi.errors import InvalidProof, InvalidRequest, InvalidSignature, LogInconsistent
from alliance_psi.protocol._codec import Reader, lp

__all__ = [
    "CHECKPOINT_CONTEXT",
    "CONSISTENCY_CONTEXT",
    "Checkpoint",
    "ConsistencyStatement",
    "Evidence",
    "SignedCheckpoint",
    "SignedStatement",
    "check_against",
    "check_evidence",
    "decode_checkpoint",
    "decode_statement",
    "encode_checkpoint",
    "encode_statement",
    "open_checkpoint",
    "open_statement",
    "sign_checkpoint",
    "sign_statement",
]

CHECKPOINT_CONTEXT = "checkpoint"
CONSISTENCY_CONTEXT = "consistency"
_CHECKPOINT = b"APSI-CHECKPOINT\x01"
_CONSISTENCY = b"APSI-CONSISTENCY\x01"
_MAX_PROOF = 128  # Far above log2 of any log's size.


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A signed head of the coordinator's audit log (see the module docstring)."""

    origin: str  # The coordinator's name.
    tree_size: int
    root: bytes
    time: datetime
    key_id: str

    def __post_init__(self) -> None:
        if len(self.root) != HASH_BYTES or self.tree_size < 0 or self.time.tzinfo is None:
            raise ValueError("a checkpoint needs a 32-byte root, a size of 0 or more and an aware time")


@dataclass(frozen=True, slots=True)
class SignedCheckpoint:
    """A checkpoint's canonical bytes and the coordinator's signature over them."""

    body: bytes
    signature: bytes


@dataclass(frozen=True, slots=True)
class ConsistencyStatement:
    """The coordinator's signed claim that ``proof`` links two heads of its log."""

    first_size: int
    first_root: bytes
    second_size: int
    second_root: bytes
    proof: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class SignedStatement:
    body: bytes
    signature: bytes


# Checkpoints --------------------------------------------------------------------------------------


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MILLISECOND = timedelta(milliseconds=1)


def encode_checkpoint(checkpoint: Checkpoint) -> bytes:
    millis = (checkpoint.time - _EPOCH) // _MILLISECOND  # Exact integer arithmetic, truncated.
    return b"".join(
        [
            _CHECKPOINT,
            lp(checkpoint.origin),
            checkpoint.tree_size.to_bytes(8, "big"),
            checkpoint.root,
            millis.to_bytes(8, "big"),
            lp(checkpoint.key_id),
        ]
    )


def decode_checkpoint(body: bytes) -> Checkpoint:
    """Parse canonical checkpoint bytes; raise ``InvalidRequest`` for anything else."""
    reader = Reader(body, "checkpoint")
    if reader.take(len(_CHECKPOINT)) != _CHECKPOINT:
        raise reader.fail("unknown format or version")
    origin, size, root = reader.text(), reader.int(8), reader.take(HASH_BYTES)
    time = _EPOCH + reader.int(8) * _MILLISECOND
    checkpoint = Checkpoint(origin, size, root, time, reader.text())
    reader.end()
    if encode_checkpoint(checkpoint) != body:
        raise reader.fail("not in canonical form")
    return checkpoint


def sign_checkpoint(key: SigningKey, origin: str, tree_size: int, root: bytes, time: datetime) -> SignedCheckpoint:
    """The coordinator's signed checkpoint (time kept to the millisecond)."""
    checkpoint = Checkpoint(origin, tree_size, root, time.astimezone(UTC), key.key_id)
    body = encode_checkpoint(checkpoint)
    return SignedCheckpoint(body, key.sign(CHECKPOINT_CONTEXT, body))


def open_checkpoint(public_key: bytes, signed: SignedCheckpoint) -> Checkpoint:
    """Verify and parse; ``InvalidSignature`` if the coordinator's key did not sign it, naming
    the key the checkpoint says signed it when that is another (a hint only: unsigned bytes)."""
    try:
        verify(public_key, CHECKPOINT_CONTEXT, signed.body, signed.signature)
    except InvalidSignature as exc:
        try:
            named = decode_checkpoint(signed.body).key_id
        except InvalidRequest:
            named = key_id(public_key)
        hint = f"; the checkpoint names key {named}" if named != key_id(public_key) else ""
        raise InvalidSignature(f"the coordinator's signature over its audit-log checkpoint: {exc}{hint}") from None
    checkpoint = decode_checkpoint(signed.body)
    if checkpoint.key_id != key_id(public_key):
        raise InvalidSignature(f"checkpoint names key {checkpoint.key_id}, signed by {key_id(public_key)}")
    return checkpoint


# Consistency statements ----------------------------------------------------------------------------


def encode_statement(statement: ConsistencyStatement) -> bytes:
    if len(statement.proof) > _MAX_PROOF:
        raise ValueError("proof too long")
    return b"".join(
        [
            _CONSISTENCY,
            statement.first_size.to_bytes(8, "big"),
            statement.first_root,
            statement.second_size.to_bytes(8, "big"),
            statement.second_root,
            len(statement.proof).to_bytes(1, "big"),
            *statement.proof,
        ]
    )


def decode_statement(body: bytes) -> ConsistencyStatement:
    reader = Reader(body, "consistency statement")
    if reader.take(len(_CONSISTENCY)) != _CONSISTENCY:
        raise reader.fail("unknown format or version")
    first_size, first_root = reader.int(8), reader.take(HASH_BYTES)
    second_size, second_root = reader.int(8), reader.take(HASH_BYTES)
    proof = tuple(reader.take(HASH_BYTES) for _ in range(reader.int(1)))
    reader.end()
    return ConsistencyStatement(first_size, first_root, second_size, second_root, proof)


def sign_statement(key: SigningKey, statement: ConsistencyStatement) -> SignedStatement:
    body = encode_statement(statement)
    return SignedStatement(body, key.sign(CONSISTENCY_CONTEXT, body))


def open_statement(public_key: bytes, signed: SignedStatement) -> ConsistencyStatement:
    verify(public_key, CONSISTENCY_CONTEXT, signed.body, signed.signature)
    return decode_statement(signed.body)


# What a member checks, and what it keeps when the check fails -------------------------------------


@dataclass(frozen=True, slots=True)
class Evidence:
    """Signed documents that, together, show the coordinator's log is not append-only.

    ``kind`` is ``"fork"``, ``"shrunk"`` or ``"false-proof"`` (see the module docstring);
    ``check_evidence`` verifies it with the coordinator's public key alone.
    """

    kind: str
    reason: str
    checkpoints: tuple[SignedCheckpoint, ...]
    statement: SignedStatement | None = None


def _fail(kind: str, reason: str, *checkpoints: SignedCheckpoint, statement: SignedStatement | None = None) -> None:
    raise LogInconsistent(reason, evidence=Evidence(kind, reason, checkpoints, statement))


def check_against(
    public_key: bytes,
    known: SignedCheckpoint,
    new: SignedCheckpoint,
    prove: Callable[[int, int], SignedStatement | None],
) -> None:
    """Check a newly seen checkpoint ``new`` against the largest one a member already holds.

    ``prove(first, second)`` asks the coordinator for its signed consistency statement between
    two sizes (None if it gives none); it is called only when the sizes differ and the log did
    not visibly shrink. Both checkpoints must already be verified (``open_checkpoint``).

    Raises:
        LogInconsistent: the log contradicts ``known``; ``exc.evidence`` holds an ``Evidence``.
    """
    old, cur = decode_checkpoint(known.body), decode_checkpoint(new.body)
    if old.tree_size == cur.tree_size:
        if old.root != cur.root:
            _fail("fork", f"two checkpoints give two different roots for {cur.tree_size} entries", known, new)
        return
    if cur.tree_size < old.tree_size and cur.time >= old.time:
        _fail(
            "shrunk",
            f"the audit log shrank from {old.tree_size} entries ({old.time:%Y-%m-%d %H:%M:%S} UTC) to "
            f"{cur.tree_size} ({cur.time:%Y-%m-%d %H:%M:%S} UTC): its tail was removed",
            known,
            new,
        )
    small, large = (old, cur) if old.tree_size < cur.tree_size else (cur, old)
    small_signed, large_signed = (known, new) if small is old else (new, known)
    statement = prove(small.tree_size, large.tree_size)
    if statement is None:
        raise LogInconsistent(
            f"the coordinator gave no consistency proof from {small.tree_size} to {large.tree_size} entries"
        )
    try:
        claim = open_statement(public_key, statement)
    except (InvalidSignature, InvalidRequest) as exc:
        raise LogInconsistent(f"the coordinator's consistency statement is invalid: {exc}") from None
    if (claim.first_size, claim.second_size) != (small.tree_size, large.tree_size):
        raise LogInconsistent(
            f"the coordinator answered for sizes {claim.first_size} and {claim.second_size}, "
            f"not {small.tree_size} and {large.tree_size}"
        )
    for signed, head, root in ((small_signed, small, claim.first_root), (large_signed, large, claim.second_root)):
        if root != head.root:
            _fail(
                "fork",
                f"the audit log's first {head.tree_size} entries no longer make the root of the checkpoint "
                "signed for them: an entry was changed after it was signed",
                signed,
                statement=statement,
            )
    try:
        verify_consistency(claim.first_size, claim.second_size, claim.first_root, claim.second_root, claim.proof)
    except InvalidProof as exc:
        _fail("false-proof", f"the coordinator's signed consistency proof does not hold: {exc}", statement=statement)


def check_evidence(public_key: bytes, evidence: Evidence) -> str:
    """Verify ``evidence`` with the coordinator's public key alone; return what it proves.

    Raises:
        InvalidSignature: a document is not signed by that key, or the documents do not show
            what ``evidence.kind`` says (the message says which).
    """
    heads = [open_checkpoint(public_key, signed) for signed in evidence.checkpoints]
    claim = open_statement(public_key, evidence.statement) if evidence.statement is not None else None
    if evidence.kind == "fork":
        roots: dict[int, set[bytes]] = {}
        for head in heads:
            roots.setdefault(head.tree_size, set()).add(head.root)
        if claim is not None:
            roots.setdefault(claim.first_size, set()).add(claim.first_root)
            roots.setdefault(claim.second_size, set()).add(claim.second_root)
        forked = sorted(size for size, found in roots.items() if len(found) > 1)
        if forked:
            return f"proven: the coordinator signed two different roots for its first {forked[0]} entries"
    elif evidence.kind == "shrunk" and len(heads) == 2:
        old, cur = sorted(heads, key=lambda h: -h.tree_size)
        if cur.tree_size < old.tree_size and cur.time >= old.time:
            return (
                f"proven: the coordinator signed {old.tree_size} entries at {old.time.isoformat()} and "
                f"only {cur.tree_size} at {cur.time.isoformat()}"
            )
    elif evidence.kind == "false-proof" and claim is not None:
        try:
            verify_consistency(claim.first_size, claim.second_size, claim.first_root, claim.second_root, claim.proof)
        except InvalidProof:
            return "proven: the coordinator signed a consistency proof that does not hold"
    raise InvalidSignature(f"the {evidence.kind} evidence does not show what it claims")
