"""Threshold custody over real mTLS servers: a 2-of-3 round, every subset giving the single-key OPRF's
tokens, and a custodian serving a wrong share excluded while the round's tokens stay right."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from sqlalchemy import select

from alliance_psi.crypto import oprf
from alliance_psi.crypto.batch import blind_batch, finalize_batch
from alliance_psi.crypto.derive import derive
from alliance_psi.crypto.suite import RISTRETTO255_SHA512 as SUITE
from alliance_psi.crypto.threshold_keys import ThresholdShare
from alliance_psi.identifiers.types import Identifier, IdentifierType
from alliance_psi.services.clients import ThresholdCustodians, custodian_evaluator
from alliance_psi.storage.schema import identifiers as identifiers_table
from alliance_psi.storage.schema import token_cache
from tests.integration.services.conftest import AlliancePki
from tests.integration.services.harness import EPOCH, Alliance, Planted, running_alliance

pytestmark = pytest.mark.timeout(300)


def expected_tokens(alliance: Alliance, member: str) -> dict[str, bytes]:
    """The member's identifiers' match tokens under the dealt key, by RFC 9497 Evaluate (no custodian)."""
    assert alliance.key is not None
    with alliance.member_engines[member].connect() as conn:
        rows = conn.execute(select(identifiers_table.c.type, identifiers_table.c.canonical)).all()
    return {
        value: derive(oprf.evaluate(alliance.key, Identifier(IdentifierType(kind), value).oprf_input())).match_token
        for kind, value in rows
    }


def cached_tokens(alliance: Alliance, member: str) -> dict[str, bytes]:
    with alliance.member_engines[member].connect() as conn:
        rows = conn.execute(
            select(identifiers_table.c.canonical, token_cache.c.match_token).join(
                token_cache, token_cache.c.identifier_id == identifiers_table.c.id
            )
        ).all()
    return {value: bytes(token) for value, token in rows}


def test_a_two_of_three_round(tmp_path: Path, pki: AlliancePki) -> None:
    planted = Planted.make(size=30)
    with running_alliance(tmp_path, pki, custodians=3, threshold=2, planted=planted) as alliance:
        round_id = alliance.admin().create_round(alliance.spec(2)).round_id
        nodes = {member: alliance.node(member) for member in ("bank-a", "bank-b", "bank-c")}
        for node in nodes.values():
            node.tokenize(EPOCH, ["phone"])
            node.submit(node.coordinator.get_round(round_id)[0])
        outcome = nodes["bank-a"].join(round_id, wait=30)
        assert {lead.canonical: lead.holder_count for lead in outcome.leads} == planted.expected("bank-a", 2)
        for member in nodes:
            assert cached_tokens(alliance, member) == expected_tokens(alliance, member)


@pytest.mark.parametrize("verify", ["sample", "proof"])
def test_every_pair_of_custodians_gives_the_single_key_tokens(tmp_path: Path, pki: AlliancePki, verify: str) -> None:
    with running_alliance(tmp_path, pki, custodians=3, threshold=2) as alliance:
        assert alliance.key is not None and alliance.public is not None
        inputs = [Identifier(IdentifierType.PHONE, f"+86139{i:08d}").oprf_input() for i in range(1234567, 1234617)]
        expected = [oprf.evaluate(alliance.key, x) for x in inputs]
        for pair in itertools.combinations(alliance.custodians(), 2):
            evaluator = custodian_evaluator(pair, pki.material("bank-a"), public=alliance.public, verify=verify)
            try:
                assert evaluator.key_epochs() == [EPOCH]
                batch = blind_batch(inputs)
                outputs = finalize_batch(inputs, batch.blind, evaluator.evaluate(EPOCH, batch.blinded_elements))
                assert outputs == expected, [c.name for c in pair]
            finally:
                evaluator.close()


def lying(honest: ThresholdShare) -> ThresholdShare:
    """A share with a wrong scalar that reports the honest share's commitment (a custodian that lies)."""
    commitment = honest.commitment()

    class LyingShare(ThresholdShare):
        def commitment(self) -> bytes:
            return commitment

    return LyingShare(honest.epoch, honest.suite_id, honest.index, honest.threshold, honest.n, SUITE.random_scalar())


@pytest.mark.parametrize("verify", ["sample", "proof"])
def test_a_custodian_with_a_wrong_share_is_excluded_and_the_tokens_stay_right(
    tmp_path: Path, pki: AlliancePki, verify: str
) -> None:
    planted = Planted.make(size=30)
    with running_alliance(
        tmp_path, pki, custodians=3, threshold=2, planted=planted, altered={"custodian-1": lying}
    ) as alliance:
        round_id = alliance.admin().create_round(alliance.spec(2)).round_id
        nodes = {member: alliance.node(member, verify=verify) for member in ("bank-a", "bank-b", "bank-c")}
        for node in nodes.values():
            node.tokenize(EPOCH, ["phone"])
            node.submit(node.coordinator.get_round(round_id)[0])
            evaluator = node.evaluator
            assert isinstance(evaluator, ThresholdCustodians)
            assert list(evaluator.excluded) == ["custodian-1"]
            assert "proof" in evaluator.excluded["custodian-1"]
        outcome = nodes["bank-a"].join(round_id, wait=30)
        assert {lead.canonical: lead.holder_count for lead in outcome.leads} == planted.expected("bank-a", 2)
        for member in nodes:
            assert cached_tokens(alliance, member) == expected_tokens(alliance, member)


def test_a_custodian_serving_another_share_is_excluded_before_any_batch(tmp_path: Path, pki: AlliancePki) -> None:
    def wrong(honest: ThresholdShare) -> ThresholdShare:
        return ThresholdShare(honest.epoch, honest.suite_id, honest.index, 2, 3, SUITE.random_scalar())

    with running_alliance(tmp_path, pki, custodians=3, threshold=2, altered={"custodian-3": wrong}) as alliance:
        node = alliance.node("bank-a")
        evaluator = node.evaluator
        assert isinstance(evaluator, ThresholdCustodians)
        assert evaluator.key_epochs() == [EPOCH]  # As a join does first.
        assert "another commitment than custodian 3 of the public epoch file" in evaluator.excluded["custodian-3"]
        node.tokenize(EPOCH, ["phone"])
        assert cached_tokens(alliance, "bank-a") == expected_tokens(alliance, "bank-a")
