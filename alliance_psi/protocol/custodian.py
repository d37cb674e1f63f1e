"""The key custodian's role (docs/design.md, protocol step 3), free of transport and storage.

A custodian multiplies blinded elements by its key share for one epoch. It refuses malformed,
non-canonical and identity elements, requests for another epoch, and members whose quota for
the epoch is spent: the quota is the alliance's defence against a member probing candidate
identifiers. It learns only how many elements each member had evaluated.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from alliance_psi.crypto.key_shares import KeyShare
from alliance_psi.errors import InvalidRequest, NotAuthorized, WrongEpoch
from alliance_psi.protocol.model import Identity, Role
from alliance_psi.protocol.ports import QuotaLedger

__all__ = ["MAX_EVALUATE_BATCH", "CustodianRole", "EpochStatus", "Evaluation"]

MAX_EVALUATE_BATCH = 8192


@dataclass(frozen=True, slots=True)
class EpochStatus:
    key_epoch: str
    suite: str
    quota: int
    used: int
    custodian: str


@dataclass(frozen=True, slots=True)
class Evaluation:
    elements: list[bytes]
    used: int


class CustodianRole:
    """One custodian serving one key epoch with a per-member quota."""

    def __init__(self, name: str, share: KeyShare, *, quota_per_member: int, ledger: QuotaLedger) -> None:
        if quota_per_member < 1:
            raise InvalidRequest("quota per member must be at least 1")
        self.name, self.share, self.quota, self.ledger = name, share, quota_per_member, ledger

    @staticmethod
    def _require_member(caller: Identity) -> None:
        if caller.role is not Role.MEMBER:
            raise NotAuthorized(f"role {caller.role} may not have elements evaluated")

    def epoch_status(self, caller: Identity) -> EpochStatus:
        """The served epoch and suite, and the caller's quota."""
        self._require_member(caller)
        used = self.ledger.used(self.share.epoch, caller.name)
        return EpochStatus(self.share.epoch, self.share.suite_id, self.quota, used, self.name)

    def evaluate(self, caller: Identity, key_epoch: str, elements: Sequence[bytes]) -> Evaluation:
        """Apply the share to ``elements``, all checked, and charge them to the caller's quota.

        Raises ``WrongEpoch``, ``InvalidRequest`` (empty or oversized batch),
        ``MalformedElement`` (first bad element; nothing is evaluated or counted) and
        ``QuotaExceeded`` (nothing is evaluated or counted).
        """
        self._require_member(caller)
        if key_epoch != self.share.epoch:
            raise WrongEpoch(f"this custodian serves key epoch {self.share.epoch!r}, not {key_epoch!r}")
        if not elements:
            raise InvalidRequest("empty batch")
        if len(elements) > MAX_EVALUATE_BATCH:
            raise InvalidRequest(f"batch of {len(elements)} elements; at most {MAX_EVALUATE_BATCH}")
        # Evaluating first checks every element; the result is only released once the quota
        # reservation succeeds, so a refused batch reveals nothing and counts nothing.
        evaluated = self.share.blind_evaluate(elements)
        used = self.ledger.reserve(self.share.epoch, caller.name, len(elements), self.quota)
        return Evaluation(evaluated, used)
