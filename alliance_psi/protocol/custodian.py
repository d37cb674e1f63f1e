"""The key custodian's role (docs/design.md, protocol step 3), free of transport and storage.

A custodian multiplies blinded elements by its key share for one epoch. It refuses malformed,
non-canonical and identity elements, requests for another epoch, and members whose quota for
the epoch is spent: the quota is the alliance's defence against a member probing candidate
identifiers. It learns only how many elements each member had evaluated, and which batches a
member sent again (a byte-identical batch, as a resumed join sends, is not charged twice).

A batch sent again is answered from the custodian's memory of its latest answers to that member
(``RecentAnswers``) when it is there, with no group operation; otherwise it is evaluated again,
free within the ledger's bound on re-sent elements per member and epoch, then charged. So
re-sending one batch on every call slot does not buy a member the custodian's cores for free.

Which members may call at all is the server's enrolment list, checked before any request
reaches this role (``services.enrolment``); their quotas come from the same list.

A custodian holds a chain share (``KeyShare``: the epoch key is the product of every custodian's
share, applied in turn) or a threshold share (``ThresholdShare``: ``k_i = f(i)``). A threshold
custodian multiplies a batch by ``λ_i·k_i`` for the subset of custodians the member names (one
scalar multiplication per element) and, when asked, proves the batch with one RFC 9497 DLEQ
proof against ``λ_i·K_i``. The charge is per batch of elements, whatever the subset: the same
elements asked again for another subset (a member hedging around a slow custodian) are a re-sent
batch, and the member learns nothing new from them (another public multiple of ``k_i·B``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from alliance_psi.crypto.key_shares import KeyShare
from alliance_psi.crypto.threshold import check_subset
from alliance_psi.crypto.threshold_keys import ThresholdShare
from alliance_psi.defaults import FREE_RESENT_PER_MEMBER, KEPT_ANSWERS_PER_MEMBER
from alliance_psi.errors import InvalidRequest, MalformedElement, NotAuthorized, WrongEpoch
from alliance_psi.protocol.model import Identity, Role
from alliance_psi.protocol.ports import QuotaLedger
from alliance_psi.protocol.recent_answers import RecentAnswers

__all__ = ["MAX_EVALUATE_BATCH", "CustodianRole", "EpochStatus", "Evaluation", "batch_digest"]

MAX_EVALUATE_BATCH = 8192
_BATCH_DIGEST_TAG = b"alliance-psi/v1 evaluate batch"
_ANSWER_TAG = b"alliance-psi/v1 evaluate answer"


@dataclass(frozen=True, slots=True)
class EpochStatus:
    """The epoch a custodian serves and the caller's quota; the last four are zero for a chain share."""

    key_epoch: str
    suite: str
    quota: int
    used: int
    custodian: str
    index: int = 0
    threshold: int = 0
    custodian_count: int = 0
    commitment: bytes = b""


@dataclass(frozen=True, slots=True)
class Evaluation:
    """The evaluated elements in request order, the caller's quota used, and the DLEQ proof if asked."""

    elements: list[bytes]
    used: int
    proof: bytes = b""


def batch_digest(elements: Sequence[bytes]) -> bytes:
    """SHA-256 naming a batch of fixed-size elements: equal only for byte-identical batches."""
    return hashlib.sha256(_BATCH_DIGEST_TAG + len(elements).to_bytes(4, "big") + b"".join(elements)).digest()


def _no_override(member_id: str) -> int | None:
    return None


class CustodianRole:
    """One custodian serving one key epoch with a per-member quota.

    ``quota_per_member`` is the default; ``quota_of(member_id)`` may name a member's own quota
    (the enrolment list's override), or None for the default. ``kept_answers_per_member`` bounds
    the elements of its latest answers kept per member to answer re-sends without computing;
    ``free_resent_per_member`` bounds the elements of re-sent batches evaluated again free per
    member and epoch.
    """

    def __init__(
        self,
        name: str,
        share: KeyShare | ThresholdShare,
        *,
        quota_per_member: int,
        ledger: QuotaLedger,
        quota_of: Callable[[str], int | None] = _no_override,
        kept_answers_per_member: int = KEPT_ANSWERS_PER_MEMBER,
        free_resent_per_member: int = FREE_RESENT_PER_MEMBER,
    ) -> None:
        if quota_per_member < 1:
            raise InvalidRequest("quota per member must be at least 1")
        if kept_answers_per_member < 0 or free_resent_per_member < 0:
            raise InvalidRequest("the answers kept and the free re-sent elements per member cannot be negative")
        self.name, self.share, self.quota, self.ledger = name, share, quota_per_member, ledger
        self._quota_of = quota_of
        self.answers = RecentAnswers(kept_answers_per_member)
        self.free_resent = free_resent_per_member

    @staticmethod
    def _require_member(caller: Identity) -> None:
        if caller.role is not Role.MEMBER:
            raise NotAuthorized(f"role {caller.role} may not have elements evaluated")

    def quota_for(self, member_id: str) -> int:
        """The member's quota per key epoch: its own if the enrolment list sets one, else the default."""
        own = self._quota_of(member_id)
        return self.quota if own is None else own

    def epoch_status(self, caller: Identity) -> EpochStatus:
        """The served epoch and suite, and the caller's quota."""
        self._require_member(caller)
        used = self.ledger.used(self.share.epoch, caller.name)
        status = EpochStatus(self.share.epoch, self.share.suite_id, self.quota_for(caller.name), used, self.name)
        if isinstance(self.share, ThresholdShare):
            share = self.share
            return replace(
                status,
                index=share.index,
                threshold=share.threshold,
                custodian_count=share.n,
                commitment=share.commitment(),
            )
        return status

    def _check_subset(self, subset: Sequence[int], prove: bool) -> tuple[int, ...]:
        """The request's subset, checked: none for a chain share, ``threshold`` indexes with ours for a threshold one."""
        share = self.share
        if isinstance(share, KeyShare):
            if subset or prove:
                raise InvalidRequest(
                    f"custodian {self.name} holds a chain share of epoch {share.epoch!r}: it takes no subset and "
                    "gives no proof (is your node configured with a public epoch file for another epoch?)"
                )
            return ()
        if not subset:
            raise InvalidRequest(
                f"custodian {self.name} holds threshold share {share.index} of epoch {share.epoch!r} "
                f"({share.threshold} of {share.n}): name the subset of custodians whose answers you add"
            )
        return check_subset(subset, threshold=share.threshold, count=share.n, own=share.index)

    def evaluate(
        self,
        caller: Identity,
        key_epoch: str,
        elements: Sequence[bytes],
        *,
        subset: Sequence[int] = (),
        prove: bool = False,
    ) -> Evaluation:
        """Charge ``elements`` to the caller's quota, then apply the share to them, all checked.

        A threshold custodian applies ``λ_i·k_i`` for ``subset`` (``threshold`` distinct indexes
        in 1..n, its own among them) and with ``prove`` returns the batch's DLEQ proof against
        ``λ_i·K_i`` (RFC 9497 ``GenerateProof`` with ``A = G``); a chain custodian takes neither.
        The subset is checked before any charge.

        The quota is reserved before any element is decoded or multiplied, so a batch over quota
        costs the custodian a digest and one database transaction, no group operation. A batch
        byte-identical to one answered before (in this epoch, for this member) gets the same
        answer without a second charge: the member learns nothing it was not told already. It
        comes from the kept answers when they hold it (no group operation, no transaction);
        otherwise it is evaluated again, free within ``free_resent_per_member`` re-sent elements
        per epoch and charged as a new batch beyond.

        Raises ``WrongEpoch``, ``InvalidRequest`` (empty or oversized batch, a subset or proof a
        chain custodian does not take, a threshold custodian's bad or missing subset), ``QuotaExceeded``
        (nothing is evaluated or counted) and ``MalformedElement`` (the first bad element;
        nothing is returned and the batch stays charged: the elements before it were multiplied,
        and an honest node never sends one, so a refund would make a batch of fresh elements
        ending in a bad one free CPU for its sender). Only an internal failure is refunded.
        """
        self._require_member(caller)
        if key_epoch != self.share.epoch:
            raise WrongEpoch(f"this custodian serves key epoch {self.share.epoch!r}, not {key_epoch!r}")
        if not elements:
            raise InvalidRequest("empty batch")
        if len(elements) > MAX_EVALUATE_BATCH:
            raise InvalidRequest(f"batch of {len(elements)} elements; at most {MAX_EVALUATE_BATCH}")
        size = self.share.suite.Ne
        if set(map(len, elements)) - {size}:  # One pass in C; the loop only names the first bad one.
            index, element = next((i, e) for i, e in enumerate(elements) if len(e) != size)
            raise MalformedElement(f"element {index} must be {size} bytes, not {len(element)}")
        subset = self._check_subset(subset, prove)
        digest = batch_digest(elements)
        # The same elements for another subset, or with a proof, are another answer to keep, but
        # the same batch to charge.
        answer_key = digest
        if subset or prove:
            answer_key = hashlib.sha256(
                _ANSWER_TAG + digest + bytes([prove]) + b"".join(i.to_bytes(2, "big") for i in subset)
            ).digest()
        kept = self.answers.get(caller.name, answer_key)
        if kept is not None:
            used = self.ledger.used(self.share.epoch, caller.name)
            return Evaluation(kept[:-1], used, kept[-1]) if prove else Evaluation(kept, used)
        charge = self.ledger.charge(
            self.share.epoch, caller.name, digest, len(elements), self.quota_for(caller.name), self.free_resent
        )
        proof = b""
        try:
            if isinstance(self.share, KeyShare):
                evaluated = self.share.blind_evaluate(elements)
            else:
                evaluated, proof = self.share.blind_evaluate(elements, subset, prove=prove)
        except Exception as exc:
            if charge.charged and not isinstance(exc, MalformedElement):
                self.ledger.refund(self.share.epoch, caller.name, digest, "evaluation failed")
            raise
        self.answers.put(caller.name, answer_key, [*evaluated, proof] if prove else evaluated)
        return Evaluation(evaluated, charge.used, proof)
