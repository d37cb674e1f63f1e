"""A member's side of a continuous scope, reduced to what the coordinator sees: tokens and sealed labels.

``DeltaSender`` keeps the set it has committed (token -> sealed label) and sends deltas through
the same chunks, digests and commit a member node sends, with the commit sequence, either to the
``CoordinatorRole`` itself (``RoleCalls``: storage tests on SQLite and PostgreSQL) or over gRPC
(``services.clients.CoordinatorClient``). The coordinator is what these tests test; the member
node's own submission (identifiers, tokens, labels it seals) is tested with the node.

Tokens and labels are synthetic: ``token(7)`` is 16 bytes, ``label(7)`` a sealed-label-sized blob
(the coordinator checks sizes, never the content, which only holders can open).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from alliance_psi.crypto.labels import SEALED_LABEL_BYTES
from alliance_psi.protocol.coordinator import Chunk, Commit, CoordinatorRole
from alliance_psi.protocol.model import Identity, Role, SubmissionStatus
from alliance_psi.protocol.submission import SubmissionDigest, label_digest, set_digest


def token(i: int) -> bytes:
    return hashlib.sha256(b"token %d" % i).digest()[:16]


def label(i: int, version: int = 0) -> bytes:
    return hashlib.shake_128(b"label %d/%d" % (i, version)).digest(SEALED_LABEL_BYTES)


@dataclass
class RoleCalls:
    """The member's calls, made to the role directly (as its servicer would, identity included)."""

    role: CoordinatorRole
    member_id: str

    @property
    def caller(self) -> Identity:
        return Identity(self.member_id, Role.MEMBER)

    def upload_chunks(self, chunks: Iterable[Chunk]) -> tuple[int, int]:
        stored = [self.role.upload_chunk(self.caller, c) for c in chunks]
        return sum(stored), len(stored) - sum(stored)

    def commit(self, commit: Commit, member_id: str) -> SubmissionStatus:
        return self.role.commit(self.caller, commit)

    def submission_status(self, round_id: str, member_id: str) -> SubmissionStatus:
        return self.role.submission_status(self.caller, round_id)


@dataclass
class DeltaSender:
    """One member's deltas to one continuous scope (``calls``: ``RoleCalls`` or a ``CoordinatorClient``)."""

    calls: object
    member_id: str
    scope_id: str
    share_name: bool = False
    chunk_size: int = 3
    held: dict[bytes, bytes | None] = field(default_factory=dict)
    sequence: int = 0

    def send(
        self,
        puts: Mapping[bytes, bytes | None] | None = None,
        removals: Sequence[bytes] = (),
        *,
        replace: bool = False,
        commit: bool = True,
    ) -> SubmissionStatus | None:
        """Upload one delta (or, with ``replace``, the whole set ``puts``) and commit it (unless
        ``commit`` is False: chunks only). Returns the commit's status."""
        puts = dict(puts or {})
        after = dict(puts) if replace else {**{t: lbl for t, lbl in self.held.items() if t not in removals}, **puts}
        sequence = self.sequence + 1
        items = sorted(puts.items())
        entries: list[tuple[str, bytes, bytes | None]] = [("put", t, lbl) for t, lbl in items]
        entries += [("remove", t, None) for t in sorted(removals)]
        digest, chunks = SubmissionDigest(), []
        for index, start in enumerate(range(0, len(entries), self.chunk_size)):
            part = entries[start : start + self.chunk_size]
            chunk_items = tuple((t, lbl) for kind, t, lbl in part if kind == "put")
            chunk_removals = tuple(t for kind, t, _ in part if kind == "remove")
            chunks.append(
                Chunk(
                    self.scope_id,
                    index,
                    chunk_items,
                    digest.update(chunk_items, chunk_removals),
                    chunk_removals,
                    replace,
                    sequence,
                )
            )
        self.calls.upload_chunks(chunks)  # type: ignore[attr-defined]
        if not commit:
            return None
        done = self.calls.commit(  # type: ignore[attr-defined]
            Commit(
                self.scope_id,
                digest.count,
                digest.digest(),
                len(after),
                set_digest(sorted((t, label_digest(lbl)) for t, lbl in after.items())),
                replace,
                share_name=self.share_name,
                sequence=sequence,
            ),
            self.member_id,
        )
        self.held, self.sequence = after, sequence
        return done  # type: ignore[no-any-return]
