"""The member node's signature over a JSON lead report: every field, by the node's own certificate key.

The coordinator's signature proves which match tokens matched, how many members hold each and
which sealed labels came back. Only the member node knows which of its identifiers each token
stands for, its own labels and case references, and what the peers' sealed labels say. So the
node signs the whole report document with the private key of its alliance member certificate
(ECDSA P-256, ``crypto.signing.CertificateKey``: the key its mutual-TLS connections prove it
holds and that servers pin at enrolment) and embeds that certificate; a verifier needs only the
alliance CA to know which member vouches for the report.

Canonical encoding: RFC 8785 (JSON Canonicalization Scheme, the ``rfc8785`` library). What is
signed is the parsed JSON values, so whitespace, key order and escapes in the file do not matter;
``reports.verify`` refuses duplicate keys and non-finite numbers, so every reader of a valid file
sees exactly the values that were signed.

The signature block is the document's ``member_signature`` member::

    algorithm        "ECDSA-P256-SHA256"
    canonicalization "RFC8785"
    certificate_pem  the node's alliance member certificate
    signed_at        when the node signed (UTC): the time its certificate is checked at
    report_fields    the names of the document's other members except "leads", sorted
    report           the entry of the document without "leads" and "member_signature"
    lead_fields      the names of the leads' fields, sorted
    leads            one entry per lead, in report order
    signature_b64    ECDSA signature (DER) of "alliance-psi/v1 report" 0x00 JCS(block without signature_b64)

An entry is ``base64(SHA-256(JCS(part)))``, then for each field name in order a ``.`` and either
``-`` (the part has no such field) or the two-byte fingerprints (hex) of the field's scalar values:
``SHA-256(path 0x00 JCS(value))[:2]`` for each in path order (object keys sorted, list items in
order; paths like ``peer_labels[0].member``). The digests carry the security: the signature
covers them and they cover every byte of the document. The fingerprints are diagnostics only,
short on purpose, so that a verifier can name the field that changed.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import rfc8785
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from alliance_psi.crypto.signing import CertificateKey
from alliance_psi.errors import ConfigurationError, NotAuthenticated
from alliance_psi.protocol.model import Role
from alliance_psi.reports.model import LeadReport
from alliance_psi.reports.render import report_document
from alliance_psi.services.pki import identity_from_pem

__all__ = [
    "ALGORITHM",
    "CANONICALIZATION",
    "FINGERPRINT_HEX",
    "MISSING",
    "REPORT_SIGNATURE_CONTEXT",
    "SIGNATURE_FIELD",
    "ReportSigner",
    "canonical",
    "digest",
    "entry",
    "leaves",
    "render_signed_json",
    "sign_document",
    "signed_bytes",
]

REPORT_SIGNATURE_CONTEXT = "report"
ALGORITHM = "ECDSA-P256-SHA256"
CANONICALIZATION = "RFC8785"
SIGNATURE_FIELD = "member_signature"
MISSING = "-"
_FINGERPRINT_BYTES = 2
FINGERPRINT_HEX = 2 * _FINGERPRINT_BYTES


def canonical(value: Any) -> bytes:
    """RFC 8785 bytes of a JSON value; ``ValueError`` for what JCS cannot encode (huge integers, NaN, lone surrogates)."""
    return rfc8785.dumps(value)


def _leaves(value: Any, path: str) -> Iterator[tuple[str, Any]]:
    if isinstance(value, dict):
        for key in sorted(value):
            yield from _leaves(value[key], f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _leaves(item, f"{path}[{index}]")
    else:
        yield path, value


def leaves(value: Any, name: str) -> list[tuple[str, str]]:
    """``(path, fingerprint)`` of each scalar in a field's value, in path order (see the module docstring)."""
    found = []
    for path, scalar in _leaves(value, name):
        digest = hashlib.sha256(path.encode("utf-8") + b"\x00" + canonical(scalar)).digest()
        found.append((path, digest[:_FINGERPRINT_BYTES].hex()))
    return found


def digest(part: dict[str, Any]) -> str:
    """The base64 SHA-256 of a part's JCS bytes: the first component of its entry."""
    return base64.b64encode(hashlib.sha256(canonical(part)).digest()).decode("ascii")


def entry(part: dict[str, Any], names: list[str]) -> str:
    """The signed entry of a part of the document: its digest, then its fields' fingerprints."""
    groups = ["".join(fp for _, fp in leaves(part[name], name)) if name in part else MISSING for name in names]
    return ".".join([digest(part), *groups])


def signed_bytes(block: dict[str, Any]) -> bytes:
    """What the member signs: JCS of the signature block without its signature."""
    return canonical({key: value for key, value in block.items() if key != "signature_b64"})


def _utc(at: datetime) -> str:
    return at.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class ReportSigner:
    """A member node's certificate (PEM) and its key, checked to belong together and to name the member."""

    member_id: str
    cert_pem: bytes
    key: CertificateKey = field(repr=False)

    @classmethod
    def load(cls, cert_pem: bytes, key_pem: bytes, *, member_id: str) -> ReportSigner:
        """Raises ``ConfigurationError`` if the certificate does not name member ``member_id`` or the
        key is not its ECDSA P-256 key."""
        try:
            identity = identity_from_pem(cert_pem)
            cert = x509.load_pem_x509_certificate(cert_pem)
        except (NotAuthenticated, ValueError) as exc:
            raise ConfigurationError(f"cannot sign reports with this certificate: {exc}") from None
        if identity.role is not Role.MEMBER or identity.name != member_id:
            raise ConfigurationError(
                f"cannot sign member {member_id!r}'s report: the certificate names {identity.role} {identity.name!r}"
            )
        key = CertificateKey.from_pem(key_pem)
        spki = cert.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        if key.public_key_der != spki:
            raise ConfigurationError("the private key is not the key of the certificate")
        return cls(member_id, cert.public_bytes(serialization.Encoding.PEM), key)


def sign_document(document: dict[str, Any], signer: ReportSigner, *, signed_at: datetime) -> dict[str, Any]:
    """``document`` (``report_document``) with the member's signature block over all of it.

    Raises:
        ValueError: ``document`` is another member's, or ``signed_at`` is naive.
    """
    if document.get("member_id") != signer.member_id:
        raise ValueError(f"a report of member {document.get('member_id')!r} cannot be signed as {signer.member_id!r}")
    if signed_at.tzinfo is None:
        raise ValueError("signed_at must be timezone-aware")
    body = {key: value for key, value in document.items() if key != SIGNATURE_FIELD}
    leads = body.get("leads", [])
    rest = {key: value for key, value in body.items() if key != "leads"}
    report_fields = sorted(rest)
    lead_fields = sorted({name for lead in leads for name in lead})
    block: dict[str, Any] = {
        "algorithm": ALGORITHM,
        "canonicalization": CANONICALIZATION,
        "certificate_pem": signer.cert_pem.decode("ascii"),
        "signed_at": _utc(signed_at),
        "report_fields": report_fields,
        "report": entry(rest, report_fields),
        "lead_fields": lead_fields,
        "leads": [entry(lead, lead_fields) for lead in leads],
    }
    signature = signer.key.sign(REPORT_SIGNATURE_CONTEXT, signed_bytes(block))
    block["signature_b64"] = base64.b64encode(signature).decode("ascii")
    return {**body, SIGNATURE_FIELD: block}


def render_signed_json(report: LeadReport, signer: ReportSigner, *, signed_at: datetime | None = None) -> bytes:
    """The JSON report (``render_json``'s layout) signed by the member node (``signed_at``: now by default)."""
    signed = sign_document(report_document(report), signer, signed_at=signed_at or datetime.now(UTC))
    return (json.dumps(signed, ensure_ascii=False, sort_keys=True, indent=2) + "\n").encode("utf-8")
