"""The investigator's lead report: one member's leads for one round, with the signed evidence.

A ``LeadReport`` holds raw identifiers. It exists only on the member node and in the files the
node writes for its investigators (mode 0600); nothing here prints or logs an identifier, and
``repr`` shows counts only.

The evidence is the coordinator's signed result header exactly as the node received it (header
and signature, with the id of the coordinator key) and, for each lead, its leaf of the result's
Merkle tree with the leaf's inclusion proof (``protocol.result_codec.verify_lead``). It proves
which match tokens matched, how many members hold each and which sealed labels the peers gave;
it cannot prove which raw identifier a token stands for, since only a holder of that identifier
can compute its token.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime

from alliance_psi.identifiers.categories import CATEGORY_NAMES, SEVERITY_NAMES, severity_rank
from alliance_psi.protocol.leads import Lead, LeadLabel, lead_sort_key
from alliance_psi.protocol.model import MemberResult
from alliance_psi.protocol.result_codec import LeafProof

__all__ = [
    "CATEGORY_NAMES",
    "REPORT_FORMAT",
    "REPORT_FORMAT_VERSION",
    "SEVERITY_NAMES",
    "TYPE_NAMES",
    "LeadReport",
    "build_report",
    "lead_sort_key",
]

REPORT_FORMAT = "alliance-psi/lead-report"
REPORT_FORMAT_VERSION = 3  # 2: signed by the member node (reports.signing); 3: per-lead Merkle proofs.

# Display names for investigators (docs/design.md, "Identifier types"); the categories' and
# severities' come from identifiers.categories.
TYPE_NAMES = {
    "phone": "手机号",
    "id_card": "身份证号",
    "bank_card": "银行卡号",
    "bank_account": "银行账号",
    "uscc": "统一社会信用代码",
    "email": "电子邮箱",
    "ip": "IP 地址",
    "imei": "IMEI",
    "device_id": "设备号",
    "wechat_id": "微信号",
    "qq": "QQ 号",
    "alipay_account": "支付宝账号",
    "org_name": "机构名称",
    "domain": "域名",
}


def _peer_sort_key(label: LeadLabel) -> tuple[int, str, str, date, str]:
    # Sealed labels arrive in ciphertext order, which means nothing; show them in a stable one.
    return (
        severity_rank(label.severity),
        label.category,
        label.member or "",
        label.first_seen or date.min,
        label.case_ref or "",
    )


@dataclass(frozen=True, slots=True)
class LeadReport:
    """A member's leads for one round, sorted by ``lead_sort_key``, with the signed evidence.

    ``generated_at`` is timezone-aware UTC. ``header`` and ``signature`` are the coordinator's
    signed result header as received; ``key_id`` names the coordinator key that verified it;
    ``proofs`` holds each lead's leaf and inclusion proof, by match token.
    """

    format_version: int
    generated_at: datetime
    member_id: str
    round_id: str
    round_name: str
    key_epoch: str
    threshold: int
    submitted_count: int
    leads: tuple[Lead, ...]
    header: bytes = field(repr=False)
    signature: bytes = field(repr=False)
    key_id: str
    proofs: Mapping[bytes, LeafProof] = field(repr=False)

    def __repr__(self) -> str:
        return f"LeadReport(round={self.round_id}, member={self.member_id}, leads={len(self.leads)})"

    def by_category(self) -> dict[str, int]:
        """Leads per own category, most first (ties by name)."""
        return _ranked(lead.category for lead in self.leads)

    def by_holder_count(self) -> dict[int, int]:
        """Leads per holder count, highest holder count first."""
        counts = Counter(lead.holder_count for lead in self.leads)
        return dict(sorted(counts.items(), reverse=True))

    def by_peer_category(self) -> dict[str, int]:
        """For each category a peer used, how many leads at least one peer labelled with it."""
        return _ranked(category for lead in self.leads for category in {label.category for label in lead.peer_labels})

    def by_severity(self) -> dict[str, int]:
        """Leads per own severity, level1 first."""
        counts = Counter(lead.severity for lead in self.leads)
        return dict(sorted(counts.items(), key=lambda item: (severity_rank(item[0]), item[0])))


def _ranked(values: Iterable[str]) -> dict[str, int]:
    counts = Counter(values)
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


def build_report(
    *,
    member_id: str,
    round_name: str,
    result: MemberResult,
    leads: Iterable[Lead],
    header: bytes,
    signature: bytes,
    key_id: str,
    proofs: Mapping[bytes, LeafProof],
    generated_at: datetime | None = None,
) -> LeadReport:
    """Assemble a report from a verified result (``reopen_result``) and its leads (``build_leads``).

    The caller must have verified ``header``, ``signature`` and the result's leaves with the
    coordinator key ``key_id``; ``result`` is what they decode to, and ``proofs`` has the leaf
    and inclusion proof of at least every lead's token (``lead_proofs``). Leads are sorted by
    ``lead_sort_key`` and each lead's peer labels by severity, category and member.
    ``generated_at`` defaults to now and is converted to UTC.

    Raises:
        ValueError: ``result`` is another member's, ``generated_at`` is naive, or a lead's token is
            not among the result's matches (or its holder count differs, or it has no proof).
    """
    if result.member_id != member_id:
        raise ValueError(f"result is for member {result.member_id!r}, not {member_id!r}")
    at = generated_at or datetime.now(UTC)
    if at.tzinfo is None:
        raise ValueError("generated_at must be timezone-aware")
    signed = {match.match_token: match.holder_count for match in result.matches}
    ordered = tuple(
        sorted(
            (replace(lead, peer_labels=tuple(sorted(lead.peer_labels, key=_peer_sort_key))) for lead in leads),
            key=lead_sort_key,
        )
    )
    for lead in ordered:
        if signed.get(lead.match_token) != lead.holder_count:
            raise ValueError(f"a {lead.type} lead does not match the result it is reported with")
        if lead.match_token not in proofs:
            raise ValueError(f"a {lead.type} lead has no inclusion proof")
    return LeadReport(
        format_version=REPORT_FORMAT_VERSION,
        generated_at=at.astimezone(UTC),
        member_id=member_id,
        round_id=result.round_id,
        round_name=round_name,
        key_epoch=result.key_epoch,
        threshold=result.threshold,
        submitted_count=result.submitted_count,
        leads=ordered,
        header=header,
        signature=signature,
        key_id=key_id,
        proofs={lead.match_token: proofs[lead.match_token] for lead in ordered},
    )
