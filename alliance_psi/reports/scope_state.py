"""The state of a continuous scope on a member node: the leads that stand now, each with the alert
the coordinator signed for it. Not a round's result.

A batch round ends in one signed result (``reports.model.LeadReport``, with Merkle proofs). A
continuous scope never ends: the coordinator signs an alert each time one of the member's tokens
changes, and the leads that stand at a moment are, for each token, its latest alert when that
says it is a lead (``storage.node_alerts``, ``AlertFilter(current=True)``). This report is that
state as of the node's last applied alert (``through_sequence``), and says so in every rendering:
another report of the same scope later may hold other leads.

Its evidence is each lead's signed alert (``protocol.alerts``: canonical bytes and the
coordinator's signature, checked when the node applied it), which proves the coordinator said
that token had that many holders and those sealed labels at that time. The node signs the whole
JSON document with its certificate key (``reports.signing.sign_document``), as it signs a round's
report. It holds raw identifiers: written mode 0600, never printed.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from alliance_psi.protocol.leads import Lead
from alliance_psi.protocol.node_alerts import AppliedAlert
from alliance_psi.reports.render import lead_fields, leads_csv
from alliance_psi.reports.signing import ReportSigner, sign_document

__all__ = [
    "SCOPE_STATE_FORMAT",
    "SCOPE_STATE_FORMAT_VERSION",
    "ScopeState",
    "render_scope_state_csv",
    "render_signed_scope_state",
    "scope_state_document",
]

SCOPE_STATE_FORMAT = "alliance-psi/continuous-scope-state"
SCOPE_STATE_FORMAT_VERSION = 1


@dataclass(frozen=True, slots=True)
class ScopeState:
    """A member's standing leads in continuous scope ``scope_id``, as of its alert ``through_sequence``.

    ``leads`` pairs each lead (``protocol.leads.Lead``: the member's identifier, labels opened)
    with the applied alert that makes it one; ``key_id`` names the coordinator key the alerts
    were verified with. ``repr`` shows counts only.
    """

    member_id: str
    scope_id: str
    through_sequence: int
    generated_at: datetime
    key_id: str
    leads: tuple[tuple[Lead, AppliedAlert], ...] = field(repr=False)

    def __repr__(self) -> str:
        return f"ScopeState(scope={self.scope_id}, member={self.member_id}, leads={len(self.leads)})"

    @property
    def statement(self) -> str:
        return (
            f"The leads that stand in continuous scope {self.scope_id} as of alert {self.through_sequence} applied by "
            f"this node, {self.generated_at:%Y-%m-%d %H:%M:%S} UTC: for each, the latest alert the coordinator signed "
            "for its token. A continuous scope's state changes with every alert; this is not the result of a round."
        )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def scope_state_document(state: ScopeState) -> dict[str, Any]:
    """The state as JSON-ready data: what it is, the leads with their signed alerts, and the key."""
    return {
        "format": SCOPE_STATE_FORMAT,
        "format_version": SCOPE_STATE_FORMAT_VERSION,
        "report_kind": "continuous-scope state",
        "statement": state.statement,
        "generated_at": state.generated_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "member_id": state.member_id,
        "scope_id": state.scope_id,
        "through_sequence": state.through_sequence,
        "leads": [
            {
                **lead_fields(lead),
                "alert": {
                    "sequence": alert.sequence,
                    "kind": alert.kind,
                    "released_at": alert.created_at.isoformat().replace("+00:00", "Z"),
                    "alert_b64": _b64(alert.signed),
                    "signature_b64": _b64(alert.signature),
                },
            }
            for lead, alert in state.leads
        ],
        "evidence": {"key_id": state.key_id},
    }


def render_signed_scope_state(state: ScopeState, signer: ReportSigner, *, signed_at: datetime | None = None) -> bytes:
    """The JSON document signed by the member node (see the module)."""
    signed = sign_document(scope_state_document(state), signer, signed_at=signed_at or datetime.now(UTC))
    return (json.dumps(signed, ensure_ascii=False, sort_keys=True, indent=2) + "\n").encode("utf-8")


def render_scope_state_csv(state: ScopeState) -> bytes:
    """The leads as the round report's CSV (``render.leads_csv``), the header its first line: a CSV
    reader takes the first line for the header, so ``statement`` (in the JSON document's
    ``statement``) is not in the file; ``node report`` says it on the terminal."""
    return leads_csv(lead for lead, _ in state.leads)
