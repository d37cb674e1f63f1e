"""What a party checks about a certificate before relying on it, with the fix for each problem.

Three moments, three functions:

- ``load_tls`` (``check_own_certificate``): a party loading its own TLS files learns at once that
  its key is not its certificate's, that the certificate is of another CA than its ``ca.pem``,
  expired or not yet valid, or is another party's, instead of failing a handshake later. (It is
  not ``TlsConfig.load``: the base layer ``config`` imports no X.509 code.)
- ``check_server_certificate``: a server refuses to start with a certificate no client accepts
  (one for clients only, or one without its identity name);
- ``server_certificate_problem``: after a failed handshake, a client explains what is wrong with
  the certificate the server presented (``services.tls_diagnosis``).

None of these decides whom to trust: the TLS handshake does that (BoringSSL inside gRPC, against
the alliance CA and the server's identity name, see ``services.tls``). These only turn its refusals
and a party's own mistakes into sentences that name the cause and the fix.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID

from alliance_psi.config import TlsConfig, TlsMaterial
from alliance_psi.defaults import COORDINATOR_NAME
from alliance_psi.errors import ConfigurationError, NotAuthenticated
from alliance_psi.protocol.model import Identity, Role
from alliance_psi.services.anchors import TrustAnchor, issued_by
from alliance_psi.services.pki import SERVER_ROLES, _parse_cert, identity_dns_name, identity_from_pem

__all__ = [
    "MaterialLabels",
    "check_own_certificate",
    "load_tls",
    "check_server_certificate",
    "party_label",
    "server_certificate_problem",
]


@dataclass(frozen=True, slots=True)
class MaterialLabels:
    """How messages name the three files of a party's TLS material (``TlsConfig`` gives the paths)."""

    ca_cert: str = "the CA certificate"
    cert: str = "the certificate"
    key: str = "the key"
    own_ca: str = "the custodian's own CA certificate"


def load_tls(config: TlsConfig, *, role: Role | None = None, name: str | None = None) -> TlsMaterial:
    """Read a party's TLS files (``TlsConfig.load``) and check them (``check_own_certificate``).

    What every command that connects or serves uses: a mistake fails at start-up, naming the
    option, the path, the cause and the fix, not at the first handshake.

    Raises:
        ConfigurationError: as ``TlsConfig.load`` and ``check_own_certificate``.
    """
    material = config.load()
    labels = MaterialLabels(
        ca_cert=str(config.ca_cert), cert=str(config.cert), key=str(config.key), own_ca=str(config.own_ca)
    )
    check_own_certificate(material, role=role, name=name, labels=labels)
    return material


def check_own_certificate(
    material: TlsMaterial,
    *,
    role: Role | None = None,
    name: str | None = None,
    labels: MaterialLabels = MaterialLabels(),
    now: dt.datetime | None = None,
) -> Identity:
    """Check a party's own certificate and key before any connection; return its identity.

    ``role`` and ``name``, when given, are what the command needs (a member node needs its own
    member certificate; ``custodian serve --name custodian-1`` needs custodian-1's). With
    ``material.own_ca`` (an independent custodian) the certificate must come from that CA instead
    of the alliance CA, which then only says whom the server trusts as clients.

    Raises:
        ConfigurationError: the first problem, naming the option, the file, the cause and the fix:
            unparsable files; ``own_ca`` that is the alliance CA itself; a key that is not the
            certificate's; a certificate the CA in ``ca_cert`` (or ``own_ca``) did not issue; one
            expired or not yet valid; no alliance identity; another role or name than the command
            needs.
    """
    ca_cert = _own_cert(material.ca_cert, "ca_cert", labels.ca_cert)
    issuer, issuer_option, issuer_label = ca_cert, "ca_cert", labels.ca_cert
    if material.own_ca is not None:
        issuer_option, issuer_label = "own_ca", labels.own_ca
        issuer = _own_cert(material.own_ca, issuer_option, issuer_label)
        if issuer == ca_cert:
            raise ConfigurationError(
                f"TLS option 'own_ca': {labels.own_ca} is the alliance CA ({labels.ca_cert}) itself: give this "
                "custodian's own CA (its `alliance-psi pki init-ca`), or leave own_ca out"
            )
    cert = _own_cert(material.cert, "cert", labels.cert)
    try:
        key = serialization.load_pem_private_key(material.key, password=None)
    except (ValueError, TypeError):
        raise ConfigurationError(f"TLS option 'key': {labels.key} is not an unencrypted PEM private key") from None
    if _spki(key.public_key()) != _spki(cert.public_key()):
        raise ConfigurationError(
            f"TLS option 'key': {labels.key} is not the private key of {labels.cert} (their public keys differ): "
            "give the .key file that alliance-psi pki issue wrote with that certificate"
        )
    if not issued_by(cert, issuer):
        fix = (
            "give this custodian's own ca.pem, or a certificate that CA issued"
            if issuer_option == "own_ca"
            else "give the alliance's ca.pem, or a certificate its operator issued"
        )
        if issuer_option == "ca_cert" and role is Role.CUSTODIAN:
            fix += " (a custodian serving a certificate of its own CA names that CA with --own-ca)"
        raise ConfigurationError(
            f"TLS option 'cert': {labels.cert} was not issued by the CA in {issuer_label} "
            f"(its issuer is {cert.issuer.rfc4514_string()!r}): {fix}"
        )
    now = now or dt.datetime.now(dt.UTC)
    if now < cert.not_valid_before_utc:
        raise ConfigurationError(
            f"TLS option 'cert': {labels.cert} is not valid before {_shown(cert.not_valid_before_utc)}: "
            "check this machine's clock"
        )
    if now > cert.not_valid_after_utc:
        raise ConfigurationError(
            f"TLS option 'cert': {labels.cert} expired on {_shown(cert.not_valid_after_utc)}: "
            "ask the alliance operator for a new one (alliance-psi pki issue)"
        )
    try:
        identity = identity_from_pem(material.cert)
    except NotAuthenticated as exc:
        raise ConfigurationError(
            f"TLS option 'cert': {labels.cert}: {exc}: use a certificate of alliance-psi pki issue"
        ) from None
    if (role is not None and identity.role is not role) or (name is not None and identity.name != name):
        wanted_role = role or identity.role
        needed = (
            f"the certificate of {party_label(Identity(name=name, role=wanted_role))}"
            if name is not None
            else f"{'an' if wanted_role is Role.ADMIN else 'a'} {wanted_role.value} certificate"
        )
        raise ConfigurationError(
            f"TLS option 'cert': {labels.cert} is the certificate of {party_label(identity)}; this command needs {needed}"
        )
    return identity


def check_server_certificate(cert_pem: bytes) -> Identity:
    """Check that a server may serve with ``cert_pem``: clients would refuse it otherwise.

    Raises:
        ConfigurationError: not a coordinator or custodian certificate, no serverAuth usage, or no
            identity name (a certificate issued before identity names existed).
    """
    cert = _parse_cert(cert_pem, error=ConfigurationError)
    try:
        identity = identity_from_pem(cert_pem)
    except NotAuthenticated as exc:
        raise ConfigurationError(f"this server's certificate cannot serve: {exc}") from None
    reissue = f"alliance-psi pki issue --role {identity.role.value} --name {identity.name} --force"
    if identity.role not in SERVER_ROLES:
        raise ConfigurationError(
            f"this server's certificate is of {party_label(identity)}, which is for clients only: "
            "serve with a coordinator or custodian certificate"
        )
    if not _serves(cert):
        raise ConfigurationError(
            f"this server's certificate ({party_label(identity)}) lacks the serverAuth usage, so every client would "
            f"refuse it: reissue it with {reissue}"
        )
    expected = identity_dns_name(identity.role, identity.name)
    if expected not in _dns_names(cert):
        raise ConfigurationError(
            f"this server's certificate ({party_label(identity)}) lacks its identity name {expected}, which clients "
            f"verify (it was issued by an older alliance-psi): reissue it with {reissue}"
        )
    return identity


def server_certificate_problem(
    cert_pem: bytes,
    *,
    ca_cert_pem: bytes,
    expected: Identity,
    anchor: TrustAnchor | None = None,
    now: dt.datetime | None = None,
) -> str | None:
    """Why a client expecting ``expected`` refuses the server certificate ``cert_pem``, or None.

    With ``anchor`` (an independent custodian's own CA) the certificate must come from that CA; one
    from the alliance CA is named as what it may be, an impostor made by the CA holder. The sentence
    starts with "it" (the server), names the cause and the fix. The identity of a certificate that
    the trusted CA did not issue is never shown: anyone can write one.
    """
    try:
        cert = _parse_cert(cert_pem, error=ConfigurationError)
        ca_cert = _parse_cert(ca_cert_pem, error=ConfigurationError)
    except ConfigurationError:
        return "it presents no readable certificate: check the address"
    if anchor is not None:
        if not issued_by(cert, _parse_cert(anchor.cert_pem, error=ConfigurationError)):
            return _not_from_anchor(cert, ca_cert, anchor, expected)
    elif not issued_by(cert, ca_cert):
        own = (
            f"; if {party_label(expected)} serves a certificate of its own CA, pin that CA for it (ca=FILE)"
            if expected.role is Role.CUSTODIAN
            else ""
        )
        return (
            f"its certificate is not from the alliance CA in our ca.pem (its issuer is "
            f"{cert.issuer.rfc4514_string()!r}): check the address, and that both sides use the alliance's ca.pem" + own
        )
    try:
        identity = identity_from_pem(cert_pem)
    except NotAuthenticated:
        return "its certificate carries no alliance identity: check the address"
    if identity != expected:
        return (
            f"it is {party_label(identity)}, not {party_label(expected)}: check the address configured for "
            f"{party_label(expected)} (NAME@HOST:PORT)"
        )
    now = now or dt.datetime.now(dt.UTC)
    if now < cert.not_valid_before_utc:
        return f"its certificate is not valid before {_shown(cert.not_valid_before_utc)}: check both machines' clocks"
    if now > cert.not_valid_after_utc:
        return f"its certificate expired on {_shown(cert.not_valid_after_utc)}: its operator must have it reissued"
    reissue = f"alliance-psi pki issue --role {identity.role.value} --name {identity.name} --force"
    if not _serves(cert):
        return f"its certificate is for clients only (no serverAuth usage): its operator must reissue it with {reissue}"
    if expected.role in SERVER_ROLES and identity_dns_name(expected.role, expected.name) not in _dns_names(cert):
        return (
            f"its certificate lacks the identity name {identity_dns_name(expected.role, expected.name)}, which "
            f"clients verify (it was issued by an older alliance-psi): its operator must reissue it with {reissue}"
        )
    return None


def _not_from_anchor(cert: x509.Certificate, ca_cert: x509.Certificate, anchor: TrustAnchor, expected: Identity) -> str:
    """Why a certificate is refused that the CA pinned for ``expected`` did not issue."""
    pinned = f"the CA we pin for {party_label(expected)} ({anchor.source})"
    if issued_by(cert, ca_cert):
        return (
            f"its certificate is from the alliance CA, not from {pinned}: whoever holds the alliance CA can issue "
            f"one under any name, so this may be an impostor run by the CA holder; do not use this address, and "
            f"check it with {party_label(expected)}'s operator out of band"
        )
    return (
        f"its certificate is not from {pinned} (its issuer is {cert.issuer.rfc4514_string()!r}): check the address, "
        f"and the pinned file with {party_label(expected)}'s operator out of band"
    )


def party_label(identity: Identity) -> str:
    """``member bank-a``; the coordinator called ``coordinator`` is just ``the coordinator``."""
    if identity.role is Role.COORDINATOR and identity.name == COORDINATOR_NAME:
        return "the coordinator"
    return f"{identity.role.value} {identity.name}"


# Helpers --------------------------------------------------------------------------------------


def _own_cert(pem: bytes, option: str, label: str) -> x509.Certificate:
    try:
        return _parse_cert(pem, error=ConfigurationError)
    except ConfigurationError as exc:
        raise ConfigurationError(f"TLS option {option!r}: {label} is {exc}") from None


def _spki(public_key: PublicKeyTypes) -> bytes:
    return public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _shown(moment: dt.datetime) -> str:
    return f"{moment:%Y-%m-%d %H:%M} UTC"


def _serves(cert: x509.Certificate) -> bool:
    try:
        usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return True  # No extended key usage: any usage (RFC 5280 4.2.1.12).
    return ExtendedKeyUsageOID.SERVER_AUTH in usages


def _dns_names(cert: x509.Certificate) -> list[str]:
    try:
        return cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
            x509.DNSName
        )
    except x509.ExtensionNotFound:
        return []
