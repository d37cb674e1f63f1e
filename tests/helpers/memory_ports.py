"""In-memory implementations of the roles' ports (``alliance_psi.protocol.ports``), for fast tests.

Like httpx's ``MockTransport``: the same contract as the storage adapters, in dicts, so the
coordinator's and custodian's rules can be tested in microseconds with a clock the test moves.
They stand beside the real-storage tests, never instead: ``tests/integration/storage/
test_port_contract.py`` runs one contract over these fakes and over SQLite and PostgreSQL, so a
fake that drifts from the real repository fails there.

Usage::

    clock = FakeClock()
    uow = MemoryUnitOfWork()
    role = CoordinatorRole(uow, SigningKey.generate(), known_types=["phone"], clock=clock)
    clock.advance(hours=2)
    role.tick()
    uow.audit.actions()  # ["round.create", ..., "round.matched"]

A unit of work snapshots the whole state on entry and puts it back if the block raises, so a
refused commit leaves nothing behind, as a rolled-back transaction does.
"""

from __future__ import annotations

import contextlib
import copy
import hmac
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from alliance_psi.crypto.derive import MATCH_TOKEN_BYTES
from alliance_psi.crypto.merkle import MemoryTree, leaf_hash
from alliance_psi.errors import (
    Conflict,
    InvalidRequest,
    LimitExceeded,
    NotFound,
    QuotaExceeded,
    RoundClosed,
    SetMismatch,
)
from alliance_psi.protocol.model import Round, RoundState, SubmissionState, SubmissionStatus
from alliance_psi.protocol.ports import Charge
from alliance_psi.protocol.submission import (
    SetDigest,
    SubmissionDigest,
    check_no_repeats,
    chunk_position,
    label_digest,
)

__all__ = [
    "FakeClock",
    "MemoryAudit",
    "MemoryMatching",
    "MemoryQuotaLedger",
    "MemoryResults",
    "MemoryRounds",
    "MemorySubmissions",
    "MemoryUnitOfWork",
]

Item = tuple[bytes, bytes | None]
_TRANSITIONS = {(RoundState.OPEN, RoundState.CLOSED), (RoundState.CLOSED, RoundState.MATCHED)}


class FakeClock:
    """A clock that moves only when told to; call it for the time."""

    def __init__(self, start: datetime = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


@dataclass
class MemoryAudit:
    """An ``AuditSink`` that keeps entries in a list, with the RFC 9162 tree over their canonical
    JSON built in memory (storage keeps the nodes in its database instead)."""

    entries: list[dict[str, Any]] = field(default_factory=list)

    def append(self, *, actor: str, action: str, detail: Mapping[str, Any], at: datetime) -> int:
        self.entries.append({"seq": len(self.entries) + 1, "actor": actor, "action": action, "detail": dict(detail)})
        return len(self.entries)

    def actions(self) -> list[str]:
        return [entry["action"] for entry in self.entries]

    def leaf(self, index: int) -> bytes:
        if not 0 <= index < len(self.entries):
            raise NotFound(f"the audit log has no entry {index}")
        return json.dumps(self.entries[index], sort_keys=True, separators=(",", ":")).encode()

    def _tree(self, size: int) -> MemoryTree:
        if not 0 <= size <= len(self.entries):
            raise NotFound(f"the audit log holds {len(self.entries)} entries, not {size}")
        return MemoryTree([leaf_hash(self.leaf(i)) for i in range(size)])

    def head(self) -> tuple[int, bytes]:
        return len(self.entries), self._tree(len(self.entries)).root()

    def root(self, size: int | None = None) -> bytes:
        return self._tree(len(self.entries) if size is None else size).root()

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        if not 0 <= index < size:
            raise NotFound(f"the audit log's first {size} entries have no entry {index}")
        return self._tree(size).inclusion_proof(index)

    def consistency_proof(self, first: int, second: int) -> list[bytes]:
        if not 0 < first <= second:
            raise NotFound(f"no consistency proof from {first} to {second} entries")
        return self._tree(second).consistency_proof(first)


@dataclass
class _Submission:
    replace: bool
    state: SubmissionState = SubmissionState.STAGING
    chunks: dict[int, tuple[bytes, int]] = field(default_factory=dict)  # index -> (digest, items)
    puts: dict[bytes, bytes | None] = field(default_factory=dict)
    removals: set[bytes] = field(default_factory=set)
    item_count: int = 0
    digest: bytes = b""
    set_count: int = 0
    share_name: bool = False


@dataclass
class _State:
    rounds: dict[str, Round] = field(default_factory=dict)
    submissions: dict[tuple[str, str], _Submission] = field(default_factory=dict)
    sets: dict[tuple[str, str], dict[bytes, bytes | None]] = field(default_factory=dict)  # (scope, member)
    set_state: dict[tuple[str, str], tuple[int, bytes]] = field(default_factory=dict)
    results: dict[tuple[str, str], tuple[bytes, bytes, int]] = field(default_factory=dict)
    result_pages: dict[tuple[str, str, int], tuple[int, tuple[bytes, ...]]] = field(default_factory=dict)
    holder_counts: dict[str, dict[int, int]] = field(default_factory=dict)
    # (round, token, member) -> (answered, label): labels asked at match.
    labels: dict[tuple[str, bytes, str], tuple[bool, bytes | None]] = field(default_factory=dict)


class _OverState:
    def __init__(self, state: _State) -> None:
        self._s = state

    def _round(self, round_id: str) -> Round:
        if round_id not in self._s.rounds:
            raise NotFound(f"no round {round_id}")
        return self._s.rounds[round_id]


class MemoryRounds(_OverState):
    """A ``RoundsRepo`` over a dict, with the storage adapter's checks and errors."""

    def create_round(self, round: Round) -> None:
        if round.round_id in self._s.rounds:
            raise Conflict(f"round {round.round_id} already exists")
        for other in self._s.rounds.values():
            if other.set_scope == round.set_scope and other.state is not RoundState.MATCHED:
                raise Conflict(
                    f"round {other.round_id} over the same key epoch, types and label sharing is not matched yet"
                )
        self._s.rounds[round.round_id] = round

    def get_round(self, round_id: str) -> Round:
        return self._round(round_id)

    def list_rounds(self, state: RoundState | None = None) -> list[Round]:
        found = [r for r in self._s.rounds.values() if state is None or r.state is state]
        return sorted(found, key=lambda r: (r.created_at or datetime.min.replace(tzinfo=UTC), r.round_id))

    def transition_round(
        self, round_id: str, from_state: RoundState, to_state: RoundState, *, at: datetime, reason: str = ""
    ) -> bool:
        if (from_state, to_state) not in _TRANSITIONS:
            raise InvalidRequest(f"a round cannot go from {from_state} to {to_state}")
        current = self.get_round(round_id)
        if current.state is not from_state:
            return False
        if to_state is RoundState.CLOSED:
            moved = replace(current, state=to_state, closed_at=at, close_reason=reason)
        else:
            moved = replace(current, state=to_state, matched_at=at)
        self._s.rounds[round_id] = moved
        return True

    def start_labelling(self, round_id: str, *, due: datetime) -> bool:
        current = self.get_round(round_id)
        if current.state is not RoundState.CLOSED or current.labels_due is not None:
            return False
        self._s.rounds[round_id] = replace(current, labels_due=due)
        return True

    def lock(self, round_id: str, *, exclusive: bool = False) -> RoundState:
        return self.get_round(round_id).state


class MemorySubmissions(_OverState):
    """A ``SubmissionsRepo`` over dicts, with the storage adapter's checks and errors."""

    def _lock(self, round_id: str, member_id: str, replace_set: bool) -> _Submission:
        key = (round_id, member_id)
        submission = self._s.submissions.setdefault(key, _Submission(replace_set))
        if submission.state is SubmissionState.STAGING and submission.replace != replace_set:
            started, other = ("its whole set", "a delta") if submission.replace else ("a delta", "a whole set")
            raise Conflict(f"this submission was started as {started}; it cannot continue as {other}")
        return submission

    def stage_chunk(
        self,
        round_id: str,
        member_id: str,
        chunk_index: int,
        items: Sequence[Item],
        chunk_digest: bytes,
        *,
        at: datetime,
        removals: Sequence[bytes] = (),
        replace: bool = True,
        max_items: int | None = None,
        sequence: int = 0,  # Continuous scopes' commit sequence: these fakes serve batch rounds only.
    ) -> bool:
        if chunk_index < 0 or len(chunk_digest) != 32:
            raise InvalidRequest("a chunk needs an index >= 0 and a 32-byte digest")
        tokens = [token for token, _ in items] + list(removals)
        if any(len(token) != MATCH_TOKEN_BYTES for token in tokens):
            raise InvalidRequest(f"a match token must be {MATCH_TOKEN_BYTES} bytes")
        check_no_repeats(chunk_index, items, removals)
        if replace and removals:
            raise Conflict("a submission that replaces the whole set cannot remove tokens")
        if self._round(round_id).state is not RoundState.OPEN:
            raise RoundClosed(f"round {round_id} is no longer open")
        submission = self._lock(round_id, member_id, replace)
        if submission.state is SubmissionState.COMMITTED:
            raise Conflict("submission already committed")
        if chunk_index in submission.chunks:
            if hmac.compare_digest(submission.chunks[chunk_index][0], chunk_digest):
                return False
            raise Conflict(f"chunk {chunk_index} already stored with different content")
        staged = sum(n for _, n in submission.chunks.values())
        if max_items is not None and staged + len(tokens) > max_items:
            what = "a whole set" if replace else "a delta"
            raise LimitExceeded(
                f"chunk {chunk_index}: {what} may hold at most {max_items} items and removals per member and "
                f"round; {staged} are staged and this chunk adds {len(tokens)}"
            )
        held = [i for i, token in enumerate(tokens) if token in submission.puts or token in submission.removals]
        if held:
            where = chunk_position(chunk_index, held[0], len(items))
            raise InvalidRequest(f"{where}: a token this submission already holds from another chunk")
        submission.chunks[chunk_index] = (chunk_digest, len(tokens))
        submission.puts.update(items)
        submission.removals.update(removals)
        return True

    def submission_status(self, round_id: str, member_id: str) -> SubmissionStatus:
        scope = self._round(round_id).set_scope
        set_count, set_digest = self._s.set_state.get((scope, member_id), (0, b""))
        submission = self._s.submissions.get((round_id, member_id))
        if submission is None:
            return SubmissionStatus(
                round_id, member_id, SubmissionState.NONE, set_count=set_count, set_digest=set_digest
            )
        committed = submission.state is SubmissionState.COMMITTED
        return SubmissionStatus(
            round_id,
            member_id,
            submission.state,
            chunks=tuple(sorted(submission.chunks)),
            item_count=submission.item_count if committed else sum(n for _, n in submission.chunks.values()),
            digest=submission.digest if committed else b"",
            set_count=set_count,
            set_digest=set_digest,
        )

    def commit_submission(
        self,
        round_id: str,
        member_id: str,
        *,
        item_count: int,
        digest: bytes,
        at: datetime,
        replace: bool = True,
        set_count: int | None = None,
        set_digest: bytes | None = None,
        max_set_items: int | None = None,
    ) -> SubmissionStatus:
        found = self._round(round_id)
        stored = self._s.submissions.get((round_id, member_id))
        if stored is not None and stored.state is SubmissionState.COMMITTED:
            if stored.item_count == item_count and hmac.compare_digest(stored.digest, digest):
                return self.submission_status(round_id, member_id)
            raise Conflict("submission already committed with a different count or digest")
        if found.state is not RoundState.OPEN:
            raise RoundClosed(f"round {round_id} is no longer open")
        submission = self._lock(round_id, member_id, replace)
        indices = sorted(submission.chunks)
        missing = sorted(set(range(indices[-1] + 1)) - set(indices)) if indices else []
        if missing:
            raise Conflict("missing chunks: " + ", ".join(str(i) for i in missing))
        recomputed = SubmissionDigest()
        for index in indices:
            recomputed.add_chunk(*submission.chunks[index])
        if recomputed.count != item_count:
            raise Conflict(f"item count mismatch: commit says {item_count}, {recomputed.count} stored")
        if not hmac.compare_digest(recomputed.digest(), digest):
            raise Conflict(f"digest mismatch over the {recomputed.count} stored items")
        key = (found.set_scope, member_id)
        standing = {} if replace else dict(self._s.sets.get(key, {}))
        absent = [token for token in submission.removals if token not in standing]
        if absent:
            raise Conflict(f"{len(absent)} removed tokens are not in the member's set")
        for token in submission.removals:
            del standing[token]
        standing.update(submission.puts)
        summary = SetDigest()
        for token in sorted(standing):
            summary.update(token, label_digest(standing[token]))
        if max_set_items is not None and summary.count > max_set_items:
            raise LimitExceeded(
                f"the member's set would hold {summary.count} tokens, over the limit of {max_set_items} per member "
                "and scope; withdraw identifiers, or ask the operator to raise --max-set-items"
            )
        if set_count is not None and set_count != summary.count:
            raise SetMismatch(f"set count mismatch: commit says {set_count}, the set would hold {summary.count}")
        if set_digest is not None and not hmac.compare_digest(summary.digest(), set_digest):
            raise SetMismatch(f"set digest mismatch over the {summary.count} tokens the set would hold")
        self._s.sets[key] = standing
        self._s.set_state[key] = (summary.count, summary.digest())
        submission.state, submission.item_count, submission.digest = SubmissionState.COMMITTED, item_count, digest
        submission.set_count, submission.puts, submission.removals = summary.count, {}, set()
        return self.submission_status(round_id, member_id)

    def discard_uncommitted(self, round_id: str) -> int:
        staging = [
            key for key, s in self._s.submissions.items() if key[0] == round_id and s.state is SubmissionState.STAGING
        ]
        discarded = 0
        for key in staging:
            submission = self._s.submissions.pop(key)
            discarded += len(submission.puts) + len(submission.removals)
        return discarded

    def committed_members(self, round_id: str) -> list[str]:
        return sorted(
            member
            for (rid, member), s in self._s.submissions.items()
            if rid == round_id and s.state is SubmissionState.COMMITTED
        )

    def submitted_count(self, round_id: str, member_id: str) -> int:
        submission = self._s.submissions.get((round_id, member_id))
        if submission is None:
            return 0
        if submission.state is SubmissionState.COMMITTED:
            return submission.set_count
        return sum(n for _, n in submission.chunks.values())

    # Names.

    def record_share_name(self, round_id: str, member_id: str, share: bool) -> None:
        submission = self._s.submissions.get((round_id, member_id))
        if submission is not None:
            submission.share_name = share

    def sealer_names(self, round_id: str) -> dict[str, str]:
        # No enrolment list here: a member that chose to be named is named by its id.
        return {
            member: member
            for (rid, member), submission in self._s.submissions.items()
            if rid == round_id and submission.state is SubmissionState.COMMITTED and submission.share_name
        }


class MemoryMatching(_OverState):
    """A ``MatchingRepo`` over the committed members' sets."""

    def match(
        self, round_id: str, threshold: int, *, labels: bool = True
    ) -> Iterator[tuple[bytes, str, bytes | None, int]]:
        if threshold < 1:
            raise InvalidRequest("threshold must be at least 1")
        scope = self._round(round_id).set_scope
        holders: dict[bytes, list[tuple[str, bytes | None]]] = {}
        for member in MemorySubmissions(self._s).committed_members(round_id):
            for token, label in self._s.sets.get((scope, member), {}).items():
                holders.setdefault(token, []).append((member, label if labels else None))
        for token in sorted(holders):
            if len(holders[token]) >= threshold:
                for member, label in holders[token]:
                    yield token, member, label, len(holders[token])

    def record_holder_counts(self, round_id: str, counts: dict[int, int]) -> None:
        self._s.holder_counts[round_id] = dict(counts)


class MemoryResults(_OverState):
    """A ``ResultsRepo`` over dicts."""

    def store_result(
        self, round_id: str, member_id: str, header: bytes, signature: bytes, pages: int, *, at: datetime
    ) -> None:
        if (round_id, member_id) in self._s.results:
            raise Conflict(f"a result is already stored for {member_id} in round {round_id}")
        self._s.results[(round_id, member_id)] = (header, signature, pages)

    def store_result_page(
        self, round_id: str, member_id: str, page_index: int, first_leaf: int, leaves: Sequence[bytes]
    ) -> None:
        if (round_id, member_id, page_index) in self._s.result_pages:
            raise Conflict(f"page {page_index} of the result for {member_id} in round {round_id} is already stored")
        self._s.result_pages[(round_id, member_id, page_index)] = (first_leaf, tuple(leaves))

    def get_result(self, round_id: str, member_id: str) -> tuple[bytes, bytes, int]:
        if (round_id, member_id) not in self._s.results:
            raise NotFound(f"no result for {member_id} in round {round_id}")
        return self._s.results[(round_id, member_id)]

    def get_result_page(self, round_id: str, member_id: str, page_index: int) -> tuple[int, tuple[bytes, ...]]:
        if (round_id, member_id, page_index) not in self._s.result_pages:
            raise NotFound(f"no page {page_index} of the result for {member_id} in round {round_id}")
        return self._s.result_pages[(round_id, member_id, page_index)]


class MemoryLabels(_OverState):
    """A ``RoundLabelsRepo`` over a dict, with the storage adapter's checks and errors."""

    def ask(self, round_id: str, requests: Iterable[tuple[bytes, str]]) -> int:
        count = 0
        for token, member in requests:
            self._s.labels[(round_id, token, member)] = (False, None)
            count += 1
        return count

    def asked(self, round_id: str, member_id: str, *, after: bytes = b"", limit: int) -> list[bytes]:
        tokens = sorted(
            t
            for (r, t, m), (answered, _) in self._s.labels.items()
            if r == round_id and m == member_id and not answered
        )
        return [t for t in tokens if t > after][:limit]

    def answer(self, round_id: str, member_id: str, items: Sequence[tuple[bytes, bytes | None]]) -> int:
        fresh = []
        for index, (token, label) in enumerate(items):
            key = (round_id, token, member_id)
            if key not in self._s.labels:
                raise InvalidRequest(f"item {index}: not a token this member was asked to label in round {round_id}")
            answered, stored = self._s.labels[key]
            if answered:
                if (stored or b"") != (label or b""):
                    raise Conflict(f"item {index}: answered already with another label")
                continue
            fresh.append((key, label or None))
        for key, label in fresh:
            self._s.labels[key] = (True, label)
        return len(fresh)

    def has_outstanding(self, round_id: str, member_id: str | None = None) -> bool:
        unanswered = self.unanswered_by_member(round_id)
        return bool(unanswered.get(member_id, 0) if member_id else unanswered)

    def unanswered_by_member(self, round_id: str) -> dict[str, int]:
        found: dict[str, int] = {}
        for (r, _, m), (answered, _) in sorted(self._s.labels.items()):
            if r == round_id and not answered:
                found[m] = found.get(m, 0) + 1
        return found

    def answers(self, round_id: str) -> Iterator[tuple[bytes, str, bytes]]:
        found = [(t, m, label) for (r, t, m), (answered, label) in self._s.labels.items() if r == round_id and label]
        yield from sorted(found)  # type: ignore[misc]

    def clear(self, round_id: str) -> int:
        keys = [key for key in self._s.labels if key[0] == round_id]
        for key in keys:
            del self._s.labels[key]
        return len(keys)


class MemoryAlerts:
    """The alert outbox, as far as batch rounds touch it: these fakes serve no continuous scope, so
    no alert is ever held (the coordinator's tick asks). Continuous scopes are tested on SQLite
    and PostgreSQL (``tests/integration/storage/test_continuous_matching.py``)."""

    def due_scopes(self, now: datetime) -> list[str]:
        return []


@dataclass
class _Tx:
    rounds: MemoryRounds
    submissions: MemorySubmissions
    matching: MemoryMatching
    results: MemoryResults
    labels: MemoryLabels
    audit: MemoryAudit
    alerts: MemoryAlerts = field(default_factory=MemoryAlerts)

    @classmethod
    def over(cls, state: _State, audit: MemoryAudit) -> _Tx:
        return cls(
            MemoryRounds(state),
            MemorySubmissions(state),
            MemoryMatching(state),
            MemoryResults(state),
            MemoryLabels(state),
            audit,
        )


class MemoryUnitOfWork:
    """A ``CoordinatorUnitOfWork``: ``with uow() as tx`` commits on a clean exit, else rolls back.

    ``transactions`` counts the commits, ``opened`` every transaction begun.
    """

    def __init__(self) -> None:
        self.state = _State()
        self.audit = MemoryAudit()
        self.transactions = self.opened = 0

    @contextlib.contextmanager
    def __call__(self) -> Iterator[_Tx]:
        self.opened += 1
        saved = copy.deepcopy((self.state, self.audit.entries))
        try:
            yield _Tx.over(self.state, self.audit)
        except BaseException:
            self.state, self.audit.entries = saved
            raise
        self.transactions += 1

    @property
    def view(self) -> _Tx:
        """The repositories outside any transaction, for a test to look at the state."""
        return _Tx.over(self.state, self.audit)


class MemoryQuotaLedger:
    """A ``QuotaLedger``: a batch is charged once per digest, entirely or not at all, and refundable.

    A batch sent again is free while the member's re-sent elements stay within ``free_resent``,
    and charged again beyond.

    ``charges`` counts the ``charge`` calls, so a test can tell a batch was charged before any
    work on it.
    """

    def __init__(self) -> None:
        self.counts: dict[tuple[str, str], int] = {}
        self.batches: dict[tuple[str, str, bytes], int] = {}
        self.resent: dict[tuple[str, str], int] = {}
        self.charges = 0
        self.audit = MemoryAudit()

    def charge(
        self, key_epoch: str, member_id: str, batch_digest: bytes, count: int, quota: int, free_resent: int
    ) -> Charge:
        self.charges += 1
        if count < 0 or quota < 0:
            raise InvalidRequest("an evaluation count and a quota cannot be negative")
        if len(batch_digest) != 32:
            raise InvalidRequest("a batch digest is 32 bytes")
        used = self.counts.get((key_epoch, member_id), 0)
        charged = (key_epoch, member_id, batch_digest) not in self.batches
        resent = self.resent.get((key_epoch, member_id), 0)
        if not charged and resent + count <= free_resent:
            self.resent[(key_epoch, member_id)] = resent + count
        else:
            charged = True
        if charged:
            if used + count > quota:
                self.audit.append(
                    actor=member_id,
                    action="evaluate.refused",
                    at=datetime.now(UTC),
                    detail={"key_epoch": key_epoch, "requested": count, "used": used, "quota": quota},
                )
                raise QuotaExceeded(
                    f"evaluation quota exceeded for key epoch {key_epoch}: {used} of {quota} used, {count} requested",
                    member_id=member_id,
                    quota=quota,
                    used=used,
                    requested=count,
                )
            used += count
            self.counts[(key_epoch, member_id)] = used
            self.batches[(key_epoch, member_id, batch_digest)] = count
        self.audit.append(
            actor=member_id,
            action="evaluate",
            at=datetime.now(UTC),
            detail={
                "key_epoch": key_epoch,
                "elements": count,
                "charged": count if charged else 0,
                "used": used,
                "batch": batch_digest.hex(),
            },
        )
        return Charge(used, charged)

    def refund(self, key_epoch: str, member_id: str, batch_digest: bytes, reason: str) -> None:
        count = self.batches.pop((key_epoch, member_id, batch_digest), None)
        if count is None:
            return
        used = self.counts[(key_epoch, member_id)] - count
        self.counts[(key_epoch, member_id)] = used
        self.audit.append(
            actor=member_id,
            action="evaluate.refund",
            at=datetime.now(UTC),
            detail={"key_epoch": key_epoch, "used": used, "batch": batch_digest.hex(), "reason": reason},
        )

    def used(self, key_epoch: str, member_id: str) -> int:
        return self.counts.get((key_epoch, member_id), 0)
