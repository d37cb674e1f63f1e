"""The alliance's lead categories and severities, with their Chinese names (docs/design.md, "Lead categories").

Severity follows the industry's two levels of abnormal rights-defence: ``level1`` (the graver)
and ``level2``. This module is the one source of the codes, their Chinese names (the importer
accepts them, reports show them) and the severity order (leads and reports sort by it).
"""

from __future__ import annotations

__all__ = ["CATEGORIES", "CATEGORY_NAMES", "CATEGORY_VARIANTS", "SEVERITIES", "SEVERITY_NAMES", "severity_rank"]

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
