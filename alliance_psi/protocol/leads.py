"""Leads: a member's matched identifiers with what the peers said about them.

``LeadLabel`` is the plaintext of a sealed label, encoded as compact JSON with short keys so that
a label with a long case reference still fits the fixed padded size; decoding is strict. The
name of the member behind a peer's label is never the label's own claim: it is the sealer the
coordinator attests in the signed result, for members that chose to be named. ``build_leads`` maps a verified result back to the member's own identifiers
and opens the peers' labels. Leads hold raw identifiers: they exist only on the member node.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import date
from typing import NamedTuple

from alliance_psi.crypto.labels import LabelContext, open_label
from alliance_psi.errors import InvalidLabel
from alliance_psi.identifiers.categories import CATEGORIES, SEVERITIES, severity_rank
from alliance_psi.protocol.model import MemberResult

__all__ = ["CATEGORIES", "SEVERITIES", "Lead", "LeadLabel", "OwnIdentifier", "build_leads", "lead_sort_key"]

_KEYS = {"c": "category", "s": "severity", "f": "first_seen", "r": "case_ref", "m": "member"}


@dataclass(frozen=True, slots=True)
class LeadLabel:
    """A member's label for one identifier.

    ``member`` is the name of the member that sealed it, as the coordinator attests it
    (``PeerLabel.sealer``: set only if that member chose to be named). A name inside the label's
    plaintext is the sealer's own claim: ``decode`` drops it (labels sealed before attestation
    carried one), so no member can pose as another by writing a name into its label.
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
        """Parse a peer's label; raise ``InvalidLabel`` for anything else."""
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

    def __repr__(self) -> str:
        return f"Lead(type={self.type}, holders={self.holder_count}, canonical=<{len(self.canonical)} chars>)"


def build_leads(
    result: MemberResult, own: Mapping[bytes, OwnIdentifier], label_keys: Mapping[bytes, bytes]
) -> list[Lead]:
    """Leads for ``result``, in ``lead_sort_key`` order: holder count (most first), severity, type.

    Tokens missing from ``own`` are skipped: an identifier withdrawn since the submission must not
    reappear in a report. A peer label that cannot be opened or parsed is counted, not shown.
    """
    found = []
    for match in result.matches:
        if match.match_token not in own:
            continue
        type_, canonical, category, severity, first_seen, case_ref, spelling = own[match.match_token]
        labels, unreadable = [], 0
        context = LabelContext(result.key_epoch, match.match_token)
        for peer in match.peer_labels:
            try:
                opened = LeadLabel.decode(open_label(label_keys[match.match_token], peer.sealed, context))
                labels.append(replace(opened, member=peer.sealer))  # The coordinator's attestation.
            except (InvalidLabel, KeyError):
                unreadable += 1
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
                tuple(labels),
                unreadable,
                spelling,
            )
        )
    found.sort(key=lead_sort_key)
    return found


def lead_sort_key(lead: Lead) -> tuple[int, int, str, str]:
    """Most holders first, then level1 before level2 before anything else, then type and value."""
    return (-lead.holder_count, severity_rank(lead.severity), lead.type, lead.canonical)
