"""The domain of a matching round, as plain frozen dataclasses shared by every layer above.

No grpc, no SQL. ``storage`` persists these, ``services`` converts them to and from protobuf
through ``protocol.messages``, and the role classes (``custodian``, ``coordinator``, ``member``)
take and return them.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import UTC, datetime

__all__ = [
    "MIN_THRESHOLD",
    "NO_DEADLINE",
    "Identity",
    "MatchedToken",
    "MemberResult",
    "PeerLabel",
    "Role",
    "Round",
    "RoundKind",
    "RoundState",
    "SubmissionState",
    "SubmissionStatus",
    "LABELS_ASKED",
    "at_match_set_scope",
    "label_scope",
]

MIN_THRESHOLD = 2
NO_DEADLINE = datetime(9999, 12, 31, tzinfo=UTC)
"""The deadline of a continuous scope that runs until an admin closes it (the last instant a
protobuf ``Timestamp`` holds, so it crosses the wire as any deadline does)."""


class Role(enum.StrEnum):
    """What a certificate lets its holder do. The role comes from the certificate, never a request."""

    MEMBER = "member"
    CUSTODIAN = "custodian"
    COORDINATOR = "coordinator"
    ADMIN = "admin"


@dataclass(frozen=True, slots=True)
class Identity:
    """An authenticated peer: its id and role, both read from its client certificate."""

    name: str
    role: Role


class RoundState(enum.StrEnum):
    """A round goes open → closed → matched, never back."""

    OPEN = "open"
    CLOSED = "closed"
    MATCHED = "matched"


class RoundKind(enum.StrEnum):
    """A batch round matches once, when it closes; a continuous scope matches each commit as it
    happens (``protocol.continuous``) and alerts the holders, until it is closed."""

    BATCH = "batch"
    CONTINUOUS = "continuous"


class SubmissionState(enum.StrEnum):
    """A member's submission is invisible to matching until committed."""

    NONE = "none"
    STAGING = "staging"
    COMMITTED = "committed"


LABELS_ASKED = datetime(1970, 1, 1, tzinfo=UTC)
"""What a member sees as ``Round.labels_due`` of a round that asks for labels: that it asks, not
until when (the window's end less its length would tell the member when the round closed)."""


def label_scope(set_scope: str, round_id: str, *, at_match: bool) -> str:
    """``Round.label_scope`` of round ``round_id`` over the standing sets of ``set_scope``."""
    return f"{set_scope}/round:{round_id}" if at_match else set_scope


def at_match_set_scope(scope: str, round_id: str) -> str | None:
    """The standing sets' scope of a ``label_scope`` of round ``round_id`` sealed at match; None when
    ``scope`` is not one (labels sealed with the sets, or another round's)."""
    suffix = f"/round:{round_id}"
    return scope.removesuffix(suffix) if scope.endswith(suffix) else None


@dataclass(frozen=True, slots=True)
class Round:
    """A matching round, as the admin created it and as it stands."""

    round_id: str
    name: str
    threshold: int
    key_epoch: str
    deadline: datetime
    allowed_types: tuple[str, ...]
    invited: tuple[str, ...] | None  # None means every member of the alliance.
    share_labels: bool
    state: RoundState = RoundState.OPEN
    created_by: str = ""
    created_at: datetime | None = None
    closed_at: datetime | None = None
    close_reason: str = ""
    matched_at: datetime | None = None
    kind: RoundKind = RoundKind.BATCH
    min_interval_seconds: int = 0  # Continuous: alerts are released at multiples of this after creation.
    # At most this many co-holder labels in each leaf and alert (``protocol.label_cap``); 0: no cap
    # (a round created before caps). The salt orders which holders' labels are carried: the
    # coordinator's secret, never sent (no member can steer its own label into every leaf).
    label_cap: int = 0
    label_salt: bytes = field(default=b"", repr=False)
    # Batch rounds sharing labels: labels are sealed only for the tokens that matched, after the
    # round closed (``labels_at_match``), by the holders whose labels will be carried, within
    # ``label_window_seconds``; ``labels_due`` is set when the coordinator asks for them (the
    # round stays closed until it issues the results).
    labels_at_match: bool = False
    label_window_seconds: int = 0
    labels_due: datetime | None = None
    # An admin's view of a round waiting for labels: the members that owe labels, and how many.
    labels_awaited: tuple[tuple[str, int], ...] = ()

    @property
    def continuous(self) -> bool:
        """Whether this is a continuous scope (matched at each commit) rather than a batch round."""
        return self.kind is RoundKind.CONTINUOUS

    @property
    def labels_in_sets(self) -> bool:
        """Whether members seal a label for every token they submit (kept in the standing sets):
        a round or scope sharing labels, unless it asks for them only where they matched."""
        return self.share_labels and not self.labels_at_match

    @property
    def labelling(self) -> bool:
        """Whether the round is closed and waiting for the matched tokens' labels."""
        return self.state is RoundState.CLOSED and self.labels_due is not None

    @property
    def label_scope(self) -> str:
        """The scope bound into this round's sealed labels (``crypto.labels``): the standing sets'
        scope, whose labels stay from round to round; for labels sealed at match, the round itself,
        so a label proves its sealer answered in this round and opens in no other."""
        return label_scope(self.set_scope, self.round_id, at_match=self.labels_at_match)

    def invites(self, member_id: str) -> bool:
        """Whether ``member_id`` may submit to this round."""
        return self.invited is None or member_id in self.invited

    @property
    def set_scope(self) -> str:
        """Which standing member sets the round matches over.

        The coordinator keeps each member's submitted set per scope (key epoch, identifier types,
        label sharing) from round to round, and a submission is a delta against it. Rounds of one
        scope run one after another; rounds of different scopes do not touch each other's sets.
        A continuous scope keeps sets of its own (its id leads its scope): its holders are its
        own invited members, and batch rounds of the same epoch and types go on beside it.
        """
        kind = "labels" if self.labels_in_sets else ("labels-at-match" if self.share_labels else "tokens")
        scope = f"{self.key_epoch}/{','.join(sorted(self.allowed_types))}/{kind}"
        return f"continuous:{self.round_id}/{scope}" if self.continuous else scope


@dataclass(frozen=True, slots=True)
class SubmissionStatus:
    """Where a member's submission to a round stands: what a resuming member asks for."""

    round_id: str
    member_id: str
    state: SubmissionState
    chunks: tuple[int, ...] = ()
    item_count: int = 0  # Items of this round's delta (staged so far, or committed).
    digest: bytes = b""  # The delta's digest, once committed.
    set_count: int = 0  # The member's standing set in the round's scope, as the coordinator holds it.
    set_digest: bytes = b""  # ``submission.set_digest`` of that set.
    commit_sequence: int = 0  # Continuous scopes: the member's last committed delta (0: none yet).


@dataclass(frozen=True, slots=True)
class PeerLabel:
    """Another holder's sealed label, and which enrolled member sealed it if that member chose
    to be named (``sealer``, as the coordinator attests it; None: not named)."""

    sealed: bytes
    sealer: str | None = None


@dataclass(frozen=True, slots=True)
class MatchedToken:
    """One of a member's tokens that at least ``threshold`` members hold."""

    match_token: bytes
    holder_count: int
    peer_labels: tuple[PeerLabel, ...] = ()  # The other holders' labels, in no meaningful order.


@dataclass(frozen=True, slots=True)
class MemberResult:
    """A member's result for a round: only its own matched tokens."""

    round_id: str
    member_id: str
    key_epoch: str
    threshold: int
    submitted_count: int
    matches: tuple[MatchedToken, ...] = field(default=())
