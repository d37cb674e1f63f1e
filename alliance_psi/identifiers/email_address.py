"""Email addresses.

Contract of ``normalize_email(raw)``: the address must pass ``email_validator.validate_email``
with deliverability checks off (no DNS, so normalization stays pure); internationalized local
parts are accepted; quoted local parts, IP-literal domains and display names are not. The
canonical form is the validator's normalized form (NFC, domain lower-cased and IDNA-mapped; a
punycode domain is shown as Unicode) with the local part lower-cased as well (and kept in NFC).

Addresses under a reserved name (``…@example.com``, ``…@foo.test``: ``placeholders.RESERVED_DOMAINS``)
are made up and rejected with that reason; email-validator would reject some of them (``.test``,
``.localhost``) only as invalid, and accepts ``example.com``.

Lower-casing the local part is a deliberate choice: RFC 5321 lets a mailbox be case-sensitive,
but the providers that dominate our data (QQ, 163/126, Sina, Aliyun, Gmail, Outlook) treat it
case-insensitively, and two members who wrote ``ZhangSan@qq.com`` and ``zhangsan@qq.com`` mean
the same mailbox. Keeping the case would only produce false negatives.
"""

from __future__ import annotations

import unicodedata

from email_validator import EmailNotValidError, validate_email

from alliance_psi.identifiers._text import clean, invalid
from alliance_psi.identifiers.placeholders import reserved_domain, reserved_reason
from alliance_psi.identifiers.types import IdentifierType

__all__ = ["normalize_email"]

_TYPE = IdentifierType.EMAIL


def normalize_email(raw: str) -> str:
    """Return the canonical email address.

    Raises ``InvalidIdentifier`` ("reserved name …", "not a valid email address", or a shared
    pre-cleaning reason). The validator's own message is not passed on, as it may quote parts of
    the value.
    """
    text = clean(raw, _TYPE)
    if (name := reserved_domain(text.rpartition("@")[2].lower().removesuffix("."))) is not None:
        raise invalid(_TYPE, reserved_reason(name), raw)
    try:
        result = validate_email(
            text,
            check_deliverability=False,
            allow_smtputf8=True,
            allow_quoted_local=False,
            allow_domain_literal=False,
        )
    except EmailNotValidError:
        raise invalid(_TYPE, "not a valid email address", raw) from None
    # Lower-casing can make a letter composable with the mark after it (T + U+0308 gives t +
    # U+0308, which NFC writes as U+1E97), so the result is put back into NFC.
    local_part = unicodedata.normalize("NFC", result.local_part.lower())
    return f"{local_part}@{result.domain}"
