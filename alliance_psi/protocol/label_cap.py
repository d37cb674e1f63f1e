"""Which co-holders' labels a leaf or an alert carries: at most the round's label cap ``L``.

Without a cap a token held by ``k`` members puts ``k(k−1)`` sealed labels into a round's results
(each holder's leaf carries every other holder's label), so members that agree to hold the same
tokens make the coordinator write far more than they send: 6.6× their upload at 8 members,
14.3× at 16, and again every round (docs/design.md, Limits). With a cap, each leaf and each alert
carries at most ``L`` peer labels, so a member's result is at most ``L`` labels per token it
submitted, whatever ``k`` is: the coordinator writes at most ``L`` times what the member sent.

The labels carried are those of the first holders in an order the coordinator keys with a
secret per round (``Round.label_salt``), ``HMAC-SHA256(salt, token || member id)``: members
cannot compute it, so no member can make sure its own label (a garbage one that would not count,
say) is among the ``L`` every co-holder sees, nor keep an honest holder's label out. Each
receiver gets the first ``L`` holders in that order other than itself; the order does not depend
on the receiver, so the ``L + 1`` first holders see each other and every other holder sees the
first ``L`` (one leaf each, built once, as without a cap).

What the label checks prove then (``protocol.leads.check_labels``): that ``min(n, L + 1)`` holders
hold the identifier, where ``n`` is the signed holder count; the cap is in the signed header (and
alert), so a member's node knows a leaf with ``L`` counting labels backs all the cap allows, and
the round's threshold ``t`` needs ``L ≥ t − 1``.

Holders without a label (a round without labels, or a member that sealed none) are not ranked:
they carry nothing to choose.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from typing import TypeVar

__all__ = [
    "DEFAULT_LABEL_CAP",
    "MAX_LABEL_CAP",
    "carried_labels",
    "default_label_cap",
    "peer_labels_for",
    "peers_among",
    "rank_holders",
]

# Eight co-holders' labels say what the alliance thinks of an identifier (their categories and
# severities) as well as eighty; the holder count is signed whatever the cap.
DEFAULT_LABEL_CAP = 8
# A page of a result holds one leaf of up to 256 KiB: 850 labels of 301 bytes.
MAX_LABEL_CAP = 800

L = TypeVar("L")


def default_label_cap(threshold: int) -> int:
    """The cap a round gets when its creator names none: ``DEFAULT_LABEL_CAP``, or twice
    ``threshold − 1`` if that is more.

    A lead needs ``threshold − 1`` peer labels that count, and a label that does not count (a
    hostile co-holder's garbage) still takes one of the ``L`` places: at ``L = t − 1`` a single such
    co-holder carried in the first places refuses every honest holder's lead it is shown to, where
    without a cap it cost only its own count. The default leaves as many places again, so it takes
    ``t`` such co-holders among the carried ones to refuse an honest lead."""
    return max(DEFAULT_LABEL_CAP, 2 * (threshold - 1))


def rank_holders(salt: bytes, token: bytes, members: Sequence[str]) -> list[str]:
    """``members`` in the order whose first holders' labels are carried (see the module docstring)."""
    return sorted(members, key=lambda member: hmac.new(salt, token + member.encode(), hashlib.sha256).digest())


def carried_labels(
    token: bytes, holders: Sequence[tuple[str, L | None]], *, cap: int, salt: bytes
) -> list[tuple[str, L]]:
    """The labelled holders of ``token`` whose labels its leaves and alerts may carry, in carrying
    order: every labelled holder when at most ``cap`` have a label (or ``cap`` is 0, no cap),
    else the first ``cap + 1`` by ``rank_holders``. A receiver among them gets the others; any
    other receiver gets the first ``cap`` of them."""
    labelled = [(member, label) for member, label in holders if label]
    if not cap or len(labelled) <= cap:
        return labelled
    by_member = dict(labelled)
    return [(member, by_member[member]) for member in rank_holders(salt, token, list(by_member))[: cap + 1]]


def peer_labels_for(
    receiver: str, holders: Sequence[tuple[str, L | None]], *, cap: int, salt: bytes, token: bytes
) -> list[tuple[str, L]]:
    """The other holders' labels ``receiver``'s leaf or alert about ``token`` carries: those of
    ``carried_labels`` but its own, at most ``cap`` (every other holder's label without a cap)."""
    return peers_among(receiver, carried_labels(token, holders, cap=cap, salt=salt), cap=cap)


def peers_among(receiver: str, carried: Sequence[tuple[str, L]], *, cap: int) -> list[tuple[str, L]]:
    """``peer_labels_for`` from a token's ``carried_labels`` already ranked: for a token's several
    receivers, the holders are ranked once."""
    others = [(member, label) for member, label in carried if member != receiver]
    return others[:cap] if cap else others
