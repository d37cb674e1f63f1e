"""The table from identifier type to normalizer, and ``normalize``, the one entry point.

Contract: ``normalize(type, raw)`` returns ``Identifier(type, canonical)`` or raises
``InvalidIdentifier``. Every ``IdentifierType`` has exactly one normalizer in ``NORMALIZERS``
(a read-only mapping). Normalizers are pure: no I/O, no crypto, no global state beyond a
lazily loaded conversion table.
"""

from __future__ import annotations

import types
from collections.abc import Callable, Mapping

from alliance_psi.errors import InvalidIdentifier
from alliance_psi.identifiers.accounts import (
    normalize_alipay_account,
    normalize_qq,
    normalize_wechat_id,
)
from alliance_psi.identifiers.bank_card import normalize_bank_account, normalize_bank_card
from alliance_psi.identifiers.device import normalize_device_id, normalize_imei
from alliance_psi.identifiers.email_address import normalize_email
from alliance_psi.identifiers.id_card import normalize_id_card
from alliance_psi.identifiers.net import normalize_domain, normalize_ip
from alliance_psi.identifiers.org_name import normalize_org_name
from alliance_psi.identifiers.phone import normalize_phone
from alliance_psi.identifiers.types import Identifier, IdentifierType
from alliance_psi.identifiers.uscc import normalize_uscc

__all__ = ["NORMALIZERS", "normalize"]

NORMALIZERS: Mapping[IdentifierType, Callable[[str], str]] = types.MappingProxyType(
    {
        IdentifierType.PHONE: normalize_phone,
        IdentifierType.ID_CARD: normalize_id_card,
        IdentifierType.BANK_CARD: normalize_bank_card,
        IdentifierType.BANK_ACCOUNT: normalize_bank_account,
        IdentifierType.USCC: normalize_uscc,
        IdentifierType.EMAIL: normalize_email,
        IdentifierType.IP: normalize_ip,
        IdentifierType.IMEI: normalize_imei,
        IdentifierType.DEVICE_ID: normalize_device_id,
        IdentifierType.WECHAT_ID: normalize_wechat_id,
        IdentifierType.QQ: normalize_qq,
        IdentifierType.ALIPAY_ACCOUNT: normalize_alipay_account,
        IdentifierType.ORG_NAME: normalize_org_name,
        IdentifierType.DOMAIN: normalize_domain,
    }
)


def normalize(type: str | IdentifierType, raw: str) -> Identifier:
    """Normalize ``raw`` as an identifier of ``type`` (an ``IdentifierType`` or its value).

    Raises ``InvalidIdentifier`` for an unknown type (the reason lists the known ones) and for
    a value the type's normalizer rejects.
    """
    identifier_type = _identifier_type(type, raw)
    return Identifier(identifier_type, NORMALIZERS[identifier_type](raw))


def _identifier_type(name: str | IdentifierType, raw: str) -> IdentifierType:
    try:
        return IdentifierType(name)
    except ValueError:
        known = ", ".join(member.value for member in IdentifierType)
        reason = f"unknown identifier type; known types: {known}"
        value = raw if isinstance(raw, str) else None
        raise InvalidIdentifier(reason, type=str(name), value=value) from None
