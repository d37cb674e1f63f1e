"""The alliance's lead categories and severities (docs/design.md, "Lead categories").

Severity follows the industry's two levels of abnormal rights-defence: ``level1`` and ``level2``.
"""

from __future__ import annotations

__all__ = ["CATEGORIES", "SEVERITIES"]

CATEGORIES = (
    "proxy_rights_defense",  # 代理维权
    "anti_collection",  # 反催收
    "malicious_complaint",  # 恶意投诉
    "professional_complainant",  # 职业投诉人
    "loan_intermediary",  # 贷款中介
    "wool_party",  # 羊毛党
    "money_laundering",  # 洗钱
    "telecom_fraud",  # 电信诈骗
    "account_rental",  # 账户出租出借
    "other",
)
SEVERITIES = ("level1", "level2")
