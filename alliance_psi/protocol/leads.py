"""Leads: a member's matched identifiers with what the peers said about them.

``LeadLabel`` is the plaintext of a sealed label, encoded as compact JSON with short keys so that
a label with a long case reference still fits the fixed padded size; decoding is strict. The
name of the member behind a peer's label is never the label's own claim: it is the sealer the
coordinator attests in the signed result, for members that chose to be named. ``build_leads`` maps a verified result back to the member's own identifiers
and opens the peers' labels. Leads hold raw identifiers: they exist only on the member node.

In a round that shares labels, a holder count is not only the coordinator's word: each other
holder sealed a label under the identifier's label key, which only holders know.
``refuse_leads`` checks every matched token against its labels (``check_labels``): a label counts
for one other holder when it opens under the key, does not carry this member's own sealer
pseudonym, and no label counted before carries its pseudonym. A lead whose counted labels do not
reach the round's threshold is refused (``build_leads`` leaves it out): the coordinator lied about
it. A lead whose counted labels reach the threshold but not the signed holder count stands, with
the count its labels back beside the coordinator's (``Lead.backed_count``): so a co-holder that
replays another member's label, or the coordinator that adds one, can neither veto a lead that
the threshold of holders backs nor inflate its count (docs/design.md, "What the label checks prove").
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import date
from typing import NamedTuple

from alliance_psi.crypto.labels import LabelContext, open_label
from alliance_psi.errors import InvalidLabel
from alliance_psi.identifiers.categories import CATEGORIES, SEVERITIES, case_ref_problem, severity_rank
from alliance_psi.protocol.model import MatchedToken, MemberResult

__all__ = [
    "CATEGORIES",
    "SEVERITIES",
    "LabelBacking",
    "Lead",
    "LeadChecks",
    "LeadLabel",
    "OwnIdentifier",
    "RefusedLead",
    "back_count",
    "build_leads",
    "check_labels",
    "lead_sort_key",
    "open_peer_labels",
    "refuse_leads",
]

_KEYS = {"c": "category", "s": "severity", "f": "first_seen", "r": "case_ref", "m": "member"}


@dataclass(frozen=True, slots=True)
class LeadLabel:
    """A member's label for one identifier.

    ``member`` is the name of the member that sealed it, as the coordinator attests it
    (``PeerLabel.sealer``: set only if that member chose to be named). A name inside the label's
    plaintext is the sealer's own claim: ``decode`` drops it (labels sealed before attestation
    carried one), so no member can pose as another by writing a name into its label.

    Every field is checked as the label is made, a member's own or a peer's decoded: a category
    and a severity of the alliance's, and a case reference that ``case_ref_problem`` accepts (at
    most 64 UTF-8 bytes, no control, format or separator character: a peer's case reference
    reaches consoles, logs, reports and webhooks). ``ValueError`` names the field and why.
    """

    category: str
    severity: str | None = None
    first_seen: date | None = None
    case_ref: str | None = None
    member: str | None = None

    def __post_init__(self) -> None:
        if self.category not in CATEGORIES:
            raise ValueError(f"category {self.category!r}: one of {', '.join(CATEGORIES)}")
        if self.severity is not None and self.severity not in SEVERITIES:
            raise ValueError(f"severity {self.severity!r}: one of {', '.join(SEVERITIES)}")
        if self.case_ref is not None and (problem := case_ref_problem(self.case_ref)):
            raise ValueError(f"case_ref: {problem.reason}")

    def encode(self) -> bytes:
        fields = {
            "c": self.category,
            "s": self.severity,
            "f": self.first_seen.isoformat() if self.first_seen else None,
            "r": self.case_ref,
            "m": self.member,
        }
        compact = {k: v for k, v in fields.items() if v is not None}
        return json.dumps(compact, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode("utf-8")

    @classmethod
    def decode(cls, data: bytes) -> LeadLabel:
        """Parse a peer's label; raise ``InvalidLabel`` for anything else, a field that fails its
        check (see the class) included."""
        try:
            raw = json.loads(data.decode("utf-8"))
            if not isinstance(raw, dict) or not set(raw) <= set(_KEYS) or "c" not in raw:
                raise ValueError("unexpected shape")
            if not all(isinstance(v, str) for v in raw.values()):
                raise ValueError("unexpected value")
            first_seen = date.fromisoformat(raw["f"]) if "f" in raw else None
            return cls(raw["c"], raw.get("s"), first_seen, raw.get("r"))  # A self-declared "m" is dropped.
        except (ValueError, UnicodeDecodeError):
            raise InvalidLabel() from None


class OwnIdentifier(NamedTuple):
    """One of the member's own identifiers with its label's fields, as the node database holds it.

    ``spelling`` is the value as the member wrote it ("" if not kept).
    """

    type: str
    canonical: str
    category: str
    severity: str
    first_seen: date | None
    case_ref: str
    spelling: str = ""


@dataclass(frozen=True, slots=True)
class Lead:
    """One of the member's own identifiers that at least ``threshold`` members hold.

    ``canonical`` is the normalized value (what the token was derived from); ``spelling`` is the
    member's own writing of it ("138 0013 8000"), kept on the node for its investigators, or "".
    """

    type: str
    canonical: str
    category: str
    severity: str
    case_ref: str
    first_seen: date | None
    holder_count: int
    match_token: bytes
    peer_labels: tuple[LeadLabel, ...]
    unreadable_labels: int
    spelling: str = ""
    # In a round with labels: how many holders its labels back (this member and the other holders
    # whose labels count, ``check_labels``) when fewer than ``holder_count``; None when they back it all.
    backed_count: int | None = None

    def __repr__(self) -> str:
        return f"Lead(type={self.type}, holders={self.holder_count}, canonical=<{len(self.canonical)} chars>)"


@dataclass(frozen=True, slots=True)
class RefusedLead:
    """A matched token whose peer labels do not back its holder count (``check_labels``), and why.

    ``backed_count`` is the number of holders the labels back (this member included). When it
    reaches the round's threshold the lead ``stands`` (it is a lead, with that count beside the
    signed one); otherwise it is refused. ``reason`` names no identifier and no label: it may be
    shown and kept as it is.
    """

    match_token: bytes
    holder_count: int
    reason: str
    backed_count: int = 0
    stands: bool = False


@dataclass(frozen=True, slots=True)
class LeadChecks:
    """What a member node concluded of a kept result when it fetched it.

    ``scope`` is the scope the round's labels are sealed in (None: the round shares no labels,
    and holder counts are the coordinator's word); ``refused`` the matches whose labels fall short
    of their holder count: refused leads, and (``stands``) leads whose labels back fewer holders
    than the coordinator says, but at least the threshold.
    """

    scope: str | None
    refused: tuple[RefusedLead, ...] = ()

    def refused_tokens(self) -> frozenset[bytes]:
        """The matches that are not leads."""
        return frozenset(refusal.match_token for refusal in self.refused if not refusal.stands)

    def backed_counts(self) -> dict[bytes, int]:
        """The leads that stand with fewer holders backed than signed: token -> backed count."""
        return {
            refusal.match_token: refusal.backed_count
            for refusal in self.refused
            if refusal.stands and refusal.backed_count < refusal.holder_count
        }


@dataclass(frozen=True, slots=True)
class LabelBacking:
    """What ``match``'s peer labels back (``check_labels``).

    ``backed`` counts this member and each other holder whose label counts; ``flaws`` says, without
    naming any identifier or label, why some labels were not counted.
    """

    backed: int
    flaws: tuple[str, ...]


def back_count(match: MatchedToken, label_key: bytes, context: LabelContext, own_sealer: bytes) -> LabelBacking:
    """How many holders ``match``'s peer labels back, and why some were not counted.

    A label counts for one other holder when it opens under ``label_key`` in ``context`` (it was
    sealed by someone who knows the key: a holder of the identifier, in this scope), does not carry
    ``own_sealer``, this member's own pseudonym for the token (its own label returned as a peer's),
    and no label counted before carries its sealer pseudonym (one member counted twice, or one label
    repeated). The own pseudonym is compared in constant time.
    """
    sealers: set[bytes] = set()
    flaws: dict[str, None] = {}
    for peer in match.peer_labels:
        try:
            sealer = open_label(label_key, peer.sealed, context).sealer
        except InvalidLabel:
            flaws["a peer label does not open under this identifier's key"] = None
            continue
        if hmac.compare_digest(sealer, own_sealer):
            flaws["this member's own label is returned as a peer's (replayed by the coordinator or by a co-holder)"] = (
                None
            )
        elif sealer in sealers:
            flaws["two peer labels carry one sealer's pseudonym (one member, or one label, counted twice)"] = None
        else:
            sealers.add(sealer)
    return LabelBacking(1 + len(sealers), tuple(flaws))


def check_labels(
    match: MatchedToken,
    label_key: bytes,
    context: LabelContext,
    own_sealer: bytes,
    *,
    threshold: int,
    label_cap: int = 0,
) -> RefusedLead | None:
    """``match`` as a refused lead (or one that stands, with what was wrong), or None when its peer
    labels back all the holders they can and every one of them counts (``back_count``).

    The labels can back ``min(holder count, label_cap + 1)`` holders: the round's signed cap on the
    peer labels a leaf or alert carries (``protocol.label_cap``; 0: no cap, the whole count), and
    never fewer than ``threshold`` (a signed cap below ``threshold − 1`` lowers nothing).
    The lead stands when the holders its labels back reach ``threshold``, the round's: no co-holder
    can veto another's lead by replaying a label, and no coordinator can raise a count past what
    the labels back (the lead carries the backed count).
    """
    backing = back_count(match, label_key, context, own_sealer)
    # Never less than the threshold: a cap below threshold − 1 is none a coordinator may sign
    # (``CoordinatorRole`` refuses it), so it cannot pass a lead its labels back below the threshold.
    can_back = min(match.holder_count, max(label_cap + 1, threshold)) if label_cap else match.holder_count
    if backing.backed >= can_back and not backing.flaws:
        return None
    backed = min(backing.backed, match.holder_count)
    stands = backed >= threshold
    counted = backing.backed - 1
    said = (
        f"held by {match.holder_count} members says the coordinator; {counted} peer "
        f"label{'' if counted == 1 else 's'} count{'s' if counted == 1 else ''} under this identifier's key"
    )
    if backed >= match.holder_count:
        verdict = f"they back all {match.holder_count} holders: the lead stands"
    elif stands:
        verdict = f"they back {backed} holders, at least the threshold {threshold}: a lead held by {backed}"
    else:
        verdict = f"{threshold - 1} needed for the threshold {threshold}: not a lead"
    reason = "; ".join((said, *backing.flaws, verdict))
    return RefusedLead(match.match_token, match.holder_count, reason, backed, stands)


def refuse_leads(
    matches: Iterable[MatchedToken],
    label_keys: Mapping[bytes, bytes],
    *,
    key_epoch: str,
    scope: str,
    threshold: int,
    own_sealer: Callable[[LabelContext], bytes],
    label_cap: int = 0,
) -> list[RefusedLead]:
    """The ``matches`` of a label-sharing round in ``scope`` whose labels fall short (``check_labels``):
    refused leads, and leads that stand with fewer holders backed than signed.

    ``own_sealer`` gives this member's pseudonym for a context (``sealer_pseudonym`` with the
    node's sealer key); ``label_cap`` is the signed header's. Tokens without a label key on this node are skipped, as ``build_leads``
    skips them. Takes the matches a page at a time as well as all at once.
    """
    found = []
    for match in matches:
        if (key := label_keys.get(match.match_token)) is None:
            continue
        context = LabelContext(key_epoch, match.match_token, scope)
        finding = check_labels(match, key, context, own_sealer(context), threshold=threshold, label_cap=label_cap)
        if finding is not None:
            found.append(finding)
    return found


def build_leads(
    result: MemberResult,
    own: Mapping[bytes, OwnIdentifier],
    label_keys: Mapping[bytes, bytes],
    *,
    scope: str | None,
    refused: Collection[bytes] = frozenset(),
    backed: Mapping[bytes, int] | None = None,
) -> list[Lead]:
    """Leads for ``result``, in ``lead_sort_key`` order: holder count (most first), severity, type.

    ``scope`` is the scope the round's labels were sealed in, or None for a round without labels.
    Tokens in ``refused`` (``LeadChecks.refused_tokens``) are left out: they are not leads; those in
    ``backed`` (``LeadChecks.backed_counts``) carry the holder count their labels back. Tokens missing
    from ``own`` are skipped: an identifier withdrawn since the submission must not reappear in
    a report. A peer label that cannot be opened or parsed is counted, not shown.
    """
    found = []
    for match in result.matches:
        if match.match_token not in own or match.match_token in refused:
            continue
        type_, canonical, category, severity, first_seen, case_ref, spelling = own[match.match_token]
        context = LabelContext(result.key_epoch, match.match_token, scope) if scope is not None else None
        labels, unreadable = open_peer_labels(match, label_keys.get(match.match_token), context)
        found.append(
            Lead(
                type_,
                canonical,
                category,
                severity,
                case_ref,
                first_seen,
                match.holder_count,
                match.match_token,
                labels,
                unreadable,
                spelling,
                (backed or {}).get(match.match_token),
            )
        )
    found.sort(key=lead_sort_key)
    return found


def open_peer_labels(
    match: MatchedToken, label_key: bytes | None, context: LabelContext | None
) -> tuple[tuple[LeadLabel, ...], int]:
    """The peers' labels of ``match`` opened under ``label_key`` in ``context``, each named by its
    attested sealer (``PeerLabel.sealer``, never the label's own claim), and how many could not be
    opened or parsed (counted, not shown). Without a key or a context (no labels in the scope),
    every label is unreadable."""
    labels, unreadable = [], 0
    for peer in match.peer_labels:
        try:
            if label_key is None or context is None:
                raise InvalidLabel()  # A scope without labels: whatever is there cannot be one.
            opened = open_label(label_key, peer.sealed, context)
            labels.append(replace(LeadLabel.decode(opened.plaintext), member=peer.sealer))  # Attested name.
        except InvalidLabel:
            unreadable += 1
    return tuple(labels), unreadable


def lead_sort_key(lead: Lead) -> tuple[int, int, str, str]:
    """Most holders first, then level1 before level2 before anything else, then type and value."""
    return (-lead.holder_count, severity_rank(lead.severity), lead.type, lead.canonical)
