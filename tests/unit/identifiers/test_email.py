"""Email addresses: email-validator's normalized form, local part lower-cased."""

from __future__ import annotations

import pytest

from alliance_psi.identifiers import normalize

SAME_ADDRESS = {
    "canonical": "zhang.san@qq.com",
    "mixed_case": "Zhang.San@QQ.COM",
    "full_width": "ｚｈａｎｇ．ｓａｎ＠ｑｑ．ｃｏｍ",
    "surrounding_whitespace": "  zhang.san@qq.com\n",
}

VALID = {
    "plus_tag_kept": ("Li+Fraud@163.com", "li+fraud@163.com"),
    "idn_domain": ("user@例子.中国", "user@例子.中国"),
    "punycode_domain_same_as_unicode": ("user@xn--fsqu00a.xn--fiqs8s", "user@例子.中国"),
    "unicode_local_part": ("用户@qq.com", "用户@qq.com"),
}

INVALID = {
    "no_at_sign": ("zhangsan", "not a valid email address"),
    "single_label_domain": ("a@qq", "not a valid email address"),
    "double_dot": ("a..b@qq.com", "not a valid email address"),
    "display_name": ("Zhang <a@qq.com>", "not a valid email address"),
    "quoted_local_part": ('"a b"@qq.com', "not a valid email address"),
    "two_at_signs": ("a@b@qq.com", "not a valid email address"),
    # Reserved names are made up: they never belong to anybody (RFC 2606, 6761).
    "example_com": ("zhangsan@example.com", "reserved name 'example.com': it belongs to nobody"),
    "under_example_org": ("a@mail.EXAMPLE.org", "reserved name 'example.org': it belongs to nobody"),
    "example_net_full_width": ("a＠example．net", "reserved name 'example.net': it belongs to nobody"),
    "test_tld": ("a@shop.test", "reserved name 'test': it belongs to nobody"),
    "invalid_tld": ("a@b.invalid", "reserved name 'invalid': it belongs to nobody"),
    "localhost": ("root@localhost", "reserved name 'localhost': it belongs to nobody"),
}


@pytest.mark.parametrize("raw", SAME_ADDRESS.values(), ids=SAME_ADDRESS.keys())
def test_equivalent_spellings_give_one_canonical(raw: str) -> None:
    assert normalize("email", raw).canonical == "zhang.san@qq.com"


@pytest.mark.parametrize(("raw", "canonical"), VALID.values(), ids=VALID.keys())
def test_valid(raw: str, canonical: str) -> None:
    assert normalize("email", raw).canonical == canonical


@pytest.mark.parametrize(("raw", "reason"), INVALID.values(), ids=INVALID.keys())
def test_invalid(rejects, raw: str, reason: str) -> None:
    rejects("email", raw, reason)


def test_lower_casing_keeps_the_local_part_in_nfc() -> None:
    # "T" + U+0308 has no precomposed form, but its lower case "ẗ" has (U+1E97).
    canonical = normalize("email", "T\u0308x@qq.com").canonical
    assert canonical == "\u1e97x@qq.com"
    assert normalize("email", canonical).canonical == canonical
