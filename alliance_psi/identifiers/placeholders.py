"""Placeholders: values that look valid but stand for "no value", and would match across members.

A blacklist exported from a case system holds ``N/A`` where nobody knew the company, a card number
of zeros where the field was mandatory, ``example.com`` where an address was made up. Two members
who both hold such a value would be told they share a lead that is no lead at all, so each type
rejects its placeholders (the reasons below), and docs/file-format.md lists them.

Contract:

- ``ORG_NAME_PLACEHOLDERS``: organization "names" that say the name is unknown or absent, written
  as people type them; ``org_name`` compares a name with them after its own folding (so ``n/a``,
  ``N.A.`` and ``（未知）`` are caught as ``NA`` and ``未知``).
- ``one_repeated_character(text)``: whether ``text`` is one character repeated (``0000…``,
  ``ffff…``): the placeholder shape of every number or hex id (bank cards and accounts, IMEIs,
  device ids, credit codes, organization names).
- ``reserved_domain(host)``: the reserved name (RFC 2606, RFC 6761, RFC 6762, RFC 8375 and ICANN's
  ``internal``) that the lower-case host name ``host`` equals or lies under, else None. Such names
  never belong to anybody, so they are never a lead: the ``domain`` and ``email`` types reject them.
  ``.onion`` (RFC 7686) is special-use but names real Tor services, so it is not in the list.
"""

from __future__ import annotations

__all__ = [
    "ORG_NAME_PLACEHOLDERS",
    "REPEATED_CHARACTER",
    "RESERVED_DOMAINS",
    "one_repeated_character",
    "reserved_domain",
    "reserved_reason",
]

REPEATED_CHARACTER = "placeholder: one character repeated"

ORG_NAME_PLACEHOLDERS = (
    # Unknown, absent or not applicable, in English.
    "N/A",
    "NA",
    "null",
    "none",
    "nil",
    "NaN",
    "unknown",
    "undefined",
    "TBD",
    "test",
    # The same in Chinese: none, none yet, empty, unknown, unclear, not filled in, to be decided,
    # other, test, private person (no organization), no employer.
    "无",
    "暂无",
    "没有",
    "空",
    "未知",
    "不详",
    "不明",
    "不清楚",
    "未填",
    "未填写",
    "待定",
    "待补充",
    "待查",
    "其他",
    "其它",
    "测试",
    "个人",
    "无单位",
    "无名称",
    "未知单位",
    "未知公司",
    # "Such-and-such company": the stand-in of examples and anonymised case files.
    "某某",
    "某公司",
    "某某公司",
    "某单位",
    "某某单位",
    "XX公司",
    "XXX公司",
    # A legal-form suffix alone.
    "公司",
    "有限公司",
    "有限责任公司",
)

# Reserved top-level names, then reserved second-level ones (each with everything under it).
RESERVED_DOMAINS = (
    "test",  # RFC 2606, RFC 6761
    "example",  # RFC 2606, RFC 6761
    "invalid",  # RFC 2606, RFC 6761
    "localhost",  # RFC 2606, RFC 6761
    "local",  # RFC 6762 (multicast DNS)
    "internal",  # ICANN, for private networks (2024)
    "example.com",  # RFC 2606, RFC 6761
    "example.net",  # RFC 2606, RFC 6761
    "example.org",  # RFC 2606, RFC 6761
    "home.arpa",  # RFC 8375
)


def one_repeated_character(text: str) -> bool:
    """Return whether ``text`` is at least two characters long and one character repeated."""
    return len(text) > 1 and len(set(text)) == 1


def reserved_domain(host: str) -> str | None:
    """Return the reserved name that the lower-case ``host`` (no trailing dot) is or lies under."""
    return next((name for name in RESERVED_DOMAINS if host == name or host.endswith("." + name)), None)


def reserved_reason(name: str) -> str:
    """The rejection reason for a host under the reserved ``name`` (from the list, never a value)."""
    return f"reserved name {name!r}: it belongs to nobody"
