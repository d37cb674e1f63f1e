"""What the coordinator keeps of one member's labels in two scopes of an epoch: unrelated bytes."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from alliance_psi.storage.schema import member_sets
from tests.integration.services.harness import running_alliance

pytestmark = pytest.mark.timeout(180)


def test_one_members_labels_in_two_scopes_are_fresh(tmp_path: Path, pki) -> None:  # type: ignore[no-untyped-def]
    with running_alliance(tmp_path, pki, custodians=1) as alliance:
        admin = alliance.admin()
        invited = ("bank-a", "bank-b")
        # Two scopes of one epoch, running alongside: phones only, and phones with ID cards.
        rounds = [
            admin.create_round(alliance.spec(2, invited=invited, allowed_types=types)).round_id
            for types in (("phone",), ("phone", "id_card"))
        ]
        nodes = {member: alliance.node(member) for member in invited}  # One node, one nonce key.
        for round_id in rounds:
            for node in nodes.values():
                node.tokenize("epoch-test", ["phone"])
                node.submit(node.coordinator.get_round(round_id)[0])
        for r in rounds:
            nodes["bank-a"].fetch_result(r, wait=30)
        outcomes = {r: nodes["bank-a"].leads(nodes["bank-a"].kept_result(r)) for r in rounds}
        with alliance.coordinator_engine.connect() as conn:
            rows = conn.execute(select(member_sets.c.set_scope, member_sets.c.match_token, member_sets.c.sealed_label))
            by_scope: dict[str, dict[bytes, list[bytes]]] = {}
            for scope, token, sealed in rows:
                by_scope.setdefault(scope, {}).setdefault(token, []).append(sealed)
    phones, both = (by_scope[s] for s in ("epoch-test/phone/labels", "epoch-test/id_card,phone/labels"))
    assert set(phones) == set(both) and len(phones) > 40  # The same tokens, with labels, in both scopes...
    every_label = [sealed for labels in (*phones.values(), *both.values()) for sealed in labels]
    assert len(set(every_label)) == len(every_label)  # ...and not one sealed label repeats.
    # Both rounds still give readable labels to the co-holders.
    for leads in outcomes.values():
        assert leads and all(lead.peer_labels and lead.unreadable_labels == 0 for lead in leads)
