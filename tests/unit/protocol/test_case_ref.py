"""A label's case reference has one rule, checked where a member imports its own and where a
peer's label is decoded: at most 64 UTF-8 bytes, no control, format or separator character
(a peer chooses it, and it reaches consoles, logs, reports and webhooks)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from alliance_psi.crypto.labels import LabelContext, seal_label
from alliance_psi.errors import InvalidLabel
from alliance_psi.identifiers.importer import ImportRecord, Rejection, read_blacklist
from alliance_psi.protocol.leads import LeadLabel, build_leads
from alliance_psi.protocol.member_delta import RoundLabels
from alliance_psi.protocol.model import MatchedToken, MemberResult, PeerLabel
from alliance_psi.protocol.node_rows import SubmissionRow

TOKEN, KEY = b"\x07" * 16, b"\x09" * 32
TOO_LONG = "too long: at most 64 bytes (UTF-8), to fit the shared label"
REFUSED = [
    ("ZJ-\x1b[2J", "control character U+001B"),
    ("ZJ-\x851", "control character U+0085"),
    ("ZJ-\u202e1002", "bidirectional control character U+202E"),
    ("ZJ-\u200b1002", "format character U+200B"),
    ("ZJ-\ufeff1002", "format character U+FEFF"),
    ("ZJ-\U000e0041", "format character U+E0041"),  # A tag character: invisible.
    ("ZJ-1\u2028fake line", "line separator U+2028"),
    ("ZJ-1\u2029fake paragraph", "paragraph separator U+2029"),
    ("ZJ-\ud800", "unpaired surrogate U+D800"),
    ("x" * 65, TOO_LONG),
    ("案" * 22, TOO_LONG),  # 66 bytes in UTF-8, 22 characters.
]
ACCEPTED = ["ZJ-2025-000123", "x" * 64, "案" * 21, "浙 A·2025 第 3 号"]
IDS = [repr(case_ref[:12]) for case_ref, _ in REFUSED]


@pytest.mark.parametrize(("case_ref", "reason"), REFUSED, ids=IDS)
def test_a_label_with_a_bad_case_ref_is_refused_naming_the_field_and_why(case_ref: str, reason: str) -> None:
    with pytest.raises(ValueError) as refused:
        LeadLabel("other", case_ref=case_ref)
    assert str(refused.value) == f"case_ref: {reason}"


@pytest.mark.parametrize(("case_ref", "reason"), REFUSED, ids=IDS)
def test_a_peer_label_with_a_bad_case_ref_does_not_decode(case_ref: str, reason: str) -> None:
    # As every other malformed label: InvalidLabel, counted as unreadable, never shown.
    with pytest.raises(InvalidLabel):
        LeadLabel.decode(json.dumps({"c": "other", "r": case_ref}).encode())


@pytest.mark.parametrize("case_ref", ACCEPTED)
def test_a_good_case_ref_goes_through_encode_and_decode(case_ref: str) -> None:
    label = LeadLabel("wool_party", "level1", None, case_ref)
    assert LeadLabel.decode(label.encode()) == label


@pytest.mark.parametrize(("case_ref", "reason"), REFUSED, ids=IDS)
def test_the_importer_refuses_a_members_own_bad_case_ref_for_the_same_reason(
    tmp_path: Path, case_ref: str, reason: str
) -> None:
    rows = [{"type": "phone", "value": "13915274680", "case_ref": good} for good in ACCEPTED]
    rows.append({"type": "phone", "value": "13915274680", "case_ref": case_ref})
    path = tmp_path / "list.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    *accepted, refused = list(read_blacklist(path))
    assert [r.case_ref for r in accepted if isinstance(r, ImportRecord)] == ACCEPTED
    assert isinstance(refused, Rejection)
    assert (refused.row, refused.field, refused.reason) == (len(rows), "case_ref", reason)
    assert refused.kind_of_reason == reason.partition(" U+")[0]  # Counted without the character.


def test_a_lead_stands_with_a_peers_bad_case_ref_counted_unreadable() -> None:
    context = LabelContext("e1", TOKEN, "e1/phone/labels")
    hostile = seal_label(
        KEY, b'{"c":"other","r":"\\u001b]8;;https://evil.example\\u0007click\\u001b]8;;\\u0007"}', context
    )
    honest = seal_label(KEY, LeadLabel("anti_collection", case_ref="ZJ-7").encode(), context)
    result = MemberResult(
        "r-1", "bank-c", "e1", 2, 10, (MatchedToken(TOKEN, 3, (PeerLabel(hostile, "乙银行"), PeerLabel(honest))),)
    )
    own = {TOKEN: ("phone", "+8613967021853", "other", "level1", None, "", "")}
    (lead,) = build_leads(result, own, {TOKEN: KEY}, scope="e1/phone/labels")
    assert [label.case_ref for label in lead.peer_labels] == ["ZJ-7"]
    assert lead.unreadable_labels == 1


def test_a_case_ref_kept_from_before_the_rule_is_not_shared() -> None:
    # Imported when only control and bidirectional characters were refused: the node keeps it,
    # and seals the rest of the label rather than a label every peer would refuse.
    legacy = SubmissionRow(1, TOKEN, KEY, "wool_party", "level1", None, "ZJ-\u200b7")
    plaintext, _ = RoundLabels(True, "e1", "e1/phone/labels", b"\x01" * 32).label(legacy)
    assert LeadLabel.decode(plaintext) == LeadLabel("wool_party", "level1")
    good = legacy._replace(case_ref="ZJ-7")
    plaintext, _ = RoundLabels(True, "e1", "e1/phone/labels", b"\x01" * 32).label(good)
    assert LeadLabel.decode(plaintext) == LeadLabel("wool_party", "level1", None, "ZJ-7")
