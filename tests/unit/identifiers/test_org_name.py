"""Organization names: NFKC, traditional to simplified, punctuation and spaces folded."""

from __future__ import annotations

import pytest

from alliance_psi.errors import InvalidIdentifier
from alliance_psi.identifiers import normalize
from alliance_psi.identifiers.placeholders import ORG_NAME_PLACEHOLDERS

NAME = "马上消费金融股份有限公司"

SAME_NAME = {
    "simplified": NAME,
    "traditional": "馬上消費金融股份有限公司",
    "trailing_space": NAME + " ",
    "empty_full_width_brackets": NAME + "（）",
    "empty_ascii_brackets": NAME + "()",
    "inner_spaces_and_middle_dot": "马上 消费·金融\u3000股份有限公司",
    "punctuation_everywhere": "「马上」消费-金融，股份。有限公司！",
    "zero_width_space": "马上消费\u200b金融股份有限公司",
}

VALID = {
    "brackets_folded_content_kept": ("阿里巴巴（中国）有限公司", "阿里巴巴中国有限公司"),
    "latin_lower_cased": ("Alibaba Group Holding Ltd.", "alibabagroupholdingltd"),
    "full_width_latin": ("ＡＢＣ銀行", "abc银行"),
    "symbols_removed": ("A&B®科技+有限公司", "ab科技有限公司"),
    "two_characters": ("银行", "银行"),
}

INVALID = {
    "only_brackets": ("（）", "empty after folding"),
    "only_punctuation": ("·—。", "empty after folding"),
    "one_character": ("公", "too short: fewer than 2 characters after folding"),
    "one_character_with_punctuation": ("（公）", "too short: fewer than 2 characters after folding"),
    "repeated_letter": ("XXX", "placeholder: one character repeated"),
    "repeated_digit": ("0000", "placeholder: one character repeated"),
    "dash": ("-", "empty after folding"),
}

PLACEHOLDER_SPELLINGS = {
    "n_a": "N/A",
    "n_a_lower_dotted": "n.a.",
    "na": "NA",
    "null": "NULL",
    "none": "None",
    "unknown_spaced": " Unknown ",
    "wu": "无",
    "zanwu": "暂无",
    "weizhi_in_brackets": "（未知）",
    "buxiang": "不详",
    "buxiang_traditional": "不詳",
    "full_width_na": "Ｎ／Ａ",
    "moumou_company": "某某公司",
    "suffix_alone": "有限公司",
}


@pytest.mark.parametrize("raw", SAME_NAME.values(), ids=SAME_NAME.keys())
def test_equivalent_spellings_give_one_canonical(raw: str) -> None:
    assert normalize("org_name", raw).canonical == NAME


@pytest.mark.parametrize(("raw", "canonical"), VALID.values(), ids=VALID.keys())
def test_valid(raw: str, canonical: str) -> None:
    assert normalize("org_name", raw).canonical == canonical


@pytest.mark.parametrize(("raw", "reason"), INVALID.values(), ids=INVALID.keys())
def test_invalid(rejects, raw: str, reason: str) -> None:
    rejects("org_name", raw, reason)


def test_conversion_reaches_a_fixed_point() -> None:
    # OpenCC's t2s maps 薴 to 苧, which is itself converted to 苎; one pass would not be idempotent.
    canonical = normalize("org_name", "薴麻公司").canonical
    assert canonical == "苎麻公司"
    assert normalize("org_name", canonical).canonical == canonical


def test_folding_reaches_a_fixed_point_with_combining_marks() -> None:
    # NFKC turns "¨" into a space and U+0308; once the space is folded, "t" and U+0308 compose.
    canonical = normalize("org_name", "公司T¨").canonical
    assert canonical == "公司\u1e97"
    assert normalize("org_name", canonical).canonical == canonical


@pytest.mark.parametrize("raw", PLACEHOLDER_SPELLINGS.values(), ids=PLACEHOLDER_SPELLINGS.keys())
def test_placeholders_are_rejected_after_folding(rejects, raw: str) -> None:
    rejects("org_name", raw, "placeholder, not a name")


@pytest.mark.parametrize("name", ORG_NAME_PLACEHOLDERS)
def test_every_listed_placeholder_is_rejected(name: str) -> None:
    with pytest.raises(InvalidIdentifier, match="placeholder"):
        normalize("org_name", name)


def test_names_containing_a_placeholder_word_are_kept() -> None:
    assert normalize("org_name", "深圳市某某贷款咨询有限公司").canonical == "深圳市某某贷款咨询有限公司"
    assert normalize("org_name", "无锡银行").canonical == "无锡银行"
    assert normalize("org_name", "NA Capital Ltd").canonical == "nacapitalltd"
