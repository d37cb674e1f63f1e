"""A peer's name in a lead comes from the coordinator's attestation, never from the label itself."""

from __future__ import annotations

from alliance_psi.crypto.labels import LabelContext, seal_label
from alliance_psi.protocol.leads import LeadLabel, build_leads
from alliance_psi.protocol.model import MatchedToken, MemberResult, PeerLabel

TOKEN, KEY = b"\x07" * 16, b"\x09" * 32


def test_a_name_written_into_a_label_is_dropped() -> None:
    # Labels sealed before attestation carried their sealer's own claim: still readable, name gone.
    assert LeadLabel.decode('{"c":"other","m":"某银行"}'.encode()) == LeadLabel("other")
    assert LeadLabel("other", member=None).encode() == b'{"c":"other"}'


def test_build_leads_names_each_peer_as_attested() -> None:
    context = LabelContext("e1", TOKEN, "e1/phone/labels")
    claims = seal_label(KEY, LeadLabel("wool_party", member="甲银行").encode(), context)
    honest = seal_label(KEY, LeadLabel("anti_collection").encode(), context)
    result = MemberResult(
        "r-1", "bank-c", "e1", 2, 10, (MatchedToken(TOKEN, 3, (PeerLabel(claims), PeerLabel(honest, "乙银行"))),)
    )
    own = {TOKEN: ("phone", "+8613967021853", "other", "level1", None, "", "139 6702 1853")}
    (lead,) = build_leads(result, own, {TOKEN: KEY}, scope="e1/phone/labels")
    assert {(label.category, label.member) for label in lead.peer_labels} == {
        ("wool_party", None),  # It claimed 甲银行; the coordinator attests no one.
        ("anti_collection", "乙银行"),
    }
