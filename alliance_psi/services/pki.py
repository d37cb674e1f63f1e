"""The alliance PKI: one CA issues every party's certificate, and the certificate is the identity.

A certificate names its holder in one SAN URI, ``urn:alliance-psi:<role>:<name>`` (for example
``urn:alliance-psi:member:bank-a``). Servers read the identity from the verified peer certificate
(``services.interceptors``), never from a request. The CA signs a CRL; servers refuse the serials
it lists.

Certificates are for clients only or for servers too:

=============================  =======================  =========================================
role                           extended key usage       DNS SANs
=============================  =======================  =========================================
member, admin                  clientAuth               none (``--host`` is refused)
coordinator, custodian         serverAuth, clientAuth   ``<name>.<role>.alliance-psi.internal``,
                                                        then any ``--host`` names and IPs
=============================  =======================  =========================================

The first DNS SAN of a server is its *identity name* (``identity_dns_name``). Alliance clients dial
any address but check the server's certificate against that name (``services.tls``), so the TLS
handshake itself refuses a server that is not the configured party. ``.internal`` is reserved by
ICANN for private use and is never delegated in the public DNS; the name is never resolved, and no
``--host`` may fall under ``alliance-psi.internal``, so only the identity puts a name there. A
server's name is therefore one lowercase DNS label (``validate_server_name``): names that differ
only in case would otherwise share one identity name.

Keys are ECDSA P-256. Private keys are written with mode 0600 and never printed (their ``repr``
hides them). This module imports no grpc: it is plain X.509 with ``cryptography``. The files
(``write_ca``, ``load_ca`` and the rest) live in ``services.pki_files`` and are re-exported here.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from alliance_psi.errors import AlliancePsiError, ConfigurationError, NotAuthenticated
from alliance_psi.protocol.model import Identity, Role
from alliance_psi.services.pki_files import (
    CA_CERT_FILE,
    CA_KEY_FILE,
    CRL_FILE,
    load_ca,
    write_ca,
    write_crl,
    write_issued,
)

__all__ = [
    "CA_CERT_FILE", "CA_KEY_FILE", "CRL_FILE", "IDENTITY_DNS_SUFFIX", "IDENTITY_URI_PREFIX", "SERVER_ROLES",
    "CertificateAuthority", "IssuedCertificate", "crl_number", "identity_dns_name", "identity_from_pem", "identity_in", "init_ca",
    "issue", "issue_for_key", "load_ca", "load_crl_serials", "revoke", "serial_issued_by", "serial_of", "spki_der",
    "spki_sha256", "validate_name", "validate_server_name", "write_ca", "write_crl", "write_issued",
]  # fmt: skip

IDENTITY_URI_PREFIX = "urn:alliance-psi:"
IDENTITY_DNS_SUFFIX = "alliance-psi.internal"
# The roles that serve: their certificates carry serverAuth and an identity name.
SERVER_ROLES = frozenset({Role.COORDINATOR, Role.CUSTODIAN})

_NAME_RULE = r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}"
_NAME = re.compile(_NAME_RULE)
_DNS_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_DNS_NAME = re.compile(rf"(?=.{{1,253}}\Z){_DNS_LABEL}(\.{_DNS_LABEL})*")
_SERVER_NAME_RULE = r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
_SERVER_NAME = re.compile(_SERVER_NAME_RULE)
# Certificates start slightly in the past so a peer whose clock is a little behind accepts them.
_CLOCK_SKEW = dt.timedelta(minutes=5)
_CRL_VALIDITY = dt.timedelta(days=365)
_ROLES = frozenset(role.value for role in Role)


@dataclass(frozen=True, slots=True)
class CertificateAuthority:
    """The alliance CA: its certificate and its private key (PEM). DO NOT SHARE ``key_pem``."""

    cert_pem: bytes
    key_pem: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class IssuedCertificate:
    """A party's certificate and private key (PEM), and the certificate's serial for revocation."""

    cert_pem: bytes
    key_pem: bytes = field(repr=False)
    serial: int


def validate_name(name: str) -> str:
    """Return ``name`` if it is a valid party name (also a safe file name), else raise ConfigurationError."""
    if not isinstance(name, str) or _NAME.fullmatch(name) is None:
        raise ConfigurationError(
            f"invalid name {name!r}: must match {_NAME_RULE} (a letter or digit, then up to 62 "
            "letters, digits, '.', '_' or '-')"
        )
    return name


def validate_server_name(role: Role, name: str) -> str:
    """Return ``name`` if a coordinator or custodian may carry it, else raise ConfigurationError.

    A server's name is part of its identity name, so it must be one lowercase DNS label.
    """
    if not isinstance(name, str) or _SERVER_NAME.fullmatch(name) is None:
        raise ConfigurationError(
            f"invalid {Role(role).value} name {name!r}: a server's name is also its TLS name, so it must match "
            f"{_SERVER_NAME_RULE} (lowercase letters, digits and '-', not first or last, at most 63)"
        )
    return name


def identity_dns_name(role: Role, name: str) -> str:
    """The name a server's certificate carries for ``role``/``name`` and clients verify it by.

    ``identity_dns_name(Role.CUSTODIAN, "custodian-1") == "custodian-1.custodian.alliance-psi.internal"``.

    Raises:
        ConfigurationError: ``role`` does not serve, or ``name`` is not a valid server name.
    """
    if role not in SERVER_ROLES:
        raise ConfigurationError(f"role {Role(role).value} does not serve: only coordinators and custodians do")
    return f"{validate_server_name(role, name)}.{Role(role).value}.{IDENTITY_DNS_SUFFIX}"


def init_ca(alliance_name: str, *, valid_days: int = 3650) -> CertificateAuthority:
    """Create a fresh alliance CA (self-signed, may sign leaf certificates only: pathlen 0).

    Raises:
        ConfigurationError: ``alliance_name`` is empty or ``valid_days`` is not positive.
    """
    if not alliance_name.strip():
        raise ConfigurationError("alliance name must not be empty")
    key = ec.generate_private_key(ec.SECP256R1())
    subject = _common_name(f"{alliance_name} alliance CA")
    cert = (
        _builder(subject, subject, key.public_key(), x509.random_serial_number(), _validity(None, valid_days), ca=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return CertificateAuthority(cert_pem=_cert_pem(cert), key_pem=_key_pem(key))


def issue(
    ca: CertificateAuthority,
    *,
    role: Role,
    name: str,
    hosts: Sequence[str] = (),
    valid_days: int = 365,
    not_before: dt.datetime | None = None,
) -> IssuedCertificate:
    """Make a key and issue a certificate for it naming ``role``/``name`` (``issue_for_key``).

    The CA holder then holds the key too: for a party whose key others pin (a member, at each
    server's enrolment list) prefer ``services.pki_requests``, where the key never leaves its owner.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    cert_pem, serial = issue_for_key(
        ca, key.public_key(), role=role, name=name, hosts=hosts, valid_days=valid_days, not_before=not_before
    )
    return IssuedCertificate(cert_pem=cert_pem, key_pem=_key_pem(key), serial=serial)


def issue_for_key(
    ca: CertificateAuthority,
    public_key: ec.EllipticCurvePublicKey,
    *,
    role: Role,
    name: str,
    hosts: Sequence[str] = (),
    valid_days: int = 365,
    not_before: dt.datetime | None = None,
) -> tuple[bytes, int]:
    """Issue a certificate over ``public_key`` naming ``role``/``name`` (SAN URI); return (PEM, serial).

    Coordinator and custodian certificates serve and are clients too (serverAuth and clientAuth):
    they carry the identity name clients verify (``identity_dns_name``) and then ``hosts`` as
    DNS/IP SANs, for tools other than alliance clients. Member and admin certificates are for
    clients only (clientAuth): a server presenting one is refused by every client, and ``hosts``
    must be empty. ``not_before`` (default: now) and ``valid_days`` let a test make an expired
    certificate.

    Raises:
        ConfigurationError: a bad name, role, host or validity, or hosts for a client-only role.
    """
    if role not in _ROLES:
        raise ConfigurationError(f"unknown role {role!r}: must be one of {', '.join(sorted(_ROLES))}")
    role = Role(role)
    validate_name(name)
    sans: list[x509.GeneralName] = [x509.UniformResourceIdentifier(f"{IDENTITY_URI_PREFIX}{role.value}:{name}")]
    if role in SERVER_ROLES:
        sans += [x509.DNSName(identity_dns_name(role, name)), *(_host_name(host) for host in hosts)]
        usages = [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    elif hosts:
        raise ConfigurationError(
            f"{role.value} certificates are for clients only: they serve no host, so give no hosts"
        )
    else:
        usages = [ExtendedKeyUsageOID.CLIENT_AUTH]
    ca_cert, ca_key = _load_ca_objects(ca)
    serial = x509.random_serial_number()
    cert = (
        _builder(_common_name(name), ca_cert.subject, public_key, serial, _validity(not_before, valid_days), ca=False)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return _cert_pem(cert), serial


def identity_from_pem(cert_pem: bytes) -> Identity:
    """Read the identity from a certificate's one ``urn:alliance-psi:<role>:<name>`` SAN URI.

    This parses only; it does not verify the chain. Call it on a certificate the TLS handshake has
    already verified against the alliance CA.

    Raises:
        NotAuthenticated: not a certificate, no identity URI, more than one, or a bad role or name.
    """
    cert = _parse_cert(cert_pem, error=NotAuthenticated)
    return identity_in(cert.extensions, what="certificate", error=NotAuthenticated)


def identity_in(extensions: x509.Extensions, *, what: str, error: type[AlliancePsiError]) -> Identity:
    """The one ``urn:alliance-psi:<role>:<name>`` SAN URI of a certificate's (or request's) extensions.

    Raises:
        error: no identity URI, more than one, or a bad role or name; the message starts with ``what``.
    """
    try:
        uris = extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
            x509.UniformResourceIdentifier
        )
    except x509.ExtensionNotFound:
        uris = []
    ours = [uri for uri in uris if uri.startswith(IDENTITY_URI_PREFIX)]
    if len(ours) != 1:
        raise error(f"{what} must carry exactly one {IDENTITY_URI_PREFIX} identity, found {len(ours)}")
    role, _, name = ours[0].removeprefix(IDENTITY_URI_PREFIX).partition(":")
    if role not in _ROLES or _NAME.fullmatch(name) is None:
        raise error(f"{what} identity is malformed or names an unknown role")
    return Identity(name=name, role=Role(role))


def spki_der(cert_pem: bytes) -> bytes:
    """The certificate's DER SubjectPublicKeyInfo. Raises NotAuthenticated if not a certificate."""
    cert = _parse_cert(cert_pem, error=NotAuthenticated)
    return cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def spki_sha256(cert_pem: bytes) -> bytes:
    """SHA-256 of the certificate's DER SubjectPublicKeyInfo: the key pin an enrolment list keeps.

    Raises NotAuthenticated if not a certificate.
    """
    return hashlib.sha256(spki_der(cert_pem)).digest()


def serial_of(cert_pem: bytes) -> int:
    """The serial number of a certificate (what a CRL lists). Raises NotAuthenticated if not a certificate."""
    return _parse_cert(cert_pem, error=NotAuthenticated).serial_number


def serial_issued_by(cert_pem: bytes, ca_cert_pem: bytes) -> int:
    """The serial of a certificate that ``ca_cert_pem`` signed; ConfigurationError if another CA did."""
    cert = _parse_cert(cert_pem, error=ConfigurationError)
    try:
        cert.verify_directly_issued_by(_parse_cert(ca_cert_pem, error=ConfigurationError))
    except (ValueError, TypeError, InvalidSignature):
        raise ConfigurationError(f"certificate serial {cert.serial_number:#x} was not issued by this CA") from None
    return cert.serial_number


def revoke(ca: CertificateAuthority, serials: Iterable[int], *, existing_crl_pem: bytes | None = None) -> bytes:
    """Return a CRL (PEM) signed by ``ca`` that lists ``serials`` and every entry of ``existing_crl_pem``.

    The CRL carries the extensions RFC 5280 (5.2) requires of a CA's CRLs: the authority key
    identifier and a CRL number one above the existing CRL's (1 for the first), so whoever holds
    two of them (a relying party, an auditor) tells the later from the earlier.

    Raises:
        ConfigurationError: the existing CRL is not a CRL or not signed by ``ca``.
    """
    ca_cert, ca_key = _load_ca_objects(ca)
    now = dt.datetime.now(dt.UTC)
    entries: dict[int, x509.RevokedCertificate] = {}
    number = 1
    if existing_crl_pem is not None:
        existing = _verified_crl(existing_crl_pem, ca_cert)
        entries = {entry.serial_number: entry for entry in existing}
        number = crl_number(existing) + 1
    for serial in serials:
        if serial not in entries:
            entries[serial] = x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(now).build()
    builder = x509.CertificateRevocationListBuilder().issuer_name(ca_cert.subject)
    builder = builder.last_update(now).next_update(now + _CRL_VALIDITY)
    builder = builder.add_extension(x509.CRLNumber(number), critical=False).add_extension(
        x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
    )
    for entry in sorted(entries.values(), key=lambda e: e.serial_number):
        builder = builder.add_revoked_certificate(entry)
    return builder.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def load_crl_serials(crl_pem: bytes, ca_cert_pem: bytes) -> frozenset[int]:
    """The serials a CRL revokes, after checking that the alliance CA signed it.

    Raises:
        ConfigurationError: not a CRL, or not signed by the CA (a forged CRL could un-revoke a peer).
    """
    ca_cert = _parse_cert(ca_cert_pem, error=ConfigurationError)
    return frozenset(entry.serial_number for entry in _verified_crl(crl_pem, ca_cert))


# Helpers --------------------------------------------------------------------------------------


def _validity(not_before: dt.datetime | None, valid_days: int) -> tuple[dt.datetime, dt.datetime]:
    if valid_days < 1:
        raise ConfigurationError(f"validity must be at least 1 day, got {valid_days}")
    start = not_before if not_before is not None else dt.datetime.now(dt.UTC) - _CLOCK_SKEW
    return start, start + dt.timedelta(days=valid_days)


def _common_name(name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])


def _builder(
    subject: x509.Name,
    issuer: x509.Name,
    public_key: ec.EllipticCurvePublicKey,
    serial: int,
    validity: tuple[dt.datetime, dt.datetime],
    *,
    ca: bool,
) -> x509.CertificateBuilder:
    """What CA and leaf certificates share: names, key, validity, and the CA/leaf constraints."""
    usage = x509.KeyUsage(
        digital_signature=not ca,
        key_cert_sign=ca,
        crl_sign=ca,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        encipher_only=False,
        decipher_only=False,
    )
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(serial)
        .not_valid_before(validity[0])
        .not_valid_after(validity[1])
        .add_extension(x509.BasicConstraints(ca=ca, path_length=0 if ca else None), critical=True)
        .add_extension(usage, critical=True)
    )


def _host_name(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        pass
    if _DNS_NAME.fullmatch(host) is None:
        raise ConfigurationError(f"host {host!r} is neither an IP address nor a DNS name")
    host = host.lower()
    if host == IDENTITY_DNS_SUFFIX or host.endswith("." + IDENTITY_DNS_SUFFIX):
        raise ConfigurationError(f"host {host!r} is under {IDENTITY_DNS_SUFFIX}, which only identity names may use")
    return x509.DNSName(host)


def _parse_cert(pem: bytes, *, error: type[Exception]) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(pem)
    except (ValueError, TypeError):
        raise error("not a PEM X.509 certificate") from None


def _load_ca_objects(ca: CertificateAuthority) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    cert = _parse_cert(ca.cert_pem, error=ConfigurationError)
    try:
        key = serialization.load_pem_private_key(ca.key_pem, password=None)
    except (ValueError, TypeError):
        raise ConfigurationError("CA key is not an unencrypted PEM private key") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.public_key() != cert.public_key():
        raise ConfigurationError("CA key does not match the CA certificate")
    return cert, key


def crl_number(crl: x509.CertificateRevocationList) -> int:
    """The CRL's number (RFC 5280 5.2.3), or 0 for a CRL written before CRLs were numbered."""
    try:
        return crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    except x509.ExtensionNotFound:
        return 0


def _verified_crl(crl_pem: bytes, ca_cert: x509.Certificate) -> x509.CertificateRevocationList:
    try:
        crl = x509.load_pem_x509_crl(crl_pem)
    except ValueError:
        raise ConfigurationError("not a PEM certificate revocation list") from None
    public_key = ca_cert.public_key()
    signed = isinstance(public_key, ec.EllipticCurvePublicKey) and crl.is_signature_valid(public_key)
    if crl.issuer != ca_cert.subject or not signed:
        raise ConfigurationError("CRL is not signed by the alliance CA")
    return crl


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    encoding, private_format = serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8
    return key.private_bytes(encoding, private_format, serialization.NoEncryption())
