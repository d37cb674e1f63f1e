"""The member's submission for one round: the delta against its record, in chunks, and its digests.

From the second round of a scope on, a node sends only what changed since its last commit:
items new or whose label changed, and tokens withdrawn. It finds them by their change stamps
(``ChangeWindow``): the identifiers stamped since the scope's last commit, each compared with
the record's row for its token, and the tokens withdrawn since; nothing else of the set is read,
and the set digest's state is updated from the rows that change. The first time, or when its
record disagrees with the coordinator's, it sends its whole set (``replace``), read in full.
While the chunks are built, the node records what they change (its *pending* rows); only once
the coordinator has committed them does the record take them in (``NodeRepo.apply_pending``).

The chunks depend only on the node's data: a retry rebuilds the same ones, and those the
coordinator already holds are skipped. Label keys and plaintexts never leave this module but
sealed (``crypto.labels.seal_label``, through its ``ScopeSealer``).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from alliance_psi.crypto.labels import LABEL_VERSION, LabelContext, ScopeSealer, sealer_pseudonym
from alliance_psi.identifiers.categories import case_ref_problem
from alliance_psi.protocol.coordinator import Chunk, Commit
from alliance_psi.protocol.delta import KEEP, PUT, REMOVE, merge_delta
from alliance_psi.protocol.leads import LeadLabel
from alliance_psi.protocol.model import Round
from alliance_psi.protocol.node_rows import PendingChange, PendingSet, SetRecord, SubmissionRow, SubmittedToken
from alliance_psi.protocol.ports import NodeUnitOfWork
from alliance_psi.protocol.submission import NO_LABEL_DIGEST, SetDigest, SubmissionDigest, label_digest

__all__ = ["ChangeWindow", "DeltaPlan", "LabelSealer", "Progress", "RoundLabels", "no_progress"]

_LOOKUP_BATCH = 500  # Changed rows whose record rows are read in one query.

_new_row = tuple.__new__

# A progress callback: (stage, done, total or None).
Progress = Callable[[str, int, int | None], None]


def no_progress(stage: str, done: int, total: int | None) -> None:
    """A ``Progress`` that shows nothing."""
    return None


@functools.lru_cache(maxsize=65536)
def _encoded_label(category: str, severity: str, first_seen: date | None, case_ref: str) -> tuple[bytes, bytes]:
    # Many identifiers share a label (same category, severity, date and case): encode it once.
    # No name inside: co-holders see the name the coordinator attests (``share_name``), if any.
    # The fingerprint covers the label format too: a node re-seals every label once in a new format.
    # A case reference imported before its rule grew stricter (a format character) stays on the
    # node but is not shared: peers would refuse the label for it (``case_ref_problem``).
    shared_case_ref = case_ref if case_ref and case_ref_problem(case_ref) is None else None
    label = LeadLabel(category or "other", severity or None, first_seen, shared_case_ref)
    plaintext = label.encode()
    return plaintext, hashlib.blake2b(bytes([LABEL_VERSION]) + plaintext, digest_size=16).digest()


@dataclass(frozen=True, slots=True)
class LabelSealer:
    """Seals the node's labels with ``nonce_key`` (never leaves the node), which gives each label its
    synthetic nonce and its sealer pseudonym (``crypto.labels``). Labels carry no name."""

    nonce_key: bytes

    def for_round(self, round: Round) -> RoundLabels:
        """The labels of ``round``'s submission (none, when the round shares no labels or asks for
        them only where tokens matched)."""
        return RoundLabels(round.labels_in_sets, round.key_epoch, round.set_scope, self.nonce_key)

    def at_match(self, key_epoch: str, label_scope: str) -> RoundLabels:
        """The labels a round asks for after matching (``Round.labels_at_match``), in its
        ``label_scope`` (which names the round itself)."""
        return RoundLabels(True, key_epoch, label_scope, self.nonce_key)

    def own_pseudonym(self, context: LabelContext) -> bytes:
        """This node's sealer pseudonym for ``context``: what its own label for the token carries."""
        return sealer_pseudonym(self.nonce_key, context)


@dataclass(frozen=True, slots=True)
class RoundLabels:
    """``LabelSealer`` for one round: its label sharing, key epoch and scope, looked up once."""

    share: bool
    key_epoch: str
    scope: str
    nonce_key: bytes
    # What every label of the round's scope shares, prepared once (None when it shares no labels).
    _sealer: ScopeSealer | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.share:
            object.__setattr__(self, "_sealer", ScopeSealer(self.nonce_key, self.key_epoch, self.scope))

    def label(self, row: SubmissionRow) -> tuple[bytes, bytes]:
        """(plaintext, fingerprint) of the label this node would seal for ``row``; empty without labels.

        The fingerprint (a hash of the plaintext) is what the node records per committed token:
        a changed category, severity, date or case puts the token again with a new label,
        an unchanged one costs no sealing.
        """
        if not self.share:
            return b"", b""
        return _encoded_label(row.category, row.severity, row.first_seen, row.case_ref)

    def seal(self, row: SubmissionRow, plaintext: bytes) -> bytes | None:
        """The sealed label for ``row`` in the round's scope, or None when the round shares none."""
        if self._sealer is None:
            return None
        return self._sealer.seal(row.label_key, row.match_token, plaintext)


@dataclass(frozen=True, slots=True)
class ChangeWindow:
    """The changes to the node's identifiers a submission covers: those stamped after ``since``
    and up to ``upto`` (``NodeRepo.change_head`` when it started). ``since`` None: every row
    stamped up to ``upto`` or never stamped (a whole set)."""

    since: int | None
    upto: int


@dataclass(slots=True)
class DeltaPlan:
    """One attempt at a round's submission: whether it is the whole set, the changes it covers,
    and the digests of what the chunks sent (``delta``) and of the set they leave at the
    coordinator (``result``).

    A plan with a ``window`` that has ``since`` reads only the changes in it and needs the
    record (``record``, with its state) it applies to; otherwise it reads the whole set."""

    replace: bool
    window: ChangeWindow
    record: SetRecord | None = None
    sequence: int = 0  # Continuous scopes: the delta's commit sequence (the last committed + 1).
    delta: SubmissionDigest = field(default_factory=SubmissionDigest)
    result: SetDigest = field(default_factory=SetDigest)

    def _base(self) -> tuple[int, bytes, int] | None:
        """(since, state, count) when the plan reads only the changes in its window: a delta with
        a window start and a record with its state; None when it reads the whole set."""
        record, since = self.record, self.window.since
        if self.replace or since is None or record is None or record.state is None:
            return None
        return since, record.state, record.item_count

    @property
    def incremental(self) -> bool:
        """Whether the plan reads only the changes in its window."""
        return self._base() is not None

    def pending(self, round_id: str) -> PendingSet:
        """What the node records of this plan: before its chunks, without a record; after, with
        the record the coordinator's commit leaves (call once every chunk is built)."""
        return PendingSet(round_id, self.replace, self.window.upto, None)

    def built(self, round_id: str) -> PendingSet:
        """``pending`` with the record the plan leaves: its count, digest, state and change stamp."""
        record = SetRecord(self.result.count, self.result.digest(), self.result.state(), self.window.upto)
        return PendingSet(round_id, self.replace, self.window.upto, record)

    def commit(self, round_id: str, *, share_name: bool = False) -> Commit:
        """The commit of the chunks built so far (call once they are all built); ``share_name``
        asks the coordinator to name this member to the co-holders of its labels."""
        return Commit(
            round_id,
            self.delta.count,
            self.delta.digest(),
            self.result.count,
            self.result.digest(),
            self.replace,
            share_name=share_name,
            sequence=self.sequence,
        )

    def chunks(
        self,
        round: Round,
        *,
        uow: NodeUnitOfWork,
        labels: LabelSealer,
        stored: Collection[int],
        chunk_size: int,
        progress: Progress = no_progress,
    ) -> Iterator[Chunk]:
        """Build the chunks of the round's delta in token order, yielding those not in ``stored``.

        Every chunk, sent or skipped, goes into the plan's digests and into the node's pending
        rows (one transaction per chunk), so the plan describes the whole submission however
        many chunks the coordinator already held.
        """
        scope, sealer = round.set_scope, labels.for_round(round)
        with uow.writing() as tx:
            tx.repo.clear_pending(scope)
            tx.repo.set_pending(scope, self.pending(round.round_id))
        if (base := self._base()) is not None:
            self.result = SetDigest(base[1], base[2])
        with contextlib.ExitStack() as reads:
            changes = self._changes(round, sealer, uow, reads)
            chunk = _ChunkBuilder(round.round_id, self.replace, self.sequence)
            keep, add, drop = self.result.add, self.result.add, self.result.remove
            for kind, token, value in changes:
                if kind == KEEP:
                    keep(token, value)
                    continue
                if kind == PUT:
                    fingerprint, (plaintext, row), old = value
                    sealed = sealer.seal(row, plaintext)
                    digest = label_digest(sealed)
                    chunk.put(token, sealed, digest, fingerprint)
                    if old is not None:
                        drop(token, old)
                    add(token, digest)
                else:
                    chunk.remove(token)
                    if value is not None:
                        drop(token, value)
                if chunk.size >= chunk_size and (built := self._flush(chunk, scope, uow, stored, progress)):
                    yield built
            if chunk.size and (built := self._flush(chunk, scope, uow, stored, progress)):
                yield built

    def _changes(
        self, round: Round, sealer: RoundLabels, uow: NodeUnitOfWork, reads: contextlib.ExitStack
    ) -> Iterator[tuple[int, bytes, Any]]:
        """(KEEP | PUT | REMOVE, token, value) in token order: ``merge_delta``'s, with the label
        digest each PUT replaces and each REMOVE takes out (None where the result is built whole)."""
        epoch, types = round.key_epoch, round.allowed_types
        if (base := self._base()) is not None:
            since, upto = base[0], self.window.upto
            rows_tx, record_tx = reads.enter_context(uow.reading()), reads.enter_context(uow.reading())
            withdrawn = sorted(rows_tx.repo.withdrawn_tokens(epoch, types, since, upto))
            rows = rows_tx.repo.iter_changed_rows(epoch, types, since, upto)
            return _changed(
                sealer, rows, withdrawn, functools.partial(record_tx.repo.submitted_for_tokens, round.set_scope)
            )
        wanted_tx, known_tx = reads.enter_context(uow.reading()), reads.enter_context(uow.reading())
        wanted = _wanted(sealer, wanted_tx.repo.iter_submission_rows(epoch, types))
        known = iter(()) if self.replace else known_tx.repo.iter_submitted(round.set_scope)
        return (
            (kind, token, (*value, None) if kind == PUT else value) for kind, token, value in merge_delta(wanted, known)
        )

    def _flush(
        self, chunk: _ChunkBuilder, scope: str, uow: NodeUnitOfWork, stored: Collection[int], progress: Progress
    ) -> Chunk | None:
        """Digest and record the chunk being built; return it unless the coordinator holds it."""
        digest = self.delta.update(chunk.items, chunk.removals)
        built = chunk.build(digest) if chunk.index not in stored else None
        with uow.writing() as tx:
            tx.repo.add_pending(scope, chunk.pending)
        chunk.next()
        progress("submit", self.delta.count, None)
        return built


def _changed(
    labels: RoundLabels,
    rows: Iterable[SubmissionRow],
    withdrawn: list[bytes],
    recorded: Callable[[list[bytes]], dict[bytes, SubmittedToken]],
) -> Iterator[tuple[int, bytes, Any]]:
    """The delta from the changed rows and the withdrawn tokens (both in token order), each
    compared with the record's row for its token: a row whose token the record holds with the
    same label fingerprint is left out, a withdrawn token the record does not hold (or that a
    changed row holds again) too. Values as ``DeltaPlan._changes`` says."""
    for batch in _batches(_merge_withdrawn(rows, withdrawn)):
        held = recorded([token for token, _ in batch])
        for token, row in batch:
            old = held.get(token)
            if row is None:
                if old is not None:
                    yield REMOVE, token, old.label_digest
                continue
            plaintext, fingerprint = labels.label(row)
            if old is None or old.label_fingerprint != fingerprint:
                yield PUT, token, (fingerprint, (plaintext, row), None if old is None else old.label_digest)


def _merge_withdrawn(
    rows: Iterable[SubmissionRow], withdrawn: list[bytes]
) -> Iterator[tuple[bytes, SubmissionRow | None]]:
    """(token, row) for each changed row and (token, None) for each withdrawn token no row holds, in token order."""
    gone = iter(withdrawn)
    next_gone = next(gone, None)
    for row in rows:
        while next_gone is not None and next_gone < row.match_token:
            yield next_gone, None
            next_gone = next(gone, None)
        if next_gone == row.match_token:
            next_gone = next(gone, None)
        yield row.match_token, row
    while next_gone is not None:
        yield next_gone, None
        next_gone = next(gone, None)


def _batches(items: Iterator[tuple[bytes, SubmissionRow | None]]) -> Iterator[list[tuple[bytes, SubmissionRow | None]]]:
    batch: list[tuple[bytes, SubmissionRow | None]] = []
    for item in items:
        batch.append(item)
        if len(batch) >= _LOOKUP_BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def _wanted(
    labels: RoundLabels, rows: Iterable[SubmissionRow]
) -> Iterator[tuple[bytes, bytes, tuple[bytes, SubmissionRow]]]:
    """``merge_delta``'s wanted side: (token, label fingerprint, (label plaintext, row))."""
    for row in rows:
        plaintext, fingerprint = labels.label(row)
        yield row.match_token, fingerprint, (plaintext, row)


class _ChunkBuilder:
    """The items, removals and pending rows of the chunk being built, and its index."""

    def __init__(self, round_id: str, replace: bool, sequence: int = 0) -> None:
        self.round_id, self.replace, self.index, self.size = round_id, replace, 0, 0
        self.sequence = sequence
        self.items: list[tuple[bytes, bytes | None]] = []
        self.removals: list[bytes] = []
        self.pending: list[PendingChange] = []

    def next(self) -> None:
        """Start the next chunk."""
        self.index, self.size = self.index + 1, 0
        self.items, self.removals, self.pending = [], [], []

    def put(self, token: bytes, sealed: bytes | None, label_digest: bytes, fingerprint: bytes) -> None:
        self.items.append((token, sealed))
        # The tuple ``PendingChange(...)`` makes, without its Python-level __new__ (once per token).
        self.pending.append(_new_row(PendingChange, (token, False, label_digest, fingerprint)))
        self.size += 1

    def remove(self, token: bytes) -> None:
        self.removals.append(token)
        self.pending.append(_new_row(PendingChange, (token, True, NO_LABEL_DIGEST, b"")))
        self.size += 1

    def build(self, digest: bytes) -> Chunk:
        return Chunk(
            self.round_id, self.index, tuple(self.items), digest, tuple(self.removals), self.replace, self.sequence
        )
