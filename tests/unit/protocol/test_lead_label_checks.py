"""In a round with labels, a lead's holder count must be backed by its peers' labels (``check_labels``).

Each case is what a coordinator that lies (or a member that replays) can put in a signed result:
this member's own label returned as a peer's, one label twice, one sealer twice, too few labels
that open, a label sealed in another scope. Labels are sealed for real with three members' keys.
"""

from __future__ import annotations

from alliance_psi.crypto.labels import LabelContext, seal_label, sealer_pseudonym
from alliance_psi.protocol.leads import LeadChecks, LeadLabel, RefusedLead, build_leads, check_labels, refuse_leads
from alliance_psi.protocol.model import MatchedToken, MemberResult, PeerLabel

TOKEN, OTHER_TOKEN, KEY = b"\x07" * 16, b"\x08" * 16, b"\x09" * 32
EPOCH, SCOPE = "e1", "e1/phone/labels"
CONTEXT = LabelContext(EPOCH, TOKEN, SCOPE)
ME, BANK_B, BANK_C = b"a" * 32, b"b" * 32, b"c" * 32
OWN = {TOKEN: ("phone", "+8613900139000", "other", "level1", None, "", "")}


def label(sealer_key: bytes | None, category: str = "wool_party", context: LabelContext = CONTEXT) -> PeerLabel:
    return PeerLabel(seal_label(KEY, LeadLabel(category).encode(), context, sealer_key=sealer_key))


def check(holders: int, *peers: PeerLabel, threshold: int = 2) -> RefusedLead | None:
    match = MatchedToken(TOKEN, holders, peers)
    return check_labels(match, KEY, CONTEXT, sealer_pseudonym(ME, CONTEXT), threshold=threshold)


def verdict(holders: int, *peers: PeerLabel, threshold: int | None = None) -> str | None:
    """The reason of a finding, with the threshold at the holder count unless given (then every
    shortfall is a refusal, as before leads could stand on fewer labels)."""
    finding = check(holders, *peers, threshold=holders if threshold is None else threshold)
    return None if finding is None else finding.reason


def test_labels_of_distinct_holders_back_the_count() -> None:
    assert verdict(3, label(BANK_B), label(BANK_C)) is None
    assert verdict(2, label(BANK_B)) is None
    assert verdict(2, label(None)) is None  # A random pseudonym is a sealer too.


def test_the_members_own_label_returned_as_a_peers_is_refused() -> None:
    mine = label(ME, "other")
    assert "own label" in (verdict(3, mine, mine) or "")
    assert "own label" in (verdict(2, mine) or "")
    refused = check(2, mine)
    assert refused is not None and not refused.stands and refused.backed_count == 1


def test_a_replayed_own_label_beside_enough_honest_ones_is_named_but_the_lead_stands() -> None:
    # The coordinator (or a co-holder) replayed it; the honest labels still back every holder.
    finding = check(3, label(BANK_B), label(BANK_C), label(ME))
    assert finding is not None and finding.stands and finding.backed_count == 3
    assert "own label" in finding.reason and "back all 3" in finding.reason


def test_one_label_twice_is_refused() -> None:
    twice = label(BANK_B)
    assert "counted twice" in (verdict(3, twice, twice) or "")


def test_one_sealer_twice_is_refused() -> None:
    # Two labels of bank-b's node for one token and scope carry one pseudonym, whatever they say.
    assert "one sealer" in (verdict(3, label(BANK_B, "wool_party"), label(BANK_B, "other")) or "")


def test_too_few_labels_that_open_are_refused() -> None:
    garbage = PeerLabel(bytes([2]) + bytes(300))
    wrong_key = PeerLabel(seal_label(bytes(32), b'{"c":"other"}', CONTEXT))
    assert verdict(3, label(BANK_B), garbage) == (
        "held by 3 members says the coordinator; 1 peer label counts under this identifier's key; "
        "a peer label does not open under this identifier's key; 2 needed for the threshold 3: not a lead"
    )
    assert "1 peer label counts" in (verdict(3, label(BANK_B), wrong_key) or "")
    assert "0 peer labels count" in (verdict(2) or "")


def test_a_label_from_another_scope_does_not_open() -> None:
    elsewhere = LabelContext(EPOCH, TOKEN, "e1/email,phone/labels")
    assert "1 peer label counts" in (verdict(3, label(BANK_B), label(BANK_C, context=elsewhere)) or "")
    other_token = LabelContext(EPOCH, OTHER_TOKEN, SCOPE)
    assert "0 peer labels count" in (verdict(2, label(BANK_C, context=other_token)) or "")


def test_a_co_holder_replaying_a_label_cannot_veto_a_lead_the_threshold_backs() -> None:
    # bank-b holds the identifier; it re-submits bank-a's label (its bytes, from its own result)
    # as its own. bank-a sees its own label as bank-b's; bank-c sees bank-a's label twice. Both
    # still have a lead: their own holding and one other holder's label reach the threshold 2.
    a_label = label(ME)
    at_a = check(3, a_label, label(BANK_C), threshold=2)
    assert at_a is not None and at_a.stands and at_a.backed_count == 2 and "own label" in at_a.reason
    c_context_check = check_labels(
        MatchedToken(TOKEN, 3, (a_label, a_label)), KEY, CONTEXT, sealer_pseudonym(BANK_C, CONTEXT), threshold=2
    )
    assert c_context_check is not None and c_context_check.stands and c_context_check.backed_count == 2
    # With a threshold of 3 the replay leaves too few labels: not a lead (the threshold is not met).
    refused = check(3, a_label, label(BANK_C), threshold=3)
    assert refused is not None and not refused.stands


def test_the_coordinator_cannot_raise_a_count_past_what_the_labels_back() -> None:
    garbage = PeerLabel(bytes([2]) + bytes(300))
    inflated = check(5, label(BANK_B), garbage, garbage, garbage, threshold=2)
    assert inflated is not None and inflated.stands and inflated.backed_count == 2
    # An identifier only this member holds, signed as held by 3: nothing backs it.
    alone = check(3, garbage, garbage, threshold=2)
    assert alone is not None and not alone.stands and alone.backed_count == 1


def test_a_standing_lead_carries_its_backed_count_into_the_leads() -> None:
    garbage = PeerLabel(bytes([2]) + bytes(300))
    result = MemberResult("r-1", "bank-a", EPOCH, 2, 10, (MatchedToken(TOKEN, 4, (label(BANK_B), garbage, garbage)),))
    findings = refuse_leads(
        result.matches,
        {TOKEN: KEY},
        key_epoch=EPOCH,
        scope=SCOPE,
        threshold=2,
        own_sealer=lambda context: sealer_pseudonym(ME, context),
    )
    checks = LeadChecks(SCOPE, tuple(findings))
    assert checks.refused_tokens() == frozenset() and checks.backed_counts() == {TOKEN: 2}
    (lead,) = build_leads(
        result, OWN, {TOKEN: KEY}, scope=SCOPE, refused=checks.refused_tokens(), backed=checks.backed_counts()
    )
    assert (lead.holder_count, lead.backed_count, lead.unreadable_labels) == (4, 2, 2)


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
        result.matches,
        keys,
        key_epoch=EPOCH,
        scope=SCOPE,
        threshold=2,
        own_sealer=lambda context: sealer_pseudonym(ME, context),
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


def test_under_a_label_cap_the_labels_back_what_the_cap_allows_and_the_lead_stands_as_signed() -> None:
    # Held by 10, says the coordinator, with a signed cap of 2 labels: 2 counting labels back all
    # that a leaf may carry (3 holders), so there is nothing to report and the lead stands as signed.
    match = MatchedToken(TOKEN, 10, (label(BANK_B), label(BANK_C)))
    own = sealer_pseudonym(ME, CONTEXT)
    assert check_labels(match, KEY, CONTEXT, own, threshold=3, label_cap=2) is None
    # Without the cap the same leaf backs 3 of 10: a finding (the lead stands, held by 3).
    uncapped = check_labels(match, KEY, CONTEXT, own, threshold=3)
    assert uncapped is not None and uncapped.stands and uncapped.backed_count == 3
    # Under the cap, one label that does not count still costs its own holder: backed 2 < 3.
    spoiled = MatchedToken(TOKEN, 10, (label(BANK_B), label(ME)))
    finding = check_labels(spoiled, KEY, CONTEXT, own, threshold=3, label_cap=2)
    assert finding is not None and not finding.stands and finding.backed_count == 2
    # A count within the cap is backed in full, as without one.
    assert check_labels(MatchedToken(TOKEN, 2, (label(BANK_B),)), KEY, CONTEXT, own, threshold=2, label_cap=8) is None
    short = check_labels(MatchedToken(TOKEN, 3, (label(BANK_B),)), KEY, CONTEXT, own, threshold=2, label_cap=8)
    assert short is not None and short.backed_count == 2


def test_a_signed_cap_below_threshold_minus_one_never_passes_a_lead_backed_below_the_threshold() -> None:
    # Threshold 5, held by this member and one other: a coordinator signs the count 5 and a cap of
    # 1 (which it may not create) with the one real peer label. The labels back 2, not the threshold.
    match = MatchedToken(TOKEN, 5, (label(BANK_B),))
    own = sealer_pseudonym(ME, CONTEXT)
    for cap in (0, 1, 4):
        finding = check_labels(match, KEY, CONTEXT, own, threshold=5, label_cap=cap)
        assert finding is not None and not finding.stands and finding.backed_count == 2, cap
