"""The audit log of the coordinator and the custodians, as an RFC 9162 Merkle tree.

Entry ``i`` (``seq = i + 1``) is leaf ``i`` of the tree; its leaf bytes are canonical JSON::

    {"action", "actor", "at" (ISO-8601 UTC, microseconds), "detail", "nonce" (16 random bytes, hex), "seq"}
    sorted keys, separators (",", ":"), UTF-8, no ASCII escaping

and the tree is ``crypto.merkle``'s (leaf hash ``H(0x00 || leaf)``, node ``H(0x01 || l || r)``).
A head (size, root) commits to every entry; an inclusion proof shows one entry is in it; a
consistency proof shows a later head extends an earlier one. The coordinator signs heads as
checkpoints (``protocol.checkpoints``) and members keep them, so an entry edited with every hash
recomputed, a truncated tail or a log forked between members contradicts a checkpoint someone
outside holds. ``verify`` checks the database on its own: each leaf hash against its entry, each
stored node against its children, and the prefix roots of any checkpoints given.

The nonce keeps the leaf hashes that proofs reveal from being tested against guesses of an
entry's (low-entropy) content. Stored: the entries with their leaf hashes (level 0) and the
hash of every complete subtree above them (``audit_nodes``), so proofs read O(log² n) rows.

The contract for ``detail``: counts, sizes, round and member ids, key epochs, digests and roots
as hex; **never an identifier, a match token, a label or a secret**. The log is shown to
operators and verifiers, and it outlives the rounds it describes.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, func, select, tuple_

from alliance_psi.crypto.merkle import (
    EMPTY_ROOT,
    TreeBuilder,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    subtree_hash,
)
from alliance_psi.errors import AuditLogBroken, NotFound
from alliance_psi.storage._common import IN_BATCH, canonical_json, stream
from alliance_psi.storage.schema import audit_log, audit_nodes

__all__ = ["AuditEntry", "AuditLog", "entry_bytes"]

# One PostgreSQL advisory lock key for every appender to the log (any fixed 64-bit number).
_PG_LOCK_KEY = int.from_bytes(hashlib.sha256(b"alliance_psi.audit_log").digest()[:8], "big", signed=True)
NONCE_BYTES = 16


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One entry as stored; ``leaf`` is its canonical bytes, leaf ``seq - 1`` of the tree."""

    seq: int
    at: datetime
    actor: str
    action: str
    detail: Any
    nonce: bytes

    @property
    def leaf(self) -> bytes:
        return entry_bytes(self.seq, self.at, self.actor, self.action, self.detail, self.nonce)


def entry_bytes(seq: int, at: datetime, actor: str, action: str, detail: Any, nonce: bytes) -> bytes:
    """The canonical bytes of an entry (its Merkle leaf)."""
    return canonical_json(
        {
            "seq": seq,
            "at": at.astimezone(UTC).isoformat(timespec="microseconds"),
            "actor": actor,
            "action": action,
            "detail": detail,
            "nonce": nonce.hex(),
        }
    ).encode("utf-8")


def _entry_of(row: Any) -> AuditEntry:
    return AuditEntry(row.seq, row.at, row.actor, row.action, json.loads(row.detail), bytes(row.nonce))


class AuditLog:
    """Append to, prove from and verify the audit log, in the caller's transaction."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    # Appending ------------------------------------------------------------------------------

    def append(self, *, actor: str, action: str, detail: Mapping[str, Any], at: datetime) -> int:
        """Append an entry and return its seq (1 for the first entry; leaf ``seq - 1``).

        ``detail`` holds counts and ids only, never an identifier, token, label or secret.
        Concurrent appends never fork the tree: on PostgreSQL they queue on a transaction-level
        advisory lock; on SQLite the write transaction (``BEGIN IMMEDIATE`` from ``make_engine``)
        already runs alone. Either way ``seq`` is the primary key, so two entries can never
        claim the same place.

        Raises:
            ValueError: ``at`` is naive, or ``detail`` is not JSON (for example NaN).
            TypeError: ``detail`` holds something JSON cannot encode (bytes, for instance).
        """
        if at.tzinfo is None or at.utcoffset() is None:
            raise ValueError("naive datetime: pass a timezone-aware datetime")
        detail_text = canonical_json(dict(detail))
        if self._conn.dialect.name == "postgresql":
            self._conn.execute(select(func.pg_advisory_xact_lock(_PG_LOCK_KEY)))
        index = self.size()
        nonce = secrets.token_bytes(NONCE_BYTES)
        leaf = leaf_hash(entry_bytes(index + 1, at, actor, action, json.loads(detail_text), nonce))
        self._conn.execute(
            audit_log.insert().values(
                seq=index + 1, at=at, actor=actor, action=action, detail=detail_text, nonce=nonce, leaf_hash=leaf
            )
        )
        # Every complete subtree the new leaf closes: while it is a right child, hash it with its
        # left sibling (already stored) one level up.
        level, position, current, parents = 0, index, leaf, []
        while position & 1:
            current = node_hash(self.node(level, position - 1), current)
            level, position = level + 1, position >> 1
            parents.append({"level": level, "idx": position, "hash": current})
        if parents:
            self._conn.execute(audit_nodes.insert(), parents)
        return index + 1

    # Reading and proving ---------------------------------------------------------------------

    def size(self) -> int:
        """How many entries the log holds."""
        return int(self._conn.execute(select(func.coalesce(func.max(audit_log.c.seq), 0))).scalar_one())

    def node(self, level: int, index: int) -> bytes:
        """The ``crypto.merkle.NodeSource`` of the log: a leaf hash (level 0) or a stored node."""
        if level == 0:
            found = self._conn.execute(select(audit_log.c.leaf_hash).where(audit_log.c.seq == index + 1)).scalar()
        else:
            found = self._conn.execute(
                select(audit_nodes.c.hash).where(audit_nodes.c.level == level, audit_nodes.c.idx == index)
            ).scalar()
        if found is None:
            raise AuditLogBroken(f"audit log broken: node ({level}, {index}) is missing", seq=(index << level) + 1)
        return bytes(found)

    def root(self, size: int | None = None) -> bytes:
        """The Merkle tree head over the first ``size`` entries (all of them by default)."""
        size = self.size() if size is None else size
        self._check_size(size)
        return subtree_hash(self.node, 0, size) if size else EMPTY_ROOT

    def head(self) -> tuple[int, bytes]:
        """(size, root) of the whole log: what a checkpoint signs."""
        size = self.size()
        return size, self.root(size)

    def entry(self, index: int) -> AuditEntry:
        """Leaf ``index`` (entry ``seq = index + 1``); ``NotFound`` if the log has no such entry."""
        row = self._conn.execute(select(audit_log).where(audit_log.c.seq == index + 1)).one_or_none()
        if row is None:
            raise NotFound(f"the audit log has no entry {index}")
        return _entry_of(row)

    def of_action(self, action: str) -> list[AuditEntry]:
        """Every entry of ``action``, oldest first (for the rare actions looked up by kind)."""
        rows = self._conn.execute(select(audit_log).where(audit_log.c.action == action).order_by(audit_log.c.seq))
        return [_entry_of(row) for row in rows]

    def leaf(self, index: int) -> bytes:
        """The canonical bytes of entry ``index`` (its Merkle leaf); ``NotFound`` if none."""
        return self.entry(index).leaf

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        """RFC 9162 inclusion proof of leaf ``index`` in the tree of the first ``size`` entries.

        Raises:
            NotFound: ``size`` is beyond the log, or ``index`` not below ``size``.
        """
        self._check_size(size)
        if not 0 <= index < size:
            raise NotFound(f"the audit log's first {size} entries have no entry {index}")
        return inclusion_proof(index, size, self.node)

    def consistency_proof(self, first: int, second: int) -> list[bytes]:
        """RFC 9162 consistency proof from the first ``first`` entries to the first ``second``.

        Raises:
            NotFound: ``second`` is beyond the log, or not ``0 < first <= second``.
        """
        self._check_size(second)
        if not 0 < first <= second:
            raise NotFound(f"no consistency proof from {first} to {second} entries")
        return consistency_proof(first, second, self.node)

    def _check_size(self, size: int) -> None:
        held = self.size()
        if not 0 <= size <= held:
            raise NotFound(f"the audit log holds {held} entries, not {size}")

    # Verifying --------------------------------------------------------------------------------

    def verify(self, checkpoints: Iterable[tuple[int, bytes]] = ()) -> int:
        """Replay the whole log and return the number of entries.

        Checks each entry's leaf hash against its content, each stored node against the tree
        the entries make, and, for each ``(size, root)`` in ``checkpoints`` (heads someone else
        was shown), that the first ``size`` entries make that root. An operator who rewrote the
        log and recomputed every hash passes the first two checks; only the third, with heads
        kept outside the operator's reach, catches that.

        It also checks that no round's result was issued twice to one member (two
        ``result.issue`` entries for one round and member): matching issues each member's result
        once, so a second entry is a second, different result, each consistent with the log
        taken alone, which only an outsider comparing results would otherwise catch.

        Raises:
            AuditLogBroken: with ``seq`` set to the first entry that fails (a gap in seq, an
                entry whose content does not give its leaf hash, a node that does not match,
                the last entry of a checkpoint whose root the log no longer gives, or a second
                result issued for one round and member).
        """
        wanted: dict[int, list[bytes]] = {}
        for size, root in checkpoints:
            wanted.setdefault(size, []).append(root)
        tree = _NodeCheck(self._conn)
        issued: dict[tuple[str, str], int] = {}  # (round, member) -> seq of its result.issue entry.
        result = stream(self._conn, select(audit_log).order_by(audit_log.c.seq))
        try:
            for row in result:
                if row.seq != tree.size + 1:
                    raise AuditLogBroken(
                        f"audit log broken at seq {tree.size + 1}: gap in seq (next entry is {row.seq})",
                        seq=tree.size + 1,
                    )
                try:
                    detail = json.loads(row.detail)
                except ValueError:
                    raise AuditLogBroken(
                        f"audit log broken at seq {row.seq}: detail is not JSON", seq=row.seq
                    ) from None
                computed = leaf_hash(entry_bytes(row.seq, row.at, row.actor, row.action, detail, bytes(row.nonce)))
                if computed != bytes(row.leaf_hash):
                    raise AuditLogBroken(
                        f"audit log broken at seq {row.seq}: entry does not match its leaf hash", seq=row.seq
                    )
                tree.append(computed)
                if row.action == "result.issue":
                    _check_issued_once(issued, row.seq, detail)
                for root in wanted.pop(tree.size, ()):
                    if tree.root() != root:
                        raise AuditLogBroken(
                            f"audit log broken: its first {tree.size} entries do not make the root of a "
                            f"checkpoint for {tree.size} entries (an entry up to seq {tree.size} was changed)",
                            seq=tree.size,
                        )
        finally:
            result.close()
        tree.finish()
        if wanted:
            size = min(wanted)
            raise AuditLogBroken(
                f"audit log broken: it holds {tree.size} entries, but a checkpoint was signed for {size} "
                "(its tail was removed)",
                seq=tree.size + 1,
            )
        return tree.size


def _check_issued_once(issued: dict[tuple[str, str], int], seq: int, detail: Any) -> None:
    """Record a ``result.issue`` entry; raise ``AuditLogBroken`` if its round and member had one."""
    key = (str(detail.get("round_id")), str(detail.get("member_id"))) if isinstance(detail, dict) else ("?", "?")
    first = issued.setdefault(key, seq)
    if first != seq:
        raise AuditLogBroken(
            f"audit log: round {key[0]}'s result was issued twice to member {key[1]} (seq {first} and {seq}): "
            "the coordinator gave that member two different results for one round",
            seq=seq,
        )


class _NodeCheck:
    """Rebuilds the tree leaf by leaf and compares each interior node with the stored one, in batches."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._pending: dict[tuple[int, int], bytes] = {}
        self._tree = TreeBuilder(on_node=lambda level, index, digest: self._pending.__setitem__((level, index), digest))
        self.nodes = 0

    @property
    def size(self) -> int:
        return self._tree.size

    def root(self) -> bytes:
        return self._tree.root()

    def append(self, leaf: bytes) -> None:
        self._tree.append(leaf)
        if len(self._pending) >= IN_BATCH:
            self._compare()

    def _compare(self) -> None:
        if not self._pending:
            return
        keys = list(self._pending)
        node = audit_nodes.c
        stored = {
            (level, idx): bytes(digest)
            for level, idx, digest in self._conn.execute(
                select(node.level, node.idx, node.hash).where(tuple_(node.level, node.idx).in_(keys))
            )
        }
        for (level, idx), expected in sorted(self._pending.items()):
            if stored.get((level, idx)) != expected:
                first, last = (idx << level) + 1, (idx + 1) << level
                raise AuditLogBroken(
                    f"audit log broken: stored node ({level}, {idx}) does not match entries {first} to {last}",
                    seq=first,
                )
        self.nodes += len(keys)
        self._pending.clear()

    def finish(self) -> None:
        self._compare()
        stored = int(self._conn.execute(select(func.count()).select_from(audit_nodes)).scalar_one())
        if stored != self.nodes:
            raise AuditLogBroken(
                f"audit log broken: {stored} stored nodes, but {self.size} entries make {self.nodes}",
                seq=self.size,
            )
