"""Verifying a JSON report: a valid one passes; each tampering fails with its exact reason."""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Callable
from typing import Any

import pytest

from alliance_psi.crypto.signing import SigningKey, key_id
from alliance_psi.errors import InvalidSignature
from alliance_psi.reports import ReportMismatch, VerifiedReport, render_json, verify_report_json
from tests.unit.reports.support import KEY, PLANTED, ROUND_NAME, make_report, member_result, signed

REPORT = make_report()
DOC = json.loads(render_json(REPORT))
OTHER_KEY = SigningKey.generate()


def _tampered(change: Callable[[dict[str, Any]], object]) -> bytes:
    doc = copy.deepcopy(DOC)
    change(doc)
    return json.dumps(doc, ensure_ascii=False).encode("utf-8")


def test_a_valid_report_passes() -> None:
    checked = verify_report_json(render_json(REPORT), KEY.public_key)
    assert isinstance(checked, VerifiedReport)
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


def test_a_report_may_leave_out_withdrawn_identifiers_if_its_summary_agrees() -> None:
    # The member withdrew the QQ number after the round: the signed result still has it.
    result = member_result()
    payload, signature = signed(result)
    withdrawn = make_report(tuple(p for p in PLANTED if p.type != "qq"))
    doc = json.loads(render_json(withdrawn))
    doc["evidence"]["payload_b64"] = base64.b64encode(payload).decode()
    doc["evidence"]["signature_b64"] = base64.b64encode(signature).decode()
    checked = verify_report_json(json.dumps(doc).encode(), KEY.public_key)
    assert (checked.leads, checked.signed_matches, checked.omitted) == (6, 7, 1)


def _set(path: str, value: object) -> Callable[[dict[str, Any]], None]:
    def change(doc: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target: Any = doc
        for part in parents:
            target = target[int(part)] if part.isdigit() else target[part]
        target[int(last) if last.isdigit() else last] = value

    return change


def _other_members_evidence(doc: dict[str, Any]) -> None:
    payload, signature = signed(member_result(member_id="bank-b"))
    doc["evidence"]["payload_b64"] = base64.b64encode(payload).decode()
    doc["evidence"]["signature_b64"] = base64.b64encode(signature).decode()


def _flip_payload_byte(doc: dict[str, Any]) -> None:
    payload = bytearray(base64.b64decode(doc["evidence"]["payload_b64"]))
    payload[-1] ^= 1
    doc["evidence"]["payload_b64"] = base64.b64encode(bytes(payload)).decode()


def _extra_peer_label(doc: dict[str, Any]) -> None:
    doc["leads"][3]["peer_labels"].append(
        {"category": "telecom_fraud", "severity": None, "first_seen": None, "case_ref": None}
    )


BAD_KEY = f"signature does not verify against key {KEY.key_id}"
TAMPERINGS = {
    "holder count": (
        _set("leads.1.holder_count", 4),
        "lead 2 (id_card): holder_count 4 in the report, 3 in the signed result",
    ),
    "lead with a fake token": (
        lambda d: d["leads"].append({**d["leads"][0], "match_token": "ab" * 16}),
        "lead 8 (phone): match token not in the signed result",
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
    "summary holders": (
        lambda d: d["summary"]["by_holder_count"].update({"2": 5}),
        "summary by_holder_count['2'] 5 in the report, 4 from its leads",
    ),
    "extra peer label": (_extra_peer_label, "lead 4 (email): 2 peer labels in the report, 1 in the signed result"),
    "round id": (
        _set("round_id", "r-other"),
        "result is for round 'r-2025q2' and member 'bank-a', expected 'r-other' and 'bank-a'",
    ),
    "member id": (
        _set("member_id", "bank-b"),
        "result is for round 'r-2025q2' and member 'bank-a', expected 'r-2025q2' and 'bank-b'",
    ),
    "other member's result": (
        _other_members_evidence,
        "result is for round 'r-2025q2' and member 'bank-b', expected 'r-2025q2' and 'bank-a'",
    ),
    "threshold": (_set("threshold", 3), "threshold 3 in the report, 2 in the signed result"),
    "key epoch": (_set("key_epoch", "2025-07"), "key_epoch '2025-07' in the report, '2025-06' in the signed result"),
    "submitted count": (_set("submitted_count", 10), "submitted_count 10 in the report, 1200 in the signed result"),
    "payload byte": (_flip_payload_byte, BAD_KEY),
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
    "unknown version": (_set("format_version", 2), "unknown report format version 2 (this verifier knows 1)"),
    "other format": (_set("format", "something-else"), "not a lead report: 'format' is not 'alliance-psi/lead-report'"),
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
    "naive time": (
        _set("generated_at", "2025-06-30T08:15:00"),
        "report: generated_at '2025-06-30T08:15:00' is not an ISO 8601 time with a time zone",
    ),
}


@pytest.mark.parametrize("change, message", list(TAMPERINGS.values()), ids=list(TAMPERINGS))
def test_each_tampering_fails_with_its_exact_reason(change: Callable[[dict[str, Any]], object], message: str) -> None:
    with pytest.raises(ReportMismatch) as raised:
        verify_report_json(_tampered(change), KEY.public_key)
    assert str(raised.value) == message


def test_a_report_checked_with_the_wrong_key_fails() -> None:
    with pytest.raises(InvalidSignature) as raised:
        verify_report_json(render_json(REPORT), OTHER_KEY.public_key)
    assert str(raised.value) == f"signature does not verify against key {key_id(OTHER_KEY.public_key)}"


@pytest.mark.parametrize(
    "data, message",
    [
        (b"", "not a lead report: invalid JSON (Expecting value at line 1 column 1)"),
        (b"\xff\xfe", "not a lead report: not UTF-8"),
        (b"[1, 2]", "not a lead report: 'format' is not 'alliance-psi/lead-report'"),
    ],
)
def test_what_is_not_a_report_is_refused(data: bytes, message: str) -> None:
    with pytest.raises(ReportMismatch) as raised:
        verify_report_json(data, KEY.public_key)
    assert str(raised.value) == message
