"""In a round with labels, a lead's holder count must be backed by its peers' labels (``check_labels``).

Each case is what a coordinator that lies (or a member that replays) can put in a signed result:
this member's own label returned as a peer's, one label twice, one sealer twice, too few labels
that open, a label sealed in another scope. Labels are sealed for real with three members' keys.
"""

from __future__ import annotations

from alliance_psi.crypto.labels import LabelContext, seal_label, sealer_pseudonym
from alliance_psi.protocol.leads import LeadLabel, RefusedLead, build_leads, check_labels, refuse_leads
from alliance_psi.protocol.model import MatchedToken, MemberResult, PeerLabel

TOKEN, OTHER_TOKEN, KEY = b"\x07" * 16, b"\x08" * 16, b"\x09" * 32
EPOCH, SCOPE = "e1", "e1/phone/labels"
CONTEXT = LabelContext(EPOCH, TOKEN, SCOPE)
ME, BANK_B, BANK_C = b"a" * 32, b"b" * 32, b"c" * 32
OWN = {TOKEN: ("phone", "+8613900139000", "other", "level1", None, "", "")}


def label(sealer_key: bytes | None, category: str = "wool_party", context: LabelContext = CONTEXT) -> PeerLabel:
    return PeerLabel(seal_label(KEY, LeadLabel(category).encode(), context, sealer_key=sealer_key))


def verdict(holders: int, *peers: PeerLabel) -> str | None:
    return check_labels(MatchedToken(TOKEN, holders, peers), KEY, CONTEXT, sealer_pseudonym(ME, CONTEXT))


def test_labels_of_distinct_holders_back_the_count() -> None:
    assert verdict(3, label(BANK_B), label(BANK_C)) is None
    assert verdict(2, label(BANK_B)) is None
    assert verdict(2, label(None)) is None  # A random pseudonym is a sealer too.


def test_the_members_own_label_returned_as_a_peers_is_refused() -> None:
    mine = label(ME, "other")
    assert "own label" in (verdict(3, mine, mine) or "")
    assert "own label" in (verdict(2, mine) or "")
    # Even beside enough honest labels: the coordinator (or a co-holder) replayed it.
    assert "own label" in (verdict(3, label(BANK_B), label(BANK_C), mine) or "")


def test_one_label_twice_is_refused() -> None:
    twice = label(BANK_B)
    assert "identical" in (verdict(3, twice, twice) or "")


def test_one_sealer_twice_is_refused() -> None:
    # Two labels of bank-b's node for one token and scope carry one pseudonym, whatever they say.
    assert "one sealer" in (verdict(3, label(BANK_B, "wool_party"), label(BANK_B, "other")) or "")


def test_too_few_labels_that_open_are_refused() -> None:
    garbage = PeerLabel(bytes([2]) + bytes(300))
    wrong_key = PeerLabel(seal_label(bytes(32), b'{"c":"other"}', CONTEXT))
    assert verdict(3, label(BANK_B), garbage) == (
        "held by 3 members says the coordinator, but only 1 peer label open under this identifier's key (2 needed)"
    )
    assert "only 1 peer label" in (verdict(3, label(BANK_B), wrong_key) or "")
    assert "only 0 peer labels" in (verdict(2) or "")


def test_a_label_from_another_scope_does_not_open() -> None:
    elsewhere = LabelContext(EPOCH, TOKEN, "e1/email,phone/labels")
    assert "only 1 peer label" in (verdict(3, label(BANK_B), label(BANK_C, context=elsewhere)) or "")
    other_token = LabelContext(EPOCH, OTHER_TOKEN, SCOPE)
    assert "only 0 peer labels" in (verdict(2, label(BANK_C, context=other_token)) or "")


def test_refused_leads_are_named_and_left_out_of_the_leads() -> None:
    honest = MatchedToken(
        OTHER_TOKEN, 2, (PeerLabel(seal_label(KEY, b'{"c":"other"}', LabelContext(EPOCH, OTHER_TOKEN, SCOPE))),)
    )
    mine = label(ME)
    forged = MatchedToken(TOKEN, 3, (mine, mine))
    result = MemberResult("r-1", "bank-a", EPOCH, 2, 10, (forged, honest))
    own = {**OWN, OTHER_TOKEN: ("phone", "+8613900139001", "other", "level1", None, "", "")}
    keys = {TOKEN: KEY, OTHER_TOKEN: KEY}
    refused = refuse_leads(
        result.matches, keys, key_epoch=EPOCH, scope=SCOPE, own_sealer=lambda context: sealer_pseudonym(ME, context)
    )
    assert [(r.match_token, r.holder_count) for r in refused] == [(TOKEN, 3)]
    assert isinstance(refused[0], RefusedLead) and "own label" in refused[0].reason
    leads = build_leads(result, own, keys, scope=SCOPE, refused={r.match_token for r in refused})
    assert [(lead.match_token, lead.holder_count, lead.unreadable_labels) for lead in leads] == [(OTHER_TOKEN, 2, 0)]
    # Without the refusals the forged lead would be reported as held by 3.
    assert {lead.holder_count for lead in build_leads(result, own, keys, scope=SCOPE)} == {2, 3}


def test_a_round_without_labels_takes_the_coordinators_count() -> None:
    result = MemberResult("r-1", "bank-a", EPOCH, 2, 10, (MatchedToken(TOKEN, 3),))
    (lead,) = build_leads(result, OWN, {TOKEN: KEY}, scope=None)
    assert lead.holder_count == 3 and lead.peer_labels == () and lead.unreadable_labels == 0


def test_a_node_reseals_its_labels_in_a_new_format() -> None:
    # The fingerprint a node records per committed label covers the format, so labels of an
    # older format (no scope, no pseudonym) are put again, sealed anew, at the next round.
    import hashlib

    from alliance_psi.crypto.labels import LABEL_VERSION, open_label
    from alliance_psi.protocol.member_delta import RoundLabels
    from alliance_psi.protocol.node_rows import SubmissionRow

    labels = RoundLabels(True, EPOCH, SCOPE, ME)
    row = SubmissionRow(1, TOKEN, KEY, "wool_party", "level1", None, "")
    plaintext, fingerprint = labels.label(row)
    assert fingerprint == hashlib.blake2b(bytes([LABEL_VERSION]) + plaintext, digest_size=16).digest()
    assert fingerprint != hashlib.blake2b(plaintext, digest_size=16).digest()  # What format 1 recorded.
    sealed = labels.seal(row, plaintext)
    assert sealed is not None and open_label(KEY, sealed, CONTEXT).sealer == sealer_pseudonym(ME, CONTEXT)
