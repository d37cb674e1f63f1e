"""The placeholder lists and shapes of ``identifiers.placeholders``, refused by every type that has them."""

from __future__ import annotations

import pytest

from alliance_psi.errors import InvalidIdentifier
from alliance_psi.identifiers import normalize
from alliance_psi.identifiers.placeholders import (
    BANK_CARD_PLACEHOLDERS,
    ID_CARD_PLACEHOLDERS,
    IMEI_PLACEHOLDERS,
    PHONE_PLACEHOLDERS,
    QQ_PLACEHOLDERS,
    counting,
)

LISTED = [
    *(("phone", value, source) for value, source in PHONE_PLACEHOLDERS.items()),
    *(("alipay_account", value, source) for value, source in PHONE_PLACEHOLDERS.items()),
    *(("id_card", value, source) for value, source in ID_CARD_PLACEHOLDERS.items()),
    *(("bank_card", value, source) for value, source in BANK_CARD_PLACEHOLDERS.items()),
    *(("imei", value, source) for value, source in IMEI_PLACEHOLDERS.items()),
    *(("qq", value, source) for value, source in QQ_PLACEHOLDERS.items()),
]


@pytest.mark.parametrize(("type_", "value", "source"), LISTED, ids=[f"{t}-{v}" for t, v, _ in LISTED])
def test_every_listed_value_is_refused_naming_its_source_not_the_value(type_: str, value: str, source: str) -> None:
    with pytest.raises(InvalidIdentifier) as info:
        normalize(type_, value)
    assert info.value.reason == f"placeholder: well-known {source}"
    if len(value) > 6:  # Shorter values are their own truncated prefix.
        assert value.removeprefix("+86") not in str(info.value)


@pytest.mark.parametrize("digits", ["12", "0123456789", "789012", "98765", "3210987654321", "1098"])
def test_counting(digits: str) -> None:
    assert counting(digits)


@pytest.mark.parametrize("digits", ["1", "11", "13", "123457", "1232", "0246", "97531"])
def test_not_counting(digits: str) -> None:
    assert not counting(digits)
