"""Identifier types and the normalized identifier value.

Contract: an ``Identifier`` holds a type and the canonical string its normalizer produced.
``oprf_input()`` is ``type || 0x00 || canonical`` (docs/design.md, protocol step 1). No type name
contains a NUL byte, so the input is injective in ``(type, canonical)``: equal values of
different types never match.

Security: ``repr()`` shows only a truncated prefix (at most half) of the canonical value, so
an identifier that ends up in a log line by accident does not leak in full. ``str()`` shows the full
``type:canonical`` form and is for deliberate use only (reports on the member node).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import timedelta, timezone

from alliance_psi.errors import truncate_value

__all__ = ["CHINA_TIME", "Identifier", "IdentifierType"]

_REPR_SHOWN_CHARS = 6
# The time zone in which dates without one are read: birth dates in ID numbers, expiry dates in
# blacklist files (Asia/Shanghai is UTC+8 all year; China has no daylight saving time).
CHINA_TIME = timezone(timedelta(hours=8), "Asia/Shanghai")


class IdentifierType(enum.StrEnum):
    """The identifier types of the first set (docs/design.md, "Identifier types")."""

    PHONE = "phone"
    ID_CARD = "id_card"
    BANK_CARD = "bank_card"
    BANK_ACCOUNT = "bank_account"
    USCC = "uscc"
    EMAIL = "email"
    IP = "ip"
    IMEI = "imei"
    DEVICE_ID = "device_id"
    WECHAT_ID = "wechat_id"
    QQ = "qq"
    ALIPAY_ACCOUNT = "alipay_account"
    ORG_NAME = "org_name"
    DOMAIN = "domain"


@dataclass(frozen=True, slots=True, repr=False)
class Identifier:
    """A normalized identifier. Build it through ``alliance_psi.identifiers.normalize``."""

    type: IdentifierType
    canonical: str

    def __post_init__(self) -> None:
        if not isinstance(self.type, IdentifierType):
            raise TypeError(f"type must be an IdentifierType, not {type(self.type).__name__}")
        if not isinstance(self.canonical, str):
            raise TypeError(f"canonical must be str, not {type(self.canonical).__name__}")

    def oprf_input(self) -> bytes:
        """Return the OPRF input ``type || 0x00 || canonical`` (UTF-8)."""
        return self.type.value.encode("ascii") + b"\x00" + self.canonical.encode("utf-8")

    def __str__(self) -> str:
        return f"{self.type.value}:{self.canonical}"

    def __repr__(self) -> str:
        # At most half of the value, and at most the prefix errors show, so repr never reveals it.
        shown = min(_REPR_SHOWN_CHARS, len(self.canonical) // 2)
        hint = truncate_value(self.canonical, shown)
        return f"Identifier(type={self.type.value}, canonical={hint!r})"
