"""Which co-holders' labels a leaf or alert carries under a label cap (``protocol.label_cap``)."""

from __future__ import annotations

import os

import pytest

from alliance_psi.protocol.label_cap import carried_labels, default_label_cap, peer_labels_for, rank_holders

TOKEN = b"\x05" * 16
SALT = b"s" * 32
HOLDERS = [(f"bank-{i:02d}", f"label-{i}".encode()) for i in range(12)]


def test_without_a_cap_or_within_it_every_label_is_carried() -> None:
    assert carried_labels(TOKEN, HOLDERS, cap=0, salt=SALT) == HOLDERS
    assert carried_labels(TOKEN, HOLDERS, cap=12, salt=SALT) == HOLDERS
    assert len(peer_labels_for("bank-00", HOLDERS, cap=12, salt=SALT, token=TOKEN)) == 11


def test_over_the_cap_the_first_cap_plus_one_in_the_secret_order_are_carried() -> None:
    carried = carried_labels(TOKEN, HOLDERS, cap=3, salt=SALT)
    assert [m for m, _ in carried] == rank_holders(SALT, TOKEN, [m for m, _ in HOLDERS])[:4]
    chosen = [m for m, _ in carried]
    for member, _ in HOLDERS:
        peers = [m for m, _ in peer_labels_for(member, HOLDERS, cap=3, salt=SALT, token=TOKEN)]
        assert len(peers) == 3 and member not in peers
        # The first four see each other; every other holder sees the first three.
        assert peers == ([m for m in chosen if m != member] if member in chosen else chosen[:3])


def test_holders_without_a_label_are_not_ranked_and_get_the_carried_labels() -> None:
    holders = [*HOLDERS[:3], ("bank-x", None), ("bank-y", b"")]
    assert carried_labels(TOKEN, holders, cap=2, salt=SALT) == carried_labels(TOKEN, HOLDERS[:3], cap=2, salt=SALT)
    assert len(carried_labels(TOKEN, holders, cap=3, salt=SALT)) == 3
    assert len(peer_labels_for("bank-x", holders, cap=2, salt=SALT, token=TOKEN)) == 2


def test_the_order_is_the_coordinators_secret_not_the_sealers_choice() -> None:
    # A sealer controls its label's bytes (and pseudonym): they do not move it in the order.
    rewritten = [(m, os.urandom(301)) for m, _ in HOLDERS]
    ranked = [m for m, _ in carried_labels(TOKEN, HOLDERS, cap=3, salt=SALT)]
    assert [m for m, _ in carried_labels(TOKEN, rewritten, cap=3, salt=SALT)] == ranked
    # The salt (a secret of the round) and the token do: over many salts every holder is carried sometimes.
    carried_at_all = {m for _ in range(200) for m, _ in carried_labels(TOKEN, HOLDERS, cap=3, salt=os.urandom(32))}
    assert carried_at_all == {m for m, _ in HOLDERS}
    names = [m for m, _ in HOLDERS]
    assert {rank_holders(SALT, os.urandom(16), names)[0] for _ in range(200)} == set(names)


@pytest.mark.parametrize(("threshold", "cap"), [(2, 8), (5, 8), (6, 10), (40, 78)])
def test_the_default_cap_lets_a_lead_be_backed_at_its_threshold(threshold: int, cap: int) -> None:
    assert default_label_cap(threshold) == cap
