"""Checking a JSON lead report against the coordinator's signature, for anyone with the public key.

What a valid report proves: the coordinator (the holder of the key) issued the embedded result
for this member and round, and every lead listed is one of that result's matches with the signed
holder count; the round, member, key epoch, threshold and submission size are the signed ones;
the summary agrees with the listed leads. What it cannot prove: that a lead's raw value and own
category are the member's record behind its token, or what peer labels said (only a holder of
the identifier can check those), nor the round name and generation time, which are not signed.
A report may list fewer leads than the result has matches (identifiers withdrawn since the
round are left out); ``VerifiedReport.omitted`` counts them.

Fail closed: every problem raises ``ReportMismatch`` (an ``InvalidSignature``) whose message
names exactly what does not match; there is no boolean to forget to check.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from alliance_psi.crypto.derive import MATCH_TOKEN_BYTES
from alliance_psi.crypto.signing import key_id
from alliance_psi.errors import InvalidRequest, InvalidSignature, ReportMismatch
from alliance_psi.protocol.leads import Lead, LeadLabel
from alliance_psi.protocol.model import MatchedToken, MemberResult
from alliance_psi.protocol.result_codec import open_result
from alliance_psi.reports.model import REPORT_FORMAT, REPORT_FORMAT_VERSION, LeadReport, build_report
from alliance_psi.reports.render import report_document

__all__ = ["ReportMismatch", "VerifiedReport", "verify_report_json"]

_SIGNATURE_BYTES = 64
_KINDS: dict[type, str] = {str: "a string", int: "an integer", list: "a list", dict: "an object"}


@dataclass(frozen=True, slots=True)
class VerifiedReport:
    """What a successful check established (see the module docstring for what that means)."""

    round_id: str
    round_name: str
    member_id: str
    key_epoch: str
    threshold: int
    key_id: str
    generated_at: datetime
    leads: int
    signed_matches: int
    by_holder_count: dict[int, int]

    @property
    def omitted(self) -> int:
        """Signed matches the report does not list."""
        return self.signed_matches - self.leads


def _field(obj: dict[str, Any], name: str, kind: type, where: str, *, optional: bool = False) -> Any:
    if name not in obj or (optional and obj[name] is None):
        if optional:
            return None
        raise ReportMismatch(f"{where}: field {name!r} is missing")
    value = obj[name]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ReportMismatch(f"{where}: field {name!r} must be {_KINDS[kind]}")
    return value


def _date(obj: dict[str, Any], name: str, where: str) -> date | None:
    text = _field(obj, name, str, where, optional=True)
    try:
        return None if text is None else date.fromisoformat(text)
    except ValueError:
        raise ReportMismatch(f"{where}: {name} {text!r} is not a date") from None


def _time(text: str) -> datetime:
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        at = None
    if at is None or at.tzinfo is None:
        raise ReportMismatch(f"report: generated_at {text!r} is not an ISO 8601 time with a time zone")
    return at


def _b64(evidence: dict[str, Any], name: str) -> bytes:
    try:
        return base64.b64decode(_field(evidence, name, str, "evidence"), validate=True)
    except binascii.Error:
        raise ReportMismatch(f"evidence: {name} is not base64") from None


def _parse(data: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise ReportMismatch("not a lead report: not UTF-8") from None
    except json.JSONDecodeError as exc:
        where = f"{exc.msg} at line {exc.lineno} column {exc.colno}"
        raise ReportMismatch(f"not a lead report: invalid JSON ({where})") from None
    if not isinstance(doc, dict) or doc.get("format") != REPORT_FORMAT:
        raise ReportMismatch(f"not a lead report: 'format' is not {REPORT_FORMAT!r}")
    version = doc.get("format_version")
    if version != REPORT_FORMAT_VERSION or isinstance(version, bool):
        raise ReportMismatch(f"unknown report format version {version!r} (this verifier knows {REPORT_FORMAT_VERSION})")
    return doc


def _signed_result(doc: dict[str, Any], public_key: bytes) -> tuple[MemberResult, bytes, bytes]:
    evidence = _field(doc, "evidence", dict, "report")
    payload, signature = _b64(evidence, "payload_b64"), _b64(evidence, "signature_b64")
    if len(signature) != _SIGNATURE_BYTES:
        raise ReportMismatch(
            f"evidence signature is {len(signature)} bytes; an Ed25519 signature is {_SIGNATURE_BYTES}"
        )
    round_id, member_id = _field(doc, "round_id", str, "report"), _field(doc, "member_id", str, "report")
    try:
        result = open_result(public_key, payload, signature, round_id=round_id, member_id=member_id)
    except (InvalidSignature, InvalidRequest) as exc:
        raise ReportMismatch(str(exc)) from None
    named = _field(evidence, "key_id", str, "evidence")
    if named != key_id(public_key):
        raise ReportMismatch(f"evidence names key {named}, but the signature verifies with key {key_id(public_key)}")
    for name, kind in (("key_epoch", str), ("threshold", int), ("submitted_count", int)):
        claimed, signed = _field(doc, name, kind, "report"), getattr(result, name)
        if claimed != signed:
            raise ReportMismatch(f"{name} {claimed!r} in the report, {signed!r} in the signed result")
    return result, payload, signature


def _peer(obj: Any, where: str) -> LeadLabel:
    if not isinstance(obj, dict):
        raise ReportMismatch(f"{where}: must be an object")
    try:
        return LeadLabel(
            _field(obj, "category", str, where),
            _field(obj, "severity", str, where, optional=True),
            _date(obj, "first_seen", where),
            _field(obj, "case_ref", str, where, optional=True),
            _field(obj, "member", str, where, optional=True),
        )
    except ValueError as exc:
        raise ReportMismatch(f"{where}: {exc}") from None


def _lead(obj: Any, number: int, signed: dict[bytes, MatchedToken], seen: dict[bytes, int]) -> Lead:
    if not isinstance(obj, dict):
        raise ReportMismatch(f"lead {number}: must be an object")
    where = f"lead {number} ({obj.get('type')})" if isinstance(obj.get("type"), str) else f"lead {number}"
    kind = _field(obj, "type", str, where)
    hex_token = _field(obj, "match_token", str, where)
    try:
        token = bytes.fromhex(hex_token)
    except ValueError:
        token = b""
    if len(token) != MATCH_TOKEN_BYTES or token.hex() != hex_token:
        raise ReportMismatch(f"{where}: match token is not {2 * MATCH_TOKEN_BYTES} lower-case hex digits")
    if token in seen:
        raise ReportMismatch(f"{where}: match token repeats lead {seen[token]}")
    seen[token] = number
    match = signed.get(token)
    if match is None:
        raise ReportMismatch(f"{where}: match token not in the signed result")
    holders = _field(obj, "holder_count", int, where)
    if holders != match.holder_count:
        raise ReportMismatch(
            f"{where}: holder_count {holders} in the report, {match.holder_count} in the signed result"
        )
    labels = _field(obj, "peer_labels", list, where)
    peers = [_peer(item, f"{where} peer label {i}") for i, item in enumerate(labels, 1)]
    unreadable = _field(obj, "unreadable_peer_labels", int, where)
    if unreadable < 0 or len(peers) + unreadable > len(match.peer_labels):
        raise ReportMismatch(
            f"{where}: {len(peers) + unreadable} peer labels in the report, "
            f"{len(match.peer_labels)} in the signed result"
        )
    severity = _field(obj, "severity", str, where, optional=True) or ""
    case_ref = _field(obj, "case_ref", str, where, optional=True) or ""
    return Lead(
        kind,
        _field(obj, "value", str, where),
        _field(obj, "category", str, where),
        severity,
        case_ref,
        _date(obj, "first_seen", where),
        holders,
        token,
        tuple(peers),
        unreadable,
    )


def _compare_summary(claimed: dict[str, Any], expected: dict[str, Any], path: str = "summary") -> None:
    for name in sorted(set(claimed) | set(expected)):
        mine, theirs = claimed.get(name), expected.get(name)
        where = f"{path}[{name!r}]" if path != "summary" else f"summary {name}"
        if isinstance(mine, dict) and isinstance(theirs, dict):
            _compare_summary(mine, theirs, where)
        elif mine != theirs:
            raise ReportMismatch(f"{where} {mine!r} in the report, {theirs!r} from its leads")


def verify_report_json(data: bytes, public_key: bytes) -> VerifiedReport:
    """Check a JSON report (``render_json``) against the coordinator's raw Ed25519 ``public_key``.

    Raises:
        ReportMismatch: the report is not a known report format, its signature does not verify, its
            result is for another round or member, or anything it states differs from the signed
            result or from its own leads; the message names the field and both values.
    """
    doc = _parse(data)
    result, payload, signature = _signed_result(doc, public_key)
    signed = {match.match_token: match for match in result.matches}
    seen: dict[bytes, int] = {}
    leads = [_lead(obj, number, signed, seen) for number, obj in enumerate(_field(doc, "leads", list, "report"), 1)]
    generated_at = _time(_field(doc, "generated_at", str, "report"))
    rebuilt: LeadReport = build_report(
        member_id=result.member_id,
        round_name=_field(doc, "round_name", str, "report"),
        result=result,
        leads=leads,
        payload=payload,
        signature=signature,
        key_id=key_id(public_key),
        generated_at=generated_at,
    )
    summary, expected = _field(doc, "summary", dict, "report"), report_document(rebuilt)["summary"]
    _compare_summary(summary, expected)
    return VerifiedReport(
        round_id=result.round_id,
        round_name=rebuilt.round_name,
        member_id=result.member_id,
        key_epoch=result.key_epoch,
        threshold=result.threshold,
        key_id=key_id(public_key),
        generated_at=rebuilt.generated_at,
        leads=len(leads),
        signed_matches=len(result.matches),
        by_holder_count=rebuilt.by_holder_count(),
    )
