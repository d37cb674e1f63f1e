"""In-memory implementations of the member role's ports (``alliance_psi.protocol.ports``), for fast tests.

The node's database is ``MemoryNodeUnitOfWork`` (dicts with the storage adapter's rules; a
writing block that raises puts everything back, as a rolled-back transaction does). The peers
are the real roles, in this process, with no gRPC in between: ``RoleEvaluator`` calls each
``CustodianRole`` in turn and ``LoopbackCoordinator`` calls a ``CoordinatorRole`` (over
``memory_ports.MemoryUnitOfWork``), each as the member the certificate would name.
``tests/integration/storage/test_node_port_contract.py`` runs one contract over
``MemoryNodeRepo`` and over ``MemberRepository`` on SQLite and PostgreSQL, so the fake cannot
drift from the real repository unnoticed.

Usage::

    node = MemoryNodeUnitOfWork()
    node.add("phone", "+8613800000001", category="wool_party")
    role = MemberRole(member_id="bank-a", uow=node, evaluator=RoleEvaluator([custodian], "bank-a"),
                      coordinator=LoopbackCoordinator(coordinator, "bank-a"), ...)
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Collection, Generator, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from alliance_psi.crypto.derive import LABEL_KEY_BYTES, MATCH_TOKEN_BYTES
from alliance_psi.errors import InvalidRequest, NotFound
from alliance_psi.protocol.audit import AuditRole
from alliance_psi.protocol.checkpoints import Evidence, SignedCheckpoint, SignedStatement, decode_checkpoint
from alliance_psi.protocol.coordinator import Chunk, Commit, CoordinatorRole
from alliance_psi.protocol.custodian import CustodianRole
from alliance_psi.protocol.leads import LeadChecks, OwnIdentifier, RefusedLead
from alliance_psi.protocol.model import Identity, Role, Round, SubmissionStatus
from alliance_psi.protocol.node_rows import (
    CachedToken,
    IdentifierRef,
    KeptHeader,
    KeptLeaf,
    PendingChange,
    PendingSet,
    SetRecord,
    SubmissionRow,
    SubmittedToken,
)
from alliance_psi.protocol.result_codec import LeafPage, SignedResultHeader

__all__ = ["LoopbackCoordinator", "MemoryKeptResults", "MemoryNodeRepo", "MemoryNodeUnitOfWork", "RoleEvaluator"]


@dataclass
class _NodeState:
    identifiers: dict[int, OwnIdentifier] = field(default_factory=dict)  # id -> identifier
    next_id: int = 1
    tokens: dict[tuple[str, int], tuple[bytes, bytes]] = field(default_factory=dict)  # (epoch, id) -> token, key
    submitted: dict[str, dict[bytes, SubmittedToken]] = field(default_factory=dict)  # scope -> token -> row
    submitted_state: dict[str, SetRecord] = field(default_factory=dict)
    pending: dict[str, dict[bytes, PendingChange]] = field(default_factory=dict)
    pending_sets: dict[str, PendingSet] = field(default_factory=dict)
    stamps: dict[int, int] = field(default_factory=dict)  # id -> change stamp
    head: int = 0
    withdrawals: list[tuple[int, str, bytes, str]] = field(default_factory=list)  # stamp, epoch, token, type
    headers: dict[str, KeptHeader] = field(default_factory=dict)
    leaves: dict[str, list[KeptLeaf]] = field(default_factory=dict)
    checkpoints: list[SignedCheckpoint] = field(default_factory=list)
    evidence: list[Evidence] = field(default_factory=list)
    scopes: dict[str, tuple[str, bool]] = field(default_factory=dict)
    conflicting: dict[str, list[tuple[bytes, bytes]]] = field(default_factory=dict)
    refused: dict[str, tuple[RefusedLead, ...]] = field(default_factory=dict)
    label_answers: dict[str, set[bytes]] = field(default_factory=dict)  # round -> tokens answered at match


class MemoryNodeRepo:
    """A ``NodeRepo`` over dicts; ``upsert_identifiers`` and ``withdraw`` stand in for ``node import``."""

    def __init__(self, state: _NodeState) -> None:
        self._s = state

    # What ``node import`` does (``MemberRepository``'s methods, not part of the port).

    def upsert_identifiers(self, rows: Iterable[Mapping[str, Any]], *, at: datetime | None = None) -> tuple[int, int]:
        """Store identifiers, or refresh the label fields of those stored (their ids and tokens kept)."""
        inserted = duplicates = 0
        self._s.head += 1
        for row in rows:
            key = (row["type"], row["canonical"])
            stored = next((id_ for id_, i in self._s.identifiers.items() if (i.type, i.canonical) == key), None)
            if stored is None:
                stored, self._s.next_id, spelling = self._s.next_id, self._s.next_id + 1, ""
                inserted += 1
            else:
                spelling = self._s.identifiers[stored].spelling  # Kept unless the row spells it.
                duplicates += 1
            label = (row["category"], row["severity"], row.get("first_seen"), row.get("case_ref") or "")
            before = self._s.identifiers.get(stored)
            self._s.identifiers[stored] = OwnIdentifier(*key, *label, row.get("spelling") or spelling)
            if before is None or before[2:6] != label:  # Stamped again only if its label changed.
                self._s.stamps[stored] = self._s.head
        return inserted, duplicates

    def withdraw(self, type: str, canonical: str) -> bool:
        """Delete an identifier and its cached tokens (kept as withdrawn); False if it was not stored."""
        for id_, stored in list(self._s.identifiers.items()):
            if (stored.type, stored.canonical) == (type, canonical):
                self._s.head += 1
                for (epoch, cached), (token, _) in self._s.tokens.items():
                    if cached == id_:
                        self._s.withdrawals.append((self._s.head, epoch, token, type))
                del self._s.identifiers[id_]
                self._s.tokens = {key: value for key, value in self._s.tokens.items() if key[1] != id_}
                return True
        return False

    # The port.

    def missing_token_ids(
        self,
        key_epoch: str,
        types: Collection[str] | None = None,
        *,
        since: int | None = None,
        upto: int | None = None,
        after: int = 0,
        limit: int | None = None,
    ) -> Iterator[IdentifierRef]:
        found = 0
        for id_, row in sorted(self._s.identifiers.items()):
            if id_ > after and (types is None or row.type in types) and (key_epoch, id_) not in self._s.tokens:
                if self._stamped(id_, since, upto) and (limit is None or found < limit):
                    found += 1
                    yield IdentifierRef(id_, row.type, row.canonical)

    def count_missing_tokens(
        self, key_epoch: str, types: Collection[str] | None = None, *, since: int | None = None, upto: int | None = None
    ) -> int:
        return sum(1 for _ in self.missing_token_ids(key_epoch, types, since=since, upto=upto))

    def _stamped(self, id_: int, since: int | None, upto: int | None) -> bool:
        stamp = self._s.stamps[id_]
        return (since is None or stamp > since) and (upto is None or stamp <= upto)

    def change_head(self) -> int:
        return self._s.head

    def iter_changed_rows(
        self, key_epoch: str, types: Collection[str], since: int, upto: int
    ) -> Iterator[SubmissionRow]:
        for row in self.iter_submission_rows(key_epoch, types):
            if self._stamped(row.identifier_id, since, upto):
                yield row

    def withdrawn_tokens(self, key_epoch: str, types: Collection[str], since: int, upto: int) -> set[bytes]:
        return {
            token
            for stamp, epoch, token, type_ in self._s.withdrawals
            if epoch == key_epoch and type_ in types and since < stamp <= upto
        }

    def submitted_for_tokens(self, set_scope: str, tokens: Iterable[bytes]) -> dict[bytes, SubmittedToken]:
        record = self._s.submitted.get(set_scope, {})
        return {token: record[token] for token in tokens if token in record}

    def cache_tokens(self, key_epoch: str, rows: Sequence[CachedToken]) -> None:
        for _, token, label_key in rows:
            if len(token) != MATCH_TOKEN_BYTES or len(label_key) != LABEL_KEY_BYTES:
                raise InvalidRequest(f"a cached token is {MATCH_TOKEN_BYTES} bytes and a label key {LABEL_KEY_BYTES}")
        for id_, token, label_key in rows:
            self._s.tokens.setdefault((key_epoch, id_), (token, label_key))

    def iter_submission_rows(self, key_epoch: str, types: Collection[str] | None = None) -> Iterator[SubmissionRow]:
        rows = [
            SubmissionRow(id_, *self._s.tokens[(key_epoch, id_)], i.category, i.severity, i.first_seen, i.case_ref)
            for id_, i in self._s.identifiers.items()
            if (key_epoch, id_) in self._s.tokens and (types is None or i.type in types)
        ]
        yield from sorted(rows, key=lambda row: row.match_token)

    def identifiers_for_tokens(self, key_epoch: str, tokens: Iterable[bytes]) -> dict[bytes, OwnIdentifier]:
        wanted, found = set(tokens), {}
        for (epoch, id_), (token, _) in self._s.tokens.items():
            if epoch == key_epoch and token in wanted:
                found[token] = self._s.identifiers[id_]
        return found

    def label_keys_for_tokens(self, key_epoch: str, tokens: Iterable[bytes]) -> dict[bytes, bytes]:
        wanted = set(tokens)
        return {
            token: key for (epoch, _), (token, key) in self._s.tokens.items() if epoch == key_epoch and token in wanted
        }

    def submission_rows_for_tokens(self, key_epoch: str, tokens: Iterable[bytes]) -> dict[bytes, SubmissionRow]:
        wanted = set(tokens)
        return {row.match_token: row for row in self.iter_submission_rows(key_epoch) if row.match_token in wanted}

    def iter_submitted(self, set_scope: str) -> Iterator[SubmittedToken]:
        yield from sorted(self._s.submitted.get(set_scope, {}).values())

    def submitted_state(self, set_scope: str) -> SetRecord | None:
        return self._s.submitted_state.get(set_scope)

    def forget_submitted(self, set_scope: str) -> None:
        self._s.submitted.pop(set_scope, None)
        self._s.submitted_state.pop(set_scope, None)
        self.clear_pending(set_scope)

    def clear_pending(self, set_scope: str) -> None:
        self._s.pending.pop(set_scope, None)
        self._s.pending_sets.pop(set_scope, None)

    def set_pending(self, set_scope: str, pending: PendingSet) -> None:
        self._s.pending_sets[set_scope] = pending

    def pending_set(self, set_scope: str) -> PendingSet | None:
        return self._s.pending_sets.get(set_scope)

    def add_pending(self, set_scope: str, rows: Sequence[PendingChange]) -> None:
        pending = self._s.pending.setdefault(set_scope, {})
        for row in rows:
            if row.match_token in pending:
                raise InvalidRequest("a token is pending twice")  # The primary key of member_pending.
            pending[row.match_token] = row

    def apply_pending(self, set_scope: str) -> None:
        pending = self._s.pending_sets.pop(set_scope, None)
        if pending is None or pending.record is None:
            raise NotFound(f"no built submission is pending in scope {set_scope}")
        record = {} if pending.replace else self._s.submitted.get(set_scope, {})
        for change in self._s.pending.pop(set_scope, {}).values():
            if change.removed:
                record.pop(change.match_token, None)
            else:
                record[change.match_token] = SubmittedToken(
                    change.match_token, change.label_digest, change.label_fingerprint
                )
        self._s.submitted[set_scope] = record
        self._s.submitted_state[set_scope] = pending.record
        held = {token for tokens in self._s.submitted.values() for token in tokens}
        read_up_to = [p.change_seq for p in self._s.pending_sets.values()]
        self._s.withdrawals = [
            w for w in self._s.withdrawals if w[2] in held or any(seq is None or seq < w[0] for seq in read_up_to)
        ]


class MemoryKeptResults:
    """A ``KeptResultsRepo`` over dicts."""

    def __init__(self, state: _NodeState) -> None:
        self._s = state

    def save_header(
        self, round_id: str, *, key_epoch: str, round_name: str, header: bytes, signature: bytes, at: datetime
    ) -> None:
        self._s.headers[round_id] = KeptHeader(key_epoch, round_name, header, signature, at)
        self._s.leaves[round_id] = []
        self._s.refused[round_id] = ()

    def keep_conflicting(self, round_id: str, *, header: bytes, signature: bytes, at: datetime) -> None:
        kept = self._s.conflicting.setdefault(round_id, [])
        if all(header != h for h, _ in kept):
            kept.append((header, signature))

    def conflicting(self, round_id: str) -> list[tuple[bytes, bytes]]:
        return list(self._s.conflicting.get(round_id, []))

    def add_leaves(self, round_id: str, rows: Sequence[KeptLeaf]) -> None:
        self._s.leaves[round_id].extend(rows)

    def get_result(self, round_id: str) -> KeptHeader:
        if round_id not in self._s.headers:
            raise NotFound(f"no result kept for round {round_id}: run `alliance-psi node join {round_id}` first")
        return self._s.headers[round_id]

    def iter_leaves(self, round_id: str) -> Iterator[bytes]:
        yield from (row.leaf for row in sorted(self._s.leaves.get(round_id, [])))

    def record_label_answers(self, round_id: str, tokens: Sequence[bytes]) -> None:
        self._s.label_answers.setdefault(round_id, set()).update(tokens)

    def label_answers_count(self, round_id: str) -> int:
        return len(self._s.label_answers.get(round_id, set()))

    def label_answers_beyond_result(self, round_id: str) -> int:
        held = {row.match_token for row in self._s.leaves.get(round_id, [])}
        return len(self._s.label_answers.get(round_id, set()) - held)

    def record_scope(self, round_id: str, set_scope: str, *, share_labels: bool) -> None:
        self._s.scopes[round_id] = (set_scope, share_labels)

    def recorded_scope(self, round_id: str) -> tuple[str, bool] | None:
        return self._s.scopes.get(round_id)

    def save_refusals(self, round_id: str, refused: Sequence[RefusedLead]) -> None:
        self._s.refused[round_id] += tuple(refused)

    def get_checks(self, round_id: str) -> LeadChecks:
        scope, share = self._s.scopes.get(round_id, ("", False))
        refused = sorted(self._s.refused.get(round_id, ()), key=lambda r: r.match_token)
        return LeadChecks(scope if share else None, tuple(refused))


class MemoryCheckpoints:
    """A ``CheckpointsRepo`` over lists."""

    def __init__(self, state: _NodeState) -> None:
        self._s = state

    def add(self, signed: SignedCheckpoint, *, at: datetime) -> bool:
        head = decode_checkpoint(signed.body)
        if any(_size_and_root(kept) == (head.tree_size, head.root) for kept in self._s.checkpoints):
            return False
        self._s.checkpoints.append(signed)
        return True

    def largest(self) -> SignedCheckpoint | None:
        return max(self._s.checkpoints, key=lambda kept: decode_checkpoint(kept.body).tree_size, default=None)

    def add_evidence(self, evidence: Evidence, *, at: datetime) -> None:
        self._s.evidence.append(evidence)


def _size_and_root(signed: SignedCheckpoint) -> tuple[int, bytes]:
    head = decode_checkpoint(signed.body)
    return head.tree_size, head.root


@dataclass(frozen=True)
class _NodeTx:
    repo: MemoryNodeRepo
    results: MemoryKeptResults
    checkpoints: MemoryCheckpoints

    @classmethod
    def over(cls, state: _NodeState) -> _NodeTx:
        return cls(MemoryNodeRepo(state), MemoryKeptResults(state), MemoryCheckpoints(state))


class MemoryNodeUnitOfWork:
    """A ``NodeUnitOfWork``: ``writing()`` puts the state back if its block raises; ``reading()`` sees it live."""

    def __init__(self) -> None:
        self.state = _NodeState()
        self.writes = 0

    @contextlib.contextmanager
    def reading(self) -> Iterator[_NodeTx]:
        yield _NodeTx.over(self.state)

    @contextlib.contextmanager
    def writing(self) -> Iterator[_NodeTx]:
        saved = copy.deepcopy(self.state)
        try:
            yield _NodeTx.over(self.state)
        except BaseException:
            self.state.__dict__.update(saved.__dict__)
            raise
        self.writes += 1

    @property
    def repo(self) -> MemoryNodeRepo:
        """The repository outside any transaction, for a test to set up and look at the state."""
        return MemoryNodeRepo(self.state)

    def add(self, type: str, canonical: str, *, category: str = "other", severity: str = "level1") -> None:
        """Store an identifier, or relabel the one stored (as ``node import`` does)."""
        row = {"type": type, "canonical": canonical, "category": category, "severity": severity}
        self.repo.upsert_identifiers([row])

    def withdraw(self, type: str, canonical: str) -> bool:
        """``MemoryNodeRepo.withdraw``: delete an identifier and its cached tokens."""
        return self.repo.withdraw(type, canonical)


class RoleEvaluator:
    """An ``Evaluator``: the custodian roles in turn, each called as ``member``."""

    def __init__(self, custodians: Sequence[CustodianRole], member: str) -> None:
        self.custodians, self.caller = list(custodians), Identity(member, Role.MEMBER)
        self.evaluated = 0  # Elements sent to the first custodian.

    def key_epochs(self) -> list[str]:
        return [custodian.epoch_status(self.caller).key_epoch for custodian in self.custodians]

    def evaluate(self, key_epoch: str, elements: Sequence[bytes]) -> list[bytes]:
        self.evaluated += len(elements)
        current = list(elements)
        for custodian in self.custodians:
            current = custodian.evaluate(self.caller, key_epoch, current).elements
        return current


class LoopbackCoordinator:
    """``CoordinatorCalls`` on a ``CoordinatorRole`` in this process, as ``member``.

    ``uploaded`` lists the index of every chunk sent. ``fail_after`` breaks the upload after
    that many chunks (a connection lost mid-stream); ``tamper`` rewrites each part of a result
    on its way to the member (a coordinator that lies).
    """

    def __init__(
        self,
        role: CoordinatorRole,
        member: str,
        *,
        fail_after: int | None = None,
        tamper: Callable[[SignedResultHeader | LeafPage], SignedResultHeader | LeafPage] | None = None,
    ) -> None:
        self.role, self.caller = role, Identity(member, Role.MEMBER)
        self.audit = AuditRole(role.uow, role.key, name=role.name, clock=role.clock)
        self.fail_after, self.tamper = fail_after, tamper
        self.uploaded: list[int] = []

    def get_round(self, round_id: str) -> tuple[Round, int]:
        return self.role.get_round(self.caller, round_id)

    def submission_status(self, round_id: str, member_id: str) -> SubmissionStatus:
        return self.role.submission_status(self.caller, round_id)

    def upload_chunks(self, chunks: Iterable[Chunk]) -> tuple[int, int]:
        stored = again = 0
        for chunk in chunks:
            if self.fail_after is not None and len(self.uploaded) >= self.fail_after:
                raise ConnectionError("the upload broke off")
            self.uploaded.append(chunk.chunk_index)
            if self.role.upload_chunk(self.caller, chunk):
                stored += 1
            else:
                again += 1
        return stored, again

    def commit(self, commit: Commit, member_id: str) -> SubmissionStatus:
        return self.role.commit(self.caller, commit)

    def get_result(self, round_id: str) -> Generator[SignedResultHeader | LeafPage, None, None]:
        header, pages = self.role.get_result(self.caller, round_id)
        for part in (header, *pages):
            yield self.tamper(part) if self.tamper else part

    def label_requests(self, round_id: str, *, after: bytes = b"", limit: int = 0) -> list[bytes]:
        return self.role.label_requests(self.caller, round_id, after=after, **({"limit": limit} if limit else {}))

    def answer_labels(self, round_id: str, items: Sequence[tuple[bytes, bytes | None]]) -> bool:
        return self.role.answer_labels(self.caller, round_id, items)

    def checkpoint(self) -> SignedCheckpoint:
        return self.audit.checkpoint(self.caller)

    def consistency(self, first: int, second: int) -> SignedStatement:
        return self.audit.consistency(self.caller, first, second)
