"""IP addresses and domain names.

Contract of ``normalize_ip(raw)``: an IPv4 or IPv6 address as Python's ``ipaddress`` reads it
(so octets with leading zeros are rejected), in compressed lower-case form. IPv4-mapped IPv6
addresses keep their mapped form and are written ``::ffff:1.2.3.4`` on every Python version.
IPv6 zone indexes (``fe80::1%eth0``) are rejected: they only mean something on one host. So is
every address that is not globally routable, by the ``ipaddress`` module's reading of the IANA
special-purpose registries (``is_global``, and ``is_multicast``, which ``is_global`` lets through):
unspecified (``0.0.0.0``, ``::``), loopback, private (RFC 1918, ``fc00::/7``), link-local, shared
(carrier-grade NAT, ``100.64.0.0/10``), multicast, reserved, documentation and benchmarking
ranges. Thousands of unrelated people are behind ``192.168.1.1`` or ``10.0.0.1``; as a lead such
an address only makes false matches. An IPv4-mapped address is judged by its IPv4 address.

Contract of ``normalize_domain(raw)``: a bare host name or a URL
(``https://WWW.Example.com:8080/path`` gives ``www.example.com``). The scheme, user info, port,
path, query and a trailing dot are dropped; labels are lower-cased; non-ASCII labels are
encoded to punycode (IDNA 2008 with UTS 46 mapping, through the ``idna`` package). The result
must have at least two labels, each 1-63 characters of ``[a-z0-9-]`` not starting or ending with
``-``, at most 253 characters in all, and must not be an IP address nor a reserved name
(``example.com``, ``*.test``, ``*.localhost``, …: ``placeholders.RESERVED_DOMAINS``).
"""

from __future__ import annotations

import ipaddress
import re
import urllib.parse

import idna

from alliance_psi.identifiers._text import clean, invalid
from alliance_psi.identifiers.placeholders import reserved_domain, reserved_reason
from alliance_psi.identifiers.types import IdentifierType

__all__ = ["normalize_domain", "normalize_ip"]

_MAX_DOMAIN_LENGTH = 253
_ASCII_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?", re.ASCII)
_PUNYCODE_PREFIX = "xn--"
# RFC 3490 section 3.1: these full stops separate labels like ".".
_LABEL_DOTS = str.maketrans({"\u3002": ".", "\uff0e": ".", "\uff61": "."})
_SHARED_ADDRESS_SPACE = ipaddress.IPv4Network("100.64.0.0/10")  # RFC 6598, carrier-grade NAT.


def normalize_ip(raw: str) -> str:
    """Return the compressed form of an IP address.

    Raises ``InvalidIdentifier`` ("not an ip address", "ipv6 zone index not allowed", "not a
    public address: loopback" and the like, or a shared pre-cleaning reason).
    """
    type_ = IdentifierType.IP
    text = clean(raw, type_)
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        raise invalid(type_, "not an ip address", raw) from None
    mapped = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
    if isinstance(address, ipaddress.IPv6Address) and address.scope_id is not None:
        raise invalid(type_, "ipv6 zone index not allowed", raw)
    if (kind := _not_public(mapped or address)) is not None:
        raise invalid(type_, f"not a public address: {kind}", raw)
    return f"::ffff:{mapped}" if mapped is not None else str(address)


def _not_public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """Return what kind of non-public address ``address`` is, or None for a globally routable one."""
    if address.is_global and not address.is_multicast:
        return None
    kinds = (
        (address.is_unspecified, "unspecified"),
        (address.is_loopback, "loopback"),
        (address.is_link_local, "link-local"),
        (address.is_multicast, "multicast"),
        (address in _SHARED_ADDRESS_SPACE, "shared (carrier-grade NAT)"),
        (address.is_reserved, "reserved"),
    )
    return next((kind for matches, kind in kinds if matches), "private or special-purpose")


def normalize_domain(raw: str) -> str:
    """Return the lower-case ASCII host name of a domain or URL.

    Raises ``InvalidIdentifier`` ("not a host name or url", "ip address, not a domain",
    "reserved name …", "domain needs at least two labels", "invalid domain label", "domain too
    long", or a shared pre-cleaning reason).
    """
    type_ = IdentifierType.DOMAIN
    host = _host(clean(raw, type_).translate(_LABEL_DOTS), raw).removesuffix(".")
    if _is_ip_address(host):
        raise invalid(type_, "ip address, not a domain", raw)
    labels = [_ascii_label(label, raw) for label in host.split(".")]
    domain = ".".join(labels)
    if (name := reserved_domain(domain)) is not None:
        raise invalid(type_, reserved_reason(name), raw)
    if len(labels) < 2:
        raise invalid(type_, "domain needs at least two labels", raw)
    if len(domain) > _MAX_DOMAIN_LENGTH:
        raise invalid(type_, "domain too long", raw)
    return domain


def _host(text: str, raw: str) -> str:
    # A bare host is read as a network-path reference, so "host:port/path" works too; user
    # info is accepted only in a URL with a scheme, so an email address is not taken for a host.
    if "://" not in text and "@" in text:
        raise invalid(IdentifierType.DOMAIN, "email address, not a domain", raw)
    try:
        host = urllib.parse.urlsplit(text if "://" in text else "//" + text).hostname
    except ValueError:
        host = None
    if not host:
        raise invalid(IdentifierType.DOMAIN, "not a host name or url", raw)
    return host


def _is_ip_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _ascii_label(label: str, raw: str) -> str:
    try:
        if not label.isascii():
            label = idna.encode(label, uts46=True).decode("ascii")
        elif label.startswith(_PUNYCODE_PREFIX):
            idna.decode(label)
    except (idna.IDNAError, UnicodeError):
        reason = "invalid internationalized domain label"
        raise invalid(IdentifierType.DOMAIN, reason, raw) from None
    if not _ASCII_LABEL.fullmatch(label):
        raise invalid(IdentifierType.DOMAIN, "invalid domain label", raw)
    return label
