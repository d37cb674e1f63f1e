"""Known-answer self-check, run before a node or custodian trusts this machine's crypto.

It replays RFC 9497 Appendix A.1.1 test vector 1 through every step, checks the split-key
property and the label AEAD round trip, and checks that the ristretto255 decoder refuses a
top-bit alias (libsodium 1.0.18 does not on its own). A failure means the installed libsodium or
this package is broken: nothing should be blinded or evaluated on such a machine.
"""

from __future__ import annotations

from dataclasses import dataclass

from alliance_psi.crypto import oprf
from alliance_psi.crypto.key_shares import KeyShare, combine_shares_for_testing
from alliance_psi.crypto.labels import LabelContext, open_label, seal_label
from alliance_psi.crypto.suite import RISTRETTO255_SHA512
from alliance_psi.errors import CryptoError, MalformedElement

__all__ = ["CheckResult", "run_selfcheck"]

# RFC 9497 Appendix A.1.1, ristretto255-SHA512, OPRF mode, Test Vector 1.
_SEED = bytes.fromhex("a3" * 32)
_KEY_INFO = bytes.fromhex("74657374206b6579")
_SK = bytes.fromhex("5ebcea5ee37023ccb9fc2d2019f9d7737be85591ae8652ffa9ef0f4d37063b0e")
_INPUT = bytes.fromhex("00")
_BLIND = bytes.fromhex("64d37aed22a27f5191de1c1d69fadb899d8862b58eb4220029e036ec4c1f6706")
_BLINDED = bytes.fromhex("609a0ae68c15a3cf6903766461307e5c8bb2f95e7e6550e1ffa2dc99e412803c")
_EVALUATED = bytes.fromhex("7ec6578ae5120958eb2db1745758ff379e77cb64fe77b0b2d8cc917ea0869c7e")
_OUTPUT = bytes.fromhex(
    "527759c3d9366f277d8c6020418d96bb393ba2afb20ff90df23fb7708264e2f3"
    "ab9135e3bd69955851de4b1f9fe8a0973396719b7912ba9ee8aa7d0b5e24bcf6"
)


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One named check and whether it passed."""

    name: str
    passed: bool


def _top_bit_alias_refused() -> bool:
    alias = bytearray(_BLINDED)
    alias[31] |= 0x80
    try:
        RISTRETTO255_SHA512.deserialize_element(bytes(alias))
    except MalformedElement:
        return True
    return False


def _split_key_agrees() -> bool:
    shares = [KeyShare.generate("selfcheck") for _ in range(3)]
    blinded = oprf.blind(b"selfcheck")
    element = blinded.blinded_element
    for share in reversed(shares):
        (element,) = share.blind_evaluate([element])
    key = combine_shares_for_testing(shares)
    return oprf.finalize(b"selfcheck", blinded.blind, element) == oprf.evaluate(key, b"selfcheck")


def _label_round_trip() -> bool:
    context = LabelContext("selfcheck", bytes(16), "selfcheck")
    key = bytes(range(32))
    return open_label(key, seal_label(key, b"label", context), context).plaintext == b"label"


def run_selfcheck() -> list[CheckResult]:
    """Run every check; raise ``CryptoError`` naming the failed ones, else return the results."""
    checks = {
        "RFC 9497 DeriveKeyPair": lambda: oprf.derive_key_pair(_SEED, _KEY_INFO)[0] == _SK,
        "RFC 9497 Blind": lambda: oprf.blind(_INPUT, _BLIND).blinded_element == _BLINDED,
        "RFC 9497 BlindEvaluate": lambda: oprf.blind_evaluate(_SK, _BLINDED) == _EVALUATED,
        "RFC 9497 Finalize": lambda: oprf.finalize(_INPUT, _BLIND, _EVALUATED) == _OUTPUT,
        "RFC 9497 Evaluate": lambda: oprf.evaluate(_SK, _INPUT) == _OUTPUT,
        "split key (3 shares) equals one key": _split_key_agrees,
        "non-canonical element refused": _top_bit_alias_refused,
        "sealed label round trip": _label_round_trip,
    }
    results = [CheckResult(name, bool(check())) for name, check in checks.items()]
    failed = [r.name for r in results if not r.passed]
    if failed:
        raise CryptoError("crypto self-check failed: " + ", ".join(failed))
    return results
