"""What a lead label may say: the alliance's categories and severities, with their Chinese names
(docs/design.md, "Lead categories"), and what a case reference may hold.

Severity follows the industry's two levels of abnormal rights-defence: ``level1`` (the graver)
and ``level2``. This module is the one source of the codes, their Chinese names (the importer
accepts them, reports show them) and the severity order (leads and reports sort by it); and of
the case reference's rule (``case_ref_problem``), which the importer applies to a member's own
and ``LeadLabel`` to every label, a peer's included.
"""

from __future__ import annotations

import unicodedata
from typing import NamedTuple

__all__ = [
    "BIDI_CONTROLS",
    "CATEGORIES",
    "CATEGORY_NAMES",
    "CATEGORY_VARIANTS",
    "MAX_CASE_REF_BYTES",
    "SEVERITIES",
    "SEVERITY_NAMES",
    "CaseRefProblem",
    "case_ref_problem",
    "severity_rank",
]

CATEGORY_NAMES = {
    "proxy_rights_defense": "代理维权",
    "anti_collection": "反催收",
    "malicious_complaint": "恶意投诉",
    "professional_complainant": "职业投诉人",
    "loan_intermediary": "贷款中介",
    "wool_party": "羊毛党",
    "money_laundering": "洗钱",
    "telecom_fraud": "电信诈骗",
    "account_rental": "账户出租出借",
    "other": "其他",
}
# Other Chinese spellings the importer accepts for a category (其它 and 其他 are both in common use).
CATEGORY_VARIANTS = {"其它": "other"}
CATEGORIES = tuple(CATEGORY_NAMES)
# Gravest first: the order is the ranking.
SEVERITY_NAMES = {"level1": "一级", "level2": "二级"}
SEVERITIES = tuple(SEVERITY_NAMES)


def severity_rank(severity: str | None) -> int:
    """Sort key of a severity: ``level1`` before ``level2`` before none or anything else."""
    return SEVERITIES.index(severity) if severity in SEVERITIES else len(SEVERITIES)


MAX_CASE_REF_BYTES = 64
"""The longest case reference, in UTF-8 bytes: it shares a label's fixed padded size with the rest."""

# The format characters (Cf) that reorder text as it is displayed (U+202E and its kind), named as such.
BIDI_CONTROLS = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
# What a case reference may not hold: it reaches co-holders' consoles, logs, reports and webhooks.
_UNFIT = {
    "Cc": "control character",
    "Cf": "format character",
    "Cs": "unpaired surrogate",
    "Zl": "line separator",
    "Zp": "paragraph separator",
}


class CaseRefProblem(NamedTuple):
    """Why a text cannot be a case reference: ``reason`` says what and where (``control character
    U+001B``), ``kind`` the same without the character (``control character``), to count by."""

    kind: str
    reason: str


def case_ref_problem(case_ref: str) -> CaseRefProblem | None:
    """Why ``case_ref`` cannot be a label's case reference, or None if it can.

    It may hold no control, format (bidirectional controls named as such), surrogate, line or
    paragraph separator character (Unicode categories Cc, Cf, Cs, Zl, Zp), and at most
    ``MAX_CASE_REF_BYTES`` bytes in UTF-8. No reason quotes the text.
    """
    for char in case_ref:
        if kind := _UNFIT.get(unicodedata.category(char)):
            kind = "bidirectional control character" if char in BIDI_CONTROLS else kind
            return CaseRefProblem(kind, f"{kind} U+{ord(char):04X}")
    if len(case_ref.encode("utf-8")) > MAX_CASE_REF_BYTES:
        too_long = f"too long: at most {MAX_CASE_REF_BYTES} bytes (UTF-8), to fit the shared label"
        return CaseRefProblem(too_long, too_long)
    return None
