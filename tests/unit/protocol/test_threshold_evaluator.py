"""The member's threshold client over in-memory custodians (the real ``CustodianRole``): any τ of n,
hedging, failures named, and each verification mode against a custodian that evaluates wrongly."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import pytest

from alliance_psi.crypto import oprf
from alliance_psi.crypto.batch import blind_batch, finalize_batch
from alliance_psi.crypto.suite import RISTRETTO255_SHA512 as SUITE
from alliance_psi.crypto.threshold_keys import PublicEpoch, ThresholdShare, deal_epoch_for_testing
from alliance_psi.errors import ConfigurationError, NotAuthenticated, PeerUnavailable, WrongEpoch
from alliance_psi.protocol.custodian import CustodianRole, EpochStatus, Evaluation
from alliance_psi.protocol.model import Identity, Role
from alliance_psi.protocol.threshold_evaluator import ThresholdEvaluator, VerifyMode
from tests.helpers.memory_ports import MemoryQuotaLedger

A = Identity("bank-a", Role.MEMBER)
EPOCH = "e1"
INPUTS = [b"phone\x00+86139%08d" % (i * 7919 + 1234567) for i in range(40)]


class MemoryCustodian:
    """A ``CustodianCalls`` over a real ``CustodianRole``, which a test can take down, slow or corrupt."""

    def __init__(self, role: CustodianRole, *, status_from: CustodianRole | None = None) -> None:
        self.name, self.role = role.name, role
        self.status_from = status_from or role  # A liar reports the honest share's commitment.
        self.down = False
        self.refuse: Exception | None = None  # Raised by every call (a custodian that never enrolled us).
        self.gate: threading.Event | None = None  # Set: answers wait for it (a slow custodian).
        self.calls: list[tuple[int, tuple[int, ...], bool]] = []

    def epoch(self) -> EpochStatus:
        if self.refuse is not None:
            raise self.refuse
        if self.down:
            raise PeerUnavailable(f"custodian {self.name} at 127.0.0.1:1 is unreachable after 4 attempts")
        return self.status_from.epoch_status(A)

    def evaluate_folded(
        self, key_epoch: str, elements: Sequence[bytes], *, subset: Sequence[int], prove: bool = False
    ) -> Evaluation:
        self.calls.append((len(elements), tuple(subset), prove))
        if self.refuse is not None:
            raise self.refuse
        if self.gate is not None:
            self.gate.wait(10)
        if self.down:
            raise PeerUnavailable(f"custodian {self.name} at 127.0.0.1:1 is unreachable after 4 attempts")
        return self.role.evaluate(A, key_epoch, elements, subset=subset, prove=prove)


def alliance(tau: int, n: int, *, quota: int = 10_000) -> tuple[bytes, PublicEpoch, list[MemoryCustodian]]:
    key = SUITE.random_scalar()
    names = [f"custodian-{i}" for i in range(1, n + 1)]
    shares, public = deal_epoch_for_testing(EPOCH, names, threshold=tau, key=key)
    custodians = [
        MemoryCustodian(CustodianRole(name, share, quota_per_member=quota, ledger=MemoryQuotaLedger()))
        for name, share in zip(names, shares, strict=True)
    ]
    return key, public, custodians


def corrupt(custodian: MemoryCustodian, *, only: int | None = None) -> None:
    """Make ``custodian`` evaluate with a wrong share while reporting its real commitment; with
    ``only``, wrong on that one element position only and only when no proof is asked for."""
    honest = custodian.role
    share = honest.share
    assert isinstance(share, ThresholdShare)
    wrong = ThresholdShare(share.epoch, share.suite_id, share.index, share.threshold, share.n, SUITE.random_scalar())
    liar = CustodianRole(honest.name, wrong, quota_per_member=10_000, ledger=MemoryQuotaLedger())
    if only is None:
        custodian.role, custodian.status_from = liar, honest
        return

    class Sly(CustodianRole):
        def evaluate(self, caller, key_epoch, elements, *, subset=(), prove=False):  # type: ignore[no-untyped-def]
            good = honest.evaluate(caller, key_epoch, elements, subset=subset, prove=prove)
            if prove or len(elements) <= only:
                return good
            bad = liar.evaluate(caller, key_epoch, elements, subset=subset)
            return Evaluation([*good.elements[:only], bad.elements[only], *good.elements[only + 1 :]], good.used)

    custodian.role = Sly(honest.name, share, quota_per_member=10_000, ledger=MemoryQuotaLedger())
    custodian.status_from = honest


def tokens(evaluator: ThresholdEvaluator, inputs: list[bytes] = INPUTS) -> list[bytes]:
    batch = blind_batch(inputs)
    return finalize_batch(inputs, batch.blind, evaluator.evaluate(EPOCH, batch.blinded_elements))


@pytest.mark.parametrize("mode", list(VerifyMode))
@pytest.mark.parametrize(("tau", "n"), [(1, 1), (2, 3), (3, 5)])
def test_outputs_equal_the_single_key_oprf(mode: VerifyMode, tau: int, n: int) -> None:
    key, public, custodians = alliance(tau, n)
    evaluator = ThresholdEvaluator(public, custodians, verify=mode)
    assert evaluator.key_epochs() == [EPOCH]
    assert tokens(evaluator) == [oprf.evaluate(key, x) for x in INPUTS]
    asked = [c for c in custodians if any(size == len(INPUTS) for size, _, _ in c.calls)]
    assert len(asked) == tau  # τ full batches, in parallel; the sample is small.
    # Full batches are proven in proof mode, and in sample mode when no further custodian is left to sample.
    proven = mode is VerifyMode.PROOF or (mode is VerifyMode.SAMPLE and n == tau)
    assert all(prove is proven for c in custodians for size, _, prove in c.calls if size == len(INPUTS))
    if mode is VerifyMode.SAMPLE and n > tau:  # One further custodian proves a sample of 16.
        assert [(size, prove) for c in custodians for size, _, prove in c.calls if size != len(INPUTS)] == [(16, True)]


def test_one_custodian_down_the_others_answer() -> None:
    key, public, custodians = alliance(2, 3)
    said: list[str] = []
    custodians[0].down = True
    evaluator = ThresholdEvaluator(public, custodians, report=said.append)
    assert tokens(evaluator) == [oprf.evaluate(key, x) for x in INPUTS]
    assert any(line.startswith("custodian custodian-1 is down, using the others") for line in said)
    assert evaluator.excluded == {}
    custodians[0].calls.clear()
    tokens(evaluator)  # Marked down: the next batch does not wait for it.
    assert custodians[0].calls == []


def test_two_down_names_both() -> None:
    _, public, custodians = alliance(2, 3)
    custodians[0].down = custodians[2].down = True
    evaluator = ThresholdEvaluator(public, custodians)
    with pytest.raises(PeerUnavailable) as caught:
        tokens(evaluator)
    message = str(caught.value)
    assert "key epoch 'e1' needs 2 of its 3 custodians and only 1 answered" in message
    assert "custodian-1: custodian custodian-1 at 127.0.0.1:1 is unreachable" in message
    assert "custodian-3: custodian custodian-3 at 127.0.0.1:1 is unreachable" in message
    with pytest.raises(PeerUnavailable, match="only 1 answered"):
        evaluator.key_epochs()


def test_a_slow_custodian_is_hedged() -> None:
    key, public, custodians = alliance(2, 3)
    custodians[1].gate = threading.Event()
    said: list[str] = []
    evaluator = ThresholdEvaluator(public, custodians, hedge_after=0.2, verify=VerifyMode.PROOF, report=said.append)
    try:
        assert tokens(evaluator) == [oprf.evaluate(key, x) for x in INPUTS]
    finally:
        custodians[1].gate.set()
    assert "custodian custodian-2 slow: asking another one too" in said
    # custodian-3 was asked for the subset it ended in; custodian-1's answer (for 1 and 2) was converted.
    assert custodians[2].calls == [(len(INPUTS), (1, 3), True)]


def test_a_wrong_share_is_caught_by_the_sample_named_and_excluded() -> None:
    key, public, custodians = alliance(2, 3)
    corrupt(custodians[1])
    said: list[str] = []
    evaluator = ThresholdEvaluator(public, custodians, report=said.append)
    assert tokens(evaluator) == [oprf.evaluate(key, x) for x in INPUTS]
    assert list(evaluator.excluded) == ["custodian-2"]
    assert "proof fails" in evaluator.excluded["custodian-2"]
    assert any(line.startswith("custodian custodian-2 excluded") for line in said)
    custodians[1].calls.clear()
    assert tokens(evaluator) == [oprf.evaluate(key, x) for x in INPUTS]
    assert custodians[1].calls == []  # Excluded for good.


def test_a_custodian_wrong_only_when_unchecked_is_caught_and_named() -> None:
    key, public, custodians = alliance(2, 3)
    corrupt(custodians[0], only=3)
    evaluator = ThresholdEvaluator(public, custodians, sample_size=len(INPUTS))
    assert tokens(evaluator) == [oprf.evaluate(key, x) for x in INPUTS]
    assert evaluator.excluded == {
        "custodian-1": "it answered differently without a proof than with one (it evaluated wrongly)"
    }


def test_impostors_without_the_shares_are_caught_by_the_proven_sample() -> None:
    _, public, custodians = alliance(2, 4)
    impostors, _ = deal_epoch_for_testing(EPOCH, [c.name for c in custodians], threshold=2)
    for custodian, share in zip(custodians[:3], impostors, strict=False):  # Consistent among themselves.
        honest = custodian.role
        custodian.role = CustodianRole(custodian.name, share, quota_per_member=100, ledger=MemoryQuotaLedger())
        custodian.status_from = honest
    evaluator = ThresholdEvaluator(public, custodians)
    # custodian-3's proven sample fails; custodian-4, honest, then disagrees with 1 and 2, whose
    # proofs fail in turn: no wrong output, and every impostor named.
    with pytest.raises(PeerUnavailable) as caught:
        tokens(evaluator)
    assert sorted(evaluator.excluded) == ["custodian-1", "custodian-2", "custodian-3"]
    assert all("DLEQ proof does not verify" in reason for reason in evaluator.excluded.values())
    assert "key epoch 'e1' needs 2 of its 4 custodians" in str(caught.value)


def test_a_wrong_share_fails_its_proof_at_once() -> None:
    key, public, custodians = alliance(2, 3)
    corrupt(custodians[0])
    evaluator = ThresholdEvaluator(public, custodians, verify=VerifyMode.PROOF)
    assert tokens(evaluator) == [oprf.evaluate(key, x) for x in INPUTS]
    assert evaluator.excluded["custodian-1"].startswith("its answer is wrong: DLEQ proof does not verify")


def test_without_verification_a_wrong_share_gives_wrong_outputs() -> None:
    key, public, custodians = alliance(2, 3)
    corrupt(custodians[0])
    evaluator = ThresholdEvaluator(public, custodians, verify=VerifyMode.NONE)
    assert tokens(evaluator) != [oprf.evaluate(key, x) for x in INPUTS]
    assert evaluator.excluded == {}


def test_a_wrong_share_with_too_few_custodians_to_replace_it() -> None:
    _, public, custodians = alliance(2, 2)
    corrupt(custodians[1])
    evaluator = ThresholdEvaluator(public, custodians, verify=VerifyMode.PROOF)
    with pytest.raises(PeerUnavailable, match="custodian-2: its answer is wrong: DLEQ proof does not verify"):
        tokens(evaluator)


def test_a_custodian_serving_another_commitment_is_excluded_before_any_batch() -> None:
    key, public, custodians = alliance(2, 3)
    other_shares, _ = deal_epoch_for_testing(EPOCH, ["custodian-1", "custodian-2", "custodian-3"], threshold=2)
    custodians[2].role = custodians[2].status_from = CustodianRole(
        "custodian-3", other_shares[2], quota_per_member=100, ledger=MemoryQuotaLedger()
    )
    evaluator = ThresholdEvaluator(public, custodians, verify=VerifyMode.PROOF)
    assert evaluator.key_epochs() == [EPOCH]
    assert "with another commitment than custodian 3 of the public epoch file" in evaluator.excluded["custodian-3"]
    assert tokens(evaluator) == [oprf.evaluate(key, x) for x in INPUTS]
    assert custodians[2].calls == []


def test_custodians_of_another_epoch_are_reported() -> None:
    _, public, custodians = alliance(2, 2)
    shares, _ = deal_epoch_for_testing("e2", ["custodian-1", "custodian-2"], threshold=2)
    for custodian, share in zip(custodians, shares, strict=True):
        custodian.role = custodian.status_from = CustodianRole(
            custodian.name, share, quota_per_member=100, ledger=MemoryQuotaLedger()
        )
    assert ThresholdEvaluator(public, custodians).key_epochs() == ["e2"]


def test_a_spent_quota_excludes_that_custodian_only() -> None:
    key, public, custodians = alliance(2, 3)
    custodians[0].role = CustodianRole(
        "custodian-1", custodians[0].role.share, quota_per_member=10, ledger=MemoryQuotaLedger()
    )
    evaluator = ThresholdEvaluator(public, custodians, verify=VerifyMode.PROOF)
    assert tokens(evaluator) == [oprf.evaluate(key, x) for x in INPUTS]
    assert "quota" in evaluator.excluded["custodian-1"]


def test_another_epoch_is_refused() -> None:
    _, public, custodians = alliance(2, 3)
    with pytest.raises(WrongEpoch, match="public epoch file is for key epoch 'e1', not 'e2'"):
        ThresholdEvaluator(public, custodians).evaluate("e2", blind_batch(INPUTS).blinded_elements)


def test_configuration_errors() -> None:
    _, public, custodians = alliance(2, 3)
    with pytest.raises(ConfigurationError, match="needs 2 custodians; the node lists 1"):
        ThresholdEvaluator(public, custodians[:1])
    with pytest.raises(ConfigurationError, match="configured twice"):
        ThresholdEvaluator(public, [custodians[0], custodians[0]])
    stranger = MemoryCustodian(
        CustodianRole("custodian-9", custodians[0].role.share, quota_per_member=1, ledger=MemoryQuotaLedger())
    )
    with pytest.raises(ConfigurationError, match="has no custodian named 'custodian-9'"):
        ThresholdEvaluator(public, [*custodians, stranger])


def test_with_no_custodian_left_to_sample_batches_are_proven() -> None:
    _, public, custodians = alliance(2, 3)
    custodians[2].down = True
    corrupt(custodians[1])
    said: list[str] = []
    evaluator = ThresholdEvaluator(public, custodians, report=said.append)
    with pytest.raises(PeerUnavailable) as caught:
        tokens(evaluator)  # Never the wrong share's outputs, though only two custodians answer.
    assert "custodian-2: its answer is wrong: DLEQ proof does not verify" in str(caught.value)
    assert "custodian-3: custodian custodian-3 at 127.0.0.1:1 is unreachable" in str(caught.value)
    # custodian-3 did not answer the sample: the batch was asked again with proofs, not accepted.
    assert any(line.startswith("custodian custodian-3 is down") for line in said)


def test_when_the_sampling_custodian_replaces_a_failed_one_the_batch_is_proven() -> None:
    key, public, custodians = alliance(2, 3)
    custodians[0].down = True  # Found down only when asked: custodian-3, asked for the sample, replaces it.
    corrupt(custodians[1])
    evaluator = ThresholdEvaluator(public, custodians)
    with pytest.raises(PeerUnavailable) as caught:
        tokens(evaluator)
    assert "custodian-2: its answer is wrong: DLEQ proof does not verify" in str(caught.value)
    assert "custodian-1: custodian custodian-1 at 127.0.0.1:1 is unreachable" in str(caught.value)
    custodians[0].down = False  # Back (still marked down, but asked when needed): the single key's outputs.
    assert tokens(evaluator) == [oprf.evaluate(key, x) for x in INPUTS]


def test_a_custodian_that_never_enrolled_the_member_is_excluded_at_the_epoch_check() -> None:
    key, public, custodians = alliance(2, 3)
    custodians[0].refuse = NotAuthenticated("custodian custodian-1 does not serve member bank-a")
    evaluator = ThresholdEvaluator(public, custodians, verify=VerifyMode.PROOF)
    assert evaluator.key_epochs() == [EPOCH]
    assert evaluator.excluded == {"custodian-1": "custodian custodian-1 does not serve member bank-a"}
    assert tokens(evaluator) == [oprf.evaluate(key, x) for x in INPUTS]
    assert custodians[0].calls == []


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        (bytes(32), "identity element"),
        (b"\xff" * 32, "not a canonical ristretto255 encoding"),
        (b"\x01" * 31, "must be 32 bytes"),
    ],
    ids=["identity", "non-canonical", "short"],
)
def test_a_custodian_answering_malformed_elements_is_excluded(bad: bytes, reason: str) -> None:
    key, public, custodians = alliance(2, 3)
    honest = custodians[1].role

    class Garbling(CustodianRole):
        def evaluate(self, caller, key_epoch, elements, *, subset=(), prove=False):  # type: ignore[no-untyped-def]
            good = honest.evaluate(caller, key_epoch, elements, subset=subset, prove=prove)
            return Evaluation([bad, *good.elements[1:]], good.used, good.proof)

    custodians[1].role = Garbling("custodian-2", honest.share, quota_per_member=100, ledger=MemoryQuotaLedger())
    evaluator = ThresholdEvaluator(public, custodians, verify=VerifyMode.NONE)
    assert tokens(evaluator) == [oprf.evaluate(key, x) for x in INPUTS]
    assert evaluator.excluded["custodian-2"].startswith("its answer is wrong: ")
    assert reason in evaluator.excluded["custodian-2"]
