"""Results in pages over real gRPC and mutual TLS: streamed, checked page by page against the signed
Merkle root, and refused whole (nothing kept) when the coordinator's copy was tampered with."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from alliance_psi.errors import InvalidSignature, NotFound, ResultMismatch
from alliance_psi.protocol.model import MatchedToken
from alliance_psi.protocol.result_codec import decode_leaf, encode_leaf
from alliance_psi.storage import CoordinatorRepositories, KeptResults
from alliance_psi.storage.schema import result_headers, result_pages
from tests.integration.services.harness import EPOCH, MEMBERS, Planted, running_alliance

pytestmark = pytest.mark.timeout(180)

PAGE_BYTES = 700  # About one leaf with two peer labels per page: every result spans many pages.


def submit_all(alliance, round_id: str) -> None:  # type: ignore[no-untyped-def]
    """Every member submits and commits; the last commit closes and matches the round."""
    for member in MEMBERS:
        node = alliance.node(member)
        node.tokenize(EPOCH, ["phone"])
        node.submit(node.coordinator.get_round(round_id)[0])


def pages_of(alliance, round_id: str, member: str) -> int:  # type: ignore[no-untyped-def]
    with alliance.coordinator_engine.connect() as conn:
        return int(
            conn.execute(
                select(func.count()).where(result_pages.c.round_id == round_id, result_pages.c.member_id == member)
            ).scalar_one()
        )


def rewrite_page(alliance, round_id: str, member: str, index: int, change) -> None:  # type: ignore[no-untyped-def]
    """Replace page ``index`` of a stored result by ``change(leaves)``, as someone with the database could."""
    with alliance.coordinator_engine.begin() as conn:
        _, leaves = CoordinatorRepositories(conn).results.get_result_page(round_id, member, index)
        new = change(list(leaves))
        conn.execute(
            update(result_pages)
            .where(
                result_pages.c.round_id == round_id,
                result_pages.c.member_id == member,
                result_pages.c.page_index == index,
            )
            .values(leaf_count=len(new), leaves=b"".join(len(x).to_bytes(4, "big") + x for x in new))
        )


def kept_leaves(alliance, member: str, round_id: str) -> list[bytes]:  # type: ignore[no-untyped-def]
    with alliance.member_engines[member].connect() as conn:
        return list(KeptResults(conn).iter_leaves(round_id))


def test_a_result_of_many_pages_is_streamed_verified_and_kept(tmp_path: Path, pki) -> None:  # type: ignore[no-untyped-def]
    planted = Planted.make()
    with running_alliance(tmp_path, pki, planted=planted, result_page_bytes=PAGE_BYTES) as alliance:
        round_id = alliance.admin().create_round(alliance.spec(2)).round_id
        submit_all(alliance, round_id)
        expected = planted.expected("bank-a", 2)
        assert pages_of(alliance, round_id, "bank-a") > 3
        node = alliance.node("bank-a")
        header = node.fetch_result(round_id, round_name="paged")
        assert header.match_count == len(expected) and len(kept_leaves(alliance, "bank-a", round_id)) == len(expected)
        leads = node.leads(node.kept_result(round_id))
        assert {lead.canonical: lead.holder_count for lead in leads} == expected


def raise_holder_count(leaves: list[bytes]) -> list[bytes]:
    match = decode_leaf(leaves[0])
    return [encode_leaf(MatchedToken(match.match_token, match.holder_count + 1, match.peer_labels)), *leaves[1:]]


def drop_peer_label(leaves: list[bytes]) -> list[bytes]:
    match = decode_leaf(leaves[0])
    return [encode_leaf(MatchedToken(match.match_token, match.holder_count, match.peer_labels[1:])), *leaves[1:]]


@pytest.mark.parametrize(
    "change, message",
    [
        (raise_holder_count, "result leaves do not make the signed Merkle root"),
        (drop_peer_label, "result leaves do not make the signed Merkle root"),
        (lambda leaves: [], "result page 2 is empty"),
        (lambda leaves: [*leaves, leaves[0]], "tokens not in strictly increasing order"),
    ],
    ids=["holder-count", "peer-label", "emptied-page", "repeated-leaf"],
)
def test_a_tampered_page_is_refused_and_nothing_of_it_kept(tmp_path: Path, pki, change, message: str) -> None:  # type: ignore[no-untyped-def]
    with running_alliance(tmp_path, pki, result_page_bytes=PAGE_BYTES) as alliance:
        round_id = alliance.admin().create_round(alliance.spec(2)).round_id
        submit_all(alliance, round_id)
        node = alliance.node("bank-a")
        node.fetch_result(round_id)  # The honest result, kept.
        honest = kept_leaves(alliance, "bank-a", round_id)
        rewrite_page(alliance, round_id, "bank-a", 2, change)
        with pytest.raises(ResultMismatch) as refused:
            node.fetch_result(round_id)
        assert str(refused.value).startswith(f"round {round_id}: ")
        assert str(refused.value).endswith(f"{message}; the result is refused and nothing of it kept")
        assert kept_leaves(alliance, "bank-a", round_id) == honest  # The earlier copy is untouched.
        other = alliance.node("bank-b")  # A member that never fetched keeps nothing at all.
        rewrite_page(alliance, round_id, "bank-b", 0, change)
        with pytest.raises(ResultMismatch):
            other.fetch_result(round_id)
        with alliance.member_engines["bank-b"].connect() as conn, pytest.raises(NotFound):
            KeptResults(conn).get_result(round_id)


def test_a_missing_last_page_or_another_members_header_is_refused(tmp_path: Path, pki) -> None:  # type: ignore[no-untyped-def]
    with running_alliance(tmp_path, pki, result_page_bytes=PAGE_BYTES) as alliance:
        round_id = alliance.admin().create_round(alliance.spec(2)).round_id
        submit_all(alliance, round_id)
        pages = pages_of(alliance, round_id, "bank-a")
        total = len(Planted.make().expected("bank-a", 2))
        with alliance.coordinator_engine.begin() as conn:
            last = len(CoordinatorRepositories(conn).results.get_result_page(round_id, "bank-a", pages - 1)[1])
            conn.execute(
                update(result_headers)
                .where(result_headers.c.round_id == round_id, result_headers.c.member_id == "bank-a")
                .values(page_count=pages - 1)
            )
        with pytest.raises(ResultMismatch, match=f"result has {total - last} leaves, the signed header {total}"):
            alliance.node("bank-a").fetch_result(round_id)
        with alliance.coordinator_engine.begin() as conn:
            b_header = conn.execute(
                select(result_headers.c.header, result_headers.c.signature).where(
                    result_headers.c.round_id == round_id, result_headers.c.member_id == "bank-b"
                )
            ).one()
            conn.execute(
                update(result_headers)
                .where(result_headers.c.round_id == round_id, result_headers.c.member_id == "bank-a")
                .values(header=b_header.header, signature=b_header.signature, page_count=pages)
            )
        with pytest.raises(InvalidSignature, match="member 'bank-b', expected .* and 'bank-a'"):
            alliance.node("bank-a").fetch_result(round_id)
