"""The member node's side of a round (docs/design.md, protocol steps 2 to 8) over the real custodians and coordinator.

``MemberNode.join`` runs the member's part to the end: tokens for new identifiers only (the cache
holds the rest), through every custodian in turn; the submission in resumable, idempotent chunks
with a count and digest; the signed result, verified before use; matched tokens mapped back to
the member's own identifiers and the peers' labels opened. Raw identifiers and label keys never
leave this process and its database; the coordinator sees tokens and sealed labels only.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

from sqlalchemy import Connection, Engine

from alliance_psi._files import read_secret, write_file_atomic
from alliance_psi.config import MemberConfig
from alliance_psi.crypto.labels import LabelContext, seal_label
from alliance_psi.crypto.parallel import ProcessMap, tokenize
from alliance_psi.crypto.signing import load_public_key
from alliance_psi.errors import (
    ConfigurationError,
    NotFound,
    ResultMismatch,
    RoundClosed,
    SetMismatch,
    WrongEpoch,
)
from alliance_psi.identifiers.types import Identifier, IdentifierType
from alliance_psi.protocol.checkpoints import Checkpoint
from alliance_psi.protocol.coordinator import Chunk, Commit
from alliance_psi.protocol.delta import KEEP, PUT, merge_delta
from alliance_psi.protocol.leads import Lead, LeadLabel, build_leads
from alliance_psi.protocol.model import (
    MemberResult,
    Role,
    Round,
    RoundState,
    SubmissionState,
    SubmissionStatus,
)
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
from alliance_psi.protocol.submission import (
    NO_LABEL_DIGEST,
    SetDigest,
    SubmissionDigest,
    label_digest,
)
from alliance_psi.services.cert_checks import load_tls
from alliance_psi.services.clients import CoordinatorClient, CustodianChain, custodian_clients
from alliance_psi.services.log_witness import LogWitness
from alliance_psi.storage import KeptResults, MemberRepository, create_schema, make_engine

__all__ = ["JoinOutcome", "MemberNode", "Progress", "Submitted", "load_blind_key", "load_nonce_key"]

# A progress callback: (stage, done, total or None).
Progress = Callable[[str, int, int | None], None]


def _no_progress(stage: str, done: int, total: int | None) -> None:
    return None


@dataclass(frozen=True, slots=True)
class Submitted:
    """What a member's commit amounted to."""

    set_count: int  # Tokens the coordinator holds for the member in the round's scope.
    delta_count: int  # Items and removals sent in this round.
    replaced: bool  # The whole set was sent (first round of the scope, or a record that disagreed).


@dataclass(slots=True)
class _Plan:
    replace: bool
    delta: SubmissionDigest = field(default_factory=SubmissionDigest)
    result: SetDigest = field(default_factory=SetDigest)


@dataclass(frozen=True, slots=True)
class JoinOutcome:
    """What ``MemberNode.join`` did; ``result`` is None (no leads) if the round was not matched in time."""

    round: Round
    tokens_computed: int
    submitted: int
    result: ResultHeader | None  # The signed header of the verified, kept result; None before matching.
    leads: tuple[Lead, ...]
    seconds: dict[str, float]
    delta_count: int = 0  # Items and removals sent this round (the rest was already held).
    replaced: bool = False  # Whether the whole set was sent.


def _node_secret(path: Path, what: str) -> bytes:
    """A 32-byte secret of the node at ``path``, created 0600 on first use. Never leaves the node."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(ConfigurationError):  # Another process created it first: use theirs.
            write_file_atomic(path, secrets.token_bytes(32), replace=False)
    key = read_secret(path, what="label nonce key")
    if len(key) != 32:
        raise ConfigurationError(f"{path} is not a {what} (expected 32 bytes, found {len(key)})")
    return key


def load_nonce_key(data_dir: Path) -> bytes:
    """The node's label-nonce key (see ``seal_label``), created 0600 on first use. Never leaves the node."""
    return _node_secret(data_dir / "label-nonce.key", "label nonce key")


def load_blind_key(data_dir: Path) -> bytes:
    """The node's blind key (see ``crypto.batch.derive_batch_blind``), created 0600 on first use.

    It makes the node's blinded batches repeatable, so a join resumed after an interruption
    re-sends byte-identical batches and the custodians do not charge them twice. Never leaves
    the node; losing it costs only that (new blinds, batches charged again once).
    """
    return _node_secret(data_dir / "blind.key", "blind key")


@functools.lru_cache(maxsize=65536)
def _encoded_label(category: str, severity: str, first_seen: date | None, case_ref: str) -> tuple[bytes, bytes]:
    # Many identifiers share a label (same category, severity, date and case): encode it once.
    # No name inside: co-holders see the name the coordinator attests (``share_name``), if any.
    label = LeadLabel(category or "other", severity or None, first_seen, case_ref or None)
    plaintext = label.encode()
    return plaintext, hashlib.blake2b(plaintext, digest_size=16).digest()


class MemberNode:
    """One member's node: its database, its custodian chain and its coordinator client."""

    def __init__(
        self,
        *,
        member_id: str,
        engine: Engine,
        coordinator: CoordinatorClient,
        custodians: CustodianChain,
        coordinator_key: bytes,
        nonce_key: bytes,
        share_name: bool = False,
        workers: int | None = None,
        batch_size: int = 1024,
        chunk_size: int = 4096,
        progress: Progress = _no_progress,
        blind_key: bytes | None = None,
    ) -> None:
        """``blind_key`` (``load_blind_key``) makes blinds repeatable; without one they are fresh,
        and a batch sent again after an interruption is charged again by the custodians.
        ``share_name``: the coordinator names this member (as it enrolled it) to the co-holders of
        its labels; labels themselves never carry a name."""
        self.member_id, self.engine = member_id, engine
        self.coordinator, self.custodians, self.coordinator_key = coordinator, custodians, coordinator_key
        self.nonce_key, self.blind_key, self.share_name = nonce_key, blind_key, share_name
        self.log = LogWitness(engine, coordinator, coordinator_key)
        self.workers, self.batch_size, self.chunk_size, self.progress = workers, batch_size, chunk_size, progress

    @classmethod
    def from_config(cls, config: MemberConfig, *, progress: Progress = _no_progress) -> MemberNode:
        """Connect to the alliance as ``config`` says (reads the TLS files and keys now)."""
        # The alliance knows this node by its certificate alone: a different member id here would
        # only surface later, as a result "for another member".
        tls = load_tls(config.tls, role=Role.MEMBER, name=config.member_id)
        chain = CustodianChain(custodian_clients(config.custodians, tls), "")  # Checks pinned CAs first.
        engine = make_engine(config.database)
        create_schema(engine)
        try:
            coordinator_key = load_public_key(config.coordinator_public_key.read_bytes())
        except OSError as exc:
            raise ConfigurationError(f"coordinator key {config.coordinator_public_key}: {exc.strerror}") from None
        return cls(
            member_id=config.member_id,
            engine=engine,
            coordinator=CoordinatorClient(config.coordinator.address, tls, name=config.coordinator.name),
            custodians=chain,
            coordinator_key=coordinator_key,
            nonce_key=load_nonce_key(config.data_dir),
            blind_key=load_blind_key(config.data_dir),
            share_name=config.share_name if config.share_name is not None else config.display_name is not None,
            workers=config.workers,
            batch_size=config.batch_size,
            chunk_size=config.chunk_size,
            progress=progress,
        )

    def close(self) -> None:
        self.coordinator.close()
        self.custodians.close()
        self.engine.dispose()

    # Step 2-5: tokens for identifiers not yet cached in this epoch ------------------------------

    def tokenize(self, key_epoch: str, types: Collection[str]) -> int:
        """Compute and cache tokens for every identifier of ``types`` lacking one; return how many.

        Identifiers go in id order and batches are cached whole, in order, so a run interrupted
        and started again forms the same batches for what is left; with a blind key they are
        byte-identical and the custodians charge none of them twice.
        """
        with self._reading() as conn:
            pending = [(i, t, c) for i, t, c in MemberRepository(conn).missing_token_ids(key_epoch, types)]
        if not pending:
            return 0
        inputs = (Identifier(IdentifierType(t), c).oprf_input() for _, t, c in pending)
        ids = iter(pending)
        done = 0
        with ProcessMap(self.workers if len(pending) > self.batch_size else 1) as pool:
            for batch, derived in tokenize(
                inputs,
                self.custodians,
                pool=pool,
                batch_size=self.batch_size,
                blind_key=self.blind_key,
                blind_context=key_epoch.encode("utf-8"),
            ):
                rows = [
                    (next(ids)[0], token, key)
                    for token, key in zip(derived.match_tokens, derived.label_keys, strict=False)
                ]
                with self.engine.begin() as conn:
                    MemberRepository(conn).cache_tokens(key_epoch, rows)
                done += len(batch)
                self.progress("tokenize", done, len(pending))
        return done

    # Step 6: the submission, resumable ---------------------------------------------------------

    def _reading(self) -> Connection:
        # A read that does not take SQLite's write lock for the length of a network upload.
        return self.engine.execution_options(sqlite_begin="DEFERRED").connect()

    def _label(self, round: Round, row: tuple) -> tuple[bytes, bytes]:  # type: ignore[type-arg]
        """(plaintext, fingerprint) of the label this node would seal for ``row``; empty without labels.

        The fingerprint (a hash of the plaintext) is what the node records per committed token:
        a changed category, date, case or display name puts the token again with a new label,
        an unchanged one costs no sealing.
        """
        if not round.share_labels:
            return b"", b""
        _, _, _, category, severity, first_seen, case_ref = row
        return _encoded_label(category, severity, first_seen, case_ref)

    def _wanted(self, round: Round, rows: Iterator[tuple]) -> Iterator[tuple[bytes, bytes, tuple]]:  # type: ignore[type-arg]
        """``merge_delta``'s wanted side: (token, label fingerprint, (label plaintext, row))."""
        for row in rows:
            plaintext, fingerprint = self._label(round, row)
            yield row[1], fingerprint, (plaintext, row)

    def _sealed(self, round: Round, row: tuple, plaintext: bytes) -> bytes | None:  # type: ignore[type-arg]
        if not round.share_labels:
            return None
        _, token, label_key, *_ = row
        context = LabelContext(round.key_epoch, token)
        return seal_label(label_key, plaintext, context, nonce_key=self.nonce_key, scope=round.set_scope)

    def _known_matches(self, scope: str, status: SubmissionStatus) -> bool:
        """Whether this node's record of its set equals what the coordinator holds."""
        if not status.set_digest:
            return False
        with self._reading() as conn:
            known = MemberRepository(conn).submitted_state(scope)
        return known is not None and known[0] == status.set_count and hmac.compare_digest(known[1], status.set_digest)

    def _delta_chunks(self, round: Round, stored: Collection[int], plan: _Plan) -> Iterator[Chunk]:
        scope = round.set_scope
        with self.engine.begin() as conn:
            MemberRepository(conn).clear_pending(scope)
        with self._reading() as wanted_conn, self._reading() as known_conn:
            desired = self._wanted(
                round, MemberRepository(wanted_conn).iter_submission_rows(round.key_epoch, round.allowed_types)
            )
            known = iter(()) if plan.replace else MemberRepository(known_conn).iter_submitted(scope)
            items: list[tuple[bytes, bytes | None]] = []
            removals: list[bytes] = []
            pending: list[tuple[bytes, bool, bytes, bytes]] = []
            index = 0

            def flush() -> Chunk | None:
                nonlocal index, items, removals, pending
                chunk = None
                digest = plan.delta.update(items, removals)
                if index not in stored:
                    chunk = Chunk(round.round_id, index, tuple(items), digest, tuple(removals), plan.replace)
                with self.engine.begin() as conn:
                    MemberRepository(conn).add_pending(scope, pending)
                index, items, removals, pending = index + 1, [], [], []
                self.progress("submit", plan.delta.count, None)
                return chunk

            for kind, token, value in merge_delta(desired, known):
                if kind == KEEP:
                    plan.result.update(token, value)
                    continue
                if kind == PUT:
                    fingerprint, (plaintext, row) = value
                    sealed = self._sealed(round, row, plaintext)
                    digest = label_digest(sealed)
                    items.append((token, sealed))
                    pending.append((token, False, digest, fingerprint))
                    plan.result.update(token, digest)
                else:
                    removals.append(token)
                    pending.append((token, True, NO_LABEL_DIGEST, b""))
                if len(items) + len(removals) >= self.chunk_size and (chunk := flush()):
                    yield chunk
            if (items or removals) and (chunk := flush()):
                yield chunk

    def submit(self, round: Round) -> Submitted:
        """Send what the coordinator lacks of this node's set for the round and commit it.

        From the second round of a scope on, only the delta goes (new and changed items, removed
        tokens); the whole set goes when the coordinator holds none for this node or its copy
        differs from this node's record. Resumable: a retry rebuilds the same chunks and sends
        those the coordinator lacks.
        """
        status = self.coordinator.submission_status(round.round_id, self.member_id)
        if status.state is SubmissionState.COMMITTED:
            return Submitted(status.set_count, status.item_count, replaced=False)
        plan = _Plan(replace=not self._known_matches(round.set_scope, status))
        self.coordinator.upload_chunks(self._delta_chunks(round, set(status.chunks), plan))
        commit = Commit(
            round.round_id,
            plan.delta.count,
            plan.delta.digest(),
            plan.result.count,
            plan.result.digest(),
            plan.replace,
            share_name=self.share_name,
        )
        try:
            committed = self.coordinator.commit(commit, self.member_id)
        except SetMismatch as exc:
            # This node's record disagrees with what the coordinator holds: forget it, so the
            # next round sends the whole set.
            with self.engine.begin() as conn:
                MemberRepository(conn).forget_submitted(round.set_scope)
            raise SetMismatch(
                f"{exc}; this node's record of what it sent is reset and its next round sends the whole set"
            ) from None
        with self.engine.begin() as conn:
            MemberRepository(conn).apply_pending(
                round.set_scope, replace=plan.replace, count=plan.result.count, digest=plan.result.digest()
            )
        return Submitted(committed.set_count, committed.item_count, plan.replace)

    # Steps 7-8: the signed result, mapped back to identifiers -----------------------------------

    def fetch_result(
        self, round_id: str, *, round_name: str = "", wait: float = 0.0, poll: float = 0.5
    ) -> ResultHeader:
        """Fetch, verify and keep this member's result; waits up to ``wait`` seconds for matching.

        First the coordinator's audit log is checked against the checkpoints this node kept
        (``check_log``). Then the header's signature, and that the log's ``result.issue`` entry
        for it is in the header's checkpoint, which is itself checked against the kept ones; then
        every page of leaves as it streams in. The leaves go to the node's database in the same
        transaction, which commits only if they are exactly the signed leaves (count, order,
        Merkle root). A result that fails leaves nothing kept. Raises ``InvalidSignature``
        (header), ``ResultMismatch`` (leaves or log entry), ``LogInconsistent`` or ``NotFound``.
        """
        self.check_log()
        deadline = time.monotonic() + wait
        while True:
            try:
                return self._fetch_and_keep(round_id, round_name)
            except NotFound:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(poll)

    def _fetch_and_keep(self, round_id: str, round_name: str) -> ResultHeader:
        with contextlib.closing(self.coordinator.get_result(round_id)) as parts:
            return self._verify_and_keep(round_id, round_name, parts)

    def _verify_and_keep(
        self, round_id: str, round_name: str, parts: Iterator[SignedResultHeader | LeafPage]
    ) -> ResultHeader:
        first = next(parts, None)
        if not isinstance(first, SignedResultHeader):
            raise ResultMismatch(f"the coordinator's result for round {round_id} does not start with a signed header")
        header = open_header(
            self.coordinator_key, first.header, first.signature, round_id=round_id, member_id=self.member_id
        )
        check_issue_entry(header, first.audit_entry, first.audit_proof)
        self.log.witness(header.checkpoint)
        leaves = LeafVerifier(header)
        try:
            with self.engine.begin() as conn:
                kept = KeptResults(conn)
                kept.save_header(
                    round_id,
                    key_epoch=header.key_epoch,
                    round_name=round_name,
                    header=first.header,
                    signature=first.signature,
                    at=datetime.now(UTC),
                )
                for part in parts:
                    if not isinstance(part, LeafPage):
                        raise ResultMismatch(f"the coordinator's result for round {round_id} has a second header")
                    matches = leaves.add(part)
                    kept.add_leaves(
                        round_id,
                        [
                            (part.first_leaf + i, match.match_token, leaf)
                            for i, (match, leaf) in enumerate(zip(matches, part.leaves, strict=True))
                        ],
                    )
                    self.progress("fetch", leaves.count, header.match_count)
                leaves.finish()
        except ResultMismatch as exc:
            raise ResultMismatch(f"round {round_id}: {exc}; the result is refused and nothing of it kept") from None
        return header

    def fetch_and_keep(self, round: Round, *, wait: float = 0.0) -> ResultHeader:
        """``fetch_result`` for ``round``, kept under its name for reports."""
        return self.fetch_result(round.round_id, round_name=round.name, wait=wait)

    def kept_result(self, round_id: str) -> MemberResult:
        """A kept result, read back from the node's database (verified when it was fetched)."""
        with self._reading() as conn:
            kept = KeptResults(conn)
            _, _, data, _, _ = kept.get_result(round_id)
            header = decode_header(data)
            matches = tuple(decode_leaf(leaf) for leaf in kept.iter_leaves(round_id))
        return MemberResult(
            header.round_id, header.member_id, header.key_epoch, header.threshold, header.submitted_count, matches
        )

    def leads(self, result: MemberResult) -> list[Lead]:
        """Map matched tokens to own identifiers and open the peers' labels (``protocol.leads``)."""
        tokens = [m.match_token for m in result.matches]
        with self._reading() as conn:
            repo = MemberRepository(conn)
            own = repo.identifiers_for_tokens(result.key_epoch, tokens)
            keys = repo.label_keys_for_tokens(result.key_epoch, tokens)
        return build_leads(result, own, keys)

    # The coordinator's audit log -----------------------------------------------------------------

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
        """
        self.check_log()
        round, _ = self.coordinator.get_round(round_id)
        self.custodians.key_epoch = round.key_epoch
        served = {client.epoch().key_epoch for client in self.custodians.clients}
        if served != {round.key_epoch}:
            raise WrongEpoch(f"round {round_id} uses key epoch {round.key_epoch!r}; custodians serve {sorted(served)}")
        status = self.coordinator.submission_status(round_id, self.member_id)
        computed = submitted = delta = 0
        replaced = False
        seconds: dict[str, float] = {}
        clock = time.perf_counter()
        if round.state is RoundState.OPEN and status.state is not SubmissionState.COMMITTED:
            if datetime.now(UTC) >= round.deadline:  # A courtesy: the coordinator enforces it anyway.
                raise RoundClosed(f"round {round_id} passed its deadline: it takes no more submissions")
            computed = self.tokenize(round.key_epoch, round.allowed_types)
            seconds["tokenize"], clock = time.perf_counter() - clock, time.perf_counter()
            sent = self.submit(round)
            submitted, delta, replaced = sent.set_count, sent.delta_count, sent.replaced
            seconds["submit"], clock = time.perf_counter() - clock, time.perf_counter()
        elif status.state is SubmissionState.COMMITTED:
            submitted, delta = status.set_count, status.item_count
        else:
            raise RoundClosed(f"round {round_id} is {round.state} and this member did not commit")
        try:
            header = self.fetch_and_keep(round, wait=wait)
        except NotFound:
            # Committed, but not matched yet: not an error; the result is fetched later.
            seconds["wait for result"] = time.perf_counter() - clock
            return JoinOutcome(round, computed, submitted, None, (), seconds, delta, replaced)
        seconds["wait for result"], clock = time.perf_counter() - clock, time.perf_counter()
        leads = tuple(self.leads(self.kept_result(round_id)))
        seconds["open leads"] = time.perf_counter() - clock
        return JoinOutcome(round, computed, submitted, header, leads, seconds, delta, replaced)
