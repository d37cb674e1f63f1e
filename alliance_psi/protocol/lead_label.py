"""What a member says about an identifier it flags: the plaintext of a sealed label.

Encoded as compact JSON with short keys, so that a label with a long case reference and a
Chinese member name still fits the fixed padded size. Decoding is strict: a peer's label that is
not this shape is refused rather than half-read.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date

from alliance_psi.errors import InvalidLabel

__all__ = ["CATEGORIES", "SEVERITIES", "LeadLabel"]

CATEGORIES = (
    "proxy_rights_defense", "anti_collection", "malicious_complaint", "professional_complainant",
    "loan_intermediary", "wool_party", "money_laundering", "telecom_fraud", "account_rental", "other",
)
SEVERITIES = ("level1", "level2")
_KEYS = {"c": "category", "s": "severity", "f": "first_seen", "r": "case_ref", "m": "member"}


@dataclass(frozen=True, slots=True)
class LeadLabel:
    """A member's label for one identifier; ``member`` is set only if the member chose to be named."""

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
        fields = {"c": self.category, "s": self.severity, "f": self.first_seen.isoformat() if self.first_seen else None,
                  "r": self.case_ref, "m": self.member}
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
            return cls(raw["c"], raw.get("s"), first_seen, raw.get("r"), raw.get("m"))
        except (ValueError, UnicodeDecodeError):
            raise InvalidLabel() from None
