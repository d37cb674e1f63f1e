"""Continuous scopes: each committed delta matched at once, incrementally, into alerts.

A continuous scope is a round of kind ``continuous`` (``model.RoundKind``) that stays open until
an admin closes it. Its members submit deltas through the same resumable, digest-checked chunks
and commit as in batch rounds, again and again: each commit carries the member's commit
sequence (its last committed delta + 1), so a chunk or commit of a delta already committed is
told apart from the next delta.

The commit is matched in its own transaction, over the tokens it touches only. The storage
reports, for each token whose membership or label the delta changed and that is at or above the
threshold before or after (only then may it alert; the others are left out in the database),
the committing member's label digest before and after and the token's holder count after
(``set_holders``, kept as sets change); ``drafts_for`` then turns the change into alerts
(``protocol.alerts``):

========================================  ==========================================================
change                                    alerts
========================================  ==========================================================
joins, the count reaches the threshold    ``MATCH`` to every holder
joins a token already at the threshold    ``MATCH`` to the new holder, ``JOINED`` to the others
relabels a token at the threshold         ``RELABELED`` to the other holders
withdraws, still at the threshold         ``WITHDRAWN`` to the remaining holders
withdraws, now below the threshold        ``RETRACTED`` to the remaining holders (all had the lead)
anything below the threshold              nothing
========================================  ==========================================================

A member that holds nothing of a token gets nothing about it. Each alert carries the other
holders' sealed labels and their attested sealers as a result's leaf does, so the node's label
checks hold for alerts too. The holders of a token are read only for tokens at or above the
threshold before or after the commit, so a commit costs about its own size, whatever the sets'.
"""

from __future__ import annotations

from collections.abc import Container, Mapping, Sequence
from dataclasses import dataclass

from alliance_psi.protocol.alerts import AlertKind
from alliance_psi.protocol.label_cap import carried_labels, peers_among
from alliance_psi.protocol.model import PeerLabel

__all__ = ["AlertDraft", "TokenChange", "alert_kinds", "drafts_for"]


@dataclass(frozen=True, slots=True)
class TokenChange:
    """What one commit did to one token: the committing member's label digest before and after
    (None: it did not hold the token) and how many members hold it after the commit."""

    token: bytes
    before: bytes | None
    after: bytes | None
    holders: int

    @property
    def holders_before(self) -> int:
        """How many members held the token before the commit."""
        return self.holders - (self.after is not None) + (self.before is not None)


@dataclass(frozen=True, slots=True)
class AlertDraft:
    """An alert for ``member_id`` before it is numbered and signed (``protocol.alert_outbox``)."""

    member_id: str
    kind: AlertKind
    token: bytes
    holder_count: int
    peer_labels: tuple[PeerLabel, ...] = ()


def alert_kinds(change: TokenChange, threshold: int) -> tuple[AlertKind | None, AlertKind | None]:
    """The kind of alert ``change`` gives its committer and each other holder after it (None:
    none), by the table in the module docstring; the holders themselves are not needed."""
    before, after = change.holders_before, change.holders
    if change.before is None and change.after is not None:  # The committer joined the token.
        if before < threshold <= after:
            return AlertKind.MATCH, AlertKind.MATCH
        if before >= threshold:
            return AlertKind.MATCH, AlertKind.JOINED
        return None, None
    if change.before is not None and change.after is None:  # The committer withdrew it.
        if after >= threshold:
            return None, AlertKind.WITHDRAWN
        if before >= threshold:
            return None, AlertKind.RETRACTED
        return None, None
    if change.before != change.after and after >= threshold:  # The committer relabeled it.
        return None, AlertKind.RELABELED
    return None, None


def drafts_for(
    change: TokenChange,
    *,
    committer: str,
    threshold: int,
    holders: Sequence[tuple[str, bytes | None]],
    sealers: Mapping[str, str],
    share_labels: bool,
    only: Container[str] | None = None,
    label_cap: int = 0,
    label_salt: bytes = b"",
) -> list[AlertDraft]:
    """The alerts one token change gives (``alert_kinds``), in member order; with ``only``, those
    of these members alone (the others' are not built).

    ``holders`` are the token's holders after the commit with their sealed labels; ``sealers``
    the attested names of the members that chose to be named. A label-less scope sends no labels;
    one with a label cap sends at most ``label_cap`` each (``label_cap.peer_labels_for``; the
    holders are ranked once per change, not once per receiver).
    """
    own, others = alert_kinds(change, threshold)
    carried = carried_labels(change.token, holders, cap=label_cap, salt=label_salt) if share_labels else []
    drafts = []
    for member in sorted(m for m, _ in holders):
        kind = own if member == committer else others
        if kind is None or (only is not None and member not in only):
            continue
        peers: tuple[PeerLabel, ...] = ()
        if share_labels:
            peers = tuple(PeerLabel(label, sealers.get(m)) for m, label in peers_among(member, carried, cap=label_cap))
        drafts.append(AlertDraft(member, kind, change.token, change.holders, peers))
    return drafts
