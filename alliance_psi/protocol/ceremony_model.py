"""The key ceremony's plain data: its plan, rounds, signed messages and result (``protocol.ceremony``
runs them; ``protocol.messages`` puts them on the wire).

No grpc, no SQL. The ports a ceremony needs are ``CeremonyCredentials`` (this custodian's
certificate key, which signs and opens the shares sealed to it, and the peers' enrolled keys,
``services.key_ceremony``) and ``PayloadCodec`` (the bytes a custodian signs,
``protocol.messages.CeremonyCodec``).
"""

from __future__ import annotations

import enum
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from alliance_psi import defaults
from alliance_psi.crypto.dkg import Disqualified, DkgOutcome, DkgParameters, Fault
from alliance_psi.crypto.pedersen import PedersenShare, decode_scalar
from alliance_psi.crypto.sealed_shares import ShareContext
from alliance_psi.crypto.suite import RISTRETTO255_SHA512
from alliance_psi.errors import CryptoError, InvalidRequest, NotAuthorized

__all__ = [
    "OUTCOME_TAG",
    "SIGNING_CONTEXT",
    "CeremonyCredentials",
    "CeremonyPlan",
    "CeremonyResult",
    "Envelope",
    "Payload",
    "PayloadCodec",
    "Signed",
    "Stage",
    "describe_fault",
    "share_from_bytes",
]

SIGNING_CONTEXT = "key-ceremony"
_SESSION_TAG = b"alliance-psi/v1 key ceremony session\x00"
OUTCOME_TAG = b"alliance-psi/v1 key ceremony outcome\x00"


class Stage(enum.IntEnum):
    """The rounds of the ceremony, in order."""

    DEAL = 1
    ECHO = 2
    ANSWER = 3
    EXTRACT = 4
    COMPLAIN = 5
    REVEAL = 6
    CONFIRM = 7


@dataclass(frozen=True, slots=True)
class CeremonyPlan:
    """What every custodian of one ceremony must agree on: epoch, threshold τ and the custodians.

    ``custodians`` are certificate names, sorted; custodian ``i`` (1-based position) gets share
    index ``i``. ``session`` is a hash of all of it: a message of another plan is refused, naming
    what differs. ``attempt`` numbers the runs of one ceremony: each run has a session of its
    own, and a custodian deals in a session once (``services.key_ceremony.claim_run``), so no
    deal of an earlier run can be replayed as a second deal of this one.
    """

    epoch: str
    threshold: int
    custodians: tuple[str, ...]
    attempt: int = 1
    suite_id: str = RISTRETTO255_SHA512.identifier

    @classmethod
    def create(cls, epoch: str, threshold: int, custodians: Iterable[str], *, attempt: int = 1) -> CeremonyPlan:
        """The plan with ``custodians`` sorted. Raises ``ValueError`` naming what is wrong."""
        if not 1 <= attempt <= defaults.CEREMONY_MAX_ATTEMPT:
            raise ValueError(f"the attempt must be 1 to {defaults.CEREMONY_MAX_ATTEMPT:,}")
        names = sorted(custodians)
        if len(set(names)) != len(names):
            raise ValueError(f"a custodian is named twice: {', '.join(names)}")
        if not epoch or len(epoch.encode("utf-8")) > 255:
            raise ValueError("the key epoch must be 1 to 255 bytes of UTF-8")
        DkgParameters(threshold, len(names))
        return cls(epoch, threshold, tuple(names), attempt)

    @property
    def params(self) -> DkgParameters:
        return DkgParameters(self.threshold, len(self.custodians))

    @property
    def session(self) -> bytes:
        document = {
            "epoch": self.epoch,
            "suite": self.suite_id,
            "threshold": self.threshold,
            "custodians": self.custodians,
            "attempt": self.attempt,
        }
        canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        return hashlib.sha256(_SESSION_TAG + canonical).digest()

    def index_of(self, name: str) -> int:
        """The share index of custodian ``name``. Raises ``NotAuthorized`` if it is not in the plan."""
        try:
            return self.custodians.index(name) + 1
        except ValueError:
            raise NotAuthorized(f"custodian {name} is not in this ceremony ({self.describe()})") from None

    def name_of(self, index: int) -> str:
        return self.custodians[index - 1]

    def names(self, indices: Iterable[int]) -> str:
        """``"custodian-1, custodian-3"`` for indices."""
        return ", ".join(self.name_of(i) for i in sorted(indices))

    def describe(self) -> str:
        run = f" (attempt {self.attempt})" if self.attempt > 1 else ""
        return (
            f"epoch {self.epoch}{run}, threshold {self.threshold} of {len(self.custodians)}: "
            f"{', '.join(self.custodians)}"
        )


@dataclass(frozen=True, slots=True)
class Signed:
    """A payload, its signer's signature and the signer's certificate (PEM)."""

    payload: bytes
    signature: bytes
    certificate: bytes


class CeremonyCredentials(Protocol):
    """This custodian's certificate key and the peers' enrolled keys (``services.key_ceremony``)."""

    def sign(self, payload: bytes) -> Signed:
        """``payload`` signed by this custodian's certificate key, with its certificate."""

    def signer_of(self, signed: Signed) -> str:
        """The name of the custodian whose enrolled key signed ``signed``.

        Raises:
            InvalidSignature: the signature does not verify, or the certificate is not that of an
                enrolled custodian with the enrolled key.
        """

    def seal_share(self, share: PedersenShare, context: ShareContext) -> bytes:
        """``share`` sealed to the key enrolled here for ``context.receiver`` (``crypto.sealed_shares``),
        never to a key a connection presents.

        Raises:
            ConfigurationError: no usable key is enrolled here for the receiver.
        """

    def open_share(self, sealed: bytes, context: ShareContext) -> PedersenShare:
        """The share ``context.dealer`` sealed to this custodian's certificate key.

        Raises:
            InvalidSealedShare: it does not open (every cause), naming the dealer.
        """


@dataclass(frozen=True, slots=True)
class Payload:
    """What a custodian signs in one round (the fields each round uses: module docstring)."""

    session: bytes
    stage: Stage
    commitments: tuple[bytes, ...] = ()
    relayed: tuple[Signed, ...] = ()
    complaints: frozenset[int] = frozenset()
    shares: Mapping[int, PedersenShare] = field(default_factory=dict, repr=False)
    digest: bytes = b""
    seen: tuple[bytes, ...] = ()


class PayloadCodec(Protocol):
    """Payload bytes as signed (``protocol.messages``: ``ceremony_payload_to_bytes`` / ``_from_bytes``)."""

    def encode(self, payload: Payload) -> bytes: ...

    def decode(self, data: bytes) -> Payload: ...


@dataclass(frozen=True, slots=True)
class Envelope:
    """One delivery: the session, the sender's signed message and, in round 1, the receiver's share
    sealed to the receiver's enrolled key (``crypto.sealed_shares``; empty in other rounds)."""

    session: bytes
    message: Signed
    sealed_share: bytes = field(default=b"", repr=False)


@dataclass(frozen=True, slots=True)
class CeremonyResult:
    """One custodian's result: its share (secret) and the public outcome, with names."""

    plan: CeremonyPlan
    name: str
    index: int
    share: bytes = field(repr=False)
    outcome: DkgOutcome
    notes: tuple[str, ...] = ()

    @property
    def public_key(self) -> bytes:
        return self.outcome.public_key

    def disqualified(self) -> dict[str, str]:
        """Each disqualified custodian's name and why, in words."""
        return {
            self.plan.name_of(i): describe_fault(self.plan, d) for i, d in sorted(self.outcome.disqualified.items())
        }


def describe_fault(plan: CeremonyPlan, d: Disqualified) -> str:
    """A disqualification in words, naming the custodians concerned."""
    if d.fault is Fault.TOO_MANY_COMPLAINTS:
        return (
            f"its shares to {plan.names(d.by)} failed its commitments ({len(d.by)} complaints, more than "
            f"τ−1 = {plan.threshold - 1})"
        )
    if d.fault in (Fault.UNANSWERED_COMPLAINT, Fault.BAD_ANSWER):
        return f"{d.fault.value} (from {plan.names(d.by)})"
    return d.fault.value


def share_from_bytes(value: bytes, blinding: bytes) -> PedersenShare:
    """A share as it arrived. Raises ``InvalidRequest`` for a scalar that is not canonical."""
    try:
        return PedersenShare(decode_scalar(value), decode_scalar(blinding))
    except CryptoError as exc:
        raise InvalidRequest(f"share: {exc}") from None
