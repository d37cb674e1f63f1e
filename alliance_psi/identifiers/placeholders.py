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
- ``counting(digits)``: whether ``digits`` count up or down by one (``12345678``, ``8765``,
  ``78901234``: 0 follows 9, as on a keypad row), the other placeholder shape of numbers.
- ``digit_placeholder(digits)``: the reason ``digits`` are a placeholder by shape (one digit
  repeated, or counting), else None.
- ``listed(table, value)``: the reason a canonical ``value`` is a well-known placeholder of the
  per-type ``table`` (``PHONE_PLACEHOLDERS``, ``ID_CARD_PLACEHOLDERS``, ``BANK_CARD_PLACEHOLDERS``,
  ``IMEI_PLACEHOLDERS``, ``QQ_PLACEHOLDERS``), else None. Each table maps a value to where it is
  well known from; docs/file-format.md lists them with the structural rules of each type.
- ``reserved_domain(host)``: the reserved name (RFC 2606, RFC 6761, RFC 6762, RFC 8375 and ICANN's
  ``internal``) that the lower-case host name ``host`` equals or lies under, else None. Such names
  never belong to anybody, so they are never a lead: the ``domain`` and ``email`` types reject them.
  ``.onion`` (RFC 7686) is special-use but names real Tor services, so it is not in the list.

Every reason names the rule or the list entry's source, never the value: a refusal reaches the
import summary and the rejects file through ``InvalidIdentifier``, which shows a value only as a
truncated prefix.

The lists hold values printed in public documentation, test-card tables and examples, so no private
person's identifier is on them; the shapes (a run of one digit, digits counting) are what people
type into a mandatory field. A real number of such a shape is rare (the chance is given beside
each rule in docs/file-format.md) and is refused with the rest: a missed lead costs less than a
"shared lead" that two members' filler rows make against whoever owns the number.
"""

from __future__ import annotations

import itertools

__all__ = [
    "BANK_CARD_PLACEHOLDERS",
    "COUNTING",
    "ID_CARD_PLACEHOLDERS",
    "IMEI_PLACEHOLDERS",
    "ORG_NAME_PLACEHOLDERS",
    "PHONE_PLACEHOLDERS",
    "QQ_PLACEHOLDERS",
    "REPEATED_CHARACTER",
    "RESERVED_DOMAINS",
    "counting",
    "digit_placeholder",
    "listed",
    "one_repeated_character",
    "reserved_domain",
    "reserved_reason",
]

REPEATED_CHARACTER = "placeholder: one character repeated"
COUNTING = "placeholder: digits counting up or down (1234…)"
_WELL_KNOWN = "placeholder: well-known"

# Canonical values (the normalizer's output) and where each is well known from.
PHONE_PLACEHOLDERS = {
    "+8613800138000": "example mobile number (China Mobile's service number, on countless forms and docs)",
}
ID_CARD_PLACEHOLDERS = {
    "11010519491231002X": "example resident ID (the worked example of GB 11643-1999)",
}
BANK_CARD_PLACEHOLDERS = {
    # Payment networks' and processors' published test cards (Visa, Mastercard, Amex, Discover,
    # JCB, UnionPay), as printed in the Stripe, PayPal Braintree and Adyen test-card tables.
    "4111111111111111": "test card (Visa)",
    "4012888888881881": "test card (Visa)",
    "4242424242424242": "test card (Visa, Stripe)",
    "4000056655665556": "test card (Visa debit, Stripe)",
    "5555555555554444": "test card (Mastercard)",
    "5105105105105100": "test card (Mastercard)",
    "5200828282828210": "test card (Mastercard debit, Stripe)",
    "378282246310005": "test card (American Express)",
    "371449635398431": "test card (American Express)",
    "6011111111111117": "test card (Discover)",
    "6011000990139424": "test card (Discover)",
    "3530111333300000": "test card (JCB)",
    "3566002020360505": "test card (JCB)",
    "6200000000000005": "test card (UnionPay, Stripe)",
    "6205500000000000004": "test card (UnionPay, Stripe)",
    "6216261000000000018": "test card (China UnionPay's merchant integration test card)",
}
IMEI_PLACEHOLDERS = {
    "490154203237518": "example IMEI (the check-digit example of the IMEI article and many docs)",
    "352099001761481": "example IMEI (the structure example of the IMEI article: 35-209900-176148-1)",
}
QQ_PLACEHOLDERS = {
    "10000": "system account (Tencent's own QQ number, which sends every user's system messages)",
}

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


def counting(digits: str) -> bool:
    """Return whether the ASCII ``digits`` (at least two) count up, or down, by one at each step,
    0 following 9 (``12345678``, ``87654321``, ``78901234``)."""
    steps = {(int(b) - int(a)) % 10 for a, b in itertools.pairwise(digits)}
    return len(digits) > 1 and steps in ({1}, {9})


def digit_placeholder(digits: str) -> str | None:
    """Return the reason the ASCII ``digits`` are a placeholder by shape, else None."""
    if one_repeated_character(digits):
        return REPEATED_CHARACTER
    if counting(digits):
        return COUNTING
    return None


def listed(table: dict[str, str], value: str) -> str | None:
    """Return the reason the canonical ``value`` is on ``table`` (its source, not the value), else None."""
    source = table.get(value)
    return f"{_WELL_KNOWN} {source}" if source is not None else None


def reserved_domain(host: str) -> str | None:
    """Return the reserved name that the lower-case ``host`` (no trailing dot) is or lies under."""
    return next((name for name in RESERVED_DOMAINS if host == name or host.endswith("." + name)), None)


def reserved_reason(name: str) -> str:
    """The rejection reason for a host under the reserved ``name`` (from the list, never a value)."""
    return f"reserved name {name!r}: it belongs to nobody"
