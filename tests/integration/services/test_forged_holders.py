"""A coordinator that lies about holders, over real gRPC and mutual TLS (adversary finding 2).

The operator holds the coordinator's database and signing key. Here it writes its database
before matching, so the coordinator's own code signs, logs and serves a result that is
consistent in every way a member can check (signature, Merkle root, audit log): it adds
holders to tokens with labels that are bank-a's own, one peer's label twice, garbage, or a
peer's label from another scope. bank-a's node must refuse each lead whose counted labels do not
reach the threshold, keep each that they do reach with the count they back (not the signed one),
say why, keep the signed result, and still report every honest lead.
"""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest
from sqlalchemy import Connection, insert, select, update

from alliance_psi.crypto.labels import LABEL_VERSION, SEALED_LABEL_BYTES
from alliance_psi.protocol.result_codec import decode_leaf
from alliance_psi.protocol.submission import label_digest
from alliance_psi.storage import KeptResults
from alliance_psi.storage.schema import member_set_state, member_sets, set_holders
from tests.integration.services.harness import EPOCH, MEMBERS, Planted, running_alliance

pytestmark = pytest.mark.timeout(240)

PHONES = "epoch-test/phone/labels"
BOTH = "epoch-test/id_card,phone/labels"


def standing_sets(conn: Connection, scope: str) -> dict[str, dict[bytes, bytes]]:
    """{member: {token: sealed label}} of every member's standing set in ``scope``."""
    owners = dict(
        conn.execute(
            select(member_set_state.c.set_id, member_set_state.c.member_id).where(member_set_state.c.set_scope == scope)
        ).all()
    )
    held = member_sets.c
    sets: dict[str, dict[bytes, bytes]] = {member: {} for member in owners.values()}
    for set_id, token, label in conn.execute(
        select(held.set_id, held.match_token, held.sealed_label).where(held.set_scope == scope)
    ):
        sets[owners[set_id]][bytes(token)] = bytes(label)
    return sets


def add_holder(conn: Connection, scope: str, member: str, token: bytes, label: bytes) -> None:
    """Put ``token`` with ``label`` in ``member``'s standing set, as the operator could."""
    set_id = conn.execute(
        select(member_set_state.c.set_id).where(
            member_set_state.c.set_scope == scope, member_set_state.c.member_id == member
        )
    ).scalar_one()
    conn.execute(
        insert(member_sets).values(
            set_scope=scope, set_id=set_id, match_token=token, sealed_label=label, label_digest=label_digest(label)
        )
    )
    counted = set_holders.c
    bumped = conn.execute(
        update(set_holders)
        .where(counted.set_scope == scope, counted.match_token == token)
        .values(holders=counted.holders + 1)
    )
    if bumped.rowcount == 0:
        conn.execute(insert(set_holders).values(set_scope=scope, match_token=token, holders=1))


def replace_label(conn: Connection, scope: str, member: str, token: bytes, label: bytes) -> None:
    set_id = conn.execute(
        select(member_set_state.c.set_id).where(
            member_set_state.c.set_scope == scope, member_set_state.c.member_id == member
        )
    ).scalar_one()
    held = member_sets.c
    conn.execute(
        update(member_sets)
        .where(held.set_scope == scope, held.set_id == set_id, held.match_token == token)
        .values(sealed_label=label, label_digest=label_digest(label))
    )


def test_leads_whose_labels_do_not_back_their_holder_count_are_refused(tmp_path: Path, pki) -> None:  # type: ignore[no-untyped-def]
    planted = Planted.make()
    with running_alliance(tmp_path, pki, custodians=1, planted=planted) as alliance:
        admin = alliance.admin()
        # Every member may join (no invitation list): the rounds stay open until the operator closes them.
        rounds = {
            scope: admin.create_round(alliance.spec(2, invited=None, allowed_types=types)).round_id
            for scope, types in ((PHONES, ("phone",)), (BOTH, ("phone", "id_card")))
        }
        nodes = {member: alliance.node(member) for member in MEMBERS}  # One node (and sealer key) each.
        for round_id in rounds.values():
            for node in nodes.values():
                node.tokenize(EPOCH, ["phone"])
                node.submit(node.coordinator.get_round(round_id)[0])

        with alliance.coordinator_engine.begin() as conn:
            sets, earlier = standing_sets(conn, BOTH), standing_sets(conn, PHONES)
            a, b, c = (sets[m] for m in MEMBERS)
            only_a = sorted(set(a) - set(b) - set(c))
            ab = sorted(set(a) & set(b) - set(c))
            forged = {"own": only_a[0], "own, once": only_a[1], "twice": ab[0], "garbage": ab[1], "replayed": ab[2]}
            # bank-a's own label, returned as bank-b's and bank-c's: "a lead shared by 3 members".
            add_holder(conn, BOTH, "bank-b", forged["own"], a[forged["own"]])
            add_holder(conn, BOTH, "bank-c", forged["own"], a[forged["own"]])
            add_holder(conn, BOTH, "bank-b", forged["own, once"], a[forged["own, once"]])
            # bank-b's label counted twice: bank-c "holds" it with bank-b's label.
            add_holder(conn, BOTH, "bank-c", forged["twice"], b[forged["twice"]])
            # A third holder whose "label" opens under no key.
            garbage = bytes([LABEL_VERSION]) + secrets.token_bytes(SEALED_LABEL_BYTES - 1)
            add_holder(conn, BOTH, "bank-c", forged["garbage"], garbage)
            # bank-b's label for the token from the phones-only scope, replayed in this one.
            replace_label(conn, BOTH, "bank-b", forged["replayed"], earlier["bank-b"][forged["replayed"]])
        for round_id in rounds.values():
            admin.close_round(round_id, "forged")

        node = nodes["bank-a"]
        round_ = node.coordinator.get_round(rounds[BOTH])[0]
        header = node.fetch_and_keep(round_, wait=30)
        checks = node.lead_checks(rounds[BOTH])
        leads = node.leads(node.kept_result(rounds[BOTH]))
        # The honest round of the other scope: every lead stands, none refused.
        node.fetch_and_keep(node.coordinator.get_round(rounds[PHONES])[0], wait=30)
        honest_leads = node.leads(node.kept_result(rounds[PHONES]))
        honest_checks = node.lead_checks(rounds[PHONES])
        with alliance.member_engines["bank-a"].connect() as conn:
            kept = {
                decode_leaf(leaf).match_token: decode_leaf(leaf) for leaf in KeptResults(conn).iter_leaves(rounds[BOTH])
            }

    reasons = {refusal.match_token: refusal.reason for refusal in checks.refused}
    assert checks.scope == BOTH and set(reasons) == set(forged.values())
    assert "own label is returned as a peer's" in reasons[forged["own"]]
    assert "own label is returned as a peer's" in reasons[forged["own, once"]]
    assert "counted twice" in reasons[forged["twice"]]
    assert reasons[forged["garbage"]] == (
        "held by 3 members says the coordinator; 1 peer label counts under this identifier's key; "
        "a peer label does not open under this identifier's key; "
        "they back 2 holders, at least the threshold 2: a lead held by 2"
    )
    assert "0 peer labels count" in reasons[forged["replayed"]]
    # Refused: what no label backs up to the threshold. The others stand with the count labels back.
    refused = {forged["own"], forged["own, once"], forged["replayed"]}
    assert checks.refused_tokens() == refused
    assert checks.backed_counts() == {forged["twice"]: 2, forged["garbage"]: 2}
    # What the coordinator signed is kept whole, the refused leaves included: the evidence.
    assert header.match_count == len(kept) and set(forged.values()) <= set(kept)
    assert kept[forged["own"]].holder_count == 3
    # Refused tokens are not leads; every honest lead of the round still is, with its true count.
    expected = planted.expected("bank-a", 2)
    by_token = {lead.match_token: lead for lead in leads}
    assert not refused & set(by_token)
    assert len(leads) == len(expected) - 1  # One forged token was a real lead: "replayed" (bank-b's label spoiled).
    for forged_lead in (by_token[forged["twice"]], by_token[forged["garbage"]]):
        assert (forged_lead.holder_count, forged_lead.backed_count) == (3, expected[forged_lead.canonical])
    honest = [lead for lead in leads if lead.backed_count is None]
    assert len(honest) == len(leads) - 2
    assert all(expected[lead.canonical] == lead.holder_count and lead.unreadable_labels == 0 for lead in honest)
    assert honest_checks.scope == PHONES and honest_checks.refused == ()
    assert {lead.canonical: lead.holder_count for lead in honest_leads} == expected


def test_join_fetch_and_report_say_what_was_refused(tmp_path: Path, pki) -> None:  # type: ignore[no-untyped-def]
    from click.testing import CliRunner

    from alliance_psi.cli.main import main
    from alliance_psi.storage import MemberRepository
    from tests.integration.test_cli_node_join import write_toml

    with running_alliance(tmp_path, pki, custodians=1) as alliance:
        admin = alliance.admin()
        round_id = admin.create_round(alliance.spec(2, invited=None)).round_id
        runner = CliRunner()
        configs = {m: write_toml(tmp_path / f"{m}.toml", pki, alliance, m) for m in ("bank-a", "bank-b")}
        for config in configs.values():
            joined = runner.invoke(main, ["node", "--config", str(config), "join", round_id, "--wait", "0"])
            assert joined.exit_code == 0, joined.output
        with alliance.coordinator_engine.begin() as conn:
            a, b = (standing_sets(conn, PHONES)[m] for m in ("bank-a", "bank-b"))
            token = sorted(set(a) - set(b))[0]
            add_holder(conn, PHONES, "bank-b", token, a[token])  # bank-a's own label as bank-b's.
        admin.close_round(round_id, "forged")
        with alliance.member_engines["bank-a"].connect() as conn:
            value = MemberRepository(conn).identifiers_for_tokens(EPOCH, [token])[token][1]
        fetched = runner.invoke(main, ["node", "--config", str(configs["bank-a"]), "fetch", round_id, "--wait", "30"])
        rejoined = runner.invoke(main, ["node", "--config", str(configs["bank-a"]), "join", round_id, "--wait", "30"])
        report = tmp_path / "report.csv"
        reported = runner.invoke(
            main, ["node", "--config", str(configs["bank-a"]), "report", round_id, "--format", "csv", "-o", str(report)]
        )
    assert fetched.exit_code == 0, fetched.output
    assert f"REFUSED 1 lead of round {round_id}: the coordinator signed a holder count" in fetched.output
    assert (
        f"  token {token.hex()} (held by 2, says the coordinator): held by 2 members says the coordinator; "
        "0 peer labels count under this identifier's key; this member's own label is returned as a peer's "
        "(replayed by the coordinator or by a co-holder); 1 needed for the threshold 2: not a lead\n"
    ) in fetched.output
    assert value not in fetched.output  # Named by its token, never by the identifier.
    assert rejoined.exit_code == 0, rejoined.output
    assert "REFUSED: labels do not back the count" in rejoined.output
    assert f"REFUSED 1 lead of round {round_id}" in rejoined.output and value not in rejoined.output
    assert reported.exit_code == 0, reported.output
    assert "1 refused lead left out (labels do not back the count; see `node fetch`)" in reported.output
    written = report.read_text(encoding="utf-8-sig")
    assert value not in written and "\n1,phone,+86139" in written  # The other leads are still reported.


def test_a_members_superseded_label_served_as_another_holders_is_not_counted(tmp_path: Path, pki) -> None:  # type: ignore[no-untyped-def]
    from alliance_psi.storage import MemberRepository

    with running_alliance(tmp_path, pki, custodians=1) as alliance:
        admin = alliance.admin()
        nodes = {member: alliance.node(member) for member in MEMBERS}

        def run_round(forge=None) -> str:  # type: ignore[no-untyped-def]
            round_id = admin.create_round(alliance.spec(2, invited=None)).round_id
            for node in nodes.values():
                node.tokenize(EPOCH, ["phone"])
                node.submit(node.coordinator.get_round(round_id)[0])
            if forge is not None:
                with alliance.coordinator_engine.begin() as conn:
                    forge(conn)
            admin.close_round(round_id, "forged" if forge else "")
            nodes["bank-a"].fetch_and_keep(nodes["bank-a"].coordinator.get_round(round_id)[0], wait=30)
            return round_id

        run_round()
        with alliance.coordinator_engine.connect() as conn:
            sets = standing_sets(conn, PHONES)
        token = sorted(set(sets["bank-a"]) & set(sets["bank-b"]) - set(sets["bank-c"]))[0]
        superseded = sets["bank-b"][token]
        # bank-b relabels the identifier; its next delta replaces the label at the coordinator...
        with alliance.member_engines["bank-b"].begin() as conn:
            value = MemberRepository(conn).identifiers_for_tokens(EPOCH, [token])[token][1]
            MemberRepository(conn).upsert_identifiers(
                [{"type": "phone", "canonical": value, "category": "money_laundering", "severity": "level1"}]
            )
        # ...which kept the old one, and serves it as bank-c's: same sealer, other bytes.
        second = run_round(lambda conn: add_holder(conn, PHONES, "bank-c", token, superseded))
        checks = nodes["bank-a"].lead_checks(second)
        leads = nodes["bank-a"].leads(nodes["bank-a"].kept_result(second))
    assert [(r.match_token, r.holder_count, r.backed_count, r.stands) for r in checks.refused] == [(token, 3, 2, True)]
    assert "two peer labels carry one sealer's pseudonym (one member, or one label, counted twice)" in (
        checks.refused[0].reason
    )
    # bank-a and bank-b hold it: a lead held by 2 (the threshold), not by the 3 the coordinator signed.
    (lead,) = [lead for lead in leads if lead.match_token == token]
    assert (lead.holder_count, lead.backed_count) == (3, 2)


def test_a_second_signed_result_for_a_kept_round_is_refused_and_kept_as_evidence(tmp_path: Path, pki) -> None:  # type: ignore[no-untyped-def]
    # The operator issues bank-a's result again after bank-a kept one: each is consistent with the
    # log taken alone (a new result.issue entry is appended, nothing rewritten), so only the two
    # signed headers side by side prove it. The node must not replace what it kept (adversary round 2, #1).
    from datetime import UTC, datetime

    from sqlalchemy import delete

    from alliance_psi.errors import ResultMismatch
    from alliance_psi.protocol.matching import issue_results
    from alliance_psi.services.coordinator import sql_unit_of_work
    from alliance_psi.storage.schema import result_headers, result_pages

    with running_alliance(tmp_path, pki, custodians=1) as alliance:
        admin = alliance.admin()
        round_id = admin.create_round(alliance.spec(2, invited=None)).round_id
        nodes = {member: alliance.node(member) for member in ("bank-a", "bank-b")}
        for node in nodes.values():
            node.tokenize(EPOCH, ["phone"])
            node.submit(node.coordinator.get_round(round_id)[0])
        admin.close_round(round_id, "done")
        node = nodes["bank-a"]
        round_ = node.coordinator.get_round(round_id)[0]
        first = node.fetch_and_keep(round_, wait=30)
        kept_before = node.kept_result(round_id)
        assert node.fetch_and_keep(round_, wait=30) == first  # The same result again is fine.

        with alliance.coordinator_engine.begin() as conn:
            for table in (result_pages, result_headers):
                conn.execute(delete(table).where(table.c.round_id == round_id))
            # One of bank-b's tokens leaves its set: bank-a's second result has a lead fewer.
            sets = standing_sets(conn, PHONES)
            dropped = sorted(set(sets["bank-a"]) & set(sets["bank-b"]))[0]
            conn.execute(
                delete(member_sets).where(
                    member_sets.c.match_token == dropped,
                    member_sets.c.label_digest == label_digest(sets["bank-b"][dropped]),
                )
            )
        with sql_unit_of_work(alliance.coordinator_engine)() as tx:
            issue_results(
                tx,
                tx.rounds.get_round(round_id),
                alliance.signing_key,
                issuer="coordinator",
                at=datetime.now(UTC),
                page_bytes=1 << 20,
            )

        with pytest.raises(ResultMismatch, match="the coordinator signed a second, different result for this member"):
            node.fetch_and_keep(round_, wait=30)
        assert node.kept_result(round_id) == kept_before  # Not replaced.
        with alliance.member_engines["bank-a"].connect() as conn:
            conflicting = KeptResults(conn).conflicting(round_id)
            kept = KeptResults(conn).get_result(round_id)
        assert len(conflicting) == 1 and conflicting[0][0] != kept.header
        # Both are the coordinator's signatures over headers for this round and member: evidence an outsider checks.
        from alliance_psi.protocol.result_codec import open_header

        for header, signature in (conflicting[0], (kept.header, kept.signature)):
            opened = open_header(
                alliance.signing_key.public_key, header, signature, round_id=round_id, member_id="bank-a"
            )
            assert opened.round_id == round_id
        # The coordinator's log, replayed by whoever holds a copy, names the second issue too.
        from click.testing import CliRunner

        from alliance_psi.cli.main import main

        database = alliance.coordinator_engine.url.render_as_string(hide_password=False)
        replayed = CliRunner().invoke(main, ["coordinator", "audit-verify", "--database", database])
        assert replayed.exit_code == 1 and (
            f"round {round_id}'s result was issued twice to member bank-a (seq " in replayed.output
        ), replayed.output
