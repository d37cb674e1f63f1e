"""Checking the member node's signature over a JSON lead report (``reports.signing``).

``check_member_signature`` establishes, in this order: the signature block verifies with the key
of its embedded certificate; that certificate was issued by the alliance CA, was valid when the
node says it signed, is a member's client certificate and, when a CRL is given, is not revoked;
every part of the document is exactly what was signed (else the message names the lead and the
field, from the block's fingerprints); and the certificate names the member the report is for.

A revoked certificate fails whatever the signing time says: the time is the signer's own claim,
and a stolen key could back-date. The certificate's validity is checked at that claimed time, so
a report stays verifiable after the certificate expires.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature as _CryptographyInvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from alliance_psi._plural import plural
from alliance_psi.crypto.signing import verify_ecdsa
from alliance_psi.errors import ConfigurationError, InvalidSignature, NotAuthenticated, ReportMismatch
from alliance_psi.protocol.model import Identity, Role
from alliance_psi.reports.signing import (
    ALGORITHM,
    CANONICALIZATION,
    FINGERPRINT_HEX,
    MISSING,
    REPORT_SIGNATURE_CONTEXT,
    SIGNATURE_FIELD,
    digest,
    leaves,
    signed_bytes,
)
from alliance_psi.services.pki import identity_from_pem, load_crl_serials, spki_sha256

__all__ = ["MemberSigner", "check_member_signature"]

_SHOWN_PROBLEMS = 5


@dataclass(frozen=True, slots=True)
class MemberSigner:
    """Who signed a report, as ``check_member_signature`` established it."""

    member_id: str
    serial: int
    key_pin: bytes  # SHA-256 of the certificate's SubjectPublicKeyInfo (``services.pki.spki_sha256``).
    signed_at: dt.datetime
    not_after: dt.datetime
    revocation_checked: bool


def _block_field(block: dict[str, Any], name: str, kind: type) -> Any:
    value = block.get(name)
    if not isinstance(value, kind):
        raise ReportMismatch(
            f"member signature: field {name!r} is missing or not {'a list' if kind is list else 'a string'}"
        )
    return value


def _strings(block: dict[str, Any], name: str) -> list[str]:
    values = _block_field(block, name, list)
    if not all(isinstance(value, str) for value in values):
        raise ReportMismatch(f"member signature: field {name!r} must be a list of strings")
    return list(values)


def _certificate(block: dict[str, Any]) -> tuple[x509.Certificate, bytes, Identity | None]:
    pem = _block_field(block, "certificate_pem", str).encode("utf-8")
    try:
        cert = x509.load_pem_x509_certificate(pem)
    except ValueError:
        raise ReportMismatch("member signature: certificate_pem is not a PEM X.509 certificate") from None
    try:
        identity: Identity | None = identity_from_pem(pem)
    except NotAuthenticated:
        identity = None
    return cert, pem, identity


def _who(cert: x509.Certificate, identity: Identity | None) -> str:
    named = f"{identity.role} {identity.name}" if identity else "no alliance identity"
    return f"{named}, serial {cert.serial_number:#x}"


def _signed_at(block: dict[str, Any]) -> dt.datetime:
    text = _block_field(block, "signed_at", str)
    try:
        at = dt.datetime.fromisoformat(text)
    except ValueError:
        at = None
    if at is None or at.tzinfo is None:
        raise ReportMismatch(f"member signature: signed_at {text!r} is not an ISO 8601 time with a time zone")
    return at.astimezone(dt.UTC)


def _verify_signature(block: dict[str, Any], cert: x509.Certificate, who: str) -> None:
    for name, expected in (("algorithm", ALGORITHM), ("canonicalization", CANONICALIZATION)):
        if block.get(name) != expected:
            raise ReportMismatch(f"member signature: {name} {block.get(name)!r} is not {expected!r}")
    try:
        signature = base64.b64decode(_block_field(block, "signature_b64", str), validate=True)
    except binascii.Error:
        raise ReportMismatch("member signature: signature_b64 is not base64") from None
    spki = cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    try:
        verify_ecdsa(spki, REPORT_SIGNATURE_CONTEXT, signed_bytes(block), signature)
    except (InvalidSignature, ValueError):
        raise ReportMismatch(
            f"member signature does not verify with the embedded certificate ({who}): "
            "the certificate or the signature block changed after signing"
        ) from None


def _check_chain(cert: x509.Certificate, who: str, ca_cert_pem: bytes, at: dt.datetime) -> None:
    try:
        ca = x509.load_pem_x509_certificate(ca_cert_pem)
    except ValueError:
        raise ConfigurationError("the alliance CA certificate is not a PEM X.509 certificate") from None
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, _CryptographyInvalidSignature):
        raise ReportMismatch(f"the report's signing certificate ({who}) was not issued by the alliance CA") from None
    start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    if not start <= at <= end:
        raise ReportMismatch(
            f"the report's signing certificate ({who}) was not valid when the report says it was signed, "
            f"{at:%Y-%m-%dT%H:%M:%SZ} (valid {start:%Y-%m-%d} to {end:%Y-%m-%d})"
        )
    try:
        PolicyBuilder().store(Store([ca])).time(at).build_client_verifier().verify(cert, [])
    except VerificationError as exc:
        raise ReportMismatch(
            f"the report's signing certificate ({who}) is not an alliance client certificate: {exc}"
        ) from None


def _part_problems(part: dict[str, Any], signed_entry: str, names: list[str], part_digest: str) -> list[str]:
    """What differs between ``part`` (whose ``digest`` is given) and its signed entry: [] if nothing,
    else the fields' paths."""
    signed_digest, *groups = signed_entry.split(".")
    if part_digest == signed_digest:
        return []
    if len(groups) != len(names):
        return ["its signed entry, which is malformed"]
    problems = [f"{name} (not signed)" for name in sorted(set(part) - set(names))]
    for name, signed_group in zip(names, groups, strict=True):
        if name not in part:
            problems += [] if signed_group == MISSING else [f"{name} (removed)"]
            continue
        found = leaves(part[name], name)
        if "".join(fp for _, fp in found) == signed_group:
            continue
        if signed_group == MISSING:
            problems.append(f"{name} (not signed)")
        elif len(found) * FINGERPRINT_HEX == len(signed_group):
            chunks = [signed_group[i : i + FINGERPRINT_HEX] for i in range(0, len(signed_group), FINGERPRINT_HEX)]
            problems += [path for (path, fp), signed_fp in zip(found, chunks, strict=True) if fp != signed_fp]
        else:
            problems.append(name)
    return problems or ["a field its fingerprints cannot name"]


def _where(number: int, lead: dict[str, Any]) -> str:
    return f"lead {number} ({lead['type']})" if isinstance(lead.get("type"), str) else f"lead {number}"


def _lead_problems(leads: list[dict[str, Any]], signed: list[str], names: list[str], member: str) -> list[str]:
    found = [digest(lead) for lead in leads]
    signed_as = {entry.split(".")[0]: number for number, entry in enumerate(signed, 1)}
    numbered = list(enumerate(zip(leads, found, strict=True), 1))
    if len(leads) != len(signed):
        listed = set(found)
        added = [f"{_where(n, lead)} is not one it signed" for n, (lead, d) in numbered if d not in signed_as]
        missing = [f"signed lead {number} is missing" for d, number in signed_as.items() if d not in listed]
        return [
            f"the report lists {plural(len(leads), 'lead')}, member {member} signed {len(signed)}",
            *added,
            *missing,
        ]
    if sorted(found) == sorted(signed_as) and found != list(signed_as):
        return [
            f"{_where(n, lead)} was signed as lead {signed_as[d]}" for n, (lead, d) in numbered if signed_as[d] != n
        ]
    problems = []
    for (number, (lead, lead_digest)), signed_entry in zip(numbered, signed, strict=True):
        changed = _part_problems(lead, signed_entry, names, lead_digest)
        if changed:
            problems.append(_changed(_where(number, lead), changed, member))
    return problems


def _changed(where: str, fields: list[str], member: str) -> str:
    return (
        f"{where}: {', '.join(fields)} {'differs' if len(fields) == 1 else 'differ'} from what member {member} signed"
    )


def _compare(doc: dict[str, Any], block: dict[str, Any], member: str) -> None:
    leads = doc.get("leads")
    if not isinstance(leads, list) or not all(isinstance(lead, dict) for lead in leads):
        raise ReportMismatch("report: field 'leads' must be a list of objects")
    rest = {key: value for key, value in doc.items() if key not in ("leads", SIGNATURE_FIELD)}
    signed_report = _block_field(block, "report", str)
    changed = _part_problems(rest, signed_report, _strings(block, "report_fields"), digest(rest))
    problems = [_changed("report", changed, member)] if changed else []
    problems += _lead_problems(leads, _strings(block, "leads"), _strings(block, "lead_fields"), member)
    if problems:
        shown = problems[:_SHOWN_PROBLEMS]
        more = len(problems) - len(shown)
        raise ReportMismatch("; ".join(shown) + (f"; and {more} more" if more else ""))


def check_member_signature(doc: dict[str, Any], *, ca_cert_pem: bytes, crl_pem: bytes | None = None) -> MemberSigner:
    """Check the member node's signature over ``doc`` (a parsed JSON report); see the module docstring.

    Raises:
        ReportMismatch: no or a malformed signature block, a signature that does not verify, a
            certificate the alliance CA did not issue (or not valid then, not a member's, revoked),
            a report that differs from what was signed (naming each lead and field, at most five),
            or a certificate naming another member than the report's.
        ConfigurationError: the CA certificate or the CRL cannot be used (a CRL the CA did not sign).
    """
    block = doc.get(SIGNATURE_FIELD)
    if not isinstance(block, dict):
        raise ReportMismatch(
            f"report: no member signature (field {SIGNATURE_FIELD!r}): its member node did not sign it"
        )
    cert, pem, identity = _certificate(block)
    who = _who(cert, identity)
    _verify_signature(block, cert, who)
    signed_at = _signed_at(block)
    _check_chain(cert, who, ca_cert_pem, signed_at)
    if identity is None or identity.role is not Role.MEMBER:
        raise ReportMismatch(f"the report's signing certificate ({who}) is not a member's")
    revoked = load_crl_serials(crl_pem, ca_cert_pem) if crl_pem is not None else frozenset()
    if cert.serial_number in revoked:
        raise ReportMismatch(f"the report's signing certificate ({who}) is revoked by the CRL")
    try:
        _compare(doc, block, identity.name)
    except ValueError as exc:  # An infinite number or a lone surrogate: nothing can have signed it.
        raise ReportMismatch(f"not a lead report: it holds a value RFC 8785 cannot encode ({exc})") from None
    if doc.get("member_id") != identity.name:
        raise ReportMismatch(f"the report is member {doc.get('member_id')!r}'s, but member {identity.name} signed it")
    return MemberSigner(
        member_id=identity.name,
        serial=cert.serial_number,
        key_pin=spki_sha256(pem),
        signed_at=signed_at,
        not_after=cert.not_valid_after_utc,
        revocation_checked=crl_pem is not None,
    )
