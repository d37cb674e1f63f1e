"""Accounts on Chinese platforms: WeChat ids, QQ numbers and Alipay accounts.

Contract:

- ``normalize_wechat_id(raw)``: 6-20 characters, starting with a letter, then letters, digits,
  ``_`` or ``-`` (WeChat's own rules); lower-cased, as WeChat ids are case-insensitive.
- ``normalize_qq(raw)``: a QQ number, 5-11 digits without a leading zero; not one digit repeated
  or counting up or down (``123456``), nor Tencent's own ``QQ_PLACEHOLDERS`` (``10000``).
- ``normalize_alipay_account(raw)``: an Alipay login is a phone number or an email address. A
  value containing ``@`` gets the ``email`` canonical form, anything else the ``phone`` one;
  errors keep the ``alipay_account`` type. The identifier keeps the ``alipay_account`` type, so
  it never matches a ``phone`` or ``email`` identifier (types never match each other).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from alliance_psi.errors import InvalidIdentifier
from alliance_psi.identifiers._text import clean, digit_string, invalid
from alliance_psi.identifiers.email_address import normalize_email
from alliance_psi.identifiers.phone import normalize_phone
from alliance_psi.identifiers.placeholders import QQ_PLACEHOLDERS, digit_placeholder, listed
from alliance_psi.identifiers.types import IdentifierType

__all__ = ["normalize_alipay_account", "normalize_qq", "normalize_wechat_id"]

_WECHAT_ID = re.compile(r"[a-z][a-z0-9_-]{5,19}", re.ASCII)
_QQ_LENGTHS = range(5, 12)


def normalize_wechat_id(raw: str) -> str:
    """Return the lower-case WeChat id.

    Raises ``InvalidIdentifier`` ("not a wechat id: …", or a shared pre-cleaning reason).
    """
    text = clean(raw, IdentifierType.WECHAT_ID).lower()
    if not _WECHAT_ID.fullmatch(text):
        reason = "not a wechat id: 6-20 letters, digits, _ or -, starting with a letter"
        raise invalid(IdentifierType.WECHAT_ID, reason, raw)
    return text


def normalize_qq(raw: str) -> str:
    """Return the QQ number.

    Raises ``InvalidIdentifier`` ("expected digits only", "wrong length: …", "leading zero",
    "placeholder: …", or a shared pre-cleaning reason).
    """
    digits = digit_string(raw, IdentifierType.QQ, _QQ_LENGTHS, separators=False)
    if digits.startswith("0"):
        raise invalid(IdentifierType.QQ, "leading zero", raw)
    if reason := listed(QQ_PLACEHOLDERS, digits) or digit_placeholder(digits):
        raise invalid(IdentifierType.QQ, reason, raw)
    return digits


def normalize_alipay_account(raw: str) -> str:
    """Return the email or phone canonical form of an Alipay account.

    Raises ``InvalidIdentifier`` with type ``alipay_account`` and the email or phone reason.
    """
    type_ = IdentifierType.ALIPAY_ACCOUNT
    text = clean(raw, type_)
    normalizer: Callable[[str], str] = normalize_email if "@" in text else normalize_phone
    try:
        return normalizer(raw)
    except InvalidIdentifier as error:
        raise invalid(type_, error.reason, raw) from None
