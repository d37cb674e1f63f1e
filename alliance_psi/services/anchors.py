"""Per-custodian trust anchors: the one CA a member trusts for an independent custodian's certificate.

Every party's certificate comes from the alliance CA, and clients pin each server's role and name
(``services.tls``). That stops mistakes and other parties, not the CA holder: the alliance
operator, who holds the CA and runs the coordinator, can issue a second ``custodian-2``
certificate, run its own "custodian-2" with a key share it chose, and hand members that address.
With every key share in one hand it tests guesses of every stored token (all mobile numbers).

So an independent custodian's institution runs a small CA of its own (``alliance-psi pki init-ca``,
then ``pki issue --role custodian`` from it), serves with that CA's certificate, and hands its CA
certificate (``ca.pem``, not the key) to each member out of band. A member pins it for that one
custodian (``ca = …`` in the custodian's ``node.toml`` entry): the channel to that custodian
trusts that CA only, in place of the alliance CA, so a certificate the alliance CA issues under the
same name fails the handshake and no call reaches its holder.

Why a CA of its own, not a self-signed server certificate: the custodian can renew or re-key its
server certificate (``pki issue --force``) without every member changing its pin, and keeps the
anchor's key offline while the server's key is on the server; it is the same two commands every
operator already knows. What a pin does not cover: a custodian that evaluates with another key
than its share (silently suppressing matches) is caught only by published key-share commitments
and DLEQ proofs, which threshold custody (issue 12) brings. A compromised server key of a
custodian is replaced by a new anchor that members pin again: clients check no revocation list
for servers.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from alliance_psi.errors import ConfigurationError
from alliance_psi.services.pki import _parse_cert

__all__ = ["TrustAnchor", "fingerprint", "issued_by", "load_anchor"]


@dataclass(frozen=True, slots=True)
class TrustAnchor:
    """The CA certificate (PEM) one custodian's channel trusts, and the file it came from (for messages)."""

    cert_pem: bytes
    source: str

    @property
    def fingerprint(self) -> str:
        """SHA-256 of the certificate, as ``openssl x509 -noout -fingerprint -sha256`` shows it."""
        return fingerprint(self.cert_pem)


def fingerprint(cert_pem: bytes) -> str:
    """``AB:CD:…``: the SHA-256 of a PEM certificate's DER, upper-case hex in colon-separated pairs.

    What a member reads to its custodian's operator (or compares with what the operator published)
    before pinning the file: ``openssl x509 -in FILE -noout -fingerprint -sha256`` prints the same.

    Raises:
        ConfigurationError: not a PEM certificate.
    """
    der = _parse_cert(cert_pem, error=ConfigurationError).public_bytes(serialization.Encoding.DER)
    return ":".join(f"{byte:02X}" for byte in hashlib.sha256(der).digest())


def issued_by(cert: x509.Certificate, ca_cert: x509.Certificate) -> bool:
    """Whether ``ca_cert``'s key signed ``cert`` and ``cert`` names it as issuer."""
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def load_anchor(path: Path, *, custodian: str, alliance_ca: bytes, now: dt.datetime | None = None) -> TrustAnchor:
    """Read the CA certificate a member pins for ``custodian`` and check it can serve as its anchor.

    Raises:
        ConfigurationError: naming the custodian, the file, the cause and the fix: the file is
            missing or unreadable; not a PEM certificate; not a self-signed CA certificate (a
            server certificate, or an intermediate: pin the ``ca.pem`` of the custodian's
            ``pki init-ca``); the alliance CA itself (that would pin nothing); expired or not yet
            valid.
    """
    where = f"custodian {custodian}'s ca {path}"
    try:
        pem = Path(path).read_bytes()
    except FileNotFoundError:
        raise ConfigurationError(f"{where}: file not found") from None
    except OSError as exc:
        raise ConfigurationError(f"{where}: cannot read it: {exc.strerror}") from None
    try:
        cert = _parse_cert(pem, error=ConfigurationError)
    except ConfigurationError:
        raise ConfigurationError(f"{where}: not a PEM certificate") from None
    own_ca = f"pin the ca.pem of {custodian}'s own CA (its `alliance-psi pki init-ca`), from its operator"
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        constraints = None
    if constraints is None or not constraints.ca or not issued_by(cert, cert):
        raise ConfigurationError(f"{where}: not a self-signed CA certificate: {own_ca}")
    # By key, not by certificate: the CA holder can re-sign its own key under a new serial or dates.
    if _spki(cert) == _spki(_parse_cert(alliance_ca, error=ConfigurationError)):
        raise ConfigurationError(
            f"{where}: this is the alliance CA, which can issue a certificate under any name, so it pins "
            f"nothing: {own_ca}, or leave ca out if {custodian} is the alliance operator's"
        )
    now = now or dt.datetime.now(dt.UTC)
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise ConfigurationError(
            f"{where}: valid only from {cert.not_valid_before_utc:%Y-%m-%d} to {cert.not_valid_after_utc:%Y-%m-%d}: "
            f"check this machine's clock, or ask {custodian}'s operator for its current CA certificate"
        )
    return TrustAnchor(cert_pem=pem, source=str(path))


def _spki(cert: x509.Certificate) -> bytes:
    return cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
