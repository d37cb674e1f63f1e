"""The member's role (docs/design.md, protocol steps 2 to 8), free of transport and SQL.

``MemberRole.join`` runs the member's part of a round to the end: tokens for new identifiers
only (the node's cache holds the rest), through every custodian in turn; the submission, a delta
against what the coordinator holds, in resumable, idempotent chunks with a count and digest
(``member_delta``); the signed result, verified before anything of it is kept; matched tokens
mapped back to the member's own identifiers and the peers' labels opened (``leads``).

It works over three ports (``protocol.ports``): the node's database (``NodeUnitOfWork``), the
custodians (``Evaluator``) and the coordinator (``CoordinatorCalls``); ``services.member`` wires
the real ones. Raw identifiers and label keys never leave the node's database and this role;
the custodians see blinded elements, the coordinator tokens and sealed labels only.
"""

from __future__ import annotations

import contextlib
import functools
import hmac
import time
from collections import deque
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

from alliance_psi.crypto.parallel import ProcessMap, tokenize
from alliance_psi.defaults import BATCH_SIZE, CHUNK_SIZE
from alliance_psi.errors import InvalidRequest, NotFound, ResultMismatch, RoundClosed, SetMismatch, WrongEpoch
from alliance_psi.identifiers.types import IdentifierType, oprf_prefix
from alliance_psi.protocol.checkpoints import Checkpoint
from alliance_psi.protocol.leads import Lead, LeadChecks, RefusedLead, build_leads, refuse_leads
from alliance_psi.protocol.log_witness import LogWitness
from alliance_psi.protocol.member_delta import ChangeWindow, DeltaPlan, LabelSealer, Progress, no_progress
from alliance_psi.protocol.model import (
    MemberResult,
    Round,
    RoundState,
    SubmissionState,
    SubmissionStatus,
    at_match_set_scope,
    label_scope,
)
from alliance_psi.protocol.node_rows import CachedToken, KeptLeaf, SetRecord
from alliance_psi.protocol.ports import CoordinatorCalls, Evaluator, NodeUnitOfWork
from alliance_psi.protocol.result_codec import (
    LeafPage,
    LeafVerifier,
    ResultHeader,
    SignedResultHeader,
    check_issue_entry,
    decode_header,
    decode_leaf,
    open_header,
)

__all__ = ["TOKENIZE_PAGE", "JoinOutcome", "MemberRole", "Progress", "Submitted"]

# Identifiers read at once by ``MemberRole.tokenize`` (about 10 MB of them in memory).
TOKENIZE_PAGE = 65_536

# ``CachedToken`` from a tuple, without its Python-level constructor (once per identifier).
_cached_token = functools.partial(tuple.__new__, CachedToken)


@dataclass(frozen=True, slots=True)
class Submitted:
    """What a member's commit amounted to."""

    set_count: int  # Tokens the coordinator holds for the member in the round's scope.
    delta_count: int  # Items and removals sent in this round.
    replaced: bool  # The whole set was sent (first round of the scope, or a record that disagreed).
    sequence: int = 0  # Continuous scopes: the delta's commit sequence; 0 when nothing was committed.


@dataclass(frozen=True, slots=True)
class JoinOutcome:
    """What ``MemberRole.join`` did; ``result`` is None (no leads) if the round was not matched in time."""

    round: Round
    tokens_computed: int
    submitted: int
    result: ResultHeader | None  # The signed header of the verified, kept result; None before matching.
    leads: tuple[Lead, ...]
    seconds: dict[str, float]
    delta_count: int = 0  # Items and removals sent this round (the rest was already held).
    replaced: bool = False  # Whether the whole set was sent.
    refused: tuple[RefusedLead, ...] = ()  # Matches whose labels fall short of their count (``LeadChecks``).
    committed_before: bool = False  # Committed before this join, which sent nothing (``delta_count``: what that sent).
    kept_before: bool = False  # The result was kept before this join (fetched again and checked the same).
    labels_beyond_result: int = 0  # Labels this node sent when asked at match for tokens its result lacks.
    labels_sent: int = 0  # Labels this node sent when the round asked at match (this join or before).


def _utcnow() -> datetime:
    return datetime.now(UTC)


class MemberRole:
    """One member's part in rounds, over its node database, its custodians and its coordinator.

    ``coordinator_key`` is the coordinator's public key: every result is checked against it.
    ``nonce_key`` makes sealed labels repeatable (``seal_label``); ``blind_key`` makes blinded
    batches repeatable, so a batch sent again after an interruption is not charged again by the
    custodians (without one, blinds are fresh). Both are secrets that never leave the node.
    ``share_name``: the coordinator names this member (as it enrolled it) to the co-holders of
    its labels; labels themselves never carry a name.
    """

    def __init__(
        self,
        *,
        member_id: str,
        uow: NodeUnitOfWork,
        evaluator: Evaluator,
        coordinator: CoordinatorCalls,
        coordinator_key: bytes,
        nonce_key: bytes,
        blind_key: bytes | None = None,
        share_name: bool = False,
        workers: int | None = None,
        batch_size: int = BATCH_SIZE,
        chunk_size: int = CHUNK_SIZE,
        progress: Progress = no_progress,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self.member_id, self.uow, self.evaluator, self.coordinator = member_id, uow, evaluator, coordinator
        self.coordinator_key, self.blind_key = coordinator_key, blind_key
        self.labels, self.share_name = LabelSealer(nonce_key), share_name
        self.log = LogWitness(uow, coordinator, coordinator_key, clock=clock)
        self.workers, self.batch_size, self.chunk_size = workers, batch_size, chunk_size
        self.progress, self.clock = progress, clock

    # Steps 2-5: tokens for identifiers not yet cached in this epoch ------------------------------

    def tokenize(self, key_epoch: str, types: Collection[str], *, window: ChangeWindow | None = None) -> int:
        """Compute and cache tokens for every identifier of ``types`` lacking one (with a
        ``window`` that has a start, only for those stamped in it); return how many.

        Identifiers go in id order and batches are cached whole, in order, each in its own
        transaction, so a run interrupted (even killed) and started again evaluates none of the
        batches it cached and forms the same batches for what is left; with a blind key they are
        byte-identical and the custodians charge none of them twice. The identifiers left are
        counted at the start (later imports wait for the next call) and read by pages, so memory
        does not grow with the member's set.
        """
        since, upto = (window.since, window.upto) if window is not None else (None, None)
        with self.uow.reading() as tx:
            total = tx.repo.count_missing_tokens(key_epoch, types, since=since, upto=upto)
        if not total:
            return 0
        ids: deque[int] = deque()  # The ids of the inputs handed to the pipeline and not yet cached.

        def inputs() -> Iterator[bytes]:
            # Read by pages (``TOKENIZE_PAGE``) from the last id read, each in its own short read:
            # memory stays flat and no read stays open while tokens are written. Ids cached
            # meanwhile are all below the page's start, so a page sees every identifier left.
            after, handed = 0, 0
            prefixes: dict[str, bytes] = {}  # ``oprf_prefix`` of each type read, looked up once.
            while handed < total:
                with self.uow.reading() as tx:
                    page = list(
                        tx.repo.missing_token_ids(
                            key_epoch,
                            types,
                            since=since,
                            upto=upto,
                            after=after,
                            limit=min(TOKENIZE_PAGE, total - handed),
                        )
                    )
                if not page:
                    return
                ids.extend(ref.id for ref in page)
                for _, kind, canonical in page:
                    # ``Identifier(IdentifierType(kind), canonical).oprf_input()``, without the two objects.
                    prefix = prefixes.get(kind) or prefixes.setdefault(kind, oprf_prefix(IdentifierType(kind)))
                    yield prefix + canonical.encode("utf-8")
                after, handed = page[-1].id, handed + len(page)

        done = 0
        with ProcessMap(self.workers if total > self.batch_size else 1) as pool:
            for batch, derived in tokenize(
                inputs(),
                functools.partial(self.evaluator.evaluate, key_epoch),
                pool=pool,
                batch_size=self.batch_size,
                blind_key=self.blind_key,
                blind_context=key_epoch.encode("utf-8"),
            ):
                batch_ids = [ids.popleft() for _ in batch]
                rows = list(map(_cached_token, zip(batch_ids, derived.match_tokens, derived.label_keys, strict=True)))
                with self.uow.writing() as tx:
                    tx.repo.cache_tokens(key_epoch, rows)
                done += len(batch)
                self.progress("tokenize", done, total)
        return done

    # Step 6: the submission, resumable ---------------------------------------------------------

    def submit(self, round: Round, *, status: SubmissionStatus | None = None) -> Submitted:
        """Send what the coordinator lacks of this node's set for the round and commit it.

        From the second round of a scope on, only the delta goes (new and changed items, removed
        tokens), found from the change stamps of the node's identifiers since the scope's last
        commit (``plan``); the whole set goes when the coordinator holds none for this node or
        its copy differs from this node's record. Tokens missing for what is sent are computed
        first (``tokenize``). Resumable: a retry rebuilds the same chunks (over the same change
        window) and sends those the coordinator lacks; a commit the coordinator made but this
        node did not record (stopped in between) is recorded now. ``status`` is the
        coordinator's ``submission_status`` if the caller has just fetched it.

        In a continuous scope every call makes the member's next delta (``status.commit_sequence
        + 1``), sent and committed only if it changes the coordinator's set (else only this
        node's record moves on to the changes it read; ``Submitted.sequence`` is then 0). In a
        batch round a member that committed already sends nothing.

        Raises ``SetMismatch`` when the set the commit would leave differs from this node's
        record (the record is then forgotten, so the next round sends the whole set), and what
        the coordinator raises (``RoundClosed``, ``LimitExceeded``, ``Conflict``, ...).
        """
        status = status or self.coordinator.submission_status(round.round_id, self.member_id)
        self.settle(round, status)
        if status.state is SubmissionState.COMMITTED and not round.continuous:
            return Submitted(status.set_count, status.item_count, replaced=False)
        plan = self.plan(round, status)
        self.tokenize(round.key_epoch, round.allowed_types, window=plan.window)
        return self._send(round, plan, status)

    def _send(self, round: Round, plan: DeltaPlan, status: SubmissionStatus) -> Submitted:
        """``submit`` once its ``plan`` is made and its tokens computed: the chunks the coordinator
        lacks (``status``), the commit, and this node's record of it."""
        self.coordinator.upload_chunks(
            plan.chunks(
                round,
                uow=self.uow,
                labels=self.labels,
                stored=set(status.chunks) if status.state is SubmissionState.STAGING else set(),
                chunk_size=self.chunk_size,
                progress=self.progress,
            )
        )
        with self.uow.writing() as tx:
            tx.repo.set_pending(round.set_scope, plan.built(round.round_id))
            if round.continuous and _nothing_to_commit(plan, status):
                # The coordinator's set stays as it is: only this node's record moves on to the
                # change stamp read up to, so the same changes are not read again.
                tx.repo.apply_pending(round.set_scope)
                return Submitted(status.set_count, 0, plan.replace)
        try:
            committed = self.coordinator.commit(plan.commit(round.round_id, share_name=self.share_name), self.member_id)
        except SetMismatch as exc:
            # This node's record disagrees with what the coordinator holds: forget it, so the
            # next round sends the whole set.
            with self.uow.writing() as tx:
                tx.repo.forget_submitted(round.set_scope)
            raise SetMismatch(
                f"{exc}; this node's record of what it sent is reset and its next round sends the whole set"
            ) from None
        with self.uow.writing() as tx:
            tx.repo.apply_pending(round.set_scope)
            tx.results.record_scope(round.round_id, round.label_scope, share_labels=round.share_labels)
        return Submitted(committed.set_count, committed.item_count, plan.replace, plan.sequence)

    def plan(self, round: Round, status: SubmissionStatus) -> DeltaPlan:
        """The submission this node makes to ``round`` given the coordinator's ``status``.

        A delta over the changes stamped since the scope's last commit when this node's record
        equals the coordinator's copy (and was kept with its state and stamp); else the whole
        set. A submission already started for the round (chunks at the coordinator) keeps its
        mode and change window, so its chunks come out the same. In a continuous scope the delta
        is the member's next (``status.commit_sequence + 1``); the chunks of its last committed
        delta, which the coordinator still lists, are not a start.
        """
        with self.uow.reading() as tx:
            pending = tx.repo.pending_set(round.set_scope)
            record = tx.repo.submitted_state(round.set_scope)
            head = tx.repo.change_head()
        started = status.chunks and status.state is SubmissionState.STAGING
        if started and pending is not None and pending.round_id == round.round_id:
            replace, upto = pending.replace, pending.change_seq if pending.change_seq is not None else head
        else:
            replace, upto = not self._record_matches(record, status), head
        since = None if replace or record is None else record.change_seq
        sequence = status.commit_sequence + 1 if round.continuous else 0
        return DeltaPlan(
            replace=replace, window=ChangeWindow(since, upto), record=None if replace else record, sequence=sequence
        )

    def has_changes(self, scope: Round) -> bool:
        """Whether this node may have something to send to ``scope``: no record of a commit yet, a
        delta under way, or identifiers changed (imported, relabeled, withdrawn) since its record.
        Reads only the record and the change counter, never the identifiers."""
        with self.uow.reading() as tx:
            record = tx.repo.submitted_state(scope.set_scope)
            pending = tx.repo.pending_set(scope.set_scope)
            head = tx.repo.change_head()
        return record is None or record.change_seq is None or pending is not None or head > record.change_seq

    def submit_delta(self, scope_id: str) -> Submitted:
        """Send this node's changes since its last commit to continuous scope ``scope_id`` as the
        member's next delta, and commit it (nothing is committed when nothing changed in the
        scope's types: ``Submitted.sequence`` is then 0).

        A delta stopped anywhere resumes: chunks the coordinator holds are not sent again, and a
        commit the coordinator made but this node did not record is recorded (``settle``), so each
        delta commits once under its sequence, which the coordinator checks.

        Raises, before anything is computed or sent: ``NotFound`` for a scope that does not exist
        or does not invite this member (the coordinator does not tell them apart),
        ``InvalidRequest`` for a batch round (``join`` takes part in those), ``RoundClosed`` for a
        closed scope, ``WrongEpoch`` when the custodians serve another key epoch; then what
        ``submit`` raises.
        """
        self.check_log()
        scope, _ = self.coordinator.get_round(scope_id)
        if not scope.continuous:
            raise InvalidRequest(f"round {scope_id} is a batch round, not a continuous scope: join it instead")
        if scope.state is not RoundState.OPEN:
            raise RoundClosed(f"scope {scope_id} is closed ({scope.state}): it takes no more deltas")
        self._check_epoch(scope)
        return self.submit(scope)

    def _check_epoch(self, round: Round) -> None:
        """Refuse ``round`` (or scope) before anything is computed unless the custodians serve its
        key epoch alone: tokens of another epoch would never match."""
        served = set(self.evaluator.key_epochs())
        if served != {round.key_epoch}:
            what = "scope" if round.continuous else "round"
            raise WrongEpoch(
                f"{what} {round.round_id} uses key epoch {round.key_epoch!r}; custodians serve {sorted(served)}"
            )

    def settle(self, round: Round, status: SubmissionStatus) -> bool:
        """Record a delta the coordinator committed but this node did not (it stopped between the
        commit and its record): when the built delta pending in ``round``'s scope leaves exactly
        the set the coordinator holds (count and digest, in ``status``) and the record does not.
        Returns whether it did."""
        scope = round.set_scope
        with self.uow.writing() as tx:
            pending = tx.repo.pending_set(scope)
            if pending is None or pending.record is None or not status.set_digest:
                return False
            built, record = pending.record, tx.repo.submitted_state(scope)
            if built.item_count != status.set_count or not hmac.compare_digest(built.digest, status.set_digest):
                return False
            if record is not None and hmac.compare_digest(record.digest, built.digest):
                return False
            tx.repo.apply_pending(scope)
            # The pending delta's round is of the same scope, so it shares labels as ``round`` does.
            scoped = label_scope(scope, pending.round_id, at_match=round.labels_at_match)
            tx.results.record_scope(pending.round_id, scoped, share_labels=round.share_labels)
            return True

    def _record_matches(self, known: SetRecord | None, status: SubmissionStatus) -> bool:
        """Whether this node's record of its set equals what the coordinator holds."""
        if not status.set_digest:
            return False
        return (
            known is not None
            and known.item_count == status.set_count
            and hmac.compare_digest(known.digest, status.set_digest)
        )

    # Steps 7-8: the signed result, mapped back to identifiers -----------------------------------

    def fetch_result(
        self,
        round_id: str,
        *,
        round_name: str = "",
        wait: float = 0.0,
        poll: float = 0.5,
        round: Round | None = None,
    ) -> ResultHeader:
        """Fetch, verify and keep this member's result; waits up to ``wait`` seconds for matching.

        First the coordinator's audit log is checked against the checkpoints this node kept
        (``check_log``). Then the header's signature, and that the log's ``result.issue`` entry
        for it is in the header's checkpoint, which is itself checked against the kept ones; then
        every page of leaves as it streams in. The leaves go to the node's database in the same
        transaction, which commits only if they are exactly the signed leaves (count, order,
        Merkle root). A result that fails leaves nothing kept. Raises ``InvalidSignature``
        (header), ``ResultMismatch`` (leaves or log entry), ``LogInconsistent`` or ``NotFound``.

        In a round that shares labels, each matched token's peer labels are checked against its
        holder count as the pages stream in (``leads.refuse_leads``), in the scope this node
        recorded when it committed (else ``round``'s, or the coordinator's word for it); the
        refused ones are kept with the result (``lead_checks``), which is kept whole: the
        coordinator's signature over them is the evidence of what it claimed.
        """
        self.check_log()
        scope = self._label_scope(round_id, round)
        deadline = time.monotonic() + wait
        labelled = round is not None and not round.labels_at_match
        while True:
            try:
                with contextlib.closing(self.coordinator.get_result(round_id)) as parts:
                    return self._verify_and_keep(round_id, round_name, scope, parts)
            except NotFound:
                if not labelled:  # A round that asks for labels at match may be asking this node.
                    labelled = self._answer_if_asked(round_id)
                    if labelled and round is not None and round.labels_at_match:
                        continue  # This node's answer may have issued the results: ask once more.
                if time.monotonic() >= deadline:
                    raise
                time.sleep(poll)

    def _answer_if_asked(self, round_id: str) -> bool:
        """Answer ``round_id``'s label requests if it is asking for them now; return whether this
        node has nothing more to answer in it (its labels sent, or a round that asks for none)."""
        current, _ = self.coordinator.get_round(round_id)
        if not current.labels_at_match or current.state is RoundState.MATCHED:
            return True
        if not current.labelling:
            return False  # Not closed yet, or not asking yet: ask again at the next poll.
        try:
            self.answer_label_requests(current)
        except RoundClosed:
            pass  # Issued meanwhile (another holder's answer, or the window passed): nothing to answer.
        return True

    def answer_label_requests(self, round: Round) -> int:
        """Seal and send this node's labels for its matched tokens that ``round`` asks for (a batch
        round with ``labels_at_match`` that closed and is waiting for labels); return how many.

        What the node answers comes from its own record of its commit to the round (the scope it
        recorded then), never from what the coordinator says of the round now: nothing for a round
        it did not commit to with labels sealed at match; a label only for a token it committed in
        that scope and still holds; an empty answer (nothing to share) for any other asked token,
        so the round need not wait for it. A coordinator therefore cannot make the node seal a
        label outside the round's scope and types, and a withdrawn identifier's label is not sent.
        It stops after as many tokens as the set it committed holds: more cannot all be its
        matched tokens. Labels are bound to the round (``Round.label_scope``). Resumable: answered
        tokens are not asked again, and an answer sent twice changes nothing. Raises what the
        coordinator raises (``RoundClosed`` once the window passed).
        """
        round_id = round.round_id
        with self.uow.reading() as tx:
            recorded = tx.results.recorded_scope(round_id)
            set_scope = at_match_set_scope(recorded[0], round_id) if recorded and recorded[1] else None
            committed = tx.repo.submitted_state(set_scope) if set_scope is not None else None
        if set_scope is None or committed is None:
            return 0
        assert recorded is not None
        key_epoch = set_scope.split("/", 1)[0]  # ``Round.set_scope``: key epoch / types / kind.
        sealer = self.labels.at_match(key_epoch, recorded[0])
        after, asked, sent = b"", 0, 0
        while asked < committed.item_count and (tokens := self.coordinator.label_requests(round_id, after=after)):
            tokens = tokens[: committed.item_count - asked]
            asked += len(tokens)
            with self.uow.reading() as tx:
                ours = tx.repo.submitted_for_tokens(set_scope, tokens)
                rows = tx.repo.submission_rows_for_tokens(key_epoch, [t for t in tokens if t in ours])
            items: list[tuple[bytes, bytes | None]] = []
            for token in tokens:
                row = rows.get(token)
                items.append((token, sealer.seal(row, sealer.label(row)[0]) if row is not None else None))
            with self.uow.writing() as tx:  # Before they leave: checked against the result once it is in.
                tx.results.record_label_answers(round_id, [token for token, label in items if label])
            done = self.coordinator.answer_labels(round_id, items)
            sent += sum(1 for _, label in items if label)
            after = tokens[-1]
            self.progress("labels", sent, None)
            if done:  # The last answer may have issued the results: ask no more.
                break
        return sent

    def labels_sent(self, round_id: str) -> int:
        """How many labels this node sent when ``round_id`` asked for them at match."""
        with self.uow.reading() as tx:
            return tx.results.label_answers_count(round_id)

    def _label_scope(self, round_id: str, round: Round | None) -> tuple[str, bool]:
        """(scope, share_labels) of ``round_id``: as this node recorded it when it committed, else as
        the coordinator says (a node that committed elsewhere, or lost the commit's reply)."""
        with self.uow.reading() as tx:
            recorded = tx.results.recorded_scope(round_id)
        if recorded is not None:
            return recorded
        if round is None:
            round, _ = self.coordinator.get_round(round_id)
        return round.label_scope, round.share_labels

    def _verify_and_keep(
        self,
        round_id: str,
        round_name: str,
        scope: tuple[str, bool],
        parts: Iterator[SignedResultHeader | LeafPage],
    ) -> ResultHeader:
        first = next(parts, None)
        if not isinstance(first, SignedResultHeader):
            raise ResultMismatch(f"the coordinator's result for round {round_id} does not start with a signed header")
        header = open_header(
            self.coordinator_key, first.header, first.signature, round_id=round_id, member_id=self.member_id
        )
        check_issue_entry(header, first.audit_entry, first.audit_proof)
        self.log.witness(header.checkpoint)
        self._refuse_a_second_result(round_id, first)
        leaves = LeafVerifier(header)
        set_scope, share_labels = scope
        refused: list[RefusedLead] = []
        try:
            with self.uow.writing() as tx:
                tx.results.save_header(
                    round_id,
                    key_epoch=header.key_epoch,
                    round_name=round_name,
                    header=first.header,
                    signature=first.signature,
                    at=self.clock(),
                )
                for part in parts:
                    if not isinstance(part, LeafPage):
                        raise ResultMismatch(f"the coordinator's result for round {round_id} has a second header")
                    matches = leaves.add(part)
                    if share_labels:
                        keys = tx.repo.label_keys_for_tokens(header.key_epoch, [m.match_token for m in matches])
                        refused += refuse_leads(
                            matches,
                            keys,
                            key_epoch=header.key_epoch,
                            scope=set_scope,
                            threshold=header.threshold,
                            own_sealer=self.labels.own_pseudonym,
                            label_cap=header.label_cap,
                        )
                    tx.results.add_leaves(
                        round_id,
                        [
                            KeptLeaf(part.first_leaf + i, match.match_token, leaf)
                            for i, (match, leaf) in enumerate(zip(matches, part.leaves, strict=True))
                        ],
                    )
                    self.progress("fetch", leaves.count, header.match_count)
                leaves.finish()
                tx.results.record_scope(round_id, set_scope, share_labels=share_labels)
                tx.results.save_refusals(round_id, refused)
        except ResultMismatch as exc:
            raise ResultMismatch(f"round {round_id}: {exc}; the result is refused and nothing of it kept") from None
        return header

    def _refuse_a_second_result(self, round_id: str, signed: SignedResultHeader) -> None:
        """A coordinator issues one result per round and member. Another signed header for a round
        whose result this node kept is equivocation: each is consistent with the log taken alone,
        only the two together prove it. Keep the new one beside the kept one (which stays) and
        refuse it (``ResultMismatch``)."""
        with self.uow.reading() as tx:
            try:
                kept = tx.results.get_result(round_id)
            except NotFound:
                return
        if kept.header == signed.header:
            return  # The same result fetched again.
        with self.uow.writing() as tx:
            tx.results.keep_conflicting(round_id, header=signed.header, signature=signed.signature, at=self.clock())
        raise ResultMismatch(
            f"round {round_id}: the coordinator signed a second, different result for this member (the one kept "
            f"was fetched {kept.fetched_at:%Y-%m-%d %H:%M} UTC); both signed headers are kept in the node database "
            "(member_conflicting_results) as evidence that the coordinator equivocated; the kept result is unchanged"
        )

    def fetch_and_keep(self, round: Round, *, wait: float = 0.0) -> ResultHeader:
        """``fetch_result`` for ``round``, kept under its name for reports."""
        return self.fetch_result(round.round_id, round_name=round.name, wait=wait, round=round)

    def kept_result(self, round_id: str) -> MemberResult:
        """A kept result, read back from the node's database (verified when it was fetched).

        Raises ``NotFound`` when no result is kept for the round.
        """
        with self.uow.reading() as tx:
            header = decode_header(tx.results.get_result(round_id).header)
            matches = tuple(decode_leaf(leaf) for leaf in tx.results.iter_leaves(round_id))
        return MemberResult(
            header.round_id, header.member_id, header.key_epoch, header.threshold, header.submitted_count, matches
        )

    def leads(self, result: MemberResult) -> list[Lead]:
        """Map matched tokens to own identifiers and open the peers' labels (``protocol.leads``);
        the matches refused when the result was fetched (``lead_checks``) are not leads."""
        tokens = [m.match_token for m in result.matches]
        with self.uow.reading() as tx:
            own = tx.repo.identifiers_for_tokens(result.key_epoch, tokens)
            keys = tx.repo.label_keys_for_tokens(result.key_epoch, tokens)
            checks = tx.results.get_checks(result.round_id)
        return build_leads(
            result, own, keys, scope=checks.scope, refused=checks.refused_tokens(), backed=checks.backed_counts()
        )

    def labels_beyond_result(self, round_id: str) -> int:
        """How many labels this node sent in ``round_id`` (asked at match) for tokens its kept result
        does not hold: a coordinator asks only for matched tokens, so anything above 0 is a request
        for labels of identifiers nobody else holds, the signed result and the node's record of
        what it answered (``member_label_answers``) the evidence. 0 while no result is kept."""
        if not self._kept(round_id):
            return 0
        with self.uow.reading() as tx:
            return tx.results.label_answers_beyond_result(round_id)

    def lead_checks(self, round_id: str) -> LeadChecks:
        """The scope of ``round_id``'s labels and the matches of its kept result refused as leads."""
        with self.uow.reading() as tx:
            return tx.results.get_checks(round_id)

    # The coordinator's audit log ---------------------------------------------------------------

    def check_log(self) -> Checkpoint:
        """Fetch the coordinator's signed checkpoint now and check it against the kept ones (``LogWitness``)."""
        return self.log.witness(self.coordinator.checkpoint())

    # The whole of it ---------------------------------------------------------------------------

    def join(self, round_id: str, *, wait: float = 300.0) -> JoinOutcome:
        """Run this member's part of ``round_id`` to the end (or until ``wait`` seconds pass).

        If the round is not matched within ``wait`` seconds of this member's commit, the outcome
        has no result: the items are committed and ``fetch_and_keep`` gets the result later.

        The coordinator's audit log is checked first (``check_log``): a member does not submit to
        a coordinator whose log contradicts what it saw before.

        Raises ``InvalidRequest`` for a continuous scope (``submit_delta`` sends to those),
        ``LogInconsistent`` (see ``check_log``), ``WrongEpoch`` when a custodian serves another
        key epoch than the round's, ``RoundClosed`` when the round takes no more submissions and
        this member did not commit, and what ``submit`` and ``fetch_result`` raise.
        """
        self.check_log()
        round, _ = self.coordinator.get_round(round_id)
        if round.continuous:
            raise InvalidRequest(
                f"round {round_id} is a continuous scope, matched delta by delta: send this node's changes "
                "with `node delta` (or let `node run` send them)"
            )
        self._check_epoch(round)
        status = self.coordinator.submission_status(round_id, self.member_id)
        computed = submitted = delta = 0
        replaced = committed_before = False
        seconds: dict[str, float] = {}
        clock = time.perf_counter()
        if round.state is RoundState.OPEN and status.state is not SubmissionState.COMMITTED:
            if self.clock() >= round.deadline:  # A courtesy: the coordinator enforces it anyway.
                raise RoundClosed(f"round {round_id} passed its deadline: it takes no more submissions")
            self.settle(round, status)
            plan = self.plan(round, status)
            computed = self.tokenize(round.key_epoch, round.allowed_types, window=plan.window)
            seconds["tokenize"], clock = time.perf_counter() - clock, time.perf_counter()
            sent = self._send(round, plan, status)  # ``submit``, its plan made and its tokens computed.
            submitted, delta, replaced = sent.set_count, sent.delta_count, sent.replaced
            seconds["submit"], clock = time.perf_counter() - clock, time.perf_counter()
        elif status.state is SubmissionState.COMMITTED:
            self.settle(round, status)  # Committed, perhaps not recorded (the node stopped in between).
            submitted, delta, committed_before = status.set_count, status.item_count, True
        else:
            raise RoundClosed(f"round {round_id} is {round.state} and this member did not commit")
        kept_before = self._kept(round_id)
        try:
            header = self.fetch_and_keep(round, wait=wait)
        except NotFound:
            # Committed, but not matched yet: not an error; the result is fetched later.
            seconds["wait for result"] = time.perf_counter() - clock
            return JoinOutcome(
                round,
                computed,
                submitted,
                None,
                (),
                seconds,
                delta,
                replaced,
                committed_before=committed_before,
                labels_sent=self.labels_sent(round_id),
            )
        seconds["wait for result"], clock = time.perf_counter() - clock, time.perf_counter()
        leads = tuple(self.leads(self.kept_result(round_id)))
        seconds["open leads"] = time.perf_counter() - clock
        refused = self.lead_checks(round_id).refused
        return JoinOutcome(
            round,
            computed,
            submitted,
            header,
            leads,
            seconds,
            delta,
            replaced,
            refused,
            committed_before,
            kept_before,
            self.labels_beyond_result(round_id),
            self.labels_sent(round_id),
        )

    def _kept(self, round_id: str) -> bool:
        """Whether this node keeps a result for ``round_id``."""
        with self.uow.reading() as tx:
            try:
                tx.results.get_result(round_id)
            except NotFound:
                return False
        return True


def _nothing_to_commit(plan: DeltaPlan, status: SubmissionStatus) -> bool:
    """Whether a continuous scope's delta, built, leaves the coordinator's set as it is: no change
    against a set it holds, or an empty whole set where it holds none."""
    return plan.delta.count == 0 and (not plan.replace or (status.set_count == 0 and not status.set_digest))
