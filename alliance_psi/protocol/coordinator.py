"""The coordinator's role (docs/design.md, protocol steps 6 and 7), free of transport and SQL.

Rounds go open → closed → matched. A round closes at its deadline, when every invited member
has committed, or when an admin closes it; matching follows in its own transaction, so a
coordinator that dies between the two finishes the job on restart (``tick``). A member's
submission is invisible to matching until committed, and an uncommitted one is discarded when
the round closes. Submissions build standing sets per scope (``Round.set_scope``): the first is
the member's whole set, later ones are deltas, and a round matches over the sets of the members
that committed to it, so rounds of one scope run one after another. Each committed member gets a signed result holding only its own matched
tokens, as a signed header over a Merkle tree of leaves stored a page at a time
(``result_codec``). Every state change is appended to the audit log (ids and counts, never tokens).

A batch round whose labels are sealed at match (``Round.labels_at_match``) stays closed between
matching and its results: ``_match`` first asks the carried holders of each matched token for its
label (``labels_due`` set), members answer (``label_requests``, ``answer_labels``), and the
results are issued once nothing is outstanding or the window passed (the last answer, or ``tick``).
"""

from __future__ import annotations

import functools
import re
import secrets
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from alliance_psi.crypto.derive import MATCH_TOKEN_BYTES
from alliance_psi.crypto.signing import SigningKey
from alliance_psi.defaults import MAX_ALERT_BACKLOG, MAX_REFUSED_CHUNKS
from alliance_psi.errors import (
    ConfigurationError,
    Conflict,
    InvalidRequest,
    LimitExceeded,
    NotAuthorized,
    NotFound,
    RoundClosed,
)
from alliance_psi.protocol.alert_feed import AlertFeed, AlertSignal
from alliance_psi.protocol.alert_outbox import AlertOutbox
from alliance_psi.protocol.audit import AuditRole
from alliance_psi.protocol.checkpoints import decode_checkpoint
from alliance_psi.protocol.chunk_refusals import RefusedChunks
from alliance_psi.protocol.label_cap import MAX_LABEL_CAP, default_label_cap
from alliance_psi.protocol.matching import ask_for_labels, issue_results
from alliance_psi.protocol.model import (
    LABELS_ASKED,
    MIN_THRESHOLD,
    Identity,
    Role,
    Round,
    RoundKind,
    RoundState,
    SubmissionStatus,
)
from alliance_psi.protocol.ports import CoordinatorTx, CoordinatorUnitOfWork
from alliance_psi.protocol.result_codec import (
    PAGE_BYTES,
    LeafPage,
    SignedResultHeader,
    decode_header,
)
from alliance_psi.protocol.scope_deltas import commit_and_match, commit_detail, discard_refused
from alliance_psi.protocol.submission import MAX_CHUNK_ITEMS, check_item, check_items, check_no_repeats, chunk_digest

__all__ = ["ID_PATTERN", "MAX_ID_CHARS", "MAX_INTERVAL_SECONDS", "Chunk", "Commit", "CoordinatorRole", "RoundSpec"]

MAX_ID_CHARS = 64  # Round ids, key epochs and member ids.
MAX_INTERVAL_SECONDS = 7 * 24 * 3600  # A continuous scope's minimum interval between alert releases.
ID_PATTERN = re.compile(rf"^[A-Za-z0-9][A-Za-z0-9._-]{{0,{MAX_ID_CHARS - 1}}}$")
"""What a round id, a key epoch or a member id looks like: 1-64 letters, digits, '.', '_' or '-'."""
_ID = ID_PATTERN
_MAX_CHUNK_INDEX = 1_000_000
# Labels sealed at match: how long the holders have to answer (seconds), by default and at most.
DEFAULT_LABEL_WINDOW_SECONDS = 300
MIN_LABEL_WINDOW_SECONDS = 10
MAX_LABEL_WINDOW_SECONDS = 7 * 24 * 3600
# Tokens asked for per call, and labels answered per call, at most.
MAX_LABEL_PAGE = 4096


@dataclass(frozen=True, slots=True)
class RoundSpec:
    """What an admin asks for when creating a round."""

    name: str
    threshold: int
    key_epoch: str
    deadline: datetime
    allowed_types: tuple[str, ...]
    invited: tuple[str, ...] | None
    share_labels: bool
    round_id: str = ""
    kind: RoundKind = RoundKind.BATCH
    min_interval_seconds: int = 0  # Continuous scopes only: release alerts at multiples of this.
    label_cap: int = 0  # Co-holder labels per leaf and alert at most; 0: ``label_cap.default_label_cap``.
    labels_at_match: bool = False  # Batch rounds sharing labels: sealed only for matched tokens, after closing.
    label_window_seconds: int = 0  # With ``labels_at_match``: the holders' time to answer; 0: the default.


@dataclass(frozen=True, slots=True)
class Chunk:
    """One chunk of a member's delta, as received: items put (token, sealed label) and tokens removed."""

    round_id: str
    chunk_index: int
    items: tuple[tuple[bytes, bytes | None], ...]
    chunk_digest: bytes
    removals: tuple[bytes, ...] = ()
    replace: bool = True  # Part of the member's whole set (False: of a delta against its standing set).
    sequence: int = 0  # Continuous scopes: the commit sequence of the delta (last committed + 1).


@dataclass(frozen=True, slots=True)
class Commit:
    """A member's commit: its delta's count and digest, and the set it expects to result.

    ``replace`` says the delta is the member's whole set (its first submission in a scope, or
    after its record of the set disagreed with the coordinator's). ``share_name``: the member
    chose to be named to the co-holders of its labels; the coordinator then attests, in their
    results, that this enrolled member sealed them (``PeerLabel.sealer``).
    """

    round_id: str
    item_count: int
    digest: bytes
    set_count: int
    set_digest: bytes
    replace: bool
    share_name: bool = False
    sequence: int = 0  # Continuous scopes: the commit sequence of the delta, as its chunks say.


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _no_pins(member_id: str) -> bytes | None:
    return None


class CoordinatorRole:
    """Rounds, submissions, matching and signed results over a unit of work.

    Per member, a standing set holds at most ``max_set_items`` tokens per scope, and a delta at
    most ``max_round_items`` items and removals per round (a whole set, ``max_set_items``);
    beyond, the chunk or the commit is refused with ``LimitExceeded`` and nothing of it is kept.
    None means no limit; a deployed coordinator gets its limits from ``CoordinatorConfig``. A
    member's chunks refused for their content count against ``max_refused_chunks`` per round
    (``RefusedChunks``); beyond, its chunks for that round are refused before any transaction.

    ``key_pins`` gives the key pin the coordinator enrolled for a member (None: not enrolled);
    each result header names it, so a report signed with another key fails verification. A round
    inviting a member nobody enrolled (a typo) is refused at creation rather than left waiting for
    a member that can never connect. Without ``key_pins`` (role tests: no enrolment list) no key is
    named and invitees are not checked.

    Continuous scopes (``protocol.continuous``) match each commit at once into alerts
    (``outbox``: at most ``max_alert_backlog`` unacknowledged per member) that members watch and
    acknowledge (``feed``); ``alert_signal`` wakes the watches of this process, ``reader`` is a
    unit of work for the watches' reads (one that takes no write lock), and ``alert_heartbeat``
    and ``alert_poll`` are the feed's seconds between heartbeats and between reads of the outbox.
    """

    def __init__(
        self,
        uow: CoordinatorUnitOfWork,
        signing_key: SigningKey,
        *,
        known_types: Collection[str],
        name: str = "coordinator",
        clock: Callable[[], datetime] = _utcnow,
        max_set_items: int | None = None,
        max_round_items: int | None = None,
        result_page_bytes: int = PAGE_BYTES,
        key_pins: Callable[[str], bytes | None] | None = None,
        max_refused_chunks: int = MAX_REFUSED_CHUNKS,
        max_alert_backlog: int = MAX_ALERT_BACKLOG,
        alert_signal: AlertSignal | None = None,
        reader: CoordinatorUnitOfWork | None = None,
        alert_heartbeat: float = 15.0,
        alert_poll: float = 2.0,
    ) -> None:
        self.uow, self.key, self.known_types, self.name, self.clock = (
            uow,
            signing_key,
            frozenset(known_types),
            name,
            clock,
        )
        if (max_set_items is not None and max_set_items < 1) or (max_round_items is not None and max_round_items < 1):
            raise ConfigurationError("max_set_items and max_round_items must be at least 1")
        self.max_set_items, self.max_round_items = max_set_items, max_round_items
        self.checks_invitees = key_pins is not None  # An enrolment list to check invitees against.
        self.result_page_bytes, self.key_pins = result_page_bytes, key_pins or _no_pins
        self.refused_chunks = RefusedChunks(max_refused_chunks)
        self.audit = AuditRole(uow, signing_key, name=name, clock=clock)
        if max_alert_backlog < 1:
            raise ConfigurationError("max_alert_backlog must be at least 1")
        self.outbox = AlertOutbox(signing_key, max_backlog=max_alert_backlog, key_pins=self.key_pins)
        self.feed = AlertFeed(
            uow,
            self.outbox,
            key_id=signing_key.key_id,
            clock=clock,
            reader=reader,
            signal=alert_signal,
            heartbeat_seconds=alert_heartbeat,
            poll_seconds=alert_poll,
        )

    # Rounds ------------------------------------------------------------------------------

    def create_round(self, caller: Identity, spec: RoundSpec) -> Round:
        """Admin only. Raises ``InvalidRequest`` naming the bad field, ``Conflict`` for a taken id."""
        _require(caller, Role.ADMIN, "create rounds")
        now = self.clock()
        self._check_spec(spec, now)
        round_id = spec.round_id or f"r-{now:%Y%m%d}-{secrets.token_hex(3)}"
        label_cap = spec.label_cap or default_label_cap(spec.threshold)
        new = Round(
            round_id=round_id,
            name=spec.name,
            threshold=spec.threshold,
            key_epoch=spec.key_epoch,
            deadline=spec.deadline,
            allowed_types=tuple(spec.allowed_types),
            invited=spec.invited,
            share_labels=spec.share_labels,
            state=RoundState.OPEN,
            created_by=caller.name,
            created_at=now,
            kind=spec.kind,
            min_interval_seconds=spec.min_interval_seconds,
            label_cap=label_cap,
            label_salt=secrets.token_bytes(32),
            labels_at_match=spec.labels_at_match,
            label_window_seconds=(spec.label_window_seconds or DEFAULT_LABEL_WINDOW_SECONDS)
            if spec.labels_at_match
            else 0,
        )
        with self.uow() as tx:
            tx.rounds.create_round(new)
            tx.audit.append(
                actor=caller.name,
                action="round.create",
                at=now,
                detail={
                    "round_id": round_id,
                    "threshold": spec.threshold,
                    "key_epoch": spec.key_epoch,
                    "invited": list(spec.invited) if spec.invited is not None else None,
                    "share_labels": spec.share_labels,
                    "deadline": spec.deadline.isoformat(),
                    "kind": spec.kind.value,
                    "min_interval_seconds": spec.min_interval_seconds,
                    "label_cap": label_cap,
                    "labels_at_match": new.labels_at_match,
                    "label_window_seconds": new.label_window_seconds,
                },
            )
        return new

    def _check_spec(self, spec: RoundSpec, now: datetime) -> None:
        if spec.kind is RoundKind.BATCH and spec.min_interval_seconds:
            raise InvalidRequest("min_interval_seconds: only a continuous scope releases alerts at intervals")
        if not 0 <= spec.min_interval_seconds <= MAX_INTERVAL_SECONDS:
            raise InvalidRequest(
                f"min_interval_seconds: must be 0 to {MAX_INTERVAL_SECONDS} (7 days), got {spec.min_interval_seconds}"
            )
        if spec.round_id and not _ID.match(spec.round_id):
            raise InvalidRequest("round_id: use 1-64 letters, digits, '.', '_' or '-'")
        if not spec.name.strip() or len(spec.name) > 200:
            raise InvalidRequest("name: must be 1 to 200 characters")
        if spec.threshold < MIN_THRESHOLD:
            raise InvalidRequest(f"threshold: must be at least {MIN_THRESHOLD}, got {spec.threshold}")
        if spec.label_cap and not spec.share_labels:
            raise InvalidRequest("label_cap: a round that shares no labels carries none to cap")
        if spec.label_cap and not spec.threshold - 1 <= spec.label_cap <= MAX_LABEL_CAP:
            raise InvalidRequest(
                f"label_cap: must be {spec.threshold - 1} (threshold − 1: a lead needs that many peer labels) to "
                f"{MAX_LABEL_CAP}, got {spec.label_cap}"
            )
        if spec.labels_at_match and (not spec.share_labels or spec.kind is not RoundKind.BATCH):
            raise InvalidRequest(
                "labels_at_match: only a batch round that shares labels seals them at match (a continuous "
                "scope's alerts carry the labels sealed with each delta)"
            )
        if spec.label_window_seconds and not spec.labels_at_match:
            raise InvalidRequest("label_window_seconds: only a round with labels_at_match waits for labels")
        if spec.label_window_seconds and not (
            MIN_LABEL_WINDOW_SECONDS <= spec.label_window_seconds <= MAX_LABEL_WINDOW_SECONDS
        ):
            raise InvalidRequest(
                f"label_window_seconds: must be {MIN_LABEL_WINDOW_SECONDS} to {MAX_LABEL_WINDOW_SECONDS} (7 days), "
                f"got {spec.label_window_seconds}"
            )
        if not spec.key_epoch or not _ID.match(spec.key_epoch):
            raise InvalidRequest("key_epoch: use 1-64 letters, digits, '.', '_' or '-'")
        if spec.deadline.tzinfo is None or spec.deadline <= now:
            raise InvalidRequest("deadline: must be a time in the future")
        unknown = sorted(set(spec.allowed_types) - self.known_types)
        if not spec.allowed_types or unknown:
            raise InvalidRequest(f"allowed_types: unknown or empty {unknown}; known: {sorted(self.known_types)}")
        if spec.invited is not None:
            if bad := [m for m in spec.invited if not _ID.match(m)]:
                raise InvalidRequest(f"invited: not valid member ids: {bad[:5]}")
            if (count := len(set(spec.invited))) < spec.threshold:
                raise InvalidRequest(
                    f"invited: {count} distinct member ids, fewer than the threshold {spec.threshold}: "
                    "a lead needs that many holders"
                )
            strangers = sorted(m for m in set(spec.invited) if self.key_pins(m) is None) if self.checks_invitees else []
            if strangers:
                raise InvalidRequest(
                    f"invited: not enrolled at this coordinator: {', '.join(strangers[:5])}"
                    + (f" and {len(strangers) - 5} more" if len(strangers) > 5 else "")
                    + " (enrol each member first: coordinator member add)"
                )

    def get_round(self, caller: Identity, round_id: str) -> tuple[Round, int]:
        """The round and how many members committed, as the caller may see them (``_seen_by``).

        Raises ``NotFound`` alike for no such round and for a round that does not invite the
        calling member.
        """
        with self.uow() as tx:
            found = self._visible_round(tx, caller, round_id)
            if caller.role is Role.ADMIN and found.labelling:
                found = replace(found, labels_awaited=tuple(tx.labels.unanswered_by_member(round_id).items()))
            return _seen_by(caller, found, functools.partial(_committed_count, tx, round_id))

    def list_rounds(
        self, caller: Identity, state: RoundState | None = None, kind: RoundKind | None = None
    ) -> list[tuple[Round, int]]:
        """Every round (of ``kind``, if given) for an admin; for a member, the rounds that invite
        it, as it may see them."""
        with self.uow() as tx:
            rounds = [
                r
                for r in tx.rounds.list_rounds(state)
                if (caller.role is Role.ADMIN or r.invites(caller.name)) and (kind is None or r.kind is kind)
            ]
            return [_seen_by(caller, r, functools.partial(_committed_count, tx, r.round_id)) for r in rounds]

    def close_round(self, caller: Identity, round_id: str, reason: str = "") -> Round:
        """Admin only: close an open round now, then match it."""
        _require(caller, Role.ADMIN, "close rounds")
        with self.uow() as tx:
            current = tx.rounds.get_round(round_id)
        if current.state is not RoundState.OPEN:
            raise RoundClosed(f"round {round_id} is already {current.state}")
        self._close(round_id, reason or f"closed by {caller.name}", actor=caller.name)
        self._match(round_id)
        with self.uow() as tx:
            return tx.rounds.get_round(round_id)

    def tick(self) -> list[str]:
        """Close rounds past their deadline, match closed rounds and release the alerts of
        continuous scopes whose interval boundary came; return the round ids closed or matched."""
        now = self.clock()
        self.feed.signal.notify(self.outbox.release_due(self.uow, now, reader=self.feed.reader))
        with self.uow() as tx:
            due = [r.round_id for r in tx.rounds.list_rounds(RoundState.OPEN) if r.deadline <= now]
        for round_id in due:
            self._close(round_id, "deadline reached", actor=self.name)
        with self.uow() as tx:
            closed = [r.round_id for r in tx.rounds.list_rounds(RoundState.CLOSED)]
        for round_id in closed:
            self._match(round_id)
        return sorted(set(due) | set(closed))

    def _close(self, round_id: str, reason: str, *, actor: str) -> None:
        now = self.clock()
        with self.uow() as tx:
            if tx.rounds.transition_round(round_id, RoundState.OPEN, RoundState.CLOSED, at=now, reason=reason):
                discarded = tx.submissions.discard_uncommitted(round_id)
                tx.audit.append(
                    actor=actor,
                    action="round.close",
                    at=now,
                    detail={"round_id": round_id, "reason": reason, "discarded_uncommitted_items": discarded},
                )

    # Submissions -------------------------------------------------------------------------

    def _open_round_for(self, tx: CoordinatorTx, caller: Identity, round_id: str) -> Round:
        _require(caller, Role.MEMBER, "submit")
        found = self._visible_round(tx, caller, round_id)
        if found.state is not RoundState.OPEN:
            raise RoundClosed(f"round {round_id} is {found.state}: it takes no more submissions")
        if self.clock() >= found.deadline:
            raise RoundClosed(f"round {round_id} passed its deadline: it takes no more submissions")
        return found

    def upload_chunk(self, caller: Identity, chunk: Chunk) -> bool:
        """Stage one chunk; return False if the identical chunk was already stored.

        Raises ``InvalidRequest`` (bad index, size, item or digest; a token repeated within the
        chunk or from another chunk, named by position), ``RoundClosed``, ``NotAuthorized`` (not
        invited), ``Conflict`` (other content for a stored index, or a committed submission) and
        ``LimitExceeded`` (over ``max_round_items``, or ``max_set_items`` for a whole set; or
        the member's refused chunks for the round spent ``max_refused_chunks``). A chunk the
        storage refuses for its content counts against that budget.
        """
        self.refused_chunks.require_budget(chunk.round_id, caller.name)
        if not 0 <= chunk.chunk_index < _MAX_CHUNK_INDEX:
            raise InvalidRequest(f"chunk_index: must be 0 to {_MAX_CHUNK_INDEX - 1}")
        size = len(chunk.items) + len(chunk.removals)
        if not 1 <= size <= MAX_CHUNK_ITEMS:
            raise InvalidRequest(
                f"chunk {chunk.chunk_index}: must hold 1 to {MAX_CHUNK_ITEMS} items and removals, got {size}"
            )
        check_items(chunk.chunk_index, chunk.items, chunk.removals)
        check_no_repeats(chunk.chunk_index, chunk.items, chunk.removals)
        if chunk_digest(chunk.items, chunk.removals) != chunk.chunk_digest:
            raise InvalidRequest(f"chunk {chunk.chunk_index}: digest does not match its items")
        now = self.clock()
        try:
            return self._stage(caller, chunk, now)
        except Conflict as exc:
            if not discard_refused(self.uow, caller.name, chunk.round_id, chunk.sequence):
                raise
            raise Conflict(f"{exc}; the staged delta is discarded: send it again from its first chunk") from None

    def _stage(self, caller: Identity, chunk: Chunk, now: datetime) -> bool:
        with self.uow() as tx:
            found = self._open_round_for(tx, caller, chunk.round_id)
            if not found.labels_in_sets and any(label for _, label in chunk.items):
                why = "asks for labels only where tokens match" if found.share_labels else "does not share labels"
                raise InvalidRequest(f"round {chunk.round_id} {why}; send tokens only")
            try:
                stored = tx.submissions.stage_chunk(
                    chunk.round_id,
                    caller.name,
                    chunk.chunk_index,
                    chunk.items,
                    chunk.chunk_digest,
                    at=now,
                    removals=chunk.removals,
                    replace=chunk.replace,
                    max_items=self.max_set_items if chunk.replace else self.max_round_items,
                    sequence=chunk.sequence,
                )
            except (InvalidRequest, Conflict):
                self.refused_chunks.count(chunk.round_id, caller.name)
                raise
            if stored:
                tx.audit.append(
                    actor=caller.name,
                    action="submission.chunk",
                    at=now,
                    detail={
                        "round_id": chunk.round_id,
                        "chunk_index": chunk.chunk_index,
                        "items": len(chunk.items),
                        "removals": len(chunk.removals),
                    },
                )
            return stored

    def submission_status(self, caller: Identity, round_id: str) -> SubmissionStatus:
        _require(caller, Role.MEMBER, "submit")
        with self.uow() as tx:
            self._visible_round(tx, caller, round_id)
            return tx.submissions.submission_status(round_id, caller.name)

    def commit(self, caller: Identity, commit: Commit) -> SubmissionStatus:
        """Apply the caller's staged delta to its standing set and make it count in the round,
        if the delta's count and digest and the resulting set's count and digest all agree."""
        if len(commit.digest) != 32:
            raise InvalidRequest("digest: must be 32 bytes (SHA-256)")
        if len(commit.set_digest) != 32:
            raise InvalidRequest("set_digest: must be 32 bytes (SHA-256)")
        round_id = commit.round_id
        now = self.clock()
        with self.uow() as tx:
            found = self._open_round_for(tx, caller, round_id)
        if found.continuous:
            return self._commit_continuous(caller, commit, now)
        with self.uow() as tx:
            found = self._open_round_for(tx, caller, round_id)
            status = tx.submissions.commit_submission(
                round_id,
                caller.name,
                item_count=commit.item_count,
                digest=commit.digest,
                at=now,
                replace=commit.replace,
                set_count=commit.set_count,
                set_digest=commit.set_digest,
                max_set_items=self.max_set_items,
            )
            tx.submissions.record_share_name(round_id, caller.name, commit.share_name)
            tx.audit.append(actor=caller.name, action="submission.commit", at=now, detail=commit_detail(commit))
            everyone_in = found.invited is not None and set(found.invited) <= set(
                tx.submissions.committed_members(round_id)
            )
        if everyone_in:
            self._close(round_id, "all invited members committed", actor=self.name)
            self._match(round_id)
        return status

    def _commit_continuous(self, caller: Identity, commit: Commit, now: datetime) -> SubmissionStatus:
        """Commit delta ``commit.sequence`` to a continuous scope and match it at once (``scope_deltas``).

        A commit refused for its staged content (count, digest, the set it would leave, a limit)
        discards the staged delta, so that the member's next attempt starts from its first chunk.
        """
        try:
            with self.uow() as tx:
                found = self._open_round_for(tx, caller, commit.round_id)
                status, alerted = commit_and_match(
                    tx, found, caller.name, commit, outbox=self.outbox, now=now, max_set_items=self.max_set_items
                )
        except (Conflict, LimitExceeded) as exc:
            if not discard_refused(self.uow, caller.name, commit.round_id, commit.sequence):
                raise
            raise type(exc)(f"{exc}; the staged delta is discarded: send it again from its first chunk") from None
        self.feed.signal.notify(alerted)
        return status

    # Matching and results ----------------------------------------------------------------

    def _match(self, round_id: str) -> None:
        """Match a closed round and issue its results; for labels sealed at match, first ask the
        carried holders of its matched tokens for their labels (``ask_for_labels``), and issue
        once every one answered or the window passed."""
        now = self.clock()
        with self.uow() as tx:
            found = tx.rounds.get_round(round_id)
            if found.state is not RoundState.CLOSED:
                return
            if found.labels_at_match and found.labels_due is None:
                due = now + timedelta(seconds=found.label_window_seconds or DEFAULT_LABEL_WINDOW_SECONDS)
                # Compare-and-set first, as below: a concurrent matcher finds the labels asked for.
                if not tx.rounds.start_labelling(round_id, due=due):
                    return
                asked = ask_for_labels(tx, found)
                tx.audit.append(
                    actor=self.name,
                    action="round.labels_asked",
                    at=now,
                    detail={"round_id": round_id, "labels_asked": asked, "labels_due": due.isoformat()},
                )
                if asked:
                    return
            elif found.labels_at_match and found.labels_due is not None:
                if now < found.labels_due and tx.labels.has_outstanding(round_id):
                    return
        with self.uow() as tx:
            found = tx.rounds.get_round(round_id)
            # The compare-and-set comes first: a concurrent matcher of the same round waits on it
            # (PostgreSQL's row lock, SQLite's write lock) and then finds the round matched.
            if found.state is not RoundState.CLOSED or not tx.rounds.transition_round(
                round_id, RoundState.CLOSED, RoundState.MATCHED, at=now
            ):
                return
            issue_results(
                tx,
                found,
                self.key,
                issuer=self.name,
                at=now,
                page_bytes=self.result_page_bytes,
                key_pins=self.key_pins,
            )

    # Labels sealed at match ----------------------------------------------------------------

    def _labelling_round(self, tx: CoordinatorTx, caller: Identity, round_id: str) -> Round:
        _require(caller, Role.MEMBER, "label matched tokens")
        found = self._visible_round(tx, caller, round_id)
        if not found.labelling:
            what = "seals no labels at match" if not found.labels_at_match else f"is {found.state}"
            raise RoundClosed(f"round {round_id} {what}: it asks for no labels now")
        return found

    def label_requests(
        self, caller: Identity, round_id: str, *, after: bytes = b"", limit: int = MAX_LABEL_PAGE
    ) -> list[bytes]:
        """The caller's matched tokens whose labels the round asks for and it has not answered, in
        token order, at most ``limit`` (≤ ``MAX_LABEL_PAGE``) after ``after``.

        Only while the round waits for labels (closed, asked, results not issued): else
        ``RoundClosed``. ``NotFound`` for a round that does not invite the caller. Empty when the
        caller has answered every label asked of it (or was asked none).
        """
        if not 1 <= limit <= MAX_LABEL_PAGE:
            raise InvalidRequest(f"limit: must be 1 to {MAX_LABEL_PAGE}, got {limit}")
        if after and len(after) != MATCH_TOKEN_BYTES:
            raise InvalidRequest(f"after: must be empty or a {MATCH_TOKEN_BYTES}-byte token")
        with self.uow() as tx:
            self._labelling_round(tx, caller, round_id)
            return tx.labels.asked(round_id, caller.name, after=after, limit=limit)

    def answer_labels(self, caller: Identity, round_id: str, items: Sequence[tuple[bytes, bytes | None]]) -> bool:
        """Record the caller's sealed labels for tokens the round asked it for (an empty label: it has
        none to share); return whether it has answered every label asked of it. When no holder's
        label is outstanding any more, the round's results are issued at once. Each call reads what
        is outstanding through an index, never by counting the round's labels.

        Raises (nothing recorded): ``InvalidRequest`` (no items or more than ``MAX_LABEL_PAGE``, a
        token or a label of the wrong size, a token repeated, one not asked of the caller: named by
        position), ``Conflict`` (a token answered before with another label), ``RoundClosed`` (the
        round waits for no labels: not closed yet, results issued, or its window passed),
        ``NotFound``.
        """
        _require(caller, Role.MEMBER, "label matched tokens")
        if not 1 <= len(items) <= MAX_LABEL_PAGE:
            raise InvalidRequest(f"items: must hold 1 to {MAX_LABEL_PAGE} labels, got {len(items)}")
        seen: dict[bytes, int] = {}
        for position, (token, label) in enumerate(items):
            try:
                check_item(token, label)
            except InvalidRequest as exc:
                raise InvalidRequest(f"item {position}: {exc}") from None
            if (first := seen.setdefault(token, position)) != position:
                raise InvalidRequest(f"item {position}: repeats the token of item {first}")
        now = self.clock()
        with self.uow() as tx:
            self._labelling_round(tx, caller, round_id)
            # One answer to a round at a time (PostgreSQL's row lock; SQLite's write lock anyway): the
            # last sees nothing outstanding and issues the results; an issue in progress goes first.
            tx.rounds.lock(round_id, exclusive=True)
            found = self._labelling_round(tx, caller, round_id)
            if found.labels_due is not None and now >= found.labels_due:
                raise RoundClosed(
                    f"round {round_id}: the window for labels closed at {found.labels_due:%Y-%m-%d %H:%M:%S} UTC"
                )
            answered = tx.labels.answer(round_id, caller.name, items)
            if answered:
                tx.audit.append(
                    actor=caller.name, action="labels.answer", at=now, detail={"round_id": round_id, "labels": answered}
                )
            done = not tx.labels.has_outstanding(round_id, caller.name)
            everyone = done and answered and not tx.labels.has_outstanding(round_id)
        if everyone:
            self._match(round_id)
        return done

    def get_result(self, caller: Identity, round_id: str) -> tuple[SignedResultHeader, Iterator[LeafPage]]:
        """The caller's own signed result header, and its pages of leaves to read one by one.

        The header comes with the audit-log entry that issued the result and that entry's
        inclusion proof in the header's checkpoint. Each page is read in its own short
        transaction when the iterator reaches it, so serving a result of any size holds one page
        in memory. ``NotFound`` before matching or without a commit; checked before this returns.
        """
        _require(caller, Role.MEMBER, "fetch results")
        with self.uow() as tx:
            found = self._visible_round(tx, caller, round_id)
            if found.state is not RoundState.MATCHED:
                raise NotFound(f"round {round_id} is {found.state}: no results yet")
            data, signature, pages = tx.results.get_result(round_id, caller.name)
            header = decode_header(data)
            size = decode_checkpoint(header.checkpoint.body).tree_size
            entry = tx.audit.leaf(header.audit_index)
            proof = tuple(tx.audit.inclusion_proof(header.audit_index, size))
        signed = SignedResultHeader(data, signature, self.key.key_id, entry, proof)
        return signed, self._pages(round_id, caller.name, pages)

    def _pages(self, round_id: str, member_id: str, count: int) -> Iterator[LeafPage]:
        for index in range(count):
            with self.uow() as tx:
                first, leaves = tx.results.get_result_page(round_id, member_id, index)
            yield LeafPage(index, first, leaves)

    @staticmethod
    def _visible_round(tx: CoordinatorTx, caller: Identity, round_id: str) -> Round:
        """The round, if the caller may see it. A member gets the repository's own ``NotFound``
        for a round that does not invite it, so it cannot tell another members' round from none."""
        try:
            found = tx.rounds.get_round(round_id)
        except NotFound:
            raise NotFound(f"no round {round_id}") from None
        if caller.role is not Role.ADMIN and not found.invites(caller.name):
            raise NotFound(f"no round {round_id}")
        return found


def _committed_count(tx: CoordinatorTx, round_id: str) -> int:
    return len(tx.submissions.committed_members(round_id))


def _seen_by(caller: Identity, found: Round, committed: Callable[[], int]) -> tuple[Round, int]:
    """What ``caller`` may know of a round: everything for an admin; for a member, what its node
    needs to take part (epoch, types, label sharing, threshold, deadline, state), with itself as
    the only invitee, no creator, no count of the members that committed, and no reason or time
    of closing or matching: "all invited members committed" would tell every invitee's progress
    and when, "closed by NAME" the admin's name. The state alone says what the node must do."""
    if caller.role is Role.ADMIN:
        return found, committed()
    neutral = replace(
        found,
        invited=(caller.name,),
        created_by="",
        close_reason="",
        closed_at=None,
        matched_at=None,
        labels_due=LABELS_ASKED if found.labels_due is not None else None,
    )
    return neutral, 0


def _require(caller: Identity, role: Role, action: str) -> None:
    if caller.role is not role:
        raise NotAuthorized(f"role {caller.role} may not {action}")
