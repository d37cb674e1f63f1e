"""Checking a JSON lead report, for anyone with the alliance CA and the coordinator's public key.

Two signatures, checked in this order, and what each covers:

- The member node's (``reports.signature_check``): ECDSA P-256 with the key of its alliance member
  certificate, embedded in the report, over every field of the report: each lead's identifier
  value and type, own category, severity, case reference and first-seen date, the peers' labels
  as the node opened them (names included), every count, the round, the times and the
  coordinator's evidence. It proves which member vouches for the report, and that nobody changed
  any of it since; it cannot prove that member told the truth.
- The coordinator's (Ed25519, over the header of the result it issued to that member for that
  round: the threshold, key epoch, submission size, number of matches, the Merkle root of the
  result's leaves and the key pin it enrolled for the member). Each listed lead carries its leaf
  (match token, holder count, sealed peer labels) and inclusion proof, checked against that root
  (``result_codec.check_leaf``). It proves what matched; it says nothing of which identifier a
  token stands for. When the header names a key pin, the member's signing certificate must
  carry that key: a certificate the CA holder minted for the member's name with another key
  fails (``VerifiedReport.key_enrolled``).

What a valid report does NOT prove: that a lead's identifier value is the one its token was
derived from (only the member node says so; ``check_rederived`` after a re-derivation through
the custodians proves it), what the sealed peer labels say or who sealed them (only holders of
the identifier can open them), that the generation time is true (it is the node's claim), nor,
when the header names no key pin, that the signing key is the one the coordinator enrolled.
A report may list fewer leads than the result has matches (identifiers withdrawn since the
round are left out); ``VerifiedReport.omitted`` counts them.

Fail closed: every problem raises ``ReportMismatch`` (an ``InvalidSignature``) whose message
names exactly what does not match (the lead and the field); there is no boolean to forget.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, NoReturn

from alliance_psi._plural import plural
from alliance_psi.crypto.derive import MATCH_TOKEN_BYTES
from alliance_psi.crypto.signing import key_id
from alliance_psi.errors import InvalidIdentifier, InvalidRequest, InvalidSignature, ReportMismatch, ResultMismatch
from alliance_psi.identifiers import normalize
from alliance_psi.protocol.leads import Lead, LeadLabel
from alliance_psi.protocol.model import MatchedToken, MemberResult
from alliance_psi.protocol.result_codec import LeafProof, ResultHeader, check_leaf, open_header
from alliance_psi.reports.model import REPORT_FORMAT, REPORT_FORMAT_VERSION, LeadReport, build_report
from alliance_psi.reports.render import report_document
from alliance_psi.reports.signature_check import MemberSigner, check_member_signature

__all__ = ["ReportMismatch", "ReportedToken", "VerifiedReport", "check_rederived", "verify_report_json"]

_SIGNATURE_BYTES = 64
_KINDS: dict[type, str] = {str: "a string", int: "an integer", list: "a list", dict: "an object"}
_ONLY_JSON = (
    "Only the signed JSON report (`alliance-psi node report ROUND --format json`) can be verified: "
    "the HTML and CSV reports are for reading, not evidence"
)


@dataclass(frozen=True, slots=True, repr=False)
class ReportedToken:
    """A lead's identifier and the match token the report attaches to it (``repr`` hides the value)."""

    number: int
    type: str
    value: str
    match_token: bytes

    def __repr__(self) -> str:
        return f"ReportedToken(lead={self.number}, type={self.type})"

    @property
    def where(self) -> str:
        return f"lead {self.number} ({self.type})"


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
    signer: MemberSigner
    key_enrolled: bool  # The signed result names the member's enrolled key pin, and it is the signer's.
    tokens: tuple[ReportedToken, ...] = field(repr=False)

    @property
    def omitted(self) -> int:
        """Signed matches the report does not list."""
        return self.signed_matches - self.leads

    def coverage(self, *, rederived: bool = False) -> list[str]:
        """What each signature covers and what the report does not prove, one line each, for people.

        ``rederived``: the tokens were re-derived from the identifiers (``check_rederived`` passed).
        """
        signer, member = self.signer, self.member_id
        revocation = "not revoked per the CRL" if signer.revocation_checked else "revocation NOT checked (no CRL given)"
        enrolled = ", the key the coordinator enrolled for the member" if self.key_enrolled else ""
        member_line = (
            f"member signature: member {signer.member_id}'s node, certificate serial {signer.serial:#x} "
            f"(key pin sha256:{signer.key_pin.hex()}{enrolled}), issued by the alliance CA, valid at "
            f"{signer.signed_at:%Y-%m-%dT%H:%M:%SZ} (the signing time the node states), {revocation}; "
            "it covers every field: each lead's identifier value and type, own category, severity, case "
            "reference and first-seen date, the peers' labels as the node opened them (names included), "
            "the counts, the round, the times and the coordinator's evidence"
        )
        pin = ", the member's enrolled key pin" if self.key_enrolled else ""
        coordinator_line = (
            f"coordinator signature: key {self.key_id}, over the header of the result for member {member} in round "
            f"{self.round_id} (threshold, key epoch, submission size, number of matches, Merkle root{pin}); each "
            "lead's leaf (match token, holder count, sealed peer labels) is in it by its inclusion proof"
        )
        unproven = [
            "what the sealed peer labels say and who sealed them (only holders of the identifier can open them)",
            "that the generation time is true",
        ]
        if not rederived:
            unproven.insert(
                0,
                f"that each identifier value is the one its match token was derived from (only member {member}'s "
                "node says so; --online re-derives the tokens)",
            )
        if not self.key_enrolled:
            unproven.append("that this signing key is the one the coordinator enrolled (the result names no key)")
        return [member_line, coordinator_line, "not proven: " + "; ".join(unproven)]


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


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # Two readers of one file must see the same values: a repeated key could be read either way.
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise ReportMismatch(f"not a lead report: key {key!r} appears twice in one object")
        obj[key] = value
    return obj


def _no_constant(name: str) -> NoReturn:
    raise ReportMismatch(f"not a lead report: {name} is not a JSON number")


def _parse(data: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(data.decode("utf-8"), object_pairs_hook=_unique_keys, parse_constant=_no_constant)
    except UnicodeDecodeError:
        raise ReportMismatch("not a lead report: not UTF-8") from None
    except json.JSONDecodeError as exc:
        where = f"{exc.msg} at line {exc.lineno} column {exc.colno}"
        raise ReportMismatch(f"not a lead report: invalid JSON ({where}). {_ONLY_JSON}") from None
    if not isinstance(doc, dict) or doc.get("format") != REPORT_FORMAT:
        raise ReportMismatch(f"not a lead report: 'format' is not {REPORT_FORMAT!r}")
    version = doc.get("format_version")
    if version == 1:
        raise ReportMismatch(
            "report format version 1 has no member signature (it was written before reports were signed): "
            "write the report again with `alliance-psi node report ROUND --format json`"
        )
    if version == 2:
        raise ReportMismatch(
            "report format version 2 carries the coordinator's whole result as one signed blob; this verifier "
            "checks results as signed Merkle trees: write the report again with "
            "`alliance-psi node report ROUND --format json`"
        )
    if version != REPORT_FORMAT_VERSION or isinstance(version, bool):
        raise ReportMismatch(f"unknown report format version {version!r} (this verifier knows {REPORT_FORMAT_VERSION})")
    return doc


def _signed_header(doc: dict[str, Any], public_key: bytes) -> tuple[ResultHeader, bytes, bytes]:
    evidence = _field(doc, "evidence", dict, "report")
    header, signature = _b64(evidence, "header_b64"), _b64(evidence, "signature_b64")
    if len(signature) != _SIGNATURE_BYTES:
        raise ReportMismatch(
            f"evidence signature is {len(signature)} bytes; an Ed25519 signature is {_SIGNATURE_BYTES}"
        )
    round_id, member_id = _field(doc, "round_id", str, "report"), _field(doc, "member_id", str, "report")
    named = _field(evidence, "key_id", str, "evidence")
    try:
        opened = open_header(public_key, header, signature, round_id=round_id, member_id=member_id)
    except InvalidSignature as exc:
        # The key the report names is a hint only (nothing signs it): the likely cause is the key given.
        hint = (
            f"; the report names coordinator key {named}: is --coordinator-key the signing.pub of this report's "
            "alliance?"
            if named != key_id(public_key)
            else ""
        )
        raise ReportMismatch(f"{exc}{hint}") from None
    except InvalidRequest as exc:
        raise ReportMismatch(str(exc)) from None
    if named != key_id(public_key):
        raise ReportMismatch(f"evidence names key {named}, but the signature verifies with key {key_id(public_key)}")
    for name, kind in (("key_epoch", str), ("threshold", int), ("submitted_count", int)):
        claimed, signed = _field(doc, name, kind, "report"), getattr(opened, name)
        if claimed != signed:
            raise ReportMismatch(f"{name} {claimed!r} in the report, {signed!r} in the signed result")
    return opened, header, signature


def _proof(obj: dict[str, Any], where: str, header: ResultHeader) -> tuple[LeafProof, MatchedToken]:
    proof = _field(obj, "proof", dict, where)
    index = _field(proof, "leaf_index", int, f"{where} proof")
    path = _field(proof, "inclusion_path_b64", list, f"{where} proof")
    try:
        leaf = base64.b64decode(_field(proof, "leaf_b64", str, f"{where} proof"), validate=True)
        nodes = tuple(base64.b64decode(node, validate=True) for node in path if isinstance(node, str))
    except binascii.Error:
        raise ReportMismatch(f"{where}: proof is not base64") from None
    if len(nodes) != len(path):
        raise ReportMismatch(f"{where}: proof inclusion path must be a list of strings")
    lead = LeafProof(index, leaf, nodes)
    try:
        return lead, check_leaf(header, lead)
    except (ResultMismatch, InvalidRequest) as exc:
        raise ReportMismatch(f"{where}: not in the signed result ({exc})") from None


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


def _lead(obj: Any, number: int, header: ResultHeader, seen: dict[bytes, int]) -> tuple[Lead, LeafProof, MatchedToken]:
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
    proof, match = _proof(obj, where, header)
    if match.match_token != token:
        raise ReportMismatch(f"{where}: match token not in the signed result (its proof is for another token)")
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
            f"{where}: {plural(len(peers) + unreadable, 'peer label')} in the report, "
            f"{len(match.peer_labels)} in the signed result"
        )
    _check_named_peers(peers, match, where)
    backed = _field(obj, "backed_count", int, where, optional=True)
    if backed is not None and not header.threshold <= backed < holders:
        raise ReportMismatch(
            f"{where}: backed_count {backed} must be at least the threshold {header.threshold} and below the "
            f"holder count {holders} (a lead whose labels back fewer than the threshold is no lead)"
        )
    severity = _field(obj, "severity", str, where, optional=True) or ""
    case_ref = _field(obj, "case_ref", str, where, optional=True) or ""
    spelling = _field(obj, "spelling", str, where, optional=True) or ""
    value = _field(obj, "value", str, where)
    _check_spelling(kind, spelling, value, where)
    lead = Lead(
        kind,
        value,
        _field(obj, "category", str, where),
        severity,
        case_ref,
        _date(obj, "first_seen", where),
        holders,
        token,
        tuple(peers),
        unreadable,
        spelling,
        backed,
    )
    return lead, proof, match


def _check_spelling(kind: str, spelling: str, value: str, where: str) -> None:
    """The member's own spelling must be a way of writing the value: the coordinator's signature covers
    the token, and the re-derivation (``--online``) the value, never the spelling, so a spelling that
    names another person would otherwise pass both (no value is quoted in the message)."""
    if not spelling:
        return  # Kept before spellings were (and then shown as the value alone).
    try:
        canonical = normalize(kind, spelling).canonical
    except InvalidIdentifier as exc:
        raise ReportMismatch(f"{where}: spelling is not a valid {kind} ({exc.reason})") from None
    if canonical != value:  # Both are in the report: no secret to compare in constant time.
        raise ReportMismatch(f"{where}: spelling is another {kind} than the value (it does not normalize to it)")


def _check_named_peers(peers: list[LeadLabel], match: MatchedToken, where: str) -> None:
    """A peer label may name only a member the coordinator attests as a sealer of this lead's labels."""
    attested = Counter(peer.sealer for peer in match.peer_labels if peer.sealer)
    for number, peer in enumerate(peers, 1):
        if peer.member is None:
            continue
        if attested[peer.member] < 1:
            raise ReportMismatch(
                f"{where} peer label {number}: names member {peer.member!r}, whom the signed result does not "
                "attest as a sealer of this lead's labels"
            )
        attested[peer.member] -= 1


def _compare_summary(claimed: dict[str, Any], expected: dict[str, Any], path: str = "summary") -> None:
    for name in sorted(set(claimed) | set(expected)):
        mine, theirs = claimed.get(name), expected.get(name)
        where = f"{path}[{name!r}]" if path != "summary" else f"summary {name}"
        if isinstance(mine, dict) and isinstance(theirs, dict):
            _compare_summary(mine, theirs, where)
        elif mine != theirs:
            raise ReportMismatch(f"{where} {mine!r} in the report, {theirs!r} from its leads")


def verify_report_json(
    data: bytes, public_key: bytes, *, ca_cert_pem: bytes, crl_pem: bytes | None = None
) -> VerifiedReport:
    """Check a signed JSON report (``render_signed_json``): the member node's signature under the
    alliance CA ``ca_cert_pem`` (and ``crl_pem``), then the coordinator's with its raw Ed25519
    ``public_key``.

    Raises:
        ReportMismatch: the report is not a known report format; the member signature is missing,
            does not verify, its certificate is not a valid, unrevoked member certificate of the
            alliance CA naming the report's member, or a field differs from what it signed; the
            coordinator's signature does not verify, its result is for another round or member,
            or anything the report states differs from the signed result or from its own leads.
            The message names the lead and the field (and both values where it knows them).
        ConfigurationError: the CA certificate or the CRL cannot be used.
    """
    doc = _parse(data)
    signer = check_member_signature(doc, ca_cert_pem=ca_cert_pem, crl_pem=crl_pem)
    header, header_bytes, signature = _signed_header(doc, public_key)
    if header.member_key_pin and not hmac.compare_digest(header.member_key_pin, signer.key_pin):
        raise ReportMismatch(
            f"the report is signed with key sha256:{signer.key_pin.hex()}, but the coordinator's result names "
            f"member {header.member_id}'s enrolled key sha256:{header.member_key_pin.hex()}"
        )
    seen: dict[bytes, int] = {}
    checked = [_lead(obj, number, header, seen) for number, obj in enumerate(_field(doc, "leads", list, "report"), 1)]
    leads = [lead for lead, _, _ in checked]
    result = MemberResult(
        header.round_id,
        header.member_id,
        header.key_epoch,
        header.threshold,
        header.submitted_count,
        tuple(match for _, _, match in checked),
    )
    generated_at = _time(_field(doc, "generated_at", str, "report"))
    rebuilt: LeadReport = build_report(
        member_id=result.member_id,
        round_name=_field(doc, "round_name", str, "report"),
        result=result,
        leads=leads,
        header=header_bytes,
        signature=signature,
        key_id=key_id(public_key),
        proofs={lead.match_token: proof for lead, proof, _ in checked},
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
        signed_matches=header.match_count,
        by_holder_count=rebuilt.by_holder_count(),
        signer=signer,
        key_enrolled=bool(header.member_key_pin),
        tokens=tuple(
            ReportedToken(number, lead.type, lead.canonical, lead.match_token) for number, lead in enumerate(leads, 1)
        ),
    )


def check_rederived(report: VerifiedReport, derived: Mapping[tuple[str, str], bytes]) -> None:
    """Check that each lead's identifier derives the match token the report attaches to it.

    ``derived`` maps ``(type, value)`` to the token the custodians derive from it now (under the
    report's key epoch). This is what the member's signature alone cannot show: that the node
    attached each signed token to the identifier it came from.

    Raises:
        ReportMismatch: a lead's identifier derives another token (naming each such lead), or was
            not derived at all.
    """
    problems = []
    for token in report.tokens:
        again = derived.get((token.type, token.value))
        if again is None:
            problems.append(f"{token.where}: its identifier was not re-derived")
        elif not hmac.compare_digest(again, token.match_token):
            problems.append(
                f"{token.where}: its value derives another match token than the one in the signed result "
                "(the token belongs to another identifier)"
            )
    if problems:
        raise ReportMismatch("; ".join(problems))
