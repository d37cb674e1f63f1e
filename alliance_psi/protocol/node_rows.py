"""The rows the member role and its node database exchange (``ports.NodeRepo``, ``ports.KeptResultsRepo``).

Named tuples rather than bare ones: a field is read by name, and a row still unpacks as before.
They hold raw identifiers, label keys and tokens: they exist only on the member node.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import NamedTuple

__all__ = [
    "CachedToken",
    "IdentifierRef",
    "KeptHeader",
    "KeptLeaf",
    "PendingChange",
    "PendingSet",
    "SetRecord",
    "SubmissionRow",
    "SubmittedToken",
]


class IdentifierRef(NamedTuple):
    """One of the node's identifiers, by its row id."""

    id: int
    type: str
    canonical: str


class CachedToken(NamedTuple):
    """What the custodians' evaluation gave for one identifier in a key epoch."""

    identifier_id: int
    match_token: bytes
    label_key: bytes


class SubmissionRow(NamedTuple):
    """An identifier the node wants matched in a round, with its cached token and its label's fields."""

    identifier_id: int
    match_token: bytes
    label_key: bytes
    category: str
    severity: str
    first_seen: date | None
    case_ref: str


class SubmittedToken(NamedTuple):
    """A token of the set the node last committed in a scope, as the node recorded it.

    ``label_digest`` is ``submission.label_digest`` of the sealed label sent; ``label_fingerprint``
    a hash of the label's plaintext, so a changed label is sent again and an unchanged one is not.
    """

    match_token: bytes
    label_digest: bytes
    label_fingerprint: bytes


class PendingChange(NamedTuple):
    """One item put (``removed`` False) or token removed by a delta being sent."""

    match_token: bytes
    removed: bool
    label_digest: bytes
    label_fingerprint: bytes


class SetRecord(NamedTuple):
    """The count and ``submission.set_digest`` of the set the node last committed in a scope.

    ``state`` is the digest's LtHash state (``submission.SetDigest``), which the next delta
    updates; ``change_seq`` the change stamp of the node's identifiers up to which the record
    reflects them, after which the next delta reads the changed rows. Both are None in a record
    kept before they existed: the next submission sends the whole set.
    """

    item_count: int
    digest: bytes
    state: bytes | None = None
    change_seq: int | None = None


class PendingSet(NamedTuple):
    """A delta being sent to ``round_id``: whether it is the whole set, the change stamp it reads
    up to (None: every row), and, once its chunks are all built, the record it leaves when the
    coordinator commits it (None before)."""

    round_id: str
    replace: bool
    change_seq: int | None
    record: SetRecord | None = None


class KeptLeaf(NamedTuple):
    """One verified leaf of a kept result: its index in the tree, its token and its canonical bytes."""

    leaf_index: int
    match_token: bytes
    leaf: bytes


class KeptHeader(NamedTuple):
    """A kept result's signed header, as verified when it was fetched."""

    key_epoch: str
    round_name: str
    header: bytes
    signature: bytes
    fetched_at: datetime
