"""A round's label cap over real gRPC and mutual TLS: each lead carries at most the cap of its
co-holders' labels, the labels still back every holder the cap allows (no finding, the signed
count stands), the cap is signed in the header, and a cap below threshold − 1 is refused."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from alliance_psi.errors import InvalidRequest
from alliance_psi.protocol.result_codec import decode_leaf
from alliance_psi.storage import KeptResults
from tests.integration.services.harness import MEMBERS, Planted, running_alliance

pytestmark = pytest.mark.timeout(240)


def test_leads_carry_at_most_the_cap_and_stand_with_the_signed_count(tmp_path: Path, pki) -> None:  # type: ignore[no-untyped-def]
    planted = Planted.make(size=10)
    with running_alliance(tmp_path, pki, planted=planted) as alliance:
        admin = alliance.admin()
        round_ = admin.create_round(alliance.spec(2, label_cap=1))
        assert round_.label_cap == 1 and admin.get_round(round_.round_id)[0].label_cap == 1
        nodes = {m: alliance.node(m, share_name=True) for m in MEMBERS}  # Named: who sealed what shows.
        with ThreadPoolExecutor(3) as pool:
            joins = {m: pool.submit(n.join, round_.round_id, wait=60) for m, n in nodes.items()}
            outcomes = {m: f.result() for m, f in joins.items()}
        kept = {}
        for member in MEMBERS:
            with alliance.member_engines[member].connect() as conn:
                kept[member] = [decode_leaf(leaf) for leaf in KeptResults(conn).iter_leaves(round_.round_id)]
        checks = {m: nodes[m].lead_checks(round_.round_id) for m in MEMBERS}

    for member, outcome in outcomes.items():
        assert outcome.result is not None and outcome.result.label_cap == 1
        expected = planted.expected(member, 2)
        # Every lead, the ones held by all three included, with its signed count and one label:
        # it backs the two holders the cap allows, so nothing is refused or shown as backed by fewer.
        assert {lead.canonical: lead.holder_count for lead in outcome.leads} == expected
        assert all(len(lead.peer_labels) == 1 and lead.backed_count is None for lead in outcome.leads)
        assert checks[member].refused == ()
        assert all(len(leaf.peer_labels) == 1 for leaf in kept[member])
    # Of the identifiers all three hold, only two holders' labels circulate, and those two see each other.
    held_by_all = [v for v, n in planted.expected("bank-a", 2).items() if n == 3]
    assert len(held_by_all) == 6
    for value in held_by_all:
        shown = {m: next(lead for lead in outcomes[m].leads if lead.canonical == value) for m in MEMBERS}
        sealers = {m: shown[m].peer_labels[0].member for m in MEMBERS}
        carried = set(sealers.values())
        assert len(carried) == 2 and all(sealers[m] in carried - {m} for m in carried), sealers


def test_a_cap_below_threshold_minus_one_is_refused_by_name(tmp_path: Path, pki) -> None:  # type: ignore[no-untyped-def]
    with running_alliance(tmp_path, pki) as alliance:
        admin = alliance.admin()
        with pytest.raises(InvalidRequest, match=r"label_cap: must be 2 \(threshold − 1.*got 1"):
            admin.create_round(alliance.spec(3, label_cap=1))
        with pytest.raises(InvalidRequest, match="label_cap: a round that shares no labels carries none to cap"):
            admin.create_round(alliance.spec(3, label_cap=4, share_labels=False))
        assert admin.create_round(alliance.spec(3)).label_cap == 8  # The default.
        assert len(admin.list_rounds()) == 1  # Nothing half-made of the refused ones.
        assert admin.create_round(alliance.spec(6, invited=None, allowed_types=("id_card",))).label_cap == 10
