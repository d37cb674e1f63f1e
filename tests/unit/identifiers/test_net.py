"""IP addresses (compressed form) and domains (host of a URL, lower-case, punycode)."""

from __future__ import annotations

import pytest

from alliance_psi.identifiers import normalize

IP_VALID = {
    "ipv4": ("192.168.1.1", "192.168.1.1"),
    "ipv4_full_width": ("１９２．１６８．１．１", "192.168.1.1"),
    "ipv6_expanded_upper": ("2001:DB8:0:0:0:0:0:1", "2001:db8::1"),
    "ipv6_compressed": ("2001:db8::1", "2001:db8::1"),
    "ipv4_mapped_dotted": ("::FFFF:1.2.3.4", "::ffff:1.2.3.4"),
    "ipv4_mapped_hex": ("::ffff:102:304", "::ffff:1.2.3.4"),
}

IP_INVALID = {
    "leading_zero_octet": ("01.2.3.4", "not an ip address"),
    "octet_too_large": ("256.1.1.1", "not an ip address"),
    "host_name": ("example.com", "not an ip address"),
    "with_port": ("1.2.3.4:80", "not an ip address"),
    "zone_index": ("fe80::1%eth0", "ipv6 zone index not allowed"),
}

DOMAIN_VALID = {
    "url": ("https://WWW.Example.com:8080/path", "www.example.com"),
    "url_with_user_info_query_fragment": ("http://user:pw@example.com/x?y=1#z", "example.com"),
    "host_port_path": ("example.com:443/login", "example.com"),
    "trailing_dot": ("example.com.", "example.com"),
    "upper_case": ("EXAMPLE.COM", "example.com"),
    "chinese_idn": ("www.例子.中国", "www.xn--fsqu00a.xn--fiqs8s"),
    "ideographic_full_stops": ("例子。中国", "xn--fsqu00a.xn--fiqs8s"),
    "idn_url": ("https://例子.中国/路径", "xn--fsqu00a.xn--fiqs8s"),
    "latin_idn": ("Bücher.example", "xn--bcher-kva.example"),
    "punycode_kept": ("xn--bcher-kva.example", "xn--bcher-kva.example"),
    "digits_and_hyphens": ("360-cn.1234.net", "360-cn.1234.net"),
}

DOMAIN_INVALID = {
    "single_label": ("localhost", "domain needs at least two labels"),
    "ipv4": ("1.2.3.4", "ip address, not a domain"),
    "ipv6_url": ("https://[::1]/", "ip address, not a domain"),
    "leading_hyphen": ("-bad.com", "invalid domain label"),
    "trailing_hyphen": ("bad-.com", "invalid domain label"),
    "underscore": ("a_b.com", "invalid domain label"),
    "empty_label": ("a..com", "invalid domain label"),
    "label_too_long": ("a" * 64 + ".com", "invalid domain label"),
    "too_long": (".".join(["a" * 63] * 4), "domain too long"),
    "bad_punycode": ("xn--zz.com", "invalid internationalized domain label"),
    "email_address": ("user@example.com", "email address, not a domain"),
    "scheme_only": ("http://", "not a host name or url"),
}


@pytest.mark.parametrize(("raw", "canonical"), IP_VALID.values(), ids=IP_VALID.keys())
def test_ip_valid(raw: str, canonical: str) -> None:
    assert normalize("ip", raw).canonical == canonical


@pytest.mark.parametrize(("raw", "reason"), IP_INVALID.values(), ids=IP_INVALID.keys())
def test_ip_invalid(rejects, raw: str, reason: str) -> None:
    rejects("ip", raw, reason)


@pytest.mark.parametrize(("raw", "canonical"), DOMAIN_VALID.values(), ids=DOMAIN_VALID.keys())
def test_domain_valid(raw: str, canonical: str) -> None:
    assert normalize("domain", raw).canonical == canonical


@pytest.mark.parametrize(("raw", "reason"), DOMAIN_INVALID.values(), ids=DOMAIN_INVALID.keys())
def test_domain_invalid(rejects, raw: str, reason: str) -> None:
    rejects("domain", raw, reason)
