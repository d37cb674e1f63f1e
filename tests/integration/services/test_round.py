"""A complete matching round over real gRPC servers on loopback with real mutual TLS."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest

from alliance_psi.crypto.labels import SEALED_LABEL_BYTES
from alliance_psi.crypto.oprf import blind
from alliance_psi.errors import (
    Conflict,
    InvalidRequest,
    InvalidSignature,
    NotAuthorized,
    NotFound,
    PeerUnavailable,
    QuotaExceeded,
    RoundClosed,
    WrongEpoch,
)
from alliance_psi.protocol.coordinator import Chunk, Commit
from alliance_psi.protocol.model import RoundState, SubmissionState
from alliance_psi.protocol.result_codec import SignedResultHeader, open_header
from alliance_psi.protocol.submission import SubmissionDigest, chunk_digest, label_digest, set_digest
from alliance_psi.services.clients import CoordinatorClient, CustodianClient, RetryPolicy
from tests.integration.services.harness import CATEGORIES, EPOCH, MEMBERS, Planted, running_alliance

pytestmark = pytest.mark.timeout(180)


def join_all(alliance, round_id: str, members=MEMBERS):  # type: ignore[no-untyped-def]
    with ThreadPoolExecutor(len(members)) as pool:
        futures = {m: pool.submit(alliance.node(m).join, round_id, wait=60) for m in members}
        return {m: f.result() for m, f in futures.items()}


@pytest.mark.parametrize("threshold", [2, 3])
def test_every_planted_lead_is_found_and_nothing_else(tmp_path: Path, pki, threshold: int) -> None:  # type: ignore[no-untyped-def]
    planted = Planted.make()
    with running_alliance(tmp_path, pki, planted=planted) as alliance:
        round_ = alliance.admin().create_round(alliance.spec(threshold))
        outcomes = join_all(alliance, round_.round_id)
        for index, member in enumerate(MEMBERS):
            outcome = outcomes[member]
            assert {lead.canonical: lead.holder_count for lead in outcome.leads} == planted.expected(member, threshold)
            assert outcome.submitted == len(planted.holdings[member])
            for lead in outcome.leads:
                assert lead.category == CATEGORIES[index] and lead.unreadable_labels == 0
                assert len(lead.peer_labels) == lead.holder_count - 1
                peers = {
                    CATEGORIES[i]
                    for i, m in enumerate(MEMBERS)
                    if m != member and lead.canonical in planted.holdings[m]
                }
                assert {label.category for label in lead.peer_labels} == peers
        final, committed = alliance.admin().get_round(round_.round_id)
        assert final.state is RoundState.MATCHED and committed == 3


def test_second_round_in_the_epoch_reuses_cached_tokens(tmp_path: Path, pki) -> None:  # type: ignore[no-untyped-def]
    with running_alliance(tmp_path, pki) as alliance:
        first = join_all(alliance, alliance.admin().create_round(alliance.spec(2)).round_id)
        second = join_all(alliance, alliance.admin().create_round(alliance.spec(2)).round_id)
        for member in MEMBERS:
            assert first[member].tokens_computed == len(Planted.make().holdings[member])
            assert second[member].tokens_computed == 0
            assert [lead.canonical for lead in second[member].leads] == [lead.canonical for lead in first[member].leads]


def test_labels_are_withheld_when_the_round_does_not_share_them(tmp_path: Path, pki) -> None:  # type: ignore[no-untyped-def]
    with running_alliance(tmp_path, pki) as alliance:
        outcomes = join_all(alliance, alliance.admin().create_round(alliance.spec(2, share_labels=False)).round_id)
        assert outcomes["bank-a"].leads and all(not lead.peer_labels for lead in outcomes["bank-a"].leads)


def test_roles_and_identities_are_enforced(tmp_path: Path, pki) -> None:  # type: ignore[no-untyped-def]
    with running_alliance(tmp_path, pki) as alliance:
        member = CoordinatorClient(alliance.coordinator_address, pki.material("bank-a"))
        with pytest.raises(NotAuthorized, match="PERMISSION_DENIED|may not"):
            member.create_round(alliance.spec(2))
        round_ = alliance.admin().create_round(alliance.spec(2, invited=("bank-a", "bank-b")))
        outsider = CoordinatorClient(alliance.coordinator_address, pki.material("bank-c"))
        # Another members' round and no round at all get the same answer: code and message.
        with pytest.raises(NotFound) as not_invited:
            outsider.get_round(round_.round_id)
        with pytest.raises(NotFound) as missing:
            outsider.get_round("r-no-such-round")
        assert str(not_invited.value) == str(missing.value).replace("r-no-such-round", round_.round_id)
        assert outsider.list_rounds() == []
        join_all(alliance, round_.round_id, members=("bank-a", "bank-b"))
        with pytest.raises(NotFound, match=f"no round {round_.round_id}"):
            next(outsider.get_result(round_.round_id))
        # An invited member sees what its node needs, without the invite list or others' progress.
        seen, committed = member.get_round(round_.round_id)
        assert (seen.invited, seen.created_by, committed) == (("bank-a",), "", 0)
        assert (seen.key_epoch, seen.allowed_types, seen.share_labels) == (EPOCH, ("phone",), True)
        # Nor why or when the round closed: every invitee committing, or the admin who closed it.
        assert (seen.state, seen.close_reason, seen.closed_at, seen.matched_at) == (RoundState.MATCHED, "", None, None)
        admin_view = alliance.admin().get_round(round_.round_id)[0]
        assert (admin_view.invited, admin_view.close_reason) == (("bank-a", "bank-b"), "all invited members committed")
        assert admin_view.closed_at is not None and admin_view.matched_at is not None
        closed = alliance.admin().create_round(alliance.spec(2, invited=("bank-a", "bank-b")))
        alliance.admin().close_round(closed.round_id)
        assert alliance.admin().get_round(closed.round_id)[0].close_reason == "closed by admin"
        for listed, _ in member.list_rounds():
            assert (listed.close_reason, listed.closed_at, listed.matched_at) == ("", None, None)
        assert {listed.round_id for listed, _ in member.list_rounds()} == {round_.round_id, closed.round_id}
        signed = next(member.get_result(round_.round_id))
        assert isinstance(signed, SignedResultHeader)
        with pytest.raises(InvalidSignature, match="expected"):
            open_header(
                alliance.signing_key.public_key,
                signed.header,
                signed.signature,
                round_id=round_.round_id,
                member_id="bank-b",
            )
        custodian_as_admin = CoordinatorClient(alliance.coordinator_address, pki.material("custodian-1"))
        with pytest.raises(NotAuthorized):
            custodian_as_admin.list_rounds()


def test_quota_is_enforced_per_member(tmp_path: Path, pki) -> None:  # type: ignore[no-untyped-def]
    with running_alliance(tmp_path, pki, quota=30) as alliance:
        round_ = alliance.admin().create_round(alliance.spec(2))
        with pytest.raises(QuotaExceeded, match="quota exceeded") as refused:
            alliance.node("bank-a").join(round_.round_id, wait=1)
        held = len(Planted.make().holdings["bank-a"])  # One batch: every identifier at once.
        assert (refused.value.member_id, refused.value.quota, refused.value.used, refused.value.requested) == (
            "bank-a",
            30,
            0,
            held,
        )
        client = CustodianClient(alliance.custodian_addresses[0], pki.material("bank-b"), name="custodian-1")
        elements = [blind(b"x%d" % i).blinded_element for i in range(31)]
        with pytest.raises(grpc.RpcError) as raw:
            client.stub.Evaluate(client_request(elements), timeout=10)
        assert raw.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        details = dict(raw.value.trailing_metadata() or ())
        assert "grpc-status-details-bin" in details  # QuotaFailure detail travels with the status.


def client_request(elements, epoch: str = EPOCH):  # type: ignore[no-untyped-def]
    from alliance_psi.protocol.messages import evaluate_request

    return evaluate_request(epoch, elements)


def test_custodian_rejects_bad_elements_and_wrong_epoch(tmp_path: Path, pki) -> None:  # type: ignore[no-untyped-def]
    with running_alliance(tmp_path, pki, custodians=1) as alliance:
        client = CustodianClient(alliance.custodian_addresses[0], pki.material("bank-a"), name="custodian-1")
        good = blind(b"x").blinded_element
        with pytest.raises(InvalidRequest, match="identity element"):
            client.evaluate(EPOCH, [good, bytes(32)])
        with pytest.raises(InvalidRequest, match="not a canonical ristretto255 encoding"):
            client.evaluate(EPOCH, [b"\xff" * 32])
        with pytest.raises(InvalidRequest, match="must be 32 bytes"):
            client.evaluate(EPOCH, [good[:31]])
        with pytest.raises(InvalidRequest, match="at most 8192"):
            client.evaluate(EPOCH, [good] * 8193)
        with pytest.raises(WrongEpoch, match="serves key epoch 'epoch-test', not 'epoch-other'"):
            client.evaluate("epoch-other", [good])
        # Refused before the charge: sizes, counts, epoch. The two undecodable batches were charged
        # (2 + 1 elements): a malformed element is the sender's loss, not the custodian's.
        assert client.epoch().used == 3
        assert len(client.evaluate(EPOCH, [good])) == 1 and client.epoch().used == 4


def test_chunks_are_idempotent_ordered_freely_and_checked(tmp_path: Path, pki) -> None:  # type: ignore[no-untyped-def]
    with running_alliance(tmp_path, pki) as alliance:
        round_ = alliance.admin().create_round(alliance.spec(2))
        client = CoordinatorClient(alliance.coordinator_address, pki.material("bank-a"))

        def chunk(index: int, start: int, labels: bool = True) -> Chunk:
            items = tuple(
                ((start + i).to_bytes(16, "big"), bytes([index]) * SEALED_LABEL_BYTES if labels else None)
                for i in range(3)
            )
            return Chunk(round_.round_id, index, items, chunk_digest(items))

        chunks = [chunk(0, 0), chunk(1, 10), chunk(2, 20)]
        assert client.upload_chunks([chunks[2], chunks[0]]) == (2, 0)
        assert client.upload_chunks([chunks[0], chunks[1]]) == (1, 1)  # Resent chunk 0 is harmless.
        with pytest.raises(Conflict, match="chunk 1"):
            client.upload_chunks([chunk(1, 40)])
        with pytest.raises(InvalidRequest, match="chunk 3, item 0: a token this submission already holds"):
            client.upload_chunks([chunk(3, 20)])
        bad = chunk(4, 50)
        with pytest.raises(InvalidRequest, match="digest does not match"):
            client.upload_chunks([Chunk(bad.round_id, 4, bad.items, bytes(32))])
        with pytest.raises(InvalidRequest, match="item 0: match token must be 16 bytes"):
            items = ((b"short", None),)
            client.upload_chunks([Chunk(round_.round_id, 5, items, chunk_digest(items))])
        status = client.submission_status(round_.round_id, "bank-a")
        assert status.chunks == (0, 1, 2) and status.state is SubmissionState.STAGING
        with pytest.raises(Conflict, match="count"):
            client.commit(Commit(round_.round_id, 8, bytes(32), 8, bytes(32), replace=True), "bank-a")
        assert client.submission_status(round_.round_id, "bank-a").state is SubmissionState.STAGING
        digest = SubmissionDigest()
        for c in chunks:
            digest.update(c.items)
        whole = set_digest(sorted((t, label_digest(lbl)) for c in chunks for t, lbl in c.items))
        with pytest.raises(InvalidRequest, match="set_digest: must be 32 bytes"):
            client.commit(Commit(round_.round_id, digest.count, digest.digest(), 9, b"", replace=True), "bank-a")
        with pytest.raises(Conflict, match="set digest mismatch"):
            client.commit(Commit(round_.round_id, digest.count, digest.digest(), 9, bytes(32), replace=True), "bank-a")
        committed = client.commit(
            Commit(round_.round_id, digest.count, digest.digest(), 9, whole, replace=True), "bank-a"
        )
        assert committed.state is SubmissionState.COMMITTED and committed.item_count == 9
        with pytest.raises(Conflict, match="already committed"):
            client.upload_chunks([chunk(6, 60)])
        # bank-b stages but never commits; closing discards it and the round matches without it.
        other = CoordinatorClient(alliance.coordinator_address, pki.material("bank-b"))
        other.upload_chunks([chunk(0, 0)])
        closed = alliance.admin().close_round(round_.round_id, "test")
        assert closed.state is RoundState.MATCHED
        assert other.submission_status(round_.round_id, "bank-b").state is SubmissionState.NONE
        with pytest.raises(RoundClosed, match="takes no more submissions"):
            other.upload_chunks([chunk(1, 10)])
        with pytest.raises(NotFound):
            next(other.get_result(round_.round_id))


def test_round_creation_is_validated(tmp_path: Path, pki) -> None:  # type: ignore[no-untyped-def]
    with running_alliance(tmp_path, pki, custodians=1) as alliance:
        admin = alliance.admin()
        with pytest.raises(InvalidRequest, match="threshold: must be at least 2, got 1"):
            admin.create_round(alliance.spec(1))
        with pytest.raises(InvalidRequest, match="allowed_types: unknown or empty \\['fax'\\]"):
            admin.create_round(alliance.spec(2, allowed_types=("fax",)))
        with pytest.raises(InvalidRequest, match="invited: 2 distinct member ids, fewer than the threshold 3"):
            admin.create_round(alliance.spec(3, invited=("bank-a", "bank-b", "bank-b")))
        with pytest.raises(InvalidRequest, match="invited: not valid member ids: \\['bank a'\\]"):
            admin.create_round(alliance.spec(2, invited=("bank-a", "bank a")))
        created = admin.create_round(alliance.spec(2, round_id="fixed-id"))
        with pytest.raises(Conflict):
            admin.create_round(alliance.spec(2, round_id="fixed-id"))
        assert created.round_id == "fixed-id"


def test_a_peer_that_is_down_gives_a_clear_error_not_a_hang(tmp_path: Path, pki) -> None:  # type: ignore[no-untyped-def]
    quick = RetryPolicy(attempts=2, base=0.05, timeout=2)
    client = CoordinatorClient("127.0.0.1:1", pki.material("bank-a"), quick)
    with pytest.raises(PeerUnavailable, match="coordinator at 127.0.0.1:1 is unreachable after 2 attempts"):
        client.get_round("r")


def test_a_joined_round_keeps_its_verified_result(tmp_path: Path, pki) -> None:  # type: ignore[no-untyped-def]
    from alliance_psi.protocol.result_codec import decode_header, reopen_result
    from alliance_psi.storage import KeptResults

    with running_alliance(tmp_path, pki) as alliance:
        round_ = alliance.admin().create_round(alliance.spec(2))
        outcomes = join_all(alliance, round_.round_id)
        with alliance.member_engines["bank-a"].connect() as conn:
            kept = KeptResults(conn)
            epoch, name, header, signature, _ = kept.get_result(round_.round_id)
            assert (epoch, name) == (EPOCH, "test round")
            assert decode_header(header) == outcomes["bank-a"].result
            whole = reopen_result(
                alliance.signing_key.public_key,
                header,
                signature,
                kept.iter_leaves(round_.round_id),
                round_id=round_.round_id,
                member_id="bank-a",
            )
            assert {m.match_token for m in whole.matches} == {lead.match_token for lead in outcomes["bank-a"].leads}
            assert [r[0] for r in kept.list_results()] == [round_.round_id]
            with pytest.raises(NotFound, match="node join other"):
                kept.get_result("other")


def test_the_label_nonce_key_is_created_once_and_checked(tmp_path: Path) -> None:
    import stat

    from alliance_psi.errors import ConfigurationError
    from alliance_psi.services.member import load_nonce_key

    first = load_nonce_key(tmp_path / "secrets")
    assert load_nonce_key(tmp_path / "secrets") == first and len(first) == 32
    assert stat.S_IMODE((tmp_path / "secrets" / "label-nonce.key").stat().st_mode) == 0o600
    (tmp_path / "secrets" / "label-nonce.key").write_bytes(b"short")
    with pytest.raises(ConfigurationError, match="expected 32 bytes, found 5"):
        load_nonce_key(tmp_path / "secrets")


def test_a_round_closes_at_its_deadline_and_refuses_late_submissions(tmp_path: Path, pki) -> None:  # type: ignore[no-untyped-def]
    import time
    from datetime import UTC, datetime, timedelta

    planted = Planted.make()
    with running_alliance(tmp_path, pki, planted=planted) as alliance:
        deadline = datetime.now(UTC) + timedelta(seconds=3)
        round_ = alliance.admin().create_round(alliance.spec(2, deadline=deadline))
        for member in ("bank-a", "bank-b"):  # bank-c, also invited, never shows up.
            node = alliance.node(member)
            node.tokenize(EPOCH, ["phone"])
            node.submit(node.coordinator.get_round(round_.round_id)[0])
        assert alliance.coordinator_role.tick() == []  # Not yet due.
        time.sleep(max(0.0, (deadline - datetime.now(UTC)).total_seconds()) + 0.2)
        late = alliance.node("bank-c")
        with pytest.raises(RoundClosed, match="passed its deadline"):
            late.join(round_.round_id, wait=0)  # The node's own courtesy check: no crypto spent.
        # The coordinator's check, with no client check in the way: a late member that ignores its
        # node's advice and calls the coordinator directly, before the ticker has closed the round.
        items = ((bytes(16), None),)
        raw = CoordinatorClient(alliance.coordinator_address, pki.material("bank-c"))
        with pytest.raises(RoundClosed, match=f"round {round_.round_id} passed its deadline"):
            raw.upload_chunks([Chunk(round_.round_id, 0, items, chunk_digest(items))])
        with pytest.raises(RoundClosed, match=f"round {round_.round_id} passed its deadline"):
            raw.commit(Commit(round_.round_id, 0, bytes(32), 0, bytes(32), replace=True), "bank-c")
        assert alliance.admin().get_round(round_.round_id)[0].state is RoundState.OPEN  # Still open: no tick yet.
        assert alliance.coordinator_role.tick() == [round_.round_id]
        final, committed = alliance.admin().get_round(round_.round_id)
        assert final.state is RoundState.MATCHED and final.close_reason == "deadline reached" and committed == 2
        two = {m: planted.holdings[m] for m in ("bank-a", "bank-b")}
        node = alliance.node("bank-a")
        node.fetch_result(round_.round_id)
        leads = node.leads(node.kept_result(round_.round_id))
        assert {lead.canonical for lead in leads} == two["bank-a"] & two["bank-b"]
        assert {lead.holder_count for lead in leads} == {2}
