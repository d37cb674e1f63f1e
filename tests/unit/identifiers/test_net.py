"""IP addresses (compressed form) and domains (host of a URL, lower-case, punycode)."""

from __future__ import annotations

import pytest

from alliance_psi.identifiers import normalize

IP_VALID = {
    "ipv4": ("114.114.114.114", "114.114.114.114"),
    "ipv4_full_width": ("１１４．１１４．１１４．１１４", "114.114.114.114"),
    "ipv6_expanded_upper": ("2400:3200:0:0:0:0:0:1", "2400:3200::1"),
    "ipv6_compressed": ("2400:3200::1", "2400:3200::1"),
    "ipv4_mapped_dotted": ("::FFFF:1.2.3.4", "::ffff:1.2.3.4"),
    "ipv4_mapped_hex": ("::ffff:102:304", "::ffff:1.2.3.4"),
}

NOT_PUBLIC = "not a public address: "

IP_INVALID = {
    "leading_zero_octet": ("01.2.3.4", "not an ip address"),
    "octet_too_large": ("256.1.1.1", "not an ip address"),
    "host_name": ("daikuan.cn", "not an ip address"),
    "with_port": ("1.2.3.4:80", "not an ip address"),
    "zone_index": ("fe80::1%eth0", "ipv6 zone index not allowed"),
    # Not globally routable: shared by unrelated people, so false leads between members.
    "unspecified": ("0.0.0.0", NOT_PUBLIC + "unspecified"),
    "unspecified_v6": ("::", NOT_PUBLIC + "unspecified"),
    "loopback": ("127.0.0.1", NOT_PUBLIC + "loopback"),
    "loopback_v6": ("::1", NOT_PUBLIC + "loopback"),
    "rfc1918_10": ("10.0.0.1", NOT_PUBLIC + "private or special-purpose"),
    "rfc1918_172": ("172.16.5.4", NOT_PUBLIC + "private or special-purpose"),
    "rfc1918_192": ("192.168.1.1", NOT_PUBLIC + "private or special-purpose"),
    "unique_local_v6": ("fd12:3456::1", NOT_PUBLIC + "private or special-purpose"),
    "link_local": ("169.254.1.1", NOT_PUBLIC + "link-local"),
    "link_local_v6": ("fe80::1", NOT_PUBLIC + "link-local"),
    "cgnat": ("100.64.0.1", NOT_PUBLIC + "shared (carrier-grade NAT)"),
    "multicast": ("224.0.0.251", NOT_PUBLIC + "multicast"),
    "multicast_global_scope": ("233.252.0.1", NOT_PUBLIC + "multicast"),
    "multicast_v6": ("ff0e::1", NOT_PUBLIC + "multicast"),
    "reserved": ("240.0.0.1", NOT_PUBLIC + "reserved"),
    "broadcast": ("255.255.255.255", NOT_PUBLIC + "reserved"),
    "documentation": ("203.0.113.7", NOT_PUBLIC + "private or special-purpose"),
    "documentation_v6": ("2001:db8::1", NOT_PUBLIC + "private or special-purpose"),
    "mapped_private": ("::ffff:192.168.1.1", NOT_PUBLIC + "private or special-purpose"),
}

DOMAIN_VALID = {
    "url": ("https://WWW.Daikuan-Zhongjie.com:8080/path", "www.daikuan-zhongjie.com"),
    "url_with_user_info_query_fragment": ("http://user:pw@daikuan.cn/x?y=1#z", "daikuan.cn"),
    "host_port_path": ("daikuan.cn:443/login", "daikuan.cn"),
    "trailing_dot": ("daikuan.cn.", "daikuan.cn"),
    "upper_case": ("DAIKUAN.CN", "daikuan.cn"),
    "chinese_idn": ("www.例子.中国", "www.xn--fsqu00a.xn--fiqs8s"),
    "ideographic_full_stops": ("例子。中国", "xn--fsqu00a.xn--fiqs8s"),
    "idn_url": ("https://例子.中国/路径", "xn--fsqu00a.xn--fiqs8s"),
    "latin_idn": ("Bücher.de", "xn--bcher-kva.de"),
    "punycode_kept": ("xn--bcher-kva.de", "xn--bcher-kva.de"),
    "onion_service": ("abcdefghijklmnop.onion", "abcdefghijklmnop.onion"),
    "example_elsewhere": ("example.cn", "example.cn"),
    "test_as_a_label": ("test.com", "test.com"),
    "digits_and_hyphens": ("360-cn.1234.net", "360-cn.1234.net"),
}

RESERVED = "reserved name {!r}: it belongs to nobody"

DOMAIN_INVALID = {
    "single_label": ("daikuan", "domain needs at least two labels"),
    # Reserved names (RFC 2606, 6761, 6762, 8375; ICANN's "internal"), and anything under them.
    "example_com": ("example.com", RESERVED.format("example.com")),
    "under_example_org_url": ("https://WWW.Example.ORG/login", RESERVED.format("example.org")),
    "example_net": ("example.net.", RESERVED.format("example.net")),
    "example_tld": ("shop.example", RESERVED.format("example")),
    "test_tld": ("fraud.test", RESERVED.format("test")),
    "invalid_tld": ("a.b.invalid", RESERVED.format("invalid")),
    "localhost": ("localhost", RESERVED.format("localhost")),
    "under_localhost": ("app.localhost:8080", RESERVED.format("localhost")),
    "mdns_local": ("printer.local", RESERVED.format("local")),
    "home_arpa": ("router.home.arpa", RESERVED.format("home.arpa")),
    "internal_tld": ("git.corp.internal", RESERVED.format("internal")),
    "ipv4": ("1.2.3.4", "ip address, not a domain"),
    "ipv6_url": ("https://[::1]/", "ip address, not a domain"),
    "leading_hyphen": ("-bad.com", "invalid domain label"),
    "trailing_hyphen": ("bad-.com", "invalid domain label"),
    "underscore": ("a_b.com", "invalid domain label"),
    "empty_label": ("a..com", "invalid domain label"),
    "label_too_long": ("a" * 64 + ".com", "invalid domain label"),
    "too_long": (".".join(["a" * 63] * 4), "domain too long"),
    "bad_punycode": ("xn--zz.com", "invalid internationalized domain label"),
    "email_address": ("user@daikuan.cn", "email address, not a domain"),
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
