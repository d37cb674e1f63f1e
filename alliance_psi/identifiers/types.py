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
import types
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta, timezone

from alliance_psi.errors import truncate_value

__all__ = ["CHINA_TIME", "TYPE_ALIASES", "Identifier", "IdentifierType", "identifier_type", "oprf_prefix"]

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


# The other names a blacklist file may give each type in its type column, as compliance teams
# write them (docs/file-format.md lists them). Matched like the type names themselves: NFKC (so
# full-width letters count), case-insensitive, surrounding spaces ignored.
TYPE_ALIASES: Mapping[IdentifierType, tuple[str, ...]] = types.MappingProxyType(
    {
        IdentifierType.PHONE: ("手机号", "手机号码", "手机", "电话", "电话号码", "联系电话"),
        IdentifierType.ID_CARD: ("身份证号", "身份证号码", "身份证", "居民身份证"),
        IdentifierType.BANK_CARD: ("银行卡号", "银行卡", "卡号"),
        IdentifierType.BANK_ACCOUNT: ("银行账号", "银行账户", "对公账号", "对公账户"),
        IdentifierType.USCC: ("统一社会信用代码", "社会信用代码", "信用代码"),
        IdentifierType.EMAIL: ("邮箱", "电子邮箱", "邮箱地址", "电子邮件"),
        IdentifierType.IP: ("IP地址",),
        IdentifierType.IMEI: ("IMEI号", "串号", "手机串号"),
        IdentifierType.DEVICE_ID: ("设备号", "设备ID", "设备标识"),
        IdentifierType.WECHAT_ID: ("微信号", "微信"),
        IdentifierType.QQ: ("QQ号", "QQ号码"),
        IdentifierType.ALIPAY_ACCOUNT: ("支付宝账号", "支付宝账户", "支付宝"),
        IdentifierType.ORG_NAME: ("机构名称", "单位名称", "企业名称", "公司名称"),
        IdentifierType.DOMAIN: ("域名", "网址", "网站"),
    }
)


def _folded(name: str) -> str:
    return unicodedata.normalize("NFKC", name).strip().lower()


_BY_NAME = {_folded(member.value): member for member in IdentifierType} | {
    _folded(alias): member for member, aliases in TYPE_ALIASES.items() for alias in aliases
}


def identifier_type(name: str) -> IdentifierType | None:
    """Return the type that ``name`` (a type name such as ``phone`` or one of its ``TYPE_ALIASES``,
    such as ``手机号``) stands for, or None."""
    return _BY_NAME.get(_folded(name))


def oprf_prefix(type: IdentifierType) -> bytes:
    """What ``Identifier.oprf_input`` puts before the canonical value: ``type || 0x00``."""
    return type.value.encode("ascii") + b"\x00"


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
        return oprf_prefix(self.type) + self.canonical.encode("utf-8")

    def __str__(self) -> str:
        return f"{self.type.value}:{self.canonical}"

    def __repr__(self) -> str:
        # At most half of the value, and at most the prefix errors show, so repr never reveals it.
        shown = min(_REPR_SHOWN_CHARS, len(self.canonical) // 2)
        hint = truncate_value(self.canonical, shown)
        return f"Identifier(type={self.type.value}, canonical={hint!r})"
