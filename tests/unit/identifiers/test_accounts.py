"""WeChat ids, QQ numbers and Alipay accounts."""

from __future__ import annotations

import pytest

from alliance_psi.identifiers import normalize

WECHAT_REASON = "not a wechat id: 6-20 letters, digits, _ or -, starting with a letter"

WECHAT_VALID = {
    "mixed_case": ("Zhang_San-88", "zhang_san-88"),
    "wxid": ("wxid_abc123", "wxid_abc123"),
    "six_chars": ("abcdef", "abcdef"),
    "twenty_chars": ("a" * 20, "a" * 20),
    "full_width": ("ＺｈａｎｇＳａｎ", "zhangsan"),
}

WECHAT_INVALID = {
    "five_chars": ("zs123", WECHAT_REASON),
    "twenty_one_chars": ("a" * 21, WECHAT_REASON),
    "starts_with_digit": ("1zhangsan", WECHAT_REASON),
    "starts_with_underscore": ("_zhangsan", WECHAT_REASON),
    "inner_space": ("zhang san", WECHAT_REASON),
    "chinese": ("张三abcdef", WECHAT_REASON),
    "dot": ("zhang.san", WECHAT_REASON),
}

QQ_VALID = {
    "five_digits": ("10001", "10001"),
    "eleven_digits": ("48213679105", "48213679105"),
    "full_width": ("４８２１３６７９", "48213679"),
}

QQ_INVALID = {
    "four_digits": ("1234", "wrong length: expected 5-11 digits, got 4"),
    "twelve_digits": ("123456789012", "wrong length: expected 5-11 digits, got 12"),
    "leading_zero": ("012345", "leading zero"),
    "inner_space": ("123 456", "expected digits only"),
    "letters": ("qq123456", "expected digits only"),
    "tencent_system_account": (
        "10000",
        "placeholder: well-known system account (Tencent's own QQ number, which sends every user's system messages)",
    ),
    "counting": ("123456", "placeholder: digits counting up or down (1234…)"),
    "one_digit_repeated": ("88888", "placeholder: one character repeated"),
}

ALIPAY_VALID = {
    "email": ("ZhangSan@QQ.com", "zhangsan@qq.com"),
    "phone": ("139 1527 4680", "+8613915274680"),
    "phone_with_country_code": ("+86 139-1527-4680", "+8613915274680"),
    "full_width_email": ("ｚｓ＠１６３．ｃｏｍ", "zs@163.com"),
}

ALIPAY_INVALID = {
    "bad_email": ("zhangsan@", "not a valid email address"),
    "landline": ("010-12345678", "not a mainland mobile number"),
    "name": ("zhangsan", "letters or symbols in phone number"),
    "placeholder_phone": (
        "13800138000",
        "placeholder: well-known example mobile number (China Mobile's service number, on countless forms and docs)",
    ),
}


@pytest.mark.parametrize(("raw", "canonical"), WECHAT_VALID.values(), ids=WECHAT_VALID.keys())
def test_wechat_valid(raw: str, canonical: str) -> None:
    assert normalize("wechat_id", raw).canonical == canonical


@pytest.mark.parametrize(("raw", "reason"), WECHAT_INVALID.values(), ids=WECHAT_INVALID.keys())
def test_wechat_invalid(rejects, raw: str, reason: str) -> None:
    rejects("wechat_id", raw, reason)


@pytest.mark.parametrize(("raw", "canonical"), QQ_VALID.values(), ids=QQ_VALID.keys())
def test_qq_valid(raw: str, canonical: str) -> None:
    assert normalize("qq", raw).canonical == canonical


@pytest.mark.parametrize(("raw", "reason"), QQ_INVALID.values(), ids=QQ_INVALID.keys())
def test_qq_invalid(rejects, raw: str, reason: str) -> None:
    rejects("qq", raw, reason)


@pytest.mark.parametrize(("raw", "canonical"), ALIPAY_VALID.values(), ids=ALIPAY_VALID.keys())
def test_alipay_valid(raw: str, canonical: str) -> None:
    assert normalize("alipay_account", raw).canonical == canonical


@pytest.mark.parametrize(("raw", "reason"), ALIPAY_INVALID.values(), ids=ALIPAY_INVALID.keys())
def test_alipay_invalid_keeps_its_type(rejects, raw: str, reason: str) -> None:
    rejects("alipay_account", raw, reason)


def test_alipay_account_never_matches_the_same_phone() -> None:
    alipay = normalize("alipay_account", "13915274680")
    phone = normalize("phone", "13915274680")
    assert alipay.canonical == phone.canonical
    assert alipay.oprf_input() != phone.oprf_input()
