"""normalize(), NORMALIZERS, the checks every type shares, and the purity of the layer."""

from __future__ import annotations

import subprocess
import sys

import pytest

from alliance_psi.errors import InvalidIdentifier
from alliance_psi.identifiers import NORMALIZERS, Identifier, IdentifierType, normalize

ALL_TYPES = [member.value for member in IdentifierType]

SHARED_INVALID = {
    "empty": ("", "empty value"),
    "blank": ("  \t ", "empty value"),
    "ideographic_space": ("\u3000", "empty value"),
    "zero_width_space_only": ("\u200b", "empty value"),
    "nul_inside": ("ab\x00cdef", "control character in value"),
    "nul_only": ("\x00", "control character in value"),
    "inner_tab": ("abc\tdef", "control character in value"),
    "escape": ("abc\x1bdef", "control character in value"),
    "too_long": ("1" * 257, "value too long"),
    "too_long_before_stripping": (" " * 250 + "13915274680", "value too long"),
}

# Invalid values long enough that showing them in full would leak them.
LONG_INVALID = {
    "phone": "+86 139 1527 4680 ext 1234",
    "id_card": "440305198706143571",
    "bank_card": "6222020200000000001",
    "bank_account": "1234567890123456789012345678901234",
    "uscc": "91350100M000100Y44",
    "email": "zhang.san.fraud.agent@",
    "ip": "2001:db8:0:0:0:0:0:1:1",
    "imei": "490154203237519",
    "device_id": "6d92078a-8246-4ba4-ae5b-76104861e7dX",
    "wechat_id": "1zhangsan_the_proxy_agent",
    "qq": "0123456789",
    "alipay_account": "zhang.san.fraud.agent@",
    "org_name": "【【【【【【公】】】】】】",
    "domain": "proxy-rights-defence_agent.example.com",
}


def test_every_type_has_a_normalizer() -> None:
    assert set(NORMALIZERS) == set(IdentifierType)


def test_normalizers_are_read_only() -> None:
    with pytest.raises(TypeError):
        NORMALIZERS[IdentifierType.PHONE] = str  # type: ignore[index]


def test_normalize_accepts_enum_or_value() -> None:
    expected = Identifier(IdentifierType.PHONE, "+8613915274680")
    assert normalize(IdentifierType.PHONE, "13915274680") == expected
    assert normalize("phone", "13915274680") == expected


def test_unknown_type_names_the_known_types() -> None:
    with pytest.raises(InvalidIdentifier, match="unknown identifier type") as info:
        normalize("passport", "E12345678")
    assert info.value.type == "passport"
    assert info.value.reason == "unknown identifier type; known types: " + ", ".join(ALL_TYPES)


@pytest.mark.parametrize("type_", ALL_TYPES)
@pytest.mark.parametrize(("raw", "reason"), SHARED_INVALID.values(), ids=SHARED_INVALID.keys())
def test_shared_checks_apply_to_every_type(rejects, type_: str, raw: str, reason: str) -> None:
    rejects(type_, raw, reason)


@pytest.mark.parametrize("type_", ALL_TYPES)
def test_non_text_value_is_rejected(type_: str) -> None:
    with pytest.raises(InvalidIdentifier, match="value is not text"):
        normalize(type_, 13915274680)  # type: ignore[arg-type]


@pytest.mark.parametrize(("type_", "raw"), LONG_INVALID.items(), ids=LONG_INVALID.keys())
def test_error_shows_only_a_prefix_of_the_value(type_: str, raw: str) -> None:
    with pytest.raises(InvalidIdentifier) as info:
        normalize(type_, raw)
    message = str(info.value)
    assert raw.strip() not in message
    assert repr(raw[:6] + "…") in message


def test_error_for_too_long_value_shows_only_a_prefix() -> None:
    raw = "13915274680" * 30
    with pytest.raises(InvalidIdentifier) as info:
        normalize("phone", raw)
    assert str(info.value) == "invalid phone '139152…': value too long"


def test_layer_imports_no_crypto_io_or_transport() -> None:
    # Run in a fresh interpreter so other tests' imports do not count; normalize one value of
    # each lazily loaded kind so the check covers what runs, not only what is imported.
    code = (
        "import sys\n"
        "from alliance_psi.identifiers import normalize\n"
        "normalize('org_name', '馬上消費')\n"
        "normalize('domain', 'www.例子.中国')\n"
        "forbidden = ('grpc', 'sqlalchemy', 'click', 'rich',\n"
        "             'alliance_psi.crypto', 'alliance_psi.cli')\n"
        "print(sorted(m for m in sys.modules for f in forbidden if (m + '.').startswith(f + '.')))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert result.stdout.strip() == "[]"
