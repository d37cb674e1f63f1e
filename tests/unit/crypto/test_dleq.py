"""RFC 9497 Appendix A.1.2 (VOPRF mode, ristretto255-SHA512): the batched DLEQ proof, step by step."""

from __future__ import annotations

import pytest

from alliance_psi.crypto import dleq
from alliance_psi.crypto.suite import RISTRETTO255_SHA512 as SUITE
from alliance_psi.errors import InvalidProof
from tests.helpers.vectors import load_rfc_text

_GROUPS = load_rfc_text("rfc9497/ristretto255-sha512-voprf.txt")
KEY = _GROUPS[0]
VECTORS = [g for g in _GROUPS[1:] if "Proof" in g]
IDS = [f"vector{i + 1}-batch-{len(v['BlindedElement'].split(','))}" for i, v in enumerate(VECTORS)]
G = SUITE.scalar_mult_base(SUITE.scalar_from_int(1))


def h(value: str) -> bytes:
    return bytes.fromhex(value)


def elements(value: str) -> list[bytes]:
    return [h(part) for part in value.split(",")]


def test_vectors_present() -> None:
    assert len(VECTORS) == 3
    assert [len(elements(v["BlindedElement"])) for v in VECTORS] == [1, 1, 2]
    assert {"skSm", "pkSm"} <= KEY.keys()


def test_public_key_is_the_secret_times_the_generator() -> None:
    assert SUITE.scalar_mult_base(h(KEY["skSm"])) == h(KEY["pkSm"])


@pytest.mark.parametrize("v", VECTORS, ids=IDS)
def test_evaluation_elements(v: dict[str, str]) -> None:
    sk = h(KEY["skSm"])
    assert [SUITE.scalar_mult(sk, b) for b in elements(v["BlindedElement"])] == elements(v["EvaluationElement"])


@pytest.mark.parametrize("v", VECTORS, ids=IDS)
def test_generate_proof(v: dict[str, str]) -> None:
    proof = dleq.generate_proof(
        h(KEY["skSm"]),
        G,
        h(KEY["pkSm"]),
        elements(v["BlindedElement"]),
        elements(v["EvaluationElement"]),
        r=h(v["ProofRandomScalar"]),
    )
    assert proof == h(v["Proof"])


@pytest.mark.parametrize("v", VECTORS, ids=IDS)
def test_verify_proof(v: dict[str, str]) -> None:
    dleq.verify_proof(G, h(KEY["pkSm"]), elements(v["BlindedElement"]), elements(v["EvaluationElement"]), h(v["Proof"]))


@pytest.mark.parametrize("v", VECTORS, ids=IDS)
def test_a_changed_evaluation_fails(v: dict[str, str]) -> None:
    evaluated = elements(v["EvaluationElement"])
    evaluated[-1] = SUITE.scalar_mult(SUITE.scalar_from_int(2), evaluated[-1])
    with pytest.raises(InvalidProof):
        dleq.verify_proof(G, h(KEY["pkSm"]), elements(v["BlindedElement"]), evaluated, h(v["Proof"]))


@pytest.mark.parametrize("v", VECTORS, ids=IDS)
def test_another_public_key_fails(v: dict[str, str]) -> None:
    other = SUITE.scalar_mult_base(SUITE.random_scalar())
    with pytest.raises(InvalidProof):
        dleq.verify_proof(G, other, elements(v["BlindedElement"]), elements(v["EvaluationElement"]), h(v["Proof"]))


def test_swapped_pairs_fail() -> None:
    v = VECTORS[2]
    blinded, evaluated = elements(v["BlindedElement"]), elements(v["EvaluationElement"])
    with pytest.raises(InvalidProof):
        dleq.verify_proof(G, h(KEY["pkSm"]), blinded, evaluated[::-1], h(v["Proof"]))


@pytest.mark.parametrize(
    "proof",
    [b"", bytes(63), b"\xff" * 64, bytes(32) + b"\xff" * 32],
    ids=["empty", "short", "unreduced-c", "unreduced-s"],
)
def test_malformed_proofs_fail(proof: bytes) -> None:
    v = VECTORS[0]
    with pytest.raises(InvalidProof):
        dleq.verify_proof(G, h(KEY["pkSm"]), elements(v["BlindedElement"]), elements(v["EvaluationElement"]), proof)


def test_fresh_proofs_verify_for_a_large_batch() -> None:
    k = SUITE.random_scalar()
    blinded = [SUITE.scalar_mult_base(SUITE.random_scalar()) for _ in range(50)]
    evaluated = [SUITE.scalar_mult(k, b) for b in blinded]
    pk = SUITE.scalar_mult_base(k)
    first = dleq.generate_proof(k, G, pk, blinded, evaluated)
    second = dleq.generate_proof(k, G, pk, blinded, evaluated)
    assert first != second  # a fresh proof scalar each time
    for proof in (first, second):
        dleq.verify_proof(G, pk, blinded, evaluated, proof)
