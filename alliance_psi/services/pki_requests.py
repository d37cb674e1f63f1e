"""Certificate requests (PKCS #10): a party makes its own key, and the CA signs only its public key.

``pki issue`` makes a key together with the certificate, so the CA holder holds a copy of it.
A member's key is what every server's enrolment list pins (docs/design.md, Enrolment): whoever
keeps a copy can act as that member wherever it is enrolled, within its quota. With a request
the key never leaves the member::

    member:    alliance-psi pki request --role member --name bank-a --out pki/   # bank-a.key (0600), bank-a.csr
    operator:  alliance-psi pki issue --ca-dir ca/ --csr pki/bank-a.csr --role member --name bank-a --out pki/

The request is signed with its own key (proof of possession) and names its holder as the
certificate will (``urn:alliance-psi:<role>:<name>``). A request is written by the applicant, so
the identity in it is a claim, never the decision: the CA operator names the role and name it
certifies (``expected``), and a request that names another is refused, naming both. A request
for a server role (coordinator, custodian) is refused unless the operator allows it explicitly:
such a certificate lets its holder serve as that party to every member, so the file an applicant
sends as its membership request must never be able to turn into one. What else a certificate of
that role carries (usages, identity name) comes from ``pki.issue_for_key`` alone, never from the
request.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from alliance_psi.errors import ConfigurationError
from alliance_psi.protocol.model import Identity, Role
from alliance_psi.services.pki import (
    IDENTITY_URI_PREFIX,
    SERVER_ROLES,
    identity_in,
    validate_name,
)

__all__ = ["CertificateRequest", "check_request", "key_pin", "make_request", "read_request"]


@dataclass(frozen=True, slots=True)
class CertificateRequest:
    """A request to send to the CA, the private key to keep (never shown), and the key's pin."""

    csr_pem: bytes
    key_pem: bytes = field(repr=False)
    key_pin: bytes


def key_pin(public_key: ec.EllipticCurvePublicKey) -> bytes:
    """SHA-256 of the DER SubjectPublicKeyInfo: the pin of ``pki.spki_sha256`` and the enrolment lists."""
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).digest()


def make_request(role: Role, name: str) -> CertificateRequest:
    """A fresh P-256 key and a request, signed with it, for a certificate naming ``role``/``name``.

    Raises:
        ConfigurationError: a bad name.
    """
    validate_name(name)
    key = ec.generate_private_key(ec.SECP256R1())
    uri = x509.UniformResourceIdentifier(f"{IDENTITY_URI_PREFIX}{Role(role).value}:{name}")
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, name)]))
        .add_extension(x509.SubjectAlternativeName([uri]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return CertificateRequest(
        csr_pem=csr.public_bytes(serialization.Encoding.PEM),
        key_pem=key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
        key_pin=key_pin(key.public_key()),
    )


def read_request(csr_pem: bytes) -> tuple[Identity, ec.EllipticCurvePublicKey]:
    """The identity a request names and the key it was signed with, once its signature checks.

    Raises:
        ConfigurationError: not a PEM request, a bad signature, a key other than P-256, or not
            exactly one valid ``urn:alliance-psi:<role>:<name>`` URI (``pki.identity_in``).
    """
    try:
        csr = x509.load_pem_x509_csr(csr_pem)
    except ValueError:
        raise ConfigurationError("not a PEM certificate request") from None
    if not csr.is_signature_valid:
        raise ConfigurationError("the request's signature does not verify: it was not signed with its own key")
    public_key = csr.public_key()
    if not isinstance(public_key, ec.EllipticCurvePublicKey) or not isinstance(public_key.curve, ec.SECP256R1):
        raise ConfigurationError("the request's key is not an ECDSA P-256 key")
    return identity_in(csr.extensions, what="the request", error=ConfigurationError), public_key


def check_request(csr_pem: bytes, expected: Identity, *, allow_server: bool = False) -> ec.EllipticCurvePublicKey:
    """The request's key, once the request is found to ask for exactly ``expected``.

    Raises:
        ConfigurationError: a bad request (``read_request``); a request naming another identity
            than ``expected`` (the message names both); a server role (``pki.SERVER_ROLES``)
            without ``allow_server``.
    """
    claimed, public_key = read_request(csr_pem)
    if claimed != expected:
        raise ConfigurationError(
            f"the request names {_spelled(claimed)}, not {_spelled(expected)}: refused "
            "(ask the applicant for a request of its own identity)"
        )
    if expected.role in SERVER_ROLES and not allow_server:
        raise ConfigurationError(
            f"the request is for a server, {_spelled(expected)}: its holder could serve as that party to "
            "every member; pass --allow-server only for that party's own request"
        )
    return public_key


def _spelled(identity: Identity) -> str:
    return f"{identity.role.value}:{identity.name}"
