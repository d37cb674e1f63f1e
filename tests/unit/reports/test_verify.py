"""Verifying a JSON report: a valid one passes; each forgery fails with its exact reason.

Two kinds of forger. Whoever copies a report (an outsider) can change any byte but cannot sign
as the member: the member signature names what changed. A dishonest member node can sign
anything: the coordinator's signature still binds tokens, counts and sealed labels, and only
``--online`` (``check_rederived``, end to end in tests/integration/test_cli_reports.py) binds
identifiers to tokens.
"""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from alliance_psi.crypto.signing import CertificateKey, SigningKey, key_id
from alliance_psi.errors import ConfigurationError, InvalidSignature
from alliance_psi.protocol.model import MatchedToken, Role
from alliance_psi.protocol.result_codec import decode_leaf, encode_leaf
from alliance_psi.reports import (
    ReportMismatch,
    ReportSigner,
    VerifiedReport,
    check_rederived,
    render_json,
    sign_document,
    verify_report_json,
)
from alliance_psi.services import pki
from alliance_psi.services.pki import spki_sha256
from tests.unit.reports.support import (
    CA,
    CERTS,
    KEY,
    MEMBER_ID,
    PLANTED,
    ROUND_NAME,
    SIGNER,
    make_report,
    member_result,
    signed,
    signed_json,
)

REPORT = make_report()
SIGNED = signed_json(REPORT)
DOC = json.loads(SIGNED)
OTHER_KEY = SigningKey.generate()
SERIAL_A, SERIAL_B = CERTS["bank-a"].serial, CERTS["bank-b"].serial


def verify(data: bytes, *, crl: bytes | None = None, ca: bytes = CA.cert_pem) -> VerifiedReport:
    return verify_report_json(data, KEY.public_key, ca_cert_pem=ca, crl_pem=crl)


def _dump(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, ensure_ascii=False).encode("utf-8")


def outsider(change: Callable[[dict[str, Any]], object]) -> bytes:
    """The signed report, changed by someone who cannot sign as the member."""
    doc = copy.deepcopy(DOC)
    change(doc)
    return _dump(doc)


def resigned(change: Callable[[dict[str, Any]], object], by: ReportSigner = SIGNER) -> bytes:
    """The report, changed and signed again by ``by`` (the member node itself, by default)."""
    doc = copy.deepcopy(DOC)
    del doc["member_signature"]
    change(doc)
    return _dump(sign_document(doc, by, signed_at=datetime.now(UTC)))


def as_member(cert: pki.IssuedCertificate, member_id: str = MEMBER_ID) -> ReportSigner:
    """A node signing with ``cert`` as if it were ``member_id`` (what ``ReportSigner.load`` refuses)."""
    return ReportSigner(member_id, cert.cert_pem, CertificateKey.from_pem(cert.key_pem))


def _set(path: str, value: object) -> Callable[[dict[str, Any]], None]:
    def change(doc: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target: Any = doc
        for part in parents:
            target = target[int(part)] if part.isdigit() else target[part]
        target[int(last) if last.isdigit() else last] = value

    return change


def test_a_valid_report_passes() -> None:
    checked = verify(SIGNED)
    assert (checked.round_id, checked.round_name, checked.member_id, checked.key_epoch) == (
        "r-2025q2",
        ROUND_NAME,
        "bank-a",
        "2025-06",
    )
    assert (checked.threshold, checked.key_id, checked.leads, checked.signed_matches, checked.omitted) == (
        2,
        KEY.key_id,
        7,
        7,
        0,
    )
    assert checked.by_holder_count == {4: 1, 3: 2, 2: 4}
    signer = checked.signer
    assert (signer.member_id, signer.serial, signer.key_pin, signer.revocation_checked) == (
        "bank-a",
        SERIAL_A,
        spki_sha256(CERTS["bank-a"].cert_pem),
        False,
    )
    assert checked.key_enrolled  # The signed result names bank-a's key, and bank-a's node signed with it.
    assert [(t.number, t.type, t.value, t.match_token) for t in checked.tokens] == [
        (n, lead["type"], lead["value"], bytes.fromhex(lead["match_token"])) for n, lead in enumerate(DOC["leads"], 1)
    ]
    assert "+8613915274680" not in repr(checked)


def test_the_signature_covers_values_not_layout() -> None:
    # Another JSON writer (ASCII escapes, other key order, no indentation) keeps the signature valid.
    rewritten = json.dumps(json.loads(SIGNED), ensure_ascii=True, sort_keys=False, separators=(",", ":"))
    assert verify(rewritten.encode("ascii")).leads == 7


def test_a_crl_that_does_not_list_the_signer_passes_and_says_it_was_checked() -> None:
    crl = pki.revoke(CA, [SERIAL_B])
    assert verify(SIGNED, crl=crl).signer.revocation_checked


def test_a_report_may_leave_out_withdrawn_identifiers_if_its_summary_agrees() -> None:
    # The member withdrew the QQ number after the round: the signed result still has it, and the
    # report proves its six other leads against the result's root.
    summary = json.loads(signed_json(make_report(tuple(p for p in PLANTED if p.type != "qq"))))["summary"]

    def withdraw(doc: dict[str, Any]) -> None:
        doc["leads"] = [lead for lead in doc["leads"] if lead["type"] != "qq"]
        doc["summary"] = summary

    checked = verify(resigned(withdraw))
    assert (checked.leads, checked.signed_matches, checked.omitted) == (6, 7, 1)


def _swap_values(doc: dict[str, Any]) -> None:
    first, second = doc["leads"][0], doc["leads"][1]
    first["value"], second["value"] = second["value"], first["value"]


def _swap_certificate(doc: dict[str, Any]) -> None:
    doc["member_signature"]["certificate_pem"] = CERTS["bank-b"].cert_pem.decode()


def _add_lead(doc: dict[str, Any]) -> None:
    doc["leads"].append({**doc["leads"][0], "value": "+8613967021853"})


def _swap_leads(doc: dict[str, Any]) -> None:
    doc["leads"][0], doc["leads"][1] = doc["leads"][1], doc["leads"][0]


SIGNED_BY_A = "from what member bank-a signed"
# What someone who copies the report may change: every field is covered by the member signature.
OUTSIDER_FORGERIES = {
    "identifier value": (_set("leads.0.value", "+8613967021853"), f"lead 1 (phone): value differs {SIGNED_BY_A}"),
    "identifier type": (_set("leads.1.type", "bank_card"), f"lead 2 (bank_card): type differs {SIGNED_BY_A}"),
    "values swapped between two leads": (
        _swap_values,
        f"lead 1 (phone): value differs {SIGNED_BY_A}; lead 2 (id_card): value differs {SIGNED_BY_A}",
    ),
    "own spelling": (_set("leads.0.spelling", "138 0013 8001"), f"lead 1 (phone): spelling differs {SIGNED_BY_A}"),
    "own case reference": (_set("leads.0.case_ref", "AJ-2025-0043"), f"lead 1 (phone): case_ref differs {SIGNED_BY_A}"),
    "peer member name": (
        _set("leads.0.peer_labels.1.member", "另一家银行"),
        f"lead 1 (phone): peer_labels[1].member differs {SIGNED_BY_A}",
    ),
    "peer member name added": (
        _set("leads.0.peer_labels.0.member", "另一家银行"),
        f"lead 1 (phone): peer_labels differs {SIGNED_BY_A}",
    ),
    "holder count": (_set("leads.1.holder_count", 4), f"lead 2 (id_card): holder_count differs {SIGNED_BY_A}"),
    "two fields of one lead": (
        lambda d: d["leads"][2].update(category="telecom_fraud", severity="level1"),
        f"lead 3 (bank_card): category, severity differ {SIGNED_BY_A}",
    ),
    "field added to a lead": (
        _set("leads.3.note", "checked"),
        f"lead 4 (email): note (not signed) differs {SIGNED_BY_A}",
    ),
    "field removed from a lead": (
        lambda d: d["leads"][3].pop("first_seen"),
        f"lead 4 (email): first_seen (removed) differs {SIGNED_BY_A}",
    ),
    "lead added": (_add_lead, "the report lists 8 leads, member bank-a signed 7; lead 8 (phone) is not one it signed"),
    "lead dropped": (
        lambda d: d["leads"].pop(2),
        "the report lists 6 leads, member bank-a signed 7; signed lead 3 is missing",
    ),
    "leads reordered": (_swap_leads, "lead 1 (id_card) was signed as lead 2; lead 2 (phone) was signed as lead 1"),
    "round name": (_set("round_name", "另一轮"), f"report: round_name differs {SIGNED_BY_A}"),
    "generation time": (_set("generated_at", "2025-07-30T08:15:00Z"), f"report: generated_at differs {SIGNED_BY_A}"),
    "summary": (
        lambda d: d["summary"]["by_holder_count"].update({"2": 5}),
        f"report: summary.by_holder_count.2 differs {SIGNED_BY_A}",
    ),
    "certificate swapped for another member's": (
        _swap_certificate,
        (
            f"member signature does not verify with the embedded certificate (member bank-b, serial {SERIAL_B:#x}): "
            "the certificate or the signature block changed after signing"
        ),
    ),
    "signing time": (
        _set("member_signature.signed_at", "2025-01-01T00:00:00Z"),
        (
            f"member signature does not verify with the embedded certificate (member bank-a, serial {SERIAL_A:#x}): "
            "the certificate or the signature block changed after signing"
        ),
    ),
    "signature removed": (
        lambda d: d.pop("member_signature"),
        "report: no member signature (field 'member_signature'): its member node did not sign it",
    ),
    "certificate not PEM": (
        _set("member_signature.certificate_pem", "x"),
        "member signature: certificate_pem is not a PEM X.509 certificate",
    ),
    "signature not base64": (
        _set("member_signature.signature_b64", "!!"),
        "member signature: signature_b64 is not base64",
    ),
    "other algorithm": (
        _set("member_signature.algorithm", "none"),
        "member signature: algorithm 'none' is not 'ECDSA-P256-SHA256'",
    ),
    "unknown version": (_set("format_version", 4), "unknown report format version 4 (this verifier knows 3)"),
    "whole-result version 2": (
        _set("format_version", 2),
        (
            "report format version 2 carries the coordinator's whole result as one signed blob; this verifier "
            "checks results as signed Merkle trees: write the report again with "
            "`alliance-psi node report ROUND --format json`"
        ),
    ),
    "unsigned version 1": (
        _set("format_version", 1),
        (
            "report format version 1 has no member signature (it was written before reports were signed): "
            "write the report again with `alliance-psi node report ROUND --format json`"
        ),
    ),
    "other format": (_set("format", "something-else"), "not a lead report: 'format' is not 'alliance-psi/lead-report'"),
}


@pytest.mark.parametrize("change, message", list(OUTSIDER_FORGERIES.values()), ids=list(OUTSIDER_FORGERIES))
def test_each_outsider_forgery_fails_naming_what_changed(
    change: Callable[[dict[str, Any]], object], message: str
) -> None:
    with pytest.raises(ReportMismatch) as raised:
        verify(outsider(change))
    assert str(raised.value) == message


def test_a_report_resigned_by_another_member_fails() -> None:
    with pytest.raises(ReportMismatch) as raised:
        verify(resigned(lambda d: None, by=as_member(CERTS["bank-b"])))
    assert str(raised.value) == "the report is member 'bank-a''s, but member bank-b signed it"


def test_a_report_claimed_by_the_member_that_signs_it_fails_on_the_coordinators_signature() -> None:
    with pytest.raises(ReportMismatch) as raised:
        verify(resigned(_set("member_id", "bank-b"), by=as_member(CERTS["bank-b"], "bank-b")))
    assert str(raised.value) == ("result is for round 'r-2025q2' and member 'bank-a', expected 'r-2025q2' and 'bank-b'")


@pytest.mark.parametrize(
    ("spelling", "message"),
    [
        ("139 6702 1853", "lead 1 (phone): spelling is another phone than the value (it does not normalize to it)"),
        ("not a phone", "lead 1 (phone): spelling is not a valid phone"),
    ],
)
def test_a_spelling_that_is_not_the_value_fails_even_resigned_by_the_member(spelling: str, message: str) -> None:
    # Nothing else covers the spelling (adversary round 2, #4): the member's own signature does, but the
    # member (or whoever holds the CA and the coordinator key) could sign another person's number there.
    with pytest.raises(ReportMismatch) as raised:
        verify(resigned(_set("leads.0.spelling", spelling)))
    assert str(raised.value).startswith(message)


def test_a_certificate_the_ca_holder_minted_for_the_member_fails_on_the_enrolled_key() -> None:
    # The CA holder issues another bank-a certificate with its own key: the certificate is valid,
    # but the coordinator's signed result names the key bank-a enrolled.
    minted = pki.issue(CA, role=Role.MEMBER, name=MEMBER_ID)
    with pytest.raises(ReportMismatch) as raised:
        verify(resigned(lambda d: None, by=as_member(minted)))
    assert str(raised.value) == (
        f"the report is signed with key sha256:{spki_sha256(minted.cert_pem).hex()}, but the coordinator's result "
        f"names member bank-a's enrolled key sha256:{spki_sha256(CERTS['bank-a'].cert_pem).hex()}"
    )


def test_a_result_that_names_no_key_leaves_the_key_unproven() -> None:
    checked = verify(signed_json(make_report(member_key_pin=b"")))
    assert not checked.key_enrolled
    assert checked.coverage()[-1].endswith(
        "; that this signing key is the one the coordinator enrolled (the result names no key)"
    )
    assert "enrolled" not in checked.coverage()[0] + checked.coverage()[1]


def test_a_signer_from_another_ca_fails() -> None:
    forger_ca = pki.init_ca("Forger")
    forged = pki.issue(forger_ca, role=Role.MEMBER, name=MEMBER_ID)
    with pytest.raises(ReportMismatch) as raised:
        verify(resigned(lambda d: None, by=as_member(forged)))
    assert str(raised.value) == (
        f"the report's signing certificate (member bank-a, serial {forged.serial:#x}) was not issued by the alliance CA"
    )


def test_a_certificate_of_another_role_fails() -> None:
    admin = pki.issue(CA, role=Role.ADMIN, name="operator")
    with pytest.raises(ReportMismatch) as raised:
        verify(resigned(lambda d: None, by=as_member(admin)))
    assert (
        str(raised.value)
        == f"the report's signing certificate (admin operator, serial {admin.serial:#x}) is not a member's"
    )


def test_a_member_certificate_without_client_use_fails() -> None:
    # Issued by the alliance CA with a member identity, but for code signing only: not a member's
    # certificate profile, so the path validation of pyca/cryptography refuses it.
    ca_cert = x509.load_pem_x509_certificate(CA.cert_pem)
    ca_key = serialization.load_pem_private_key(CA.key_pem, password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, MEMBER_ID)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(f"urn:alliance-psi:member:{MEMBER_ID}")]),
            critical=False,
        )
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    signer = ReportSigner(MEMBER_ID, pem, CertificateKey.from_pem(key_pem))
    with pytest.raises(ReportMismatch) as raised:
        verify(resigned(lambda d: None, by=signer))
    assert str(raised.value).startswith(
        f"the report's signing certificate (member bank-a, serial {cert.serial_number:#x}) is not an alliance "
        "client certificate: "
    )


def test_a_revoked_certificate_fails_whatever_the_signing_time() -> None:
    crl = pki.revoke(CA, [SERIAL_A])
    with pytest.raises(ReportMismatch) as raised:
        verify(SIGNED, crl=crl)
    assert str(raised.value) == (
        f"the report's signing certificate (member bank-a, serial {SERIAL_A:#x}) is revoked by the CRL"
    )


def test_a_crl_the_ca_did_not_sign_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="CRL is not signed by the alliance CA"):
        verify(SIGNED, crl=pki.revoke(pki.init_ca("Forger"), []))


def test_a_certificate_not_valid_at_the_signing_time_fails() -> None:
    long_ago = datetime(2024, 1, 1, tzinfo=UTC)
    expired = pki.issue(CA, role=Role.MEMBER, name=MEMBER_ID, not_before=long_ago, valid_days=1)
    with pytest.raises(ReportMismatch) as raised:
        verify(resigned(lambda d: None, by=as_member(expired)))
    assert str(raised.value).startswith(
        f"the report's signing certificate (member bank-a, serial {expired.serial:#x}) was not valid when the report "
        "says it was signed, "
    )
    assert str(raised.value).endswith("(valid 2024-01-01 to 2024-01-02)")


def test_a_report_signed_before_its_certificate_was_valid_fails() -> None:
    doc = copy.deepcopy(DOC)
    del doc["member_signature"]
    early = _dump(sign_document(doc, SIGNER, signed_at=datetime.now(UTC) - timedelta(days=2)))
    with pytest.raises(ReportMismatch, match="was not valid when the report says it was signed"):
        verify(early)


def _other_members_evidence(doc: dict[str, Any]) -> None:
    header, signature = signed(member_result(member_id="bank-b"))
    doc["evidence"]["header_b64"] = base64.b64encode(header).decode()
    doc["evidence"]["signature_b64"] = base64.b64encode(signature).decode()


def _flip_header_byte(doc: dict[str, Any]) -> None:
    header = bytearray(base64.b64decode(doc["evidence"]["header_b64"]))
    header[-1] ^= 1
    doc["evidence"]["header_b64"] = base64.b64encode(bytes(header)).decode()


def _proof_of_lead(number: int) -> Callable[[dict[str, Any]], None]:
    """Give lead 1 the proof (leaf and path) of another lead."""

    def change(doc: dict[str, Any]) -> None:
        doc["leads"][0]["proof"] = copy.deepcopy(doc["leads"][number - 1]["proof"])

    return change


def _forged_leaf(doc: dict[str, Any]) -> None:
    # A leaf with a raised holder count, and the lead's report raised to match: the proof fails.
    proof = doc["leads"][0]["proof"]
    leaf = decode_leaf(base64.b64decode(proof["leaf_b64"]))
    forged = encode_leaf(MatchedToken(leaf.match_token, 5, leaf.peer_labels))
    proof["leaf_b64"] = base64.b64encode(forged).decode()
    doc["leads"][0]["holder_count"] = 5


def _shortened_path(doc: dict[str, Any]) -> None:
    doc["leads"][1]["proof"]["inclusion_path_b64"].pop()


def _extra_peer_label(doc: dict[str, Any]) -> None:
    doc["leads"][3]["peer_labels"].append(
        {"category": "telecom_fraud", "severity": None, "first_seen": None, "case_ref": None}
    )


ONLY_JSON = (
    "Only the signed JSON report (`alliance-psi node report ROUND --format json`) can be verified: the HTML and CSV "
    "reports are for reading, not evidence"
)
BAD_KEY = f"the coordinator's signature over the result header: signature does not verify against key {KEY.key_id}"
# What the member node itself may sign: the coordinator's signature still binds these.
MEMBER_FORGERIES = {
    "holder count": (
        _set("leads.1.holder_count", 4),
        "lead 2 (id_card): holder_count 4 in the report, 3 in the signed result",
    ),
    "lead with a fake token": (
        lambda d: d["leads"].append({**d["leads"][0], "match_token": "ab" * 16}),
        "lead 8 (phone): match token not in the signed result (its proof is for another token)",
    ),
    "another lead's proof": (
        _proof_of_lead(2),
        "lead 1 (phone): match token not in the signed result (its proof is for another token)",
    ),
    "forged leaf": (
        _forged_leaf,
        (
            "lead 1 (phone): not in the signed result (leaf 6 is not in the signed result: "
            "inclusion proof: does not lead to the signed root)"
        ),
    ),
    "shortened inclusion path": (
        _shortened_path,
        (
            "lead 2 (id_card): not in the signed result (leaf 1 is not in the signed result: "
            "inclusion proof: shorter than the path to the root)"
        ),
    ),
    "moved leaf index": (
        _set("leads.2.proof.leaf_index", 2),
        (
            "lead 3 (bank_card): not in the signed result (leaf 2 is not in the signed result: "
            "inclusion proof: does not lead to the signed root)"
        ),
    ),
    "repeated lead": (lambda d: d["leads"].append(d["leads"][0]), "lead 8 (phone): match token repeats lead 1"),
    "token not hex": (
        _set("leads.0.match_token", "zz" * 16),
        "lead 1 (phone): match token is not 32 lower-case hex digits",
    ),
    "removed lead, summary kept": (
        lambda d: d["leads"].pop(2),
        "summary by_category['loan_intermediary'] 2 in the report, 1 from its leads",
    ),
    "summary count": (_set("summary.leads", 99), "summary leads 99 in the report, 7 from its leads"),
    "peer named by the member": (
        _set("leads.0.peer_labels.0.member", "城商行联合体"),
        (
            "lead 1 (phone) peer label 1: names member '城商行联合体', whom the signed result does not attest as "
            "a sealer of this lead's labels"
        ),
    ),
    "peer renamed by the member": (
        _set("leads.0.peer_labels.1.member", "另一家银行"),
        (
            "lead 1 (phone) peer label 2: names member '另一家银行', whom the signed result does not attest as "
            "a sealer of this lead's labels"
        ),
    ),
    "extra peer label": (_extra_peer_label, "lead 4 (email): 2 peer labels in the report, 1 in the signed result"),
    "round id": (
        _set("round_id", "r-other"),
        "result is for round 'r-2025q2' and member 'bank-a', expected 'r-other' and 'bank-a'",
    ),
    "other member's result": (
        _other_members_evidence,
        "result is for round 'r-2025q2' and member 'bank-b', expected 'r-2025q2' and 'bank-a'",
    ),
    "threshold": (_set("threshold", 3), "threshold 3 in the report, 2 in the signed result"),
    "key epoch": (_set("key_epoch", "2025-07"), "key_epoch '2025-07' in the report, '2025-06' in the signed result"),
    "submitted count": (_set("submitted_count", 10), "submitted_count 10 in the report, 1200 in the signed result"),
    "header byte": (_flip_header_byte, BAD_KEY),
    "truncated signature": (
        lambda d: d["evidence"].update(
            signature_b64=base64.b64encode(base64.b64decode(d["evidence"]["signature_b64"])[:-1]).decode()
        ),
        "evidence signature is 63 bytes; an Ed25519 signature is 64",
    ),
    "signature not base64": (_set("evidence.signature_b64", "!!"), "evidence: signature_b64 is not base64"),
    "key id": (
        _set("evidence.key_id", "00" * 8),
        f"evidence names key {'00' * 8}, but the signature verifies with key {KEY.key_id}",
    ),
    "missing field": (lambda d: d.pop("threshold"), "report: field 'threshold' is missing"),
    "wrong type": (_set("leads.0.holder_count", "4"), "lead 1 (phone): field 'holder_count' must be an integer"),
    "bad peer category": (
        _set("leads.0.peer_labels.0.category", "nope"),
        (
            "lead 1 (phone) peer label 1: category 'nope': one of proxy_rights_defense, anti_collection, "
            "malicious_complaint, professional_complainant, loan_intermediary, wool_party, "
            "money_laundering, telecom_fraud, account_rental, other"
        ),
    ),
    "peer case reference with an escape sequence": (
        _set("leads.0.peer_labels.0.case_ref", "ZJ-\x1b[2J"),
        "lead 1 (phone) peer label 1: case_ref: control character U+001B",
    ),
    "naive time": (
        _set("generated_at", "2025-06-30T08:15:00"),
        "report: generated_at '2025-06-30T08:15:00' is not an ISO 8601 time with a time zone",
    ),
}


@pytest.mark.parametrize("change, message", list(MEMBER_FORGERIES.values()), ids=list(MEMBER_FORGERIES))
def test_each_forgery_the_member_signs_fails_on_the_coordinators_signature(
    change: Callable[[dict[str, Any]], object], message: str
) -> None:
    with pytest.raises(ReportMismatch) as raised:
        verify(resigned(change))
    assert str(raised.value) == message


def test_a_report_checked_with_the_wrong_coordinator_key_fails() -> None:
    with pytest.raises(InvalidSignature) as raised:
        verify_report_json(SIGNED, OTHER_KEY.public_key, ca_cert_pem=CA.cert_pem)
    assert str(raised.value) == (
        "the coordinator's signature over the result header: signature does not verify against key "
        f"{key_id(OTHER_KEY.public_key)}; the report names coordinator key {KEY.key_id}: is --coordinator-key the "
        "signing.pub of this report's alliance?"
    )


def test_the_unsigned_rendering_is_not_evidence() -> None:
    with pytest.raises(ReportMismatch) as raised:
        verify(render_json(REPORT))
    assert (
        str(raised.value) == "report: no member signature (field 'member_signature'): its member node did not sign it"
    )


@pytest.mark.parametrize(
    "data, message",
    [
        (b"", f"not a lead report: invalid JSON (Expecting value at line 1 column 1). {ONLY_JSON}"),
        (
            b"<!DOCTYPE html>\n<html>",
            f"not a lead report: invalid JSON (Expecting value at line 1 column 1). {ONLY_JSON}",
        ),
        (b"\xff\xfe", "not a lead report: not UTF-8"),
        (b"[1, 2]", "not a lead report: 'format' is not 'alliance-psi/lead-report'"),
        (b'{"format": 1, "format": 2}', "not a lead report: key 'format' appears twice in one object"),
        (b'{"format": NaN}', "not a lead report: NaN is not a JSON number"),
    ],
)
def test_what_is_not_a_report_is_refused(data: bytes, message: str) -> None:
    with pytest.raises(ReportMismatch) as raised:
        verify(data)
    assert str(raised.value) == message


@pytest.mark.parametrize(
    "old, new, message",
    [
        ('"value": "+8613915274680"', '"value": "\\ud800"', "input contains non-UTF-8 codepoints"),
        ('"holder_count": 4', '"holder_count": 1e400', "inf is not representable in JCS"),
    ],
    ids=["lone surrogate", "infinite number"],
)
def test_a_value_no_signature_can_cover_is_refused(old: str, new: str, message: str) -> None:
    text = SIGNED.decode("utf-8")
    assert old in text
    with pytest.raises(ReportMismatch) as raised:
        verify(text.replace(old, new, 1).encode("utf-8"))
    assert str(raised.value) == f"not a lead report: it holds a value RFC 8785 cannot encode ({message})"


def test_a_repeated_key_inside_a_lead_is_refused() -> None:
    # Two JSON readers could see two different values: one the signature covers, one it does not.
    text = SIGNED.decode("utf-8").replace('"value": "+8613915274680"', '"value": "+8613915274680", "value": "x"', 1)
    with pytest.raises(ReportMismatch, match="key 'value' appears twice in one object"):
        verify(text.encode("utf-8"))


def test_rederived_tokens_must_equal_the_reported_ones() -> None:
    checked = verify(SIGNED)
    derived = {(t.type, t.value): t.match_token for t in checked.tokens}
    check_rederived(checked, derived)
    first, second = checked.tokens[0], checked.tokens[1]
    derived[(first.type, first.value)], derived[(second.type, second.value)] = second.match_token, first.match_token
    with pytest.raises(ReportMismatch) as raised:
        check_rederived(checked, derived)
    wrong = "its value derives another match token than the one in the signed result (the token belongs to another identifier)"
    assert str(raised.value) == f"lead 1 (phone): {wrong}; lead 2 (id_card): {wrong}"
    del derived[(first.type, first.value)]
    with pytest.raises(ReportMismatch, match=r"^lead 1 \(phone\): its identifier was not re-derived;"):
        check_rederived(checked, derived)


def test_the_signer_must_hold_the_members_certificate_and_its_key() -> None:
    bank_a, bank_b = CERTS["bank-a"], CERTS["bank-b"]
    with pytest.raises(ConfigurationError) as raised:
        ReportSigner.load(bank_b.cert_pem, bank_b.key_pem, member_id=MEMBER_ID)
    assert str(raised.value) == "cannot sign member 'bank-a''s report: the certificate names member 'bank-b'"
    with pytest.raises(ConfigurationError) as raised:
        ReportSigner.load(bank_a.cert_pem, bank_b.key_pem, member_id=MEMBER_ID)
    assert str(raised.value) == "the private key is not the key of the certificate"
    with pytest.raises(ConfigurationError, match="certificate key must be ECDSA P-256"):
        ReportSigner.load(bank_a.cert_pem, KEY.to_pem(), member_id=MEMBER_ID)
    with pytest.raises(ValueError, match="a report of member 'bank-b' cannot be signed as 'bank-a'"):
        sign_document({**DOC, "member_id": "bank-b"}, SIGNER, signed_at=datetime.now(UTC))


def test_a_lead_may_carry_the_holders_its_labels_back_within_the_threshold_and_the_signed_count() -> None:
    # A lead whose counted labels back fewer holders than signed (protocol.leads.check_labels) stands with
    # both counts; the member signs the backed one, the coordinator's signature covers the other.
    checked = verify(resigned(_set("leads.0.backed_count", 3)))
    assert checked.leads == 7
    for backed in (1, 4, 5):  # Below the threshold (no lead), or not below the signed count of 4.
        with pytest.raises(ReportMismatch) as raised:
            verify(resigned(_set("leads.0.backed_count", backed)))
        assert str(raised.value) == (
            f"lead 1 (phone): backed_count {backed} must be at least the threshold 2 and below the holder count 4 "
            "(a lead whose labels back fewer than the threshold is no lead)"
        )
    with pytest.raises(ReportMismatch, match="field 'backed_count' must be"):
        verify(resigned(_set("leads.0.backed_count", "3")))
