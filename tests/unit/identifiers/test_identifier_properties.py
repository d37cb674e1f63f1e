"""Property-based tests: idempotence, equivalent spellings, and injectivity of the OPRF input.

Valid values are generated with check characters computed by the short reference
implementations below, written independently of the normalizers (Horner-style recurrences
instead of weight tables), as pyca checks custom vectors with a second implementation.
"""

from __future__ import annotations

import datetime
import ipaddress
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alliance_psi.errors import InvalidIdentifier
from alliance_psi.identifiers import Identifier, IdentifierType, normalize

EXAMPLES = settings(max_examples=150, deadline=None)
DIGITS = "0123456789"
USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"


# Reference implementations.


def ref_luhn_digit(payload: str) -> str:
    """The digit that completes ``payload`` for the Luhn check."""
    total = 0
    for index, char in enumerate(reversed(payload)):
        doubled = int(char) * (2 if index % 2 == 0 else 1)
        total += doubled // 10 + doubled % 10
    return str(-total % 10)


def ref_iso7064_mod11_2(body: str) -> str:
    """ISO 7064 MOD 11-2 by its recursive definition: p = (p + a) * 2 mod 11."""
    product = 0
    for char in body:
        product = (product + int(char)) * 2 % 11
    return "0123456789X"[(12 - product) % 11]


def ref_gb32100(body: str) -> str:
    """GB 32100 check character, summing c_i * 3^(i-1) mod 31 from the right."""
    total = 0
    for char in reversed(body):
        total = (total * 3 + USCC_ALPHABET.index(char)) % 31
    return USCC_ALPHABET[-total % 31]


def test_reference_implementations_agree_with_published_values() -> None:
    assert ref_iso7064_mod11_2("44030519870614357") == "X"
    assert ref_gb32100("91350100M000100Y4") == "3"
    assert ref_luhn_digit("411111111111111") == "1"


# Strategies for valid raw values.


def digits(min_size: int, max_size: int | None = None) -> st.SearchStrategy[str]:
    return st.text(DIGITS, min_size=min_size, max_size=max_size or min_size)


@st.composite
def id_card_bodies(draw: st.DrawFn, min_year: int = 1900, max_year: int = 2020) -> str:
    region = draw(st.sampled_from("12345678")) + draw(digits(5))
    birth = draw(st.dates(datetime.date(min_year, 1, 1), datetime.date(max_year, 12, 31)))
    return region + birth.strftime("%Y%m%d") + draw(digits(3))


def counting_or_repeated(text: str) -> bool:
    """Digits counting up or down by one (0 after 9) or one digit repeated: placeholders of every number."""
    return len(set(text)) == 1 or text in DIGITS * 4 or text in DIGITS[::-1] * 4


def not_a_placeholder_mobile(mobile: str) -> bool:
    """The placeholder phone numbers (docs/file-format.md): a listed example, a run of 7 or more of
    one digit or counting in the last 8 digits, the prefix echoed (138 0013 8000)."""
    subscriber = mobile[3:]
    run = any(digit * 7 in subscriber for digit in DIGITS)
    echo = mobile == mobile[:3] + "00" + mobile[:3] + "000"
    return not (run or echo or counting_or_repeated(subscriber) or mobile == "13800138000")


def not_a_placeholder_id_card(canonical: str) -> bool:
    """The placeholder ID numbers: the usual examples' region and birth date, an ending of one digit four times."""
    example = canonical.startswith(("11010119900307", "11010119900101")) or canonical == "11010519491231002X"
    return not (example or len(set(canonical[-4:])) == 1)


MAINLAND_MOBILES = st.builds(
    lambda prefix, rest: prefix + rest,
    st.sampled_from([f"13{d}" for d in DIGITS] + ["150", "151", "152", "158", "159", "186", "189"]),
    digits(8),
).filter(not_a_placeholder_mobile)
PHONE_SPELLINGS = st.sampled_from(["{}", "+86{}", "+86 {}", "0086{}", "86{}", " {} ", "+86-{}"])
SEPARATED = st.sampled_from(["", " ", "-"])


def not_one_repeated_character(text: str) -> bool:
    """Values of one character repeated are placeholders, which every numeric type rejects."""
    return len(set(text.lower().replace("-", ""))) > 1


LUHN_CARDS = (
    digits(11, 18)
    .map(lambda payload: payload + ref_luhn_digit(payload))
    .filter(lambda card: not counting_or_repeated(card) and not counting_or_repeated(card[6:-1]))
)
USCC_CODES = (
    st.text(USCC_ALPHABET, min_size=17, max_size=17)
    .map(lambda b: b + ref_gb32100(b))
    .filter(not_one_repeated_character)
)
ID_CARDS = id_card_bodies().map(lambda body: body + ref_iso7064_mod11_2(body)).filter(not_a_placeholder_id_card)
IMEIS = digits(14).filter(lambda p: not counting_or_repeated(p)).map(lambda p: p + ref_luhn_digit(p))
ATOMS = st.from_regex(r"[A-Za-z0-9_+-]{1,8}", fullmatch=True)
# One inner hyphen at most: IDNA 2008 (and so email-validator) rejects "--" in positions 3-4.
LABELS = st.from_regex(r"[a-z0-9]{1,5}(-[a-z0-9]{1,5})?", fullmatch=True)
TLDS = st.sampled_from(["com", "cn", "net", "org", "com.cn"])
DOMAINS = st.builds(lambda labels, tld: ".".join([*labels, tld]), st.lists(LABELS, min_size=1, max_size=3), TLDS)
EMAILS = st.builds(
    lambda atoms, domain: ".".join(atoms) + "@" + domain,
    st.lists(ATOMS, min_size=1, max_size=3),
    DOMAINS,
)
CJK = st.characters(min_codepoint=0x4E00, max_codepoint=0x9FA5)
CJK_LABELS = st.text(CJK, min_size=1, max_size=5)
VENDOR_UUIDS = st.uuids().filter(lambda u: not_one_repeated_character(u.hex))
ANDROID_IDS = st.text("0123456789abcdefABCDEF", min_size=16, max_size=16).filter(not_one_repeated_character)


def is_public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Globally routable (an IPv4-mapped address by its IPv4 address): the only addresses accepted."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast


PUBLIC_IPS = st.ip_addresses().filter(is_public)
ORG_NAME_CHARS = st.one_of(
    CJK,
    st.sampled_from("馬上消費金融銀行臺灣廣東貸款諮詢 ·()（）【】-—,.，。、&"),
    st.characters(categories=["Lu", "Ll", "Nd"]),
)

VALID_RAW: dict[IdentifierType, st.SearchStrategy[str]] = {
    IdentifierType.PHONE: st.builds(str.format, PHONE_SPELLINGS, MAINLAND_MOBILES),
    IdentifierType.ID_CARD: ID_CARDS,
    IdentifierType.BANK_CARD: LUHN_CARDS,
    IdentifierType.BANK_ACCOUNT: digits(6, 32).filter(lambda account: not counting_or_repeated(account)),
    IdentifierType.USCC: USCC_CODES,
    IdentifierType.EMAIL: EMAILS,
    IdentifierType.IP: PUBLIC_IPS.map(str),
    IdentifierType.IMEI: IMEIS,
    IdentifierType.DEVICE_ID: st.one_of(VENDOR_UUIDS.map(str), VENDOR_UUIDS.map(lambda u: u.hex), ANDROID_IDS),
    IdentifierType.WECHAT_ID: st.from_regex(r"[A-Za-z][A-Za-z0-9_-]{5,19}", fullmatch=True),
    IdentifierType.QQ: st.integers(10_001, 99_999_999_999).map(str).filter(lambda qq: not counting_or_repeated(qq)),
    IdentifierType.ALIPAY_ACCOUNT: st.one_of(MAINLAND_MOBILES, EMAILS),
    IdentifierType.ORG_NAME: st.text(ORG_NAME_CHARS, min_size=1, max_size=30),
    IdentifierType.DOMAIN: st.one_of(DOMAINS, st.builds("{}.{}".format, CJK_LABELS, TLDS)),
}


# Idempotence.


def test_every_type_has_a_strategy() -> None:
    assert set(VALID_RAW) == set(IdentifierType)


@pytest.mark.parametrize("type_", list(IdentifierType), ids=str)
@EXAMPLES
@given(data=st.data())
def test_normalization_is_idempotent_on_valid_values(type_: IdentifierType, data: st.DataObject) -> None:
    raw = data.draw(VALID_RAW[type_])
    try:
        canonical = normalize(type_, raw).canonical
    except InvalidIdentifier:
        # Only organization names are drawn freely enough to include invalid ones (too short,
        # one character repeated).
        assert type_ is IdentifierType.ORG_NAME
        return
    assert normalize(type_, canonical).canonical == canonical


@pytest.mark.parametrize("type_", list(IdentifierType), ids=str)
@settings(max_examples=100, deadline=None)
@given(raw=st.text(max_size=40))
def test_any_text_is_normalized_idempotently_or_rejected(type_: IdentifierType, raw: str) -> None:
    # No other exception escapes, and whatever is accepted is a fixed point.
    try:
        canonical = normalize(type_, raw).canonical
    except InvalidIdentifier:
        return
    assert normalize(type_, canonical).canonical == canonical


# Equivalent spellings and checksums.


@EXAMPLES
@given(mobile=MAINLAND_MOBILES, spelling=PHONE_SPELLINGS)
def test_phone_spellings_agree(mobile: str, spelling: str) -> None:
    assert normalize("phone", spelling.format(mobile)).canonical == "+86" + mobile


@EXAMPLES
@given(body=id_card_bodies(max_year=1999).filter(lambda b: not_a_placeholder_id_card(b + ref_iso7064_mod11_2(b))))
def test_legacy_id_card_equals_its_upgrade(body: str) -> None:
    legacy = body[:6] + body[8:]
    assert normalize("id_card", legacy).canonical == body + ref_iso7064_mod11_2(body)


@EXAMPLES
@given(body=id_card_bodies(), wrong=st.sampled_from("0123456789X"))
def test_id_card_with_any_other_check_character_is_rejected(body: str, wrong: str) -> None:
    if wrong == ref_iso7064_mod11_2(body):
        return
    with pytest.raises(InvalidIdentifier, match="bad check character"):
        normalize("id_card", body + wrong)


@EXAMPLES
@given(code=USCC_CODES, position=st.integers(0, 17), replacement=st.sampled_from(USCC_ALPHABET))
def test_uscc_single_substitution_is_rejected(code: str, position: int, replacement: str) -> None:
    mutated = code[:position] + replacement + code[position + 1 :]
    if mutated == code:
        return
    with pytest.raises(InvalidIdentifier, match="bad check character"):
        normalize("uscc", mutated)


@EXAMPLES
@given(card=LUHN_CARDS, separator=SEPARATED)
def test_bank_card_groups_of_four_agree(card: str, separator: str) -> None:
    grouped = separator.join(card[i : i + 4] for i in range(0, len(card), 4))
    assert normalize("bank_card", grouped).canonical == card


@EXAMPLES
@given(address=PUBLIC_IPS)
def test_ip_canonical_is_the_same_address(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address,
) -> None:
    assert ipaddress.ip_address(normalize("ip", str(address)).canonical) == address


@EXAMPLES
@given(vendor_id=VENDOR_UUIDS, upper=st.booleans(), dashes=st.booleans())
def test_uuid_spellings_agree(vendor_id: uuid.UUID, upper: bool, dashes: bool) -> None:
    text = str(vendor_id) if dashes else vendor_id.hex
    assert normalize("device_id", text.upper() if upper else text).canonical == str(vendor_id)


# Injectivity of the OPRF input.

TYPES = st.sampled_from(list(IdentifierType))


@EXAMPLES
@given(
    types=st.lists(TYPES, min_size=2, max_size=2, unique=True),
    canonical=st.text().filter(lambda text: "\x00" not in text),
)
def test_same_canonical_under_two_types_never_collides(types: list[IdentifierType], canonical: str) -> None:
    first, second = (Identifier(type_, canonical) for type_ in types)
    assert first.oprf_input() != second.oprf_input()


@EXAMPLES
@given(type_=TYPES, canonical=st.text())
def test_oprf_input_determines_type_and_canonical(type_: IdentifierType, canonical: str) -> None:
    # A left inverse exists, so (type, canonical) -> oprf_input is injective.
    type_bytes, _, value_bytes = Identifier(type_, canonical).oprf_input().partition(b"\x00")
    assert IdentifierType(type_bytes.decode("ascii")) is type_
    assert value_bytes.decode("utf-8") == canonical


@EXAMPLES
@given(first=st.tuples(TYPES, st.text(max_size=8)), second=st.tuples(TYPES, st.text(max_size=8)))
def test_oprf_inputs_equal_only_for_equal_identifiers(
    first: tuple[IdentifierType, str], second: tuple[IdentifierType, str]
) -> None:
    same_input = Identifier(*first).oprf_input() == Identifier(*second).oprf_input()
    assert same_input == (first == second)


@EXAMPLES
@given(address=st.ip_addresses())
def test_an_address_is_accepted_exactly_when_it_is_public(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address,
) -> None:
    try:
        normalize("ip", str(address))
    except InvalidIdentifier as error:
        assert not is_public(address) and error.reason.startswith("not a public address: ")
    else:
        assert is_public(address)
