"""Attested sealers over real gRPC and mutual TLS: a peer's name in a lead is the one the coordinator
attests under its signature (the display name its operator enrolled, else the member id), only
for members that chose to be named; a name a member writes into its own label is never shown."""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from alliance_psi.protocol.leads import LeadLabel
from alliance_psi.protocol.member_delta import LabelSealer, RoundLabels
from alliance_psi.protocol.model import Role, Round
from alliance_psi.protocol.node_rows import SubmissionRow
from alliance_psi.protocol.result_codec import decode_leaf
from alliance_psi.services.enrolment import enrol
from alliance_psi.storage import KeptResults
from tests.integration.services.harness import Planted, running_alliance

pytestmark = pytest.mark.timeout(180)


class ImpostorLabels(RoundLabels):
    """A member node's labels with another member's name written into every one it seals."""

    def label(self, row: SubmissionRow) -> tuple[bytes, bytes]:
        plaintext = LeadLabel(
            row.category, row.severity or None, row.first_seen, row.case_ref or None, "甲银行"
        ).encode()
        return plaintext, hashlib.blake2b(plaintext, digest_size=16).digest()


class Impostor(LabelSealer):
    def for_round(self, round: Round) -> RoundLabels:
        return ImpostorLabels(round.share_labels, round.key_epoch, round.set_scope, self.nonce_key)


def test_peers_are_named_as_the_coordinator_attests_and_only_if_they_chose(tmp_path: Path, pki) -> None:  # type: ignore[no-untyped-def]
    planted = Planted.make()
    with running_alliance(tmp_path, pki, planted=planted) as alliance:
        # The coordinator's operator enrolled bank-a as 甲银行; bank-c has no display name.
        enrol(alliance.coordinator_engine, pki.issued["bank-a"].cert_pem, role=Role.MEMBER, display_name="甲银行")
        round_id = alliance.admin().create_round(alliance.spec(2)).round_id
        nodes = {
            "bank-a": alliance.node("bank-a", share_name=True),
            "bank-b": alliance.node("bank-b"),  # Anonymous, and it claims to be 甲银行 in its labels.
            "bank-c": alliance.node("bank-c", share_name=True),
        }
        nodes["bank-b"].labels = Impostor(nodes["bank-b"].labels.nonce_key)
        with ThreadPoolExecutor(3) as pool:
            outcomes = {
                m: f.result() for m, f in {m: pool.submit(n.join, round_id, wait=60) for m, n in nodes.items()}.items()
            }
        expected_names = {"bank-a": "甲银行", "bank-b": None, "bank-c": "bank-c"}
        for member, outcome in outcomes.items():
            assert outcome.leads
            for lead in outcome.leads:
                holders = [
                    m for m in ("bank-a", "bank-b", "bank-c") if m != member and lead.canonical in planted.holdings[m]
                ]
                assert sorted(label.member or "" for label in lead.peer_labels) == sorted(
                    expected_names[m] or "" for m in holders
                ), (member, holders)
        # What the coordinator signed: each leaf's labels with their attested sealers.
        with alliance.member_engines["bank-c"].connect() as conn:
            leaves = [decode_leaf(leaf) for leaf in KeptResults(conn).iter_leaves(round_id)]
        sealers = {peer.sealer for match in leaves for peer in match.peer_labels}
        assert sealers == {"甲银行", None}


def test_a_member_that_does_not_choose_is_never_named(tmp_path: Path, pki) -> None:  # type: ignore[no-untyped-def]
    with running_alliance(tmp_path, pki) as alliance:
        enrol(alliance.coordinator_engine, pki.issued["bank-a"].cert_pem, role=Role.MEMBER, display_name="甲银行")
        round_id = alliance.admin().create_round(alliance.spec(2)).round_id
        with ThreadPoolExecutor(3) as pool:
            joined = [pool.submit(alliance.node(m).join, round_id, wait=60) for m in ("bank-a", "bank-b", "bank-c")]
            leads = [lead for outcome in (f.result() for f in joined) for lead in outcome.leads]
        assert leads and all(label.member is None for lead in leads for label in lead.peer_labels)
