"""RFC 9497 Appendix A.1.1, OPRF(ristretto255, SHA-512), one step per test (as voprf's test_cfrg_vectors)."""

from __future__ import annotations

import pytest

from alliance_psi.crypto import oprf
from tests.helpers.vectors import load_rfc_text

_GROUPS = load_rfc_text("rfc9497/ristretto255-sha512-oprf.txt")
KEY = _GROUPS[0]
VECTORS = [g for g in _GROUPS[1:] if "Output" in g]
IDS = [f"vector{i + 1}-input-{v['Input'][:8]}" for i, v in enumerate(VECTORS)]


def h(value: str) -> bytes:
    return bytes.fromhex(value)


def test_vectors_present() -> None:
    assert len(VECTORS) == 2
    assert {"Seed", "KeyInfo", "skSm"} <= KEY.keys()


def test_derive_key_pair() -> None:
    sk, pk = oprf.derive_key_pair(h(KEY["Seed"]), h(KEY["KeyInfo"]))
    assert sk == h(KEY["skSm"])
    assert len(pk) == 32


@pytest.mark.parametrize("v", VECTORS, ids=IDS)
def test_blind(v: dict[str, str]) -> None:
    result = oprf.blind(h(v["Input"]), blind=h(v["Blind"]))
    assert result.blind == h(v["Blind"])
    assert result.blinded_element == h(v["BlindedElement"])


@pytest.mark.parametrize("v", VECTORS, ids=IDS)
def test_blind_evaluate(v: dict[str, str]) -> None:
    assert oprf.blind_evaluate(h(KEY["skSm"]), h(v["BlindedElement"])) == h(v["EvaluationElement"])


@pytest.mark.parametrize("v", VECTORS, ids=IDS)
def test_finalize(v: dict[str, str]) -> None:
    assert oprf.finalize(h(v["Input"]), h(v["Blind"]), h(v["EvaluationElement"])) == h(v["Output"])


@pytest.mark.parametrize("v", VECTORS, ids=IDS)
def test_evaluate(v: dict[str, str]) -> None:
    assert oprf.evaluate(h(KEY["skSm"]), h(v["Input"])) == h(v["Output"])


@pytest.mark.parametrize("v", VECTORS, ids=IDS)
def test_fresh_blind_gives_the_same_output(v: dict[str, str]) -> None:
    sk = h(KEY["skSm"])
    first = oprf.blind(h(v["Input"]))
    second = oprf.blind(h(v["Input"]))
    assert first.blinded_element != second.blinded_element
    for result in (first, second):
        evaluated = oprf.blind_evaluate(sk, result.blinded_element)
        assert oprf.finalize(h(v["Input"]), result.blind, evaluated) == h(v["Output"])


def test_blind_result_repr_hides_the_blind() -> None:
    result = oprf.blind(b"x")
    assert result.blind.hex() not in repr(result)
